"""Flow-matching training of an OmniSync network, the DiT or the U-Net (one process, or many under torchrun).

One step (DESIGN.md conventions, σ ∈ [0, 1], t = 1000·σ):

    x0 = target latents, ε ~ N(0, I)
    x_σ = (1 − σ)·x0 + σ·ε,  v_target = ε − x0
    loss = MSE(model(x_σ, 1000σ, source, audio, text), v_target)

Options beyond the paper (all off by default, see :class:`.config.TrainConfig`): the "x0" loss
weighting (σ²·MSE), a mouth-box loss weight, sampler-path rollouts, crops around the mouth, and for
the U-Net the auxiliary MSE of its mouth-parameter read-out (``aux_mouth_weight``).

σ is drawn first and decides the pair kind (:mod:`.batches`). Condition dropout (classifier-free
guidance) follows the convention the sampler's unconditional pass relies on: dropped audio is
``torch.zeros_like(audio)``, dropped text is zero text tokens (a model without a text branch gets
None).

Files in ``out_dir``: ``train.csv`` (and ``val.csv``), ``state.safetensors`` (model and EMA
weights), ``optim.safetensors`` (flattened AdamW state, RNG states; param groups as JSON
metadata) and, at the end, ``omnisync_ema.safetensors``: the EMA weights as a self-describing
OmniSync checkpoint. Nothing is pickled.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import time
from contextlib import nullcontext
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..errors import OmniSyncError
from ..io.files import atomic_output
from ..progress import CancelCheck, check_cancel
from ..sampling.schedule import FlowMatchSchedule, sigma_to_timestep
from . import distributed as D
from .batches import PSEUDO_PAIRED, Batch, MixedSizePairSource, PairSource, collate, draw_batch
from .config import TrainConfig
from .ema import EMA

log = logging.getLogger(__name__)

STATE_FILE, OPTIM_FILE, EXPORT_FILE = "state.safetensors", "optim.safetensors", "omnisync_ema.safetensors"
LOG_COLUMNS = ("step", "loss", "loss_hi", "loss_lo", "lr", "examples_per_s", "seconds", "loss_aux")
VAL_SEED_OFFSET = 1_000_003   # the held-out draw uses its own fixed stream, the same at every validation
VAL_BATCHES = 4

StepCallback = Callable[[Dict[str, float]], None]
Validator = Callable[[nn.Module, int], Dict[str, float]]


# -- model ---------------------------------------------------------------------------------------

def build_model(config: TrainConfig) -> nn.Module:
    """The network the config describes; channels come from the codec, the audio widths from the audio spec.

    arch "dit": ``preset(model_preset, **model_overrides)``; arch "unet": ``UNetConfig(**model_overrides)``.
    """
    from ..model.config import CodecSpec
    audio = config.audio
    fields = {"latent_channels": CodecSpec.from_dict(config.codec).latent_channels,
              "audio_dim": audio["num_layers"] * audio["dim"] if audio else 0}
    if config.arch == "unet":
        if not audio:
            raise OmniSyncError("an arch 'unet' model needs an audio spec in the training config.")
        fields.update(audio_layers=audio["num_layers"], audio_tokens=1 + 2 * int(audio.get("frame_window", 2)))
    fields.update(config.model_overrides)
    if config.arch == "unet":
        from ..model.unet import OmniSyncUNet, UNetConfig
        return OmniSyncUNet(UNetConfig(**fields))
    from ..model.config import preset
    from ..model.dit import OmniSyncDiT
    return OmniSyncDiT(preset(config.model_preset, **fields))


def uses_text(model: nn.Module) -> bool:
    cfg = getattr(D.unwrap(model), "config", None)
    return bool(getattr(cfg, "use_text", True))


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warmup over ``warmup_steps``, then cosine from lr to min_lr_ratio·lr at max_steps."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.max_steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    min_lr = config.min_lr_ratio * config.lr
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (config.lr - min_lr)


# -- one step ------------------------------------------------------------------------------------

def drop_conditions(batch: Batch, config: TrainConfig, generator: torch.Generator, text_branch: bool) -> Batch:
    """Classifier-free-guidance dropout, per example; the three cases are exclusive.

    u < p_both: drop audio and text; next p_audio: audio only; next p_text: text only.
    Dropped audio = zeros_like(audio); dropped text = zero tokens; no text branch -> text None.
    """
    u = torch.rand(batch.sigma.shape[0], generator=generator)
    both = u < config.p_drop_both
    audio_only = (u >= config.p_drop_both) & (u < config.p_drop_both + config.p_drop_audio)
    lo = config.p_drop_both + config.p_drop_audio
    text_only = (u >= lo) & (u < lo + config.p_drop_text)
    audio, text = batch.audio, batch.text if text_branch else None
    if audio is not None:
        drop = (both | audio_only).view(-1, *[1] * (audio.dim() - 1))
        audio = torch.where(drop, torch.zeros_like(audio), audio)
    if text is not None:
        drop = (both | text_only).view(-1, *[1] * (text.dim() - 1))
        text = torch.where(drop, torch.zeros_like(text), text)
    return dataclasses.replace(batch, audio=audio, text=text)


def flow_matching_loss(model: nn.Module, batch: Batch, noise: torch.Tensor,
                       weighting: str = "velocity",
                       x_sigma: Optional[torch.Tensor] = None, aux_mouth_weight: float = 0.0,
                       extras: Optional[Dict[str, float]] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean velocity MSE over the batch, and the per-example losses ``(B,)``.

    ``weighting="x0"`` multiplies each example by σ²: since v̂ − v = (x₀ − x̂₀)/σ on the linear
    path, that is the MSE of the clean-frame estimate.

    ``x_sigma`` (B, C, F, h, w), when given, replaces the ideal path point ``(1 − σ)·x₀ + σ·ε`` (e.g. a
    state the sampler reached, :func:`rollout_state`); the target velocity is then the one that goes
    straight from there to x₀ in the remaining σ: ``(x_σ − x₀)/σ`` (equal to ``ε − x₀`` on the ideal path).

    ``aux_mouth_weight`` > 0 (and a batch with ``mouth_at``/``mouth_params``): the model is called with
    ``mouth_at`` and returns (velocity, mouth read-out) — the U-Net's audio-adapter read-out
    (``UNetConfig.mouth_params``) — and ``aux_mouth_weight`` × the read-out's MSE against the target's
    mouth parameters is added to the returned mean (examples whose audio is all zero, i.e. dropped,
    are left out). The per-example losses stay the flow-matching ones; ``extras["aux"]`` gets the
    read-out's MSE when ``extras`` is a dict.
    """
    x0 = batch.target                                             # (B, C, F, h, w)
    s = batch.sigma.view(-1, 1, 1, 1, 1).to(x0.dtype)
    if x_sigma is None:
        x_sigma = (1.0 - s) * x0 + s * noise
        v_target = noise - x0
    else:
        if x_sigma.shape != x0.shape:
            raise OmniSyncError(f"x_sigma {tuple(x_sigma.shape)} must have the target's shape {tuple(x0.shape)}.")
        if bool((batch.sigma <= 0).any()):
            raise OmniSyncError("a given x_sigma needs σ > 0 for every example (the velocity divides by σ).")
        v_target = (x_sigma - x0) / s
    use_aux = aux_mouth_weight > 0 and batch.audio is not None
    if use_aux and (batch.mouth_at is None or batch.mouth_params is None):
        raise OmniSyncError("aux_mouth_weight > 0 needs batches with mouth_at and mouth_params (a dataset folder "
                            "source built with mouth_params=True).")
    kwargs = {"mouth_at": batch.mouth_at} if use_aux else {}
    v = model(x_sigma, sigma_to_timestep(batch.sigma), source=batch.source, audio=batch.audio, text=batch.text,
              **kwargs)
    if use_aux:
        v, read_out = v
    err = (v.float() - v_target.float()) ** 2                                                # (B, C, F, h, w)
    if batch.weight is not None:  # weighted mean over positions (the weight is shared by the channels)
        w = batch.weight.float().to(err.device)[:, None]
        per_example = (err * w).flatten(1).sum(1) / (w.expand_as(err).flatten(1).sum(1))
    else:
        per_example = err.flatten(1).mean(1)                                                 # (B,)
    if weighting == "x0":
        per_example = per_example * batch.sigma.float().to(per_example.device) ** 2
    loss = per_example.mean()
    if use_aux:
        heard = (batch.audio.flatten(1) != 0).any(1).float().to(read_out.device)          # (B,) audio not dropped
        aux_each = F.mse_loss(read_out, batch.mouth_params.float().to(read_out.device),
                              reduction="none").flatten(1).mean(1)
        aux = (aux_each * heard).sum() / heard.sum().clamp_min(1.0)
        loss = loss + aux_mouth_weight * aux
        if extras is not None:
            extras["aux"] = float(aux.detach())
    return loss, per_example


