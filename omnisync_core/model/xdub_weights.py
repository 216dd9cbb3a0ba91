"""Load X-Dub's published DiT (``X-Dub_model.safetensors``) as it is, with no key conversion.

The file holds the bare state dict of X-Dub's ``LipSyncModel`` (no metadata), whose parameter names
are those of :class:`~omnisync_core.model.xdub_dit.XDubDiT` (the ``"sequence"`` source layout). The
configuration is read off the keys and shapes; only the head widths are not stored in the file
(X-Dub: 24 heads of 128 in the DiT, 24 of 64 in the audio projection), so they are arguments.
"""

from __future__ import annotations

import math
import os
import re
from typing import Dict, Mapping, Optional, Sequence

import torch

from ..errors import OmniSyncError
from ..progress import CancelCheck, ProgressCallback, check_cancel, report
from .checkpoint import METADATA_KEY, WeightChecks, _key_list, _open
from .config import AudioProjConfig, DiTConfig
from .files import missing_message, named_source
from .fp8 import (
    FP8_DTYPE, SCALE_SUFFIX, SCALED_FP8_KEY, check_weight_dtype, convert_to_fp8, dequantize_fp8, fp8_layer_names,
    quantize_fp8, split_scaled_fp8,
)
from .xdub_dit import XDubDiT

XDUB_HEAD_DIM = 128        # Wan 2.2 TI2V-5B: 3072 = 24 heads × 128
XDUB_AUDIO_HEAD_DIM = 64   # X-Dub's AudioProjModule: 1536 = 24 heads × 64
XDUB_TEXT_LEN = 512        # umT5 tokens, zero-padded (the reference pipeline pads to 512)
XDUB_EPS = 1e-6            # every norm of the DiT (the audio projection's LayerNorms keep PyTorch's 1e-5)
XDUB_AUDIO_EPS = 1e-5
# keys every X-Dub DiT file has, checked first to tell a wrong file from a damaged one
CORE_KEYS = ("patch_embedding.weight", "text_embedding.0.weight", "time_embedding.0.weight",
             "blocks.0.self_attn.q.weight", "blocks.0.ffn.0.weight", "head.head.weight")
AUDIO_KEYS = ("audio_embedding.proj_in.weight", "audio_embedding.proj_out.weight")
EXPECTED = ("X-Dub's DiT (X-Dub_model.safetensors: keys patch_embedding.*, blocks.N.self_attn.*, "
            "blocks.N.audio_attn.*, audio_embedding.proj_in/layers.K/proj_out.*, head.*)")


