"""Video in and out through ffmpeg (H.264, yuv420p; audio muxed as AAC).

Layouts: frames (T, H, W, 3) float32 in [0, 1]; waveform (C, N) float32 in [-1, 1]. Temporary files live in a
fresh temporary directory, never in the working directory; every conversion that changes data (writing an odd
size as 4:4:4) is returned in an info dict (``"warnings"``: one line each).
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
import subprocess
import tempfile
import warnings
import weakref
from fractions import Fraction
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import OmniSyncError
from .audio import write_wav
from .ffmpeg import _ffmpeg_exe, _run_ffmpeg, ffmpeg_quote
from .files import _check_file, atomic_output
from .fps import exact_fps
from .frames import MIN_VIDEO_FRAMES, validate_frames

AUDIO_CODEC = "aac"
AUDIO_BITRATE = "192k"

# -- video -----------------------------------------------------------------------------------------

FPS_JITTER = 0.5  # a frame whose timestamp lands this far (in frames) from its slot makes the rate variable
DAMAGE_LINES = 3  # damaged frames said one line each, then one line for the rest
MIN_SAMPLE_ASPECT_DEVIATION = 0.01  # sample aspect ratios within 1% of 1:1 count as square pixels


def _ratio(value) -> Optional[Fraction]:
    """A PyAV rational (Fraction, AVRational or None; 0/1 means unset) → a positive Fraction or None."""
    if value is None or not getattr(value, "denominator", 0) or value.numerator <= 0:
        return None
    return Fraction(int(value.numerator), int(value.denominator))


def _av():
    import av

    return av


def _open_container(path: str):
    av = _av()
    try:
        return av.open(path)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise OmniSyncError(f"cannot read video {path!r}: no readable video stream ({exc}); pass an "
                            "mp4/mov/webm/avi/mkv file with a video track.") from None


def _video_stream(container, path: str, warnings: list):
    """The stream read: the default (else the first) video stream that is not a cover picture; others are said."""
    av = _av()
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        raise OmniSyncError(f"cannot read video {path!r}: it has no readable video stream (only "
                            f"{', '.join(s.type for s in container.streams) or 'nothing'}); pass an mp4/mov/webm/"
                            "avi/mkv file with a video track.")
    chosen = next((s for s in streams if s.disposition & av.stream.Disposition.default), streams[0])
    if len(streams) > 1:
        warnings.append(f"{os.path.basename(path)} has {len(streams)} video streams; only stream {chosen.index} "
                        f"({chosen.codec_context.width}×{chosen.codec_context.height}) is read, the others are "
                        "ignored (extract the one you want with ffmpeg -map 0:v:N).")
    return chosen


class VideoReader:
    """The frames of a video file on demand, as uint8, without decoding the whole clip into memory.

    Time comes from the frames' presentation timestamps: a constant-rate file is read frame for frame; a
    variable-frame-rate file is resampled to a constant rate (each output frame shows the source frame
    on screen at its time; repeated or dropped frames counted in a warning). Non-square pixels (a sample
    aspect ratio other than 1:1) are resized to square pixels and rotation metadata is applied, so
    faces look as a player shows them. ``info["warnings"]`` (also ``warnings``) says every adjustment,
    one line each: variable frame rate, non-square pixels, alpha dropped, more than 8 bits per sample,
    a second video stream ignored, a truncated file, frames that could not be decoded (those found while
    reading are appended when found).

    ``read(indices)`` returns (n, H, W, 3) uint8 for any list of frame indices. Frames are decoded in
    order; an index before the current position (a loop back to the start) reopens the file. A plan that
    walks backwards (ping-pong) keeps the decoded clip as uint8 instead (``keep_all=True``).
    Attributes: ``num_frames``, ``fps`` (exact), ``size`` (H, W) as read, ``info`` {"num_frames", "fps",
    "size", "source_frames", "source_size", "warnings"}. Fewer than ``min_frames`` frames is refused.
    One demuxing pass (no decoding) reads the timestamps first: memory does not grow with the clip.
    """

    def __init__(self, path: str, keep_all: bool = False, min_frames: int = MIN_VIDEO_FRAMES):
        self.path = _check_file(path, "video")
        self.warnings: list = []
        self._container = None
        self._probe(min_frames)
        self._last, self._pending, self._damaged = None, None, 0
        self._all = None
        self.fps = float(self.fps)  # exact (29.97 is 30000/1001 as a float); exact_fps() gives the fraction back
        self.info = {"num_frames": self.num_frames, "fps": self.fps, "size": self.size,
                     "source_frames": self._sources, "source_size": self._source_size, "warnings": self.warnings}
        if keep_all:
            self._all = self.read(range(self.num_frames))  # (T, H, W, 3) uint8
            self.close()

    # the first pass: streams, formats and timestamps
    def _probe(self, min_frames: int) -> None:
        av = _av()
        name = os.path.basename(self.path)
        with _open_container(self.path) as container:
            stream = _video_stream(container, self.path, self.warnings)
            self._stream_index = stream.index
            times, durations, broken = [], [], None
            try:
                for packet in container.demux(stream):
                    if packet.size == 0:  # the end-of-stream marker
                        continue
                    if packet.pts is not None and packet.time_base:
                        times.append(Fraction(packet.pts) * _ratio(packet.time_base))
                        durations.append(Fraction(packet.duration or 0) * _ratio(packet.time_base))
                    else:
                        times.append(None)
                        durations.append(Fraction(0))
            except av.error.FFmpegError as exc:
                broken = exc
            declared = int(stream.frames or 0)
            nominal = _ratio(stream.average_rate) or _ratio(stream.guessed_rate)
            sar = _ratio(stream.sample_aspect_ratio) or _ratio(stream.codec_context.sample_aspect_ratio)
            side_alpha = str(stream.metadata.get("alpha_mode", stream.metadata.get("ALPHA_MODE", ""))) == "1"  # VP8/9 in WebM
        first = self._first_frame(self.path, self._stream_index) if times else None
        n = len(times)
        if n == 0:
            why = f" ({broken})" if broken else ""
            raise OmniSyncError(f"video {self.path!r} has 0 frames{why}; the file is damaged or empty — pass a "
                                "video with frames in it (re-encode or re-download it).")
        if broken is not None:
            self.warnings.append(f"{name}: reading stopped after {n} frames ({broken}); the file is damaged or "
                                 "truncated: those frames are used, the rest is lost (re-download or re-encode "
                                 "it to keep it).")
        elif declared > n:
            self.warnings.append(f"{name} is truncated: its header lists {declared} frames but only {n} are in "
                                 f"the file; the {declared - n} missing at the end are lost (re-download or "
                                 "re-encode it).")
        if n < min_frames:
            raise OmniSyncError(f"video {self.path!r} has {n} frame{'s' if n != 1 else ''}; lip-sync needs a clip of "
                                f"at least {min_frames} frames: pass a video, not a single image (or repeat the image).")
        self._time_plan(times, durations, nominal)
        self._format_plan(first, sar, side_alpha)

    def _first_frame(self, path: str, index: int):
        """The first decodable frame (its format, size and rotation describe the stream), from a fresh demuxer."""
        av = _av()
        with _open_container(path) as container:
            try:
                for packet in container.demux(container.streams[index]):
                    try:
                        frames = packet.decode()
                    except av.error.FFmpegError:
                        continue  # a damaged packet: said when the frames are read
                    if frames:
                        return frames[0]
            except av.error.FFmpegError:
                pass  # the file ends in damage: no frame before it decodes (refused below)
        raise OmniSyncError(f"video {self.path!r} has no decodable frame; re-encode or re-download it.")

    def _time_plan(self, times, durations, nominal: Optional[Fraction]) -> None:
        """Output frame k → source frame (in presentation order), at a constant rate."""
        name = os.path.basename(self.path)
        n = len(times)
        known = sorted((t, i) for i, t in enumerate(times) if t is not None)
        self._sources = n
        if len(known) < n or len({t for t, _ in known}) < 2:  # no usable timestamps: one frame per slot
            if nominal is None:
                raise OmniSyncError(f"video {self.path!r} has neither frame timestamps nor a frame rate in its "
                                    "metadata; re-encode it with a constant frame rate (ffmpeg -i in.mp4 -r 25 "
                                    "out.mp4).")
            self.fps = exact_fps(nominal)
            self._order = list(range(n))
            self._map = list(range(n))
            self._pts = [None] * n
            return
        t0 = known[0][0]
        span = known[-1][0] - t0
        mean_rate = (n - 1) / span
        fps = exact_fps(nominal) if nominal is not None and abs(float(nominal) / float(mean_rate) - 1) < 0.01 \
            else exact_fps(float(mean_rate))
        slots = [round((t - t0) * fps) for t, _ in known]
        off = max(abs(float((t - t0) * fps) - s) for (t, _), s in zip(known, slots))
        self._order = [i for _, i in known]  # presentation order → demux order
        self._pts = [t for t, _ in known]
        if slots == list(range(n)) and off < FPS_JITTER:
            self.fps, self._map = fps, list(range(n))
            return
        # variable frame rate: resampled to the rate of its most common frame spacing (the median: the rate the
        # camera ran at, slower stretches repeated); each output frame k (at t0 + k/rate) shows the last source
        # frame on screen by then
        gaps = sorted(b - a for (a, _), (b, _) in zip(known, known[1:]) if b > a)
        typical = 1 / gaps[len(gaps) // 2]
        rate = exact_fps(typical)
        if rate.denominator != 1001:  # not an NTSC rate: the nearest whole rate
            rate = exact_fps(max(1, round(float(typical))))
        slots = [int(math.floor((t - t0) * rate + Fraction(1, 2))) for t, _ in known]
        end = known[-1][0] + max(durations[known[-1][1]], 1 / rate)
        total = max(slots[-1] + 1, int(math.floor((end - t0) * rate + Fraction(1, 2))))
        self._map, j = [], 0
        for k in range(total):
            while j + 1 < n and slots[j + 1] <= k:
                j += 1
            self._map.append(j)
        shown = len(set(self._map))
        self.fps = rate
        self.warnings.append(
            f"{name} has a variable frame rate (frames {float(gaps[0]) * 1000:.1f}–{float(gaps[-1]) * 1000:.1f} ms apart, {float(mean_rate):.3g} "
            f"fps on average); resampled by presentation time to a constant {float(rate):g} fps: {n} frames → "
            f"{total} ({total - shown} repeated, {n - shown} dropped), so the lips stay in time with the speech.")

    def _format_plan(self, frame, sar: Optional[Fraction], side_alpha: bool) -> None:
        name = os.path.basename(self.path)
        fmt = frame.format
        W, H = int(frame.width), int(frame.height)
        self._source_size = (H, W)
        if side_alpha or any(c.is_alpha for c in fmt.components):
            self.warnings.append(f"{name}: alpha channel dropped ({fmt.name}{' + alpha' if side_alpha else ''} → RGB): transparent areas show the "
                                 "colour stored under them; flatten onto a background first to choose it.")
        bits = max(c.bits for c in fmt.components)
        if bits > 8:
            self.warnings.append(f"{name}: {bits}-bit video ({fmt.name}) read as 8-bit RGB: finer gradations than "
                                 "1/255 are rounded (the model works on 8-bit frames).")
        self._rotation = int(round(getattr(frame, "rotation", 0) or 0)) % 360
        if self._rotation % 90:
            raise OmniSyncError(f"video {self.path!r} asks to be shown rotated by {self._rotation}°, which is not a "
                                "multiple of 90°; re-encode it upright (ffmpeg -i in.mp4 out.mp4).")
        w2, h2 = W, H
        if sar is not None and abs(float(sar) - 1) > MIN_SAMPLE_ASPECT_DEVIATION:
            if sar > 1:
                w2 = int(round(W * sar))
            else:
                h2 = int(round(H / sar))
            self.warnings.append(f"{name} has non-square pixels (sample aspect ratio {sar.numerator}:{sar.denominator}); "
                                 f"resized from {W}×{H} to {w2}×{h2} square pixels so faces are not squeezed (the "
                                 f"output is {w2}×{h2}).")
        self._scale = None if (w2, h2) == (W, H) else (w2, h2)
        if self._rotation:
            self.warnings.append(f"{name}: rotated {self._rotation}° as its metadata asks (players show it so).")
        self.size = (w2, h2) if self._rotation in (90, 270) else (h2, w2)
        self.num_frames = len(self._map)

    # the second pass: decoding
    def _open(self) -> None:
        self.close()
        self._container = _open_container(self.path)
        stream = self._container.streams[self._stream_index]
        self._frames = self._decode(self._container, stream)
        self._last, self._pending = None, None  # [index, frame, pixels] last decoded; a frame read ahead

    def _decode(self, container, stream):
        """Yields (presentation index, frame) in order; a packet that cannot be decoded is said and skipped."""
        av = _av()
        name = os.path.basename(self.path)
        index = {t: k for k, t in enumerate(self._pts) if t is not None}
        k = 0
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as exc:
                    at = f"{float(packet.pts * packet.time_base):.3f} s" if packet.pts is not None else "?"
                    self._damage(f"{name}: the frame at {at} could not be decoded ({exc}); the frame before it is "
                                 "shown in its place (re-encode or re-download the file for a clean one).")
                    continue
                for frame in frames:
                    t = (Fraction(frame.pts) * _ratio(frame.time_base)) if frame.pts is not None and frame.time_base else None
                    k = index.get(t, k)
                    if frame.is_corrupt:
                        self._damage(f"{name}: frame {k} is damaged (decoded with errors, concealed by the decoder); "
                                     "re-encode or re-download the file for a clean one.")
                    yield k, frame
                    k += 1
        except av.error.FFmpegError as exc:
            self.warnings.append(f"{name}: decoding stopped at source frame {k} ({exc}); the last frame decoded is "
                                 "shown for the rest.")

    def _damage(self, message: str) -> None:
        """Say a damaged frame; after :data:`DAMAGE_LINES` of them, one line says that more follow."""
        self._damaged += 1
        if self._damaged <= DAMAGE_LINES:
            self.warnings.append(message)
        elif self._damaged == DAMAGE_LINES + 1:
            self.warnings.append(f"{os.path.basename(self.path)}: more damaged frames (not listed one by one).")

    def _pixels(self, frame) -> torch.Tensor:
        if self._scale is not None:
            frame = frame.reformat(width=self._scale[0], height=self._scale[1], interpolation="BICUBIC")
        x = frame.to_ndarray(format="rgb24")  # (H, W, 3) uint8; alpha and bits beyond 8 dropped (said)
        if self._rotation:
            x = np.rot90(x, k=self._rotation // 90)
        return torch.from_numpy(np.ascontiguousarray(x))

    def _source(self, j: int) -> torch.Tensor:
        """Source frame j (presentation order) as (H, W, 3) uint8; a frame that could not be decoded is shown
        as the one before it (said in the warnings)."""
        if self._container is None or (self._last is not None and j < self._last[0]):
            self._open()  # first read, or back to the start: decode again from frame 0
        while self._last is None or self._last[0] < j:
            nxt = self._pending if self._pending is not None else next(self._frames, None)
            self._pending = None
            if nxt is None:  # the end: the last frame decoded stands for the rest
                break
            if nxt[0] > j and self._last is not None:  # frame j was lost: the one before it stands in
                self._pending = nxt
                break
            self._last = [nxt[0], nxt[1], None]
        if self._last is None:
            raise OmniSyncError(f"video {self.path!r} has no decodable frame; re-encode or re-download it.")
        if self._last[2] is None:
            self._last[2] = self._pixels(self._last[1])
        return self._last[2]

    def read(self, indices) -> torch.Tensor:
        """(n,) frame indices → (n, H, W, 3) uint8."""
        indices = [int(i) for i in torch.as_tensor(list(indices) if isinstance(indices, range) else indices).reshape(-1)]
        if any(not 0 <= i < self.num_frames for i in indices):
            raise OmniSyncError(f"frame indices must be in [0, {self.num_frames}); got {min(indices)}…{max(indices)}.")
        if self._all is not None:
            return self._all[indices]
        H, W = self.size
        out = torch.empty(len(indices), H, W, 3, dtype=torch.uint8)
        for n, i in enumerate(indices):
            out[n] = self._source(self._map[i])
        return out

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_video(path: str, on_warning=None) -> Tuple[torch.Tensor, float]:
    """Decode a video file: returns (frames (T, H, W, 3) float32 in [0, 1], fps) (NTSC rates as 30000/1001).

    The same reader as the streaming runs (:class:`VideoReader`): the same frame count, timing and size.
    Each adjustment it makes (variable frame rate resampled, non-square pixels, alpha, bit depth, a second
    stream, truncation) goes to ``on_warning(message)``; without one, to Python's ``warnings``.
    """
    with VideoReader(path) as reader:
        H, W = reader.size
        x = torch.empty(reader.num_frames, H, W, 3, dtype=torch.float32)
        for start in range(0, reader.num_frames, READ_BLOCK_FRAMES):
            idx = range(start, min(start + READ_BLOCK_FRAMES, reader.num_frames))
            x[start:start + len(idx)] = reader.read(idx).float() / 255
        for message in reader.warnings:
            if on_warning is not None:
                on_warning(message)
            else:
                warnings.warn(message, stacklevel=2)
        return x, reader.fps


READ_BLOCK_FRAMES = 16  # read_video converts this many frames to float at a time

def _end_encoder(proc: list, folder: str) -> None:
    """Stop a VideoWriter's ffmpeg (if still running), wait for it, then remove its temporary folder.

    A Ctrl-C (or SIGTERM turned into SystemExit) arriving during this is held until the cleanup is done and then
    raised: an interrupted cleanup would leave the folder, or a running ffmpeg, behind."""
    interrupted = None
    while True:
        try:
            p = proc[0]
            if p is not None:
                if p.poll() is None:
                    p.kill()
                p.wait()
                if p.stdin is not None and not p.stdin.closed:
                    try:
                        p.stdin.close()
                    except (BrokenPipeError, OSError):
                        pass  # the pipe of a killed encoder: nothing left to flush
            shutil.rmtree(folder, ignore_errors=True)
            break
        except (KeyboardInterrupt, SystemExit) as exc:
            interrupted = exc
    if interrupted is not None:
        raise interrupted


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
        # The encoder and its temporary folder end together, in that order, whatever ends the run (close, an
        # error, Ctrl-C, SIGTERM, the object being dropped half-built, interpreter exit): ffmpeg is stopped and
        # waited for before its folder is removed, so it never opens a file in a folder already gone.
        self._tmp = os.path.join(tempfile.gettempdir(), f"omnisync-{secrets.token_hex(6)}")
        self._proc: list = [None]
        self._end = weakref.finalize(self, _end_encoder, self._proc, self._tmp)  # before the folder exists
        try:
            os.mkdir(self._tmp, 0o700)
            self._silent = os.path.join(self._tmp, "video.mp4")
            self._log = os.path.join(self._tmp, "ffmpeg.log")
            with open(self._log, "wb") as log:  # ffmpeg's messages go to a file, quoted in errors; never to the console
                self._proc[0] = subprocess.Popen(
                    [_ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-v", "error", "-f", "rawvideo",
                     "-vcodec", "rawvideo", "-s", f"{W}x{H}", "-pix_fmt", "rgb24", "-r", str(self.rate), "-i", "-",
                     "-an", "-vcodec", "libx264", "-pix_fmt", self.pixel_format, "-crf", str(crf), self._silent],
                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log,
                    start_new_session=True)  # Ctrl-C reaches this process only: it stops ffmpeg in order
        except BaseException:
            self._end()
            raise
        self._writer = self._proc[0]

    def _encoder_failed(self, what: str) -> OmniSyncError:
        try:
            with open(self._log, "rb") as f:
                said = ffmpeg_quote(f.read())
        except OSError:
            said = ""
        return OmniSyncError(f"ffmpeg failed while {what} {self.path!r}" + (f": {said}" if said else "") +
                             "; check the free disk space of the temporary folder.")

    def write(self, frames: Any) -> None:
        """(n, H, W, 3) float in [0, 1] (rounded to 8 bits) or uint8."""
        x = torch.as_tensor(frames)
        if x.ndim != 4 or tuple(x.shape[1:]) != (*self.size, 3):
            raise OmniSyncError(f"frames must be (n, {self.size[0]}, {self.size[1]}, 3), got {tuple(x.shape)}.")
        if x.dtype != torch.uint8:
            x = (x.float().clamp(0, 1) * 255).round().to(torch.uint8)
        try:
            for frame in x.numpy():
                self._writer.stdin.write(np.ascontiguousarray(frame).tobytes())
        except (BrokenPipeError, OSError, ValueError):
            self._writer.wait()
            raise self._encoder_failed("encoding") from None
        self.num_frames += x.shape[0]

    def close(self) -> Dict[str, Any]:
        if self._writer is None:
            return self.info
        proc, self._writer = self._writer, None
        H, W = self.size
        info = {"num_frames": self.num_frames, "fps": float(self.rate), "size": (H, W),
                "pixel_format": self.pixel_format, "video_seconds": self.num_frames / float(self.rate),
                "audio_seconds": None, "audio_clipped_samples": 0, "warnings": list(self.warnings)}
        try:
            try:
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass  # ffmpeg already ended: its exit code says how
            if proc.wait() != 0:
                raise self._encoder_failed("encoding")
            result = self._silent
            if self.waveform is not None:
                wav = os.path.join(self._tmp, "audio.wav")
                wav_info = write_wav(wav, self.waveform, self.sample_rate, bits=16)
                info["audio_seconds"] = wav_info["seconds"]
                info["audio_clipped_samples"] = wav_info["clipped_samples"]
                if wav_info["clipped_samples"]:  # named by this video, not the temporary WAV
                    info["warnings"].append(f"{os.path.basename(self.path)}: {wav_info['clipped_samples']} audio "
                                            "samples outside [−1, 1] clipped (lower the volume to avoid it).")
                result = os.path.join(self._tmp, "muxed.mp4")
                _run_ffmpeg(["-i", self._silent, "-i", wav, "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy",
                             "-c:a", AUDIO_CODEC, "-b:a", AUDIO_BITRATE, "-movflags", "+faststart", result],
                            f"muxing audio into {self.path!r}")
            with atomic_output(self.path) as part:
                shutil.move(result, part)
        finally:
            self._end()
        self.info = info
        return info

    def abort(self) -> None:
        """Stop without writing anything at ``path`` (an error, Ctrl-C or cancel): ffmpeg is stopped and waited
        for, then its temporary folder removed."""
        self._writer = None
        self._end()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.close()
        else:  # nothing half-written is left at the path
            self.abort()
