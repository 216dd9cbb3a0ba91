"""Face crop and paste-back: a square face box per frame, kept through detector misses, crops at the model's size, blend back.

One file (~800 lines) on purpose: the box track, the crop and the paste-back share one box convention and one
report, and the numbered steps below read top to bottom as the reference's pipeline does; split, each part
would need the others' private geometry.

X-Dub (KlingAIResearch/X-Dub: ``lip_sync_preprocess.py``, ``utils.py``) feeds its model 512×512 face crops:
the face-landmark box's longer side × 1.45, centred on the box, smoothed over time, one fixed box for the
whole clip when the head barely moves (``judge_case_flag``: every box within 16 % of the union box), moved
inside the frame where it would cross a border (and shrunk to the frame's shorter side when larger), resized
with a bilinear filter; the generated crop is resized back to the box and blended in with a soft edge, except
on sides that lie on the frame border. This module does the same in plain torch, one stated step at a time:

1. **Raw box per frame** (pixels, x0, y0, x1, y1) and a confidence in [0, 1] from a MASK's bounding box, a
   fixed box, a point with a scale, or a face detector (``auto``: the optional ``mediapipe`` package, see
   :func:`mediapipe_detector`, which checks each face with face-mesh landmarks). ``auto`` follows one face
   (:func:`boxes_from_detector`): it takes a face scored above :data:`START_SCORE` and then searches each
   frame first around where that face just was; where no face anywhere scores that high (faces in profile,
   which the face mesh does not confirm), it takes one above :data:`UNCONFIRMED_START_SCORE` and says so in the
   report. A frame with no face (empty mask, detector miss) is a miss.
2. **Gaps** (:func:`classify_gaps`): a run of at most ``max_gap`` missed frames is a detector miss, not a face
   that left: those frames are *filled* (box interpolated between the faces around them, or held at the clip's
   ends) and edited like the rest. A longer run is the face *gone*: those frames pass through paste-back
   unchanged. So a frame flips between edited and untouched only at a gone run, never for a short miss; every
   filled and every gone frame is reported. A run of fewer than ``MIN_FACE_RUN`` detections between gone runs
   (a stray hit) is gone too.
3. **Square and expand**: centre = the raw box's centre; side = ``expand`` × its longer side (mask and auto);
   a fixed box keeps its longer side, a point gets ``scale`` × the frame's shorter side.
4. **Smooth over time** (:func:`smooth_track`): missed frames are filled by linear interpolation between the
   found frames around them, then centre x, centre y and side are each filtered with a Gaussian of
   ``smoothing`` frames (σ) — a symmetric kernel applied once over edge-replicated ends, so it is zero-phase
   (no lag) and a constant track stays exactly constant.
5. **Still head** (:func:`stabilise_track`, X-Dub's ``process_bbox``), per run of edited frames: when every
   box lies within :data:`STILL_TOLERANCE` (16 %) of the union box's width / height at each edge, the run gets
   one fixed box (the union, made square); else when every side lies within :data:`SIZE_TOLERANCE` (±10 %) of
   the mean side, the side is fixed at the largest and only the centre moves; else the smoothed track is kept.
6. **Integer box and borders** (:data:`BORDERS`): side rounded to whole pixels, top-left rounded; then
   ``"shift"`` (X-Dub) moves a box that crosses the frame border back inside, shrinking it to the frame's
   shorter side if it is larger, while ``"pad"`` leaves it where it is and :func:`crop_faces` fills the part
   outside the frame by repeating the edge pixels. Every moved, shrunk or padded frame is reported.
7. **Crop** (:func:`crop_faces`): each box resized to ``size × size`` with :data:`RESAMPLE` — bilinear with
   antialiasing (``torch.nn.functional.interpolate(mode="bilinear", antialias=True, align_corners=False)``),
   which is what PIL's BILINEAR (X-Dub's filter) does when shrinking; a box already ``size`` wide is copied.
8. **Paste back** (:func:`paste_back`): the processed crop resized back to the box with the same filter and
   blended with a feather weight that rises from 0 at the box edge to 1 at ``feather_px`` inside it (a
   smoothstep per axis, the product of the two); sides on the frame border are not feathered. Outside the
   box, and on gone frames, the output is the input bit for bit; with ``feather_px = 0`` the inside of the
   box is the resized processed crop bit for bit.

Layouts at every public boundary: frames (T, H, W, 3) float in [0, 1]; mask (T, H, W) (or (1, H, W) for all
frames) in [0, 1]; boxes in pixels, pixel j covering [j, j + 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import OmniSyncError
from ..progress import CancelCheck, ProgressCallback, check_cancel, report

MODES = ("mask", "box", "point", "auto")
BORDERS = ("shift", "pad")  # shift: move the box inside the frame (X-Dub); pad: repeat edge pixels outside
DEFAULT_CROP_SIZE = 512  # px, side of the model's square input (X-Dub: 512×512)
DEFAULT_EXPAND = 1.45  # square side / longer side of the face box (X-Dub's landmark box × 1.45)
DEFAULT_SMOOTHING = 3.0  # frames, σ of the Gaussian on box centre and side (0 = no smoothing)
DEFAULT_FEATHER_PX = 16.0  # px of the frame, width of the soft edge inside the box at paste-back
DEFAULT_POINT = (0.5, 0.45)  # frame fractions (x, y): a centred talking head's face
DEFAULT_SCALE = 0.75  # square side as a fraction of the frame's shorter side (point mode)
DEFAULT_MAX_GAP = 12  # frames (0.48 s at 25 fps): a longer run of misses is the face gone, a shorter one is filled
MIN_FACE_RUN = 3  # frames: fewer detections in a row between gone runs are a stray hit, not a face
STILL_TOLERANCE = 0.16  # X-Dub judge_case_flag case 1: every box edge within 16 % of the union box → one fixed box
SIZE_TOLERANCE = 0.10  # X-Dub judge_case_flag case 2: every side within ±10 % of the mean → fixed side
MASK_THRESHOLD = 0.5  # a mask pixel above this belongs to the face
SMOOTHING_RADIUS_SIGMAS = 3  # the Gaussian kernel is cut at ±3σ frames
RESAMPLE = "bilinear, antialiased (align_corners=False)"  # the filter of crop and paste-back resizes
DETECTOR_MIN_CONFIDENCE = 0.5  # mediapipe face detection score needed to count a face as found
MEDIAPIPE_SHORT_RANGE, MEDIAPIPE_FULL_RANGE = 0, 1  # mediapipe model_selection: faces within ~2 m / ~5 m
START_SCORE = 0.5  # a face is first taken only with a detector score above this, then followed at any score
LANDMARKLESS_FACTOR = 0.5  # mediapipe: a detection its face mesh does not confirm scores × 0.5, so ≤ START_SCORE
UNCONFIRMED_START_SCORE = 0.4  # where no face beats START_SCORE anywhere: mediapipe's 0.8 without landmarks
SEARCH_SCALE = 3.0  # px / px: the next frame is searched first in a square of 3 × the last face's longer side
MESH_CROP_SCALE = 2.0  # face mesh runs on a square of 2 × the detected box's longer side around it

Box = Tuple[float, float, float, float]
Detector = Callable[[np.ndarray], Optional[Union[Box, Tuple[float, float, float, float, float]]]]
"""A face detector: (H, W, 3) uint8 RGB frame → the face box (x0, y0, x1, y1) in pixels, optionally followed by
its confidence in [0, 1] (taken as 1 when left out), or None (no face)."""

STAGES = ("fixed box", "fixed size", "smoothed")  # what :func:`stabilise_track` did to a run of edited frames


# -- the objects handed from crop to paste-back --------------------------------------------------------------


@dataclass
class CropReport:
    """What the crop stage decided, per frame where it matters; nothing is changed silently."""

    mode: str
    frames: int
    no_face_frames: List[int] = field(default_factory=list)  # face gone: passed through unchanged at paste-back
    filled_frames: List[int] = field(default_factory=list)  # short miss: box held / interpolated, edited
    moved_frames: List[int] = field(default_factory=list)  # box moved inside the frame (border "shift")
    shrunk_frames: List[int] = field(default_factory=list)  # box larger than the frame's shorter side, shrunk
    padded_frames: List[int] = field(default_factory=list)  # box reaches outside the frame (border "pad")
    stabilised: List[str] = field(default_factory=list)  # per run of edited frames: "frames a-b: <STAGES entry>"
    notes: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict:
        out = {"mode": self.mode, "frames": self.frames}
        for name in ("no_face_frames", "filled_frames", "moved_frames", "shrunk_frames", "padded_frames"):
            frames = getattr(self, name)
            if frames:
                out[name] = _ranges(frames)
        if self.filled_frames:
            out["filled"] = (f"{len(self.filled_frames)} of {self.frames} frame(s) where the face was not found for "
                             "a short while: box held or interpolated from their neighbours, edited like the rest")
        if self.no_face_frames:
            out["no_face"] = (f"{len(self.no_face_frames)} of {self.frames} frame(s) without a face: passed through "
                              "unchanged at paste-back")
        if self.stabilised:
            out["stabilised"] = list(self.stabilised)
        if self.notes:
            out["notes"] = list(self.notes)
        return out


@dataclass
class FaceCropTrack:
    """The square box of every frame, as used by :func:`crop_faces` and :func:`paste_back`.

    boxes: (T, 3) long (x0, y0, side) in pixels; the box covers columns [x0, x0 + side) and rows
        [y0, y0 + side). Inside the frame, except with border "pad" (then it still overlaps the frame).
    found: (T,) bool — False where the face is gone (the frame passes through paste-back unchanged); True on
        detected and on filled frames.
    frame_size: (H, W) of the frames the track was made for.
    confidence: (T,) float32 in [0, 1] — the detector's score on a detected frame (1 for mask, box and point;
        mediapipe: its detection score, halved without face-mesh landmarks),
        on a filled frame the score of the faces around it times (1 − distance / (max_gap + 1)), 0 where gone.
    """

    boxes: torch.Tensor
    found: torch.Tensor
    frame_size: Tuple[int, int]
    border: str
    report: CropReport
    confidence: Optional[torch.Tensor] = None

    def __post_init__(self):
        if self.confidence is None:
            self.confidence = self.found.float()

    @property
    def num_frames(self) -> int:
        return int(self.boxes.shape[0])

    def take(self, indices: Sequence[int]) -> "FaceCropTrack":
        """The track of a re-ordered clip (a loop or ping-pong frame plan): frame i gets frame indices[i]'s box."""
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        if idx.ndim != 1 or (idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.num_frames)):
            raise OmniSyncError(f"frame indices must lie in [0, {self.num_frames}), the frames of this face track.")
        found = self.found[idx]
        rep = replace(self.report, frames=int(idx.numel()),
                      no_face_frames=[i for i, f in enumerate(found.tolist()) if not f],
                      filled_frames=_remap(self.report.filled_frames, idx),
                      moved_frames=_remap(self.report.moved_frames, idx),
                      shrunk_frames=_remap(self.report.shrunk_frames, idx),
                      padded_frames=_remap(self.report.padded_frames, idx),
                      stabilised=list(self.report.stabilised),
                      notes=list(self.report.notes) + [f"re-indexed to {idx.numel()} frames"])
        return FaceCropTrack(self.boxes[idx].clone(), found.clone(), self.frame_size, self.border, rep,
                             self.confidence[idx].clone())


