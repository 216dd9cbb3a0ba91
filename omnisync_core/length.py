"""The length plan: what to do when the video and the speech differ in length (loop or ping-pong the video
to the speech, or cut / pad the speech to the video), decided once and applied explicitly."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import OmniSyncError

LENGTH_MODES = ("follow_audio_loop", "follow_audio_pingpong", "follow_video")


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
