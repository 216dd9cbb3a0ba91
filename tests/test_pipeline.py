"""End-to-end pipeline on CPU with a tiny random model and a tiny random Whisper."""

import numpy as np
import pytest
import torch

from omnisync_core.errors import Cancelled, OmniSyncError
from omnisync_core.pipelines.omnisync import OmniSyncPipeline, SyncOptions
from omnisync_core.sampling.guidance import GuidanceConfig

from tiny import make_frames, make_model_checkpoint, make_speech_like, make_whisper_folder

FPS = 25.0


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    from omnisync_core.api import load_runtime

    root = str(tmp_path_factory.mktemp("models"))
    model, codec, encoder, _ = load_runtime(make_model_checkpoint(root), make_whisper_folder(root), "cpu", torch.float32)
    return OmniSyncPipeline(model, codec, encoder)


def fast(**kw):
    base = dict(num_steps=10, tau=0.9, seed=1, mouth=(0.5, 0.6))
    base.update(kw)
    return SyncOptions(**base)


def test_output_follows_audio_and_keeps_size(pipe):
    frames = make_frames(T=10)
    wave = make_speech_like(0.6)  # 0.6 s at 25 fps = 15 frames
    res = pipe(frames, FPS, wave, 16000, fast())
    assert res.frames.shape == (15, 32, 32, 3)
    assert res.waveform.shape[0] == 9600
    assert res.fps == FPS
    assert 0.0 <= float(res.frames.min()) and float(res.frames.max()) <= 1.0
    assert res.guidance_map.shape == (15, 32, 32)


def test_follow_video_pads_audio(pipe):
    frames = make_frames(T=10)
    res = pipe(frames, FPS, make_speech_like(0.2), 16000, fast(length_mode="follow_video"))
    assert res.frames.shape[0] == 10
    assert res.waveform.shape[0] == round(10 * 16000 / FPS)


def test_size_not_divisible_by_stride_is_padded_and_cropped_back(pipe):
    frames = make_frames(T=6, H=30, W=34)
    res = pipe(frames, FPS, make_speech_like(6 / FPS), 16000, fast(length_mode="follow_video"))
    assert res.frames.shape == (6, 30, 34, 3)
    assert res.report["padding"]["spatial"] != (0, 0)


def test_small_tau_stays_near_source_and_seed_is_deterministic(pipe):
    frames = make_frames(T=6)
    wave = make_speech_like(6 / FPS)
    near = pipe(frames, FPS, wave, 16000, fast(tau=0.05, length_mode="follow_video"))
    far = pipe(frames, FPS, wave, 16000, fast(tau=1.0, length_mode="follow_video"))
    err_near = (near.frames - frames).abs().mean()
    err_far = (far.frames - frames).abs().mean()
    assert err_near < 0.5 * err_far
    again = pipe(frames, FPS, wave, 16000, fast(tau=0.05, length_mode="follow_video"))
    assert torch.equal(near.frames, again.frames)
    other = pipe(frames, FPS, wave, 16000, fast(tau=0.05, length_mode="follow_video", seed=2))
    assert not torch.equal(near.frames, other.frames)


def test_guidance_map_peaks_at_the_mouth_point(pipe):
    frames = make_frames(T=4)
    opts = fast(mouth=(0.25, 0.75), length_mode="follow_video",
                guidance=GuidanceConfig(omega_base=1.0, omega_peak=3.0, sigma_spatial=0.1, gamma=1.5))
    res = pipe(frames, FPS, make_speech_like(4 / FPS), 16000, opts)
    flat = res.guidance_map[0].flatten().argmax()
    y, x = divmod(int(flat), 32)
    assert abs((x + 0.5) / 32 - 0.25) <= 0.1 and abs((y + 0.5) / 32 - 0.75) <= 0.1


def test_windows_progress_and_cancel(pipe):
    frames = make_frames(T=12)
    wave = make_speech_like(12 / FPS)
    calls = []
    res = pipe(frames, FPS, wave, 16000, fast(window=5, overlap=2, length_mode="follow_video"),
               progress=lambda d, t, m: calls.append((d, t)))
    assert res.frames.shape[0] == 12
    n_windows = len(res.report["windows"])
    assert n_windows >= 3
    assert calls[-1][0] == calls[-1][1] == res.report["steps"]
    with pytest.raises(Cancelled):
        pipe(frames, FPS, wave, 16000, fast(window=5, overlap=2), cancel=lambda: True)


def test_composite_keeps_pixels_outside_the_mouth(pipe):
    frames = make_frames(T=4)
    res = pipe(frames, FPS, make_speech_like(4 / FPS), 16000,
               fast(length_mode="follow_video", composite=True, composite_radius=0.15, mouth=(0.5, 0.7)))
    assert torch.equal(res.frames[:, :4], frames[:, :4].clamp(0, 1))  # top rows: far from the mouth


