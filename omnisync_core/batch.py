"""Batch dubbing: a manifest of (video, speech, output) rows spread over the workers of one or more machines.

A manifest is a CSV file with a header naming the columns ``video``, ``speech`` and ``output`` (others are
ignored), or a JSONL file with one ``{"video": ..., "speech": ..., "output": ...}`` object a line. Relative paths
are relative to the manifest's folder. Each worker of ``world`` workers takes rows ``rank, rank + world, ...``
(the rank and world size come from torchrun's ``RANK`` / ``WORLD_SIZE``, so one command runs on any number of
GPUs and machines, and workers need not talk to each other). Each output appears under its name only when it is
complete (:func:`~omnisync_core.io.files.atomic_output`), so a row whose output exists is finished: a rerun
(after a crash, a preemption, or with more workers) skips it. A row that fails is reported and the worker goes
on with the next one.

The work of one row is a ``dub(row, path)`` function that writes ``path``; :func:`omnisync_dubber` and
:func:`xdub_dubber` make one from a loaded pipeline (the model is loaded once per worker).
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from .errors import OmniSyncError
from .io.files import atomic_output
from .progress import CancelCheck, check_cancel

COLUMNS = ("video", "speech", "output")


@dataclass(frozen=True)
class BatchRow:
    """One manifest row: ``index`` (0-based, data rows only) and absolute paths."""

    index: int
    video: str
    speech: str
    output: str


def read_manifest(path: str) -> List[BatchRow]:
    """The rows of a CSV (header with video, speech, output) or JSONL manifest; checks every row's fields, that
    inputs exist, output folders exist and outputs are distinct, and raises one OmniSyncError listing the bad
    rows (before any model is loaded)."""
    if not os.path.isfile(path):
        raise OmniSyncError(f"manifest {path!r} not found; pass a .csv (header video,speech,output) or .jsonl file.")
    base = os.path.dirname(os.path.abspath(path))
    raw: List[Tuple[int, Dict[str, Any]]] = []
    with open(path, newline="", encoding="utf-8") as f:
        if path.lower().endswith((".jsonl", ".json")):
            for line_no, line in enumerate(f, 1):
                if line.strip():
                    try:
                        raw.append((line_no, json.loads(line)))
                    except json.JSONDecodeError as exc:
                        raise OmniSyncError(f"{path} line {line_no} is not JSON ({exc.msg}); write one "
                                            '{"video": ..., "speech": ..., "output": ...} object a line.') from None
        else:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise OmniSyncError(f"{path} has no column(s) {', '.join(missing)} (header: {reader.fieldnames}); "
                                    "its first line must name the columns video,speech,output.")
            raw = [(i + 2, r) for i, r in enumerate(reader)]
    rows, problems, outputs = [], [], {}
    for index, (line, r) in enumerate(raw):
        if not isinstance(r, dict) or any(not str(r.get(c) or "").strip() for c in COLUMNS):
            problems.append(f"line {line}: needs non-empty video, speech and output")
            continue
        video, speech, output = (os.path.join(base, os.path.expanduser(str(r[c]).strip())) for c in COLUMNS)
        for what, p in (("video", video), ("speech", speech)):
            if not os.path.isfile(p):
                problems.append(f"line {line}: {what} {p} not found")
        if not os.path.isdir(os.path.dirname(output)):
            problems.append(f"line {line}: the folder of output {output} does not exist")
        if output in outputs:
            problems.append(f"line {line}: output {output} is also the output of line {outputs[output]}")
        outputs[output] = line
        rows.append(BatchRow(index, video, speech, output))
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise OmniSyncError(f"{path}: {'; '.join(problems[:5])}{more}; fix the manifest and run again.")
    if not rows:
        raise OmniSyncError(f"{path} has no rows; add one (video, speech, output) row per dub.")
    return rows


def worker_env(environ=None) -> Tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's RANK / WORLD_SIZE / LOCAL_RANK (0, 1, 0 without them)."""
    env = os.environ if environ is None else environ
    try:
        rank, world, local = (int(env.get(k, d)) for k, d in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)))
    except ValueError:
        raise OmniSyncError("RANK / WORLD_SIZE / LOCAL_RANK must be whole numbers (torchrun sets them).") from None
    if world < 1 or not 0 <= rank < world:
        raise OmniSyncError(f"RANK {rank} is not in [0, WORLD_SIZE {world}); start the workers with torchrun.")
    return rank, world, local


def worker_rows(rows: List[BatchRow], rank: int, world: int) -> List[BatchRow]:
    """The rows of worker ``rank`` of ``world``: every world-th row from the rank-th."""
    return rows[rank::world]


def run_batch(rows: List[BatchRow], dub: Callable[[BatchRow, str], Any], rank: int = 0, world: int = 1,
              on_row: Optional[Callable[[Dict[str, Any]], None]] = None,
              cancel: Optional[CancelCheck] = None) -> Dict[str, Any]:
    """Dub this worker's rows: skip a row whose output exists, else ``dub(row, tmp)`` writes a temporary file that
    becomes ``row.output`` when it returns. ``on_row(entry)`` is called after each row. Returns
    {"rank", "world", "done", "skipped", "failed": [{"index", "output", "error"}], "seconds"}.
    Bad input of one row (an OmniSyncError) fails that row only; cancel stops the batch."""
    report: Dict[str, Any] = {"rank": rank, "world": world, "done": [], "skipped": [], "failed": []}
    t0 = time.perf_counter()
    for row in worker_rows(rows, rank, world):
        check_cancel(cancel)
        entry: Dict[str, Any] = {"index": row.index, "output": row.output}
        if os.path.exists(row.output):
            entry["status"] = "skipped"
            report["skipped"].append(row.output)
        else:
            start = time.perf_counter()
            try:
                with atomic_output(row.output) as tmp:
                    dub(row, tmp)
            except OmniSyncError as exc:
                entry.update(status="failed", error=str(exc))
                report["failed"].append({"index": row.index, "output": row.output, "error": str(exc)})
            else:
                entry.update(status="done", seconds=round(time.perf_counter() - start, 2))
                report["done"].append(row.output)
        if on_row is not None:
            on_row(entry)
    report["seconds"] = round(time.perf_counter() - t0, 2)
    return report


def omnisync_dubber(pipe, options=None, cancel: Optional[CancelCheck] = None) -> Callable[[BatchRow, str], Any]:
    """``dub(row, path)`` with an :class:`~omnisync_core.pipelines.omnisync.OmniSyncPipeline`: the public
    :func:`~omnisync_core.api.sync_video_file` (streaming) of the row's video to its speech."""
    from .api import sync_video_file
    from .io.audio import read_audio

    def dub(row: BatchRow, path: str):
        wave, sr = read_audio(row.speech)
        return sync_video_file(pipe, row.video, wave, sr, path, options, cancel=cancel)
    return dub


def xdub_dubber(pipe, text=None, options=None, cancel: Optional[CancelCheck] = None) -> Callable[[BatchRow, str], Any]:
    """``dub(row, path)`` with an :class:`~omnisync_core.pipelines.xdub.XDubPipeline`; each video is a face crop
    at 25 fps (as ``xdub --crop none``)."""
    from .io.audio import read_audio
    from .io.video import read_video, write_video

    def dub(row: BatchRow, path: str):
        frames, fps = read_video(row.video)
        wave, sr = read_audio(row.speech)
        result = pipe(frames, fps, wave, sr, text=text, options=options, cancel=cancel)
        write_video(path, result.frames, result.fps, result.waveform, result.sample_rate)
        return result.report
    return dub
