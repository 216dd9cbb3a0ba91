"""Dub a face clip with X-Dub's weights: the stages every front end shares, and one call running them all.

The stages, top-down (the ComfyUI nodes run them one per node, the CLI and :meth:`XDubPipeline.__call__`
in a row):

1. :meth:`XDubPipeline.encode` — the speech's features (Whisper ‖ wav2vec2, :mod:`.audio.xdub_features`),
   the take's length (the speech's, at 25 fps, in 77-frame clips every 72 frames: :func:`.sampling.xdub.
   plan_clips`), the face frames ping-ponged to it, each clip's reference latents through the codec
   and its audio windows.                                                                  [X-Dub Encode]
2. :meth:`XDubPipeline.sample` — clip by clip, three-pass guidance with τ and DS-CFG on the audio term
   (:func:`.sampling.xdub.sample_clips`); between clips the last 5 frames are decoded, colour-matched and
   re-encoded as the next clip's motion latents, as the reference does; the clips are joined.  [X-Dub Sampler]
3. :meth:`XDubPipeline.assemble` — decode the take, keep the speech's frames, colour-match to the
   reference and fade the crop's border into it.                                          [X-Dub Assemble]

Frames are face crops, (T, H, W, 3) float in [0, 1] with H and W multiples of 32 (512 × 512 for the
published weights); cropping and pasting back is :mod:`.facecrop`'s job. Video runs at 25 fps, the
rate X-Dub was trained at. Nothing here knows ComfyUI: the codec is any :class:`~.model.codec.LatentCodec`
with Wan 2.2 latents (:func:`.model.wan22_vae.wan22_codec`), the model any X-Dub network
(``model(x, timestep, source, audio, text, motion_frames) -> v`` with a ``config``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch

from ..audio.features import SAMPLE_RATE_HZ, to_mono_16k
from ..image.composite import blend_border, color_correct
from ..errors import OmniSyncError
from ..io.fps import exact_fps
from ..io.frames import validate_frames
from ..progress import CancelCheck, ProgressCallback, check_cancel, report
from ..sampling.mouth import centres_from_point
from ..length import pingpong_indices
from ..sampling.xdub import (
    MOTION_FRAMES,
    XDUB_FPS,
    ClipPlan,
    XDubOptions,
    join_clip_latents,
    plan_clips,
    sample_clips,
)

__all__ = ["XDubPipeline", "XDubOptions", "XDubEncoded", "XDubSampled", "XDubResult", "xdub_text"]

EIGHT_BIT_LEVELS = 255  # the reference passes decoded frames through 8-bit images before re-encoding them


@dataclass
class XDubEncoded:
    """Stage 1's result.

    frames: (T_total, H, W, 3) the face frames of the whole take (ping-ponged to the speech),
        T_total = plan.total_frames ≥ num_frames. frame_indices: (T_total,) long, the input frame each shows.
    num_frames: frames the speech spans (ceil(seconds · 25)), the output's length.
    references: per clip (C, F, h, w) float32 latents of its frames. audio: per clip (F, P, K) windows.
    waveform: (N,) 16 kHz mono speech, padded with silence to ``num_frames`` frames.
    """

    frames: torch.Tensor
    frame_indices: torch.Tensor
    num_frames: int
    plan: ClipPlan
    references: List[torch.Tensor]
    audio: List[torch.Tensor]
    waveform: torch.Tensor
    report: Dict[str, Any] = field(default_factory=dict)


@dataclass
class XDubSampled:
    """Stage 2's result: ``latents`` (C, F_total, h, w) float32 of the joined take; ``clips`` per clip."""

    latents: torch.Tensor
    clips: List[torch.Tensor]
    report: Dict[str, Any] = field(default_factory=dict)


@dataclass
class XDubResult:
    """frames: (T, H, W, 3) float in [0, 1] at ``fps`` (25); waveform: (N,) at ``sample_rate`` (16 kHz),
    exactly T frames long; frame_indices: (T,) the input frame each output frame was made from (for
    pasting back into the full frames)."""

    frames: torch.Tensor
    fps: float
    waveform: torch.Tensor
    sample_rate: int
    frame_indices: torch.Tensor
    report: Dict[str, Any]


def xdub_text(text: Optional[torch.Tensor], text_dim: int, text_len: int) -> torch.Tensor:
    """The text condition the network gets: (L, text_dim) float32.

    text: (L, text_dim) umT5 features (the CLI's T5 folder, or ComfyUI's CONDITIONING, maybe zero-padded
    to 512 tokens) or None. None gives one zero token, which the network pads to ``text_len`` zeros: the
    reference's empty prompt is umT5("") — one end-of-sequence token, then zeros — so None is close to,
    not exactly, the reference; give the T5 encoder's features for an exact match.
    """
    if text is None:
        return torch.zeros(1, text_dim)
    text = torch.as_tensor(text).float()
    if text.ndim == 3 and text.shape[0] == 1:
        text = text[0]
    if text.ndim != 2 or text.shape[1] != text_dim:
        raise OmniSyncError(f"text features must be (L, {text_dim}) (umT5-XXL for X-Dub), got {tuple(text.shape)}; "
                            "encode the prompt with the Wan text encoder.")
    if text.shape[0] > text_len:
        raise OmniSyncError(f"text has {text.shape[0]} tokens, more than the model's {text_len}; shorten the prompt.")
    return text


