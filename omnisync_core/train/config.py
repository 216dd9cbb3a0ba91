"""Training configuration: one dataclass, read from JSON.

Units: σ ∈ [0, 1] (1 = pure noise), the paper's t = 1000·σ ∈ [0, 1000]; fps in frames per second;
``clip_frames`` counts video frames (the codec turns them into latent frames).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ..errors import OmniSyncError

TIMESTEP_SAMPLING = ("uniform", "logit_normal")
MIXED_PRECISION = ("no", "bf16")
LOSS_WEIGHTING = ("velocity", "x0")
PARALLEL = ("ddp", "fsdp")
ARCHS = ("dit", "unet")


@dataclass
class TrainConfig:
    # model: arch "dit" (OmniSyncDiT: a preset from omnisync_core.model.config.PRESETS plus field
    # overrides) or "unet" (OmniSyncUNet: UNetConfig fields in model_overrides; model_preset unused)
    arch: str = "dit"
    model_preset: str = "tiny"
    model_overrides: Dict[str, Any] = field(default_factory=dict)
    # codec and audio features: CodecSpec / AudioFeatureSpec dicts, stored in the exported checkpoint.
    # The model's latent_channels comes from the codec, its audio_dim from the audio spec
    # (num_layers·dim); audio=None trains a model without an audio branch.
    codec: Dict[str, Any] = field(default_factory=lambda: {
        "type": "pixel", "patch": 2, "latent_channels": 12, "temporal_factor": 1, "spatial_factor": 2})
    audio: Optional[Dict[str, Any]] = None
    # data: a dataset folder built by `python -m omnisync_core make-data` (train + heldout splits)
    data: str = "data/chars128"
    clip_frames: int = 8          # video frames per training clip
    size: int = 32                # square frame side, pixels
    fps: float = 25.0
    # timestep-dependent data sampling (paper §3.2): t = 1000·σ > pair_threshold_t -> pseudo-paired
    pair_threshold_t: float = 850.0
    # arbitrary pairs from a dataset folder: source segment at most this many frames from the target's
    # (0 = anywhere in the clip); small offsets keep the pose close and the mouth different
    arbitrary_max_offset: int = 0
    # random square crops of this many pixels that hold the target's mouth (0 = whole frames), for
    # convolutional models (arch "unet") that then run on whole frames: compute goes where the edit
    # is; every full_frame_every-th step uses whole frames, so the rest of the frame is learned too
    train_crop: int = 0
    full_frame_every: int = 4
    # extra loss weight inside the renderer's mouth box (dataset folders only; 0 = uniform loss, as in
    # the paper). The model still sees no mask: this only tells a small model where its errors matter.
    mouth_loss_weight: float = 0.0
    # sampler-path ("rollout") training against exposure bias: with probability rollout_prob a
    # micro-batch is pseudo-paired and its x_σ is not the ideal path (1 − σ)·target + σ·ε but the
    # state the sampler really reaches: the progressive init at σ = rollout_tau, then k Euler steps of
    # the current model (no gradient) on the rollout_steps-step schedule, k uniform over the steps
    # that run; the loss then asks for the target from there. 0 = plain flow matching (the paper).
    rollout_prob: float = 0.0
    rollout_steps: int = 8
    rollout_tau: float = 0.92
    # pseudo-pairs drawn on purpose (dataset folders; data.dataset.FolderPairSource): a segment whose target
    # mouth is closed while the source's is open (where a copied mouth is a ghost), and the silence clip
    # (near-silence audio, closed still mouth) as the target; with weight_source_mouth the loss weight
    # and the mouth crops also cover the source's mouth box of a pseudo-pair
    closed_target_prob: float = 0.0
    silence_prob: float = 0.0
    weight_source_mouth: bool = False
    # other frame sizes, one picked per step: [{"data": folder, "size": 256, "prob": 0.25, "train_crop": 128}];
    # the config's own data (size, train_crop) gets the remaining probability
    size_mix: List[Dict[str, Any]] = field(default_factory=list)
    # auxiliary mouth supervision (our addition; arch "unet" and dataset folders only; 0 = off, as in
    # the paper): the U-Net's audio adapter reads the renderer's mouth parameters of the target frame
    # out of the audio tokens (UNetConfig.mouth_params); this weight times their MSE is added to the
    # loss (examples whose audio was dropped are left out: nothing tells their mouth). It makes a small
    # model carry the audio into the features that draw the mouth. Inference never uses it: the model
    # stays mask-free.
    aux_mouth_weight: float = 0.0
    # condition dropout, mutually exclusive per example: both / audio only / text only
    p_drop_audio: float = 0.1
    p_drop_text: float = 0.1
    p_drop_both: float = 0.05
    # σ sampling: uniform, or σ = sigmoid(N(logit_mean, logit_std)); then the flow shift
    # σ' = shift·σ / (1 + (shift − 1)·σ) (shift = 1: no change)
    timestep_sampling: str = "uniform"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    timestep_shift: float = 1.0
    # loss: "velocity" = MSE(v̂, v) (flow matching as in the paper); "x0" = the same times σ², i.e.
    # MSE(x̂₀, x₀), which keeps low-σ examples from dominating models with prediction="x0_residual"
    loss_weighting: str = "velocity"
    # optimisation (AdamW, linear warmup then cosine to min_lr_ratio·lr)
    lr: float = 1e-4
    betas: Tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    max_steps: int = 10000
    batch_size: int = 4           # examples per optimiser micro-step, per process
    grad_accum: int = 1
    grad_clip: float = 1.0        # max global grad norm; 0 disables clipping
    ema_decay: float = 0.999
    mixed_precision: str = "no"   # "bf16" autocasts on CUDA and CPU
    gradient_checkpointing: bool = False
    parallel: str = "ddp"         # used only under torchrun with WORLD_SIZE > 1
    init_from: Optional[str] = None   # Wan 2.1 (or same-config OmniSync) .safetensors to start from
    # sampling options the exported model is tuned for, stored in its checkpoint (e.g. {"num_steps": 8})
    sampling: Optional[Dict[str, Any]] = None
    # bookkeeping
    log_every: int = 10
    ckpt_every: int = 1000
    export_every: int = 0         # also export the EMA as omnisync_ema_step<N>.safetensors every N steps (0 = off)
    val_every: int = 0            # 0 disables validation
    out_dir: str = "runs/omnisync"
    seed: int = 0
    resume: bool = True           # continue from out_dir/state.safetensors when it exists

    def __post_init__(self):
        self.betas = tuple(self.betas)
        checks = [
            (self.arch in ARCHS, f"arch must be one of {ARCHS}"),
            (self.train_crop >= 0 and self.full_frame_every >= 1,
             "train_crop is a crop side in pixels >= 0 (0 = whole frames) and full_frame_every >= 1"),
            (self.timestep_sampling in TIMESTEP_SAMPLING, f"timestep_sampling must be one of {TIMESTEP_SAMPLING}"),
            (self.mixed_precision in MIXED_PRECISION, f"mixed_precision must be one of {MIXED_PRECISION}"),
            (self.parallel in PARALLEL, f"parallel must be one of {PARALLEL}"),
            (self.loss_weighting in LOSS_WEIGHTING, f"loss_weighting must be one of {LOSS_WEIGHTING}"),
            (0.0 <= self.pair_threshold_t <= 1000.0, "pair_threshold_t is a timestep in [0, 1000]"),
            (min(self.p_drop_audio, self.p_drop_text, self.p_drop_both) >= 0.0
             and self.p_drop_audio + self.p_drop_text + self.p_drop_both <= 1.0,
             "p_drop_audio + p_drop_text + p_drop_both must lie in [0, 1] (the three are exclusive)"),
            (self.timestep_shift > 0.0, "timestep_shift must be > 0"),
            (self.arbitrary_max_offset >= 0, "arbitrary_max_offset is a number of frames >= 0"),
            (self.mouth_loss_weight >= 0, "mouth_loss_weight must be >= 0"),
            (0.0 <= self.rollout_prob <= 1.0, "rollout_prob is a probability in [0, 1]"),
            (isinstance(self.rollout_steps, int) and self.rollout_steps >= 1, "rollout_steps must be an integer >= 1"),
            (0.0 < self.rollout_tau <= 1.0, "rollout_tau must lie in (0, 1] (0.92 in the paper)"),
            (self.aux_mouth_weight >= 0, "aux_mouth_weight must be >= 0"),
            (min(self.closed_target_prob, self.silence_prob) >= 0
             and self.closed_target_prob + self.silence_prob <= 1.0,
             "closed_target_prob and silence_prob are probabilities >= 0 with a sum <= 1"),
            (all(isinstance(m, dict) and {"data", "size", "prob", "train_crop"} <= set(m)
                 and m["size"] >= 1 and m["train_crop"] >= 0 and 0 <= m["prob"] for m in self.size_mix)
             and sum(m.get("prob", 0) for m in self.size_mix if isinstance(m, dict)) < 1.0,
             'size_mix entries are {"data": folder, "size": pixels, "prob": p, "train_crop": pixels} with '
             "probabilities summing below 1 (the config's own data gets the rest)"),
            (self.aux_mouth_weight == 0 or self.arch == "unet",
             "aux_mouth_weight > 0 needs arch \"unet\" (it supervises the U-Net's mouth_params read-out); "
             "set it to 0 for a DiT"),
            (self.batch_size >= 1 and self.grad_accum >= 1 and self.max_steps >= 1,
             "batch_size, grad_accum and max_steps must be >= 1"),
            (0.0 <= self.ema_decay < 1.0, "ema_decay must lie in [0, 1)"),
            (self.warmup_steps >= 0 and self.log_every >= 1 and self.ckpt_every >= 1 and self.val_every >= 0
             and self.export_every >= 0,
             "warmup_steps >= 0, log_every >= 1, ckpt_every >= 1, val_every >= 0, export_every >= 0"),
            (len(self.betas) == 2, "betas is a pair [beta1, beta2]"),
        ]
        for ok, message in checks:
            if not ok:
                raise OmniSyncError(f"bad training config: {message}.")

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise OmniSyncError(
                f"unknown training config keys {unknown}; valid keys are {sorted(known)}.")
        return cls(**d)


def load_train_config(path: str, **overrides: Any) -> TrainConfig:
    """Read a :class:`TrainConfig` from JSON; keyword overrides (e.g. from the CLI) win."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            d = json.load(f)
    except FileNotFoundError:
        raise OmniSyncError(f"training config {path!r} not found; pass a path to a .json file "
                            "such as configs/tiny_cpu.json.") from None
    except json.JSONDecodeError as e:
        raise OmniSyncError(f"training config {path!r} is not valid JSON: {e}.") from None
    if not isinstance(d, dict):
        raise OmniSyncError(f"training config {path!r} must hold a JSON object.")
    d.pop("_comment", None)
    d.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(d)
