"""Progressive noise initialisation (OmniSync Eq. 5) with noise that is seeded per latent frame."""

from __future__ import annotations

import torch

from ..errors import OmniSyncError
from .schedule import FlowMatchSchedule

SEED_STRIDE = 1_000_003  # frame f of seed s draws from generator seed s·SEED_STRIDE + f (a prime: no overlaps for f < stride)
SEED_MODULUS = 2 ** 63 - 1  # torch.Generator seeds are 64-bit signed


def frame_noise(shape, seed: int, frame_offset: int = 0) -> torch.Tensor:
    """Standard normal noise (C, F, h, w) where latent frame f is drawn from its own seeded stream.

    Frame ``frame_offset + f`` always gets the same noise for a given seed, whatever window or clip
    length it is drawn in, so overlapping windows agree and a longer clip keeps the start's noise.
    """
    C, F, h, w = shape
    frames = []
    for f in range(F):
        g = torch.Generator().manual_seed((int(seed) * SEED_STRIDE + frame_offset + f) % SEED_MODULUS)
        frames.append(torch.randn(C, h, w, generator=g))
    return torch.stack(frames, 1)  # (C, F, h, w)


def progressive_noise_init(source_latents: torch.Tensor, tau: float, seed: int = 0,
                           frame_offset: int = 0) -> torch.Tensor:
    """Eq. 5: ``x_init = (1 − τ)·V_source + τ·ε``, the flow-matching path at σ = τ.

    Args:
        source_latents: (C, F, h, w) latents of the source clip.
        tau: τ ∈ (0, 1]; the paper uses 0.92. τ = 1 is the plain start from noise.
        seed: noise seed; the noise of latent frame f depends only on (seed, frame_offset + f).
        frame_offset: index of the first latent frame within the whole clip (for windows).

    Returns:
        (C, F, h, w) in the dtype and on the device of ``source_latents``.
    """
    if not (isinstance(tau, (int, float)) and 0.0 < tau <= 1.0):
        raise OmniSyncError(f"tau must be in (0, 1] (0.92 in the paper; 1 = pure noise), got {tau!r}.")
    if source_latents.ndim != 4:
        raise OmniSyncError(f"source latents must be (C, F, h, w), got shape {tuple(source_latents.shape)}.")
    eps = frame_noise(source_latents.shape, seed, frame_offset).to(source_latents.device)
    return FlowMatchSchedule.noisy(source_latents.float(), eps, tau).to(source_latents.dtype)


def clip_noise(shape, seed: int) -> torch.Tensor:
    """Standard normal noise (C, F, h, w) drawn in one piece from a CPU generator seeded with ``seed``.

    This is X-Dub's draw (``torch.randn((1, C, F, h, w), generator=Generator("cpu").manual_seed(seed))``,
    the same for every 77-frame clip of a take), so a seed gives the reference implementation's noise.
    """
    g = torch.Generator("cpu").manual_seed(int(seed))
    return torch.randn((1, *shape), generator=g, dtype=torch.float32)[0]
