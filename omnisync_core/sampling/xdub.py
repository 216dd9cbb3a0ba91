"""X-Dub's sampler: three-pass guidance, 77-frame clips with motion latents, border latents — with
OmniSync's progressive noise init (τ) and DS-CFG on the audio term.

X-Dub (arXiv 2512.25066, reference code ``diffsynth/pipelines/lip_sync.py``) edits a face clip given
its own frames as a reference in the token sequence. Each step runs the network three times:

    v_∅   = v(x, reference = 0,  audio = 0)          "nothing"
    v_r   = v(x, reference,      audio = 0)          "reference"
    v_ra  = v(x, reference,      audio)              "reference + audio"
    v     = v_∅ + s_r(σ)·(v_r − v_∅) + W(x, y, σ)·(v_ra − v_r)

``s_r`` is ``ref_cfg_scale``, or with ``ref_cfg_schedule`` the reference's three levels (1, 0.6, 0.3
× the scale, cosine steps at σ 0.8 and 0.4, each 0.1 wide: :func:`ref_cfg_scale_at`). ``W`` is
OmniSync's DS-CFG weight (Eqs. 7–8, :mod:`.guidance`) on the audio term: G(x, y)·σ^γ with G between
ω_base (far from the mouth) and ω_peak (at it). The reference's ``audio_cfg_scale·(t/T)^1.5``
(``use_dynamic_cfg``) is the special case ω_base = ω_peak = audio_cfg_scale, γ = 1.5 — the default.

Progressive noise init (OmniSync Eq. 5) starts at σ = τ from ``(1 − τ)·reference + τ·ε`` on the
truncated schedule; τ = 1 is the reference's start from pure noise.

A clip's first ``M`` latent frames may be *motion latents* (the last frames of the previous clip,
re-encoded): they are clean (the network sees timestep 0 there) and reset after every step. With a
border width, the outermost latent pixels of the other frames are replaced before every step by the
reference noised to the current σ (at most :data:`BORDER_SIGMA_MAX`), and by the clean reference at
the end, so the crop's edges stay the source's and paste back seamlessly.

Latents are (C, F, h, w) float32 without a batch axis. The network is any callable
``model(x (B, C, F, h, w), timestep (B,) = 1000·σ, source=(B, C, F, h, w), audio=(B, F, P, K),
text=(B, L, D), motion_frames=M) -> v (B, C, F, h, w)``. Where and in what precision it computes is the caller's
``device`` and ``dtype`` (the pipeline's, ComfyUI's load device and compute dtype), else its first parameter's
(:func:`.sampler.compute_placement`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch

from ..errors import OmniSyncError
from ..progress import CancelCheck, ProgressCallback, check_cancel, report
from .guidance import WEIGHT_EPS, GuidanceConfig, guidance_weight, nonzero_passes, spatial_guidance_map
from .sampler import compute_placement, guided_euler, locate_mouth
from .schedule import FlowMatchSchedule, sigma_to_timestep, timestep_to_sigma

XDUB_FPS = 25  # video frames per second X-Dub was trained at (2 audio features per frame at 50 Hz)
CLIP_FRAMES = 77  # video frames per clip (20 latent frames)
MOTION_FRAMES = 5  # video frames of the previous clip re-encoded as motion latents (2 latent frames)
BORDER_SIGMA_MAX = 0.95  # border latents are never noisier than this (reference clamp)
REF_SCHEDULE_LEVELS = (1.0, 0.6, 0.3)  # s_r(σ) / ref_cfg_scale: early, middle, late
REF_SCHEDULE_STEPS = (0.8, 0.4)  # σ at the centre of the two cosine transitions
REF_SCHEDULE_WIDTH = 0.1  # σ width of each transition
PASS_NAMES = ("none", "ref", "ref_audio")


def reference_audio_guidance() -> GuidanceConfig:
    """The reference's audio guidance as DS-CFG: 10·σ^1.5 everywhere (``audio_cfg_scale`` 10, dynamic CFG)."""
    return GuidanceConfig(omega_base=10.0, omega_peak=10.0, sigma_spatial=0.15, gamma=1.5)


