"""Does a clip look like a model's training data? A cheap check that says so before any compute.

The bundled model was trained only on procedurally drawn characters (flat colour fills, hard outlines,
plain or painted backgrounds; ``omnisync_core.data.characters``). On real or photo-realistic faces it
changes almost nothing or paints a cartoon mouth, so the pipeline warns when the frames look unlike
that data. The check is picture statistics plus a logistic regression, nothing learned from pixels:

* gradient statistics: the share of pixels whose largest neighbour difference (over R, G, B, 8-bit
  levels) is ≤ 0, 1, 2, 4, 8 levels, in (8, 24) levels and ≥ 48 levels (flat fills and hard edges);
* palette concentration: the share of pixels covered by the 8 and the 32 most frequent colours after
  quantising each channel to 3, 4, 5 and 6 bits (a few fills vs. smooth shading and texture);
* colour: mean saturation, the share of pixels with saturation > 0.5, mean brightness.

Each share is mapped through a logit, standardised and weighed; ``score > threshold`` means "does not
look like the training data". The weights live in the checkpoint's metadata under ``"domain"``
(:class:`DomainCheck`, written by ``benchmarks/domain_check.py``, which also prints the measured hit and
false-alarm rates), so the checkpoint describes its own domain and a model without the key is never
checked.

Layout: frames ``(T, H, W, 3)``, uint8 or float in [0, 1] (torch or numpy).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import OmniSyncError

DOMAIN_FRAMES = 8  # frames looked at: the clip's first ones (what a streaming reader has before any compute)
DOMAIN_MAX_SIDE_PX = 256  # frames are area-downscaled so their shorter side is at most this (statistics are per pixel)
GRADIENT_LEVELS = (0, 1, 2, 4, 8)  # shares of pixels whose largest neighbour difference is ≤ this many 8-bit levels
MID_GRADIENT = (8, 24)  # share of pixels with a difference strictly between these levels (soft shading)
EDGE_LEVELS = 48  # share of pixels with a difference ≥ this (hard outlines)
PALETTE_BITS = (3, 4, 5, 6)  # colours quantised to this many bits per channel
PALETTE_TOP = (8, 32)  # share of pixels in the most frequent this-many colours
SATURATED = 0.5  # share of pixels with HSV saturation above this
SHARE_EPS = 1e-3  # shares are clipped to [eps, 1 − eps] before the logit

FEATURE_NAMES = tuple(
    [f"flat_le{t}" for t in GRADIENT_LEVELS]
    + [f"grad_{MID_GRADIENT[0]}_{MID_GRADIENT[1]}", f"edge_ge{EDGE_LEVELS}"]
    + [f"palette{b}_top{k}" for b in PALETTE_BITS for k in PALETTE_TOP]
    + ["saturation_mean", f"saturated_gt{SATURATED}", "brightness_mean"]
)


def _as_uint8_frames(frames: Any) -> torch.Tensor:
    """(T, H, W, 3) uint8 or float in [0, 1] → (T, 3, h, w) float in 8-bit levels, shorter side ≤ DOMAIN_MAX_SIDE_PX."""
    x = torch.as_tensor(np.asarray(frames) if not torch.is_tensor(frames) else frames)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise OmniSyncError(f"domain check needs frames (T, H, W, 3), got shape {tuple(x.shape)}.")
    x = x[:DOMAIN_FRAMES]
    x = x.float() if x.dtype == torch.uint8 else x.float().clamp(0, 1) * 255.0
    x = x.permute(0, 3, 1, 2)
    side = min(x.shape[-2:])
    if side > DOMAIN_MAX_SIDE_PX:
        x = F.interpolate(x, scale_factor=DOMAIN_MAX_SIDE_PX / side, mode="area")
    return x.round()  # 8-bit levels, as a decoded video would give


def domain_features(frames: Any) -> np.ndarray:
    """The :data:`FEATURE_NAMES` shares (each in [0, 1]) of a clip, as float64."""
    x = _as_uint8_frames(frames)
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().amax(1)[..., :-1, :]
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().amax(1)[..., :, :-1]
    g = torch.maximum(dx, dy)
    out: List[float] = [(g <= t).float().mean().item() for t in GRADIENT_LEVELS]
    out += [((g > MID_GRADIENT[0]) & (g < MID_GRADIENT[1])).float().mean().item(), (g >= EDGE_LEVELS).float().mean().item()]
    for bits in PALETTE_BITS:
        levels = 2 ** bits
        q = (x / 255.0 * (levels - 1)).round().long()
        code = (q[:, 0] * levels + q[:, 1]) * levels + q[:, 2]
        counts = torch.bincount(code.flatten(), minlength=levels ** 3).float().sort(descending=True).values
        out += [(counts[:k].sum() / counts.sum()).item() for k in PALETTE_TOP]
    hi, lo = x.amax(1), x.amin(1)
    sat = (hi - lo) / hi.clamp_min(1.0)
    out += [sat.mean().item(), (sat > SATURATED).float().mean().item(), (hi / 255.0).mean().item()]
    return np.asarray(out, dtype=np.float64)


def _logit(shares: np.ndarray) -> np.ndarray:
    v = np.clip(shares, SHARE_EPS, 1.0 - SHARE_EPS)
    return np.log(v / (1.0 - v))


@dataclass
class DomainCheck:
    """A fitted check: ``score = Σ w·(logit(f) − mean)/std + bias``; warns when ``score > threshold``.

    ``name`` says what the training data was (shown to the user), ``advice`` what to do instead."""

    name: str
    advice: str
    mean: Sequence[float]
    std: Sequence[float]
    weights: Sequence[float]
    bias: float
    threshold: float = 0.0
    features: Sequence[str] = FEATURE_NAMES

    def __post_init__(self):
        if tuple(self.features) != FEATURE_NAMES:
            raise OmniSyncError(
                "the checkpoint's domain check was fitted on other features than this version computes; "
                "refit it with benchmarks/domain_check.py."
            )
        n = len(FEATURE_NAMES)
        if not (len(self.mean) == len(self.std) == len(self.weights) == n):
            raise OmniSyncError(f"the checkpoint's domain check needs {n} means, stds and weights.")
        if not all(math.isfinite(v) for v in [*self.mean, *self.std, *self.weights, self.bias, self.threshold]):
            raise OmniSyncError("the checkpoint's domain check has non-finite numbers; refit it.")

    def score_features(self, features: np.ndarray) -> float:
        """The score of :func:`domain_features` output (> threshold: outside the training domain)."""
        z = (_logit(features) - np.asarray(self.mean)) / np.asarray(self.std)
        return float(z @ np.asarray(self.weights) + self.bias)

    def score(self, frames: Any) -> float:
        return self.score_features(domain_features(frames))

    def warning(self, frames: Any) -> Optional[str]:
        """One warning line when the frames do not look like the training data, else None."""
        s = self.score(frames)
        if s <= self.threshold:
            return None
        return (f"these frames do not look like this model's training data ({self.name}; domain score {s:+.1f} > "
                f"{self.threshold:+.1f}): expect little or wrong mouth motion. {self.advice}")

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["features"] = list(self.features)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DomainCheck":
        try:
            return cls(**{k: d[k] for k in ("name", "advice", "mean", "std", "weights", "bias", "threshold", "features")})
        except (KeyError, TypeError) as e:
            raise OmniSyncError(f"the checkpoint's domain check is incomplete ({e}); refit it with "
                                "benchmarks/domain_check.py.") from None


def domain_check_for(meta: Optional[Mapping[str, Any]]) -> Optional[DomainCheck]:
    """The check a checkpoint's metadata carries under ``"domain"``, or None (then nothing is checked)."""
    if not meta or not meta.get("domain"):
        return None
    return DomainCheck.from_dict(meta["domain"])


def fit_domain_check(features: np.ndarray, labels: np.ndarray, l2: float = 1e-2, steps: int = 3000,
                     lr: float = 0.5) -> Dict[str, Any]:
    """Logistic regression on the logit features: labels 1 = outside the training domain, 0 = inside.
    Returns mean, std, weights and bias (plain full-batch gradient descent: 18 features, ~200 clips)."""
    z = _logit(np.asarray(features, dtype=np.float64))
    y = np.asarray(labels, dtype=np.float64)
    mean, std = z.mean(0), z.std(0) + 1e-6
    zs = (z - mean) / std
    w, b = np.zeros(z.shape[1]), 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(zs @ w + b)))
        w -= lr * (zs.T @ (p - y) / len(y) + l2 * w)
        b -= lr * float((p - y).mean())
    return {"mean": mean.tolist(), "std": std.tolist(), "weights": w.tolist(), "bias": b}
