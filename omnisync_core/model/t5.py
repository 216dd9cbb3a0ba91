"""Optional "video description" prompt → T5 text features (the paper's text condition).

A prompt is optional: ``None`` or an empty string means "no text", which the model handles by
skipping its text cross-attention. A T5 encoder is loaded from a local folder (``T5EncoderModel`` +
tokenizer files, as saved by ``save_pretrained``) or, for X-Dub's umT5-XXL, from the single file as it is
published (:func:`load_umt5_file`): Wan's layout (the Kling bundle's ``models_t5_umt5-xxl-enc-bf16.safetensors``)
or ComfyUI's (Comfy-Org's ``umt5_xxl_fp8_e4m3fn_scaled.safetensors`` / ``umt5_xxl_fp16.safetensors``), both
mapped onto transformers' ``UMT5EncoderModel``. Nothing is downloaded.

The reference (X-Dub ``WanVideoUnit_PromptEmbedder``) tokenises with umT5's tokenizer, adds ``</s>``, pads to
512 with a mask and zeroes the features past the real tokens; here the real tokens are encoded alone, which is
the same (padded keys are masked out), and the network zero-pads. The empty prompt is the one token ``</s>``
(id :data:`UMT5_EOS_ID`), so it needs no tokenizer.
"""

from __future__ import annotations

import html
import os
import re
from typing import Dict, Optional, Tuple

import torch

from ..errors import OmniSyncError
from .files import missing_message, xdub_file

UMT5_EOS_ID = 1  # umT5's </s>: the tokenizer appends it to every prompt; "" is this token alone
UMT5_MAX_DISTANCE = 128  # relative-position buckets saturate here (Wan's T5RelativeEmbedding, transformers' UMT5)
COMFY_SCALE_SUFFIX = ".scale_weight"  # Comfy-Org's scaled fp8: weight = fp8 weight · scale_weight
COMFY_IGNORED = ("scaled_fp8",)  # a marker tensor whose dtype names the fp8 format
COMFY_IGNORED_SUFFIXES = (".scale_input",)  # only for fp8 matrix multiplication; the product is unchanged


class T5TextEncoder:
    """Wraps a ``transformers`` T5 encoder and its tokenizer.

    ``encode(prompt) -> (L, text_dim)`` float tensor on ``device``; ``L`` = number of tokens
    (at most ``max_length``), padding is never added, so the model attends to real tokens only.
    """

    def __init__(self, model, tokenizer, device="cpu", dtype=torch.float32, max_length: int = 512,
                 source: str = ""):
        self.model = model.to(device=device, dtype=dtype).eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.max_length = max_length
        self.source = source

    @property
    def dim(self) -> int:
        return int(self.model.config.d_model)

    @torch.no_grad()
    def encode(self, prompt: str) -> torch.Tensor:
        """``(L, text_dim)``: the prompt's tokens with ``</s>``; ``""`` needs no tokenizer (one ``</s>``)."""
        if self.tokenizer is None:
            if prompt.strip():
                tok = xdub_file("umt5_tokenizer")
                raise OmniSyncError(f"a non-empty prompt needs umT5's tokenizer: pass {tok.source()} with "
                                    f"{tok.cli_flag}, or leave the prompt empty.")
            return self.encode_ids(torch.tensor([[UMT5_EOS_ID]]))
        ids = self.tokenizer(_clean_prompt(prompt), return_tensors="pt", truncation=True, max_length=self.max_length)
        return self.encode_ids(ids.input_ids)

    @torch.no_grad()
    def encode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """``ids (1, L)`` long → ``(L, text_dim)`` (every token attended; no padding)."""
        return self.model(input_ids=ids.to(self.device)).last_hidden_state[0]  # (L, text_dim)


def _clean_prompt(prompt: str) -> str:
    """The reference's ``clean='whitespace'`` without ftfy: HTML entities unescaped, runs of whitespace as one space."""
    return re.sub(r"\s+", " ", html.unescape(html.unescape(prompt)).strip()).strip()


