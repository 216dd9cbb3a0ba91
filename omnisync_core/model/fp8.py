"""fp8 weights for a DiT's linear layers, computing in bf16, and ComfyUI's "scaled fp8" file convention.

A float8_e4m3fn weight takes 1 byte instead of bf16's 2; X-Dub's 30 blocks hold 99% of its 6.3 B parameters
in ``nn.Linear`` layers, so converting them halves the weights (12.6 GB → 6.4 GB). The matmuls still run in
the compute dtype: :class:`FP8Linear` casts its weight to bf16 for each call (the cast is per layer and
transient, so at most one layer's bf16 copy exists at a time).

e4m3fn keeps 3 mantissa bits and a range of ±448 with normal numbers down to 2⁻⁶; a plain cast of weights of
magnitude ~0.01 (a 3072-wide layer) leaves most of them subnormal or zero. "Scaled fp8" fixes that with one
float32 scale per tensor, ``weight ≈ fp8 · scale``, scale = max|w| / 448, which puts every tensor's largest
value at the top of the fp8 range. This is ComfyUI's file convention (``comfy/ops.py`` ``scaled_fp8_ops``,
``comfy/model_detection.py``), followed exactly so a file converted here loads in ComfyUI and one made by
ComfyUI's tools loads here:

* each converted linear layer ``<layer>`` stores ``<layer>.weight`` as float8_e4m3fn and ``<layer>.scale_weight``,
  a float32 scalar (shape ``()``); its bias keeps its dtype;
* a marker key ``scaled_fp8``: an empty tensor whose dtype is the fp8 format of the weights (ComfyUI reads
  a 2-element marker as "no fp8 matmul"; both are accepted here);
* everything else (convolutions, norms, modulation, embeddings and the head, here) is stored as it was.

Pure torch: the ComfyUI loader builds its own layers from these tensors, the CLI uses :class:`FP8Linear`.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import OmniSyncError

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8_DTYPE).max)  # 448
SCALED_FP8_KEY = "scaled_fp8"                  # ComfyUI's marker key (model_detection.model_config_from_unet)
SCALE_SUFFIX = ".scale_weight"                 # ComfyUI's per-layer scale key (ops.scaled_fp8_ops)
WEIGHT_DTYPES = ("default", "fp8_e4m3fn")      # the loader's weight_dtype choices


def quantize_fp8(weight: torch.Tensor, scaled: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
    """``weight`` (any float dtype) → (fp8 weight of the same shape, float32 scalar scale) with
    ``weight ≈ fp8.float() · scale``. scaled: scale = max|w| / 448 (ComfyUI's per-tensor scaled fp8; an
    all-zero tensor gets scale 1); False: scale 1, a plain cast clamped to ±448 (ComfyUI's weight_dtype fp8)."""
    w = weight.detach().float()
    scale = torch.ones((), dtype=torch.float32, device=w.device)
    if scaled:
        amax = w.abs().max() if w.numel() else scale.new_zeros(())
        scale = torch.where(amax > 0, amax / FP8_MAX, scale)
    # round to nearest even (torch's cast); clamping first keeps the largest values finite
    return (w / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE), scale


def dequantize_fp8(weight: torch.Tensor, scale: Optional[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """The inverse of :func:`quantize_fp8` in ``dtype``: ``weight · scale`` (the product taken in float32)."""
    w = weight.float()
    return (w if scale is None else w * scale.to(w.device, torch.float32)).to(dtype)


class FP8Linear(nn.Linear):
    """An ``nn.Linear`` whose weight is stored in fp8 with a per-tensor ``scale_weight`` and cast to
    ``compute_dtype`` (bf16 by default) for each call; the matmul runs in ``compute_dtype``, the output is
    returned in the input's dtype (the same, in a bf16 network).

    State dict: ``weight`` (fp8), ``bias`` (compute dtype or as loaded) and ``scale_weight`` (float32 scalar):
    ComfyUI's scaled-fp8 keys. Inference only (the fp8 weight has no gradient).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None,
                 compute_dtype: torch.dtype = torch.bfloat16):
        super().__init__(in_features, out_features, bias, device="meta")
        self.compute_dtype = compute_dtype
        self.weight = nn.Parameter(torch.zeros(out_features, in_features, dtype=FP8_DTYPE, device=device),
                                   requires_grad=False)
        if bias:
            self.bias = nn.Parameter(torch.zeros(out_features, dtype=compute_dtype, device=device), requires_grad=False)
        self.register_buffer("scale_weight", torch.ones((), dtype=torch.float32, device=device))

    @classmethod
    def from_linear(cls, linear: nn.Linear, scaled: bool = True,
                    compute_dtype: torch.dtype = torch.bfloat16) -> "FP8Linear":
        """An fp8 copy of ``linear`` (quantised with :func:`quantize_fp8`), on the same device."""
        w = linear.weight
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, device=w.device,
                    compute_dtype=compute_dtype)
        w8, scale = quantize_fp8(w, scaled)
        layer.weight.data, layer.scale_weight.data = w8, scale
        if linear.bias is not None:
            layer.bias.data = linear.bias.detach().to(compute_dtype)
        return layer

    def reset_parameters(self) -> None:  # weights come from a file or from_linear, never from an init
        pass

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dt = self.compute_dtype
        w = dequantize_fp8(self.weight, self.scale_weight, dt)  # (out, in) in the compute dtype, for this call only
        b = None if self.bias is None else self.bias.to(dt)
        return F.linear(x.to(dt), w, b).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, weight=float8_e4m3fn, compute_dtype={self.compute_dtype}"


def fp8_layer_names(model: nn.Module, prefix: str = "blocks.") -> List[str]:
    """Names of the ``nn.Linear`` layers that fp8 converts: those under ``prefix`` (a DiT's blocks: its
    attention and FFN matmuls). Layers outside (embeddings, the head, the audio projection) stay in the compute
    dtype: they are small, and the network reads some of their weights directly in float32."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear) and name.startswith(prefix)]


def convert_to_fp8(model: nn.Module, names: Optional[Iterable[str]] = None, scaled: bool = True,
                   compute_dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """Replace the linear layers ``names`` (default :func:`fp8_layer_names`) of ``model`` by
    :class:`FP8Linear` copies, in place; returns the model. Works on a skeleton too (``meta`` device)."""
    for name in (fp8_layer_names(model) if names is None else names):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        linear = getattr(parent, child)
        if isinstance(linear, FP8Linear):
            continue
        if linear.weight.device.type == "meta":
            layer = FP8Linear(linear.in_features, linear.out_features, linear.bias is not None, device="meta",
                              compute_dtype=compute_dtype)
        else:
            layer = FP8Linear.from_linear(linear, scaled, compute_dtype)
        setattr(parent, child, layer)
    return model


def to_scaled_fp8_state_dict(state: Mapping[str, torch.Tensor], names: Iterable[str],
                             scaled: bool = True) -> Dict[str, torch.Tensor]:
    """A state dict in ComfyUI's scaled-fp8 convention: ``<name>.weight`` fp8 + ``<name>.scale_weight`` for
    each layer in ``names``, the marker ``scaled_fp8``, every other tensor as given."""
    out = dict(state)
    for name in names:
        key = f"{name}.weight"
        if key not in out:
            raise OmniSyncError(f"no weight {key!r} to convert to fp8; the layer names do not match the weights.")
        out[key], out[name + SCALE_SUFFIX] = quantize_fp8(out[key], scaled)
    out[SCALED_FP8_KEY] = torch.empty(0, dtype=FP8_DTYPE)
    return out


def split_scaled_fp8(keys: Iterable[str]) -> Tuple[bool, List[str], List[str]]:
    """(has the marker, the layers that carry a ``scale_weight``, the model's own keys) of a file's keys."""
    keys = list(keys)
    scaled_layers = [k[:-len(SCALE_SUFFIX)] for k in keys if k.endswith(SCALE_SUFFIX)]
    own = [k for k in keys if k != SCALED_FP8_KEY and not k.endswith(SCALE_SUFFIX) and not k.endswith(".scale_input")]
    return SCALED_FP8_KEY in keys, scaled_layers, own


def weights_nbytes(model: nn.Module) -> int:
    """Bytes of the parameters and buffers of ``model`` (fp8 counts 1 byte a value)."""
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def check_weight_dtype(weight_dtype) -> Optional[torch.dtype]:
    """"default" / None → None (the compute dtype); "fp8_e4m3fn" / torch.float8_e4m3fn → fp8; anything else
    is refused with the choices."""
    if weight_dtype is None or weight_dtype == "default":
        return None
    if weight_dtype in ("fp8_e4m3fn", FP8_DTYPE):
        return FP8_DTYPE
    raise OmniSyncError(f"weight_dtype {weight_dtype!r} is not supported; choose one of {WEIGHT_DTYPES} "
                        "(fp8_e4m3fn: the blocks' linear weights in 1 byte, scaled per tensor, computed in bf16).")
