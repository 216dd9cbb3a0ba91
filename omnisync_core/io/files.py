"""Files in and out: an input that must exist, and outputs written under a temporary name in their own
folder and renamed when complete (:func:`atomic_output`), so a failed or cancelled run leaves no file that
looks finished."""

from __future__ import annotations

import contextlib
import os

from ..errors import OmniSyncError


@contextlib.contextmanager
def atomic_output(path: str):
    """Yield a temporary name in ``path``'s folder (same suffix); renamed to ``path`` when the block
    finishes, removed when it raises (errors, Ctrl-C, cancel): no partial file ever has the final name."""
    path = os.fspath(path)
    folder, base = os.path.split(os.path.abspath(path))
    root, ext = os.path.splitext(base)
    tmp = os.path.join(folder, f".{root}.partial-{os.getpid()}{ext}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _check_file(path: str, what: str) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise OmniSyncError(f"{what} file not found: {path!r}; check the path.")
    return path
