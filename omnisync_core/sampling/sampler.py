"""The DS-CFG flow-matching sampler: one window (:func:`denoise`) and a whole latent video
(:func:`sample_windowed`, overlapping windows with cross-faded seams: the one loop every front end runs).

Latents here are (C, F, h, w) without a batch axis; the model is called with a batch of 1, or 2
when the conditional and unconditional passes are needed together (batched in one forward).
A model that treats every frame on its own (``frames_independent``, the U-Net) is called on at
most :data:`CHUNK_LATENT_PIXELS` latent pixels at a time, with the cancel check between calls, so a
whole-clip window stops within about a second of Ctrl-C or ComfyUI's /interrupt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Tuple, Union

import torch

from ..errors import OmniSyncError
from ..progress import CancelCheck, ProgressCallback, check_cancel, report
from .guidance import GuidanceConfig, ds_cfg_combine, guidance_weight, passes_needed, spatial_guidance_map
from .mouth import DEFAULT_MOUTH_CENTRE, centres_from_guidance, fill_missing
from .schedule import FlowMatchSchedule, sigma_to_timestep
from .windows import WindowBlender, plan_windows

Centres = Union[str, torch.Tensor]  # "auto" or (F, 2) frame fractions
# latent frames × h × w per forward call of a per-frame model: one call (one convolution) over a whole
# 10-minute clip ran for tens of seconds, during which neither Ctrl-C nor a cancel check could act
CHUNK_LATENT_PIXELS = 2 ** 16  # 16 frames of 128² video (64² latents): the bundled window stays one call


def _model_dtype(model) -> torch.dtype:
    return next(model.parameters()).dtype


def _predict(model, x, sigma, source, audio, text, which: str,
             cancel: Optional[CancelCheck] = None) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """(v_c, v_u), each (C, F, h, w) float32 or None when not needed.

    ``which``: "cond", "uncond" or "both" (one batched forward of 2). The unconditional pass zeroes
    the audio tokens (the trainer's dropout convention); the text description is kept in both.
    A ``frames_independent`` model gets chunks of frames (same result), ``cancel`` checked between them.
    """
    _, F_, h, w = x.shape
    chunk = max(1, CHUNK_LATENT_PIXELS // (h * w))
    if F_ <= chunk or not getattr(model, "frames_independent", False):
        return _predict_frames(model, x, sigma, source, audio, text, which)
    parts = []
    for s in range(0, F_, chunk):
        check_cancel(cancel)
        e = min(s + chunk, F_)
        parts.append(_predict_frames(model, x[:, s:e], sigma, source[:, s:e],
                                     audio[s:e] if audio is not None else None, text, which))
    return tuple(None if parts[0][k] is None else torch.cat([p[k] for p in parts], 1) for k in (0, 1))


def _predict_frames(model, x, sigma, source, audio, text, which: str) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """:func:`_predict` in one forward call."""
    dtype = _model_dtype(model)
    # the state and the source stay float32 (fp32 islands): the network casts them for its body and builds
    # x̂₀ = source + residual and the velocity in float32, so a bf16 network does not round the source's pixels
    xin = x.float()[None]
    src = source.float()[None]
    txt = text.to(dtype)[None] if text is not None else None
    t = torch.tensor([float(sigma_to_timestep(sigma))])
    if audio is None:  # no audio branch: nothing to guide
        return model(xin, t, source=src, audio=None, text=txt)[0].float(), None
    aud = audio.to(dtype)[None]
    if which == "cond":
        return model(xin, t, source=src, audio=aud, text=txt)[0].float(), None
    if which == "uncond":
        return None, model(xin, t, source=src, audio=torch.zeros_like(aud), text=txt)[0].float()
    out = model(
        torch.cat([xin, xin]), t.expand(2), source=src.expand(2, -1, -1, -1, -1),
        audio=torch.cat([aud, torch.zeros_like(aud)]), text=txt.expand(2, -1, -1) if txt is not None else None,
    ).float()
    return out[0], out[1]


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
) -> Tuple[torch.Tensor, Dict]:
    """Euler-integrate one window from σ = sigmas[0] to sigmas[-1] with DS-CFG.

    Args:
        model: OmniSyncDiT (``forward(x, timestep, source, audio, text) -> v``).
        x_init: (C, F, h, w) start latents (progressive noise init at σ = sigmas[0]).
        source: (C, F, h, w) source latents.
        audio_tokens: (F, N_a, K) or None (a model without audio branch: plain sampling).
        text: (L, text_dim) or None.
        sigmas: (S + 1,) decreasing σ, e.g. ``FlowMatchSchedule(50).truncate(0.92)``.
        guidance: DS-CFG configuration (Eqs. 7–9).
        centres: "auto" (found at the first step from |v_c − v_u|) or (F, 2) frame fractions.

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
    _, F_, h, w = x_init.shape
    device = x_init.device
    x = x_init.float()
    steps = sigmas.numel() - 1
    info: Dict = {"fallback_frames": [], "forward_passes": 0, "uncond_passes": 0, "mouth": {}}
    spatial = None
    if not isinstance(centres, str):
        centres = torch.as_tensor(centres, dtype=torch.float32).cpu()
        if centres.shape != (F_, 2):
            raise OmniSyncError(f"mouth centres must be ({F_}, 2) for this window, got {tuple(centres.shape)}.")
        spatial = spatial_guidance_map(centres, h, w, guidance)
        info["mouth"] = {"source": "given"}
    elif centres != "auto":
        raise OmniSyncError(f"centres must be 'auto' or an (F, 2) tensor, got {centres!r}.")

    for i in range(steps):
        check_cancel(cancel)
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        if spatial is None and audio_tokens is not None:  # auto: find the mouth from this first step
            v_c, v_u = _predict(model, x, s, source, audio_tokens, text, "both", cancel)
            info["forward_passes"] += 1
            info["uncond_passes"] += 1
            found_c, found = centres_from_guidance((v_c - v_u).abs())
            centres, fill = fill_missing(found_c, found, DEFAULT_MOUTH_CENTRE)
            info["fallback_frames"] = [f for f in range(F_) if not bool(found[f])]
            info["mouth"] = {"source": "auto", **fill}
            spatial = spatial_guidance_map(centres, h, w, guidance)
            weight = guidance_weight(spatial, s, guidance)
            v = ds_cfg_combine(v_c, v_u, weight.to(device))
        else:
            if spatial is None:  # no audio branch, auto: nothing to locate
                centres = torch.tensor(DEFAULT_MOUTH_CENTRE).expand(F_, 2).clone()
                spatial = spatial_guidance_map(centres, h, w, guidance)
                info["mouth"] = {"source": "default (model has no audio branch)"}
            weight = guidance_weight(spatial, s, guidance)
            which = passes_needed(weight) if audio_tokens is not None else "cond"
            v_c, v_u = _predict(model, x, s, source, audio_tokens, text, which, cancel)
            info["forward_passes"] += 1
            info["uncond_passes"] += int(which != "cond" and audio_tokens is not None)
            v = v_c if which == "cond" else v_u if which == "uncond" else ds_cfg_combine(v_c, v_u, weight.to(device))
        if i == 0:
            info["guidance_map"] = weight.clone()
        x = FlowMatchSchedule.step(v, x, s, s_next)
        report(progress, i + 1, steps, f"σ {s_next:.3f}")
    info["centres"] = centres
    return x, info


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
) -> Iterator[Run]:
    """The one window loop: denoise each window of latent frames (``window_input(s, e)`` builds its inputs
    when it is reached, so a caller may read and encode the source window by window), cross-fade the shared
    frames (:class:`.windows.WindowBlender`) and yield each run of frames as soon as no later window touches it.

    Only the current window is moved to ``device`` (default: the model's). Progress counts steps over all
    windows. ``report_`` receives ``windows``, ``forward_passes``, ``uncond_passes`` and, at the end,
    ``fallback_frames`` (latent frames where some window found no mouth).
    """
    if device is None:
        device = next(model.parameters()).device
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
                            inp.centres, progress=window_progress, cancel=cancel)
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
) -> Tuple[torch.Tensor, torch.Tensor, Dict]:
    """A whole latent video in overlapping windows, held in memory: :func:`sample_windows` over slices.

    The split sampler node and the training validator call this (the pipeline's engine calls
    :func:`sample_windows` itself, window by window). Shapes as in :func:`denoise`, with F the whole clip;
    ``audio_tokens`` (F, N_a, K) are built once over the whole clip, so each window's tokens keep their audio
    context across its seams. ``window`` latent frames per window (0, or ≥ F: one window), ``overlap`` shared
    with the next; the shared frames are cross-faded linearly (:func:`.windows.blend_weights`).

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
                               cancel=cancel, device=device))
    rep["centres"] = torch.cat([r.centres for r in runs])
    return torch.cat([r.latents for r in runs], 1), torch.cat([r.guidance_map for r in runs]), rep