@dataclass
class XDubOptions:
    """Every sampling knob of an X-Dub call; the defaults are the reference's inference script.

    ``audio`` holds DS-CFG on the audio term: ω_base = ω_peak = the reference's ``audio_cfg_scale``;
    raise ``omega_peak`` above ``omega_base`` to guide harder at the mouth only.
    """

    tau: float = 1.0  # τ ∈ (0, 1]: progressive noise init (Eq. 5); 1 = pure noise, the reference
    num_steps: int = 30  # full flow-matching schedule; only the steps with σ ≤ τ run
    shift: float = 5.0  # flow shift of the σ grid (Wan: 5)
    seed: int = 42  # noise seed (the same noise for every clip, as the reference)
    ref_cfg_scale: float = 2.5  # s_r: reference guidance scale
    ref_cfg_schedule: bool = True  # s_r falls to 0.6 and 0.3 of the scale over sampling (reference dynamic CFG)
    audio: GuidanceConfig = field(default_factory=reference_audio_guidance)  # DS-CFG on the audio term
    mouth: Union[str, Tuple[float, float]] = "auto"  # where ω_peak applies: "auto" (found) or (x, y) fractions
    border_width: int = 1  # latent pixels along the crop's edges kept from the reference; 0 = off
    color_correction: bool = True  # match each clip's colours to the reference outside the changes
    batch_passes: bool = True  # the guidance passes in one batched forward; False: one at a time (less memory)

    def __post_init__(self):
        if not (_is_number(self.tau) and 0.0 < self.tau <= 1.0):
            raise OmniSyncError(f"tau must be in (0, 1] (1 = the reference's start from noise), got {self.tau!r}.")
        if not (_is_int(self.num_steps) and self.num_steps >= 1):
            raise OmniSyncError(f"num_steps must be a positive integer (30 in the reference), got {self.num_steps!r}.")
        if not (_is_number(self.shift) and self.shift > 0):
            raise OmniSyncError(f"shift must be a positive number (5 in the reference), got {self.shift!r}.")
        if not (_is_number(self.ref_cfg_scale) and self.ref_cfg_scale >= 0):
            raise OmniSyncError(f"ref_cfg_scale must be a number ≥ 0 (2.5 in the reference), got {self.ref_cfg_scale!r}.")
        if not isinstance(self.audio, GuidanceConfig):
            raise OmniSyncError("audio must be a GuidanceConfig (omega_base, omega_peak, sigma_spatial, gamma).")
        if not (_is_int(self.border_width) and self.border_width >= 0):
            raise OmniSyncError(f"border_width counts latent pixels: an integer ≥ 0, got {self.border_width!r}.")
        if not _is_int(self.seed):
            raise OmniSyncError(f"seed must be an integer, got {self.seed!r}.")
        if isinstance(self.mouth, str):
            if self.mouth != "auto":
                raise OmniSyncError(f"mouth must be 'auto' or an (x, y) point in [0, 1], got {self.mouth!r}.")
        else:
            x, y = self.mouth
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise OmniSyncError(f"mouth point {self.mouth} must be inside the frame: x, y in [0, 1].")

    @property
    def spatial(self) -> bool:
        """True when the audio weight varies over the frame (ω_peak ≠ ω_base)."""
        return abs(self.audio.omega_peak - self.audio.omega_base) > WEIGHT_EPS


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# -- guidance -------------------------------------------------------------------------------------


def ref_cfg_scale_at(sigma: float, ref_cfg_scale: float, scheduled: bool = True) -> float:
    """s_r(σ): the reference guidance scale at σ.

    Unscheduled: ``ref_cfg_scale``. Scheduled (the reference's ``get_ref_guidance_scale_schedule``):
    1.0× the scale for σ ≥ 0.85, 0.6× on [0.45, 0.75), 0.3× below 0.35, joined by half-cosine ramps
    ``(1 − cos(π·u))/2`` over [0.85, 0.75) and [0.45, 0.35).
    """
    if not scheduled:
        return float(ref_cfg_scale)
    levels = [ref_cfg_scale * k for k in REF_SCHEDULE_LEVELS]
    s = float(sigma)
    half = REF_SCHEDULE_WIDTH / 2
    for i, centre in enumerate(REF_SCHEDULE_STEPS):
        start, end = centre + half, centre - half
        if s >= start:
            return levels[i]
        if s >= end:  # inside the ramp from levels[i] to levels[i + 1]
            u = (s - start) / (end - start)
            blend = (1 - math.cos(u * math.pi)) / 2
            return levels[i] * (1 - blend) + levels[i + 1] * blend
    return levels[-1]


