"""X-Dub sampler: three-pass guidance, τ, DS-CFG on the audio term, borders, motion latents and clips,
checked against an oracle network whose velocities are exact (so the sampler's result is known)."""

import math

import pytest
import torch
from torch import nn

from omnisync_core.errors import Cancelled, OmniSyncError
from omnisync_core.sampling.guidance import GuidanceConfig
from omnisync_core.sampling.noise_init import clip_noise
from omnisync_core.sampling.schedule import FlowMatchSchedule
from omnisync_core.sampling.xdub import (
    BORDER_SIGMA_MAX,
    XDubOptions,
    denoise_clip,
    join_clip_latents,
    plan_clips,
    ref_cfg_scale_at,
    replace_borders,
    sample_clips,
    xdub_combine,
    xdub_passes,
)

C, F_, H, W = 4, 3, 8, 8


class Oracle(nn.Module):
    """v = (x − target)/σ, the exact velocity towards a clean target chosen by the pass:
    reference zeroed → ``t_none``; reference, audio zeroed → ``t_ref``; both → ``t_ref_audio``.

    Records every call's inputs so tests can check what the network saw.
    """

    def __init__(self, t_none, t_ref, t_ref_audio):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.targets = {"none": t_none, "ref": t_ref, "ref_audio": t_ref_audio}
        self.calls = []

    def forward(self, x, timestep, source=None, audio=None, text=None, motion_frames=0):
        names = []
        for b in range(x.shape[0]):
            has_ref, has_audio = bool(source[b].abs().sum() > 0), bool(audio[b].abs().sum() > 0)
            names.append("ref_audio" if has_audio else "ref" if has_ref else "none")
        self.calls.append({"names": names, "x": x.clone(), "t": timestep.clone(), "motion_frames": motion_frames,
                           "text": text.clone()})
        sigma = (timestep.float() / 1000).view(-1, 1, 1, 1, 1)
        target = torch.stack([self.targets[n] for n in names])
        return (x - target) / sigma


def _setup(seed=0):
    g = torch.Generator().manual_seed(seed)
    ref = torch.randn(C, F_, H, W, generator=g)
    targets = [torch.randn(C, F_, H, W, generator=g) for _ in range(3)]
    audio = torch.randn(F_, 2, 5, generator=g)
    return ref, targets, audio


def _opts(**kw):
    base = dict(num_steps=6, shift=5.0, border_width=0, ref_cfg_schedule=False, ref_cfg_scale=2.5,
                audio=GuidanceConfig(omega_base=10.0, omega_peak=10.0, gamma=1.5))
    base.update(kw)
    return XDubOptions(**base)


TEXT = torch.zeros(1, 6)


def test_defaults_are_the_reference_inference_script():
    o = XDubOptions()
    assert (o.tau, o.num_steps, o.shift, o.seed, o.ref_cfg_scale, o.ref_cfg_schedule, o.border_width) == \
        (1.0, 30, 5.0, 42, 2.5, True, 1)
    assert (o.audio.omega_base, o.audio.omega_peak, o.audio.gamma) == (10.0, 10.0, 1.5)
    assert not o.spatial
    with pytest.raises(OmniSyncError, match="tau"):
        XDubOptions(tau=0.0)
    with pytest.raises(OmniSyncError, match="border_width"):
        XDubOptions(border_width=-1)


def test_reference_cfg_schedule_by_hand():
    assert ref_cfg_scale_at(0.95, 2.5) == 2.5
    assert ref_cfg_scale_at(0.85, 2.5) == 2.5
    assert ref_cfg_scale_at(0.80, 2.5) == pytest.approx(2.0)  # half-way between 2.5 and 1.5
    assert ref_cfg_scale_at(0.60, 2.5) == pytest.approx(1.5)
    assert ref_cfg_scale_at(0.40, 2.5) == pytest.approx(1.125)  # half-way between 1.5 and 0.75
    assert ref_cfg_scale_at(0.10, 2.5) == pytest.approx(0.75)
    # a quarter into the first ramp: (1 − cos(π/4))/2 of the way
    assert ref_cfg_scale_at(0.825, 2.0) == pytest.approx(2.0 - 0.8 * (1 - math.cos(math.pi / 4)) / 2)
    assert ref_cfg_scale_at(0.1, 2.5, scheduled=False) == 2.5


