"""Dynamic spatiotemporal classifier-free guidance (DS-CFG, OmniSync Eqs. 7–9).

    G(x, y)   = ω_base + (ω_peak − ω_base)·exp(−d²/(2s²))          (Eq. 7, d: distance to the mouth)
    ω(t)      = (t/T)^γ = σ^γ                                        (Eq. 8, γ = 1.5)
    ε̂         = ε_u + G(x, y)·ω(t)·(ε_c − ε_u)                        (Eq. 9)

The product ``G·ω(t)`` is the per-position guidance weight: at the mouth centre it is ``ω_peak·σ^γ``,
far from the mouth ``ω_base·σ^γ``. Strong where the lips are, early in sampling; gentle late, when
the layout is fixed and only texture remains. Static CFG with scale s is ``ω_base = ω_peak = s, γ = 0``.
ε_c is the audio-conditioned prediction, ε_u the prediction with the audio tokens zeroed (the
trainer's condition-dropout convention). Our network predicts the velocity v; the combination is
linear, so it is applied to v unchanged.

Distances are measured in units of the frame's shorter side: the latent pixel (i, j) sits at
((j + 0.5)/w, (i + 0.5)/h) in frame fractions, and d² = (Δx·w/m)² + (Δy·h/m)² with m = min(h, w),
so the Gaussian is round on screen for any aspect ratio and ``sigma_spatial`` is a fraction of the
shorter side.

Below ``cfg_cutoff`` (a σ) guidance is off: the weight is 1 everywhere, the conditional prediction
alone, and the sampler skips the unconditional pass (:func:`passes_needed`). ω(t) = σ^γ decays
towards 0, not 1, so without a cutoff every step needs both passes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Tuple, Union

import torch

from ..errors import OmniSyncError

# A step runs one pass when the weight is within this of 1 (or 0) at every position: the skipped pass
# would move the combined prediction by at most WEIGHT_TOLERANCE·|ε_c − ε_u| (Eq. 9 rewritten as
# ε̂ = ε_c + (weight − 1)·(ε_u − ε_c)), 1% of the guidance difference.
WEIGHT_TOLERANCE = 1e-2
WEIGHT_EPS = 1e-6  # weights closer than this are equal (exact-equality checks, e.g. the X-Dub sampler's)


@dataclass
class GuidanceConfig:
    """DS-CFG knobs. ω values are CFG scales (1 = the conditional prediction), γ ≥ 0, sigma_spatial > 0."""

    omega_base: float = 1.0  # ω_base: scale far from the mouth
    omega_peak: float = 3.0  # ω_peak: scale at the mouth centre (times σ^γ)
    sigma_spatial: float = 0.15  # s: Gaussian width, fraction of the shorter frame side
    gamma: float = 1.5  # γ: temporal decay exponent
    cfg_cutoff: float = 0.0  # σ below which guidance is off (weight 1: conditional pass only); 0 = every step

    def __post_init__(self):
        for name in ("omega_base", "omega_peak", "sigma_spatial", "gamma", "cfg_cutoff"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise OmniSyncError(f"{name} must be a finite number, got {value!r}.")
        if self.sigma_spatial <= 0:
            raise OmniSyncError(f"sigma_spatial must be > 0 (a fraction of the frame), got {self.sigma_spatial}.")
        if self.gamma < 0:
            raise OmniSyncError(f"gamma must be ≥ 0 (0 = no decay over the steps), got {self.gamma}.")
        if self.omega_base < 0 or self.omega_peak < 0:
            raise OmniSyncError("omega_base and omega_peak are CFG scales and cannot be negative.")
        if not 0.0 <= self.cfg_cutoff <= 1.0:
            raise OmniSyncError(f"cfg_cutoff is a σ in [0, 1] (0 = guidance at every step, 1 = never), "
                                f"got {self.cfg_cutoff}.")

    def to_dict(self):
        return asdict(self)


def spatial_guidance_map(centres: torch.Tensor, h: int, w: int, cfg: GuidanceConfig) -> torch.Tensor:
    """Eq. 7 per latent frame.

    Args:
        centres: (F, 2) mouth centres (x, y) as frame fractions in [0, 1].
        h, w: latent height and width.

    Returns:
        (F, h, w) float32 between ω_base (far) and ω_peak (at the centre).
    """
    centres = torch.as_tensor(centres, dtype=torch.float32).cpu()
    if centres.ndim != 2 or centres.shape[1] != 2:
        raise OmniSyncError(f"mouth centres must be (F, 2) fractions (x, y), got shape {tuple(centres.shape)}.")
    m = float(min(h, w))
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h  # (h,)
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w  # (w,)
    dx = (xs.view(1, 1, w) - centres[:, 0].view(-1, 1, 1)) * (w / m)  # (F, 1, w)
    dy = (ys.view(1, h, 1) - centres[:, 1].view(-1, 1, 1)) * (h / m)  # (F, h, 1)
    gauss = torch.exp(-(dx ** 2 + dy ** 2) / (2 * cfg.sigma_spatial ** 2))  # (F, h, w)
    return cfg.omega_base + (cfg.omega_peak - cfg.omega_base) * gauss


def temporal_weight(sigma: float, gamma: float) -> float:
    """Eq. 8: ω(t) = (t/T)^γ = σ^γ (1 at pure noise, 0 at the data end)."""
    return float(sigma) ** gamma


def guidance_weight(spatial: torch.Tensor, sigma: float, cfg: GuidanceConfig) -> torch.Tensor:
    """G(x, y)·ω(t): (F, h, w) weight for the step at σ; 1 everywhere (no guidance) below ``cfg.cfg_cutoff``."""
    if float(sigma) < cfg.cfg_cutoff:
        return torch.ones_like(spatial)
    return spatial * temporal_weight(sigma, cfg.gamma)


def ds_cfg_combine(eps_c: torch.Tensor, eps_u: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Eq. 9: ε̂ = ε_u + weight·(ε_c − ε_u).

    eps_c, eps_u: (C, F, h, w); weight: (F, h, w) (broadcast over channels) or a scalar.
    """
    weight = torch.as_tensor(weight, dtype=eps_c.dtype, device=eps_c.device)
    if weight.ndim == 3:
        weight = weight[None]  # (1, F, h, w)
    return eps_u + weight * (eps_c - eps_u)


def nonzero_passes(coefficients: Mapping[str, Union[float, torch.Tensor]], tolerance: float) -> Tuple[str, ...]:
    """The passes whose coefficient in a linear combination of the passes' velocities exceeds ``tolerance``
    somewhere (a pass whose coefficient is within it of 0 everywhere need not run); the guiders' common rule."""
    return tuple(name for name, c in coefficients.items()
                 if float(torch.as_tensor(c, dtype=torch.float32).abs().max()) > tolerance)


def passes_needed(weight: torch.Tensor, tolerance: float = WEIGHT_TOLERANCE) -> str:
    """Which forward passes a DS-CFG step needs: "cond" (|weight − 1| ≤ tolerance everywhere), "uncond"
    (|weight| ≤ tolerance everywhere) or "both". Eq. 9 is ε̂ = weight·ε_c + (1 − weight)·ε_u, so skipping a pass
    changes the combined prediction by at most ``tolerance·|ε_c − ε_u|`` at any position."""
    need = nonzero_passes({"cond": weight, "uncond": 1.0 - weight}, tolerance)
    return need[0] if len(need) == 1 else "both"
