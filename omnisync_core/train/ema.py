"""Exponential moving average of the model weights, kept in fp32.

After every optimiser step: ``shadow ← decay·shadow + (1 − decay)·param``. The shadow is what we
export: it samples better than the raw weights.
"""

from __future__ import annotations

from typing import Dict

import torch
from torch import nn


def _full(t: torch.Tensor) -> torch.Tensor:
    """A whole tensor from an FSDP2 shard (DTensor; collective, every rank must call); else itself."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow: Dict[str, torch.Tensor] = {
            name: p.detach().float().clone() for name, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for name, p in model.named_parameters():
            self.shadow[name].lerp_(p.detach().float(), 1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the shadow weights into ``model`` (same parameter names, any dtype)."""
        for name, p in model.named_parameters():
            p.copy_(self.shadow[name].to(p.dtype))

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """Whole fp32 tensors by parameter name (gathers FSDP shards: call on every rank)."""
        return {name: _full(t) for name, t in self.shadow.items()}

    @torch.no_grad()
    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        missing = sorted(set(self.shadow) - set(state))
        if missing:
            raise KeyError(f"EMA state lacks {missing[:5]}")
        for name, t in self.shadow.items():
            src = state[name].to(device=t.device, dtype=torch.float32)
            if hasattr(t, "full_tensor"):  # FSDP2 shard: take our slice of the whole tensor
                from torch.distributed.tensor import distribute_tensor
                src = distribute_tensor(src, t.device_mesh, t.placements)
            t.copy_(src)
