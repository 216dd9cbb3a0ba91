"""X-Dub under ComfyUI's model management (fakes of comfy.ops / model_patcher / model_management with the real
rules): the loader gives a ModelPatcher over a network of comfy.ops layers, the Sampler loads it through
load_models_gpu (after another model of the graph), partial loading and fp8 weights give the take they should."""

import os

import pytest
import torch

from fakes import comfy_fakes, fresh_model_management
from fakes.comfy_vae import FakeComfyWan22VAE
from tiny import make_frames, make_speech_like, make_wav2vec2_folder, make_whisper_folder, make_xdub_checkpoint

FPS = 25.0
CROP = 64
SAMPLER = dict(steps=2, shift=5.0, seed=7, tau=1.0, ref_cfg_scale=2.5, ref_cfg_schedule=True, omega_base=10.0,
               omega_peak=10.0, sigma_spatial=0.15, gamma=1.5, border_width=1, color_correction=False)


@pytest.fixture(scope="module")
def xdub(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy")
    os.makedirs(base / "models" / "diffusion_models")
    os.makedirs(base / "models" / "audio_encoders")
    model = make_xdub_checkpoint(str(base / "models" / "diffusion_models"))
    whisper = make_whisper_folder(str(base / "models" / "audio_encoders"))
    wav2vec = make_wav2vec2_folder(str(base / "models" / "audio_encoders"))
    with comfy_fakes(base):
        import nodes

        (encoders,) = nodes.OmniSyncXDubAudioLoader.execute(os.path.basename(whisper), os.path.basename(wav2vec))
        yield nodes, os.path.basename(model), encoders


@pytest.fixture
def mm(xdub):
    with fresh_model_management() as mm:
        yield mm


def take(nodes, model, encoders):
    wave = torch.from_numpy(make_speech_like(0.5, sr=16000, seed=0))
    audio = {"waveform": wave[None, None], "sample_rate": 16000}
    (latent,) = nodes.OmniSyncXDubEncode.execute(model, FakeComfyWan22VAE(), encoders,
                                                  make_frames(T=6, H=CROP, W=CROP), audio, FPS)
    sampled, _ = nodes.OmniSyncXDubSampler.execute(model, latent, **SAMPLER)
    return sampled.sampled.latents


def test_the_loader_gives_a_model_patcher_over_comfy_ops_layers(xdub, mm):
    import comfy.model_patcher
    import comfy.ops

    nodes, name, _ = xdub
    (model,) = nodes.OmniSyncXDubModelLoader.execute(name, "fp32", "default")
    assert isinstance(model.patcher, comfy.model_patcher.ModelPatcher) and model.model is model.patcher.model
    linears = [m for m in model.model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(isinstance(m, comfy.ops.disable_weight_init.Linear) for m in linears)
    assert isinstance(model.model.patch_embedding, comfy.ops.disable_weight_init.Conv3d)
    assert model.patcher.model_size() == sum(p.numel() * 4 for p in model.model.parameters()) + \
        sum(b.numel() * 4 for b in model.model.buffers())
    assert mm.current_loaded_models == []  # loading the file does not load the weights to the device


def test_the_sampler_asks_model_management_after_another_model(xdub, mm):
    """A second large model of the graph (here any patcher) loaded first; the X-Dub Sampler's load_models_gpu puts
    X-Dub at the head of ComfyUI's list of loaded models, beside it."""
    import comfy.model_patcher

    nodes, name, encoders = xdub
    other = comfy.model_patcher.ModelPatcher(torch.nn.Linear(8, 8), torch.device("cpu"), torch.device("cpu"))
    mm.load_models_gpu([other])
    (model,) = nodes.OmniSyncXDubModelLoader.execute(name, "fp32", "default")
    take(nodes, model, encoders)
    assert [m.model for m in mm.current_loaded_models] == [model.patcher, other]


def test_partial_loading_gives_the_same_take(xdub, mm):
    """When X-Dub does not fit, ComfyUI leaves layers on the offload device and casts them per call
    (comfy_cast_weights): the take is the fully loaded one."""
    nodes, name, encoders = xdub
    (full,) = nodes.OmniSyncXDubModelLoader.execute(name, "fp32", "default")
    expected = take(nodes, full, encoders)
    (part,) = nodes.OmniSyncXDubModelLoader.execute(name, "fp32", "default")
    mm.LOWVRAM_MODEL_MEMORY = part.patcher.model_size() // 4
    got = take(nodes, part, encoders)
    cast = [m for m in part.model.modules() if getattr(m, "comfy_cast_weights", False)]
    assert part.model.model_lowvram and cast  # some layers were left to cast per call
    assert part.model.model_loaded_weight_memory < part.patcher.model_size() // 4
    assert torch.equal(got, expected)


def test_partial_loading_computes_on_the_load_device_when_the_first_layer_stays_behind(xdub, mm):
    """The X-Dub Sampler passes the patcher's load device and the model's compute dtype: the first parameter, one
    ComfyUI never moves (a parameter of a module with children), is on meta, and the take equals the fully loaded
    network's (test_compute_device.py has the samplers' own tests)."""
    from test_compute_device import record_inputs, stray_first_parameter

    nodes, name, encoders = xdub
    (full,) = nodes.OmniSyncXDubModelLoader.execute(name, "fp32", "default")
    expected = take(nodes, full, encoders)
    (part,) = nodes.OmniSyncXDubModelLoader.execute(name, "fp32", "default")
    stray_first_parameter(part.model)
    mm.LOWVRAM_MODEL_MEMORY = part.patcher.model_size() // 4
    seen = record_inputs(part.model)
    got = take(nodes, part, encoders)
    assert part.model.model_lowvram and part.model.stray.device.type == "meta"
    assert torch.equal(got, expected)
    assert seen and all(call["x"] == ("cpu", torch.float32) and call["audio"] == ("cpu", torch.float32)
                        for call in seen)


def test_fp8_weights_halve_the_blocks_and_stay_close(xdub, mm, tmp_path):
    """weight_dtype fp8_e4m3fn: the blocks' linear weights in 1 byte with a scale each (ComfyUI's scaled-fp8 layers),
    a take close to bf16's; a scaled-fp8 file (the converter's) loads as fp8 by itself and gives the same take."""
    import comfy.ops
    import folder_paths

    from omnisync_core.model.xdub_weights import convert_xdub_fp8

    nodes, name, encoders = xdub
    (ref,) = nodes.OmniSyncXDubModelLoader.execute(name, "bf16", "default")
    (fp8,) = nodes.OmniSyncXDubModelLoader.execute(name, "bf16", "fp8_e4m3fn")
    linears = [(n, m) for n, m in fp8.model.named_modules() if isinstance(m, torch.nn.Linear)]
    blocks = [m for n, m in linears if n.startswith("blocks.")]
    assert blocks and all(m.weight.dtype == torch.float8_e4m3fn for m in blocks)
    assert all(type(m).__qualname__ == "scaled_fp8_ops.<locals>.scaled_fp8_op.Linear" for _, m in linears)
    assert fp8.model.patch_embedding.weight.dtype == torch.bfloat16  # outside the blocks: the compute dtype
    block_values = sum(m.weight.numel() for m in blocks)
    # 2 bytes → 1 per block weight; one float32 scale per linear layer
    assert ref.report["weight_bytes"] - fp8.report["weight_bytes"] == block_values - 4 * len(linears)
    a, b = take(nodes, ref, encoders), take(nodes, fp8, encoders)
    rel = float((a - b).norm() / a.norm())
    assert 0 < rel < 0.05, rel

    src = folder_paths.get_full_path("diffusion_models", name)
    dst = os.path.join(os.path.dirname(src), "xdub_fp8_scaled.safetensors")
    convert_xdub_fp8(src, dst)
    try:
        (from_file,) = nodes.OmniSyncXDubModelLoader.execute(os.path.basename(dst), "bf16", "default")
        assert all(m.weight.dtype == torch.float8_e4m3fn for n, m in from_file.model.named_modules()
                   if n.startswith("blocks.") and isinstance(m, torch.nn.Linear))
        assert isinstance(from_file.model.blocks[0].ffn[0], comfy.ops.manual_cast.Linear)
        assert torch.equal(take(nodes, from_file, encoders), b)
    finally:
        os.remove(dst)
