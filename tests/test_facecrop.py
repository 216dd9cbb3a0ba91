"""Face crop and paste-back (omnisync_core.image.facecrop) and its node pair, on small synthetic frames."""

import math
import sys

import pytest
import torch
import torch.nn.functional as F

from omnisync_core.errors import Cancelled, OmniSyncError
from omnisync_core.image.facecrop import (
    DEFAULT_EXPAND,
    DEFAULT_MAX_GAP,
    STILL_TOLERANCE,
    FaceCropTrack,
    boxes_from_detector,
    classify_gaps,
    crop_faces,
    face_track,
    fill_confidence,
    paste_back,
    smooth_track,
    stabilise_track,
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
    track = face_track(x, "auto", detector=detector, smoothing=0, max_gap=0)  # whole frames: no search window
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
    assert mediapipe_detector()(frame) == (40.0, 10.0, 60.0, 30.0, 1.0)  # no score attribute: confidence 1

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
    assert mediapipe_detector("face.tflite")(frame) == (3, 4, 12, 13, 1.0)
    with pytest.raises(OmniSyncError, match="blaze_face_short_range.tflite"):
        mediapipe_detector()


def test_mediapipe_face_mesh_gives_the_box_and_confirms_the_face(monkeypatch):
    """The legacy adapter with a face mesh (fakes with mediapipe 0.10.21's attribute names): short range first,
    the landmark extent as the box, and the score halved where the mesh finds no landmarks."""
    import types

    import numpy as np

    from omnisync_core.image.facecrop import LANDMARKLESS_FACTOR, MEDIAPIPE_SHORT_RANGE, mediapipe_detector

    ns = types.SimpleNamespace
    made, seen = [], []

    class LegacyDetection:
        def __init__(self, model_selection, min_detection_confidence):
            made.append(model_selection)

        def process(self, frame):
            b = ns(xmin=0.5, ymin=0.25, width=0.25, height=0.5)  # (40, 10, 60, 30) in an 80×40 frame
            return ns(detections=[ns(location_data=ns(relative_bounding_box=b), score=[0.8])])

    class FaceMesh:
        landmarks = True

        def __init__(self, static_image_mode, max_num_faces, min_detection_confidence):
            assert static_image_mode and max_num_faces == 1

        def process(self, crop):
            seen.append(crop.shape)
            pts = [ns(x=0.25, y=0.25), ns(x=0.75, y=0.5)]
            return ns(multi_face_landmarks=[ns(landmark=pts)] if FaceMesh.landmarks else None)

    legacy = types.ModuleType("mediapipe")
    legacy.solutions = ns(face_detection=ns(FaceDetection=LegacyDetection), face_mesh=ns(FaceMesh=FaceMesh))
    monkeypatch.setitem(sys.modules, "mediapipe", legacy)
    detect = mediapipe_detector()
    assert made[0] == MEDIAPIPE_SHORT_RANGE
    frame = np.zeros((40, 80, 3), np.uint8)
    # mesh crop: 2 × the 20 px box around its centre (50, 20), cut to the frame: x 30–70, y 0–40
    assert detect(frame) == (40.0, 10.0, 60.0, 20.0, 0.8) and seen == [(40, 40, 3)]
    FaceMesh.landmarks = False
    assert detect(frame) == (40.0, 10.0, 60.0, 30.0, 0.8 * LANDMARKLESS_FACTOR)


def test_a_face_is_taken_above_the_start_score_and_followed_below_it():
    far = (70, 40, 90, 60)  # a low-score "face" away from the followed one
    plan = [(10, 20, 34, 44, 0.4)] * 5 + [(10, 20, 34, 44, 0.9)] * 5 + [(10, 20, 34, 44, 0.4)] * 5 + [None] * 2 + [
        far + (0.4,)] * 3
    _, found, score = boxes_from_detector(drawn(plan), square_detector)
    assert found.tolist() == [False] * 5 + [True] * 10 + [False] * 5  # not taken at 0.4; followed at 0.4; far: no
    assert torch.allclose(score[10:15], torch.full((5,), 0.4, dtype=torch.float64), atol=2e-3)
    # no face above the start score anywhere (mediapipe: faces in profile, no landmarks): the low scores are taken,
    # and the report says so
    low = face_track(drawn([(10, 20, 34, 44, 0.45)] * 6), "auto", detector=square_detector)
    assert low.found.all() and "follow a face scored above 0.4" in low.report.to_dict()["notes"][0]
    with pytest.raises(OmniSyncError, match="no face was found in any frame"):
        face_track(drawn([(10, 20, 34, 44, 0.35)] * 6), "auto", detector=square_detector)
    assert face_track(drawn(plan), "auto", detector=square_detector).report.notes == []


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
    raw = face_track(x, "mask", mask=masks, smoothing=0, still=False).boxes.double()
    smooth = face_track(x, "mask", mask=masks, smoothing=3.0, still=False).boxes.double()
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


# -- gaps, still head, confidence -------------------------------------------------------------------------------


def drawn(boxes):
    """Black frames with a grey square at each box (x0, y0, x1, y1[, score]; None = no face), grey = score."""
    x = torch.zeros(len(boxes), H, W, 3)
    for t, b in enumerate(boxes):
        if b is not None:
            x0, y0, x1, y1 = (int(v) for v in b[:4])
            x[t, y0:y1, x0:x1] = b[4] if len(b) == 5 else 1.0
    return x


def square_detector(frame):
    """A fake detector: the bounding box of the non-black pixels of what it is shown, grey level as score."""
    import numpy as np

    on = frame.max(-1) > 0
    if not on.any():
        return None
    ys, xs = np.nonzero(on)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1, frame[ys[0], xs[0], 0] / 255


def moving_boxes(n, speed=1, score=None):
    """A face box (x0, y0, x1, y1[, score]) moving right by ``speed`` px per frame."""
    return [(10 + speed * t, 20, 34 + speed * t, 44) + (() if score is None else (score[t],)) for t in range(n)]


def transitions(found):
    return int((found[1:] != found[:-1]).sum())


def test_classify_gaps_hand_counted():
    det = torch.tensor([1, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 1, 1, 1, 0], dtype=torch.bool)
    filled, gone = classify_gaps(det, max_gap=3, min_run=1)
    assert torch.nonzero(filled).flatten().tolist() == [1, 2, 10, 14]  # runs of 2, 1 and the 1 at the end
    assert torch.nonzero(gone).flatten().tolist() == [5, 6, 7, 8]  # a run of 4 > max_gap
    filled, gone = classify_gaps(det, max_gap=3, min_run=3)
    assert torch.nonzero(gone).flatten().tolist() == [5, 6, 7, 8]  # the 1-hit run at 9 touches a short gap: kept
    stray = torch.tensor([0] * 5 + [1] + [0] * 5 + [1] * 4, dtype=torch.bool)
    filled, gone = classify_gaps(stray, max_gap=3, min_run=3)
    assert torch.nonzero(gone).flatten().tolist() == list(range(11))  # a single hit between long gaps is stray
    filled, gone = classify_gaps(stray, max_gap=0)
    assert torch.nonzero(gone).flatten().tolist() == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]  # max_gap 0: exactly the misses


