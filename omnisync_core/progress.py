"""Progress reporting and cancellation.

The core never prints. Long-running functions take ``progress(done, total, message)`` and
``cancel() -> bool`` callables; the CLI maps them onto tqdm, the ComfyUI nodes onto
``comfy.utils.ProgressBar`` and ``comfy.model_management.throw_exception_if_processing_interrupted``.
"""

from __future__ import annotations

from typing import Callable, Optional

from .errors import Cancelled

ProgressCallback = Callable[[int, int, str], None]
CancelCheck = Callable[[], bool]


def check_cancel(cancel: Optional[CancelCheck]) -> None:
    """Raise :class:`Cancelled` if ``cancel`` says so."""
    if cancel is not None and cancel():
        raise Cancelled("cancelled by the caller")


def report(progress: Optional[ProgressCallback], done: int, total: int, message: str = "") -> None:
    """Forward one progress tick, if anyone listens."""
    if progress is not None:
        progress(done, total, message)
