"""Schedule, progressive noise init, DS-CFG, mouth centres, windows and the sampler: numbers, not just runs."""

import math

import pytest
import torch
from torch import nn

from omnisync_core.errors import Cancelled, OmniSyncError
from omnisync_core.sampling.guidance import (
    WEIGHT_TOLERANCE,
    GuidanceConfig,
    ds_cfg_combine,
    guidance_weight,
    passes_needed,
    spatial_guidance_map,
    temporal_weight,
)
from omnisync_core.sampling.mouth import (
    DEFAULT_MOUTH_CENTRE,
    centres_from_guidance,
    centres_from_mask,
    centres_from_point,
    fill_missing,
)
from omnisync_core.sampling.noise_init import frame_noise, progressive_noise_init
from omnisync_core.sampling.sampler import denoise, sample_windowed
from omnisync_core.sampling.schedule import FlowMatchSchedule, shift_sigma, sigma_to_timestep, timestep_to_sigma
from omnisync_core.length import apply_audio_plan, match_lengths
from omnisync_core.sampling.windows import blend_weights, plan_windows, window_overlaps


# -- schedule -------------------------------------------------------------------------------------

def test_sigma_timestep_mapping_and_paper_threshold():
    assert sigma_to_timestep(0.85) == pytest.approx(850.0)
    assert timestep_to_sigma(920.0) == pytest.approx(0.92)
    assert float(shift_sigma(torch.tensor(0.5), 3.0)) == pytest.approx(0.75)  # 3·0.5 / (1 + 2·0.5)
    assert float(shift_sigma(torch.tensor(0.3), 1.0)) == pytest.approx(0.3)


def test_fifty_step_schedule_truncated_at_tau_092_runs_the_last_46_steps():
    sch = FlowMatchSchedule(50)
    assert sch.sigmas.shape == (51,)
    assert float(sch.sigmas[0]) == 1.0 and float(sch.sigmas[-1]) == 0.0
    assert float(sch.sigmas[4]) == pytest.approx(0.92)
    assert torch.allclose(sch.timesteps, 1000 * sch.sigmas[:-1])
    tail = sch.truncate(0.92)
    assert tail.shape == (47,)  # 46 Euler steps remain
    assert torch.allclose(tail, sch.sigmas[4:])
    assert torch.equal(sch.truncate(1.0), sch.sigmas)


def test_truncate_between_grid_points_starts_at_tau():
    tail = FlowMatchSchedule(10).truncate(0.05)
    assert tail.tolist() == pytest.approx([0.05, 0.0])
    tail = FlowMatchSchedule(4).truncate(0.6)  # grid 1, .75, .5, .25, 0
    assert tail.tolist() == pytest.approx([0.6, 0.5, 0.25, 0.0])
    with pytest.raises(OmniSyncError, match="tau"):
        FlowMatchSchedule(10).truncate(0.0)
    with pytest.raises(OmniSyncError, match="num_steps"):
        FlowMatchSchedule(0)


def test_euler_step_by_hand():
    x, v = torch.tensor([1.0, 2.0]), torch.tensor([0.5, -1.0])
    assert FlowMatchSchedule.step(v, x, 0.8, 0.6).tolist() == pytest.approx([0.9, 2.2])


# -- progressive noise init (Eq. 5) -----------------------------------------------------------------

def test_noise_init_is_eq5_and_seeded_per_frame():
    src = torch.randn(4, 6, 3, 5)
    x = progressive_noise_init(src, 0.92, seed=7)
    eps = frame_noise(src.shape, 7)
    assert torch.allclose(x, 0.08 * src + 0.92 * eps, atol=1e-6)
    assert torch.equal(x, progressive_noise_init(src, 0.92, seed=7))
    assert not torch.equal(x, progressive_noise_init(src, 0.92, seed=8))
    # a window starting at latent frame 2 draws the same noise as the whole clip there
    part = progressive_noise_init(src[:, 2:5], 0.92, seed=7, frame_offset=2)
    assert torch.allclose(part, x[:, 2:5])
    # τ = 1: pure noise, independent of the source
    assert torch.equal(progressive_noise_init(src, 1.0, seed=3), progressive_noise_init(src * 0, 1.0, seed=3))
    assert abs(float(eps.mean())) < 0.15 and abs(float(eps.std()) - 1) < 0.15
    with pytest.raises(OmniSyncError, match="tau"):
        progressive_noise_init(src, 1.5)


# -- DS-CFG (Eqs. 7–9) ------------------------------------------------------------------------------

