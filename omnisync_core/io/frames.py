"""The one place frames are validated.

Layout: frames (T, H, W, 3) float32 in [0, 1] (torch). Every conversion that changes data (dropping alpha,
clamping a float a hair outside [0, 1]) is done explicitly and returned in an info dict.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Tuple

import numpy as np
import torch

from ..errors import OmniSyncError

MIN_CLIP_FRAMES = 2  # lip-sync needs motion over time: a clip (video, or speech at the video's fps) of ≥ 2 frames
MIN_VIDEO_FRAMES = MIN_CLIP_FRAMES

RANGE_TOLERANCE = 1e-3  # float frames this far outside [0, 1] are clamped (and reported); beyond: error

# -- frames ----------------------------------------------------------------------------------------


def _to_tensor(x: Any, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise OmniSyncError(f"{what} must be a torch tensor or numpy array, got {type(x).__name__}.")


CHECK_BLOCK_FRAMES = 16  # validate_frames checks this many frames at a time


def validate_frames(frames: Any, min_frames: int = MIN_VIDEO_FRAMES) -> Tuple[torch.Tensor, Dict[str, Any]]:
    """Check and normalise video frames.

    Args:
        frames: (T, H, W, 3) RGB, (T, H, W, 4) RGBA, (T, H, W, 1) or (T, H, W) grayscale, as a torch
            tensor, a numpy array or a list of (H, W[, C]) frames; uint8 (0–255), uint16 (0–65535),
            or float in [0, 1].
        min_frames: fewest frames accepted (2 for lip-sync input; 1 when writing a still).

    Returns:
        (frames (T, H, W, 3) float32 in [0, 1], info) with info = {"num_frames", "size": (H, W),
        "conversions": [what was changed, in words]}.
    """
    conversions = []
    if frames is None:
        raise OmniSyncError("no frames given (None); pass a video as (T, H, W, 3) frames.")
    if isinstance(frames, (list, tuple)):
        if len(frames) == 0:
            raise OmniSyncError("got 0 frames (an empty list); pass a video clip.")
        items = [_to_tensor(f, "each frame") for f in frames]
        first = tuple(items[0].shape)
        for i, f in enumerate(items):
            if tuple(f.shape) != first:
                raise OmniSyncError(
                    f"frames differ in size: frame 0 is {first} but frame {i} is {tuple(f.shape)}; "
                    "resize all frames to one size first."
                )
            if f.dtype != items[0].dtype:
                raise OmniSyncError(f"frames differ in dtype: frame 0 is {items[0].dtype}, frame {i} is {f.dtype}.")
        x = torch.stack(items)
    else:
        x = _to_tensor(frames, "frames")

    if x.ndim == 2 or (x.ndim == 3 and x.shape[-1] in (3, 4)):
        raise OmniSyncError(
            f"got 1 frame (a single image of shape {tuple(x.shape)}); lip-sync needs a video: pass a clip of "
            f"at least {min_frames} frames as (T, H, W, 3)."
        )
    if x.ndim == 3:
        x = x[..., None]
        conversions.append("grayscale (T, H, W) replicated to RGB")
    elif x.ndim == 4 and x.shape[-1] == 1:
        conversions.append("grayscale (1 channel) replicated to RGB")
    elif x.ndim != 4:
        raise OmniSyncError(
            f"frames must be (T, H, W, 3), got {x.ndim} dimensions {tuple(x.shape)}; for a batch of clips pass "
            "one clip at a time."
        )
    T, H, W, C = x.shape
    if C == 4:
        x = x[..., :3]
        conversions.append("alpha channel dropped (RGBA → RGB)")
    elif C not in (1, 3):
        raise OmniSyncError(
            f"frames have {C} channels in the last dimension {tuple(x.shape)}; expected (T, H, W, 3) "
            "channels-last RGB (permute channels-first tensors with .permute(0, 2, 3, 1))."
        )
    if T == 0:
        raise OmniSyncError("got 0 frames; pass a video clip with frames in it.")
    if T < min_frames:
        raise OmniSyncError(
            f"got {T} frame{'s' if T != 1 else ''}; lip-sync needs a video: pass a clip of at least "
            f"{min_frames} frames, not a single image."
        )
    if H == 0 or W == 0:
        raise OmniSyncError(f"frames have zero size {H}×{W} (H×W); pass real images.")

    if x.dtype == torch.uint8:
        x = x.float() / 255
        conversions.append("uint8 scaled by 1/255")
    elif x.dtype == getattr(torch, "uint16", None):
        x = x.float() / 65535
        conversions.append("uint16 scaled by 1/65535")
    elif x.dtype == torch.bool or not x.is_floating_point():
        raise OmniSyncError(
            f"frames have dtype {x.dtype}; pass uint8 (0–255) or float in [0, 1]."
        )
    else:
        x = x.float()
        bad, lo, hi = 0, math.inf, -math.inf
        for start in range(0, T, CHECK_BLOCK_FRAMES):  # a few frames at a time: no temporary as long as the clip
            block = x[start:start + CHECK_BLOCK_FRAMES]
            finite = torch.isfinite(block)
            if not bool(finite.all()):
                bad += int((~finite).sum())
            elif not bad:
                lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
        if bad:
            raise OmniSyncError(
                f"frames contain {bad} NaN or infinite values; fix the upstream node (decode or resize) that "
                "produced them."
            )
        if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            raise OmniSyncError(
                f"float frames must be in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; for [−1, 1] use (x + 1) / 2, "
                "for 0–255 floats divide by 255."
            )
        if lo < 0 or hi > 1:
            x = x.clamp(0, 1)
            conversions.append(f"values in [{lo:.3g}, {hi:.3g}] clamped to [0, 1]")
    if x.shape[-1] == 1:
        x = x.expand(T, H, W, 3)
    return x.contiguous(), {"num_frames": T, "size": (H, W), "conversions": conversions}