def rollout_sigmas(config: TrainConfig) -> torch.Tensor:
    """The σ points the sampler visits: ``FlowMatchSchedule(rollout_steps).truncate(rollout_tau)`` without the final 0."""
    return FlowMatchSchedule(config.rollout_steps).truncate(config.rollout_tau)[:-1]


@torch.no_grad()
def rollout_state(model: nn.Module, source: torch.Tensor, noise: torch.Tensor, audio: Optional[torch.Tensor],
                  text: Optional[torch.Tensor], sigmas: torch.Tensor, k: int) -> torch.Tensor:
    """Where the sampler stands after ``k`` Euler steps (no guidance): ``x`` at σ = sigmas[k].

    Starts from the progressive init ``(1 − σ₀)·source + σ₀·ε`` (Eq. 5) and applies
    :meth:`FlowMatchSchedule.step` with the model's conditional velocity, exactly as the sampler does.
    source, noise: (B, C, F, h, w); audio (B, F, N_a, D) or None; sigmas (S,) decreasing; 0 ≤ k < S.
    """
    if not 0 <= k < sigmas.numel():
        raise OmniSyncError(f"rollout step {k} is outside the {sigmas.numel()} sampler steps.")
    x = (1.0 - float(sigmas[0])) * source.float() + float(sigmas[0]) * noise.float()
    B = x.shape[0]
    for i in range(k):
        t = sigma_to_timestep(torch.full((B,), float(sigmas[i])))
        v = model(x.to(source.dtype), t, source=source, audio=audio, text=text).float()
        x = FlowMatchSchedule.step(v, x, float(sigmas[i]), float(sigmas[i + 1]))
    return x.to(source.dtype)


