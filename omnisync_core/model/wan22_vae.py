"""Wan 2.2's video VAE (48 latent channels, 4× in time, 16× in space) as a :class:`~.codec.VAECodec`.

X-Dub's DiT works on Wan 2.2 latents normalised per channel, z = (μ − mean)/std, with the constants
below (``WanVideoVAE38`` of the reference code, also in diffusers' ``AutoencoderKLWan`` config of
Wan2.2-TI2V-5B). Any VAE object that speaks *raw* latents can be wrapped with :func:`wan22_codec`:
ComfyUI's ``comfy.sd.VAE`` (the nodes) or :class:`DiffusersWanVAE` (the CLI). diffusers is optional:
:func:`load_wan22_vae` says what to install when it is missing.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from ..errors import OmniSyncError
from .codec import VAECodec

WAN22_LATENT_CHANNELS = 48
WAN22_TEMPORAL_FACTOR = 4  # video frames per latent frame after the first
WAN22_SPATIAL_FACTOR = 16  # pixels per latent pixel, each side
WAN22_LATENTS_MEAN = (
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
)
WAN22_LATENTS_STD = (
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
    0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
    0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
    0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
)
DIFFUSERS_HINT = ("the CLI reads Wan 2.2's VAE through diffusers: `pip install diffusers` (≥ 0.35, for "
                  "AutoencoderKLWan), or use the ComfyUI nodes with ComfyUI's Load VAE")


def wan22_codec(vae: Any) -> VAECodec:
    """A VAE returning raw Wan 2.2 latents (``encode((T, H, W, 3) [0, 1]) -> (1, 48, F, h, w)``,
    ``decode((1, 48, F, h, w)) -> (1, T, H, W, 3) [0, 1]``) → the codec of X-Dub's normalised latents."""
    return VAECodec(vae, latent_channels=WAN22_LATENT_CHANNELS, temporal_factor=WAN22_TEMPORAL_FACTOR,
                    spatial_factor=WAN22_SPATIAL_FACTOR, latents_mean=WAN22_LATENTS_MEAN,
                    latents_std=WAN22_LATENTS_STD)


class DiffusersWanVAE:
    """diffusers' ``AutoencoderKLWan`` behind the raw-latent contract of :func:`wan22_codec`.

    Encoding takes the posterior mean (deterministic, as the reference does); decoding clamps to
    [−1, 1] (diffusers does) and maps to [0, 1]. ``vae``: an ``AutoencoderKLWan`` in eval mode.
    """

    def __init__(self, vae, device="cpu", dtype: torch.dtype = torch.float32):
        self.vae = vae.to(device=device, dtype=dtype).eval()
        self.device, self.dtype = torch.device(device), dtype

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(3, 0, 1, 2)[None].to(self.device, self.dtype) * 2 - 1  # (1, 3, T, H, W) in [-1, 1]
        return self.vae.encode(x).latent_dist.mode().float()  # (1, 48, F, h, w) raw

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        out = self.vae.decode(latents.to(self.device, self.dtype)).sample  # (1, 3, T, H, W) in [-1, 1]
        return ((out.float() + 1) / 2).permute(0, 2, 3, 4, 1)  # (1, T, H, W, 3)


def load_wan22_vae(path: str, device="cpu", dtype: torch.dtype = torch.float32) -> VAECodec:
    """A diffusers ``AutoencoderKLWan`` folder of Wan 2.2 (config.json + diffusion_pytorch_model.safetensors,
    e.g. the ``vae`` folder of Wan2.2-TI2V-5B-Diffusers) → the X-Dub codec. Nothing is downloaded."""
    if not os.path.isdir(path) or not os.path.isfile(os.path.join(path, "config.json")):
        raise OmniSyncError(f"Wan 2.2 VAE folder not found: {path!r}. Pass a diffusers AutoencoderKLWan folder "
                            "(config.json + diffusion_pytorch_model.safetensors), e.g. the 'vae' folder of "
                            "Wan2.2-TI2V-5B-Diffusers.")
    try:
        from diffusers import AutoencoderKLWan
    except ImportError:
        raise OmniSyncError(f"diffusers is not installed: {DIFFUSERS_HINT}.") from None
    with open(os.path.join(path, "config.json")) as f:
        z_dim = json.load(f).get("z_dim")
    if z_dim != WAN22_LATENT_CHANNELS:
        raise OmniSyncError(f"the VAE in {path!r} has {z_dim} latent channels; X-Dub needs Wan 2.2's VAE "
                            f"({WAN22_LATENT_CHANNELS}), not Wan 2.1's (16).")
    try:
        vae = AutoencoderKLWan.from_pretrained(path, local_files_only=True, use_safetensors=True,
                                               torch_dtype=dtype)
    except (OSError, ValueError, EnvironmentError) as exc:
        raise OmniSyncError(f"could not load the Wan 2.2 VAE from {path!r} ({exc}); the folder needs config.json "
                            "and diffusion_pytorch_model.safetensors.") from exc
    return wan22_codec(DiffusersWanVAE(vae, device, dtype))
