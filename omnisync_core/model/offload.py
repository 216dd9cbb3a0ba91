"""Block swap: run a transformer whose weights do not fit on the accelerator.

For any module with a ``.blocks`` ``nn.ModuleList`` (OmniSyncDiT, X-Dub) or a ``swap_blocks()`` method
listing its blocks in the order they run (the OmniSync U-Net: down, middle, up): the first
``resident_blocks`` blocks and everything outside them (embeddings, head) live on the compute device; the weights of
the other blocks stay in CPU memory (pinned, when the device is CUDA) and each such block gets a
device copy of its weights just before its forward, dropped right after. On CUDA the copy of the next
swapped block starts on a side stream while the current one computes, so at most two swapped blocks
are on the device at any time. Device memory for weights is then about::

    non-block weights + resident_blocks · block + 2 · block

Inference only: the device copies are not kept for a backward pass, so the hooks refuse to run with
gradients enabled (wrap the call in ``torch.no_grad()``). Usage::

    model = load_xdub_model(path, device="cpu")          # all weights in CPU memory
    swap = enable_block_swap(model, "cuda", resident_blocks=4)
    with torch.no_grad():
        v = model(x, t, ...)                               # inputs on "cuda"
    swap.remove()                                          # hooks off; swapped blocks stay in CPU memory
"""

from __future__ import annotations

import contextlib
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from ..errors import OmniSyncError


OFFLOAD_MODES = ("none", "blocks")  # none: every weight on the device; blocks: block swap (weights in CPU memory)


def swappable_blocks(model: nn.Module) -> List[nn.Module]:
    """The blocks block swap moves, in the order a forward runs them: ``model.blocks`` (a transformer) or
    ``model.swap_blocks()``; a model with neither is refused with one line."""
    blocks = getattr(model, "blocks", None)
    if isinstance(blocks, nn.ModuleList):
        return list(blocks)
    if callable(getattr(model, "swap_blocks", None)):
        return list(model.swap_blocks())
    raise OmniSyncError(f"block swap needs a model made of blocks (.blocks or swap_blocks()); {type(model).__name__} "
                        "has none: load it with offload none.")


def _tensors(module: nn.Module) -> List[Tuple[nn.Module, str, torch.Tensor]]:
    """(owner, attribute name, tensor) of every parameter and buffer under ``module``."""
    out = []
    for owner in module.modules():
        for name, p in owner.named_parameters(recurse=False):
            out.append((owner, name, p))
        for name, b in owner.named_buffers(recurse=False):
            if b is not None:
                out.append((owner, name, b))
    return out


