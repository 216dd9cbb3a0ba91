"""Window arithmetic for unlimited duration, and video/audio length matching.

Both are pure bookkeeping on integers and index tensors, testable without a network.
"""

from __future__ import annotations

from typing import List, Tuple

import torch

from ..errors import OmniSyncError

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


class WindowBlender:
    """The one cross-fade of overlapping windows: adds each window's results with :func:`blend_weights` and
    hands back every run of frames as soon as no later window touches it.

    Results are named tensors with the frame axis first (latents as (F, C, h, w), maps (F, h, w), centres
    (F, 2)); only the frames from the first one not yet handed back to the end of the last window are held.
    Two neighbours' weights sum to 1 on their shared frames, so a run is the weighted sum divided by the
    weights (exactly as one whole-clip accumulation would give it).
    """

    def __init__(self, windows: List[Tuple[int, int]]):
        self.windows = windows
        self.done = 0  # first frame not yet handed back
        self.sums: dict = {}
        self.weight = torch.zeros(0)  # (n,) summed weights of the held frames

    def add(self, k: int, results: dict) -> Tuple[int, dict]:
        """Add window ``k``'s results ({name: (n_k, ...)}); returns (first frame, {name: (m, ...)}) of the
        frames now finished (m = 0 while the next window still overlaps all of them)."""
        s, e = self.windows[k]
        wts = blend_weights(e - s, *window_overlaps(self.windows, k))  # (n_k,)
        grow = e - self.done - self.weight.shape[0]  # frames this window adds to the sums
        for name, value in results.items():
            held = self.sums.get(name, value.new_zeros((0,) + tuple(value.shape[1:])))
            self.sums[name] = torch.cat([held, value.new_zeros((grow,) + tuple(value.shape[1:]))]) if grow else held
        self.weight = torch.cat([self.weight, torch.zeros(grow)]) if grow else self.weight
        a = s - self.done
        for name, value in results.items():
            self.sums[name][a:] += wts.view(-1, *[1] * (value.ndim - 1)) * value
        self.weight[a:] += wts
        end = self.windows[k + 1][0] if k + 1 < len(self.windows) else e
        m, start = end - self.done, self.done
        finished = {name: acc[:m] / self.weight[:m].view(-1, *[1] * (acc.ndim - 1)) for name, acc in self.sums.items()}
        self.sums = {name: acc[m:] for name, acc in self.sums.items()}
        self.weight = self.weight[m:]
        self.done = end
        return start, finished
