"""Lip-sync speed and memory on this machine: prints numbers, asserts nothing.

    python benchmarks/sync_speed.py                          # the bundled model and sample, its own sampling
    python benchmarks/sync_speed.py --seconds 8 --steps 50 --window 0
    python benchmarks/sync_speed.py --model path/to/model.safetensors --whisper path/to/whisper

Times the whole pipeline call (audio features, windows, sampling, decode) on the bundled sample clip,
looped to ``--seconds`` of the bundled speech (tiled), and reports seconds, seconds per video second,
Euler steps, forward passes and peak resident memory. Sampling options left on ``auto`` come from the
checkpoint's recommendation, else the library defaults (``omnisync_core.sampling.options``).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)


def main() -> None:
    from omnisync_core.api import (
        AUTO,
        BUNDLED_MODEL,
        BUNDLED_SPEECH,
        BUNDLED_VIDEO,
        OmniSyncPipeline,
        load_runtime,
        resolve_options,
    )
    from omnisync_core.cli.common import auto_or
    from omnisync_core.io.audio import read_audio
    from omnisync_core.io.video import read_video

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=BUNDLED_MODEL, help="checkpoint (default: the bundled model)")
    p.add_argument("--whisper", help="Whisper (default: the bundled tiny.en)")
    p.add_argument("--video", default=BUNDLED_VIDEO, help="source clip, looped to --seconds")
    p.add_argument("--audio", default=BUNDLED_SPEECH, help="speech, tiled or cut to --seconds")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--steps", type=auto_or(int), default=AUTO)
    p.add_argument("--tau", type=auto_or(float), default=AUTO)
    p.add_argument("--window", type=auto_or(int), default=AUTO, help="latent frames per window (0 = whole clip)")
    p.add_argument("--overlap", type=auto_or(int), default=AUTO)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    model, codec, encoder, meta = load_runtime(args.model, args.whisper, "cpu", torch.float32)
    load_s = time.perf_counter() - t0
    frames, fps = read_video(args.video)
    speech, sr = read_audio(args.audio)
    speech = speech.reshape(-1, speech.shape[-1]).mean(0)  # mono
    n = int(round(args.seconds * sr))
    wave = speech.repeat(n // speech.shape[0] + 1)[:n]
    opts, chosen = resolve_options(meta, num_steps=args.steps, tau=args.tau, window=args.window, overlap=args.overlap)
    pipe = OmniSyncPipeline(model, codec, encoder)
    t0 = time.perf_counter()
    res = pipe(frames, fps, wave, sr, opts)
    run_s = time.perf_counter() - t0
    params = sum(q.numel() for q in model.parameters())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    T, H, W = res.frames.shape[:3]
    print(f"model: {os.path.basename(args.model)} ({params / 1e6:.2f} M parameters), threads {args.threads}")
    print(f"options: {opts.num_steps}-step schedule at τ {opts.tau:g}, window {opts.window} overlap {opts.overlap} "
          f"(from the checkpoint: {', '.join(k for k, v in chosen['from'].items() if v == 'checkpoint') or 'none'})")
    print(f"clip: {T} frames of {W}x{H} at {fps:g} fps ({T / fps:.2f} s), windows {len(res.report['windows'])}, "
          f"Euler steps {res.report['steps']}, forward passes {res.report['forward_passes']}")
    print(f"load {load_s:.2f} s, lip-sync {run_s:.2f} s = {run_s / (T / fps):.2f} s per video second, "
          f"peak RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
