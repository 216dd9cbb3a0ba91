"""X-Dub pipeline pieces: Wan 2.2 VAE codec, colour correction and border blend, text, the CLI's VAE error."""

import json

import pytest
import torch

from omnisync_core.cli import main
from omnisync_core.image.composite import blend_border, border_blend_mask, color_correct
from omnisync_core.errors import OmniSyncError
from omnisync_core.model.wan22_vae import WAN22_LATENTS_MEAN, WAN22_LATENTS_STD, load_wan22_vae, wan22_codec
from omnisync_core.pipelines.xdub import xdub_text


class RawVAE:
    """Returns raw latents equal to the Wan 2.2 mean plus the frame's mean brightness in every position."""

    def encode(self, frames):
        T, H, W, _ = frames.shape
        F_ = 1 + (T - 1) // 4
        raw = torch.tensor(WAN22_LATENTS_MEAN).view(1, 48, 1, 1, 1).expand(1, 48, F_, H // 16, W // 16).clone()
        return raw + frames.mean()

    def decode(self, raw):
        self.seen = raw
        F_, h, w = raw.shape[2:]
        return torch.full((1, 1 + 4 * (F_ - 1), h * 16, w * 16, 3), 0.5)


def test_wan22_codec_normalises_raw_latents_per_channel():
    vae = RawVAE()
    codec = wan22_codec(vae)
    assert (codec.latent_channels, codec.spatial_factor, codec.temporal_factor) == (48, 16, 4)
    z = codec.encode(torch.full((5, 32, 32, 3), 0.25))
    assert z.shape == (48, 2, 2, 2)
    expected = 0.25 / torch.tensor(WAN22_LATENTS_STD)  # (raw − mean)/std with raw = mean + 0.25
    assert torch.allclose(z[:, 0, 0, 0], expected, atol=1e-6)
    frames = codec.decode(z)
    assert frames.shape == (5, 32, 32, 3)
    assert torch.allclose(vae.seen[0, :, 0, 0, 0], torch.tensor(WAN22_LATENTS_MEAN) + 0.25, atol=1e-6)


def test_color_correct_matches_mean_and_std_on_unchanged_pixels():
    g = torch.Generator().manual_seed(0)
    src = torch.rand(2, 16, 16, 3, generator=g) * 0.5 + 0.25
    gen = (src - 0.5) * 0.9 + 0.5 + 0.02  # a small affine colour drift everywhere (< 0.07: all "unchanged")
    out = color_correct(gen, src)
    assert torch.allclose(out, src, atol=1e-5)  # an affine drift is undone exactly
    changed = gen.clone()
    changed[:, :4, :4] = 1.0  # a changed region is excluded from the statistics but gets the same map
    out = color_correct(changed, src)
    assert torch.allclose(out[:, 4:, 4:], src[:, 4:, 4:], atol=1e-2)
    with pytest.raises(OmniSyncError, match="colour correction"):
        color_correct(gen, src[:1])


def test_border_blend_keeps_the_edge_from_the_source_and_the_centre_generated():
    mask = border_blend_mask(128, 128, 16, 33)
    assert float(mask[0, 0]) > 0.9 and float(mask[64, 64]) == pytest.approx(0.0, abs=1e-7)
    assert torch.all(mask[64, :64][1:] <= mask[64, :64][:-1] + 1e-6)  # falls monotonically towards the centre
    gen, src = torch.zeros(1, 128, 128, 3), torch.ones(1, 128, 128, 3)
    out = blend_border(gen, src, 16)
    assert float(out[0, 0, 0, 0]) > 0.9 and float(out[0, 64, 64, 0]) == pytest.approx(0.0, abs=1e-7)


def test_xdub_text_none_is_zeros_and_shapes_are_checked():
    assert torch.equal(xdub_text(None, 16, 512), torch.zeros(1, 16))
    t = torch.randn(1, 7, 16)
    assert torch.equal(xdub_text(t, 16, 512), t[0])
    with pytest.raises(OmniSyncError, match="umT5"):
        xdub_text(torch.randn(7, 8), 16, 512)
    with pytest.raises(OmniSyncError, match="tokens"):
        xdub_text(torch.randn(600, 16), 16, 512)


def test_cli_xdub_without_diffusers_says_what_to_install(tmp_path, monkeypatch, capsys):
    from xdub_standins import write_wan22_vae

    vae = write_wan22_vae(str(tmp_path / "Wan2.2_VAE.safetensors"))
    for name in ("X-Dub_model.safetensors", "large-v2.pt", "face.mp4", "speech.wav"):
        (tmp_path / name).write_bytes(b"")  # only their presence is checked before the VAE loads
    (tmp_path / "wav2vec2-base-960h").mkdir()
    monkeypatch.setitem(__import__("sys").modules, "diffusers", None)  # as if not installed
    rc = main(["xdub", "--model", str(tmp_path / "X-Dub_model.safetensors"), "--whisper",
               str(tmp_path / "large-v2.pt"), "--wav2vec", str(tmp_path / "wav2vec2-base-960h"), "--vae", vae,
               "--t5", vae, "--video", str(tmp_path / "face.mp4"), "--audio", str(tmp_path / "speech.wav"),
               "-o", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: diffusers is not installed") and 'pip install "diffusers>=0.35"' in err


def test_load_wan22_vae_rejects_missing_folder_and_wan21(tmp_path):
    with pytest.raises(OmniSyncError, match="Wan2.2_VAE.safetensors not found.*models/vae/"):
        load_wan22_vae(str(tmp_path / "nope"))
    (tmp_path / "config.json").write_text(json.dumps({"z_dim": 16}))
    with pytest.raises(OmniSyncError, match="Wan 2.1"):
        load_wan22_vae(str(tmp_path))


def test_diffusers_wan22_vae_round_trip(tmp_path):
    import diffusers

    torch.manual_seed(0)
    vae = diffusers.AutoencoderKLWan(
        base_dim=8, decoder_base_dim=8, z_dim=48, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
        temperal_downsample=[False, True, True], is_residual=True, in_channels=12, out_channels=12, patch_size=2,
        scale_factor_spatial=16, latents_mean=list(WAN22_LATENTS_MEAN), latents_std=list(WAN22_LATENTS_STD))
    vae.save_pretrained(tmp_path)
    codec = load_wan22_vae(str(tmp_path))
    frames = torch.rand(5, 32, 48, 3)
    z = codec.encode(frames)
    assert z.shape == (48, 2, 2, 3)
    raw = vae.encode(frames.permute(3, 0, 1, 2)[None] * 2 - 1).latent_dist.mode()[0]
    mean, std = torch.tensor(WAN22_LATENTS_MEAN).view(-1, 1, 1, 1), torch.tensor(WAN22_LATENTS_STD).view(-1, 1, 1, 1)
    assert torch.allclose(z, (raw - mean) / std, atol=1e-5)
    out = codec.decode(z)
    assert out.shape == (5, 32, 48, 3) and 0.0 <= float(out.min()) and float(out.max()) <= 1.0


def test_umt5_folder_loads_as_umt5_and_the_empty_prompt_is_one_token(tmp_path):
    from tiny import make_umt5_folder
    from omnisync_core.model.t5 import load_t5_encoder

    encoder = load_t5_encoder(make_umt5_folder(str(tmp_path)))
    assert type(encoder.model).__name__ == "UMT5EncoderModel"  # per-layer position bias, not T5's
    assert encoder.encode("").shape == (1, 16)  # the reference's empty prompt: the end-of-sequence token alone
    assert encoder.encode("a face that talks").shape == (5, 16)


class CountingFrames:
    """A FrameSource over uint8 face crops in memory, recording the size of every read."""

    def __init__(self, frames_u8):
        self.frames, self.num_frames, self.size = frames_u8, frames_u8.shape[0], tuple(frames_u8.shape[1:3])
        self.reads = []

    def read(self, indices):
        self.reads.append(len(indices))
        return self.frames[indices]


def test_streaming_reads_clip_by_clip_and_gives_the_in_memory_frames(tmp_path):
    """XDubPipeline.stream over a frame source reads at most one clip of frames at a time (never the video) and
    writes the frames pipe(frames, ...) returns; every adjustment is said through on_warning."""
    from omnisync_core.audio.xdub_features import load_xdub_audio_encoders
    from omnisync_core.model.xdub_weights import load_xdub_model
    from omnisync_core.pipelines.stream import to_uint8
    from omnisync_core.pipelines.xdub import XDubPipeline
    from omnisync_core.sampling.xdub import CLIP_FRAMES, XDubOptions
    from tiny import TinyWan22VAE, make_speech_like, make_wav2vec2_folder, make_whisper_folder, make_xdub_checkpoint

    root = str(tmp_path)
    model = load_xdub_model(make_xdub_checkpoint(root), dtype=torch.float32)
    encoders = load_xdub_audio_encoders(make_whisper_folder(root), make_wav2vec2_folder(root))
    pipe = XDubPipeline(model, wan22_codec(TinyWan22VAE()), encoders)
    g = torch.Generator().manual_seed(0)
    crops = to_uint8(torch.rand(20, 64, 64, 3, generator=g))
    speech = torch.from_numpy(make_speech_like(3.3, sr=22050)).float()  # 83 frames: 2 clips, resampled
    opts = XDubOptions(num_steps=2)
    heard = []
    whole = pipe(crops.float() / 255, 25.0, speech, 22050, options=opts, on_warning=heard.append)
    source, written = CountingFrames(crops), []
    report = pipe.stream(source, 25.0, speech, 22050, lambda out, src: written.append((out, src)), options=opts)
    out = torch.cat([o for o, _ in written])
    assert report["clips"] == 2 and out.dtype == torch.uint8 and out.shape == whole.frames.shape == (83, 64, 64, 3)
    assert int((out.int() - to_uint8(whole.frames).int()).abs().max()) <= 1  # ≤ 1/255: the same frames
    assert max(source.reads) <= CLIP_FRAMES and len(written) > 1  # clip by clip, in and out
    assert torch.equal(report["frame_indices"], whole.frame_indices)
    assert whole.report["warnings"] == heard and report["warnings"] == heard
    assert any("resampled from 22050 Hz" in w for w in heard) and any("ping-ponged to 149" in w for w in heard)
