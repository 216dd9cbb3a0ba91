"""User-facing errors.

Every error the library raises for bad input is an :class:`OmniSyncError`. Its message says what was
wrong and what to do about it, so that the CLI and the ComfyUI nodes can show it as it is.
"""


class OmniSyncError(ValueError):
    """Bad input or a bad file: the message names the problem and the fix."""


class Cancelled(RuntimeError):
    """Raised when the caller's cancel check returned True between two steps."""