def test_combine_by_hand_and_pass_selection():
    vn, vr, vra = torch.full((1, 1, 1, 1), 1.0), torch.full((1, 1, 1, 1), 3.0), torch.full((1, 1, 1, 1), 4.0)
    # 1 + 2.5·(3 − 1) + 10·(4 − 3) = 16
    assert float(xdub_combine(vn, vr, vra, 2.5, 10.0)) == pytest.approx(16.0)
    weight = torch.tensor([[[0.0, 2.0]]])  # (F, h, w)
    assert float(xdub_combine(vn, vr, vra, 2.5, weight)[0, 0, 0, 1]) == pytest.approx(8.0)
    assert xdub_passes(2.5, torch.full((1, 2, 2), 10.0)) == ("none", "ref", "ref_audio")
    assert xdub_passes(1.0, torch.full((1, 2, 2), 1.0)) == ("ref_audio",)  # scale 1 and 1: the conditional pass
    assert xdub_passes(2.0, torch.full((1, 2, 2), 2.0)) == ("none", "ref_audio")
    assert xdub_passes(2.0, torch.zeros(1, 2, 2)) == ("none", "ref")


def test_tau_one_lands_on_the_guided_target():
    """Exact velocities towards t_n, t_r, t_ra combine to the velocity towards (1−s)·t_n + (s−W)·t_r + W·t_ra
    (the coefficients sum to 1), so the last Euler step lands there, with s and W of the last step."""
    ref, (tn, tr, tra), audio = _setup()
    opts = _opts()
    model = Oracle(tn, tr, tra)
    out, info = denoise_clip(model, clip_noise(ref.shape, 1), ref, audio, TEXT, opts)
    sig_last = float(FlowMatchSchedule(6, 5.0).sigmas[-2])
    s, w = 2.5, 10.0 * sig_last ** 1.5
    expected = (1 - s) * tn + (s - w) * tr + w * tra
    assert torch.allclose(out, expected, atol=1e-5)
    assert info["forward_passes"] == 6 and info["passes"] == 18
    assert all(c["names"] == ["none", "ref", "ref_audio"] for c in model.calls)
    assert torch.equal(model.calls[0]["x"][0], clip_noise(ref.shape, 1))  # τ = 1: the pure noise, exactly


def test_tau_starts_from_the_reference_mixture_on_the_truncated_schedule():
    ref, (tn, tr, tra), audio = _setup()
    noise = clip_noise(ref.shape, 3)
    model = Oracle(tn, tr, tra)
    denoise_clip(model, noise, ref, audio, TEXT, _opts(tau=0.5, num_steps=10, shift=1.0))
    assert len(model.calls) == 5  # 10-step linear schedule from σ = 0.5: the last 5 steps
    assert float(model.calls[0]["t"][0]) == pytest.approx(500.0)
    assert torch.allclose(model.calls[0]["x"][0], 0.5 * ref + 0.5 * noise, atol=1e-6)


def test_dynamic_reference_schedule_reaches_the_model():
    ref, (tn, tr, tra), audio = _setup()
    opts = _opts(ref_cfg_schedule=True, shift=1.0, audio=GuidanceConfig(omega_base=0.0, omega_peak=0.0, gamma=0.0))
    out, _ = denoise_clip(Oracle(tn, tr, tra), clip_noise(ref.shape, 0), ref, audio, TEXT, opts)
    s = ref_cfg_scale_at(float(FlowMatchSchedule(6, 1.0).sigmas[-2]), 2.5)
    assert s == pytest.approx(0.75)  # the last step is late: 0.3 × 2.5
    assert torch.allclose(out, (1 - s) * tn + s * tr, atol=1e-5)


