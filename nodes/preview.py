"""OmniSync Guidance Strip: the per-frame guidance map → one image of a few frames side by side."""

from __future__ import annotations

import torch

from omnisync_core.errors import OmniSyncError

from .bridge import CATEGORY

STRIP_GAP_PX = 2  # grey column between frames, so neighbouring maps do not run together
STRIP_GAP_VALUE = 0.5
MAX_STRIP_FRAMES = 16


def frame_strip(mask: torch.Tensor, count: int) -> torch.Tensor:
    """mask (T, H, W) in [0, 1] → IMAGE (1, H, n·W + (n − 1)·gap, 3) of n = min(count, T) evenly spaced
    frames, first and last included."""
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3 or mask.shape[0] < 1:
        raise OmniSyncError(f"guidance_map must be a MASK (T, H, W), got shape {tuple(mask.shape)}.")
    T, H, _ = mask.shape
    n = min(count, T)
    picks = torch.linspace(0, T - 1, n).round().long()  # (n,)
    gap = torch.full((H, STRIP_GAP_PX), STRIP_GAP_VALUE, dtype=mask.dtype, device=mask.device)
    tiles = []
    for i, t in enumerate(picks.tolist()):
        if i:
            tiles.append(gap)
        tiles.append(mask[t])
    strip = torch.cat(tiles, dim=1)  # (H, W_strip)
    return strip[None, ..., None].expand(-1, -1, -1, 3).float().cpu().contiguous()


class OmniSyncGuidanceStrip:
    DESCRIPTION = (
        "Shows a per-frame guidance map (from the DS-CFG Sampler or Lip Sync) as one image: a few evenly "
        "spaced frames side by side, first and last included, so Preview Image shows one picture instead of "
        "one per frame."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("strip",)
    OUTPUT_TOOLTIPS = ("One image (1, H, n·W + gaps, 3): n frames of the map, left to right in time.",)
    FUNCTION = "strip"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "guidance_map": ("MASK", {"tooltip": "The guidance_map output (T, H, W) of the Sampler or Lip Sync."}),
                "frames": ("INT", {
                    "default": 8, "min": 1, "max": MAX_STRIP_FRAMES,
                    "tooltip": "How many evenly spaced frames to show (all of them when the clip is shorter).",
                }),
            }
        }

    def strip(self, guidance_map, frames):
        return (frame_strip(torch.as_tensor(guidance_map), frames),)