def test_short_misses_are_filled_counted_and_never_flicker():
    n = 40
    boxes = moving_boxes(n)
    misses = [3, 4, 5, 17, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39]  # 3 + 1 inside, 10 at the end (≤ max_gap)
    for t in misses:
        boxes[t] = None
    x = drawn(boxes)
    track = face_track(x, "auto", detector=square_detector, smoothing=0, max_gap=10, still=False)
    assert track.report.filled_frames == misses and track.report.no_face_frames == []
    assert track.found.all() and transitions(track.found) == 0
    assert "14 of 40 frame(s)" in track.report.to_dict()["filled"]
    # inside a gap the box is interpolated on the line of motion; after the last face it is held
    centre_x = track.boxes[:, 0].double() + track.boxes[:, 2].double() / 2
    truth = torch.tensor([22 + t for t in range(n)], dtype=torch.float64)
    assert (centre_x[:30] - truth[:30]).abs().max() <= 1.0
    assert (centre_x[30:] == centre_x[29]).all()
    out = paste_back(x, torch.full((n, 16, 16, 3), 0.5), track, feather_px=0.0)
    assert all(not torch.equal(out[t], x[t]) for t in range(n))  # every frame edited, none flips back


def test_a_long_gap_passes_through_untouched_and_is_reported():
    n = 40
    boxes = moving_boxes(n)
    for t in range(12, 26):  # 14 frames > max_gap 12: the face is gone
        boxes[t] = None
    x = drawn(boxes)
    track = face_track(x, "auto", detector=square_detector, max_gap=12)
    assert track.report.no_face_frames == list(range(12, 26)) and track.report.filled_frames == []
    assert transitions(track.found) == 2  # edited → untouched → edited, once each
    assert track.report.to_dict()["no_face_frames"] == "12-25" and "14 of 40" in track.report.to_dict()["no_face"]
    assert track.report.stabilised == ["frames 0-11: fixed size", "frames 26-39: fixed size"]  # 11 px of travel
    out = paste_back(x, torch.full((n, 16, 16, 3), 0.5), track, feather_px=0.0)
    assert torch.equal(out[12:26], x[12:26])
    assert all(not torch.equal(out[t], x[t]) for t in [*range(12), *range(26, n)])
    assert (track.confidence[12:26] == 0).all()


