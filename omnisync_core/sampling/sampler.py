"""The one guided Euler loop and the one window loop of the flow-matching sampler.

**Steps** (:func:`guided_euler`). A guider says which network passes a step needs, what the network sees in
each and how their velocities combine; the loop runs the passes and integrates. As diffusers keeps guidance
(``diffusers.guiders``) apart from its schedulers, and ComfyUI its CFGGuider / DualCFGGuider apart from its
samplers, the Euler step (:meth:`.schedule.FlowMatchSchedule.step`) knows no guidance and a guider knows no
integration. One step from σ to σ'::

    x_in = guider.prepare(x, σ)                                   (X-Dub: border latents; DS-CFG: x)
    v_n  = model(x_in, guider.timestep(σ), **guider.inputs(n))   for n in guider.passes(σ), one batched call
    x    = guider.finish(x_in + (σ' − σ)·guider.combine(v, σ))   (X-Dub: motion latents reset; DS-CFG: as is)

Two guiders: OmniSync's DS-CFG (passes "cond" and "uncond": :class:`DSCFGGuider`, run by :func:`denoise`) and
X-Dub's three-pass guidance ("none", "ref", "ref_audio": :class:`.xdub.XDubGuider`). A guider that does not yet
know where the mouth is runs every pass at that step and finds it where audio changes the prediction
(:func:`locate_mouth`, one search for both). A model that treats every frame on its own (``frames_independent``,
the U-Net) is called on at most :data:`CHUNK_LATENT_PIXELS` latent pixels at a time, with the cancel check
between calls, so a whole-clip window stops within about a second of Ctrl-C or ComfyUI's /interrupt.

**Windows** (:func:`sample_windows`). A latent video is denoised in overlapping windows whose shared frames are
cross-faded (:class:`.windows.WindowBlender`), each run of frames handed on as soon as it is finished: the
pipeline's engine streams them, :func:`sample_windowed` (the split sampler node, the training validator) collects
them. Latents here are (C, F, h, w) without a batch axis; the network gets a batch of one per pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Protocol, Sequence, Tuple, Union

import torch

from ..errors import OmniSyncError
from ..progress import CancelCheck, ProgressCallback, check_cancel, report
from .guidance import GuidanceConfig, ds_cfg_combine, guidance_weight, passes_needed, spatial_guidance_map
from .mouth import DEFAULT_MOUTH_CENTRE, centres_from_guidance, fill_missing
from .schedule import FlowMatchSchedule, sigma_to_timestep
from .windows import WindowBlender, plan_windows

# latent frames × h × w per forward call of a per-frame model: one call (one convolution) over a whole
# 10-minute clip ran for tens of seconds, during which neither Ctrl-C nor a cancel check could act
CHUNK_LATENT_PIXELS = 2 ** 16  # 16 frames of 128² video (64² latents): the bundled window stays one call

PassInputs = Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]  # (source (C, F, h, w), audio (F, ...)) of a pass


class Guider(Protocol):
    """A guidance method for :func:`guided_euler`.

    Attributes: ``state_dtype`` — the dtype x and the source are fed in (float32: the fp32 islands of a bf16
    OmniSync network; None: the network's own); ``batch`` — the passes of a step in one batched forward;
    ``model_kwargs`` — extra keyword arguments of every forward (X-Dub: ``motion_frames``).
    """

    state_dtype: Optional[torch.dtype]
    batch: bool
    model_kwargs: Dict

    def timestep(self, sigma: float) -> torch.Tensor:
        """(1,) float32: the network's timestep at σ."""

    def prepare(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """The state the network sees at σ (and the Euler step starts from)."""

    def passes(self, sigma: float) -> Tuple[str, ...]:
        """The passes this σ needs, in batch order."""

    def inputs(self, name: str) -> PassInputs:
        """(source, audio) the network sees in pass ``name``."""

    def combine(self, v: Dict[str, torch.Tensor], sigma: float) -> torch.Tensor:
        """The guided velocity (C, F, h, w) from the passes' velocities {name: (C, F, h, w)}."""

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """The state after the Euler step."""


def locate_mouth(v_audio: torch.Tensor, v_silent: torch.Tensor, cfg: GuidanceConfig
                 ) -> Tuple[torch.Tensor, torch.Tensor, List[int], Dict]:
    """The first-step mouth search: (centres (F, 2), spatial map G (F, h, w), frames where no mouth was found,
    fill report) from where the audio changes the prediction, |v_audio − v_silent| (C, F, h, w)."""
    found_c, found = centres_from_guidance((v_audio - v_silent).abs())
    centres, fill = fill_missing(found_c, found, DEFAULT_MOUTH_CENTRE)
    lost = [f for f in range(found.shape[0]) if not bool(found[f])]
    return centres, spatial_guidance_map(centres, v_audio.shape[2], v_audio.shape[3], cfg), lost, fill


def _batched(tensors: Sequence[Optional[torch.Tensor]], device, dtype) -> Optional[torch.Tensor]:
    """One input per pass → a batch: None, one shared tensor expanded (no copy), or the passes' stacked."""
    if tensors[0] is None:
        return None
    if all(t is tensors[0] for t in tensors):
        return tensors[0].to(device, dtype)[None].expand(len(tensors), *tensors[0].shape)
    return torch.stack(list(tensors)).to(device, dtype)


def compute_placement(model, device=None, dtype=None) -> Tuple[torch.device, torch.dtype]:
    """(device, dtype) the network computes in: each as the caller says, else its first parameter's.

    The caller knows (the pipelines' ``device`` and ``dtype``, ComfyUI's load device and compute dtype); the first
    parameter is only the fallback, because it is not always where the network computes: ComfyUI's partial loading
    may leave that layer in CPU memory (cast to the device per call), and would then put every input on the CPU.
    """
    if device is None or dtype is None:
        p = next(model.parameters())
        device = p.device if device is None else device
        dtype = p.dtype if dtype is None else dtype
    return torch.device(device), dtype


def _predict_frames(model, x, timestep, names, inputs: Dict[str, PassInputs], text, guider: Guider,
                    dev: torch.device, dt: torch.dtype) -> Dict[str, torch.Tensor]:
    """The passes ``names`` in one forward call (or one per pass when ``guider.batch`` is off), inputs on ``dev``;
    audio and text in ``dt``, x and the source in ``guider.state_dtype`` (None: ``dt``)."""
    state_dt = guider.state_dtype or dt
    txt = text.to(dev, dt)[None] if text is not None else None

    def run(batch_names) -> Dict[str, torch.Tensor]:
        k = len(batch_names)
        out = model(x.to(dev, state_dt)[None].expand(k, *x.shape), timestep.expand(k),
                    source=_batched([inputs[n][0] for n in batch_names], dev, state_dt),
                    audio=_batched([inputs[n][1] for n in batch_names], dev, dt),
                    text=txt.expand(k, -1, -1) if txt is not None else None, **guider.model_kwargs)
        return {n: out[i].float() for i, n in enumerate(batch_names)}

    if guider.batch:
        return run(list(names))
    result: Dict[str, torch.Tensor] = {}
    for n in names:
        result.update(run([n]))
    return result


def _slice_inputs(inputs: Dict[str, PassInputs], s: int, e: int) -> Dict[str, PassInputs]:
    """Latent frames [s, e) of every pass's (source (C, F, h, w), audio (F, ...)); an input shared by passes is
    sliced once, so it stays shared (and is expanded, not stacked, in the batch)."""
    cut: Dict[int, torch.Tensor] = {}

    def piece(t: Optional[torch.Tensor], frame_axis: int) -> Optional[torch.Tensor]:
        if t is not None and id(t) not in cut:
            cut[id(t)] = t.narrow(frame_axis, s, e - s)
        return None if t is None else cut[id(t)]

    return {n: (piece(src, 1), piece(aud, 0)) for n, (src, aud) in inputs.items()}


def finite_output(model, v: Dict[str, torch.Tensor], sigma: float, dtype: Optional[torch.dtype] = None
                  ) -> Dict[str, torch.Tensor]:
    """The network's predictions ``v``, refused when one holds NaN or inf: the sampler stops at the first such
    step with an error naming the checkpoint (``model.checkpoint_path``, set by the loaders) and ``dtype`` (the
    compute dtype; default its first parameter's), so a broken or overflowing network never becomes a video."""
    for name, out in v.items():
        if not bool(torch.isfinite(out).all()):
            bad = int((~torch.isfinite(out)).sum())
            path = getattr(model, "checkpoint_path", None)
            which = f"the checkpoint {path!r}" if path else "the model"
            dt = dtype or next(model.parameters()).dtype
            raise OmniSyncError(f"the network returned {bad} NaN or infinite values ({name} pass) at σ {float(sigma):.3g}: "
                                f"{which} overflows in {dt} or is broken; load it in "
                                "float32 (--dtype float32) or use another checkpoint. Nothing was written.")
    return v


def predict_passes(model, x: torch.Tensor, sigma: float, names: Sequence[str], guider: Guider,
                   text: Optional[torch.Tensor], cancel: Optional[CancelCheck] = None, device=None,
                   dtype: Optional[torch.dtype] = None) -> Dict[str, torch.Tensor]:
    """{name: velocity (C, F, h, w) float32} of the passes ``names`` at σ, the network called on ``device`` in
    ``dtype`` (:func:`compute_placement`: None takes its first parameter's).

    A model that treats every frame on its own (``frames_independent``, the U-Net) gets chunks of at most
    :data:`CHUNK_LATENT_PIXELS` latent pixels (same result), ``cancel`` checked between them.
    """
    dev, dt = compute_placement(model, device, dtype)
    inputs = {n: guider.inputs(n) for n in names}
    timestep = guider.timestep(sigma)
    _, F_, h, w = x.shape
    chunk = max(1, CHUNK_LATENT_PIXELS // (h * w))
    if F_ <= chunk or not getattr(model, "frames_independent", False):
        v = _predict_frames(model, x, timestep, names, inputs, text, guider, dev, dt)
        return finite_output(model, v, sigma, dt)
    parts = []
    for s in range(0, F_, chunk):
        check_cancel(cancel)
        e = min(s + chunk, F_)
        part = _slice_inputs(inputs, s, e)
        v = _predict_frames(model, x[:, s:e], timestep, names, part, text, guider, dev, dt)
        parts.append(finite_output(model, v, sigma, dt))
    return {n: torch.cat([p[n] for p in parts], 1) for n in names}


@torch.no_grad()
def guided_euler(model, x: torch.Tensor, sigmas: Sequence[float], guider: Guider, text: Optional[torch.Tensor] = None,
                 progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCheck] = None, device=None,
                 dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """The one step loop: Euler-integrate x (C, F, h, w) from σ = sigmas[0] to sigmas[-1] with ``guider``'s
    guidance, the network called on ``device`` in ``dtype`` (:func:`compute_placement`); progress is reported and
    the cancel check run once per step."""
    device, dtype = compute_placement(model, device, dtype)
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64).tolist()  # one conversion (a 100 000-step schedule: ms)
    steps = len(sigmas) - 1
    for i in range(steps):
        check_cancel(cancel)
        s, s_next = sigmas[i], sigmas[i + 1]
        x = guider.prepare(x, s)
        v = predict_passes(model, x, s, guider.passes(s), guider, text, cancel, device, dtype)
        x = guider.finish(FlowMatchSchedule.step(guider.combine(v, s), x, s, s_next))
        report(progress, i + 1, steps, f"σ {s_next:.3f}")
    return x


Centres = Union[str, torch.Tensor]  # "auto" or (F, 2) frame fractions
PASS_NAMES = {"cond": ("cond",), "uncond": ("uncond",), "both": ("cond", "uncond")}  # passes_needed → passes


class DSCFGGuider:
    """OmniSync's DS-CFG (Eqs. 7–9) as a :class:`Guider`: passes "cond" (the audio tokens) and "uncond" (audio
    zeroed, the trainer's dropout convention; source and text kept in both), combined as v_u + G·ω(σ)·(v_c − v_u);
    a pass whose weight is within :data:`.guidance.WEIGHT_TOLERANCE` of 0 is not run
    (:func:`.guidance.passes_needed`). ``info`` collects what :func:`denoise` reports.

    source (C, F, h, w) and audio (F, N_a, K) or None (no audio branch: the conditional pass alone) on the
    compute device; centres "auto" (found at the first step) or (F, 2) frame fractions.
    """

    state_dtype = torch.float32  # fp32 islands: the network casts the state and the source for its body
    batch = True
    model_kwargs: Dict = {}

    def __init__(self, guidance: GuidanceConfig, source: torch.Tensor, audio: Optional[torch.Tensor],
                 centres: Centres = "auto"):
        self.cfg, self.source, self.audio = guidance, source, audio
        self.silent = torch.zeros_like(audio) if audio is not None else None
        _, F_, h, w = source.shape
        self.info: Dict = {"fallback_frames": [], "forward_passes": 0, "uncond_passes": 0, "mouth": {}}
        self.spatial: Optional[torch.Tensor] = None
        self.weight: Optional[torch.Tensor] = None
        self.centres = centres
        if not isinstance(centres, str):
            self.centres = torch.as_tensor(centres, dtype=torch.float32).cpu()
            if self.centres.shape != (F_, 2):
                raise OmniSyncError(f"mouth centres must be ({F_}, 2) for this window, got {tuple(self.centres.shape)}.")
            self.spatial = spatial_guidance_map(self.centres, h, w, guidance)
            self.info["mouth"] = {"source": "given"}
        elif centres != "auto":
            raise OmniSyncError(f"centres must be 'auto' or an (F, 2) tensor, got {centres!r}.")
        elif audio is None:  # no audio branch: nothing to locate
            self.centres = torch.tensor(DEFAULT_MOUTH_CENTRE).expand(F_, 2).clone()
            self.spatial = spatial_guidance_map(self.centres, h, w, guidance)
            self.info["mouth"] = {"source": "default (model has no audio branch)"}

    def timestep(self, sigma: float) -> torch.Tensor:
        return torch.tensor([float(sigma_to_timestep(sigma))])

    def prepare(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return x

    def passes(self, sigma: float) -> Tuple[str, ...]:
        if self.spatial is None:  # auto: both passes, the mouth is found from them
            return PASS_NAMES["both"]
        self.weight = guidance_weight(self.spatial, sigma, self.cfg)
        return PASS_NAMES[passes_needed(self.weight)] if self.audio is not None else PASS_NAMES["cond"]

    def inputs(self, name: str) -> PassInputs:
        return self.source, (self.audio if name == "cond" else self.silent)

    def combine(self, v: Dict[str, torch.Tensor], sigma: float) -> torch.Tensor:
        info = self.info
        if self.spatial is None:
            self.centres, self.spatial, info["fallback_frames"], fill = locate_mouth(v["cond"], v["uncond"], self.cfg)
            info["mouth"] = {"source": "auto", **fill}
            self.weight = guidance_weight(self.spatial, sigma, self.cfg)
        info["forward_passes"] += 1
        info["uncond_passes"] += int("uncond" in v and self.audio is not None)
        info.setdefault("guidance_map", self.weight.clone())  # the first step's
        if "uncond" not in v:
            return v["cond"]
        if "cond" not in v:
            return v["uncond"]
        return ds_cfg_combine(v["cond"], v["uncond"], self.weight.to(v["cond"].device))

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _predict(model, x, sigma, source, audio, text, which: str,
             cancel: Optional[CancelCheck] = None) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """DS-CFG's passes of one step as (v_c, v_u), each (C, F, h, w) float32 or None when not run; ``which``:
    "cond", "uncond" or "both" (one batched forward of 2)."""
    v = predict_passes(model, x, sigma, PASS_NAMES[which], DSCFGGuider(GuidanceConfig(), source, audio, "auto"),
                       text, cancel)
    return v.get("cond"), v.get("uncond")


@torch.no_grad()
def denoise(
    model,
    x_init: torch.Tensor,
    source: torch.Tensor,
    audio_tokens: Optional[torch.Tensor],
    text: Optional[torch.Tensor],
    sigmas: torch.Tensor,
    guidance: GuidanceConfig,
    centres: Centres = "auto",
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
    device=None,
    dtype: Optional[torch.dtype] = None,
) -> Tuple[torch.Tensor, Dict]:
    """Euler-integrate one window from σ = sigmas[0] to sigmas[-1] with DS-CFG (:func:`guided_euler` with a
    :class:`DSCFGGuider`).

    Args:
        model: OmniSyncDiT or the U-Net (``forward(x, timestep, source, audio, text) -> v``).
        x_init: (C, F, h, w) start latents (progressive noise init at σ = sigmas[0]).
        source: (C, F, h, w) source latents.
        audio_tokens: (F, N_a, K) or None (a model without audio branch: plain sampling).
        text: (L, text_dim) or None.
        sigmas: (S + 1,) decreasing σ, e.g. ``FlowMatchSchedule(50).truncate(0.92)``.
        guidance: DS-CFG configuration (Eqs. 7–9).
        centres: "auto" (found at the first step from |v_c − v_u|) or (F, 2) frame fractions.
        device, dtype: where and in what precision the network computes (audio and text go in ``dtype``, x and
            the source in float32); None: its first parameter's (:func:`compute_placement`).

    Returns:
        latents (C, F, h, w) float32 and info: ``guidance_map`` (F, h, w) the weight G·ω of the first
        step, ``centres`` (F, 2), ``fallback_frames`` (latent frames of this window where auto mode found
        no mouth), ``forward_passes`` (model calls), ``uncond_passes`` (of them, the ones that also ran the
        unconditional prediction), ``mouth`` (report of the centre search).
    """
    if x_init.shape != source.shape or x_init.ndim != 4:
        raise OmniSyncError(f"x_init {tuple(x_init.shape)} and source {tuple(source.shape)} must both be (C, F, h, w).")
    sigmas = torch.as_tensor(sigmas, dtype=torch.float32).cpu()
    if sigmas.ndim != 1 or sigmas.numel() < 2 or bool((sigmas[1:] >= sigmas[:-1]).any()):
        raise OmniSyncError("sigmas must be a decreasing schedule of at least 2 values (σ from τ down to 0).")
    guider = DSCFGGuider(guidance, source, audio_tokens, centres)
    x = guided_euler(model, x_init.float(), sigmas, guider, text, progress=progress, cancel=cancel, device=device,
                     dtype=dtype)
    guider.info["centres"] = guider.centres
    return x, guider.info


# -- windows ----------------------------------------------------------------------------------------


@dataclass
class WindowInput:
    """What :func:`sample_windows` needs for window [s, e): (C, n, h, w) start latents and source latents,
    (n, N_a, K) audio tokens or None, and the mouth: "auto" or (n, 2) frame fractions."""

    x_init: torch.Tensor
    source: torch.Tensor
    audio_tokens: Optional[torch.Tensor]
    centres: Centres


@dataclass
class Run:
    """A run of finished latent frames [start, start + n): latents (C, n, h, w) float32 on the CPU, the
    first-step guidance weight (n, h, w), mouth centres (n, 2), all cross-faded over their windows, and
    ``fallback_frames``: the run's latent frames (clip indices) where some window found no mouth."""

    start: int
    latents: torch.Tensor
    guidance_map: torch.Tensor
    centres: torch.Tensor
    fallback_frames: List[int]

    @property
    def num_frames(self) -> int:
        return int(self.latents.shape[1])


def sample_windows(
    model,
    windows: List[Tuple[int, int]],
    window_input: Callable[[int, int], WindowInput],
    text: Optional[torch.Tensor],
    sigmas: torch.Tensor,
    guidance: GuidanceConfig,
    report_: Dict,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
    device: Optional[torch.device] = None,
    dtype: Optional[torch.dtype] = None,
) -> Iterator[Run]:
    """The one window loop: denoise each window of latent frames (``window_input(s, e)`` builds its inputs
    when it is reached, so a caller may read and encode the source window by window), cross-fade the shared
    frames (:class:`.windows.WindowBlender`) and yield each run of frames as soon as no later window touches it.

    Only the current window is moved to ``device``, where the network is called in ``dtype`` (each None: the
    network's first parameter's, :func:`compute_placement`). Progress counts steps over all windows. ``report_``
    receives ``windows``, ``forward_passes``, ``uncond_passes`` and, at the end, ``fallback_frames`` (latent frames
    where some window found no mouth).
    """
    device, dtype = compute_placement(model, device, dtype)
    steps = torch.as_tensor(sigmas).numel() - 1
    total = steps * len(windows)
    text = text.to(device) if text is not None else None
    blender = WindowBlender(windows)
    lost: set = set()
    report_.update(windows=windows, forward_passes=0, uncond_passes=0)
    for k, (s, e) in enumerate(windows):
        check_cancel(cancel)

        def window_progress(done, _total, message, _base=k * steps):
            report(progress, _base + done, total, message)

        inp = window_input(s, e)
        tokens = inp.audio_tokens.to(device) if inp.audio_tokens is not None else None
        lat, info = denoise(model, inp.x_init.to(device), inp.source.to(device), tokens, text, sigmas, guidance,
                            inp.centres, progress=window_progress, cancel=cancel, device=device, dtype=dtype)
        report_["forward_passes"] += info["forward_passes"]
        report_["uncond_passes"] += info["uncond_passes"]
        lost.update(s + f for f in info["fallback_frames"])
        start, done = blender.add(k, {"latents": lat.cpu().movedim(1, 0), "guidance_map": info["guidance_map"].cpu(),
                                      "centres": info["centres"].cpu()})
        n = done["centres"].shape[0]
        if n:
            yield Run(start=start, latents=done["latents"].movedim(0, 1).contiguous(),
                      guidance_map=done["guidance_map"], centres=done["centres"],
                      fallback_frames=sorted(f for f in lost if start <= f < start + n))
    report_["fallback_frames"] = sorted(lost)


def plan_latent_windows(num_frames: int, window: int, overlap: int) -> List[Tuple[int, int]]:
    """Windows over ``num_frames`` latent frames: one (0, F) for window 0 or ≥ F, else :func:`.windows.plan_windows`."""
    return [(0, num_frames)] if window == 0 or window >= num_frames else plan_windows(num_frames, window, overlap)


def sample_windowed(
    model,
    x_init: torch.Tensor,
    source: torch.Tensor,
    audio_tokens: Optional[torch.Tensor],
    text: Optional[torch.Tensor],
    sigmas: torch.Tensor,
    guidance: GuidanceConfig,
    centres: Centres = "auto",
    window: int = 0,
    overlap: int = 2,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
    device: Optional[torch.device] = None,
    dtype: Optional[torch.dtype] = None,
) -> Tuple[torch.Tensor, torch.Tensor, Dict]:
    """A whole latent video in overlapping windows, held in memory: :func:`sample_windows` over slices.

    The split sampler node and the training validator call this (the pipeline's engine calls
    :func:`sample_windows` itself, window by window). Shapes as in :func:`denoise`, with F the whole clip;
    ``audio_tokens`` (F, N_a, K) are built once over the whole clip, so each window's tokens keep their audio
    context across its seams. ``window`` latent frames per window (0, or ≥ F: one window), ``overlap`` shared
    with the next; the shared frames are cross-faded linearly (:func:`.windows.blend_weights`). ``device``,
    ``dtype``: as :func:`sample_windows`.

    Returns latents (C, F, h, w) float32 on the CPU, guidance_map (F, h, w) (first-step weight G·ω,
    blended) and a report: ``windows`` (latent frames), ``centres`` (F, 2) (blended), ``fallback_frames``
    (latent frames where some window found no mouth), ``forward_passes``, ``uncond_passes``.
    """
    windows = plan_latent_windows(x_init.shape[1], window, overlap)

    def window_input(s: int, e: int) -> WindowInput:
        return WindowInput(x_init[:, s:e], source[:, s:e], audio_tokens[s:e] if audio_tokens is not None else None,
                           centres if isinstance(centres, str) else centres[s:e])

    rep: Dict = {}
    runs = list(sample_windows(model, windows, window_input, text, sigmas, guidance, rep, progress=progress,
                               cancel=cancel, device=device, dtype=dtype))
    rep["centres"] = torch.cat([r.centres for r in runs])
    return torch.cat([r.latents for r in runs], 1), torch.cat([r.guidance_map for r in runs]), rep
