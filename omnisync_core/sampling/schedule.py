"""Flow-matching schedule: the one place where σ, the paper's t and the Euler step are defined.

Conventions (docs/DESIGN.md):

* σ ∈ [0, 1]: 1 is pure noise, 0 is data. The linear path is ``x_σ = (1 − σ)·x₀ + σ·ε``.
* The network predicts the velocity ``v = ε − x₀`` (so ``dx/dσ = v``) and is called with
  ``timestep = 1000·σ`` (Wan 2.1 convention, :data:`NUM_TRAIN_TIMESTEPS`).
* The paper's ``t ∈ [0, T]`` with ``T = 1000`` *is* that timestep: ``t = 1000·σ``. So:
  - timestep-dependent data sampling (§3.2) "t > 850" is ``σ > 0.85``;
  - progressive noise initialisation (Eq. 5) ``x_init = (1 − τ)·V + τ·ε`` is the path at ``σ = τ``;
  - the DS-CFG temporal weight (Eq. 8) ``(t/T)^γ`` is ``σ^γ``.
* Euler step from σᵢ to σᵢ₊₁ < σᵢ: ``x' = x + (σᵢ₊₁ − σᵢ)·v``.
"""

from __future__ import annotations

import math
from typing import Union

import torch

from ..errors import OmniSyncError

NUM_TRAIN_TIMESTEPS = 1000  # the paper's T: timestep = 1000·σ
SIGMA_MATCH_EPS = 1e-6  # two σ values closer than this are the same schedule point

Number = Union[float, torch.Tensor]


def sigma_to_timestep(sigma: Number) -> Number:
    """σ ∈ [0, 1] → the network's timestep (the paper's t) ∈ [0, 1000]."""
    return sigma * NUM_TRAIN_TIMESTEPS


def timestep_to_sigma(timestep: Number) -> Number:
    """The paper's t ∈ [0, 1000] → σ ∈ [0, 1]."""
    return timestep / NUM_TRAIN_TIMESTEPS


def shift_sigma(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """Flow shift σ' = s·σ / (1 + (s − 1)·σ) (s = 1: identity; s > 1 spends more steps at high noise)."""
    return shift * sigma / (1.0 + (shift - 1.0) * sigma)


class FlowMatchSchedule:
    """Euler flow-matching schedule over ``num_steps`` steps, σ from 1 down to 0.

    Args:
        num_steps: number of Euler steps of the full schedule (the paper uses 50: ``SyncOptions.num_steps``).
        shift: flow shift applied to the linear σ grid (1.0 = linear).

    Attributes:
        sigmas: (num_steps + 1,) float32, decreasing from 1 to 0.
        timesteps: (num_steps,) float32 = 1000·σ of the points where the network is called.
    """

    def __init__(self, num_steps: int, shift: float = 1.0):
        if not isinstance(num_steps, int) or num_steps < 1:
            raise OmniSyncError(f"num_steps must be a positive integer, got {num_steps!r}.")
        if not (isinstance(shift, (int, float)) and math.isfinite(shift) and shift > 0):
            raise OmniSyncError(f"shift must be a positive number (1.0 = linear schedule), got {shift!r}.")
        self.num_steps = num_steps
        self.shift = float(shift)
        linear = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)
        self.sigmas = shift_sigma(linear, self.shift).float()
        self.timesteps = sigma_to_timestep(self.sigmas[:-1])

    def truncate(self, tau: float) -> torch.Tensor:
        """The σ values that remain when sampling starts at σ = τ (progressive noise init, Eq. 5).

        Returns (S + 1,) float32: ``[τ, σ_k, σ_k+1, ..., 0]`` where σ_k… are the schedule points below τ.
        When τ is itself a schedule point (τ = 0.92 of the linear 50-step schedule is σ₄) the result is
        exactly the tail of :attr:`sigmas`, i.e. "the remaining steps"; otherwise τ is prepended so that
        the first step starts at the noise level x_init really has. τ = 1 gives the full schedule.
        """
        if not (isinstance(tau, (int, float)) and 0.0 < tau <= 1.0):
            raise OmniSyncError(f"tau must be in (0, 1] (1 = start from pure noise), got {tau!r}.")
        below = self.sigmas[self.sigmas < tau - SIGMA_MATCH_EPS]
        return torch.cat([torch.tensor([float(tau)], dtype=torch.float32), below])

    @staticmethod
    def noisy(x0: torch.Tensor, eps: torch.Tensor, sigma: Number) -> torch.Tensor:
        """The linear path at σ: ``x_σ = (1 − σ)·x₀ + σ·ε`` (σ a float or a tensor broadcast over x₀)."""
        return (1.0 - sigma) * x0 + sigma * eps

    @staticmethod
    def step(v: torch.Tensor, x: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
        """One Euler step of dx/dσ = v from ``sigma`` to ``sigma_next``: x + (σ' − σ)·v."""
        return x + (sigma_next - sigma) * v
