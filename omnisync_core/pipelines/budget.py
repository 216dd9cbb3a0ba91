"""Will the run fit? An estimate of peak memory and output disk size from the frame size, the clip length and
the model, checked before any compute (:func:`check_budget`): a run that cannot fit is refused with the fix
("scale to N px or use --window K") instead of swapping for an hour or dying at the last frame.

The estimate (bytes)::

    memory = runtime + weights + window frames × padded H × padded W × per_pixel_frame(model)
    disk   = output frames × H × W × OUTPUT_BYTES_PER_PIXEL × (1 + side-by-side) (+ the same in the temp folder)

``per_pixel_frame`` counts the float RGB buffers of a window (PIXEL_COPIES) and the network's activations
(ACTIVATION_COPIES of its feature maps, for the two DS-CFG passes; a frames-independent U-Net holds them for one
chunk of frames only). The constants were fitted to the peak resident memory of CLI runs of the bundled U-Net
(256², 512², 1024² × 3 frames and 512² × 12 frames: 689, 787, 1259, 1096 MB; ``benchmarks/budget_calibration.py``
prints them beside the estimate); the DiT's activation count is not measured.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch

from ..errors import OmniSyncError

GIB = 1 << 30
RUNTIME_BYTES = 620 << 20  # Python, torch, the Whisper encoder and the reader (measured: bundled model, 256² frames)
PIXEL_COPIES = 12  # float32 RGB copies of a window's frames alive at once (source, padded, decoded, composited, ...)
ACTIVATION_COPIES = {"unet": 2,  # feature maps alive at once per CFG pass, in units of all levels' maps (measured)
                     "dit": 12}  # q, k, v, attention out, the 4× MLP: not measured (no DiT run fits this CPU)
CFG_PASSES = 2  # DS-CFG runs the conditional and unconditional pass together
OUTPUT_BYTES_PER_PIXEL = 0.25  # H.264 CRF 18 of sharp footage: about 2 bits per pixel (noise can need more)
MEMORY_HEADROOM = 0.9  # refuse when the estimate exceeds this share of the memory available
MIN_SCALE_SIDE_PX = 64  # the smallest long side suggested by the fix


def _model_facts(model: Union[torch.nn.Module, Mapping[str, Any]], codec: Any,
                 dtype: Optional[torch.dtype]) -> Tuple[int, float, int, int, bool]:
    """(weight bytes, feature values alive per latent pixel, codec stride, patch stride, frames independent) of a
    loaded model and its codec, or of a
    checkpoint's metadata (``meta`` from ``read_metadata``: the model is built on the meta device, no memory)."""
    if isinstance(model, torch.nn.Module):
        net = model
    else:
        from ..model.checkpoint import ARCHITECTURES

        config_cls, model_cls = ARCHITECTURES[model.get("arch", "dit")]
        with torch.device("meta"):
            net = model_cls(config_cls.from_dict(model["model"]))
        codec = model.get("codec")
    size = torch.finfo(dtype).bits // 8 if dtype is not None and dtype.is_floating_point else None
    weights = sum(t.numel() * (size or t.element_size()) for t in list(net.parameters()) + list(net.buffers()))
    cfg = net.config
    sf = int(codec.get("spatial_factor", 8) if isinstance(codec, Mapping) else getattr(codec, "spatial_factor", 8))
    _, ph, pw = cfg.patch_size
    if hasattr(cfg, "channels"):  # U-Net: every level's feature map, each level a quarter of the one above
        per_latent_px = ACTIVATION_COPIES["unet"] * sum(c / 4 ** i for i, c in enumerate(cfg.channels))
    else:  # DiT: one token of width dim per patch
        per_latent_px = ACTIVATION_COPIES["dit"] * cfg.dim / (ph * pw)
    return weights, per_latent_px, sf, math.lcm(ph, pw), bool(getattr(net, "frames_independent", False))