def load_t5_encoder(path: str, device="cpu", dtype=torch.float32) -> T5TextEncoder:
    """Load a local T5 or umT5 encoder folder (config.json, model.safetensors, tokenizer files)."""
    if not os.path.isdir(path):
        raise OmniSyncError(
            f"T5 text encoder folder not found: {path!r}. Pass a local folder saved with "
            "T5EncoderModel.save_pretrained (with its tokenizer), or leave the prompt empty."
        )
    from transformers import AutoConfig, AutoTokenizer, T5EncoderModel, UMT5EncoderModel

    try:
        # umT5 (Wan's and X-Dub's text encoder) has its own relative-position bias in every layer
        kind = AutoConfig.from_pretrained(path, local_files_only=True).model_type
        cls = UMT5EncoderModel if kind == "umt5" else T5EncoderModel
        model = cls.from_pretrained(path, local_files_only=True, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise OmniSyncError(
            f"could not load a T5 encoder from {path!r} ({exc}). The folder needs config.json, "
            "model.safetensors and the tokenizer files."
        ) from exc
    return T5TextEncoder(model, tokenizer, device=device, dtype=dtype)


def _wan_to_hf_key(key: str) -> Optional[str]:
    """Wan's umT5 key (``wan/modules/t5.py``) → transformers ``UMT5EncoderModel``'s, or None if it is not one."""
    if key == "token_embedding.weight":
        return "shared.weight"
    if key == "norm.weight":
        return "encoder.final_layer_norm.weight"
    m = re.match(r"blocks\.(\d+)\.(.+)$", key)
    if not m:
        return None
    b, rest = f"encoder.block.{m.group(1)}.layer", m.group(2)
    table = {"norm1.weight": "0.layer_norm.weight", "attn.q.weight": "0.SelfAttention.q.weight",
             "attn.k.weight": "0.SelfAttention.k.weight", "attn.v.weight": "0.SelfAttention.v.weight",
             "attn.o.weight": "0.SelfAttention.o.weight",
             "pos_embedding.embedding.weight": "0.SelfAttention.relative_attention_bias.weight",
             "norm2.weight": "1.layer_norm.weight", "ffn.gate.0.weight": "1.DenseReluDense.wi_0.weight",
             "ffn.fc1.weight": "1.DenseReluDense.wi_1.weight", "ffn.fc2.weight": "1.DenseReluDense.wo.weight"}
    return f"{b}.{table[rest]}" if rest in table else None


def umt5_state_dict(f, name: str, dtype=torch.float32) -> Tuple[Dict[str, torch.Tensor], str]:
    """(``UMT5EncoderModel`` tensors in ``dtype``, layout) of an open safetensors file of umT5 in Wan's layout
    (``"wan"``) or ComfyUI's (``"comfy"``; HF names, fp8 weights times their ``scale_weight`` in float32).
    Tensors are read one at a time (the XXL file is 11 GB)."""
    keys = set(f.keys())
    if "token_embedding.weight" in keys:
        out = {}
        for key in sorted(keys):
            new = _wan_to_hf_key(key)
            if new is None:
                raise OmniSyncError(f"{name}: unexpected tensor {key!r} for umT5 in Wan's layout; pass "
                                    f"{xdub_file('umt5_wan').source()}.")
            out[new] = f.get_tensor(key).to(dtype)
        return out, "wan"
    if "shared.weight" in keys:
        out = {}
        for key in sorted(keys):
            if key in COMFY_IGNORED or key.endswith(COMFY_IGNORED_SUFFIXES + (COMFY_SCALE_SUFFIX,)):
                continue
            if key.startswith("decoder."):
                continue
            value = f.get_tensor(key)
            scale_key = key[: -len(".weight")] + COMFY_SCALE_SUFFIX
            if key.endswith(".weight") and scale_key in keys:
                value = value.float() * f.get_tensor(scale_key).float()
            out[key] = value.to(dtype)
        return out, "comfy"
    raise OmniSyncError(f"{name} is not a umT5 text encoder (no token_embedding.weight or shared.weight); pass "
                        f"{xdub_file('umt5_wan').source()}, or {xdub_file('umt5_comfy').source()}.")


def umt5_config(state_dict: Dict[str, torch.Tensor], name: str):
    """transformers ``UMT5Config`` of an encoder state dict in its names, read off the shapes."""
    from transformers import UMT5Config

    try:
        vocab, d_model = state_dict["shared.weight"].shape
        layers = 1 + max(int(m.group(1)) for k in state_dict if (m := re.match(r"encoder\.block\.(\d+)\.", k)))
        a = "encoder.block.0.layer.0.SelfAttention."
        buckets, heads = state_dict[a + "relative_attention_bias.weight"].shape
        inner = state_dict[a + "q.weight"].shape[0]
        d_ff = state_dict["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"].shape[0]
    except (KeyError, ValueError) as exc:
        raise OmniSyncError(f"{name} is not a complete umT5 encoder (no {exc}); re-download "
                            f"{xdub_file('umt5_wan').source()}.") from None
    return UMT5Config(vocab_size=int(vocab), d_model=int(d_model), d_kv=int(inner) // int(heads), d_ff=int(d_ff),
                      num_layers=int(layers), num_heads=int(heads), relative_attention_num_buckets=int(buckets),
                      relative_attention_max_distance=UMT5_MAX_DISTANCE, feed_forward_proj="gated-gelu",
                      layer_norm_epsilon=1e-6, pad_token_id=0, eos_token_id=UMT5_EOS_ID, decoder_start_token_id=0,
                      dropout_rate=0.0)


def load_umt5_file(path: str, tokenizer_path: Optional[str] = None, device="cpu",
                   dtype=torch.float32) -> T5TextEncoder:
    """umT5-XXL from the single file as published → :class:`T5TextEncoder` (``UMT5EncoderModel``).

    path: Wan's layout (``models_t5_umt5-xxl-enc-bf16.safetensors`` of the Kling bundle) or ComfyUI's
        (Comfy-Org's ``umt5_xxl_fp8_e4m3fn_scaled.safetensors``: fp8 weights dequantised with their scales, or
        ``umt5_xxl_fp16.safetensors``). The config is read off the shapes.
    tokenizer_path: umT5's tokenizer folder (the bundle's ``umt5-xxl/``), needed only for a non-empty prompt.
    """
    from safetensors import safe_open
    from transformers import UMT5EncoderModel

    path = os.fspath(path)
    src = xdub_file("umt5_wan")
    if not os.path.isfile(path):
        raise OmniSyncError(missing_message("umt5_wan", path, src.cli_flag).rstrip(".")
                            + f" (or {xdub_file('umt5_comfy').source()}).")
    try:
        f = safe_open(path, framework="pt", device="cpu")
    except Exception as exc:  # noqa: BLE001 — safetensors raises its own error types for a bad header
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OmniSyncError(f"{path!r} is not a readable safetensors file ({first}): it is damaged, truncated or "
                            f"another format; re-download {src.source()}.") from None
    with f:
        state_dict, _ = umt5_state_dict(f, repr(path), dtype)
    config = umt5_config(state_dict, repr(path))
    with torch.device("meta"):
        model = UMT5EncoderModel(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state_dict["encoder.embed_tokens.weight"] = state_dict["shared.weight"]  # tied in UMT5EncoderModel
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state_dict) if tuple(state_dict[k].shape) != expected[k])
    if missing or unexpected or wrong:
        lst = lambda keys: (", ".join(keys[:4]) + (" …" if len(keys) > 4 else "")) or "none"  # noqa: E731
        raise OmniSyncError(f"{path!r} is not a complete umT5 encoder (missing: {lst(missing)}; unexpected: "
                            f"{lst(unexpected)}; wrong shape: {lst(wrong)}); re-download {src.source()}.")
    model.load_state_dict(state_dict, strict=True, assign=True)
    model.tie_weights()
    tokenizer = None
    if tokenizer_path is not None:
        tokenizer = _load_tokenizer(os.fspath(tokenizer_path))
    return T5TextEncoder(model, tokenizer, device=device, dtype=dtype, source=path)


