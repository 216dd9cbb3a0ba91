"""Waveform → per-video-frame speech features: the fps ↔ audio-feature alignment lives here, once.

Top-down:

- :class:`AudioFeatureSpec` names the Whisper features a model was trained on (stored in checkpoints);
- :func:`to_mono_16k` / :func:`validate_audio` bring any waveform to 16 kHz mono and reject unusable audio;
- :func:`align_features_to_frames` samples the 50 Hz Whisper features at each video frame's centre;
- :func:`latent_audio_tokens` groups per-frame features into the audio tokens of each latent frame.

Units: audio at :data:`SAMPLE_RATE_HZ`; Whisper encoder positions at :data:`FEATURE_RATE_HZ`, feature k
covering [k/50, (k+1)/50) s, so it sits at its centre (k + 0.5)/50 s; video frame t covers
[t/fps, (t+1)/fps) s.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np
import soxr
import torch

from ..errors import OmniSyncError
from ..io.fps import exact_fps

SAMPLE_RATE_HZ = 16000  # Whisper's input rate
FEATURE_RATE_HZ = 50  # Whisper encoder positions per second (mel hop 10 ms, conv2 stride 2)
SAMPLES_PER_FEATURE = SAMPLE_RATE_HZ // FEATURE_RATE_HZ  # 320 samples at 16 kHz per feature
MIN_SAMPLE_RATE_HZ = 1000  # below this a "sample rate" is almost certainly a mistake
MAX_CHANNELS = 16  # more "channels" than this means an (N, C) array was passed as (C, N)
SILENT_PEAK = 1e-4  # peak |amplitude| below which audio counts as silent (−80 dBFS)


# -- the spec --------------------------------------------------------------------------------------

@dataclass
class AudioFeatureSpec:
    """Which Whisper features a model consumes; serialised into checkpoint metadata (``"audio"``).

    encoder: name of the Whisper model (informational; e.g. ``"whisper-tiny.en"``).
    sample_rate, feature_rate: 16 000 Hz in, 50 feature frames per second out.
    num_layers: how many hidden states are stacked per feature: the LAST ``num_layers`` entries of the
        encoder's ``output_hidden_states`` (embedding output + one per layer; tiny.en has 4 layers,
        so 5 hidden states).
    dim: Whisper ``d_model`` (tiny.en: 384).
    frame_window: w, the neighbouring video frames on each side that a latent frame also sees.
    """

    encoder: str = "whisper-tiny.en"
    sample_rate: int = SAMPLE_RATE_HZ
    feature_rate: int = FEATURE_RATE_HZ
    num_layers: int = 5
    dim: int = 384
    frame_window: int = 2

    def __post_init__(self):
        if not isinstance(self.encoder, str):
            raise OmniSyncError(f"audio spec 'encoder' must be a string, got {self.encoder!r}.")
        for name in ("sample_rate", "feature_rate", "num_layers", "dim", "frame_window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise OmniSyncError(f"audio spec {name!r} must be an integer, got {value!r}.")
        if min(self.sample_rate, self.feature_rate, self.num_layers, self.dim) < 1 or self.frame_window < 0:
            raise OmniSyncError(
                f"audio spec has a bad value ({self.to_dict()}): sample_rate, feature_rate, num_layers and dim "
                "must be >= 1 and frame_window >= 0."
            )

    @property
    def token_dim(self) -> int:
        """Width of one per-frame feature: num_layers · dim."""
        return self.num_layers * self.dim

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AudioFeatureSpec":
        if not isinstance(d, Mapping):
            raise OmniSyncError(f"the audio spec must be a JSON object (dict), got {type(d).__name__}.")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in d if k not in known]
        if unknown:
            raise OmniSyncError(
                f"unknown audio spec key(s) {unknown}; valid keys are {known}. Remove or rename them "
                "(the file may come from a newer OmniSync version)."
            )
        return cls(**dict(d))


# -- waveform in -----------------------------------------------------------------------------------

RESAMPLE_BLOCK_SAMPLES = 1 << 18  # to_mono_16k converts this many input samples at a time


def _as_float(x: np.ndarray) -> np.ndarray:
    """PCM integers → float in [−1, 1]; floats → float64 unchanged."""
    if x.dtype == np.bool_:
        raise OmniSyncError("the waveform is boolean; pass float samples in [-1, 1] or integer PCM.")
    if np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float64, copy=False)
    if x.dtype == np.uint8:  # 8-bit WAV is unsigned, centred on 128
        return (x.astype(np.float64) - 128.0) / 128.0
    if np.issubdtype(x.dtype, np.signedinteger):
        return x.astype(np.float64) / float(-np.iinfo(x.dtype).min)
    raise OmniSyncError(
        f"unsupported waveform dtype {x.dtype}; pass float samples in [-1, 1] or int16/int32/uint8 PCM."
    )


def to_mono_16k(waveform, sample_rate: int) -> torch.Tensor:
    """Any waveform → ``(N16,)`` float32 CPU tensor at 16 kHz, mono.

    waveform: numpy array or torch tensor, ``(N,)``, ``(C, N)`` or ``(B, C, N)`` (only the first batch
        item is used); float in [−1, 1], or int16 / int32 / uint8 PCM (scaled to [−1, 1]).
    sample_rate: Hz, >= 1000. Channels are averaged, then the signal is resampled with soxr (high
        quality) to ``N16 = floor(N · 16000 / sample_rate + 0.5)`` samples (rounded half up).
    Non-finite samples pass through unchanged in count; :func:`validate_audio` rejects them.
    """
    if isinstance(waveform, torch.Tensor):
        x = waveform.detach().cpu()
        x = x.float().numpy() if x.dtype in (torch.bfloat16, torch.float16) else x.numpy()
    else:
        x = np.asarray(waveform)
    if x.ndim == 3:
        if x.shape[0] == 0:
            raise OmniSyncError("the waveform batch is empty (shape (0, C, N)); pass at least one clip.")
        x = x[0]
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise OmniSyncError(
            f"waveform has shape {tuple(x.shape)}; pass (N,), (C, N) or (B, C, N) samples."
        )
    if x.shape[0] > MAX_CHANNELS:
        raise OmniSyncError(
            f"waveform has shape {tuple(x.shape)}: {x.shape[0]} channels is more than {MAX_CHANNELS}; it is "
            "probably (N, C), so pass its transpose (C, N)."
        )
    if x.shape[0] == 0:
        raise OmniSyncError("the waveform has 0 channels; pass (C, N) with C >= 1.")
    if isinstance(sample_rate, bool) or not float(sample_rate).is_integer() or sample_rate < MIN_SAMPLE_RATE_HZ:
        raise OmniSyncError(
            f"sample_rate must be a whole number of Hz >= {MIN_SAMPLE_RATE_HZ}, got {sample_rate!r}; pass the "
            "rate the audio was recorded at (e.g. 16000, 44100, 48000)."
        )
    sample_rate = int(sample_rate)
    if sample_rate == SAMPLE_RATE_HZ and x.shape[0] == 1 and x.dtype == np.float32:
        return torch.from_numpy(np.ascontiguousarray(x[0]))  # already 16 kHz mono float32: exact, no copies
    # block by block (averaging first is exact: resampling is linear; soxr's stream gives exactly its one-shot
    # result), so the float64 temporaries stay one block long whatever the length of the speech
    n = x.shape[1]
    stream = soxr.ResampleStream(sample_rate, SAMPLE_RATE_HZ, 1, dtype="float64") \
        if sample_rate != SAMPLE_RATE_HZ and n > 0 else None
    parts, total = [], 0
    for start in range(0, max(n, 1), RESAMPLE_BLOCK_SAMPLES):
        mono = _as_float(x[:, start:start + RESAMPLE_BLOCK_SAMPLES]).mean(axis=0)  # (n,) float64
        if stream is not None:
            mono = stream.resample_chunk(mono, last=start + RESAMPLE_BLOCK_SAMPLES >= n)
        parts.append(mono.astype(np.float32))
        total += parts[-1].shape[0]
    out = np.empty(total, np.float32)
    pos = 0
    while parts:
        part = parts.pop(0)
        out[pos:pos + part.shape[0]] = part
        pos += part.shape[0]
    return torch.from_numpy(out)


def wave_stats(wave: torch.Tensor, level: float = 1.0, offset: float = 0.0) -> Dict[str, Any]:
    """{"non_finite", "peak" (of |x − offset| over the finite samples), "at_level" (finite samples with
    |x − offset| >= level), "sum" (of the finite samples)} of a waveform, block by block: no temporary as long
    as the speech (a 10-minute clip holds 9.6 M samples)."""
    flat = wave if hasattr(wave, "with_length") else torch.as_tensor(wave).reshape(-1)  # a media.SpeechFile as it is
    bad, peak, at, total = 0, 0.0, 0, 0.0
    for start in range(0, flat.shape[0], RESAMPLE_BLOCK_SAMPLES):
        x = torch.as_tensor(flat[start:start + RESAMPLE_BLOCK_SAMPLES])
        finite = torch.isfinite(x)
        bad += int(x.numel() - int(finite.sum()))
        x = x[finite]
        if x.numel():
            total += float(x.double().sum())
            a = (x - offset).abs() if offset else x.abs()
            peak = max(peak, float(a.max()))
            at += int((a >= level).sum())
    return {"non_finite": bad, "peak": peak, "at_level": at, "sum": total}


def validate_audio(wave16k: torch.Tensor) -> None:
    """Reject audio the model cannot use: empty, non-finite (NaN/inf) or silent (peak < 1e-4).

    wave16k: ``(N,)`` float at 16 kHz (from :func:`to_mono_16k`). Raises :class:`OmniSyncError`.
    """
    if not hasattr(wave16k, "with_length"):  # a media.SpeechFile is checked where it lies
        wave16k = torch.as_tensor(wave16k)
    if wave16k.shape[0] == 0:
        raise OmniSyncError("the audio is empty (0 samples); pass a clip with speech in it.")
    stats = wave_stats(wave16k)
    if stats["non_finite"]:
        raise OmniSyncError(
            f"the audio contains NaN or infinite values ({stats['non_finite']} of {wave16k.shape[0]} samples); "
            "re-export or re-decode the audio file."
        )
    peak = stats["peak"]
    if peak < SILENT_PEAK:
        raise OmniSyncError(
            f"the audio is silent (peak amplitude {peak:.2g} < {SILENT_PEAK:g}); pass a clip with speech in it, "
            "or check that the right track / channel was loaded and that float audio is scaled to [-1, 1]."
        )
    # A constant offset (DC) is no sound: measured around the mean, DC-only "speech" is silence and refused
    # like it (Whisper would hear nothing and the mouth would stay shut); speech riding on a DC offset passes.
    mean = stats["sum"] / max(1, wave16k.shape[0])
    if abs(mean) >= SILENT_PEAK / 2:
        swing = wave_stats(wave16k, offset=mean)["peak"]
        if swing < SILENT_PEAK:
            raise OmniSyncError(
                f"the audio is silent: a constant level of {mean:.3g} (a DC offset) that varies by only {swing:.2g}; "
                "pass a clip with speech in it, or check that the right track / channel was loaded.")


# -- 50 Hz features → video frames -----------------------------------------------------------------

def align_features_to_frames(
    feats: torch.Tensor,
    fps: float,
    num_frames: int,
    silence_feature: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, Dict[str, Any]]:
    """Whisper features at 50 Hz → one feature per video frame.

    feats: ``(N_feat, L, D)``; feature k sits at time (k + 0.5)/50 s.
    fps: video frame rate, made exact by :func:`omnisync_core.io.fps.exact_fps` (29.97 → 30000/1001); the
        arithmetic is exact integer arithmetic.
    num_frames: T, the number of video frames wanted.
    silence_feature: ``(L, D)`` used for frames past the audio end (zeros when None).

    Frame t covers [t/fps, (t+1)/fps); its feature is the linear interpolation of the 50 Hz grid at the
    frame centre c = (t + 0.5)/fps, i.e. at fractional index x = 50·c − 0.5 (clamped to [0, N_feat − 1]).
    Frames with c >= N_feat/50 s (centre past the audio end) get ``silence_feature``; the number of such
    frames is reported. Returns ``(frame_feats (T, L·D) float32, info)``; rows are layer-major,
    ``row = feat.reshape(L·D)``. info: ``padded_frames``, ``feature_frames``, ``num_frames``, ``fps``,
    ``message``.
    """
    feats = torch.as_tensor(feats)
    if feats.ndim != 3:
        raise OmniSyncError(f"features must be (N_feat, L, D), got shape {tuple(feats.shape)}.")
    if isinstance(num_frames, bool) or int(num_frames) != num_frames or num_frames < 1:
        raise OmniSyncError(f"num_frames must be a positive integer, got {num_frames!r}.")
    num_frames = int(num_frames)
    n_feat, L, D = feats.shape
    feats = feats.detach().float().cpu()
    if silence_feature is None:
        silence = torch.zeros(L, D)
    else:
        silence = torch.as_tensor(silence_feature).detach().float().cpu()
        if silence.shape != (L, D):
            raise OmniSyncError(
                f"silence_feature has shape {tuple(silence.shape)} but the features are {L} layers × {D}; pass "
                "the silence feature of the same encoder."
            )
    rate = exact_fps(fps)
    p, q = rate.numerator, rate.denominator  # fps = p/q
    k0, k1, frac, padded = frame_feature_positions(rate, np.arange(num_frames, dtype=np.int64), n_feat)

    out = silence.reshape(1, L * D).repeat(num_frames, 1)  # (T, L·D)
    valid = np.nonzero(~padded)[0]
    if valid.size:
        flat = feats.reshape(n_feat, L * D)  # layer-major rows
        w = torch.from_numpy(frac[valid]).float()[:, None]  # (V, 1)
        out[valid] = (1 - w) * flat[k0[valid]] + w * flat[k1[valid]]
    n_pad = int(padded.sum())
    fps_str = f"{p}/{q}" if q != 1 else str(p)
    if n_pad:
        message = (
            f"the speech ({n_feat / FEATURE_RATE_HZ:.2f} s) ends before the video ({num_frames} frames at "
            f"{fps_str} fps = {num_frames * q / p:.2f} s): the last {n_pad} frame(s) get silence features."
        )
    else:
        message = f"{num_frames} frames at {fps_str} fps aligned to {n_feat} Whisper features (50 Hz)."
    info = {"padded_frames": n_pad, "feature_frames": int(n_feat), "num_frames": num_frames,
            "fps": float(rate), "message": message}
    return out, info


def frame_feature_positions(fps, frames: np.ndarray, n_feat: int):
    """Where frames sit on the 50 Hz feature grid (the rule of :func:`align_features_to_frames`, exactly).

    frames: (n,) int64 frame indices. Returns (k0, k1, frac, padded), each (n,): frame t's feature is
    ``(1 − frac)·feat[k0] + frac·feat[k1]``, or silence where ``padded`` (its centre is past the audio).
    """
    rate = exact_fps(fps)
    p, q = rate.numerator, rate.denominator  # fps = p/q
    t = np.asarray(frames, dtype=np.int64)
    # x_t = 50·(t + 0.5)·q/p − 0.5 = ((2t + 1)·50·q − p) / (2p), exactly, as a fraction num/den.
    num = (2 * t + 1) * FEATURE_RATE_HZ * q - p
    den = 2 * p
    padded = (2 * t + 1) * FEATURE_RATE_HZ * q >= 2 * p * n_feat  # centre >= N_feat/50 s
    k0 = np.clip(num // den, 0, max(n_feat - 1, 0))
    frac = np.where(num < 0, 0.0, np.mod(num, den) / den)  # before feature 0's centre: feature 0 itself
    k1 = np.minimum(k0 + 1, max(n_feat - 1, 0))
    return k0, k1, frac, padded


# -- per-frame features → tokens of each latent frame ----------------------------------------------

def latent_frame_groups(num_frames: int, temporal_factor: int) -> torch.Tensor:
    """``(F, temporal_factor)`` video-frame indices held by each latent frame.

    temporal_factor 1: latent frame f holds frame f. temporal_factor r > 1 (Wan VAE rule T = 1 + r·k):
    latent frame 0 holds frame 0 (repeated r times), latent frame j >= 1 holds frames 1 + r(j−1) … r·j.
    """
    r = int(temporal_factor)
    if r < 1:
        raise OmniSyncError(f"temporal_factor must be >= 1, got {temporal_factor!r}.")
    if num_frames < 1 or (num_frames - 1) % r:
        raise OmniSyncError(
            f"{num_frames} frames do not fit a codec with temporal factor {r}: the frame count must be 1 + {r}·k "
            f"(e.g. {1 + r * max(1, (num_frames - 1) // r)}); pad the frames to a valid count first."
        )
    first = torch.zeros(1, r, dtype=torch.long)  # (1, r): frame 0, repeated
    later = torch.arange(1, num_frames).reshape(-1, r)  # (F − 1, r)
    return torch.cat([first, later])  # (F, r)


def latent_audio_tokens(frame_feats: torch.Tensor, temporal_factor: int, frame_window: int = 2) -> torch.Tensor:
    """Per-frame features ``(T, K)`` → audio tokens per latent frame ``(F, N_a, K)``, N_a = r + 2w.

    The tokens of a latent frame are the frames of its group (see :func:`latent_frame_groups`) plus
    ``frame_window`` = w frames before the group's first frame and w after its last, clamped to the
    clip: indices (first − w … first − 1, group…, last + 1 … last + w) ∩ [0, T − 1] by clamping.
    """
    frame_feats = torch.as_tensor(frame_feats)
    if frame_feats.ndim != 2:
        raise OmniSyncError(f"frame features must be (T, K), got shape {tuple(frame_feats.shape)}.")
    w = int(frame_window)
    if w < 0:
        raise OmniSyncError(f"frame_window must be >= 0, got {frame_window!r}.")
    T = frame_feats.shape[0]
    groups = latent_frame_groups(T, temporal_factor)  # (F, r)
    offsets = torch.arange(1, w + 1)
    before = groups[:, :1] - offsets.flip(0)[None]  # (F, w): first − w … first − 1
    after = groups[:, -1:] + offsets[None]  # (F, w): last + 1 … last + w
    index = torch.cat([before, groups, after], dim=1).clamp(0, T - 1)  # (F, N_a)
    return frame_feats[index]  # (F, N_a, K)
