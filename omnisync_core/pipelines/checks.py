"""Checks that run before anything is loaded or computed, and the run's warnings: one rule, one place.

The CLI, the Python API (:mod:`omnisync_core.api`) and the ComfyUI nodes call these, so a bad path, a
device this build cannot use or a clip that is too short fails in a second with one line that names
the fix, instead of after the model was loaded or the clip sampled.

- paths: :func:`check_input_file`, :func:`check_model_path` (OmniSync) and :func:`check_xdub_model_path`
  (X-Dub), both from the file's header only; :func:`check_output_path` (folder, suffix, name length the file
  system takes), :func:`check_outputs` (distinct names, never over an input);
- device and precision: :func:`check_device`, :func:`dtype_warnings`;
- sampling: :func:`check_sampling_bounds` (step count, guidance weights, τ giving at least one step);
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
from ..io.files import partial_name
from ..io.frames import MIN_CLIP_FRAMES
from ..model.checkpoint import ARCHITECTURES, METADATA_KEY, _open, read_metadata
from ..model.config import DiTConfig
from ..sampling.schedule import SIGMA_MATCH_EPS, FlowMatchSchedule

MIN_FRAME_SIDE_PX = 8  # below this there is no mouth to edit (a 1×1 "video" was passed through untouched)
TRAINING_FPS_RATIO = 2.0  # fps more than this factor above/below the training fps: warned
TRAINING_SIZE_RATIO = 2.0  # shorter frame side more than this factor off the training size: warned
# More steps than the 1000 training timesteps cannot be finer, only slower: 10^5 would take days, and 10^9
# tried to allocate 17 GB for the σ grid alone. The paper uses 50, X-Dub's reference 30.
MAX_NUM_STEPS = 1000
# A CFG scale extrapolates the conditional prediction away from the unconditional one by that factor; the
# largest either family uses is X-Dub's audio scale 10. At 10^9, 35% of the pixels came out clipped.
MAX_GUIDANCE_WEIGHT = 50.0
NAME_MAX_FALLBACK = 255  # bytes in one file name where the file system does not say (ext4, APFS, NTFS: 255)

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
    _check_name_length(path, what, folder)
    return path


def _check_name_length(path: str, what: str, folder: str) -> None:
    """The output's name, and the longer temporary name it is written under first (``io.files.partial_name``),
    must fit the file system: found here, not when the finished video is renamed."""
    try:
        name_max = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows) or the file system does not say
        name_max = NAME_MAX_FALLBACK
    name = len(os.fsencode(os.path.basename(path)))
    extra = len(os.fsencode(os.path.basename(partial_name(path)))) - name
    if name + extra > name_max:
        raise OmniSyncError(f"the {what} file name is {name} bytes; this file system takes {name_max} and the run "
                            f"first writes it under a name {extra} bytes longer: shorten the name to at most "
                            f"{name_max - extra} bytes.")


def check_outputs(outputs: Mapping[str, Optional[str]], inputs: Sequence[Optional[str]]) -> None:
    """Outputs ({what: path or None}) with distinct names, none of them an input (by real path, so a symlink
    or a second name of the same file counts): a run never writes over what it reads."""
    given = {what: os.path.realpath(p) for what, p in outputs.items() if p}
    seen: Dict[str, str] = {}
    for what, real in given.items():
        if real in seen:
            raise OmniSyncError(f"{seen[real]} and {what} have the same file name {real!r}; give each output its own "
                                "name.")
        seen[real] = what
    for src in (p for p in inputs if p):
        real_in = os.path.realpath(src)
        for what, real in given.items():
            if real == real_in or (os.path.exists(real) and os.path.exists(real_in) and os.path.samefile(real, real_in)):
                raise OmniSyncError(f"the {what} {outputs[what]!r} would overwrite an input of this run ({src!r}); "
                                    "give the output another name.")


def check_xdub_model_path(path: Any) -> DiTConfig:
    """X-Dub's DiT (X-Dub_model.safetensors), checked from its header only (keys and shapes, no weights read):
    → its config. A folder, a missing file, a pickle, an OmniSync checkpoint or another network: one line each."""
    from ..model.xdub_weights import xdub_config_from_shapes

    if path is None or (isinstance(path, str) and not path.strip()):
        raise OmniSyncError("no X-Dub model given; pass X-Dub_model.safetensors.")
    path = os.fspath(path)
    if os.path.isdir(path):
        raise OmniSyncError(f"the X-Dub model path {path!r} is a folder; pass the X-Dub_model.safetensors file in it.")
    check_input_file(path, "X-Dub model")
    with _open(path) as f:
        if METADATA_KEY in (f.metadata() or {}):
            raise OmniSyncError(f"{path!r} is an OmniSync checkpoint, not X-Dub's DiT; run it with the sync command.")
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    return xdub_config_from_shapes(shapes, name=repr(path))


# -- sampling ----------------------------------------------------------------------------------------------


def check_sampling_bounds(num_steps: int, shift: float, tau: float, weights: Mapping[str, float],
                          names: Optional[Mapping[str, str]] = None,
                          origins: Optional[Mapping[str, str]] = None) -> int:
    """Settings that pass their type checks but cannot give a video, refused before any compute:
    more than :data:`MAX_NUM_STEPS` steps, a guidance weight above :data:`MAX_GUIDANCE_WEIGHT`, a τ so small
    that no step of the schedule runs. → the number of steps that will run (per window or clip).

    weights: {option name: CFG scale}; names: {option name: how the caller spells it (a CLI flag)};
    origins: {option name: "user" | "checkpoint" | "default"} (``resolve_options``): a checkpoint's bad
    recommendation is named as such, with the flag that overrides it.
    """
    names, origins = names or {}, origins or {}

    def subject(field: str, value: str) -> str:
        if origins.get(field) == "checkpoint":
            return f"the checkpoint recommends {field} {value}"
        return f"{names.get(field, field)} {value}"

    def fix(field: str, bound: str) -> str:
        flag = names.get(field, field)
        return f"override it with {flag} {bound}" if origins.get(field) == "checkpoint" else f"pass {flag} {bound}"

    if num_steps > MAX_NUM_STEPS:
        raise OmniSyncError(f"{subject('num_steps', str(num_steps))}: more than {MAX_NUM_STEPS} steps (the schedule "
                            f"has {MAX_NUM_STEPS} timesteps) is not finer, only slower; "
                            f"{fix('num_steps', f'of at most {MAX_NUM_STEPS}')} (50 in the paper, 30 for X-Dub).")
    for field, weight in weights.items():
        if weight > MAX_GUIDANCE_WEIGHT:
            raise OmniSyncError(f"{subject(field, f'{weight:g}')}: a guidance weight above {MAX_GUIDANCE_WEIGHT:g} "
                                "pushes the pixels far outside [0, 1] (clipped); "
                                f"{fix(field, f'of at most {MAX_GUIDANCE_WEIGHT:g}')} (1 to 10 is the useful range).")
    steps = FlowMatchSchedule(num_steps, shift).truncate(tau).numel() - 1
    if steps < 1:
        raise OmniSyncError(f"{subject('tau', f'{tau:g}')}: no step of the {num_steps}-step schedule lies below it, so "
                            f"nothing would change; {fix('tau', f'above {SIGMA_MATCH_EPS:g}')} (0.92 in the paper, "
                            "1 = from pure noise).")
    return steps


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
