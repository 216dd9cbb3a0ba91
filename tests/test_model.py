"""OmniSyncDiT and its config: Wan 2.1 equivalence at init, key names, RoPE, audio locality, input checks."""

import dataclasses
import json
import math

import pytest
import torch

from omnisync_core.errors import OmniSyncError
from omnisync_core.model.checkpoint import load_wan_state_dict
from omnisync_core.model.config import PRESETS, CodecSpec, DiTConfig, preset
from omnisync_core.model.dit import OmniSyncDiT, rope_angles, rope_apply, rope_split, sinusoidal_embedding_1d

C, F, H, W = 12, 3, 8, 8   # tiny latents: 3 latent frames of 8×8 -> a 4×4 token grid per frame
N_A = 5                    # audio tokens per latent frame


def tiny(**overrides) -> DiTConfig:
    return preset("tiny", **overrides)


def inputs(B=2, seed=0, cfg=None):
    cfg = cfg or tiny()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, C, F, H, W, generator=g)
    return dict(
        x=x,
        timestep=torch.tensor([700.0, 30.0][:B]),
        source=torch.randn(B, C, F, H, W, generator=g),
        audio=torch.randn(B, F, N_A, cfg.audio_dim, generator=g),
        text=torch.randn(B, 7, cfg.text_dim, generator=g),
    )


def randomise_head(model):
    """Wan zero-inits the output layer; give it weights so outputs carry information."""
    with torch.no_grad():
        model.head.head.weight.normal_(0, 0.05)
        model.head.head.bias.normal_(0, 0.05)


# -- config ----------------------------------------------------------------------------------------

def test_config_json_round_trip_and_unknown_keys():
    cfg = tiny(patch_size=(1, 2, 2), audio_dim=24)
    back = DiTConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.patch_size == (1, 2, 2) and isinstance(back.patch_size, tuple)
    assert cfg.head_dim == 32
    with pytest.raises(OmniSyncError, match="'dimm'"):
        DiTConfig.from_dict({**cfg.to_dict(), "dimm": 3})
    with pytest.raises(OmniSyncError, match="divisible by num_heads"):
        tiny(num_heads=3)
    with pytest.raises(OmniSyncError, match="even and >= 6"):
        tiny(dim=8, num_heads=2)
    with pytest.raises(OmniSyncError, match="unknown model preset"):
        preset("huge")
    with pytest.raises(OmniSyncError, match="'nope'"):
        preset("tiny", nope=1)
    assert PRESETS["wan2.1-1.3b"].audio_dim == 5 * 384
    # DiT checkpoints saved before the mouth probe was removed carry its fields at 0: they still load
    old = {**cfg.to_dict(), "mouth_probe": 0, "mouth_probe_layer": 1}
    assert DiTConfig.from_dict(old) == cfg
    with pytest.raises(OmniSyncError, match="mouth probe"):
        DiTConfig.from_dict({**old, "mouth_probe": 5})


def test_codec_spec_fills_defaults_and_round_trips():
    pix = CodecSpec(type="pixel", patch=8)
    assert (pix.latent_channels, pix.temporal_factor, pix.spatial_factor) == (192, 1, 8)
    vae = CodecSpec(type="vae", latents_mean=[0.0] * 16)
    assert (vae.latent_channels, vae.temporal_factor, vae.spatial_factor) == (16, 4, 8)
    for spec in (pix, vae):
        assert CodecSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(OmniSyncError, match="latent_channels=12"):
        CodecSpec(type="pixel", patch=2, latent_channels=13)
    with pytest.raises(OmniSyncError, match="'pach'"):
        CodecSpec.from_dict({"type": "pixel", "pach": 2})
    with pytest.raises(OmniSyncError, match="codec type"):
        CodecSpec(type="jpeg")


# -- Wan 2.1 compatibility -------------------------------------------------------------------------

