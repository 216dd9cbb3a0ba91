"""Latent codecs: exact pixel round trip, the Wan frame rule, the VAE adapter's layouts, padding."""

import pytest
import torch
import torch.nn.functional as F

from omnisync_core.errors import OmniSyncError
from omnisync_core.model.codec import (
    PixelCodec,
    VAECodec,
    codec_from_spec,
    crop_back,
    pad_frames_to_valid,
    pad_to_stride,
)


class FakeWanVAE:
    """Stands in for comfy.sd.VAE of Wan 2.1: 8× average pooling in space, frames 0, 4, 8, … in time.

    encode: (T, H, W, 3) → (1, 16, F, h, w) (the 3 colour channels repeated to 16).
    decode: (1, 16, F, h, w) → (1, T, H, W, 3) (``batched``) or (T, H, W, 3), nearest upsampling.
    """

    def __init__(self, batched=True):
        self.batched = batched

    def encode(self, images):
        x = images.permute(0, 3, 1, 2)[::4]  # (F, 3, H, W)
        z = F.avg_pool2d(x, 8)  # (F, 3, h, w)
        z = torch.cat([z, z[:, :1].expand(-1, 13, -1, -1)], 1)  # (F, 16, h, w)
        return z.permute(1, 0, 2, 3)[None]  # (1, 16, F, h, w)

    def decode(self, latent):
        z = latent[0, :3].permute(1, 0, 2, 3)  # (F, 3, h, w)
        T = 1 + 4 * (z.shape[0] - 1)
        x = F.interpolate(z, scale_factor=8, mode="nearest")
        x = x[torch.clamp((torch.arange(T) + 3) // 4, max=z.shape[0] - 1)]  # (T, 3, H, W)
        out = x.permute(0, 2, 3, 1)  # (T, H, W, 3)
        return out[None] if self.batched else out


def test_pixel_codec_shapes_and_exact_round_trip():
    codec = PixelCodec(patch=8)
    assert (codec.latent_channels, codec.temporal_factor, codec.spatial_factor) == (192, 1, 8)
    frames = torch.randint(0, 257, (5, 16, 24, 3)).float() / 256  # on a 1/256 grid: 2x − 1 exact
    z = codec.encode(frames)
    assert z.shape == (192, 5, 2, 3)
    assert z.min() >= -1 and z.max() <= 1
    assert torch.equal(codec.decode(z), frames)
    # latent channel c = colour·p² + row·p + col of the patch (pixel_unshuffle order)
    assert z[0, 0, 0, 0] == 2 * frames[0, 0, 0, 0] - 1
    assert z[1, 0, 0, 0] == 2 * frames[0, 0, 1, 0] - 1
    assert z[64 + 8, 2, 1, 2] == 2 * frames[2, 9, 16, 1] - 1
    rand = torch.rand(3, 8, 8, 3)
    assert (codec.decode(codec.encode(rand)) - rand).abs().max() < 1e-7
    assert codec.num_latent_frames(7) == 7 and codec.num_frames(7) == 7 and codec.valid_num_frames(7) == 7


def test_pixel_codec_rejects_sizes_not_divisible():
    with pytest.raises(OmniSyncError, match="pad_to_stride"):
        PixelCodec(4).encode(torch.rand(2, 10, 8, 3))


def test_wan_frame_rule_arithmetic():
    codec = VAECodec(FakeWanVAE())
    assert [codec.valid_num_frames(t) for t in (1, 2, 5, 6, 9, 10, 81)] == [1, 5, 5, 9, 9, 13, 81]
    assert [codec.num_latent_frames(t) for t in (0, 1, 5, 9, 81)] == [0, 1, 2, 3, 21]
    assert [codec.num_frames(f) for f in (1, 2, 21)] == [1, 5, 81]


@pytest.mark.parametrize("batched", [True, False])
def test_vae_codec_both_decode_layouts(batched):
    codec = VAECodec(FakeWanVAE(batched=batched))
    frames = torch.rand(9, 16, 32, 3)
    z = codec.encode(frames)
    assert z.shape == (16, 3, 2, 4)
    assert torch.allclose(z[0, 1, 0, 0], frames[4, :8, :8, 0].mean())
    out = codec.decode(z)
    assert out.shape == (9, 16, 32, 3)
    assert torch.allclose(out[4, :8, :8, 0], frames[4, :8, :8, 0].mean().expand(8, 8))


def test_vae_codec_normalises_latents_with_mean_and_std():
    mean, std = [0.5] * 16, [2.0] * 16
    codec = VAECodec(FakeWanVAE(), latents_mean=mean, latents_std=std)
    frames = torch.rand(5, 8, 8, 3)
    raw = FakeWanVAE().encode(frames)[0]
    z = codec.encode(frames)
    assert torch.allclose(z, (raw - 0.5) / 2)
    assert torch.allclose(codec.decode(z)[0], FakeWanVAE(batched=False).decode(raw[None])[0])
    with pytest.raises(OmniSyncError, match="one value per channel"):
        VAECodec(FakeWanVAE(), latents_mean=[0.0] * 4)


def test_vae_codec_invalid_frame_count_and_explicit_padding():
    codec = VAECodec(FakeWanVAE())
    frames = torch.rand(7, 8, 8, 3)
    with pytest.raises(OmniSyncError, match=r"7 frames.*1 \+ 4·k.*pad to 9.*pad_frames_to_valid"):
        codec.encode(frames)
    padded, added = pad_frames_to_valid(frames, codec)
    assert added == 2 and padded.shape[0] == 9
    assert torch.equal(padded[:7], frames)
    assert torch.equal(padded[7], frames[6]) and torch.equal(padded[8], frames[6])
    assert codec.encode(padded).shape == (16, 3, 1, 1)
    same, none_added = pad_frames_to_valid(padded, codec)
    assert none_added == 0 and same is padded


def test_vae_codec_wrong_vae_is_a_clear_error():
    class Wrong(FakeWanVAE):
        def encode(self, images):
            return super().encode(images)[:, :4]  # 4 channels (an image VAE)

    with pytest.raises(OmniSyncError, match="Wan 2.1"):
        VAECodec(Wrong()).encode(torch.rand(5, 8, 8, 3))


@pytest.mark.parametrize("mode", ["replicate", "reflect"])
def test_pad_to_stride_and_crop_back(mode):
    frames = torch.rand(3, 30, 17, 3)
    padded, pads = pad_to_stride(frames, 16, mode=mode)
    assert pads == (2, 15) and padded.shape == (3, 32, 32, 3)
    assert torch.equal(padded[:, :30, :17], frames)
    if mode == "replicate":
        assert torch.equal(padded[:, 31, :17], frames[:, 29])
    else:
        assert torch.equal(padded[:, 30, :17], frames[:, 28])
    assert torch.equal(crop_back(padded, pads), frames)
    same, zero = pad_to_stride(padded, 16)
    assert zero == (0, 0) and same is padded and torch.equal(crop_back(same, zero), padded)


def test_codec_from_spec():
    pixel = codec_from_spec({"type": "pixel", "patch": 2, "latent_channels": 12, "temporal_factor": 1})
    assert isinstance(pixel, PixelCodec) and pixel.latent_channels == 12
    with pytest.raises(OmniSyncError, match="latent_channels"):
        codec_from_spec({"type": "pixel", "patch": 2, "latent_channels": 16})
    with pytest.raises(OmniSyncError, match="connect a VAE"):
        codec_from_spec({"type": "vae", "latent_channels": 16})
    vae = codec_from_spec({"type": "vae", "latent_channels": 16, "temporal_factor": 4, "spatial_factor": 8},
                          vae=FakeWanVAE())
    assert isinstance(vae, VAECodec) and vae.temporal_factor == 4
    with pytest.raises(OmniSyncError, match="unknown codec type"):
        codec_from_spec({"type": "jpeg"})
