"""The samplers build their inputs and call the network on the caller's device and in the caller's dtype (the
pipelines', ComfyUI's load device and compute dtype), not on the network's first parameter's: ComfyUI's partial
loading may leave that layer in CPU memory (cast per call) while the network computes on the GPU, and every input
would then be built on the CPU.

On a CPU-only machine a first parameter on the ``meta`` device stands for it: it holds no data, so an input built
there makes the network fail, and its dtype (bf16) is not the one the network computes in; no forward reads it."""

import pytest
import torch
from torch import nn

from omnisync_core.sampling.guidance import GuidanceConfig
from omnisync_core.sampling.sampler import compute_placement, sample_windowed
from omnisync_core.sampling.schedule import FlowMatchSchedule

STRAY_DTYPE = torch.bfloat16
INPUTS = ("x", "timestep", "source", "audio", "text")  # the network's tensor inputs


def stray_first_parameter(net: nn.Module) -> nn.Module:
    """``net`` with a data-less parameter on the meta device that ``net.parameters()`` yields first (a module's own
    parameters come before its children's); the network's forward never reads it."""
    assert not list(net.named_parameters(recurse=False))  # else the stray one would not come first
    net.register_parameter("stray", nn.Parameter(torch.empty(4, dtype=STRAY_DTYPE, device="meta"), requires_grad=False))
    assert next(net.parameters()) is net.stray
    return net


def record_inputs(net: nn.Module) -> list:
    """Every forward's tensor inputs as {name: (device type, dtype)}."""
    seen = []

    def hook(module, args, kwargs):
        named = {"x": args[0], "timestep": args[1], **kwargs}
        seen.append({k: (v.device.type, v.dtype) for k, v in named.items() if isinstance(v, torch.Tensor)})

    net.register_forward_pre_hook(hook, with_kwargs=True)
    return seen


def test_compute_placement_takes_the_callers_and_falls_back_to_the_first_parameter():
    net = nn.Sequential(nn.Linear(2, 2)).to(torch.float16)
    assert compute_placement(net) == (torch.device("cpu"), torch.float16)
    assert compute_placement(net, "cpu", torch.float32) == (torch.device("cpu"), torch.float32)
    no_parameters = nn.Identity()  # both given: no parameter is read
    assert compute_placement(no_parameters, "cpu", torch.bfloat16) == (torch.device("cpu"), torch.bfloat16)
    stray_first_parameter(net)
    assert compute_placement(net) == (torch.device("meta"), STRAY_DTYPE)
    assert compute_placement(net, device="cpu") == (torch.device("cpu"), STRAY_DTYPE)


def test_the_window_sampler_computes_on_the_given_device_and_dtype():
    """sample_windowed with device and dtype given: inputs on that device, audio and text in that dtype, the same
    latents as the network without the stray parameter."""
    from omnisync_core.model.config import preset
    from omnisync_core.model.dit import OmniSyncDiT

    torch.manual_seed(0)
    net = OmniSyncDiT(preset("tiny", latent_channels=12, audio_dim=40, use_text=True)).eval()
    g = torch.Generator().manual_seed(1)
    src = torch.randn(12, 3, 4, 4, generator=g)
    x_init = torch.randn(12, 3, 4, 4, generator=g)
    tokens = torch.randn(3, 5, 40, generator=g)
    text = torch.randn(2, net.config.text_dim, generator=g)
    sigmas = FlowMatchSchedule(3).truncate(0.9)
    run = lambda **kw: sample_windowed(net, x_init, src, tokens, text, sigmas, GuidanceConfig(), "auto",  # noqa: E731
                                       window=2, overlap=1, **kw)
    expected, expected_map, _ = run()
    stray_first_parameter(net)
    seen = record_inputs(net)
    got, got_map, rep = run(device="cpu", dtype=torch.float32)
    assert torch.equal(got, expected) and torch.equal(got_map, expected_map)
    assert len(seen) == rep["forward_passes"] > 0
    for call in seen:
        assert {k: d for k, (d, _) in call.items()} == dict.fromkeys(INPUTS, "cpu")
        assert call["audio"][1] == call["text"][1] == torch.float32 and call["x"][1] == torch.float32


@pytest.fixture(scope="module")
def omnisync_runtime(tmp_path_factory):
    from omnisync_core.api import load_runtime
    from tiny import make_model_checkpoint, make_whisper_folder

    root = str(tmp_path_factory.mktemp("models"))
    return load_runtime(make_model_checkpoint(root), make_whisper_folder(root), "cpu", torch.float32)


def test_the_omnisync_engine_computes_on_the_pipelines_device(omnisync_runtime):
    from omnisync_core.pipelines.omnisync import OmniSyncPipeline, SyncOptions
    from tiny import make_frames, make_speech_like

    model, codec, encoder, _ = omnisync_runtime
    frames, wave = make_frames(T=6), make_speech_like(6 / 25)
    opts = SyncOptions(num_steps=3, window=2, overlap=1, mouth=(0.5, 0.6), length_mode="follow_video")
    expected = OmniSyncPipeline(model, codec, encoder)(frames, 25.0, wave, 16000, opts).frames
    stray_first_parameter(model)
    seen = record_inputs(model)
    pipe = OmniSyncPipeline(model, codec, encoder, device="cpu", dtype=torch.float32)
    got = pipe(frames, 25.0, wave, 16000, opts).frames
    assert torch.equal(got, expected)
    assert seen and all(d == "cpu" for call in seen for d, _ in call.values())


def xdub_network(tmp_path):
    from omnisync_core.model.xdub_weights import load_xdub_model
    from tiny import make_xdub_checkpoint

    return load_xdub_model(make_xdub_checkpoint(str(tmp_path)), device="cpu", dtype=torch.float32).eval()


def test_the_xdub_pipeline_samples_on_its_device_in_its_dtype(tmp_path):
    """Two clips (the second from the first's motion latents): x, the reference, the timestep and the speech on
    the pipeline's device in its dtype; the take of the network without the stray parameter."""
    from omnisync_core.model.wan22_vae import wan22_codec
    from omnisync_core.pipelines.xdub import XDubEncoded, XDubPipeline
    from omnisync_core.sampling.xdub import XDubOptions, plan_clips
    from tiny import TinyWan22VAE, make_frames

    net = xdub_network(tmp_path)
    codec = wan22_codec(TinyWan22VAE())
    plan = plan_clips(80)
    frames = make_frames(T=plan.total_frames, H=64, W=64)
    refs = [codec.encode(frames[s:s + plan.clip_frames]).float() for s in plan.starts]
    g = torch.Generator().manual_seed(2)
    audio = [torch.randn(r.shape[1], 10, net.config.audio_dim, generator=g) for r in refs]
    encoded = XDubEncoded(frames=frames, frame_indices=torch.arange(plan.total_frames), num_frames=80, plan=plan,
                          references=refs, audio=audio, waveform=torch.zeros(80 * 640))
    opts = XDubOptions(num_steps=2, color_correction=False)
    expected = XDubPipeline(net, codec).sample(encoded, options=opts).latents
    stray_first_parameter(net)
    seen = record_inputs(net)
    pipe = XDubPipeline(net, codec, device="cpu", dtype=torch.float32)
    got = pipe.sample(encoded, options=opts)
    assert len(plan.starts) == 2 and torch.equal(got.latents, expected)
    assert len(seen) == got.report["forward_passes"] > 0
    for call in seen:
        assert {k: d for k, (d, _) in call.items()} == dict.fromkeys(INPUTS, "cpu")
        assert call["x"][1] == call["source"][1] == call["audio"][1] == call["text"][1] == torch.float32
