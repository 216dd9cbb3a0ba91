"""Synthetic talking characters: determinism, the mouth's response to each param, the pseudo-pair
property (only the mouth box depends on the mouth track), motion, blinks and occluders."""

import dataclasses
import json
import time

import numpy as np
import pytest

from omnisync_core.data.characters import (
    DARK_LUMA,
    KINDS,
    OCCLUDER_COVER,
    SUBTYPES,
    Character,
    MotionTrack,
    bench,
    random_character,
    random_motion,
    render_clip,
    save_contact_sheet,
)
from omnisync_core.errors import OmniSyncError

SIZE = (128, 128)
FPS = 25.0
SEEDS = range(4)  # per kind, in the property tests


def params(open_=0.0, width=0.5, round_=0.2, teeth=0.0, tongue=0.3, frames=1):
    return np.tile(np.array([[open_, width, round_, teeth, tongue]], np.float32), (frames, 1))


def luma(frames):
    f = frames.astype(np.float64)
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


def box_slices(box, size, dilate=0):
    """Pixel slices (rows, cols) covering a (x0, y0, x1, y1) fraction box, grown by ``dilate`` px."""
    H, W = size
    x0, y0 = int(np.floor(box[0] * W)) - dilate, int(np.floor(box[1] * H)) - dilate
    x1, y1 = int(np.ceil(box[2] * W)) + dilate, int(np.ceil(box[3] * H)) + dilate
    return slice(max(y0, 0), min(y1, H)), slice(max(x0, 0), min(x1, W))


def near(frames, colour, tol=12):
    return (np.abs(frames.astype(np.int32) - np.array(colour)).max(-1) <= tol)


def test_same_seed_same_bytes():
    ch = random_character(7)
    assert random_character(7) == ch
    m1, m2 = random_motion(7, 12, FPS), random_motion(7, 12, FPS)
    for name in ("dx", "dy", "nod", "turn", "roll", "scale", "blink"):
        assert np.array_equal(getattr(m1, name), getattr(m2, name))
    p = np.random.default_rng(0).random((12, 5))
    a, b = render_clip(ch, m1, p, (64, 64)), render_clip(ch, m2, p, (64, 64))
    assert a.frames.tobytes() == b.frames.tobytes()
    assert a.mouth_mask.tobytes() == b.mouth_mask.tobytes()
    assert np.array_equal(a.mouth_box, b.mouth_box)
    assert random_character(8) != ch


def test_character_json_round_trip():
    for seed in range(6):
        ch = random_character(seed)
        back = Character.from_dict(json.loads(json.dumps(ch.to_dict())))
        assert back == ch
    d = random_character(0).to_dict()
    d["wings"] = 2
    with pytest.raises(OmniSyncError, match="unknown"):
        Character.from_dict(d)


def test_every_kind_and_subtype_renders():
    seen = set()
    for kind in KINDS:
        for seed in range(40):
            ch = random_character(seed, kind)
            assert ch.kind == kind and ch.subtype in SUBTYPES[kind]
            seen.add(ch.subtype)
        r = render_clip(random_character(0, kind), random_motion(0, 2, FPS), params(0.6, frames=2), SIZE)
        assert r.frames.shape == (2, *SIZE, 3) and r.frames.dtype == np.uint8
        assert r.mouth_mask.shape == (2, *SIZE) and r.mouth_mask.dtype == np.uint8
        assert r.mouth_centre.shape == (2, 2) and r.mouth_box.shape == (2, 4)
        assert r.frames.std() > 10  # a drawing, not a flat frame
        assert r.mouth_mask.sum() > 0
    assert seen == {s for k in KINDS for s in SUBTYPES[k]}
    with pytest.raises(OmniSyncError):
        random_character(0, "dragon")


@pytest.mark.parametrize("kind", KINDS)
def test_dark_area_grows_with_open(kind):
    """Dark pixels in the mouth box (luma < DARK_LUMA) strictly increase over open = 0, 0.5, 1.

    Beards are removed here: a dark beard around the lips is covered by the lips as they open."""
    for seed in SEEDS:
        ch = dataclasses.replace(random_character(seed, kind), beard=None)
        r = render_clip(ch, MotionTrack.still(3, FPS), np.concatenate([params(o) for o in (0.0, 0.5, 1.0)]), SIZE)
        rows, cols = box_slices(r.mouth_box[0], SIZE)
        dark = (luma(r.frames[:, rows, cols]) < DARK_LUMA).reshape(3, -1).sum(1)
        assert dark[0] < dark[1] < dark[2], (seed, ch.subtype, dark)
        # With the beard: the inner-mouth colour's area still grows.
        ch = random_character(seed, kind)
        r = render_clip(ch, MotionTrack.still(3, FPS), np.concatenate([params(o) for o in (0.0, 0.5, 1.0)]), SIZE)
        inner = near(r.frames[:, rows, cols], ch.inner_colour).reshape(3, -1).sum(1)
        assert inner[0] < inner[1] < inner[2], (seed, ch.subtype, inner)