class XDubPipeline:
    """Lip-sync face clips to speech with an X-Dub network.

    Args:
        model: the X-Dub network in eval mode, on ``device`` (or offloaded block by block).
        codec: Wan 2.2 latent codec (:func:`.model.wan22_vae.wan22_codec` / ``load_wan22_vae``).
        audio_encoders: :class:`.audio.xdub_features.XDubAudioEncoders`; only needed when :meth:`encode`
            is not given precomputed features.
        device: where the sampler moves each clip (default: the model's parameters' device).
    """

    def __init__(self, model, codec, audio_encoders=None, device=None):
        self.model = model
        self.codec = codec
        self.audio_encoders = audio_encoders
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        cfg = model.config
        if codec.latent_channels != cfg.latent_channels:
            raise OmniSyncError(f"the VAE gives {codec.latent_channels} latent channels but the model expects "
                                f"{cfg.latent_channels}; X-Dub needs Wan 2.2's VAE (48 channels).")
        if audio_encoders is not None and sum(audio_encoders.dims) != cfg.audio_dim:
            raise OmniSyncError(f"the audio encoders give {'+'.join(map(str, audio_encoders.dims))} channels but the "
                                f"model expects {cfg.audio_dim}; load Whisper large-v2 and wav2vec2-base-960h.")
        self.motion_latent_frames = codec.num_latent_frames(MOTION_FRAMES)

    # -- stage 1 ------------------------------------------------------------------------------------

    def encode(self, frames, fps: float, waveform, sample_rate: int, features=None,
               progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCheck] = None) -> XDubEncoded:
        """Stage 1. frames (T_src, H, W, 3) face crops at ``fps`` (must be 25); waveform (N,), (C, N) or
        (B, C, N) at ``sample_rate``; features: precomputed :class:`XDubAudioFeatures` of that speech."""
        from ..audio.xdub_features import extract_xdub_features, xdub_audio_windows

        frames, frame_info = validate_frames(frames)
        if exact_fps(fps) != XDUB_FPS:
            raise OmniSyncError(f"X-Dub was trained on {XDUB_FPS} fps video, got {float(fps):g} fps; convert the video "
                                f"to {XDUB_FPS} fps first (ffmpeg -i in.mp4 -r {XDUB_FPS} out.mp4, or the frame-rate "
                                "option of your video loader).")
        _, ph, pw = self.model.config.patch_size
        stride = self.codec.spatial_factor * max(ph, pw)
        H, W = frames.shape[1:3]
        if H % stride or W % stride:
            raise OmniSyncError(f"face crops of {H}×{W} pixels: X-Dub needs sides divisible by {stride}; crop the "
                                "faces to 512×512 (the face crop stage does).")
        if features is None:
            if self.audio_encoders is None:
                raise OmniSyncError("no audio encoders loaded: load Whisper large-v2 and wav2vec2-base-960h "
                                    "(load_xdub_audio_encoders), or pass precomputed features.")
            features = extract_xdub_features(self.audio_encoders, waveform, sample_rate, cancel=cancel)
        num_frames = features.total_video_frames(XDUB_FPS)
        plan = plan_clips(num_frames)
        indices = pingpong_indices(frames.shape[0], plan.total_frames)  # (T_total,)
        take = frames[indices]  # (T_total, H, W, 3)

        references, audio = [], []
        for k, start in enumerate(plan.starts):
            check_cancel(cancel)
            clip = take[start:start + plan.clip_frames]
            references.append(self.codec.encode(clip).float().cpu())  # (C, F, h, w)
            tokens = xdub_audio_windows(features, start, plan.clip_frames).tokens  # (F, P, K)
            if tokens.shape[-1] != self.model.config.audio_dim:
                raise OmniSyncError(f"the speech features have {tokens.shape[-1]} channels but the model expects "
                                    f"{self.model.config.audio_dim}; use Whisper large-v2 and wav2vec2-base-960h.")
            audio.append(tokens)
            report(progress, k + 1, len(plan.starts), f"encoded clip {k + 1}/{len(plan.starts)}")

        wave = to_mono_16k(waveform, sample_rate)
        n_out = num_frames * SAMPLE_RATE_HZ // XDUB_FPS
        wave = torch.cat([wave, wave.new_zeros(max(0, n_out - wave.shape[0]))])[:n_out]
        loops = "ping-ponged" if plan.total_frames > frames.shape[0] else "cut"
        rep = {"frames": frame_info, "audio": features.message,
               "length": (f"speech is {features.seconds:.2f} s = {num_frames} frames at {XDUB_FPS} fps; "
                          f"{frames.shape[0]} face frames {loops} to {plan.total_frames} "
                          f"({len(plan.starts)} clip(s) of {plan.clip_frames})")}
        return XDubEncoded(frames=take, frame_indices=indices, num_frames=num_frames, plan=plan,
                           references=references, audio=audio, waveform=wave, report=rep)

    # -- stage 2 ------------------------------------------------------------------------------------

    def motion_latents(self, latents: torch.Tensor, reference_frames: torch.Tensor,
                       options: XDubOptions) -> torch.Tensor:
        """A clip's latents → the next clip's motion latents (C, M, h, w): decode, 8-bit round, colour-match
        to the clip's reference frames (when enabled), re-encode the last 5 frames (the reference's way)."""
        frames = self.codec.decode(latents)  # (T, H, W, 3)
        frames = (frames.clamp(0, 1) * EIGHT_BIT_LEVELS).round() / EIGHT_BIT_LEVELS
        if options.color_correction:
            frames = color_correct(frames, reference_frames)
        return self.codec.encode(frames[-MOTION_FRAMES:].contiguous()).float()

    def sample(self, encoded: XDubEncoded, text: Optional[torch.Tensor] = None,
               options: Optional[XDubOptions] = None, progress: Optional[ProgressCallback] = None,
               cancel: Optional[CancelCheck] = None) -> XDubSampled:
        """Stage 2: every clip, each starting from the previous one's motion latents; joined latents.

        text: (L, text_dim) umT5 features or None (see :func:`xdub_text`).
        """
        opts = options or XDubOptions()
        cfg = self.model.config
        txt = xdub_text(text, cfg.text_dim, cfg.text_len)
        plan = encoded.plan
        centres = "auto"
        if not isinstance(opts.mouth, str):
            centres = [centres_from_point(tuple(opts.mouth), ref.shape[1]) for ref in encoded.references]

        def motion_fn(k: int, previous: torch.Tensor) -> torch.Tensor:
            start = plan.starts[k - 1]
            return self.motion_latents(previous, encoded.frames[start:start + plan.clip_frames], opts)

        t0 = time.perf_counter()
        clips, rep = sample_clips(self.model, encoded.references, encoded.audio, txt, opts, motion_fn, centres,
                                  progress=progress, cancel=cancel)
        latents = join_clip_latents(clips, self.motion_latent_frames)
        rep["seconds"] = round(time.perf_counter() - t0, 3)
        return XDubSampled(latents=latents, clips=clips, report=rep)

    # -- stage 3 ------------------------------------------------------------------------------------

    def assemble(self, sampled: XDubSampled, encoded: XDubEncoded,
                 options: Optional[XDubOptions] = None) -> torch.Tensor:
        """Stage 3: latents → frames (num_frames, H, W, 3) float32 in [0, 1] on the CPU."""
        opts = options or XDubOptions()
        frames = self.codec.decode(sampled.latents)  # (T_total, H, W, 3)
        if frames.shape[0] != encoded.plan.total_frames:
            raise OmniSyncError(f"the latents decode to {frames.shape[0]} frames but the take has "
                                f"{encoded.plan.total_frames}; assemble with the encode result they were sampled from.")
        T = encoded.num_frames
        frames, reference = frames[:T].float(), encoded.frames[:T]
        if opts.color_correction:
            frames = color_correct(frames, reference)
        if opts.border_width:
            frames = blend_border(frames, reference, opts.border_width * self.codec.spatial_factor)
        return frames.clamp(0, 1).cpu().contiguous()

    # -- everything ---------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(self, frames, fps: float, waveform, sample_rate: int, text: Optional[torch.Tensor] = None,
                 options: Optional[XDubOptions] = None, progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancelCheck] = None) -> XDubResult:
        """Every stage. frames (T, H, W, 3) face crops in [0, 1] at 25 fps; waveform at ``sample_rate``."""
        opts = options or XDubOptions()
        t0 = time.perf_counter()
        encoded = self.encode(frames, fps, waveform, sample_rate, cancel=cancel)
        sampled = self.sample(encoded, text, opts, progress=progress, cancel=cancel)
        out = self.assemble(sampled, encoded, opts)
        rep = {**encoded.report, **sampled.report, "seconds": round(time.perf_counter() - t0, 3)}
        return XDubResult(frames=out, fps=float(XDUB_FPS), waveform=encoded.waveform, sample_rate=SAMPLE_RATE_HZ,
                          frame_indices=encoded.frame_indices[:encoded.num_frames], report=rep)