def draw_rollout_batch(model: nn.Module, pairs: PairSource, config: TrainConfig, generator: torch.Generator,
                       text_branch: bool, device: torch.device, crop: int = 0) -> Tuple[Batch, torch.Tensor, torch.Tensor]:
    """A pseudo-paired batch at a sampler step k (uniform), its noise and its x_σ from :func:`rollout_state`.

    The rollout uses the undropped conditions (the sampler's conditional pass); condition dropout is
    applied afterwards to what the loss sees, as for every batch.
    """
    n = config.batch_size
    examples = [pairs.pseudo_paired(generator, crop) for _ in range(n)]
    sigmas = rollout_sigmas(config)
    k = int(torch.randint(0, sigmas.numel(), (1,), generator=generator))
    batch = collate(examples, sigmas[k].expand(n).clone(), [PSEUDO_PAIRED] * n)
    noise = torch.randn(batch.target.shape, generator=generator)
    on = batch.to(device)
    text = on.text if text_branch else None
    with autocast_context(config, device):
        x = rollout_state(model, on.source, noise.to(device), on.audio, text, sigmas, k)
    return batch, noise, x


def autocast_context(config: TrainConfig, device: torch.device):
    """bf16 autocast on CUDA and on CPUs (convolutions and matmuls in bf16, float32 weights and loss)."""
    if config.mixed_precision == "bf16" and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


# -- the loop ------------------------------------------------------------------------------------

