"""Phonemes → visemes → per-frame mouth parameters for the synthetic talking character.

Three steps, top-down:
1. ``PHONEME_TO_VISEME``: every espeak-ng phoneme mnemonic (as :func:`speech.speak` reports them)
   maps to one of 14 visemes, the Oculus/MPEG-4 set with n merged into DD. A symbol not in the table
   is retried without stress marks and espeak-ng's variant suffixes (``a#`` → ``a``, ``@2`` → ``@``);
   what is still unknown becomes ``NEUTRAL_VISEME`` (KG, the relaxed half-open mouth) and is counted
   by :func:`to_visemes`, never an error.
2. Each viseme has target mouth parameters ``MOUTH_PARAMS = (open, width, round, teeth, tongue)``,
   all in [0, 1] (``VISEME_TARGETS``).
3. :func:`viseme_track` turns the piecewise-constant targets into a coarticulated trajectory: a
   two-sided exponential kernel (the mouth lags past targets and anticipates upcoming ones), averaged
   over each frame's time span. Bilabial closures (p/b/m, plus the silent closure before a p/b burst)
   are targets on the same timeline, and every frame that holds one gets exactly the PBM shape
   (open = 0), however short the closure: lip closure is the cue viewers read best.

Frame k shows the time span [k/fps, (k+1)/fps) seconds. Before the first phoneme, in pauses and
after the audio, the target is ``sil`` (mouth closed).
"""

from __future__ import annotations

import math
import numbers
from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import OmniSyncError
from .speech import Phoneme, Utterance

VISEME_NAMES = ["sil", "PBM", "FV", "TH", "DD", "KG", "SH", "SZ", "RW", "A", "E", "I", "O", "U"]
VISEME_INDEX = {name: i for i, name in enumerate(VISEME_NAMES)}
MOUTH_PARAMS = ("open", "width", "round", "teeth", "tongue")

# (open, width, round, teeth, tongue), each in [0, 1]: jaw/lip opening, mouth-corner spread, lip
# rounding/protrusion, visible teeth, visible tongue.
VISEME_TARGETS = np.array(
    [
        [0.00, 0.45, 0.15, 0.00, 0.00],  # sil  lips together, relaxed
        [0.00, 0.45, 0.20, 0.00, 0.00],  # PBM  lips pressed shut
        [0.10, 0.50, 0.10, 0.80, 0.00],  # FV   upper teeth on the lower lip
        [0.25, 0.50, 0.10, 0.60, 0.90],  # TH   tongue tip between the teeth
        [0.25, 0.55, 0.15, 0.50, 0.50],  # DD   t d n l: tongue tip up behind the teeth
        [0.35, 0.50, 0.20, 0.30, 0.10],  # KG   k g N h: back of the tongue, relaxed lips
        [0.20, 0.35, 0.70, 0.70, 0.20],  # SH   S Z tS dZ: lips pushed forward
        [0.12, 0.70, 0.00, 0.90, 0.20],  # SZ   s z: teeth nearly closed, spread
        [0.15, 0.25, 0.90, 0.10, 0.20],  # RW   r w: small rounded opening
        [0.90, 0.60, 0.10, 0.30, 0.20],  # A    open vowels
        [0.55, 0.75, 0.00, 0.50, 0.30],  # E    mid front/central vowels
        [0.30, 0.90, 0.00, 0.70, 0.30],  # I    close front vowels, j
        [0.60, 0.35, 0.80, 0.20, 0.10],  # O    rounded mid/open back vowels
        [0.25, 0.20, 1.00, 0.10, 0.10],  # U    close rounded vowels
    ],
    dtype=np.float32,
)  # (V, 5)

NEUTRAL_VISEME = "KG"  # unknown phonemes: the relaxed half-open mouth, the least visible guess
SILENCE = VISEME_INDEX["sil"]
BILABIAL = VISEME_INDEX["PBM"]

_GROUPS: Dict[str, Tuple[str, ...]] = {
    "PBM": ("p", "b", "m", "m-"),
    "FV": ("f", "v"),
    "TH": ("T", "D", "t[", "d["),
    "DD": ("t", "d", "n", "l", "t#", "d#", "n-", "l-", "@L", "t2", "d2"),
    "KG": ("k", "g", "N", "h", "x", "?", "k-"),
    "SH": ("S", "Z", "tS", "dZ"),
    "SZ": ("s", "z"),
    "RW": ("r", "r-", "R", "w", "VR"),
    "A": ("a", "a#", "aa", "A:", "A@", "A", "V", "aI", "aI@", "aU", "aU@", "a@"),
    "E": ("E", "e", "eI", "e@", "@", "@2", "@5", "@-", "3", "3:", "E@"),
    "I": ("I", "I2", "I#", "i", "i:", "i@", "i@3", "j", ";"),  # ";": espeak-ng's i→vowel glide
    "O": ("0", "O", "O:", "O2", "O@", "o", "o@", "oU", "@U", "OI"),
    "U": ("U", "U@", "u", "u:"),
}
PHONEME_TO_VISEME: Dict[str, int] = {s: VISEME_INDEX[v] for v, symbols in _GROUPS.items() for s in symbols}
_STRESS_MARKS = "'%,=!"
_VARIANT_SUFFIXES = "#0123456789-["


