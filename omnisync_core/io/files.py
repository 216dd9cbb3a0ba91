"""Files in and out: an input that must exist, and outputs written under a temporary name in their own
folder and renamed when complete (:func:`atomic_output`), so a failed or cancelled run leaves no file that
looks finished; what a killed run (SIGKILL, power cut) left behind is found by its dead process id
(:func:`stale_partials`) and removed by the next run."""

from __future__ import annotations

import contextlib
import os
import re
from typing import List

from ..errors import OmniSyncError

PARTIAL_MARK = ".partial-"  # ".{name}.partial-{pid}{suffix}": the temporary name of an output being written
_PARTIAL_RE = re.compile(r"^\.(?P<root>.+)\.partial-(?P<pid>\d+)(?P<ext>\.[^.]*)?$")


def partial_name(path: str, pid: int = 0) -> str:
    """The temporary name :func:`atomic_output` writes ``path`` under (in the same folder)."""
    folder, base = os.path.split(os.path.abspath(os.fspath(path)))
    root, ext = os.path.splitext(base)
    return os.path.join(folder, f".{root}{PARTIAL_MARK}{pid or os.getpid()}{ext}")


@contextlib.contextmanager
def atomic_output(path: str):
    """Yield a temporary name in ``path``'s folder (same suffix); renamed to ``path`` when the block
    finishes, removed when it raises (errors, Ctrl-C, SIGTERM, cancel): no partial file ever has the final
    name, and an existing file at ``path`` stays as it was until the new one is complete."""
    path = os.fspath(path)
    tmp = partial_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def pid_alive(pid: int) -> bool:
    """True unless process ``pid`` is known to be gone (POSIX ``kill(pid, 0)``; elsewhere always True, so
    nothing of a possibly running process is ever removed)."""
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, owned by another user
        return True
    return True


def stale_partials(folder: str) -> List[str]:
    """The ``.name.partial-PID.ext`` files in ``folder`` whose writing process is gone (a killed run's)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    out = []
    for name in names:
        m = _PARTIAL_RE.match(name)
        if m and not pid_alive(int(m.group("pid"))):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                out.append(path)
    return sorted(out)


def _check_file(path: str, what: str) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise OmniSyncError(f"{what} file not found: {path!r}; check the path.")
    return path
