"""One-call GPU check of X-Dub at full size: speed, memory per offload setting, attention backend, the demo and
the CUDA tests. Prints one table and writes JSON. Needs no download (random weights) and keeps to a time budget.

    python benchmarks/gpu_check.py --json gpu_check.json            # one CUDA device, <= 5 minutes
    python benchmarks/gpu_check.py --cpu-reduced --json out.json    # the same code on the scaled model (CI)

On CUDA: the full-size X-Dub DiT (preset xdub-5b, 6.3 B parameters, bf16, random weights) at 512² × 77 frames
(48 × 20 × 32 × 32 latents, 10,240 tokens a pass, 3 guidance passes in one batch) runs one warm-up forward and
``--repeats`` timed forwards per setting: offload none, block swap with 8 / 4 / 0 resident blocks, and fp8
weights (the blocks' linear layers in float8_e4m3fn scaled per tensor, computed in bf16). Per setting: seconds
per 3-pass step, peak CUDA memory (``torch.cuda.max_memory_allocated``: weights + activations), and achieved
TFLOP/s = the step's FLOPs (``benchmarks/xdub_model.py``'s count) / seconds, against the device's dense bf16 peak.
Then the attention kernel PyTorch actually dispatched (the aten op seen inside the forward) and the ones available
at this shape, the bundled OmniSync demo on CUDA, and the tests that need CUDA.

``--cpu-reduced`` (automatic without CUDA) runs the same steps on the scaled model (tiny-xdub, float32) on the
CPU, where "peak memory" is the bytes of tensors created during the step (``xdub_model.LiveBytes``); the demo and
the CUDA tests are skipped. Each section is skipped, with the reason in the JSON, once the budget is spent.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from xdub_model import CFG_PASSES, count_flops, inputs, latent_frames, peak_activation_bytes  # noqa: E402

from omnisync_core.model.config import preset  # noqa: E402
from omnisync_core.model.xdub_dit import XDubDiT  # noqa: E402
from omnisync_core.model.fp8 import convert_to_fp8, weights_nbytes  # noqa: E402
from omnisync_core.model.offload import enable_block_swap  # noqa: E402

GIB = 2 ** 30
# dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets; first match wins
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0), ("GH200", 989.0),
                    ("B200", 2250.0), ("A100", 312.0), ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0),
                    ("A10", 125.0), ("RTX 6000 Ada", 364.0), ("RTX 4090", 165.0), ("RTX 3090", 71.0))
FULL = dict(preset="xdub-5b", frames=77, size=512, dtype=torch.bfloat16, resident=(8, 4, 0))
REDUCED = dict(preset="tiny-xdub", frames=9, size=64, dtype=torch.float32, resident=(1, 0))
CUDA_TEST_MARK = "torch.cuda.is_available()"


def device_peak_tflops(name: str) -> Optional[float]:
    for key, tflops in PEAK_BF16_TFLOPS:
        if key in name:
            return tflops
    return None


class Budget:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


class AttentionOps(TorchDispatchMode):
    """The attention aten ops dispatched while active (the kernel PyTorch picked for scaled_dot_product_attention)."""

    def __init__(self):
        super().__init__()
        self.ops = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket.__name__)
        if "attention" in name or "flash" in name:
            self.ops.add(name)
        return func(*args, **(kwargs or {}))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_step(model, cfg, shape, device, dtype, repeats: int) -> Dict[str, Any]:
    """Seconds per 3-pass step (one forward at batch 3) after one warm-up, and peak memory of one step."""
    B, Fl, h = shape
    x, t, kw = inputs(cfg, B, Fl, h, h, device, dtype)
    with torch.no_grad():
        with AttentionOps() as probe:
            model(x, t, **kw)  # warm-up (kernel selection, allocator), and the attention ops it dispatched
        sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            out = model(x, t, **kw)
            del out
        sync(device)
        seconds = (time.perf_counter() - t0) / repeats
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:  # the bytes created during one step (activations, swapped-in block copies)
        peak = peak_activation_bytes(model, cfg, B, Fl, h, h, device, dtype)
    return {"seconds_per_step": round(seconds, 4), "peak_gib": round(peak / GIB, 4), "peak_bytes": int(peak),
            "attention_ops": sorted(probe.ops)}


def probe_attention(cfg, tokens: int, device, dtype) -> Dict[str, Any]:
    """Each SDPA backend at the self-attention's shape (B = 3, n heads, L tokens, d): available, and seconds."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q = torch.randn(CFG_PASSES, cfg.num_heads, tokens, cfg.head_dim, device=device, dtype=dtype)
    out: Dict[str, Any] = {}
    with AttentionOps() as default:
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
    out["default_op"] = sorted(default.ops)
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION,
                    SDPBackend.MATH):
        if backend == SDPBackend.MATH and device.type == "cuda" and tokens > 4096:
            out[backend.name] = "not run (materialises the L x L matrix)"
            continue
        try:
            with sdpa_kernel([backend]):
                torch.nn.functional.scaled_dot_product_attention(q, q, q)
                sync(device)
                t0 = time.perf_counter()
                torch.nn.functional.scaled_dot_product_attention(q, q, q)
                sync(device)
            out[backend.name] = round(time.perf_counter() - t0, 5)
        except RuntimeError as exc:
            out[backend.name] = f"unavailable: {str(exc).splitlines()[0][:120]}"
    return out


