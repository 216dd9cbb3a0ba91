"""Speed levers side by side in one run: this project's defaults against today's ("before") and a naive
sampler, with and without each lever; prints numbers, asserts nothing.

    nice python benchmarks/speed_levers.py                      # the demo pair (bundled model and sample)
    nice python benchmarks/speed_levers.py --seconds 8 --rows before,default

Rows (each one pipeline call on the same clip, same process, in turn):

* ``naive``: τ = 1 (from pure noise), a 50-step schedule, plain CFG (ω = 3 everywhere, no decay, both
  passes every step), fp32, the whole clip in one window.
* ``before``: what ``sync``/``demo`` ran before these levers: fp32, contiguous conv weights, DS-CFG both
  passes at every step (cfg_cutoff 0); the checkpoint's steps, τ and windows.
* ``+bf16``, ``+channels_last``, ``+cfg_cutoff X``: ``before`` with one lever;
* ``all levers, cfg_cutoff X``: bf16 where native, channels-last and cfg_cutoff X (``--cfg-cutoffs``; default:
  the library's default cfg_cutoff, i.e. what runs today).

For each (the fastest of ``--repeat`` rounds over all rows, after one untimed warm-up call): CPU-seconds (all threads,
``time.process_time``) and wall seconds per video second, forward
passes, the ratio to ``before`` and to ``naive``, and the largest pixel difference from ``before``
(0–255). There is no GPU on the machine this was written on; with one, pass ``--device cuda`` and the
same rows report GPU wall seconds (no MFU: that needs a FLOP count of the network, see docs/DESIGN.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

ROWS = ("naive", "before", "+bf16", "+channels_last", "+cfg_cutoff", "all")


def main() -> None:
    from omnisync_core.api import (
        BUNDLED_MODEL,
        BUNDLED_SPEECH,
        BUNDLED_VIDEO,
        OmniSyncPipeline,
        load_runtime,
        resolve_options,
    )
    from omnisync_core.io.audio import read_audio
    from omnisync_core.io.video import read_video
    from omnisync_core.model.checkpoint import load_checkpoint
    from omnisync_core.model.precision import auto_dtype, prepare_for_inference
    from omnisync_core.sampling.guidance import GuidanceConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=BUNDLED_MODEL)
    p.add_argument("--whisper", help="Whisper (default: the bundled tiny.en)")
    p.add_argument("--video", default=BUNDLED_VIDEO)
    p.add_argument("--audio", default=BUNDLED_SPEECH)
    p.add_argument("--seconds", type=float, default=0.0, help="speech tiled or cut to this length (0: as it is)")
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {','.join(ROWS)}")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cfg-cutoffs", default="", help="comma-separated cfg_cutoff values for the cutoff rows "
                   "(default: the library's default)")
    p.add_argument("--repeat", type=int, default=2, help="time each row this many times and keep the fastest "
                   "(after one untimed warm-up call, so no row pays the process's first-call costs)")
    args = p.parse_args()
    rows = args.rows.split(",")
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        sys.exit(f"unknown rows {unknown}; choose from {ROWS}")

    _, codec, encoder, meta = load_runtime(args.model, args.whisper, args.device, torch.float32)
    frames, fps = read_video(args.video)
    wave, sr = read_audio(args.audio)
    if args.seconds:
        wave = wave.reshape(-1, wave.shape[-1]).mean(0)
        n = int(round(args.seconds * sr))
        wave = wave.repeat(n // wave.shape[0] + 1)[:n]
    default_opts, _ = resolve_options(meta)
    cutoffs = [float(c) for c in args.cfg_cutoffs.split(",") if c] or [default_opts.guidance.cfg_cutoff]
    before_guidance = GuidanceConfig(**{**default_opts.guidance.to_dict(), "cfg_cutoff": 0.0})
    before_opts, _ = resolve_options(meta, guidance=before_guidance)
    naive_opts, _ = resolve_options(meta, tau=1.0, num_steps=50, window=0,
                                    guidance=GuidanceConfig(omega_base=3.0, omega_peak=3.0, gamma=0.0))
    fast = auto_dtype(args.device)

    def model(dtype, channels_last):
        m, _ = load_checkpoint(args.model, device=args.device, dtype=dtype)
        return prepare_for_inference(m, args.device) if channels_last else m

    def cut(c):
        return resolve_options(meta, guidance=GuidanceConfig(**{**default_opts.guidance.to_dict(), "cfg_cutoff": c}))[0]

    setups = {
        "naive": (torch.float32, False, naive_opts),
        "before": (torch.float32, False, before_opts),
        "+bf16": (fast, False, before_opts),
        "+channels_last": (torch.float32, True, before_opts),
    }
    order = [r for r in rows if r in setups]
    for c in cutoffs:
        if "+cfg_cutoff" in rows:
            setups[f"+cfg_cutoff {c:g}"] = (torch.float32, False, cut(c))
            order.append(f"+cfg_cutoff {c:g}")
    for c in cutoffs:
        if "all" in rows:
            setups[f"all levers, cfg_cutoff {c:g}"] = (fast, True, cut(c))
            order.append(f"all levers, cfg_cutoff {c:g}")
    rows = order[1:] + order[:1] if order and order[0] == "naive" else order  # naive (the slowest) last
    print(f"model {os.path.basename(args.model)}, device {args.device}, threads {torch.get_num_threads()}, "
          f"bf16 where native: {fast}; default cfg_cutoff {default_opts.guidance.cfg_cutoff:g}, "
          f"{default_opts.num_steps}-step schedule at τ {default_opts.tau:g}, window {default_opts.window} "
          f"overlap {default_opts.overlap}")
    results = {}
    header = False
    warm = OmniSyncPipeline(model(fast, True), codec, encoder, device=args.device, dtype=fast)
    warm(frames[:16], fps, wave[..., : int(16 / fps * sr)], sr, default_opts)  # untimed: allocator, oneDNN, Whisper
    pipes = {name: OmniSyncPipeline(model(setups[name][0], setups[name][1]), codec, encoder, device=args.device,
                                    dtype=setups[name][0]) for name in rows}
    runs = {name: [] for name in rows}
    outputs = {}
    for _ in range(max(1, args.repeat)):  # rounds over all rows: drifts of the machine reach every row alike
        for name in rows:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            outputs[name] = pipes[name](frames, fps, wave, sr, setups[name][2])
            if args.device != "cpu":
                torch.cuda.synchronize()
            runs[name].append((time.process_time() - cpu0, time.perf_counter() - wall0))
    for name in rows:
        res = outputs[name]
        results[name] = (min(r[0] for r in runs[name]), min(r[1] for r in runs[name]), res)
        T = res.frames.shape[0]
        video_s = T / fps
        if not header:
            print(f"clip: {T} frames at {fps:g} fps = {video_s:.2f} s of {frames.shape[2]}x{frames.shape[1]}")
            print("| row | CPU s / video s | wall s / video s | model calls (with uncond) | CPU × vs before "
                  "| max pixel diff vs before (0–255) |")
            print("|---|---:|---:|---:|---:|---:|")
            header = True
        cpu, wall = results[name][:2]
        vs = f"{results['before'][0] / cpu:.2f}" if "before" in results else "-"
        diff = (f"{float((res.frames - results['before'][2].frames).abs().max()) * 255:.1f}"
                if "before" in results and res.frames.shape == results["before"][2].frames.shape else "-")
        print(f"| {name} | {cpu / video_s:.2f} | {wall / video_s:.2f} | {res.report['forward_passes']} "
              f"({res.report['uncond_passes']}) | {vs} | {diff} |", flush=True)
    if "naive" in results:
        print("CPU × vs naive: " + ", ".join(f"{name} {results['naive'][0] / results[name][0]:.2f}"
                                            for name in rows if name != "naive"))

if __name__ == "__main__":
    main()
