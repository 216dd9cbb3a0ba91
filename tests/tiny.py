"""Tiny components the tests build themselves: a random OmniSync checkpoint and a random Whisper."""

from __future__ import annotations

import math
import os

import numpy as np
import torch

WHISPER_D_MODEL = 32
WHISPER_LAYERS = 2  # hidden states = layers + 1 (embedding output)
AUDIO_TOKEN_DIM = (WHISPER_LAYERS + 1) * WHISPER_D_MODEL
PIXEL_PATCH = 2


def make_whisper_folder(root: str) -> str:
    """A random tiny Whisper saved as a Hugging Face folder (config.json + model.safetensors)."""
    from transformers import WhisperConfig, WhisperModel

    torch.manual_seed(0)
    cfg = WhisperConfig(
        d_model=WHISPER_D_MODEL, encoder_layers=WHISPER_LAYERS, decoder_layers=1,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
        num_mel_bins=80, max_source_positions=1500, max_target_positions=32, vocab_size=64,
        pad_token_id=0, bos_token_id=0, eos_token_id=0, decoder_start_token_id=1,
    )
    path = os.path.join(root, "whisper-tiny-random")
    WhisperModel(cfg).save_pretrained(path, safe_serialization=True)
    return path


def make_model_checkpoint(root: str, use_text: bool = True, seed: int = 0) -> str:
    """A random tiny OmniSync DiT with a pixel codec (patch 2), saved as a self-describing file.

    The audio cross-attention output projections are randomised (not zero) so audio matters.
    """
    from omnisync_core.audio.features import AudioFeatureSpec
    from omnisync_core.model.checkpoint import save_checkpoint
    from omnisync_core.model.config import CodecSpec, preset
    from omnisync_core.model.dit import OmniSyncDiT

    torch.manual_seed(seed)
    cfg = preset("tiny", latent_channels=3 * PIXEL_PATCH ** 2, audio_dim=AUDIO_TOKEN_DIM, use_text=use_text)
    model = OmniSyncDiT(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "audio_cross_attn.o" in name or name.startswith("head.head"):
                p.normal_(0, 0.05)
    spec = AudioFeatureSpec(encoder="whisper-tiny-random", num_layers=WHISPER_LAYERS + 1, dim=WHISPER_D_MODEL)
    codec = CodecSpec(type="pixel", patch=PIXEL_PATCH, latent_channels=cfg.latent_channels,
                      temporal_factor=1, spatial_factor=PIXEL_PATCH)
    path = os.path.join(root, "tiny-omnisync.safetensors")
    save_checkpoint(path, model, codec=codec, audio=spec.to_dict())
    return path


def make_frames(T: int = 12, H: int = 32, W: int = 32, seed: int = 0) -> torch.Tensor:
    """(T, H, W, 3) float in [0, 1]: a smooth moving pattern (compresses well in mp4)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(3, generator=g)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, H), torch.linspace(0, 1, W), indexing="ij")
    frames = []
    for t in range(T):
        phase = 2 * math.pi * t / max(T, 1)
        img = torch.stack([0.5 + 0.4 * torch.sin(3 * xx + phase + 2 * c * base[c]) * torch.cos(2 * yy) for c in range(3)], -1)
        frames.append(img)
    return torch.stack(frames).clamp(0, 1)


def make_speech_like(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """A voiced, syllable-modulated tone (not silence, not white noise): (N,) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 140 + 20 * np.sin(2 * np.pi * 0.7 * t)
    voiced = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / sr) / k for k in range(1, 6))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)))
    return (0.3 * voiced * envelope + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