def train(config: TrainConfig, pair_source: PairSource, val_source: Optional[PairSource] = None,
          callback: Optional[StepCallback] = None, cancel: Optional[CancelCheck] = None,
          validate: Optional[Validator] = None) -> str:
    """Train until ``max_steps`` (resuming from ``out_dir`` when it holds a state); return the EMA export path.

    ``callback(row)`` gets every logged row (LOG_COLUMNS) and every validation result; ``cancel()``
    is checked before each step (raises Cancelled; the last checkpoint stays). ``validate(model,
    step) -> dict`` runs on every rank every ``val_every`` steps (e.g. :class:`.validation.RenderValidator`);
    the loss on ``val_source`` is added to its result when a ``val_source`` is given.
    """
    info = D.init_distributed()
    torch.manual_seed(config.seed)                    # identical initial weights on every rank
    core = build_model(config)
    if config.init_from:
        init_from_wan(core, config.init_from)
    core.gradient_checkpointing = config.gradient_checkpointing
    if config.mixed_precision == "bf16" and info.device.type not in ("cuda", "cpu"):
        log.warning("mixed_precision='bf16' autocasts on CUDA and CPU only; training in fp32 on %s.", info.device)
    model = D.wrap_model(core.to(info.device), config, info)
    ema = EMA(core, config.ema_decay)
    opt = torch.optim.AdamW(core.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed + info.rank)   # σ, data, dropout, noise of this rank
    step = load_training_state(config.out_dir, model, ema, opt, gen, info) if config.resume else 0
    text_branch, t_start, seen, sums = uses_text(core), time.time(), 0, torch.zeros(7, dtype=torch.float64)
    while step < config.max_steps:
        check_cancel(cancel)
        lr = lr_at(step, config)
        for group in opt.param_groups:
            group["lr"] = lr
        source, side = pair_source, config.train_crop
        if isinstance(pair_source, MixedSizePairSource):  # one frame size per step
            source, side = pair_source.pick(gen)
        whole = not side or (step + 1) % config.full_frame_every == 0
        crop = 0 if whole else side
        for micro in range(config.grad_accum):
            x_sigma = None
            if config.rollout_prob > 0 and float(torch.rand((), generator=gen)) < config.rollout_prob:
                batch, noise, x_sigma = draw_rollout_batch(core, source, config, gen, text_branch, info.device, crop)
                batch = drop_conditions(batch, config, gen, text_branch)
            else:
                batch = draw_batch(source, config.batch_size, config, gen, crop=crop)
                batch = drop_conditions(batch, config, gen, text_branch)
                noise = torch.randn(batch.target.shape, generator=gen)
            extras: Dict[str, float] = {}
            with D.grad_sync(model, micro == config.grad_accum - 1):
                with autocast_context(config, info.device):
                    loss, per_example = flow_matching_loss(model, batch.to(info.device), noise.to(info.device),
                                                           config.loss_weighting, x_sigma, config.aux_mouth_weight,
                                                           extras)
                (loss / config.grad_accum).backward()
            hi = batch.paired.to(info.device)
            aux = torch.tensor([extras.get("aux", 0.0), float("aux" in extras)], device=per_example.device)
            sums += torch.cat([torch.stack([per_example.sum(), per_example[hi].sum(), hi.sum(),
                                            per_example[~hi].sum(), (~hi).sum()]), aux]).detach().double().cpu()
            seen += config.batch_size
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(core.parameters(), config.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema.update(core)
        step += 1
        if step % config.log_every == 0 or step == config.max_steps:
            write_log_row(config, info, step, lr, sums, seen, t_start, callback)
            sums.zero_()
        if config.val_every and step % config.val_every == 0 and (validate or val_source is not None):
            result = validate(model, step) if validate else {}
            if val_source is not None:
                result.update(validation_loss(model, val_source, config, info))
            write_val_row(config, info, step, result, callback)
        if step % config.ckpt_every == 0 or step == config.max_steps:
            save_training_state(config, step, model, ema, opt, gen, info)
        if config.export_every and step % config.export_every == 0:
            export_ema(config, ema, info, step)
    return export_ema(config, ema, info)


# -- logging and validation ----------------------------------------------------------------------

def write_log_row(config, info, step, lr, sums, seen, t_start, callback) -> None:
    total = D.all_reduce_sum(sums.to(info.device), info).cpu()
    examples = seen * info.world_size
    elapsed = time.time() - t_start
    row = {"step": step, "loss": float(total[0] / max(total[2] + total[4], 1)),
           "loss_hi": float(total[1] / total[2]) if total[2] > 0 else float("nan"),
           "loss_lo": float(total[3] / total[4]) if total[4] > 0 else float("nan"),
           "lr": lr, "examples_per_s": examples / max(elapsed, 1e-9), "seconds": elapsed,
           "loss_aux": float(total[5] / total[6]) if total[6] > 0 else float("nan")}
    if info.is_main:
        _append_csv(os.path.join(config.out_dir, "train.csv"), LOG_COLUMNS, row)
        if callback is not None:
            callback(row)


def write_val_row(config, info, step, result: Dict[str, float], callback) -> None:
    if info.is_main:
        row = {"step": step, **{f"val_{k}": v for k, v in result.items()}}
        _append_csv(os.path.join(config.out_dir, "val.csv"), tuple(row), row)
        if callback is not None:
            callback(row)


def _append_csv(path: str, columns, row) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    new = not os.path.exists(path)
    with open(path, "a", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(columns))
        if new:
            w.writeheader()
        w.writerow(row)


@torch.no_grad()
def validation_loss(model: nn.Module, val_source: PairSource, config: TrainConfig, info: D.DistInfo) -> Dict[str, float]:
    """Conditional flow-matching loss on a held-out source, drawn from the same fixed stream each time."""
    gen = torch.Generator().manual_seed(config.seed + VAL_SEED_OFFSET + info.rank)
    total = torch.zeros(2, dtype=torch.float64)
    for _ in range(VAL_BATCHES):
        batch = draw_batch(val_source, config.batch_size, config, gen)
        if not uses_text(model):
            batch.text = None
        noise = torch.randn(batch.target.shape, generator=gen)
        with autocast_context(config, info.device):
            _, per_example = flow_matching_loss(model, batch.to(info.device), noise.to(info.device),
                                                config.loss_weighting)
        total += torch.stack([per_example.sum().double().cpu(), torch.tensor(float(per_example.numel()))])
    total = D.all_reduce_sum(total.to(info.device), info).cpu()
    return {"loss": float(total[0] / total[1])}


# -- checkpoints (safetensors only) ----------------------------------------------------------------

def save_training_state(config: TrainConfig, step: int, model: nn.Module, ema: EMA,
                        opt: torch.optim.Optimizer, gen: torch.Generator, info: D.DistInfo) -> None:
    """``state.safetensors`` (model.*, ema.*) and ``optim.safetensors`` (opt.*, rng.*); rank 0 writes."""
    weights = D.full_model_state(model)                       # collective under FSDP
    ema_weights = ema.state_dict()
    opt_sd = D.full_optimizer_state(model, opt)
    gens = D.gather_generator_states(gen, info)
    if not info.is_main:
        D.barrier(info)
        return
    os.makedirs(config.out_dir, exist_ok=True)
    meta = {"step": str(step), "train_config": json.dumps(config.to_dict())}
    tensors = {f"opt.{i}.{k}": v for i, s in opt_sd["state"].items() for k, v in s.items()}
    tensors.update({f"rng.generator.{r}": g for r, g in gens.items()})
    tensors["rng.torch"] = torch.get_rng_state()
    groups = [{k: v for k, v in g.items()} for g in opt_sd["param_groups"]]
    _save_atomic(tensors, os.path.join(config.out_dir, OPTIM_FILE), {**meta, "param_groups": json.dumps(groups)})
    state = {f"model.{k}": v for k, v in weights.items()}
    state.update({f"ema.{k}": v for k, v in ema_weights.items()})
    _save_atomic(state, os.path.join(config.out_dir, STATE_FILE), meta)
    D.barrier(info)


def _save_atomic(tensors: Dict[str, torch.Tensor], path: str, metadata: Dict[str, str]) -> None:
    with atomic_output(path) as part:
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, part, metadata=metadata)


