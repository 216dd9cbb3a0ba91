"""fp8 weights (model/fp8.py): quantisation by hand, ComfyUI's scaled-fp8 file keys, the loader and converter,
and the error fp8 adds to a forward and to one guided step on the reference's scaled-down X-Dub DiT."""

import os

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from omnisync_core.errors import OmniSyncError
from omnisync_core.model.config import preset
from omnisync_core.model.xdub_dit import XDubDiT
from omnisync_core.model.fp8 import (
    FP8_DTYPE, FP8_MAX, SCALED_FP8_KEY, FP8Linear, convert_to_fp8, dequantize_fp8, fp8_layer_names, quantize_fp8,
    split_scaled_fp8, to_scaled_fp8_state_dict, weights_nbytes,
)
from omnisync_core.model.xdub_weights import convert_xdub_fp8, load_xdub_model, xdub_config_from_shapes
from omnisync_core.sampling.schedule import FlowMatchSchedule
from omnisync_core.sampling.xdub import XDubOptions, guided_step

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "xdub")
# fp8 (e4m3fn, scaled per tensor) against bf16, both computing in bf16, on dit_tiny_weights: measured
# 0.034 (forward) and 0.0028 (the state after one guided step), relative L2; the bounds leave ~2x room
FORWARD_REL_ERR = 0.07
STEP_REL_ERR = 0.006


def rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


def test_quantize_by_hand():
    w = torch.tensor([[0.5, -2.0], [0.001, 0.0]])
    w8, scale = quantize_fp8(w)
    assert w8.dtype == FP8_DTYPE and scale.shape == () and scale.dtype == torch.float32
    assert float(scale) == pytest.approx(2.0 / FP8_MAX)
    assert float(w8.float().abs().max()) == FP8_MAX  # the largest value lands on the top of the range
    back = w8.float() * scale
    assert float(back[0, 1]) == -2.0 and float(back[1, 1]) == 0.0
    assert abs(float(back[0, 0]) - 0.5) <= 0.5 * 2 ** -4  # e4m3: 3 mantissa bits, rounding to nearest
    # plain cast: scale 1, clamped to the fp8 range
    w8, scale = quantize_fp8(torch.tensor([1000.0, 0.25]), scaled=False)
    assert float(scale) == 1.0 and w8.float().tolist() == [FP8_MAX, 0.25]
    assert float(quantize_fp8(torch.zeros(3))[1]) == 1.0


def test_scaling_keeps_small_weights_that_a_plain_cast_loses():
    torch.manual_seed(0)
    w = torch.randn(256, 256) * 0.004  # a wide layer's weights: mostly below fp8's smallest normal (2^-6)
    scaled = rel(dequantize_fp8(*quantize_fp8(w), torch.float32), w)
    plain = rel(dequantize_fp8(*quantize_fp8(w, scaled=False), torch.float32), w)
    assert scaled < 0.05 < plain


def test_fp8_linear_casts_per_call_to_bf16():
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 8)
    layer = FP8Linear.from_linear(lin)
    x = torch.randn(4, 16, dtype=torch.bfloat16)
    w = (layer.weight.float() * layer.scale_weight).to(torch.bfloat16)
    expected = F.linear(x, w, lin.bias.detach().to(torch.bfloat16))
    out = layer(x)
    assert out.dtype == torch.bfloat16 and torch.equal(out, expected)
    assert set(layer.state_dict()) == {"weight", "bias", "scale_weight"}  # ComfyUI's keys


def test_state_dict_round_trip_in_memory():
    torch.manual_seed(0)
    state = {"a.weight": torch.randn(4, 4), "a.bias": torch.randn(4), "n.weight": torch.ones(4)}
    out = to_scaled_fp8_state_dict(state, ["a"])
    marker, scaled, own = split_scaled_fp8(out)
    assert marker and scaled == ["a"] and sorted(own) == sorted(state)
    assert out["a.weight"].dtype == FP8_DTYPE and torch.equal(out["n.weight"], state["n.weight"])
    assert rel(dequantize_fp8(out["a.weight"], out["a.scale_weight"], torch.float32), state["a.weight"]) < 0.05
    with pytest.raises(OmniSyncError, match="no weight"):
        to_scaled_fp8_state_dict(state, ["missing"])


def test_weights_bytes_full_size_fp8_is_about_half():
    with torch.device("meta"):
        model = XDubDiT(preset("xdub-5b"), dtype=torch.bfloat16)
    bf16 = weights_nbytes(model)
    fp8 = weights_nbytes(convert_to_fp8(model))
    print(f"xdub-5b weights: bf16 {bf16 / 2 ** 30:.2f} GiB, fp8 {fp8 / 2 ** 30:.2f} GiB ({fp8 / bf16:.3f})")
    assert 0.5 <= fp8 / bf16 <= 0.53  # the blocks' linears halve; embeddings, head, norms stay bf16