def xdub_config_from_shapes(shapes: Mapping[str, Sequence[int]], head_dim: int = XDUB_HEAD_DIM,
                            audio_head_dim: int = XDUB_AUDIO_HEAD_DIM, name: str = "the weights") -> DiTConfig:
    """The :class:`DiTConfig` of an X-Dub state dict given as ``{key: shape}``.

    Reads width, blocks, FFN width, latent channels, patch, text and timestep widths, which blocks have
    audio, and the audio projection's sizes; then checks that the keys and shapes are exactly those of
    the model this config builds (nothing missing, nothing extra). Raises OmniSyncError naming ``name``.
    """
    shapes = {k: tuple(int(n) for n in v) for k, v in shapes.items()}
    missing = [k for k in CORE_KEYS if k not in shapes]
    if missing:
        raise OmniSyncError(f"{name} is not {EXPECTED}: it lacks {_key_list(missing)} (it has "
                            f"{_key_list(shapes)}); pass X-Dub_model.safetensors, not a VAE, text or audio encoder.")
    if not all(k in shapes for k in AUDIO_KEYS):
        raise OmniSyncError(f"{name} has a Wan DiT but no X-Dub audio projection (audio_embedding.proj_in/proj_out): "
                            "it is a plain Wan 2.x model, not X-Dub; pass X-Dub_model.safetensors.")
    dim, in_channels, *patch = shapes["patch_embedding.weight"]
    if len(patch) != 3:
        raise OmniSyncError(f"{name}: patch_embedding.weight has shape {shapes['patch_embedding.weight']}, not a "
                            "3D patch embedding (D, C, pt, ph, pw); this is not an X-Dub DiT.")
    if dim % head_dim:
        raise OmniSyncError(f"{name}: width {dim} is not a multiple of head_dim {head_dim}; pass the head width "
                            "the model was trained with (X-Dub: 128).")
    out_channels = shapes["head.head.weight"][0] // math.prod(patch)
    if out_channels != in_channels:
        raise OmniSyncError(f"{name}: the head gives {out_channels} channels but the patch embedding takes "
                            f"{in_channels}; X-Dub denoises the latents it reads (48 channels).")
    block_ids = {int(m.group(1)) for k in shapes if (m := re.match(r"blocks\.(\d+)\.", k))}
    num_layers = max(block_ids) + 1
    audio_layers = tuple(i for i in range(num_layers) if f"blocks.{i}.audio_attn.q.weight" in shapes)
    proj_dim, audio_dim_in = shapes["audio_embedding.proj_in.weight"]
    proj_layers = 1 + max([int(m.group(1)) for k in shapes
                           if (m := re.match(r"audio_embedding\.layers\.(\d+)\.", k))], default=-1)
    if proj_layers == 0 or proj_dim % audio_head_dim:
        raise OmniSyncError(f"{name}: the audio projection has {proj_layers} layers of width {proj_dim}; expected "
                            f"X-Dub's (4 layers of {24 * XDUB_AUDIO_HEAD_DIM}, heads of {audio_head_dim}).")
    ff_hidden = shapes.get("audio_embedding.layers.0.ff.net.2.weight", (proj_dim, proj_dim))[1]
    pe = shapes.get("audio_embedding.layers.0.pos_embed.pe", (1, AudioProjConfig.max_window, proj_dim))
    try:
        cfg = DiTConfig(
            dim=dim, ffn_dim=shapes["blocks.0.ffn.0.weight"][0], num_heads=dim // head_dim, num_layers=num_layers,
            latent_channels=in_channels, text_dim=shapes["text_embedding.0.weight"][1],
            freq_dim=shapes["time_embedding.0.weight"][1], patch_size=tuple(patch), audio_dim=audio_dim_in,
            text_len=XDUB_TEXT_LEN, eps=XDUB_EPS, source_layout="sequence",
            audio_layers=None if len(audio_layers) == num_layers else audio_layers,
            audio_proj=AudioProjConfig(input_dim=audio_dim_in, dim=proj_dim, num_layers=proj_layers,
                                       num_heads=proj_dim // audio_head_dim, ff_mult=max(1, ff_hidden // proj_dim),
                                       max_window=pe[1], eps=XDUB_AUDIO_EPS),
        )
    except OmniSyncError as exc:
        raise OmniSyncError(f"{name}: {exc}") from None

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in XDubDiT(cfg).state_dict().items()}
    missing, unexpected = set(expected) - set(shapes), set(shapes) - set(expected)
    if missing or unexpected:
        parts = ([f"lacks {_key_list(missing)}"] if missing else []) + \
                ([f"has unexpected {_key_list(unexpected)}"] if unexpected else [])
        raise OmniSyncError(f"{name} is not a complete {EXPECTED}: it {' and '.join(parts)}; the file is truncated, "
                            "edited or another model — re-download X-Dub_model.safetensors.")
    wrong = [f"{k} {shapes[k]} (expected {expected[k]})" for k in sorted(expected) if shapes[k] != expected[k]]
    if wrong:
        raise OmniSyncError(f"{name}: weights with unexpected shapes: {'; '.join(wrong[:3])}"
                            f"{f' (and {len(wrong) - 3} more)' if len(wrong) > 3 else ''}; re-download "
                            "X-Dub_model.safetensors.")
    return cfg


def load_xdub_model(path: str, device="cpu", dtype: Optional[torch.dtype] = torch.bfloat16,
                    head_dim: int = XDUB_HEAD_DIM, audio_head_dim: int = XDUB_AUDIO_HEAD_DIM,
                    progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCheck] = None,
                    weight_dtype=None, operations=None) -> XDubDiT:
    """X-Dub's DiT from ``X-Dub_model.safetensors`` (safetensors only), in eval mode on ``device``.

    dtype: the weights' dtype (bf16 by default: 6.3 B parameters = 12.6 GB; None keeps the file's), and the
    compute dtype of fp8 layers (bf16 when None).
    weight_dtype: "default" / None: the file's format (a scaled-fp8 file, see :mod:`.fp8`, stays fp8);
    "fp8_e4m3fn": the blocks' linear weights in fp8 with one scale per tensor (6.4 GB), quantised while
    loading when the file is not fp8 already.
    For a card too small for that, load to ``device="cpu"`` and run it with
    :func:`~omnisync_core.model.offload.enable_block_swap`. ``progress(done, total, message)`` is
    called per block; ``cancel()`` is checked between tensors. Every error names the published file's source.
    ``operations``: the network's layer classes (:class:`~omnisync_core.model.dit.OmniSyncDiT`; ``torch.nn``
    when None); ComfyUI's loader passes ``comfy.ops`` ones.
    """
    want_fp8 = check_weight_dtype(weight_dtype) is not None
    with named_source("xdub_model"):
        return _load_xdub_model(path, device, dtype, head_dim, audio_head_dim, progress, cancel, want_fp8,
                                operations)