def test_ds_cfg_on_the_audio_term_is_the_gaussian_times_sigma_gamma():
    ref, (tn, tr, tra), audio = _setup()
    g = GuidanceConfig(omega_base=2.0, omega_peak=8.0, sigma_spatial=0.2, gamma=1.5)
    opts = _opts(audio=g, ref_cfg_scale=1.0)
    centres = torch.tensor([[0.5, 0.5], [0.25, 0.75], [0.75, 0.25]])
    out, info = denoise_clip(Oracle(tn, tr, tra), clip_noise(ref.shape, 0), ref, audio, TEXT, opts, centres=centres)
    weight = ((out - tr) / (tra - tr)).median(0).values  # (F, h, w): W at the last step
    sig = float(FlowMatchSchedule(6, 5.0).sigmas[-2])
    ys = (torch.arange(H) + 0.5) / H
    xs = (torch.arange(W) + 0.5) / W
    for f, (cx, cy) in enumerate(centres.tolist()):
        gauss = torch.exp(-((xs[None] - cx) ** 2 + (ys[:, None] - cy) ** 2) / (2 * 0.2 ** 2))
        assert torch.allclose(weight[f], (2.0 + 6.0 * gauss) * sig ** 1.5, atol=1e-3)
    assert info["mouth"]["source"] == "given"


def test_auto_mouth_follows_where_audio_changes_the_prediction():
    ref, (tn, tr, _), audio = _setup()
    blob = torch.zeros(C, F_, H, W)
    blob[:, :, 5, 2] = 5.0  # audio moves latent pixel (row 5, col 2): centre (2.5/8, 5.5/8)
    opts = _opts(audio=GuidanceConfig(omega_base=1.0, omega_peak=5.0, sigma_spatial=0.2, gamma=0.0), ref_cfg_scale=1.0)
    _, info = denoise_clip(Oracle(tn, tr, tr + blob), clip_noise(ref.shape, 0), ref, audio, TEXT, opts)
    assert info["mouth"]["source"] == "auto"
    assert torch.allclose(info["centres"], torch.tensor([2.5 / 8, 5.5 / 8]).expand(F_, 2), atol=0.05)


def test_scale_one_runs_only_the_conditional_pass_and_equals_it():
    ref, (tn, tr, tra), audio = _setup()
    g1 = GuidanceConfig(omega_base=1.0, omega_peak=1.0, gamma=0.0)
    model = Oracle(tn, tr, tra)
    out, info = denoise_clip(model, clip_noise(ref.shape, 0), ref, audio, TEXT, _opts(ref_cfg_scale=1.0, audio=g1))
    assert all(c["names"] == ["ref_audio"] for c in model.calls) and info["passes"] == 6
    assert torch.allclose(out, tra, atol=1e-5)


def test_batched_and_sequential_passes_agree():
    ref, (tn, tr, tra), audio = _setup()
    a, _ = denoise_clip(Oracle(tn, tr, tra), clip_noise(ref.shape, 0), ref, audio, TEXT, _opts(batch_passes=True))
    model = Oracle(tn, tr, tra)
    b, info = denoise_clip(model, clip_noise(ref.shape, 0), ref, audio, TEXT, _opts(batch_passes=False))
    assert torch.allclose(a, b, atol=1e-6)
    assert info["forward_passes"] == 18 and all(len(c["names"]) == 1 for c in model.calls)


def test_borders_are_noised_reference_each_step_and_clean_reference_at_the_end():
    ref, (tn, tr, tra), audio = _setup()
    noise = clip_noise(ref.shape, 0)
    model = Oracle(tn, tr, tra)
    out, _ = denoise_clip(model, noise, ref, audio, TEXT, _opts(border_width=1))
    edge = torch.ones(H, W, dtype=torch.bool)
    edge[1:-1, 1:-1] = False
    assert torch.equal(out[:, :, edge], ref[:, :, edge])
    assert not torch.allclose(out[:, :, ~edge], ref[:, :, ~edge])
    for call in model.calls:
        level = min(float(call["t"][0]) / 1000, BORDER_SIGMA_MAX)
        seen = call["x"][0][:, :, edge]
        assert torch.allclose(seen, ((1 - level) * ref + level * noise)[:, :, edge], atol=1e-6)


def test_motion_latents_are_kept_clean_and_announced_to_the_model():
    ref, (tn, tr, tra), audio = _setup()
    motion = torch.randn(C, 2, H, W)
    model = Oracle(tn, tr, tra)
    out, _ = denoise_clip(model, clip_noise(ref.shape, 0), ref, audio, TEXT, _opts(border_width=1), motion)
    assert torch.equal(out[:, :2], motion)  # borders are not replaced on motion frames
    assert all(c["motion_frames"] == 2 and torch.equal(c["x"][0][:, :2], motion) for c in model.calls)
    with pytest.raises(OmniSyncError, match="motion latents"):
        denoise_clip(model, clip_noise(ref.shape, 0), ref, audio, TEXT, _opts(), torch.randn(C, 3, H, W + 1))


