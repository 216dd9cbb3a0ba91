"""The options of one lip-sync call: every default declared once, and the rule that merges a
checkpoint's recommended sampling with the user's choices.

The CLI, the ComfyUI nodes and the benchmarks take their defaults from :class:`SyncOptions` and build
the options of a call with :func:`resolve_options`. A checkpoint's metadata may carry the sampling its
model was tuned for (``save_checkpoint(..., sampling=...)``), e.g.::

    "sampling": {"num_steps": 8, "tau": 0.92, "window": 8, "overlap": 2}

A setting the user leaves on :data:`AUTO` (or None) takes the checkpoint's value, else the default
below. The defaults are the paper's where the paper gives one (τ = 0.92, 50 steps, DS-CFG ω_peak 3 and
γ 1.5 are in :class:`GuidanceConfig`); the mouth point is in :data:`.mouth.DEFAULT_MOUTH_CENTRE` and
the length modes in :data:`.windows.LENGTH_MODES`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch

from ..errors import OmniSyncError
from .guidance import GuidanceConfig
from ..length import LENGTH_MODES

AUTO = "auto"  # "use the checkpoint's recommendation, else the default"
# OmniSync's default σ below which DS-CFG is off (GuidanceConfig.cfg_cutoff): 0, guidance at every step. Measured on
# the held-out suite (README, Performance): every cutoff tried (0.2, 0.45, 0.6) raised mouth MAE by ~0.03 while
# improving sync, shape error and PSNR, so a cutoff is a speed option (0.6: 1.26x faster), not the default
DEFAULT_CFG_CUTOFF = 0.0
GUIDANCE_FIELDS = tuple(f.name for f in dataclasses.fields(GuidanceConfig))
# what a checkpoint's "sampling" metadata may recommend: the schedule, the windows and DS-CFG
RECOMMENDABLE = ("tau", "num_steps", "shift", "window", "overlap") + GUIDANCE_FIELDS


@dataclass
class SyncOptions:
    """Every sampling knob of one lip-sync call (CLI flags and node widgets map onto these).

    mouth_mask, when given, overrides ``mouth``: (H, W) for every frame, or (T_src, H, W) one per source
    frame (the length plan picks the frames), or (T_out, H, W) one per output frame; values in [0, 1].
    """

    tau: float = 0.92  # τ ∈ (0, 1]: progressive-noise strength (Eq. 5); 1 starts from pure noise
    num_steps: int = 50  # length of the full flow-matching schedule; only the steps with σ ≤ τ run
    shift: float = 1.0  # flow shift of the σ grid (1 = linear)
    seed: int = 0  # noise seed (noise is drawn per latent frame: windows do not change it)
    guidance: GuidanceConfig = field(default_factory=lambda: GuidanceConfig(cfg_cutoff=DEFAULT_CFG_CUTOFF))  # Eqs. 7–9
    mouth: Union[str, Tuple[float, float]] = "auto"  # "auto" (found by the model) or (x, y) frame fractions
    mouth_mask: Optional[torch.Tensor] = None
    window: int = 16  # latent frames per window; 0 = the whole clip in one window (cost grows with its square)
    overlap: int = 1  # latent frames neighbouring windows share (cross-faded): ≤ 1/15 more frames computed
    length_mode: str = "follow_audio_loop"  # one of LENGTH_MODES: who decides the output length
    composite: bool = False  # keep every pixel outside a feathered disc around the mouth from the source
    composite_radius: float = 0.2  # disc radius, fraction of the shorter frame side
    composite_feather_px: float = 4.0  # soft edge of that disc, pixels
    text: Optional[torch.Tensor] = None  # (L, text_dim) from omnisync_core.model.t5, or None

    def __post_init__(self):
        if not (_is_number(self.tau) and 0.0 < self.tau <= 1.0):
            raise OmniSyncError(f"tau must be in (0, 1] (0.92 in the paper; 1 = pure noise), got {self.tau!r}.")
        if not (_is_int(self.num_steps) and self.num_steps >= 1):
            raise OmniSyncError(f"num_steps must be a positive integer (50 in the paper), got {self.num_steps!r}.")
        if not _is_int(self.seed):
            raise OmniSyncError(f"seed must be an integer, got {self.seed!r}.")
        if not (_is_number(self.shift) and self.shift > 0):
            raise OmniSyncError(f"shift must be a positive number (1.0 = linear schedule), got {self.shift!r}.")
        if not (_is_int(self.window) and _is_int(self.overlap) and self.window >= 0 and self.overlap >= 0):
            raise OmniSyncError("window and overlap are counts of latent frames: integers ≥ 0, "
                                f"got window={self.window!r}, overlap={self.overlap!r}.")
        if self.window and self.overlap >= self.window:
            raise OmniSyncError(f"overlap ({self.overlap} latent frames) must be smaller than the window "
                                f"({self.window}); lower the overlap or widen the window.")
        if self.length_mode not in LENGTH_MODES:
            raise OmniSyncError(
                f"unknown length mode {self.length_mode!r}; choose one of {', '.join(LENGTH_MODES)}."
            )
        if isinstance(self.mouth, str) and self.mouth != "auto":
            raise OmniSyncError(f"mouth must be 'auto' or an (x, y) point in [0, 1], got {self.mouth!r}.")
        if not isinstance(self.mouth, str):
            x, y = self.mouth
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise OmniSyncError(f"mouth point {self.mouth} must be inside the frame: x, y in [0, 1].")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def is_auto(value: Any) -> bool:
    """True for a setting left to the checkpoint / default: None or "auto"."""
    return value is None or (isinstance(value, str) and value == AUTO)


def recommended_sampling(meta: Optional[Mapping[str, Any]]) -> Tuple[Dict[str, Any], List[str]]:
    """The checkpoint metadata's ``"sampling"`` object → (recommended {name: value}, ignored key names).

    Keys other than :data:`RECOMMENDABLE` are returned as ignored (a newer file may carry more); a bad
    value is an error that names the checkpoint metadata.
    """
    raw = (meta or {}).get("sampling")
    if raw is None:
        return {}, []
    if not isinstance(raw, Mapping):
        raise OmniSyncError(f"the checkpoint's 'sampling' metadata must be a JSON object, got {raw!r}; "
                            "re-export the checkpoint.")
    rec = {k: v for k, v in raw.items() if k in RECOMMENDABLE}
    ignored = sorted(k for k in raw if k not in RECOMMENDABLE)
    try:
        _build(dict(rec))
    except OmniSyncError as exc:
        raise OmniSyncError(f"the checkpoint recommends invalid sampling {dict(raw)}: {exc} Re-export the "
                            "checkpoint with valid 'sampling' metadata.") from None
    return rec, ignored


def resolve_options(meta: Optional[Mapping[str, Any]] = None, **choices: Any) -> Tuple[SyncOptions, Dict[str, Any]]:
    """The options of one call: what the user chose, else the checkpoint's recommendation, else the default.

    Args:
        meta: the checkpoint metadata (``load_checkpoint``'s second value), or None.
        choices: :class:`SyncOptions` fields and the DS-CFG fields (omega_base, omega_peak,
            sigma_spatial, gamma); None or ``"auto"`` means "not chosen".

    Returns:
        (options, report); report = {"from": {name: "user" | "checkpoint" | "default"} for each
        recommendable setting, "ignored": checkpoint keys this version does not know}.
    """
    known = {f.name for f in dataclasses.fields(SyncOptions)} | set(GUIDANCE_FIELDS)
    unknown = sorted(k for k in choices if k not in known)
    if unknown:
        raise OmniSyncError(f"unknown sync option(s) {unknown}; valid: {sorted(known)}.")
    if "guidance" in choices and any(k in choices for k in GUIDANCE_FIELDS):
        raise OmniSyncError("give either guidance=GuidanceConfig(...) or its fields, not both.")
    recommended, ignored = recommended_sampling(meta)
    values: Dict[str, Any] = {}
    sources: Dict[str, str] = {}
    user_guidance = not is_auto(choices.get("guidance"))
    for name in RECOMMENDABLE:
        if name in GUIDANCE_FIELDS and user_guidance:
            sources[name] = "user"
        elif not is_auto(choices.get(name)):
            values[name], sources[name] = choices[name], "user"
        elif name in recommended:
            values[name], sources[name] = recommended[name], "checkpoint"
        else:
            sources[name] = "default"
    values.update({k: v for k, v in choices.items() if k not in RECOMMENDABLE and not is_auto(v)})
    return _build(values), {"from": sources, "ignored": ignored}


def _build(values: Dict[str, Any]) -> SyncOptions:
    guidance = values.pop("guidance", None)
    if guidance is None:
        guidance = GuidanceConfig(**{"cfg_cutoff": DEFAULT_CFG_CUTOFF,
                                     **{k: values.pop(k) for k in GUIDANCE_FIELDS if k in values}})
    return SyncOptions(guidance=guidance, **values)
