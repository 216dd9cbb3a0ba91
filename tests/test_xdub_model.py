"""X-Dub's DiT (sequence layout): golden parity with the public reference, the loader, the full-size key set.

The fixtures in tests/fixtures/xdub/ were computed with X-Dub's own code (``LipSyncModel`` and
``model_fn_wan_video``, run outside this repo) on a scaled-down model: dim 64, 2 blocks, 2 heads of 32,
audio in every block, 48 latent channels, a 2-layer audio projection of width 32; random non-zero
weights (drawn in float32, stored as float16, so both sides use exactly the same values).
``xdub_5b_keys.json`` is the published module's state-dict key list (name, shape), built on meta.
"""

import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from omnisync_core.errors import OmniSyncError
from omnisync_core.model.config import DiTConfig, preset
from omnisync_core.model.dit import OmniSyncDiT
from omnisync_core.model.xdub_dit import XDubDiT
from omnisync_core.model.xdub_weights import load_xdub_model, xdub_config_from_shapes

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "xdub")
WEIGHTS = os.path.join(FIXTURES, "dit_tiny_weights.safetensors")
TINY_HEADS = dict(head_dim=32, audio_head_dim=16)  # the file does not store head counts
PARITY_ATOL = 1e-5
FULL_PARAMETERS = 6_291_936_960  # X-Dub's DiT: 6.29 B parameters (+ 614,400 position-table buffer values)


@pytest.fixture(scope="module")
def tiny():
    return load_xdub_model(WEIGHTS, dtype=torch.float32, **TINY_HEADS)


@pytest.fixture(scope="module")
def forward_case():
    return load_file(os.path.join(FIXTURES, "dit_forward.safetensors"))


def per_frame_timesteps(case):
    """The reference's per-sample motion switch as our (B, F) timesteps: motion frames at 0."""
    t = case["timestep"][:, None].repeat(1, case["latents"].shape[2])
    t[case["motion_mask"].bool(), :2] = 0.0
    return t


# -- golden parity ---------------------------------------------------------------------------------

def test_loader_infers_the_scaled_config(tiny):
    assert tiny.config == preset("tiny-xdub") and not tiny.training
    assert {p.dtype for p in tiny.parameters()} == {torch.float32}


def test_dit_forward_matches_reference(tiny, forward_case):
    c = forward_case
    with torch.no_grad():
        v = tiny(c["latents"], per_frame_timesteps(c), source=c["ref_latents"], audio=c["audio"], text=c["text"])
        v0 = tiny(c["latents"], per_frame_timesteps(c), source=c["ref_latents"], audio=torch.zeros_like(c["audio"]),
                  text=c["text"])
    err, err0 = (v - c["velocity"]).abs().max().item(), (v0 - c["velocity_zero_audio"]).abs().max().item()
    print(f"X-Dub DiT parity: max abs error {err:.2e} (audio), {err0:.2e} (zero audio)")
    assert c["velocity"].abs().mean() > 0.1 and (c["velocity"] - c["velocity_zero_audio"]).abs().max() > 0.1
    assert err <= PARITY_ATOL and err0 <= PARITY_ATOL


def test_motion_frames_argument_matches_reference(tiny, forward_case):
    """Sample 0 of the fixture ran with 2 motion frames: motion_frames=2 with a scalar timestep gives it."""
    c = forward_case
    assert bool(c["motion_mask"][0]) and int(c["timestep"][0]) == 700
    with torch.no_grad():
        v = tiny(c["latents"][:1], 700.0, source=c["ref_latents"][:1], audio=c["audio"][:1], text=c["text"][:1],
                 motion_frames=2)
        v_plain = tiny(c["latents"][:1], 700.0, source=c["ref_latents"][:1], audio=c["audio"][:1], text=c["text"][:1])
    assert (v - c["velocity"][:1]).abs().max() <= PARITY_ATOL
    assert (v_plain - c["velocity"][:1]).abs().max() > 1e-2  # the motion frames' timestep matters


def test_audio_projection_matches_reference(tiny):
    c = load_file(os.path.join(FIXTURES, "audio_proj.safetensors"))
    with torch.no_grad():
        tokens = tiny.audio_embedding(c["audio"])
    err = (tokens - c["tokens"]).abs().max().item()
    print(f"X-Dub audio projection parity: max abs error {err:.2e}")
    assert tokens.shape == (2, 3, 10, 64) and err <= PARITY_ATOL


def test_bf16_by_default(forward_case):
    model = load_xdub_model(WEIGHTS, **TINY_HEADS)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    c = forward_case
    with torch.no_grad():
        v = model(c["latents"], per_frame_timesteps(c), source=c["ref_latents"], audio=c["audio"], text=c["text"])
    assert v.dtype == torch.float32 and (v - c["velocity"]).abs().mean() < 0.1 * c["velocity"].abs().mean()


# -- the sequence layout's own rules ---------------------------------------------------------------