@pytest.mark.parametrize("bad, match", [
    (np.full(1600, np.nan, np.float32), "NaN"),
    (np.zeros(1600, np.float32), "silent"),
    (np.zeros(0, np.float32), "empty"),
])
def test_bad_audio_is_a_clear_error(pipe, bad, match):
    with pytest.raises(OmniSyncError, match=match):
        pipe(make_frames(T=4), FPS, bad, 16000, fast())


def test_bad_frames_are_clear_errors(pipe):
    wave = make_speech_like(0.2)
    with pytest.raises(OmniSyncError, match="1 frame"):
        pipe(make_frames(T=1), FPS, wave, 16000, fast())
    with pytest.raises(OmniSyncError, match="fps"):
        pipe(make_frames(T=4), 0.0, wave, 16000, fast())


def test_a_model_trained_on_the_last_layers_gets_exactly_those(pipe):
    from omnisync_core.model.config import preset
    from omnisync_core.model.dit import OmniSyncDiT
    from omnisync_core.pipelines.omnisync import encode_speech, select_audio_layers
    from tiny import WHISPER_D_MODEL, WHISPER_LAYERS

    wave = torch.from_numpy(make_speech_like(0.4))
    full, _ = encode_speech(pipe.audio_encoder, wave, FPS, 10)  # all WHISPER_LAYERS + 1 hidden states
    last2 = select_audio_layers(full, WHISPER_LAYERS + 1, 2 * WHISPER_D_MODEL)
    expect = full.view(10, WHISPER_LAYERS + 1, WHISPER_D_MODEL)[:, -2:].reshape(10, 2 * WHISPER_D_MODEL)
    assert torch.equal(last2, expect)
    with pytest.raises(OmniSyncError, match="Whisper"):  # at load time, not after the first stages
        OmniSyncPipeline(OmniSyncDiT(preset("tiny", latent_channels=12, audio_dim=40, use_text=False)),
                         pipe.codec, pipe.audio_encoder)


def test_a_temporal_vae_codec_runs_whole_clip_in_the_same_engine_as_the_split_stages(pipe):
    """A codec that groups frames (temporal factor 4) is encoded and decoded whole inside the engine, sampled in
    the same windows: pipe(...) gives the split stages' frames and guidance map, and says what it padded."""
    from omnisync_core.model.codec import VAECodec
    from omnisync_core.model.config import preset
    from omnisync_core.model.dit import OmniSyncDiT
    from omnisync_core.pipelines.omnisync import assemble, encode_speech, prepare_audio
    from tiny import WHISPER_D_MODEL, TinyWan22VAE

    torch.manual_seed(0)
    model = OmniSyncDiT(preset("tiny", latent_channels=48, audio_dim=2 * WHISPER_D_MODEL, use_text=False)).eval()
    with torch.no_grad():  # no zero-initialised branch left: the audio and the source change the result
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    vae_pipe = OmniSyncPipeline(model, VAECodec(TinyWan22VAE(), 48, 4, 16), pipe.audio_encoder)
    frames, wave = make_frames(T=10), make_speech_like(10 / FPS)
    opts = fast(window=2, overlap=1, length_mode="follow_video")
    heard = []
    res = vae_pipe(frames, FPS, wave, 16000, opts, on_warning=heard.append)
    assert res.report["streamed"] is False and res.report["windows"] == [(0, 2), (1, 3), (2, 4)]
    assert any("3 copies of the last frame appended" in w for w in heard), heard  # 10 frames → 13 = 1 + 4·3

    plan, wave16k = prepare_audio(10, FPS, wave, 16000, "follow_video")
    feats, _ = encode_speech(pipe.audio_encoder, wave16k, FPS, 10)
    video = vae_pipe.encode_video(frames, plan.frame_indices)
    x_init, sigmas = vae_pipe.init(video, opts.tau, opts.num_steps, opts.shift, opts.seed)
    sampled = vae_pipe.sample(x_init, video, sigmas, feats, pipe.audio_encoder.spec.num_layers, opts.guidance,
                              opts.mouth, None, opts.window, opts.overlap)
    out = assemble(vae_pipe.codec, sampled.latents, video, sampled.fallback_frames, sampled.mouth_centres)
    assert out.shape == res.frames.shape == (10, 32, 32, 3)
    assert float((out - res.frames).abs().max()) <= 1e-6
    assert float((sampled.guidance_map - res.guidance_map).abs().max()) <= 1e-6
    assert float((out - frames).abs().max()) > 0.01  # the model did edit the frames