def _inner_bbox(frame, colour):
    ys, xs = np.nonzero(near(frame, colour))
    return xs.max() - xs.min() + 1, ys.max() - ys.min() + 1


def test_width_round_teeth_tongue():
    ch = dataclasses.replace(random_character(3, "human"), head_scale=0.9, occluder=None, beard=None)
    still = MotionTrack.still(1, FPS)

    def frame(**kw):
        return render_clip(ch, still, params(**kw), SIZE).frames[0]

    narrow_w, _ = _inner_bbox(frame(open_=0.8, width=0.0, round_=0.0), ch.inner_colour)
    wide_w, _ = _inner_bbox(frame(open_=0.8, width=1.0, round_=0.0), ch.inner_colour)
    assert wide_w > narrow_w
    flat_w, flat_h = _inner_bbox(frame(open_=0.8, round_=0.0), ch.inner_colour)
    round_w, round_h = _inner_bbox(frame(open_=0.8, round_=1.0), ch.inner_colour)
    assert round_w < flat_w and round_h > flat_h and round_h / round_w > flat_h / flat_w
    # Upper teeth only where teeth > 0.5 and open > 0.2; below either threshold nothing changes.
    teeth = [near(frame(open_=0.8, teeth=v), ch.teeth_colour).sum() for v in (0.0, 1.0)]
    assert teeth[1] > teeth[0] + 10
    assert np.array_equal(frame(open_=0.15, teeth=1.0), frame(open_=0.15, teeth=0.0))
    assert np.array_equal(frame(open_=0.8, teeth=0.45), frame(open_=0.8, teeth=0.0))
    tongue = [near(frame(open_=0.8, tongue=v), ch.tongue_colour).sum() for v in (0.0, 1.0)]
    assert tongue[1] > tongue[0] + 10
    assert np.array_equal(frame(open_=0.0, tongue=1.0), frame(open_=0.0, tongue=0.0))


@pytest.mark.parametrize("kind", KINDS)
def test_pseudo_pair_only_mouth_box_differs(kind):
    T, size = 8, (96, 96)
    for seed in SEEDS:
        ch = random_character(seed, kind)
        motion = random_motion(seed, T, FPS)
        rng = np.random.default_rng(seed)
        a = render_clip(ch, motion, rng.random((T, 5)), size)
        b = render_clip(ch, motion, rng.random((T, 5)), size)
        assert np.array_equal(a.mouth_box, b.mouth_box) and np.array_equal(a.mouth_mask, b.mouth_mask)
        differs_in_box = 0
        for t in range(T):
            diff = (a.frames[t] != b.frames[t]).any(-1)
            rows, cols = box_slices(a.mouth_box[t], size, dilate=1)
            inside = diff[rows, cols].sum()
            diff[rows, cols] = False
            assert not diff.any(), (seed, ch.subtype, t, int(diff.sum()))
            differs_in_box += inside > 0
            outside_mask = a.mouth_mask[t].copy()
            outside_mask[rows, cols] = 0
            assert not outside_mask.any()
        assert differs_in_box >= T - 1  # two random tracks rarely give one identical frame


def test_mouth_centre_in_box_and_follows_sway():
    T = 6
    sway = np.linspace(0.0, 0.05, T, dtype=np.float32)
    for kind in KINDS:
        ch = random_character(1, kind)
        still = MotionTrack.still(T, FPS)
        moved = dataclasses.replace(still, dx=sway, dy=-sway)
        r0 = render_clip(ch, still, params(0.5, frames=T), SIZE)
        r1 = render_clip(ch, moved, params(0.5, frames=T), SIZE)
        for r in (r0, r1, render_clip(ch, random_motion(1, T, FPS), params(0.5, frames=T), SIZE)):
            x, y = r.mouth_centre[:, 0], r.mouth_centre[:, 1]
            b = r.mouth_box
            assert ((b[:, 0] < x) & (x < b[:, 2]) & (b[:, 1] < y) & (y < b[:, 3])).all()
        np.testing.assert_allclose(r1.mouth_centre[:, 0] - r0.mouth_centre[:, 0], sway, atol=1e-5)
        np.testing.assert_allclose(r1.mouth_centre[:, 1] - r0.mouth_centre[:, 1], -sway, atol=1e-5)
        assert not np.array_equal(r0.frames[-1], r1.frames[-1])


