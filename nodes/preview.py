"""OmniSync Guidance Strip: the per-frame guidance map → one image of a few frames side by side."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from omnisync_core.errors import OmniSyncError

from .bridge import CATEGORY
from .feedback import HIDDEN, Feedback

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


class OmniSyncGuidanceStrip(io.ComfyNode):
    DISPLAY_NAME = "OmniSync Guidance Strip"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="OmniSyncGuidanceStrip",
            display_name=cls.DISPLAY_NAME,
            category=CATEGORY,
            description=(
                "Shows a per-frame guidance map (from the DS-CFG Sampler or Lip Sync) as one image: a few evenly "
                "spaced frames side by side, first and last included, so Preview Image shows one picture instead of "
                "one per frame."
            ),
            inputs=[
                io.Mask.Input("guidance_map", tooltip="The guidance_map output (T, H, W) of the Sampler or Lip Sync."),
                io.Int.Input("frames", default=8, min=1, max=MAX_STRIP_FRAMES,
                             tooltip="How many evenly spaced frames to show (all of them when the clip is shorter)."),
            ],
            outputs=[io.Image.Output(display_name="strip", tooltip="One image (1, H, n·W + gaps, 3): n frames of the "
                                                                   "map, left to right in time.")],
            hidden=list(HIDDEN),
        )

    @classmethod
    def execute(cls, guidance_map, frames) -> io.NodeOutput:
        mask = torch.as_tensor(guidance_map)
        strip = frame_strip(mask, frames)
        if mask.ndim == 3 and mask.shape[0] > frames:
            Feedback(cls, cls.DISPLAY_NAME).info(f"{frames} of {mask.shape[0]} frames shown.")
        return io.NodeOutput(strip)
