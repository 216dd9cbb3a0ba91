"""What every command of the CLI shares: flag types, the offload flags, the progress bar, the warning
printer, the output checks and report, and the process around a run (console, signals, temporary files).

- :class:`Warnings`: every adjustment is one ``warning: ...`` line on stderr (above the progress bar) and
  kept, in order, for the report's ``"warnings"``;
- :func:`check_outputs`: the output files of a command (folder, suffix, name length, distinct, never an
  input) and what a killed earlier run left beside them, checked before anything is loaded;
- :func:`write_report`: the run report as JSON, written atomically;
- :func:`process`: around :func:`omnisync_core.cli.main`: a console that cannot print a character gets
  ASCII instead (never a crash after a finished video), a full or closed stdout ends nothing, SIGTERM
  unwinds like Ctrl-C (partial files removed), and temporary files live in one folder per run, which
  the next run removes if this one was killed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from ..errors import OmniSyncError
from ..io.files import atomic_output, pid_alive, stale_partials
from ..sampling.options import AUTO

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".m4v")
# how the CLI spells the sampling options whose bounds are checked (pipelines.checks.check_sampling_bounds)
FLAGS = {"num_steps": "--steps", "tau": "--tau", "omega_base": "--omega-base", "omega_peak": "--omega-peak"}
RUN_FOLDER_PREFIX = "omnisync-run-"  # "omnisync-run-{pid}-XXXX" in the system's temporary folder
_RUN_FOLDER_RE = re.compile(r"^omnisync-run-(?P<pid>\d+)-")
SIGTERM_EXIT_CODE = 143  # 128 + SIGTERM, as shells report a process ended by it
# what the run's messages use beyond ASCII, spelled out when the console cannot print it
ASCII_SPELLING = {
    "τ": "tau", "σ": "sigma", "ω": "omega", "γ": "gamma", "ε": "eps", "×": "x", "−": "-", "–": "-", "—": "-",
    "→": "->", "←": "<-", "↔": "<->", "…": "...", "≤": "<=", "≥": ">=", "≈": "~", "≠": "!=", "·": "*", "²": "^2",
    "³": "^3", "‖": "||", "’": "'", "‘": "'", "“": '"', "”": '"', "°": " deg", "µ": "u", "█": "#", "▏": "|",
}


# -- flag types ---------------------------------------------------------------------------------------


def mouth_arg(value: str):
    """argparse type of --mouth: "auto" or "x,y" in frame fractions."""
    if value == "auto":
        return "auto"
    try:
        x, y = (float(v) for v in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--mouth takes 'auto' or 'x,y' in frame fractions, got {value!r}")
    return (x, y)


def auto_or(kind):
    """argparse type: "auto" (the checkpoint's recommendation, else the default) or a ``kind`` number."""
    def parse(value: str):
        if value == AUTO:
            return AUTO
        try:
            return kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected 'auto' or {kind.__name__} number, got {value!r}")

    parse.__name__ = f"auto or {kind.__name__}"
    return parse


def add_offload_arguments(p: argparse.ArgumentParser) -> None:
    """--offload / --resident-blocks: block swap for a model larger than the GPU's memory (sync, demo, xdub)."""
    p.add_argument("--offload", action="store_true",
                   help="keep the network's weights in CPU memory and move its blocks to --device one at a time "
                        "(block swap: far less GPU memory, slower)")
    p.add_argument("--resident-blocks", type=int, default=0, metavar="N",
                   help="with --offload: the first N blocks stay on the device (default 0; more = faster)")


def check_offload_args(args, on_warning) -> None:
    """--resident-blocks: a whole number >= 0, and said to do nothing without --offload."""
    if args.resident_blocks < 0:
        raise OmniSyncError(f"--resident-blocks must be >= 0 (blocks kept on the device), got {args.resident_blocks}.")
    if args.resident_blocks and not args.offload:
        on_warning(f"--resident-blocks {args.resident_blocks} does nothing without --offload (every block is on "
                   "the device already).")


# -- warnings and progress ------------------------------------------------------------------------------


class Warnings:
    """on_warning for the CLI: one ``warning: ...`` line on stderr (above the progress bar, when one is
    shown), each kept in :attr:`lines` for the report, in the order printed."""

    def __init__(self):
        self.lines: List[str] = []
        self.bar = None

    def __call__(self, message: str) -> None:
        self.lines.append(message)
        line = f"warning: {message}"
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)


def progress_bar(desc: str, quiet: bool, unit: str = "it", warnings: Optional[Warnings] = None):
    """(bar or None, progress(done, total, message) callback); warnings print above the bar while it shows.
    Close it with :func:`close_bar`."""
    from tqdm import tqdm

    if quiet:
        return None, None
    bar = tqdm(total=1, desc=desc, unit=unit)
    if warnings is not None:
        warnings.bar = bar

    def progress(done, total, message):
        bar.total, bar.n = total, done
        bar.set_postfix_str(message, refresh=False)
        bar.refresh()

    return bar, progress


def close_bar(bar, warnings: Optional[Warnings] = None) -> None:
    if bar is not None:
        bar.close()
    if warnings is not None:
        warnings.bar = None


# -- outputs --------------------------------------------------------------------------------------------


