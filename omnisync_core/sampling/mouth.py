"""Where the mouth is, per frame: from a point, from a mask, or found from the model itself.

OmniSync uses no face detector. In ``auto`` mode the mouth is where the model's own audio response
is strongest: at the first sampling step the difference between the audio-conditioned and the
audio-dropped predictions, |ε_c − ε_u|, is large where the audio changes the picture (the lips) and
near zero elsewhere. Per latent frame that map is averaged over channels, smoothed with a Gaussian
(kornia), and its peak region's centroid is the mouth centre. A frame counts as "found" when the
smoothed peak stands out from the frame's mean by :data:`PEAK_TO_MEAN_MIN`; frames that are not
found take the centre of the nearest found frame, and when no frame is found at all every frame
falls back to :data:`DEFAULT_MOUTH_CENTRE`. Both cases are reported, never silent.
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch
from kornia.filters import gaussian_blur2d

from ..errors import OmniSyncError

DEFAULT_MOUTH_CENTRE = (0.5, 0.62)  # frame fractions (x, y): a centred talking head's mouth
PEAK_TO_MEAN_MIN = 2.0  # smoothed |ε_c − ε_u| peak / frame mean needed to call a mouth found
PEAK_REGION = 0.5  # the centroid is taken over positions above this fraction of the peak
SMOOTH_SIGMA_FRAC = 0.05  # Gaussian smoothing of the map, fraction of the shorter latent side
TEMPORAL_SMOOTH = 1  # centres are averaged over ±this many found neighbouring frames
MASK_THRESHOLD = 0.5  # a mask pixel above this is mouth


def centres_from_point(point: Tuple[float, float], num_frames: int) -> torch.Tensor:
    """(num_frames, 2): the same (x, y) frame-fraction point for every frame."""
    x, y = point
    if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
        raise OmniSyncError(f"mouth point {point} must be inside the frame: x, y in [0, 1].")
    return torch.tensor([x, y], dtype=torch.float32).expand(num_frames, 2).clone()


def centres_from_mask(mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Centroid of the mouth mask per frame.

    Args:
        mask: (T, H, W) in [0, 1] (a (H, W) mask is used for one frame).

    Returns:
        centres (T, 2) frame fractions (x, y) (NaN where empty) and found (T,) bool.
    """
    mask = torch.as_tensor(mask, dtype=torch.float32).cpu()
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3:
        raise OmniSyncError(f"the mouth mask must be (T, H, W) or (H, W), got shape {tuple(mask.shape)}.")
    T, H, W = mask.shape
    m = (mask > MASK_THRESHOLD).float()
    total = m.sum((1, 2))  # (T,)
    found = total > 0
    ys = (torch.arange(H, dtype=torch.float32) + 0.5) / H
    xs = (torch.arange(W, dtype=torch.float32) + 0.5) / W
    cx = (m.sum(1) * xs).sum(1) / total.clamp_min(1)
    cy = (m.sum(2) * ys).sum(1) / total.clamp_min(1)
    centres = torch.stack([cx, cy], 1)
    centres[~found] = float("nan")
    return centres, found


def fill_missing(centres: torch.Tensor, found: torch.Tensor,
                 default: Tuple[float, float] = DEFAULT_MOUTH_CENTRE) -> Tuple[torch.Tensor, Dict]:
    """Frames without a centre take the nearest found frame's; with none found, ``default``.

    Returns (centres (T, 2) with no NaN, report {"filled_frames": [...], "default_used": bool}).
    """
    centres = centres.clone()
    found = found.bool()
    T = centres.shape[0]
    missing = [t for t in range(T) if not bool(found[t])]
    if not missing:
        return centres, {"filled_frames": [], "default_used": False}
    have = torch.nonzero(found).flatten()
    if have.numel() == 0:
        centres[:] = torch.tensor(default, dtype=centres.dtype)
        return centres, {"filled_frames": missing, "default_used": True,
                         "message": f"no mouth found in any frame: using the default centre {default}"}
    for t in missing:
        nearest = have[(have - t).abs().argmin()]
        centres[t] = centres[nearest]
    return centres, {"filled_frames": missing, "default_used": False,
                     "message": f"no mouth found in {len(missing)} frame(s): nearest found centre used"}


def centres_from_guidance(diff: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mouth centres from the model's guidance signal.

    Args:
        diff: (C, F, h, w) |ε_c − ε_u| at the first sampling step.

    Returns:
        centres (F, 2) frame fractions (x, y) (NaN where not found), found (F,) bool.
    """
    if diff.ndim != 4:
        raise OmniSyncError(f"the guidance signal must be (C, F, h, w), got shape {tuple(diff.shape)}.")
    energy = diff.float().abs().mean(0).cpu()  # (F, h, w)
    F_, h, w = energy.shape
    sigma = max(SMOOTH_SIGMA_FRAC * min(h, w), 0.5)
    k = 2 * int(3 * sigma) + 1
    smooth = gaussian_blur2d(energy[:, None], (k, k), (sigma, sigma), border_type="replicate")[:, 0]
    flat = smooth.flatten(1)
    peak, mean = flat.max(1).values, flat.mean(1)
    found = (peak > PEAK_TO_MEAN_MIN * mean) & (peak > 0) & torch.isfinite(peak)
    region = (smooth >= PEAK_REGION * peak.view(-1, 1, 1)).float() * smooth
    total = region.sum((1, 2)).clamp_min(1e-12)
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w
    cx = (region.sum(1) * xs).sum(1) / total
    cy = (region.sum(2) * ys).sum(1) / total
    centres = torch.stack([cx, cy], 1)
    centres = _smooth_over_time(centres, found)
    centres[~found] = float("nan")
    return centres, found


def _smooth_over_time(centres: torch.Tensor, found: torch.Tensor) -> torch.Tensor:
    """Average each found frame's centre with found neighbours within ±TEMPORAL_SMOOTH frames."""
    out = centres.clone()
    F_ = centres.shape[0]
    for f in range(F_):
        if not bool(found[f]):
            continue
        lo, hi = max(0, f - TEMPORAL_SMOOTH), min(F_, f + TEMPORAL_SMOOTH + 1)
        sel = found[lo:hi]
        out[f] = centres[lo:hi][sel].mean(0)
    return out
