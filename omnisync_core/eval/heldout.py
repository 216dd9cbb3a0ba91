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

Two cases a viewer sees besides the timing (issue 22):

* ``ghost``: how much of the source mouth remains where the target mouth is closed. On the frames where
  ``b``'s true openness is at most :data:`GHOST_TRUTH_CLOSED` and ``a``'s at least :data:`GHOST_SOURCE_OPEN`,
  on the pixels of the mouth region where source and truth differ visibly (some channel by at least
  :data:`GHOST_PIXEL_DIFF`), each pixel's output is projected on the way from source to truth:
  α = ⟨out − src, truth − src⟩ / |truth − src|², and ``1 − α`` clipped to [0, 1] is what remains of the old
  mouth there (0 = the truth, 1 = the source copied). ``ghost`` is its mean over those pixels (NaN when the
  clip has no such frame; ``ghost_frames`` counts them); ``copy_ghost`` is 1 by construction.
* the **silence case** (with a reader): the same source ``a`` with its speech replaced by near-silence
  (the dataset's ``s.wav`` when it has one, else :func:`omnisync_core.data.speech.near_silence` at
  :data:`SILENCE_DBFS`). The truth is ``a``'s motion with the mouth closed and still. ``silence_open`` is the
  mean read openness of the output over the clip, ``silence_truth_open`` the reader on the closed truth
  (the renderer's ``s`` frames; without them the renderer's closed openness, 0),
  ``silence_gap`` = ``silence_open − silence_truth_open`` and ``silence_spread`` the standard deviation of
  the output's read openness over time (a still mouth: 0); ``silence_open_frames`` is the fraction of frames
  read at least :data:`GHOST_SOURCE_OPEN` open.

Results are averaged over clips per kind (human / stylized / non-human) and overall; ``distributions``
gives the per-clip spread of the main metrics per split (min, 10th, 50th, 90th percentile, max), and
``mae_above_copy`` / ``psnr_below_40`` the fraction of clips with a mouth MAE above copying / a PSNR outside
the mouth below 40 dB.
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
SUM_METRICS = ("frames", "passed_through", "ghost_frames")  # summed over clips
NAN_MEAN_METRICS = ("ghost",)  # averaged over the clips where they are defined (finite)
SILENCE_METRICS = ("silence_open", "silence_truth_open", "silence_gap", "silence_spread", "silence_open_frames")
DISTRIBUTION_METRICS = ("mouth_mae_ratio", "psnr_outside", "sync_target", "shape_ratio", "ghost", "silence_gap",
                        "silence_spread")
QUANTILES = (("min", 0.0), ("p10", 0.1), ("p50", 0.5), ("p90", 0.9), ("max", 1.0))
GHOST_TRUTH_CLOSED = 0.05  # renderer openness at or below which the target mouth counts as closed
GHOST_SOURCE_OPEN = 0.30   # ... at or above which the source mouth counts as open
GHOST_PIXEL_DIFF = 0.10    # a pixel belongs to the old mouth when source and truth differ by this much (0–1 scale)
SILENCE_DBFS = -60.0       # the near-silence level when the dataset has no silence clip
PSNR_FLOOR_DB = 40.0       # the fraction of clips below this PSNR outside the mouth is reported


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


def ghost_metric(output: torch.Tensor, source: torch.Tensor, truth: torch.Tensor, region: torch.Tensor,
                 open_source: torch.Tensor, open_truth: torch.Tensor) -> Dict[str, float]:
    """What remains of the source mouth where the target mouth is closed (see the module docstring).

    output, source, truth: (T, H, W, 3) float in [0, 1]; region (T, H, W) bool (the mouth region);
    open_source, open_truth: (T,) the renderer's openness of ``a`` and ``b``. Returns ``ghost`` (NaN when no
    frame has a closed target over an open source, or no pixel differs) and ``ghost_frames``.
    """
    frames = (open_truth <= GHOST_TRUTH_CLOSED) & (open_source >= GHOST_SOURCE_OPEN)  # (T,)
    n = int(frames.sum())
    if n == 0:
        return {"ghost": float("nan"), "ghost_frames": 0}
    out, src, tru = output[frames].double(), source[frames].double(), truth[frames].double()
    d = tru - src                                                                       # (n, H, W, 3)
    pixels = region[frames] & (d.abs().amax(-1) >= GHOST_PIXEL_DIFF)                     # (n, H, W)
    if not bool(pixels.any()):
        return {"ghost": float("nan"), "ghost_frames": n}
    alpha = ((out - src) * d).sum(-1)[pixels] / (d * d).sum(-1)[pixels]
    return {"ghost": float((1.0 - alpha).clamp(0.0, 1.0).mean()), "ghost_frames": n}


