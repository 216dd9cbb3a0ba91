"""Training: pair-kind rule, flow-matching loss goes down, condition dropout, EMA, exact resume, Wan init."""

from __future__ import annotations

import dataclasses
import json
import math
import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from omnisync_core.errors import Cancelled, OmniSyncError
from omnisync_core.train import trainer
from omnisync_core.train.batches import (
    ARBITRARY,
    PSEUDO_PAIRED,
    TensorPairSource,
    choose_pair_kind,
    draw_batch,
    sample_sigmas,
)
from omnisync_core.train.config import TrainConfig, load_train_config
from omnisync_core.train.ema import EMA

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
C, F_LAT, H_LAT = 12, 2, 4          # pixel codec patch 2 on 8x8 frames, 2 latent frames
AUDIO = {"encoder": "test", "sample_rate": 16000, "feature_rate": 50, "num_layers": 2, "dim": 8, "frame_window": 2}
N_A, A_DIM = 5, 16                  # tokens per latent frame (1 + 2·2), num_layers·dim


def tiny_config(tmp_path, **kw) -> TrainConfig:
    base = dict(model_preset="tiny", model_overrides={"dim": 32, "ffn_dim": 64, "num_heads": 2, "num_layers": 2,
                                                      "use_text": False},
                codec={"type": "pixel", "patch": 2, "latent_channels": C, "temporal_factor": 1, "spatial_factor": 2},
                audio=AUDIO, clip_frames=F_LAT, size=2 * H_LAT, lr=2e-3, warmup_steps=2, max_steps=6, batch_size=2,
                weight_decay=0.0, ema_decay=0.9, log_every=1, ckpt_every=1000, out_dir=str(tmp_path / "run"))
    base.update(kw)
    return TrainConfig(**base)


def tiny_source(n: int = 4, seed: int = 0, text_dim: int = 0) -> TensorPairSource:
    """n clips of two videos; clips (0,1) and (2,3) are pseudo-pairs (same video, different speech)."""
    g = torch.Generator().manual_seed(seed)
    latents = [torch.randn(C, F_LAT, H_LAT, H_LAT, generator=g) * 2.0 for _ in range(n)]
    audio = [torch.randn(F_LAT, N_A, A_DIM, generator=g) for _ in range(n)]
    text = [torch.randn(3, text_dim, generator=g) for _ in range(n)] if text_dim else None
    return TensorPairSource(latents, audio, text, video_ids=[i // 2 for i in range(n)],
                            pseudo_pairs=[(0, 1), (1, 0), (2, 3), (3, 2)][:n])


# -- timestep-dependent data sampling --------------------------------------------------------------

def test_choose_pair_kind_threshold():
    assert choose_pair_kind(851, 850) == PSEUDO_PAIRED
    assert choose_pair_kind(850, 850) == ARBITRARY
    assert choose_pair_kind(0, 850) == ARBITRARY
    assert choose_pair_kind(501, 500) == PSEUDO_PAIRED and choose_pair_kind(499, 500) == ARBITRARY


@pytest.mark.parametrize("sampling,expected", [
    ("uniform", 0.15),
    # P(sigmoid(z) > 0.85) = 1 − Φ(logit 0.85), z ~ N(0, 1)
    ("logit_normal", 0.5 * math.erfc(math.log(0.85 / 0.15) / math.sqrt(2))),
])
def test_pseudo_paired_fraction_matches_sigma_sampler(tmp_path, sampling, expected):
    cfg = tiny_config(tmp_path, timestep_sampling=sampling)
    batch = draw_batch(tiny_source(), 4000, cfg, torch.Generator().manual_seed(0))
    assert abs(batch.paired.float().mean().item() - expected) < 0.03
    assert torch.equal(batch.paired, batch.sigma * 1000 > 850)
    sigma = sample_sigmas(4000, cfg, torch.Generator().manual_seed(1))
    assert 0.0 <= sigma.min() and sigma.max() < 1.0


def test_pseudo_paired_examples_share_video_and_carry_target_audio(tmp_path):
    src = tiny_source()
    g = torch.Generator().manual_seed(0)
    ex = src.pseudo_paired(g)
    i = next(k for k, t in enumerate(src.latents) if t is ex["target_latents"])
    j = next(k for k, t in enumerate(src.latents) if t is ex["source_latents"])
    assert (j, i) in src.pseudo_pairs and ex["audio_tokens"] is src.audio[i]
    with pytest.raises(OmniSyncError, match="pseudo_pairs"):
        TensorPairSource(src.latents).pseudo_paired(g)


def test_timestep_shift_formula(tmp_path):
    cfg = tiny_config(tmp_path, timestep_shift=3.0)
    raw = torch.rand(10, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    shifted = sample_sigmas(10, cfg, torch.Generator().manual_seed(5))
    assert torch.allclose(shifted, (3 * raw / (1 + 2 * raw)).float())


# -- config -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, threshold", [
    ("tiny_cpu.json", 850), ("wan21_1.3b_init.json", 850),
    ("bundled_unet128.json", 850), ("bundled_unet128_stage2.json", 850), ("bundled_unet128_stage3.json", 850),
    ("bundled_unet128_stage4.json", 850), ("bundled_unet128_stage5.json", 850),
])
def test_shipped_configs_load(name, threshold):
    cfg = load_train_config(os.path.join(ROOT, "configs", name))
    assert cfg.pair_threshold_t == threshold