def test_confidence_is_the_score_and_fades_over_a_gap():
    n, gap = 12, 4
    score = [0.9] * 4 + [0.0] * 3 + [0.6] * 5
    boxes = moving_boxes(n, score=score)
    for t in (4, 5, 6):
        boxes[t] = None
    track = face_track(drawn(boxes), "auto", detector=square_detector, max_gap=gap)
    c = track.confidence  # the grey level is the score, through uint8: ± 1/510
    assert c.dtype == torch.float32 and torch.allclose(c[:4], torch.full((4,), 0.9), atol=2e-3) and torch.allclose(
        c[7:], torch.full((5,), 0.6), atol=2e-3)
    # frames 4, 5, 6: score interpolated 0.9 → 0.6 between frames 3 and 7, times 1 − d / (gap + 1), d = 1, 2, 1
    want = [(0.9 - 0.3 * k / 4) * (1 - d / (gap + 1)) for k, d in ((1, 1), (2, 2), (3, 1))]
    assert torch.allclose(c[4:7], torch.tensor(want), atol=2e-3)
    assert torch.equal(track.take([5, 0]).confidence, c[[5, 0]])
    exact = fill_confidence(torch.tensor([1.0, 0, 0, 0.5]), torch.tensor([True, False, False, True]),
                            torch.tensor([False, True, False, False]), max_gap=2)
    assert torch.allclose(exact, torch.tensor([1.0, (1 - 0.5 / 3) * (1 - 1 / 3), 0.0, 0.5]))  # frame 2: not filled
    with pytest.raises(OmniSyncError, match="max_gap is a whole number of frames"):
        face_track(frames(), "auto", detector=square_detector, max_gap=-1)
    with pytest.raises(OmniSyncError, match=r"must return \(x0, y0, x1, y1\)"):
        face_track(frames(), "auto", detector=lambda f: (1, 2, 3))


def test_still_head_gets_one_fixed_box_and_a_moving_one_does_not():
    n = 50
    g = torch.Generator().manual_seed(1)
    jitter = torch.randint(-2, 3, (n, 2), generator=g).double()  # ±2 px on a 35 px box: within 16 %
    boxes = [(30 + dx, 20 + dy, 54 + dx, 44 + dy) for dx, dy in jitter.tolist()]
    x = drawn(boxes)
    still = face_track(x, "auto", detector=square_detector, smoothing=1.0)
    assert torch.equal(still.boxes, still.boxes[:1].expand(n, 3)) and still.report.stabilised == ["frames 0-49: fixed box"]
    # the fixed box is the union of the smoothed boxes: it holds every frame's face box
    x0, y0, side = still.boxes[0].tolist()
    assert all(x0 <= b[0] and y0 <= b[1] and b[2] <= x0 + side and b[3] <= y0 + side for b in boxes)
    free = face_track(x, "auto", detector=square_detector, smoothing=1.0, still=False)
    assert len({tuple(b) for b in free.boxes.tolist()}) > 1 and free.report.stabilised == []
    moving = face_track(drawn(moving_boxes(n)), "auto", detector=square_detector)
    assert moving.report.stabilised == ["frames 0-49: fixed size"]  # 50 px of travel, same size
    assert (moving.boxes[:, 2] == moving.boxes[0, 2]).all() and moving.boxes[-1, 0] - moving.boxes[0, 0] > 40
    growing = [(30 - t, 20 - t, 40 + t, 30 + t) for t in range(20)]  # side 10 → 48 px
    zoom = face_track(drawn(growing), "auto", detector=square_detector)
    assert zoom.report.stabilised == ["frames 0-19: smoothed"]


def test_stabilise_track_tolerance_is_the_reference_16_percent():
    union = 100.0
    edge = STILL_TOLERANCE * union  # every edge may sit this far inside the union box
    inside = torch.tensor([[50.0, 50.0, union - edge], [50.0 + edge, 50.0, union - edge]])  # shifts by ≤ 16 %
    rep = type("R", (), {"stabilised": []})()
    out = stabilise_track(inside, torch.ones(2, dtype=torch.bool), (400, 400), rep)
    assert rep.stabilised == ["frames 0-1: fixed box"] and torch.equal(out[0], out[1])
    outside = torch.tensor([[50.0, 50.0, 80.0], [50.0 + 30, 50.0, 80.0]])  # union 110: edge 30 > 16 % of it
    rep.stabilised = []
    stabilise_track(outside, torch.ones(2, dtype=torch.bool), (400, 400), rep)
    assert rep.stabilised == ["frames 0-1: fixed size"]


