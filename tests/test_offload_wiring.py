"""Block swap wired to every way of loading an OmniSync model: the U-Net (bundled architecture) swaps its
residual blocks in the order forward runs them; ``place_model``, ``api.load_runtime(offload="blocks")``, the CLI's
``--offload`` and the loader node's ``offload = blocks`` give the same frames as no swap."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from fakes import comfy_fakes
from omnisync_core.errors import OmniSyncError
from omnisync_core.model.offload import place_model, swappable_blocks
from omnisync_core.model.unet import OmniSyncUNet, UNetConfig
from tiny import make_frames, make_model_checkpoint, make_speech_like, make_whisper_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def random_unet():
    torch.manual_seed(0)
    model = OmniSyncUNet(UNetConfig(latent_channels=12, channels=(8, 16), audio_dim=64, audio_layers=2,
                                    audio_tokens=3, adapter_dim=8, freq_dim=8, mouth_params=0)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # the zero-initialised output conv too: every block matters
    return model


def unet_inputs():
    g = torch.Generator().manual_seed(1)
    x, src = torch.randn(1, 12, 2, 8, 8, generator=g), torch.randn(1, 12, 2, 8, 8, generator=g)
    return x, src, torch.randn(1, 2, 3, 64, generator=g)


def test_unet_swap_blocks_are_in_forward_order():
    model = random_unet()
    order, hooks = [], []
    for m in list(model.down) + [model.middle] + list(model.up):
        hooks.append(m.register_forward_pre_hook(lambda mod, args: order.append(id(mod))))
    x, src, audio = unet_inputs()
    with torch.no_grad():
        model(x, 300.0, source=src, audio=audio)
    assert order == [id(m) for m in swappable_blocks(model)]
    assert len(order) == len(model.down) + 1 + len(model.up)


@pytest.mark.parametrize("resident", [0, 2, 99])
def test_unet_block_swap_gives_identical_output(resident):
    model = random_unet()
    x, src, audio = unet_inputs()
    with torch.no_grad():
        expected = model(x, 300.0, source=src, audio=audio)
        swap = place_model(model, "cpu", "blocks", resident)
        n = len(swappable_blocks(model))
        assert swap.swapped == list(range(min(resident, n), n))  # more than the model has: all resident
        assert torch.equal(model(x, 300.0, source=src, audio=audio), expected)
    swap.remove()


def test_place_model_refusals():
    model = random_unet()
    with pytest.raises(OmniSyncError, match="offload must be one of none, blocks"):
        place_model(model, "cpu", "disk")
    with pytest.raises(OmniSyncError, match="resident_blocks must be a whole number >= 0"):
        place_model(model, "cpu", "blocks", -1)
    with pytest.raises(OmniSyncError, match="made of blocks"):
        place_model(torch.nn.Linear(2, 2), "cpu", "blocks")
    assert place_model(model, "cpu", "none") is None


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from omnisync_core.io.video import write_video
    from omnisync_core.io.audio import write_wav

    base = tmp_path_factory.mktemp("offload")
    os.makedirs(base / "models" / "omnisync")
    model = make_model_checkpoint(str(base / "models" / "omnisync"))
    whisper = make_whisper_folder(str(base))
    video, audio = base / "in.mp4", base / "speech.wav"
    write_video(str(video), make_frames(T=12), 25.0)
    write_wav(str(audio), make_speech_like(0.5), 16000)
    return base, model, whisper, str(video), str(audio)


def test_load_runtime_blocks_equals_none(files):
    from omnisync_core.api import OmniSyncPipeline, load_runtime, resolve_options

    _, model, whisper, _, _ = files
    frames = make_frames(T=12)
    wave = make_speech_like(0.5)
    outs = []
    for offload in ("none", "blocks"):
        net, codec, enc, meta = load_runtime(model, whisper, "cpu", torch.float32, offload=offload, resident_blocks=1)
        opts, _ = resolve_options(meta, num_steps=3, window=4, overlap=1, mouth=(0.5, 0.6))
        outs.append(OmniSyncPipeline(net, codec, enc)(frames, 25.0, wave, 16000, opts).frames)
    assert torch.equal(outs[0], outs[1])
    with pytest.raises(OmniSyncError, match="offload must be one of"):
        load_runtime(model, whisper, "cpu", torch.float32, offload="gpu")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "omnisync_core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_cli_offload_equals_no_offload(files, tmp_path):
    from omnisync_core.io.video import read_video

    _, model, whisper, video, audio = files
    common = ["sync", "--video", video, "--audio", audio, "--model", model, "--whisper", whisper, "--quiet",
              "--steps", "3", "--dtype", "fp32", "--mouth", "0.5,0.6"]
    plain = run_cli(*common, "-o", str(tmp_path / "a.mp4"))
    swapped = run_cli(*common, "-o", str(tmp_path / "b.mp4"), "--offload", "--resident-blocks", "1")
    assert plain.returncode == 0 and swapped.returncode == 0, plain.stderr + swapped.stderr
    a, _ = read_video(str(tmp_path / "a.mp4"))
    b, _ = read_video(str(tmp_path / "b.mp4"))
    assert torch.equal(a, b)


def test_cli_offload_flag_errors(files, tmp_path):
    _, model, whisper, video, audio = files
    common = ["sync", "--video", video, "--audio", audio, "--model", model, "--whisper", whisper, "--quiet",
              "--steps", "1", "--dtype", "fp32"]
    bad = run_cli(*common, "-o", str(tmp_path / "a.mp4"), "--offload", "--resident-blocks", "-2")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "--resident-blocks must be >= 0" in bad.stderr and not os.path.exists(tmp_path / "a.mp4")
    ignored = run_cli(*common, "-o", str(tmp_path / "b.mp4"), "--resident-blocks", "2")
    assert ignored.returncode == 0, ignored.stderr
    assert "warning: --resident-blocks 2 does nothing without --offload" in ignored.stderr


def test_loader_node_blocks_equals_none(files):
    base, model, whisper, _, _ = files
    frames = make_frames(T=12)
    wave = make_speech_like(0.5, sr=22050)
    audio = {"waveform": torch.from_numpy(np.stack([wave]))[None], "sample_rate": 22050}
    with comfy_fakes(base):
        import comfy.model_management as mm
        import nodes
        from omnisync_core.audio.whisper import load_whisper

        encoder = load_whisper(whisper, device="cpu")
        outs = []
        for offload in ("none", "blocks"):
            mm.calls.clear()
            (m,) = nodes.OmniSyncModelLoader.execute(os.path.basename(model), "fp32", offload, 1)
            assert (m.patcher is None) == (offload == "blocks") and (m.swap is None) == (offload == "none")
            images = nodes.OmniSyncLipSync.execute(m, encoder, frames, audio, 25.0, "follow_video", 0.92, 3, 0,
                                                   3.0, "point", 0.5, 0.6, 4, 1, False)[0]
            # ComfyUI's model management loads the patcher (none); a swapped model is not handed to it (blocks)
            assert any(c[0] == "load_models_gpu" for c in mm.calls) == (offload == "none")
            outs.append(images)
        assert torch.equal(outs[0], outs[1])
        assert nodes.OmniSyncModelLoader.INPUT_TYPES()["optional"]["offload"][1]["options"] == ["none", "blocks"]
