"""Held-out evaluation on the synthetic talking-character split, where the ground truth is exact.

For each held-out character the dataset has two utterances ``a`` and ``b`` rendered over the same
head motion. The model gets the frames of ``a`` and the speech of ``b``; the renderer's ``b`` is
what a perfect lip sync would output. Per clip (first ``T = min(T_a, T_b)`` frames):

* ``mouth_mae``: mean absolute error (0–255 scale) inside the mouth region against ground truth ``b``
  (lower is better). The region is the union of both utterances' mouth boxes per frame, grown by
  :data:`BOX_GROW` of the box size on each side, so a closed and an open mouth are both inside.
* ``copy_mouth_mae``: the same for the "copy the source" baseline (output = frames of ``a``).
* ``psnr_outside``: PSNR (dB) outside that region between the output and the source ``a``
  (higher = the rest of the frame is kept).

Results are averaged per kind (human / stylized / non-human) and overall.
"""

from __future__ import annotations

import json
import math
import os
from typing import Dict, List, Optional

import numpy as np
import torch

from ..data.dataset import grown_box_mask
from ..errors import OmniSyncError
from ..progress import CancelCheck, ProgressCallback, check_cancel, report

BOX_GROW = 0.25  # the mouth box is grown by this fraction of its size on each side
PIXEL_MAX = 255.0


def mouth_region(boxes_a: np.ndarray, boxes_b: np.ndarray, H: int, W: int) -> torch.Tensor:
    """(T, H, W) bool: union of the two grown mouth boxes (fractions x0, y0, x1, y1) per frame."""
    T = min(boxes_a.shape[0], boxes_b.shape[0])
    return grown_box_mask(boxes_a[:T], H, W, BOX_GROW) | grown_box_mask(boxes_b[:T], H, W, BOX_GROW)


def clip_metrics(output: torch.Tensor, source: torch.Tensor, truth: torch.Tensor, region: torch.Tensor) -> Dict[str, float]:
    """output, source, truth: (T, H, W, 3) float in [0, 1]; region (T, H, W) bool."""
    r = region[..., None].expand_as(output)
    mae = lambda x, y, m: float((x - y).abs()[m].mean()) * PIXEL_MAX  # noqa: E731
    outside = ~r
    mse = float(((output - source) ** 2)[outside].mean())
    psnr = 10 * math.log10(1.0 / max(mse, 1e-12))
    return {"mouth_mae": mae(output, truth, r), "copy_mouth_mae": mae(source, truth, r), "psnr_outside": psnr}


def summarise(rows: List[Dict]) -> Dict[str, Dict[str, float]]:
    """Mean of each metric per kind and overall; ``improvement`` = 1 − model/copy error."""
    out = {}
    for kind in sorted({r["kind"] for r in rows}) + ["all"]:
        sel = [r for r in rows if kind == "all" or r["kind"] == kind]
        m = {k: float(np.mean([r[k] for r in sel])) for k in ("mouth_mae", "copy_mouth_mae", "psnr_outside")}
        m["improvement"] = 1.0 - m["mouth_mae"] / m["copy_mouth_mae"]
        m["clips"] = len(sel)
        out[kind] = m
    return out


def evaluate_heldout(pipeline, root: str, options, split: str = "heldout", limit: Optional[int] = None,
                     progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCheck] = None) -> Dict:
    """Run ``pipeline`` (an OmniSyncPipeline) on the held-out pairs; returns {"clips": rows, "summary": ...}."""
    from ..media import read_audio
    from ..data.dataset import read_index
    from safetensors import safe_open

    entries = read_index(root)["splits"].get(split) or []
    if not entries:
        raise OmniSyncError(f"dataset {root!r} has no {split!r} split to evaluate on.")
    if limit:
        entries = _balanced(entries, limit)
    if options.length_mode != "follow_video":
        raise OmniSyncError("held-out evaluation compares frame by frame: use length_mode='follow_video'.")
    rows = []
    for i, e in enumerate(entries):
        check_cancel(cancel)
        folder = os.path.join(root, e["dir"])
        frames, meta = {}, {}
        for n in ("a", "b"):
            with safe_open(os.path.join(folder, f"{n}.safetensors"), framework="pt") as f:
                frames[n] = f.get_tensor("frames").float() / 255.0
            with open(os.path.join(folder, f"{n}.json")) as f:
                meta[n] = json.load(f)
        T = min(frames["a"].shape[0], frames["b"].shape[0])
        source, truth = frames["a"][:T], frames["b"][:T]
        wave, sr = read_audio(os.path.join(folder, "b.wav"))
        wave = wave[..., : round(T / meta["b"]["fps"] * sr)]
        result = pipeline(source, meta["a"]["fps"], wave, sr, options)
        region = mouth_region(np.array(meta["a"]["mouth_box"]), np.array(meta["b"]["mouth_box"]), *source.shape[1:3])
        row = clip_metrics(result.frames[:T], source, truth, region)
        row.update({"kind": e["kind"], "seed": e["seed"], "frames": T,
                    "passed_through": len(result.report.get("mouth", {}).get("fallback_frames", []))})
        rows.append(row)
        report(progress, i + 1, len(entries), f"{e['kind']} {row['mouth_mae']:.2f} vs copy {row['copy_mouth_mae']:.2f}")
    return {"clips": rows, "summary": summarise(rows)}


def _balanced(entries: List[Dict], limit: int) -> List[Dict]:
    """Up to ``limit`` entries, taking kinds in turn so every kind is represented."""
    by_kind: Dict[str, List[Dict]] = {}
    for e in entries:
        by_kind.setdefault(e["kind"], []).append(e)
    out, i = [], 0
    while len(out) < limit and any(i < len(v) for v in by_kind.values()):
        for k in sorted(by_kind):
            if i < len(by_kind[k]) and len(out) < limit:
                out.append(by_kind[k][i])
        i += 1
    return out


def markdown_table(summary: Dict[str, Dict[str, float]]) -> str:
    """The README table."""
    lines = ["| split | clips | mouth MAE ↓ (model) | mouth MAE (copy source) | improvement | PSNR outside mouth (dB) |",
             "|---|---:|---:|---:|---:|---:|"]
    for kind, m in summary.items():
        lines.append(f"| {kind} | {m['clips']} | {m['mouth_mae']:.2f} | {m['copy_mouth_mae']:.2f} | "
                     f"{100 * m['improvement']:+.1f}% | {m['psnr_outside']:.2f} |")
    return "\n".join(lines)