def computed_memory(cfg, shape, resident) -> Dict[str, float]:
    """Peak memory of one step by arithmetic on the meta device (weights on the device + activations; block swap:
    non-block weights + resident blocks + 2 swapped blocks in flight), bytes, as benchmarks/xdub_model.py."""
    B, Fl, h = shape
    model = XDubDiT(cfg, device="meta", dtype=torch.bfloat16).eval()
    act = peak_activation_bytes(model, cfg, B, Fl, h, h, "meta", torch.bfloat16)
    weights = weights_nbytes(model)
    block = weights_nbytes(model.blocks[0])
    non_block = weights - block * cfg.num_layers
    out = {"none": weights + act}
    for r in resident:
        out[f"blocks {r}"] = non_block + (r + min(2, cfg.num_layers - r)) * block + act
    out["fp8"] = weights_nbytes(convert_to_fp8(model)) + act
    return out


def run_subprocess(cmd: List[str], timeout: float) -> Dict[str, Any]:
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"cmd": " ".join(cmd), "status": f"timed out after {timeout:.0f} s"}
    tail = (p.stdout + p.stderr).strip().splitlines()[-3:]
    return {"cmd": " ".join(cmd), "status": "ok" if p.returncode == 0 else f"exit {p.returncode}",
            "seconds": round(time.perf_counter() - t0, 1), "tail": tail}


def mentions_cuda(path: str) -> bool:
    with open(path, encoding="utf-8") as f:
        return CUDA_TEST_MARK in f.read()


