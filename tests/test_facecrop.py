"""Face crop and paste-back (omnisync_core.image.facecrop) and its node pair, on small synthetic frames."""

import math
import sys

import pytest
import torch
import torch.nn.functional as F

from omnisync_core.errors import Cancelled, OmniSyncError
from omnisync_core.image.facecrop import (
    DEFAULT_EXPAND,
    FaceCropTrack,
    crop_faces,
    face_track,
    paste_back,
    smooth_track,
)

T, H, W = 5, 72, 96


def frames(T=T, H=H, W=W, seed=0):
    return torch.rand(T, H, W, 3, generator=torch.Generator().manual_seed(seed))


def smooth_frames(T=T, H=H, W=W):
    """Low-frequency content (resizing it loses little), different per frame."""
    yy = torch.linspace(0, 1, H).view(1, H, 1, 1)
    xx = torch.linspace(0, 1, W).view(1, 1, W, 1)
    t = torch.arange(T, dtype=torch.float32).view(T, 1, 1, 1)
    ch = torch.tensor([1.0, 2.0, 3.0]).view(1, 1, 1, 3)
    return 0.5 + 0.4 * torch.sin(2 * math.pi * (0.7 * xx + 0.5 * yy) * ch / 3 + 0.3 * t)


def rect_mask(T=T, box=(30, 20, 24, 18)):
    x, y, w, h = box
    m = torch.zeros(T, H, W)
    m[:, y:y + h, x:x + w] = 1.0
    return m


def outside(track, t):
    """(H, W) bool: pixels outside frame t's box."""
    x0, y0, s = track.boxes[t].tolist()
    keep = torch.ones(H, W, dtype=torch.bool)
    keep[max(y0, 0):y0 + s, max(x0, 0):x0 + s] = False
    return keep


# -- round trips -----------------------------------------------------------------------------------------


def test_round_trip_is_exact_when_the_box_is_the_crop_size():
    x = frames()
    track = face_track(x, "box", box=(10, 5, 40, 40), smoothing=0)
    crops = crop_faces(x, track, size=40)
    assert torch.equal(crops[2], x[2, 5:45, 10:50])
    for feather in (0.0, 6.0):
        out = paste_back(x, crops, track, feather_px=feather)
        assert torch.allclose(out, x, atol=1e-6) and torch.equal(out[:, :, 50:], x[:, :, 50:])
    assert torch.equal(paste_back(x, crops, track, feather_px=0.0), x)


def test_round_trip_through_a_resize_is_close_inside_and_exact_outside():
    x = smooth_frames()
    track = face_track(x, "point", point=(0.4, 0.5), scale=0.6, smoothing=0)  # side 43 px -> 64 px and back
    assert track.boxes[0, 2] == 43
    crops = crop_faces(x, track, size=64)
    out = paste_back(x, crops, track, feather_px=0.0)
    for t in range(T):
        assert torch.equal(out[t][outside(track, t)], x[t][outside(track, t)])
    assert (out - x).abs().max() < 0.02  # bilinear down/up of a smooth picture
    assert (out - x).abs().max() > 0  # the inside was really replaced


def test_paste_with_no_feather_is_the_resized_crop_inside_the_box():
    x = frames()
    track = face_track(x, "box", box=(20, 10, 30, 30), smoothing=0)
    processed = frames(T, 48, 48, seed=1)
    out = paste_back(x, processed, track, feather_px=0.0)
    want = F.interpolate(processed[3].permute(2, 0, 1)[None], size=(30, 30), mode="bilinear", antialias=True,
                         align_corners=False)[0].permute(1, 2, 0)
    assert torch.equal(out[3, 10:40, 20:50], want)
    assert torch.equal(out[3][outside(track, 3)], x[3][outside(track, 3)])


def test_feather_blends_only_near_box_edges_away_from_the_frame_border():
    x = torch.zeros(1, H, W, 3)
    processed = torch.ones(1, 32, 32, 3)
    track = face_track(x, "box", box=(0, 20, 32, 32), smoothing=0)  # left side on the frame border
    out = paste_back(x, processed, track, feather_px=8.0)[0, ..., 0]
    assert out[36, 0] == 1.0  # on the frame border: not feathered
    assert 0 < out[36, 31] < 0.1 and out[36, 24] < 1 and out[36, 23] == 1.0  # right edge ramps over 8 px
    assert 0 < out[20, 10] < 0.1 and out[28, 10] == 1.0  # top edge too
    assert torch.equal(out[:20], torch.zeros(20, W)) and torch.equal(out[:, 32:], torch.zeros(H, W - 32))


# -- modes -------------------------------------------------------------------------------------------------


