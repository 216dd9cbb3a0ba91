"""Memory of lip-syncing frames already in memory (a ComfyUI IMAGE batch): prints numbers, asserts nothing.

    nice python benchmarks/memory_nodes.py                    # 1,000 frames of 128², tiny U-Net
    nice python benchmarks/memory_nodes.py --frames 250 --size 256

The OmniSync Lip Sync node and the Python API both run ``OmniSyncPipeline.__call__``: the one engine
(``OmniSyncPipeline.stream``) window by window over the IMAGE batch with a sink that collects the output. It
runs in a fresh process; the peak resident memory during the call above the memory before it (input frames
and model already loaded) is printed in MB and in float32 copies of the clip.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(key)


def one(path: str, model: str, frames_n: int, size: int) -> None:
    from omnisync_core.api import BUNDLED_SPEECH, OmniSyncPipeline, load_runtime, resolve_options
    from omnisync_core.io.audio import read_audio

    net, codec, enc, meta = load_runtime(model, dtype="fp32")
    pipe = OmniSyncPipeline(net, codec, enc, meta=meta)
    opts, _ = resolve_options(meta, mouth=(0.5, 0.62))
    wave, sr = read_audio(BUNDLED_SPEECH)
    seconds = frames_n / 25.0
    wave = wave.mean(0).repeat(int(seconds * sr / wave.shape[-1]) + 1)[: int(seconds * sr)]
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(frames_n, size, size, 3, generator=g)  # the IMAGE batch ComfyUI hands the node
    pipe(frames[:8], 25.0, wave[: int(8 / 25 * sr)], sr, opts)  # warm-up: allocator, Whisper
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident size
    before = status_mb("VmRSS")
    res = pipe(frames, 25.0, wave, sr, opts)
    peak = status_mb("VmHWM")
    clip_mb = frames.numel() * 4 / 2 ** 20
    print(repr((peak - before, clip_mb, tuple(res.frames.shape))))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=1000)
    p.add_argument("--size", type=int, default=128)
    args = p.parse_args()
    import ast

    from memory_length import make_tiny_checkpoint

    work = tempfile.mkdtemp(prefix="omnisync-memnodes-")
    model = make_tiny_checkpoint(os.path.join(work, "tiny_unet.safetensors"))
    print(f"Peak memory above the input, {args.frames} frames of {args.size}² (float32 IMAGE batch), tiny U-Net, "
          "fp32; each path a fresh process")
    print("| path | peak above the input (MB) | float32 copies of the clip | output |")
    print("|---|---:|---:|---|", flush=True)
    for path in ("OmniSyncPipeline.__call__ (the API and the Lip Sync node)",):
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", path, model, str(args.frames),
                               str(args.size)], capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"| {path} | failed: {proc.stderr.strip().splitlines()[-1:]} | | |", flush=True)
            continue
        extra, clip_mb, shape = ast.literal_eval(proc.stdout.strip().splitlines()[-1])
        print(f"| {path} | {extra:.0f} | {extra / clip_mb:.2f} | {shape} |", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        one(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
