"""X-Dub end to end with a random test-size DiT (published key names), tiny random Whisper and wav2vec2 folders
and a weight-free VAE stand-in: the Python API, and the CLI (its VAE loader swapped for the stand-in, for speed; a tiny AutoencoderKLWan folder through diffusers,
the xdub extra, as well)."""

import json

import pytest
import torch

from omnisync_core.cli import main
from omnisync_core.errors import Cancelled, OmniSyncError
from omnisync_core.io.video import read_video, write_video
from omnisync_core.io.audio import write_wav
from omnisync_core.model.wan22_vae import wan22_codec
from omnisync_core.length import pingpong_indices
from omnisync_core.sampling.xdub import XDubOptions
from omnisync_core.pipelines.xdub import XDubPipeline
from tiny import (
    TinyWan22VAE, make_speech_like, make_umt5_folder, make_wav2vec2_folder, make_whisper_folder, make_xdub_checkpoint,
)

SIZE = 64  # face crops of 64×64: 4×4 latent pixels
FAST = dict(num_steps=2)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    from omnisync_core.audio.xdub_features import load_xdub_audio_encoders
    from omnisync_core.model.xdub_weights import load_xdub_model

    root = tmp_path_factory.mktemp("xdub")
    paths = {"model": make_xdub_checkpoint(str(root)), "whisper": make_whisper_folder(str(root)),
             "wav2vec": make_wav2vec2_folder(str(root)), "root": root}
    model = load_xdub_model(paths["model"], dtype=torch.float32)
    encoders = load_xdub_audio_encoders(paths["whisper"], paths["wav2vec"])
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(20, SIZE, SIZE, 3, generator=g)  # 0.8 s of face crops at 25 fps
    speech = torch.from_numpy(make_speech_like(3.3)).float()  # 3.3 s: 83 frames → 2 clips (77 + 72)
    return paths, model, encoders, frames, speech


def short(speech):
    return speech[:16000]  # 1 s: 25 frames, one clip


def test_api_runs_two_clips_with_motion_frames(parts):
    _, model, encoders, frames, speech = parts
    pipe = XDubPipeline(model, wan22_codec(TinyWan22VAE()), encoders)
    ticks = []
    result = pipe(frames, 25.0, speech, 16000, options=XDubOptions(**FAST), progress=lambda d, t, m: ticks.append((d, t)))
    assert result.frames.shape == (83, SIZE, SIZE, 3) and result.fps == 25.0
    assert result.waveform.shape == (83 * 640,)  # 16 kHz, padded to whole frames
    assert result.report["clips"] == 2 and ticks[-1] == (4, 4)
    assert result.frame_indices[:20].tolist() == list(range(20)) and int(result.frame_indices[20]) == 18  # ping-pong
    assert bool(torch.isfinite(result.frames).all())
    assert 0.0 <= float(result.frames.min()) and float(result.frames.max()) <= 1.0


def test_stages_equal_the_whole_call_and_cancel(parts):
    _, model, encoders, frames, speech = parts
    pipe = XDubPipeline(model, wan22_codec(TinyWan22VAE()), encoders)
    opts = XDubOptions(**FAST)
    enc = pipe.encode(frames, 25, short(speech), 16000)
    assert enc.plan.starts == [0] and enc.num_frames == 25 and [r.shape for r in enc.references] == [(48, 20, 4, 4)]
    assert [a.shape for a in enc.audio] == [(20, 8, 40)]
    smp = pipe.sample(enc, None, opts)
    out = pipe.assemble(smp, enc, opts)
    assert out.shape == (25, SIZE, SIZE, 3)
    whole = pipe(frames, 25, short(speech), 16000, options=opts)
    assert torch.allclose(out, whole.frames, atol=1e-6)
    with pytest.raises(Cancelled):
        pipe.sample(enc, None, opts, cancel=lambda: True)


def test_wrong_inputs_are_refused_where_they_enter(parts):
    _, model, encoders, frames, speech = parts
    pipe = XDubPipeline(model, wan22_codec(TinyWan22VAE()), encoders)
    with pytest.raises(OmniSyncError, match="25 fps"):
        pipe.encode(frames, 30, short(speech), 16000)
    with pytest.raises(OmniSyncError, match="divisible by 32"):
        pipe.encode(frames[:, :48], 25, short(speech), 16000)
    with pytest.raises(OmniSyncError, match="umT5"):
        pipe.sample(pipe.encode(frames, 25, short(speech), 16000), torch.zeros(3, 7), XDubOptions(**FAST))


