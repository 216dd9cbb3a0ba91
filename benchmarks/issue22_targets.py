"""Issue 22's targets, per split, from held-out eval reports: prints a markdown table, asserts nothing.

    python -m omnisync_core eval --data data/chars128 --limit 12 --report base128.json
    python -m omnisync_core eval --data data/chars128 --limit 12 --model runs/.../omnisync_ema_stepN.safetensors \
        --report new128.json
    python benchmarks/issue22_targets.py new128.json --baseline base128.json [--at256 new256.json]

Per split (kind, then all): shape error as a fraction of copying; sync with the target and with the source;
mouth MAE as a fraction of copying and the share of clips above copying; the share of clips with PSNR outside
the mouth >= 40 dB; the silence case (openness minus the closed truth, spread over time); the ghost metric and
its ratio to the baseline report's; with ``--at256`` (an eval of the 256² renders of the same characters), the
256² sync and PSNR outside minus the 128² PSNR of the same characters (matched by seed).
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def load(path: str):
    with open(path) as f:
        report = json.load(f)
    return report["clips"], report["summary"]


def by_split(clips, kind):
    return [c for c in clips if kind == "all" or c["kind"] == kind]


def fmt(x, spec="{:.3f}"):
    return "–" if x is None or not np.isfinite(x) else spec.format(x)


def rows(report, baseline=None, at256=None):
    clips, summary = report
    base_summary = baseline[1] if baseline else {}
    out = []
    for kind, m in summary.items():
        sel = by_split(clips, kind)
        ghost_base = base_summary.get(kind, {}).get("ghost")
        row = {
            "split": kind, "clips": m["clips"],
            "shape / copy (≤ 0.40)": m["shape_error"] / m["copy_shape_error"] if "shape_error" in m else None,
            "sync (≥ 0.85)": m.get("sync_target"), "sync source": m.get("sync_source"),
            "MAE / copy (≤ 0.90)": m["mouth_mae"] / m["copy_mouth_mae"],
            "clips MAE > copy (≤ 10%)": m["mae_above_copy"],
            "clips PSNR ≥ 40 (≥ 95%)": 1.0 - m["psnr_below_40"],
            "silence gap (|·| ≤ 0.05)": m.get("silence_gap"), "silence spread (≤ 0.03)": m.get("silence_spread"),
            "ghost": m.get("ghost"),
            "ghost / baseline (≤ 0.5)": (m["ghost"] / ghost_base) if ghost_base and "ghost" in m else None,
        }
        if at256 is not None:
            big = {c["seed"]: c for c in by_split(at256[0], kind)}
            small = {c["seed"]: c for c in sel}
            common = sorted(set(big) & set(small))
            if common:
                row["256² sync (≥ 0.8)"] = float(np.mean([big[s]["sync_target"] for s in common]))
                row["256² − 128² PSNR out (≥ −3)"] = float(np.mean([big[s]["psnr_outside"] - small[s]["psnr_outside"]
                                                                   for s in common]))
                row["256² clips"] = len(common)
        out.append(row)
    return out


def markdown(table) -> str:
    keys = list(dict.fromkeys(k for r in table for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|---|" + "---:|" * (len(keys) - 1)]
    for r in table:
        cells = []
        for k in keys:
            v = r.get(k)
            if isinstance(v, str) or isinstance(v, int):
                cells.append(str(v))
            elif k.startswith("clips"):
                cells.append(fmt(v, "{:.0%}"))
            else:
                cells.append(fmt(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("report", help="eval --report JSON of the model under test (128²)")
    p.add_argument("--baseline", help="eval --report JSON of the current model on the same clips (for the ghost ratio)")
    p.add_argument("--at256", help="eval --report JSON of the same model on the 256² renders of the same characters")
    args = p.parse_args()
    table = rows(load(args.report), load(args.baseline) if args.baseline else None,
                 load(args.at256) if args.at256 else None)
    print(markdown(table))


if __name__ == "__main__":
    main()