def _load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = xdub_file("umt5_tokenizer")
    if not os.path.isdir(path):
        raise OmniSyncError(missing_message("umt5_tokenizer", path, tok.cli_flag))
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 — tokenizers raise OSError, ValueError, their own exceptions …
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OmniSyncError(f"{path!r} is not a tokenizer folder transformers can read ({first}); pass "
                            f"{tok.source()}.") from None


def encode_prompt(encoder: Optional[T5TextEncoder], prompt: Optional[str], text_dim: int,
                  use_text: bool) -> Optional[torch.Tensor]:
    """Return ``(L, text_dim)`` features for ``prompt``, or ``None`` for "no text".

    Raises when a prompt is given but cannot be honoured (no encoder, model without a text branch,
    or a dimension mismatch) rather than silently ignoring the user's description.
    """
    if prompt is None or not prompt.strip():
        return None
    if not use_text:
        raise OmniSyncError(
            "this model has no text branch, so a video description cannot be used; "
            "leave the prompt empty."
        )
    if encoder is None:
        raise OmniSyncError(
            "a video description was given but no T5 text encoder was loaded; pass "
            "--text-encoder FOLDER (CLI) or connect CONDITIONING (ComfyUI), or leave the prompt empty."
        )
    feats = encoder.encode(prompt)
    if feats.shape[-1] != text_dim:
        raise OmniSyncError(
            f"the text encoder gives {feats.shape[-1]}-dim features but the model expects "
            f"{text_dim}; use the T5 encoder the model was trained with."
        )
    return feats
