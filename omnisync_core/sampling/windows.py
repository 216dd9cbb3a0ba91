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
