"""Video and audio in and out, and the one place frames are validated.

Layouts:
    frames:   (T, H, W, 3) float32 in [0, 1] (torch)
    waveform: (C, N) float32 in [−1, 1] (torch) at ``sample_rate`` Hz

Video goes through the ffmpeg binary that ships with ``imageio-ffmpeg`` (H.264, yuv420p); audio is
read with Python's ``wave`` module for PCM WAV and decoded by the same ffmpeg for anything else
(mp3, m4a, the audio track of an mp4). Temporary files live in a fresh temporary directory, never in
the working directory; an output file is written under a temporary name in its own folder and
renamed when complete (:func:`atomic_output`), so a failed or cancelled run leaves no file that looks
finished. Every conversion that changes data (dropping alpha, clipping audio, writing an odd size as
4:4:4) is done explicitly and returned in an info dict (``"warnings"``: one line each).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import struct
import subprocess
import tempfile
import wave
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from .errors import OmniSyncError
from .fps import exact_fps

MIN_CLIP_FRAMES = 2  # lip-sync needs motion over time: a clip (video, or speech at the video's fps) of ≥ 2 frames
MIN_VIDEO_FRAMES = MIN_CLIP_FRAMES
FFMPEG_QUOTE_LINES = 3  # ffmpeg's stderr quoted in an error: its last lines, whole, at most this many
FFMPEG_QUOTE_LINE_CHARS = 200  # and each cut to this many characters
RANGE_TOLERANCE = 1e-3  # float frames this far outside [0, 1] are clamped (and reported); beyond: error
AUDIO_CODEC = "aac"
AUDIO_BITRATE = "192k"
MAX_AUDIO_CHANNELS = 8  # a "(C, N)" waveform with more rows than this is probably (N, C)


# -- frames ----------------------------------------------------------------------------------------


def _to_tensor(x: Any, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise OmniSyncError(f"{what} must be a torch tensor or numpy array, got {type(x).__name__}.")


CHECK_BLOCK_FRAMES = 16  # validate_frames checks this many frames at a time


def validate_frames(frames: Any, min_frames: int = MIN_VIDEO_FRAMES) -> Tuple[torch.Tensor, Dict[str, Any]]:
    """Check and normalise video frames.

    Args:
        frames: (T, H, W, 3) RGB, (T, H, W, 4) RGBA, (T, H, W, 1) or (T, H, W) grayscale, as a torch
            tensor, a numpy array or a list of (H, W[, C]) frames; uint8 (0–255), uint16 (0–65535),
            or float in [0, 1].
        min_frames: fewest frames accepted (2 for lip-sync input; 1 when writing a still).

    Returns:
        (frames (T, H, W, 3) float32 in [0, 1], info) with info = {"num_frames", "size": (H, W),
        "conversions": [what was changed, in words]}.
    """
    conversions = []
    if frames is None:
        raise OmniSyncError("no frames given (None); pass a video as (T, H, W, 3) frames.")
    if isinstance(frames, (list, tuple)):
        if len(frames) == 0:
            raise OmniSyncError("got 0 frames (an empty list); pass a video clip.")
        items = [_to_tensor(f, "each frame") for f in frames]
        first = tuple(items[0].shape)
        for i, f in enumerate(items):
            if tuple(f.shape) != first:
                raise OmniSyncError(
                    f"frames differ in size: frame 0 is {first} but frame {i} is {tuple(f.shape)}; "
                    "resize all frames to one size first."
                )
            if f.dtype != items[0].dtype:
                raise OmniSyncError(f"frames differ in dtype: frame 0 is {items[0].dtype}, frame {i} is {f.dtype}.")
        x = torch.stack(items)
    else:
        x = _to_tensor(frames, "frames")

    if x.ndim == 2 or (x.ndim == 3 and x.shape[-1] in (3, 4)):
        raise OmniSyncError(
            f"got 1 frame (a single image of shape {tuple(x.shape)}); lip-sync needs a video: pass a clip of "
            f"at least {min_frames} frames as (T, H, W, 3)."
        )
    if x.ndim == 3:
        x = x[..., None]
        conversions.append("grayscale (T, H, W) replicated to RGB")
    elif x.ndim == 4 and x.shape[-1] == 1:
        conversions.append("grayscale (1 channel) replicated to RGB")
    elif x.ndim != 4:
        raise OmniSyncError(
            f"frames must be (T, H, W, 3), got {x.ndim} dimensions {tuple(x.shape)}; for a batch of clips pass "
            "one clip at a time."
        )
    T, H, W, C = x.shape
    if C == 4:
        x = x[..., :3]
        conversions.append("alpha channel dropped (RGBA → RGB)")
    elif C not in (1, 3):
        raise OmniSyncError(
            f"frames have {C} channels in the last dimension {tuple(x.shape)}; expected (T, H, W, 3) "
            "channels-last RGB (permute channels-first tensors with .permute(0, 2, 3, 1))."
        )
    if T == 0:
        raise OmniSyncError("got 0 frames; pass a video clip with frames in it.")
    if T < min_frames:
        raise OmniSyncError(
            f"got {T} frame{'s' if T != 1 else ''}; lip-sync needs a video: pass a clip of at least "
            f"{min_frames} frames, not a single image."
        )
    if H == 0 or W == 0:
        raise OmniSyncError(f"frames have zero size {H}×{W} (H×W); pass real images.")

    if x.dtype == torch.uint8:
        x = x.float() / 255
        conversions.append("uint8 scaled by 1/255")
    elif x.dtype == getattr(torch, "uint16", None):
        x = x.float() / 65535
        conversions.append("uint16 scaled by 1/65535")
    elif x.dtype == torch.bool or not x.is_floating_point():
        raise OmniSyncError(
            f"frames have dtype {x.dtype}; pass uint8 (0–255) or float in [0, 1]."
        )
    else:
        x = x.float()
        bad, lo, hi = 0, math.inf, -math.inf
        for start in range(0, T, CHECK_BLOCK_FRAMES):  # a few frames at a time: no temporary as long as the clip
            block = x[start:start + CHECK_BLOCK_FRAMES]
            finite = torch.isfinite(block)
            if not bool(finite.all()):
                bad += int((~finite).sum())
            elif not bad:
                lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
        if bad:
            raise OmniSyncError(
                f"frames contain {bad} NaN or infinite values; fix the upstream node (decode or resize) that "
                "produced them."
            )
        if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            raise OmniSyncError(
                f"float frames must be in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; for [−1, 1] use (x + 1) / 2, "
                "for 0–255 floats divide by 255."
            )
        if lo < 0 or hi > 1:
            x = x.clamp(0, 1)
            conversions.append(f"values in [{lo:.3g}, {hi:.3g}] clamped to [0, 1]")
    if x.shape[-1] == 1:
        x = x.expand(T, H, W, 3)
    return x.contiguous(), {"num_frames": T, "size": (H, W), "conversions": conversions}


# -- video -----------------------------------------------------------------------------------------


def _ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_quote(text: Any) -> str:
    """The end of ffmpeg's stderr for an error message: its last :data:`FFMPEG_QUOTE_LINES` non-empty lines,
    each from its start (cut at :data:`FFMPEG_QUOTE_LINE_CHARS`), joined with " / " to stay on one line."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()][-FFMPEG_QUOTE_LINES:]
    return " / ".join(ln if len(ln) <= FFMPEG_QUOTE_LINE_CHARS else ln[:FFMPEG_QUOTE_LINE_CHARS] + "…" for ln in lines)


