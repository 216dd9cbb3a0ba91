"""Bad input, round two, on the command line (issue 24): each case a real subprocess or a ``main()`` call that
asserts the exit code, no traceback, the exact one-line message, and that nothing was lost (an existing output
keeps its bytes, no partial or temporary file is left).

Classes: checks that must run before compute (step and guidance bounds, τ giving a step, output names the file
system cannot hold, --truth, X-Dub's checks), output safety (never over an input, a killed run's leftovers
removed by the next start, SIGTERM as Ctrl-C), and the console (an ASCII-only console, a full stdout).
"""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tiny import (
    make_frames, make_model_checkpoint, make_speech_like, make_wav2vec2_folder, make_whisper_folder,
    make_xdub_checkpoint,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OLD = b"an earlier result that must survive"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from omnisync_core.io.audio import write_wav
    from omnisync_core.io.video import write_video

    d = tmp_path_factory.mktemp("cli2")
    p = {"dir": str(d), "model": make_model_checkpoint(str(d)), "whisper": make_whisper_folder(str(d)),
         "xdub": make_xdub_checkpoint(str(d)), "wav2vec": make_wav2vec2_folder(str(d))}
    p["video"] = str(d / "in.mp4")
    write_video(p["video"], make_frames(T=6), 25.0)
    p["speech"] = str(d / "speech.wav")
    write_wav(p["speech"], make_speech_like(0.32), 16000)
    p["long_video"] = str(d / "long.mp4")
    write_video(p["long_video"], make_frames(T=100), 25.0)
    p["long_speech"] = str(d / "long.wav")
    write_wav(p["long_speech"], make_speech_like(4.0), 16000)
    from xdub_standins import write_wan22_vae

    p["vae"] = write_wan22_vae(str(d / "Wan2.2_VAE.safetensors"))
    p["face"] = str(d / "face.mp4")  # 64×64 face crops at 25 fps: what xdub takes
    write_video(p["face"], make_frames(T=8, H=64, W=64), 25.0)
    p["face30"] = str(d / "face30.mp4")
    write_video(p["face30"], make_frames(T=8, H=64, W=64), 30.0)
    p["face48"] = str(d / "face48.mp4")
    write_video(p["face48"], make_frames(T=8, H=48, W=48), 25.0)
    p["not_video"] = str(d / "truth.mp4")
    with open(p["not_video"], "w") as f:
        f.write("this is not a video\n" * 20)
    for name, sampling in (("steps100k", {"num_steps": 100000}), ("tau_tiny", {"tau": 1e-7}),
                           ("omega1e9", {"omega_peak": 1e9})):
        p[name] = _with_sampling(p["model"], str(d / f"{name}.safetensors"), sampling)
    return p


def _with_sampling(src, dst, sampling):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(src, framework="pt") as f:
        meta = json.loads(f.metadata()["omnisync"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, dst, metadata={"omnisync": json.dumps({**meta, "sampling": sampling})})
    return dst


def _existing(path):
    with open(path, "wb") as f:
        f.write(OLD)
    return path


def _intact(path):
    with open(path, "rb") as f:
        return f.read() == OLD


def _leftovers(folder):
    """Partial outputs and temporary files of this project in ``folder``."""
    return sorted(glob.glob(os.path.join(folder, ".*.partial-*")) + glob.glob(os.path.join(folder, "omnisync-*")))


@pytest.fixture
def no_compute(monkeypatch):
    """Every model loader of the CLI replaced by one that fails the test: a case must end before any of them."""
    import omnisync_core.model.wan22_vae as wan22
    import omnisync_core.model.xdub_weights as xw
    from omnisync_core.cli import omnisync as cli_sync
    from omnisync_core.cli import training as cli_training

    def boom(*a, **k):
        raise AssertionError("a model was loaded before the bad input was refused")

    for module, name in ((cli_sync, "load_runtime"), (cli_training, "load_runtime"), (wan22, "load_wan22_vae"),
                         (xw, "load_xdub_model")):
        monkeypatch.setattr(module, name, boom)


def run_main(capsys, argv):
    from omnisync_core.cli import main

    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def run_cli(args, env=None, stdout=subprocess.PIPE, timeout=600):
    return subprocess.run([sys.executable, "-m", "omnisync_core", *args], cwd=ROOT, stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def _sync(f, out, *extra, video=None, model=None):
    return ["sync", "--video", video or f["video"], "--audio", f["speech"], "--model", model or f["model"],
            "--whisper", f["whisper"], "-o", out, "--steps", "2", "--quiet", "--mouth", "0.5,0.6", *extra]


def _xdub(f, out, *extra, video=None, model=None):
    return ["xdub", "--model", model or f["xdub"], "--whisper", f["whisper"], "--wav2vec", f["wav2vec"],
            "--vae", f["vae"], "--video", video or f["face"], "--audio", f["speech"], "-o", out, "--steps", "2",
            "--quiet", *extra]


def _addresses(text):
    """ffmpeg's messages name its objects by memory address, which differs between runs."""
    return re.sub(r"0x[0-9a-f]+", "0x…", text)


def _one_error(rc, out, err, expected):
    assert rc == 2, err
    assert "Traceback" not in out + err
    errors = [_addresses(ln) for ln in err.splitlines() if ln.startswith("error:")]
    assert errors == [_addresses(f"error: {expected}")], err


# -- before compute: bounds, names, inputs read only after sampling --------------------------------------

STEPS_USER = ("--steps {n}: more than 1000 steps (the schedule has 1000 timesteps) is not finer, only slower; "
              "pass --steps of at most 1000 (50 in the paper, 30 for X-Dub).")
GUIDANCE_USER = ("{flag} 1e+09: a guidance weight above 50 pushes the pixels far outside [0, 1] (clipped); pass {flag} of "
                 "at most 50 (1 to 10 is the useful range).")
TAU_USER = ("--tau 1e-07: no step of the {n}-step schedule lies below it, so nothing would change; pass --tau above "
            "1e-06 (0.92 in the paper, 1 = from pure noise).")

SYNC_BOUNDS = [  # (id, extra flags, model key, expected message)
    ("steps-17GB", ["--steps", "2000000000"], "model", STEPS_USER.format(n=2000000000)),
    ("steps-100k", ["--steps", "100000"], "model", STEPS_USER.format(n=100000)),
    ("steps-1001", ["--steps", "1001"], "model", STEPS_USER.format(n=1001)),
    ("omega-peak-1e9", ["--omega-peak", "1e9"], "model", GUIDANCE_USER.format(flag="--omega-peak")),
    ("omega-base-1e9", ["--omega-base", "1e9"], "model", GUIDANCE_USER.format(flag="--omega-base")),
    ("omega-peak-51", ["--omega-peak", "51"], "model",
     GUIDANCE_USER.format(flag="--omega-peak").replace("1e+09", "51")),
    ("tau-1e-7", ["--tau", "1e-7"], "model", TAU_USER.format(n=2)),
    ("ckpt-steps-100k", ["--steps", "auto"], "steps100k",
     "the checkpoint recommends num_steps 100000: more than 1000 steps (the schedule has 1000 timesteps) is not "
     "finer, only slower; override it with --steps of at most 1000 (50 in the paper, 30 for X-Dub)."),
    ("ckpt-tau-1e-7", [], "tau_tiny",
     "the checkpoint recommends tau 1e-07: no step of the 2-step schedule lies below it, so nothing would change; "
     "override it with --tau above 1e-06 (0.92 in the paper, 1 = from pure noise)."),
    ("ckpt-omega-1e9", [], "omega1e9",
     "the checkpoint recommends omega_peak 1e+09: a guidance weight above 50 pushes the pixels far outside [0, 1] "
     "(clipped); override it with --omega-peak of at most 50 (1 to 10 is the useful range)."),
]


@pytest.mark.parametrize("case,extra,model,expected", SYNC_BOUNDS, ids=[c[0] for c in SYNC_BOUNDS])
def test_sync_bounds_refused_before_compute(files, tmp_path, capsys, no_compute, case, extra, model, expected):
    out = _existing(str(tmp_path / "out.mp4"))
    argv = _sync(files, out, model=files[model])
    if "--steps" in extra:  # the case's own step count replaces the base's
        i = argv.index("--steps")
        del argv[i:i + 2]
    rc, so, se = run_main(capsys, argv + extra)
    _one_error(rc, so, se, expected)
    assert _intact(out) and _leftovers(str(tmp_path)) == []


def test_eval_bounds_refused_before_the_model(files, tmp_path, capsys, no_compute):
    (tmp_path / "dataset.json").write_text(json.dumps({"splits": {"heldout": [{"name": "one"}]}}))
    rc, so, se = run_main(capsys, ["eval", "--model", files["model"], "--data", str(tmp_path), "--steps", "100000",
                                   "--quiet"])
    _one_error(rc, so, se, STEPS_USER.format(n=100000))
    rc, so, se = run_main(capsys, ["eval", "--model", files["model"], "--data", str(tmp_path), "--omega-peak", "1e9",
                                   "--quiet"])
    _one_error(rc, so, se, GUIDANCE_USER.format(flag="--omega-peak"))


def _name_error(what, name_bytes, extra):
    return (f"the {what} file name is {name_bytes} bytes; this file system takes 255 and the run first writes it "
            f"under a name {extra} bytes longer: shorten the name to at most {255 - extra} bytes.")


@pytest.mark.parametrize("stem", [250, 251, 300])
def test_output_name_too_long_refused_before_compute(files, tmp_path, capsys, no_compute, stem):
    """250 + '.mp4' fits the file system but its temporary name does not: found before compute, not at the rename."""
    if os.pathconf(str(tmp_path), "PC_NAME_MAX") != 255:
        pytest.skip("the expected message assumes a 255-byte file system")
    out = str(tmp_path / ("a" * stem + ".mp4"))
    rc, so, se = run_main(capsys, _sync(files, out))
    extra = len(f"..partial-{os.getpid()}")
    _one_error(rc, so, se, _name_error("output video (-o)", stem + 4, extra))
    assert os.listdir(tmp_path) == []


def test_long_report_name_refused_before_compute(files, tmp_path, capsys, no_compute):
    if os.pathconf(str(tmp_path), "PC_NAME_MAX") != 255:
        pytest.skip("the expected message assumes a 255-byte file system")
    out = _existing(str(tmp_path / "out.mp4"))
    rc, so, se = run_main(capsys, _sync(files, out, "--report", str(tmp_path / ("r" * 249 + ".json"))))
    _one_error(rc, so, se, _name_error("--report file", 254, len(f"..partial-{os.getpid()}")))
    assert _intact(out)


def test_unreadable_truth_refused_before_compute_and_output_kept(files, tmp_path, capsys, no_compute):
    """--truth was read only after sampling: the run replaced the output, then failed. Now it fails first."""
    from omnisync_core.errors import OmniSyncError
    from omnisync_core.io.video import VideoReader

    with pytest.raises(OmniSyncError) as exc:
        VideoReader(files["not_video"], min_frames=1)
    out = _existing(str(tmp_path / "out.mp4"))
    sheet = str(tmp_path / "mouths.png")
    rc, so, se = run_main(capsys, _sync(files, out, "--contact-sheet", sheet, "--truth", files["not_video"]))
    _one_error(rc, so, se, str(exc.value))
    assert _intact(out) and not os.path.exists(sheet)


def test_api_truth_checked_before_any_output(files, tmp_path):
    from omnisync_core.api import sync_video_file
    from omnisync_core.errors import OmniSyncError
    from omnisync_core.io.video import VideoReader

    with pytest.raises(OmniSyncError) as expected:
        VideoReader(files["not_video"], min_frames=1)
    out = _existing(str(tmp_path / "out.mp4"))
    with pytest.raises(OmniSyncError) as exc:  # pipe None: the call must end before it is needed
        sync_video_file(None, files["video"], np.zeros(16000, np.float32), 16000, out, truth=files["not_video"],
                        contact_sheet=str(tmp_path / "m.png"))
    assert _addresses(str(exc.value)) == _addresses(str(expected.value)) and "\n" not in str(exc.value)
    assert _intact(out)


# -- output safety: never over an input ---------------------------------------------------------------


def _over_input(what, out, src):
    return f"the {what} {out!r} would overwrite an input of this run ({src!r}); give the output another name."


def test_sync_output_over_the_video_refused(files, tmp_path, capsys, no_compute):
    video = str(tmp_path / "v.mp4")
    with open(files["video"], "rb") as a, open(video, "wb") as b:
        b.write(a.read())
    before = open(video, "rb").read()
    rc, so, se = run_main(capsys, _sync(files, video, video=video))
    _one_error(rc, so, se, _over_input("output video (-o)", video, video))
    assert open(video, "rb").read() == before


def test_sync_output_through_a_symlink_to_the_video_refused(files, tmp_path, capsys, no_compute):
    link = str(tmp_path / "link.mp4")
    os.symlink(files["video"], link)
    rc, so, se = run_main(capsys, _sync(files, link))
    _one_error(rc, so, se, _over_input("output video (-o)", link, files["video"]))
    assert os.path.islink(link)


def test_sync_output_hard_linked_to_the_speech_refused(files, tmp_path, capsys, no_compute):
    """A second name of the same file (a hard link) is the same file: refused too."""
    speech = str(tmp_path / "speech.wav")
    os.link(files["speech"], speech)
    side = str(tmp_path / "side.mp4")
    os.link(files["video"], side)
    rc, so, se = run_main(capsys, _sync(files, str(tmp_path / "o.mp4"), "--side-by-side", side))
    _one_error(rc, so, se, _over_input("--side-by-side video", side, files["video"]))


def test_guidance_video_over_truth_refused(files, tmp_path, capsys, no_compute):
    truth = str(tmp_path / "truth.mp4")
    with open(files["video"], "rb") as a, open(truth, "wb") as b:
        b.write(a.read())
    rc, so, se = run_main(capsys, _sync(files, str(tmp_path / "o.mp4"), "--truth", truth, "--guidance-video", truth))
    _one_error(rc, so, se, _over_input("--guidance-video", truth, truth))


def test_two_outputs_with_one_name_refused(files, tmp_path, capsys, no_compute):
    out = _existing(str(tmp_path / "o.mp4"))
    rc, so, se = run_main(capsys, _sync(files, out, "--side-by-side", str(tmp_path / "." / "o.mp4")))
    _one_error(rc, so, se, f"output video (-o) and --side-by-side video have the same file name {out!r}; give each "
                           "output its own name.")
    assert _intact(out)


def test_api_refuses_to_write_over_its_own_input(files, tmp_path):
    from omnisync_core.api import sync_video_file
    from omnisync_core.errors import OmniSyncError

    video = str(tmp_path / "v.mp4")
    with open(files["video"], "rb") as a, open(video, "wb") as b:
        b.write(a.read())
    before = open(video, "rb").read()
    with pytest.raises(OmniSyncError) as exc:
        sync_video_file(None, video, np.zeros(16000, np.float32), 16000, video)
    assert str(exc.value) == _over_input("output", video, video)
    assert open(video, "rb").read() == before


# -- X-Dub: the same checks before compute -------------------------------------------------------------


def _named(key, text):
    """``text`` as an error inside ``model.files.named_source(key)`` reads (the published file's source added)."""
    from omnisync_core.errors import OmniSyncError
    from omnisync_core.model.files import named_source

    try:
        with named_source(key):
            raise OmniSyncError(text)
    except OmniSyncError as exc:
        return str(exc)


def _xdub_cases(f, tmp):
    from omnisync_core.model.files import missing_message, xdub_file

    out = os.path.join(tmp, "dub.mp4")
    return [  # (id, argv, expected message)
        ("steps-100k", _xdub(f, out, "--steps", "100000")[:-2] + ["--steps", "100000"], STEPS_USER.format(n=100000)),
        ("audio-cfg-1e9", _xdub(f, out, "--audio-cfg-scale", "1e9"), GUIDANCE_USER.format(flag="--audio-cfg-scale")),
        ("omega-peak-1e9", _xdub(f, out, "--omega-peak", "1e9"), GUIDANCE_USER.format(flag="--omega-peak")),
        ("ref-cfg-1e9", _xdub(f, out, "--ref-cfg-scale", "1e9"), GUIDANCE_USER.format(flag="--ref-cfg-scale")),
        ("tau-1e-7", _xdub(f, out, "--tau", "1e-7"), TAU_USER.format(n=2)),
        ("over-input", _xdub(f, f["face"]), _over_input("output video (-o)", f["face"], f["face"])),
        ("omnisync-model", _xdub(f, out, model=f["model"]),
         _named("xdub_model", f"{f['model']!r} is an OmniSync checkpoint, not X-Dub's DiT; run it with the sync command.")),
        ("fps30", _xdub(f, out, video=f["face30"]),
         f"X-Dub was trained on 25 fps video, and {f['face30']!r} is 30 fps; convert it first: ffmpeg -i in.mp4 -r 25 "
         "out.mp4."),
        ("48px-no-crop", _xdub(f, out, video=f["face48"]),
         f"{f['face48']!r} is 48×48: without --crop it must be the face crop itself, with sides divisible by 32 "
         "(512×512 for the published weights); pass --crop box|point|auto to crop the face from the frame."),
        ("prompt-no-t5", _xdub(f, out, "--prompt", "a face"),
         f"a --prompt needs its text encoder: pass --t5 with {xdub_file('umt5_wan').source()} (and --t5-tokenizer), or "
         "drop the prompt."),
        ("report-suffix", _xdub(f, out, "--report", os.path.join(tmp, "r.txt")),
         f"the --report file {os.path.join(tmp, 'r.txt')!r} must end in .json; rename it."),
        ("missing-wav2vec", _xdub(f, out)[:6] + [os.path.join(tmp, "nowhere")] + _xdub(f, out)[7:],
         missing_message("wav2vec2_folder", os.path.join(tmp, "nowhere"), "--wav2vec")),  # no suffix: the folder form
        ("missing-video", _xdub(f, out, video=os.path.join(tmp, "none.mp4")),
         f"video file not found: {os.path.join(tmp, 'none.mp4')!r}; check the path."),
    ]


XDUB_IDS = ["steps-100k", "audio-cfg-1e9", "omega-peak-1e9", "ref-cfg-1e9", "tau-1e-7", "over-input", "omnisync-model",
            "fps30", "48px-no-crop", "prompt-no-t5", "report-suffix", "missing-wav2vec", "missing-video"]


@pytest.mark.parametrize("case", XDUB_IDS)
def test_xdub_refuses_before_loading_anything(files, tmp_path, capsys, no_compute, case):
    argv, expected = {c[0]: c[1:] for c in _xdub_cases(files, str(tmp_path))}[case]
    if case == "steps-100k":
        i = argv.index("--steps")
        del argv[i:i + 2]
    out = _existing(str(tmp_path / "dub.mp4"))
    rc, so, se = run_main(capsys, argv)
    _one_error(rc, so, se, expected)
    assert _intact(out) and _leftovers(str(tmp_path)) == []


def test_xdub_long_output_name_refused(files, tmp_path, capsys, no_compute):
    if os.pathconf(str(tmp_path), "PC_NAME_MAX") != 255:
        pytest.skip("the expected message assumes a 255-byte file system")
    rc, so, se = run_main(capsys, _xdub(files, str(tmp_path / ("x" * 251 + ".mp4"))))
    _one_error(rc, so, se, _name_error("output video (-o)", 255, len(f"..partial-{os.getpid()}")))


def test_xdub_writes_output_report_and_warnings_like_sync(files, tmp_path, capsys, monkeypatch):
    """The run itself: output whole, the report with the CLI's warnings and options, warnings printed as lines."""
    import omnisync_core.model.wan22_vae as wan22
    from omnisync_core.model.wan22_vae import wan22_codec
    from tiny import TinyWan22VAE

    monkeypatch.setattr(wan22, "load_wan22_vae", lambda path, device="cpu", dtype=None: wan22_codec(TinyWan22VAE()))
    out, report = str(tmp_path / "dub.mp4"), str(tmp_path / "run.json")
    rc, so, se = run_main(capsys, _xdub(files, out, "--report", report, "--resident-blocks", "2"))
    assert rc == 0 and "Traceback" not in so + se, se
    from omnisync_core.model.files import xdub_file

    warnings = ["--resident-blocks 2 does nothing without --offload (every block is on the device already).",
                f"no --t5: the text condition is zeros, not the reference's encoded empty prompt; pass --t5 with "
                f"{xdub_file('umt5_wan').source()}.",
                "speech is 0.32 s = 8 frames at 25 fps; 8 face frames ping-ponged to 77 (1 clip(s) of 77)."]
    assert [ln for ln in se.splitlines() if ln.startswith("warning:")] == [f"warning: {w}" for w in warnings]
    with open(report) as f:
        rep = json.load(f)
    assert rep["warnings"] == warnings and rep["written"] == [out] and rep["options"]["num_steps"] == 2
    assert rep["text_condition"] == "zeros (no text encoder)"
    assert _leftovers(str(tmp_path)) == []


# -- leftovers of killed runs ---------------------------------------------------------------------------


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_partial_outputs_of_a_killed_run_removed_on_the_next_start(files, tmp_path):
    dead = _dead_pid()
    stale = tmp_path / f".out.partial-{dead}.mp4"
    stale.write_bytes(b"half a video")
    alive = tmp_path / f".other.partial-{os.getpid()}.mp4"  # a running process's: never touched
    alive.write_bytes(b"being written")
    res = run_cli(_sync(files, str(tmp_path / "out.mp4"), "--tau", "1e-7"))  # ends right after the output checks
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.splitlines() == [f"warning: removed {stale}, an unfinished output of a run that was killed.",
                                       "error: " + TAU_USER.format(n=2)]
    assert not stale.exists() and alive.exists()


def test_temporary_folder_of_a_killed_run_removed_on_the_next_start(files, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    dead = tmp / f"omnisync-run-{_dead_pid()}-abcd"
    dead.mkdir()
    (dead / "omnisync-speech-x.f32").write_bytes(b"\0" * 64)
    foreign = tmp / "omnisync-run-notapid-x"  # not this project's pattern: left alone
    foreign.mkdir()
    res = run_cli(_sync(files, str(tmp_path / "out.mp4"), "--tau", "1e-7"), env={"TMPDIR": str(tmp)})
    assert res.returncode == 2 and res.stderr.splitlines() == ["error: " + TAU_USER.format(n=2)]
    assert sorted(os.listdir(tmp)) == ["omnisync-run-notapid-x"]


def _start_long_run(files, tmp_path, out):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    args = ["sync", "--video", files["long_video"], "--audio", files["long_speech"], "--model", files["model"],
            "--whisper", files["whisper"], "-o", out, "--steps", "1000", "--tau", "1", "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "omnisync_core", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmp)})
    deadline = time.time() + 300
    while not glob.glob(str(tmp / "omnisync-run-*" / "omnisync-speech-*")):  # checks done, speech in its file
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.1)
    time.sleep(2.0)  # into loading and sampling
    return proc, tmp


def test_sigterm_cleans_up_like_ctrl_c(files, tmp_path):
    out = _existing(str(tmp_path / "out.mp4"))
    proc, tmp = _start_long_run(files, tmp_path, out)
    proc.send_signal(signal.SIGTERM)
    so, se = proc.communicate(timeout=120)
    assert proc.returncode == 143, se
    assert "Traceback" not in so + se and se.splitlines()[-1] == "cancelled (SIGTERM)"
    assert _intact(out)
    assert os.listdir(tmp) == [] and _leftovers(str(tmp_path)) == []


def test_sigkill_leftovers_removed_by_the_next_run(files, tmp_path):
    out = str(tmp_path / "out.mp4")
    proc, tmp = _start_long_run(files, tmp_path, out)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert glob.glob(str(tmp / "omnisync-run-*" / "omnisync-speech-*")), "SIGKILL left nothing to clean"
    res = run_cli(_sync(files, out, "--tau", "1e-7"), env={"TMPDIR": str(tmp)})
    assert res.returncode == 2 and res.stderr.splitlines() == ["error: " + TAU_USER.format(n=2)]
    assert os.listdir(tmp) == [] and not os.path.exists(out)


# -- the console ----------------------------------------------------------------------------------------


def test_ascii_console_gets_the_final_line_in_ascii(files, tmp_path):
    """The final `wrote …` line has a τ: on an ASCII console it ended a good run with rc 1; now it reads 'tau'."""
    out = str(tmp_path / "out.mp4")
    res = run_cli(_sync(files, out), env={"PYTHONIOENCODING": "ascii", "LC_ALL": "C"})
    assert res.returncode == 0 and "Traceback" not in res.stdout + res.stderr, res.stderr
    last = res.stdout.splitlines()[-1]
    assert last.startswith(f"wrote {out} (8 frames at 25 fps, 2 steps of a 2-step schedule at tau 0.92, window 16, ")
    assert last.isascii() and os.path.getsize(out) > 0


def test_ascii_console_help_and_errors(files, tmp_path):
    res = run_cli(["sync", "--help"], env={"PYTHONIOENCODING": "ascii", "LC_ALL": "C"})
    assert res.returncode == 0 and "Traceback" not in res.stderr
    assert "progressive noise init strength tau (Eq. 5)" in " ".join(res.stdout.split())
    tiny = str(tmp_path / "tiny.mp4")
    from omnisync_core.io.video import write_video

    write_video(tiny, make_frames(T=4, H=4, W=4), 25.0)
    res = run_cli(_sync(files, str(tmp_path / "o.mp4"), video=tiny), env={"PYTHONIOENCODING": "ascii", "LC_ALL": "C"})
    assert res.returncode == 2 and res.stderr.splitlines() == [
        "error: frames are 4x4 pixels; lip-sync needs at least 8x8: upscale the video first."]


LOOPED = "warning: follow_audio_loop: speech is 0.32 s, video 0.24 s: video looped to 8 frames."
FULL = "warning: could not print to standard output (No space left on device); the run itself was not affected."


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_stdout_ends_nothing(files, tmp_path):
    out = str(tmp_path / "out.mp4")
    with open("/dev/full", "w") as full:
        res = run_cli(_sync(files, out), stdout=full)
    assert res.returncode == 0 and "Traceback" not in res.stderr and "Exception ignored" not in res.stderr
    assert res.stderr.splitlines() == [LOOPED, FULL] and os.path.getsize(out) > 0
    with open("/dev/full", "w") as full:
        res = run_cli(["sync", "--help"], stdout=full)
    assert res.returncode == 0 and res.stderr.splitlines() == [FULL]