def silence_metrics(read_output_open: torch.Tensor, truth_open: torch.Tensor) -> Dict[str, float]:
    """The silence case of one clip: read_output_open (T,) the reader's openness of the output for the
    near-silent speech; truth_open (T,) the reader on the closed truth (or the renderer's closed openness)."""
    out = read_output_open.double()
    mean_out, mean_truth = float(out.mean()), float(truth_open.double().mean())
    return {"silence_open": mean_out, "silence_truth_open": mean_truth, "silence_gap": mean_out - mean_truth,
            "silence_spread": float(out.std(unbiased=False)),
            "silence_open_frames": float((out >= GHOST_SOURCE_OPEN).double().mean())}


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


def _per_clip(r: Dict, key: str) -> float:
    """A row's value of ``key``; ``mouth_mae_ratio`` and ``shape_ratio`` are model / copy of one clip."""
    if key == "mouth_mae_ratio":
        return r["mouth_mae"] / r["copy_mouth_mae"] if r["copy_mouth_mae"] > 0 else float("nan")
    if key == "shape_ratio":
        return r["shape_error"] / r["copy_shape_error"] if r["copy_shape_error"] > 0 else float("nan")
    return r[key]


def distribution(values) -> Optional[Dict[str, float]]:
    """min / p10 / p50 / p90 / max (linear interpolation) of the finite ``values``; None when there are none."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return None
    return {name: float(np.quantile(v, q)) for name, q in QUANTILES}


def summarise(rows: List[Dict]) -> Dict[str, Dict[str, float]]:
    """Per kind and overall: the mean over clips of each metric the rows have, the sum of the counts;
    ``improvement`` = 1 − model/copy mouth MAE; ``mae_above_copy`` and ``psnr_below_40`` fractions of clips;
    ``distributions``: the per-clip spread of :data:`DISTRIBUTION_METRICS`."""
    out = {}
    for kind in sorted({r["kind"] for r in rows}) + ["all"]:
        sel = [r for r in rows if kind == "all" or r["kind"] == kind]
        m = {k: float(np.mean([r[k] for r in sel])) for k in MEAN_METRICS + SILENCE_METRICS if all(k in r for r in sel)}
        for k in NAN_MEAN_METRICS:
            finite = [r[k] for r in sel if k in r and np.isfinite(r[k])]
            if finite:
                m[k] = float(np.mean(finite))
                m[f"{k}_clips"] = len(finite)
        m.update({k: int(sum(r[k] for r in sel)) for k in SUM_METRICS if all(k in r for r in sel)})
        m["improvement"] = 1.0 - m["mouth_mae"] / m["copy_mouth_mae"]
        m["mae_above_copy"] = float(np.mean([r["mouth_mae"] > r["copy_mouth_mae"] for r in sel]))
        m["psnr_below_40"] = float(np.mean([r["psnr_outside"] < PSNR_FLOOR_DB for r in sel]))
        needs = {"mouth_mae_ratio": "mouth_mae", "shape_ratio": "shape_error"}
        dists = {k: distribution([_per_clip(r, k) for r in sel])
                 for k in DISTRIBUTION_METRICS if all(needs.get(k, k) in r for r in sel)}
        m["distributions"] = {k: v for k, v in dists.items() if v is not None}
        m["clips"] = len(sel)
        out[kind] = m
    return out


def evaluate_heldout(pipeline, root: str, options, split: str = "heldout", limit: Optional[int] = None,
                     reader: Optional[MouthReader] = None, progress: Optional[ProgressCallback] = None,
                     cancel: Optional[CancelCheck] = None, silence: bool = True) -> Dict:
    """Run ``pipeline`` (an OmniSyncPipeline) on the held-out pairs; returns {"clips": rows, "summary": ...}.

    Every row has the :func:`ghost_metric`. With a ``reader``
    (:func:`omnisync_core.eval.mouth_reader.load_reader`) the rows also hold the lip-sync scores of
    :func:`sync_metrics` and, with ``silence``, the silence case (:func:`silence_metrics`; a second
    pipeline run per clip, on near-silent speech).
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
        row.update(ghost_metric(output, source, truth, region,
                                *(torch.tensor(meta[n]["mouth_params"], dtype=torch.float32)[:T, OPEN] for n in "ab")))
        row.update({"kind": e["kind"], "seed": e["seed"], "frames": T,
                    "passed_through": len(result.report.get("mouth", {}).get("fallback_frames", []))})
        message = f"{e['kind']} mouth MAE {row['mouth_mae']:.2f} vs copy {row['copy_mouth_mae']:.2f}"
        if reader is not None:
            boxes = np.array(meta["b"]["mouth_box"])[:T]  # one head-motion track: b's boxes are a's boxes
            params = {n: torch.tensor(meta[n]["mouth_params"], dtype=torch.float32)[:T] for n in ("a", "b")}
            row.update(sync_metrics(read_mouths(reader, output, boxes), read_mouths(reader, source, boxes),
                                    read_mouths(reader, truth, boxes), params["a"], params["b"]))
            message += f", sync {row['sync_target']:+.2f} (source {row['sync_source']:+.2f})"
            if silence:
                row.update(_silence_case(pipeline, options, reader, folder, source, meta["a"], e["seed"]))
                message += f", silence openness {row['silence_open']:.2f} (truth {row['silence_truth_open']:.2f})"
        rows.append(row)
        report(progress, i + 1, len(entries), message)
    return {"clips": rows, "summary": summarise(rows)}