def test_reference_frames_only_condition(tiny, forward_case):
    """Output frame f depends on the reference latents, but the target never leaks into the result's shape
    or the reference's: the velocity has the target's F frames, and the reference changes it."""
    c = forward_case
    with torch.no_grad():
        a = tiny(c["latents"], 500.0, source=c["ref_latents"], audio=c["audio"], text=c["text"])
        b = tiny(c["latents"], 500.0, source=torch.zeros_like(c["ref_latents"]), audio=c["audio"], text=c["text"])
    assert a.shape == c["latents"].shape and (a - b).abs().max() > 1e-2


def test_sequence_input_checks(tiny, forward_case):
    c = forward_case
    x, ref, audio = c["latents"], c["ref_latents"], c["audio"]
    with pytest.raises(OmniSyncError, match="motion_frames=4 leaves no frame"):
        tiny(x, 500.0, source=ref, audio=audio, motion_frames=4)
    with pytest.raises(OmniSyncError, match=r"\(B, F\) = \(2, 4\) per latent frame"):
        tiny(x, torch.ones(2, 3), source=ref, audio=audio)
    with pytest.raises(OmniSyncError, match="source-conditioned"):
        tiny(x, 500.0, audio=audio)
    with pytest.raises(OmniSyncError, match="more than the 100"):
        tiny(x, 500.0, source=ref, audio=torch.zeros(2, 4, 101, 40))
    omni = OmniSyncDiT(preset("tiny"))
    with pytest.raises(OmniSyncError, match="motion_frames needs a sequence-layout"):
        omni(torch.zeros(1, 12, 2, 4, 4), 500.0, source=torch.zeros(1, 12, 2, 4, 4), motion_frames=1)


def test_sequence_config_checks():
    with pytest.raises(OmniSyncError, match="patch t = 1"):
        preset("tiny-xdub", patch_size=(2, 2, 2))
    with pytest.raises(OmniSyncError, match=r"head_dim // 3 even"):
        preset("tiny-xdub", dim=128, num_heads=2)  # head_dim 64: ⌊64/3⌋ = 21, the reference's RoPE would not fit
    cfg = preset("tiny-xdub", audio_layers=[1])
    assert DiTConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    model = XDubDiT(cfg, device="meta")
    assert not hasattr(model.blocks[0], "audio_attn") and hasattr(model.blocks[1], "audio_attn")


# -- the published key set (built on meta from the reference code) ---------------------------------

def test_full_size_key_set_loads_exactly():
    with open(os.path.join(FIXTURES, "xdub_5b_keys.json")) as f:
        keys = {name: tuple(shape) for name, shape in json.load(f)["keys"]}
    assert len(keys) == 1245
    cfg = xdub_config_from_shapes(keys, name="the published key list")
    assert cfg == preset("xdub-5b")
    model = XDubDiT(cfg, device="meta")
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == keys  # same names, same shapes, nothing missing or unexpected
    n = sum(p.numel() for p in model.parameters())
    print(f"X-Dub DiT: {n:,} parameters, {2 * n / 1e9:.2f} GB in bf16")
    assert n == FULL_PARAMETERS


# -- wrong files -----------------------------------------------------------------------------------

def test_wrong_files_are_refused(tmp_path):
    weights = load_file(WEIGHTS)

    def write(name, tensors, metadata=None):
        path = str(tmp_path / name)
        save_file(tensors, path, metadata=metadata)
        return path

    cases = [
        (write("vae.safetensors", {"encoder.conv1.weight": torch.zeros(2, 2)}), "not X-Dub's DiT .*lacks"),
        (write("wan.safetensors", {k: v for k, v in weights.items() if not k.startswith("audio_embedding.")}),
         "plain Wan 2.x model"),
        (write("cut.safetensors", {k: v for k, v in weights.items() if k != "blocks.1.norm4.weight"}),
         "lacks blocks.1.norm4.weight"),
        (write("extra.safetensors", {**weights, "blocks.0.extra.weight": torch.zeros(1)}),
         "unexpected blocks.0.extra.weight"),
        (write("shape.safetensors", {**weights, "blocks.0.norm4.weight": torch.zeros(65)}),
         r"blocks.0.norm4.weight \(65,\) \(expected \(64,\)\)"),
        (write("omnisync.safetensors", weights, metadata={"omnisync": "{}"}), "OmniSync checkpoint"),
    ]
    for path, message in cases:
        with pytest.raises(OmniSyncError, match=message) as e:
            load_xdub_model(path, **TINY_HEADS)
        assert repr(path) in str(e.value) or path in str(e.value)
    with pytest.raises(OmniSyncError, match="multiple of head_dim 128"):
        load_xdub_model(WEIGHTS)  # the tiny model's width 64 with X-Dub's head width
    pt = str(tmp_path / "X-Dub_model.pt")
    torch.save({"w": torch.zeros(1)}, pt)
    with pytest.raises(OmniSyncError, match="only loads safetensors"):
        load_xdub_model(pt)