def test_spatial_map_matches_eq7_by_hand():
    cfg = GuidanceConfig(omega_base=1.0, omega_peak=4.0, sigma_spatial=0.25, gamma=1.5)
    g = spatial_guidance_map(torch.tensor([[0.375, 0.625]]), 4, 4, cfg)  # centre of latent pixel (2, 1)
    assert g.shape == (1, 4, 4)
    assert float(g[0, 2, 1]) == pytest.approx(4.0)
    # pixel (0, 3): centre (0.875, 0.125): d² = 0.5² + 0.5² = 0.5
    assert float(g[0, 0, 3]) == pytest.approx(1.0 + 3.0 * math.exp(-0.5 / (2 * 0.0625)))
    assert float(g.min()) >= 1.0 and float(g.max()) <= 4.0


def test_spatial_map_is_round_for_wide_frames():
    cfg = GuidanceConfig(omega_base=0.0, omega_peak=1.0, sigma_spatial=0.2)
    g = spatial_guidance_map(torch.tensor([[0.5, 0.5]]), 8, 16, cfg)[0]  # 8 high, 16 wide
    # one pixel left/right of the centre is as far as one pixel up/down (pixels are square)
    assert float(g[3, 6]) == pytest.approx(float(g[2, 7]), rel=1e-5)


def test_temporal_weight_and_combined_weight():
    assert temporal_weight(0.5, 1.5) == pytest.approx(0.5 ** 1.5)
    assert temporal_weight(1.0, 1.5) == 1.0
    cfg = GuidanceConfig(omega_base=1.0, omega_peak=3.0, sigma_spatial=0.1, gamma=1.5)
    spatial = spatial_guidance_map(torch.tensor([[0.5, 0.5]]), 2, 2, cfg)
    w = guidance_weight(spatial, 0.64, cfg)
    assert torch.allclose(w, spatial * 0.512)


def test_ds_cfg_combine_special_cases():
    g = torch.Generator().manual_seed(0)
    c, u = torch.randn(3, 2, 4, 4, generator=g), torch.randn(3, 2, 4, 4, generator=g)
    assert torch.allclose(ds_cfg_combine(c, u, torch.ones(2, 4, 4)), c, atol=1e-6)  # u + (c − u) rounds
    assert torch.equal(ds_cfg_combine(c, u, torch.zeros(2, 4, 4)), u)
    # static CFG with scale s: ω_base = ω_peak = s, γ = 0
    cfg = GuidanceConfig(omega_base=2.5, omega_peak=2.5, gamma=0.0, cfg_cutoff=0.0)
    w = guidance_weight(spatial_guidance_map(torch.rand(2, 2), 4, 4, cfg), 0.37, cfg)
    assert torch.allclose(ds_cfg_combine(c, u, w), u + 2.5 * (c - u), atol=1e-6)
    assert passes_needed(torch.ones(2, 2, 2)) == "cond"
    assert passes_needed(torch.zeros(2, 2, 2)) == "uncond"
    assert passes_needed(w) == "both"


def test_skipped_pass_is_within_the_tolerance_of_the_full_combination():
    """Oracle: wherever ``passes_needed`` drops a pass, running it (Eq. 9 with both predictions) would
    have moved the result by at most WEIGHT_TOLERANCE·|ε_c − ε_u|; below cfg_cutoff only ε_c runs."""
    g = torch.Generator().manual_seed(1)
    c, u = torch.randn(3, 4, 6, 6, generator=g), torch.randn(3, 4, 6, 6, generator=g)
    cfg = GuidanceConfig(omega_base=1.0, omega_peak=12.0, gamma=1.5, cfg_cutoff=0.4)
    spatial = spatial_guidance_map(torch.rand(4, 2, generator=g), 6, 6, cfg)
    bound = WEIGHT_TOLERANCE * (c - u).abs() + 1e-6
    near_one = 1.0 + (torch.rand(4, 6, 6, generator=g) * 2 - 1) * WEIGHT_TOLERANCE  # |w − 1| ≤ tolerance
    near_zero = (torch.rand(4, 6, 6, generator=g) * 2 - 1) * WEIGHT_TOLERANCE
    for weight, kept in ((near_one, c), (near_zero, u)):
        assert passes_needed(weight) == ("cond" if kept is c else "uncond")
        assert bool(((ds_cfg_combine(c, u, weight) - kept).abs() <= bound).all())
    assert passes_needed(1.0 + 2 * WEIGHT_TOLERANCE * torch.ones(4, 6, 6)) == "both"  # just outside: both run
    for sigma in (0.92, 0.6, 0.4):  # at and above the cutoff: DS-CFG as in Eqs. 7–9, both passes
        w = guidance_weight(spatial, sigma, cfg)
        assert torch.allclose(w, spatial * sigma ** 1.5) and passes_needed(w) == "both"
    for sigma in (0.39, 0.125):  # below it: weight 1, the conditional pass alone
        w = guidance_weight(spatial, sigma, cfg)
        assert passes_needed(w) == "cond" and torch.allclose(ds_cfg_combine(c, u, w), c, atol=1e-6)
    with pytest.raises(OmniSyncError, match="cfg_cutoff"):
        GuidanceConfig(cfg_cutoff=1.5)


