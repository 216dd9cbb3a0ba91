"""The X-Dub files: each exactly as its publisher ships it, where it comes from, where it goes, what reads it.

One registry for every front end: the CLI's errors, the core loaders' errors, the README's table (a test
compares them) and the ComfyUI model metadata of the nodes and workflows (:func:`comfy_model_metadata`).
Nothing here downloads anything; the URLs are for people (and ComfyUI's Missing Models dialog).

The Kling bundle is ``hf download KlingTeam/X-Dub`` (the reference README's ``checkpoints/`` layout);
ComfyUI's core Load CLIP reads the umT5 encoder only in Comfy-Org's repackaged layout. The two speech encoders are
named by their single ``model.safetensors`` files on their publishers' pages (the files ComfyUI's Missing Models
dialog can download; saved under a name of their own, since both are called ``model.safetensors``); the bundle's
``whisper/large-v2.pt`` and ``wav2vec2-base-960h/`` folder are registered as accepted alternatives of them
(``alternative_to``): errors name both, the README lists both, the workflows name the single files.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from dataclasses import dataclass
from typing import Dict, Iterator, Optional, Tuple

from ..errors import OmniSyncError

HF = "https://huggingface.co"
KLING_REPO = "KlingTeam/X-Dub"
COMFY_WAN_REPO = "Comfy-Org/Wan_2.1_ComfyUI_repackaged"
WHISPER_REPO = "openai/whisper-large-v2"
WAV2VEC2_REPO = "facebook/wav2vec2-base-960h"


@dataclass(frozen=True)
class ModelFile:
    """One published file (or folder) X-Dub needs.

    key: short id used in code (``"xdub_model"``). name: the file or folder name as published.
    repo / path_in_repo: the Hugging Face repository and the path inside it. directory: the ComfyUI
    ``models/`` folder it goes to. read_by: the ComfyUI node that reads it (None: not read in ComfyUI).
    cli_flag: the ``xdub`` command's flag (None: not read by the CLI). note: one line for the README.
    alternative_to: the key of the entry this one can replace (the same model in another published form): read by
    the same node and flag, named in that entry's errors, not named by the workflows.
    """

    key: str
    name: str
    repo: str
    path_in_repo: str
    directory: str
    read_by: Optional[str]
    cli_flag: Optional[str]
    note: str = ""
    alternative_to: Optional[str] = None

    @property
    def is_folder(self) -> bool:
        return self.path_in_repo.endswith("/")

    @property
    def published_name(self) -> str:
        """The file's name in its repository (``model.safetensors``), which a browser download keeps."""
        return posixpath.basename(self.path_in_repo.rstrip("/"))

    @property
    def renamed(self) -> bool:
        """Whether the file is saved under another name than its repository's (``name`` != ``published_name``)."""
        return not self.is_folder and self.published_name != self.name

    def matches(self, path: str) -> bool:
        """Whether ``path`` has this entry's form: a folder (an existing directory or a name without a suffix) for a
        folder entry, else the same suffix as ``name``."""
        path = os.fspath(path).rstrip("/\\")
        if os.path.isdir(path):
            return self.is_folder
        suffix = os.path.splitext(path)[1].lower()
        return suffix == "" if self.is_folder else suffix == os.path.splitext(self.name)[1].lower()

    @property
    def url(self) -> str:
        """The download address of a file, or the web page of a folder."""
        kind = "tree" if self.is_folder else "resolve"
        return f"{HF}/{self.repo}/{kind}/main/{self.path_in_repo.rstrip('/')}"

    @property
    def where(self) -> str:
        return f"ComfyUI/models/{self.directory}/"

    def source(self) -> str:
        """'NAME from URL (goes to ComfyUI/models/DIR/)', or for a file published under another name 'NAME from
        URL (save it as ComfyUI/models/DIR/NAME)': the words every error about this file ends with."""
        what = f"the {self.name} folder" if self.is_folder else self.name
        if self.renamed:
            return f"{what} from {self.url} (save it as {self.where}{self.name})"
        return f"{what} from {self.url} (goes to {self.where})"