def test_additions_at_init_reproduce_the_wan_base_model_exactly():
    torch.manual_seed(0)
    cfg = tiny()
    wan = OmniSyncDiT(dataclasses.replace(cfg, source_condition=False, audio_dim=0)).eval()
    randomise_head(wan)
    wan_sd = wan.state_dict()
    assert not any("audio" in k for k in wan_sd) and wan_sd["patch_embedding.weight"].shape[1] == C

    torch.manual_seed(1)  # different init: everything Wan has must come from the state dict
    omni = OmniSyncDiT(cfg).eval()
    report = load_wan_state_dict(omni, wan_sd)
    assert set(report["loaded"]) == set(wan_sd)
    assert report["zero_filled"] == ["patch_embedding.weight[:, 12:24] (source channels)"]
    assert all("audio" in k for k in report["new"]) and len(report["new"]) == 4 + 12 * cfg.num_layers

    a = inputs()
    with torch.no_grad():
        ref = wan(a["x"], a["timestep"], text=a["text"])
        out = omni(**a)
        ref_no_text = wan(a["x"], a["timestep"])
        out_no_text = omni(a["x"], a["timestep"], source=a["source"], audio=a["audio"])
    assert ref.abs().mean() > 1e-2                    # not a trivially zero output
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(out_no_text, ref_no_text, atol=1e-6, rtol=0)
    assert (ref - ref_no_text).abs().max() > 1e-4      # the text path does something

    # the additions are live: once their zero weights move, source and audio change the output
    with torch.no_grad():
        omni.blocks[0].audio_cross_attn.o.weight.normal_(0, 0.05)
        moved_audio = omni(**a)
        omni.blocks[0].audio_cross_attn.o.weight.zero_()
        omni.patch_embedding.weight[:, C:].normal_(0, 0.05)
        moved_source = omni(**a)
    assert (moved_audio - ref).abs().max() > 1e-4
    assert (moved_source - ref).abs().max() > 1e-4


def test_wan_1_3b_preset_has_wan_key_names_and_size():
    model = OmniSyncDiT(preset("wan2.1-1.3b"), device="meta")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = {
        "patch_embedding.weight": (1536, 32, 1, 2, 2),        # 16 latent + 16 source channels
        "patch_embedding.bias": (1536,),
        "text_embedding.0.weight": (1536, 4096),
        "text_embedding.2.weight": (1536, 1536),
        "time_embedding.0.weight": (1536, 256),
        "time_embedding.2.bias": (1536,),
        "time_projection.1.weight": (9216, 1536),
        "blocks.0.modulation": (1, 6, 1536),
        "blocks.0.self_attn.q.weight": (1536, 1536),
        "blocks.0.self_attn.norm_q.weight": (1536,),
        "blocks.0.norm3.weight": (1536,),
        "blocks.0.norm3.bias": (1536,),
        "blocks.0.cross_attn.k.weight": (1536, 1536),
        "blocks.0.cross_attn.norm_k.weight": (1536,),
        "blocks.0.ffn.0.weight": (8960, 1536),
        "blocks.29.ffn.2.weight": (1536, 8960),
        "head.modulation": (1, 2, 1536),
        "head.head.weight": (64, 1536),                       # 1·2·2 patch × 16 channels
        "blocks.0.audio_cross_attn.o.weight": (1536, 1536),
        "audio_embedding.0.weight": (1536, 1920),
    }
    for key, shape in expected.items():
        assert shapes[key] == shape, key
    assert "blocks.30.ffn.0.weight" not in shapes
    assert not any(k.startswith(("blocks.0.norm1", "blocks.0.norm2", "head.norm")) for k in shapes)  # no affine

    wan_part = sum(math.prod(s) for k, s in shapes.items() if "audio" not in k)
    wan_part -= 1536 * 16 * 4                                  # the source half of the patch embedding
    print(f"Wan-shaped parameters: {wan_part:,}")
    assert 1.35e9 < wan_part < 1.45e9 and wan_part == 1_418_996_800


# -- pieces ----------------------------------------------------------------------------------------

def test_rope_split_and_rotation():
    assert rope_split(128) == (44, 42, 42)
    assert rope_split(32) == (12, 10, 10)
    grid, d = (3, 4, 5), 128
    angles = rope_angles(grid, d)
    assert angles.shape == (60, 64)
    # position (f, h, w) = (2, 1, 3): frame angles use the first 22 frequencies of a 44-dim axis
    idx = 2 * 20 + 1 * 5 + 3
    assert angles[idx, 0].item() == 2.0 and angles[idx, 22].item() == 1.0 and angles[idx, 43].item() == 3.0
    assert angles[idx, 1].item() == pytest.approx(2.0 * 10000 ** (-2 / 44), rel=1e-12)

    x = torch.randn(2, 60, 3, d, dtype=torch.float64).float()
    y = rope_apply(x, angles.cos().float(), angles.sin().float())
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))                    # a rotation
    ref = torch.view_as_real(torch.view_as_complex(x.double().unflatten(-1, (-1, 2)))
                             * torch.polar(torch.ones_like(angles), angles)[None, :, None]).flatten(-2)
    torch.testing.assert_close(y.double(), ref, atol=1e-5, rtol=0)                 # Wan's complex form
    torch.testing.assert_close(y[:, 0], x[:, 0])                                   # position 0: identity


