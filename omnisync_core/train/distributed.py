"""Multi-process training through torchrun: process group, model wrapping, full state dicts.

One node, 8 GPUs:

    torchrun --standalone --nproc_per_node=8 -m omnisync_core train --config configs/wan21_1.3b_init.json

Two nodes (run on each, NODE_RANK = 0 and 1; MASTER_ADDR is node 0's address):

    torchrun --nnodes=2 --node_rank=$NODE_RANK --nproc_per_node=8 \
        --master_addr=$MASTER_ADDR --master_port=29500 -m omnisync_core train --config ...

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; :func:`init_distributed`
reads them (NCCL on CUDA, gloo on CPU). Without them training runs in one process. Every rank
draws its own data (seed + rank); only rank 0 writes logs and checkpoints.

``parallel="ddp"`` replicates the model; ``parallel="fsdp"`` shards parameters, gradients and
optimiser state per transformer block (FSDP2 ``fully_shard``, parameters resharded after forward:
the FULL_SHARD strategy). Checkpoints always hold full, unsharded tensors, gathered to rank 0.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Dict

import torch
import torch.distributed as dist
from torch import nn

from ..errors import OmniSyncError
from .config import TrainConfig


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistInfo:
    """Join the process group torchrun describes (or an existing one); one process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_available() and dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def wrap_model(model: nn.Module, config: TrainConfig, info: DistInfo) -> nn.Module:
    """DDP or FSDP around ``model`` (already on ``info.device``); the model itself in one process.

    FSDP shards in place: ``model`` keeps its class, names and ``forward``, but its parameters
    become DTensor shards, so build the optimiser and the EMA after wrapping.
    """
    if not info.enabled:
        return model
    if config.parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP
        return DDP(model, device_ids=[info.local_rank] if info.device.type == "cuda" else None)
    from torch.distributed.fsdp import fully_shard
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise OmniSyncError("FSDP wraps per transformer block, but the model has no .blocks; use parallel='ddp'.")
    for block in blocks:
        fully_shard(block, reshard_after_forward=True)
    fully_shard(model, reshard_after_forward=True)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside a DDP wrapper (FSDP2 wraps in place)."""
    from torch.nn.parallel import DistributedDataParallel as DDP
    return model.module if isinstance(model, DDP) else model


def is_fsdp(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule
    return isinstance(model, FSDPModule)


def grad_sync(model: nn.Module, enabled: bool):
    """Context for one micro-step: skip the gradient all-reduce except on the last micro-step."""
    if hasattr(model, "no_sync") and not enabled:
        return model.no_sync()
    if is_fsdp(model):
        model.set_requires_gradient_sync(enabled)
    return contextlib.nullcontext()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum over ranks (for logging); a copy, the input is untouched."""
    t = t.detach().clone()
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


# -- full (unsharded) state dicts; collective under FSDP: every rank calls, rank 0 gets the tensors --

def full_model_state(model: nn.Module) -> Dict[str, torch.Tensor]:
    if is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}


def load_full_model_state(model: nn.Module, state: Dict[str, torch.Tensor]) -> None:
    if is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
        set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))
    else:
        unwrap(model).load_state_dict(state)


def full_optimizer_state(model: nn.Module, opt: torch.optim.Optimizer) -> dict:
    """``optimizer.state_dict()`` layout (state keyed by parameter index) with whole tensors."""
    if not is_fsdp(model):
        return opt.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict
    sd = get_optimizer_state_dict(model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not sd:                                   # ranks other than 0 get nothing with cpu_offload
        return {"state": {}, "param_groups": []}
    names = [n for n, _ in model.named_parameters()]
    index = {n: i for i, n in enumerate(names)}
    return {"state": {index[n]: s for n, s in sd.get("state", {}).items()},
            "param_groups": [dict(g, params=[index[n] for n in g["params"]]) for g in sd["param_groups"]]}


def load_full_optimizer_state(model: nn.Module, opt: torch.optim.Optimizer, sd: dict) -> None:
    if not is_fsdp(model):
        opt.load_state_dict(sd)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
    names = [n for n, _ in model.named_parameters()]
    named = {"state": {names[i]: s for i, s in sd["state"].items()},
             "param_groups": [dict(g, params=[names[i] for i in g["params"]]) for g in sd["param_groups"]]}
    set_optimizer_state_dict(model, opt, named, options=StateDictOptions(full_state_dict=True))


def gather_generator_states(generator: torch.Generator, info: DistInfo) -> Dict[int, torch.Tensor]:
    """Every rank's data-generator state, on every rank (each rank resumes its own stream)."""
    state = generator.get_state()
    if not info.enabled:
        return {0: state}
    states = [None] * info.world_size
    dist.all_gather_object(states, state)
    return dict(enumerate(states))


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