def check_outputs(outputs: Sequence[Tuple[str, Optional[str], Sequence[str]]], inputs: Iterable[Optional[str]],
                  on_warning) -> None:
    """Each output (what, path or None, suffixes) writable under its name, all distinct and none an input;
    then the partial files a killed run left in those folders are removed (and said)."""
    from ..pipelines.checks import check_output_path, check_outputs as check_distinct

    for what, path, suffixes in outputs:
        if path is not None:
            check_output_path(path, what, suffixes)
    check_distinct({what: path for what, path, _ in outputs}, list(inputs))
    folders = {os.path.dirname(os.path.abspath(path)) for _, path, _ in outputs if path}
    for folder in sorted(folders):
        for path in stale_partials(folder):
            try:
                os.remove(path)
            except OSError as exc:
                on_warning(f"could not remove {path}, left by a run that was killed ({exc.strerror}); delete it.")
            else:
                on_warning(f"removed {path}, an unfinished output of a run that was killed.")


def write_report(path: Optional[str], report: Dict[str, Any]) -> None:
    """The run report as indented JSON at ``path`` (nothing when None), complete or not at all."""
    if path:
        with atomic_output(path) as part, open(part, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2, default=str)


# -- the process around a run -----------------------------------------------------------------------------


def ascii_fallback(text: str) -> str:
    """``text`` with every character the run's messages use beyond ASCII spelled out (τ → tau, × → x), and any
    other one escaped (\\u....): what a console that cannot print them gets."""
    return "".join(ch if ord(ch) < 128 else ASCII_SPELLING.get(ch, ch.encode("ascii", "backslashreplace").decode())
                   for ch in text)


class Console:
    """A stdout/stderr that never ends a run: a line the console's encoding cannot hold is printed in ASCII
    (:func:`ascii_fallback`); a write that fails (a full device, a closed pipe) is dropped and remembered in
    :attr:`failed`, and nothing more is written there."""

    def __init__(self, stream):
        self.stream = stream
        self.failed: Optional[OSError] = None

    def write(self, text: str) -> int:
        if self.failed is not None:
            return len(text)
        try:
            text.encode(getattr(self.stream, "encoding", None) or "utf-8")
        except UnicodeEncodeError:
            text = ascii_fallback(text)
        except LookupError:  # an encoding name Python does not know: ASCII is safe everywhere
            text = ascii_fallback(text)
        try:
            return self.stream.write(text)
        except OSError as exc:
            self.failed = exc
            return len(text)

    def flush(self) -> None:
        if self.failed is not None:
            return
        try:
            self.stream.flush()
        except OSError as exc:
            self.failed = exc

    def __getattr__(self, name):
        return getattr(self.stream, name)


def _silence(stream) -> None:
    """Point a failed stream's file descriptor at the null device, so the interpreter's last flush of what
    is still buffered cannot fail at exit (Python's advice for a closed stdout)."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the run is, so it unwinds as Ctrl-C does: partial outputs and temporary files
    are removed on the way out."""


def _on_sigterm(signum, frame):
    raise Terminated()


def stale_run_folders(parent: Optional[str] = None) -> List[str]:
    """The per-run temporary folders (:data:`RUN_FOLDER_PREFIX`) in ``parent`` whose process is gone."""
    parent = parent or tempfile.gettempdir()
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    out = []
    for name in names:
        m = _RUN_FOLDER_RE.match(name)
        if m and not pid_alive(int(m.group("pid"))) and os.path.isdir(os.path.join(parent, name)):
            out.append(os.path.join(parent, name))
    return sorted(out)


@contextlib.contextmanager
def process():
    """The run's process settings, restored on the way out: console streams (:class:`Console`), SIGTERM as
    Ctrl-C (main thread only), and one temporary folder for the run (the speech file, the video being
    muxed), removed at the end; folders of killed runs are removed first (nothing is said: they hold no
    result). Yields (stdout Console, stderr Console)."""
    out, err = Console(sys.stdout), Console(sys.stderr)
    old_out, old_err = sys.stdout, sys.stderr
    old_tempdir = tempfile.tempdir
    old_handler, installed = None, False
    main_thread = threading.current_thread() is threading.main_thread()
    sys.stdout, sys.stderr = out, err
    run_folder = None
    try:
        if main_thread:
            old_handler = signal.signal(signal.SIGTERM, _on_sigterm)
            installed = True
        system_tmp = tempfile.gettempdir()
        for folder in stale_run_folders(system_tmp):
            shutil.rmtree(folder, ignore_errors=True)
        run_folder = tempfile.mkdtemp(prefix=f"{RUN_FOLDER_PREFIX}{os.getpid()}-", dir=system_tmp)
        tempfile.tempdir = run_folder  # SpeechFile and VideoWriter take their temporary names from here
        yield out, err
    finally:
        if installed:  # first: a second SIGTERM now ends the process outright
            signal.signal(signal.SIGTERM, old_handler if old_handler is not None else signal.SIG_DFL)
        out.flush()
        if out.failed is not None:
            err.write(f"warning: could not print to standard output ({out.failed.strerror or out.failed}); "
                      "the run itself was not affected.\n")
        err.flush()
        tempfile.tempdir = old_tempdir
        if run_folder is not None:
            shutil.rmtree(run_folder, ignore_errors=True)
        sys.stdout, sys.stderr = old_out, old_err
        if out.failed is not None:
            _silence(old_out)
        if err.failed is not None:
            _silence(old_err)