class BlockSwap:
    """Hooks that give the swapped blocks of ``model`` a device copy of their weights for each forward.

    Build it with :func:`enable_block_swap`. ``swapped`` lists the indices of the swapped blocks.
    """

    def __init__(self, model: nn.Module, device, resident_blocks: int = 0, pin_memory: Optional[bool] = None):
        blocks = swappable_blocks(model)
        if not isinstance(resident_blocks, int) or not 0 <= resident_blocks <= len(blocks):
            raise OmniSyncError(f"resident_blocks must be an int in [0, {len(blocks)}] (blocks that stay on the "
                                f"device), got {resident_blocks!r}.")
        self.device = torch.device(device)
        self.swapped = list(range(resident_blocks, len(blocks)))
        self._blocks = blocks
        pin = self.device.type == "cuda" if pin_memory is None else pin_memory
        self._copy_stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None

        # weights of swapped blocks: one CPU (pinned) tensor each, kept for the whole life of the swap
        self._cpu: Dict[int, List[Tuple[nn.Module, str, torch.Tensor]]] = {}
        for i in self.swapped:
            entries = []
            for owner, name, t in _tensors(blocks[i]):
                cpu = t.detach().to("cpu")
                entries.append((owner, name, cpu.pin_memory() if pin else cpu))
            self._cpu[i] = entries
            for owner, name, cpu in entries:
                self._assign(owner, name, cpu)
        # everything else moves to the device once
        in_swapped = {id(m) for i in self.swapped for m in blocks[i].modules()}
        for owner in model.modules():
            if id(owner) not in in_swapped:
                for name, t in list(owner.named_parameters(recurse=False)) + list(owner.named_buffers(recurse=False)):
                    if t is not None:
                        self._assign(owner, name, t.detach().to(self.device))

        self._on_device: Dict[int, Tuple[List[torch.Tensor], Optional[torch.cuda.Event]]] = {}
        self._handles = []
        for i in self.swapped:
            self._handles.append(blocks[i].register_forward_pre_hook(self._make_pre_hook(i)))
            self._handles.append(blocks[i].register_forward_hook(self._make_post_hook(i)))

    @staticmethod
    def _assign(owner: nn.Module, name: str, tensor: torch.Tensor) -> None:
        current = getattr(owner, name)
        if isinstance(current, nn.Parameter):
            current.data = tensor
        else:
            owner._buffers[name] = tensor

    def _fetch(self, i: int) -> None:
        """Start copying block i's weights to the device (on the side stream on CUDA)."""
        if i in self._on_device:
            return
        stream = self._copy_stream
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            # copy=True: a fresh device tensor even when the "device" is the CPU (tests swap on CPU)
            copies = [cpu.to(self.device, non_blocking=stream is not None, copy=True) for _, _, cpu in self._cpu[i]]
            event = None
            if stream is not None:
                event = torch.cuda.Event()
                event.record(stream)
        self._on_device[i] = (copies, event)

    def _make_pre_hook(self, i: int):
        def pre_hook(module, args):
            if torch.is_grad_enabled():
                raise OmniSyncError("block swap is for inference: call the model under torch.no_grad() "
                                    "(or disable the swap to train).")
            self._fetch(i)
            copies, event = self._on_device[i]
            if event is not None:
                compute = torch.cuda.current_stream(self.device)
                compute.wait_event(event)
                for t in copies:
                    t.record_stream(compute)  # allocated on the copy stream, used on this one
            for (owner, name, _), t in zip(self._cpu[i], copies):
                self._assign(owner, name, t)
            later = [j for j in self.swapped if j > i]
            if later and self._copy_stream is not None:
                self._fetch(later[0])  # overlap the next copy with this block's compute
        return pre_hook

    def _make_post_hook(self, i: int):
        def post_hook(module, args, output):
            for owner, name, cpu in self._cpu[i]:
                self._assign(owner, name, cpu)
            self._on_device.pop(i, None)
            return output
        return post_hook

    def remove(self) -> None:
        """Take the hooks off; swapped blocks keep their weights in CPU memory."""
        for h in self._handles:
            h.remove()
        self._handles = []
        for i in list(self._on_device):
            for owner, name, cpu in self._cpu[i]:
                self._assign(owner, name, cpu)
        self._on_device.clear()


def enable_block_swap(model: nn.Module, device, resident_blocks: int = 0,
                      pin_memory: Optional[bool] = None) -> BlockSwap:
    """Move ``model`` to ``device`` except blocks ``resident_blocks:``, which are swapped in per forward.

    resident_blocks: how many of the first blocks stay on the device (0 = swap every block,
        ``len(swappable_blocks(model))`` = nothing swapped). More resident blocks: fewer copies per step, more memory.
    pin_memory: page-lock the CPU weights for faster, asynchronous copies (default: when ``device`` is CUDA).
    Returns the :class:`BlockSwap`; its ``remove()`` takes the hooks off.
    """
    return BlockSwap(model, device, resident_blocks, pin_memory)


def check_offload(offload: str, resident_blocks: int = 0) -> None:
    """The offload choice, checked before any weights are read (callers load to the CPU for "blocks")."""
    if offload not in OFFLOAD_MODES:
        raise OmniSyncError(f"offload must be one of {', '.join(OFFLOAD_MODES)}, got {offload!r}.")
    if isinstance(resident_blocks, bool) or not isinstance(resident_blocks, int) or resident_blocks < 0:
        raise OmniSyncError(f"resident_blocks must be a whole number >= 0, got {resident_blocks!r}.")


def place_model(model: nn.Module, device, offload: str = "none", resident_blocks: int = 0) -> Optional[BlockSwap]:
    """Put a model loaded in CPU memory where it computes: ``offload`` "none" moves every weight to ``device``;
    "blocks" keeps the blocks after the first ``resident_blocks`` in CPU memory (:func:`enable_block_swap`;
    more than the model has = all resident). Returns the swap (None with "none"). One rule for the CLI, the
    Python API and the nodes."""
    check_offload(offload, resident_blocks)
    if offload == "none":
        model.to(device)
        return None
    n = len(swappable_blocks(model))
    return enable_block_swap(model, device, resident_blocks=min(resident_blocks, n))
