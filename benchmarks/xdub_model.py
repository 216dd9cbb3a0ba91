"""X-Dub's DiT at full size: parameters, FLOPs per sampling step, bf16 weight memory, and peak memory with and
without block swap. Prints numbers, asserts nothing; needs no weights and no GPU.

    python benchmarks/xdub_model.py [--frames 77] [--size 512] [--resident 0 4 8]

* Parameters and bf16 weight memory: the full-size model built on the ``meta`` device (no memory).
* FLOPs per step (``torch.utils.flop_counter``: matmuls, convolutions and attention; element-wise ops are
  not counted): the full-width model on ``meta`` with scaled inputs of 1, 2 and 3 latent frames. Linear
  layers cost ∝ tokens ∝ F and self-attention ∝ tokens² ∝ F², plus a constant (the 512 text tokens'
  embedding), so FLOPs(F) = a + b·F + c·F² exactly; the three counts give a, b, c and the extrapolation to
  the clip's F latent frames, which is then checked against a direct count at F (also on meta). One sampling
  step is one forward at batch 3: X-Dub's three guidance passes (nothing / reference / reference + audio).
* Peak activation memory: every tensor created during a forward (no_grad) is tracked through a
  TorchDispatchMode and its storage counted while alive, so the peak is the most bytes live at once beyond
  the weights. Attention is counted as a fused kernel (output + log-sum-exp, as flash attention on CUDA and
  PyTorch's CPU flash kernel): on ``meta`` PyTorch would otherwise decompose it into the L×L matrix. Measured
  on a scaled model on the CPU (real tensors), repeated on meta to show the accounting matches, then
  computed on meta for the full size. With block swap, the device holds the non-block weights, the resident
  blocks and at most two swapped blocks at once (the one computing and the prefetched next; on the CPU
  there is no prefetch, so the scaled measurement shows one).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import weakref

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from omnisync_core.model.config import preset
from omnisync_core.model.xdub_dit import XDubDiT
from omnisync_core.model.offload import enable_block_swap

VAE_TEMPORAL, VAE_SPATIAL = 4, 16   # Wan 2.2 VAE: 4 video frames (after the first) and 16×16 pixels per latent
AUDIO_WINDOW = 8                    # audio tokens per latent frame: 2 features per video frame (50/s at 25 fps) × 4
TEXT_TOKENS = 512                   # umT5, zero-padded
CFG_PASSES = 3                      # nothing / reference / reference + audio, one batch
GIB = 2 ** 30


def latent_frames(video_frames: int) -> int:
    if (video_frames - 1) % VAE_TEMPORAL:
        raise SystemExit(f"--frames must be 1 + {VAE_TEMPORAL}k for the Wan 2.2 VAE, got {video_frames}")
    return (video_frames - 1) // VAE_TEMPORAL + 1


def inputs(cfg, B: int, Fl: int, h: int, w: int, device, dtype=torch.float32, seed: int = 0):
    """Noisy latents, reference, timesteps, raw audio windows and text features of the right shapes."""
    make = (lambda *s: torch.empty(*s, device=device, dtype=dtype)) if str(device) == "meta" else \
        (lambda *s: torch.randn(*s, generator=torch.Generator().manual_seed(seed)).to(device, dtype))
    x = make(B, cfg.latent_channels, Fl, h, w)
    kw = dict(source=make(B, cfg.latent_channels, Fl, h, w), audio=make(B, Fl, AUDIO_WINDOW, cfg.audio_dim),
              text=make(B, TEXT_TOKENS, cfg.text_dim), motion_frames=min(2, Fl - 1))
    return x, torch.full((B,), 700.0), kw


# -- FLOPs -----------------------------------------------------------------------------------------

def count_flops(model, cfg, B, Fl, h, w) -> int:
    x, t, kw = inputs(cfg, B, Fl, h, w, "meta", torch.bfloat16)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, t, **kw)
    return counter.get_total_flops()


# -- memory ----------------------------------------------------------------------------------------

def _storage_key(t: torch.Tensor):
    return t.untyped_storage()._cdata


class LiveBytes(TorchDispatchMode):
    """Peak bytes of the storages created while active (those of ``existing`` tensors are not counted)."""

    def __init__(self, existing=()):
        super().__init__()
        self.skip = {_storage_key(t) for t in existing}
        self.refs = {}      # storage key -> live tensors referring to it
        self.live = self.peak = 0
        self.seen = set()   # ids of the live tracked tensors

    def _release(self, tensor_id, key, nbytes):
        self.seen.discard(tensor_id)
        self.refs[key] -= 1
        if self.refs[key] == 0:
            del self.refs[key]
            self.live -= nbytes

    def _track(self, t: torch.Tensor):
        if id(t) in self.seen:
            return
        key = _storage_key(t)
        if key in self.skip:
            return
        self.seen.add(id(t))
        nbytes = t.untyped_storage().nbytes()
        if key not in self.refs:
            self.refs[key] = 0
            self.live += nbytes
            self.peak = max(self.peak, self.live)
        self.refs[key] += 1
        weakref.finalize(t, self._release, id(t), key, nbytes)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out


@contextlib.contextmanager
def fused_attention_on_meta():
    """On meta, count attention as the fused CPU flash kernel does (output + log-sum-exp), not as L×L."""
    sdpa = F.scaled_dot_product_attention

    def fused(q, k, v, *args, **kwargs):
        if q.device.type == "meta" and not args and not kwargs:
            return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v)[0]
        return sdpa(q, k, v, *args, **kwargs)
    F.scaled_dot_product_attention = fused
    try:
        yield
    finally:
        F.scaled_dot_product_attention = sdpa


def peak_activation_bytes(model, cfg, B, Fl, h, w, device, dtype) -> int:
    x, t, kw = inputs(cfg, B, Fl, h, w, device, dtype)
    existing = list(model.parameters()) + list(model.buffers()) + [x] + [v for v in kw.values() if torch.is_tensor(v)]
    with torch.no_grad(), fused_attention_on_meta(), LiveBytes(existing) as tracker:
        out = model(x, t, **kw)
        del out
    return tracker.peak


def tensor_bytes(tensors, bytes_per_value=None) -> int:
    return sum(t.numel() * (bytes_per_value or t.element_size()) for t in tensors)


# -- report ----------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=77, help="video frames per window (1 + 4k)")
    ap.add_argument("--size", type=int, default=512, help="face crop side in pixels (multiple of 32)")
    ap.add_argument("--resident", type=int, nargs="+", default=[0, 4, 8], help="block-swap resident blocks to show")
    args = ap.parse_args()
    cfg = preset("xdub-5b")
    Fl, h = latent_frames(args.frames), args.size // VAE_SPATIAL
    tokens = 2 * Fl * (h // 2) ** 2
    print(f"X-Dub DiT at {args.size}x{args.size} x {args.frames} frames: latents {cfg.latent_channels}x{Fl}x{h}x{h}, "
          f"{tokens} tokens per pass ([reference, target] x {Fl} frames x {(h // 2) ** 2}), batch {CFG_PASSES} per step")

    model = XDubDiT(cfg, device="meta", dtype=torch.bfloat16).eval()
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for b in model.buffers())
    block = tensor_bytes(model.blocks[0].parameters(), 2)
    non_block = tensor_bytes(model.parameters(), 2) - tensor_bytes(model.blocks.parameters(), 2) + tensor_bytes(model.buffers(), 2)
    weights = tensor_bytes(model.parameters(), 2) + tensor_bytes(model.buffers(), 2)
    print(f"parameters: {params:,} (+ {buffers:,} position-table buffer values)")
    print(f"bf16 weights: {weights / GIB:.2f} GiB ({weights / 1e9:.2f} GB); one block {block / GIB:.3f} GiB, "
          f"outside the blocks {non_block / GIB:.3f} GiB")

    # FLOPs: three scaled counts -> a + b·F + c·F², checked against the direct count
    counts = {f: count_flops(model, cfg, 1, f, h, h) for f in (1, 2, 3)}
    c2 = (counts[3] - 2 * counts[2] + counts[1]) / 2
    b1 = counts[2] - counts[1] - 3 * c2
    a0 = counts[1] - b1 - c2
    extrapolated = a0 + b1 * Fl + c2 * Fl ** 2
    direct = count_flops(model, cfg, 1, Fl, h, h)
    print(f"FLOPs per forward (batch 1), from 1/2/3-frame counts: {a0:.4g} + {b1:.4g}·F + {c2:.4g}·F² "
          f"-> {extrapolated / 1e12:.1f} TFLOP at F={Fl} (direct count on meta: {direct / 1e12:.1f} TFLOP)")
    print(f"FLOPs per sampling step ({CFG_PASSES} passes): {CFG_PASSES * direct / 1e12:.1f} TFLOP; "
          f"30 steps: {30 * CFG_PASSES * direct / 1e15:.2f} PFLOP per {args.frames}-frame window")

    # activation memory: scaled model measured on the CPU, the same accounting on meta, then full size on meta
    small = preset("tiny-xdub", dim=256, ffn_dim=1024, num_heads=2, num_layers=4, text_dim=64)
    torch.manual_seed(0)
    scaled = XDubDiT(small).eval()
    shape = dict(B=CFG_PASSES, Fl=5, h=8, w=8)
    cpu_peak = peak_activation_bytes(scaled, small, **shape, device="cpu", dtype=torch.float32)
    meta_peak = peak_activation_bytes(XDubDiT(small, device="meta").eval(), small, **shape, device="meta",
                                      dtype=torch.float32)
    scaled_block = tensor_bytes(scaled.blocks[0].parameters())
    swap = enable_block_swap(scaled, "cpu", resident_blocks=0)
    swap_peak = peak_activation_bytes(scaled, small, **shape, device="cpu", dtype=torch.float32)
    swap.remove()
    print(f"scaled model (dim 256, ffn 1024, 4 blocks, float32, batch {CFG_PASSES}, 5x8x8 latents): peak activations "
          f"{cpu_peak / 2 ** 20:.2f} MiB on the CPU, {meta_peak / 2 ** 20:.2f} MiB by the same count on meta; with "
          f"every block swapped {swap_peak / 2 ** 20:.2f} MiB = activations + one block copy "
          f"({scaled_block / 2 ** 20:.2f} MiB)")

    for B in (1, CFG_PASSES):
        act = peak_activation_bytes(model, cfg, B, Fl, h, h, "meta", torch.bfloat16)
        print(f"full size, batch {B}: peak activations {act / GIB:.2f} GiB (bf16 weights, float32 residual stream)")
    print(f"peak device memory per step (batch {CFG_PASSES}), weights + activations:")
    print(f"  no offload: {(weights + act) / GIB:.2f} GiB")
    for r in args.resident:
        on_device = non_block + r * block + min(2, cfg.num_layers - r) * block
        print(f"  block swap, {r} resident blocks: {(on_device + act) / GIB:.2f} GiB "
              f"(weights on device {on_device / GIB:.2f} GiB; {cfg.num_layers - r} blocks x {block / GIB:.3f} GiB "
              f"copied per pass = {(cfg.num_layers - r) * block / GIB:.1f} GiB over PCIe)")


if __name__ == "__main__":
    main()
