"""The paper's inference ablation on the held-out clips: each variant switches off one idea.

Variants are data: ``(name, overrides)``, where the overrides set flat knobs of the base run
(``tau`` of Eq. 5; ``omega_base``, ``omega_peak``, ``gamma`` of DS-CFG, Eqs. 7–9). A value that is a
knob's name copies that knob from the base run (``"omega_peak"``: ω_base = the base run's ω_peak).

* τ = 1: no progressive noise init (sampling starts from pure noise, Eq. 5).
* static CFG low / high: ω constant over the frame and the steps (ω_base = ω_peak, γ = 0), at 1 and 3.
* no spatial Gaussian: ω_base = ω_peak (Eq. 7 flat), the temporal decay kept.
* no temporal decay: γ = 0 (Eq. 8 constant), the spatial Gaussian kept.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple, Union

from ..errors import OmniSyncError
from ..progress import CancelCheck, ProgressCallback
from .heldout import TABLE_COLUMNS, evaluate_heldout, table_cells

Override = Dict[str, Union[float, str]]
ABLATIONS: List[Tuple[str, Override]] = [
    ("default", {}),
    ("τ = 1 (no progressive init)", {"tau": 1.0}),
    ("static CFG ω = 1", {"omega_base": 1.0, "omega_peak": 1.0, "gamma": 0.0}),
    ("static CFG ω = 3", {"omega_base": 3.0, "omega_peak": 3.0, "gamma": 0.0}),
    ("no spatial Gaussian", {"omega_base": "omega_peak"}),
    ("no temporal decay", {"gamma": 0.0}),
]
GUIDANCE_KNOBS = ("omega_base", "omega_peak", "sigma_spatial", "gamma")


def ablation_options(base, overrides: Override):
    """A copy of ``base`` (SyncOptions) with ``overrides`` applied (see the module docstring)."""
    flat = {"tau": base.tau, **base.guidance.to_dict()}
    unknown = set(overrides) - set(flat)
    if unknown:
        raise OmniSyncError(f"unknown ablation knob(s) {sorted(unknown)}; known: {sorted(flat)}")
    new = {k: flat[v] if isinstance(v, str) else float(v) for k, v in overrides.items()}
    guidance = dataclasses.replace(base.guidance, **{k: v for k, v in new.items() if k in GUIDANCE_KNOBS})
    return dataclasses.replace(base, tau=new.get("tau", base.tau), guidance=guidance)


def evaluate_ablation(pipeline, root: str, base, variants: Sequence[Tuple[str, Override]] = ABLATIONS,
                      split: str = "heldout", limit: Optional[int] = None, reader=None,
                      progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCheck] = None) -> List[Dict]:
    """:func:`evaluate_heldout` once per variant on the same clips: [{"name", "options", "clips", "summary"}]."""
    results = []
    for i, (name, overrides) in enumerate(variants):
        opts = ablation_options(base, overrides)

        def tick(done, total, message, i=i, name=name):
            if progress is not None:
                progress(i * total + done, len(variants) * total, f"{name}: {message}")

        result = evaluate_heldout(pipeline, root, opts, split=split, limit=limit, reader=reader, progress=tick,
                                  cancel=cancel, silence=False)  # the sampling knobs, on the speech case only
        results.append({"name": name, "options": {"tau": opts.tau, **opts.guidance.to_dict()}, **result})
    return results


def ablation_table(results: Sequence[Dict]) -> str:
    """One markdown row per variant, all splits together."""
    lines = ["| variant | τ | ω_base | ω_peak | γ | " + " | ".join(h for h, _, _ in TABLE_COLUMNS) + " |",
             "|---|---:|---:|---:|---:|" + "---:|" * len(TABLE_COLUMNS)]
    for r in results:
        o = r["options"]
        lines.append(f"| {r['name']} | {o['tau']:g} | {o['omega_base']:g} | {o['omega_peak']:g} | {o['gamma']:g} | "
                     + " | ".join(table_cells(r["summary"]["all"])) + " |")
    return "\n".join(lines)
