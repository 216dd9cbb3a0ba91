"""umT5 read from the single files as published, against the reference's Wan T5 encoder (golden fixture, float32).

tests/fixtures/xdub/umt5_wan_tiny_weights.safetensors is the state dict of the X-Dub reference's ``WanTextEncoder``
(diffsynth/models/wan_video_text_encoder.py: vocab 64, dim 32, 4 heads, 2 layers, FFN 48, 8 buckets, no shared
position table) with seeded random weights; umt5_golden.safetensors holds two id rows padded to 8 with their mask
("" → ``</s>`` alone, and a 6-token prompt) and the reference's context for them, zeroed past the real tokens as its
``encode_prompt`` does. Recorded on the CPU outside this repository.
"""

import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from omnisync_core.errors import OmniSyncError
from omnisync_core.model.t5 import UMT5_EOS_ID, load_umt5_file
from xdub_standins import write_umt5_comfy, write_umt5_tokenizer, write_umt5_wan

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "xdub")
WAN = os.path.join(FIXTURES, "umt5_wan_tiny_weights.safetensors")
GOLDEN_ATOL = 5e-6  # measured: 7.2e-7


def golden():
    with safe_open(os.path.join(FIXTURES, "umt5_golden.safetensors"), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def test_wan_layout_matches_the_reference():
    g, enc = golden(), load_umt5_file(WAN)
    assert enc.model.config.num_layers == 2 and enc.model.config.relative_attention_num_buckets == 8
    for row in range(2):
        n = int(g["mask"][row].sum())
        got = enc.encode_ids(g["ids"][row:row + 1, :n])
        assert float((got - g["context"][row, :n]).abs().max()) < GOLDEN_ATOL
    assert float(g["context"][1].abs().max()) > 0.5


def test_empty_prompt_is_one_eos_token_without_a_tokenizer():
    g, enc = golden(), load_umt5_file(WAN)
    assert int(g["ids"][0, 0]) == UMT5_EOS_ID
    empty = enc.encode("")
    assert empty.shape == (1, 32) and float((empty - g["context"][0, :1]).abs().max()) < GOLDEN_ATOL
    with pytest.raises(OmniSyncError, match="umt5-xxl.*--t5-tokenizer"):
        enc.encode("a face")


def test_comfy_layouts_give_the_same_encoder(tmp_path):
    wan = write_umt5_wan(str(tmp_path / "models_t5_umt5-xxl-enc-bf16.safetensors"))
    fp8 = write_umt5_comfy(str(tmp_path / "umt5_xxl_fp8_e4m3fn_scaled.safetensors"), wan)
    fp16 = write_umt5_comfy(str(tmp_path / "umt5_xxl_fp16.safetensors"), wan, fp8=False)
    a, b, c = (load_umt5_file(p).model.state_dict() for p in (wan, fp8, fp16))
    raw = load_file(fp8)
    q = "encoder.block.0.layer.0.SelfAttention.q.weight"
    assert raw[q].dtype == torch.float8_e4m3fn and "scaled_fp8" in raw
    assert torch.equal(b[q], raw[q].float() * raw[q[:-len("weight")] + "scale_weight"].float())  # dequantised exactly
    assert set(a) == set(b) == set(c)
    for k in a:  # bf16 → fp16 is exact for these magnitudes; fp8 is within its step (2^-3 relative)
        assert torch.equal(a[k], c[k]), k
        assert float((a[k] - b[k]).abs().max()) <= 0.07 * float(a[k].abs().max()) + 1e-6, k


def test_tokenizer_folder_encodes_a_prompt(tmp_path):
    wan = write_umt5_wan(str(tmp_path / "models_t5_umt5-xxl-enc-bf16.safetensors"))
    enc = load_umt5_file(wan, write_umt5_tokenizer(str(tmp_path / "umt5-xxl")))
    out = enc.encode("  a   face that talks ")  # whitespace cleaned as the reference does: 4 words + </s>
    assert out.shape == (5, 16)
    assert torch.allclose(enc.encode(""), enc.encode_ids(torch.tensor([[UMT5_EOS_ID]])))


def test_wrong_files_are_named(tmp_path):
    from xdub_standins import write_wan22_vae

    with pytest.raises(OmniSyncError, match="not found.*huggingface.co/KlingTeam/X-Dub.*text_encoders"):
        load_umt5_file(str(tmp_path / "none.safetensors"))
    with pytest.raises(OmniSyncError, match="not a umT5 text encoder.*models_t5_umt5-xxl-enc-bf16"):
        load_umt5_file(write_wan22_vae(str(tmp_path / "vae.safetensors")))
    with pytest.raises(OmniSyncError, match="tokenizer"):
        load_umt5_file(WAN, str(tmp_path / "no-tokenizer"))
