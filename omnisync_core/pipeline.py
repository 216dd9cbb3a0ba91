"""One call from (frames, fps, waveform, sample_rate) to lip-synced frames.

Wires the pieces together, top-down:

1. validate frames and audio, convert audio to 16 kHz mono (``audio.features``);
2. match video and audio lengths as the caller chose (``sampling.windows.match_lengths``);
3. pad frames to the model's stride / the codec's frame rule (cropped back at the end);
4. Whisper features aligned to the video fps, tokens per latent frame;
5. per window of frames: encode → progressive noise init (Eq. 5) → DS-CFG sampling (Eqs. 7–9)
   → decode → cross-fade into the output. Memory is bounded by the window, not the video length;
6. optional composite outside the mouth, guidance map upsampled to frames for display.

The pipeline knows nothing of ComfyUI; the nodes split the same steps into separate nodes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F

from .audio.features import (
    SAMPLE_RATE_HZ,
    align_features_to_frames,
    latent_audio_tokens,
    to_mono_16k,
    validate_audio,
)
from .composite import composite_outside_mouth, mouth_region_mask
from .errors import OmniSyncError
from .media import validate_frames
from .model.codec import pad_frames_to_valid, pad_to_stride, crop_back
from .progress import CancelCheck, ProgressCallback, check_cancel
from .sampling.guidance import GuidanceConfig
from .sampling.mouth import centres_from_mask, fill_missing, DEFAULT_MOUTH_CENTRE
from .sampling.noise_init import progressive_noise_init
from .sampling.sampler import denoise
from .sampling.schedule import FlowMatchSchedule
from .sampling.windows import apply_audio_plan, blend_weights, match_lengths, plan_windows, window_overlaps

LENGTH_MODES = ("follow_audio_loop", "follow_audio_pingpong", "follow_video")


@dataclass
class SyncOptions:
    """Every sampling knob of one lip-sync call (CLI flags and node widgets map onto these).

    tau: progressive-noise strength τ ∈ (0, 1] (Eq. 5); 1 starts from pure noise.
    num_steps: length of the full flow-matching schedule; only the steps with σ ≤ τ run.
    mouth: "auto" (found from the model's own guidance signal), or an (x, y) point in frame
        fractions; ``mouth_mask`` (T, H, W) in [0, 1] overrides both when given.
    window / overlap: in latent frames; 0 = the whole clip in one window.
    """

    tau: float = 0.92
    num_steps: int = 50
    shift: float = 1.0
    seed: int = 0
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    mouth: Union[str, Tuple[float, float]] = "auto"
    mouth_mask: Optional[torch.Tensor] = None
    window: int = 0
    overlap: int = 2
    length_mode: str = "follow_audio_loop"
    composite: bool = False
    composite_radius: float = 0.2
    composite_feather_px: float = 4.0
    text: Optional[torch.Tensor] = None  # (L, text_dim) from omnisync_core.text, or None

    def __post_init__(self):
        if self.length_mode not in LENGTH_MODES:
            raise OmniSyncError(
                f"unknown length mode {self.length_mode!r}; choose one of {', '.join(LENGTH_MODES)}."
            )
        if isinstance(self.mouth, str) and self.mouth != "auto":
            raise OmniSyncError(f"mouth must be 'auto' or an (x, y) point in [0, 1], got {self.mouth!r}.")
        if not isinstance(self.mouth, str):
            x, y = self.mouth
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise OmniSyncError(f"mouth point {self.mouth} must be inside the frame: x, y in [0, 1].")
        if self.window < 0 or self.overlap < 0:
            raise OmniSyncError("window and overlap are counts of latent frames and cannot be negative.")


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


class OmniSyncPipeline:
    """Lip-sync frames to speech with an :class:`OmniSyncDiT`.

    Args:
        model: the DiT (``forward(x, timestep, source, audio, text)``), in eval mode.
        codec: a ``LatentCodec`` (pixel codec or VAE adapter).
        audio_encoder: a ``WhisperFeatureExtractor`` matching the model's audio spec.
        device, dtype: where and in which precision the DiT runs; the codec and audio encoder
            keep their own.
    """

    def __init__(self, model, codec, audio_encoder, device="cpu", dtype=torch.float32):
        self.model = model
        self.codec = codec
        self.audio_encoder = audio_encoder
        self.device = torch.device(device)
        self.dtype = dtype
        cfg = model.config
        self.audio_layers = None  # how many of the encoder's last hidden states the model takes
        if cfg.audio_dim and audio_encoder is not None:
            spec = audio_encoder.spec
            k, rest = divmod(cfg.audio_dim, spec.dim)
            if rest or not 1 <= k <= spec.num_layers:
                raise OmniSyncError(
                    f"the audio encoder gives {spec.num_layers} layers × {spec.dim} but the model expects "
                    f"{cfg.audio_dim}-dim tokens (the last k layers of width {spec.dim}); load the Whisper "
                    "model this checkpoint was trained with."
                )
            self.audio_layers = k
        if codec.latent_channels != cfg.latent_channels:
            raise OmniSyncError(
                f"the codec gives {codec.latent_channels} latent channels but the model expects "
                f"{cfg.latent_channels}; use the codec named in the checkpoint metadata."
            )

    # -- stages, each usable alone (the ComfyUI nodes call them one by one) --------------------

    def prepare_audio(self, frames_count: int, fps: float, waveform, sample_rate: int, length_mode: str):
        """Returns (frame_indices (T_out,), wave16k (N,), plan) after length matching."""
        wave = to_mono_16k(waveform, sample_rate)
        validate_audio(wave)
        plan = match_lengths(frames_count, fps, wave.shape[0], SAMPLE_RATE_HZ, length_mode)
        return plan.frame_indices, apply_audio_plan(wave, plan), plan

    def frame_features(self, wave16k: torch.Tensor, fps: float, num_frames: int, progress=None):
        """Whisper features aligned per video frame: (num_frames, token_dim), info."""
        k = self.audio_layers or self.audio_encoder.spec.num_layers
        feats = self.audio_encoder.encode(wave16k)[:, -k:]  # (N_feat, k, D): the layers the model uses
        return align_features_to_frames(
            feats, fps, num_frames, silence_feature=self.audio_encoder.silence_feature()[-k:]
        )

    # -- the whole call ------------------------------------------------------------------------

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
    ) -> SyncResult:
        opts = options or SyncOptions()
        t0 = time.perf_counter()
        if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
            raise OmniSyncError(f"fps must be a positive number, got {fps!r}; pass the source video's frame rate.")
        frames, frame_info = validate_frames(frames)
        report = {"frames": frame_info}

        indices, wave16k, plan = self.prepare_audio(frames.shape[0], fps, waveform, sample_rate, opts.length_mode)
        frames = frames[indices]
        mouth_mask = opts.mouth_mask[indices] if opts.mouth_mask is not None else None
        report["length"] = plan.message
        T_out = frames.shape[0]

        frame_feats, audio_info = self.frame_features(wave16k, fps, T_out)
        report["audio"] = audio_info

        stride = self.codec.spatial_factor * self.model.config.patch_size[1]
        frames_p, pads = pad_to_stride(frames, stride)
        frames_p, added = pad_frames_to_valid(frames_p, self.codec)
        if added:
            frame_feats = torch.cat([frame_feats, frame_feats[-1:].expand(added, -1)], 0)
        report["padding"] = {"spatial": pads, "frames_added": added}
        T_p, H_p, W_p = frames_p.shape[:3]

        frame_centres, centre_report = self._user_centres(opts, mouth_mask, T_out, added)
        report["mouth"] = centre_report

        schedule = FlowMatchSchedule(opts.num_steps, opts.shift)
        sigmas = schedule.truncate(opts.tau)
        windows = self._frame_windows(T_p, opts)
        report["windows"] = windows
        steps_per_window = len(sigmas) - 1
        total_steps = steps_per_window * len(windows)

        out = torch.zeros_like(frames_p)
        gmap = torch.zeros(T_p, H_p, W_p)
        weight_sum = torch.zeros(T_p)
        found_centres = torch.zeros(T_p, 2)
        fallback_frames = []
        for w_idx, (s, e) in enumerate(windows):
            check_cancel(cancel)
            done_before = w_idx * steps_per_window

            def window_progress(done, total, message, _base=done_before):
                if progress is not None:
                    progress(_base + done, total_steps, message)

            src = self.codec.encode(frames_p[s:e]).to(self.device, self.dtype)  # (C, F, h, w)
            tokens = latent_audio_tokens(
                frame_feats[s:e], self.codec.temporal_factor, self.audio_encoder.spec.frame_window
            ).to(self.device, self.dtype)  # (F, N_a, K)
            x_init = progressive_noise_init(src, opts.tau, seed=opts.seed, frame_offset=self._latent_offset(s))
            centres = "auto" if frame_centres is None else self._latent_centres(frame_centres[s:e])
            text = opts.text.to(self.device, self.dtype) if opts.text is not None else None
            latents, info = denoise(
                self.model, x_init, src, tokens, text, sigmas, opts.guidance, centres,
                progress=window_progress, cancel=cancel,
            )
            decoded = self.codec.decode(latents.float().cpu())[: e - s]  # (T_w, H, W, 3)
            wts = blend_weights(e - s, *window_overlaps(windows, w_idx))
            out[s:e] += wts[:, None, None, None] * decoded
            weight_sum[s:e] += wts
            gmap[s:e] += wts[:, None, None] * self._frames_from_latent_map(info["guidance_map"], e - s, H_p, W_p)
            found_centres[s:e] += wts[:, None] * self._frames_from_latent_centres(info["centres"], e - s)
            lost = set(info["fallback_frames"])  # latent frames of this window with no mouth found
            of_latent = self._frame_index_of_latent(e - s)
            fallback_frames += [s + t for t in range(e - s) if int(of_latent[t]) in lost]

        out = out / weight_sum[:, None, None, None]
        gmap = gmap / weight_sum[:, None, None]
        centres_px = found_centres / weight_sum[:, None]
        out = crop_back(out[:T_out], pads)
        gmap = gmap[:T_out, : out.shape[1], : out.shape[2]]
        centres_px = centres_px[:T_out]
        fallback = sorted(t for t in set(fallback_frames) if t < T_out)
        if fallback:  # no mouth located there: those frames are passed through unchanged, and said so
            out[fallback] = frames[fallback]
            report["mouth"]["fallback_frames"] = fallback

        if opts.composite:
            mask = mouth_region_mask(
                centres_px, out.shape[1], out.shape[2], radius=opts.composite_radius,
                feather_px=opts.composite_feather_px,
            )
            out = composite_outside_mouth(out, frames, mask)
        report["seconds"] = round(time.perf_counter() - t0, 3)
        report["steps"] = total_steps
        return SyncResult(
            frames=out.clamp(0, 1), fps=fps, waveform=wave16k, sample_rate=SAMPLE_RATE_HZ,
            guidance_map=self._normalise_map(gmap, opts.guidance), mouth_centres=centres_px, report=report,
        )

    # -- helpers -------------------------------------------------------------------------------

    def _frame_windows(self, T: int, opts: SyncOptions):
        """Windows in video frames derived from the window/overlap in latent frames."""
        if opts.window == 0:
            return [(0, T)]
        tf = self.codec.temporal_factor
        win = self.codec.num_frames(opts.window)
        ov = opts.overlap * tf
        if ov >= win:
            raise OmniSyncError(
                f"overlap ({opts.overlap} latent frames) must be smaller than the window ({opts.window})."
            )
        return plan_windows(T, win, ov)

    def _latent_offset(self, frame_start: int) -> int:
        return self.codec.num_latent_frames(frame_start) if frame_start else 0

    def _user_centres(self, opts: SyncOptions, mouth_mask, T_out: int, added: int):
        """Per video frame (x, y) centres from a mask or point; None means automatic."""
        if mouth_mask is not None:
            centres, found = centres_from_mask(mouth_mask)
            centres, fill_report = fill_missing(centres, found, DEFAULT_MOUTH_CENTRE)
            source = "mask"
        elif opts.mouth != "auto":
            centres = torch.tensor(opts.mouth, dtype=torch.float32).expand(T_out, 2).clone()
            fill_report = {}
            source = "point"
        else:
            return None, {"source": "auto"}
        if added:
            centres = torch.cat([centres, centres[-1:].expand(added, 2)], 0)
        return centres, {"source": source, **fill_report}

    def _latent_centres(self, frame_centres: torch.Tensor) -> torch.Tensor:
        """(T_w, 2) per-frame centres → (F_w, 2) per latent frame (mean over its frames)."""
        tf = self.codec.temporal_factor
        if tf == 1:
            return frame_centres
        groups = [frame_centres[:1]] + [
            frame_centres[1 + tf * (j - 1): 1 + tf * j] for j in range(1, self.codec.num_latent_frames(frame_centres.shape[0]))
        ]
        return torch.stack([g.mean(0) for g in groups])

    def _frame_index_of_latent(self, num_frames: int) -> torch.Tensor:
        """For each video frame of a window, the latent frame that holds it."""
        tf = self.codec.temporal_factor
        idx = torch.arange(num_frames)
        return idx if tf == 1 else torch.where(idx == 0, idx, (idx - 1) // tf + 1)

    def _frames_from_latent_map(self, latent_map: torch.Tensor, num_frames: int, H: int, W: int):
        per_frame = latent_map.float().cpu()[self._frame_index_of_latent(num_frames)]  # (T_w, h, w)
        return F.interpolate(per_frame[:, None], size=(H, W), mode="bilinear", align_corners=False)[:, 0]

    def _frames_from_latent_centres(self, centres: torch.Tensor, num_frames: int):
        return centres.float().cpu()[self._frame_index_of_latent(num_frames)]

    @staticmethod
    def _normalise_map(gmap: torch.Tensor, cfg: GuidanceConfig) -> torch.Tensor:
        """Guidance weight → [0, 1] for display: 0 at ω_base·ω(σ₀)/ω_peak, 1 at the peak."""
        lo, hi = gmap.amin(), gmap.amax()
        if float(hi - lo) < 1e-8:
            return torch.zeros_like(gmap)
        return (gmap - lo) / (hi - lo)
