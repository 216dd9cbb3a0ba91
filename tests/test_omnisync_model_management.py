"""Load OmniSync Model under ComfyUI's model management (fakes of comfy.ops / model_patcher / model_management with
the real rules): the loader builds the DiT and the U-Net from ComfyUI's layer classes (``comfy.ops``), so when a
model does not fit the GPU, every weight ComfyUI leaves in CPU memory is cast to the GPU per call (a plain
``torch.nn`` layer left there would make the forward fail with a device mismatch); Lip Sync and the split nodes
give the fully loaded model's frames.

No GPU here: which weights ComfyUI moves is recorded (``Module.to`` during ``load_models_gpu``), and the test
checks that every other weight casts per call or is read through ``omnisync_core.model.dit.on``."""

import os

import pytest
import torch

from fakes import comfy_fakes, fresh_model_management
from tiny import (AUDIO_TOKEN_DIM, WHISPER_D_MODEL, WHISPER_LAYERS, make_frames, make_model_checkpoint,
                  make_speech_like, make_whisper_folder)

DIT, UNET = "tiny-omnisync.safetensors", "tiny-unet.safetensors"
# the weight-bearing layer kinds of each network (the DiT's float32 LayerNorm and RMSNorm are its own)
LAYER_KINDS = {DIT: {"Linear", "Conv3d"}, UNET: {"Linear", "Conv1d", "Conv2d", "GroupNorm", "LayerNorm"}}
FPS = 25.0
LIPSYNC = dict(fps=FPS, length_mode="follow_video", tau=0.92, steps=3, seed=0, omega_peak=3.0, mouth="point",
               mouth_x=0.5, mouth_y=0.6, window=4, overlap=1, composite=False)
SAMPLER = dict(omega_base=1.0, omega_peak=3.0, sigma_spatial=0.1, gamma=1.5, mouth="point", mouth_x=0.3, mouth_y=0.7,
               window=0, overlap=2)


