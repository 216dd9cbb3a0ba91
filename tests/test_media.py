"""Frame validation, and real mp4/wav files written and read back (ffmpeg from imageio-ffmpeg)."""

import math
import os

import numpy as np
import pytest
import torch

from omnisync_core.errors import OmniSyncError
from omnisync_core.io.audio import read_audio, write_wav
from omnisync_core.io.video import read_video, write_video
from omnisync_core.image.pictures import side_by_side
from omnisync_core.io.frames import validate_frames

SR = 16000
TONE_HZ = 440.0


def smooth_clip(T, H=64, W=64):
    """(T, H, W, 3) in [0, 1]: slow gradients that survive H.264 at crf 18."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, H), torch.linspace(0, 1, W), indexing="ij")
    return torch.stack([
        torch.stack([0.2 + 0.6 * xx, 0.2 + 0.6 * yy, 0.5 + 0.3 * torch.sin(2 * math.pi * (xx + t / T))], -1)
        for t in range(T)
    ])


def tone(seconds, hz=TONE_HZ, sr=SR):
    t = np.arange(int(round(seconds * sr))) / sr
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def dominant_hz(wave, sr):
    spectrum = np.abs(np.fft.rfft(wave))
    return np.fft.rfftfreq(wave.size, 1 / sr)[spectrum.argmax()]


# -- validate_frames ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(0, 8, 8, 3), "0 frames"),
    ([], "0 frames"),
    (torch.zeros(1, 8, 8, 3), "1 frame; lip-sync needs a video"),
    (np.zeros((8, 8, 3), np.uint8), "1 frame"),
    (torch.zeros(2, 1, 8, 8, 3), "5 dimensions"),
    (torch.zeros(2, 3, 8, 8), "8 channels"),
    ([np.zeros((8, 8, 3)), np.zeros((8, 10, 3))], r"\(8, 8, 3\).*frame 1 is \(8, 10, 3\)"),
    (torch.full((2, 4, 4, 3), float("nan")), "NaN"),
    (torch.full((2, 4, 4, 3), 2.0), r"\[2, 2\]"),
    (torch.zeros(2, 4, 4, 3, dtype=torch.int64), "int64"),
    ("frames.mp4", "torch tensor or numpy array"),
])
def test_bad_frames_raise_with_the_key_fact(bad, match):
    with pytest.raises(OmniSyncError, match=match):
        validate_frames(bad)


def test_conversions_are_made_and_reported():
    x = np.arange(2 * 2 * 2 * 4, dtype=np.uint8).reshape(2, 2, 2, 4)
    frames, info = validate_frames(x)
    assert frames.shape == (2, 2, 2, 3) and frames.dtype == torch.float32
    assert torch.equal(frames, torch.from_numpy(x[..., :3]).float() / 255)
    assert any("alpha" in c for c in info["conversions"]) and any("uint8" in c for c in info["conversions"])
    gray = torch.rand(3, 4, 5)
    frames, info = validate_frames(gray)
    assert frames.shape == (3, 4, 5, 3) and torch.equal(frames[..., 1], gray)
    assert any("grayscale" in c for c in info["conversions"])
    frames, info = validate_frames(torch.rand(3, 4, 5, 1))
    assert frames.shape == (3, 4, 5, 3) and any("grayscale" in c for c in info["conversions"])
    ok = torch.rand(2, 4, 4, 3)
    frames, info = validate_frames(ok)
    assert torch.equal(frames, ok) and info == {"num_frames": 2, "size": (4, 4), "conversions": []}
    frames, info = validate_frames(torch.full((2, 4, 4, 3), 1.0005))
    assert frames.max() == 1 and "clamped" in info["conversions"][0]


# -- video -------------------------------------------------------------------------------------------


def test_video_with_audio_round_trip(tmp_path):
    path = str(tmp_path / "clip.mp4")
    clip = smooth_clip(50)  # 2 s at 25 fps
    info = write_video(path, clip, 25.0, torch.from_numpy(tone(2.0)), SR)
    assert info["pixel_format"] == "yuv420p" and info["audio_seconds"] == 2.0 and not info["warnings"]
    frames, fps = read_video(path)
    assert frames.shape == (50, 64, 64, 3) and fps == 25.0
    assert (frames - clip).abs().mean() < 0.03
    wave, sr = read_audio(path)
    assert wave.ndim == 2 and wave.shape[0] == 1
    assert abs(wave.shape[1] / sr - 2.0) < 0.05
    assert abs(dominant_hz(wave[0].numpy(), sr) - TONE_HZ) < 2.0
    assert sorted(os.listdir(tmp_path)) == ["clip.mp4"]  # temporary files went elsewhere


def test_ntsc_fps_and_odd_size(tmp_path):
    path = str(tmp_path / "ntsc.mp4")
    info = write_video(path, smooth_clip(6, H=33, W=35), 30000 / 1001)
    assert info["pixel_format"] == "yuv444p" and info["size"] == (33, 35)
    assert "35×33 is odd" in info["warnings"][0]
    frames, fps = read_video(path)
    assert frames.shape == (6, 33, 35, 3)  # exactly the input size: 4:4:4 holds odd sizes
    assert abs(fps - 30000 / 1001) < 0.01


def test_write_video_needs_fps_and_sample_rate(tmp_path):
    with pytest.raises(OmniSyncError, match="fps"):
        write_video(str(tmp_path / "a.mp4"), smooth_clip(2), 0)
    with pytest.raises(OmniSyncError, match="sample_rate"):
        write_video(str(tmp_path / "a.mp4"), smooth_clip(2), 25.0, tone(0.1), None)


def test_missing_and_unreadable_files_name_the_path(tmp_path):
    missing = str(tmp_path / "nope.mp4")
    with pytest.raises(OmniSyncError, match="nope.mp4"):
        read_video(missing)
    with pytest.raises(OmniSyncError, match="nope.mp4"):
        read_audio(missing)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(OmniSyncError, match="junk.mp4"):
        read_video(str(junk))
    silent = str(tmp_path / "silent.mp4")
    write_video(silent, smooth_clip(4), 25.0)
    with pytest.raises(OmniSyncError, match="no audio track"):
        read_audio(silent)


# -- audio -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits, tol", [(8, 1 / 256), (16, 1 / 65536), (24, 2.0 ** -24), (32, 1e-7)])
def test_wav_round_trip(tmp_path, bits, tol):
    path = str(tmp_path / f"a{bits}.wav")
    stereo = np.stack([tone(0.25), tone(0.25, hz=220.0)])  # (2, N)
    info = write_wav(path, stereo, 22050, bits=bits)
    assert info["clipped_samples"] == 0
    wave, sr = read_audio(path)
    assert sr == 22050 and wave.shape == (2, 4000) and wave.dtype == torch.float32
    assert np.abs(wave.numpy() - stereo).max() <= tol + 1e-9


def test_wav_clipping_is_reported(tmp_path):
    info = write_wav(str(tmp_path / "loud.wav"), np.array([0.0, 1.5, -2.0, 0.5], np.float32), SR)
    assert info["clipped_samples"] == 2
    wave, _ = read_audio(str(tmp_path / "loud.wav"))
    assert wave[0, 1] == 32767 / 32768 and wave[0, 2] == -1.0


def test_audio_from_compressed_file(tmp_path):
    """A float WAV written by ffmpeg (not PCM) falls back to the ffmpeg decoder."""
    import subprocess

    import imageio_ffmpeg

    pcm, flt = str(tmp_path / "pcm.wav"), str(tmp_path / "float.wav")
    write_wav(pcm, tone(0.5), SR)
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", pcm, "-c:a", "pcm_f32le", flt], check=True)
    wave, sr = read_audio(flt)
    ref, _ = read_audio(pcm)
    assert sr == SR and wave.shape == ref.shape
    assert torch.allclose(wave, ref, atol=1e-6)


def test_waveform_layouts(tmp_path):
    with pytest.raises(OmniSyncError, match="transpose"):
        write_wav(str(tmp_path / "x.wav"), np.zeros((1000, 2), np.float32), SR)
    write_wav(str(tmp_path / "y.wav"), torch.zeros(1, 2, 100), SR)  # ComfyUI AUDIO (B=1, C, N)
    wave, _ = read_audio(str(tmp_path / "y.wav"))
    assert wave.shape == (2, 100)


# -- display -----------------------------------------------------------------------------------------


def test_side_by_side():
    a, b = torch.rand(3, 20, 10, 3), torch.rand(3, 20, 14, 3)
    out = side_by_side(a, b)
    assert out.shape == (3, 20, 24, 3)
    assert torch.equal(out[:, :, :10], a) and torch.equal(out[:, :, 10:], b)
    labelled = side_by_side(a, b, labels=("source", "OmniSync"))
    assert labelled.shape[2] == 24 and labelled.shape[1] > 20
    assert torch.equal(labelled[:, -20:], out)
    with pytest.raises(OmniSyncError, match="equal length and height"):
        side_by_side(a, torch.rand(3, 21, 10, 3))


def test_mouth_contact_sheet_rows_follow_one_crop_track():
    from omnisync_core.image.pictures import CONTACT_CELL_PX, mouth_contact_sheet

    T, H, W = 20, 40, 40
    a = torch.zeros(T, H, W, 3)
    b = torch.ones(T, H, W, 3)
    b[:, :, :20] = 0.0                       # left half dark, right half bright
    centres = torch.tensor([[0.75, 0.5]]).expand(T, 2)   # crops from the bright half of b
    sheet = mouth_contact_sheet([("source", a), ("output", b)], centres, columns=4)
    assert sheet.dtype == np.uint8 and sheet.shape[0] == 2 * CONTACT_CELL_PX
    cells = sheet[:, -4 * CONTACT_CELL_PX:]
    assert cells[:CONTACT_CELL_PX].max() == 0 and cells[CONTACT_CELL_PX:].min() == 255
    with pytest.raises(OmniSyncError, match="equal length"):
        mouth_contact_sheet([("a", a), ("b", b[:5])], centres)
    with pytest.raises(OmniSyncError, match="mouth centres"):
        mouth_contact_sheet([("a", a)], centres[:3])
