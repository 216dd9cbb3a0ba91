"""OmniSync DiT: Wan 2.1's video diffusion transformer plus source and audio conditioning.

The network is Wan 2.1's ``WanModel`` (``wan/modules/model.py``, T2V) rewritten in plain PyTorch with
the same parameter names, so a Wan 2.1 T2V checkpoint loads into it (see
:func:`~omnisync_core.model.checkpoint.load_wan_state_dict`). OmniSync adds two conditions:

* source latents, concatenated to the noisy latents on the channel axis before the patch embedding
  (the mask-free reference frames of the paper);
* audio tokens, attended to by a per-frame cross-attention after the text cross-attention: the video
  tokens of latent frame f see only the audio tokens of frame f.

Both additions start as exact no-ops (zero weights), so at initialisation the model *is* the Wan base
model it was loaded from. Layout at the boundary::

    x, source: (B, C, F, H, W) latents        timestep: (B,) in [0, 1000] (= 1000·σ)
    audio: (B, F, N_a, audio_dim) or None     text: (B, L, text_dim) or None
    returns the velocity v = ε − x_0: (B, C, F, H, W)

Inside, ``D`` is the model width, ``n``/``d`` the heads and head width, and the patch grid is
``(F', H', W') = (F/pt, H/ph, W/pw)`` with ``S = H'·W'`` tokens per frame and ``L = F'·S`` in total.
The residual stream and the adaLN modulation stay in float32 (as Wan runs them under autocast);
the linear layers run in the parameters' dtype.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..errors import OmniSyncError
from .config import X0_MIN_SIGMA, DiTConfig

ROPE_THETA = 10000.0
SINUSOID_BASE = 10000.0
MAX_TIMESTEP = 1000.0  # timestep = 1000·σ, σ ∈ [0, 1]


# -- small helpers ---------------------------------------------------------------------------------

def sinusoidal_embedding_1d(dim: int, position: torch.Tensor) -> torch.Tensor:
    """Wan's timestep features: (N,) -> (N, dim) float64, cosines then sines."""
    half = dim // 2
    position = position.to(torch.float64)
    sinusoid = torch.outer(position, torch.pow(SINUSOID_BASE, -torch.arange(half).to(position).div(half)))
    return torch.cat([torch.cos(sinusoid), torch.sin(sinusoid)], dim=1)  # (N, dim)


