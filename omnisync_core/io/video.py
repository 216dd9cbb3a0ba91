"""Video in and out through ffmpeg (H.264, yuv420p; audio muxed as AAC).

Layouts: frames (T, H, W, 3) float32 in [0, 1]; waveform (C, N) float32 in [-1, 1]. Temporary files live in a
fresh temporary directory, never in the working directory; every conversion that changes data (writing an odd
size as 4:4:4) is returned in an info dict (``"warnings"``: one line each).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import OmniSyncError
from .audio import write_wav
from .ffmpeg import _run_ffmpeg, ffmpeg_quote
from .files import _check_file, atomic_output
from .fps import exact_fps
from .frames import MIN_VIDEO_FRAMES, validate_frames

AUDIO_CODEC = "aac"
AUDIO_BITRATE = "192k"

# -- video -----------------------------------------------------------------------------------------

def read_video(path: str) -> Tuple[torch.Tensor, float]:
    """Decode a video file: returns (frames (T, H, W, 3) float32 in [0, 1], fps).

    fps comes from the file's metadata (NTSC rates as exact fractions); rotation metadata is applied
    by ffmpeg.
    """
    import imageio_ffmpeg

    path = _check_file(path, "video")
    reader = imageio_ffmpeg.read_frames(path, pix_fmt="rgb24")
    try:
        try:
            meta = next(reader)
        except (IOError, OSError, RuntimeError, StopIteration) as exc:
            raise OmniSyncError(
                f"cannot read video {path!r}: ffmpeg found no readable video stream ({ffmpeg_quote(exc)}); "
                "pass an mp4/mov/webm/avi/mkv file with a video track."
            ) from exc
        W, H = meta["size"]
        frames = []
        try:
            for raw in reader:
                frames.append(np.frombuffer(raw, dtype=np.uint8).reshape(H, W, 3))
        except (IOError, OSError, RuntimeError) as exc:
            raise OmniSyncError(f"video {path!r} is damaged or truncated ({ffmpeg_quote(exc)}); re-encode or "
                                "re-download it.") from exc
    finally:
        reader.close()
    fps = float(meta.get("fps") or 0)
    if not (fps > 0 and math.isfinite(fps)):
        raise OmniSyncError(
            f"video {path!r} has no frame rate in its metadata; re-encode it with a constant frame rate "
            "(ffmpeg -i in.mp4 -r 25 out.mp4)."
        )
    if not frames:
        raise OmniSyncError(f"video {path!r} has 0 frames; pass a video with frames in it.")
    x = torch.from_numpy(np.stack(frames)).float() / 255  # (T, H, W, 3)
    return x, float(exact_fps(fps))  # ffmpeg prints NTSC rates rounded (29.97)


class VideoReader:
    """The frames of a video file on demand, as uint8, without decoding the whole clip into memory.

    ``read(indices)`` returns (n, H, W, 3) uint8 for any list of frame indices. Frames are decoded in
    order; an index before the current position (a loop back to the start) reopens the file. A plan that
    walks backwards (ping-pong) keeps the decoded clip as uint8 instead (``keep_all=True``).
    Attributes: ``num_frames``, ``fps`` (exact), ``size`` (H, W). Fewer than ``min_frames`` frames is refused.
    """

    def __init__(self, path: str, keep_all: bool = False, min_frames: int = MIN_VIDEO_FRAMES):
        import imageio_ffmpeg

        self.path = _check_file(path, "video")
        self._reader, meta = self._open()
        W, H = meta["size"]
        self.size = (int(H), int(W))
        fps = float(meta.get("fps") or 0)
        if not (fps > 0 and math.isfinite(fps)):
            self.close()
            raise OmniSyncError(f"video {path!r} has no frame rate in its metadata; re-encode it with a constant "
                                "frame rate (ffmpeg -i in.mp4 -r 25 out.mp4).")
        self.fps = float(exact_fps(fps))
        try:
            self.num_frames = int(imageio_ffmpeg.count_frames_and_secs(self.path)[0])
        except (IOError, OSError, RuntimeError) as exc:
            self.close()
            raise OmniSyncError(f"video {path!r} is damaged or truncated ({ffmpeg_quote(exc)}); re-encode or "
                                "re-download it.") from exc
        if self.num_frames < min_frames:
            self.close()
            raise OmniSyncError(f"video {path!r} has {self.num_frames} frame{'s' if self.num_frames != 1 else ''}; "
                                f"lip-sync needs a clip of at least {min_frames} frames: pass a video, not a single "
                                "image (or repeat the image).")
        self._pos, self._last = 0, None
        self._all = None
        if keep_all:
            self._all = torch.stack([self._next() for _ in range(self.num_frames)])  # (T, H, W, 3) uint8
            self.close()

    def _open(self):
        import imageio_ffmpeg

        reader = imageio_ffmpeg.read_frames(self.path, pix_fmt="rgb24")
        try:
            meta = next(reader)
        except (IOError, OSError, RuntimeError, StopIteration) as exc:
            reader.close()
            raise OmniSyncError(
                f"cannot read video {self.path!r}: ffmpeg found no readable video stream "
                f"({ffmpeg_quote(exc)}); pass an mp4/mov/webm/avi/mkv file with a video track."
            ) from exc
        return reader, meta

    def _next(self) -> torch.Tensor:
        H, W = self.size
        try:
            raw = next(self._reader)
        except (IOError, OSError, RuntimeError, StopIteration) as exc:
            raise OmniSyncError(f"video {self.path!r} is damaged or truncated at frame {self._pos} "
                                f"({ffmpeg_quote(exc)}); re-encode or re-download it.") from exc
        self._pos += 1
        self._last = torch.from_numpy(np.frombuffer(raw, dtype=np.uint8).reshape(H, W, 3).copy())
        return self._last

    def read(self, indices) -> torch.Tensor:
        """(n,) frame indices → (n, H, W, 3) uint8."""
        indices = [int(i) for i in torch.as_tensor(indices).reshape(-1)]
        if any(not 0 <= i < self.num_frames for i in indices):
            raise OmniSyncError(f"frame indices must be in [0, {self.num_frames}); got {min(indices)}…{max(indices)}.")
        if self._all is not None:
            return self._all[indices]
        out = []
        for i in indices:
            if self._last is not None and i == self._pos - 1:
                out.append(self._last)
                continue
            if i < self._pos:  # back to the start: decode again from frame 0
                self.close()
                self._reader, _ = self._open()
                self._pos, self._last = 0, None
            while self._pos <= i:
                self._next()
            out.append(self._last)
        H, W = self.size
        return torch.stack(out) if out else torch.zeros(0, H, W, 3, dtype=torch.uint8)

    def close(self) -> None:
        if getattr(self, "_reader", None) is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

def write_video(
    path: str,
    frames: Any,
    fps: float,
    waveform: Any = None,
    sample_rate: Optional[int] = None,
    crf: int = 18,
) -> Dict[str, Any]:
    """Write frames (T, H, W, 3) in [0, 1] as an H.264 mp4 at exactly their size, with the audio muxed in as AAC.

    Even sizes are written as yuv420p (plays everywhere). yuv420p cannot hold an odd width or height, so
    an odd size is written as yuv444p (H.264 High 4:4:4) at the exact size instead of being padded,
    and said in ``info["warnings"]``: browsers and QuickTime play only 4:2:0. Audio is written as it is,
    not trimmed to the video (durations reported). The file appears under ``path`` only when complete.
    waveform: (N,), (C, N) or (1, C, N) float in [−1, 1]; sample_rate in Hz.
    Returns info: {"num_frames", "fps", "size", "pixel_format", "video_seconds", "audio_seconds",
    "audio_clipped_samples", "warnings"}.
    """
    x, _ = validate_frames(frames, min_frames=1)
    with VideoWriter(path, x.shape[1:3], fps, waveform, sample_rate, crf) as writer:
        writer.write(x)
    return writer.info


class VideoWriter:
    """An H.264 mp4 written frame batch by frame batch at exactly the frames' size; the audio is muxed in at
    :meth:`close`, and the file appears under ``path`` only then (a temporary name in the same folder is renamed
    when complete; an error, Ctrl-C or cancel inside the ``with`` block leaves nothing at ``path``).

    size: (H, W) of every frame. Even sizes are written as yuv420p (plays everywhere); yuv420p cannot hold an
    odd width or height, so an odd size is written as yuv444p (H.264 High 4:4:4) at the exact size, and said in
    ``info["warnings"]`` (and ``self.warnings`` from the start): browsers and QuickTime play only 4:2:0.
    ``write`` takes (n, H, W, 3) float in [0, 1] or uint8. Audio (``waveform`` (N,), (C, N) or (1, C, N) float in
    [−1, 1] at ``sample_rate`` Hz) is written as it is, not trimmed to the video. ``info`` after close:
    {"num_frames", "fps", "size", "pixel_format", "video_seconds", "audio_seconds", "audio_clipped_samples",
    "warnings"}.
    """

    def __init__(self, path: str, size: Sequence[int], fps: float, waveform: Any = None,
                 sample_rate: Optional[int] = None, crf: int = 18):
        import imageio_ffmpeg

        self.rate = exact_fps(fps)
        if not isinstance(crf, int) or not 0 <= crf <= 51:
            raise OmniSyncError(f"crf must be an integer in 0–51 (lower = better), got {crf!r}.")
        if waveform is not None and not (isinstance(sample_rate, int) and sample_rate > 0):
            raise OmniSyncError(f"audio given without a valid sample_rate (got {sample_rate!r}); pass it in Hz.")
        self.path = os.fspath(path)
        out_dir = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(out_dir):
            raise OmniSyncError(f"output folder {out_dir!r} does not exist; create it first.")
        H, W = (int(v) for v in size)
        self.size = (H, W)
        self.pixel_format = "yuv420p" if H % 2 == 0 and W % 2 == 0 else "yuv444p"
        self.warnings = []
        if self.pixel_format == "yuv444p":
            self.warnings.append(
                f"{os.path.basename(self.path)}: {W}×{H} is odd, which H.264 4:2:0 cannot hold; written at that exact "
                "size as 4:4:4 (yuv444p), which browsers and QuickTime do not play: crop or resize to even sizes "
                "for those.")
        self.waveform, self.sample_rate = waveform, sample_rate
        self.num_frames = 0
        self.info: Dict[str, Any] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="omnisync-")
        self._silent = os.path.join(self._tmp.name, "video.mp4")
        self._writer = imageio_ffmpeg.write_frames(
            self._silent, (W, H), fps=self.rate, codec="libx264",
            pix_fmt_in="rgb24", pix_fmt_out=self.pixel_format, quality=None, macro_block_size=1,
            ffmpeg_log_level="error", output_params=["-crf", str(crf)],
        )
        self._writer.send(None)

    def write(self, frames: Any) -> None:
        """(n, H, W, 3) float in [0, 1] (rounded to 8 bits) or uint8."""
        x = torch.as_tensor(frames)
        if x.ndim != 4 or tuple(x.shape[1:]) != (*self.size, 3):
            raise OmniSyncError(f"frames must be (n, {self.size[0]}, {self.size[1]}, 3), got {tuple(x.shape)}.")
        if x.dtype != torch.uint8:
            x = (x.float().clamp(0, 1) * 255).round().to(torch.uint8)
        for frame in x.numpy():
            self._writer.send(np.ascontiguousarray(frame))
        self.num_frames += x.shape[0]

    def close(self) -> Dict[str, Any]:
        if self._writer is None:
            return self.info
        self._writer.close()
        self._writer = None
        H, W = self.size
        info = {"num_frames": self.num_frames, "fps": float(self.rate), "size": (H, W),
                "pixel_format": self.pixel_format, "video_seconds": self.num_frames / float(self.rate),
                "audio_seconds": None, "audio_clipped_samples": 0, "warnings": list(self.warnings)}
        try:
            result = self._silent
            if self.waveform is not None:
                wav = os.path.join(self._tmp.name, "audio.wav")
                wav_info = write_wav(wav, self.waveform, self.sample_rate, bits=16)
                info["audio_seconds"] = wav_info["seconds"]
                info["audio_clipped_samples"] = wav_info["clipped_samples"]
                if wav_info["clipped_samples"]:  # named by this video, not the temporary WAV
                    info["warnings"].append(f"{os.path.basename(self.path)}: {wav_info['clipped_samples']} audio "
                                            "samples outside [−1, 1] clipped (lower the volume to avoid it).")
                result = os.path.join(self._tmp.name, "muxed.mp4")
                _run_ffmpeg(["-i", self._silent, "-i", wav, "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy",
                             "-c:a", AUDIO_CODEC, "-b:a", AUDIO_BITRATE, "-movflags", "+faststart", result],
                            f"muxing audio into {self.path!r}")
            with atomic_output(self.path) as part:
                shutil.move(result, part)
        finally:
            self._tmp.cleanup()
        self.info = info
        return info

    def abort(self) -> None:
        """Stop without writing anything at ``path`` (an error, Ctrl-C or cancel)."""
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                self._writer = None
                self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.close()
        else:  # nothing half-written is left at the path
            self.abort()