def xdub_combine(v_none: torch.Tensor, v_ref: torch.Tensor, v_ref_audio: torch.Tensor, ref_scale: float,
                 audio_weight: Union[float, torch.Tensor]) -> torch.Tensor:
    """v_∅ + s_r·(v_r − v_∅) + W·(v_ra − v_r).

    v_*: (C, F, h, w); ref_scale: s_r; audio_weight: W, a scalar or (F, h, w) (broadcast over channels).
    """
    w = torch.as_tensor(audio_weight, dtype=v_none.dtype, device=v_none.device)
    if w.ndim == 3:
        w = w[None]  # (1, F, h, w)
    return v_none + ref_scale * (v_ref - v_none) + w * (v_ref_audio - v_ref)


def xdub_passes(ref_scale: float, audio_weight: torch.Tensor) -> Tuple[str, ...]:
    """The passes whose coefficient in v = (1 − s_r)·v_∅ + (s_r − W)·v_r + W·v_ra is not zero
    (:func:`.guidance.nonzero_passes`); "ref" alone when none is."""
    w = torch.as_tensor(audio_weight, dtype=torch.float32)
    return nonzero_passes({"none": 1.0 - ref_scale, "ref": ref_scale - w, "ref_audio": w}, WEIGHT_EPS) or ("ref",)


# -- borders ----------------------------------------------------------------------------------------


def replace_borders(x: torch.Tensor, source: torch.Tensor, width: int, start_frame: int = 0) -> torch.Tensor:
    """x (C, F, h, w) with the outer ``width`` latent pixels of frames ≥ ``start_frame`` taken from source."""
    if width <= 0 or start_frame >= x.shape[1]:
        return x
    h, w = x.shape[2:]
    if 2 * width >= min(h, w):
        raise OmniSyncError(f"border width {width} leaves nothing inside a {h}×{w} latent frame; lower it.")
    out = x.clone()
    inner = torch.zeros(h, w, dtype=torch.bool, device=x.device)
    inner[width:h - width, width:w - width] = True
    edge = ~inner  # (h, w)
    out[:, start_frame:, edge] = source[:, start_frame:, edge].to(out.dtype)
    return out


# -- one clip ---------------------------------------------------------------------------------------


def _model_timestep(sigma: float, dtype: torch.dtype) -> torch.Tensor:
    """(1,) float32 timestep 1000·σ rounded to the network's precision, as the reference feeds it (a
    bf16 network sees bf16 timesteps; the guidance weights and border noise level use the same value)."""
    return torch.tensor([sigma_to_timestep(sigma)], dtype=torch.float32).to(dtype).float()


