"""What the OmniSync engine streams: frame sources, finished-frame sinks and the speech features chunk by chunk.

:meth:`.omnisync.OmniSyncPipeline.stream` is the one engine every front end runs (the CLI and
``api.sync_video_file`` with a video reader and writers, ``pipe(frames, ...)`` and the Lip Sync node with
frames in memory and a collecting sink). This module holds its inputs and outputs, below it:

* :class:`FrameSource` — source frames read on demand (``io.video.VideoReader``, :class:`TensorFrames`);
* :data:`FrameSink` — receives each run of finished frames, in order;
* :class:`ChunkedFrameFeatures` — the speech features of any range of frames, one 30 s Whisper chunk at a
  time (equal to the whole clip's, ``pipelines.omnisync.encode_speech``);
* :func:`stream_sync` — the engine as a function of the pipeline.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Protocol

import numpy as np
import torch

from ..audio.features import SAMPLE_RATE_HZ, frame_feature_positions
from ..errors import OmniSyncError

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
    """(…, 3) float in [0, 1] → uint8, rounded (as ``io.video.write_video`` writes them)."""
    return (frames.clamp(0, 1) * PIXEL_LEVELS).round().to(torch.uint8)


def audio_layers_for(num_layers: int, dim: int, audio_dim: int) -> int:
    """How many of the last of ``num_layers`` hidden states of width ``dim`` make one ``audio_dim`` token."""
    k, rest = divmod(audio_dim, dim)
    if rest or not 1 <= k <= num_layers:
        raise OmniSyncError(
            f"the audio features are {num_layers} layers × {dim} = {num_layers * dim} per frame but the model "
            f"expects {audio_dim} (the last k hidden states of one encoder, each {dim} wide, if the widths "
            "match); encode the speech with the Whisper encoder this checkpoint was trained with (its metadata "
            "'audio' names it)."
        )
    return k


class ChunkedFrameFeatures:
    """Speech features of any range of video frames, encoding one 30 s Whisper chunk at a time.

    Whisper encodes consecutive 30 s chunks independently (``audio.whisper.WhisperFeatures.encode``), so a
    chunk encoded alone gives exactly its rows of the whole clip's features; rows are aligned to frames by
    the rule of ``align_features_to_frames`` (``frame_feature_positions``). At most two chunks are held.
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


def stream_sync(pipe, source: FrameSource, fps: float, waveform, sample_rate: int, write: FrameSink, options=None,
                **kwargs) -> Dict:
    """``pipe.stream(source, fps, waveform, sample_rate, write, options, ...)``: the engine
    (:meth:`.omnisync.OmniSyncPipeline.stream`) with finished frames going to ``write``."""
    return pipe.stream(source, fps, waveform, sample_rate, write, options, **kwargs)