def test_sampler_runs_one_pass_below_the_cutoff_and_auto_mouth_only_forces_both_without_a_point():
    src, x0, audio = _setup()
    sigmas = FlowMatchSchedule(10).truncate(0.9)  # σ 0.9, 0.8, ..., 0.1: 9 steps
    x_init = progressive_noise_init(src, 0.9, seed=0)
    point = torch.full((5, 2), 0.5)
    model = Oracle(target, lambda s: 0 * s)
    cut = GuidanceConfig(omega_peak=3.0, cfg_cutoff=0.55)  # σ 0.5 … 0.1 (5 steps): conditional only
    _, info = denoise(model, x_init, src, audio, None, sigmas, cut, centres=point)
    assert model.batches == [2] * 4 + [1] * 5 and info["forward_passes"] == 9
    model = Oracle(target, lambda s: 0 * s)
    off = GuidanceConfig(cfg_cutoff=1.0)  # guidance off: a given point never runs the unconditional pass
    out, _ = denoise(model, x_init, src, audio, None, sigmas, off, centres=point)
    assert model.batches == [1] * 9 and torch.allclose(out, x0, atol=1e-5)
    model = Oracle(target, lambda s: 0 * s)
    _, info = denoise(model, x_init, src, audio, None, sigmas, off, centres="auto")  # locating the mouth needs both once
    assert model.batches == [2] + [1] * 8 and info["mouth"]["source"] == "auto"


def test_guidance_config_rejects_bad_values():
    with pytest.raises(OmniSyncError, match="sigma_spatial"):
        GuidanceConfig(sigma_spatial=0)
    with pytest.raises(OmniSyncError, match="gamma"):
        GuidanceConfig(gamma=-1)


# -- mouth centres ----------------------------------------------------------------------------------

def test_centres_from_mask_and_fill():
    mask = torch.zeros(3, 10, 20)
    mask[0, 6:8, 4:8] = 1  # rows 6-7, cols 4-7: centre (6/20, 7/10)
    mask[2, 0:2, 18:20] = 1
    c, found = centres_from_mask(mask)
    assert found.tolist() == [True, False, True]
    assert c[0].tolist() == pytest.approx([0.3, 0.7])
    assert c[2].tolist() == pytest.approx([0.95, 0.1])
    filled, rep = fill_missing(c, found)
    assert rep["filled_frames"] == [1] and not rep["default_used"]
    assert filled[1].tolist() == pytest.approx(c[0].tolist())  # nearest found (ties → earlier)
    none, rep = fill_missing(c, torch.zeros(3, dtype=torch.bool))
    assert rep["default_used"] and none[0].tolist() == pytest.approx(list(DEFAULT_MOUTH_CENTRE))
    assert centres_from_point((0.2, 0.9), 4).shape == (4, 2)
    with pytest.raises(OmniSyncError):
        centres_from_point((1.2, 0.5), 2)


def _blob(F_, h, w, cx, cy, r=1.5):
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    b = torch.exp(-((xs - cx * w) ** 2 + (ys - cy * h) ** 2) / (2 * r * r))
    return b.expand(F_, h, w)


def test_centres_from_guidance_finds_a_localised_response_and_rejects_flat_noise():
    diff = torch.zeros(4, 3, 16, 16)
    diff[:] = _blob(3, 16, 16, 0.3, 0.7)
    diff += 0.01 * torch.rand_like(diff)
    c, found = centres_from_guidance(diff)
    assert found.all()
    assert torch.allclose(c, torch.tensor([0.3, 0.7]).expand(3, 2), atol=0.04)
    flat = torch.rand(4, 2, 16, 16) * 0.1 + 1.0
    c, found = centres_from_guidance(flat)
    assert not found.any() and torch.isnan(c).all()


