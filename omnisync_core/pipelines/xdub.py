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
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from ..audio.features import SAMPLE_RATE_HZ, to_mono_16k
from ..image.composite import blend_border, color_correct
from ..errors import OmniSyncError
from ..io.fps import exact_fps
from ..io.frames import validate_frames
from ..progress import CancelCheck, ProgressCallback, check_cancel, report
from ..sampling.mouth import centres_from_point
from ..length import pingpong_indices
from .checks import WarningCallback, check_sampling_bounds, warn
from .omnisync import audio_conversion_warnings, conversion_warnings
from .stream import FrameSource, TensorFrames, as_unit, to_uint8
from ..sampling.sampler import compute_placement
from ..sampling.xdub import (
    CLIP_FRAMES,
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
XDubSink = Callable[[torch.Tensor, torch.Tensor], None]  # write(output (n, H, W, 3), source (n, H, W, 3)), in order


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


class _Clips:
    """The take's clips read on demand from a :class:`.stream.FrameSource`: ``clips[k]`` is clip k's reference
    latents (C, F, h, w), read and encoded when asked for; ``frames(k)`` its frames (the last two clips' are
    kept, for the next clip's motion latents). A sequence, so :func:`.sampling.xdub.sample_clips` walks it."""

    def __init__(self, pipe: "XDubPipeline", source: FrameSource, indices: torch.Tensor, plan: ClipPlan):
        self.pipe, self.source, self.indices, self.plan = pipe, source, indices, plan
        self._frames: Dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.plan.starts)

    def frames(self, k: int) -> torch.Tensor:
        if k not in self._frames:
            if len(self._frames) >= 2:
                self._frames.pop(min(self._frames))
            start = self.plan.starts[k]
            self._frames[k] = as_unit(self.source.read(self.indices[start:start + self.plan.clip_frames]))
        return self._frames[k]

    def __getitem__(self, k: int) -> torch.Tensor:
        if not 0 <= k < len(self):
            raise IndexError(k)
        return self.pipe.codec.encode(self.frames(k)).float().cpu()  # (C, F, h, w)