XDUB_FILES: Tuple[ModelFile, ...] = (
    ModelFile("xdub_model", "X-Dub_model.safetensors", KLING_REPO, "X-Dub_model.safetensors",
              "diffusion_models", "Load X-Dub Model", "--model", "the X-Dub DiT"),
    ModelFile("wan22_vae", "Wan2.2_VAE.safetensors", KLING_REPO, "Wan2.2_VAE.safetensors",
              "vae", "core Load VAE", "--vae", "Wan 2.2's VAE, in Wan's own key layout"),
    ModelFile("umt5_comfy", "umt5_xxl_fp8_e4m3fn_scaled.safetensors", COMFY_WAN_REPO,
              "split_files/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors", "text_encoders",
              "core Load CLIP, type `wan`", "--t5", "umT5-XXL in the layout ComfyUI's Load CLIP reads; "
              "umt5_xxl_fp16.safetensors beside it works too"),
    ModelFile("umt5_wan", "models_t5_umt5-xxl-enc-bf16.safetensors", KLING_REPO,
              "models_t5_umt5-xxl-enc-bf16.safetensors", "text_encoders", None, "--t5",
              "the same umT5-XXL in Wan's key layout; core Load CLIP cannot read it, so ComfyUI uses the file above"),
    ModelFile("umt5_tokenizer", "umt5-xxl", KLING_REPO, "umt5-xxl/", "text_encoders", None, "--t5-tokenizer",
              "umT5's tokenizer, only for a non-empty --prompt: the empty prompt is one end-of-text token"),
    ModelFile("whisper", "whisper-large-v2.safetensors", WHISPER_REPO, "model.safetensors", "audio_encoders",
              "Load X-Dub Audio Encoders", "--whisper", "OpenAI's Whisper large-v2 in transformers' layout, fp32; "
              "only the encoder is read (the X-Dub reference reads the bundle's large-v2.pt: not compared here)"),
    ModelFile("whisper_pt", "large-v2.pt", KLING_REPO, "whisper/large-v2.pt", "audio_encoders",
              "Load X-Dub Audio Encoders", "--whisper", "the Kling bundle's openai-whisper checkpoint, instead of the "
              "file above; read with torch.load(weights_only=True) on torch ≥ 2.6", alternative_to="whisper"),
    ModelFile("wav2vec2", "wav2vec2-base-960h.safetensors", WAV2VEC2_REPO, "model.safetensors", "audio_encoders",
              "Load X-Dub Audio Encoders", "--wav2vec", "wav2vec2-base-960h as its publisher ships it; its "
              "configuration is read from the tensor shapes"),
    ModelFile("wav2vec2_folder", "wav2vec2-base-960h", KLING_REPO, "wav2vec2-base-960h/", "audio_encoders",
              "Load X-Dub Audio Encoders", "--wav2vec", "the Kling bundle's Hugging Face folder, instead of the file "
              "above", alternative_to="wav2vec2"),
)

_BY_KEY: Dict[str, ModelFile] = {f.key: f for f in XDUB_FILES}


def xdub_file(key: str) -> ModelFile:
    """The registry entry of ``key`` (or of a published file name)."""
    if key in _BY_KEY:
        return _BY_KEY[key]
    for f in XDUB_FILES:
        if f.name == key:
            return f
    raise KeyError(f"no X-Dub file {key!r}; known: {', '.join(_BY_KEY)}")


def accepted_forms(key: str) -> Tuple[ModelFile, ...]:
    """The entry ``key`` and every entry that can stand in for it (or that it stands in for), primary first."""
    f = xdub_file(key)
    primary = xdub_file(f.alternative_to) if f.alternative_to else f
    return (primary, *(g for g in XDUB_FILES if g.alternative_to == primary.key))


def xdub_file_for(key: str, path: str) -> ModelFile:
    """The accepted form of ``key`` that ``path`` has (the bundle's ``large-v2.pt`` for a ``.pt``, its folder for a
    folder), else the primary entry: the one whose source an error about ``path`` names first."""
    forms = accepted_forms(key)
    return next((f for f in forms if f.matches(path)), forms[0])