# -- windows and lengths ----------------------------------------------------------------------------

def test_plan_windows_and_blend_weights():
    assert plan_windows(10, 4, 1) == [(0, 4), (3, 7), (6, 10)]
    # 11 items: 4 windows (lengths spread 4, 4, 3, 3), each sharing exactly 1: 11 + 3 items computed
    assert plan_windows(11, 4, 1) == [(0, 4), (3, 7), (6, 9), (8, 11)]
    assert plan_windows(3, 4, 1) == [(0, 3)]
    wins = plan_windows(11, 4, 1)
    assert [window_overlaps(wins, i) for i in range(4)] == [(0, 1), (1, 1), (1, 1), (1, 0)]
    # the computed frames are exactly length + (n − 1)·overlap: ≤ 1/15 over with the default 16 / 1
    for length in (17, 108, 250, 1600, 15000):
        wins = plan_windows(length, 16, 1)
        computed = sum(e - s for s, e in wins)
        assert computed == length + len(wins) - 1 and computed <= length * (1 + 1 / 15)
        assert max(e - s for s, e in wins) <= 16 and wins[0][0] == 0 and wins[-1][1] == length
    w = blend_weights(5, 2, 1)
    assert w.tolist() == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0, 0.5])
    # neighbours' ramps sum to 1 over a shared overlap of 2
    assert (blend_weights(4, 0, 2)[-2:] + blend_weights(4, 2, 0)[:2]).tolist() == pytest.approx([1.0, 1.0])
    with pytest.raises(OmniSyncError):
        plan_windows(10, 4, 4)


def test_match_lengths_loop_pingpong_follow_video():
    loop = match_lengths(3, 25.0, 11200, 16000, "follow_audio_loop")  # 0.7 s → 17.5 → 18 frames
    assert loop.frame_indices.tolist()[:7] == [0, 1, 2, 0, 1, 2, 0] and loop.frame_indices.numel() == 18
    assert loop.num_samples == round(18 * 16000 / 25)
    pp = match_lengths(4, 10.0, 16000, 16000, "follow_audio_pingpong")  # 1 s at 10 fps
    assert pp.frame_indices.tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    cut = match_lengths(30, 25.0, 8000, 16000, "follow_audio_loop")  # speech shorter than video
    assert cut.frame_indices.tolist() == list(range(13)) and "cut" in cut.message
    fv = match_lengths(10, 25.0, 3200, 16000, "follow_video")
    assert fv.frame_indices.tolist() == list(range(10)) and fv.num_samples == 6400 and "padded" in fv.message
    wave = torch.ones(3200)
    out = apply_audio_plan(wave, fv)
    assert out.shape == (6400,) and float(out[:3200].min()) == 1.0 and float(out[3200:].abs().max()) == 0.0
    trim = match_lengths(10, 25.0, 32000, 16000, "follow_video")
    assert apply_audio_plan(torch.ones(32000), trim).shape == (6400,) and "trimmed" in trim.message
    with pytest.raises(OmniSyncError, match="length mode"):
        match_lengths(10, 25.0, 100, 16000, "stretch")


# -- the sampler ------------------------------------------------------------------------------------

class Oracle(nn.Module):
    """Returns the exact flow velocity (x − x0)/σ towards a clean target computed from the source
    (frame by frame, so it works on any window); counts calls and batch sizes.

    With real audio tokens it aims at ``cond(source)``; with zeroed audio at ``uncond(source)``.
    """

    def __init__(self, cond, uncond=None):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.cond, self.uncond = cond, cond if uncond is None else uncond
        self.batches = []

    def forward(self, x, timestep, source=None, audio=None, text=None):
        self.batches.append(x.shape[0])
        sigma = (timestep.float() / 1000).view(-1, 1, 1, 1, 1)
        has_audio = torch.tensor([bool(a.abs().sum() > 0) for a in audio]).view(-1, 1, 1, 1, 1)
        target = torch.where(has_audio, self.cond(source), self.uncond(source))
        return (x - target) / sigma