def rope_split(head_dim: int) -> Tuple[int, int, int]:
    """Channels of one head given to the frame, height and width axes (44:42:42 for d = 128)."""
    d = head_dim
    return d - 4 * (d // 6), 2 * (d // 6), 2 * (d // 6)


def rope_angles(grid: Tuple[int, int, int], head_dim: int, theta: float = ROPE_THETA) -> torch.Tensor:
    """Rotation angles of the 3D RoPE for every (f, h, w) grid position: (F'·H'·W', head_dim / 2) float64.

    Each axis uses the 1D RoPE frequencies ``theta^(−2i / axis_dim)`` of its own channel share; the
    (f, h, w) angles are concatenated, exactly as Wan's ``rope_params`` + ``rope_apply``.
    """
    f, h, w = grid
    per_axis = []
    for n, axis_dim in zip(grid, rope_split(head_dim)):
        inv_freq = 1.0 / torch.pow(theta, torch.arange(0, axis_dim, 2, dtype=torch.float64) / axis_dim)
        per_axis.append(torch.outer(torch.arange(n, dtype=torch.float64), inv_freq))  # (n, axis_dim / 2)
    a_f, a_h, a_w = per_axis
    angles = torch.cat([
        a_f[:, None, None].expand(f, h, w, -1),
        a_h[None, :, None].expand(f, h, w, -1),
        a_w[None, None, :].expand(f, h, w, -1),
    ], dim=-1)  # (F', H', W', d / 2)
    return angles.reshape(f * h * w, head_dim // 2)


def rope_apply(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (2i, 2i+1) of x (B, L, n, d) by the angles behind cos/sin (L, d/2).

    The complex product ``(a + ib)·e^{iθ}`` written out in real arithmetic (float32), so it runs on
    every backend; a rotation, so it keeps the norm of each pair.
    """
    pairs = x.float().unflatten(-1, (-1, 2))  # (B, L, n, d/2, 2)
    a, b = pairs.unbind(-1)
    c, s = cos[None, :, None], sin[None, :, None]  # (1, L, 1, d/2)
    return torch.stack([a * c - b * s, a * s + b * c], dim=-1).flatten(-2).to(x.dtype)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


def _fp32_sequential(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Run a Linear/activation stack in float32 whatever the parameter dtype (Wan's autocast(float32))."""
    x = x.float()
    with torch.autocast(device_type=x.device.type, enabled=False):
        for layer in seq:
            x = F.linear(x, layer.weight.float(), layer.bias.float()) if isinstance(layer, nn.Linear) else layer(x)
    return x


# -- norms -----------------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    """Wan's RMSNorm: normalise in float32, scale by a learned weight."""

    def __init__(self, dim: int, eps: float, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 and returned in float32 (the residual stream's dtype)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps)


# -- attention -------------------------------------------------------------------------------------

class SelfAttention(nn.Module):
    """Multi-head self-attention with RMS q/k norm and 3D RoPE (Wan's ``WanSelfAttention``)."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool, eps: float, device=None, dtype=None):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.q = nn.Linear(dim, dim, **kw)
        self.k = nn.Linear(dim, dim, **kw)
        self.v = nn.Linear(dim, dim, **kw)
        self.o = nn.Linear(dim, dim, **kw)
        self.norm_q = RMSNorm(dim, eps, **kw) if qk_norm else nn.Identity()
        self.norm_k = RMSNorm(dim, eps, **kw) if qk_norm else nn.Identity()

    def attend(self, x: torch.Tensor, context: torch.Tensor, rope=None) -> torch.Tensor:
        B, Lq, D = x.shape
        Lk, n, d = context.shape[1], self.num_heads, self.head_dim
        q = self.norm_q(self.q(x)).view(B, Lq, n, d)
        k = self.norm_k(self.k(context)).view(B, Lk, n, d)
        v = self.v(context).view(B, Lk, n, d)
        if rope is not None:
            q, k = rope_apply(q, *rope), rope_apply(k, *rope)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))  # (B, n, Lq, d)
        return self.o(out.transpose(1, 2).reshape(B, Lq, D))  # (B, Lq, D)

    def forward(self, x: torch.Tensor, rope: Tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return self.attend(x, x, rope)  # (B, L, D)


class CrossAttention(SelfAttention):
    """Text cross-attention (Wan's ``WanT2VCrossAttention``): queries from video, keys from context."""

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.attend(x, context)  # (B, L, D)


class AudioCrossAttention(SelfAttention):
    """Per-frame audio cross-attention: the S tokens of patch frame f attend only to audio[:, f]."""

    def forward(self, x: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        Fp, N = audio.shape[1:3]  # audio: (B, F', N, D)
        out = self.attend(x.reshape(B * Fp, L // Fp, D), audio.reshape(B * Fp, N, D))  # (B·F', S, D)
        return out.reshape(B, L, D)


# -- the block -------------------------------------------------------------------------------------

class DiTBlock(nn.Module):
    """Wan's ``WanAttentionBlock`` (adaLN self-attn, text cross-attn, FFN) plus the audio cross-attn."""

    def __init__(self, cfg: DiTConfig, device=None, dtype=None):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        dim = cfg.dim
        self.norm1 = LayerNorm(dim, cfg.eps, elementwise_affine=False, **kw)
        self.self_attn = SelfAttention(dim, cfg.num_heads, cfg.qk_norm, cfg.eps, **kw)
        if cfg.use_text:
            self.norm3 = LayerNorm(dim, cfg.eps, elementwise_affine=True, **kw) if cfg.cross_attn_norm else nn.Identity()
            self.cross_attn = CrossAttention(dim, cfg.num_heads, cfg.qk_norm, cfg.eps, **kw)
        if cfg.audio_dim:
            self.norm_audio = LayerNorm(dim, cfg.eps, elementwise_affine=True, **kw)
            self.audio_cross_attn = AudioCrossAttention(dim, cfg.num_heads, cfg.qk_norm, cfg.eps, **kw)
        self.norm2 = LayerNorm(dim, cfg.eps, elementwise_affine=False, **kw)
        self.ffn = nn.Sequential(nn.Linear(dim, cfg.ffn_dim, **kw), nn.GELU(approximate="tanh"),
                                 nn.Linear(cfg.ffn_dim, dim, **kw))
        self.modulation = nn.Parameter(torch.empty(1, 6, dim, **kw))  # adaLN offsets, added to the time signal

    def forward(self, x, e, rope, text: Optional[torch.Tensor], audio: Optional[torch.Tensor]) -> torch.Tensor:
        # x: (B, L, D) float32; e: (B, 6, D) float32; text: (B, text_len, D); audio: (B, F', N, D)
        dt = self.modulation.dtype
        shift_sa, scale_sa, gate_sa, shift_ff, scale_ff, gate_ff = (self.modulation.float() + e).chunk(6, dim=1)
        y = self.self_attn(modulate(self.norm1(x), shift_sa, scale_sa).to(dt), rope)
        x = x + y.float() * gate_sa  # (B, L, D)
        if text is not None:
            x = x + self.cross_attn(self.norm3(x).to(dt), text).float()
        if audio is not None:
            x = x + self.audio_cross_attn(self.norm_audio(x).to(dt), audio).float()
        y = self.ffn(modulate(self.norm2(x), shift_ff, scale_ff).to(dt))
        return x + y.float() * gate_ff  # (B, L, D)


class Head(nn.Module):
    """Final adaLN norm + linear to one patch of latents per token (Wan's ``Head``)."""

    def __init__(self, dim: int, out_dim: int, patch_size, eps: float, device=None, dtype=None):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.norm = LayerNorm(dim, eps, elementwise_affine=False, **kw)
        self.head = nn.Linear(dim, math.prod(patch_size) * out_dim, **kw)
        self.modulation = nn.Parameter(torch.empty(1, 2, dim, **kw))

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        # x: (B, L, D) float32; e: (B, D) float32 time embedding
        with torch.autocast(device_type=x.device.type, enabled=False):  # float32, as Wan's head
            shift, scale = (self.modulation.float() + e.unsqueeze(1)).chunk(2, dim=1)  # 2 × (B, 1, D)
            h = modulate(self.norm(x), shift, scale)
            return F.linear(h, self.head.weight.float(), self.head.bias.float())  # (B, L, pt·ph·pw·C)


# -- the model -------------------------------------------------------------------------------------

class OmniSyncDiT(nn.Module):
    """Wan 2.1 DiT with source-latent and per-frame audio conditioning.

    Args:
        config: sizes and switches (:class:`DiTConfig`).
        device, dtype: where the parameters are created and in which dtype (``"meta"`` builds a
            weightless skeleton, e.g. to list keys).

    Set ``model.gradient_checkpointing = True`` to recompute each block in the backward pass while
    training (less memory, about one more forward of compute).
    """

    def __init__(self, config: DiTConfig, device=None, dtype=None):
        super().__init__()
        if not isinstance(config, DiTConfig):
            raise OmniSyncError(f"OmniSyncDiT needs a DiTConfig, got {type(config).__name__}; "
                                "use omnisync_core.model.config.preset('tiny') or DiTConfig(...).")
        self.config = cfg = config
        self.gradient_checkpointing = False
        kw = dict(device=device, dtype=dtype)
        dim = cfg.dim

        # embeddings
        self.patch_embedding = nn.Conv3d(cfg.in_channels, dim, kernel_size=cfg.patch_size, stride=cfg.patch_size, **kw)
        if cfg.use_text:
            self.text_embedding = nn.Sequential(nn.Linear(cfg.text_dim, dim, **kw), nn.GELU(approximate="tanh"),
                                                nn.Linear(dim, dim, **kw))
        if cfg.audio_dim:
            self.audio_embedding = nn.Sequential(nn.Linear(cfg.audio_dim, dim, **kw), nn.GELU(approximate="tanh"),
                                                 nn.Linear(dim, dim, **kw))
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, dim, **kw), nn.SiLU(), nn.Linear(dim, dim, **kw))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim, **kw))

        self.blocks = nn.ModuleList([DiTBlock(cfg, **kw) for _ in range(cfg.num_layers)])
        self.head = Head(dim, cfg.latent_channels, cfg.patch_size, cfg.eps, **kw)
        self.init_weights()

    def init_weights(self) -> None:
        """Wan 2.1's initialisation, plus the zero-inits that make the OmniSync additions no-ops."""
        cfg = self.config
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, (nn.LayerNorm, RMSNorm)) and m.weight is not None:
                    nn.init.ones_(m.weight)
                    if getattr(m, "bias", None) is not None:
                        nn.init.zeros_(m.bias)
            # Patch embedding: Xavier over the latent channels' fan as in Wan. The source channels start
            # at ZERO so that, before training, the source latents add nothing and the model is exactly
            # the Wan base model it was initialised from; training grows the source path from there.
            # (Wan keeps Conv3d's default bias; zero is the explicit choice for a from-scratch model.)
            w = self.patch_embedding.weight  # (D, C_in, pt, ph, pw)
            C = cfg.latent_channels
            wan_part = torch.empty(w.shape[0], C * math.prod(cfg.patch_size), device=w.device, dtype=w.dtype)
            nn.init.xavier_uniform_(wan_part)
            w.zero_()
            w[:, :C].copy_(wan_part.view(w.shape[0], C, *cfg.patch_size))
            nn.init.zeros_(self.patch_embedding.bias)
            # condition embeddings as Wan: small normal weights
            for seq in (getattr(self, "text_embedding", None), self.time_embedding):
                for m in (seq or ()):
                    if isinstance(m, nn.Linear):
                        nn.init.normal_(m.weight, std=0.02)
            # adaLN offsets around the time signal, as Wan
            for block in self.blocks:
                block.modulation.copy_(torch.randn(block.modulation.shape) / cfg.dim ** 0.5)
                # Audio output projection ZERO (weight and bias): x + audio_cross_attn(...) starts as the
                # identity, so the audio branch is added to a working base model without disturbing it.
                if cfg.audio_dim:
                    nn.init.zeros_(block.audio_cross_attn.o.weight)
                    nn.init.zeros_(block.audio_cross_attn.o.bias)
            self.head.modulation.copy_(torch.randn(self.head.modulation.shape) / cfg.dim ** 0.5)
            # zero output layer (Wan): a fresh model predicts v = 0
            nn.init.zeros_(self.head.head.weight)

    # -- forward -----------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, timestep, source: Optional[torch.Tensor] = None,
                audio: Optional[torch.Tensor] = None, text: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Velocity for noisy latents.

        Args:
            x: (B, C, F, H, W) noisy latents; F divisible by patch t, H and W by patch h and w.
            timestep: (B,) (or a scalar / (1,), broadcast) in [0, 1000] = 1000·σ.
            source: (B, C, F, H, W) source latents; required when ``config.source_condition``.
            audio: (B, F, N_a, audio_dim) tokens per latent frame, or None to skip the audio branch.
            text: (B, L, text_dim), L <= text_len, or None to skip the text cross-attention. As in
                Wan 2.1, the features are zero-padded to ``text_len`` tokens before embedding.
            source, audio and text with batch 1 are broadcast to B.
        Returns:
            (B, C, F, H, W) velocity in x's dtype.
        Raises:
            OmniSyncError for any input of the wrong shape, size or kind (checked before any compute).
        """
        cfg = self.config
        t, source, audio, text = check_model_inputs(cfg, x, timestep, source, audio, text)
        B = x.shape[0]
        pt, ph, pw = cfg.patch_size
        dt = self.patch_embedding.weight.dtype
        device = self.patch_embedding.weight.device

        # embeddings
        inp = torch.cat([x, source], dim=1) if cfg.source_condition else x  # (B, C_in, F, H, W)
        h = self.patch_embedding(inp.to(dt))  # (B, D, F', H', W')
        grid = tuple(h.shape[2:])
        h = h.flatten(2).transpose(1, 2).float()  # (B, L, D)
        angles = rope_angles(grid, cfg.head_dim)  # (L, d/2) float64 on CPU
        rope = (angles.cos().to(device, torch.float32), angles.sin().to(device, torch.float32))

        # float64 sinusoids on the CPU (not every accelerator has float64), then float32 on device
        e = _fp32_sequential(self.time_embedding, sinusoidal_embedding_1d(cfg.freq_dim, t).float().to(device))  # (B, D)
        e0 = _fp32_sequential(self.time_projection, e).unflatten(1, (6, cfg.dim))  # (B, 6, D)

        context = None
        if text is not None:
            pad = text.new_zeros(text.shape[0], cfg.text_len - text.shape[1], text.shape[2])
            context = self.text_embedding(torch.cat([text, pad], dim=1).to(device, dt))  # (B, text_len, D)
            context = context.expand(B, -1, -1)
        tokens = None
        if audio is not None:
            tokens = self.audio_embedding(audio.to(device, dt))  # (B, F, N_a, D)
            tokens = tokens.reshape(tokens.shape[0], grid[0], pt * audio.shape[2], cfg.dim)  # (B, F', pt·N_a, D)
            tokens = tokens.expand(B, -1, -1, -1)

        for block in self.blocks:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                h = checkpoint(block, h, e0, rope, context, tokens, use_reentrant=False)
            else:
                h = block(h, e0, rope, context, tokens)

        out = self.unpatchify(self.head(h, e), grid)  # (B, C, F, H, W)
        if cfg.prediction == "x0_residual":
            x0 = source.float() + out.float()  # x̂₀ = source + residual
            sigma = (t.to(device, torch.float32) / MAX_TIMESTEP).clamp_min(X0_MIN_SIGMA).view(-1, 1, 1, 1, 1)
            out = (x.float() - x0) / sigma  # the velocity of the linear path towards x̂₀
        return out.to(x.dtype)

    def unpatchify(self, x: torch.Tensor, grid: Tuple[int, int, int]) -> torch.Tensor:
        """(B, F'·H'·W', pt·ph·pw·C) -> (B, C, F'·pt, H'·ph, W'·pw)."""
        C, (pt, ph, pw), (f, h, w) = self.config.latent_channels, self.config.patch_size, grid
        x = x.reshape(x.shape[0], f, h, w, pt, ph, pw, C)
        x = torch.einsum("bfhwpqrc->bcfphqwr", x)  # (B, C, F', pt, H', ph, W', pw)
        return x.reshape(x.shape[0], C, f * pt, h * ph, w * pw)


def check_model_inputs(cfg, x, timestep, source, audio, text):
    """Validate a denoiser's inputs where they enter; return (t (B,), source, audio, text) ready to use.

    ``cfg`` is the model's config (DiTConfig or UNetConfig): latent_channels, patch_size,
    source_condition, audio_dim, use_text, text_len and text_dim are read.
    """
    C, (pt, ph, pw) = cfg.latent_channels, cfg.patch_size
    if not torch.is_tensor(x) or x.ndim != 5:
        got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise OmniSyncError(f"x must be latents (B, C, F, H, W), got {got}; add a batch axis with x[None].")
    B, Cx, Fx, H, W = x.shape
    if Cx != C:
        raise OmniSyncError(f"x has {Cx} channels but this model expects {C} latent channels; "
                            "encode the frames with the codec named in the checkpoint metadata.")
    if min(B, Fx, H, W) == 0:
        raise OmniSyncError(f"x has an empty axis: shape {tuple(x.shape)}; pass at least one frame of latents.")
    if Fx % pt or H % ph or W % pw:
        raise OmniSyncError(
            f"latent size F×H×W = {Fx}×{H}×{W} is not divisible by the patch size {cfg.patch_size}; "
            f"pad the frames so that latent H and W are multiples of {ph} and {pw} "
            "(omnisync_core.model.codec.pad_to_stride) and crop the result back."
        )

    t = torch.as_tensor(timestep).detach().to("cpu", torch.float64)
    if t.ndim == 0 or t.numel() == 1:
        t = t.reshape(1).expand(B)
    if t.shape != (B,):
        raise OmniSyncError(f"timestep must be (B,) = ({B},) or a scalar, got shape {tuple(t.shape)}.")
    if not bool(torch.isfinite(t).all()) or bool((t < 0).any()) or bool((t > MAX_TIMESTEP).any()):
        raise OmniSyncError(f"timestep must be finite and in [0, {MAX_TIMESTEP:g}] (= 1000·σ), got {t.tolist()}.")

    def batch_ok(name, tensor):
        if tensor.shape[0] not in (1, B):
            raise OmniSyncError(f"{name} has batch {tensor.shape[0]} but x has {B}; pass batch {B} or 1.")

    if cfg.source_condition:
        if source is None:
            raise OmniSyncError("this model is source-conditioned: pass source= latents (B, C, F, H, W) "
                                "of the reference frames, shaped like x.")
        if not torch.is_tensor(source) or source.ndim != 5 or tuple(source.shape[1:]) != tuple(x.shape[1:]):
            got = tuple(source.shape) if torch.is_tensor(source) else type(source).__name__
            raise OmniSyncError(f"source must be shaped like x (B, {C}, {Fx}, {H}, {W}), got {got}.")
        batch_ok("source", source)
        source = source.expand(B, -1, -1, -1, -1).to(x.dtype)
    elif source is not None:
        raise OmniSyncError("this model has no source conditioning (source_condition=False): pass source=None.")

    if audio is not None:
        if not cfg.audio_dim:
            raise OmniSyncError("this model has no audio branch (audio_dim=0): pass audio=None, or load an "
                                "OmniSync checkpoint trained with audio.")
        if not torch.is_tensor(audio) or audio.ndim != 4:
            got = tuple(audio.shape) if torch.is_tensor(audio) else type(audio).__name__
            raise OmniSyncError(f"audio must be tokens (B, F, N_a, audio_dim), got {got}; "
                                "build them with omnisync_core.audio.features.latent_audio_tokens.")
        batch_ok("audio", audio)
        if audio.shape[1] != Fx:
            raise OmniSyncError(f"audio has tokens for {audio.shape[1]} latent frames but x has {Fx}; "
                                "align the audio features to the same latent frames as x.")
        if audio.shape[2] == 0:
            raise OmniSyncError("audio has 0 tokens per frame; pass audio=None for no audio.")
        if audio.shape[3] != cfg.audio_dim:
            raise OmniSyncError(f"audio tokens have dim {audio.shape[3]} but this model expects {cfg.audio_dim}; "
                                "use the Whisper model (and layers) the checkpoint was trained with.")

    if text is not None:
        if not cfg.use_text:
            raise OmniSyncError("this model has no text branch (use_text=False): pass text=None.")
        if not torch.is_tensor(text) or text.ndim != 3:
            got = tuple(text.shape) if torch.is_tensor(text) else type(text).__name__
            raise OmniSyncError(f"text must be features (B, L, text_dim), got {got}; add a batch axis with text[None].")
        batch_ok("text", text)
        if text.shape[1] == 0:
            raise OmniSyncError("text has 0 tokens; pass text=None for no text.")
        if text.shape[1] > cfg.text_len:
            raise OmniSyncError(f"text has {text.shape[1]} tokens, more than this model's text_len "
                                f"{cfg.text_len}; truncate the prompt to {cfg.text_len} tokens.")
        if text.shape[2] != cfg.text_dim:
            raise OmniSyncError(f"text features have dim {text.shape[2]} but this model expects {cfg.text_dim} "
                                "(Wan 2.1: umT5-XXL, 4096); use the text encoder the model was trained with.")
    return t, source, audio, text
