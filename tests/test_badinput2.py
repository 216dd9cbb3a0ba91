"""The bad-input corpus, round two (issue 24): inputs nobody had tried, by class.

Each case asserts the same rule as ``test_badinput.py``: no traceback, nothing lost (input files unchanged,
no existing output replaced) and nothing silent (each adjustment's warning line is there, and a clean input
gets none). Classes: the one video reader (time from timestamps, pixels, streams, damage), audio headers and
DC, weights that cannot work, the memory and disk budget, the video writer's end (errors, Ctrl-C, a dropped
writer) and a few real processes where only a process shows it (exit codes, signals, stderr).
The media are generated once per module with the project's writers and imageio-ffmpeg's ffmpeg.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from tiny import make_frames, make_model_checkpoint, make_speech_like, make_whisper_folder, make_xdub_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ffmpeg(*args):
    from omnisync_core.io.ffmpeg import _ffmpeg_exe

    subprocess.run([_ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-v", "error", *args], check=True)


def _digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _one_line(exc):
    msg = str(exc)
    assert "\n" not in msg and "Traceback" not in msg, msg
    return msg


SRC = "testsrc=size=64x48:rate={rate}"


# -- the media, made once ---------------------------------------------------------------------------------------

# (name, builder) — each builder gets the folder and writes the file; the expected reading is in VIDEO_CASES
def _lavfi(name, rate="25", t="1", vf=None, extra=(), src=SRC):
    def build(d):
        args = ["-f", "lavfi", "-i", src.format(rate=rate), "-t", t]
        if vf:
            args += ["-vf", vf]
        _ffmpeg(*args, *extra, os.path.join(d, name))
    return build


def _copy_with(name, base, *extra, pre=()):
    def build(d):
        _ffmpeg(*pre, "-i", os.path.join(d, base), "-c", "copy", *extra, os.path.join(d, name))
    return build


def _damaged(name, base, cut=None, wipe_jpeg=None):
    """A copy of ``base`` cut to a share of its bytes, or with one JPEG picture (SOI to EOI) zeroed."""
    def build(d):
        with open(os.path.join(d, base), "rb") as f:
            blob = bytearray(f.read())
        if cut is not None:
            blob = blob[:int(len(blob) * cut)]
        if wipe_jpeg is not None:
            start = -1
            for _ in range(wipe_jpeg + 1):
                start = blob.index(b"\xff\xd8", start + 1)
            end = blob.index(b"\xff\xd9", start) + 2
            blob[start:end] = bytes(end - start)
        with open(os.path.join(d, name), "wb") as f:
            f.write(bytes(blob))
    return build


BIG = "testsrc=size=160x120:rate={rate}"
MEDIA = [
    ("cfr25.mp4", _lavfi("cfr25.mp4", extra=["-pix_fmt", "yuv420p"])),
    ("ntsc.mp4", _lavfi("ntsc.mp4", rate="30000/1001", extra=["-pix_fmt", "yuv420p"])),
    ("ntsc.mkv", _lavfi("ntsc.mkv", rate="30000/1001", extra=["-pix_fmt", "yuv420p"])),
    ("film.mp4", _lavfi("film.mp4", rate="24000/1001", extra=["-pix_fmt", "yuv420p"])),
    ("fps1000.mp4", _lavfi("fps1000.mp4", rate="1000", t="0.05", extra=["-pix_fmt", "yuv420p"])),
    ("fps240.mp4", _lavfi("fps240.mp4", rate="240", t="0.1", extra=["-pix_fmt", "yuv420p"])),
    ("fps12_5.mp4", _lavfi("fps12_5.mp4", rate="25/2", t="2", extra=["-pix_fmt", "yuv420p"])),
    ("vp9.webm", _lavfi("vp9.webm", extra=["-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p"])),
    ("mpeg4.avi", _lavfi("mpeg4.avi", extra=["-c:v", "mpeg4"])),
    ("h264.mov", _lavfi("h264.mov", extra=["-pix_fmt", "yuv420p"])),
    ("mjpeg.avi", _lavfi("mjpeg.avi", extra=["-c:v", "mjpeg", "-q:v", "3"], src=BIG)),
    ("yuv444.mp4", _lavfi("yuv444.mp4", extra=["-pix_fmt", "yuv444p"])),
    ("gray.mkv", _lavfi("gray.mkv", extra=["-c:v", "ffv1", "-pix_fmt", "gray"])),
    ("odd.mp4", _lavfi("odd.mp4", extra=["-pix_fmt", "yuv444p"], src="testsrc=size=63x47:rate={rate}")),
    ("anim.gif", _lavfi("anim.gif", rate="20", t="0.5")),
    ("jitter.mkv", _lavfi("jitter.mkv", vf="setpts='(N/25+0.012*mod(N,3))/TB'", extra=["-fps_mode", "passthrough"])),
    ("vfr_slow_tail.mp4", _lavfi("vfr_slow_tail.mp4", t="2", vf="setpts='if(lt(N,25),N/25,(25+(N-25)*2)/25)/TB'",
                                 extra=["-fps_mode", "passthrough", "-pix_fmt", "yuv420p"])),
    ("vfr_gap.mp4", _lavfi("vfr_gap.mp4", vf="select='not(between(n,10,19))'",
                           extra=["-fps_mode", "passthrough", "-pix_fmt", "yuv420p"])),
    ("vfr_burst.mkv", _lavfi("vfr_burst.mkv", rate="50", vf="select='lt(n,10)+not(mod(n,2))'",
                             extra=["-fps_mode", "passthrough"])),
    ("sar43.mp4", _lavfi("sar43.mp4", vf="setsar=4/3", extra=["-pix_fmt", "yuv420p"])),
    ("sar34.mp4", _lavfi("sar34.mp4", vf="setsar=3/4", extra=["-pix_fmt", "yuv420p"])),
    ("sar11.mp4", _lavfi("sar11.mp4", vf="setsar=1", extra=["-pix_fmt", "yuv420p"])),
    ("sar_dv.mp4", _lavfi("sar_dv.mp4", vf="setsar=32/27", extra=["-pix_fmt", "yuv420p"],
                          src="testsrc=size=72x48:rate={rate}")),
    ("rot90.mp4", _copy_with("rot90.mp4", "cfr25.mp4", pre=["-display_rotation", "90"])),
    ("rot180.mp4", _copy_with("rot180.mp4", "cfr25.mp4", pre=["-display_rotation", "180"])),
    ("rot270.mp4", _copy_with("rot270.mp4", "cfr25.mp4", pre=["-display_rotation", "270"])),
    ("alpha_png.mov", _lavfi("alpha_png.mov", extra=["-pix_fmt", "rgba", "-c:v", "png"])),
    ("alpha_vp9.webm", _lavfi("alpha_vp9.webm", extra=["-pix_fmt", "yuva420p", "-c:v", "libvpx-vp9"])),
    ("alpha_prores.mov", _lavfi("alpha_prores.mov", extra=["-pix_fmt", "yuva444p10le", "-c:v", "prores_ks"])),
    ("ten_bit.mp4", _lavfi("ten_bit.mp4", extra=["-pix_fmt", "yuv420p10le", "-c:v", "libx264"])),
    ("ten_bit.mkv", _lavfi("ten_bit.mkv", extra=["-pix_fmt", "yuv422p10le", "-c:v", "ffv1"])),
    ("two_streams.mp4", lambda d: _ffmpeg("-f", "lavfi", "-i", SRC.format(rate=25), "-f", "lavfi", "-i",
                                          "testsrc2=size=32x32:rate=25", "-t", "1", "-map", "0", "-map", "1",
                                          "-pix_fmt", "yuv420p", os.path.join(d, "two_streams.mp4"))),
    ("audio_first.mp4", lambda d: _ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:duration=1", "-f", "lavfi", "-i",
                                          SRC.format(rate=25), "-t", "1", "-map", "0", "-map", "1", "-pix_fmt",
                                          "yuv420p", os.path.join(d, "audio_first.mp4"))),
    ("faststart.mp4", _lavfi("faststart.mp4", t="2", extra=["-pix_fmt", "yuv420p", "-movflags", "+faststart",
                                                            "-g", "5"], src=BIG)),
    ("cut_at_70.mp4", _damaged("cut_at_70.mp4", "faststart.mp4", cut=0.7)),
    ("mjpeg_damaged.avi", _damaged("mjpeg_damaged.avi", "mjpeg.avi", wipe_jpeg=12)),
    ("still.png", _lavfi("still.png", t="0.04", extra=["-frames:v", "1"])),
    ("tone.m4a", lambda d: _ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:duration=1", "-c:a", "aac",
                                   os.path.join(d, "tone.m4a"))),
]

NTSC = 30000 / 1001
# (file, frames, fps, (H, W), warning patterns: each must match one line; a clean file must have none)
VIDEO_CASES = [
    ("cfr25.mp4", 25, 25, (48, 64), []),
    ("ntsc.mp4", 30, NTSC, (48, 64), []),
    ("ntsc.mkv", 30, NTSC, (48, 64), []),
    ("film.mp4", 24, 24000 / 1001, (48, 64), []),
    ("fps1000.mp4", 50, 1000, (48, 64), []),
    ("fps240.mp4", 24, 240, (48, 64), []),
    ("fps12_5.mp4", 25, 12.5, (48, 64), []),
    ("vp9.webm", 25, 25, (48, 64), []),
    ("mpeg4.avi", 25, 25, (48, 64), []),
    ("h264.mov", 25, 25, (48, 64), []),
    ("mjpeg.avi", 25, 25, (120, 160), []),
    ("yuv444.mp4", 25, 25, (48, 64), []),
    ("gray.mkv", 25, 25, (48, 64), []),
    ("odd.mp4", 25, 25, (47, 63), []),
    ("anim.gif", 10, 20, (48, 64), [r"alpha channel dropped \(bgra"]),  # GIF decodes with a transparency plane
    ("jitter.mkv", 25, 25, (48, 64), []),  # timestamps off by < half a frame: still constant rate
    ("vfr_slow_tail.mp4", None, 25, (48, 64), [r"variable frame rate.*resampled by presentation time to a constant 25 fps"]),
    ("vfr_gap.mp4", 25, 25, (48, 64), [r"variable frame rate.*15 frames → 25 \(10 repeated, 0 dropped\)"]),
    ("vfr_burst.mkv", None, None, (48, 64), [r"variable frame rate"]),
    ("sar43.mp4", 25, 25, (48, 85), [r"non-square pixels \(sample aspect ratio 4:3\); resized from 64×48 to 85×48"]),
    ("sar34.mp4", 25, 25, (64, 64), [r"non-square pixels \(sample aspect ratio 3:4\); resized from 64×48 to 64×64"]),
    ("sar11.mp4", 25, 25, (48, 64), []),
    ("sar_dv.mp4", 25, 25, (48, 85), [r"sample aspect ratio 32:27"]),
    ("rot90.mp4", 25, 25, (64, 48), [r"rotated 90°"]),
    ("rot180.mp4", 25, 25, (48, 64), [r"rotated 180°"]),
    ("rot270.mp4", 25, 25, (64, 48), [r"rotated 270°"]),
    ("alpha_png.mov", 25, 25, (48, 64), [r"alpha channel dropped \(rgba"]),
    ("alpha_vp9.webm", 25, 25, (48, 64), [r"alpha channel dropped \(yuv420p \+ alpha"]),
    ("alpha_prores.mov", 25, 25, (48, 64), [r"alpha channel dropped", r"1\d-bit video .* read as 8-bit"]),
    ("ten_bit.mp4", 25, 25, (48, 64), [r"10-bit video \(yuv420p10le\) read as 8-bit"]),
    ("ten_bit.mkv", 25, 25, (48, 64), [r"10-bit video \(yuv422p10le\)"]),
    ("two_streams.mp4", 25, 25, (48, 64), [r"has 2 video streams; only stream 0 \(64×48\) is read"]),
    ("audio_first.mp4", 25, 25, (48, 64), []),
    ("faststart.mp4", 50, 25, (120, 160), []),
    ("cut_at_70.mp4", None, 25, (120, 160), [r"truncated|reading stopped"]),
    ("mjpeg_damaged.avi", 25, 25, (120, 160), [r"could not be decoded.*the frame before it is shown"]),
]

VIDEO_ERRORS = [  # (file or literal content, pattern of the one-line error)
    ("still.png", r"has 1 frame; lip-sync needs a clip of at least 2 frames"),
    ("tone.m4a", r"no readable video stream \(only audio\)"),
    (b"", r"cannot read video|0 frames"),
    (b"not a video at all\n" * 50, r"cannot read video"),
    (b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64, r"cannot read video|0 frames|no decodable"),
    (b"RIFF\x24\x00\x00\x00AVI LIST" + b"\x00" * 40, r"cannot read video|0 frames|no readable"),
]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("media2"))
    for _, build in MEDIA:
        build(d)
    return d


@pytest.fixture(scope="module")
def digests(media):
    return {name: _digest(os.path.join(media, name)) for name, _ in MEDIA}


# -- one reader: time from timestamps, pixels, streams, damage --------------------------------------------------


def _matches_all(patterns, lines):
    for pat in patterns:
        assert any(re.search(pat, ln) for ln in lines), (pat, lines)
    assert len(lines) >= len(patterns)
    if not patterns:
        assert lines == [], lines  # nothing said about a clean file


@pytest.mark.parametrize("name,frames,fps,size,patterns", VIDEO_CASES, ids=[c[0] for c in VIDEO_CASES])
def test_reader_times_sizes_and_reports(media, digests, name, frames, fps, size, patterns):
    from omnisync_core.io.video import VideoReader

    path = os.path.join(media, name)
    with VideoReader(path) as r:
        x = r.read(range(r.num_frames))
        if frames is not None:
            assert r.num_frames == frames
        if fps is not None:
            assert r.fps == pytest.approx(fps, rel=1e-9)
        assert r.size == size and tuple(x.shape) == (r.num_frames, *size, 3) and x.dtype == torch.uint8
        assert r.info["warnings"] is r.warnings and r.info["num_frames"] == r.num_frames
        _matches_all(patterns, r.warnings)
        assert all("\n" not in ln for ln in r.warnings)
    assert _digest(path) == digests[name]


@pytest.mark.parametrize("name", [c[0] for c in VIDEO_CASES])
def test_read_video_is_the_same_reader(media, name):
    """The in-memory read (X-Dub CLI, Python API) and the streaming reader (CLI, sync_video_file): the same frames,
    rate and warnings."""
    from omnisync_core.io.video import VideoReader, read_video

    path = os.path.join(media, name)
    said = []
    frames, fps = read_video(path, on_warning=said.append)
    with VideoReader(path) as r:
        assert frames.shape[0] == r.num_frames and fps == r.fps and tuple(frames.shape[1:3]) == r.size
        last = r.read([r.num_frames - 1])[0]
        assert torch.equal((frames[-1] * 255).round().to(torch.uint8), last)
        assert said == r.warnings


@pytest.mark.parametrize("case,pattern", VIDEO_ERRORS, ids=[f"error-{i}" for i in range(len(VIDEO_ERRORS))])
def test_reader_refuses_with_one_line(media, tmp_path, case, pattern):
    from omnisync_core.errors import OmniSyncError
    from omnisync_core.io.video import VideoReader, read_video

    if isinstance(case, bytes):
        path = str(tmp_path / "bad.mp4")
        with open(path, "wb") as f:
            f.write(case)
    else:
        path = os.path.join(media, case)
    before = _digest(path)
    for read in (VideoReader, read_video):
        with pytest.raises(OmniSyncError) as err:
            read(path)
        assert re.search(pattern, _one_line(err.value)), str(err.value)
    assert _digest(path) == before


def test_read_video_without_a_callback_warns_through_python(media):
    from omnisync_core.io.video import read_video

    with pytest.warns(UserWarning, match="variable frame rate"):
        read_video(os.path.join(media, "vfr_gap.mp4"))


def test_vfr_resampling_keeps_each_frame_at_its_time(media):
    """vfr_gap.mp4 lacks source frames 10–19 (their time kept): output frames 10–19 repeat frame 9, 20+ are 20+."""
    from omnisync_core.io.video import VideoReader

    with VideoReader(os.path.join(media, "cfr25.mp4")) as full, VideoReader(os.path.join(media, "vfr_gap.mp4")) as gap:
        a, b = full.read(range(25)).float(), gap.read(range(25)).float()
    err = (a - b).abs().mean(dim=(1, 2, 3))  # (25,) per-frame difference (codec noise only where they match)
    assert (err[:10] < 4).all() and (err[20:] < 4).all()
    same_as_9 = (b[10:20] - a[9]).abs().mean(dim=(1, 2, 3))
    assert (same_as_9 < 4).all()


def test_reader_memory_does_not_hold_the_clip(media):
    """The reader keeps timestamps, not frames: reading one frame of a clip leaves no decoded clip behind."""
    from omnisync_core.io.video import VideoReader

    with VideoReader(os.path.join(media, "faststart.mp4")) as r:
        r.read([r.num_frames - 1])
        assert r._all is None and len(r._map) == r.num_frames
        assert not any(isinstance(v, torch.Tensor) and v.numel() > 160 * 120 * 3 for v in vars(r).values())


# -- audio: headers that lie, DC that is silence ---------------------------------------------------------------


def _wav_with_rate(path, rate, samples):
    from omnisync_core.io.audio import write_wav

    write_wav(path, samples, 16000)
    with open(path, "r+b") as f:
        f.seek(24)
        f.write(struct.pack("<II", rate & 0xFFFFFFFF, (rate * 2) & 0xFFFFFFFF))


@pytest.mark.parametrize("rate", [0, 4_000_000_000, 2 ** 32 - 1, 800_000, 1_000_000])
def test_wav_sample_rate_from_a_damaged_header_is_refused(tmp_path, rate):
    from omnisync_core.errors import OmniSyncError
    from omnisync_core.io.audio import read_audio

    path = str(tmp_path / "a.wav")
    _wav_with_rate(path, rate, make_speech_like(0.3))
    before = _digest(path)
    with pytest.raises(OmniSyncError) as err:
        read_audio(path)
    assert re.search(rf"sample rate is {rate & 0xFFFFFFFF} Hz.*header is damaged.*Re-export", _one_line(err.value))
    assert _digest(path) == before


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 192_000, 768_000])
def test_wav_real_sample_rates_are_read(tmp_path, rate):
    from omnisync_core.io.audio import read_audio

    path = str(tmp_path / "a.wav")
    _wav_with_rate(path, rate, make_speech_like(0.3))
    wave, sr = read_audio(path)
    assert sr == rate and wave.shape[-1] == 4800


DC_CASES = [  # (id, samples at 16 kHz, refused?)
    ("dc-0.3", lambda n: np.full(n, 0.3, np.float32), True),
    ("dc-minus-0.5", lambda n: np.full(n, -0.5, np.float32), True),
    ("dc-full-scale", lambda n: np.full(n, 0.999, np.float32), True),
    ("dc-with-hiss", lambda n: 0.2 + 1e-6 * np.random.default_rng(0).standard_normal(n).astype(np.float32), True),
    ("dc-tiny", lambda n: np.full(n, 2e-4, np.float32), True),
    ("zero", lambda n: np.zeros(n, np.float32), True),
    ("speech-on-dc", lambda n: 0.3 + 0.5 * make_speech_like(n / 16000), False),
    ("speech-below-dc", lambda n: -0.2 + 0.5 * make_speech_like(n / 16000), False),
    ("speech", lambda n: make_speech_like(n / 16000), False),
]


@pytest.mark.parametrize("case,make,refused", DC_CASES, ids=[c[0] for c in DC_CASES])
def test_dc_only_audio_is_silence(case, make, refused):
    """Silence is refused; a constant level (DC) is silence too, said as such; speech on a DC offset passes."""
    from omnisync_core.audio.features import validate_audio
    from omnisync_core.errors import OmniSyncError

    wave = torch.from_numpy(np.asarray(make(8000), np.float32))
    if refused:
        with pytest.raises(OmniSyncError) as err:
            validate_audio(wave)
        msg = _one_line(err.value)
        assert "silent" in msg and "speech" in msg
        if case.startswith("dc"):
            assert "DC offset" in msg
    else:
        validate_audio(wave)


@pytest.mark.parametrize("bits,level", [(8, 200), (16, 1000), (24, -300000)])
def test_dc_only_pcm_file_refused_like_silence(tmp_path, bits, level):
    """A PCM WAV holding one constant sample value: read, then refused as silence (never sent to Whisper)."""
    from omnisync_core.audio.features import to_mono_16k, validate_audio
    from omnisync_core.errors import OmniSyncError
    from omnisync_core.io.audio import read_audio, write_wav

    path = str(tmp_path / "dc.wav")
    scale = 2.0 ** (bits - 1)
    write_wav(path, np.full(8000, (level - (128 if bits == 8 else 0)) / scale, np.float32), 16000, bits=bits)
    wave, sr = read_audio(path)
    with pytest.raises(OmniSyncError, match="DC offset"):
        validate_audio(to_mono_16k(wave, sr))


# -- weights that cannot work: refused at load --------------------------------------------------------------------


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("ckpt2"))
    return {"model": make_model_checkpoint(d), "xdub": make_xdub_checkpoint(d), "dir": d}


def _rewrite(src, dst, tensors=None, dtype_labels=None):
    """Copy a safetensors file with its tensors edited (``tensors(dict) -> dict``) and/or header dtype labels
    replaced (``{key: "I32"}``: the bytes stay, only the label changes)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(src, framework="pt") as f:
        meta = f.metadata()
        stored = {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors(stored) if tensors else stored, dst, metadata=meta)
    if dtype_labels:
        with open(dst, "rb") as f:
            blob = f.read()
        n = struct.unpack("<Q", blob[:8])[0]
        header = json.loads(blob[8:8 + n])
        for k, label in dtype_labels.items():
            header[k]["dtype"] = label
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        with open(dst, "wb") as f:
            f.write(struct.pack("<Q", len(raw)) + raw + blob[8 + n:])
    return dst