class XDubGuider:
    """X-Dub's three-pass guidance as a :class:`.sampler.Guider` (the module docstring's formula).

    Passes "none" (reference and audio zeroed), "ref" (audio zeroed) and "ref_audio"; a pass whose coefficient
    is 0 is not run (:func:`xdub_passes`). Before each step the border latents are the reference noised to the
    step's σ; after it the motion latents are reset. The network sees x, the reference and the timestep in its
    own precision (the reference's convention). ``info`` sums the passes run; ``last`` is the last step's report.

    reference, noise: (C, F, h, w) and audio (F, P, K) on the compute device; motion_latents (C, M, h, w) or
    None; spatial: the DS-CFG map G (F, h, w) when ω_peak ≠ ω_base, or None to find the mouth at the first step.
    """

    state_dtype = None  # the network's own

    def __init__(self, options: XDubOptions, reference: torch.Tensor, noise: torch.Tensor, audio: torch.Tensor,
                 motion_latents: Optional[torch.Tensor], spatial: Optional[torch.Tensor], dtype: torch.dtype):
        self.options, self.reference, self.noise, self.dtype = options, reference, noise, dtype
        self.motion = motion_latents
        self.M = 0 if motion_latents is None else motion_latents.shape[1]
        self.batch = options.batch_passes
        self.model_kwargs = {"motion_frames": self.M}
        no_ref, no_audio = torch.zeros_like(reference), torch.zeros_like(audio)
        self._inputs = {"none": (no_ref, no_audio), "ref": (reference, no_audio), "ref_audio": (reference, audio)}
        F_, h, w = reference.shape[1:]
        self.spatial = spatial if options.spatial else torch.full((F_, h, w), float(options.audio.omega_base))
        self.info: Dict = {"forward_passes": 0, "passes": 0, "centres": None, "mouth": {"source": "uniform"}}
        self.last: Dict = {}
        self.need: Tuple[str, ...] = ()

    def _sigma(self, sigma: float) -> float:
        """σ as the network sees it (1000·σ rounded to its precision, back to σ)."""
        return float(timestep_to_sigma(_model_timestep(sigma, self.dtype)[0]))

    def timestep(self, sigma: float) -> torch.Tensor:
        return _model_timestep(sigma, self.dtype)

    def prepare(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        if not self.options.border_width:
            return x
        level = min(self._sigma(sigma), BORDER_SIGMA_MAX)
        return replace_borders(x, FlowMatchSchedule.noisy(self.reference, self.noise, level), self.options.border_width,
                               self.M)

    def passes(self, sigma: float) -> Tuple[str, ...]:
        s = self._sigma(sigma)
        self.ref_scale = ref_cfg_scale_at(s, self.options.ref_cfg_scale, self.options.ref_cfg_schedule)
        if self.spatial is None:  # find the mouth: all three passes, where audio changes the prediction
            self.need = PASS_NAMES
        else:
            self.weight = guidance_weight(self.spatial, s, self.options.audio)
            self.need = xdub_passes(self.ref_scale, self.weight)
        return self.need

    def inputs(self, name: str):
        return self._inputs[name]

    def combine(self, v: Dict[str, torch.Tensor], sigma: float) -> torch.Tensor:
        step: Dict = {"ref_scale": self.ref_scale}
        if self.spatial is None:
            step["centres"], self.spatial, lost, fill = locate_mouth(v["ref_audio"], v["ref"], self.options.audio)
            step["spatial"] = self.spatial
            step["mouth"] = {"source": "auto", "fallback_frames": lost, **fill}
            self.info["centres"], self.info["mouth"] = step["centres"], step["mouth"]
            self.weight = guidance_weight(self.spatial, self._sigma(sigma), self.options.audio)
        else:  # a pass whose coefficient is 0 is not run; these stand-ins keep the formula exact
            if "ref" not in v:
                v["ref"] = v["none"] if "none" in v else v["ref_audio"]
            v.setdefault("none", torch.zeros_like(v["ref"]))
            v.setdefault("ref_audio", v["ref"])
        step.update(passes=self.need, forward_passes=1 if self.batch else len(self.need), weight=self.weight)
        self.last = step
        self.info["passes"] += len(self.need)
        self.info["forward_passes"] += step["forward_passes"]
        return xdub_combine(v["none"], v["ref"], v["ref_audio"], self.ref_scale, self.weight.to(v["ref"].device))

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        if self.M:
            x[:, :self.M] = self.motion
        return x


@torch.no_grad()
def guided_step(
    model,
    x: torch.Tensor,
    sigma: float,
    sigma_next: float,
    reference: torch.Tensor,
    noise: torch.Tensor,
    audio: torch.Tensor,
    text: torch.Tensor,
    options: XDubOptions,
    motion_latents: Optional[torch.Tensor] = None,
    spatial: Optional[torch.Tensor] = None,
    device=None,
    dtype: Optional[torch.dtype] = None,
) -> Tuple[torch.Tensor, Dict]:
    """One sampler step from σ to σ_next (the body of the reference's denoising loop): :func:`.sampler.guided_euler`
    over [σ, σ_next] with an :class:`XDubGuider`.

    x, reference, noise: (C, F, h, w) on the compute device; audio (F, P, K); text (L, text_dim);
    motion_latents (C, M, h, w) or None. spatial: the DS-CFG map G (F, h, w) when ω_peak ≠ ω_base, or
    None to find the mouth now (all three passes are run and |v_ra − v_r| locates it). device, dtype: where
    and in what precision the network computes (None: its first parameter's).

    Returns x at σ_next and info: ``passes`` (names run), ``forward_passes``, ``ref_scale``,
    ``weight`` (F, h, w) the audio weight W used, and ``spatial``/``centres``/``mouth`` when found now.
    """
    device, dtype = compute_placement(model, device, dtype)
    guider = XDubGuider(options, reference, noise, audio, motion_latents, spatial, dtype)
    x = guided_euler(model, x, [sigma, sigma_next], guider, text, device=device, dtype=dtype)
    return x, guider.last


@torch.no_grad()
def denoise_clip(
    model,
    noise: torch.Tensor,
    reference: torch.Tensor,
    audio: torch.Tensor,
    text: torch.Tensor,
    options: XDubOptions,
    motion_latents: Optional[torch.Tensor] = None,
    centres: Union[str, torch.Tensor] = "auto",
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
    device=None,
    dtype: Optional[torch.dtype] = None,
) -> Tuple[torch.Tensor, Dict]:
    """Sample one clip: :func:`.sampler.guided_euler` with an :class:`XDubGuider`, then the clean reference's
    borders.

    Args:
        model: the X-Dub network (see the module docstring), in eval mode.
        noise: (C, F, h, w) ε; the clip starts at σ = τ from (1 − τ)·reference + τ·ε.
        reference: (C, F, h, w) latents of the clip's own frames.
        audio: (F, P, K) speech features per latent frame.
        text: (L, text_dim) text features (zeros for "no prompt").
        options: :class:`XDubOptions` (schedule, τ, guidance, borders, batching).
        motion_latents: (C, M, h, w) clean latents for the first M frames (from the previous clip), or None.
        centres: where ω_peak applies, (F, 2) frame fractions, or "auto" (found from |v_ra − v_r| at
            the first step). Unused while ω_peak = ω_base.
        device, dtype: where the inputs are built and the network computes, and its precision (x, the
            reference, the timestep and the audio go in it); None: the network's first parameter's.

    Returns:
        latents (C, F, h, w) float32 (on ``device``) and info: ``forward_passes`` (network
        calls, a batched call counts once), ``passes`` (per-pass evaluations), ``centres`` (F, 2) or
        None, ``mouth`` report, ``sigmas``.
    """
    if noise.ndim != 4 or reference.shape != noise.shape:
        raise OmniSyncError(f"noise {tuple(noise.shape)} and reference {tuple(reference.shape)} must both be "
                            "(C, F, h, w) of the same size.")
    C, F_, h, w = noise.shape
    if audio.ndim != 3 or audio.shape[0] != F_:
        raise OmniSyncError(f"audio features must be (F, P, K) with F = {F_} latent frames, got {tuple(audio.shape)}; "
                            "window the speech features for this clip.")
    M = 0
    if motion_latents is not None:
        M = motion_latents.shape[1]
        if motion_latents.ndim != 4 or motion_latents.shape[0] != C or tuple(motion_latents.shape[2:]) != (h, w) \
                or not 0 < M < F_:
            raise OmniSyncError(f"motion latents must be (C, M, h, w) = ({C}, M < {F_}, {h}, {w}), got "
                                f"{tuple(motion_latents.shape)}.")
    device, dtype = compute_placement(model, device, dtype)
    sigmas = FlowMatchSchedule(options.num_steps, options.shift).truncate(options.tau)
    noise, reference, audio = noise.float().to(device), reference.float().to(device), audio.float().to(device)
    x = FlowMatchSchedule.noisy(reference, noise, options.tau) if options.tau < 1.0 else noise.clone()
    if M:
        motion_latents = motion_latents.float().to(device)
        x[:, :M] = motion_latents

    spatial, given = None, None
    if options.spatial and not isinstance(centres, str):
        given = torch.as_tensor(centres, dtype=torch.float32).cpu()
        if given.shape != (F_, 2):
            raise OmniSyncError(f"mouth centres must be ({F_}, 2) for this clip, got {tuple(given.shape)}.")
        spatial = spatial_guidance_map(given, h, w, options.audio)
    elif options.spatial and centres != "auto":
        raise OmniSyncError(f"centres must be 'auto' or an (F, 2) tensor, got {centres!r}.")

    guider = XDubGuider(options, reference, noise, audio, motion_latents, spatial, dtype)
    if given is not None:
        guider.info["centres"], guider.info["mouth"] = given, {"source": "given"}
    x = guided_euler(model, x, sigmas, guider, text, progress=progress, cancel=cancel, device=device, dtype=dtype)
    if options.border_width:
        x = replace_borders(x, reference, options.border_width, M)
    return x, {**guider.info, "sigmas": sigmas}


# -- clips of a whole take ----------------------------------------------------------------------------


@dataclass
class ClipPlan:
    """How a take of ``num_frames`` video frames is cut into clips.

    total_frames: frames actually generated, 77 + 72·k ≥ num_frames (the last clip is filled up with
        more of the ping-ponged video and the last speech; the caller keeps the first ``num_frames``).
    starts: first video frame of each clip; clip k covers [starts[k], starts[k] + clip_frames) and
        shares its first ``motion_frames`` frames with clip k − 1.
    """

    num_frames: int
    total_frames: int
    starts: List[int]
    clip_frames: int = CLIP_FRAMES
    motion_frames: int = MOTION_FRAMES


def plan_clips(num_frames: int, clip_frames: int = CLIP_FRAMES, motion_frames: int = MOTION_FRAMES) -> ClipPlan:
    """Clips of ``clip_frames`` starting every ``clip_frames − motion_frames`` frames (the reference's
    ``get_total_length``: one clip up to 77 frames, then 72 more per clip)."""
    if not _is_int(num_frames) or num_frames < 1:
        raise OmniSyncError(f"need at least one frame to plan clips, got {num_frames!r}.")
    if not (0 <= motion_frames < clip_frames):
        raise OmniSyncError(f"motion frames ({motion_frames}) must be fewer than the clip's ({clip_frames}).")
    stride = clip_frames - motion_frames
    extra = max(0, num_frames - clip_frames)
    total = clip_frames + math.ceil(extra / stride) * stride
    starts = list(range(0, total - clip_frames + 1, stride))
    return ClipPlan(num_frames=num_frames, total_frames=total, starts=starts, clip_frames=clip_frames,
                    motion_frames=motion_frames)


def join_clip_latents(clips: Sequence[torch.Tensor], motion_latent_frames: int) -> torch.Tensor:
    """Clips' latents (C, F, h, w) → the take's (C, F + (n − 1)·(F − M), h, w).

    Clip k ≥ 1 starts with M motion latents re-encoded from the end of clip k − 1; its last motion
    latent and clip k − 1's last latent hold the same frames and are averaged (the reference's
    ``smooth_transition_latent``), the rest of clip k is appended.
    """
    M = motion_latent_frames
    parts = [clips[0].clone()]
    for clip in clips[1:]:
        if M:
            parts[-1][:, -1:] = 0.5 * (parts[-1][:, -1:] + clip[:, M - 1:M])
        parts.append(clip[:, M:])
    return torch.cat(parts, 1)


MotionFn = Callable[[int, torch.Tensor], torch.Tensor]


def sample_clips(
    model,
    references: Sequence[torch.Tensor],
    audio: Sequence[torch.Tensor],
    text: torch.Tensor,
    options: XDubOptions,
    motion_fn: Optional[MotionFn] = None,
    centres: Union[str, Sequence[torch.Tensor]] = "auto",
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
    device=None,
    dtype: Optional[torch.dtype] = None,
) -> Tuple[List[torch.Tensor], Dict]:
    """Sample a take clip by clip, each conditioned on motion latents from the one before.

    Args:
        references: per clip (C, F, h, w) latents of its reference frames.
        audio: per clip (F, P, K) speech features.
        text: (L, text_dim).
        motion_fn: ``motion_fn(k, latents of clip k − 1) -> (C, M, h, w)`` motion latents for clip k
            (the pipeline decodes, colour-corrects and re-encodes the last frames, as the reference
            does); None: clips are sampled independently.
        centres: "auto", or per clip (F, 2) mouth centres (used when ω_peak ≠ ω_base).
        device, dtype: where and in what precision the network computes (:func:`denoise_clip`); None: its first
            parameter's.

    Returns:
        per clip latents (C, F, h, w) float32 on the CPU, and a report (``clips``, ``forward_passes``,
        ``passes``, ``mouth`` per clip, ``steps``). The noise is the same for every clip (seed
        ``options.seed``, :func:`..noise_init.clip_noise`), as in the reference.
    """
    from .noise_init import clip_noise

    device, dtype = compute_placement(model, device, dtype)
    if len(references) != len(audio) or not references:
        raise OmniSyncError(f"need one audio window per clip: {len(references)} clips, {len(audio)} windows.")
    steps = FlowMatchSchedule(options.num_steps, options.shift).truncate(options.tau).numel() - 1
    total = steps * len(references)
    out: List[torch.Tensor] = []
    rep: Dict = {"clips": len(references), "forward_passes": 0, "passes": 0, "mouth": [], "steps": total}
    for k, (ref, aud) in enumerate(zip(references, audio)):
        check_cancel(cancel)

        def clip_progress(done, _total, message, _base=k * steps, _clip=k + 1):
            report(progress, _base + done, total, f"clip {_clip}/{len(references)}, {message}")

        motion = motion_fn(k, out[-1]) if (motion_fn is not None and k > 0) else None
        lat, info = denoise_clip(model, clip_noise(ref.shape, options.seed), ref, aud, text, options, motion,
                                 centres if isinstance(centres, str) else centres[k], clip_progress, cancel, device,
                                 dtype)
        out.append(lat.cpu())
        rep["forward_passes"] += info["forward_passes"]
        rep["passes"] += info["passes"]
        rep["mouth"].append(info["mouth"])
    return out, rep
