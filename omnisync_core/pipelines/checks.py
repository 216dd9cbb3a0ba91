"""Checks that run before anything is loaded or computed, and the run's warnings: one rule, one place.

The CLI, the Python API (:mod:`omnisync_core.api`) and the ComfyUI nodes call these, so a bad path, a
device this build cannot use or a clip that is too short fails in a second with one line that names
the fix, instead of after the model was loaded or the clip sampled.

- paths: :func:`check_input_file`, :func:`check_model_path`, :func:`check_output_path`;
- device and precision: :func:`check_device`, :func:`dtype_warnings`;
- lengths: :func:`check_clip_length` — video and speech by the same rule (at least
  :data:`MIN_CLIP_FRAMES` frames at the video's fps), :func:`check_frame_size`;
- the model's training conditions: :func:`training_warnings` (fps and frame size far from them);
- warnings: :func:`warn` adds one line to a report and hands it to the caller's callback (the core
  never prints; the CLI prints ``warning: ...``, the nodes log it and put it in their report output).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import torch

from ..errors import OmniSyncError
from ..io.frames import MIN_CLIP_FRAMES
from ..model.checkpoint import ARCHITECTURES, read_metadata

MIN_FRAME_SIDE_PX = 8  # below this there is no mouth to edit (a 1×1 "video" was passed through untouched)
TRAINING_FPS_RATIO = 2.0  # fps more than this factor above/below the training fps: warned
TRAINING_SIZE_RATIO = 2.0  # shorter frame side more than this factor off the training size: warned
CHECKPOINT_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl")

WarningCallback = Callable[[str], None]


# -- warnings ------------------------------------------------------------------------------------------


def warn(report: Dict[str, Any], on_warning: Optional[WarningCallback], message: str) -> None:
    """Record one warning line in ``report["warnings"]`` and pass it to ``on_warning`` (if any)."""
    report.setdefault("warnings", []).append(message)
    if on_warning is not None:
        on_warning(message)


# -- paths -----------------------------------------------------------------------------------------------


def check_input_file(path: Any, what: str) -> str:
    """An input file that exists, is a file (not a folder), is readable and is not empty."""
    if path is None or (isinstance(path, str) and not path.strip()):
        raise OmniSyncError(f"no {what} file given (empty path); pass the path of the {what} file.")
    path = os.fspath(path)
    if os.path.isdir(path):
        raise OmniSyncError(f"the {what} path {path!r} is a folder; pass the {what} file itself.")
    if not os.path.exists(path):
        raise OmniSyncError(f"{what} file not found: {path!r}; check the path.")
    if not os.access(path, os.R_OK):
        raise OmniSyncError(f"the {what} file {path!r} is not readable; fix its permissions (chmod +r).")
    if os.path.getsize(path) == 0:
        raise OmniSyncError(f"the {what} file {path!r} is empty (0 bytes); pass a complete file.")
    return path


def check_model_path(path: Any) -> Dict[str, Any]:
    """An OmniSync checkpoint, checked from its header only (no weights are read): → its metadata.

    A folder, a missing file, a pickle (.pt/.ckpt), a truncated safetensors file, one without OmniSync
    metadata or of an architecture this version does not know: one line each, naming the fix.
    """
    if path is None or (isinstance(path, str) and not path.strip()):
        raise OmniSyncError("no model given; pass an OmniSync .safetensors checkpoint.")
    path = os.fspath(path)
    if os.path.isdir(path):
        inside = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
        hint = f" (it holds {', '.join(inside[:3])})" if inside else ""
        raise OmniSyncError(f"the model path {path!r} is a folder{hint}; pass the OmniSync .safetensors file "
                            "itself, e.g. models/omnisync_unet128.safetensors.")
    check_input_file(path, "model")
    meta = read_metadata(path)
    arch = meta.get("arch", "dit")
    if arch not in ARCHITECTURES:
        raise OmniSyncError(f"{path!r} describes a {arch!r} network; this version knows {sorted(ARCHITECTURES)}: "
                            "update the plugin.")
    return meta


def check_output_path(path: Any, what: str, suffixes: Optional[Sequence[str]] = None) -> str:
    """An output file whose folder exists and is writable, that is not itself a folder, with a known suffix."""
    if path is None or (isinstance(path, str) and not path.strip()):
        raise OmniSyncError(f"the {what} path is empty; pass a file name.")
    path = os.fspath(path)
    if os.path.isdir(path):
        raise OmniSyncError(f"the {what} path {path!r} is a folder; pass a file name inside it.")
    if suffixes and not path.lower().endswith(tuple(suffixes)):
        raise OmniSyncError(f"the {what} {path!r} must end in {' or '.join(suffixes)}; rename it.")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OmniSyncError(f"the folder of the {what} {folder!r} does not exist; create it first (mkdir -p).")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OmniSyncError(f"the folder of the {what} {folder!r} is not writable; pick another folder.")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise OmniSyncError(f"the {what} {path!r} exists and is read-only; remove it or pick another name.")
    return path


# -- device and precision ----------------------------------------------------------------------------------


def check_device(device: Any) -> torch.device:
    """A device this PyTorch build can use: a clear error for CUDA on a CPU build, a bad index or name."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise OmniSyncError(f"unknown device {device!r} ({exc}); use cpu, cuda, cuda:N or mps.") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            built = torch.backends.cuda.is_built()
            raise OmniSyncError(
                f"device {device!r}: " + ("no CUDA GPU is visible" if built else "this PyTorch build has no CUDA")
                + "; use --device cpu, or install a CUDA build of PyTorch (https://pytorch.org/get-started).")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise OmniSyncError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) are visible; "
                                "use cuda:0.")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise OmniSyncError(f"device {device!r}: Apple MPS is not available here; use --device cpu.")
    elif dev.type != "cpu":
        raise OmniSyncError(f"device {device!r} is not supported; use cpu, cuda or mps.")
    return dev


