"""X-Dub's audio conditioning: Whisper + wav2vec2 features at 50 Hz and their windows per latent frame.

Reproduces the public X-Dub reference (KlingAIResearch/X-Dub, ``diffsynth/thirdparties/audio_processor.py`` and
its openai-whisper copy) with transformers' ``WhisperEncoder`` and ``Wav2Vec2Model``; tested against it to 1e-5
in float32 (tests/test_xdub_audio.py). Top-down:

- :func:`load_xdub_audio_encoders` → :class:`XDubAudioEncoders` (Whisper large-v2 + wav2vec2-base-960h as their
  publishers ship them: each one's single ``model.safetensors``, its configuration derived from the tensor shapes
  when none is beside it; or the Kling bundle's Whisper ``.pt`` and wav2vec2 folder, pickles read with
  ``torch.load(weights_only=True)`` on torch >= 2.6 only; wav2vec2 is read by :mod:`.wav2vec2`);
- :func:`extract_xdub_features` → :class:`XDubAudioFeatures`: the whole clip, once, at 50 feature frames/s:
  Whisper's last block output (before its final LayerNorm) and wav2vec2's last hidden state;
- :func:`xdub_audio_windows` → :class:`XDubAudioWindows`: the ``(F_lat, W, 2048)`` tokens of one clip, the
  DiT's ``audio_feats``; the window arithmetic lives in :func:`xdub_window_indices` only.

Units: audio at :data:`SAMPLE_RATE_HZ`; feature k of either stream covers [k/50, (k+1)/50) s; video at
:data:`XDUB_FPS` so video frame t owns features 2t and 2t + 1.

Where the reference pads or cuts, so do we, explicitly, and each result says so in its ``message``:
the last 30 s Whisper window is padded with log-mel value 0.0 and its features are cut back to the audio;
window positions before the audio start or past its end repeat the first / last feature.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import OmniSyncError
from ..io.fps import exact_fps
from ..model.files import missing_message, named_source, read_pickled_weights, xdub_file, xdub_file_for
from ..progress import CancelCheck, ProgressCallback, check_cancel, report
from .features import FEATURE_RATE_HZ, SAMPLE_RATE_HZ, to_mono_16k, validate_audio
from .wav2vec2 import WAV2VEC2_NORM_DEFAULT, load_wav2vec2

XDUB_FPS = 25  # X-Dub was trained on 25 fps video
FEATURES_PER_VIDEO_FRAME = FEATURE_RATE_HZ // XDUB_FPS  # 2: features 2t, 2t + 1 belong to video frame t
VAE_TEMPORAL_FACTOR = 4  # Wan 2.2 VAE: latent 0 ← frame 0, latent j ← frames 4j − 3 … 4j
WHISPER_LARGE_V2_DIM = 1280
WAV2VEC2_BASE_DIM = 768
XDUB_AUDIO_DIM = WHISPER_LARGE_V2_DIM + WAV2VEC2_BASE_DIM  # 2048 = AudioProjModule input; Whisper channels first

# Whisper's log-mel front end as the reference computes it (openai-whisper audio.py, no 30 s padding of the audio)
MEL_N_FFT = 400  # 25 ms window at 16 kHz
MEL_HOP = 160  # 10 ms: 100 mel frames/s
MEL_FRAMES_PER_FEATURE = 2  # Whisper's conv2 has stride 2: 100 mel frames/s → 50 features/s
LOG_MEL_FLOOR = 1e-10  # power floor before log10
LOG_MEL_RANGE = 8.0  # log10 units kept below the clip's maximum
LOG_MEL_OFFSET, LOG_MEL_SCALE = 4.0, 4.0  # normalised = (log10 + 4) / 4
MEL_PAD_VALUE = 0.0  # the reference pads the last 30 s window with normalised log-mel 0.0 (not with silence)

PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")  # never unpickled at run time

# openai-whisper encoder key → transformers WhisperEncoder key (inside ``encoder.``)
OPENAI_TO_HF_ENCODER = (
    ("positional_embedding", "embed_positions.weight"),
    ("ln_post.", "layer_norm."),
    ("blocks.", "layers."),
    (".attn.query.", ".self_attn.q_proj."),
    (".attn.key.", ".self_attn.k_proj."),
    (".attn.value.", ".self_attn.v_proj."),
    (".attn.out.", ".self_attn.out_proj."),
    (".attn_ln.", ".self_attn_layer_norm."),
    (".mlp.0.", ".fc1."),
    (".mlp.2.", ".fc2."),
    (".mlp_ln.", ".final_layer_norm."),
)
CONVERT_HINT = "python -m omnisync_core convert-whisper large-v2.pt whisper-large-v2-encoder.safetensors"


# -- the encoders ----------------------------------------------------------------------------------

@dataclass
class XDubAudioEncoders:
    """Whisper encoder + wav2vec2 with their front ends.

    whisper: transformers ``WhisperEncoder`` (only its convs, positions and layers run; its final LayerNorm
        is not applied, as in the reference). wav2vec: transformers ``Wav2Vec2Model``.
    mel_filters: ``(n_mels, MEL_N_FFT // 2 + 1)`` float32 Slaney mel filter bank (librosa's / openai-whisper's).
    normalize_wav2vec: zero-mean unit-variance input normalisation (the preprocessor's ``do_normalize``).
    """

    whisper: Any
    wav2vec: Any
    mel_filters: torch.Tensor
    normalize_wav2vec: bool = WAV2VEC2_NORM_DEFAULT
    sources: Dict[str, str] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.whisper.conv1.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.whisper.conv1.weight.dtype

    @property
    def dims(self) -> Tuple[int, int]:
        """(Whisper d_model, wav2vec2 hidden size): (1280, 768) for the weights X-Dub was trained with."""
        return int(self.whisper.config.d_model), int(self.wav2vec.config.hidden_size)

    def to(self, device=None, dtype=None) -> "XDubAudioEncoders":
        """Move both encoders (the reference offloads them before sampling); returns self."""
        self.whisper.to(device=device, dtype=dtype)
        self.wav2vec.to(device=device, dtype=dtype)
        return self


def load_xdub_audio_encoders(whisper_path: str, wav2vec_path: str, device="cpu",
                             dtype: torch.dtype = torch.float32) -> XDubAudioEncoders:
    """Load X-Dub's two audio encoders; no network, no pickles.

    whisper_path: a single Whisper ``.safetensors`` (openai/whisper-large-v2's ``model.safetensors``; its config
        from its metadata, as :func:`convert_openai_whisper` writes it, or config.json beside it, else derived from
        its tensor shapes), a Hugging Face Whisper folder (config.json + model.safetensors), or the bundle's
        ``whisper/large-v2.pt`` (openai-whisper; torch >= 2.6). The decoder is never read.
    wav2vec_path: a single wav2vec2 ``.safetensors`` (facebook/wav2vec2-base-960h's ``model.safetensors``:
        ``Wav2Vec2ForCTC`` keys; its config from its metadata or config.json beside it, else derived from its tensor
        shapes) or the bundle's ``wav2vec2-base-960h/`` folder; see :func:`~.wav2vec2.load_wav2vec2`.
    device, dtype: where and in which precision both run (the reference: Whisper in float16 on a GPU, wav2vec2
        in float32; the features are returned in float32 either way).
    """
    whisper = _load_whisper_encoder(os.fspath(whisper_path))
    wav2vec, normalize = load_wav2vec2(os.fspath(wav2vec_path))
    mel_filters = _mel_filters(int(whisper.config.num_mel_bins))
    encoders = XDubAudioEncoders(whisper=whisper.eval().requires_grad_(False),
                                 wav2vec=wav2vec.eval().requires_grad_(False), mel_filters=mel_filters,
                                 normalize_wav2vec=normalize,
                                 sources={"whisper": os.fspath(whisper_path), "wav2vec": os.fspath(wav2vec_path)})
    return encoders.to(device=device, dtype=dtype)


def _load_whisper_encoder(path: str):
    """A single Whisper ``.safetensors`` or a Hugging Face folder (:func:`~.whisper.read_whisper_encoder`), or the
    bundle's ``large-v2.pt`` (openai-whisper, read with ``weights_only=True`` on torch >= 2.6)."""
    from transformers import WhisperConfig

    from .whisper import _encoder_from_state_dict, read_whisper_encoder

    src = xdub_file_for("whisper", path)
    if not os.path.exists(path):
        raise OmniSyncError(missing_message(src.key, path, src.cli_flag).rstrip(".")
                            + "; a Hugging Face Whisper folder or a converted .safetensors works too.")
    if os.path.isfile(path) and path.lower().endswith(PICKLE_SUFFIXES):
        config, tensors, _ = read_openai_whisper(path)
        return _encoder_from_state_dict(WhisperConfig(**config), tensors, repr(path))
    with named_source(src.key):
        return read_whisper_encoder(path)[1]


def _mel_filters(n_mels: int) -> torch.Tensor:
    """``(n_mels, 201)`` float32: the Slaney-style filter bank openai-whisper stores in mel_filters.npz."""
    from transformers.audio_utils import mel_filter_bank

    bank = mel_filter_bank(num_frequency_bins=MEL_N_FFT // 2 + 1, num_mel_filters=n_mels, min_frequency=0.0,
                           max_frequency=SAMPLE_RATE_HZ / 2, sampling_rate=SAMPLE_RATE_HZ, norm="slaney",
                           mel_scale="slaney")  # (201, n_mels) float64
    return torch.from_numpy(np.ascontiguousarray(bank.T)).float()


# -- waveform → features at 50 Hz -----------------------------------------------------------------

@dataclass
class XDubAudioFeatures:
    """The whole clip's features, computed once and windowed per clip by :func:`xdub_audio_windows`.

    whisper: ``(T_w, D_w)`` float32 CPU, Whisper's last block output, T_w = N16 // 320.
    wav2vec: ``(T_v, D_v)`` float32 CPU, wav2vec2's last hidden state, T_v = its conv stack's output length
        (≈ (N16 − 400) // 320 + 1; one fewer than T_w for most lengths, as in the reference).
    num_samples: N16, the clip's length at 16 kHz. message: what was padded or cut, in words.
    """

    whisper: torch.Tensor
    wav2vec: torch.Tensor
    num_samples: int
    whisper_padded_mel_frames: int = 0
    message: str = ""

    @property
    def seconds(self) -> float:
        return self.num_samples / SAMPLE_RATE_HZ

    def total_video_frames(self, fps=XDUB_FPS) -> int:
        """ceil(N16 / 16000 · fps): video frames the audio spans (the reference's ``get_total_length`` base)."""
        rate = exact_fps(fps)
        return -(-self.num_samples * rate.numerator // (SAMPLE_RATE_HZ * rate.denominator))


def whisper_log_mel(wave16k: torch.Tensor, mel_filters: torch.Tensor) -> torch.Tensor:
    """``(N,)`` float at 16 kHz → ``(n_mels, N // 160)`` normalised log-mel, the reference's front end.

    openai-whisper's ``log_mel_spectrogram`` as X-Dub calls it: STFT (400-point Hann, hop 160, centred with
    reflection), the last STFT frame dropped, power → mel → log10 floored at 1e-10 and at the CLIP's maximum
    − 8, then (x + 4) / 4. The audio itself is not padded to 30 s.
    """
    window = torch.hann_window(MEL_N_FFT, device=wave16k.device)
    stft = torch.stft(wave16k, MEL_N_FFT, MEL_HOP, window=window, return_complex=True)  # (201, N // 160 + 1)
    power = stft[:, :-1].abs() ** 2  # (201, M)
    mel = mel_filters.to(wave16k.device) @ power  # (n_mels, M)
    log_spec = torch.clamp(mel, min=LOG_MEL_FLOOR).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - LOG_MEL_RANGE)
    return (log_spec + LOG_MEL_OFFSET) / LOG_MEL_SCALE  # (n_mels, M)


def _whisper_last_block(encoder, mel: torch.Tensor) -> torch.Tensor:
    """``(1, n_mels, 2P)`` → ``(1, P, D)``: the output of the last encoder layer, before its final LayerNorm."""
    h = F.gelu(encoder.conv1(mel))  # (1, D, 2P)
    h = F.gelu(encoder.conv2(h))  # (1, D, P)
    h = h.permute(0, 2, 1) + encoder.embed_positions.weight  # (1, P, D)
    for layer in encoder.layers:
        h = layer(h, None)  # (1, P, D)
    return h


def _wav2vec_min_samples(config) -> int:
    n = 1
    for kernel, stride in reversed(list(zip(config.conv_kernel, config.conv_stride))):
        n = (n - 1) * stride + kernel
    return n


@torch.no_grad()
def extract_xdub_features(encoders: XDubAudioEncoders, waveform, sample_rate: int,
                          progress: Optional[ProgressCallback] = None,
                          cancel: Optional[CancelCheck] = None) -> XDubAudioFeatures:
    """Waveform → :class:`XDubAudioFeatures` for the whole clip, as the reference's ``audio2feat``.

    waveform: ``(N,)``, ``(C, N)`` or ``(B, C, N)`` float in [−1, 1] or int PCM, any rate (channels averaged,
        resampled to 16 kHz by :func:`~omnisync_core.audio.features.to_mono_16k`).
    Whisper: the log-mel of the whole clip is cut into 30 s windows (2·max_source_positions mel frames); the last
    one is padded explicitly with :data:`MEL_PAD_VALUE` to full length, each is encoded on its own and keeps
    floor(n_mel / 2) features. wav2vec2: one pass over the whole (normalised) clip.
    progress: one tick per Whisper window and one for wav2vec2; cancel is checked between them.
    """
    if not isinstance(encoders, XDubAudioEncoders):
        raise OmniSyncError(f"encoders must come from load_xdub_audio_encoders, got {type(encoders).__name__}.")
    wave = to_mono_16k(waveform, sample_rate)  # (N16,) float32
    validate_audio(wave)
    n16 = int(wave.shape[0])
    min_samples = _wav2vec_min_samples(encoders.wav2vec.config)
    if n16 < min_samples:
        raise OmniSyncError(
            f"the audio is {n16} samples at 16 kHz ({n16 / SAMPLE_RATE_HZ * 1000:.1f} ms); wav2vec2 needs at least "
            f"{min_samples} ({min_samples / SAMPLE_RATE_HZ * 1000:.0f} ms); pass a longer clip."
        )
    device, dtype = encoders.device, encoders.dtype

    mel = whisper_log_mel(wave, encoders.mel_filters)  # (n_mels, M), M = N16 // 160
    chunk = 2 * int(encoders.whisper.config.max_source_positions)  # 3000 mel frames = 30 s
    starts = list(range(0, mel.shape[1], chunk))
    total = len(starts) + 1
    whisper_parts, padded = [], 0
    for i, start in enumerate(starts):
        check_cancel(cancel)
        segment = mel[:, start:start + chunk]  # (n_mels, n)
        n = segment.shape[1]
        padded = chunk - n
        segment = F.pad(segment, (0, padded), value=MEL_PAD_VALUE)  # (n_mels, chunk): explicit, reported
        hidden = _whisper_last_block(encoders.whisper, segment[None].to(device, dtype))  # (1, chunk/2, D_w)
        whisper_parts.append(hidden[0, : n // MEL_FRAMES_PER_FEATURE].float().cpu())  # keep the audio's features
        report(progress, i + 1, total, "Whisper")
    whisper = torch.cat(whisper_parts)  # (T_w, D_w)

    check_cancel(cancel)
    x = wave.numpy()
    if encoders.normalize_wav2vec:
        from transformers import Wav2Vec2FeatureExtractor

        x = Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm([x], None)[0]
    out = encoders.wav2vec(torch.from_numpy(np.ascontiguousarray(x))[None].to(device, dtype),
                           output_hidden_states=True)
    wav2vec = out.hidden_states[-1][0].float().cpu()  # (T_v, D_v)
    report(progress, total, total, "wav2vec2")

    tail = n16 % (MEL_HOP * MEL_FRAMES_PER_FEATURE)
    message = (
        f"{n16 / SAMPLE_RATE_HZ:.2f} s of audio → {whisper.shape[0]} Whisper and {wav2vec.shape[0]} wav2vec2 "
        f"features (50 per second); the last Whisper 30 s window was padded with {padded} mel frames of "
        f"{MEL_PAD_VALUE} and cut back to the audio"
        + (f"; the last {tail} samples (< 20 ms) fall in no Whisper feature" if tail else "") + "."
    )
    return XDubAudioFeatures(whisper=whisper, wav2vec=wav2vec, num_samples=n16,
                             whisper_padded_mel_frames=padded, message=message)


# -- features → tokens per latent frame ------------------------------------------------------------

def latent_frame_count(num_frames: int) -> int:
    """F_lat = (T − 1) / 4 + 1 for T = 1 + 4k video frames (Wan 2.2 VAE)."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1 \
            or (num_frames - 1) % VAE_TEMPORAL_FACTOR:
        raise OmniSyncError(
            f"num_frames must be 1 + {VAE_TEMPORAL_FACTOR}·k (e.g. 77), got {num_frames!r}; the Wan 2.2 VAE "
            "encodes frame 0 alone and the rest in groups of 4."
        )
    return (int(num_frames) - 1) // VAE_TEMPORAL_FACTOR + 1


def xdub_window_indices(start_frame: int, num_frames: int, frame_window: int = 0) -> torch.Tensor:
    """``(F_lat, W)`` long: the (unclamped) 50 Hz feature indices each latent frame of a clip attends to.

    Latent frame i of a clip starting at video frame s covers video frames s + 4i − 3 − w … s + 4i + w
    (i = 0: the 3 frames before s and s itself; the reference's ``get_sliced_feature``), w = frame_window;
    frame t contributes features 2t and 2t + 1, so W = 2·(4 + 2w) (8 for w = 0).
    """
    if isinstance(start_frame, bool) or not isinstance(start_frame, (int, np.integer)) or start_frame < 0:
        raise OmniSyncError(f"start_frame must be a video frame index >= 0, got {start_frame!r}.")
    if isinstance(frame_window, bool) or not isinstance(frame_window, (int, np.integer)) or frame_window < 0:
        raise OmniSyncError(f"frame_window must be an integer >= 0 (the reference uses 0), got {frame_window!r}.")
    f_lat = latent_frame_count(num_frames)
    r, w = VAE_TEMPORAL_FACTOR, int(frame_window)
    first = int(start_frame) + r * torch.arange(f_lat) - (r - 1) - w  # (F_lat,) first video frame of each window
    frames = first[:, None] + torch.arange(r + 2 * w)  # (F_lat, 4 + 2w)
    feats = FEATURES_PER_VIDEO_FRAME * frames[..., None] + torch.arange(FEATURES_PER_VIDEO_FRAME)  # (F_lat, 4+2w, 2)
    return feats.reshape(f_lat, -1)  # (F_lat, W)


@dataclass
class XDubAudioWindows:
    """One clip's audio tokens.

    tokens: ``(F_lat, W, D_w + D_v)`` float32 = [Whisper ‖ wav2vec2] (2048 channels for the real encoders);
        add a batch axis for the DiT's ``audio_feats (b, f, w, c)``.
    index: ``(F_lat, W)`` unclamped feature indices (:func:`xdub_window_indices`).
    before_start / past_end: window positions that repeat the first feature / the last feature of each stream.
    """

    tokens: torch.Tensor
    index: torch.Tensor
    before_start: int
    past_end: Dict[str, int]
    message: str


def xdub_audio_windows(features: XDubAudioFeatures, start_frame: int, num_frames: int, fps=XDUB_FPS,
                       frame_window: int = 0) -> XDubAudioWindows:
    """The DiT's audio tokens for the clip of ``num_frames`` video frames from ``start_frame`` on.

    Each stream is indexed with :func:`xdub_window_indices` clamped to its own [0, T − 1] (repeating its first or
    last feature, as the reference does; counted in the result), then the streams are concatenated on channels,
    Whisper first. fps: the video's rate; X-Dub was trained at 25 fps and its windows assume 2 features per frame.
    """
    if not isinstance(features, XDubAudioFeatures):
        raise OmniSyncError(f"features must come from extract_xdub_features, got {type(features).__name__}.")
    if exact_fps(fps) != XDUB_FPS:
        raise OmniSyncError(
            f"X-Dub was trained on {XDUB_FPS} fps video (2 audio features per frame), got {fps} fps; convert the "
            f"video to {XDUB_FPS} fps first (e.g. ffmpeg -i in.mp4 -r {XDUB_FPS} out.mp4, or the frame-rate option of "
            "your video loader)."
        )
    index = xdub_window_indices(start_frame, num_frames, frame_window)  # (F_lat, W)
    streams, past_end = [], {}
    for name, feats in (("whisper", features.whisper), ("wav2vec2", features.wav2vec)):
        last = feats.shape[0] - 1
        past_end[name] = int((index > last).sum())
        streams.append(feats[index.clamp(0, last)])  # (F_lat, W, D)
    tokens = torch.cat(streams, dim=-1)  # (F_lat, W, D_w + D_v)
    before = int((index < 0).sum())
    f_lat, width = index.shape
    parts = [f"{num_frames} frames from frame {start_frame} → {f_lat} latent frames × {width} audio positions"]
    if before:
        parts.append(f"{before} positions before the audio start repeat its first feature")
    if any(past_end.values()):
        parts.append(f"positions past the audio end repeat its last feature (Whisper {past_end['whisper']}, "
                     f"wav2vec2 {past_end['wav2vec2']} of {index.numel()})")
    return XDubAudioWindows(tokens=tokens, index=index, before_start=before, past_end=past_end,
                            message="; ".join(parts) + ".")


# -- one-time converter: openai-whisper .pt → safetensors ----------------------------------------

def openai_whisper_encoder_to_hf(state_dict: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], int]:
    """openai-whisper ``model_state_dict`` → (transformers ``encoder.*`` tensors, number of decoder tensors dropped).

    Every ``encoder.*`` key must be one openai-whisper writes; an unknown one raises (nothing is guessed).
    """
    out, dropped = {}, 0
    for key, value in state_dict.items():
        if isinstance(key, str) and key.startswith("decoder."):
            dropped += 1
            continue
        if not isinstance(key, str) or not key.startswith("encoder."):
            raise OmniSyncError(f"unexpected tensor {key!r} in the Whisper checkpoint; is it an openai-whisper .pt?")
        name = key[len("encoder."):]
        for old, new in OPENAI_TO_HF_ENCODER:
            name = name.replace(old, new)
        out["encoder." + name] = value
    return out, dropped


def read_openai_whisper(pt_path: str) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor], int]:
    """openai-whisper's checkpoint (X-Dub's ``large-v2.pt``) → (``WhisperConfig`` kwargs, transformers ``encoder.*``
    tensors, number of decoder tensors dropped); the one reader of that file, for the loader and the converter.

    Read with ``torch.load(weights_only=True)`` on torch >= 2.6 only
    (:func:`~omnisync_core.model.files.read_pickled_weights`); checked: ``dims`` and ``model_state_dict`` present,
    the tensors load into a ``WhisperEncoder`` of that config with nothing missing or extra.
    """
    from transformers import WhisperConfig

    from .whisper import _encoder_from_state_dict

    src = xdub_file("whisper_pt")
    if not os.path.isfile(pt_path):
        raise OmniSyncError(missing_message("whisper_pt", pt_path, src.cli_flag))
    checkpoint = read_pickled_weights(pt_path, "whisper_pt", CONVERT_HINT)
    if not isinstance(checkpoint, dict) or "dims" not in checkpoint or "model_state_dict" not in checkpoint:
        keys = sorted(map(str, checkpoint))[:5] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise OmniSyncError(
            f"{pt_path!r} is not an openai-whisper checkpoint (expected 'dims' and 'model_state_dict', found "
            f"{keys}); pass {src.source()}."
        )
    dims = checkpoint["dims"]
    needed = ("n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer")
    if not isinstance(dims, dict) or any(k not in dims for k in needed):
        lacking = [k for k in needed if k not in dims] if isinstance(dims, dict) else list(needed)
        raise OmniSyncError(f"{pt_path!r}: its 'dims' lack {lacking}; not a Whisper .pt: pass {src.source()}.")
    if not isinstance(checkpoint["model_state_dict"], dict):
        raise OmniSyncError(f"{pt_path!r}: its 'model_state_dict' is not a state dict; pass {src.source()}.")
    config = {
        "num_mel_bins": int(dims["n_mels"]),
        "max_source_positions": int(dims["n_audio_ctx"]),
        "d_model": int(dims["n_audio_state"]),
        "encoder_attention_heads": int(dims["n_audio_head"]),
        "encoder_layers": int(dims["n_audio_layer"]),
        "encoder_ffn_dim": 4 * int(dims["n_audio_state"]),  # openai-whisper's MLP is 4× wide
        "vocab_size": int(dims.get("n_vocab", 51865)),
        "max_target_positions": int(dims.get("n_text_ctx", 448)),
        "decoder_attention_heads": int(dims.get("n_text_head", dims["n_audio_head"])),
        "decoder_layers": int(dims.get("n_text_layer", dims["n_audio_layer"])),
        "decoder_ffn_dim": 4 * int(dims.get("n_text_state", dims["n_audio_state"])),
    }
    tensors, dropped = openai_whisper_encoder_to_hf(checkpoint["model_state_dict"])
    bad = [k for k, v in tensors.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise OmniSyncError(f"{pt_path!r}: {bad[0]!r} is not a tensor; not a Whisper .pt: pass {src.source()}.")
    with named_source("whisper_pt"):
        _encoder_from_state_dict(WhisperConfig(**config), tensors, repr(pt_path))  # raises on missing / extra keys
    return config, tensors, dropped


def convert_openai_whisper(pt_path: str, out_path: str) -> Dict[str, Any]:
    """Convert an openai-whisper checkpoint (X-Dub's ``large-v2.pt``) to one encoder-only ``.safetensors``.

    Optional since the loaders read the ``.pt`` itself (on torch >= 2.6); kept for an older torch elsewhere and
    for a smaller file (encoder only). CLI ``convert-whisper``; read by :func:`read_openai_whisper`. Output:
    ``encoder.*`` tensors in transformers' ``WhisperModel`` names, dtype unchanged, and a JSON ``config``
    metadata entry (a ``WhisperConfig``), the layout :func:`load_xdub_audio_encoders` reads.
    Returns a summary dict (tensors, dropped decoder tensors, config, bytes written).
    """
    from safetensors.torch import save_file

    pt_path, out_path = os.fspath(pt_path), os.fspath(out_path)
    if not out_path.endswith(".safetensors"):
        raise OmniSyncError(f"the output must end in .safetensors, got {out_path!r}.")
    if os.path.exists(out_path):
        raise OmniSyncError(f"{out_path!r} already exists; delete it or choose another output name.")
    config, tensors, dropped = read_openai_whisper(pt_path)
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    save_file(tensors, out_path, metadata={
        "config": json.dumps(config), "format": "pt",
        "converted_from": os.path.basename(pt_path) + " (openai-whisper), encoder only, by omnisync convert-whisper",
    })
    return {"tensors": len(tensors), "dropped_decoder_tensors": dropped, "config": config,
            "dtype": str(next(iter(tensors.values())).dtype).replace("torch.", ""),
            "bytes": os.path.getsize(out_path)}
