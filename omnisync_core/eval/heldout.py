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
* ``passed_through``: frames the pipeline handed back unchanged (no mouth found), summed per split.

Mouth MAE rewards copying (only a small part of the mouth box changes between two utterances), so it
is a fidelity guard, not a lip-sync score. With a mouth reader (:mod:`omnisync_core.eval.mouth_reader`,
all crops at ``b``'s mouth boxes: both utterances share one head-motion track) the lip sync is read,
the synthetic analogue of the paper's LSE-C and LMD:

* ``sync_target``: Pearson correlation over the clip's frames between the output's read openness and
  ``b``'s true openness (higher is better); ``sync_source``: the same against ``a``'s true openness
  (a model that copies the source mouth scores high here).
* ``shape_error``: mean |read − true| over the frames and the 5 mouth parameters (all in [0, 1]) of the
  output against ``b``'s truth; ``copy_shape_error``: the same for the frames of ``a``.
* ``copy_sync_target``: the copy baseline's correlation with ``b`` (what no lip sync scores).
* ``reader_sync`` / ``reader_shape_error``: the reader on ``b``'s own frames: the ceiling of the two scores.

Results are averaged over clips per kind (human / stylized / non-human) and overall.
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
from .mouth_reader import OPEN, MouthReader, pearson, read_mouths

BOX_GROW = 0.25  # the mouth box is grown by this fraction of its size on each side
PIXEL_MAX = 255.0
MEAN_METRICS = ("mouth_mae", "copy_mouth_mae", "psnr_outside", "sync_target", "sync_source", "copy_sync_target",
                "shape_error", "copy_shape_error", "reader_sync", "reader_shape_error")  # averaged over clips
SUM_METRICS = ("frames", "passed_through")  # summed over clips


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


def sync_metrics(read_output: torch.Tensor, read_source: torch.Tensor, read_truth: torch.Tensor,
                 params_source: torch.Tensor, params_truth: torch.Tensor) -> Dict[str, float]:
    """Reader-based lip-sync scores of one clip (see the module docstring).

    read_output, read_source, read_truth: (T, P) the reader on the output, source ``a`` and target ``b``
    frames; params_source, params_truth: (T, P) the renderer's true parameters of ``a`` and ``b``.
    """
    def shape_error(read):
        return float((read - params_truth).abs().mean())

    return {"sync_target": pearson(read_output[:, OPEN], params_truth[:, OPEN]),
            "sync_source": pearson(read_output[:, OPEN], params_source[:, OPEN]),
            "copy_sync_target": pearson(read_source[:, OPEN], params_truth[:, OPEN]),
            "shape_error": shape_error(read_output), "copy_shape_error": shape_error(read_source),
            "reader_sync": pearson(read_truth[:, OPEN], params_truth[:, OPEN]),
            "reader_shape_error": shape_error(read_truth)}


def summarise(rows: List[Dict]) -> Dict[str, Dict[str, float]]:
    """Per kind and overall: the mean over clips of each metric the rows have, the sum of the counts;
    ``improvement`` = 1 − model/copy mouth MAE."""
    out = {}
    for kind in sorted({r["kind"] for r in rows}) + ["all"]:
        sel = [r for r in rows if kind == "all" or r["kind"] == kind]
        m = {k: float(np.mean([r[k] for r in sel])) for k in MEAN_METRICS if all(k in r for r in sel)}
        m.update({k: int(sum(r[k] for r in sel)) for k in SUM_METRICS if all(k in r for r in sel)})
        m["improvement"] = 1.0 - m["mouth_mae"] / m["copy_mouth_mae"]
        m["clips"] = len(sel)
        out[kind] = m
    return out


def evaluate_heldout(pipeline, root: str, options, split: str = "heldout", limit: Optional[int] = None,
                     reader: Optional[MouthReader] = None, progress: Optional[ProgressCallback] = None,
                     cancel: Optional[CancelCheck] = None) -> Dict:
    """Run ``pipeline`` (an OmniSyncPipeline) on the held-out pairs; returns {"clips": rows, "summary": ...}.

    With a ``reader`` (:func:`omnisync_core.eval.mouth_reader.load_reader`) the rows also hold the
    lip-sync scores of :func:`sync_metrics`.
    """
    from ..io.audio import read_audio
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
        output = result.frames[:T]
        row = clip_metrics(output, source, truth, region)
        row.update({"kind": e["kind"], "seed": e["seed"], "frames": T,
                    "passed_through": len(result.report.get("mouth", {}).get("fallback_frames", []))})
        message = f"{e['kind']} mouth MAE {row['mouth_mae']:.2f} vs copy {row['copy_mouth_mae']:.2f}"
        if reader is not None:
            boxes = np.array(meta["b"]["mouth_box"])[:T]  # one head-motion track: b's boxes are a's boxes
            params = {n: torch.tensor(meta[n]["mouth_params"], dtype=torch.float32)[:T] for n in ("a", "b")}
            row.update(sync_metrics(read_mouths(reader, output, boxes), read_mouths(reader, source, boxes),
                                    read_mouths(reader, truth, boxes), params["a"], params["b"]))
            message += f", sync {row['sync_target']:+.2f} (source {row['sync_source']:+.2f})"
        rows.append(row)
        report(progress, i + 1, len(entries), message)
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


# (column header, summary key, format); "–" where a summary lacks the key (no reader given)
TABLE_COLUMNS = [
    ("sync ↑ (target)", "sync_target", "{:+.2f}"),
    ("sync (source)", "sync_source", "{:+.2f}"),
    ("shape err ↓ (model)", "shape_error", "{:.3f}"),
    ("shape err (copy)", "copy_shape_error", "{:.3f}"),
    ("mouth MAE ↓ (model)", "mouth_mae", "{:.2f}"),
    ("mouth MAE (copy)", "copy_mouth_mae", "{:.2f}"),
    ("PSNR outside mouth (dB)", "psnr_outside", "{:.2f}"),
    ("frames passed through", "passed_through", "{:d}"),
    ("reader ceiling (sync on truth)", "reader_sync", "{:+.2f}"),
]


def table_cells(m: Dict) -> List[str]:
    """The formatted TABLE_COLUMNS values of one summary row."""
    return [fmt.format(m[key]) if key in m else "–" for _, key, fmt in TABLE_COLUMNS]


def markdown_table(summary: Dict[str, Dict[str, float]]) -> str:
    """The README table: one row per split (kind, then all). Sync = openness correlation over a clip's
    frames, mean over clips; shape err = mean |read − true| over the 5 mouth parameters (in [0, 1])."""
    lines = ["| split | clips | " + " | ".join(h for h, _, _ in TABLE_COLUMNS) + " |",
             "|---|---:|" + "---:|" * len(TABLE_COLUMNS)]
    for kind, m in summary.items():
        lines.append(f"| {kind} | {m['clips']} | " + " | ".join(table_cells(m)) + " |")
    return "\n".join(lines)