def comfy_model_metadata(key: str) -> Dict[str, str]:
    """``{"name", "url", "directory"}`` of a single file, as ComfyUI's frontend reads a model widget's
    metadata (its Missing Models dialog). A folder (wav2vec2-base-960h, the tokenizer) has none: the
    frontend downloads single files only."""
    f = xdub_file(key)
    if f.is_folder:
        raise ValueError(f"{f.name} is a folder; ComfyUI's model metadata describes single files only.")
    return {"name": f.name, "url": f.url, "directory": f.directory}


def missing_message(key: str, path: str, flag: Optional[str] = None) -> str:
    """The one-line error for a file that is not there: what, where it comes from, where it goes, and the other
    published forms the same reader takes."""
    f = xdub_file(key)
    hint = f" or pass its path to {flag}" if flag else ""
    others = [g for g in accepted_forms(key) if g.key != f.key]
    also = "".join(f" Also accepted instead: {g.source()}." for g in others)
    return f"{f.name} not found at {path!r}: download {f.source()}{hint}.{also}"


@contextlib.contextmanager
def named_source(*keys: str) -> Iterator[None]:
    """Re-raise any OmniSyncError inside with the source of the file(s) ``keys`` appended, unless it already
    names a published file's source."""
    try:
        yield
    except OmniSyncError as exc:
        text = str(exc).rstrip()
        sources = [xdub_file(k) for k in keys]
        if any(f.url in text for f in XDUB_FILES):
            raise
        tail = "; ".join(f.source() for f in sources)
        raise OmniSyncError(f"{text.rstrip('.')}. The published file: {tail}.") from None


def readme_table() -> str:
    """The README's X-Dub files table (a test checks the README holds exactly this)."""
    rows = ["| file | from | goes to `ComfyUI/models/…` | read by (ComfyUI) | CLI `xdub` |",
            "|---|---|---|---|---|"]
    for f in XDUB_FILES:
        name = f"`{f.name}/`" if f.is_folder else f"`{f.name}`"
        notes = [f.note] if f.note else []
        if f.renamed:
            notes.append(f"the repository's `{f.published_name}`, saved under this name")
        if notes:
            name += f" ({'; '.join(notes)})"
        cli = f"`{f.cli_flag}`" if f.cli_flag else "—"
        rows.append(f"| {name} | [{f.repo}]({f.url}) | `{f.directory}/` | {f.read_by or '—'} | {cli} |")
    return "\n".join(rows)


# -- the one reader of pickled weights ---------------------------------------------------------------

SAFE_TORCH_LOAD = "2.6"  # torch.load(weights_only=True) has no known hole from this version on (CVE-2025-32434)


def torch_load_is_safe(version: Optional[str] = None) -> bool:
    """Whether this torch's restricted unpickler (``weights_only=True``) may read a published ``.pt``."""
    import torch

    return torch.torch_version.TorchVersion(version or torch.__version__) >= SAFE_TORCH_LOAD


def read_pickled_weights(path: str, key: str, convert_hint: str = ""):
    """A published pickled checkpoint (``.pt`` / ``pytorch_model.bin``) read with ``torch.load(weights_only=True)``
    (the restricted loader ComfyUI uses: tensors and plain containers only, nothing that runs code), memory-mapped
    where the file allows, on torch >= 2.6 only. Every failure is a one-line OmniSyncError naming the source."""
    import torch

    f = xdub_file(key)
    if not torch_load_is_safe():
        raise OmniSyncError(
            f"{path!r} is a pickled PyTorch file, and this torch ({torch.__version__}) is older than "
            f"{SAFE_TORCH_LOAD}, whose restricted loader has known holes; upgrade torch"
            + (f", or convert it once where torch >= {SAFE_TORCH_LOAD} runs: {convert_hint}" if convert_hint else "")
            + ".")
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)  # a legacy (non-zip) file
    except Exception as exc:  # noqa: BLE001 — torch raises many types for damaged, foreign or unsafe files
        text = str(exc)
        # the restricted unpickler's own reason, not torch's paragraph about the weights_only default
        reason = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else text
        lines = [line.strip() for line in reason.splitlines() if line.strip()]
        why = (lines[0] if lines else "").split(". ")[0][:160]
        raise OmniSyncError(
            f"{path!r} does not load with torch.load(weights_only=True) ({type(exc).__name__}: {why}): it is "
            f"damaged, truncated, holds code, or is another format; re-download {f.source()}.") from None