def _read(path: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    with safe_open(path, framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}


def load_training_state(out_dir: str, model: nn.Module, ema: EMA, opt: torch.optim.Optimizer,
                        gen: torch.Generator, info: D.DistInfo) -> int:
    """Restore weights, EMA, optimiser and RNG from ``out_dir``; return the step (0 if nothing there)."""
    state_path, optim_path = os.path.join(out_dir, STATE_FILE), os.path.join(out_dir, OPTIM_FILE)
    if not os.path.exists(state_path):
        return 0
    if not os.path.exists(optim_path):
        raise OmniSyncError(f"{state_path} has no {OPTIM_FILE} beside it; restore it, or use a new out_dir.")
    state, meta = _read(state_path)
    optim, ometa = _read(optim_path)
    if meta.get("step") != ometa.get("step"):
        raise OmniSyncError(f"{STATE_FILE} (step {meta.get('step')}) and {OPTIM_FILE} (step {ometa.get('step')}) "
                            f"in {out_dir} disagree; a save was interrupted, use a new out_dir.")
    D.load_full_model_state(model, {k[6:]: v for k, v in state.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("ema.")})
    per_param: Dict[int, Dict[str, torch.Tensor]] = {}
    for key, value in optim.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            per_param.setdefault(int(idx), {})[name] = value
    groups = json.loads(ometa["param_groups"])
    for g in groups:
        g["betas"] = tuple(g["betas"])
    D.load_full_optimizer_state(model, opt, {"state": per_param, "param_groups": groups})
    gen_key = f"rng.generator.{info.rank}"
    if gen_key not in optim:
        raise OmniSyncError(f"{optim_path} has no data-generator state for rank {info.rank}; "
                            "resume with the world size it was saved with.")
    gen.set_state(optim[gen_key])
    torch.set_rng_state(optim["rng.torch"])
    return int(meta["step"])


def init_from_wan(model: nn.Module, path: str) -> None:
    """Start from Wan 2.1 weights; channels Wan lacks (source latents, audio branch) start at zero.

    An OmniSync checkpoint of the same model config also works (fine-tuning, e.g. the bundled
    model's stage 2): the same loader copies every weight the file holds, the audio branch and the
    source channels included.
    """
    from ..model.checkpoint import load_checkpoint, load_wan_state_dict
    from ..model.unet import OmniSyncUNet
    if not os.path.exists(path):
        raise OmniSyncError(f"init_from {path!r} does not exist; pass a Wan 2.1 or OmniSync .safetensors file.")
    if isinstance(model, OmniSyncUNet):  # no Wan weights for a U-Net: an OmniSync U-Net of the same config
        start, _ = load_checkpoint(path)
        if not isinstance(start, OmniSyncUNet) or start.config != model.config:
            raise OmniSyncError(f"init_from {path!r} is not an OmniSync U-Net of this config; start from one "
                                "exported with the same model_overrides, codec and audio spec.")
        model.load_state_dict(start.state_dict())
        return
    load_wan_state_dict(model, path)


def export_ema(config: TrainConfig, ema: EMA, info: D.DistInfo, step: Optional[int] = None) -> str:
    """Save the EMA weights as a self-describing OmniSync checkpoint (rank 0 writes); with ``step``, as
    ``omnisync_ema_step<step>.safetensors`` beside the final export, so a run's steps can be compared."""
    from ..model.checkpoint import save_checkpoint
    from ..model.config import CodecSpec
    weights = ema.state_dict()                                # collective under FSDP
    name = EXPORT_FILE if step is None else EXPORT_FILE.replace(".safetensors", f"_step{step:06d}.safetensors")
    path = os.path.join(config.out_dir, name)
    if info.is_main:
        model = build_model(config)                           # buffers from the config, parameters from the EMA
        params = dict(model.named_parameters())
        if set(params) != set(weights):
            raise OmniSyncError(f"EMA and model parameters differ: {sorted(set(params) ^ set(weights))[:5]}.")
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(weights[name])
        os.makedirs(config.out_dir, exist_ok=True)
        save_checkpoint(path, model, codec=CodecSpec.from_dict(config.codec), audio=config.audio,
                        train=config.to_dict(), sampling=config.sampling)
    D.barrier(info)
    return path
