"""How long a cancel (Ctrl-C, ComfyUI /interrupt) can wait during one whole-clip sampling step.

Runs the first step of the bundled U-Net on a whole-clip window of FRAMES frames of 128² (latents
64²) twice: with the sampler's frame chunks (``sampler.CHUNK_LATENT_PIXELS``) and as one forward
call, and prints the longest gap between two cancel checks in each. Ctrl-C lands between two torch
ops, so with one call the longest single convolution bounds it.

    python benchmarks/cancel_latency.py [FRAMES]
"""

import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from omnisync_core.api import BUNDLED_MODEL
from omnisync_core.model.checkpoint import load_checkpoint
from omnisync_core.sampling import sampler
from omnisync_core.sampling.guidance import GuidanceConfig


def longest_gap(model, frames: int, chunk_pixels: int) -> float:
    cfg = model.config
    x = torch.rand(cfg.latent_channels, frames, 64, 64)
    tokens = torch.rand(frames, cfg.audio_tokens, cfg.audio_dim)
    checks = []
    sampler.CHUNK_LATENT_PIXELS = chunk_pixels
    sigmas = torch.tensor([0.92, 0.8])
    t0 = time.perf_counter()
    sampler.denoise(model, x, x.clone(), tokens, None, sigmas, GuidanceConfig(), "auto",
                    cancel=lambda: checks.append(time.perf_counter()) and False)
    times = [t0] + checks + [time.perf_counter()]
    return max(b - a for a, b in zip(times, times[1:])), times[-1] - t0


if __name__ == "__main__":
    frames = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    torch.set_num_threads(max(1, (os.cpu_count() or 2)))
    model, _ = load_checkpoint(BUNDLED_MODEL)
    default = sampler.CHUNK_LATENT_PIXELS
    for name, pixels in (("chunked", default), ("one call", 1 << 40)):
        gap, total = longest_gap(model, frames, pixels)
        print(f"{frames} frames of 128², one step, {name}: longest wait for a cancel {gap:.2f} s (step {total:.2f} s)")
