"""OmniSync checkpoints: one self-describing ``.safetensors`` file, and Wan 2.1 initialisation.

An OmniSync checkpoint holds the DiT weights and, under the safetensors metadata key ``"omnisync"``,
a JSON document that says how to rebuild and use them::

    {"format": 1, "arch": "dit" | "unet" (absent: "dit"), "model": DiTConfig or UNetConfig dict,
     "codec": CodecSpec dict, "audio": AudioFeatureSpec dict,
     "sampling": {...optional: the sampling options the model was tuned for, e.g. num_steps},
     "train": {...optional}}

Only safetensors files are read: they hold tensors, never code, so loading a downloaded file cannot
run anything (``torch.load`` of a pickle can). :func:`load_wan_state_dict` starts a model from Wan 2.1
T2V weights (original or ComfyUI-prefixed keys), widening the patch embedding with zero source channels.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple, Union

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..errors import OmniSyncError
from ..io.files import atomic_output
from .config import CodecSpec, DiTConfig
from .dit import OmniSyncDiT
from .unet import OmniSyncUNet, UNetConfig

METADATA_KEY = "omnisync"
FORMAT_VERSION = 1
# ComfyUI saves diffusion models with this prefix; the original Wan release has none.
WAN_KEY_PREFIXES = ("model.diffusion_model.", "diffusion_model.")
# Parameters Wan 2.1 does not have: they keep their initial values when starting from Wan.
OMNISYNC_ONLY = ("audio_embedding.", "audio_cross_attn.", "norm_audio.")
# Wan parameters a model without a text branch (use_text=False) does not have.
TEXT_ONLY = ("text_embedding.", "cross_attn.", "norm3.")
PATCH_WEIGHT = "patch_embedding.weight"
# The networks a checkpoint may describe: metadata "arch" -> (config class, model class).
ARCHITECTURES = {"dit": (DiTConfig, OmniSyncDiT), "unet": (UNetConfig, OmniSyncUNet)}


def arch_of(config) -> str:
    """The ``ARCHITECTURES`` name of a model config."""
    for name, (config_cls, _) in ARCHITECTURES.items():
        if isinstance(config, config_cls):
            return name
    raise OmniSyncError(f"not an OmniSync model config: {type(config).__name__}.")
CONVERT_HINT = ('convert it once, from a source you trust: python -c "import torch; from safetensors.torch '
                "import save_file; sd = torch.load('IN.pt', map_location='cpu', weights_only=True); "
                "save_file({k: v.contiguous() for k, v in sd.items()}, 'OUT.safetensors')\"")


# -- save ------------------------------------------------------------------------------------------

def save_checkpoint(path: str, model: torch.nn.Module, codec: Union[CodecSpec, Mapping[str, Any]],
                    audio: Optional[Mapping[str, Any]], train: Optional[Mapping[str, Any]] = None,
                    sampling: Optional[Mapping[str, Any]] = None) -> str:
    """Write ``model``'s weights and the metadata needed to use them to one ``.safetensors`` file.

    codec: the latent space the model works in (its latent_channels must match the model).
    audio: the AudioFeatureSpec dict of the audio tokens (token dim num_layers·dim must equal the
        model's audio_dim), or None for a model without an audio branch.
    train: optional training config dict, stored for reference.
    sampling: optional sampling options the model was tuned for (e.g. ``{"num_steps": 8}``); front ends
        use them where the user leaves a setting on "auto".
    The file is written next to ``path`` and renamed into place, so a crash never leaves half a file.
    """
    cfg = getattr(model, "config", None)
    if not isinstance(cfg, (DiTConfig, UNetConfig)):
        raise OmniSyncError(f"save_checkpoint needs an OmniSyncDiT or OmniSyncUNet (unwrap DDP/FSDP first), "
                            f"got {type(model).__name__}.")
    codec_d = (codec if isinstance(codec, CodecSpec) else CodecSpec.from_dict(codec)).to_dict()
    if codec_d["latent_channels"] != cfg.latent_channels:
        raise OmniSyncError(f"codec spec gives {codec_d['latent_channels']} latent channels but the model has "
                            f"{cfg.latent_channels}; save with the codec the model was trained with.")
    audio_d = dict(audio) if audio is not None else None
    if cfg.audio_dim and audio_d is None:
        raise OmniSyncError(f"the model has an audio branch (audio_dim={cfg.audio_dim}); pass the AudioFeatureSpec "
                            "dict of its audio tokens as audio=.")
    if audio_d is not None and "num_layers" in audio_d and "dim" in audio_d:
        token_dim = int(audio_d["num_layers"]) * int(audio_d["dim"])
        if token_dim != cfg.audio_dim:
            raise OmniSyncError(f"audio spec gives {token_dim}-dim tokens ({audio_d['num_layers']} × {audio_d['dim']}) "
                                f"but the model's audio_dim is {cfg.audio_dim}; pass the spec it was trained with.")
    meta: Dict[str, Any] = {"format": FORMAT_VERSION, "arch": arch_of(cfg), "model": cfg.to_dict(),
                            "codec": codec_d, "audio": audio_d}
    if sampling is not None:
        meta["sampling"] = dict(sampling)
    if train is not None:
        meta["train"] = dict(train)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with atomic_output(path) as part:
        save_file(tensors, part, metadata={METADATA_KEY: json.dumps(meta)})
    return path


def update_metadata(path: str, **entries: Any) -> str:
    """Set top-level OmniSync metadata ``entries`` of an existing checkpoint (weights unchanged), atomically.

    Used to attach facts measured after training, e.g. ``domain=`` (:class:`omnisync_core.image.domain.DomainCheck`
    as a dict, written by ``benchmarks/domain_check.py``)."""
    meta = read_metadata(path)
    meta.update(entries)
    tensors = load_file(path)
    with atomic_output(path) as part:
        save_file(tensors, part, metadata={METADATA_KEY: json.dumps(meta)})
        shutil.copymode(path, part)  # safetensors creates the file private; keep the checkpoint's permissions
    return path


# -- read ------------------------------------------------------------------------------------------

def _looks_like_pickle(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    if head[8:9] == b"{":  # safetensors: an 8-byte header length, then the JSON header (its low byte may be 0x80)
        return False
    # torch.save zip archives start with "PK"; legacy pickles with protocol byte 0x80
    return head[:2] == b"PK" or head[:1] == b"\x80"


def _open(path: str):
    """safe_open ``path`` or raise an OmniSyncError that names the file and the fix."""
    if not os.path.isfile(path):
        raise OmniSyncError(f"checkpoint {path!r} not found; check the path (put OmniSync models in "
                            "ComfyUI/models/omnisync/ or pass the full path).")
    try:
        return safe_open(path, framework="pt", device="cpu")
    except Exception as exc:  # safetensors raises its own error types for a bad header
        if _looks_like_pickle(path) or path.endswith((".pt", ".pth", ".ckpt", ".bin")):
            raise OmniSyncError(
                f"{path!r} is a PyTorch pickle (.pt/.ckpt), not a safetensors file. OmniSync only loads "
                f"safetensors, because unpickling can run code; {CONVERT_HINT}."
            ) from None
        raise OmniSyncError(f"{path!r} is not a readable safetensors file ({exc}); re-download or re-export it.") from None


def read_metadata(path: str) -> Dict[str, Any]:
    """The ``"omnisync"`` metadata of a checkpoint as a dict (format, model, codec, audio, train)."""
    with _open(path) as f:
        raw = (f.metadata() or {}).get(METADATA_KEY)
    if raw is None:
        raise OmniSyncError(
            f"{path!r} has no OmniSync metadata: it looks like a plain Wan 2.1 (or other) checkpoint. Start a "
            "model from it with omnisync_core.model.checkpoint.load_wan_state_dict (or 'init_from' in the "
            "training config), then load the OmniSync checkpoint that training exports."
        )
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise OmniSyncError(f"{path!r} has corrupt OmniSync metadata ({exc}); re-export the checkpoint.") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION or "model" not in meta:
        raise OmniSyncError(f"{path!r} has OmniSync metadata format {meta.get('format') if isinstance(meta, dict) else '?'}, "
                            f"this version reads format {FORMAT_VERSION}; update the plugin or re-export the file.")
    return meta


FLOAT_LABELS = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")  # safetensors dtypes a float weight may have
FP8_DTYPES = tuple(getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, n))


def _checkable(t: torch.Tensor) -> torch.Tensor:
    """fp8 has few kernels (isfinite, any): checked through float16, which holds every fp8 value exactly."""
    return t.to(torch.float16) if t.dtype in FP8_DTYPES else t


class WeightChecks:
    """The checks every weight of a checkpoint passes at load, before any compute: a floating-point weight
    is stored as a floating-point dtype (a ``U16`` or ``I64`` label on it is a file edited or mislabelled),
    holds only finite values (NaN/inf, also after converting to the load dtype), and the weight matrices
    (≥ 2 dimensions) are not all zero (an emptied export: the network would compute a constant). Each
    refusal is one line naming the file, the weight and the fix."""

    def __init__(self, path: str):
        self.path, self.matrices, self.zero_matrices = path, 0, 0

    def label(self, key: str, label: str, floating: bool = True) -> None:
        if floating and label not in FLOAT_LABELS:
            raise OmniSyncError(f"{self.path!r}: weight {key!r} is stored as {label}, not a floating-point type "
                                f"({'/'.join(FLOAT_LABELS)}); the file was edited or mislabelled — re-export or "
                                "re-download it.")

    def values(self, key: str, t: torch.Tensor, loaded: Optional[torch.Tensor] = None) -> None:
        """``t``: the tensor as stored; ``loaded``: after the conversion to the load dtype (if any)."""
        if not t.is_floating_point():
            return
        t = _checkable(t)
        loaded = None if loaded is None else _checkable(loaded)
        if not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise OmniSyncError(f"{self.path!r}: weight {key!r} holds {bad} NaN or infinite values of {t.numel()}; the "
                                "checkpoint is broken (a diverged training run or a bad conversion) — use an "
                                "earlier or re-downloaded checkpoint.")
        if loaded is not None and loaded.dtype != t.dtype and not bool(torch.isfinite(loaded).all()):
            raise OmniSyncError(f"{self.path!r}: weight {key!r} overflows {loaded.dtype} (largest |value| "
                                f"{float(t.abs().max()):.3g}); load it in bfloat16 or float32 instead.")
        if t.ndim >= 2:
            self.matrices += 1
            self.zero_matrices += int(not bool(t.any()))

    def done(self) -> None:
        if self.matrices and self.zero_matrices == self.matrices:
            raise OmniSyncError(f"{self.path!r}: all {self.matrices} weight matrices are zero, so the network computes "
                                "a constant and cannot lip-sync; the file is an empty or wiped export — use a trained "
                                "checkpoint.")


def _key_list(keys: Iterable[str], limit: int = 5) -> str:
    keys = sorted(keys)
    more = f" (and {len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_checkpoint(path: str, device="cpu", dtype: Optional[torch.dtype] = None,
                    operations=None) -> Tuple[torch.nn.Module, Dict[str, Any]]:
    """Rebuild the model a checkpoint describes and load its weights.

    Returns ``(model in eval mode on device, metadata dict)``; ``dtype`` converts floating-point
    weights (None keeps the stored dtype). Weights that cannot work (:class:`WeightChecks`: NaN/inf, all
    zero, a dtype label that is not floating point) are refused here, before any compute.
    operations: where the network's layers come from (None: ``torch.nn``); a host passes its own, as ComfyUI's
        ``comfy.ops`` layers that cast their weights per call (see ``operations`` in :class:`OmniSyncDiT`).
    """
    meta = read_metadata(path)
    arch = meta.get("arch", "dit")
    if arch not in ARCHITECTURES:
        raise OmniSyncError(f"{path!r} describes a {arch!r} network; this version knows {sorted(ARCHITECTURES)} — "
                            "update the plugin.")
    config_cls, model_cls = ARCHITECTURES[arch]
    try:
        cfg = config_cls.from_dict(meta["model"])
    except OmniSyncError as exc:
        raise OmniSyncError(f"{path!r}: {exc}") from None
    with torch.device("meta"):  # a weightless skeleton: the file's tensors are assigned below, never copied
        model = model_cls(cfg, operations=torch.nn if operations is None else operations)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    floating = {k: v.is_floating_point() for k, v in model.state_dict().items()}
    checks = WeightChecks(path)
    with _open(path) as f:
        stored = set(f.keys())
        missing, unexpected = set(expected) - stored, stored - set(expected)
        if missing:
            raise OmniSyncError(f"{path!r} lacks weights its own metadata requires: {_key_list(missing)}; "
                                "the file is truncated or was edited — re-export it.")
        if unexpected:
            raise OmniSyncError(f"{path!r} holds weights its metadata does not describe: {_key_list(unexpected)}; "
                                "the file was edited or mixed with another model — re-export it.")
        state = {}
        for key in expected:
            part = f.get_slice(key)
            checks.label(key, part.get_dtype(), floating[key])
            shape = tuple(part.get_shape())
            if shape != expected[key]:
                raise OmniSyncError(f"{path!r}: weight {key!r} has shape {shape} but the metadata's model config "
                                    f"needs {expected[key]}; the metadata and weights disagree — re-export it.")
            stored = t = f.get_tensor(key)
            if dtype is not None and t.is_floating_point():
                t = t.to(dtype)
            checks.values(key, stored, t)
            t = t.to(device)
            # a fresh allocation rather than the reader's buffer: with it, CPU outputs match the
            # saved model bit for bit (observed: the reader's buffers gave 1e-7 differences)
            state[key] = t.clone() if t.device.type == "cpu" else t
    checks.done()
    model.load_state_dict(state, strict=True, assign=True)
    model.checkpoint_path = path  # named by the sampler if the network ever returns NaN/inf
    return model.eval(), meta


# -- start from Wan 2.1 ----------------------------------------------------------------------------

def _strip_prefix(key: str) -> str:
    for prefix in WAN_KEY_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def _is_omnisync_only(key: str) -> bool:
    return key.startswith(OMNISYNC_ONLY) or any(f".{p}" in key for p in OMNISYNC_ONLY)


def _is_text_only(key: str) -> bool:
    return key.startswith(TEXT_ONLY) or any(f".{p}" in key for p in TEXT_ONLY)


def load_wan_state_dict(model: OmniSyncDiT, state_dict_or_path: Union[str, Mapping[str, torch.Tensor]],
                        strict_shapes: bool = True) -> Dict[str, Any]:
    """Copy Wan 2.1 T2V weights into ``model`` in place; OmniSync-only parameters keep their init.

    ``patch_embedding.weight`` of Wan shape (D, C, pt, ph, pw) fills the first C input channels of a
    source-conditioned model; the source channels are set to zero so the model starts as Wan.
    Keys may carry ComfyUI's ``model.diffusion_model.`` prefix. With ``strict_shapes=False`` a weight
    whose shape differs is skipped (and reported) instead of raising.

    Returns a report: {"loaded": [...], "zero_filled": [...], "new": [...] (kept init),
    "ignored": [...] (text weights of a model without text), "shape_mismatch": [...]}.
    """
    name = state_dict_or_path if isinstance(state_dict_or_path, str) else "the Wan state dict"
    if isinstance(state_dict_or_path, str):
        with _open(state_dict_or_path) as f:
            source = {_strip_prefix(k): f.get_tensor(k) for k in f.keys()}
    else:
        source = {_strip_prefix(k): v for k, v in state_dict_or_path.items()}
    cfg = model.config
    params = model.state_dict(keep_vars=True)  # the live parameters, written in place below
    report: Dict[str, Any] = {"loaded": [], "zero_filled": [], "new": [], "ignored": [], "shape_mismatch": []}

    unexpected = [k for k in source if k not in params and not (not cfg.use_text and _is_text_only(k))]
    if unexpected:
        raise OmniSyncError(
            f"{name}: weights {_key_list(unexpected)} have no place in this model ({cfg.num_layers} blocks, dim "
            f"{cfg.dim}); pass a Wan 2.1 T2V checkpoint of the same size (e.g. T2V-1.3B for preset 'wan2.1-1.3b')."
        )
    missing = [k for k in params if k not in source and not _is_omnisync_only(k)]
    if missing:
        raise OmniSyncError(f"{name} lacks Wan weights {_key_list(missing)}; pass a complete Wan 2.1 T2V "
                            "diffusion-model file (not a VAE, text encoder or LoRA).")

    with torch.no_grad():
        for key, value in source.items():
            if key not in params:
                report["ignored"].append(key)
                continue
            target = params[key]
            want, got = tuple(target.shape), tuple(value.shape)
            widened = (key == PATCH_WEIGHT and cfg.source_condition and len(got) == 5
                       and got[0] == want[0] and got[1] == cfg.latent_channels and got[2:] == want[2:])
            if got != want and not widened:
                if strict_shapes:
                    raise OmniSyncError(
                        f"{name}: weight {key!r} has shape {got} but this model needs {want}; the checkpoint is "
                        "a different Wan size or variant — pick the matching preset or pass strict_shapes=False."
                    )
                report["shape_mismatch"].append(f"{key}: {got} vs {want}")
                continue
            if widened:
                C = cfg.latent_channels
                target[:, :C].copy_(value)
                target[:, C:].zero_()
                report["zero_filled"].append(f"{key}[:, {C}:{2 * C}] (source channels)")
            else:
                target.copy_(value)
            report["loaded"].append(key)
    report["new"] = [k for k in params if k not in source]
    return report