def make_unet_checkpoint(root: str) -> str:
    """A random tiny U-Net (pixel codec, patch 1) for the random tiny Whisper, every weight non-zero."""
    from omnisync_core.audio.features import AudioFeatureSpec
    from omnisync_core.model.checkpoint import save_checkpoint
    from omnisync_core.model.config import CodecSpec
    from omnisync_core.model.unet import OmniSyncUNet, UNetConfig

    torch.manual_seed(1)
    spec = AudioFeatureSpec(encoder="whisper-tiny-random", num_layers=WHISPER_LAYERS + 1, dim=WHISPER_D_MODEL)
    cfg = UNetConfig(latent_channels=3, channels=(8, 16), audio_dim=AUDIO_TOKEN_DIM, audio_layers=WHISPER_LAYERS + 1,
                     audio_tokens=1 + 2 * spec.frame_window, adapter_dim=8, freq_dim=8, mouth_params=0)
    model = OmniSyncUNet(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # the zero-initialised output conv too: a fresh U-Net edits nothing
    codec = CodecSpec(type="pixel", patch=1, latent_channels=3, temporal_factor=1, spatial_factor=1)
    return save_checkpoint(os.path.join(root, UNET), model, codec=codec, audio=spec.to_dict())


@pytest.fixture(scope="module")
def omnisync(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy")
    folder = base / "models" / "omnisync"
    os.makedirs(folder)
    make_model_checkpoint(str(folder))
    make_unet_checkpoint(str(folder))
    whisper = make_whisper_folder(str(tmp_path_factory.mktemp("whisper")))
    with comfy_fakes(base):
        import nodes
        from omnisync_core.audio.whisper import load_whisper

        yield nodes, load_whisper(whisper, device="cpu")


@pytest.fixture
def mm(omnisync):
    with fresh_model_management() as mm:
        yield mm


def load_recording_moves(mm, patcher, monkeypatch) -> list:
    """``mm.load_models_gpu([patcher])``; returns the modules it moved to the load device (``.to``)."""
    moved = []
    to = torch.nn.Module.to

    def recording_to(module, *args, **kwargs):
        moved.append(module)
        return to(module, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(torch.nn.Module, "to", recording_to)
        mm.load_models_gpu([patcher])
    return moved


def out_of_reach(net, moved) -> list:
    """Names of the weights a GPU run could not reach: those of modules ComfyUI neither moved to the load device
    nor set to cast per call (``comfy_cast_weights``), except the DiT's own norms and adaLN tables, which the
    forward reads through ``on`` (a copy on the input's device per call)."""
    from omnisync_core.model.dit import DiTBlock, Head, LayerNorm, RMSNorm

    reached = {id(p) for m in moved for p in m.parameters()}
    names = []
    for name, module in net.named_modules():
        if getattr(module, "comfy_cast_weights", False) or isinstance(module, (RMSNorm, LayerNorm, DiTBlock, Head)):
            continue
        names += [f"{name}.{n}" for n, p in module.named_parameters(recurse=False) if id(p) not in reached]
    return names


def lipsync(nodes, model, encoder):
    wave = torch.from_numpy(make_speech_like(6 / FPS, sr=16000, seed=0))
    audio = {"waveform": wave[None, None], "sample_rate": 16000}
    return nodes.OmniSyncLipSync.execute(model, encoder, make_frames(T=6), audio, **LIPSYNC)[0]


def split_nodes(nodes, model, encoder):
    frames = make_frames(T=6)
    wave = torch.from_numpy(make_speech_like(6 / FPS, sr=16000, seed=1))
    audio = {"waveform": wave[None, None], "sample_rate": 16000}
    oa, _ = nodes.OmniSyncAudioEncode.execute(audio, FPS, 6, "follow_video", audio_encoder=encoder, images=frames)
    (lat,) = nodes.OmniSyncNoiseInit.execute(model, frames, 0.9, 3, 1.0, 3, omnisync_audio=oa)
    (sampled, _, _) = nodes.OmniSyncSampler.execute(model, lat, oa, **SAMPLER)
    return nodes.OmniSyncVideoAssemble.execute(sampled, oa, True, 0.15, 2.0)[0]


@pytest.mark.parametrize("name", [DIT, UNET])
def test_the_loader_builds_the_network_from_comfy_ops_layers(omnisync, mm, name):
    """offload none: every Linear, convolution and norm layer with weights is a comfy.ops layer (the DiT's own
    float32 norms excepted: read through ``on``); offload blocks keeps the library's torch.nn layers."""
    import comfy.model_patcher
    import comfy.ops

    from omnisync_core.model.dit import LayerNorm, RMSNorm

    nodes, _ = omnisync
    (model,) = nodes.OmniSyncModelLoader.execute(name, "fp32")
    assert isinstance(model.patcher, comfy.model_patcher.ModelPatcher) and model.patcher.model is model.model
    layers = [m for m in model.model.modules()
              if list(m.parameters(recurse=False)) and not list(m.children()) and not isinstance(m, (LayerNorm, RMSNorm))]
    assert layers and all(type(m).__qualname__.startswith("disable_weight_init.") for m in layers), \
        sorted({type(m).__qualname__ for m in layers})
    assert {type(m).__name__ for m in layers} == LAYER_KINDS[name]
    assert isinstance(model.model.head.head if name == DIT else model.model.stem,
                      (comfy.ops.disable_weight_init.Linear, comfy.ops.disable_weight_init.Conv2d))
    assert mm.current_loaded_models == []  # loading the file does not load the weights to the device

    (swapped,) = nodes.OmniSyncModelLoader.execute(name, "fp32", "blocks", 1)
    assert swapped.patcher is None
    assert not any(hasattr(m, "comfy_cast_weights") for m in swapped.model.modules())


@pytest.mark.parametrize("name", [DIT, UNET])
def test_partial_loading_leaves_no_weight_out_of_reach(omnisync, mm, monkeypatch, name):
    """A quarter of the model fits: what ComfyUI does not move casts per call. Fails with plain torch.nn layers,
    which partial loading neither moves nor casts."""
    nodes, _ = omnisync
    (model,) = nodes.OmniSyncModelLoader.execute(name, "fp32")
    mm.LOWVRAM_MODEL_MEMORY = model.patcher.model_size() // 4
    moved = load_recording_moves(mm, model.patcher, monkeypatch)
    assert out_of_reach(model.model, moved) == []
    assert model.model.model_lowvram and 0 < model.model.model_loaded_weight_memory < model.patcher.model_size() // 4


@pytest.mark.parametrize("budget", ["quarter", "none"])  # none: --novram, where nothing is loaded
@pytest.mark.parametrize("name", [DIT, UNET])
def test_partial_loading_gives_the_fully_loaded_frames(omnisync, mm, name, budget):
    """Lip Sync and the split nodes (Audio Encode → Noise Init → Sampler → Video Assemble) on a partially loaded
    model: the frames of the fully loaded one, bit for bit."""
    nodes, encoder = omnisync
    (full,) = nodes.OmniSyncModelLoader.execute(name, "fp32")
    expected = lipsync(nodes, full, encoder), split_nodes(nodes, full, encoder)
    assert not full.model.model_lowvram
    (part,) = nodes.OmniSyncModelLoader.execute(name, "fp32")
    mm.LOWVRAM_MODEL_MEMORY = part.patcher.model_size() // 4 if budget == "quarter" else 1
    got = lipsync(nodes, part, encoder), split_nodes(nodes, part, encoder)
    assert part.model.model_lowvram
    assert any(getattr(m, "comfy_cast_weights", False) for m in part.model.modules())
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_load_checkpoint_with_host_operations_loads_the_same_weights(omnisync):
    """The library default stays torch.nn; a host's operations give the same weights, bit for bit, and the same
    velocity (bf16 weights: the layers compute in the weights' dtype as torch.nn's do)."""
    import comfy.ops
    import folder_paths

    from omnisync_core.model.checkpoint import load_checkpoint

    for name in (DIT, UNET):
        path = folder_paths.get_full_path("omnisync", name)
        plain, _ = load_checkpoint(path, dtype=torch.bfloat16)
        hosted, _ = load_checkpoint(path, dtype=torch.bfloat16, operations=comfy.ops.disable_weight_init)
        assert {type(m).__module__ for m in plain.modules() if isinstance(m, torch.nn.Linear)} == {"torch.nn.modules.linear"}
        assert any(isinstance(m, comfy.ops.disable_weight_init.Linear) for m in hosted.modules())
        a, b = plain.state_dict(), hosted.state_dict()
        assert a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)
        cfg = plain.config
        g = torch.Generator().manual_seed(0)
        x = torch.randn(1, cfg.latent_channels, 2, 8, 8, generator=g)
        tokens = getattr(cfg, "audio_tokens", 3)
        audio = torch.randn(1, 2, tokens, cfg.audio_dim, generator=g)
        with torch.no_grad():
            args = (x, torch.tensor([500.0]))
            kw = dict(source=torch.randn_like(x), audio=audio)
            assert torch.equal(plain(*args, **kw), hosted(*args, **kw))