class XDubPipeline:
    """Lip-sync face clips to speech with an X-Dub network.

    Args:
        model: the X-Dub network in eval mode, on ``device`` (or offloaded block by block, or partly loaded by
            ComfyUI with the other layers cast to ``device`` per call).
        codec: Wan 2.2 latent codec (:func:`.model.wan22_vae.wan22_codec` / ``load_wan22_vae``).
        audio_encoders: :class:`.audio.xdub_features.XDubAudioEncoders`; only needed when :meth:`encode`
            is not given precomputed features.
        device: where the sampler builds each clip's inputs and calls the network (default: the device of the
            network's first parameter, which is wrong when that layer is one ComfyUI left in CPU memory).
        dtype: the network's compute dtype (x, the reference, the timestep and the speech go in it; default: its
            first parameter's dtype).
    """

    def __init__(self, model, codec, audio_encoders=None, device=None, dtype: Optional[torch.dtype] = None):
        self.model = model
        self.codec = codec
        self.audio_encoders = audio_encoders
        self.device, self.dtype = compute_placement(model, device, dtype)
        cfg = model.config
        if codec.latent_channels != cfg.latent_channels:
            raise OmniSyncError(f"the VAE gives {codec.latent_channels} latent channels but the model expects "
                                f"{cfg.latent_channels}; X-Dub needs Wan 2.2's VAE (48 channels).")
        if audio_encoders is not None and sum(audio_encoders.dims) != cfg.audio_dim:
            raise OmniSyncError(f"the audio encoders give {'+'.join(map(str, audio_encoders.dims))} channels but the "
                                f"model expects {cfg.audio_dim}; load Whisper large-v2 and wav2vec2-base-960h.")
        self.motion_latent_frames = codec.num_latent_frames(MOTION_FRAMES)

    # -- what every path shares ---------------------------------------------------------------------

    def _check(self, fps: float, H: int, W: int) -> None:
        if exact_fps(fps) != XDUB_FPS:
            raise OmniSyncError(f"X-Dub was trained on {XDUB_FPS} fps video, got {float(fps):g} fps; convert the video "
                                f"to {XDUB_FPS} fps first (ffmpeg -i in.mp4 -r {XDUB_FPS} out.mp4, or the frame-rate "
                                "option of your video loader).")
        _, ph, pw = self.model.config.patch_size
        stride = self.codec.spatial_factor * max(ph, pw)
        if H % stride or W % stride:
            raise OmniSyncError(f"face crops of {H}×{W} pixels: X-Dub needs sides divisible by {stride}; crop the "
                                "faces to 512×512 (the face crop stage does).")

    def _plan(self, num_source_frames: int, waveform, sample_rate: int, features, cancel
              ) -> Tuple[Any, int, ClipPlan, torch.Tensor, torch.Tensor, str]:
        """(features, num_frames, clip plan, frame_indices (T_total,), speech (N,) 16 kHz mono padded to
        num_frames, the length in words) of the take."""
        from ..audio.xdub_features import extract_xdub_features

        if features is None:
            if self.audio_encoders is None:
                raise OmniSyncError("no audio encoders loaded: load Whisper large-v2 and wav2vec2-base-960h "
                                    "(load_xdub_audio_encoders), or pass precomputed features.")
            features = extract_xdub_features(self.audio_encoders, waveform, sample_rate, cancel=cancel)
        num_frames = features.total_video_frames(XDUB_FPS)
        plan = plan_clips(num_frames)
        indices = pingpong_indices(num_source_frames, plan.total_frames)  # (T_total,)
        wave = to_mono_16k(waveform, sample_rate)
        n_out = num_frames * SAMPLE_RATE_HZ // XDUB_FPS
        wave = torch.cat([wave, wave.new_zeros(max(0, n_out - wave.shape[0]))])[:n_out]
        loops = "ping-ponged" if plan.total_frames > num_source_frames else "cut"
        length = (f"speech is {features.seconds:.2f} s = {num_frames} frames at {XDUB_FPS} fps; "
                  f"{num_source_frames} face frames {loops} to {plan.total_frames} "
                  f"({len(plan.starts)} clip(s) of {plan.clip_frames})")
        return features, num_frames, plan, indices, wave, length

    def _audio_windows(self, features, start: int, clip_frames: int) -> torch.Tensor:
        from ..audio.xdub_features import xdub_audio_windows

        tokens = xdub_audio_windows(features, start, clip_frames).tokens  # (F, P, K)
        if tokens.shape[-1] != self.model.config.audio_dim:
            raise OmniSyncError(f"the speech features have {tokens.shape[-1]} channels but the model expects "
                                f"{self.model.config.audio_dim}; use Whisper large-v2 and wav2vec2-base-960h.")
        return tokens

    def _sample(self, references, audio, reference_frames: Callable[[int], torch.Tensor], text, options,
                progress, cancel) -> Tuple[torch.Tensor, List[torch.Tensor], Dict]:
        """Every clip, each from the previous one's motion latents → (joined latents, clips, report)."""
        check_sampling_bounds(options.num_steps, options.shift, options.tau,
                              {"omega_base": options.audio.omega_base, "omega_peak": options.audio.omega_peak,
                               "ref_cfg_scale": options.ref_cfg_scale})
        cfg = self.model.config
        txt = xdub_text(text, cfg.text_dim, cfg.text_len)
        centres = "auto"
        if not isinstance(options.mouth, str):
            centres = [centres_from_point(tuple(options.mouth), self.codec.num_latent_frames(CLIP_FRAMES))] * len(references)

        def motion_fn(k: int, previous: torch.Tensor) -> torch.Tensor:
            return self.motion_latents(previous, reference_frames(k - 1), options)

        clips, rep = sample_clips(self.model, references, audio, txt, options, motion_fn, centres, progress=progress,
                                  cancel=cancel, device=self.device, dtype=self.dtype)
        return join_clip_latents(clips, self.motion_latent_frames), clips, rep

    def _finish(self, decoded: torch.Tensor, reference: torch.Tensor, options: XDubOptions) -> torch.Tensor:
        """Decoded frames (n, H, W, 3) of the take → the output's: colour-matched to the reference frames (n, H, W, 3)
        and the crop's border faded into them; float32 in [0, 1] on the CPU."""
        frames = decoded.float()
        if options.color_correction:
            frames = color_correct(frames, reference)
        if options.border_width:
            frames = blend_border(frames, reference, options.border_width * self.codec.spatial_factor)
        return frames.clamp(0, 1).cpu().contiguous()

    # -- stage 1 ------------------------------------------------------------------------------------

    @staticmethod
    def _adjustments(waveform, sample_rate: int, plan, num_source_frames: int, length: str) -> List[str]:
        """The lines every stage-1 caller says: speech converted to 16 kHz mono, video ping-ponged or cut."""
        out = list(audio_conversion_warnings(waveform, sample_rate))
        if plan.total_frames != num_source_frames:
            out.append(length + ".")
        return out

    def encode(self, frames, fps: float, waveform, sample_rate: int, features=None,
               progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCheck] = None,
               on_warning: Optional[WarningCallback] = None) -> XDubEncoded:
        """Stage 1. frames (T_src, H, W, 3) face crops at ``fps`` (must be 25); waveform (N,), (C, N) or
        (B, C, N) at ``sample_rate``; features: precomputed :class:`XDubAudioFeatures` of that speech.
        on_warning: each adjustment (speech resampled, video ping-ponged or cut), as :meth:`stream` says them."""
        frames, frame_info = validate_frames(frames)
        self._check(fps, *frames.shape[1:3])
        features, num_frames, plan, indices, wave, length = self._plan(frames.shape[0], waveform, sample_rate,
                                                                       features, cancel)
        warned: Dict[str, Any] = {"warnings": []}
        for message in self._adjustments(waveform, sample_rate, plan, frames.shape[0], length):
            warn(warned, on_warning, message)
        take = frames[indices]  # (T_total, H, W, 3)
        references, audio = [], []
        for k, start in enumerate(plan.starts):
            check_cancel(cancel)
            references.append(self.codec.encode(take[start:start + plan.clip_frames]).float().cpu())  # (C, F, h, w)
            audio.append(self._audio_windows(features, start, plan.clip_frames))
            report(progress, k + 1, len(plan.starts), f"encoded clip {k + 1}/{len(plan.starts)}")
        rep = {"frames": frame_info, "audio": features.message, "length": length, "warnings": warned["warnings"]}
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
        plan = encoded.plan
        t0 = time.perf_counter()
        latents, clips, rep = self._sample(
            encoded.references, encoded.audio,
            lambda k: encoded.frames[plan.starts[k]:plan.starts[k] + plan.clip_frames], text,
            options or XDubOptions(), progress, cancel)
        rep["seconds"] = round(time.perf_counter() - t0, 3)
        return XDubSampled(latents=latents, clips=clips, report=rep)

    # -- stage 3 ------------------------------------------------------------------------------------

    def assemble(self, sampled: XDubSampled, encoded: XDubEncoded,
                 options: Optional[XDubOptions] = None) -> torch.Tensor:
        """Stage 3: latents → frames (num_frames, H, W, 3) float32 in [0, 1] on the CPU."""
        frames = self.codec.decode(sampled.latents)  # (T_total, H, W, 3)
        if frames.shape[0] != encoded.plan.total_frames:
            raise OmniSyncError(f"the latents decode to {frames.shape[0]} frames but the take has "
                                f"{encoded.plan.total_frames}; assemble with the encode result they were sampled from.")
        T = encoded.num_frames
        return self._finish(frames[:T], encoded.frames[:T], options or XDubOptions())

    # -- everything ---------------------------------------------------------------------------------

    @torch.no_grad()
    def stream(self, source: FrameSource, fps: float, waveform, sample_rate: int, write: XDubSink,
               text: Optional[torch.Tensor] = None, options: Optional[XDubOptions] = None, features=None,
               progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCheck] = None,
               start: Optional[Callable[[int, torch.Tensor], None]] = None,
               on_warning: Optional[WarningCallback] = None) -> Dict:
        """Every stage, reading the face crops clip by clip from ``source`` (a :class:`.stream.FrameSource`:
        ``io.video.VideoReader``, or :class:`.stream.TensorFrames` for crops in memory): only the current and
        the previous clip's frames are held, never the video. The take's latents are decoded at once (Wan 2.2's
        VAE is causal over the whole take, as in the reference), then finished and written one clip's stride
        of frames at a time: ``write(output (n, H, W, 3), source (n, H, W, 3))`` in frame order, both in the
        source's kind (uint8, or float32 in [0, 1]).

        start: called once before sampling with (T_out, speech (N,) 16 kHz mono). Each adjustment (speech
        resampled or averaged, face frames ping-ponged or cut) goes to ``on_warning(message)`` as it arises and
        into the report's ``"warnings"``. Returns the run report; ``report["frame_indices"]``: (T_out,) the
        input frame each output frame was made from.
        """
        opts = options or XDubOptions()
        t0 = time.perf_counter()
        rep: Dict[str, Any] = {"warnings": []}

        def note(message: str) -> None:
            warn(rep, on_warning, message)

        H, W = source.size
        self._check(fps, H, W)
        features, num_frames, plan, indices, wave, length = self._plan(source.num_frames, waveform, sample_rate,
                                                                       features, cancel)
        for message in self._adjustments(waveform, sample_rate, plan, source.num_frames, length):
            note(message)
        if start is not None:
            start(num_frames, wave)
        clips = _Clips(self, source, indices, plan)
        audio = [self._audio_windows(features, s, plan.clip_frames) for s in plan.starts]
        latents, _, sampled = self._sample(clips, audio, clips.frames, text, opts, progress, cancel)
        decoded = self.codec.decode(latents)  # (T_total, H, W, 3)
        stride = plan.clip_frames - plan.motion_frames
        for a in range(0, num_frames, stride):
            b = min(a + stride, num_frames)
            src = source.read(indices[a:b])
            out = self._finish(decoded[a:b], as_unit(src), opts)
            write(to_uint8(out) if src.dtype == torch.uint8 else out, src)
        return {"warnings": rep["warnings"], "audio": features.message, "length": length, "frames": num_frames,
                **sampled, "frame_indices": indices[:num_frames], "seconds": round(time.perf_counter() - t0, 3)}

    @torch.no_grad()
    def __call__(self, frames, fps: float, waveform, sample_rate: int, text: Optional[torch.Tensor] = None,
                 options: Optional[XDubOptions] = None, progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancelCheck] = None, on_warning: Optional[WarningCallback] = None) -> XDubResult:
        """Every stage, for face crops in memory: :meth:`stream` with a sink that collects the output. frames
        (T, H, W, 3) face crops in [0, 1] at 25 fps; waveform at ``sample_rate``."""
        said: Dict[str, Any] = {"warnings": []}

        def note(message: str) -> None:
            warn(said, on_warning, message)

        frames, frame_info = validate_frames(frames)
        for message in conversion_warnings(frame_info):
            note(message)
        held: Dict[str, Any] = {"out": []}

        def begin(_T: int, wave: torch.Tensor) -> None:
            held["wave"] = wave

        rep = self.stream(TensorFrames(frames), fps, waveform, sample_rate, lambda out, _src: held["out"].append(out),
                          text, options, progress=progress, cancel=cancel, start=begin, on_warning=note)
        rep["warnings"] = said["warnings"]
        rep["frames"] = frame_info
        indices = rep.pop("frame_indices")
        return XDubResult(frames=torch.cat(held["out"]), fps=float(XDUB_FPS), waveform=held["wave"],
                          sample_rate=SAMPLE_RATE_HZ, frame_indices=indices, report=rep)