def _first(t, pred):
    return next(k for k in t if pred(k, t[k]))


def _poison(value, where="matrix"):
    def edit(t):
        t = {k: v.clone() for k, v in t.items()}
        key = _first(t, lambda k, v: v.is_floating_point() and (v.ndim >= 2 if where == "matrix" else v.ndim == 1))
        t[key].view(-1)[t[key].numel() // 2] = value
        return t
    return edit


def _zero_matrices(t):
    return {k: (torch.zeros_like(v) if v.ndim >= 2 else v) for k, v in t.items()}


def _zero_all(t):
    return {k: torch.zeros_like(v) for k, v in t.items()}


def _scale_one(factor):
    def edit(t):
        t = {k: v.clone() for k, v in t.items()}
        key = _first(t, lambda k, v: v.is_floating_point() and v.ndim >= 2)
        t[key].view(-1)[0] = factor
        return t
    return edit


def _as_dtype(dtype):
    return lambda t: {k: v.to(dtype) for k, v in t.items()}


def _label_first_matrix(label):
    return ("labels", label)


WEIGHT_CASES = [  # (id, which checkpoint, edit or ("labels", label), load dtype, pattern)
    ("nan-in-matrix", "model", _poison(float("nan")), None, r"holds 1 NaN or infinite values.*earlier or re-downloaded"),
    ("inf-in-matrix", "model", _poison(float("inf")), None, r"NaN or infinite"),
    ("minus-inf-in-matrix", "model", _poison(float("-inf")), None, r"NaN or infinite"),
    ("nan-in-bias", "model", _poison(float("nan"), "bias"), None, r"NaN or infinite"),
    ("nan-in-fp16-file", "model", lambda t: _poison(float("nan"))(_as_dtype(torch.float16)(t)), None, r"NaN or infinite"),
    ("inf-in-bf16-file", "model", lambda t: _poison(float("inf"))(_as_dtype(torch.bfloat16)(t)), None, r"NaN or infinite"),
    ("all-matrices-zero", "model", _zero_matrices, None, r"all \d+ weight matrices are zero.*trained checkpoint"),
    ("everything-zero", "model", _zero_all, None, r"weight matrices are zero"),
    ("zero-bf16", "model", lambda t: _zero_all(_as_dtype(torch.bfloat16)(t)), torch.bfloat16, r"matrices are zero"),
    ("overflows-fp16", "model", _scale_one(1e6), torch.float16, r"overflows torch.float16.*bfloat16 or float32"),
    ("label-i32", "model", _label_first_matrix("I32"), None, r"stored as I32, not a floating-point type"),
    ("label-u32", "model", _label_first_matrix("U32"), None, r"stored as U32"),
    ("label-i16-on-fp16", "model", ("labels16", "I16"), None, r"stored as I16"),
    ("label-u16-on-bf16", "model", ("labels16b", "U16"), None, r"stored as U16"),
    ("label-f64-on-f32", "model", _label_first_matrix("F64"), None, r"not a readable safetensors file"),
    ("label-bool-on-f32", "model", _label_first_matrix("BOOL"), None, r"not a readable safetensors file"),
    ("label-c64-on-f64", "model", ("labels64", "C64"), None, r"stored as C64"),
    ("xdub-nan", "xdub", _poison(float("nan")), torch.float32, r"NaN or infinite"),
    ("xdub-zero", "xdub", _zero_matrices, torch.float32, r"weight matrices are zero"),
    ("xdub-label-i32", "xdub", _label_first_matrix("I32"), torch.float32, r"stored as I32"),
    ("xdub-overflow-fp16", "xdub", _scale_one(1e6), torch.float16, r"overflows torch.float16"),
]


def _build_weights(ckpts, tmp_path, which, edit):
    src = ckpts[which]
    dst = str(tmp_path / f"edited-{which}.safetensors")
    if isinstance(edit, tuple):
        kind, label = edit
        from safetensors import safe_open

        with safe_open(src, framework="pt") as f:
            key = next(k for k in f.keys() if len(f.get_slice(k).get_shape()) >= 2)
        conv = {"labels16": _as_dtype(torch.float16), "labels16b": _as_dtype(torch.bfloat16),
                "labels64": _as_dtype(torch.float64)}.get(kind)
        return _rewrite(src, dst, tensors=conv, dtype_labels={key: label})
    return _rewrite(src, dst, tensors=edit)


@pytest.mark.parametrize("case,which,edit,dtype,pattern", WEIGHT_CASES, ids=[c[0] for c in WEIGHT_CASES])
def test_weights_that_cannot_work_are_refused_at_load(ckpts, tmp_path, case, which, edit, dtype, pattern):
    from omnisync_core.errors import OmniSyncError
    from omnisync_core.model.checkpoint import load_checkpoint
    from omnisync_core.model.xdub_weights import load_xdub_model

    path = _build_weights(ckpts, tmp_path, which, edit)
    before = _digest(path)
    with pytest.raises(OmniSyncError) as err:
        if which == "model":
            load_checkpoint(path, dtype=dtype)
        else:
            load_xdub_model(path, dtype=dtype)
    msg = _one_line(err.value)
    assert re.search(pattern, msg), msg
    assert os.path.basename(path) in msg  # names the file
    assert _digest(path) == before


@pytest.mark.parametrize("case,edit", [
    ("as-made", None),
    ("one-matrix-zero", lambda t: {**t, _first(t, lambda k, v: v.ndim >= 2): torch.zeros_like(t[_first(t, lambda k, v: v.ndim >= 2)])}),
    ("fp16-file", _as_dtype(torch.float16)),
    ("bf16-file", _as_dtype(torch.bfloat16)),
    ("large-but-finite-in-fp32", _scale_one(1e6)),
], ids=["as-made", "one-matrix-zero", "fp16-file", "bf16-file", "large-but-finite-in-fp32"])
def test_weights_that_can_work_still_load(ckpts, tmp_path, case, edit):
    from omnisync_core.model.checkpoint import load_checkpoint

    path = ckpts["model"] if edit is None else _rewrite(ckpts["model"], str(tmp_path / "ok.safetensors"), tensors=edit)
    model, meta = load_checkpoint(path, dtype=torch.float32)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_api_load_runtime_refuses_nan_weights_before_any_video_is_touched(ckpts, tmp_path):
    from omnisync_core.api import load_runtime
    from omnisync_core.errors import OmniSyncError

    path = _rewrite(ckpts["model"], str(tmp_path / "nan.safetensors"), tensors=_poison(float("nan")))
    with pytest.raises(OmniSyncError, match=r"nan.safetensors.*NaN or infinite"):  # before the Whisper is looked at
        load_runtime(path, str(tmp_path / "no-whisper-here"))


# -- the budget: memory and disk estimated before compute ---------------------------------------------------------


@pytest.fixture(scope="module")
def bundled_meta():
    from omnisync_core.api import BUNDLED_MODEL
    from omnisync_core.model.checkpoint import read_metadata

    return read_metadata(BUNDLED_MODEL)


GIB = 1 << 30
BUDGET_REFUSED = [  # (id, (H, W), frames, window, available GiB, patterns of the one-line error)
    ("8k-3-frames", (4320, 7680), 3, 16, 17.0, [r"needs about \d+\.\d GB of memory \(7680×4320 frames, 3 per window\)",
                                                r"scale the video to \d+ px on its long side"]),
    ("8k-1-frame-window", (4320, 7680), 3, 1, 4.0, [r"scale the video to"]),
    ("4k-16-frames", (2160, 3840), 48, 16, 8.0, [r"scale the video to", r"use --window \d+"]),
    ("4k-portrait", (3840, 2160), 48, 16, 8.0, [r"scale=-2:\d+"]),
    ("1080p-whole-clip", (1080, 1920), 300, 0, 8.0, [r"300 per window", r"use --window \d+"]),
    ("720p-tiny-ram", (720, 1280), 16, 16, 0.8, [r"free memory"]),
    ("no-ram-at-all", (128, 128), 3, 16, 0.05, [r"free memory \(close other programs\)"]),
]


@pytest.mark.parametrize("case,size,frames,window,avail,patterns", BUDGET_REFUSED, ids=[c[0] for c in BUDGET_REFUSED])
def test_budget_refuses_a_run_that_cannot_fit_with_the_fix(monkeypatch, bundled_meta, case, size, frames, window,
                                                           avail, patterns):
    from omnisync_core.errors import OmniSyncError
    from omnisync_core.pipelines import budget

    monkeypatch.setattr(budget, "available_memory_bytes", lambda: int(avail * GIB))
    with pytest.raises(OmniSyncError) as err:
        budget.check_budget(bundled_meta, size, frames, window)
    msg = _one_line(err.value)
    for pat in patterns:
        assert re.search(pat, msg), (pat, msg)


@pytest.mark.parametrize("size,frames,window,avail", [((128, 128), 200, 16, 2.0), ((512, 512), 3, 16, 2.0),
                                                      ((1080, 1920), 600, 16, 16.0), ((48, 64), 2, 0, 1.0),
                                                      ((4320, 7680), 3, 16, None)],
                         ids=["128-long", "512", "1080p-windowed", "tiny", "unknown-ram"])
def test_budget_lets_a_run_that_fits_go(monkeypatch, tmp_path, bundled_meta, size, frames, window, avail):
    from omnisync_core.pipelines import budget

    monkeypatch.setattr(budget, "available_memory_bytes", lambda: None if avail is None else int(avail * GIB))
    est = budget.check_budget(bundled_meta, size, frames, window, output_paths=[str(tmp_path / "o.mp4")])
    assert est["memory_bytes"] > est["weights_bytes"] > 0 and est["disk_bytes"] > 0


def test_budget_memory_follows_the_window_not_the_clip(bundled_meta):
    from omnisync_core.pipelines.budget import estimate

    short, long = (estimate(bundled_meta, (720, 1280), n, 16)["memory_bytes"] for n in (16, 16000))
    assert short == long
    assert estimate(bundled_meta, (720, 1280), 32, 0)["memory_bytes"] > short


def test_budget_same_estimate_from_metadata_and_loaded_model(bundled_meta):
    """The CLI checks before loading (metadata), the API after (the model): one function, one number."""
    from omnisync_core.api import BUNDLED_MODEL
    from omnisync_core.model.checkpoint import load_checkpoint
    from omnisync_core.model.codec import codec_from_spec
    from omnisync_core.pipelines.budget import estimate

    model, meta = load_checkpoint(BUNDLED_MODEL)
    a = estimate(meta, (480, 640), 40, 16)
    b = estimate(model, (480, 640), 40, 16, codec=codec_from_spec(meta["codec"]))
    assert a == b


@pytest.mark.parametrize("free", [0, 1024, 100_000])
def test_budget_refuses_an_output_the_disk_cannot_hold(monkeypatch, tmp_path, bundled_meta, free):
    import shutil as sh

    from omnisync_core.errors import OmniSyncError
    from omnisync_core.pipelines import budget

    monkeypatch.setattr(budget, "available_memory_bytes", lambda: 64 * GIB)
    monkeypatch.setattr(budget.shutil, "disk_usage", lambda p: sh._ntuple_diskusage(10 ** 12, 10 ** 12 - free, free))
    with pytest.raises(OmniSyncError) as err:
        budget.check_budget(bundled_meta, (1080, 1920), 250, 16, output_paths=[str(tmp_path / "out.mp4")])
    assert re.search(r"output needs about .* GB in .* but .* GB are free; free space there, write elsewhere",
                     _one_line(err.value))


# -- the video writer's end: errors, Ctrl-C, a dropped writer ---------------------------------------------------


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """The temporary folder the writers use, empty at the start: whatever they leave behind is visible."""
    import tempfile

    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def _out_folder(tmp_path, existing=False):
    out = tmp_path / "out"
    out.mkdir()
    if existing:
        (out / "v.mp4").write_bytes(b"an earlier result the user keeps")
    return out


@pytest.mark.parametrize("when", ["no-frames", "some-frames", "error-in-block", "keyboard-interrupt",
                                  "interrupt-inside-write", "dropped-half-built"])
@pytest.mark.parametrize("existing", [False, True], ids=["new", "over-existing"])
def test_writer_end_leaves_nothing_and_replaces_nothing(private_tmp, tmp_path, capfd, monkeypatch, when, existing):
    from omnisync_core.io import video

    out = _out_folder(tmp_path, existing)
    path = str(out / "v.mp4")
    before = sorted(os.listdir(out)), (open(path, "rb").read() if existing else None)
    frames = make_frames(T=3)
    if when == "dropped-half-built":
        w = video.VideoWriter(path, (32, 32), 25)
        w.write(frames)
        proc = w._writer
        del w
        gc.collect()
        assert proc.poll() is not None  # ffmpeg ended before its folder went
    else:
        with pytest.raises((RuntimeError, KeyboardInterrupt)):
            with video.VideoWriter(path, (32, 32), 25) as w:
                if when != "no-frames":
                    w.write(frames)
                if when == "error-in-block":
                    raise RuntimeError("a failing step")
                if when == "keyboard-interrupt":
                    raise KeyboardInterrupt
                if when == "interrupt-inside-write":  # Ctrl-C between two frames sent to ffmpeg
                    calls = []

                    def interrupted(a):
                        calls.append(1)
                        if len(calls) == 2:
                            raise KeyboardInterrupt
                        return np.ascontiguousarray(a)

                    monkeypatch.setattr(video.np, "ascontiguousarray", interrupted)
                    w.write(frames)
                raise RuntimeError("ended")
    assert os.listdir(private_tmp) == []
    assert (sorted(os.listdir(out)), (open(path, "rb").read() if existing else None)) == before
    cap = capfd.readouterr()
    assert cap.out == "" and cap.err == ""  # ffmpeg never talks to the console


def test_writer_whose_ffmpeg_dies_says_so_in_one_line(private_tmp, tmp_path):
    from omnisync_core.errors import OmniSyncError
    from omnisync_core.io.video import VideoWriter

    out = _out_folder(tmp_path, existing=True)
    path = str(out / "v.mp4")
    with pytest.raises(OmniSyncError) as err:
        with VideoWriter(path, (32, 32), 25) as w:
            w.write(make_frames(T=2))
            w._writer.kill()
            w._writer.wait()
            for _ in range(50):  # the pipe takes a while to report the dead reader
                w.write(make_frames(T=2))
            w.close()
    assert re.search(r"ffmpeg failed while encoding .*v\.mp4", _one_line(err.value))
    assert open(path, "rb").read() == b"an earlier result the user keeps"
    assert os.listdir(private_tmp) == []


def test_writer_completes_into_place_and_cleans_up(private_tmp, tmp_path):
    from omnisync_core.io.video import VideoReader, VideoWriter

    out = _out_folder(tmp_path)
    path = str(out / "v.mp4")
    with VideoWriter(path, (32, 32), 30000 / 1001, make_speech_like(0.2), 16000) as w:
        w.write(make_frames(T=5))
    assert os.listdir(private_tmp) == [] and os.listdir(out) == ["v.mp4"]
    with VideoReader(path) as r:
        assert r.num_frames == 5 and r.fps == pytest.approx(30000 / 1001) and r.warnings == []


# -- the API: the reader's adjustments and the budget reach the caller ------------------------------------------


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    return make_whisper_folder(str(tmp_path_factory.mktemp("whisper2")))


@pytest.fixture(scope="module")
def pipe(ckpts, whisper):
    from omnisync_core.api import load_runtime
    from omnisync_core.pipelines.omnisync import OmniSyncPipeline

    model, codec, encoder, meta = load_runtime(ckpts["model"], whisper)
    return OmniSyncPipeline(model, codec, encoder, meta=meta)


@pytest.mark.parametrize("name,pattern", [("vfr_gap.mp4", r"variable frame rate"), ("sar43.mp4", r"non-square pixels"),
                                          ("alpha_png.mov", r"alpha channel dropped")],
                         ids=["vfr", "sar", "alpha"])
def test_sync_video_file_says_the_readers_adjustments(media, pipe, tmp_path, name, pattern):
    from omnisync_core.api import SyncOptions, sync_video_file

    said = []
    out = str(tmp_path / "o.mp4")
    report = sync_video_file(pipe, os.path.join(media, name), make_speech_like(0.3), 16000, out,
                             SyncOptions(num_steps=1, mouth=(0.5, 0.6), length_mode="follow_video"),
                             on_warning=said.append)
    assert any(re.search(pattern, m) for m in said) and said == report["warnings"]


def test_sync_video_file_refuses_over_budget_before_writing(media, pipe, tmp_path, monkeypatch):
    from omnisync_core.api import SyncOptions, sync_video_file
    from omnisync_core.errors import OmniSyncError
    from omnisync_core.pipelines import budget

    monkeypatch.setattr(budget, "available_memory_bytes", lambda: 1 << 20)
    out = tmp_path / "o.mp4"
    out.write_bytes(b"keep me")
    with pytest.raises(OmniSyncError, match=r"needs about .* of memory"):
        sync_video_file(pipe, os.path.join(media, "cfr25.mp4"), make_speech_like(0.3), 16000, str(out),
                        SyncOptions(num_steps=1, mouth=(0.5, 0.6)))
    assert out.read_bytes() == b"keep me" and os.listdir(tmp_path) == ["o.mp4"]


# -- a network that returns NaN/inf: the sampler stops, naming the checkpoint; never a video ---------------------


class _NaNNet(torch.nn.Module):
    """Returns NaN from its first call: stands for a network that overflows in its dtype."""

    frames_independent = False

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.checkpoint_path = "models/broken.safetensors"

    def forward(self, x, t, **kw):
        return torch.full_like(x, float("nan"))


@pytest.mark.parametrize("which", ["cond", "uncond", "both"])
def test_omnisync_sampler_stops_at_nan_naming_the_checkpoint(which):
    from omnisync_core.errors import OmniSyncError
    from omnisync_core.sampling.sampler import _predict

    x = torch.zeros(3, 2, 4, 4)
    with pytest.raises(OmniSyncError) as err:
        _predict(_NaNNet(), x, 0.5, x, torch.zeros(2, 5, 8), None, which)
    assert re.search(r"NaN or infinite values \(\w+ pass\) at σ 0.5: the checkpoint 'models/broken.safetensors'.*"
                     r"float32.*Nothing was written", _one_line(err.value))


def test_xdub_sampler_stops_at_nan_naming_the_checkpoint():
    from omnisync_core.errors import OmniSyncError
    from omnisync_core.sampling.sampler import predict_passes
    from omnisync_core.sampling.xdub import XDubGuider, XDubOptions

    x = torch.zeros(3, 2, 4, 4)
    guider = XDubGuider(XDubOptions(), x, x, torch.zeros(2, 5, 8), None, None, torch.float32)
    with pytest.raises(OmniSyncError, match=r"broken.safetensors"):
        predict_passes(_NaNNet(), x, 0.5, ["ref"], guider, torch.zeros(1, 4))


@pytest.fixture(scope="module")
def overflowing(ckpts, tmp_path_factory):
    """Weights finite in the file (they load) whose forward pass overflows to inf/NaN."""
    d = tmp_path_factory.mktemp("overflow")
    return _rewrite(ckpts["model"], str(d / "overflowing.safetensors"),
                    tensors=lambda t: {k: (v * 1e30 if k == "patch_embedding.weight" else v) for k, v in t.items()})


def test_api_overflowing_network_stops_with_an_error_not_a_video(overflowing, whisper, media, tmp_path):
    from omnisync_core.api import SyncOptions, load_runtime, sync_video_file
    from omnisync_core.errors import OmniSyncError
    from omnisync_core.pipelines.omnisync import OmniSyncPipeline

    model, codec, encoder, meta = load_runtime(overflowing, whisper)
    out = tmp_path / "o.mp4"
    out.write_bytes(b"keep me")
    with pytest.raises(OmniSyncError) as err:
        sync_video_file(OmniSyncPipeline(model, codec, encoder, meta=meta), os.path.join(media, "cfr25.mp4"),
                        make_speech_like(0.3), 16000, str(out), SyncOptions(num_steps=2, mouth=(0.5, 0.6)))
    assert re.search(r"NaN or infinite values.*overflowing.safetensors", _one_line(err.value))
    assert out.read_bytes() == b"keep me" and os.listdir(tmp_path) == ["o.mp4"]


# -- real processes: exit codes, stderr, signals ----------------------------------------------------------------


def _sigint_default():
    """A pytest started as a background shell job has SIGINT ignored, and a child inherits that: undo it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


WRITER_LOOP = """
import sys, torch
from omnisync_core.io.video import VideoWriter
frames = torch.rand(2, 32, 32, 3)
print("ready", flush=True)
try:
    while True:  # writers start and end as fast as they can: the signal lands anywhere in their life
        try:
            with VideoWriter(sys.argv[1], (32, 32), 25) as w:
                w.write(frames)
                raise RuntimeError("again")
        except RuntimeError:
            pass
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


@pytest.mark.parametrize("delay", [0.4, 1.3])
def test_subprocess_sigint_anywhere_in_a_writers_life_leaves_nothing(tmp_path, delay):
    """The Ctrl-C race: ffmpeg must never outlive (or write into) its temporary folder, nor print."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": ROOT}
    proc = subprocess.Popen([sys.executable, "-c", WRITER_LOOP, str(tmp_path / "v.mp4")], cwd=str(tmp_path), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_sigint_default)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert out.strip() == "interrupted" and err == "", err  # nothing from ffmpeg, no traceback
    assert os.listdir(tmp) == [] and sorted(os.listdir(tmp_path)) == ["tmp"]


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory, whisper):
    d = tmp_path_factory.mktemp("cli2")
    from omnisync_core.io.audio import write_wav

    write_wav(str(d / "speech.wav"), make_speech_like(0.4), 16000)
    return {"whisper": whisper, "speech": str(d / "speech.wav"), "dir": d}


def _cli(argv):
    return subprocess.run([sys.executable, "-m", "omnisync_core", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_subprocess_nan_checkpoint_rc_2_one_line_and_the_old_output_kept(ckpts, cli_files, media, tmp_path):
    nan = _rewrite(ckpts["model"], str(tmp_path / "nan.safetensors"), tensors=_poison(float("nan")))
    out = tmp_path / "out.mp4"
    out.write_bytes(b"yesterday's result")
    video = os.path.join(media, "cfr25.mp4")
    before = _digest(video), _digest(cli_files["speech"]), _digest(nan)
    res = _cli(["sync", "--quiet", "--video", video, "--audio", cli_files["speech"], "--model", nan, "--whisper",
                cli_files["whisper"], "-o", str(out), "--steps", "1", "--mouth", "0.5,0.6"])
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and re.search(r"nan.safetensors.*NaN or infinite", errors[0]), res.stderr
    assert out.read_bytes() == b"yesterday's result"
    assert (_digest(video), _digest(cli_files["speech"]), _digest(nan)) == before
    assert sorted(os.listdir(tmp_path)) == ["nan.safetensors", "out.mp4"]


def test_subprocess_vfr_non_square_run_says_both_and_writes_the_square_size(ckpts, cli_files, media, tmp_path):
    from omnisync_core.io.video import VideoReader

    _ffmpeg("-i", os.path.join(media, "vfr_gap.mp4"), "-c", "copy", "-aspect", "16:9", str(tmp_path / "in.mp4"))
    out = str(tmp_path / "out.mp4")
    res = _cli(["sync", "--quiet", "--video", str(tmp_path / "in.mp4"), "--audio", cli_files["speech"], "--model",
                ckpts["model"], "--whisper", cli_files["whisper"], "-o", out, "--steps", "1", "--mouth", "0.5,0.6",
                "--length-mode", "follow_video"])
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert re.search(r"warning: in.mp4 has a variable frame rate", res.stderr), res.stderr
    assert re.search(r"warning: in.mp4 has non-square pixels", res.stderr), res.stderr
    with VideoReader(out) as r:
        assert r.size == (48, 85) and r.num_frames == 25 and r.warnings == []
