"""Batch dubbing (omnisync_core/batch.py, the ``batch`` command): rows spread over workers by RANK / WORLD_SIZE,
outputs written atomically, a rerun skips finished rows, a bad manifest is one error before any model loads."""

import json
import os
import subprocess
import sys

import pytest

from omnisync_core.batch import BatchRow, read_manifest, run_batch, worker_env, worker_rows
from omnisync_core.errors import OmniSyncError
from tiny import make_frames, make_model_checkpoint, make_speech_like, make_whisper_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _media(tmp_path, n):
    from omnisync_core.io.audio import write_wav
    from omnisync_core.io.video import write_video

    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    lines = ["video,speech,output"]
    for i in range(n):
        write_video(str(tmp_path / "in" / f"v{i}.mp4"), make_frames(T=10, seed=i), 25.0)
        write_wav(str(tmp_path / "in" / f"s{i}.wav"), make_speech_like(0.4, seed=i), 16000)
        lines.append(f"in/v{i}.mp4,in/s{i}.wav,out/dub{i}.mp4")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def test_two_workers_split_the_rows_and_a_rerun_skips_them(tmp_path, monkeypatch):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from test_cli import with_sampling

    from omnisync_core.cli import main

    manifest = _media(tmp_path, 3)
    model = with_sampling(make_model_checkpoint(str(tmp_path)), {"num_steps": 2, "window": 10, "overlap": 2})
    whisper = make_whisper_folder(str(tmp_path))
    out = [str(tmp_path / "out" / f"dub{i}.mp4") for i in range(3)]
    with open(out[1], "wb") as f:  # row 1 finished by an earlier run
        f.write(b"finished earlier")
    args = ["batch", str(manifest), "--model", model, "--whisper", whisper, "--device", "cpu",
            "--report", str(tmp_path / "report.json")]
    procs = [subprocess.Popen([sys.executable, "-m", "omnisync_core", *args], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "RANK": str(r), "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"})
             for r in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    first = [json.loads((tmp_path / f"report.rank{r}.json").read_text()) for r in range(2)]
    assert first[0]["done"] == [out[0], out[2]] and first[0]["model_loaded"]  # worker 0: rows 0 and 2
    assert first[1]["skipped"] == [out[1]] and first[1]["done"] == [] and not first[1]["model_loaded"]  # row 1
    assert open(out[1], "rb").read() == b"finished earlier"
    assert all(os.path.getsize(p) > 1000 for p in (out[0], out[2]))
    assert sorted(os.listdir(tmp_path / "out")) == ["dub0.mp4", "dub1.mp4", "dub2.mp4"]  # no partial file left

    monkeypatch.setenv("WORLD_SIZE", "2")  # the rerun, each worker in this process: everything is finished
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        assert main(args) == 0
    second = [json.loads((tmp_path / f"report.rank{r}.json").read_text()) for r in range(2)]
    assert second[0]["skipped"] == [out[0], out[2]] and second[1]["skipped"] == [out[1]]
    assert not any(r["done"] or r["model_loaded"] for r in second)


def test_a_failing_row_leaves_no_output_and_the_others_go_on(tmp_path):
    rows = [BatchRow(i, "v", "s", str(tmp_path / f"o{i}.mp4")) for i in range(3)]

    def dub(row, path):
        with open(path, "w") as f:
            f.write("partial")
        if row.index == 1:
            raise OmniSyncError("speech too short")

    seen = []
    report = run_batch(rows, dub, on_row=seen.append)
    assert report["done"] == [rows[0].output, rows[2].output]
    assert report["failed"] == [{"index": 1, "output": rows[1].output, "error": "speech too short"}]
    assert sorted(os.listdir(tmp_path)) == ["o0.mp4", "o2.mp4"]
    assert [e["status"] for e in seen] == ["done", "failed", "done"]


def test_manifest_checks_and_worker_env(tmp_path):
    manifest = _media(tmp_path, 2)
    rows = read_manifest(str(manifest))
    assert [r.output for r in rows] == [str(tmp_path / "out" / f"dub{i}.mp4") for i in range(2)]
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text("\n".join(json.dumps({"video": f"in/v{i}.mp4", "speech": f"in/s{i}.wav",
                                           "output": f"out/dub{i}.mp4"}) for i in range(2)))
    assert read_manifest(str(jsonl)) == rows
    bad = tmp_path / "bad.csv"
    bad.write_text("video,speech,output\nin/v0.mp4,in/missing.wav,out/a.mp4\nin/v1.mp4,in/s1.wav,out/a.mp4\n"
                   "in/v1.mp4,in/s1.wav,nofolder/b.mp4\n")
    with pytest.raises(OmniSyncError) as e:
        read_manifest(str(bad))
    msg = str(e.value)
    assert "missing.wav not found" in msg and "also the output of line 2" in msg and "does not exist" in msg
    (tmp_path / "cols.csv").write_text("video,audio,output\n")
    with pytest.raises(OmniSyncError, match="no column"):
        read_manifest(str(tmp_path / "cols.csv"))
    assert worker_env({"RANK": "1", "WORLD_SIZE": "3", "LOCAL_RANK": "1"}) == (1, 3, 1)
    assert worker_env({}) == (0, 1, 0)
    with pytest.raises(OmniSyncError, match="torchrun"):
        worker_env({"RANK": "2", "WORLD_SIZE": "2"})
    assert [r.index for r in worker_rows([BatchRow(i, "", "", "") for i in range(5)], 1, 2)] == [1, 3]
