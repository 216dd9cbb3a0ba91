"""Held-out metrics by hand: the mouth region, the errors and the summary."""

import math

import numpy as np
import pytest
import torch

from omnisync_core.eval.heldout import _balanced, clip_metrics, mouth_region, summarise


def test_mouth_region_is_the_union_of_grown_boxes():
    a = np.array([[0.25, 0.25, 0.5, 0.5]])  # grown by 0.25·0.25 = 0.0625 on each side
    b = np.array([[0.5, 0.5, 0.75, 0.75]])
    r = mouth_region(a, b, 8, 8)[0]
    xs = (np.arange(8) + 0.5) / 8
    in_a = (xs >= 0.1875) & (xs <= 0.5625)
    in_b = (xs >= 0.4375) & (xs <= 0.8125)
    expect = np.outer(in_a, in_a) | np.outer(in_b, in_b)
    assert np.array_equal(r.numpy(), expect)


def test_clip_metrics_by_hand():
    source = torch.zeros(1, 4, 4, 3)
    truth = source.clone()
    truth[0, :2, :2] = 1.0  # the mouth moved: region = top-left 2×2
    region = torch.zeros(1, 4, 4, dtype=torch.bool)
    region[0, :2, :2] = True
    out = truth.clone()
    out[0, 3, 3] = 0.1  # a small error outside the mouth
    m = clip_metrics(out, source, truth, region)
    assert m["mouth_mae"] == pytest.approx(0.0)
    assert m["copy_mouth_mae"] == pytest.approx(255.0)
    mse = 0.01 / 12  # one pixel (3 channels of 0.1² each) over 12 outside pixels × 3 channels
    assert m["psnr_outside"] == pytest.approx(10 * math.log10(1 / mse))


def test_summary_and_balanced_selection():
    rows = [{"kind": "human", "mouth_mae": 2.0, "copy_mouth_mae": 4.0, "psnr_outside": 30.0},
            {"kind": "robot", "mouth_mae": 3.0, "copy_mouth_mae": 3.0, "psnr_outside": 40.0}]
    s = summarise(rows)
    assert s["human"]["improvement"] == pytest.approx(0.5)
    assert s["all"]["mouth_mae"] == pytest.approx(2.5) and s["all"]["clips"] == 2
    entries = [{"kind": k, "i": i} for i, k in enumerate(["a", "a", "a", "b", "c", "c"])]
    assert [e["i"] for e in _balanced(entries, 4)] == [0, 3, 4, 1]


def test_mouth_region_takes_the_shorter_of_two_box_tracks():
    a = np.tile([[0.2, 0.2, 0.4, 0.4]], (5, 1))
    b = np.tile([[0.6, 0.6, 0.8, 0.8]], (3, 1))
    assert mouth_region(a, b, 10, 10).shape == (3, 10, 10)
