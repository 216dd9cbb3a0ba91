"""Lip-sync frames to speech: the stages every front end shares and the one engine that runs them.

One file (about 680 lines) because the stages and the engine are one contract: the engine runs the stage
functions below on runs of frames, the split nodes on the whole clip, and both must say and compute the same.

**The engine**, :meth:`OmniSyncPipeline.stream`: every front end runs it (the CLI and ``api.sync_video_file`` with
a video reader and writers as sink; ``pipe(frames, ...)`` — the Python API and the Lip Sync node — with frames in
memory and a sink that collects the output). One window of latent frames at a time (the one window loop,
``sampling.sampler.sample_windows``): with a frame-by-frame codec (the bundled pixel codec) each window's source
frames are read and encoded when it is reached and each run of finished frames is decoded, assembled and written
at once, so memory does not grow with the clip; a codec that groups frames (a temporal VAE) is encoded and
decoded whole inside the same loop. Speech features come one 30 s Whisper chunk at a time
(:class:`.stream.ChunkedFrameFeatures`).

**The stages**, top-down; each split ComfyUI node runs the ones named in brackets on the whole clip:

1. :func:`prepare_audio` — speech to 16 kHz mono, matched to the output length the caller chose:
   which source frame each output frame shows.                                        [Audio Encode]
2. :func:`encode_speech` — Whisper features aligned to every output frame.              [Audio Encode]
3. :meth:`OmniSyncPipeline.encode_video` — the planned frames, padded to the model's stride and the
   codec's frame rule (both cropped back in 6), encoded to latents.                      [Noise Init]
4. :meth:`OmniSyncPipeline.init` — progressive noise init (Eq. 5) and the truncated schedule. [Noise Init]
5. :meth:`OmniSyncPipeline.sample` — the model's audio layers, audio tokens over the whole clip, the
   windowed DS-CFG sampler (``sampling.sampler.sample_windowed``), its guidance map, mouth centres
   and fallback frames brought back to video frames (:func:`run_to_frames`).              [Sampler]
6. :func:`assemble` — decode, then :func:`assemble_frames` (the engine's too): crop the padding back,
   pass through the frames where no mouth was found, optional composite outside the mouth. [Video Assemble]

Every adjustment made to the caller's data (resampling, averaging channels, looping or trimming to match
lengths, padding to the model's stride and cropping back, frames passed through) is said once through the
``on_warning(message)`` callback and kept in the report's ``"warnings"``. The pipeline knows nothing of
ComfyUI; it works with any model that exposes ``config`` (latent_channels, audio_dim, patch_size, use_text,
text_dim) and ``forward(x, timestep, source, audio, text) -> velocity``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from ..audio.features import (
    SAMPLE_RATE_HZ,
    AudioFeatureSpec,
    align_features_to_frames,
    latent_audio_tokens,
    latent_frame_groups,
    to_mono_16k,
    validate_audio,
    wave_stats,
)
from ..image.composite import composite_outside_mouth, mouth_region_mask
from ..image.domain import DOMAIN_FRAMES, domain_check_for
from ..errors import OmniSyncError
from ..io.fps import exact_fps
from ..io.audio import SpeechFile
from ..io.frames import validate_frames
from .checks import (
    WarningCallback,
    check_clip_length,
    check_frame_size,
    check_sampling_bounds,
    training_warnings,
    warn,
)
from ..model.codec import crop_back, pad_frames_to_valid, pad_to_stride
from ..progress import CancelCheck, ProgressCallback
from ..sampling.guidance import GuidanceConfig, temporal_weight
from ..sampling.mouth import DEFAULT_MOUTH_CENTRE, centres_from_mask, centres_from_point, fill_missing
from ..sampling.noise_init import progressive_noise_init
from ..sampling.options import SyncOptions
from ..sampling.sampler import Run, WindowInput, compute_placement, plan_latent_windows, sample_windowed, sample_windows
from ..sampling.schedule import FlowMatchSchedule
from ..length import LengthPlan, apply_audio_plan, match_lengths
from .stream import (ChunkedFrameFeatures, FrameSink, FrameSource, TensorFrames, as_unit, audio_layers_for,
                     to_uint8)

__all__ = ["OmniSyncPipeline", "SyncOptions", "SyncResult", "EncodedVideo", "Sampled", "prepare_audio",
           "encode_speech", "select_audio_layers", "assemble"]


@dataclass
class EncodedVideo:
    """The source clip as the model sees it (stage 3).

    frames: (T, H, W, 3) float in [0, 1], the source frames after the length plan, unpadded (what
        fallback frames and the composite take their pixels from).
    source: (C, F, h, w) float32 latents of the padded clip (on the CPU).
    pads: (pad_h, pad_w) pixels added at the bottom / right; frames_added: copies of the last frame
        appended for the codec's frame rule. frame_indices: (T,) long, which input frame each row of
        ``frames`` is (None: all, in order).
    """

    frames: torch.Tensor
    source: torch.Tensor
    pads: Tuple[int, int]
    frames_added: int
    frame_indices: Optional[torch.Tensor] = None
    report: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


@dataclass
class Sampled:
    """The sampler's result (stage 5).

    latents: (C, F, h, w) float32 on the CPU; guidance_map: (T, H, W) in [0, 1], where the DS-CFG
    weight was strongest at the first step; mouth_centres: (T, 2) frame fractions (x, y);
    fallback_frames: video frames where no mouth was found (assembled from the source, unchanged).
    """

    latents: torch.Tensor
    guidance_map: torch.Tensor
    mouth_centres: torch.Tensor
    fallback_frames: List[int]
    report: dict


@dataclass
class SyncResult:
    """frames: (T, H, W, 3) float in [0, 1]; waveform: (N,) float at ``sample_rate`` (16 kHz mono);
    guidance_map: (T, H, W) in [0, 1], where the DS-CFG map was strongest at the first step."""

    frames: torch.Tensor
    fps: float
    waveform: torch.Tensor
    sample_rate: int
    guidance_map: torch.Tensor
    mouth_centres: torch.Tensor  # (T, 2) frame fractions (x, y)
    report: dict


# -- stages without a model: audio in, frames out ------------------------------------------------------


CLIPPED_LEVEL = 0.999  # |sample| at or above this counts as full scale
CLIPPED_FRACTION = 1e-3  # more full-scale samples than this fraction: the speech is clipped (warned)


def audio_conversion_warnings(waveform, sample_rate: int) -> List[str]:
    """What ``to_mono_16k`` changes about a waveform ((N,), (C, N) or (B, C, N) at ``sample_rate``): one line each."""
    shape = tuple(waveform.shape) if hasattr(waveform, "shape") else tuple(torch.as_tensor(waveform).shape)
    channels = shape[-2] if len(shape) >= 2 else 1
    out = []
    if len(shape) == 3 and shape[0] > 1:
        out.append(f"the audio is a batch of {shape[0]} clips: only the first is used.")
    if channels > 1:
        out.append(f"{channels} audio channels averaged to mono.")
    if int(sample_rate) != SAMPLE_RATE_HZ:
        out.append(f"speech resampled from {int(sample_rate)} Hz to {SAMPLE_RATE_HZ} Hz (Whisper's rate).")
    return out


def prepare_audio(num_frames: int, fps: float, waveform, sample_rate: int, length_mode: str,
                  on_warning: Optional[WarningCallback] = None) -> Tuple[LengthPlan, torch.Tensor]:
    """Stage 1. Any waveform ((N,), (C, N) or (B, C, N) at ``sample_rate``) → (plan, wave16k (N16,)).

    ``plan.frame_indices`` (T_out,) says which of the ``num_frames`` source frames each output frame
    shows; ``wave16k`` is 16 kHz mono, trimmed or padded with silence to exactly T_out frames at fps.
    Speech shorter than the video's minimum length (``validate.check_clip_length``) is refused;
    resampling, averaging channels, clipping and a length change of a frame or more are warned.
    """
    fps_exact = exact_fps(fps)
    if isinstance(waveform, SpeechFile):  # 16 kHz mono on disk (streaming runs): used where it lies
        if int(sample_rate) != SAMPLE_RATE_HZ:
            raise OmniSyncError(f"a SpeechFile holds {SAMPLE_RATE_HZ} Hz mono speech; got sample_rate {sample_rate}.")
        wave = waveform
    else:
        wave = to_mono_16k(waveform, sample_rate)
    validate_audio(wave)
    check_clip_length(fps_exact, num_frames=num_frames, audio_seconds=wave.shape[0] / SAMPLE_RATE_HZ)
    say = on_warning or (lambda message: None)
    for message in audio_conversion_warnings(waveform, sample_rate):
        say(message)
    stats = wave_stats(wave, CLIPPED_LEVEL)  # block by block: no second copy of a long speech
    full = stats["at_level"]
    if full > CLIPPED_FRACTION * wave.shape[0]:
        say(f"the speech is clipped: {full} of {wave.shape[0]} samples at or beyond full scale "
            f"(peak {stats['peak']:.2f}); features may be off: lower its gain before the clipping stage.")
    plan = match_lengths(num_frames, fps, wave.shape[0], SAMPLE_RATE_HZ, length_mode)
    frame_samples = SAMPLE_RATE_HZ / float(fps_exact)
    if plan.frame_indices.shape[0] != num_frames or abs(plan.num_samples - wave.shape[0]) >= frame_samples:
        say(plan.message + ".")
    return plan, apply_audio_plan(wave, plan)


def encode_speech(encoder, wave16k: torch.Tensor, fps: float, num_frames: int) -> Tuple[torch.Tensor, Dict]:
    """Stage 2. wave16k (N,) → (features (num_frames, L·D) float32, layer-major, alignment info).

    encoder: a Whisper feature extractor (``audio.whisper.load_whisper``), L hidden states of width D.
    """
    if encoder is None:
        raise OmniSyncError("this model listens to speech: load a Whisper encoder (omnisync_core.audio.whisper."
                            "load_whisper, or the model's own via omnisync_core.api.load_runtime).")
    if isinstance(wave16k, SpeechFile):  # the in-memory stages encode the whole clip at once
        wave16k = wave16k[0:len(wave16k)]
    feats = encoder.encode(wave16k)  # (N_feat, L, D) at 50 Hz
    return align_features_to_frames(feats, fps, num_frames, silence_feature=encoder.silence_feature())


def conversion_warnings(frame_info: Dict) -> List[str]:
    """``media.validate_frames``' conversions that change what the user sees (alpha dropped, grayscale
    replicated, values clamped) as warning lines; plain uint8/uint16 scaling is not one."""
    return [f"frames: {c}." for c in frame_info["conversions"] if not c.startswith(("uint8", "uint16"))]


def select_audio_layers(frame_features: torch.Tensor, num_layers: int, audio_dim: int) -> torch.Tensor:
    """(T, L·D) layer-major features → (T, audio_dim): the last audio_dim / D layers, the ones a model
    trained on ``audio_dim``-wide tokens saw."""
    T, width = frame_features.shape
    if num_layers < 1 or width % num_layers:
        raise OmniSyncError(f"features of width {width} cannot be {num_layers} layers; pass (T, L·D) features "
                            "with their number of layers L.")
    dim = width // num_layers
    k = audio_layers_for(num_layers, dim, audio_dim)
    return frame_features.reshape(T, num_layers, dim)[:, -k:].reshape(T, k * dim)


def plan_mouth_mask(mask: torch.Tensor, num_frames: int, frame_indices: Optional[torch.Tensor]) -> torch.Tensor:
    """A mouth mask → (num_frames, H, W) float, one per output frame.

    Accepted: (H, W) or (1, H, W) for every frame; (num_frames, H, W) one per output frame; or one per
    source frame, picked by ``frame_indices`` (the length plan).
    """
    mask = torch.as_tensor(mask).float().cpu()
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3:
        raise OmniSyncError(f"the mouth mask must be (T, H, W) or (H, W), got shape {tuple(mask.shape)}.")
    if mask.shape[0] == 1:
        return mask.expand(num_frames, -1, -1)
    if mask.shape[0] == num_frames:
        return mask
    if frame_indices is not None and mask.shape[0] > int(frame_indices.max()):
        return mask[frame_indices]
    raise OmniSyncError(f"the mouth mask has {mask.shape[0]} frames; give one mask, one per source frame, or one "
                        f"per output frame ({num_frames}).")


def frame_mouth_centres(mouth: Union[str, Sequence[float]], mouth_mask: Optional[torch.Tensor],
                        num_frames: int) -> Tuple[Optional[torch.Tensor], Dict]:
    """Per output frame (x, y) mouth centres from a mask (num_frames, H, W) or a point; None = automatic."""
    if mouth_mask is not None:
        centres, found = centres_from_mask(mouth_mask)
        centres, fill_report = fill_missing(centres, found, DEFAULT_MOUTH_CENTRE)
        return centres, {"source": "mask", **fill_report}
    if isinstance(mouth, str):
        if mouth != "auto":
            raise OmniSyncError(f"mouth must be 'auto' or an (x, y) point in [0, 1], got {mouth!r}.")
        return None, {"source": "auto"}
    return centres_from_point(tuple(mouth), num_frames), {"source": "point"}


def assemble_frames(decoded: torch.Tensor, source: torch.Tensor, pads: Tuple[int, int],
                    fallback_frames: Sequence[int] = (), mouth_centres: Optional[torch.Tensor] = None,
                    composite: bool = False, composite_radius: float = SyncOptions.composite_radius,
                    composite_feather_px: float = SyncOptions.composite_feather_px) -> torch.Tensor:
    """Stage 6 on a run of n frames: decoded (n, H_p, W_p, 3) → frames (n, H, W, 3) float32 in [0, 1] on the CPU.

    Crops the padding of stage 3 back, gives ``fallback_frames`` (indices into the run) the ``source`` pixels
    ((n, H, W, 3) float in [0, 1]), and with ``composite`` keeps every pixel outside a feathered disc around
    ``mouth_centres`` (n, 2) from the source.
    """
    frames = crop_back(decoded, pads)
    source = source.to(frames.device, frames.dtype)
    fallback = list(fallback_frames)
    if fallback:  # no mouth located there: those frames are passed through unchanged
        frames[fallback] = source[fallback]
    if composite:
        if mouth_centres is None:
            raise OmniSyncError("no mouth centres are known for compositing; sample first (any mouth mode).")
        mask = mouth_region_mask(mouth_centres, frames.shape[1], frames.shape[2], radius=composite_radius,
                                 feather_px=composite_feather_px)
        frames = composite_outside_mouth(frames, source, mask)
    return frames.clamp(0, 1).float().cpu().contiguous()


def assemble(codec, latents: torch.Tensor, video: EncodedVideo, fallback_frames: Sequence[int] = (),
             mouth_centres: Optional[torch.Tensor] = None, composite: bool = False,
             composite_radius: float = SyncOptions.composite_radius,
             composite_feather_px: float = SyncOptions.composite_feather_px) -> torch.Tensor:
    """Stage 6 for a whole sampled clip (the split Video Assemble node): latents (C, F, h, w) → frames
    (T, H, W, 3) float32 in [0, 1] on the CPU, by :func:`assemble_frames`."""
    return assemble_frames(codec.decode(latents)[: video.num_frames], video.frames, video.pads, fallback_frames,
                           mouth_centres, composite, composite_radius, composite_feather_px)


def normalise_map(gmap: torch.Tensor, value_range: Optional[Tuple[float, float]] = None,
                  inplace: bool = False) -> torch.Tensor:
    """Guidance weight → [0, 1] for display: by ``value_range`` (lo, hi) when given (clamped), else by the
    map's own range (0 at its minimum, 1 at its peak). ``inplace`` reuses ``gmap``'s memory."""
    lo, hi = value_range if value_range is not None else (gmap.amin(), gmap.amax())
    if float(hi - lo) < 1e-8:
        return gmap.zero_() if inplace else torch.zeros_like(gmap)
    out = gmap.sub_(lo).div_(hi - lo) if inplace else (gmap - lo) / (hi - lo)
    return out.clamp_(0, 1) if value_range is not None else out


def guidance_range(guidance: GuidanceConfig, tau: float) -> Tuple[float, float]:
    """The DS-CFG weight's range at the first step (σ = τ): ω_base·τ^γ … ω_peak·τ^γ (a stream's display scale)."""
    lo = min(guidance.omega_base, guidance.omega_peak) * temporal_weight(tau, guidance.gamma)
    hi = max(guidance.omega_base, guidance.omega_peak) * temporal_weight(tau, guidance.gamma)
    return lo, hi


def padding_warnings(H: int, W: int, pads: Tuple[int, int], stride: int, frames_added: int) -> List[str]:
    """What stage 3's padding does to the frames, one line each (said by every path that pads)."""
    out = []
    if any(pads):
        out.append(f"frames are {W}×{H}: padded to {W + pads[1]}×{H + pads[0]} (edge pixels repeated) for the model's "
                   f"{stride}-pixel stride, cropped back to {W}×{H} after decoding.")
    if frames_added:
        out.append(f"{frames_added} copies of the last frame appended for the codec's frame rule, removed after "
                   "decoding.")
    return out