def test_sinusoidal_embedding_values():
    e = sinusoidal_embedding_1d(8, torch.tensor([0.0, 1000.0]))
    assert e.dtype == torch.float64 and e.shape == (2, 8)
    assert e[0].tolist() == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert e[1, 0].item() == pytest.approx(math.cos(1000.0)) and e[1, 5].item() == pytest.approx(math.sin(100.0))


def test_unpatchify_inverts_patchify():
    cfg = tiny(patch_size=(1, 2, 2))
    model = OmniSyncDiT(cfg, device="meta")
    x = torch.randn(2, C, F, H, W)
    pt, ph, pw = cfg.patch_size
    tokens = x.reshape(2, C, F // pt, pt, H // ph, ph, W // pw, pw).permute(0, 2, 4, 6, 3, 5, 7, 1)
    tokens = tokens.reshape(2, -1, pt * ph * pw * C)   # (B, L, patch·C) in the head's layout
    assert torch.equal(model.unpatchify(tokens, (F, H // 2, W // 2)), x)


def test_fresh_model_predicts_zero_and_runs_in_bfloat16():
    torch.manual_seed(0)
    model = OmniSyncDiT(tiny()).eval()
    a = inputs()
    with torch.no_grad():
        assert torch.count_nonzero(model(**a)) == 0                     # zero output layer (Wan)
        randomise_head(model)
        ref = model(**a)
        half = OmniSyncDiT(tiny(), dtype=torch.bfloat16).eval()
        half.load_state_dict(model.state_dict())
        out = half(**a)
    assert out.dtype == torch.float32 and out.shape == (2, C, F, H, W)
    assert (out - ref).abs().max() < 0.05 * ref.abs().max() + 1e-3


def test_audio_reaches_only_its_own_latent_frame():
    # One block: self-attention runs before the audio cross-attention, and FFN and head are per token,
    # so the output at frame f can depend on audio[:, f] only. With more blocks self-attention mixes.
    torch.manual_seed(0)
    model = OmniSyncDiT(tiny(num_layers=1)).eval()
    randomise_head(model)
    with torch.no_grad():
        model.blocks[0].audio_cross_attn.o.weight.normal_(0, 0.1)
    a = inputs()
    a2 = dict(a, audio=a["audio"].clone())
    a2["audio"][:, 1] += 1.0
    with torch.no_grad():
        diff = (model(**a2) - model(**a)).abs().amax(dim=(1, 3, 4))  # (B, F)
    assert torch.all(diff[:, 1] > 1e-3)
    assert diff[:, 0].max() == 0 and diff[:, 2].max() == 0

    # the module itself, at block level: rows of frame f see audio[:, f] only
    attn = model.blocks[0].audio_cross_attn
    xs = torch.randn(2, F * 16, 64)
    tok = torch.randn(2, F, N_A, 64)
    tok2 = tok.clone()
    tok2[:, 2] = torch.randn(2, N_A, 64)
    with torch.no_grad():
        d = (attn(xs, tok2) - attn(xs, tok)).abs().reshape(2, F, 16, 64).amax(dim=(0, 2, 3))
    assert d[0] == 0 and d[1] == 0 and d[2] > 1e-3


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = OmniSyncDiT(tiny()).train()
    randomise_head(model)
    a = inputs()
    grads = []
    for flag in (False, True):
        model.zero_grad()
        model.gradient_checkpointing = flag
        model(**a).square().mean().backward()
        grads.append(model.blocks[0].self_attn.q.weight.grad.clone())
    assert grads[0].abs().max() > 0
    torch.testing.assert_close(grads[0], grads[1])


# -- input checks ----------------------------------------------------------------------------------

def test_batch_one_conditions_and_scalar_timestep_broadcast():
    torch.manual_seed(0)
    model = OmniSyncDiT(tiny()).eval()
    randomise_head(model)
    a = inputs()
    with torch.no_grad():
        full = model(a["x"], torch.tensor([500.0, 500.0]), a["source"][:1].expand(2, -1, -1, -1, -1),
                     a["audio"][:1].expand(2, -1, -1, -1), a["text"][:1].expand(2, -1, -1))
        bcast = model(a["x"], 500.0, a["source"][:1], a["audio"][:1], a["text"][:1])
    torch.testing.assert_close(bcast, full)


@pytest.mark.parametrize("change, message", [
    (dict(x=torch.randn(C, F, H, W)), "add a batch axis"),
    (dict(x=torch.randn(2, C + 1, F, H, W)), "expects 12 latent channels"),
    (dict(x=torch.randn(2, C, F, H, 7)), "not divisible by the patch size"),
    (dict(x=torch.randn(2, C, 0, H, W)), "empty axis"),
    (dict(source=None), "pass source="),
    (dict(source=torch.randn(2, C, F, H, W + 2)), "source must be shaped like x"),
    (dict(audio=torch.randn(2, F + 1, N_A, 40)), "2 latent frames|4 latent frames"),
    (dict(audio=torch.randn(2, F, N_A, 41)), "expects 40"),
    (dict(audio=torch.randn(2, F, 0, 40)), "0 tokens per frame"),
    (dict(audio=torch.randn(F, N_A, 40)), r"\(B, F, N_a, audio_dim\)"),
    (dict(text=torch.randn(2, 0, 32)), "pass text=None"),
    (dict(text=torch.randn(2, 7, 33)), "expects 32"),
    (dict(text=torch.randn(2, 513, 32)), "truncate"),
    (dict(text=torch.randn(7, 32)), "text must be features"),
    (dict(timestep=torch.tensor([1500.0, 3.0])), r"\[0, 1000\]"),
    (dict(timestep=torch.tensor([1.0, 2.0, 3.0])), "timestep must be"),
    (dict(text=torch.randn(3, 7, 32)), "text has batch 3"),
])
def test_bad_inputs_raise_a_helpful_error(change, message):
    model = OmniSyncDiT(tiny())
    with pytest.raises(OmniSyncError, match=message):
        model(**{**inputs(), **change})


def test_conditions_the_model_lacks_are_refused():
    cfg = tiny(source_condition=False, audio_dim=0, use_text=False)
    model = OmniSyncDiT(cfg)
    assert not any(k.startswith(("text_embedding", "audio_embedding")) or ".cross_attn." in k
                   for k in model.state_dict())
    a = inputs()
    assert model(a["x"], a["timestep"]).shape == a["x"].shape
    for kw, message in [(dict(source=a["source"]), "no source conditioning"), (dict(audio=a["audio"]), "no audio branch"),
                        (dict(text=torch.randn(2, 7, 32)), "no text branch")]:
        with pytest.raises(OmniSyncError, match=message):
            model(a["x"], a["timestep"], **kw)
    with pytest.raises(OmniSyncError, match="needs a DiTConfig"):
        OmniSyncDiT({"dim": 64})


def test_x0_residual_model_starts_as_the_source_and_returns_its_velocity():
    """prediction="x0_residual": x̂₀ = source + head (zero-init), v = (x − x̂₀)/max(σ, 0.05)."""
    from omnisync_core.model.config import X0_MIN_SIGMA, preset
    from omnisync_core.model.dit import OmniSyncDiT

    torch.manual_seed(0)
    model = OmniSyncDiT(preset("tiny", use_text=False, audio_dim=0, prediction="x0_residual")).eval()
    x, src = torch.randn(2, 12, 2, 4, 4), torch.randn(2, 12, 2, 4, 4)
    sigma = torch.tensor([0.5, 0.01])
    v = model(x, 1000 * sigma, source=src)
    expect = (x - src) / sigma.clamp_min(X0_MIN_SIGMA).view(-1, 1, 1, 1, 1)
    assert torch.allclose(v, expect, atol=1e-5)
    # an Euler step of the full remaining σ from the returned velocity lands on x̂₀ = source
    assert torch.allclose(x[:1] - 0.5 * v[:1], src[:1], atol=1e-5)
    with pytest.raises(OmniSyncError, match="x0_residual"):
        preset("tiny", source_condition=False, prediction="x0_residual")