def dtype_warnings(device: Any, dtype: torch.dtype) -> List[str]:
    """Precisions that run, but badly, on ``device``: fp16 on the CPU is slow (measured 11× bf16)."""
    if torch.device(device).type == "cpu" and dtype == torch.float16:
        return ["fp16 on the CPU is many times slower than bf16 or fp32 (no fast fp16 kernels): use bf16 or fp32 "
                "on the CPU."]
    return []


# -- lengths and sizes ------------------------------------------------------------------------------------


def check_clip_length(fps: float, num_frames: Optional[int] = None, audio_seconds: Optional[float] = None) -> None:
    """The one minimum-length rule, for video and speech alike: at least :data:`MIN_CLIP_FRAMES` frames,
    the speech counted in frames at the video's fps (at 25 fps: 2 frames = 80 ms)."""
    if num_frames is not None and num_frames < MIN_CLIP_FRAMES:
        raise OmniSyncError(
            f"the video has {num_frames} frame{'s' if num_frames != 1 else ''}; lip-sync needs a clip of at least "
            f"{MIN_CLIP_FRAMES} frames: pass a video, not a single image (or repeat the image).")
    if audio_seconds is not None and audio_seconds * float(fps) < MIN_CLIP_FRAMES - 1e-6:
        raise OmniSyncError(
            f"the speech is {audio_seconds * 1000:.0f} ms, less than {MIN_CLIP_FRAMES} frames at {float(fps):g} fps "
            f"({MIN_CLIP_FRAMES / float(fps) * 1000:.0f} ms); pass at least that much speech.")


def check_frame_size(height: int, width: int) -> None:
    """Frames big enough to hold a mouth: both sides at least :data:`MIN_FRAME_SIDE_PX` pixels."""
    if min(height, width) < MIN_FRAME_SIDE_PX:
        raise OmniSyncError(f"frames are {width}×{height} pixels; lip-sync needs at least "
                            f"{MIN_FRAME_SIDE_PX}×{MIN_FRAME_SIDE_PX}: upscale the video first.")


def training_warnings(meta: Optional[Mapping[str, Any]], fps: Optional[float] = None,
                      size: Optional[Sequence[int]] = None) -> List[str]:
    """Warnings when fps or the frame size (H, W) is far (× :data:`TRAINING_FPS_RATIO` /
    :data:`TRAINING_SIZE_RATIO`) from what the checkpoint's ``train`` metadata says it was trained on."""
    train = (meta or {}).get("train") or {}
    out = []
    t_fps, t_size = train.get("fps"), train.get("size")
    if fps is not None and isinstance(t_fps, (int, float)) and t_fps > 0:
        ratio = float(fps) / t_fps
        if not 1 / TRAINING_FPS_RATIO <= ratio <= TRAINING_FPS_RATIO:
            out.append(f"the video is {float(fps):g} fps but the model was trained at {t_fps:g} fps; mouth timing may "
                       f"be off: resample the video to {t_fps:g} fps (ffmpeg -i in.mp4 -r {t_fps:g} out.mp4).")
    if size is not None and isinstance(t_size, int) and t_size > 0:
        side = min(int(size[0]), int(size[1]))
        if not 1 / TRAINING_SIZE_RATIO <= side / t_size <= TRAINING_SIZE_RATIO:
            out.append(f"frames are {int(size[1])}×{int(size[0])} but the model was trained on {t_size}×{t_size}; "
                       f"quality may drop: resize the video so its shorter side is near {t_size} px.")
    return out
