"""OmniSync U-Net: a pixel-space flow-matching editor for small, CPU-trainable models.

The bundled model's network. It keeps OmniSync's method — mask-free direct editing of the source
frames, flow matching with progressive init, DS-CFG on the audio — and changes only the denoiser:
a convolutional U-Net that works at pixel resolution instead of a DiT over 8×8 pixel patches. On the
small budget of a CPU a DiT whose 192-wide tokens each carry 16×16×3 pixels could not draw a mouth
(its samples kept the source mouth); convolutions spend their compute per pixel, where lips are.

Top-down:

* :class:`AudioAdapter` turns the per-frame audio tokens (all Whisper hidden states of ±w frames)
  into one feature vector per frame, plus a linear read-out of the renderer's mouth parameters that
  training may supervise (``TrainConfig.aux_mouth_weight``); inference never reads it.
* :class:`ResBlock`: GroupNorm → SiLU → 3×3 conv, twice, with FiLM (scale, shift) from the frame's
  condition (audio features + timestep features) between the two convolutions.
* :class:`OmniSyncUNet`: stem over ``[x_σ, source]``, one level per entry of ``channels`` (each half
  the resolution of the previous), a middle block, the mirror path up with skip connections, and a
  zero-initialised output convolution: x̂₀ = source + residual, so a fresh model returns the source.

Frames are denoised independently (2D convolutions over ``B·F`` images); time enters through the
audio window of each frame. Layout at the boundary is the DiT's::

    x, source: (B, C, F, H, W) latents (C = 3: PixelCodec(patch=1), values 2·pixel − 1)
    timestep: (B,) in [0, 1000]       audio: (B, F, N_a, audio_dim) or None       text: None
    returns the velocity v = (x − x̂₀)/max(σ, X0_MIN_SIGMA): (B, C, F, H, W)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import OmniSyncError
from .config import X0_MIN_SIGMA, _from_dict
from ..sampling.schedule import timestep_to_sigma
from .dit import check_model_inputs, sinusoidal_embedding_1d

GROUPS = 8  # GroupNorm groups (fewer when a level has fewer channels)


@dataclass
class UNetConfig:
    """Sizes of :class:`OmniSyncUNet`.

    latent_channels: C of the frames it edits (3: pixel codec with patch 1).
    channels: width of each resolution level, full resolution first; H and W must be divisible by
        2^(len(channels) − 1) (reported as ``patch_size``, the pipeline pads to it).
    audio_dim: width of one audio token (Whisper hidden states stacked: audio_layers × layer width).
    audio_layers: how many hidden states one token stacks (each is layer-normalised on its own:
        Whisper's deeper layers are far larger in scale than its first ones).
    audio_tokens: N_a, tokens per frame (1 + 2·frame_window of the audio spec).
    adapter_dim: width of the per-frame audio feature and of the FiLM condition's audio part.
    freq_dim: width of the sinusoidal timestep features.
    mouth_params: outputs of the adapter's mouth-parameter read-out (0 = none; training aid only).
    """

    latent_channels: int = 3
    channels: Tuple[int, ...] = (24, 48, 96)
    audio_dim: int = 1920
    audio_layers: int = 5
    audio_tokens: int = 5
    adapter_dim: int = 128
    freq_dim: int = 64
    mouth_params: int = 5

    # the model interface the pipeline and sampler read (shared with DiTConfig)
    use_text = False
    text_dim = 0
    text_len = 0
    source_condition = True
    prediction = "x0_residual"

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        checks = [
            (self.latent_channels >= 1 and len(self.channels) >= 1 and min(self.channels) >= 1,
             "latent_channels and every entry of channels must be >= 1"),
            (self.audio_dim >= 1 and self.audio_layers >= 1 and self.audio_dim % self.audio_layers == 0,
             "audio_dim must be a positive multiple of audio_layers"),
            (self.audio_tokens >= 1 and self.adapter_dim >= 1, "audio_tokens and adapter_dim must be >= 1"),
            (self.freq_dim >= 2 and self.freq_dim % 2 == 0, "freq_dim must be even and >= 2"),
            (self.mouth_params >= 0, "mouth_params must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise OmniSyncError(f"bad U-Net config: {message}.")

    @property
    def patch_size(self) -> Tuple[int, int, int]:
        """(1, s, s): the spatial multiple H and W must have (one halving per level below the first)."""
        s = 2 ** (len(self.channels) - 1)
        return (1, s, s)

    @property
    def audio_width(self) -> int:
        return self.audio_dim // self.audio_layers

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "UNetConfig":
        return _from_dict(cls, d, "U-Net config")


def _norm(channels: int, operations=nn) -> nn.GroupNorm:
    return operations.GroupNorm(min(GROUPS, channels), channels)


class AudioAdapter(nn.Module):
    """(N, N_a, audio_dim) audio tokens of N frames -> (N, adapter_dim) features, (N, mouth_params) read-out."""

    def __init__(self, cfg: UNetConfig, operations=nn):
        super().__init__()
        ops = operations
        self.layers, width, dim = cfg.audio_layers, cfg.audio_width, cfg.adapter_dim
        self.norm = ops.LayerNorm(width)
        self.proj = ops.Linear(cfg.audio_dim, dim)
        self.temporal = ops.Conv1d(dim, dim, kernel_size=3, padding=1)
        self.mix = nn.Sequential(nn.SiLU(), ops.Linear(dim * cfg.audio_tokens, dim), nn.SiLU(), ops.Linear(dim, dim))
        self.read_out = ops.Linear(dim, cfg.mouth_params) if cfg.mouth_params else None

    def forward(self, tokens: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        N, n_a, _ = tokens.shape
        h = self.norm(tokens.reshape(N, n_a, self.layers, -1)).flatten(2)   # (N, N_a, audio_dim)
        h = self.proj(h).transpose(1, 2)                                    # (N, dim, N_a)
        h = h + self.temporal(F.silu(h))                                    # (N, dim, N_a)
        a = self.mix(h.flatten(1))                                          # (N, dim)
        return a, (self.read_out(a) if self.read_out is not None else None)


class ResBlock(nn.Module):
    """Two 3×3 convolutions with a FiLM of the frame condition between them; 1×1 skip when widths differ."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int, operations=nn):
        super().__init__()
        ops = operations
        self.norm1, self.conv1 = _norm(c_in, ops), ops.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = _norm(c_out, ops), ops.Conv2d(c_out, c_out, 3, padding=1)
        self.film = ops.Linear(cond_dim, 2 * c_out)
        self.skip = ops.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))                               # (N, c_out, H, W)
        scale, shift = self.film(cond)[:, :, None, None].chunk(2, dim=1)    # (N, c_out, 1, 1) each
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(F.silu(h))


