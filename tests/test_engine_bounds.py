"""Sampling settings that cannot give a video are refused by the engines themselves, before any network call,
so the API and the nodes (not only the CLI, which checks its flags first) meet the same one-line errors."""

import pytest
import torch

from omnisync_core.errors import OmniSyncError
from omnisync_core.pipelines.omnisync import OmniSyncPipeline, SyncOptions
from omnisync_core.pipelines.stream import TensorFrames
from omnisync_core.sampling.guidance import GuidanceConfig

from tiny import make_frames, make_model_checkpoint, make_speech_like, make_whisper_folder


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    from omnisync_core.api import load_runtime

    root = str(tmp_path_factory.mktemp("models"))
    model, codec, encoder, _ = load_runtime(make_model_checkpoint(root), make_whisper_folder(root), "cpu", torch.float32)
    calls = []
    model.register_forward_pre_hook(lambda *a: calls.append(1))
    p = OmniSyncPipeline(model, codec, encoder)
    p.calls = calls
    return p


@pytest.mark.parametrize("opts, match", [
    (dict(num_steps=100_000), "at most 1000"),
    (dict(tau=1e-7), "no step"),
    (dict(guidance=GuidanceConfig(omega_peak=1e9)), "at most 50"),
])
def test_the_engine_refuses_before_any_forward(pipe, opts, match):
    pipe.calls.clear()
    with pytest.raises(OmniSyncError, match=match):
        pipe(make_frames(T=6), 25.0, make_speech_like(0.3), 16000, SyncOptions(mouth=(0.5, 0.6), **opts))
    with pytest.raises(OmniSyncError, match=match):
        pipe.stream(TensorFrames(make_frames(T=6)), 25.0, make_speech_like(0.3), 16000, lambda *a: None,
                    SyncOptions(mouth=(0.5, 0.6), **opts))
    assert pipe.calls == []


def test_the_split_init_stage_refuses_a_schedule_with_no_step(pipe):
    video = pipe.encode_video(make_frames(T=6), fps=25.0)
    with pytest.raises(OmniSyncError, match="no step"):
        pipe.init(video, tau=1e-7, num_steps=8)
    with pytest.raises(OmniSyncError, match="at most 1000"):
        pipe.init(video, tau=0.9, num_steps=5000)