def section(results: Dict[str, Any], name: str, budget: Budget, need: float, fn: Callable[[], Any]) -> None:
    """Run ``fn`` into results[name] if ``need`` seconds are left; record a skip or the error otherwise."""
    if budget.left() < need:
        results[name] = {"status": f"skipped: {budget.left():.0f} s left of the budget, needs ~{need:.0f} s"}
        return
    t0 = time.perf_counter()
    try:
        results[name] = fn()
    except (RuntimeError, ValueError, MemoryError) as exc:  # an out-of-memory or missing kernel is a result here
        results[name] = {"status": f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    print(f"  {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", required=True, help="write the results here")
    ap.add_argument("--cpu-reduced", action="store_true", help="the scaled model on the CPU (automatic without CUDA)")
    ap.add_argument("--budget", type=float, default=280.0, help="seconds for everything (default 280)")
    ap.add_argument("--repeats", type=int, default=2, help="timed steps per setting after one warm-up")
    ap.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, if not in the built-in table")
    args = ap.parse_args(argv)
    budget = Budget(args.budget)
    reduced = args.cpu_reduced or not torch.cuda.is_available()
    spec = REDUCED if reduced else FULL
    device = torch.device("cpu" if reduced else "cuda")
    cfg = preset(spec["preset"])
    shape = (CFG_PASSES, latent_frames(spec["frames"]), spec["size"] // 16)
    tokens = 2 * shape[1] * (shape[2] // 2) ** 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    peak_tflops = args.peak_tflops or (device_peak_tflops(name) if device.type == "cuda" else None)
    results: Dict[str, Any] = {
        "mode": "cpu-reduced" if reduced else "cuda", "device": name, "torch": torch.__version__,
        "cuda": torch.version.cuda, "model": spec["preset"], "dtype": str(spec["dtype"]).replace("torch.", ""),
        "window": f"{spec['size']}x{spec['size']} x {spec['frames']} frames", "latents": list(shape),
        "tokens_per_pass": tokens, "peak_bf16_tflops": peak_tflops, "budget_s": args.budget,
    }
    print(f"gpu_check: {results['mode']} on {name}, {spec['preset']} at {results['window']}", file=sys.stderr)
    meta_model = XDubDiT(cfg, device="meta", dtype=torch.bfloat16).eval()
    flops = count_flops(meta_model, cfg, *shape, shape[2])
    results["flop_per_step"] = flops
    results["computed_peak_bytes"] = computed_memory(cfg, shape, spec["resident"])

    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = XDubDiT(cfg, device=device, dtype=spec["dtype"]).eval()  # random weights, Wan's initialisation
    results["build_seconds"] = round(time.perf_counter() - t0, 1)
    results["weights_gib"] = round(weights_nbytes(model) / GIB, 3)

    settings: Dict[str, Any] = {}
    results["settings"] = settings

    def measure(label: str) -> Dict[str, Any]:
        r = time_step(model, cfg, shape, device, spec["dtype"], args.repeats)
        r["tflops"] = round(flops / r["seconds_per_step"] / 1e12, 2)
        if peak_tflops:
            r["fraction_of_peak"] = round(r["tflops"] / peak_tflops, 3)
        r["computed_peak_bytes"] = results["computed_peak_bytes"][label]
        return r

    step_need = 25.0 if not reduced else 1.0
    section(settings, "none", budget, step_need, lambda: measure("none"))
    if not reduced:
        model.to("cpu")  # block swap keeps the swapped blocks' weights in (pinned) CPU memory
        torch.cuda.empty_cache()
    for r in spec["resident"]:
        def swapped(r=r):
            swap = enable_block_swap(model, device, resident_blocks=r)
            try:
                return measure(f"blocks {r}")
            finally:
                swap.remove()
        section(settings, f"blocks {r}", budget, step_need * 1.5, swapped)
    model.to(device)

    def fp8():
        convert_to_fp8(model, compute_dtype=torch.bfloat16)
        out = measure("fp8")
        out["weights_gib"] = round(weights_nbytes(model) / GIB, 3)
        return out
    section(settings, "fp8", budget, step_need, fp8)
    model = None  # the weights' memory back before the attention probe
    if device.type == "cuda":
        torch.cuda.empty_cache()
    section(results, "attention", budget, 10.0, lambda: probe_attention(cfg, tokens, device, spec["dtype"]))

    if reduced:
        results["demo"] = results["cuda_tests"] = {"status": "skipped: --cpu-reduced"}
    else:
        out_dir = tempfile.mkdtemp(prefix="gpu_check_")
        demo = [sys.executable, "-m", "omnisync_core", "demo", "-o", os.path.join(out_dir, "demo.mp4"),
                "--device", "cuda", "--quiet", "--report", os.path.join(out_dir, "demo_report.json")]
        section(results, "demo", budget, 30.0, lambda: run_subprocess(demo, max(budget.left() - 60.0, 30.0)))
        files = sorted(f for f in glob.glob(os.path.join(ROOT, "tests", "test_*.py")) if mentions_cuda(f))
        tests = [sys.executable, "-m", "pytest", "-q", "-rs", "-k", "cuda", *files]
        section(results, "cuda_tests", budget, 20.0, lambda: run_subprocess(tests, max(budget.left() - 5.0, 15.0)))

    results["seconds"] = round(args.budget - budget.left(), 1)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=2)
    print_table(results)
    return 0


def print_table(results: Dict[str, Any]) -> None:
    print(f"{results['mode']}: {results['device']} (torch {results['torch']}, CUDA {results['cuda']}); "
          f"{results['model']} {results['dtype']}, {results['window']}, {results['tokens_per_pass']} tokens/pass, "
          f"{results['flop_per_step'] / 1e12:.4g} TFLOP per 3-pass step; weights {results['weights_gib']} GiB")
    unit, size = ("MiB", 2 ** 20) if results["mode"] == "cpu-reduced" else ("GiB", GIB)
    print(f"{'setting':<10} {'s/step':>8} {'peak ' + unit:>9} {'computed':>9} {'TFLOP/s':>8} {'of peak':>8}  attention op")
    for label, r in results["settings"].items():
        if "seconds_per_step" not in r:
            print(f"{label:<10} {r['status']}")
            continue
        frac = f"{100 * r['fraction_of_peak']:.0f}%" if "fraction_of_peak" in r else "-"
        print(f"{label:<10} {r['seconds_per_step']:>8.3f} {r['peak_bytes'] / size:>9.3f} "
              f"{r['computed_peak_bytes'] / size:>9.3f} "
              f"{r['tflops']:>8.2f} {frac:>8}  {','.join(r['attention_ops'])}")
    att = results.get("attention", {})
    print("attention backends at this shape (s per call): "
          + ", ".join(f"{k}={v}" for k, v in att.items() if k != "default_op")
          + f"; default dispatches {att.get('default_op')}")
    for key in ("demo", "cuda_tests"):
        r = results.get(key, {})
        print(f"{key}: {r.get('status')} {r.get('seconds', '')} {' | '.join(r.get('tail', []))}")
    print(f"total {results['seconds']} s of a {results['budget_s']:.0f} s budget")


if __name__ == "__main__":
    sys.exit(main())