def fallback_warning(fallback: Sequence[int], num_frames: int) -> str:
    """The line said when the automatic mouth search found no mouth in some frames."""
    shown = ", ".join(str(t) for t in fallback[:8]) + (", ..." if len(fallback) > 8 else "")
    return (f"no mouth found in {len(fallback)} of {num_frames} frames ({shown}): passed through unchanged from the "
            "source; give the mouth as a point (--mouth x,y) or a mask to edit them.")


def latent_of_frames(num_frames: int, temporal_factor: int) -> torch.Tensor:
    """(num_frames,) long: the latent frame holding each (codec-padded) video frame."""
    groups = latent_frame_groups(num_frames, temporal_factor)  # (F, r)
    of_latent = torch.empty(num_frames, dtype=torch.long)
    of_latent[groups] = torch.arange(groups.shape[0])[:, None]
    return of_latent


def latent_centres(frame_centres: torch.Tensor, frames_added: int, temporal_factor: int) -> torch.Tensor:
    """Per-frame mouth centres (T, 2) → per latent frame (F, 2): the mean over each latent frame's group."""
    padded = torch.cat([frame_centres, frame_centres[-1:].expand(frames_added, 2)], 0)
    return padded[latent_frame_groups(padded.shape[0], temporal_factor)].mean(1)


