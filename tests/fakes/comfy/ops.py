"""Fake of ``comfy.ops`` (ComfyUI 0.3.64): the layer classes that cast their weights per call.

Only the surface the loaders use (X-Dub's DiT, OmniSync's DiT and U-Net), with the real semantics: ``disable_weight_init`` layers compute as
``torch.nn`` unless ``comfy_cast_weights`` is set (ComfyUI's partial loading sets it on the layers it leaves in
CPU memory), then they cast weight and bias to the input's dtype and device for the call; ``manual_cast`` layers
always cast; ``scaled_fp8_ops`` multiply by a per-layer ``scale_weight``; ``pick_operations`` picks as the
real one does on a device without fp8 compute.
"""

import torch


def cast_bias_weight(s, input=None, dtype=None, device=None, bias_dtype=None):
    if input is not None:
        dtype = input.dtype if dtype is None else dtype
        bias_dtype = dtype if bias_dtype is None else bias_dtype
        device = input.device if device is None else device
    bias = None if s.bias is None else s.bias.to(device=device, dtype=bias_dtype)
    return s.weight.to(device=device, dtype=dtype), bias


class CastWeightBiasOp:
    comfy_cast_weights = False
    weight_function = []
    bias_function = []


class _CastPerCall(CastWeightBiasOp):
    """What every layer of ComfyUI's ``disable_weight_init`` repeats: no init of its own, and the torch.nn forward
    unless the weights are cast per call. Placed before the torch.nn class, so ``super()`` is that class."""

    def reset_parameters(self):
        return None

    def forward(self, *args, **kwargs):
        if self.comfy_cast_weights or len(self.weight_function) > 0 or len(self.bias_function) > 0:
            return self.forward_comfy_cast_weights(*args, **kwargs)
        return super().forward(*args, **kwargs)


class disable_weight_init:
    class Linear(_CastPerCall, torch.nn.Linear):
        def forward_comfy_cast_weights(self, input):
            weight, bias = cast_bias_weight(self, input)
            return torch.nn.functional.linear(input, weight, bias)

    class Conv1d(_CastPerCall, torch.nn.Conv1d):
        def forward_comfy_cast_weights(self, input):
            weight, bias = cast_bias_weight(self, input)
            return self._conv_forward(input, weight, bias)

    class Conv2d(_CastPerCall, torch.nn.Conv2d):
        def forward_comfy_cast_weights(self, input):
            weight, bias = cast_bias_weight(self, input)
            return self._conv_forward(input, weight, bias)

    class Conv3d(_CastPerCall, torch.nn.Conv3d):
        def forward_comfy_cast_weights(self, input):
            weight, bias = cast_bias_weight(self, input)
            return self._conv_forward(input, weight, bias)

    class GroupNorm(_CastPerCall, torch.nn.GroupNorm):
        def forward_comfy_cast_weights(self, input):
            weight, bias = cast_bias_weight(self, input)
            return torch.nn.functional.group_norm(input, self.num_groups, weight, bias, self.eps)

    class LayerNorm(_CastPerCall, torch.nn.LayerNorm):
        def forward_comfy_cast_weights(self, input):
            weight, bias = cast_bias_weight(self, input) if self.weight is not None else (None, None)
            return torch.nn.functional.layer_norm(input, self.normalized_shape, weight, bias, self.eps)


class manual_cast(disable_weight_init):
    class Linear(disable_weight_init.Linear):
        comfy_cast_weights = True

    class Conv1d(disable_weight_init.Conv1d):
        comfy_cast_weights = True

    class Conv2d(disable_weight_init.Conv2d):
        comfy_cast_weights = True

    class Conv3d(disable_weight_init.Conv3d):
        comfy_cast_weights = True

    class GroupNorm(disable_weight_init.GroupNorm):
        comfy_cast_weights = True

    class LayerNorm(disable_weight_init.LayerNorm):
        comfy_cast_weights = True


def scaled_fp8_ops(fp8_matrix_mult=False, scale_input=False, override_dtype=None):
    """ComfyUI's scaled-fp8 layers (no fp8 matmul, no input scale: a device without fp8 compute): each Linear has a
    float32 ``scale_weight`` (1 until loaded) and computes with weight · scale in the input's dtype."""

    class scaled_fp8_op(manual_cast):
        class Linear(manual_cast.Linear):
            def __init__(self, *args, **kwargs):
                if override_dtype is not None:
                    kwargs["dtype"] = override_dtype
                super().__init__(*args, **kwargs)

            def reset_parameters(self):
                if not hasattr(self, "scale_weight"):
                    self.scale_weight = torch.nn.parameter.Parameter(
                        data=torch.ones((), device=self.weight.device, dtype=torch.float32), requires_grad=False)
                self.scale_input = None
                return None

            def forward_comfy_cast_weights(self, input):
                weight, bias = cast_bias_weight(self, input)
                scale = self.scale_weight.to(device=weight.device, dtype=weight.dtype)
                if weight.numel() < input.numel():
                    return torch.nn.functional.linear(input, weight * scale, bias)
                return torch.nn.functional.linear(input * scale, weight, bias)

    return scaled_fp8_op


def pick_operations(weight_dtype, compute_dtype, load_device=None, disable_fast_fp8=False, fp8_optimizations=False,
                    scaled_fp8=None):
    if scaled_fp8 is not None:
        return scaled_fp8_ops(fp8_matrix_mult=False, scale_input=fp8_optimizations, override_dtype=scaled_fp8)
    if compute_dtype is None or weight_dtype == compute_dtype:
        return disable_weight_init
    return manual_cast
