"""Audio in and out: PCM WAV through Python's ``wave`` module, anything else (mp3, m4a, the audio track of an
mp4) decoded by ffmpeg; :class:`SpeechFile` keeps long 16 kHz speech on disk.

Layout: waveform (C, N) float32 in [-1, 1] at ``sample_rate`` Hz.
"""

from __future__ import annotations

import os
import struct
import subprocess
import tempfile
import wave
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from ..errors import OmniSyncError
from .ffmpeg import _ffmpeg_exe, ffmpeg_quote
from .files import _check_file, atomic_output
from .frames import _to_tensor

MAX_AUDIO_CHANNELS = 8  # a "(C, N)" waveform with more rows than this is probably (N, C)
FILE_SAMPLE_RATE_RANGE_HZ = (1, 768_000)  # a file's sample rate outside this is a damaged header (low rates: checks)

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
    flac, the audio track of a video) is decoded by imageio-ffmpeg's ffmpeg. A sample rate outside
    :data:`FILE_SAMPLE_RATE_RANGE_HZ` (a damaged header: 0 Hz, 4 GHz) is refused.
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
    lo, hi = FILE_SAMPLE_RATE_RANGE_HZ
    if not lo <= sr <= hi:
        raise OmniSyncError(f"audio file {path!r} says its sample rate is {sr} Hz, outside the {lo} Hz – {hi // 1000} kHz "
                            "of real audio: its header is damaged. Re-export the audio from its source.")
    if wave_.shape[-1] == 0:
        raise OmniSyncError(f"audio file {path!r} has 0 samples; pass a file with speech in it.")
    return wave_, sr
