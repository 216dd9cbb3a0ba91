"""X-Dub's DiT under ComfyUI's model management: built with ComfyUI's layer classes (``comfy.ops``) and handed to a
``ModelPatcher``, as core ComfyUI builds Wan (``comfy.model_base.WanModel``: ``operations=comfy.ops.pick_operations(
weight dtype, compute dtype)``).

What that gives: ComfyUI decides where the weights live. ``load_models_gpu([patcher])`` (the X-Dub Sampler calls it)
frees GPU memory by offloading other models of the graph (a Wan 2.2 T2V model before it), and when X-Dub does not fit
it loads what fits and leaves the other layers in CPU memory, each cast to the GPU for its call (partial, "low-VRAM"
loading). fp8 weights are ComfyUI's scaled-fp8 layers: stored in 1 byte with a scale per tensor, cast to the
compute dtype per call.
"""

from __future__ import annotations

import torch

from omnisync_core.model.fp8 import FP8_DTYPE


def xdub_operations(fp8: bool, compute_dtype: torch.dtype, load_device):
    """ComfyUI's layer classes for X-Dub: with ``fp8``, its scaled-fp8 layers (weight · scale_weight, cast to the
    compute dtype per call; ``pick_operations(..., scaled_fp8=)`` as for a scaled-fp8 Wan file); else the plain ones
    (weights in the compute dtype, cast per call only where partial loading leaves them in CPU memory)."""
    import comfy.ops

    if fp8:
        return comfy.ops.pick_operations(FP8_DTYPE, compute_dtype, load_device=load_device, scaled_fp8=FP8_DTYPE)
    return comfy.ops.pick_operations(compute_dtype, compute_dtype, load_device=load_device)


def load_xdub_patcher(path: str, compute_dtype: torch.dtype, weight_dtype: str = "default", progress=None,
                      cancel=None):
    """X-Dub_model.safetensors → a ``comfy.model_patcher.ModelPatcher`` over :class:`XDubDiT` built with
    ``comfy.ops`` layers, its weights on ComfyUI's offload device until model management loads them.

    weight_dtype "fp8_e4m3fn": the blocks' linear weights quantised to fp8 with one scale per tensor while loading
    (``omnisync_core.model.fp8``); a scaled-fp8 file (``python -m omnisync_core convert-fp8`` or ComfyUI's
    convention) stays fp8 whatever weight_dtype says, as core Load Diffusion Model treats such files."""
    import comfy.model_management as mm
    import comfy.model_patcher

    from omnisync_core.model.xdub_weights import is_scaled_fp8, load_xdub_model

    device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
    fp8 = weight_dtype != "default" or is_scaled_fp8(path)
    model = load_xdub_model(path, device=offload_device, dtype=compute_dtype, weight_dtype=weight_dtype,
                            operations=xdub_operations(fp8, compute_dtype, device), progress=progress, cancel=cancel)
    return comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=offload_device)