def test_search_follows_the_same_face_and_finds_small_ones():
    """A fake detector that sees coloured squares and, like a real one, only faces ≥ 1/4 of its input's side."""
    import numpy as np

    def detector(frame):
        found = []
        for ch in range(3):
            on = (frame[..., ch] == 255) & (frame.sum(-1) == 255)
            if on.any():
                ys, xs = np.nonzero(on)
                box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
                if box[2] - box[0] >= min(frame.shape[:2]) / 4:
                    found.append(box)
        return max(found, key=lambda b: (b[2] - b[0]) * (b[3] - b[1])) if found else None

    n = 12
    x = torch.zeros(n, H, W, 3)
    for t in range(n):
        side = 20 if t < 3 else 14  # 14 px < 72 / 4: the whole frame misses it, the search window does not
        x[t, 20:20 + side, 10:10 + side, 0] = 1.0  # the red face we follow
        if t >= 6:
            x[t, 30:60, 60:90, 1] = 1.0  # a larger green face appears far away
    boxes, found, score = boxes_from_detector(x, detector)
    assert found.all() and (score == 1).all()
    assert boxes[:3].tolist() == [[10, 20, 30, 40]] * 3 and boxes[3:].tolist() == [[10, 20, 24, 34]] * (n - 3)
    alone, found_alone, _ = boxes_from_detector(x[3:], detector)  # no face found before: whole frames only
    assert not found_alone[:3].any() and alone[3:].tolist() == [[60, 30, 90, 60]] * (n - 6)


# -- no-face frames --------------------------------------------------------------------------------------------


def test_frames_without_a_face_pass_through_and_are_reported():
    x = frames()
    m = rect_mask()
    m[1] = 0
    m[3] = 0
    track = face_track(x, "mask", mask=m, smoothing=1.0, max_gap=0)  # every miss passes through
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
    track = face_track(x, "mask", mask=m, smoothing=0, max_gap=0)
    looped = track.take([0, 1, 2, 1, 0])
    assert looped.report.no_face_frames == [1, 3] and torch.equal(looped.boxes[4], track.boxes[0])
    assert looped.confidence.tolist() == [1.0, 0.0, 1.0, 0.0, 1.0]
    filled = face_track(x, "mask", mask=m, smoothing=0).take([1, 1, 0])
    assert filled.report.filled_frames == [0, 1] and filled.report.no_face_frames == []
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
    m[2] = 0  # a short miss: filled, edited like its neighbours
    crop = nodes.OmniSyncFaceCrop
    paste = nodes.OmniSyncFacePasteBack
    crops, track, report = crop.execute(x, "mask", 48, 1.45, 2.0, "shift", 0, 0, 1, 1, 0.5, 0.5, 0.5, mask=m)
    assert crops.shape == (T, 48, 48, 3) and json.loads(report)["filled_frames"] == "2"
    assert "no_face_frames" not in json.loads(report) and json.loads(report)["stabilised"] == ["frames 0-4: fixed box"]
    out, report = paste.execute(x, crops, track, 4.0)
    assert not torch.equal(out[2], x[2]) and (out - x).abs().max() < 0.02
    assert "unchanged_frames" not in json.loads(report) and json.loads(report)["pasted_frames"] == 5
    n = 2 * DEFAULT_MAX_GAP + 4  # a long miss: the face is gone there, those frames pass through
    xl, ml = smooth_frames(T=n), rect_mask(T=n)
    ml[4:4 + DEFAULT_MAX_GAP + 1] = 0
    crops, track, report = crop.execute(xl, "mask", 48, 1.45, 2.0, "shift", 0, 0, 1, 1, 0.5, 0.5, 0.5, mask=ml)
    assert json.loads(report)["no_face_frames"] == f"4-{DEFAULT_MAX_GAP + 4}"
    out, report = paste.execute(xl, crops, track, 4.0)
    assert torch.equal(out[4:DEFAULT_MAX_GAP + 5], xl[4:DEFAULT_MAX_GAP + 5]) and not torch.equal(out[3], xl[3])
    assert json.loads(report)["unchanged_frames"] == f"4-{DEFAULT_MAX_GAP + 4}"
    crops, track, _ = crop.execute(x, "box", 24, 1.45, 0.0, "pad", 10, 10, 24, 24, 0.5, 0.5, 0.5)
    assert torch.equal(crops[0], x[0, 10:34, 10:34])
    with pytest.raises(OmniSyncError, match="connect one"):
        crop.execute(x, "mask", 48, 1.45, 2.0, "shift", 0, 0, 1, 1, 0.5, 0.5, 0.5)


def test_node_auto_mode_without_mediapipe_says_what_to_install(nodes, monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    crop = nodes.OmniSyncFaceCrop
    with pytest.raises(OmniSyncError, match="pip install mediapipe"):
        crop.execute(frames(), "auto", 48, 1.45, 2.0, "shift", 0, 0, 1, 1, 0.5, 0.5, 0.5)
