"""Lip-sync a clip of any length window by window: read, sample, decode and write one window at a time.

:func:`stream_sync` runs the stages of :class:`.pipeline.OmniSyncPipeline` on one window of latent
frames at a time, so memory does not grow with the clip: source frames are read as uint8 for the
current window only, the speech features come from one 30 s Whisper chunk at a time, and finished
frames go to ``write`` as uint8 as soon as no later window overlaps them. The frames are the ones the
in-memory call (``pipe(frames, ...)``) gives for the same options, window for window: the same windows,
noise (seeded per latent frame), audio tokens, cross-fades and decoding.

What streaming needs: a codec that maps frames to latents one by one (temporal factor 1: the bundled
pixel codec) and a mouth given as "auto" or a point (a per-frame mask is an in-memory input). The
guidance map is scaled by its theoretical range at the first step (ω_base·τ^γ … ω_peak·τ^γ) instead
of the whole clip's observed range, which is only known at the end.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from ..audio.features import SAMPLE_RATE_HZ, frame_feature_positions, latent_audio_tokens
from ..image.composite import composite_outside_mouth, mouth_region_mask
from ..errors import OmniSyncError
from ..model.codec import crop_back, pad_to_stride
from ..progress import CancelCheck, ProgressCallback, check_cancel, report
from .omnisync import audio_layers_for, prepare_audio
from .checks import WarningCallback, check_frame_size, training_warnings, warn
from ..sampling.guidance import temporal_weight
from ..sampling.mouth import centres_from_point
from ..sampling.noise_init import progressive_noise_init
from ..sampling.options import SyncOptions
from ..sampling.sampler import denoise
from ..sampling.schedule import FlowMatchSchedule
from ..sampling.windows import blend_weights, plan_windows, window_overlaps

PIXEL_LEVELS = 255  # uint8 frames: value / 255 in [0, 1]


class FrameSource(Protocol):
    """Source frames on demand: ``num_frames``, ``size`` (H, W) and ``read(indices (n,) long) -> (n, H, W, 3)``,
    uint8 (a decoder) or float in [0, 1] (frames already in memory, :class:`TensorFrames`)."""

    num_frames: int
    size: tuple

    def read(self, indices: torch.Tensor) -> torch.Tensor: ...


# write(output (n, H, W, 3), source (n, H, W, 3), guidance (n, H, W), mouth centres (n, 2)) — called in frame
# order, each output frame once; output and source are uint8 for a uint8 source, float32 in [0, 1] for a float one
FrameSink = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], None]


class TensorFrames:
    """A :class:`FrameSource` over frames already in memory ((T, H, W, 3) float in [0, 1], e.g. a ComfyUI IMAGE
    batch): windows are indexed out of it, never copied whole."""

    def __init__(self, frames: torch.Tensor):
        self.frames = frames
        self.num_frames = int(frames.shape[0])
        self.size = (int(frames.shape[1]), int(frames.shape[2]))

    def read(self, indices: torch.Tensor) -> torch.Tensor:
        return self.frames[indices]


def as_unit(frames: torch.Tensor) -> torch.Tensor:
    """uint8 → float32 / 255; float → float32 (frames in [0, 1])."""
    return frames.float() / PIXEL_LEVELS if frames.dtype == torch.uint8 else frames.float()


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """(…, 3) float in [0, 1] → uint8, rounded (as ``media.write_video`` writes them)."""
    return (frames.clamp(0, 1) * PIXEL_LEVELS).round().to(torch.uint8)


class ChunkedFrameFeatures:
    """Speech features of any range of video frames, encoding one 30 s Whisper chunk at a time.

    Whisper encodes consecutive 30 s chunks independently (``audio.whisper.WhisperFeatures.encode``), so a
    chunk encoded alone gives exactly its rows of the whole clip's features; rows are aligned to frames by
    the rule of ``align_features_to_frames``. At most two chunks are held.
    """

    def __init__(self, encoder, wave16k: torch.Tensor, fps: float, num_layers: int, audio_dim: int):
        self.encoder, self.wave, self.fps = encoder, wave16k, fps
        self.chunk_samples = int(encoder.chunk_samples)
        self.samples_per_feature = SAMPLE_RATE_HZ // 50
        self.chunk_features = self.chunk_samples // self.samples_per_feature
        self.n_feat = math.ceil(wave16k.shape[0] / self.samples_per_feature)
        self.layers = num_layers
        spec = encoder.spec
        self.keep = audio_layers_for(num_layers, spec.dim, audio_dim)  # the model's last layers
        self.silence = encoder.silence_feature()[-self.keep:].reshape(-1)  # (audio_dim,)
        self._chunks: Dict[int, torch.Tensor] = {}

    def _rows(self, k: np.ndarray) -> torch.Tensor:
        out = torch.empty(len(k), self.silence.shape[0])
        for c in np.unique(k // self.chunk_features):
            if int(c) not in self._chunks:
                if len(self._chunks) >= 2:
                    self._chunks.pop(min(self._chunks))
                start = int(c) * self.chunk_samples
                feats = self.encoder.encode(self.wave[start:start + self.chunk_samples])  # (n, L, D)
                self._chunks[int(c)] = feats[:, -self.keep:].reshape(feats.shape[0], -1)
            sel = (k // self.chunk_features) == c
            out[torch.from_numpy(sel)] = self._chunks[int(c)][torch.from_numpy(k[sel] - int(c) * self.chunk_features)]
        return out

    def frames(self, lo: int, hi: int) -> torch.Tensor:
        """(hi − lo, audio_dim) features of video frames lo … hi − 1."""
        k0, k1, frac, padded = frame_feature_positions(self.fps, np.arange(lo, hi, dtype=np.int64), self.n_feat)
        out = self.silence.reshape(1, -1).repeat(hi - lo, 1)
        valid = np.nonzero(~padded)[0]
        if valid.size:
            w = torch.from_numpy(frac[valid]).float()[:, None]
            out[valid] = (1 - w) * self._rows(k0[valid]) + w * self._rows(k1[valid])
        return out


@torch.no_grad()
def stream_sync(pipe, source: FrameSource, fps: float, waveform, sample_rate: int, write: FrameSink,
                options: Optional[SyncOptions] = None, progress: Optional[ProgressCallback] = None,
                cancel: Optional[CancelCheck] = None, start: Optional[Callable[[int, torch.Tensor], None]] = None,
                on_warning: Optional[WarningCallback] = None, raw_guidance: bool = False) -> Dict:
    """Lip-sync ``source`` to the speech window by window; finished frames go to ``write`` in order.

    Args:
        pipe: an :class:`.pipeline.OmniSyncPipeline` (its model, codec, audio encoder and device).
        source: the source frames (:class:`FrameSource`, e.g. ``media.VideoReader``).
        fps: frame rate of the source; waveform, sample_rate: the speech (any layout ``prepare_audio`` takes).
        write: receives (output, source, guidance map, mouth centres) for each finished run of frames (output and
            source in the source's kind: uint8, or float32 in [0, 1]).
        start: called once before sampling with (T_out, wave16k): the output length and the speech as planned.
        on_warning: receives each warning line as it arises (as in ``OmniSyncPipeline.__call__``); the lines are
            also in the report's ``"warnings"``.
        raw_guidance: pass the DS-CFG weight map itself to ``write`` (for a caller that holds the whole map and
            normalises it by its observed range, as ``pipeline.normalise_map``), instead of scaling it by its
            theoretical range at the first step.

    Returns the run report (as ``SyncResult.report``) with ``wave16k``: the speech as written beside the frames.
    """
    opts = options or SyncOptions()
    codec, cfg = pipe.codec, pipe.model.config
    if codec.temporal_factor != 1:
        raise OmniSyncError("streaming encodes frames one window at a time and needs a frame-by-frame codec "
                            f"(temporal factor 1); this codec groups {codec.temporal_factor} frames: run the "
                            "in-memory pipeline (OmniSyncPipeline.__call__) instead.")
    if opts.mouth_mask is not None:
        raise OmniSyncError("a per-frame mouth mask is an in-memory input; stream with mouth='auto' or a point, "
                            "or run the in-memory pipeline (OmniSyncPipeline.__call__).")
    rep: Dict = {"warnings": []}

    def note(message: str) -> None:
        warn(rep, on_warning, message)

    H, W = source.size
    check_frame_size(H, W)
    for message in training_warnings(getattr(pipe, "meta", None), fps, (H, W)):
        note(message)
    plan, wave16k = prepare_audio(source.num_frames, fps, waveform, sample_rate, opts.length_mode, on_warning=note)
    T = int(plan.frame_indices.shape[0])
    if start is not None:
        start(T, wave16k)
    features = None
    if cfg.audio_dim:
        if pipe.audio_encoder is None:
            raise OmniSyncError("this model listens to speech: give the pipeline a Whisper encoder "
                                "(omnisync_core.api.load_runtime loads the model's own).")
        features = ChunkedFrameFeatures(pipe.audio_encoder, wave16k, fps, pipe.audio_encoder.spec.num_layers,
                                        cfg.audio_dim)
    _, ph, pw = cfg.patch_size
    stride = codec.spatial_factor * math.lcm(ph, pw)
    pad_h, pad_w = -H % stride, -W % stride
    if pad_h or pad_w:
        note(f"frames are {W}×{H}: padded to {W + pad_w}×{H + pad_h} (edge pixels repeated) for the model's "
             f"{stride}-pixel stride, cropped back to {W}×{H} after decoding.")
    sigmas = FlowMatchSchedule(opts.num_steps, opts.shift).truncate(opts.tau)
    steps = sigmas.numel() - 1
    windows = [(0, T)] if opts.window == 0 or opts.window >= T else plan_windows(T, opts.window, opts.overlap)
    g = opts.guidance
    lo_w = min(g.omega_base, g.omega_peak) * temporal_weight(opts.tau, g.gamma)
    hi_w = max(g.omega_base, g.omega_peak) * temporal_weight(opts.tau, g.gamma)
    text = opts.text.to(pipe.device) if opts.text is not None else None
    fw = pipe.frame_window

    # running sums over the frames not yet written: [done, end of the last window)
    done = 0
    acc = gacc = cacc = wsum = None
    src_u8 = None  # (n, H, W, 3) uint8 source frames of [done, end)
    lost: set = set()
    passes = uncond = 0
    mouth_source = "auto" if isinstance(opts.mouth, str) else "point"
    for k, (s, e) in enumerate(windows):
        check_cancel(cancel)
        # source frames of this window: the part already read is kept, the rest is read now
        have = 0 if src_u8 is None else src_u8.shape[0] - (s - done)
        new = source.read(plan.frame_indices[s + have:e])
        win_u8 = torch.cat([src_u8[s - done:], new]) if have else new
        frames_p, pads = pad_to_stride(as_unit(win_u8), stride)
        src_lat = codec.encode(frames_p).float().cpu()  # (C, n, h, w)
        x_init = progressive_noise_init(src_lat, opts.tau, seed=opts.seed, frame_offset=s)
        tokens = None
        if features is not None:
            lo, hi = max(0, s - fw), min(T, e + fw)
            tokens = latent_audio_tokens(features.frames(lo, hi), 1, fw)[s - lo:e - lo].to(pipe.device)
        centres = "auto" if isinstance(opts.mouth, str) else centres_from_point(tuple(opts.mouth), e - s)

        def window_progress(d, _t, message, _base=k * steps):
            report(progress, _base + d, steps * len(windows), message)

        lat, info = denoise(pipe.model, x_init.to(pipe.device), src_lat.to(pipe.device), tokens, text, sigmas, g,
                            centres, progress=window_progress, cancel=cancel)
        passes += info["forward_passes"]
        uncond += info["uncond_passes"]
        lost.update(s + f for f in info["fallback_frames"])
        wts = blend_weights(e - s, *window_overlaps(windows, k))  # (n,)
        C, _, h, w = lat.shape
        grow = e - (done if acc is None else done + acc.shape[1])  # frames this window adds to the sums
        zeros = lambda *shape: torch.zeros(*shape)  # noqa: E731
        if acc is None:
            acc, gacc, cacc, wsum = zeros(C, grow, h, w), zeros(grow, h, w), zeros(grow, 2), zeros(grow)
        elif grow:
            acc = torch.cat([acc, zeros(C, grow, h, w)], 1)
            gacc, cacc, wsum = torch.cat([gacc, zeros(grow, h, w)]), torch.cat([cacc, zeros(grow, 2)]), torch.cat([wsum, zeros(grow)])
        a = s - done
        acc[:, a:] += wts.view(1, -1, 1, 1) * lat.cpu()
        gacc[a:] += wts.view(-1, 1, 1) * info["guidance_map"].cpu()
        cacc[a:] += wts[:, None] * info["centres"].cpu()
        wsum[a:] += wts
        src_u8 = win_u8 if a == 0 else torch.cat([src_u8[:a], win_u8])

        # frames no later window touches are finished: decode, assemble and write them
        end = windows[k + 1][0] if k + 1 < len(windows) else e
        m = end - done
        if m > 0:
            lat_m = acc[:, :m] / wsum[:m].view(1, -1, 1, 1)
            out = crop_back(codec.decode(lat_m)[:m], pads)  # (m, H, W, 3)
            src_f = as_unit(src_u8[:m])
            fallback = [t for t in range(m) if done + t in lost]
            if fallback:
                out[fallback] = src_f[fallback].to(out.dtype)
            centres_m = cacc[:m] / wsum[:m, None]
            if opts.composite:
                mask = mouth_region_mask(centres_m, H, W, radius=opts.composite_radius,
                                         feather_px=opts.composite_feather_px)
                out = composite_outside_mouth(out, src_f, mask)
            gmap = gacc[:m] / wsum[:m].view(-1, 1, 1)
            gmap = F.interpolate(gmap[:, None], size=(H + pads[0], W + pads[1]), mode="bilinear",
                                 align_corners=False)[:, 0, :H, :W]
            if not raw_guidance:
                gmap = ((gmap - lo_w) / (hi_w - lo_w)).clamp(0, 1) if hi_w - lo_w > 1e-8 else torch.zeros_like(gmap)
            out = out.float().cpu()
            write(to_uint8(out) if src_u8.dtype == torch.uint8 else out.clamp(0, 1), src_u8[:m], gmap, centres_m)
            acc, gacc, cacc, wsum, src_u8 = acc[:, m:], gacc[m:], cacc[m:], wsum[m:], src_u8[m:]
            done = end
    mouth = {"source": mouth_source}
    fallback_frames = sorted(lost)
    if fallback_frames:
        mouth["fallback_frames"] = fallback_frames
        shown = ", ".join(str(t) for t in fallback_frames[:8]) + (", ..." if len(fallback_frames) > 8 else "")
        note(f"no mouth found in {len(fallback_frames)} of {T} frames ({shown}): passed through unchanged from the "
             "source; give the mouth as a point (--mouth x,y) or a mask to edit them.")
    return {"warnings": rep["warnings"], "length": plan.message, "frames": T, "mouth": mouth, "windows": windows, "steps": steps * len(windows),
            "forward_passes": passes, "uncond_passes": uncond, "streamed": True, "wave16k": wave16k}


@torch.no_grad()
def sync_frames(pipe, frames, fps: float, waveform, sample_rate: int, options: Optional[SyncOptions] = None,
                progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCheck] = None,
                on_warning: Optional[WarningCallback] = None):
    """``pipe(frames, ...)`` for frames already in memory, window by window: beside the input, only the output
    frames and the guidance map are held whole (no whole-clip copies of the source, its latents, the noise or
    the samples). Same frames, guidance map and speech as the in-memory call (``OmniSyncPipeline.__call__``);
    needs a frame-by-frame codec and no per-frame mouth mask (see :func:`stream_sync`). Returns a
    ``pipeline.SyncResult``."""
    import time

    from ..io.frames import validate_frames
    from .omnisync import SyncResult, conversion_warnings

    t0 = time.perf_counter()
    warnings: Dict = {"warnings": []}

    def note(message: str) -> None:
        warn(warnings, on_warning, message)

    frames, frame_info = validate_frames(frames)  # float32 frames are used as they are (no copy)
    for message in conversion_warnings(frame_info):
        note(message)
    H, W = frames.shape[1:3]
    held: Dict[str, torch.Tensor] = {}
    done = [0]

    def start(T: int, _wave16k: torch.Tensor) -> None:
        held["frames"] = torch.empty(T, H, W, 3)
        held["guidance"] = torch.empty(T, H, W)
        held["centres"] = torch.empty(T, 2)

    def write(out, _src, gmap, centres) -> None:
        n = out.shape[0]
        held["frames"][done[0]:done[0] + n] = out
        held["guidance"][done[0]:done[0] + n] = gmap
        held["centres"][done[0]:done[0] + n] = centres
        done[0] += n

    report = stream_sync(pipe, TensorFrames(frames), fps, waveform, sample_rate, write, options, progress=progress,
                         cancel=cancel, start=start, on_warning=note, raw_guidance=True)
    wave16k = report.pop("wave16k")
    report["warnings"] = warnings["warnings"]  # the conversions' and, through note, the run's
    gmap = held["guidance"]  # normalised in place as pipeline.normalise_map does: by the clip's observed range
    lo, hi = gmap.amin(), gmap.amax()
    gmap.sub_(lo).div_(hi - lo) if float(hi - lo) >= 1e-8 else gmap.zero_()
    report["seconds"] = round(time.perf_counter() - t0, 3)
    return SyncResult(frames=held["frames"], fps=fps, waveform=wave16k, sample_rate=SAMPLE_RATE_HZ,
                      guidance_map=gmap, mouth_centres=held["centres"], report=report)