def test_mask_mode_box_is_the_expanded_square_around_the_mask():
    x = frames()
    track = face_track(x, "mask", mask=rect_mask(box=(30, 20, 24, 18)), smoothing=0)
    side = round(DEFAULT_EXPAND * 24)  # 35 px: the longer side × 1.45
    assert side == 35 and track.boxes.tolist() == [[25, 12, side]] * T  # centre (42, 29); halves round up
    assert track.found.all() and track.report.no_face_frames == []


def test_one_mask_for_all_frames_and_a_mask_of_another_size():
    x = frames()
    one = face_track(x, "mask", mask=rect_mask(T=1), smoothing=0)
    assert torch.equal(one.boxes, face_track(x, "mask", mask=rect_mask(), smoothing=0).boxes)
    with pytest.raises(OmniSyncError, match="resize the mask"):
        face_track(x, "mask", mask=torch.ones(T, H // 2, W))
    with pytest.raises(OmniSyncError, match="3 frames but the video has 5"):
        face_track(x, "mask", mask=rect_mask(T=3))
    with pytest.raises(OmniSyncError, match="connect one"):
        face_track(x, "mask")


def test_box_mode_makes_a_square_around_the_box_centre():
    x = frames()
    track = face_track(x, "box", box=(10, 10, 30, 20), smoothing=5)
    assert track.boxes.tolist() == [[10, 5, 30]] * T  # centre (25, 20), side 30
    assert any("made square" in n for n in track.report.notes)


def test_point_mode_centre_and_scale():
    x = frames()
    track = face_track(x, "point", point=(0.5, 0.5), scale=0.5, smoothing=0)
    assert track.boxes.tolist() == [[30, 18, 36]] * T  # side 0.5·72, centred at (48, 36)
    with pytest.raises(OmniSyncError, match=r"x, y fractions in \[0, 1\]"):
        face_track(x, "point", point=(1.2, 0.5))
    with pytest.raises(OmniSyncError, match="must be > 0"):
        face_track(x, "point", point=(0.5, 0.5), scale=0.0)


def test_auto_mode_with_a_detector_and_without_mediapipe(monkeypatch):
    x = frames()
    misses = {1}

    def detector(frame):
        assert frame.dtype.name == "uint8" and frame.shape == (H, W, 3)
        detector.calls += 1
        return None if detector.calls - 1 in misses else (40.0, 20.0, 60.0, 44.0)

    detector.calls = 0
    track = face_track(x, "auto", detector=detector, smoothing=0)
    assert track.boxes[0].tolist() == [33, 15, 35]  # centre (50, 32), side round(1.45 · 24)
    assert track.report.no_face_frames == [1] and torch.equal(track.boxes[1], track.boxes[0])
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # import fails as when not installed
    with pytest.raises(OmniSyncError, match="pip install mediapipe"):
        face_track(x, "auto")
    with pytest.raises(OmniSyncError, match="no face was found in any frame"):
        face_track(x, "auto", detector=lambda f: None)


def test_mediapipe_adapters_take_the_largest_face(monkeypatch):
    """Both mediapipe APIs, through fakes with the attribute names of mediapipe 0.10.21 (solutions) and 1.2.3
    (Tasks); the real 0.10.21 was run by hand on X-Dub's example video (see the closing note)."""
    import types

    import numpy as np

    from omnisync_core.image.facecrop import mediapipe_detector

    ns = types.SimpleNamespace
    rel = [ns(xmin=0.1, ymin=0.1, width=0.1, height=0.1), ns(xmin=0.5, ymin=0.25, width=0.25, height=0.5)]

    class LegacyDetection:
        def __init__(self, model_selection, min_detection_confidence):
            pass

        def process(self, frame):
            return ns(detections=[ns(location_data=ns(relative_bounding_box=b)) for b in rel])

    frame = np.zeros((40, 80, 3), np.uint8)
    legacy = types.ModuleType("mediapipe")
    legacy.solutions = ns(face_detection=ns(FaceDetection=LegacyDetection))
    monkeypatch.setitem(sys.modules, "mediapipe", legacy)
    assert mediapipe_detector()(frame) == (40.0, 10.0, 60.0, 30.0)

    class TasksDetector:
        @classmethod
        def create_from_options(cls, options):
            assert options.base_options.model_asset_path == "face.tflite"
            return cls()

        def detect(self, image):
            assert image.data.shape == (40, 80, 3)
            return ns(detections=[ns(bounding_box=ns(origin_x=3, origin_y=4, width=w, height=w)) for w in (5, 9)])

    tasks = types.ModuleType("mediapipe")
    tasks.Image = lambda image_format, data: ns(data=data)
    tasks.ImageFormat = ns(SRGB=1)
    python = types.ModuleType("mediapipe.tasks.python")
    python.BaseOptions = lambda model_asset_path: ns(model_asset_path=model_asset_path)
    python.vision = ns(FaceDetectorOptions=lambda base_options, min_detection_confidence: ns(base_options=base_options),
                       FaceDetector=TasksDetector)
    monkeypatch.setitem(sys.modules, "mediapipe", tasks)
    monkeypatch.setitem(sys.modules, "mediapipe.tasks", types.ModuleType("mediapipe.tasks"))
    monkeypatch.setitem(sys.modules, "mediapipe.tasks.python", python)
    assert mediapipe_detector("face.tflite")(frame) == (3, 4, 12, 13)
    with pytest.raises(OmniSyncError, match="blaze_face_short_range.tflite"):
        mediapipe_detector()


# -- borders --------------------------------------------------------------------------------------------------


def test_shift_keeps_the_box_inside_the_frame_and_reports_it():
    x = frames()
    near = face_track(x, "point", point=(0.02, 0.98), scale=0.5, smoothing=0)
    assert near.boxes.tolist() == [[0, H - 36, 36]] * T
    assert near.report.moved_frames == list(range(T))
    big = face_track(x, "point", point=(0.5, 0.5), scale=1.5, smoothing=0)
    assert big.boxes.tolist() == [[12, 0, 72]] * T  # shrunk to the shorter side, centred across
    assert big.report.shrunk_frames == list(range(T))


def test_pad_repeats_edge_pixels_and_pastes_only_inside_the_frame():
    x = frames()
    track = face_track(x, "point", point=(0.05, 0.1), scale=0.5, border="pad", smoothing=0)
    x0, y0, s = track.boxes[0].tolist()
    assert (x0, y0, s) == (-13, -11, 36) and track.report.padded_frames == list(range(T))
    crops = crop_faces(x, track, size=s)
    assert torch.equal(crops[0, :-y0, :-x0], x[0, :1, :1].expand(-y0, -x0, 3))  # corner pixel repeated
    assert torch.equal(crops[0, -y0:, -x0:], x[0, :s + y0, :s + x0])
    assert torch.allclose(paste_back(x, crops, track, feather_px=4.0), x, atol=1e-6)
    processed = torch.zeros_like(crops)
    out = paste_back(x, processed, track, feather_px=0.0)
    assert torch.equal(out[:, :s + y0, :s + x0], torch.zeros(T, s + y0, s + x0, 3))
    assert torch.equal(out[:, s + y0:], x[:, s + y0:]) and torch.equal(out[:, :, s + x0:], x[:, :, s + x0:])


# -- smoothing ------------------------------------------------------------------------------------------------


def test_smoothing_reduces_jitter_and_keeps_a_still_face_constant():
    n = 60
    x = frames(T=n, H=H, W=W)
    g = torch.Generator().manual_seed(3)
    masks = torch.zeros(n, H, W)
    for t in range(n):
        dx, dy = torch.randint(-3, 4, (2,), generator=g).tolist()
        masks[t, 20 + dy:44 + dy, 36 + dx:60 + dx] = 1.0
    raw = face_track(x, "mask", mask=masks, smoothing=0).boxes.double()
    smooth = face_track(x, "mask", mask=masks, smoothing=3.0).boxes.double()
    jitter = lambda b: b[1:, :2].sub(b[:-1, :2]).abs().mean().item()  # noqa: E731
    assert jitter(smooth) < 0.25 * jitter(raw)
    assert (smooth[:, :2].mean(0) - raw[:, :2].mean(0)).abs().max() < 1.0
    still = face_track(x, "mask", mask=rect_mask(T=n), smoothing=7.0)
    assert torch.equal(still.boxes, still.boxes[:1].expand(n, 3))


def test_smoothing_is_zero_phase_and_fills_gaps():
    t = torch.arange(40, dtype=torch.float64)
    ramp = torch.stack([10 + 0.5 * t, 30 - 0.25 * t, 50 + 0 * t], 1)  # steady motion
    found = torch.ones(40, dtype=torch.bool)
    out = smooth_track(ramp, found, sigma=2.0)
    assert torch.allclose(out[8:-8], ramp[8:-8], atol=1e-9)  # no lag where the kernel fits
    found[10:15] = False
    gap = ramp.clone()
    gap[10:15] = 1e6  # ignored: not found
    assert torch.allclose(smooth_track(gap, found, sigma=0.0), ramp, atol=1e-9)  # linear fill


# -- no-face frames --------------------------------------------------------------------------------------------


def test_frames_without_a_face_pass_through_and_are_reported():
    x = frames()
    m = rect_mask()
    m[1] = 0
    m[3] = 0
    track = face_track(x, "mask", mask=m, smoothing=1.0)
    assert track.report.no_face_frames == [1, 3] and track.found.tolist() == [True, False, True, False, True]
    assert track.report.to_dict()["no_face_frames"] == "1, 3"
    crops = crop_faces(x, track, size=32)
    out = paste_back(x, torch.zeros_like(crops), track, feather_px=0.0)
    assert torch.equal(out[1], x[1]) and torch.equal(out[3], x[3])
    assert not torch.equal(out[0], x[0])


def test_take_reindexes_the_track_for_a_frame_plan():
    x = frames()
    m = rect_mask()
    m[1] = 0
    track = face_track(x, "mask", mask=m, smoothing=0)
    looped = track.take([0, 1, 2, 1, 0])
    assert looped.report.no_face_frames == [1, 3] and torch.equal(looped.boxes[4], track.boxes[0])
    with pytest.raises(OmniSyncError, match=r"\[0, 5\)"):
        track.take([5])


# -- bad input ----------------------------------------------------------------------------------------------


def test_bad_input_names_the_fix():
    x = frames()
    with pytest.raises(OmniSyncError, match="lies outside the 96×72 frame"):
        face_track(x, "box", box=(100, 10, 20, 20))
    with pytest.raises(OmniSyncError, match="empty on every frame.*choose mode box, point or auto"):
        face_track(x, "mask", mask=torch.zeros(T, H, W))
    track = face_track(x, "box", box=(10, 10, 20, 20))
    with pytest.raises(OmniSyncError, match="whole number of pixels ≥ 1"):
        crop_faces(x, track, size=0)
    crops = crop_faces(x, track, size=16)
    with pytest.raises(OmniSyncError, match="crops have 4 frames but the original video has 5.*re-index"):
        paste_back(x, crops[:4], track)
    with pytest.raises(OmniSyncError, match="face track has 5 frames but the original frames have 3"):
        paste_back(x[:3], crops[:3], track)
    with pytest.raises(OmniSyncError, match="made for 96×72 frames"):
        crop_faces(frames(W=80), track)
    with pytest.raises(OmniSyncError, match="IMAGE \\(T, H, W, 3\\)"):
        face_track(x[..., 0], "point")
    with pytest.raises(OmniSyncError, match="mode must be one of"):
        face_track(x, "face")


def test_crop_reports_progress_and_can_be_cancelled():
    x = frames()
    track = face_track(x, "point")
    ticks = []
    crop_faces(x, track, 16, progress=lambda d, n, msg: ticks.append((d, n)))
    assert ticks == [(t + 1, T) for t in range(T)]
    with pytest.raises(Cancelled):
        paste_back(x, crop_faces(x, track, 16), track, cancel=lambda: True)


def test_track_is_a_plain_object():
    track = face_track(frames(), "point")
    assert isinstance(track, FaceCropTrack) and track.boxes.dtype == torch.long and track.num_frames == T


# -- nodes -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    from fakes import comfy_fakes

    with comfy_fakes(tmp_path_factory.mktemp("comfy")):
        import nodes

        yield nodes


def test_nodes_crop_and_paste_back(nodes):
    import json

    x = smooth_frames()
    m = rect_mask()
    m[2] = 0
    crop = nodes.OmniSyncFaceCrop
    paste = nodes.OmniSyncFacePasteBack
    crops, track, report = crop.execute(x, "mask", 48, 1.45, 2.0, "shift", 0, 0, 1, 1, 0.5, 0.5, 0.5, mask=m)
    assert crops.shape == (T, 48, 48, 3) and json.loads(report)["no_face_frames"] == "2"
    out, report = paste.execute(x, crops, track, 4.0)
    assert torch.equal(out[2], x[2]) and (out - x).abs().max() < 0.02
    assert json.loads(report)["unchanged_frames"] == "2" and json.loads(report)["pasted_frames"] == 4
    crops, track, _ = crop.execute(x, "box", 24, 1.45, 0.0, "pad", 10, 10, 24, 24, 0.5, 0.5, 0.5)
    assert torch.equal(crops[0], x[0, 10:34, 10:34])
    with pytest.raises(OmniSyncError, match="connect one"):
        crop.execute(x, "mask", 48, 1.45, 2.0, "shift", 0, 0, 1, 1, 0.5, 0.5, 0.5)


def test_node_auto_mode_without_mediapipe_says_what_to_install(nodes, monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    crop = nodes.OmniSyncFaceCrop
    with pytest.raises(OmniSyncError, match="pip install mediapipe"):
        crop.execute(frames(), "auto", 48, 1.45, 2.0, "shift", 0, 0, 1, 1, 0.5, 0.5, 0.5)
