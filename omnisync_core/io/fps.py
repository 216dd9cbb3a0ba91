"""Frame rates: the one check of an fps value and the one rule that makes it an exact fraction.

Every module that takes an fps (reading and writing video, aligning speech features to frames, the
pipeline, the nodes) goes through :func:`exact_fps`, so 29.97 means the same rate everywhere.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction
from typing import Any

from ..errors import OmniSyncError

NTSC_RATES = tuple(Fraction(n * 1000, 1001) for n in (24, 30, 48, 60, 120))  # 23.976, 29.97, ...
NTSC_SNAP_FPS = 0.01  # ffmpeg and people write 29.97 for 30000/1001; within this, the NTSC rate is meant
FPS_MAX_DENOMINATOR = 100_000  # any other rate: the closest fraction with a denominator up to this


def exact_fps(fps: Any) -> Fraction:
    """fps (int, float, numpy scalar or Fraction) → the exact frame rate as a fraction.

    A rate within 0.01 of an NTSC rate is that rate (29.97 and 29.97002997 → 30000/1001); a Fraction
    is kept as it is; any other number becomes the closest fraction with a denominator ≤ 100 000
    (25.0 → 25, 12.5 → 25/2). Raises :class:`OmniSyncError` for anything but a positive finite number.
    """
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(float(fps)) or fps <= 0:
        raise OmniSyncError(f"fps must be a positive number, got {fps!r}; pass the video's frame rate.")
    if isinstance(fps, Fraction):
        return fps
    for rate in NTSC_RATES:
        if abs(float(fps) - float(rate)) < NTSC_SNAP_FPS:
            return rate
    return Fraction(float(fps)).limit_denominator(FPS_MAX_DENOMINATOR)