def run_to_frames(run: Run, of_latent: torch.Tensor, H: int, W: int,
                  pads: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor, List[int]]:
    """A run of sampled latent frames → its video frames' (guidance weight (n, H, W), mouth centres (n, 2),
    fallback frames as indices into the n frames); ``of_latent`` (n,): each frame's latent frame in the run."""
    gmap = F.interpolate(run.guidance_map[of_latent][:, None], size=(H + pads[0], W + pads[1]), mode="bilinear",
                         align_corners=False)[:, 0, :H, :W]
    lost = set(run.fallback_frames)
    fallback = [t for t in range(of_latent.shape[0]) if run.start + int(of_latent[t]) in lost]
    return gmap, run.centres[of_latent], fallback


# -- the model's stages and the whole call -------------------------------------------------------------


class OmniSyncPipeline:
    """Lip-sync frames to speech with one OmniSync model.

    Args:
        model: the network, in eval mode, already on ``device`` (``forward(x, timestep, source, audio,
            text) -> v``; ``config`` with latent_channels, audio_dim, patch_size, use_text, text_dim).
        codec: a ``LatentCodec`` (pixel codec or VAE adapter) with the model's latent channels.
        audio_encoder: a Whisper feature extractor; only :meth:`__call__` needs it.
        device: where the model runs: the current window is moved there and the network called there (default:
            the device of its first parameter, which is wrong when that layer is one ComfyUI left in CPU memory).
        dtype: the model's compute precision: the audio tokens and the text go in it, x and the source in float32
            (the network's fp32 islands) (default: its first parameter's dtype).
        frame_window: w, neighbouring frames on each side a latent frame's audio tokens also hold: the
            checkpoint's ``audio.frame_window`` (default: the audio encoder's spec, else 2).
        meta: the checkpoint metadata; its ``train`` fps and size are compared with the input's (a warning
            when far off).
    """

    def __init__(self, model, codec, audio_encoder=None, device=None, dtype: Optional[torch.dtype] = None,
                 frame_window: Optional[int] = None, meta: Optional[Dict] = None):
        self.model = model
        self.meta = meta
        self.codec = codec
        self.audio_encoder = audio_encoder
        self.device, self.dtype = compute_placement(model, device, dtype)
        cfg = model.config
        if codec.latent_channels != cfg.latent_channels:
            raise OmniSyncError(
                f"the codec gives {codec.latent_channels} latent channels but the model expects "
                f"{cfg.latent_channels}; use the codec named in the checkpoint metadata."
            )
        if cfg.audio_dim and audio_encoder is not None:  # fail at load time, not after the first stages
            audio_layers_for(audio_encoder.spec.num_layers, audio_encoder.spec.dim, cfg.audio_dim)
        if frame_window is None:
            frame_window = (audio_encoder.spec if audio_encoder is not None else AudioFeatureSpec()).frame_window
        self.frame_window = int(frame_window)

    def domain_warning(self, frames) -> Optional[str]:
        """A warning when ``frames`` (the clip's first ones) do not look like the checkpoint's training data,
        by the check its metadata carries (``"domain"``, :mod:`..image.domain`); None otherwise or without one."""
        check = domain_check_for(self.meta)
        return check.warning(frames) if check is not None else None

    def encode_video(self, frames, frame_indices: Optional[torch.Tensor] = None, fps: Optional[float] = None,
                     on_warning: Optional[WarningCallback] = None) -> EncodedVideo:
        """Stage 3. frames (T_src, H, W, 3) (any layout ``io.frames.validate_frames`` takes) → EncodedVideo.

        frame_indices: the length plan's (T,) source frame per output frame (None: every frame once).
        fps: the video's, compared with the model's training fps (None: not compared).
        Pads H, W to the codec's spatial factor × the model's patch, and T to the codec's frame rule
        (both removed again in :func:`assemble`, and warned).
        """
        frames, frame_info = validate_frames(frames)
        report = {"frames": frame_info}
        H, W = frames.shape[1:3]
        check_frame_size(H, W)
        for message in conversion_warnings(frame_info):
            warn(report, on_warning, message)
        for message in training_warnings(self.meta, fps, (H, W)):
            warn(report, on_warning, message)
        domain = self.domain_warning(frames[:DOMAIN_FRAMES])
        if domain:
            warn(report, on_warning, domain)
        if frame_indices is not None:
            if int(frame_indices.max()) >= frames.shape[0]:
                raise OmniSyncError(
                    f"the length plan was made for {int(frame_indices.max()) + 1}+ source frames but "
                    f"{frames.shape[0]} were given; plan the audio with the same frames."
                )
            frames = frames[frame_indices]
        source, pads, added = self._encode(frames)
        report["padding"] = {"spatial": pads, "frames_added": added}
        for message in padding_warnings(H, W, pads, self.stride, added):
            warn(report, on_warning, message)
        return EncodedVideo(frames=frames, source=source, pads=pads, frames_added=added,
                            frame_indices=frame_indices, report=report)

    @property
    def stride(self) -> int:
        """Pixels the frame size must divide: the codec's spatial factor × the model's patch."""
        _, ph, pw = self.model.config.patch_size
        return self.codec.spatial_factor * math.lcm(ph, pw)

    def _encode(self, frames: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int], int]:
        """frames (n, H, W, 3) float in [0, 1] → (latents (C, F, h, w) float32 on the CPU, spatial pads, frames
        appended for the codec's frame rule)."""
        frames_p, pads = pad_to_stride(frames, self.stride)
        frames_p, added = pad_frames_to_valid(frames_p, self.codec)
        return self.codec.encode(frames_p).float().cpu(), pads, added

    def init(self, video: EncodedVideo, tau: float, num_steps: int, shift: float = SyncOptions.shift,
             seed: int = SyncOptions.seed) -> Tuple[torch.Tensor, torch.Tensor]:
        """Stage 4. (x_init (C, F, h, w) float32 = (1 − τ)·source + τ·ε (Eq. 5), noise seeded per latent
        frame; sigmas (S + 1,): the points of a ``num_steps`` schedule from τ down to 0)."""
        check_sampling_bounds(num_steps, shift, tau, {})  # the split nodes' settings, before any compute
        sigmas = FlowMatchSchedule(num_steps, shift).truncate(tau)
        return progressive_noise_init(video.source, tau, seed=seed), sigmas

    def sample(
        self,
        x_init: torch.Tensor,
        video: EncodedVideo,
        sigmas: torch.Tensor,
        frame_features: Optional[torch.Tensor],
        num_layers: int,
        guidance: Optional[GuidanceConfig] = None,
        mouth: Union[str, Sequence[float]] = SyncOptions.mouth,
        mouth_mask: Optional[torch.Tensor] = None,
        window: int = SyncOptions.window,
        overlap: int = SyncOptions.overlap,
        text: Optional[torch.Tensor] = None,
        progress: Optional[ProgressCallback] = None,
        cancel: Optional[CancelCheck] = None,
        on_warning: Optional[WarningCallback] = None,
    ) -> Sampled:
        """Stage 5 for a whole encoded clip (the split Sampler node): denoise it with DS-CFG in windows.

        Args:
            x_init, sigmas: from :meth:`init`; video: from :meth:`encode_video`.
            frame_features: (T, L·D) speech features per output frame from :func:`encode_speech`
                (``num_layers`` = L); the model's last layers are taken. None for a model without audio.
            guidance: DS-CFG (Eqs. 7–9); mouth: "auto" or an (x, y) point; mouth_mask: see
                :func:`plan_mouth_mask` (overrides ``mouth``).
            window, overlap: latent frames per window (0 = whole clip) and shared by neighbours.
            text: (L_text, text_dim) or None.
        """
        cfg = self.model.config
        T, added = video.num_frames, video.frames_added
        tokens = None
        if cfg.audio_dim:
            if frame_features is None:
                raise OmniSyncError("this model listens to speech: pass the speech features (encode_speech).")
            feats = select_audio_layers(torch.as_tensor(frame_features).float(), num_layers, cfg.audio_dim)
            if feats.shape[0] != T:
                raise OmniSyncError(f"the speech covers {feats.shape[0]} frames but the video holds {T}; plan the "
                                    "video with the speech's length plan (frame_indices).")
            tokens = self.audio_tokens(feats, added)
        centres, mouth_report = self.mouth_plan(mouth, mouth_mask, T, video.frame_indices, added)
        latents, gmap, rep = sample_windowed(
            self.model, x_init, video.source, tokens, text, sigmas, guidance or GuidanceConfig(), centres, window,
            overlap, progress=progress, cancel=cancel, device=self.device, dtype=self.dtype,
        )
        of_latent = latent_of_frames(T + added, self.codec.temporal_factor)[:T]
        H, W = video.frames.shape[1:3]
        run = Run(0, latents, gmap, rep["centres"], rep["fallback_frames"])
        frame_map, frame_centres, fallback = run_to_frames(run, of_latent, H, W, video.pads)
        if fallback:
            mouth_report["fallback_frames"] = fallback
        report = {"mouth": mouth_report, "windows": rep["windows"], "steps": (len(sigmas) - 1) * len(rep["windows"]),
                  "forward_passes": rep["forward_passes"], "uncond_passes": rep["uncond_passes"]}
        if fallback:
            warn(report, on_warning, fallback_warning(fallback, T))
        return Sampled(latents=latents, guidance_map=normalise_map(frame_map), mouth_centres=frame_centres,
                       fallback_frames=fallback, report=report)

    def audio_tokens(self, feats: torch.Tensor, frames_added: int) -> torch.Tensor:
        """(T, audio_dim) features of the clip's frames → (F, N_a, K) tokens per latent frame; the frames
        appended for the codec's frame rule hear the last frame's speech."""
        if frames_added:
            feats = torch.cat([feats, feats[-1:].expand(frames_added, -1)], 0)
        return latent_audio_tokens(feats, self.codec.temporal_factor, self.frame_window)

    def mouth_plan(self, mouth, mouth_mask, num_frames: int, frame_indices: Optional[torch.Tensor],
                   frames_added: int) -> Tuple[Union[str, torch.Tensor], Dict]:
        """("auto" or (F, 2) mouth centres per latent frame, mouth report) for ``num_frames`` output frames."""
        if mouth_mask is not None:
            mouth_mask = plan_mouth_mask(mouth_mask, num_frames, frame_indices)
        frame_centres, report = frame_mouth_centres(mouth, mouth_mask, num_frames)
        if frame_centres is None:
            return "auto", report
        return latent_centres(frame_centres, frames_added, self.codec.temporal_factor), report

    @torch.no_grad()
    def stream(self, source: FrameSource, fps: float, waveform, sample_rate: int, write: FrameSink,
               options: Optional[SyncOptions] = None, progress: Optional[ProgressCallback] = None,
               cancel: Optional[CancelCheck] = None, start: Optional[Callable[[int, torch.Tensor], None]] = None,
               on_warning: Optional[WarningCallback] = None, raw_guidance: bool = False) -> Dict:
        """The engine: lip-sync ``source`` to the speech; finished frames go to ``write`` in order.

        One window of latent frames at a time (:func:`..sampling.sampler.sample_windows`): with a frame-by-frame
        codec (temporal factor 1, the bundled pixel codec) each window's source frames are read and encoded when
        it is reached, and each run of frames is decoded, assembled and written as soon as no later window
        overlaps it, so memory does not grow with the clip. A codec that groups frames (a temporal VAE) encodes
        and decodes the whole clip at once: the same windows, written in one run at the end.

        Args:
            source: the source frames (:class:`.stream.FrameSource`, e.g. ``io.video.VideoReader``).
            fps: frame rate of the source; waveform, sample_rate: the speech (any layout ``prepare_audio`` takes).
            write: receives (output, source, guidance map, mouth centres) for each finished run of frames
                (output and source in the source's kind: uint8, or float32 in [0, 1]).
            start: called once before sampling with (T_out, wave16k): the output length and the speech as planned.
            on_warning: receives each warning line as it arises; the lines are also in the report's ``"warnings"``.
            raw_guidance: pass the DS-CFG weight map itself to ``write`` (for a caller that holds the whole map and
                scales it by its observed range, :func:`normalise_map`), instead of scaling it by its range at
                the first step (:func:`guidance_range`).

        Returns the run report (as ``SyncResult.report``).
        """
        opts = options or SyncOptions()
        check_sampling_bounds(opts.num_steps, opts.shift, opts.tau,
                              {"omega_base": opts.guidance.omega_base, "omega_peak": opts.guidance.omega_peak})
        codec, cfg = self.codec, self.model.config
        t0 = time.perf_counter()
        rep: Dict = {"warnings": []}

        def note(message: str) -> None:
            warn(rep, on_warning, message)

        H, W = source.size
        check_frame_size(H, W)
        for message in training_warnings(self.meta, fps, (H, W)):
            note(message)
        if domain_check_for(self.meta) is not None:  # only then are the first frames read twice
            domain = self.domain_warning(source.read(torch.arange(min(DOMAIN_FRAMES, source.num_frames))))
            if domain:
                note(domain)
        plan, wave16k = prepare_audio(source.num_frames, fps, waveform, sample_rate, opts.length_mode, on_warning=note)
        T = int(plan.frame_indices.shape[0])
        if start is not None:  # the sink opens (its writers start) as early as the output's length is known
            start(T, wave16k)
        features = None
        if cfg.audio_dim:
            if self.audio_encoder is None:
                raise OmniSyncError("this model listens to speech: give the pipeline a Whisper encoder "
                                    "(omnisync_core.api.load_runtime loads the model's own).")
            features = ChunkedFrameFeatures(self.audio_encoder, wave16k, fps, self.audio_encoder.spec.num_layers,
                                            cfg.audio_dim)
        r = codec.temporal_factor
        added = codec.valid_num_frames(T) - T
        pads = (-H % self.stride, -W % self.stride)
        for message in padding_warnings(H, W, pads, self.stride, added):
            note(message)
        centres, mouth_report = self.mouth_plan(opts.mouth, opts.mouth_mask, T, plan.frame_indices, added)
        sigmas = FlowMatchSchedule(opts.num_steps, opts.shift).truncate(opts.tau)
        of_latent = latent_of_frames(T + added, r)
        windows = plan_latent_windows(int(of_latent[-1]) + 1, opts.window, opts.overlap)
        shown_range = None if raw_guidance else guidance_range(opts.guidance, opts.tau)
        fw = self.frame_window
        fallback: List[int] = []
        held = {"frames": None, "first": 0}  # source frames read and not yet written: [first, first + n)

        def window_centres(s: int, e: int):
            return centres if isinstance(centres, str) else centres[s:e]

        if r == 1:  # frame by frame: read, encode and write window by window
            def window_input(s: int, e: int) -> WindowInput:
                have = held["frames"]
                end = held["first"] + (0 if have is None else have.shape[0])
                new = source.read(plan.frame_indices[end:e])
                held["frames"] = new if have is None else torch.cat([have, new])
                win = held["frames"][s - held["first"]:e - held["first"]]
                src_lat = self._encode(as_unit(win))[0]  # (C, n, h, w)
                tokens = None
                if features is not None:
                    lo, hi = max(0, s - fw), min(T, e + fw)
                    tokens = latent_audio_tokens(features.frames(lo, hi), 1, fw)[s - lo:e - lo]
                x_init = progressive_noise_init(src_lat, opts.tau, seed=opts.seed, frame_offset=s)
                return WindowInput(x_init, src_lat, tokens, window_centres(s, e))
        else:  # the codec groups frames: encode the whole clip, sample it in windows, decode it whole
            held["frames"] = source.read(plan.frame_indices)
            whole_lat = self._encode(as_unit(held["frames"]))[0]
            whole_init = progressive_noise_init(whole_lat, opts.tau, seed=opts.seed)
            whole_tokens = self.audio_tokens(features.frames(0, T), added) if features is not None else None

            def window_input(s: int, e: int) -> WindowInput:
                return WindowInput(whole_init[:, s:e], whole_lat[:, s:e],
                                   whole_tokens[s:e] if whole_tokens is not None else None, window_centres(s, e))

        def emit(run: Run, first: int, of_run: torch.Tensor) -> None:
            """Write frames [first, first + n) of ``run``; of_run (n,): each frame's latent frame in the run."""
            n = of_run.shape[0]
            src = held["frames"][first - held["first"]:first - held["first"] + n]
            gmap, frame_centres, lost = run_to_frames(run, of_run, H, W, pads)
            out = assemble_frames(codec.decode(run.latents)[:n], as_unit(src), pads, lost, frame_centres,
                                  opts.composite, opts.composite_radius, opts.composite_feather_px)
            if shown_range is not None:
                gmap = normalise_map(gmap, shown_range, inplace=True)
            write(to_uint8(out) if src.dtype == torch.uint8 else out, src, gmap, frame_centres)
            fallback.extend(first + t for t in lost)
            held["frames"] = held["frames"][first - held["first"] + n:]
            held["first"] = first + n

        sampled: Dict = {}
        runs = sample_windows(self.model, windows, window_input, opts.text, sigmas, opts.guidance, sampled,
                              progress=progress, cancel=cancel, device=self.device, dtype=self.dtype)
        if r == 1:
            for run in runs:
                emit(run, run.start, torch.arange(run.num_frames))
        else:
            parts = list(runs)
            emit(Run(0, torch.cat([p.latents for p in parts], 1), torch.cat([p.guidance_map for p in parts]),
                     torch.cat([p.centres for p in parts]), sampled["fallback_frames"]), 0, of_latent[:T])
        if fallback:
            mouth_report["fallback_frames"] = fallback
            note(fallback_warning(fallback, T))
        return {"warnings": rep["warnings"], "length": plan.message, "frames": T,
                "padding": {"spatial": pads, "frames_added": added}, "mouth": mouth_report,
                "windows": sampled["windows"], "steps": (sigmas.numel() - 1) * len(sampled["windows"]),
                "forward_passes": sampled["forward_passes"], "uncond_passes": sampled["uncond_passes"],
                "streamed": r == 1, "seconds": round(time.perf_counter() - t0, 3)}

    @torch.no_grad()
    def __call__(
        self,
        frames,
        fps: float,
        waveform,
        sample_rate: int,
        options: Optional[SyncOptions] = None,
        progress: Optional[ProgressCallback] = None,
        cancel: Optional[CancelCheck] = None,
        on_warning: Optional[WarningCallback] = None,
    ) -> SyncResult:
        """Every stage, for frames in memory: :meth:`stream` with a sink that collects the output. frames
        (T, H, W, 3) in [0, 1]; fps of the video; waveform (N,), (C, N) or (B, C, N) at ``sample_rate``.
        Beside the input only the output frames and the guidance map are held whole. Each warning goes to
        ``on_warning(message)`` as it arises and into ``result.report["warnings"]``."""
        t0 = time.perf_counter()
        said: Dict = {"warnings": []}

        def note(message: str) -> None:
            warn(said, on_warning, message)

        frames, frame_info = validate_frames(frames)  # float32 frames are used as they are (no copy)
        for message in conversion_warnings(frame_info):
            note(message)
        H, W = frames.shape[1:3]
        held: Dict = {"done": 0}

        def start(T: int, wave16k: torch.Tensor) -> None:
            held.update(frames=torch.empty(T, H, W, 3), guidance=torch.empty(T, H, W), centres=torch.empty(T, 2),
                        wave=wave16k)

        def collect(out, _src, gmap, centres) -> None:
            a, b = held["done"], held["done"] + out.shape[0]
            held["frames"][a:b], held["guidance"][a:b], held["centres"][a:b] = out, gmap, centres
            held["done"] = b

        report = self.stream(TensorFrames(frames), fps, waveform, sample_rate, collect, options, progress=progress,
                             cancel=cancel, start=start, on_warning=note, raw_guidance=True)
        report["warnings"] = said["warnings"]  # the conversions' and, through note, the run's
        report["seconds"] = round(time.perf_counter() - t0, 3)
        return SyncResult(frames=held["frames"], fps=fps, waveform=held["wave"], sample_rate=SAMPLE_RATE_HZ,
                          guidance_map=normalise_map(held["guidance"], inplace=True), mouth_centres=held["centres"],
                          report=report)
