"""The ffmpeg binary that ships with ``imageio-ffmpeg``: where it is, how to run it, how to quote its errors."""

from __future__ import annotations

import subprocess
from typing import Any, Sequence

from ..errors import OmniSyncError

FFMPEG_QUOTE_LINES = 3  # ffmpeg's stderr quoted in an error: its last lines, whole, at most this many
FFMPEG_QUOTE_LINE_CHARS = 200  # and each cut to this many characters

def _ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_quote(text: Any) -> str:
    """The end of ffmpeg's stderr for an error message: its last :data:`FFMPEG_QUOTE_LINES` non-empty lines,
    each from its start (cut at :data:`FFMPEG_QUOTE_LINE_CHARS`), joined with " / " to stay on one line."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()][-FFMPEG_QUOTE_LINES:]
    return " / ".join(ln if len(ln) <= FFMPEG_QUOTE_LINE_CHARS else ln[:FFMPEG_QUOTE_LINE_CHARS] + "…" for ln in lines)



def _run_ffmpeg(args: Sequence[str], what: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([_ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *args], capture_output=True)
    if proc.returncode != 0:
        raise OmniSyncError(f"ffmpeg failed while {what}: {ffmpeg_quote(proc.stderr)}")
    return proc
