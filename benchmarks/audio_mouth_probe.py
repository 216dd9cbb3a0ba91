"""How much of the mouth the cached audio tokens explain, and at which lag: prints numbers, asserts nothing.

    python benchmarks/audio_mouth_probe.py --data data/chars128 --layers 2

A ridge regression from each video frame's audio tokens (the same tokens the model trains on: the last
``--layers`` Whisper hidden states, ``--frame-window`` features each side) to the renderer's mouth
parameters (open, width, round, teeth, tongue), fitted on the train split and scored (R²) on the held-out
split, with the audio shifted by -L..+L frames. Audio and video are aligned when lag 0 scores best; the
R² at lag 0 is how much of the mouth a model could read from the audio of that frame alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def load_split(root: str, split: str, layers: int, frame_window: int, limit: int):
    from omnisync_core.data.dataset import load_clip, read_index

    X, Y = [], []
    for e in read_index(root)["splits"].get(split, [])[:limit]:
        for name in "ab":
            clip = load_clip(os.path.join(root, e["dir"], f"{name}.safetensors"), layers, frame_window)
            with open(os.path.join(root, e["dir"], f"{name}.json")) as f:
                params = np.asarray(json.load(f)["mouth_params"], dtype=np.float64)
            T = min(len(params), clip.tokens.shape[0])
            X.append(clip.tokens[:T].double().reshape(T, -1).numpy())
            Y.append(params[:T])
    return X, Y


def shifted(X, Y, lag: int):
    """Pair frame t's mouth with the audio tokens of frame t + lag."""
    xs, ys = [], []
    for x, y in zip(X, Y):
        if abs(lag) >= len(y):
            continue
        xs.append(x[lag:] if lag >= 0 else x[:lag])
        ys.append(y[:len(y) - lag] if lag >= 0 else y[-lag:])
    return np.concatenate(xs), np.concatenate(ys)


def main() -> None:
    from omnisync_core.data.visemes import MOUTH_PARAMS

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="data/chars128")
    p.add_argument("--layers", type=int, default=2, help="last Whisper hidden states (the bundled model uses 2)")
    p.add_argument("--frame-window", type=int, default=2)
    p.add_argument("--train-characters", type=int, default=120)
    p.add_argument("--max-lag", type=int, default=4)
    p.add_argument("--ridge", type=float, default=100.0)
    args = p.parse_args()
    if args.layers < 1:
        sys.exit("error: --layers must be >= 1 (the probe regresses from audio tokens; the bundled model uses 2).")

    Xtr, Ytr = load_split(args.data, "train", args.layers, args.frame_window, args.train_characters)
    Xte, Yte = load_split(args.data, "heldout", args.layers, args.frame_window, 10 ** 9)
    if not Xtr or not Xte:
        sys.exit(f"error: {args.data!r} needs train and heldout splits; build them with make-data.")
    print(f"{len(Xtr)} train and {len(Xte)} held-out utterances; {Xtr[0].shape[1]} audio values per frame")
    print("lag  " + "  ".join(f"{n:>6}" for n in MOUTH_PARAMS) + "   (R² on held-out)")
    for lag in range(-args.max_lag, args.max_lag + 1):
        a, b = shifted(Xtr, Ytr, lag)
        c, d = shifted(Xte, Yte, lag)
        mu, sd = a.mean(0), a.std(0) + 1e-6
        A, C = (a - mu) / sd, (c - mu) / sd
        W = np.linalg.solve(A.T @ A + args.ridge * np.eye(A.shape[1]), A.T @ (b - b.mean(0)))
        pred = C @ W + b.mean(0)
        r2 = 1 - ((pred - d) ** 2).sum(0) / np.maximum(((d - d.mean(0)) ** 2).sum(0), 1e-12)
        print(f"{lag:+3d}  " + "  ".join(f"{v:6.3f}" for v in r2))


if __name__ == "__main__":
    main()