# -- 1. raw boxes -------------------------------------------------------------------------------------------


def boxes_from_mask(mask: torch.Tensor, num_frames: int, frame_size: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Bounding box of the mask (pixels above :data:`MASK_THRESHOLD`) per frame.

    Args:
        mask: (T, H, W) or (1, H, W) / (H, W) (one mask for every frame), values in [0, 1].
    Returns:
        boxes (T, 4) float64 (x0, y0, x1, y1) pixels (NaN where empty), found (T,) bool.
    """
    H, W = frame_size
    mask = torch.as_tensor(mask)
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3:
        raise OmniSyncError(f"the face mask must be a MASK (T, H, W), got shape {tuple(mask.shape)}.")
    if tuple(mask.shape[1:]) != (H, W):
        raise OmniSyncError(f"the face mask is {mask.shape[2]}×{mask.shape[1]} but the frames are {W}×{H} (W×H); "
                            "resize the mask to the video's size (e.g. with a mask resize node) or draw it on the video.")
    if mask.shape[0] not in (1, num_frames):
        raise OmniSyncError(f"the face mask has {mask.shape[0]} frames but the video has {num_frames}; give one mask "
                            "per frame or a single mask for all frames.")
    on = mask.detach().float().cpu() > MASK_THRESHOLD  # (Tm, H, W)
    cols, rows = on.any(1), on.any(2)  # (Tm, W), (Tm, H)
    found = cols.any(1)
    xs, ys = torch.arange(W, dtype=torch.float64), torch.arange(H, dtype=torch.float64)
    inf = torch.tensor(math.inf, dtype=torch.float64)
    x0 = torch.where(cols, xs, inf).amin(1)
    x1 = torch.where(cols, xs + 1, -inf).amax(1)
    y0 = torch.where(rows, ys, inf).amin(1)
    y1 = torch.where(rows, ys + 1, -inf).amax(1)
    boxes = torch.stack([x0, y0, x1, y1], 1)
    boxes[~found] = math.nan
    if mask.shape[0] == 1:
        boxes, found = boxes.expand(num_frames, 4).clone(), found.expand(num_frames).clone()
    return boxes, found


def boxes_from_detector(frames: torch.Tensor, detector: Detector, progress: Optional[ProgressCallback] = None,
                        cancel: Optional[CancelCheck] = None, max_gap: int = DEFAULT_MAX_GAP,
                        start_score: float = START_SCORE) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The detector's face box per frame, following one face.

    A face is *taken* where the detector scores it above ``start_score`` (:data:`START_SCORE`; for mediapipe:
    a detection its face mesh confirms). While a face is followed (found within the last ``max_gap`` frames),
    the detector first sees only the square of :data:`SEARCH_SCALE` × the last face's longer side around it
    (cut to the frame), and the whole frame only when it finds nothing there; a face found near the last one
    is kept whatever its score. This keeps the same person when several faces are in view (the whole frame's
    largest face can change from frame to frame), the face fills more of the detector's input, which finds
    small, partly covered and turned faces that the whole frame hides, and a low-score hit away from the
    followed face (a pattern that looks like a face) is not taken.

    Returns:
        boxes (T, 4) float64 pixels (NaN on a miss), found (T,) bool, score (T,) float64 in [0, 1] (0 on a miss).
    """
    T, H, W = frames.shape[:3]
    boxes = torch.full((T, 4), math.nan, dtype=torch.float64)
    score = torch.zeros(T, dtype=torch.float64)
    last, last_t = None, -1  # the followed face's last box and frame
    for t in range(T):
        check_cancel(cancel)
        frame = (frames[t].detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        hit = None
        following = last is not None and t - last_t <= max_gap
        if following:  # the same face first, where it just was
            x0, y0, x1, y1 = _search_window(last, SEARCH_SCALE, H, W)
            hit = _detection(detector(np.ascontiguousarray(frame[y0:y1, x0:x1])))
            if hit is not None:
                hit = (hit[0] + x0, hit[1] + y0, hit[2] + x0, hit[3] + y0, hit[4])
        if hit is None:
            hit = _detection(detector(frame))
            if hit is not None and not (following and _overlaps(hit, last)) and hit[4] <= start_score:
                hit = None
        if hit is not None:
            boxes[t] = torch.tensor(hit[:4], dtype=torch.float64)
            score[t] = hit[4]
            last, last_t = hit[:4], t
        report(progress, t + 1, T, "finding faces")
    return boxes, ~torch.isnan(boxes[:, 0]), score


def mediapipe_detector(model_path: Optional[str] = None, min_confidence: float = DETECTOR_MIN_CONFIDENCE) -> Detector:
    """A :data:`Detector` on mediapipe's face detection (BlazeFace); the largest face in the frame is taken.

    mediapipe is optional. Up to 0.10.21 it bundles the models (``mediapipe.solutions``): the short-range face
    detector runs first and the full-range one where it finds nothing (the short-range model finds close-up
    faces the full-range one misses, e.g. a child in ski goggles, and :func:`boxes_from_detector` shows it
    squares about 3 faces wide), and where ``face_mesh`` is there it checks each detection: the box is the
    extent of the face mesh's 468 landmarks (X-Dub takes its box from landmarks too), found on a square of
    :data:`MESH_CROP_SCALE` × the detected box around it, and the score is the detection's; without landmarks
    the box is the detection box and the score × :data:`LANDMARKLESS_FACTOR` (animals, helmets and textures
    that the detector takes for a face have no landmarks). Later versions only have the Tasks API, which needs
    the model file ``model_path`` (``blaze_face_short_range.tflite`` from the MediaPipe face detector page; no
    landmark check there). Without mediapipe, or with a Tasks-only version and no model file, this raises an
    OmniSyncError that names what to install or where to put the file; nothing is downloaded. The detector
    returns (x0, y0, x1, y1, score).
    """
    try:
        import mediapipe as mp
    except ImportError as e:
        raise OmniSyncError(
            "automatic face finding needs the optional package mediapipe, which is not installed: run "
            "`pip install mediapipe` in the Python that runs ComfyUI / omnisync (0.10.21 bundles its face model; "
            "newer versions also need blaze_face_short_range.tflite), or choose mode mask, box or point."
        ) from e
    solutions = getattr(mp, "solutions", None)
    if model_path is None and hasattr(solutions, "face_detection"):
        models = [solutions.face_detection.FaceDetection(model_selection=m, min_detection_confidence=min_confidence)
                  for m in (MEDIAPIPE_SHORT_RANGE, MEDIAPIPE_FULL_RANGE)]
        mesh = None
        if hasattr(solutions, "face_mesh"):
            mesh = solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                                min_detection_confidence=min_confidence)

        def detect_legacy(frame: np.ndarray):
            H, W = frame.shape[:2]
            frame = np.ascontiguousarray(frame)
            for model in models:
                found = model.process(frame).detections or ()
                if found:
                    break
            if not found:
                return None
            best = max(found, key=lambda d: d.location_data.relative_bounding_box.width
                       * d.location_data.relative_bounding_box.height)
            b = best.location_data.relative_bounding_box
            box = (b.xmin * W, b.ymin * H, (b.xmin + b.width) * W, (b.ymin + b.height) * H)
            conf = float(best.score[0]) if len(getattr(best, "score", ())) else 1.0
            if mesh is not None:
                landmarks = _mesh_box(mesh, frame, box)
                box, conf = (landmarks, conf) if landmarks else (box, conf * LANDMARKLESS_FACTOR)
            return (*box, conf)

        return detect_legacy
    if model_path is None:
        raise OmniSyncError(
            f"this mediapipe ({getattr(mp, '__version__', '?')}) has no bundled face model: put "
            "blaze_face_short_range.tflite (MediaPipe face detector model) into models/face_detection and pass it, "
            "or `pip install mediapipe==0.10.21`, or choose mode mask, box or point."
        )
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.FaceDetectorOptions(base_options=BaseOptions(model_asset_path=str(model_path)),
                                         min_detection_confidence=min_confidence)
    detector = vision.FaceDetector.create_from_options(options)

    def detect_tasks(frame: np.ndarray):
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))
        found = detector.detect(image).detections or ()
        if not found:
            return None
        best = max(found, key=lambda d: d.bounding_box.width * d.bounding_box.height)
        b = best.bounding_box
        cats = getattr(best, "categories", None) or ()
        conf = float(cats[0].score) if cats and getattr(cats[0], "score", None) is not None else 1.0
        return b.origin_x, b.origin_y, b.origin_x + b.width, b.origin_y + b.height, conf

    return detect_tasks