def _lookup(symbol: str) -> Optional[int]:
    """Viseme index of an espeak-ng mnemonic, or None when unknown. Pauses (``_``, ``_:``, ``||``) → sil."""
    if symbol.startswith(("_", "|")):
        return SILENCE
    for candidate in (symbol, symbol.lstrip(_STRESS_MARKS), symbol.lstrip(_STRESS_MARKS).rstrip(_VARIANT_SUFFIXES)):
        if candidate in PHONEME_TO_VISEME:
            return PHONEME_TO_VISEME[candidate]
    return None


def to_visemes(phonemes: Sequence[Phoneme]) -> Tuple[np.ndarray, Counter]:
    """Viseme index per phoneme, (P,) int64, and a Counter of the symbols that were unknown (they
    got ``NEUTRAL_VISEME``)."""
    unknown: Counter = Counter()
    ids = np.empty(len(phonemes), dtype=np.int64)
    for i, p in enumerate(phonemes):
        v = _lookup(p.symbol)
        if v is None:
            unknown[p.symbol] += 1
            v = VISEME_INDEX[NEUTRAL_VISEME]
        ids[i] = v
    return ids, unknown


@dataclass(frozen=True)
class Coarticulation:
    """How targets blend over time (all in seconds).

    carry_over_s: time constant of a past target's decaying influence (the mouth lags the sound).
    anticipation_s: time constant of an upcoming target's influence (the mouth moves early).
    closure_lead_s: the lips shut this long before a p/b onset at most; espeak-ng reports a stop's
        onset at its burst and puts the silent closure (measured 30–60 ms at 120–220 wpm) at the end
        of the previous phoneme. Capped at half of the previous phoneme.
    grid_hz: rate of the internal time grid the kernel runs on (raised to 4·fps when fps is higher).
    """

    carry_over_s: float = 0.035
    anticipation_s: float = 0.020
    closure_lead_s: float = 0.035
    grid_hz: float = 1000.0

    def __post_init__(self):
        for name in ("carry_over_s", "anticipation_s", "closure_lead_s"):
            if not getattr(self, name) >= 0:
                raise OmniSyncError(f"Coarticulation.{name} must be >= 0 seconds, got {getattr(self, name)!r}.")
        if not self.grid_hz > 0:
            raise OmniSyncError(f"Coarticulation.grid_hz must be > 0, got {self.grid_hz!r}.")


DEFAULT_COARTICULATION = Coarticulation()
KERNEL_TIME_CONSTANTS = 5  # the exponential kernel is cut at 5 time constants (weight < 0.7 %)
_OVERLAP_EPS = 1e-9


def _kernel(smoothing: Coarticulation, grid_hz: float) -> Tuple[np.ndarray, int, int]:
    """Correlation taps v (past-most first), #past taps C, #future taps A; sums to 1."""
    C = int(math.ceil(KERNEL_TIME_CONSTANTS * smoothing.carry_over_s * grid_hz))
    A = int(math.ceil(KERNEL_TIME_CONSTANTS * smoothing.anticipation_s * grid_hz))
    lag = (C - np.arange(C + A + 1)) / grid_hz  # seconds the target lies in the past (< 0: future)
    past = np.exp(-lag / max(smoothing.carry_over_s, 1e-12))
    future = np.exp(lag / max(smoothing.anticipation_s, 1e-12))
    v = np.where(lag >= 0, past, future)
    return v / v.sum(), C, A


def _closure_spans(
    phonemes: Sequence[Phoneme], ids: np.ndarray, smoothing: Coarticulation
) -> List[Tuple[float, float]]:
    """Time spans (s) during which the lips are shut, one per bilabial phoneme."""
    spans = []
    for i, p in enumerate(phonemes):
        if ids[i] != BILABIAL:
            continue
        if p.symbol.lstrip(_STRESS_MARKS).rstrip(_VARIANT_SUFFIXES) in ("p", "b"):
            prev = phonemes[i - 1].end - phonemes[i - 1].start if i > 0 else smoothing.closure_lead_s * 2
            lead = min(smoothing.closure_lead_s, 0.5 * prev)
            spans.append((p.start - lead, p.start + 0.5 * (p.end - p.start)))  # closure, then the burst
        else:
            spans.append((p.start, p.end))  # m: the murmur is the closure
    return spans


def _held_frames(spans: List[Tuple[float, float]], fps: float, num_frames: int) -> np.ndarray:
    """(T,) bool: frames that hold a closure, i.e. overlap it by at least half of the shorter of the
    two, so a closure shorter than a frame still shuts the frame holding its midpoint."""
    held = np.zeros(num_frames, dtype=bool)
    frame_start = np.arange(num_frames) / fps
    frame_end = frame_start + 1.0 / fps
    for s, e in spans:
        if e <= s:
            continue  # a zero-length phoneme holds nothing
        overlap = np.clip(np.minimum(frame_end, e) - np.maximum(frame_start, s), 0.0, None)
        held |= overlap + _OVERLAP_EPS >= 0.5 * min(e - s, 1.0 / fps)
    return held


