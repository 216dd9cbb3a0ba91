"""What fp8 weights cost in accuracy: relative L2 error of a forward and of one guided X-Dub step, fp8 (scaled per
tensor, and a plain cast) against bf16, all computing in bf16. Prints numbers, asserts nothing; no GPU needed.

    python benchmarks/fp8_error.py [--skip-wide]

* The reference's scaled-down X-Dub DiT (tests/fixtures/xdub/dit_tiny_weights.safetensors, width 64) on the golden
  sampler step's state: a forward at batch 3 (timestep 700) and one guided step (three passes, DS-CFG, Euler).
* A full-width X-Dub DiT with 2 of its 30 blocks (width 3072, FFN 14336, Wan's initialisation with the zero-init
  layers randomised), forward only: the weights have X-Dub's magnitudes, where a plain cast loses the small ones.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys

import torch
from safetensors import safe_open

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from xdub_model import inputs  # noqa: E402

from omnisync_core.model.config import preset  # noqa: E402
from omnisync_core.model.xdub_dit import XDubDiT  # noqa: E402
from omnisync_core.model.fp8 import convert_to_fp8, weights_nbytes  # noqa: E402
from omnisync_core.model.xdub_weights import load_xdub_model  # noqa: E402
from omnisync_core.sampling.schedule import FlowMatchSchedule  # noqa: E402
from omnisync_core.sampling.xdub import XDubOptions, guided_step  # noqa: E402

FIXTURES = os.path.join(ROOT, "tests", "fixtures", "xdub")


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def golden_rows():
    with safe_open(os.path.join(FIXTURES, "sampler_step.safetensors"), framework="pt") as f:
        t = {k: f.get_tensor(k) for k in f.keys()}
        k = int(f.metadata()["step"])
    path = os.path.join(FIXTURES, "dit_tiny_weights.safetensors")
    load = lambda **kw: load_xdub_model(path, head_dim=32, audio_head_dim=16, **kw)  # noqa: E731
    models = {"float32": load(dtype=torch.float32), "bf16": load(), "fp8 scaled": load(weight_dtype="fp8_e4m3fn"),
              "fp8 plain": convert_to_fp8(load(), scaled=False)}
    sig = FlowMatchSchedule(30, 5.0).sigmas
    out = {}
    for name, m in models.items():
        dt = next(m.parameters()).dtype
        B = 3
        with torch.no_grad():
            v = m(t["x_in"][None].expand(B, -1, -1, -1, -1).to(dt), torch.full((B,), 700.0),
                  source=t["reference"][None].to(dt), audio=t["audio"][None].to(dt), text=t["text"][None].to(dt),
                  motion_frames=2)
            x, _ = guided_step(m, t["x_in"].clone(), float(sig[k]), float(sig[k + 1]), t["reference"], t["noise"],
                               t["audio"], t["text"], XDubOptions(), t["motion_latents"])
        out[name] = (v, x, weights_nbytes(m))
    print("scaled-down X-Dub DiT (dit_tiny_weights, width 64), relative L2 error:")
    print(f"  {'':<26} {'forward':>8} {'guided step':>12} {'weight bytes':>13}")
    for name, ref in (("bf16", "float32"), ("fp8 scaled", "bf16"), ("fp8 plain", "bf16")):
        print(f"  {name + ' vs ' + ref:<26} {rel(out[name][0], out[ref][0]):>8.4f} {rel(out[name][1], out[ref][1]):>12.5f} "
              f"{out[name][2]:>13,}")


def wide_rows():
    torch.manual_seed(0)
    cfg = preset("xdub-5b", num_layers=2)
    model = XDubDiT(cfg).eval()
    with torch.no_grad():  # the zero-initialised layers (head, audio output) get Wan's Xavier init
        for name, p in model.named_parameters():
            if p.ndim == 2 and (name.startswith("head.head") or ("audio_attn.o" in name)):
                torch.nn.init.xavier_uniform_(p)
    bf16 = model.to(torch.bfloat16)
    x, t, kw = inputs(cfg, 3, 2, 4, 4, "cpu", torch.bfloat16)
    with torch.no_grad():
        ref = bf16(x, t, **kw)
        errors = {s: rel(convert_to_fp8(copy.deepcopy(bf16), scaled=s)(x, t, **kw), ref) for s in (True, False)}
    print("full-width X-Dub DiT with 2 blocks (width 3072, FFN 14336), forward at batch 3, relative L2 vs bf16:")
    print(f"  fp8 scaled {errors[True]:.4f}, fp8 plain cast {errors[False]:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-wide", action="store_true", help="only the scaled-down model (seconds instead of minutes)")
    args = ap.parse_args()
    golden_rows()
    if not args.skip_wide:
        wide_rows()


if __name__ == "__main__":
    main()
