"""Peak memory of the CLI against clip length: prints numbers, asserts nothing.

    nice python benchmarks/memory_length.py                        # 25, 1,600 and 15,000 frames (10 min) at 64²
    nice python benchmarks/memory_length.py --frames 25 250 --compare /path/to/older/checkout

Writes a synthetic 64² clip (a moving pattern) and tiled speech of each length, a tiny random U-Net
checkpoint (so the long clips finish in minutes; the bundled Whisper tiny.en reads the speech), and
runs ``python -m omnisync_core sync`` on each in a fresh process, reporting its peak resident memory
(``ru_maxrss`` of the child) and CPU seconds. ``--compare`` runs the same commands in another checkout
(e.g. an export of an older commit) side by side, for lengths up to ``--compare-max-frames``.
"""

from __future__ import annotations

import argparse
import ast
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SIZE_PX = 64
FPS = 25.0


def make_tiny_checkpoint(path: str) -> str:
    from omnisync_core.model.checkpoint import read_metadata, save_checkpoint
    from omnisync_core.model.unet import OmniSyncUNet, UNetConfig
    from omnisync_core.api import BUNDLED_MODEL

    meta = read_metadata(BUNDLED_MODEL)  # the bundled model's codec and Whisper features, a tiny network
    torch.manual_seed(0)
    model = OmniSyncUNet(UNetConfig(latent_channels=12, channels=(8,), audio_dim=1920, audio_layers=5,
                                    audio_tokens=5, adapter_dim=8, freq_dim=8, mouth_params=0))
    return save_checkpoint(path, model, meta["codec"], meta["audio"],
                           sampling={"num_steps": 1, "tau": 0.92, "window": 16, "overlap": 0})


def make_clip(folder: str, frames: int) -> tuple:
    from omnisync_core.api import BUNDLED_SPEECH
    from omnisync_core.io.video import VideoWriter
    from omnisync_core.io.audio import read_audio, write_wav

    video, audio = os.path.join(folder, f"clip{frames}.mp4"), os.path.join(folder, f"speech{frames}.wav")
    if not os.path.exists(video):
        with VideoWriter(video, (SIZE_PX, SIZE_PX), FPS) as w:
            yy, xx = np.mgrid[0:SIZE_PX, 0:SIZE_PX]
            for start in range(0, frames, 250):
                t = np.arange(start, min(frames, start + 250))[:, None, None]
                v = 0.5 + 0.5 * np.sin((xx[None] + 2 * t) / 7.0) * np.cos((yy[None] - t) / 9.0)
                w.write(torch.from_numpy(np.stack([v, 1 - v, 0.5 * v], -1)).float())
        speech, sr = read_audio(BUNDLED_SPEECH)
        speech = speech.reshape(-1, speech.shape[-1]).mean(0)
        n = int(round(frames / FPS * sr))
        write_wav(audio, speech.repeat(n // speech.shape[0] + 1)[:n], sr)
    return video, audio


def run(checkout: str, model: str, video: str, audio: str, out: str) -> tuple:
    cmd = [sys.executable, "-m", "omnisync_core", "sync", "--video", video, "--audio", audio, "--model", model,
           "-o", out, "--quiet", "--dtype", "fp32"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=checkout, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        return None, None, wall, proc.stderr.strip().splitlines()[-1:]
    cpu = after.ru_utime + after.ru_stime
    return after.ru_maxrss / 1024, cpu, wall, None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, nargs="+", default=[250, 15000, 25, 1600], help="clip lengths, in run order")
    p.add_argument("--work", default=None, help="folder for the clips (default: a temp folder)")
    p.add_argument("--compare", help="another checkout to run side by side (e.g. an export of main before)")
    p.add_argument("--compare-max-frames", type=int, default=1600)
    args = p.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="omnisync-memory-")
    model = make_tiny_checkpoint(os.path.join(work, "tiny_unet.safetensors"))
    print(f"CLI peak RSS against clip length: {SIZE_PX}x{SIZE_PX} at {FPS:g} fps, tiny U-Net (1 step, windows "
          f"of 16, fp32), bundled Whisper tiny.en; each run a fresh process", flush=True)
    runs = [(ROOT, "this checkout", n) for n in args.frames]
    if args.compare:
        runs += [(args.compare, "before (--compare)", n) for n in args.frames if n <= args.compare_max_frames]
    print("| frames | seconds of video | run | peak RSS (MB) | CPU s | wall s |")
    print("|---:|---:|---|---:|---:|---:|", flush=True)
    for checkout, who, n in runs:  # each run measured from its own parent: ru_maxrss of children is a maximum
        video, audio = make_clip(work, n)
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", checkout, model, video, audio,
                               os.path.join(work, f"out{n}.mp4")], capture_output=True, text=True)
        rss, cpu, wall, err = ast.literal_eval(proc.stdout.strip().splitlines()[-1])
        if rss is None:
            print(f"| {n} | {n / FPS:.0f} | {who} | failed: {err} | | {wall:.0f} |", flush=True)
        else:
            print(f"| {n} | {n / FPS:.0f} | {who} | {rss:.0f} | {cpu:.0f} | {wall:.0f} |", flush=True)

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--one":  # one measured run in a fresh parent (compare mode)
        print(repr(run(*sys.argv[2:7])))
    else:
        main()
