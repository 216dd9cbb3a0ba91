"""Pictures for people: side-by-side frames with labels, the mouth contact sheet, PNG output."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import OmniSyncError
from ..io.files import atomic_output
from ..io.frames import validate_frames

# -- display ---------------------------------------------------------------------------------------

LABEL_BAR_FRACTION = 0.12  # label bar height as a fraction of frame height (at least LABEL_BAR_MIN_PX)
LABEL_BAR_MIN_PX = 12


def _label_bar(labels: Sequence[str], widths: Sequence[int], height: int) -> torch.Tensor:
    """(height, sum(widths), 3) dark bar with each label at the left of its panel (text needs PIL)."""
    bar = np.full((height, sum(widths), 3), 32, np.uint8)
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:  # plain bars without text
        return torch.from_numpy(bar).float() / 255
    img = Image.fromarray(bar)
    draw = ImageDraw.Draw(img)
    try:
        font = ImageFont.load_default(size=max(8, int(height * 0.7)))
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        font = ImageFont.load_default()
    x0 = 0
    for text, w in zip(labels, widths):
        draw.text((x0 + 4, height // 2), str(text), fill=(235, 235, 235), font=font, anchor="lm")
        x0 += w
    return torch.from_numpy(np.asarray(img).copy()).float() / 255


def side_by_side(a: Any, b: Any, labels: Optional[Sequence[str]] = None) -> torch.Tensor:
    """Two clips next to each other: (T, H, Wa, 3) and (T, H, Wb, 3) → (T, H [+ bar], Wa + Wb, 3).

    Clips must have the same length and height (resize or trim first; nothing is done silently).
    labels: two strings drawn in a bar above the panels (text needs Pillow; without it, a plain bar).
    """
    a, _ = validate_frames(a, min_frames=1)
    b, _ = validate_frames(b, min_frames=1)
    if a.shape[0] != b.shape[0] or a.shape[1] != b.shape[1]:
        raise OmniSyncError(
            f"side_by_side needs clips of equal length and height, got {tuple(a.shape[:2])} and "
            f"{tuple(b.shape[:2])} as (T, H); trim or resize one first."
        )
    out = torch.cat([a, b.to(a.device)], 2)  # (T, H, Wa + Wb, 3)
    if labels is None:
        return out
    if len(labels) != 2:
        raise OmniSyncError(f"side_by_side takes two labels, got {len(labels)}.")
    height = max(LABEL_BAR_MIN_PX, int(round(a.shape[1] * LABEL_BAR_FRACTION)))
    height += height % 2  # keep yuv420p-friendly sizes even when H is
    bar = _label_bar(labels, (a.shape[2], b.shape[2]), height).to(out.device)
    return torch.cat([bar.expand(out.shape[0], -1, -1, -1), out], 1)


CONTACT_CROP_FRACTION = 0.3  # mouth crop side as a fraction of the shorter frame side
CONTACT_CELL_PX = 64         # each crop is resized to this many pixels
CONTACT_COLUMNS = 16         # frames shown, evenly spaced over the clip
CONTACT_LABEL_PX = 22        # height of the row label's text bar


def mouth_contact_sheet(rows: Sequence[Tuple[str, Any]], centres: Any, columns: int = CONTACT_COLUMNS) -> np.ndarray:
    """Mouth crops over time, one row per clip (e.g. source, output, target): (H', W', 3) uint8.

    rows: (label, frames (T, H, W, 3) float in [0, 1]) pairs of equal length and size; centres: (T, 2)
    mouth centres as frame fractions (x, y) — one crop track for every row, so rows compare like for like.
    ``columns`` frames are shown, evenly spaced; a label bar names each row on its left.
    """
    import torch.nn.functional as F

    clips = [(label, validate_frames(frames, min_frames=1)[0]) for label, frames in rows]
    T, H, W = clips[0][1].shape[:3]
    if any(tuple(c.shape[:3]) != (T, H, W) for _, c in clips):
        raise OmniSyncError("mouth_contact_sheet needs rows of equal length and size; trim the clips first.")
    centres = torch.as_tensor(centres, dtype=torch.float32)
    if tuple(centres.shape) != (T, 2):
        raise OmniSyncError(f"mouth_contact_sheet needs (T, 2) = ({T}, 2) mouth centres, got {tuple(centres.shape)}.")
    side = max(4, int(round(CONTACT_CROP_FRACTION * min(H, W))))
    picks = torch.linspace(0, T - 1, min(columns, T)).round().long()
    label_w = 80
    out_rows = []
    for label, clip in clips:
        cells = []
        for t in picks.tolist():
            cx = int(round(float(centres[t, 0]) * W - side / 2))
            cy = int(round(float(centres[t, 1]) * H - side / 2))
            x0, y0 = min(max(cx, 0), W - side), min(max(cy, 0), H - side)
            crop = clip[t, y0:y0 + side, x0:x0 + side].permute(2, 0, 1)[None]      # (1, 3, side, side)
            cells.append(F.interpolate(crop, size=(CONTACT_CELL_PX, CONTACT_CELL_PX), mode="nearest")[0])
        row = torch.cat(cells, 2).permute(1, 2, 0)                                     # (cell, n·cell, 3)
        bar = torch.full((CONTACT_CELL_PX, label_w, 3), 32 / 255)                   # (cell, label_w, 3)
        bar[:CONTACT_LABEL_PX] = _label_bar([label], [label_w], CONTACT_LABEL_PX)
        out_rows.append(torch.cat([bar, row], 1))
    sheet = torch.cat(out_rows, 0)
    return (sheet.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def write_png(path: str, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 image; the folder must exist."""
    import imageio.v3 as iio

    with atomic_output(path) as part:
        iio.imwrite(part, image, extension=".png")
