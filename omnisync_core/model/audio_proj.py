"""X-Dub's audio projection: raw per-frame audio windows -> DiT-width audio tokens.

Plain-PyTorch rewrite of X-Dub's ``AudioProjModule`` (``diffsynth/models/audio_modules.py``, built from
diffusers' ``Attention``, ``FeedForward`` with GEGLU and ``SinusoidalPositionalEmbedding``) with the same
parameter and buffer names, so the ``audio_embedding.*`` weights of ``X-Dub_model.safetensors`` load as
they are. Layout::

    audio: (B, F, W, input_dim)   W raw audio tokens (Whisper ‖ wav2vec2 features) per latent frame F
    ->     (B, F, W, out_dim)     out_dim = the DiT width

Each latent frame's window is processed on its own: the attention runs over the W tokens of one frame.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import AudioProjConfig

POSITION_BASE = 10000.0


class SinusoidalPositions(nn.Module):
    """Adds a fixed sine/cosine table to a window of tokens (diffusers' ``SinusoidalPositionalEmbedding``).

    The table is a persistent buffer ``pe`` (1, max_window, dim): X-Dub's checkpoint stores it, so it is
    loaded (in the checkpoint's dtype) like a weight.
    """

    def __init__(self, dim: int, max_window: int, device=None, dtype=None):
        super().__init__()
        # computed on the CPU in float32 (also when building on "meta"), then moved
        cpu = torch.device("cpu")
        position = torch.arange(max_window, device=cpu).unsqueeze(1)  # (max_window, 1)
        div_term = torch.exp(torch.arange(0, dim, 2, device=cpu) * (-math.log(POSITION_BASE) / dim))  # (dim/2,)
        pe = torch.zeros(1, max_window, dim, device=cpu)
        pe[0, :, 0::2] = torch.sin(position * div_term)  # sines on even channels, cosines on odd: interleaved
        pe[0, :, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe.to(device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[:, :x.shape[1]].to(x.device)  # x: (N, W, dim); the table may wait in CPU memory


class WindowAttention(nn.Module):
    """Multi-head self-attention over one window, no q/k norm, bias only on the output (diffusers' ``Attention``)."""

    def __init__(self, dim: int, num_heads: int, device=None, dtype=None, operations=nn):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.num_heads = num_heads
        self.to_q = operations.Linear(dim, dim, bias=False, **kw)
        self.to_k = operations.Linear(dim, dim, bias=False, **kw)
        self.to_v = operations.Linear(dim, dim, bias=False, **kw)
        self.to_out = nn.ModuleList([operations.Linear(dim, dim, **kw)])  # index 0: the key name is to_out.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, W, D = x.shape
        q, k, v = (proj(x).view(N, W, self.num_heads, -1).transpose(1, 2) for proj in (self.to_q, self.to_k, self.to_v))
        out = F.scaled_dot_product_attention(q, k, v)  # (N, heads, W, head_dim)
        return self.to_out[0](out.transpose(1, 2).reshape(N, W, D))  # (N, W, D)


class GEGLU(nn.Module):
    """Linear to twice the width, then value · GELU(gate) (exact GELU)."""

    def __init__(self, dim_in: int, dim_out: int, device=None, dtype=None, operations=nn):
        super().__init__()
        self.proj = operations.Linear(dim_in, 2 * dim_out, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward; ``net`` keeps diffusers' indices (0: GEGLU, 1: dropout, here inert, 2: output)."""

    def __init__(self, dim: int, mult: int, device=None, dtype=None, operations=nn):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, mult * dim, device=device, dtype=dtype, operations=operations),
                                 nn.Identity(), operations.Linear(mult * dim, dim, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AudioProjLayer(nn.Module):
    """Pre-norm self-attention over the window (positions added after the norm), then a pre-norm feed-forward."""

    def __init__(self, cfg: AudioProjConfig, device=None, dtype=None, operations=nn):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.norm1 = operations.LayerNorm(cfg.dim, eps=cfg.eps, **kw)
        self.attn = WindowAttention(cfg.dim, cfg.num_heads, operations=operations, **kw)
        self.norm2 = operations.LayerNorm(cfg.dim, eps=cfg.eps, **kw)
        self.ff = FeedForward(cfg.dim, cfg.ff_mult, operations=operations, **kw)
        self.pos_embed = SinusoidalPositions(cfg.dim, cfg.max_window, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, W, dim), N = B·F windows
        x = x + self.attn(self.pos_embed(self.norm1(x)))
        return x + self.ff(self.norm2(x))


class AudioProjection(nn.Module):
    """``proj_in`` -> ``layers`` (each over one frame's window) -> ``proj_out`` to the DiT width ``out_dim``."""

    def __init__(self, cfg: AudioProjConfig, out_dim: int, device=None, dtype=None, operations=nn):
        """operations: where the Linear and LayerNorm layers come from (see :class:`.dit.OmniSyncDiT`)."""
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.config = cfg
        self.proj_in = operations.Linear(cfg.input_dim, cfg.dim, **kw)
        self.layers = nn.ModuleList([AudioProjLayer(cfg, operations=operations, **kw) for _ in range(cfg.num_layers)])
        self.proj_out = operations.Linear(cfg.dim, out_dim, **kw)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        # audio: (B, F, W, input_dim), W <= max_window
        B, Fr, W, _ = audio.shape
        x = self.proj_in(audio).flatten(0, 1)  # (B·F, W, dim)
        for layer in self.layers:
            x = layer(x)
        return self.proj_out(x).unflatten(0, (B, Fr))  # (B, F, W, out_dim)
