"""Long speech is converted block by block (memory does not grow with temporaries as long as the clip);
the results must equal the whole-array computations exactly."""

import wave

import numpy as np
import pytest
import soxr
import torch

from omnisync_core.audio.features import RESAMPLE_BLOCK_SAMPLES, to_mono_16k, validate_audio, wave_stats
from omnisync_core.errors import OmniSyncError
from omnisync_core.io.audio import WAV_BLOCK_SAMPLES, read_audio, write_wav


@pytest.mark.parametrize("sr,channels,n", [
    (22050, 1, 2 * RESAMPLE_BLOCK_SAMPLES + 12345),   # several blocks, a ragged last one
    (48000, 2, RESAMPLE_BLOCK_SAMPLES + 1),           # channels averaged, a one-sample last block
    (16000, 2, RESAMPLE_BLOCK_SAMPLES * 2),           # no resampling: only the average
    (44100, 1, 7),                                    # shorter than a block
])
def test_to_mono_16k_blockwise_equals_one_shot(sr, channels, n):
    x = (np.random.default_rng(n).standard_normal((channels, n)) * 0.2).astype(np.float32)
    ref = x.astype(np.float64).mean(axis=0)
    if sr != 16000:
        ref = soxr.resample(ref, sr, 16000)
    got = to_mono_16k(x, sr)
    assert got.dtype == torch.float32
    assert got.shape[0] == ref.shape[0] == int(np.floor(n * 16000 / sr + 0.5))
    assert np.array_equal(got.numpy(), ref.astype(np.float32))


def test_to_mono_16k_int_pcm_blockwise():
    x = np.random.default_rng(3).integers(-32768, 32767, (2, RESAMPLE_BLOCK_SAMPLES + 999)).astype(np.int16)
    ref = soxr.resample((x.astype(np.float64) / 32768).mean(axis=0), 44100, 16000).astype(np.float32)
    assert np.array_equal(to_mono_16k(x, 44100).numpy(), ref)


def test_wave_stats_blockwise():
    n = 3 * RESAMPLE_BLOCK_SAMPLES + 5
    w = torch.linspace(-0.5, 0.5, n)
    w[RESAMPLE_BLOCK_SAMPLES + 3] = 1.0          # in the second block
    w[-1] = -0.9995
    s = wave_stats(w, 0.999)
    assert {k: s[k] for k in ("non_finite", "peak", "at_level")} == {"non_finite": 0, "peak": 1.0, "at_level": 2}
    assert s["sum"] == pytest.approx(float(w.double().sum()), abs=1e-6)
    assert wave_stats(w + 0.25, offset=0.25)["peak"] == pytest.approx(1.0)  # measured around an offset (DC)
    w[2 * RESAMPLE_BLOCK_SAMPLES + 1] = float("nan")
    w[7] = float("inf")
    assert wave_stats(w)["non_finite"] == 2
    with pytest.raises(OmniSyncError, match=r"NaN or infinite values \(2 of"):
        validate_audio(w)


@pytest.mark.parametrize("bits", [8, 16, 24, 32])
@pytest.mark.parametrize("channels", [1, 2])
def test_read_pcm_wav_blockwise(tmp_path, bits, channels):
    n = 2 * WAV_BLOCK_SAMPLES + 17
    x = torch.from_numpy(np.random.default_rng(bits).uniform(-1, 1, (channels, n)).astype(np.float32))
    path = str(tmp_path / "a.wav")
    write_wav(path, x, 22050, bits=bits)
    with wave.open(path) as f:  # the whole file decoded at once, independently
        raw = f.readframes(f.getnframes())
    scale = 2.0 ** (bits - 1)
    if bits == 8:
        ref = (np.frombuffer(raw, np.uint8).astype(np.float64) - 128) / 128
    elif bits == 24:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        ref = np.where(v >= 1 << 23, v - (1 << 24), v) / scale
    else:
        ref = np.frombuffer(raw, "<i2" if bits == 16 else "<i4").astype(np.float64) / scale
    got, sr = read_audio(path)
    assert sr == 22050 and got.shape == (channels, n) and got.is_contiguous()
    assert np.array_equal(got.numpy(), ref.astype(np.float32).reshape(n, channels).T)
    assert float((got - x).abs().max()) <= 1.0 / scale + 1e-7  # and it is the written audio


def test_read_pcm_wav_truncated_data(tmp_path):
    """A WAV whose header promises more frames than it holds: the samples that are there."""
    path = str(tmp_path / "cut.wav")
    write_wav(path, torch.full((1, 1000), 0.5), 16000)
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-400])  # 200 samples short
    got, sr = read_audio(path)
    assert sr == 16000 and got.shape == (1, 800) and torch.allclose(got, torch.full((1, 800), 0.5))



def test_speech_file_reads_trims_pads_and_writes_like_the_tensor(tmp_path):
    import os

    from omnisync_core.io.audio import SpeechFile
    from omnisync_core.pipelines.omnisync import prepare_audio

    wave = torch.from_numpy(np.random.default_rng(5).uniform(-0.5, 0.5, 40_000).astype(np.float32))
    speech = SpeechFile.from_waveform(wave, folder=str(tmp_path))
    assert speech.shape == (40_000,) and torch.equal(speech[0:40_000], wave) and torch.equal(speech[123:4567], wave[123:4567])
    longer, shorter = speech.with_length(50_000), speech.with_length(10_000)
    assert torch.equal(longer[39_990:50_000][:10], wave[39_990:]) and not longer[40_000:50_000].any()
    assert len(shorter) == 10_000 and torch.equal(shorter[0:20_000], wave[:10_000])
    # the same length plan and samples as the in-memory speech, both ways (trim and pad)
    for frames in (30, 70):  # 1.2 s and 2.8 s of video at 25 fps against 2.5 s of speech
        plan_t, w_t = prepare_audio(frames, 25.0, wave, 16000, "follow_video")
        plan_f, w_f = prepare_audio(frames, 25.0, speech, 16000, "follow_video")
        assert torch.equal(plan_t.frame_indices, plan_f.frame_indices) and torch.equal(w_f[0:len(w_f)], w_t)
    a, b = str(tmp_path / "a.wav"), str(tmp_path / "b.wav")
    write_wav(a, wave, 16000)
    info = write_wav(b, speech, 16000)
    assert open(a, "rb").read() == open(b, "rb").read() and info["seconds"] == 2.5
    del longer, shorter
    speech.close()
    assert not os.path.exists(speech.path)
    with pytest.raises(OmniSyncError, match="SpeechFile holds 16000 Hz"):
        prepare_audio(30, 25.0, SpeechFile.from_waveform(wave, folder=str(tmp_path)), 22050, "follow_video")
