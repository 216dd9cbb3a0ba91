"""Keep everything but the mouth identical to the source video.

A hard disc (or ellipse) around the mouth is feathered with a Gaussian kernel (kornia) truncated to a
disc of radius ``ceil(feather_px)`` pixels. A square kernel (``gaussian_blur2d``) would reach √2×
farther along the diagonals; the round one makes the guarantee isotropic: the mask is exactly 0
farther than ``radius + ceil(feather_px)`` from the centre and exactly 1 closer than
``radius − ceil(feather_px)``. Where the mask is 0 the composite returns the source bit for bit.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from kornia.filters import filter2d, get_gaussian_kernel2d

from ..errors import OmniSyncError

MASK_SNAP = 1e-4  # blurred values this close to 0 or 1 are set to exactly 0 or 1 (float rounding)


def mouth_region_mask(
    centres: Optional[torch.Tensor],
    H: int,
    W: int,
    radius: float = 0.2,
    feather_px: float = 4.0,
    boxes: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Soft mouth mask per frame.

    Args:
        centres: (T, 2) mouth centres as frame fractions (x, y) in [0, 1]; a fraction f is at pixel
            coordinate f·W (pixel j covers [j, j + 1)). Ignored when ``boxes`` is given.
        H, W: frame size in pixels.
        radius: disc radius as a fraction of min(H, W).
        feather_px: width in pixels of the soft edge on each side of the hard edge (0 = hard mask).
        boxes: (T, 4) mouth boxes (x0, y0, x1, y1) as frame fractions; the mask is the ellipse
            inscribed in each box.

    Returns:
        (T, H, W) float32 in [0, 1]: 1 at the mouth, exactly 0 farther than ``ceil(feather_px)`` pixels
        outside the disc/ellipse, monotone in between.
    """
    if H < 1 or W < 1:
        raise OmniSyncError(f"mask size must be positive, got {H}×{W} (H×W).")
    if feather_px < 0 or not math.isfinite(feather_px):
        raise OmniSyncError(f"feather_px must be a finite number ≥ 0, got {feather_px}.")
    yy = torch.arange(H, dtype=torch.float32).view(1, H, 1) + 0.5  # pixel centres
    xx = torch.arange(W, dtype=torch.float32).view(1, 1, W) + 0.5
    if boxes is not None:
        boxes = torch.as_tensor(boxes, dtype=torch.float32)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise OmniSyncError(f"boxes must be (T, 4) fractions (x0, y0, x1, y1), got shape {tuple(boxes.shape)}.")
        x0, y0, x1, y1 = (boxes[:, i].view(-1, 1, 1) for i in range(4))
        if bool(((x1 <= x0) | (y1 <= y0)).any()):
            raise OmniSyncError("every mouth box needs x1 > x0 and y1 > y0 (fractions of the frame).")
        cx, cy = (x0 + x1) / 2 * W, (y0 + y1) / 2 * H
        rx, ry = (x1 - x0) / 2 * W, (y1 - y0) / 2 * H
        inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
    else:
        if centres is None:
            raise OmniSyncError("give mouth centres (T, 2) or boxes (T, 4) to build the mouth mask.")
        centres = torch.as_tensor(centres, dtype=torch.float32).cpu()
        if centres.ndim != 2 or centres.shape[1] != 2:
            raise OmniSyncError(f"centres must be (T, 2) fractions (x, y), got shape {tuple(centres.shape)}.")
        if not (radius > 0 and math.isfinite(radius)):
            raise OmniSyncError(f"radius must be a positive fraction of min(H, W), got {radius}.")
        r = radius * min(H, W)
        cx, cy = centres[:, 0].view(-1, 1, 1) * W, centres[:, 1].view(-1, 1, 1) * H
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    mask = inside.float()  # (T, H, W) hard
    if feather_px > 0:
        mask = filter2d(mask[:, None], _round_gaussian_kernel(feather_px), border_type="replicate")[:, 0]
        mask = torch.where(mask < MASK_SNAP, torch.zeros_like(mask), mask)
        mask = torch.where(mask > 1 - MASK_SNAP, torch.ones_like(mask), mask)
    return mask


def _round_gaussian_kernel(feather_px: float) -> torch.Tensor:
    """(1, k, k) Gaussian with σ = feather_px / 2, zero outside the disc of radius ceil(feather_px), sum 1."""
    half = math.ceil(feather_px)
    sigma = feather_px / 2
    kernel = get_gaussian_kernel2d((2 * half + 1, 2 * half + 1), (sigma, sigma))  # (1, k, k)
    offsets = torch.arange(-half, half + 1, dtype=torch.float32)
    outside = offsets.view(-1, 1) ** 2 + offsets.view(1, -1) ** 2 > half * half
    kernel = kernel.masked_fill(outside[None], 0.0)
    return kernel / kernel.sum()