class OmniSyncUNet(nn.Module):
    """The pixel-space OmniSync editor; ``forward`` has the DiT's signature and returns a velocity.

    operations: where the Linear, convolution and norm layers come from (``torch.nn`` by default); a host passes its
    own, as ComfyUI's ``comfy.ops`` (see ``operations`` in :class:`~omnisync_core.model.dit.OmniSyncDiT`): every
    weight is in such a layer, and the forward computes on the input's device.
    """

    frames_independent = True  # each frame is processed on its own: any split of the frames gives the same output

    def __init__(self, config: UNetConfig, operations=nn):
        super().__init__()
        self.config = cfg = config
        ops = operations
        ch = cfg.channels
        cond = cfg.adapter_dim + cfg.freq_dim
        self.audio_adapter = AudioAdapter(cfg, ops)
        self.time_embedding = nn.Sequential(ops.Linear(cfg.freq_dim, cfg.freq_dim), nn.SiLU(),
                                            ops.Linear(cfg.freq_dim, cfg.freq_dim))
        self.stem = ops.Conv2d(2 * cfg.latent_channels, ch[0], 3, padding=1)
        self.down = nn.ModuleList(ResBlock(ch[max(i - 1, 0)], c, cond, ops) for i, c in enumerate(ch))
        self.downsample = nn.ModuleList(ops.Conv2d(c, c, 3, stride=2, padding=1) for c in ch[:-1])
        self.middle = ResBlock(ch[-1], ch[-1], cond, ops)
        self.upsample = nn.ModuleList(ops.Conv2d(ch[i + 1], ch[i], 3, padding=1) for i in range(len(ch) - 1))
        self.up = nn.ModuleList(ResBlock(2 * c, c, cond, ops) for c in ch[:-1])
        self.out_norm = _norm(ch[0], ops)
        self.out = ops.Conv2d(ch[0], cfg.latent_channels, 3, padding=1)
        self.gradient_checkpointing = False  # the trainer sets it; nothing to checkpoint at this size

        # ZERO output convolution: a fresh model returns x̂₀ = source, the identity edit.
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def swap_blocks(self) -> list:
        """The residual blocks in the order forward runs them (down, middle, up from the deepest): the unit of
        block swap (``model.offload``)."""
        return [*self.down, self.middle, *reversed(self.up)]

    def forward(self, x: torch.Tensor, timestep, source: Optional[torch.Tensor] = None,
                audio: Optional[torch.Tensor] = None, text: Optional[torch.Tensor] = None,
                mouth_at: Optional[torch.Tensor] = None):
        """Velocity for noisy frames (arguments as :meth:`OmniSyncDiT.forward`).

        ``audio=None`` is the unconditional input, the zero tokens that condition dropout trains on.
        With ``mouth_at`` (training only; its values are not used) the pair (velocity, the adapter's
        mouth-parameter read-out (B, F, mouth_params) float32) is returned.
        """
        cfg = self.config
        t, source, audio, _ = check_model_inputs(cfg, x, timestep, source, audio, text)
        B, C, Fr, H, W = x.shape
        # where the host put the inputs (the weights may wait elsewhere, cast per layer), in the weights' dtype
        device, dt = x.device, self.stem.weight.dtype
        if audio is None:
            audio = x.new_zeros(1, Fr, cfg.audio_tokens, cfg.audio_dim)
        if audio.shape[2] != cfg.audio_tokens:
            raise OmniSyncError(f"audio has {audio.shape[2]} tokens per frame but this model takes "
                                f"{cfg.audio_tokens} (1 + 2·frame_window of its audio spec).")
        a, params = self.audio_adapter(audio.expand(B, -1, -1, -1).reshape(B * Fr, cfg.audio_tokens, -1).to(device, dt))
        e = self.time_embedding(sinusoidal_embedding_1d(cfg.freq_dim, t).to(device, dt))   # (B, freq_dim)
        cond = torch.cat([a, e.repeat_interleave(Fr, dim=0)], dim=1)                        # (B·F, cond)

        frames = lambda v: v.transpose(1, 2).reshape(B * Fr, C, H, W)  # noqa: E731  (B, C, F, H, W) -> (B·F, C, H, W)
        h = self.stem(torch.cat([frames(x), frames(source)], dim=1).to(device, dt))         # (B·F, ch0, H, W)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, cond)
            if i < len(self.downsample):
                skips.append(h)
                h = self.downsample[i](h)                                                   # half resolution
        h = self.middle(h, cond)
        for i in reversed(range(len(self.up))):
            h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))       # (B·F, ch_i, ·2, ·2)
            h = self.up[i](torch.cat([h, skips[i]], dim=1), cond)
        residual = self.out(F.silu(self.out_norm(h)))                                       # (B·F, C, H, W)
        residual = residual.reshape(B, Fr, C, H, W).transpose(1, 2)                         # (B, C, F, H, W)

        x0 = source.float() + residual.float()                                              # x̂₀ = source + edit
        sigma = timestep_to_sigma(t.to(device, torch.float32)).clamp_min(X0_MIN_SIGMA).view(-1, 1, 1, 1, 1)
        v = ((x.float() - x0) / sigma).to(x.dtype)
        if mouth_at is None:
            return v
        if params is None:
            raise OmniSyncError("mouth_at is for models with a mouth read-out (UNetConfig.mouth_params > 0).")
        return v, params.float().reshape(B, Fr, -1)
