"""Window arithmetic for unlimited duration, and video/audio length matching.

Both are pure bookkeeping on integers and index tensors, testable without a network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Tuple

import torch

from ..errors import OmniSyncError

LENGTH_MODES = ("follow_audio_loop", "follow_audio_pingpong", "follow_video")


# -- sliding windows ------------------------------------------------------------------------------


def plan_windows(length: int, window: int, overlap: int) -> List[Tuple[int, int]]:
    """Cover ``[0, length)`` with windows of at most ``window`` items sharing ``overlap`` items with the next.

    The fewest windows that fit, n = ⌈(length − overlap)/(window − overlap)⌉, with their lengths spread
    as evenly as possible (they differ by at most one item, the longer ones first), so exactly
    ``length + (n − 1)·overlap`` items are computed: at most ``overlap/(window − overlap)`` more than
    the clip. A clip no longer than the window is one window. Returns [(start, end), ...], end exclusive.
    """
    if length < 1:
        raise OmniSyncError(f"nothing to cover: length {length}.")
    if window < 1 or overlap < 0 or overlap >= window:
        raise OmniSyncError(f"need window ≥ 1 and 0 ≤ overlap < window, got window={window}, overlap={overlap}.")
    if length <= window:
        return [(0, length)]
    n = -(-(length - overlap) // (window - overlap))
    size, extra = divmod(length + (n - 1) * overlap, n)  # the first `extra` windows get one more item
    windows, start = [], 0
    for i in range(n):
        end = start + size + (i < extra)
        windows.append((start, end))
        start = end - overlap
    return windows


def window_overlaps(windows: List[Tuple[int, int]], i: int) -> Tuple[int, int]:
    """(left, right): how many items window ``i`` shares with its previous and next neighbour."""
    left = windows[i - 1][1] - windows[i][0] if i > 0 else 0
    right = windows[i][1] - windows[i + 1][0] if i + 1 < len(windows) else 0
    return max(left, 0), max(right, 0)


def blend_weights(n: int, left: int, right: int) -> torch.Tensor:
    """(n,) cross-fade weights of one window: a linear ramp over its ``left`` and ``right`` overlaps.

    Inside an overlap of k items the ramp of one window is (i + 1)/(k + 1) and the neighbour's is the
    complement, so two neighbours' weights sum to 1 at every shared item.
    """
    w = torch.ones(n)
    if left:
        w[:left] = torch.arange(1, left + 1, dtype=torch.float32) / (left + 1)
    if right:
        w[n - right:] = torch.minimum(w[n - right:], torch.arange(right, 0, -1, dtype=torch.float32) / (right + 1))
    return w


# -- video / audio length matching ------------------------------------------------------------------


@dataclass
class LengthPlan:
    """How the output is built when video and audio lengths differ.

    frame_indices: (T_out,) long — which source frame each output frame shows.
    num_samples: length the audio is trimmed or zero-padded to (= T_out frames at fps).
    """

    frame_indices: torch.Tensor
    num_samples: int
    mode: str
    message: str


def pingpong_indices(T: int, n: int) -> torch.Tensor:
    """(n,) long: frames 0..T−1, then back T−2..1, and again (period 2T − 2); T = 1 repeats frame 0."""
    if T == 1:
        return torch.zeros(n, dtype=torch.long)
    cycle = torch.cat([torch.arange(T), torch.arange(T - 2, 0, -1)])  # 0..T-1, T-2..1: period 2T-2
    return cycle[torch.arange(n) % cycle.numel()]


def match_lengths(num_frames: int, fps: float, num_samples: int, sample_rate: int, mode: str) -> LengthPlan:
    """Decide the output length.

    * ``follow_audio_loop`` / ``follow_audio_pingpong``: T_out = ceil(duration·fps) frames; a shorter
      video repeats (looped, or forwards-backwards), a longer one is cut to the speech.
    * ``follow_video``: T_out = num_frames; the audio is trimmed or padded with silence.

    In every mode the audio ends up exactly ``round(T_out·sample_rate/fps)`` samples long.
    """
    if mode not in LENGTH_MODES:
        raise OmniSyncError(f"unknown length mode {mode!r}; choose one of {', '.join(LENGTH_MODES)}.")
    if num_frames < 1 or num_samples < 1:
        raise OmniSyncError(f"need at least one frame and one audio sample, got {num_frames} and {num_samples}.")
    audio_s, video_s = num_samples / sample_rate, num_frames / fps
    if mode == "follow_video":
        T_out = num_frames
        indices = torch.arange(T_out)
    else:
        T_out = max(1, math.ceil(audio_s * fps - 1e-6))
        indices = torch.arange(T_out) % num_frames if mode == "follow_audio_loop" else pingpong_indices(num_frames, T_out)
    target = round(T_out * sample_rate / fps)
    if mode == "follow_video":
        if target < num_samples:
            msg = f"follow_video: {num_frames} frames ({video_s:.2f} s) kept; speech trimmed from {audio_s:.2f} s"
        elif target > num_samples:
            msg = (f"follow_video: {num_frames} frames ({video_s:.2f} s) kept; speech ({audio_s:.2f} s) padded with "
                   f"{(target - num_samples) / sample_rate:.2f} s of silence")
        else:
            msg = f"follow_video: video and speech are both {video_s:.2f} s"
    else:
        how = "looped" if mode == "follow_audio_loop" else "ping-ponged"
        if T_out > num_frames:
            msg = f"{mode}: speech is {audio_s:.2f} s, video {video_s:.2f} s: video {how} to {T_out} frames"
        elif T_out < num_frames:
            msg = f"{mode}: speech is {audio_s:.2f} s, video {video_s:.2f} s: video cut to the first {T_out} frames"
        else:
            msg = f"{mode}: video and speech are both {T_out} frames long"
    return LengthPlan(frame_indices=indices.long(), num_samples=int(target), mode=mode, message=msg)


def apply_audio_plan(wave: torch.Tensor, plan: LengthPlan) -> torch.Tensor:
    """(N,) → (plan.num_samples,): trimmed, or zero-padded (silence) at the end. A ``media.SpeechFile`` is trimmed
    or padded where it lies (no copy)."""
    n = plan.num_samples
    if hasattr(wave, "with_length"):
        return wave.with_length(n)
    if wave.shape[0] >= n:
        return wave[:n]
    return torch.cat([wave, wave.new_zeros(n - wave.shape[0])])