def composite_outside_mouth(generated: torch.Tensor, source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """mask·generated + (1 − mask)·source, with exact source where mask is 0 and exact generated at 1.

    generated, source: (T, H, W, 3) float in [0, 1]; mask: (T, H, W) in [0, 1]. Returns (T, H, W, 3).
    """
    if generated.shape != source.shape:
        raise OmniSyncError(
            f"generated frames {tuple(generated.shape)} and source frames {tuple(source.shape)} differ in shape; "
            "composite frames of the same length and size (crop the padding back first)."
        )
    if generated.ndim != 4 or mask.shape != generated.shape[:3]:
        raise OmniSyncError(
            f"mask must be (T, H, W) = {tuple(generated.shape[:3])} for frames (T, H, W, 3) "
            f"{tuple(generated.shape)}, got {tuple(mask.shape)}."
        )
    source = source.to(generated.device, generated.dtype)
    m = mask.to(generated.device, generated.dtype)[..., None]  # (T, H, W, 1)
    blend = m * generated + (1 - m) * source
    out = torch.where(m == 0, source, blend)
    return torch.where(m == 1, generated, out)


# -- X-Dub's clip post-processing (reference utils.py: color_correction, blend_crop_video_with_ref) --------

COLOR_MATCH_THRESHOLD = 0.07  # a pixel whose mean |generated − source| over RGB is below this is "unchanged"
COLOR_MATCH_EPS = 1e-7  # added to both variances of the std ratio
BORDER_BLUR_PX = 33  # box blur (applied twice) that feathers the border blend


def color_correct(generated: torch.Tensor, source: torch.Tensor, threshold: float = COLOR_MATCH_THRESHOLD,
                  eps: float = COLOR_MATCH_EPS) -> torch.Tensor:
    """Match each frame's colours to the source over the pixels the model left (almost) unchanged.

    generated, source: (T, H, W, 3) float in [0, 1]. Per frame, over the pixels whose mean |g − s| over
    RGB is below ``threshold``, each channel is shifted and scaled so its mean and standard deviation
    (unbiased) equal the source's there; the whole frame gets that affine map. Frames with fewer than 2
    such pixels are returned unchanged. Returns (T, H, W, 3) clamped to [0, 1].
    """
    if generated.shape != source.shape or generated.ndim != 4 or generated.shape[-1] != 3:
        raise OmniSyncError(f"colour correction needs two (T, H, W, 3) videos of one size, got "
                            f"{tuple(generated.shape)} and {tuple(source.shape)}.")
    g, s = generated.float(), source.float().to(generated.device)
    mask = ((g - s).abs().mean(-1) < threshold).float()[..., None]  # (T, H, W, 1)
    n = mask.sum((1, 2), keepdim=True)  # (T, 1, 1, 1)
    ok = n > 1
    n_safe = n.clamp_min(2)

    def stats(x):
        mean = (x * mask).sum((1, 2), keepdim=True) / n_safe  # (T, 1, 1, 3)
        var = (((x - mean) ** 2) * mask).sum((1, 2), keepdim=True) / (n_safe - 1)
        return mean, var

    mean_g, var_g = stats(g)
    mean_s, var_s = stats(s)
    adjusted = (g - mean_g) * torch.sqrt((var_s + eps) / (var_g + eps)) + mean_s
    return torch.where(ok, adjusted, g).clamp(0, 1)


def border_blend_mask(H: int, W: int, margin_px: int, blur_px: int = BORDER_BLUR_PX) -> torch.Tensor:
    """(H, W) float: 1 on a ``margin_px`` frame around the edge, 0 inside, softened by a box blur of
    ``blur_px`` (made odd and at most min(H, W)/2 − 1) applied twice with mirrored edges."""
    max_blur = max(1, min(H, W) // 2 - 1)
    k = max(1, min(int(blur_px), max_blur))
    if k % 2 == 0:
        k = k + 1 if k < max_blur else k - 1
    m = max(0, min(int(margin_px), min(H, W) // 2 - 1))
    mask = torch.ones(1, 1, H, W)
    mask[..., m:H - m, m:W - m] = 0.0
    for _ in range(2):
        mask = F.avg_pool2d(F.pad(mask, (k // 2,) * 4, mode="reflect"), k, stride=1)
    return mask[0, 0]


def blend_border(generated: torch.Tensor, source: torch.Tensor, margin_px: int,
                 blur_px: int = BORDER_BLUR_PX) -> torch.Tensor:
    """Fade the generated crop into the source over its outer ``margin_px`` pixels.

    generated, source: (T, H, W, 3) in [0, 1]; returns generated·(1 − m) + source·m with
    m = :func:`border_blend_mask`, so the crop's edge is the source's and pastes back without a seam.
    """
    mask = border_blend_mask(generated.shape[1], generated.shape[2], margin_px, blur_px).to(generated.device)
    mask = mask[None, :, :, None]  # (1, H, W, 1)
    return (generated * (1 - mask) + source.to(generated) * mask).clamp(0, 1)