def _load_xdub_model(path, device, dtype, head_dim, audio_head_dim, progress, cancel, want_fp8,
                     operations) -> XDubDiT:
    if not os.path.isfile(path):
        raise OmniSyncError(missing_message("xdub_model", path))
    with _open(path) as f:
        if METADATA_KEY in (f.metadata() or {}):
            raise OmniSyncError(f"{path!r} is an OmniSync checkpoint, not X-Dub's DiT; load it with "
                                "omnisync_core.model.checkpoint.load_checkpoint.")
        marker, scaled_layers, own = split_scaled_fp8(f.keys())
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in own}
        cfg = xdub_config_from_shapes(shapes, head_dim, audio_head_dim, name=repr(path))
        compute = dtype or torch.bfloat16
        with torch.device("meta"):
            model = XDubDiT(cfg, operations=operations or torch.nn)
            if (want_fp8 or marker) and operations is None:  # given operations cast the fp8 weights themselves
                convert_to_fp8(model, compute_dtype=compute)
        fp8_layers = set(fp8_layer_names(model)) if want_fp8 or marker else set()
        scaled_layers = set(scaled_layers)
        state = {}
        done_blocks = -1
        checks = WeightChecks(path)  # NaN/inf, all-zero and mislabelled weights: refused here, in one line
        for key in shapes:
            check_cancel(cancel)
            checks.label(key, f.get_slice(key).get_dtype())
            stored = t = f.get_tensor(key)
            layer = key[:-len(".weight")] if key.endswith(".weight") else None
            scale = f.get_tensor(layer + SCALE_SUFFIX) if layer in scaled_layers else None
            if layer in fp8_layers:
                if t.dtype == FP8_DTYPE:  # stored fp8: kept as it is, with its scale (1 for a plain fp8 cast)
                    scale = torch.ones((), dtype=torch.float32) if scale is None else scale.float().reshape(())
                else:
                    t, scale = quantize_fp8(t)
                state[layer + SCALE_SUFFIX] = scale.to(device)
            elif scale is not None or t.dtype == FP8_DTYPE:  # an fp8 tensor this model keeps in the compute dtype
                t = dequantize_fp8(t, scale, compute)
            elif dtype is not None and t.is_floating_point():
                t = t.to(dtype)
            checks.values(key, stored, t)
            t = t.to(device)
            # a fresh allocation rather than the reader's buffer (see checkpoint.load_checkpoint)
            state[key] = t.clone() if t.device.type == "cpu" else t
            m = re.match(r"blocks\.(\d+)\.", key)
            if m and int(m.group(1)) > done_blocks:
                done_blocks = int(m.group(1))
                report(progress, done_blocks, cfg.num_layers, "loading X-Dub blocks")
        checks.done()
    if operations is not None:  # a host's layers may carry a per-layer scale the file lacks (ComfyUI's scaled-fp8
        # Linear outside the fp8 layers): 1, as ComfyUI sets it
        for key in model.state_dict():
            if key.endswith(SCALE_SUFFIX) and key not in state:
                state[key] = torch.ones((), dtype=torch.float32, device=device)
    model.load_state_dict(state, strict=True, assign=True)
    model.checkpoint_path = path  # named by the sampler if the network ever returns NaN/inf
    report(progress, cfg.num_layers, cfg.num_layers, "loaded X-Dub")
    return model.eval()


def is_scaled_fp8(path: str) -> bool:
    """True when ``path`` (a safetensors file) carries ComfyUI's ``scaled_fp8`` marker (see :mod:`.fp8`)."""
    with named_source("xdub_model"), _open(path) as f:
        return split_scaled_fp8(f.keys())[0]


def convert_xdub_fp8(src: str, dst: str, scaled: bool = True, progress: Optional[ProgressCallback] = None) -> Dict:
    """Write ``dst``: ``src`` (X-Dub_model.safetensors) with the blocks' linear weights in fp8 e4m3fn, in
    ComfyUI's scaled-fp8 convention (:mod:`.fp8`); every other tensor as stored. scaled=False: a plain cast
    (scale 1). Checks ``src`` is a complete X-Dub DiT first; ``dst`` appears only when complete.
    Returns {"layers": converted layers, "bytes_in", "bytes_out"}."""
    from safetensors.torch import save_file

    from ..io.files import atomic_output

    with named_source("xdub_model"), _open(src) as f:
        marker, _, own = split_scaled_fp8(f.keys())
        if marker:
            raise OmniSyncError(f"{src!r} is already a scaled-fp8 file; convert the original X-Dub_model.safetensors.")
        cfg = xdub_config_from_shapes({k: tuple(f.get_slice(k).get_shape()) for k in own}, name=repr(src))
        with torch.device("meta"):
            names = set(fp8_layer_names(XDubDiT(cfg)))
        out, bytes_in = {}, 0
        for i, key in enumerate(own):  # quantised as read: memory holds the output, not the input as well
            t = f.get_tensor(key)
            bytes_in += t.numel() * t.element_size()
            layer = key[:-len(".weight")]
            if key.endswith(".weight") and layer in names:
                out[key], out[layer + SCALE_SUFFIX] = quantize_fp8(t, scaled)
            else:
                out[key] = t
            report(progress, i + 1, len(own), "converting")
    out[SCALED_FP8_KEY] = torch.empty(0, dtype=FP8_DTYPE)
    with atomic_output(dst) as tmp:
        save_file({k: v.contiguous() for k, v in out.items()}, tmp)
    return {"layers": len(names), "bytes_in": bytes_in,
            "bytes_out": sum(t.numel() * t.element_size() for t in out.values())}
