"""Sequence-parallel X-Dub DiT across the processes of ``torchrun``: Ulysses attention from xDiT's ``yunchang``.

One pass of X-Dub at 512² × 77 frames is 10,240 tokens ([reference, target] × 20 latent frames × 256), and
self-attention over them is a third of the step's FLOPs. With ``P`` processes (one GPU each, or CPU processes
over gloo) every process runs the whole network on its ``L/P`` consecutive tokens; the only exchange is inside
self-attention, where Ulysses (DeepSpeed-Ulysses, as packaged by xDiT's ``yunchang``) swaps the sequence split
for a head split with one all-to-all for q, k and v, lets each process attend over all tokens for ``n/P``
heads, and swaps back with one all-to-all; the tokens are gathered once after the last block. Why
Ulysses/yunchang: it is xDiT's engine for Wan-family DiTs, has no kernel of its own to build (we give it
PyTorch's attention, so the same code runs on CUDA with flash attention and on the CPU over gloo), its
all-to-all cost does not grow with P, and its only requirement, heads divisible by P (X-Dub: 24), holds for
P = 2, 4, 8. PyTorch's context parallelism is still experimental and CUDA-only; ring attention (also in
yunchang) needs its own kernels for the partial softmax.

Each process holds ``whole latent frames``: the 2F' frames (F' reference + F' target) are split evenly, so
each block's per-frame adaLN modulation, the reference/target split and the per-frame audio attention apply
to the local tokens unchanged (P must divide 2F' = 40 at 77 frames: P = 2, 4, 8 with 24 heads). Inference
only. Usage (every process runs the same code on the same inputs; the output is the same on all)::

    torch.distributed.init_process_group("nccl")      # torchrun sets RANK / WORLD_SIZE / MASTER_ADDR
    model = load_xdub_model(path, device=f"cuda:{local_rank}")
    sp = enable_sequence_parallel(model)
    with torch.no_grad():
        v = model(x, t, source=..., audio=..., text=..., motion_frames=2)
    sp.remove()
"""

from __future__ import annotations

from typing import List, Optional

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from ..errors import OmniSyncError

INSTALL_HINT = "pip install 'comfyui-omnisync[parallel]' (or: pip install yunchang)"


def _attention_kernel(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, *args, **kwargs):
    """The local kernel Ulysses runs after its all-to-all: PyTorch's scaled_dot_product_attention (flash /
    memory-efficient / cuDNN on CUDA, its own fused kernel on the CPU) on (B, L, n/P, d) q, k, v."""
    if dropout_p or causal:
        raise OmniSyncError("the X-Dub DiT's self-attention has no dropout and no causal mask.")
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                         scale=softmax_scale)
    return out.transpose(1, 2)  # (B, L, n/P, d)


class UlyssesSelfAttention:
    """The attention kernel of one block's self-attention (the DiT's ``SelfAttention.attention``): q, k, v
    (B, L/P, n, d) of this process's tokens → (B, L/P, n, d), through yunchang's ``UlyssesAttention``."""

    def __init__(self, group=None):
        try:
            from yunchang import UlyssesAttention
            from yunchang.kernels import AttnType
        except ImportError:
            raise OmniSyncError(f"sequence-parallel attention needs xDiT's yunchang: {INSTALL_HINT}.") from None
        # AttnType.TORCH_MATH needs no flash-attn package; its kernel is then replaced by ours (yunchang picks
        # the kernel in __init__ and calls self.attn_fn(q, k, v, dropout_p=, softmax_scale=, causal=, ...))
        self.ulysses = UlyssesAttention(group, attn_type=AttnType.TORCH_MATH)
        self.ulysses.attn_fn = _attention_kernel

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.ulysses(q.contiguous(), k.contiguous(), v.contiguous(), softmax_scale=q.shape[-1] ** -0.5)


class SequenceParallel:
    """Hooks that run every block of an X-Dub DiT on this process's share of the tokens. Build it with
    :func:`enable_sequence_parallel`; ``remove()`` restores the single-process model."""

    def __init__(self, model: nn.Module, group=None):
        if not dist.is_available() or not dist.is_initialized():
            raise OmniSyncError("sequence parallelism needs torch.distributed: start the script with torchrun and "
                                "call torch.distributed.init_process_group first.")
        cfg = getattr(model, "config", None)
        blocks = getattr(model, "blocks", None)
        if getattr(cfg, "source_layout", None) != "sequence" or not isinstance(blocks, nn.ModuleList):
            raise OmniSyncError(f"sequence parallelism is for the X-Dub DiT (sequence layout); {type(model).__name__} "
                                "is not one: run it on one process.")
        self.group = group
        self.world = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        if cfg.num_heads % self.world:
            raise OmniSyncError(f"Ulysses splits the {cfg.num_heads} heads over the {self.world} processes; use a "
                                f"number of processes that divides {cfg.num_heads}.")
        self._blocks = list(blocks)
        self._handles: List = []
        kernel = UlyssesSelfAttention(group)
        for i, block in enumerate(self._blocks):
            block.self_attn.attention = kernel
            self._handles.append(block.register_forward_pre_hook(self._shard(first=i == 0)))
        self._handles.append(self._blocks[-1].register_forward_hook(self._gather))

    def _shard(self, first: bool):
        def hook(module, args):
            if len(args) != 6:
                raise OmniSyncError("sequence parallelism expects the DiT block's call (x, e, rope, text, audio, "
                                    "target_from); this model calls its blocks differently.")
            if first and torch.is_grad_enabled():
                raise OmniSyncError("sequence parallelism is for inference: wrap the call in torch.no_grad().")
            x, e, rope, text, audio, target_from = args
            cos, sin = rope
            L, G = cos.shape[0], e.shape[1]  # all tokens; groups = latent frames ([reference, target]), S tokens each
            if G % self.world:
                raise OmniSyncError(f"sequence parallelism gives each of the {self.world} processes whole latent "
                                    f"frames, but there are {G} ([reference, target]); use a number of processes "
                                    f"that divides {G}.")
            S = L // G
            g0, g1 = self.rank * G // self.world, (self.rank + 1) * G // self.world
            a, b = g0 * S, g1 * S  # this process's tokens
            if first:
                x = x[:, a:b]
            local_target = min(max(target_from - a, 0), b - a)
            if local_target == b - a:  # reference tokens only: text and audio act on the target tokens
                text = audio = None
            elif audio is not None:  # audio windows of the target frames held here
                t0 = target_from // S
                audio = audio[:, max(g0 - t0, 0):g1 - t0]
            return x, e[:, g0:g1], (cos[a:b], sin[a:b]), text, audio, local_target
        return hook

    def _gather(self, module, args, out):
        parts = [torch.empty_like(out) for _ in range(self.world)]
        dist.all_gather(parts, out.contiguous(), group=self.group)
        return torch.cat(parts, dim=1)  # (B, L, D)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        for block in self._blocks:
            if "attention" in vars(block.self_attn):
                del block.self_attn.attention  # back to the class's kernel


def enable_sequence_parallel(model: nn.Module, group: Optional[object] = None) -> SequenceParallel:
    """Run ``model`` (an X-Dub DiT, the same weights on every process) sequence-parallel over the processes of
    ``group`` (default: all of torch.distributed's). Returns the handle; ``.remove()`` undoes it."""
    return SequenceParallel(model, group)