def _setup(F_=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.rand(4, F_, 8, 8, generator=g)
    audio = torch.rand(F_, 3, 6, generator=g) + 0.1
    return src, 1.0 - src, audio  # source, the target the oracle aims at with audio, audio tokens


def target(s):
    return 1.0 - s


def test_exact_velocity_lands_on_the_target_and_cfg_scale_one_is_the_conditional_pass():
    src, x0, audio = _setup()
    model = Oracle(target, lambda s: 0 * s)
    sigmas = FlowMatchSchedule(10).truncate(0.9)
    x_init = progressive_noise_init(src, 0.9, seed=0)
    one = GuidanceConfig(omega_base=1.0, omega_peak=1.0, gamma=0.0)  # weight ≡ 1: conditional only
    out, info = denoise(model, x_init, src, audio, None, sigmas, one, centres=torch.full((5, 2), 0.5))
    assert torch.allclose(out, x0, atol=1e-5)
    assert set(model.batches) == {1} and info["forward_passes"] == 9  # no unconditional pass at all


def test_guidance_zero_is_the_unconditional_pass_and_mixed_weights_batch_both():
    src, x0, audio = _setup()
    x0_u = torch.zeros_like(x0)
    sigmas = FlowMatchSchedule(10).truncate(0.9)
    x_init = progressive_noise_init(src, 0.9, seed=0)
    model = Oracle(target, lambda s: 0 * s)
    zero = GuidanceConfig(omega_base=0.0, omega_peak=0.0, gamma=0.0, cfg_cutoff=0.0)
    out, _ = denoise(model, x_init, src, audio, None, sigmas, zero, centres=torch.full((5, 2), 0.5))
    assert torch.allclose(out, x0_u, atol=1e-5) and set(model.batches) == {1}
    model = Oracle(target, lambda s: 0 * s)
    ds = GuidanceConfig(omega_base=1.0, omega_peak=3.0, sigma_spatial=0.1, gamma=1.5, cfg_cutoff=0.0)
    out, info = denoise(model, x_init, src, audio, None, sigmas, ds, centres=torch.tensor([[0.3125, 0.6875]] * 5))
    assert set(model.batches) == {2} and info["forward_passes"] == 9  # cond + uncond in one batch of 2
    peak = info["guidance_map"][0].flatten().argmax()
    assert divmod(int(peak), 8) == (5, 2)  # row 5, col 2: the latent pixel centred at (0.3125, 0.6875)
    assert float(info["guidance_map"].max()) == pytest.approx(3.0 * 0.9 ** 1.5, rel=0.05)


def test_auto_mouth_is_found_from_the_models_audio_response():
    src, x0, audio = _setup()
    blob = _blob(5, 8, 8, 0.75, 0.25, r=1.0)[None].expand(4, -1, -1, -1)
    model = Oracle(target, lambda s: target(s) - 0.5 * blob)  # audio only changes the picture around (0.75, 0.25)
    sigmas = FlowMatchSchedule(10).truncate(0.9)
    _, info = denoise(model, progressive_noise_init(src, 0.9), src, audio, None, sigmas, GuidanceConfig())
    assert info["mouth"]["source"] == "auto" and info["fallback_frames"] == []
    assert torch.allclose(info["centres"], torch.tensor([0.75, 0.25]).expand(5, 2), atol=0.07)
    # no localised response at all: every frame falls back to the default centre, and says so
    model = Oracle(target, lambda s: target(s) - 0.5)
    _, info = denoise(model, progressive_noise_init(src, 0.9), src, audio, None, sigmas, GuidanceConfig())
    assert info["fallback_frames"] == [0, 1, 2, 3, 4] and info["mouth"]["default_used"]
    assert torch.allclose(info["centres"], torch.tensor(DEFAULT_MOUTH_CENTRE).expand(5, 2))


def test_windowed_sampling_equals_whole_clip_for_a_per_frame_model_and_reports_progress():
    src, x0, audio = _setup(F_=11)
    sigmas = FlowMatchSchedule(8).truncate(0.8)
    x_init = progressive_noise_init(src, 0.8, seed=3)
    cfg = GuidanceConfig()
    centres = torch.full((11, 2), 0.5)
    whole, gmap_whole, _ = sample_windowed(Oracle(target, lambda s: 0.5 * target(s)), x_init, src, audio, None, sigmas, cfg, centres)
    calls = []
    win, gmap, rep = sample_windowed(Oracle(target, lambda s: 0.5 * target(s)), x_init, src, audio, None, sigmas, cfg, centres,
                                     window=4, overlap=1, progress=lambda d, t, m: calls.append((d, t)))
    assert rep["windows"] == [(0, 4), (3, 7), (6, 9), (8, 11)]
    assert torch.allclose(win, whole, atol=1e-5) and torch.allclose(gmap, gmap_whole, atol=1e-6)
    steps = sigmas.numel() - 1
    assert calls[-1] == (4 * steps, 4 * steps) and len(calls) == 4 * steps
    with pytest.raises(Cancelled):
        sample_windowed(Oracle(target), x_init, src, audio, None, sigmas, cfg, centres, window=4, overlap=1,
                        cancel=lambda: True)


def test_denoise_rejects_bad_shapes():
    src, x0, audio = _setup()
    with pytest.raises(OmniSyncError, match="decreasing"):
        denoise(Oracle(target), src, src, audio, None, torch.tensor([0.2, 0.5]), GuidanceConfig(), "auto")
    with pytest.raises(OmniSyncError, match="centres"):
        denoise(Oracle(target), src, src, audio, None, torch.tensor([0.5, 0.0]), GuidanceConfig(), torch.zeros(2, 2))


# -- options: one place for every default, the checkpoint's recommendation on auto -------------------

def test_resolve_options_user_then_checkpoint_then_default():
    from omnisync_core.sampling.options import SyncOptions, resolve_options

    d = SyncOptions()
    assert (d.tau, d.num_steps, d.window, d.overlap) == (0.92, 50, 16, 1)  # the paper's τ and steps, windowed
    opts, rep = resolve_options(None)
    assert opts == d and set(rep["from"].values()) == {"default"}
    meta = {"sampling": {"num_steps": 8, "tau": 0.9, "window": 8, "overlap": 2, "omega_peak": 2.0,
                         "cfg_cutoff": 0.3, "cfg_rescale": 0.7}}
    opts, rep = resolve_options(meta, num_steps="auto", window=None, tau=0.5, seed=4)
    assert (opts.num_steps, opts.window, opts.overlap, opts.tau, opts.seed) == (8, 8, 2, 0.5, 4)
    assert opts.guidance.omega_peak == 2.0 and opts.guidance.gamma == d.guidance.gamma
    assert rep["from"]["num_steps"] == "checkpoint" and rep["from"]["tau"] == "user"
    assert opts.guidance.cfg_cutoff == 0.3 and rep["from"]["cfg_cutoff"] == "checkpoint"
    assert rep["from"]["gamma"] == "default" and rep["ignored"] == ["cfg_rescale"]  # a newer file's key: reported


def test_resolve_options_rejects_bad_recommendations_and_unknown_options():
    from omnisync_core.sampling.options import SyncOptions, resolve_options

    with pytest.raises(OmniSyncError, match="checkpoint recommends invalid sampling"):
        resolve_options({"sampling": {"num_steps": 0}})
    with pytest.raises(OmniSyncError, match="unknown sync option"):
        resolve_options(None, steps=8)
    with pytest.raises(OmniSyncError, match="overlap"):
        resolve_options({"sampling": {"window": 4, "overlap": 2}}, overlap=4)
    with pytest.raises(OmniSyncError, match="tau"):
        SyncOptions(tau=0.0)


# -- fps: one rule -----------------------------------------------------------------------------------

def test_exact_fps_is_one_rule_for_files_widgets_and_alignment():
    from fractions import Fraction

    from omnisync_core.audio.features import align_features_to_frames
    from omnisync_core.io.fps import exact_fps

    assert exact_fps(29.97) == exact_fps(30000 / 1001) == Fraction(30000, 1001)  # what ffmpeg and people write
    assert exact_fps(25) == 25 and exact_fps(12.5) == Fraction(25, 2) and exact_fps(Fraction(2997, 100)) == Fraction(2997, 100)
    for bad in (0, -1.0, float("nan"), True, "25"):
        with pytest.raises(OmniSyncError, match="fps"):
            exact_fps(bad)
    feats = torch.arange(100, dtype=torch.float32).view(100, 1, 1)
    assert torch.equal(align_features_to_frames(feats, 29.97, 50)[0], align_features_to_frames(feats, 30000 / 1001, 50)[0])


def test_the_sampler_moves_only_the_window_to_the_models_device():
    src, _, audio = _setup(F_=6)
    sigmas = FlowMatchSchedule(4).truncate(0.8)
    x_init = progressive_noise_init(src, 0.8)
    out, _, rep = sample_windowed(Oracle(target), x_init, src, audio, None, sigmas, GuidanceConfig(),
                                  torch.full((6, 2), 0.5), window=3, overlap=1, device=torch.device("cpu"))
    assert out.device.type == "cpu" and rep["windows"] == [(0, 3), (2, 5), (4, 6)]