def _mesh_box(mesh, frame: np.ndarray, box: Box) -> Optional[Box]:
    """The face mesh's landmark extent (pixels), run on the square of MESH_CROP_SCALE × ``box`` around it."""
    H, W = frame.shape[:2]
    x0, y0, x1, y1 = _search_window(box, MESH_CROP_SCALE, H, W)
    result = mesh.process(np.ascontiguousarray(frame[y0:y1, x0:x1])).multi_face_landmarks
    if not result:
        return None
    pts = np.array([(p.x, p.y) for p in result[0].landmark], dtype=np.float64)  # (468, 2) crop fractions
    xs, ys = x0 + pts[:, 0] * (x1 - x0), y0 + pts[:, 1] * (y1 - y0)
    return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())


def _overlaps(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two (x0, y0, x1, y1) boxes share any area."""
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def _detection(hit) -> Optional[Tuple[float, float, float, float, float]]:
    """A detector's answer → (x0, y0, x1, y1, score) with a valid box, or None."""
    if hit is None:
        return None
    values = [float(v) for v in hit]
    if len(values) not in (4, 5):
        raise OmniSyncError(f"a face detector must return (x0, y0, x1, y1) or (x0, y0, x1, y1, score) or None, "
                            f"got {len(values)} values.")
    x0, y0, x1, y1 = values[:4]
    conf = values[4] if len(values) == 5 else 1.0
    if not (x1 > x0 and y1 > y0 and all(math.isfinite(v) for v in values)):
        return None
    return x0, y0, x1, y1, min(max(conf, 0.0), 1.0)


def _search_window(box: Box, scale: float, H: int, W: int) -> Tuple[int, int, int, int]:
    """Integer (x0, y0, x1, y1) of the square of ``scale`` × the box's longer side around its centre, cut to the frame."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = scale * max(box[2] - box[0], box[3] - box[1]) / 2
    x0, y0 = max(0, int(math.floor(cx - half))), max(0, int(math.floor(cy - half)))
    x1, y1 = min(W, int(math.ceil(cx + half))), min(H, int(math.ceil(cy + half)))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


# -- 2. gaps ------------------------------------------------------------------------------------------------------


def classify_gaps(detected: torch.Tensor, max_gap: int = DEFAULT_MAX_GAP,
                  min_run: int = MIN_FACE_RUN) -> Tuple[torch.Tensor, torch.Tensor]:
    """Which missed frames are filled (a short miss) and which are gone (the face left).

    Args:
        detected: (T,) bool, True where a face was found.
        max_gap: longest run of misses (frames) that is filled; a longer run is gone. 0 = every miss is gone.
        min_run: a run of fewer detections than this with gone runs (or the clip's ends) on both sides, and at
            least one gone run beside it, is a stray hit: gone too (not with ``max_gap = 0``, which keeps exactly
            the detector's answer).
    Returns:
        filled (T,) bool, gone (T,) bool; ``detected & ~gone | filled`` are the frames that are edited.
    """
    det = [bool(v) for v in detected.tolist()]
    T = len(det)
    gone = [False] * T
    runs = _runs(det)  # [(value, start, stop)]
    for value, a, b in runs:
        if not value and b - a > max_gap:
            gone[a:b] = [True] * (b - a)
    for i, (value, a, b) in enumerate(runs):
        if value and b - a < min_run and max_gap > 0:
            before = i == 0 or gone[a - 1]
            after = i == len(runs) - 1 or gone[b]
            if before and after and (i > 0 or i < len(runs) - 1):
                gone[a:b] = [True] * (b - a)
    filled = [not d and not g for d, g in zip(det, gone)]
    return torch.tensor(filled, dtype=torch.bool), torch.tensor(gone, dtype=torch.bool)


def _runs(values: List[bool]) -> List[Tuple[bool, int, int]]:
    """[T, T, F, T] → [(True, 0, 2), (False, 2, 3), (True, 3, 4)]."""
    out, start = [], 0
    for t in range(1, len(values) + 1):
        if t == len(values) or values[t] != values[start]:
            out.append((values[start], start, t))
            start = t
    return out


def fill_confidence(score: torch.Tensor, detected: torch.Tensor, filled: torch.Tensor, max_gap: int) -> torch.Tensor:
    """(T,) float32: the score where detected, 0 where gone; on a filled frame the score interpolated between the
    detections around it (held at the clip's ends) times (1 − d / (max_gap + 1)), d = frames to the nearest
    detection, so confidence falls the longer the face has not been seen."""
    T = score.shape[0]
    out = torch.where(detected, score.double(), torch.zeros_like(score, dtype=torch.float64))
    idx = torch.nonzero(detected).flatten().tolist()
    if idx:
        t = np.arange(T)
        interp = np.interp(t, idx, score.double().numpy()[idx])
        dist = np.min(np.abs(t[:, None] - np.asarray(idx)[None, :]), 1)
        fill = torch.from_numpy(interp * np.clip(1 - dist / (max_gap + 1), 0, 1))
        out = torch.where(filled, fill, out)
    return out.float()


# -- 3.–6. the track --------------------------------------------------------------------------------------------


def face_track(
    frames: torch.Tensor,
    mode: str,
    *,
    mask: Optional[torch.Tensor] = None,
    box: Optional[Tuple[float, float, float, float]] = None,
    point: Optional[Tuple[float, float]] = None,
    scale: float = DEFAULT_SCALE,
    expand: float = DEFAULT_EXPAND,
    smoothing: float = DEFAULT_SMOOTHING,
    border: str = "shift",
    detector: Optional[Detector] = None,
    detector_model: Optional[str] = None,
    max_gap: int = DEFAULT_MAX_GAP,
    still: bool = True,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
) -> FaceCropTrack:
    """The square face box of every frame (steps 1–6 of the module docstring).

    Args:
        frames: (T, H, W, 3) float in [0, 1].
        mode: "mask" (bounding box of ``mask``), "box" (``box`` = (x, y, w, h) pixels, every frame), "point"
            (centre ``point`` = (x, y) frame fractions, side ``scale`` × min(H, W)), "auto" (``detector``, by
            default mediapipe's face detection when installed, with ``detector_model`` for mediapipe ≥ 0.10.30).
        expand: square side / longer side of the found face box (mask and auto modes).
        smoothing: σ in frames of the Gaussian on centre and side; 0 leaves the track as found.
        border: "shift" or "pad" (see :data:`BORDERS`).
        max_gap: frames; a run of up to this many frames without a face is filled (box held / interpolated,
            edited), a longer one passes through unchanged (mask and auto modes). 0 = every miss passes through.
        still: one fixed box / fixed size when the head barely moves (step 5; mask and auto modes).
    """
    T, H, W = _check_frames(frames, "frames")
    if mode not in MODES:
        raise OmniSyncError(f"face crop mode must be one of {', '.join(MODES)}, got {mode!r}.")
    if border not in BORDERS:
        raise OmniSyncError(f"border must be one of {', '.join(BORDERS)}, got {border!r}.")
    if not (math.isfinite(smoothing) and smoothing >= 0):
        raise OmniSyncError(f"smoothing is σ in frames and must be ≥ 0, got {smoothing}.")
    if not (math.isfinite(expand) and expand > 0):
        raise OmniSyncError(f"expand must be a positive factor (X-Dub uses {DEFAULT_EXPAND}), got {expand}.")
    if isinstance(max_gap, bool) or not isinstance(max_gap, int) or max_gap < 0:
        raise OmniSyncError(f"max_gap is a whole number of frames ≥ 0 (default {DEFAULT_MAX_GAP}), got {max_gap!r}.")
    rep = CropReport(mode=mode, frames=T)

    tracked = mode in ("mask", "auto")
    if mode == "mask":
        if mask is None:
            raise OmniSyncError("mode 'mask' needs a face MASK; connect one (T, H, W) or choose mode box, point or auto.")
        raw, detected = boxes_from_mask(mask, T, (H, W))
        if not bool(detected.any()):
            raise OmniSyncError("the face mask is empty on every frame, so there is no face to crop; connect a mask "
                                f"that is > {MASK_THRESHOLD} over the face, or choose mode box, point or auto.")
        score = detected.double()
    elif mode == "auto":
        detector = detector or mediapipe_detector(detector_model)
        raw, detected, score = boxes_from_detector(frames, detector, progress, cancel, max_gap)
        if not bool(detected.any()):  # e.g. faces in profile, which the face mesh does not confirm
            raw, detected, score = boxes_from_detector(frames, detector, progress, cancel, max_gap,
                                                       start_score=UNCONFIRMED_START_SCORE)
            if bool(detected.any()):
                rep.notes.append(f"no face scored above {START_SCORE} (mediapipe: none confirmed by face landmarks); "
                                 f"the boxes follow a face scored above {UNCONFIRMED_START_SCORE}: check the crops")
        if not bool(detected.any()):
            raise OmniSyncError("no face was found in any frame; choose mode mask, box or point and give the face "
                                "region yourself.")
    elif mode == "box":
        if box is None or len(box) != 4:
            raise OmniSyncError("mode 'box' needs box = (x, y, w, h) in pixels.")
        x, y, w, h = (float(v) for v in box)
        if not (w > 0 and h > 0):
            raise OmniSyncError(f"the face box needs a positive width and height, got w={w}, h={h} pixels.")
        if x >= W or y >= H or x + w <= 0 or y + h <= 0:
            raise OmniSyncError(f"the face box (x={x:g}, y={y:g}, w={w:g}, h={h:g}) lies outside the {W}×{H} frame; "
                                f"give x in [0, {W}), y in [0, {H}) (pixels from the top-left corner).")
        if w != h:
            rep.notes.append(f"box {w:g}×{h:g} made square: side {max(w, h):g} px around its centre")
        centre = torch.tensor([[x + w / 2, y + h / 2]], dtype=torch.float64).expand(T, 2)
        side = torch.full((T,), max(w, h), dtype=torch.float64)
    else:  # point
        px, py = point if point is not None else DEFAULT_POINT
        if not (0.0 <= px <= 1.0 and 0.0 <= py <= 1.0):
            raise OmniSyncError(f"the face point ({px}, {py}) must be inside the frame: x, y fractions in [0, 1].")
        if not (math.isfinite(scale) and scale > 0):
            raise OmniSyncError(f"scale is the box side as a fraction of the frame's shorter side and must be > 0, "
                                f"got {scale}.")
        centre = torch.tensor([[px * W, py * H]], dtype=torch.float64).expand(T, 2)
        side = torch.full((T,), scale * min(H, W), dtype=torch.float64)

    if tracked:
        filled, gone = classify_gaps(detected, max_gap)
        if bool(gone.all()):
            raise OmniSyncError(f"a face was found on only {int(detected.sum())} scattered frame(s) of {T}, fewer than "
                                f"{MIN_FACE_RUN} in a row; choose mode mask, box or point and give the face region "
                                "yourself.")
        confidence = fill_confidence(score, detected, filled, max_gap)
        usable = detected & ~gone  # stray hits inside gone runs do not steer the box
        centre, side = _square(raw, expand)
        track = smooth_track(torch.cat([centre, side[:, None]], 1), usable, smoothing)  # (T, 3) cx, cy, side
        found = ~gone
        if still:
            track = stabilise_track(track, found, (H, W), rep)
        rep.no_face_frames = torch.nonzero(gone).flatten().tolist()
        rep.filled_frames = torch.nonzero(filled).flatten().tolist()
    else:
        found = torch.ones(T, dtype=torch.bool)
        confidence = torch.ones(T, dtype=torch.float32)
        track = torch.cat([centre, side[:, None]], 1)
    boxes = _integer_boxes(track, (H, W), border, rep)
    return FaceCropTrack(boxes, found, (H, W), border, rep, confidence)


def smooth_track(track: torch.Tensor, found: torch.Tensor, sigma: float) -> torch.Tensor:
    """Zero-phase Gaussian smoothing of a box track over time.

    Args:
        track: (T, K) float — per frame, K values (centre x, centre y, side); rows where ``found`` is False
            are ignored and filled by linear interpolation between the found rows around them (held constant
            before the first and after the last found row).
        found: (T,) bool, at least one True.
        sigma: σ in frames; 0 returns the filled track unchanged.
    Returns:
        (T, K) float64. The kernel is symmetric and applied once over edge-replicated ends, so a constant
        track stays exactly constant and a moving face is not delayed.
    """
    x = track.detach().double().cpu().numpy()
    ok = found.cpu().numpy().astype(bool)
    t = np.arange(x.shape[0])
    x = np.stack([np.interp(t, t[ok], x[ok, k]) for k in range(x.shape[1])], 1)
    if sigma > 0 and x.shape[0] > 1:
        radius = max(1, math.ceil(SMOOTHING_RADIUS_SIGMAS * sigma))
        offsets = np.arange(-radius, radius + 1, dtype=np.float64)
        kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
        kernel /= kernel.sum()
        padded = np.pad(x, ((radius, radius), (0, 0)), mode="edge")
        x = np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(x.shape[1])], 1)
    return torch.from_numpy(x)


def stabilise_track(track: torch.Tensor, edited: torch.Tensor, frame_size: Tuple[int, int],
                    rep: Optional[CropReport] = None) -> torch.Tensor:
    """X-Dub's still-head rule (``judge_case_flag`` / ``get_fix_bbox`` / ``get_size_fix_center_smooth_bbox``),
    on each run of edited frames.

    Args:
        track: (T, 3) float (cx, cy, side) pixels, already smoothed.
        edited: (T,) bool, the frames that are pasted back; each maximal run is judged on its own.
        frame_size: (H, W); a fixed side is at most the frame's shorter side.
        rep: where the decision per run is written (``stabilised``), if given.
    Returns:
        (T, 3) float64: a run whose every box edge lies within :data:`STILL_TOLERANCE` × the union box's width
        (x edges) / height (y edges) of the union's edge gets the union box, made square around its centre
        ("fixed box"); else a run whose every side lies within ±:data:`SIZE_TOLERANCE` of its mean side gets the
        largest side on every frame and keeps its centres ("fixed size"); else it is unchanged ("smoothed").
    """
    out = track.detach().double().clone()
    H, W = frame_size
    for value, a, b in _runs([bool(v) for v in edited.tolist()]):
        if not value:
            continue
        cx, cy, s = out[a:b, 0], out[a:b, 1], out[a:b, 2]
        x0, y0, x1, y1 = cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2
        ux0, uy0, ux1, uy1 = x0.min(), y0.min(), x1.max(), y1.max()
        tol_x, tol_y = STILL_TOLERANCE * (ux1 - ux0), STILL_TOLERANCE * (uy1 - uy0)
        if bool(((x0 - ux0) <= tol_x).all() and ((ux1 - x1) <= tol_x).all()
                and ((y0 - uy0) <= tol_y).all() and ((uy1 - y1) <= tol_y).all()):
            side = min(float(max(ux1 - ux0, uy1 - uy0)), float(min(H, W)))
            out[a:b] = torch.tensor([float(ux0 + ux1) / 2, float(uy0 + uy1) / 2, side], dtype=torch.float64)
            stage = STAGES[0]
        elif bool(((s - s.mean()).abs() <= SIZE_TOLERANCE * s.mean()).all()):
            out[a:b, 2] = min(float(s.max()), float(min(H, W)))
            stage = STAGES[1]
        else:
            stage = STAGES[2]
        if rep is not None:
            rep.stabilised.append(f"frames {a}-{b - 1}: {stage}")
    return out


def _square(raw: torch.Tensor, expand: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Raw (T, 4) boxes → centre (T, 2) and square side (T,) = expand × longer side (NaN rows stay NaN)."""
    centre = torch.stack([(raw[:, 0] + raw[:, 2]) / 2, (raw[:, 1] + raw[:, 3]) / 2], 1)
    side = expand * torch.maximum(raw[:, 2] - raw[:, 0], raw[:, 3] - raw[:, 1])
    return centre, side


def _integer_boxes(track: torch.Tensor, frame_size: Tuple[int, int], border: str, rep: CropReport) -> torch.Tensor:
    """(T, 3) float (cx, cy, side) → (T, 3) long (x0, y0, side), applying the border policy (reported)."""
    H, W = frame_size
    out = torch.empty(track.shape[0], 3, dtype=torch.long)
    for t, (cx, cy, s) in enumerate(track.tolist()):
        side = max(1, int(round(s)))
        if border == "shift" and side > min(H, W):
            side = min(H, W)
            rep.shrunk_frames.append(t)
        x0, y0 = int(math.floor(cx - side / 2 + 0.5)), int(math.floor(cy - side / 2 + 0.5))
        if border == "shift":
            nx, ny = min(max(x0, 0), W - side), min(max(y0, 0), H - side)
            if (nx, ny) != (x0, y0):
                rep.moved_frames.append(t)
            x0, y0 = nx, ny
        elif x0 < 0 or y0 < 0 or x0 + side > W or y0 + side > H:
            rep.padded_frames.append(t)
        out[t] = torch.tensor([x0, y0, side])
    return out


# -- 7. crop --------------------------------------------------------------------------------------------------


def crop_faces(frames: torch.Tensor, track: FaceCropTrack, size: int = DEFAULT_CROP_SIZE,
               progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCheck] = None) -> torch.Tensor:
    """Every frame's box resized to (size, size) with :data:`RESAMPLE` (border "pad": outside pixels repeat the edge).

    frames: (T, H, W, 3) float in [0, 1], the frames the track was made for. Returns (T, size, size, 3) float32
    on the frames' device. Gone frames are cropped at their interpolated box too (the model needs every
    frame); paste-back leaves them unchanged.
    """
    T, H, W = _check_frames(frames, "frames")
    _check_track(track, T, (H, W), "frames")
    if not (isinstance(size, int) and size >= 1):
        raise OmniSyncError(f"the crop size must be a whole number of pixels ≥ 1 (X-Dub: {DEFAULT_CROP_SIZE}), got {size}.")
    out = torch.empty(T, size, size, 3, dtype=torch.float32, device=frames.device)
    for t, (x0, y0, s) in enumerate(track.boxes.tolist()):
        check_cancel(cancel)
        xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + s, W), min(y0 + s, H)
        patch = frames[t, ya:yb, xa:xb].float().permute(2, 0, 1)[None]  # (1, 3, h, w)
        pads = (xa - x0, x0 + s - xb, ya - y0, y0 + s - yb)  # left, right, top, bottom
        if any(pads):
            patch = F.pad(patch, pads, mode="replicate")  # (1, 3, s, s)
        out[t] = _resize(patch, size)[0].permute(1, 2, 0)
        report(progress, t + 1, T, "cropping faces")
    return out


# -- 8. paste back --------------------------------------------------------------------------------------------


def paste_back(frames: torch.Tensor, crops: torch.Tensor, track: FaceCropTrack, feather_px: float = DEFAULT_FEATHER_PX,
               progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCheck] = None) -> torch.Tensor:
    """The processed crops put back into the frames they were cut from.

    Args:
        frames: (T, H, W, 3) float in [0, 1], the original frames (the ones the track was made for).
        crops: (T, h, w, 3) float, the processed crops (any square size; usually the crop size).
        feather_px: width in frame pixels of the soft edge inside the box (0 = hard edge); limited to half the
            box side.
    Returns:
        (T, H, W, 3) in the frames' dtype: ``frames`` exactly outside every box and on no-face frames; inside a
        box, feather·crop + (1 − feather)·frame, exactly the resized crop where the weight is 1.
    """
    T, H, W = _check_frames(frames, "original frames")
    _check_track(track, T, (H, W), "original frames")
    if crops.ndim != 4 or crops.shape[-1] != 3:
        raise OmniSyncError(f"the processed crops must be IMAGE (T, h, w, 3), got shape {tuple(crops.shape)}.")
    if crops.shape[0] != T:
        raise OmniSyncError(f"the processed crops have {crops.shape[0]} frames but the original video has {T}; connect "
                            "the crops made from this video by Face Crop (same frames, same order) — if the clip was "
                            "looped or trimmed, re-index the face track to the same frame plan.")
    if crops.shape[1] != crops.shape[2]:
        raise OmniSyncError(f"the processed crops are {crops.shape[2]}×{crops.shape[1]} (W×H) but face boxes are "
                            "square; connect square crops (Face Crop's output size).")
    if not (math.isfinite(feather_px) and feather_px >= 0):
        raise OmniSyncError(f"feather_px must be a finite number of pixels ≥ 0, got {feather_px}.")
    out = frames.clone()
    for t, (x0, y0, s) in enumerate(track.boxes.tolist()):
        check_cancel(cancel)
        if not bool(track.found[t]):
            continue
        xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + s, W), min(y0 + s, H)
        patch = _resize(crops[t].to(frames.device, torch.float32).permute(2, 0, 1)[None], s)[0]  # (3, s, s)
        new = patch[:, ya - y0:yb - y0, xa - x0:xb - x0].permute(1, 2, 0).contiguous().to(frames.dtype)  # (h, w, 3)
        wy = _feather_ramp(s, feather_px, y0 > 0, y0 + s < H)[ya - y0:yb - y0]  # (h,)
        wx = _feather_ramp(s, feather_px, x0 > 0, x0 + s < W)[xa - x0:xb - x0]  # (w,)
        m = (wy[:, None] * wx[None, :]).to(frames.device, frames.dtype)[..., None]  # (h, w, 1)
        # lerp is exact at both ends: the frame where m = 0, the crop where m = 1
        out[t, ya:yb, xa:xb] = torch.lerp(frames[t, ya:yb, xa:xb], new, m)
        report(progress, t + 1, T, "pasting faces back")
    return out


def _feather_ramp(side: int, feather_px: float, start: bool, end: bool) -> torch.Tensor:
    """(side,) weights: smoothstep from 0 at a feathered box edge to 1 at ``feather_px`` inside (pixel centres)."""
    w = torch.ones(side, dtype=torch.float64)
    feather = min(feather_px, side / 2)
    if feather <= 0:
        return w
    centres = torch.arange(side, dtype=torch.float64) + 0.5
    for on, dist in ((start, centres), (end, side - centres)):
        if on:
            r = (dist / feather).clamp(0, 1)
            w = w * (r * r * (3 - 2 * r))
    return w


# -- helpers ------------------------------------------------------------------------------------------------


def _resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """(1, 3, h, w) → (1, 3, size, size) with :data:`RESAMPLE`; a copy when already that size."""
    if image.shape[-2:] == (size, size):
        return image.clone()
    return F.interpolate(image, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def _check_frames(frames: torch.Tensor, what: str) -> Tuple[int, int, int]:
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[-1] != 3:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise OmniSyncError(f"the {what} must be IMAGE (T, H, W, 3) float in [0, 1], got {shape}.")
    T, H, W = frames.shape[:3]
    if T < 1 or H < 1 or W < 1:
        raise OmniSyncError(f"the {what} are empty (shape {tuple(frames.shape)}); connect a video with frames.")
    return int(T), int(H), int(W)


def _check_track(track: FaceCropTrack, T: int, frame_size: Tuple[int, int], what: str) -> None:
    if not isinstance(track, FaceCropTrack):
        raise OmniSyncError(f"expected a face track from Face Crop, got {type(track).__name__}.")
    if track.num_frames != T:
        raise OmniSyncError(f"the face track has {track.num_frames} frames but the {what} have {T}; use the track made "
                            "from these frames (or re-index it to the same frame plan).")
    if tuple(track.frame_size) != tuple(frame_size):
        H, W = track.frame_size
        raise OmniSyncError(f"the face track was made for {W}×{H} frames but the {what} are "
                            f"{frame_size[1]}×{frame_size[0]} (W×H); connect the video the track was made from.")


def _remap(frames: List[int], idx: torch.Tensor) -> List[int]:
    marked = set(frames)
    return [i for i, t in enumerate(idx.tolist()) if t in marked]


def _ranges(frames: List[int]) -> str:
    """[0, 1, 2, 5] → "0-2, 5" (short enough for a node's report)."""
    parts, start, prev = [], None, None
    for f in sorted(frames):
        if start is None:
            start = prev = f
        elif f == prev + 1:
            prev = f
        else:
            parts.append(f"{start}-{prev}" if prev > start else f"{start}")
            start = prev = f
    parts.append(f"{start}-{prev}" if prev > start else f"{start}")
    return ", ".join(parts)
