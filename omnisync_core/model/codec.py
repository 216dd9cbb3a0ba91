"""Latent codecs: frames ↔ the latents the DiT denoises.

Layouts at every boundary:
    frames:  (T, H, W, 3) float in [0, 1]
    latents: (C, F, h, w) float, h = H / spatial_factor, w = W / spatial_factor,
             F = 1 + (T − 1) / temporal_factor (T must satisfy the codec's frame rule).

Two codecs share one contract (:class:`LatentCodec`):

* :class:`PixelCodec` — weight-free space-to-depth (``pixel_unshuffle``) of the frames mapped to
  [−1, 1]; temporal factor 1. Lets tiny models train and run without any VAE.
* :class:`VAECodec` — an adapter around an external video VAE, written for ComfyUI's
  ``comfy.sd.VAE`` holding Wan 2.1's causal 3D VAE (16 channels, 4× in time, 8× in space, frame rule
  T = 1 + 4k).

Neither codec pads or crops on its own: :func:`pad_to_stride` / :func:`crop_back` and
:func:`pad_frames_to_valid` do it explicitly and return what they added, so callers crop back.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from typing import Any, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..errors import OmniSyncError

WAN_LATENT_CHANNELS = 16
WAN_TEMPORAL_FACTOR = 4  # video frames per latent frame (after the first)
WAN_SPATIAL_FACTOR = 8  # pixels per latent pixel, each side


class LatentCodec(ABC):
    """frames (T, H, W, 3) in [0, 1] ↔ latents (C, F, h, w).

    Attributes:
        latent_channels: C.
        temporal_factor: video frames per latent frame; the first latent frame holds one frame
            (causal VAEs), so valid lengths are T = 1 + temporal_factor·k.
        spatial_factor: pixels per latent pixel on each side.
    """

    latent_channels: int
    temporal_factor: int
    spatial_factor: int

    @abstractmethod
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (T, H, W, 3) float in [0, 1] → latents (C, F, h, w)."""

    @abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents (C, F, h, w) → frames (T, H, W, 3) float in [0, 1], T = num_frames(F)."""

    # -- frame arithmetic (the one place the 1 + tf·k rule lives) --------------------------------

    def num_latent_frames(self, num_frames: int) -> int:
        """F for ``num_frames`` video frames padded to :meth:`valid_num_frames` (0 → 0)."""
        if num_frames < 0:
            raise OmniSyncError(f"a frame count cannot be negative, got {num_frames}.")
        if num_frames == 0:
            return 0
        return 1 + math.ceil((num_frames - 1) / self.temporal_factor)

    def num_frames(self, num_latent_frames: int) -> int:
        """T decoded from F latent frames: 1 + temporal_factor·(F − 1)."""
        if num_latent_frames < 1:
            raise OmniSyncError(f"need at least 1 latent frame, got {num_latent_frames}.")
        return 1 + self.temporal_factor * (num_latent_frames - 1)

    def valid_num_frames(self, num_frames: int) -> int:
        """Smallest valid frame count ≥ ``num_frames`` (T = 1 + temporal_factor·k)."""
        if num_frames < 1:
            raise OmniSyncError(f"need at least 1 frame, got {num_frames}.")
        return self.num_frames(self.num_latent_frames(num_frames))

    def is_valid_num_frames(self, num_frames: int) -> bool:
        return num_frames >= 1 and (num_frames - 1) % self.temporal_factor == 0

    # -- shared input checks ---------------------------------------------------------------------

    def _check_frames(self, frames: torch.Tensor) -> None:
        if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[-1] != 3:
            shape = tuple(frames.shape) if hasattr(frames, "shape") else type(frames).__name__
            raise OmniSyncError(
                f"{type(self).__name__}.encode expects frames as a (T, H, W, 3) tensor, got {shape}; "
                "run omnisync_core.io.frames.validate_frames first."
            )
        T, H, W = frames.shape[:3]
        if not self.is_valid_num_frames(T):
            raise OmniSyncError(
                f"{T} frames cannot be encoded: this codec needs T = 1 + {self.temporal_factor}·k frames; "
                f"pad to {self.valid_num_frames(max(T, 1))} with model.codec.pad_frames_to_valid "
                "(repeats the last frame) and crop the result back."
            )
        s = self.spatial_factor
        if H % s or W % s:
            raise OmniSyncError(
                f"frame size {H}×{W} (H×W) is not divisible by the codec's spatial factor {s}; pad with "
                "model.codec.pad_to_stride and crop the result back with crop_back."
            )

    def _check_latents(self, latents: torch.Tensor) -> None:
        if not isinstance(latents, torch.Tensor) or latents.ndim != 4:
            shape = tuple(latents.shape) if hasattr(latents, "shape") else type(latents).__name__
            raise OmniSyncError(f"{type(self).__name__}.decode expects latents (C, F, h, w), got {shape}.")
        if latents.shape[0] != self.latent_channels:
            raise OmniSyncError(
                f"{type(self).__name__}.decode got {latents.shape[0]} latent channels but the codec has "
                f"{self.latent_channels}; decode with the codec the latents were made with."
            )


class PixelCodec(LatentCodec):
    """Weight-free space-to-depth codec: C = 3·patch², temporal factor 1, values x ↦ 2x − 1.

    ``decode(encode(x))`` inverts exactly up to float32 rounding of the affine map (≤ 1 ulp of 1,
    ≈ 6e-8; bit-exact for values on a 1/256 grid); the rearrangement itself is a pure permutation.
    """

    def __init__(self, patch: int = 8):
        if not isinstance(patch, int) or patch < 1:
            raise OmniSyncError(f"pixel codec patch must be a positive integer, got {patch!r}.")
        self.patch = patch
        self.latent_channels = 3 * patch * patch
        self.temporal_factor = 1
        self.spatial_factor = patch

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        self._check_frames(frames)
        x = frames.permute(0, 3, 1, 2) * 2 - 1  # (T, 3, H, W) in [-1, 1]
        z = F.pixel_unshuffle(x, self.patch)  # (T, 3p², h, w)
        return z.permute(1, 0, 2, 3).contiguous()  # (C, F=T, h, w)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        self._check_latents(latents)
        x = F.pixel_shuffle(latents.permute(1, 0, 2, 3), self.patch)  # (T, 3, H, W)
        return ((x + 1) / 2).permute(0, 2, 3, 1).contiguous()  # (T, H, W, 3)

    def __repr__(self) -> str:
        return f"PixelCodec(patch={self.patch})"


class VAECodec(LatentCodec):
    """Adapter around an external video VAE (ComfyUI's ``comfy.sd.VAE`` of Wan 2.1).

    The wrapped object needs ``encode(images (T, H, W, 3) [0, 1]) -> (1, C, F, h, w)`` (or
    ``(C, F, h, w)``) and ``decode(latent (1, C, F, h, w)) -> (1, T, H, W, 3)`` (or ``(T, H, W, 3)``);
    both layouts are accepted. ``latents_mean`` / ``latents_std`` (length C), when given, normalise
    the VAE's raw latents to what the DiT was trained on: z = (raw − mean) / std.

    Decoded frames are clamped to [0, 1] (VAE decoders overshoot slightly at edges).
    """

    def __init__(
        self,
        vae: Any,
        latent_channels: int = WAN_LATENT_CHANNELS,
        temporal_factor: int = WAN_TEMPORAL_FACTOR,
        spatial_factor: int = WAN_SPATIAL_FACTOR,
        latents_mean: Optional[Sequence[float]] = None,
        latents_std: Optional[Sequence[float]] = None,
    ):
        if vae is None or not (hasattr(vae, "encode") and hasattr(vae, "decode")):
            raise OmniSyncError(
                "VAECodec needs a VAE object with encode() and decode(); connect a Wan 2.1 VAE "
                "(e.g. the output of ComfyUI's Load VAE node)."
            )
        for name, value in (("latent_channels", latent_channels), ("temporal_factor", temporal_factor),
                            ("spatial_factor", spatial_factor)):
            if not isinstance(value, int) or value < 1:
                raise OmniSyncError(f"VAECodec {name} must be a positive integer, got {value!r}.")
        self.vae = vae
        self.latent_channels = latent_channels
        self.temporal_factor = temporal_factor
        self.spatial_factor = spatial_factor
        self.latents_mean = self._per_channel(latents_mean, "latents_mean")
        self.latents_std = self._per_channel(latents_std, "latents_std")
        if self.latents_std is not None and bool((self.latents_std <= 0).any()):
            raise OmniSyncError("VAECodec latents_std must be positive in every channel.")

    def _per_channel(self, values, name: str) -> Optional[torch.Tensor]:
        if values is None:
            return None
        t = torch.as_tensor(values, dtype=torch.float32).flatten()
        if t.numel() != self.latent_channels:
            raise OmniSyncError(
                f"VAECodec {name} has {t.numel()} values but the VAE has {self.latent_channels} latent "
                "channels; pass one value per channel."
            )
        return t.view(-1, 1, 1, 1)  # (C, 1, 1, 1)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        self._check_frames(frames)
        T, H, W = frames.shape[:3]
        raw = torch.as_tensor(self.vae.encode(frames))
        if raw.ndim == 5 and raw.shape[0] == 1:
            raw = raw[0]
        expected = (self.latent_channels, self.num_latent_frames(T), H // self.spatial_factor,
                    W // self.spatial_factor)
        if tuple(raw.shape) != expected:
            raise OmniSyncError(
                f"the VAE encoded {T} frames of {H}×{W} to latents {tuple(raw.shape)}, expected (C, F, h, w) "
                f"= {expected}; connect the VAE the model was trained with (Wan 2.1: 16 channels, 4× in "
                "time, 8× in space)."
            )
        z = raw.float()  # (C, F, h, w)
        if self.latents_mean is not None:
            z = z - self.latents_mean.to(z.device)
        if self.latents_std is not None:
            z = z / self.latents_std.to(z.device)
        return z

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        self._check_latents(latents)
        z = latents.float()
        if self.latents_std is not None:
            z = z * self.latents_std.to(z.device)
        if self.latents_mean is not None:
            z = z + self.latents_mean.to(z.device)
        out = torch.as_tensor(self.vae.decode(z.unsqueeze(0)))  # (1, T, H, W, 3) or (T, H, W, 3)
        if out.ndim == 5 and out.shape[0] == 1:
            out = out[0]
        C, Fl, h, w = latents.shape
        expected = (self.num_frames(Fl), h * self.spatial_factor, w * self.spatial_factor, 3)
        if tuple(out.shape) != expected:
            raise OmniSyncError(
                f"the VAE decoded latents {tuple(latents.shape)} to {tuple(out.shape)}, expected frames "
                f"(T, H, W, 3) = {expected}; connect the VAE the model was trained with."
            )
        return out.float().clamp(0, 1)

    def __repr__(self) -> str:
        return (f"VAECodec(latent_channels={self.latent_channels}, temporal_factor={self.temporal_factor}, "
                f"spatial_factor={self.spatial_factor})")


# -- explicit padding helpers ---------------------------------------------------------------------


def pad_frames_to_valid(frames: torch.Tensor, codec: LatentCodec) -> Tuple[torch.Tensor, int]:
    """Repeat the last frame until T satisfies the codec's frame rule.

    frames: (T, H, W, C). Returns (frames (T', H, W, C), n_added) with T' = codec.valid_num_frames(T);
    crop the decoded result back with ``out[:T]``.
    """
    T = frames.shape[0]
    target = codec.valid_num_frames(T)
    added = target - T
    if added:
        frames = torch.cat([frames, frames[-1:].expand(added, *frames.shape[1:])], 0)
    return frames, added


def pad_to_stride(frames: torch.Tensor, stride: int, mode: str = "replicate") -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Pad bottom and right so H and W are divisible by ``stride`` (codec spatial factor × DiT patch).

    frames: (T, H, W, C). mode: "replicate" (edge pixels repeated) or "reflect" (falls back to
    replicate where the pad is not smaller than the side). Returns (frames, (pad_h, pad_w));
    undo with :func:`crop_back`.
    """
    if not isinstance(stride, int) or stride < 1:
        raise OmniSyncError(f"stride must be a positive integer, got {stride!r}.")
    if mode not in ("replicate", "reflect"):
        raise OmniSyncError(f"padding mode must be 'replicate' or 'reflect', got {mode!r}.")
    if frames.ndim != 4:
        raise OmniSyncError(f"pad_to_stride expects frames (T, H, W, C), got shape {tuple(frames.shape)}.")
    H, W = frames.shape[1:3]
    pad_h, pad_w = (-H) % stride, (-W) % stride
    if pad_h == 0 and pad_w == 0:
        return frames, (0, 0)
    if mode == "reflect" and (pad_h >= H or pad_w >= W):
        mode = "replicate"
    x = frames.permute(0, 3, 1, 2)  # (T, C, H, W)
    x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x.permute(0, 2, 3, 1).contiguous(), (pad_h, pad_w)


def crop_back(frames: torch.Tensor, pads: Tuple[int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_stride`: frames (T, H', W', ...) → (T, H' − pad_h, W' − pad_w, ...)."""
    pad_h, pad_w = pads
    H, W = frames.shape[1:3]
    return frames[:, : H - pad_h, : W - pad_w]


# -- from checkpoint metadata ---------------------------------------------------------------------


def _spec_dict(spec: Any) -> Mapping[str, Any]:
    if isinstance(spec, Mapping):
        return spec
    if hasattr(spec, "to_dict"):
        return spec.to_dict()
    if dataclasses.is_dataclass(spec):
        return dataclasses.asdict(spec)
    raise OmniSyncError(f"codec spec must be a dict like {{'type': 'pixel', 'patch': 8}}, got {type(spec).__name__}.")


def codec_from_spec(spec: Any, vae: Any = None) -> LatentCodec:
    """Build the codec a checkpoint names in its metadata.

    spec: {"type": "pixel", "patch": p} or {"type": "vae", "latent_channels": 16, "temporal_factor": 4,
    "spatial_factor": 8, "latents_mean": [...], "latents_std": [...]} (a CodecSpec dataclass works too);
    other keys are ignored. vae: the external VAE object, required for type "vae".
    """
    d = dict(_spec_dict(spec))
    kind = d.get("type")
    if kind == "pixel":
        codec = PixelCodec(int(d.get("patch", 8)))
        for key in ("latent_channels", "spatial_factor", "temporal_factor"):
            if d.get(key) is not None and int(d[key]) != getattr(codec, key):
                raise OmniSyncError(
                    f"checkpoint codec spec says {key}={d[key]} but a pixel codec with patch {codec.patch} has "
                    f"{getattr(codec, key)}; the checkpoint metadata is inconsistent — re-save it."
                )
        return codec
    if kind == "vae":
        if vae is None:
            raise OmniSyncError(
                "this checkpoint works in a VAE's latent space: connect a VAE (Wan 2.1 VAE) to the loader "
                "node, or pass vae= to codec_from_spec."
            )
        kwargs = {k: d[k] for k in ("latent_channels", "temporal_factor", "spatial_factor", "latents_mean",
                                     "latents_std") if d.get(k) is not None}
        return VAECodec(vae, **kwargs)
    raise OmniSyncError(f"unknown codec type {kind!r} in the checkpoint metadata; expected 'pixel' or 'vae'.")
