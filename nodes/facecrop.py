"""Face Crop / Face Paste Back: square face crops at the model's size, and the processed crops blended back.

Thin adapters over ``omnisync_core.image.facecrop`` (the box track, the crop, the paste-back and their report).
"""

from __future__ import annotations

import os

from comfy_api.latest import io

from omnisync_core.image.facecrop import (
    BORDERS,
    DEFAULT_CROP_SIZE,
    DEFAULT_EXPAND,
    DEFAULT_FEATHER_PX,
    DEFAULT_MAX_GAP,
    DEFAULT_POINT,
    DEFAULT_SCALE,
    DEFAULT_SMOOTHING,
    MODES,
    RESAMPLE,
)

from .bridge import CATEGORY, ComfyProgress, comfy_cancel, format_report, run_cancellable
from .feedback import HIDDEN, Feedback
from .widgets import check_choices

FaceCropType = io.Custom("OMNISYNC_FACE_CROP")  # omnisync_core.image.facecrop.FaceCropTrack
FACE_DETECTOR_FOLDER = "face_detection"  # ComfyUI/models/face_detection
FACE_DETECTOR_FILE = "blaze_face_short_range.tflite"  # MediaPipe's face detector model, for mediapipe ≥ 0.10.30
MAX_BOX_PX = 16384


def face_detector_model():
    """models/face_detection/blaze_face_short_range.tflite when the user put it there, else None."""
    import folder_paths

    path = os.path.join(folder_paths.models_dir, FACE_DETECTOR_FOLDER, FACE_DETECTOR_FILE)
    return path if os.path.isfile(path) else None


class OmniSyncFaceCrop(io.ComfyNode):
    DISPLAY_NAME = "OmniSync Face Crop"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="OmniSyncFaceCrop",
            display_name=cls.DISPLAY_NAME,
            category=CATEGORY,
            description=(
                "Cuts a square face crop out of every frame at the model's size (X-Dub: 512), for lip-sync models "
                "that work on faces. The box comes from a face MASK, a fixed box, a point with a size, or (auto) "
                "mediapipe's face detector when installed; it is made square, expanded, smoothed over time so it does "
                "not jitter, and kept inside the frame (shift) or padded. Resampling: "
                f"{RESAMPLE}. Connect face_crop to Face Paste Back."
            ),
            inputs=[
                io.Image.Input("images", tooltip="Video frames (T, H, W, 3)."),
                io.Combo.Input("mode", options=list(MODES), default="point",
                               tooltip="mask: bounding box of the connected face mask; box: box_x/y/w/h; point: "
                                       "point_x/y with scale; auto: mediapipe face detection (optional package; for "
                                       f"mediapipe ≥ 0.10.30 put {FACE_DETECTOR_FILE} in "
                                       f"models/{FACE_DETECTOR_FOLDER})."),
                io.Int.Input("size", default=DEFAULT_CROP_SIZE, min=1, max=4096, step=1,
                             tooltip=f"Side of the square crops in pixels (X-Dub: {DEFAULT_CROP_SIZE})."),
                io.Float.Input("expand", default=DEFAULT_EXPAND, min=0.1, max=8.0, step=0.01,
                               tooltip="Crop side / longer side of the face's mask or detected box (mask and auto "
                                       f"modes; X-Dub: {DEFAULT_EXPAND})."),
                io.Float.Input("smoothing", default=DEFAULT_SMOOTHING, min=0.0, max=100.0, step=0.1,
                               tooltip="σ in frames of the Gaussian on box centre and size over time (no lag; 0 = "
                                       "off). Larger = steadier box, slower to follow fast head motion."),
                io.Combo.Input("border", options=list(BORDERS), default="shift",
                               tooltip="At the frame border: shift moves the box inside the frame (shrunk to the "
                                       "shorter side if larger; X-Dub), pad keeps it centred and repeats the edge "
                                       "pixels outside."),
                io.Int.Input("box_x", default=0, min=0, max=MAX_BOX_PX,
                             tooltip="Box left edge in pixels, for mode = box."),
                io.Int.Input("box_y", default=0, min=0, max=MAX_BOX_PX,
                             tooltip="Box top edge in pixels, for mode = box."),
                io.Int.Input("box_w", default=DEFAULT_CROP_SIZE, min=1, max=MAX_BOX_PX,
                             tooltip="Box width in pixels, for mode = box (a non-square box is made square around "
                                     "its centre with its longer side)."),
                io.Int.Input("box_h", default=DEFAULT_CROP_SIZE, min=1, max=MAX_BOX_PX,
                             tooltip="Box height in pixels, for mode = box."),
                io.Float.Input("point_x", default=DEFAULT_POINT[0], min=0.0, max=1.0, step=0.01,
                               tooltip="Face centre across the frame (0 = left), for mode = point."),
                io.Float.Input("point_y", default=DEFAULT_POINT[1], min=0.0, max=1.0, step=0.01,
                               tooltip="Face centre down the frame (0 = top), for mode = point."),
                io.Float.Input("scale", default=DEFAULT_SCALE, min=0.01, max=4.0, step=0.01,
                               tooltip="Crop side as a fraction of the frame's shorter side, for mode = point."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Face mask (T, H, W) or one mask for all frames, for mode = mask; where it is "
                                      f"empty for more than {DEFAULT_MAX_GAP} frames in a row, those frames pass "
                                      "through Face Paste Back unchanged (shorter gaps are filled)."),
            ],
            outputs=[
                io.Image.Output(display_name="crops", tooltip="Face crops (T, size, size, 3), one per frame."),
                FaceCropType.Output(display_name="face_crop", tooltip="The box of every frame, for Face Paste Back."),
                io.String.Output(display_name="report", tooltip="Crop report (JSON): frames without a face, boxes "
                                                                "moved, shrunk or padded at the frame border."),
            ],
            hidden=list(HIDDEN),
        )

    @classmethod
    def execute(cls, images, mode, size, expand, smoothing, border, box_x, box_y, box_w, box_h, point_x, point_y,
                scale, mask=None) -> io.NodeOutput:
        from omnisync_core.image.facecrop import crop_faces, face_track

        check_choices(cls, mode=mode, border=border)
        track = run_cancellable(
            face_track, images, mode, mask=mask, box=(box_x, box_y, box_w, box_h), point=(point_x, point_y),
            scale=scale, expand=expand, smoothing=smoothing, border=border,
            detector_model=face_detector_model() if mode == "auto" else None,
            progress=ComfyProgress(), cancel=comfy_cancel,
        )
        crops = run_cancellable(crop_faces, images, track, size, progress=ComfyProgress(), cancel=comfy_cancel)
        report = dict(track.report.to_dict(), size=size, resample=RESAMPLE)
        feedback = Feedback(cls, cls.DISPLAY_NAME, report)
        if track.report.no_face_frames:
            feedback.warn(f"no face in {len(track.report.no_face_frames)} of {track.num_frames} frame(s); they pass "
                          "through paste-back unchanged.")
        return io.NodeOutput(crops, track, format_report(report))