def viseme_track(
    utterance_or_phonemes: Union[Utterance, Sequence[Phoneme]],
    fps: float,
    num_frames: Optional[int] = None,
    smoothing: Coarticulation = DEFAULT_COARTICULATION,
) -> Tuple[np.ndarray, np.ndarray]:
    """Per-frame visemes and mouth parameters for an utterance.

    Args:
        utterance_or_phonemes: an :class:`Utterance` (its duration is the audio length) or phonemes in
            time order (the duration is the last phoneme's end).
        fps: video frame rate, > 0. Frame k shows [k/fps, (k+1)/fps) s.
        num_frames: frames to return; None = ceil(duration·fps). Frames past the speech get the
            closed ``sil`` shape (to float precision once the kernel, 5·carry_over_s, has passed
            the end); fewer frames than the speech cut it, by the caller's choice.
        smoothing: the :class:`Coarticulation` time constants.

    Returns:
        (visemes (T,) int64 indices into ``VISEME_NAMES`` — the dominant target in each frame, PBM
        where a closure is held; params (T, 5) float32 in [0, 1] in ``MOUTH_PARAMS`` order).
        Unknown phoneme symbols get ``NEUTRAL_VISEME``; :func:`to_visemes` counts them.
    """
    if isinstance(utterance_or_phonemes, Utterance):
        phonemes, duration = list(utterance_or_phonemes.phonemes), utterance_or_phonemes.duration
    else:
        phonemes = list(utterance_or_phonemes)
        duration = max((p.end for p in phonemes), default=0.0)
    if isinstance(fps, bool) or not (isinstance(fps, numbers.Real) and math.isfinite(fps) and fps > 0):
        raise OmniSyncError(f"fps must be a positive number of frames per second, got {fps!r}.")
    for i, p in enumerate(phonemes):
        if not p.end >= p.start or (i > 0 and p.start < phonemes[i - 1].start):
            raise OmniSyncError(f"phoneme {i} {p!r} is out of time order; phonemes need start <= end, sorted by start.")
    if num_frames is None:
        num_frames = int(math.ceil(duration * fps - _OVERLAP_EPS))
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 0:
        raise OmniSyncError(f"num_frames must be a non-negative integer or None, got {num_frames!r}.")
    T = int(num_frames)
    fps = float(fps)
    if T == 0:
        return np.zeros(0, np.int64), np.zeros((0, len(MOUTH_PARAMS)), np.float32)

    ids, _ = to_visemes(phonemes)  # (P,)
    grid_hz = max(smoothing.grid_hz, 4.0 * fps)
    J = int(math.ceil(T / fps * grid_hz))
    t = (np.arange(J) + 0.5) / grid_hz  # (J,) grid sample centres, s
    starts = np.array([p.start for p in phonemes])
    ends = np.array([p.end for p in phonemes])
    k = np.searchsorted(starts, t, side="right") - 1
    inside = k >= 0
    inside[inside] = t[inside] < ends[k[inside]]
    target = np.where(inside, ids[k.clip(min=0)] if len(ids) else SILENCE, SILENCE)  # (J,)

    spans = _closure_spans(phonemes, ids, smoothing)
    for s, e in spans:
        target[(t >= s) & (t < e)] = BILABIAL

    v, C, A = _kernel(smoothing, grid_hz)
    x = np.concatenate([np.full(C, SILENCE), target, np.full(A, SILENCE)])  # (J + C + A,)
    x = VISEME_TARGETS[x].astype(np.float64)  # (J + C + A, 5)
    y = np.stack([np.correlate(x[:, d], v, mode="valid") for d in range(x.shape[1])], axis=1)  # (J, 5)

    # Average over each frame's span; a frame gets >= 1 grid sample since grid_hz >= 4 fps.
    bounds = np.minimum(np.round(np.arange(T + 1) * grid_hz / fps).astype(np.int64), J)  # (T + 1,)
    counts = np.maximum(np.diff(bounds), 1)[:, None]
    ycum = np.concatenate([np.zeros((1, y.shape[1])), np.cumsum(y, axis=0)])
    params = (ycum[bounds[1:]] - ycum[bounds[:-1]]) / counts  # (T, 5)
    onehot = np.eye(len(VISEME_NAMES), dtype=np.int64)[target]  # (J, V)
    hcum = np.concatenate([np.zeros((1, onehot.shape[1]), np.int64), np.cumsum(onehot, axis=0)])
    visemes = np.argmax(hcum[bounds[1:]] - hcum[bounds[:-1]], axis=1)  # (T,)

    held = _held_frames(spans, fps, T)  # (T,)
    params[held] = VISEME_TARGETS[BILABIAL]
    visemes[held] = BILABIAL
    return visemes.astype(np.int64), np.clip(params, 0.0, 1.0).astype(np.float32)
