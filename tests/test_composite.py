"""Composite outside the mouth: far pixels bit-exact source, centre exactly generated, monotone edge."""

import math

import pytest
import torch

from omnisync_core.image.composite import composite_outside_mouth, mouth_region_mask
from omnisync_core.errors import OmniSyncError

H, W = 48, 64
RADIUS = 0.25  # of min(H, W) = 12 px
FEATHER = 3.0


def distances(cx, cy):
    yy = torch.arange(H).view(H, 1) + 0.5
    xx = torch.arange(W).view(1, W) + 0.5
    return ((xx - cx * W) ** 2 + (yy - cy * H) ** 2).sqrt()  # (H, W) px


def test_mask_is_exactly_zero_outside_and_one_inside():
    centres = torch.tensor([[0.5, 0.5], [0.3, 0.6]])
    mask = mouth_region_mask(centres, H, W, radius=RADIUS, feather_px=FEATHER)
    assert mask.shape == (2, H, W) and mask.dtype == torch.float32
    r = RADIUS * min(H, W)
    for t, (cx, cy) in enumerate(centres.tolist()):
        d = distances(cx, cy)
        assert torch.all(mask[t][d > r + math.ceil(FEATHER)] == 0)
        assert torch.all(mask[t][d < r - math.ceil(FEATHER)] == 1)
        soft = mask[t][(d > r - 1) & (d < r + 1)]
        assert soft.numel() > 0 and torch.all((soft > 0) & (soft < 1))


def test_mask_is_monotone_along_rays():
    mask = mouth_region_mask(torch.tensor([[0.5, 0.5]]), H, W, radius=RADIUS, feather_px=FEATHER)[0]
    row = mask[H // 2, W // 2:]  # centre → right edge
    diag = torch.stack([mask[H // 2 + k, W // 2 + k] for k in range(H // 2)])
    for ray in (row, diag):
        assert torch.all(ray[1:] <= ray[:-1] + 1e-6)
        assert ray[0] == 1 and ray[-1] == 0


def test_composite_far_pixels_are_bit_exact_source():
    g = torch.Generator().manual_seed(0)
    gen, src = torch.rand(2, H, W, 3, generator=g), torch.rand(2, H, W, 3, generator=g)
    centres = torch.tensor([[0.5, 0.7], [0.5, 0.7]])
    mask = mouth_region_mask(centres, H, W, radius=RADIUS, feather_px=FEATHER)
    out = composite_outside_mouth(gen, src, mask)
    d = distances(0.5, 0.7)
    r = RADIUS * min(H, W)
    far, centre = d > r + math.ceil(FEATHER), d < r - math.ceil(FEATHER)
    assert torch.equal(out[:, far], src[:, far])
    assert torch.equal(out[:, centre], gen[:, centre])
    m = mask[..., None]
    assert torch.allclose(out, m * gen + (1 - m) * src, atol=1e-7)
    # between the two, each pixel lies between source and generated
    lo, hi = torch.minimum(gen, src), torch.maximum(gen, src)
    assert torch.all((out >= lo - 1e-7) & (out <= hi + 1e-7))


def test_box_mask_and_hard_mask():
    boxes = torch.tensor([[0.25, 0.5, 0.75, 0.9]])  # ellipse: centre (32, 33.6) px, radii 16 × 9.6 px
    hard = mouth_region_mask(None, H, W, boxes=boxes, feather_px=0)
    assert set(hard.unique().tolist()) == {0.0, 1.0}
    assert hard[0, 33, 32] == 1 and hard[0, 33, 17] == 1 and hard[0, 33, 14] == 0
    assert hard[0, 24, 32] == 1 and hard[0, 22, 32] == 0 and hard[0, 10, 32] == 0
    soft = mouth_region_mask(None, H, W, boxes=boxes, feather_px=2.0)
    assert soft[0, 5, 5] == 0 and soft[0, 33, 32] == 1


def test_bad_inputs():
    with pytest.raises(OmniSyncError, match="centres"):
        mouth_region_mask(torch.zeros(3), H, W)
    with pytest.raises(OmniSyncError, match="centres .* or boxes"):
        mouth_region_mask(None, H, W)
    with pytest.raises(OmniSyncError, match="same length and size"):
        composite_outside_mouth(torch.rand(2, 8, 8, 3), torch.rand(3, 8, 8, 3), torch.zeros(2, 8, 8))
    with pytest.raises(OmniSyncError, match=r"mask must be \(T, H, W\)"):
        composite_outside_mouth(torch.rand(2, 8, 8, 3), torch.rand(2, 8, 8, 3), torch.zeros(2, 8, 9))