def test_config_rejects_unknown_keys_and_bad_values(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"lr": 1e-4, "learning_rate": 1e-4}))
    with pytest.raises(OmniSyncError, match="learning_rate"):
        load_train_config(str(path))
    with pytest.raises(OmniSyncError, match="p_drop"):
        TrainConfig(p_drop_audio=0.6, p_drop_text=0.5)
    with pytest.raises(OmniSyncError, match="parallel"):
        TrainConfig(parallel="deepspeed")
    cfg = load_train_config(os.path.join(ROOT, "configs", "tiny_cpu.json"), init_from="w.safetensors")
    assert cfg.init_from == "w.safetensors"
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_lr_warmup_then_cosine():
    cfg = TrainConfig(lr=1.0, warmup_steps=4, max_steps=14, min_lr_ratio=0.1)
    assert [trainer.lr_at(s, cfg) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert trainer.lr_at(9, cfg) == pytest.approx(0.55)      # half way down the cosine
    assert trainer.lr_at(14, cfg) == pytest.approx(0.1)


# -- EMA --------------------------------------------------------------------------------------------

def test_ema_by_hand_on_a_scalar():
    p = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        p.weight.fill_(1.0)
    ema = EMA(p, decay=0.9)
    for value in (2.0, 3.0):
        with torch.no_grad():
            p.weight.fill_(value)
        ema.update(p)
    # 0.9·1 + 0.1·2 = 1.1; 0.9·1.1 + 0.1·3 = 1.29
    assert ema.shadow["weight"].item() == pytest.approx(1.29, abs=1e-6)
    assert ema.shadow["weight"].dtype == torch.float32
    ema.copy_to(p)
    assert p.weight.item() == pytest.approx(1.29, abs=1e-6)


# -- the loop ---------------------------------------------------------------------------------------

def test_loss_decreases_on_a_tiny_fixed_dataset(tmp_path):
    cfg = tiny_config(tmp_path, max_steps=60, batch_size=4, lr=3e-3, p_drop_audio=0.0, p_drop_text=0.0,
                      p_drop_both=0.0)
    rows = []
    path = trainer.train(cfg, tiny_source(), callback=rows.append)
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 60
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, (first, last)
    with open(os.path.join(cfg.out_dir, "train.csv")) as f:
        header = f.readline().strip().split(",")
    assert header == list(trainer.LOG_COLUMNS)
    from omnisync_core.model.checkpoint import load_checkpoint
    model, meta = load_checkpoint(path)
    assert meta["train"]["max_steps"] == 60 and meta["codec"]["latent_channels"] == C


def _spy_build_model(monkeypatch, seen):
    real = trainer.build_model

    def build(config):
        model = real(config)

        def hook(module, args, kwargs):
            call = {k: (None if kwargs.get(k) is None else kwargs[k].detach().clone()) for k in ("audio", "text")}
            seen.append({**call, "grad": torch.is_grad_enabled(), "t": float(args[1][0])})
        model.register_forward_pre_hook(hook, with_kwargs=True)
        return model
    monkeypatch.setattr(trainer, "build_model", build)


def test_dropped_audio_reaches_the_model_as_zeros(tmp_path, monkeypatch):
    seen = []
    _spy_build_model(monkeypatch, seen)
    cfg = tiny_config(tmp_path, max_steps=3, p_drop_audio=1.0, p_drop_text=0.0, p_drop_both=0.0)
    trainer.train(cfg, tiny_source())
    assert len(seen) == 3
    for call in seen:
        assert call["audio"].shape == (2, F_LAT, N_A, A_DIM)
        assert torch.count_nonzero(call["audio"]) == 0
        assert call["text"] is None          # the model has no text branch


def test_dropped_text_is_zero_tokens_and_fractions_match(tmp_path):
    cfg = tiny_config(tmp_path)           # p_audio 0.1, p_text 0.1, p_both 0.05, exclusive
    batch = draw_batch(tiny_source(text_dim=6), 4000, cfg, torch.Generator().manual_seed(0))
    out = trainer.drop_conditions(batch, cfg, torch.Generator().manual_seed(1), text_branch=True)
    a0 = out.audio.flatten(1).abs().sum(1) == 0
    t0 = out.text.flatten(1).abs().sum(1) == 0
    assert abs(a0.float().mean() - 0.15) < 0.02 and abs(t0.float().mean() - 0.15) < 0.02
    assert abs((a0 & t0).float().mean() - 0.05) < 0.015
    kept = ~a0
    assert torch.equal(out.audio[kept], batch.audio[kept])
    assert trainer.drop_conditions(batch, cfg, torch.Generator(), text_branch=False).text is None


def _tensors(path):
    with safe_open(path, framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


@pytest.mark.parametrize("rollout_prob", [0.0, 0.5])
def test_resume_is_bit_identical(tmp_path, rollout_prob):
    kw = dict(max_steps=6, ckpt_every=3, grad_accum=2, p_drop_audio=0.3, p_drop_both=0.2, p_drop_text=0.0,
              rollout_prob=rollout_prob)
    straight = tiny_config(tmp_path / "a", **kw)
    trainer.train(straight, tiny_source())

    resumed = tiny_config(tmp_path / "b", **kw)
    done = {"step": 0}
    with pytest.raises(Cancelled):
        trainer.train(resumed, tiny_source(), callback=lambda row: done.update(step=row["step"]),
                      cancel=lambda: done["step"] >= 3)
    assert _tensors(os.path.join(resumed.out_dir, "state.safetensors")) and done["step"] == 3
    trainer.train(resumed, tiny_source())

    for name in ("state.safetensors", "optim.safetensors"):
        a = _tensors(os.path.join(straight.out_dir, name))
        b = _tensors(os.path.join(resumed.out_dir, name))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k
    opt = _tensors(os.path.join(straight.out_dir, "optim.safetensors"))
    assert {"opt.0.exp_avg", "opt.0.exp_avg_sq", "opt.0.step", "rng.torch", "rng.generator.0"} <= set(opt)
    with open(os.path.join(resumed.out_dir, "train.csv")) as f:
        assert [int(line.split(",")[0]) for line in f.readlines()[1:]] == [1, 2, 3, 4, 5, 6]


def test_validation_hook_and_default_held_out_loss(tmp_path):
    rows, calls = [], []
    cfg = tiny_config(tmp_path, max_steps=4, val_every=2)
    trainer.train(cfg, tiny_source(), val_source=tiny_source(seed=1), callback=rows.append)
    vals = [r for r in rows if "val_loss" in r]
    assert [r["step"] for r in vals] == [2, 4] and all(math.isfinite(r["val_loss"]) for r in vals)
    cfg2 = tiny_config(tmp_path / "h", max_steps=2, val_every=1)
    trainer.train(cfg2, tiny_source(), validate=lambda model, step: calls.append(step) or {"score": 1.0})
    assert calls == [1, 2]


# -- init from Wan 2.1 ------------------------------------------------------------------------------

def test_init_from_a_tiny_wan_checkpoint(tmp_path):
    from omnisync_core.model.dit import OmniSyncDiT

    cfg = tiny_config(tmp_path, max_steps=1, lr=0.0, ema_decay=0.0)
    dit = trainer.build_model(cfg).config
    torch.manual_seed(123)
    wan = OmniSyncDiT(dataclasses.replace(dit, source_condition=False, audio_dim=0))
    wan_sd = {k: v.contiguous() for k, v in wan.state_dict().items()}
    path = str(tmp_path / "wan_tiny.safetensors")
    save_file(wan_sd, path)

    trainer.train(dataclasses.replace(cfg, init_from=path), tiny_source())
    state = _tensors(os.path.join(cfg.out_dir, "state.safetensors"))
    model = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    assert set(wan_sd) <= set(model)
    for k, v in wan_sd.items():
        if model[k].shape == v.shape:
            assert torch.equal(model[k], v), k
        else:                                  # widened input: Wan's channels first, the rest zero
            assert k == "patch_embedding.weight", k
            assert torch.equal(model[k][:, :C], v)
            assert torch.count_nonzero(model[k][:, C:]) == 0
    assert model["patch_embedding.weight"].shape[1] == 2 * C
    with pytest.raises(OmniSyncError, match="init_from"):
        trainer.train(dataclasses.replace(cfg, init_from=str(tmp_path / "missing.safetensors"),
                                          out_dir=str(tmp_path / "x")), tiny_source())


def test_weighted_loss_is_the_weighted_mean_of_the_squared_velocity_error():
    from omnisync_core.train.batches import Batch

    class Zero(torch.nn.Module):
        def forward(self, x, timestep, source=None, audio=None, text=None):
            return torch.zeros_like(x)

    target = torch.zeros(1, 2, 1, 2, 2)
    noise = torch.zeros_like(target)
    noise[0, :, 0, 0, 0] = 1.0  # v_target = noise - x0 = 1 at one position (both channels), 0 elsewhere
    weight = torch.ones(1, 1, 2, 2)
    weight[0, 0, 0, 0] = 7.0
    b = Batch(torch.tensor([0.5]), torch.tensor([True]), target, target, None, None, weight)
    loss, _ = trainer.flow_matching_loss(Zero(), b, noise)
    assert float(loss) == pytest.approx(7.0 / 10.0)  # (7·1) / (7 + 1 + 1 + 1)
    b.weight = None
    assert float(trainer.flow_matching_loss(Zero(), b, noise)[0]) == pytest.approx(1.0 / 4.0)
    assert float(trainer.flow_matching_loss(Zero(), b, noise, "x0")[0]) == pytest.approx(0.25 * 0.25)
    b.weight = weight
    noise2 = 2 * noise                                     # v_target = 2 at the weighted position
    assert float(trainer.flow_matching_loss(Zero(), b, noise2)[0]) == pytest.approx(4 * 7.0 / 10.0)


# -- sampler-path (rollout) training ----------------------------------------------------------------

def test_init_from_an_omnisync_checkpoint_starts_as_that_model(tmp_path):
    """Stage 2 of the bundled model starts from an OmniSync export through init_from."""
    from omnisync_core.model.checkpoint import load_checkpoint

    path = trainer.train(tiny_config(tmp_path / "stage1", max_steps=3), tiny_source())
    stage1, _ = load_checkpoint(path)
    fresh = trainer.build_model(tiny_config(tmp_path / "stage2"))
    trainer.init_from_wan(fresh, path)
    want = stage1.state_dict()
    got = fresh.state_dict()
    assert got.keys() == want.keys()
    for k in want:
        assert torch.equal(got[k], want[k]), k
    assert torch.count_nonzero(got["blocks.0.audio_cross_attn.o.weight"]) > 0  # the audio branch came along


def _trained_looking_model(cfg):
    """A tiny model whose zero-initialised output layers are randomised, so its velocity is not trivial."""
    torch.manual_seed(3)
    model = trainer.build_model(cfg)
    with torch.no_grad():
        model.head.head.weight.normal_(std=0.1)
        for block in model.blocks:
            block.audio_cross_attn.o.weight.normal_(std=0.1)
        model.patch_embedding.weight.normal_(std=0.1)
    return model.eval()


def test_rollout_state_is_where_the_sampler_stands(tmp_path):
    from omnisync_core.sampling.guidance import GuidanceConfig
    from omnisync_core.sampling.sampler import denoise

    cfg = tiny_config(tmp_path, rollout_steps=8, rollout_tau=0.92)
    model = _trained_looking_model(cfg)
    sigmas = trainer.rollout_sigmas(cfg)
    assert float(sigmas[0]) == pytest.approx(0.92) and float(sigmas[-1]) == pytest.approx(0.125)
    assert sigmas.numel() == 8  # τ, then the 8-step schedule's points below it, without the final 0
    g = torch.Generator().manual_seed(0)
    source = torch.randn(1, C, F_LAT, H_LAT, H_LAT, generator=g)
    noise = torch.randn(source.shape, generator=g)
    audio = torch.randn(1, F_LAT, N_A, A_DIM, generator=g)
    start = trainer.rollout_state(model, source, noise, audio, None, sigmas, 0)
    assert torch.allclose(start, 0.08 * source + 0.92 * noise, atol=1e-6)  # the progressive init (Eq. 5)
    no_guidance = GuidanceConfig(omega_base=1.0, omega_peak=1.0, gamma=0.0)  # weight ≡ 1: conditional pass only
    centres = torch.full((F_LAT, 2), 0.5)
    for k in (1, 3, 7):
        ours = trainer.rollout_state(model, source, noise, audio, None, sigmas, k)
        ref, _ = denoise(model, start[0], source[0], audio[0], None, sigmas[: k + 1], no_guidance, centres)
        assert torch.allclose(ours[0], ref, atol=1e-5), k
        assert not torch.allclose(ours, start, atol=1e-3)  # the model really moved it
    with pytest.raises(OmniSyncError, match="outside"):
        trainer.rollout_state(model, source, noise, audio, None, sigmas, 8)


def test_loss_from_a_given_state_asks_for_the_straight_way_to_the_target():
    from omnisync_core.train.batches import Batch

    class Zero(torch.nn.Module):
        def forward(self, x, timestep, source=None, audio=None, text=None):
            return torch.zeros_like(x)

    g = torch.Generator().manual_seed(0)
    target = torch.randn(2, 3, 1, 2, 2, generator=g)
    noise = torch.randn(target.shape, generator=g)
    b = Batch(torch.tensor([0.5, 0.25]), torch.tensor([True, True]), target, target, None, None, None)
    ideal = (1 - b.sigma.view(-1, 1, 1, 1, 1)) * target + b.sigma.view(-1, 1, 1, 1, 1) * noise
    # on the ideal path a given state is the same as the default
    assert torch.allclose(trainer.flow_matching_loss(Zero(), b, noise, "velocity", ideal)[1],
                          trainer.flow_matching_loss(Zero(), b, noise)[1])
    # off the path: the zero velocity's error is ((x_σ − x₀)/σ)², and σ² of it under x0 weighting
    off = target + 0.3
    _, per = trainer.flow_matching_loss(Zero(), b, noise, "velocity", off)
    assert torch.allclose(per, (0.3 / b.sigma) ** 2)
    _, per = trainer.flow_matching_loss(Zero(), b, noise, "x0", off)
    assert torch.allclose(per, torch.full((2,), 0.09))
    with pytest.raises(OmniSyncError, match="shape"):
        trainer.flow_matching_loss(Zero(), b, noise, "x0", off[:1])


def test_rollout_training_feeds_the_model_sampler_states(tmp_path, monkeypatch):
    seen = []
    _spy_build_model(monkeypatch, seen)
    cfg = tiny_config(tmp_path, max_steps=8, rollout_prob=1.0, rollout_steps=4, rollout_tau=0.92)
    rows = []
    trainer.train(cfg, tiny_source(), callback=rows.append)
    losses = [r for r in rows if "loss" in r]
    assert len(losses) == 8 and all(math.isfinite(r["loss"]) and math.isnan(r["loss_lo"]) for r in losses)
    allowed = {round(1000 * float(s), 3) for s in trainer.rollout_sigmas(cfg)}
    assert {round(c["t"], 3) for c in seen} <= allowed  # every call is at a sampler σ
    graded = [c["t"] for c in seen if c["grad"]]
    assert len(graded) == 8                           # one training forward per step
    assert len(seen) > len(graded)                    # plus gradient-free rollout steps


def test_rollout_config_is_checked(tmp_path):
    for bad in ({"rollout_prob": 1.5}, {"rollout_steps": 0}, {"rollout_tau": 0.0}):
        with pytest.raises(OmniSyncError, match="rollout"):
            tiny_config(tmp_path, **bad)


# -- auxiliary mouth supervision of the U-Net's audio read-out (training aid; inference never uses it) --

P_MOUTH = 3
UNET_OVERRIDES = {"channels": [8, 16], "adapter_dim": 8, "freq_dim": 8}


def _read_out_model(tmp_path):
    """A tiny U-Net with a P_MOUTH-parameter read-out; its zero-initialised output layer randomised."""
    torch.manual_seed(3)
    model = trainer.build_model(tiny_config(tmp_path, arch="unet",
                                            model_overrides={**UNET_OVERRIDES, "mouth_params": P_MOUTH}))
    with torch.no_grad():
        model.out.weight.normal_(std=0.1)
    return model.eval()


def test_aux_mouth_loss_adds_the_read_out_error_of_examples_that_heard_audio(tmp_path):
    from omnisync_core.train.batches import Batch

    model = _read_out_model(tmp_path)
    g = torch.Generator().manual_seed(2)
    target, src = torch.randn(3, C, F_LAT, H_LAT, H_LAT, generator=g), torch.randn(3, C, F_LAT, H_LAT, H_LAT, generator=g)
    audio = torch.randn(3, F_LAT, N_A, A_DIM, generator=g)
    audio[2] = 0.0                                                               # example 2: audio dropped
    at = torch.rand(3, F_LAT, 2, generator=g)
    params = torch.rand(3, F_LAT, P_MOUTH, generator=g)
    noise = torch.randn(target.shape, generator=g)
    b = Batch(torch.tensor([0.9, 0.5, 0.2]), torch.tensor([True, False, False]), src, target, audio, None,
              mouth_at=at, mouth_params=params)
    extras = {}
    with torch.no_grad():
        plain, per_plain = trainer.flow_matching_loss(model, b, noise, "x0")
        with_aux, per = trainer.flow_matching_loss(model, b, noise, "x0", aux_mouth_weight=0.5, extras=extras)
        _, read_out = model((1 - b.sigma.view(-1, 1, 1, 1, 1)) * target + b.sigma.view(-1, 1, 1, 1, 1) * noise,
                            1000 * b.sigma, source=src, audio=audio, mouth_at=at)
    by_hand = ((read_out[:2] - params[:2]) ** 2).mean()                         # examples 0 and 1 only
    assert extras["aux"] == pytest.approx(float(by_hand), rel=1e-5)
    assert float(with_aux) == pytest.approx(float(plain) + 0.5 * float(by_hand), rel=1e-5)
    assert torch.allclose(per, per_plain)
    # the gradient of the read-out term reaches the audio branch (that is its purpose)
    model.zero_grad()
    trainer.flow_matching_loss(model, b, noise, "x0", aux_mouth_weight=0.5)[0].backward()
    assert float(model.audio_adapter.proj.weight.grad.abs().sum()) > 0
    b.mouth_at = None
    with pytest.raises(OmniSyncError, match="mouth_at"):
        trainer.flow_matching_loss(model, b, noise, "x0", aux_mouth_weight=0.5)


def test_training_with_the_aux_mouth_read_out_logs_it_and_lowers_it(tmp_path):
    g = torch.Generator().manual_seed(3)
    src = tiny_source()
    clip_at = [torch.rand(F_LAT, 2, generator=g) for _ in range(4)]
    clip_params = [torch.rand(F_LAT, 5, generator=g) for _ in range(4)]

    class WithMouth:
        def _add(self, ex):
            i = next(i for i, lat in enumerate(src.latents) if lat is ex["target_latents"])
            return {**ex, "mouth_at": clip_at[i], "mouth_params": clip_params[i]}

        def arbitrary(self, generator, crop=0):
            return self._add(src.arbitrary(generator, crop))

        def pseudo_paired(self, generator, crop=0):
            return self._add(src.pseudo_paired(generator, crop))

    cfg = tiny_config(tmp_path, arch="unet", model_overrides={**UNET_OVERRIDES, "mouth_params": 5},
                      aux_mouth_weight=1.0, max_steps=40, batch_size=4,
                      lr=1e-2, rollout_prob=0.25, p_drop_audio=0.1, p_drop_text=0.0, p_drop_both=0.0)
    rows = []
    path = trainer.train(cfg, WithMouth(), callback=rows.append)
    aux = [r["loss_aux"] for r in rows if "loss_aux" in r]
    assert len(aux) == 40 and all(math.isfinite(a) for a in aux)
    assert sum(aux[-5:]) / 5 < 0.5 * sum(aux[:5]) / 5, (aux[:5], aux[-5:])
    from omnisync_core.model.checkpoint import load_checkpoint
    model, meta = load_checkpoint(path)
    assert meta["model"]["mouth_params"] == 5 and model.audio_adapter.read_out.out_features == 5
    with pytest.raises(OmniSyncError, match="needs arch \"unet\""):
        TrainConfig(aux_mouth_weight=1.0)


# -- mixed frame sizes (issue 22) ---------------------------------------------------------------------

def test_mixed_size_source_picks_by_probability_and_checks_them():
    from omnisync_core.train.batches import MixedSizePairSource

    small, large = tiny_source(), tiny_source(seed=1)
    mix = MixedSizePairSource([(small, 0.75, 4), (large, 0.25, 8)])
    g = torch.Generator().manual_seed(0)
    picks = [mix.pick(g) for _ in range(4000)]
    share = sum(src is large for src, _ in picks) / len(picks)
    assert abs(share - 0.25) < 0.03
    assert {crop for src, crop in picks if src is large} == {8} and {crop for src, crop in picks if src is small} == {4}
    with pytest.raises(OmniSyncError, match="sum to 1"):
        MixedSizePairSource([(small, 0.5, 4), (large, 0.25, 8)])
    with pytest.raises(OmniSyncError, match="size_mix"):
        TrainConfig(size_mix=[{"data": "d", "size": 256, "prob": 1.0, "train_crop": 128}])
    with pytest.raises(OmniSyncError, match="size_mix"):
        TrainConfig(size_mix=[{"data": "d", "size": 256}])
    with pytest.raises(OmniSyncError, match="silence_prob"):
        TrainConfig(closed_target_prob=0.7, silence_prob=0.4)


def test_training_steps_draw_one_frame_size_each(tmp_path, monkeypatch):
    """Each step's batch comes whole from the source the mix picked: every example has one size."""
    from omnisync_core.train.batches import MixedSizePairSource

    def clips(n, side, seed):
        g = torch.Generator().manual_seed(seed)
        lat = [torch.randn(C, F_LAT, side, side, generator=g) for _ in range(n)]
        aud = [torch.randn(F_LAT, N_A, A_DIM, generator=g) for _ in range(n)]
        return TensorPairSource(lat, aud, video_ids=[i // 2 for i in range(n)], pseudo_pairs=[(0, 1), (1, 0)])

    mix = MixedSizePairSource([(clips(2, H_LAT, 0), 0.5, 0), (clips(2, 2 * H_LAT, 1), 0.5, 0)])
    shapes = []
    real = trainer.flow_matching_loss

    def spy(model, batch, noise, *args, **kwargs):
        shapes.append(tuple(batch.target.shape[-2:]))
        return real(model, batch, noise, *args, **kwargs)

    monkeypatch.setattr(trainer, "flow_matching_loss", spy)
    trainer.train(tiny_config(tmp_path, max_steps=12), mix)
    assert set(shapes) == {(H_LAT, H_LAT), (2 * H_LAT, 2 * H_LAT)} and len(shapes) == 12