def test_progress_cancel_and_bad_audio():
    ref, (tn, tr, tra), audio = _setup()
    ticks = []
    denoise_clip(Oracle(tn, tr, tra), clip_noise(ref.shape, 0), ref, audio, TEXT, _opts(),
                 progress=lambda d, t, m: ticks.append((d, t)))
    assert ticks == [(i, 6) for i in range(1, 7)]
    with pytest.raises(Cancelled):
        denoise_clip(Oracle(tn, tr, tra), clip_noise(ref.shape, 0), ref, audio, TEXT, _opts(), cancel=lambda: True)
    with pytest.raises(OmniSyncError, match="latent frames"):
        denoise_clip(Oracle(tn, tr, tra), clip_noise(ref.shape, 0), ref, audio[:2], TEXT, _opts())


def test_replace_borders_by_hand():
    x, src = torch.zeros(1, 2, 4, 4), torch.ones(1, 2, 4, 4)
    out = replace_borders(x, src, 1, start_frame=1)
    assert float(out[0, 0].sum()) == 0.0 and float(out[0, 1].sum()) == 12.0  # 16 − the 2×2 inside
    with pytest.raises(OmniSyncError, match="border width"):
        replace_borders(x, src, 2)


def test_clip_plan_matches_the_reference_lengths():
    assert (plan_clips(10).total_frames, plan_clips(10).starts) == (77, [0])
    assert (plan_clips(77).total_frames, plan_clips(77).starts) == (77, [0])
    assert (plan_clips(78).total_frames, plan_clips(78).starts) == (149, [0, 72])
    assert (plan_clips(150).total_frames, plan_clips(150).starts) == (221, [0, 72, 144])


def test_join_clip_latents_averages_the_shared_latent():
    a = torch.arange(4.0).view(1, 4, 1, 1)  # clip 0: latents 0..3
    b = torch.tensor([10.0, 20.0, 30.0, 40.0]).view(1, 4, 1, 1)  # clip 1: 2 motion latents, then 30, 40
    joined = join_clip_latents([a, b], 2)
    assert joined.flatten().tolist() == [0.0, 1.0, 2.0, 0.5 * (3.0 + 20.0), 30.0, 40.0]


def test_sample_clips_carries_motion_and_reports_progress_over_all_clips():
    ref, (tn, tr, tra), audio = _setup()
    model = Oracle(tn, tr, tra)
    seen = []

    def motion_fn(k, prev):
        seen.append((k, prev.clone()))
        return prev[:, -2:]

    ticks = []
    clips, rep = sample_clips(model, [ref, ref], [audio, audio], TEXT, _opts(), motion_fn,
                              progress=lambda d, t, m: ticks.append((d, t)))
    assert [k for k, _ in seen] == [1] and torch.equal(seen[0][1], clips[0])
    assert torch.equal(clips[1][:, :2], clips[0][:, -2:])
    assert ticks[-1] == (12, 12) and rep["clips"] == 2 and rep["steps"] == 12
    assert [c["motion_frames"] for c in model.calls] == [0] * 6 + [2] * 6


def test_a_bf16_network_sees_bf16_timesteps_as_in_the_reference():
    ref, (tn, tr, tra), audio = _setup()
    model = Oracle(tn, tr, tra).to(torch.bfloat16)
    model.targets = {k: v.to(torch.bfloat16) for k, v in model.targets.items()}
    denoise_clip(model, clip_noise(ref.shape, 0), ref, audio, TEXT, _opts(num_steps=30))
    sent = [float(c["t"][0]) for c in model.calls]
    exact = (1000 * FlowMatchSchedule(30, 5.0).sigmas[:-1]).tolist()
    assert sent == [float(torch.tensor(t).to(torch.bfloat16)) for t in exact]
    assert sent[1] != pytest.approx(exact[1], abs=0.01)  # bf16 has 8 bits of mantissa: 1000·σ is rounded
