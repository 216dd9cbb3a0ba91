"""One full guided X-Dub sampler step against the reference pipeline (golden fixture, float32).

tests/fixtures/xdub/sampler_step.safetensors holds the state entering step 17 of 30 (shift 5) and the state after
it, recorded inside the reference ``LipSyncPipeline.__call__`` (three passes with ref_cfg 2.5 scheduled and audio
cfg 10·σ^1.5, border latents of width 1, 2 motion latents, the Euler step and the motion reset) run outside this
repository with the scaled-down reference DiT whose weights are tests/fixtures/xdub/dit_tiny_weights.safetensors.
"""

import os

import pytest
import torch
from safetensors import safe_open

from omnisync_core.sampling.schedule import FlowMatchSchedule
from omnisync_core.sampling.xdub import XDubOptions, guided_step

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "xdub")
PARITY_ATOL = 1e-5


@pytest.fixture(scope="module")
def case():
    with safe_open(os.path.join(FIXTURES, "sampler_step.safetensors"), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


@pytest.fixture(scope="module")
def model():
    from omnisync_core.model.xdub_weights import load_xdub_model

    return load_xdub_model(os.path.join(FIXTURES, "dit_tiny_weights.safetensors"), dtype=torch.float32,
                           head_dim=32, audio_head_dim=16)


def test_fixture_settings_are_the_defaults(case):
    _, meta = case
    d = XDubOptions()
    assert (int(meta["num_steps"]), float(meta["shift"]), float(meta["ref_cfg_scale"])) == (d.num_steps, d.shift,
                                                                                             d.ref_cfg_scale)
    assert float(meta["audio_cfg_scale"]) == d.audio.omega_base == d.audio.omega_peak and d.audio.gamma == 1.5
    assert int(meta["border_width"]) == d.border_width and meta["dynamic_cfg"] == "true" and d.ref_cfg_schedule


def test_schedule_matches_the_reference(case):
    t, meta = case
    k = int(meta["step"])
    sigmas = FlowMatchSchedule(30, 5.0).sigmas
    assert abs(float(sigmas[k]) - float(t["sigma"])) <= 2e-7
    assert abs(float(sigmas[k + 1]) - float(t["sigma_next"])) <= 2e-7


def test_one_guided_step_matches_the_reference(case, model):
    t, meta = case
    k = int(meta["step"])
    sigmas = FlowMatchSchedule(30, 5.0).sigmas
    out, info = guided_step(model, t["x_in"].clone(), float(sigmas[k]), float(sigmas[k + 1]), t["reference"],
                            t["noise"], t["audio"], t["text"], XDubOptions(), t["motion_latents"])
    assert info["passes"] == ("none", "ref", "ref_audio")
    err = float((out - t["x_out"]).abs().max())
    print(f"guided step max |ours − reference| = {err:.3g} (|x_out| max {float(t['x_out'].abs().max()):.3g})")
    assert err <= PARITY_ATOL
