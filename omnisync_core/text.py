"""Optional "video description" prompt → T5 text features (the paper's text condition).

A prompt is optional: ``None`` or an empty string means "no text", which the model handles by
skipping its text cross-attention. A T5 encoder is loaded only from a local folder
(``T5EncoderModel`` + tokenizer files, as saved by ``save_pretrained``); nothing is downloaded.
"""

from __future__ import annotations

import os
from typing import Optional

import torch

from .errors import OmniSyncError


class T5TextEncoder:
    """Wraps a ``transformers`` T5 encoder and its tokenizer.

    ``encode(prompt) -> (L, text_dim)`` float tensor on ``device``; ``L`` = number of tokens
    (at most ``max_length``), padding is never added, so the model attends to real tokens only.
    """

    def __init__(self, model, tokenizer, device="cpu", dtype=torch.float32, max_length: int = 512):
        self.model = model.to(device=device, dtype=dtype).eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.max_length = max_length

    @property
    def dim(self) -> int:
        return int(self.model.config.d_model)

    @torch.no_grad()
    def encode(self, prompt: str) -> torch.Tensor:
        ids = self.tokenizer(prompt, return_tensors="pt", truncation=True, max_length=self.max_length)
        out = self.model(input_ids=ids.input_ids.to(self.device),
                         attention_mask=ids.attention_mask.to(self.device))
        return out.last_hidden_state[0]  # (L, text_dim)


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