def available_memory_bytes() -> Optional[int]:
    """Memory a new allocation can get: MemAvailable of /proc/meminfo, lowered to a cgroup (container) limit
    if one is set; None where neither can be read (then nothing is refused)."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        return None
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if limit != "max" and avail is not None:
            avail = min(avail, int(limit) - used)
    except (OSError, ValueError):
        pass  # no cgroup v2 limit readable: MemAvailable stands
    return avail


def estimate(model: Union[torch.nn.Module, Mapping[str, Any]], size: Sequence[int], num_frames: int,
             window: int = 0, output_frames: Optional[int] = None, outputs: int = 1,
             dtype: Optional[torch.dtype] = None, codec: Any = None) -> Dict[str, Any]:
    """The estimate alone: {"memory_bytes", "disk_bytes", "window_frames", "weights_bytes", "per_frame_bytes"}.

    size: (H, W) of the frames; window: frames per window (0 = the whole clip in one); outputs: videos written
    at the frame size (the output, plus a side-by-side counted as two)."""
    from ..sampling.sampler import CHUNK_LATENT_PIXELS

    H, W = int(size[0]), int(size[1])
    weights, per_latent_px, sf, patch, independent = _model_facts(model, codec, dtype)
    stride = sf * patch
    Hp, Wp = H + (-H % stride), W + (-W % stride)
    n = int(num_frames) if not window or window >= num_frames else int(window)
    latent_px = (Hp // sf) * (Wp // sf)
    # a frames-independent network (the U-Net) is called on CHUNK_LATENT_PIXELS at a time (at least one frame)
    act_frames = min(n, max(1, CHUNK_LATENT_PIXELS // latent_px)) if independent else n
    per_frame = 4 * 3 * PIXEL_COPIES * Hp * Wp  # the window's pixels
    activations = act_frames * 4 * CFG_PASSES * per_latent_px * latent_px
    memory = RUNTIME_BYTES + weights + n * per_frame + activations
    frames_out = int(output_frames if output_frames is not None else num_frames)
    disk = int(frames_out * H * W * OUTPUT_BYTES_PER_PIXEL * outputs)
    return {"memory_bytes": int(memory), "disk_bytes": disk, "window_frames": n, "weights_bytes": int(weights),
            "per_frame_bytes": int(per_frame + activations / n)}


def check_budget(model: Union[torch.nn.Module, Mapping[str, Any]], size: Sequence[int], num_frames: int,
                 window: int = 0, output_frames: Optional[int] = None, output_paths: Sequence[str] = (),
                 dtype: Optional[torch.dtype] = None, codec: Any = None, window_flag: str = "--window") -> Dict[str, Any]:
    """Refuse, before any compute, a run whose estimated peak memory or output size cannot fit.

    model: the loaded network (then ``codec``: its codec), or the checkpoint's metadata dict (the CLI checks
    before loading; the codec is the metadata's);
    size: (H, W) of the frames as read; num_frames: source frames; window: frames per window (0 = all);
    output_frames: frames written (default num_frames); output_paths: the video files the run writes (their
    folders' free space is checked, and the temporary folder's for the copy made before the final rename).
    Raises :class:`OmniSyncError` saying what does not fit and the fix (a smaller size, a shorter window,
    or space to free); returns the :func:`estimate` with "available_bytes" added.
    """
    paths = [os.fspath(p) for p in output_paths if p]
    est = estimate(model, size, num_frames, window, output_frames, max(1, len(paths)), dtype, codec)
    H, W = int(size[0]), int(size[1])
    avail = available_memory_bytes()
    est["available_bytes"] = avail
    if avail is not None and est["memory_bytes"] > MEMORY_HEADROOM * avail:
        room = MEMORY_HEADROOM * avail - (est["memory_bytes"] - est["window_frames"] * est["per_frame_bytes"])
        fixes = []
        n = est["window_frames"]
        if room > 0:
            scale = math.sqrt(room / (n * est["per_frame_bytes"]))
            side = int(max(H, W) * scale) // 16 * 16
            if side >= MIN_SCALE_SIDE_PX:
                fixes.append(f"scale the video to {side} px on its long side (ffmpeg -i in.mp4 -vf "
                             f"scale={'-2:' + str(side) if H >= W else str(side) + ':-2'} out.mp4)")
            fits = int(room // est["per_frame_bytes"])
            if 1 <= fits < n:
                fixes.append(f"use {window_flag} {fits}")
        fixes.append("free memory (close other programs)")
        raise OmniSyncError(
            f"this run needs about {est['memory_bytes'] / GIB:.1f} GB of memory ({W}×{H} frames, {n} per window) "
            f"but {avail / GIB:.1f} GB are available; " + ", or ".join(fixes) + ".")
    need: Dict[str, int] = {}
    for p in paths:  # the final file, in its folder, and the copy in the temporary folder before the rename
        for folder in (os.path.dirname(os.path.abspath(p)), tempfile.gettempdir()):
            need[folder] = need.get(folder, 0) + est["disk_bytes"] // len(paths)
    for folder, nbytes in need.items():
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            continue  # a folder that cannot be measured is checked when written
        if nbytes > free:
            raise OmniSyncError(
                f"the output needs about {nbytes / GIB:.2f} GB in {folder!r} (at ~{OUTPUT_BYTES_PER_PIXEL * 8:g} "
                f"bits per pixel) but {free / GIB:.2f} GB are free; free space there, write elsewhere, or scale "
                "the video down.")
    return est
