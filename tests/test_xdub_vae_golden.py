"""The bundle's single-file Wan 2.2 VAE (Wan's key layout) through diffusers' AutoencoderKLWan, against ComfyUI's own
Wan 2.2 VAE (golden fixture, float32).

tests/fixtures/xdub/wan22_vae_tiny_weights.safetensors is a scaled-down Wan 2.2 VAE (base width 4, widths ×1,2,2,2,
one residual block per stage, 48 latent channels) saved from ComfyUI 0.3.64's ``comfy.ldm.wan.vae2_2.WanVAE``
``state_dict()`` (so its keys are exactly Wan's), with seeded random weights; wan22_vae_golden.safetensors holds a
(1, 3, 9, 32, 32) clip, ComfyUI's ``encode`` of it (the posterior mean, (1, 48, 3, 2, 2)), a (1, 48, 3, 2, 2) latent
and ComfyUI's ``decode`` of it (inside [−1, 1], so diffusers' clamp changes nothing). Recorded on the CPU outside
this repository.
"""

import os

import torch
from safetensors import safe_open

from omnisync_core.model.wan22_vae import load_wan22_vae, read_wan22_vae_file

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "xdub")
WEIGHTS = os.path.join(FIXTURES, "wan22_vae_tiny_weights.safetensors")
GOLDEN_ATOL = 2e-6  # measured: 2.4e-7 (encode), 5.4e-7 (decode)


def golden():
    with safe_open(os.path.join(FIXTURES, "wan22_vae_golden.safetensors"), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def test_config_is_read_off_the_file():
    cfg = read_wan22_vae_file(WEIGHTS).config
    assert (cfg.base_dim, cfg.decoder_base_dim, cfg.z_dim, list(cfg.dim_mult), cfg.num_res_blocks) == (4, 4, 48, [1, 2, 2, 2], 1)
    assert list(cfg.temperal_downsample) == [False, True, True] and cfg.patch_size == 2
    assert (cfg.scale_factor_temporal, cfg.scale_factor_spatial) == (4, 16)


@torch.no_grad()
def test_encode_and_decode_match_comfyui():
    g = golden()
    vae = read_wan22_vae_file(WEIGHTS)
    mu = vae.encode(g["video"]).latent_dist.mode()
    out = vae.decode(g["latent"]).sample
    assert mu.shape == g["encoded_mu"].shape == (1, 48, 3, 2, 2)
    assert float((mu - g["encoded_mu"]).abs().max()) < GOLDEN_ATOL
    assert float((out - g["decoded"]).abs().max()) < GOLDEN_ATOL
    assert float(g["decoded"].abs().max()) > 0.3  # the golden output is not trivially small


@torch.no_grad()
def test_codec_speaks_frames_in_zero_one():
    g = golden()
    codec = load_wan22_vae(WEIGHTS)
    frames = ((g["video"][0].permute(1, 2, 3, 0) + 1) / 2)  # (T, H, W, 3) in [0, 1]
    raw = codec.vae.encode(frames)
    assert float((raw - g["encoded_mu"]).abs().max()) < GOLDEN_ATOL
    back = codec.vae.decode(g["latent"])  # (1, T, H, W, 3) in [0, 1]
    assert float((back[0] - (g["decoded"][0].permute(1, 2, 3, 0) + 1) / 2).abs().max()) < GOLDEN_ATOL
