"""Checkpoints: safetensors round trip with metadata, refusals with named keys, Wan 2.1 initialisation."""

import json
import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from omnisync_core.errors import OmniSyncError
from omnisync_core.model.checkpoint import load_checkpoint, load_wan_state_dict, read_metadata, save_checkpoint
from omnisync_core.model.config import CodecSpec, preset
from omnisync_core.model.dit import OmniSyncDiT

AUDIO = {"encoder": "whisper-tiny-random", "sample_rate": 16000, "feature_rate": 50, "num_layers": 4,
         "dim": 10, "frame_window": 2}  # token dim 4·10 = 40 = tiny audio_dim
CODEC = CodecSpec(type="pixel", patch=2)  # 3·2² = 12 latent channels = tiny latent_channels


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    model = OmniSyncDiT(preset("tiny", **overrides)).eval()
    with torch.no_grad():   # move the zero-initialised weights so a wrong load would show
        model.head.head.weight.normal_(0, 0.05)
        for block in getattr(model, "blocks", []):
            if hasattr(block, "audio_cross_attn"):
                block.audio_cross_attn.o.weight.normal_(0, 0.05)
    return model


def example(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 12, 2, 4, 4, generator=g)
    return dict(x=x, timestep=torch.tensor([400.0]), source=torch.randn(1, 12, 2, 4, 4, generator=g),
                audio=torch.randn(1, 2, 3, 40, generator=g), text=torch.randn(1, 5, 32, generator=g))


def saved(tmp_path, model=None, name="m.safetensors", **kw):
    model = model or tiny_model()
    path = str(tmp_path / name)
    save_checkpoint(path, model, codec=kw.pop("codec", CODEC), audio=kw.pop("audio", AUDIO), **kw)
    return path, model


def rewrite(path, out, edit):
    """Copy a checkpoint with its metadata, letting ``edit`` change the tensors."""
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, out, metadata=meta)
    return out


# -- round trip ------------------------------------------------------------------------------------

def test_round_trip_keeps_metadata_and_outputs(tmp_path):
    path, model = saved(tmp_path, train={"max_steps": 7, "betas": [0.9, 0.99]})
    assert not os.path.exists(path + ".tmp")
    meta = read_metadata(path)
    assert meta["format"] == 1 and meta["audio"] == AUDIO and meta["train"] == {"max_steps": 7, "betas": [0.9, 0.99]}
    assert meta["codec"] == {"type": "pixel", "patch": 2, "latent_channels": 12, "temporal_factor": 1,
                             "spatial_factor": 2, "latents_mean": None, "latents_std": None}
    assert meta["model"]["patch_size"] == [1, 2, 2]

    loaded, meta2 = load_checkpoint(path)
    assert meta2 == meta and loaded.config == model.config and not loaded.training
    assert loaded.config.patch_size == (1, 2, 2)
    a = example()
    with torch.no_grad():
        ref, out = model(**a), loaded(**a)
    assert ref.abs().mean() > 1e-3 and torch.equal(out, ref)

    half, _ = load_checkpoint(path, dtype=torch.bfloat16)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        assert (half(**a) - ref).abs().max() < 0.05 * ref.abs().max() + 1e-3


def test_save_refuses_inconsistent_specs(tmp_path):
    model = tiny_model()
    with pytest.raises(OmniSyncError, match="12"):
        save_checkpoint(str(tmp_path / "a.safetensors"), model, codec={"type": "pixel", "patch": 4}, audio=AUDIO)
    with pytest.raises(OmniSyncError, match="audio_dim is 40"):
        save_checkpoint(str(tmp_path / "b.safetensors"), model, codec=CODEC, audio={**AUDIO, "dim": 11})
    with pytest.raises(OmniSyncError, match="audio branch"):
        save_checkpoint(str(tmp_path / "c.safetensors"), model, codec=CODEC, audio=None)
    no_audio = tiny_model(audio_dim=0)
    path = save_checkpoint(str(tmp_path / "d.safetensors"), no_audio, codec=CODEC, audio=None)
    assert read_metadata(path)["audio"] is None


# -- refusals --------------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(OmniSyncError, match="not found"):
        load_checkpoint(str(tmp_path / "nope.safetensors"))


@pytest.mark.parametrize("name", ["model.pt", "model.safetensors"])
def test_pickle_files_are_refused(tmp_path, name):
    path = str(tmp_path / name)
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(OmniSyncError, match="only loads safetensors") as e:
        load_checkpoint(path)
    assert path in str(e.value) and "save_file" in str(e.value)


