"""Lip-sync speed and memory on this machine: prints numbers, asserts nothing.

    python benchmarks/sync_speed.py --model models/omnisync_small_pixel128.safetensors --window 8
    python benchmarks/sync_speed.py --size 32 --window 4  # the tests' tiny random model (pixel patch 2:
                                                          # 128² would be 1024 tokens per frame)

Times the whole pipeline call (audio features, windows, sampling, decode) for a synthetic clip and
reports seconds, seconds per video second, Euler steps, forward passes and peak resident memory.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main() -> None:
    from omnisync_core.cli import load_runtime
    from omnisync_core.pipeline import OmniSyncPipeline, SyncOptions
    from tiny import make_frames, make_model_checkpoint, make_speech_like, make_whisper_folder

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="checkpoint (default: a tiny random model built here)")
    p.add_argument("--whisper", help="Whisper (default: a tiny random one with --model unset, else bundled tiny.en)")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--tau", type=float, default=0.92)
    p.add_argument("--window", type=int, default=8, help="latent frames per window")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    tmp = tempfile.mkdtemp()
    model_path = args.model or make_model_checkpoint(tmp)
    whisper = args.whisper or (None if args.model else make_whisper_folder(tmp))
    t0 = time.perf_counter()
    model, codec, encoder, _ = load_runtime(model_path, whisper, "cpu", torch.float32)
    load_s = time.perf_counter() - t0
    T = int(round(args.seconds * args.fps))
    frames = make_frames(T=T, H=args.size, W=args.size)
    wave = make_speech_like(args.seconds)
    pipe = OmniSyncPipeline(model, codec, encoder)
    opts = SyncOptions(tau=args.tau, num_steps=args.steps, mouth=(0.5, 0.62), window=args.window,
                       length_mode="follow_video")
    t0 = time.perf_counter()
    res = pipe(frames, args.fps, wave, 16000, opts)
    run_s = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"model: {os.path.basename(model_path)} ({params / 1e6:.2f} M parameters), threads {args.threads}")
    print(f"clip: {T} frames of {args.size}x{args.size} at {args.fps:g} fps ({args.seconds:g} s), "
          f"windows {len(res.report['windows'])}, Euler steps {res.report['steps']}")
    print(f"load {load_s:.2f} s, lip-sync {run_s:.2f} s = {run_s / args.seconds:.2f} s per video second, "
          f"peak RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