def test_converter_writes_comfyui_scaled_fp8_and_the_loader_reads_it(tmp_path):
    from tiny import make_xdub_checkpoint

    src = make_xdub_checkpoint(str(tmp_path))
    dst = str(tmp_path / "xdub_fp8_scaled.safetensors")
    info = convert_xdub_fp8(src, dst)
    with safe_open(src, "pt") as a, safe_open(dst, "pt") as b:
        original = {k: a.get_tensor(k) for k in a.keys()}
        converted = {k: b.get_tensor(k) for k in b.keys()}
    with torch.device("meta"):
        names = fp8_layer_names(XDubDiT(xdub_config_from_shapes({k: v.shape for k, v in original.items()})))
    assert info["layers"] == len(names) > 0
    marker = converted.pop(SCALED_FP8_KEY)
    assert marker.dtype == FP8_DTYPE and marker.numel() == 0  # ComfyUI: fp8 e4m3fn, fp8 matmul allowed
    for key, t in original.items():
        layer = key[:-len(".weight")]
        if key.endswith(".weight") and layer in names:
            w8, scale = converted.pop(key), converted.pop(layer + ".scale_weight")
            assert w8.dtype == FP8_DTYPE and scale.shape == () and scale.dtype == torch.float32
            assert rel(w8.float() * scale, t) < 0.05  # ComfyUI's dequantisation: weight · scale_weight
        else:
            assert torch.equal(converted.pop(key), t)
    assert not converted  # nothing else in the file

    bf16 = load_xdub_model(src)
    from_file = load_xdub_model(dst)  # a scaled-fp8 file stays fp8
    on_load = load_xdub_model(src, weight_dtype="fp8_e4m3fn")
    assert isinstance(from_file.blocks[0].self_attn.q, FP8Linear)
    for a, b in zip(from_file.state_dict().values(), on_load.state_dict().values()):
        assert a.dtype == b.dtype and torch.equal(a.float(), b.float())
    assert weights_nbytes(from_file) < weights_nbytes(bf16)
    with pytest.raises(OmniSyncError, match="already a scaled-fp8"):
        convert_xdub_fp8(dst, str(tmp_path / "again.safetensors"))


def test_bad_weight_dtype_is_refused_before_loading(tmp_path):
    with pytest.raises(OmniSyncError, match="fp8_e4m3fn"):
        load_xdub_model(str(tmp_path / "missing.safetensors"), weight_dtype="fp8_e5m2")


@pytest.fixture(scope="module")
def golden():
    with safe_open(os.path.join(FIXTURES, "sampler_step.safetensors"), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, int(f.metadata()["step"])


def test_fp8_error_against_bf16_on_a_forward_and_a_guided_step(golden):
    t, k = golden
    path = os.path.join(FIXTURES, "dit_tiny_weights.safetensors")
    bf16 = load_xdub_model(path, head_dim=32, audio_head_dim=16)
    fp8 = load_xdub_model(path, head_dim=32, audio_head_dim=16, weight_dtype="fp8_e4m3fn")
    B = 3
    kw = dict(source=t["reference"][None].expand(B, -1, -1, -1, -1).bfloat16(), audio=t["audio"][None].bfloat16(),
              text=t["text"][None].bfloat16(), motion_frames=2)
    x = t["x_in"][None].expand(B, -1, -1, -1, -1).bfloat16()
    sig = FlowMatchSchedule(30, 5.0).sigmas
    with torch.no_grad():
        forward = [m(x, torch.tensor([700.0, 400.0, 100.0]), **kw) for m in (bf16, fp8)]
        step = [guided_step(m, t["x_in"].clone(), float(sig[k]), float(sig[k + 1]), t["reference"], t["noise"],
                            t["audio"], t["text"], XDubOptions(), t["motion_latents"])[0] for m in (bf16, fp8)]
    e_forward, e_step = rel(forward[1], forward[0]), rel(step[1], step[0])
    print(f"fp8 vs bf16: forward {e_forward:.4f}, one guided step {e_step:.5f} (relative L2)")
    assert 0 < e_forward <= FORWARD_REL_ERR and 0 < e_step <= STEP_REL_ERR


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fp8_linear_on_cuda_equals_the_cpu():
    torch.manual_seed(0)
    layer = FP8Linear.from_linear(torch.nn.Linear(256, 128))
    x = torch.randn(8, 256, dtype=torch.bfloat16)
    expected = layer(x).float()
    got = layer.to("cuda")(x.cuda()).float().cpu()
    assert layer.weight.dtype == FP8_DTYPE and rel(got, expected) <= 1e-2  # bf16 matmuls of different kernels
