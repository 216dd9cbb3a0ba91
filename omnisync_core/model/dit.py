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

X-Dub's variant of the same network (the reference in the token sequence) is
:class:`~omnisync_core.model.xdub_dit.XDubDiT`, which reuses these blocks.

Inside, ``D`` is the model width, ``n``/``d`` the heads and head width, and the patch grid is
``(F', H', W') = (F/pt, H/ph, W/pw)`` with ``S = H'·W'`` tokens per frame and ``L = F'·S`` in total.
The residual stream and the adaLN modulation stay in float32 (as Wan runs them under autocast);
the linear layers run in the parameters' dtype.
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..errors import OmniSyncError
from ..sampling.schedule import NUM_TRAIN_TIMESTEPS, timestep_to_sigma
from .audio_proj import AudioProjection
from .config import X0_MIN_SIGMA, DiTConfig

ROPE_THETA = 10000.0
ROPE_CACHE_SIZE = 16  # RoPE tables kept (one per window grid and device)
SINUSOID_BASE = 10000.0
MAX_TIMESTEP = float(NUM_TRAIN_TIMESTEPS)  # the timestep of pure noise (σ = 1; sampling.schedule converts)


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


def rope_angles(grid: Tuple[int, int, int], head_dim: int, theta: float = ROPE_THETA,
                offset: Tuple[int, int, int] = (0, 0, 0)) -> torch.Tensor:
    """Rotation angles of the 3D RoPE for every (f, h, w) grid position: (F'·H'·W', head_dim / 2) float64.

    Each axis uses the 1D RoPE frequencies ``theta^(−2i / axis_dim)`` of its own channel share; the
    (f, h, w) angles are concatenated, exactly as Wan's ``rope_params`` + ``rope_apply``. Positions
    start at ``offset`` (X-Dub places its reference frames at (0, H', W')).
    """
    f, h, w = grid
    per_axis = []
    for n, start, axis_dim in zip(grid, offset, rope_split(head_dim)):
        inv_freq = 1.0 / torch.pow(theta, torch.arange(0, axis_dim, 2, dtype=torch.float64) / axis_dim)
        positions = torch.arange(start, start + n, dtype=torch.float64)
        per_axis.append(torch.outer(positions, inv_freq))  # (n, axis_dim / 2)
    a_f, a_h, a_w = per_axis
    angles = torch.cat([
        a_f[:, None, None].expand(f, h, w, -1),
        a_h[None, :, None].expand(f, h, w, -1),
        a_w[None, None, :].expand(f, h, w, -1),
    ], dim=-1)  # (F', H', W', d / 2)
    return angles.reshape(f * h * w, head_dim // 2)


@functools.lru_cache(maxsize=ROPE_CACHE_SIZE)
def rope_tables(grid: Tuple[int, int, int], head_dim: int, device: torch.device,
                offset: Tuple[int, int, int] = (0, 0, 0)) -> Tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) of :func:`rope_angles`, each (F'·H'·W', head_dim / 2) float32 on ``device``: computed in
    float64 on the CPU once per grid, offset and device (every window of a clip has the same grid), then reused."""
    angles = rope_angles(grid, head_dim, offset=offset)
    return angles.cos().to(device, torch.float32), angles.sin().to(device, torch.float32)


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


def modulate_groups(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN with one (shift, scale) per group of consecutive tokens.

    x: (B, L, D); shift, scale: (B, G, D), G dividing L (G = 1: one per sample; the sequence layout:
    one per latent frame). Returns (B, L, D).
    """
    B, L, D = x.shape
    G = shift.shape[1]
    return modulate(x.view(B, G, L // G, D), shift[:, :, None], scale[:, :, None]).view(B, L, D)


def gate_groups(y: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """y (B, L, D) times one gate (B, G, D) per group of consecutive tokens."""
    B, L, D = y.shape
    return (y.view(B, gate.shape[1], L // gate.shape[1], D) * gate[:, :, None]).view(B, L, D)


def no_autocast(device: torch.device):
    """Autocast off for ``device`` (the meta device, used to count FLOPs and memory, has no autocast)."""
    return torch.autocast(device_type="cpu" if device.type == "meta" else device.type, enabled=False)


def on(param: Optional[torch.Tensor], like: torch.Tensor, dtype: Optional[torch.dtype] = None):
    """``param`` on ``like``'s device (in ``dtype`` if given): a no-op where it already is. Weights read directly
    (norms, adaLN offsets, the head in float32) go through it, so a host that keeps some weights in CPU memory
    and casts each layer per call (ComfyUI's partial loading, see ``operations`` in :class:`OmniSyncDiT`) works."""
    return None if param is None else param.to(device=like.device, dtype=dtype)


def _fp32_sequential(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Run a Linear/activation stack in float32 whatever the parameter dtype (Wan's autocast(float32))."""
    x = x.float()
    with no_autocast(x.device):
        for layer in seq:
            x = F.linear(x, on(layer.weight, x, torch.float32), on(layer.bias, x, torch.float32)) \
                if isinstance(layer, nn.Linear) else layer(x)
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
        return (xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)).type_as(x) * on(self.weight, x)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 and returned in float32 (the residual stream's dtype)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = on(self.weight, x, torch.float32), on(self.bias, x, torch.float32)
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps)


# -- attention -------------------------------------------------------------------------------------

def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """PyTorch's fused attention on (B, L, n, d) q, k, v: (B, Lq, n, d)."""
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)


class SelfAttention(nn.Module):
    """Multi-head self-attention with RMS q/k norm and 3D RoPE (Wan's ``WanSelfAttention``)."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool, eps: float, device=None, dtype=None,
                 operations=nn):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.q = operations.Linear(dim, dim, **kw)
        self.k = operations.Linear(dim, dim, **kw)
        self.v = operations.Linear(dim, dim, **kw)
        self.o = operations.Linear(dim, dim, **kw)
        self.norm_q = RMSNorm(dim, eps, **kw) if qk_norm else nn.Identity()
        self.norm_k = RMSNorm(dim, eps, **kw) if qk_norm else nn.Identity()

    # the attention kernel, (q, k, v) (B, L, n, d) -> (B, L, n, d); an instance may replace it (model.parallel
    # gives the self-attention of each block a sequence-parallel one)
    attention = staticmethod(sdpa_attention)

    def attend(self, x: torch.Tensor, context: torch.Tensor, rope=None) -> torch.Tensor:
        B, Lq, D = x.shape
        Lk, n, d = context.shape[1], self.num_heads, self.head_dim
        q = self.norm_q(self.q(x)).view(B, Lq, n, d)
        k = self.norm_k(self.k(context)).view(B, Lk, n, d)
        v = self.v(context).view(B, Lk, n, d)
        if rope is not None:
            q, k = rope_apply(q, *rope), rope_apply(k, *rope)
        out = self.attention(q, k, v)  # (B, Lq, n, d)
        return self.o(out.reshape(B, Lq, D))  # (B, Lq, D)

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

# Names of the audio cross-attention's norm and attention in a block: OmniSync's own (X-Dub's checkpoint names
# them norm4 / audio_attn: model.xdub_dit.XDUB_AUDIO_NAMES).
OMNISYNC_AUDIO_NAMES = ("norm_audio", "audio_cross_attn")


class DiTBlock(nn.Module):
    """Wan's ``WanAttentionBlock`` (adaLN self-attn, text cross-attn, FFN) plus the audio cross-attn.

    ``index`` is the block's position (``config.audio_layers`` may give audio to some blocks only);
    ``audio_names`` the attribute names of the audio branch's norm and attention (the checkpoint's keys).
    """

    def __init__(self, cfg: DiTConfig, index: int = 0, device=None, dtype=None, operations=nn,
                 audio_names: Tuple[str, str] = OMNISYNC_AUDIO_NAMES):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        dim = cfg.dim
        self.norm1 = LayerNorm(dim, cfg.eps, elementwise_affine=False, **kw)
        self.self_attn = SelfAttention(dim, cfg.num_heads, cfg.qk_norm, cfg.eps, operations=operations, **kw)
        if cfg.use_text:
            self.norm3 = LayerNorm(dim, cfg.eps, elementwise_affine=True, **kw) if cfg.cross_attn_norm else nn.Identity()
            self.cross_attn = CrossAttention(dim, cfg.num_heads, cfg.qk_norm, cfg.eps, operations=operations, **kw)
        self.audio_names = audio_names if cfg.has_audio(index) else None
        if self.audio_names:
            norm_name, attn_name = self.audio_names
            self.add_module(norm_name, LayerNorm(dim, cfg.eps, elementwise_affine=True, **kw))
            self.add_module(attn_name, AudioCrossAttention(dim, cfg.num_heads, cfg.qk_norm, cfg.eps,
                                                           operations=operations, **kw))
        self.norm2 = LayerNorm(dim, cfg.eps, elementwise_affine=False, **kw)
        self.ffn = nn.Sequential(operations.Linear(dim, cfg.ffn_dim, **kw), nn.GELU(approximate="tanh"),
                                 operations.Linear(cfg.ffn_dim, dim, **kw))
        self.modulation = nn.Parameter(torch.empty(1, 6, dim, **kw))  # adaLN offsets, added to the time signal

    def forward(self, x, e, rope, text: Optional[torch.Tensor], audio: Optional[torch.Tensor],
                target_from: int = 0) -> torch.Tensor:
        # x: (B, L, D) float32; e: (B, G, 6, D) float32, the time signal of G equal groups of consecutive
        # tokens; text: (B, text_len, D); audio: (B, F', N, D). Text and audio act on x[:, target_from:].
        dt = self.modulation.dtype
        shift_sa, scale_sa, gate_sa, shift_ff, scale_ff, gate_ff = (on(self.modulation, e, torch.float32) + e).unbind(2)  # 6 × (B, G, D)
        y = self.self_attn(modulate_groups(self.norm1(x), shift_sa, scale_sa).to(dt), rope)
        x = x + gate_groups(y.float(), gate_sa)  # (B, L, D)
        if text is not None or (audio is not None and self.audio_names):
            x_ref, x_tgt = x[:, :target_from], x[:, target_from:]
            if text is not None:
                x_tgt = x_tgt + self.cross_attn(self.norm3(x_tgt).to(dt), text).float()
            if audio is not None and self.audio_names:
                norm, attn = (getattr(self, name) for name in self.audio_names)
                x_tgt = x_tgt + attn(norm(x_tgt).to(dt), audio).float()
            x = torch.cat([x_ref, x_tgt], dim=1) if target_from else x_tgt
        y = self.ffn(modulate_groups(self.norm2(x), shift_ff, scale_ff).to(dt))
        return x + gate_groups(y.float(), gate_ff)  # (B, L, D)


class Head(nn.Module):
    """Final adaLN norm + linear to one patch of latents per token (Wan's ``Head``)."""

    def __init__(self, dim: int, out_dim: int, patch_size, eps: float, device=None, dtype=None, operations=nn):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.norm = LayerNorm(dim, eps, elementwise_affine=False, **kw)
        self.head = operations.Linear(dim, math.prod(patch_size) * out_dim, **kw)
        self.modulation = nn.Parameter(torch.empty(1, 2, dim, **kw))

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        # x: (B, L, D) float32; e: (B, G, D) float32 time embedding of G equal groups of consecutive tokens
        with no_autocast(x.device):  # float32, as Wan's head
            shift, scale = (on(self.modulation, e, torch.float32) + e.unsqueeze(2)).unbind(2)  # 2 × (B, G, D)
            h = modulate_groups(self.norm(x), shift, scale)
            return F.linear(h, on(self.head.weight, h, torch.float32), on(self.head.bias, h, torch.float32))  # (B, L, pt·ph·pw·C)


# -- the model -------------------------------------------------------------------------------------

class OmniSyncDiT(nn.Module):
    """Wan 2.1 DiT with source-latent and per-frame audio conditioning.

    Args:
        config: sizes and switches (:class:`DiTConfig`).
        device, dtype: where the parameters are created and in which dtype (``"meta"`` builds a
            weightless skeleton, e.g. to list keys).
        operations: where the Linear and Conv3d layers come from (``torch.nn`` by default). A host passes its
            own, as ComfyUI builds Wan with ``operations=comfy.ops.…``: layers that cast their weights to the
            input's dtype and device per call, which ComfyUI's model management uses for weight dtypes (fp8)
            and for partial (low-VRAM) loading. The core never imports such a host; every weight read
            outside those layers goes through :func:`on`, so it follows the input's device.

    Set ``model.gradient_checkpointing = True`` to recompute each block in the backward pass while
    training (less memory, about one more forward of compute).
    """

    source_layout = "channels"  # the source latents enter on the channel axis (config.source_layout)
    audio_names = OMNISYNC_AUDIO_NAMES

    def __init__(self, config: DiTConfig, device=None, dtype=None, operations=nn):
        super().__init__()
        name = type(self).__name__
        if not isinstance(config, DiTConfig):
            raise OmniSyncError(f"{name} needs a DiTConfig, got {type(config).__name__}; "
                                "use omnisync_core.model.config.preset('tiny') or DiTConfig(...).")
        if config.source_layout != self.source_layout:
            other = "omnisync_core.model.xdub_dit.XDubDiT" if config.source_layout == "sequence" else \
                "omnisync_core.model.dit.OmniSyncDiT"
            raise OmniSyncError(f"this config's source layout is {config.source_layout!r} but {name} takes "
                                f"{self.source_layout!r}; build it with {other}.")
        self.config = cfg = config
        self.gradient_checkpointing = False
        kw = dict(device=device, dtype=dtype)
        dim = cfg.dim

        # embeddings
        ops = operations
        self.patch_embedding = ops.Conv3d(cfg.in_channels, dim, kernel_size=cfg.patch_size, stride=cfg.patch_size, **kw)
        if cfg.use_text:
            self.text_embedding = nn.Sequential(ops.Linear(cfg.text_dim, dim, **kw), nn.GELU(approximate="tanh"),
                                                ops.Linear(dim, dim, **kw))
        if cfg.audio_proj is not None:
            self.audio_embedding = AudioProjection(cfg.audio_proj, dim, operations=ops, **kw)
        elif cfg.audio_dim:
            self.audio_embedding = nn.Sequential(ops.Linear(cfg.audio_dim, dim, **kw), nn.GELU(approximate="tanh"),
                                                 ops.Linear(dim, dim, **kw))
        self.time_embedding = nn.Sequential(ops.Linear(cfg.freq_dim, dim, **kw), nn.SiLU(), ops.Linear(dim, dim, **kw))
        self.time_projection = nn.Sequential(nn.SiLU(), ops.Linear(dim, 6 * dim, **kw))

        self.blocks = nn.ModuleList([DiTBlock(cfg, i, audio_names=self.audio_names, operations=ops, **kw)
                                     for i in range(cfg.num_layers)])
        self.head = Head(dim, cfg.latent_channels, cfg.patch_size, cfg.eps, operations=ops, **kw)
        if self.head.head.weight.device.type != "meta":  # a weightless skeleton has nothing to initialise
            self.init_weights()

    def init_weights(self) -> None:
        """Wan 2.1's initialisation, plus the zero-inits that make the OmniSync additions no-ops."""
        cfg = self.config
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    if m.bias is not None:
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
                if block.audio_names:
                    attn = getattr(block, block.audio_names[1])
                    nn.init.zeros_(attn.o.weight)
                    nn.init.zeros_(attn.o.bias)
            self.head.modulation.copy_(torch.randn(self.head.modulation.shape) / cfg.dim ** 0.5)
            # zero output layer (Wan): a fresh model predicts v = 0
            nn.init.zeros_(self.head.head.weight)

    # -- forward -----------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, timestep, source: Optional[torch.Tensor] = None,
                audio: Optional[torch.Tensor] = None, text: Optional[torch.Tensor] = None,
                motion_frames: int = 0) -> torch.Tensor:
        """Velocity for noisy latents.

        Args:
            x: (B, C, F, H, W) noisy latents; F divisible by patch t, H and W by patch h and w.
            timestep: (B,) (or a scalar / (1,), broadcast) in [0, 1000] = 1000·σ (X-Dub's network also
                takes (B, F), one timestep per latent frame).
            source: (B, C, F, H, W) source latents; required when ``config.source_condition``.
            audio: (B, F, N_a, audio_dim) tokens per latent frame, or None to skip the audio branch.
                With ``config.audio_proj`` (X-Dub) these are the raw windows, N_a <= max_window.
            text: (B, L, text_dim), L <= text_len, or None to skip the text cross-attention. As in
                Wan 2.1, the features are zero-padded to ``text_len`` tokens before embedding.
            source, audio and text with batch 1 are broadcast to B.
            motion_frames: X-Dub's network only (0 here).
        Returns:
            (B, C, F, H, W) velocity in x's dtype.
        Raises:
            OmniSyncError for any input of the wrong shape, size or kind (checked before any compute).
        """
        cfg = self.config
        t, source, audio, text = check_model_inputs(cfg, x, timestep, source, audio, text, motion_frames,
                                                    sequence=self.source_layout == "sequence")
        B = x.shape[0]
        pt = cfg.patch_size[0]
        dt = self.patch_embedding.weight.dtype
        device = x.device  # where the host put the inputs (the weights may wait elsewhere, cast per layer)

        h, grid, rope, t_groups, target_from = self.embed_tokens(x, t, source)

        # The time signal per group of consecutive tokens (t_groups (B, G)). Float64 sinusoids on the CPU (not
        # every accelerator has float64), then float32 on device.
        G = t_groups.shape[1]
        sinusoids = sinusoidal_embedding_1d(cfg.freq_dim, t_groups.flatten()).float().to(device)  # (B·G, freq_dim)
        e = _fp32_sequential(self.time_embedding, sinusoids).view(B, G, cfg.dim)  # (B, G, D)
        e0 = _fp32_sequential(self.time_projection, e).unflatten(-1, (6, cfg.dim))  # (B, G, 6, D)

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
                h = checkpoint(block, h, e0, rope, context, tokens, target_from, use_reentrant=False)
            else:
                h = block(h, e0, rope, context, tokens, target_from)

        e_target = e[:, target_from * G // h.shape[1]:]  # the time groups of the target tokens
        out = self.unpatchify(self.head(h[:, target_from:], e_target), grid)  # (B, C, F, H, W)
        if cfg.prediction == "x0_residual":
            x0 = source.float() + out.float()  # x̂₀ = source + residual
            sigma = timestep_to_sigma(t.to(device, torch.float32)).clamp_min(X0_MIN_SIGMA).view(-1, 1, 1, 1, 1)
            out = (x.float() - x0) / sigma  # the velocity of the linear path towards x̂₀
        return out.to(x.dtype)

    def embed_tokens(self, x: torch.Tensor, t: torch.Tensor, source: Optional[torch.Tensor]):
        """The token sequence: (h (B, L, D) float32, the target's patch grid (F', H', W'), RoPE (cos, sin) of
        the L tokens, time groups t_groups (B, G) (G equal runs of consecutive tokens, one timestep each),
        index of the first target token). Here: the source on the channel axis, one time group per sample."""
        inp = torch.cat([x, source], dim=1) if self.config.source_condition else x  # (B, C_in, F, H, W)
        h = self.patch_embedding(inp.to(self.patch_embedding.weight.dtype))  # (B, D, F', H', W')
        grid = (h.shape[2], h.shape[3], h.shape[4])
        return h.flatten(2).transpose(1, 2).float(), grid, self.rope(grid, x.device), t[:, None], 0

    def rope(self, grid: Tuple[int, int, int], device: torch.device, offset: Tuple[int, int, int] = (0, 0, 0)):
        """(cos, sin) of the 3D RoPE of ``grid`` (F'·H'·W', d/2) each, float32 on ``device`` (the inputs')."""
        tables = rope_tables.__wrapped__ if torch.compiler.is_compiling() else rope_tables  # compiled: traced once
        return tables(grid, self.config.head_dim, device, offset)

    def unpatchify(self, x: torch.Tensor, grid: Tuple[int, int, int]) -> torch.Tensor:
        """(B, F'·H'·W', pt·ph·pw·C) -> (B, C, F'·pt, H'·ph, W'·pw)."""
        C, (pt, ph, pw), (f, h, w) = self.config.latent_channels, self.config.patch_size, grid
        x = x.reshape(x.shape[0], f, h, w, pt, ph, pw, C)
        x = torch.einsum("bfhwpqrc->bcfphqwr", x)  # (B, C, F', pt, H', ph, W', pw)
        return x.reshape(x.shape[0], C, f * pt, h * ph, w * pw)


def check_model_inputs(cfg, x, timestep, source, audio, text, motion_frames: int = 0, sequence: bool = False):
    """Validate a denoiser's inputs where they enter; return (t, source, audio, text) ready to use.

    ``cfg`` is the model's config (DiTConfig or UNetConfig): latent_channels, patch_size,
    source_condition, audio_dim, use_text, text_len and text_dim are read, and audio_proj where present.
    ``sequence``: the network takes the source in the token sequence (X-Dub's :class:`.xdub_dit.XDubDiT`).
    t is (B,) float64 on the CPU, or with ``sequence`` (B, F) (one per latent frame, the first
    ``motion_frames`` set to 0).
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
    per_frame = sequence and t.shape == (B, Fx)
    if t.shape != (B,) and not per_frame:
        also = f", or (B, F) = ({B}, {Fx}) per latent frame" if sequence else ""
        raise OmniSyncError(f"timestep must be (B,) = ({B},) or a scalar{also}, got shape {tuple(t.shape)}.")
    # value checks read the tensor (a graph break under torch.compile): they run eagerly, where input enters
    if not torch.compiler.is_compiling() and (
            not bool(torch.isfinite(t).all()) or bool((t < 0).any()) or bool((t > MAX_TIMESTEP).any())):
        raise OmniSyncError(f"timestep must be finite and in [0, {MAX_TIMESTEP:g}] (= 1000·σ), got {t.tolist()}.")
    if not isinstance(motion_frames, int) or motion_frames < 0:
        raise OmniSyncError(f"motion_frames must be an int >= 0, got {motion_frames!r}.")
    if motion_frames and not sequence:
        raise OmniSyncError("motion_frames needs a sequence-layout (X-Dub) model; this model takes motion_frames=0.")
    if sequence:
        if motion_frames >= Fx:
            raise OmniSyncError(f"motion_frames={motion_frames} leaves no frame to generate in {Fx} latent frames; "
                                f"pass fewer than {Fx}.")
        t = (t if per_frame else t[:, None].expand(B, Fx)).clone()  # (B, F)
        t[:, :motion_frames] = 0.0  # motion frames are clean

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
        proj = getattr(cfg, "audio_proj", None)
        if proj is not None and audio.shape[2] > proj.max_window:
            raise OmniSyncError(f"audio has windows of {audio.shape[2]} tokens per frame, more than the "
                                f"{proj.max_window} this model's audio projection has positions for; use the "
                                "window size the model was trained with.")

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