def test_random_motion_is_smooth_and_blinks():
    m = random_motion(3, 250, FPS)  # 10 s
    assert m.num_frames == 250 and m.blink.max() == 1.0
    starts = np.flatnonzero((m.blink[1:] > 0) & (m.blink[:-1] == 0)) + 1
    assert 2 <= len(starts) <= 6  # one every 2–6 s (the first within 2 s)
    assert np.diff(starts).min() >= 2.0 * FPS - 2
    assert (m.blink > 0).sum() <= len(starts) * (0.15 * FPS + 2)  # each lasts about 0.15 s
    for name in ("dx", "dy", "nod", "turn", "roll"):
        x = getattr(m, name)
        assert np.abs(np.diff(x, 2)).max() < 0.1 * (np.abs(x).max() + 1e-6)  # no frame-level jitter
    assert np.abs(m.scale - 1).max() < 0.05


def test_blink_changes_only_the_eyes():
    for kind in KINDS:
        ch = dataclasses.replace(random_character(2, kind), glasses=None)
        still = MotionTrack.still(2, FPS)
        blink = dataclasses.replace(still, blink=np.array([0.0, 1.0], np.float32))
        r = render_clip(ch, blink, params(0.5, frames=2), SIZE)
        diff = (r.frames[0] != r.frames[1]).any(-1)
        assert diff.sum() > 4, ch.subtype
        rows, cols = box_slices(r.mouth_box[0], SIZE, dilate=1)
        assert not diff[rows, cols].any()
        ys, _ = np.nonzero(diff)
        assert ys.max() < r.mouth_box[0, 1] * SIZE[0]  # all above the mouth


def test_occluder_never_hides_the_mouth():
    """Covered pixels are found by recolouring the occluder and comparing with no occluder at all."""
    worst = 1.0
    for occluder in ("hand", "mic", "pencil", "cup"):
        for seed in range(6):
            base = random_character(seed, KINDS[seed % 3])
            ch = dataclasses.replace(base, occluder=occluder, occluder_cover=OCCLUDER_COVER[1],
                                     occluder_colour=(0, 255, 0))
            motion = random_motion(seed, 3, FPS)
            p = params(0.7, frames=3)
            occluded = render_clip(ch, motion, p, SIZE)
            clear = render_clip(dataclasses.replace(ch, occluder=None), motion, p, SIZE)
            region = clear.mouth_mask.astype(bool)
            covered = (occluded.frames != clear.frames).any(-1) & region
            visible = 1 - covered.reshape(3, -1).sum(1) / region.reshape(3, -1).sum(1)
            worst = min(worst, visible.min())
            assert covered.any(), (occluder, seed)
            np.testing.assert_allclose(occluded.mouth_visible, visible, atol=0.1)
    assert worst > 0.4


def test_bad_inputs_raise():
    ch, motion = random_character(0), MotionTrack.still(3, FPS)
    with pytest.raises(OmniSyncError, match="frames"):
        render_clip(ch, motion, params(frames=4))
    with pytest.raises(OmniSyncError, match=r"\(T, 5\)"):
        render_clip(ch, motion, np.zeros((3, 4)))
    with pytest.raises(OmniSyncError, match=r"\[0, 1\]"):
        render_clip(ch, motion, params(1.5, frames=3))


def test_ten_frames_at_64_are_quick(tmp_path):
    ch, motion = random_character(5), random_motion(5, 10, FPS)
    t0 = time.perf_counter()
    r = render_clip(ch, motion, np.random.default_rng(5).random((10, 5)), (64, 64))
    assert time.perf_counter() - t0 < 2.0  # ~10 ms here; generous for loaded CI machines
    assert r.frames.shape == (10, 64, 64, 3)
    lines = []
    assert bench(num_frames=2, size=(32, 32), seeds=(0,), report=lines.append) > 0 and "32x32" in lines[0]
    path = save_contact_sheet(str(tmp_path / "sheet.png"), list(r.frames[:3]), columns=2)
    from PIL import Image

    assert Image.open(path).size == (2 * 64 + 3 * 2, 2 * 64 + 3 * 2)