def test_plain_wan_file_without_metadata(tmp_path):
    path = str(tmp_path / "wan.safetensors")
    save_file({k: v.contiguous() for k, v in tiny_model().state_dict().items()}, path)
    with pytest.raises(OmniSyncError, match="load_wan_state_dict") as e:
        load_checkpoint(path)
    assert "plain Wan 2.1" in str(e.value)


def test_shape_mismatch_names_the_key_and_both_shapes(tmp_path):
    path, _ = saved(tmp_path)

    def widen(t):
        t["blocks.1.ffn.0.weight"] = torch.zeros(129, 64)
    bad = rewrite(path, str(tmp_path / "bad.safetensors"), widen)
    with pytest.raises(OmniSyncError, match=r"'blocks\.1\.ffn\.0\.weight' has shape \(129, 64\) .* \(128, 64\)"):
        load_checkpoint(bad)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    path, _ = saved(tmp_path)
    missing = rewrite(path, str(tmp_path / "missing.safetensors"), lambda t: t.pop("head.modulation"))
    with pytest.raises(OmniSyncError, match="lacks weights .*head.modulation"):
        load_checkpoint(missing)
    extra = rewrite(path, str(tmp_path / "extra.safetensors"), lambda t: t.update({"img_emb.proj.1.weight": torch.zeros(2)}))
    with pytest.raises(OmniSyncError, match="does not describe: img_emb.proj.1.weight"):
        load_checkpoint(extra)


def test_unknown_metadata_key_is_named(tmp_path):
    path, _ = saved(tmp_path)
    meta = read_metadata(path)
    meta["model"]["window_size"] = [-1, -1]
    out = str(tmp_path / "newer.safetensors")
    save_file(load_file(path), out, metadata={"omnisync": json.dumps(meta)})
    with pytest.raises(OmniSyncError, match="'window_size'"):
        load_checkpoint(out)


# -- Wan 2.1 initialisation ------------------------------------------------------------------------

def wan_state_dict(seed=123, **overrides):
    wan = tiny_model(seed, source_condition=False, audio_dim=0, **overrides)
    return {k: v.clone() for k, v in wan.state_dict().items()}


def test_load_wan_file_with_comfyui_prefix(tmp_path):
    sd = wan_state_dict()
    path = str(tmp_path / "wan_comfy.safetensors")
    save_file({"model.diffusion_model." + k: v for k, v in sd.items()}, path)
    model = tiny_model(seed=5)
    audio_before = model.blocks[0].audio_cross_attn.q.weight.clone()
    report = load_wan_state_dict(model, path)
    got = model.state_dict()
    for k, v in sd.items():
        if k == "patch_embedding.weight":
            assert torch.equal(got[k][:, :12], v) and torch.count_nonzero(got[k][:, 12:]) == 0
        else:
            assert torch.equal(got[k], v), k
    assert torch.equal(model.blocks[0].audio_cross_attn.q.weight, audio_before)   # OmniSync-only: kept
    assert len(report["loaded"]) == len(sd) and report["ignored"] == [] and report["shape_mismatch"] == []
    assert "blocks.1.norm_audio.weight" in report["new"] and "audio_embedding.0.weight" in report["new"]
    assert report["zero_filled"] == ["patch_embedding.weight[:, 12:24] (source channels)"]


def test_load_wan_refuses_other_shapes_and_names_the_key():
    sd = wan_state_dict(ffn_dim=96)
    with pytest.raises(OmniSyncError, match=r"'blocks\.0\.ffn\.0\.weight' has shape \(96, 64\) .* \(128, 64\)"):
        load_wan_state_dict(tiny_model(), sd)
    report = load_wan_state_dict(tiny_model(), sd, strict_shapes=False)
    assert "blocks.0.ffn.0.weight: (96, 64) vs (128, 64)" in report["shape_mismatch"]
    assert "blocks.0.ffn.0.weight" not in report["loaded"] and "blocks.0.self_attn.q.weight" in report["loaded"]

    deeper = wan_state_dict(num_layers=3)
    with pytest.raises(OmniSyncError, match="blocks.2.*no place in this model"):
        load_wan_state_dict(tiny_model(), deeper)
    partial = wan_state_dict()
    partial.pop("time_projection.1.weight")
    with pytest.raises(OmniSyncError, match="lacks Wan weights time_projection.1.weight"):
        load_wan_state_dict(tiny_model(), partial)


def test_load_wan_into_a_model_without_text_ignores_text_weights():
    sd = wan_state_dict()
    model = tiny_model(use_text=False)
    report = load_wan_state_dict(model, sd)
    assert "text_embedding.0.weight" in report["ignored"] and "blocks.0.cross_attn.q.weight" in report["ignored"]
    assert torch.equal(model.blocks[1].self_attn.k.weight, sd["blocks.1.self_attn.k.weight"])