def _vae_file(paths):
    """A Wan-layout VAE file where --vae wants one (these tests swap the loader for the weight-free stand-in)."""
    from xdub_standins import write_wan22_vae

    path = str(paths["root"] / "Wan2.2_VAE.safetensors")
    return path if (paths["root"] / "Wan2.2_VAE.safetensors").exists() else write_wan22_vae(path)


def _write_inputs(paths, frames, speech):
    root = paths["root"]
    video, audio = str(root / "face.mp4"), str(root / "speech.wav")
    write_video(video, frames, 25.0)
    write_wav(audio, speech.numpy(), 16000)
    return video, audio


def test_cli_end_to_end_with_a_stand_in_vae(parts, monkeypatch, capsys):
    paths, _, _, frames, speech = parts
    video, audio = _write_inputs(paths, frames, short(speech))
    import omnisync_core.model.wan22_vae as wan22

    monkeypatch.setattr(wan22, "load_wan22_vae", lambda path, device="cpu", dtype=None: wan22_codec(TinyWan22VAE()))
    out, report = str(paths["root"] / "dubbed.mp4"), str(paths["root"] / "report.json")
    rc = main(["xdub", "--model", paths["model"], "--whisper", paths["whisper"], "--wav2vec", paths["wav2vec"],
               "--vae", _vae_file(paths), "--video", video, "--audio", audio, "-o", out, "--steps", "2", "--quiet",
               "--omega-peak", "14", "--tau", "0.9", "--report", report,
               "--t5", make_umt5_folder(str(paths["root"])), "--prompt", "a face that talks"])
    assert rc == 0, capsys.readouterr().err
    got, fps = read_video(out)
    assert got.shape == (25, SIZE, SIZE, 3) and fps == pytest.approx(25.0)
    with open(report) as f:
        assert json.load(f)["clips"] == 1
    assert "wrote" in capsys.readouterr().out


def test_cli_with_diffusers_vae_folder(parts, capsys):
    import diffusers

    from omnisync_core.model.wan22_vae import WAN22_LATENTS_MEAN, WAN22_LATENTS_STD

    paths, _, _, frames, speech = parts
    video, audio = _write_inputs(paths, frames, short(speech))
    torch.manual_seed(0)
    vae_dir = str(paths["root"] / "vae")
    diffusers.AutoencoderKLWan(
        base_dim=8, decoder_base_dim=8, z_dim=48, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
        temperal_downsample=[False, True, True], is_residual=True, in_channels=12, out_channels=12, patch_size=2,
        scale_factor_spatial=16, latents_mean=list(WAN22_LATENTS_MEAN), latents_std=list(WAN22_LATENTS_STD),
    ).save_pretrained(vae_dir)
    out = str(paths["root"] / "dubbed_diffusers.mp4")
    rc = main(["xdub", "--model", paths["model"], "--whisper", paths["whisper"], "--wav2vec", paths["wav2vec"],
               "--vae", vae_dir, "--video", video, "--audio", audio, "-o", out, "--steps", "2", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert read_video(out)[0].shape == (25, SIZE, SIZE, 3)


def test_cli_crops_the_face_and_pastes_it_back(parts, monkeypatch, capsys):
    import omnisync_core.model.wan22_vae as wan22

    paths, _, _, _, speech = parts
    ys, xs = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 128), indexing="ij")
    full = torch.stack([ys, xs, (ys + xs) / 2], -1).expand(20, -1, -1, -1)  # smooth: survives the mp4 round trip
    video, audio = str(paths["root"] / "full.mp4"), str(paths["root"] / "speech1.wav")
    write_video(video, full, 25.0)
    write_wav(audio, short(speech).numpy(), 16000)
    monkeypatch.setattr(wan22, "load_wan22_vae", lambda path, device="cpu", dtype=None: wan22_codec(TinyWan22VAE()))
    out = str(paths["root"] / "pasted.mp4")
    rc = main(["xdub", "--model", paths["model"], "--whisper", paths["whisper"], "--wav2vec", paths["wav2vec"],
               "--vae", _vae_file(paths), "--video", video, "--audio", audio, "-o", out, "--steps", "2", "--quiet",
               "--crop", "point", "--point", "0.5,0.5", "--scale", "0.5", "--crop-size", "64"])
    assert rc == 0, capsys.readouterr().err
    got, _ = read_video(out)
    assert got.shape == (25, 96, 128, 3)
    src, _ = read_video(video)
    far = (slice(None), slice(0, 10), slice(0, 10))  # a corner far outside the face box: the source, untouched
    assert float((got[far] - src[pingpong_indices(20, 25)][far]).abs().max()) < 0.05  # up to the mp4 round trip