class OmniSyncFacePasteBack(io.ComfyNode):
    DISPLAY_NAME = "OmniSync Face Paste Back"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="OmniSyncFacePasteBack",
            display_name=cls.DISPLAY_NAME,
            category=CATEGORY,
            description=(
                "Puts processed face crops back into the frames they were cut from: each crop is resized to its box "
                "and blended in with a soft edge. Pixels outside the boxes, and frames where no face was found, are "
                "the original's exactly."
            ),
            inputs=[
                io.Image.Input("images", tooltip="The original frames (the ones given to Face Crop)."),
                io.Image.Input("crops", tooltip="The processed face crops, one per frame, same order."),
                FaceCropType.Input("face_crop", tooltip="The face_crop output of Face Crop."),
                io.Float.Input("feather_px", default=DEFAULT_FEATHER_PX, min=0.0, max=256.0, step=0.5,
                               tooltip="Width in frame pixels of the soft edge inside each box (0 = hard edge); box "
                                       "sides on the frame border are not feathered."),
            ],
            outputs=[
                io.Image.Output(display_name="images", tooltip="Full frames (T, H, W, 3) with the processed faces."),
                io.String.Output(display_name="report", tooltip="Paste report (JSON): frames passed through unchanged "
                                                                "(no face), feather."),
            ],
            hidden=list(HIDDEN),
        )

    @classmethod
    def execute(cls, images, crops, face_crop, feather_px) -> io.NodeOutput:
        from omnisync_core.image.facecrop import paste_back

        out = run_cancellable(paste_back, images, crops, face_crop, feather_px, progress=ComfyProgress(),
                              cancel=comfy_cancel)
        rep = face_crop.report.to_dict()
        pasted = face_crop.num_frames - len(face_crop.report.no_face_frames)
        report = {"frames": face_crop.num_frames, "pasted_frames": pasted, "feather_px": feather_px}
        if "no_face_frames" in rep:
            report["unchanged_frames"] = rep["no_face_frames"]  # no face: the original frame as it was
            Feedback(cls, cls.DISPLAY_NAME).info(f"{len(rep['no_face_frames'])} of {face_crop.num_frames} frame(s) "
                                                 "left unchanged (no face).")
        return io.NodeOutput(out, format_report(report))