def _silence_case(pipeline, options, reader: MouthReader, folder: str, source: torch.Tensor, meta_a: Dict,
                  seed: int) -> Dict[str, float]:
    """The pipeline on ``source`` with near-silent speech, read against the closed truth (module docstring)."""
    from ..io.audio import read_audio
    from ..data.speech import near_silence
    from safetensors import safe_open

    T, fps = source.shape[0], meta_a["fps"]
    s_frames, s_path = None, os.path.join(folder, "s.safetensors")
    if os.path.exists(s_path):
        with safe_open(s_path, framework="pt") as f:
            s_frames = f.get_tensor("frames").float()[:T] / 255.0
        with open(os.path.join(folder, "s.json")) as f:
            boxes = np.array(json.load(f)["mouth_box"])[:T]
        wave, sr = read_audio(os.path.join(folder, "s.wav"))
        wave = wave[..., : round(T / fps * sr)]
    else:
        from ..audio.features import SAMPLE_RATE_HZ

        boxes = np.array(meta_a["mouth_box"])[:T]
        sr = SAMPLE_RATE_HZ
        wave = torch.from_numpy(near_silence(T / fps, sr, SILENCE_DBFS, seed))
    out = pipeline(source, fps, wave, sr, options).frames[:T]
    read = read_mouths(reader, out, boxes)[:, OPEN]
    truth = read_mouths(reader, s_frames, boxes)[:, OPEN] if s_frames is not None else torch.zeros(T)
    return silence_metrics(read, truth)


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
    ("ghost ↓ (copy 1)", "ghost", "{:.3f}"),
    ("silence openness ↓ (closed truth)", "silence_open", "{:.3f}"),
    ("closed truth", "silence_truth_open", "{:.3f}"),
    ("silence spread ↓", "silence_spread", "{:.3f}"),
    ("MAE > copy (clips)", "mae_above_copy", "{:.0%}"),
    ("PSNR < 40 dB (clips)", "psnr_below_40", "{:.0%}"),
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


def distribution_table(summary: Dict[str, Dict]) -> str:
    """Per split and metric, the per-clip spread: min / p10 / median / p90 / max (mouth MAE and shape error as
    model / copy of each clip)."""
    lines = ["| split | per-clip metric | min | p10 | median | p90 | max |", "|---|---|---:|---:|---:|---:|---:|"]
    for kind, m in summary.items():
        for key, d in m.get("distributions", {}).items():
            lines.append(f"| {kind} | {key} | " + " | ".join(f"{d[q]:.3f}" for q, _ in QUANTILES) + " |")
    return "\n".join(lines)