@contextlib.contextmanager
def atomic_output(path: str):
    """Yield a temporary name in ``path``'s folder (same suffix); renamed to ``path`` when the block
    finishes, removed when it raises (errors, Ctrl-C, cancel): no partial file ever has the final name."""
    path = os.fspath(path)
    folder, base = os.path.split(os.path.abspath(path))
    root, ext = os.path.splitext(base)
    tmp = os.path.join(folder, f".{root}.partial-{os.getpid()}{ext}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _check_file(path: str, what: str) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise OmniSyncError(f"{what} file not found: {path!r}; check the path.")
    return path


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


def _as_waveform(waveform: Any) -> torch.Tensor:
    """(N,), (C, N) or (1, C, N) → (C, N) float32; refuses (N, C)-looking input instead of guessing."""
    w = _to_tensor(waveform, "waveform").detach().cpu()
    if w.ndim == 3 and w.shape[0] == 1:
        w = w[0]
    if w.ndim == 1:
        w = w[None]
    if w.ndim != 2:
        raise OmniSyncError(f"waveform must be (N,) or (C, N), got shape {tuple(w.shape)}.")
    if w.shape[0] > MAX_AUDIO_CHANNELS:
        raise OmniSyncError(
            f"waveform of shape {tuple(w.shape)} has {w.shape[0]} rows; pass (C, N) channels-first audio "
            "(transpose an (N, C) array)."
        )
    if w.shape[1] == 0:
        raise OmniSyncError("waveform is empty (0 samples); pass audio with samples in it.")
    if not w.is_floating_point():
        raise OmniSyncError(f"waveform must be float in [−1, 1], got dtype {w.dtype}.")
    for start in range(0, w.shape[1], WAV_BLOCK_SAMPLES):  # in blocks: no temporaries as long as the speech
        if not bool(torch.isfinite(w[:, start:start + WAV_BLOCK_SAMPLES]).all()):
            raise OmniSyncError("waveform contains NaN or infinite samples; fix the audio source.")
    return w.float()


def _run_ffmpeg(args: Sequence[str], what: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([_ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *args], capture_output=True)
    if proc.returncode != 0:
        raise OmniSyncError(f"ffmpeg failed while {what}: {ffmpeg_quote(proc.stderr)}")
    return proc


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


# -- audio -----------------------------------------------------------------------------------------


WAV_BLOCK_SAMPLES = 1 << 16  # samples converted to or from PCM at a time (small: temporaries stay well under 1 MB)


class SpeechFile:
    """Mono speech kept in a temporary float32 file instead of memory (10 minutes at 16 kHz is 38 MB), for
    streaming runs whose memory must not grow with length.

    ``shape`` (N,) and ``len``; ``speech[a:b]`` reads those samples as a float32 tensor (silence past the
    recorded end, when :meth:`with_length` padded it); :meth:`with_length` trims or pads without copying;
    ``write_wav`` and ``VideoWriter`` take it in place of a waveform. The file is removed by :meth:`close`
    (or when the last object using it is garbage-collected).
    """

    def __init__(self, path: str, recorded: int, length: Optional[int] = None, owner: Optional["SpeechFile"] = None):
        self.path, self.recorded = path, int(recorded)
        self.length = self.recorded if length is None else int(length)
        self._owner = owner  # a trimmed/padded view keeps the file's owner alive

    @classmethod
    def from_waveform(cls, wave: torch.Tensor, folder: Optional[str] = None) -> "SpeechFile":
        """(N,) float samples → a SpeechFile (written block by block)."""
        wave = torch.as_tensor(wave).reshape(-1)
        fd, path = tempfile.mkstemp(prefix="omnisync-speech-", suffix=".f32", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                for start in range(0, wave.shape[0], WAV_BLOCK_SAMPLES):
                    f.write(wave[start:start + WAV_BLOCK_SAMPLES].float().numpy().astype("<f4").tobytes())
        except OSError as exc:
            os.remove(path)
            raise OmniSyncError(f"cannot write the speech to a temporary file ({exc}); free some disk space in "
                                f"{os.path.dirname(path)!r}.") from exc
        return cls(path, wave.shape[0])

    @property
    def shape(self) -> Tuple[int]:
        return (self.length,)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key) -> torch.Tensor:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise OmniSyncError("a SpeechFile is read by contiguous slices, speech[a:b].")
        a, b, _ = key.indices(self.length)
        out = np.zeros(max(0, b - a), np.float32)
        n = max(0, min(b, self.recorded) - a)
        if n:
            with open(self.path, "rb") as f:
                f.seek(4 * a)
                out[:n] = np.fromfile(f, "<f4", count=n)
        return torch.from_numpy(out)

    def with_length(self, n: int) -> "SpeechFile":
        """The first n samples (trimmed, or padded with silence), sharing the file."""
        return SpeechFile(self.path, min(self.recorded, int(n)), int(n), owner=self._owner or self)

    def close(self) -> None:
        if self._owner is None and os.path.exists(self.path):
            os.remove(self.path)

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing to report
            pass


def write_wav(path: str, waveform: Any, sample_rate: int, bits: int = 16) -> Dict[str, Any]:
    """Write PCM WAV. waveform: (N,), (C, N) or (1, C, N) float in [−1, 1]; bits: 8, 16, 24 or 32.

    Samples outside [−1, 1] are clipped (count and a warning returned). Returns {"seconds", "clipped_samples",
    "warnings"}.
    """
    if bits not in (8, 16, 24, 32):
        raise OmniSyncError(f"WAV bits must be 8, 16, 24 or 32, got {bits!r}.")
    if not (isinstance(sample_rate, int) and sample_rate > 0):
        raise OmniSyncError(f"sample_rate must be a positive integer in Hz, got {sample_rate!r}.")
    w = waveform if isinstance(waveform, SpeechFile) else _as_waveform(waveform)  # (C, N) float32 or a file
    scale = 2.0 ** (bits - 1)
    clipped = 0
    with atomic_output(path) as part, wave.open(part, "wb") as f:
        channels, n = (1, len(w)) if isinstance(w, SpeechFile) else w.shape
        f.setnchannels(channels)
        f.setsampwidth(bits // 8)
        f.setframerate(sample_rate)
        for start in range(0, n, WAV_BLOCK_SAMPLES):  # in blocks: float64 temporaries stay small
            block = (w[start:start + WAV_BLOCK_SAMPLES][None] if isinstance(w, SpeechFile)
                     else w[:, start:start + WAV_BLOCK_SAMPLES]).double().numpy()
            clipped += int((np.abs(block) > 1).sum())
            q = np.ascontiguousarray(np.clip(np.round(block * scale), -scale, scale - 1).T)  # (n, C) interleaved
            if bits == 8:
                data = (q + 128).astype(np.uint8).tobytes()  # 8-bit WAV is unsigned
            elif bits == 16:
                data = q.astype("<i2").tobytes()
            elif bits == 24:
                data = q.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
            else:
                data = q.astype("<i4").tobytes()
            f.writeframes(data)
    warnings = []
    if clipped:
        warnings.append(f"{os.path.basename(os.fspath(path))}: {clipped} audio samples outside [−1, 1] clipped "
                        "(lower the volume to avoid it).")
    return {"seconds": n / sample_rate, "clipped_samples": clipped, "warnings": warnings}


def _pcm_to_float(raw: bytes, width: int) -> np.ndarray:
    """Interleaved PCM bytes → float32 in [−1, 1] (the scales are powers of two: exact)."""
    if width == 1:
        x = np.frombuffer(raw, np.uint8).astype(np.float32)
        x -= 128
        x *= 1 / 128
    elif width == 2:
        x = np.frombuffer(raw, "<i2").astype(np.float32)
        x *= 1 / 32768
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v) / float(1 << 23)).astype(np.float32)
    elif width == 4:
        x = (np.frombuffer(raw, "<i4").astype(np.float64) / 2.0 ** 31).astype(np.float32)
    else:
        raise wave.Error(f"unsupported sample width {width}")
    return x


def _read_pcm_wav(path: str) -> Tuple[torch.Tensor, int]:
    """(C, N) float32 read block by block into one array: no whole-file temporaries beside the result."""
    with wave.open(path, "rb") as f:
        C, width, sr, N = f.getnchannels(), f.getsampwidth(), f.getframerate(), f.getnframes()
        if width not in (1, 2, 3, 4):
            raise wave.Error(f"unsupported sample width {width}")
        out = np.empty((C, N), np.float32)
        pos = 0
        while pos < N:
            raw = f.readframes(min(WAV_BLOCK_SAMPLES, N - pos))
            n = len(raw) // (C * width)
            if n == 0:
                break
            out[:, pos:pos + n] = _pcm_to_float(raw[:n * C * width], width).reshape(n, C).T
            pos += n
    return torch.from_numpy(np.ascontiguousarray(out[:, :pos]) if pos < N else out), sr  # (C, N); a short file ends there


def _parse_float_wav(data: bytes) -> Tuple[np.ndarray, int]:
    """A float32 WAV as ffmpeg writes it to a pipe (size fields unknown): → ((C, N), sample rate)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise OmniSyncError("ffmpeg returned no WAV data")
    pos, channels, sr = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = pos + 8
        if cid == b"fmt ":
            _fmt, channels, sr = struct.unpack("<HHI", data[body:body + 8])
        elif cid == b"data":
            if channels is None:
                break
            samples = np.frombuffer(data[body:body + (len(data) - body) // 4 * 4], "<f4")
            n = samples.size // channels
            return samples[: n * channels].reshape(n, channels).T.copy(), sr
        pos = body + size + (size & 1)
    raise OmniSyncError("ffmpeg returned a WAV stream without a data chunk")


def _decode_with_ffmpeg(path: str) -> Tuple[torch.Tensor, int]:
    proc = subprocess.run(
        [_ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-i", path, "-map", "0:a:0", "-vn",
         "-c:a", "pcm_f32le", "-f", "wav", "-"],
        capture_output=True,
    )
    if proc.returncode != 0:
        full = proc.stderr.decode("utf-8", "replace")
        tail = ffmpeg_quote(full)
        if "matches no streams" in full or "does not contain any stream" in full:
            raise OmniSyncError(f"{path!r} has no audio track; pass a file with speech in it.")
        raise OmniSyncError(f"cannot decode audio from {path!r} ({tail}); pass a wav, mp3, m4a, flac or mp4 file.")
    x, sr = _parse_float_wav(proc.stdout)
    return torch.from_numpy(x), int(sr)


def read_audio(path: str) -> Tuple[torch.Tensor, int]:
    """Read audio: returns (waveform (C, N) float32 in [−1, 1], sample_rate in Hz), at the file's own rate.

    PCM WAV (8/16/24/32-bit) is read with the ``wave`` module; everything else (float WAV, mp3, m4a,
    flac, the audio track of a video) is decoded by imageio-ffmpeg's ffmpeg.
    """
    path = _check_file(path, "audio")
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError as exc:
        raise OmniSyncError(f"cannot open audio file {path!r}: {exc}") from exc
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        try:
            wave_, sr = _read_pcm_wav(path)
        except (wave.Error, EOFError, ValueError):
            wave_, sr = _decode_with_ffmpeg(path)  # float or extensible WAV
    else:
        wave_, sr = _decode_with_ffmpeg(path)
    if wave_.shape[-1] == 0:
        raise OmniSyncError(f"audio file {path!r} has 0 samples; pass a file with speech in it.")
    return wave_, sr


# -- display ---------------------------------------------------------------------------------------

LABEL_BAR_FRACTION = 0.12  # label bar height as a fraction of frame height (at least LABEL_BAR_MIN_PX)
LABEL_BAR_MIN_PX = 12


def _label_bar(labels: Sequence[str], widths: Sequence[int], height: int) -> torch.Tensor:
    """(height, sum(widths), 3) dark bar with each label at the left of its panel (text needs PIL)."""
    bar = np.full((height, sum(widths), 3), 32, np.uint8)
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:  # plain bars without text
        return torch.from_numpy(bar).float() / 255
    img = Image.fromarray(bar)
    draw = ImageDraw.Draw(img)
    try:
        font = ImageFont.load_default(size=max(8, int(height * 0.7)))
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        font = ImageFont.load_default()
    x0 = 0
    for text, w in zip(labels, widths):
        draw.text((x0 + 4, height // 2), str(text), fill=(235, 235, 235), font=font, anchor="lm")
        x0 += w
    return torch.from_numpy(np.asarray(img).copy()).float() / 255


def side_by_side(a: Any, b: Any, labels: Optional[Sequence[str]] = None) -> torch.Tensor:
    """Two clips next to each other: (T, H, Wa, 3) and (T, H, Wb, 3) → (T, H [+ bar], Wa + Wb, 3).

    Clips must have the same length and height (resize or trim first; nothing is done silently).
    labels: two strings drawn in a bar above the panels (text needs Pillow; without it, a plain bar).
    """
    a, _ = validate_frames(a, min_frames=1)
    b, _ = validate_frames(b, min_frames=1)
    if a.shape[0] != b.shape[0] or a.shape[1] != b.shape[1]:
        raise OmniSyncError(
            f"side_by_side needs clips of equal length and height, got {tuple(a.shape[:2])} and "
            f"{tuple(b.shape[:2])} as (T, H); trim or resize one first."
        )
    out = torch.cat([a, b.to(a.device)], 2)  # (T, H, Wa + Wb, 3)
    if labels is None:
        return out
    if len(labels) != 2:
        raise OmniSyncError(f"side_by_side takes two labels, got {len(labels)}.")
    height = max(LABEL_BAR_MIN_PX, int(round(a.shape[1] * LABEL_BAR_FRACTION)))
    height += height % 2  # keep yuv420p-friendly sizes even when H is
    bar = _label_bar(labels, (a.shape[2], b.shape[2]), height).to(out.device)
    return torch.cat([bar.expand(out.shape[0], -1, -1, -1), out], 1)


CONTACT_CROP_FRACTION = 0.3  # mouth crop side as a fraction of the shorter frame side
CONTACT_CELL_PX = 64         # each crop is resized to this many pixels
CONTACT_COLUMNS = 16         # frames shown, evenly spaced over the clip
CONTACT_LABEL_PX = 22        # height of the row label's text bar


def mouth_contact_sheet(rows: Sequence[Tuple[str, Any]], centres: Any, columns: int = CONTACT_COLUMNS) -> np.ndarray:
    """Mouth crops over time, one row per clip (e.g. source, output, target): (H', W', 3) uint8.

    rows: (label, frames (T, H, W, 3) float in [0, 1]) pairs of equal length and size; centres: (T, 2)
    mouth centres as frame fractions (x, y) — one crop track for every row, so rows compare like for like.
    ``columns`` frames are shown, evenly spaced; a label bar names each row on its left.
    """
    import torch.nn.functional as F

    clips = [(label, validate_frames(frames, min_frames=1)[0]) for label, frames in rows]
    T, H, W = clips[0][1].shape[:3]
    if any(tuple(c.shape[:3]) != (T, H, W) for _, c in clips):
        raise OmniSyncError("mouth_contact_sheet needs rows of equal length and size; trim the clips first.")
    centres = torch.as_tensor(centres, dtype=torch.float32)
    if tuple(centres.shape) != (T, 2):
        raise OmniSyncError(f"mouth_contact_sheet needs (T, 2) = ({T}, 2) mouth centres, got {tuple(centres.shape)}.")
    side = max(4, int(round(CONTACT_CROP_FRACTION * min(H, W))))
    picks = torch.linspace(0, T - 1, min(columns, T)).round().long()
    label_w = 80
    out_rows = []
    for label, clip in clips:
        cells = []
        for t in picks.tolist():
            cx = int(round(float(centres[t, 0]) * W - side / 2))
            cy = int(round(float(centres[t, 1]) * H - side / 2))
            x0, y0 = min(max(cx, 0), W - side), min(max(cy, 0), H - side)
            crop = clip[t, y0:y0 + side, x0:x0 + side].permute(2, 0, 1)[None]      # (1, 3, side, side)
            cells.append(F.interpolate(crop, size=(CONTACT_CELL_PX, CONTACT_CELL_PX), mode="nearest")[0])
        row = torch.cat(cells, 2).permute(1, 2, 0)                                     # (cell, n·cell, 3)
        bar = torch.full((CONTACT_CELL_PX, label_w, 3), 32 / 255)                   # (cell, label_w, 3)
        bar[:CONTACT_LABEL_PX] = _label_bar([label], [label_w], CONTACT_LABEL_PX)
        out_rows.append(torch.cat([bar, row], 1))
    sheet = torch.cat(out_rows, 0)
    return (sheet.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def write_png(path: str, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 image; the folder must exist."""
    import imageio.v3 as iio

    with atomic_output(path) as part:
        iio.imwrite(part, image, extension=".png")
