"""``python -m omnisync_core xdub`` on stand-ins of the published files, in exactly the publishers' formats and names
(tests/xdub_standins.py): end to end with no conversion step, and a one-line error (rc 2, no traceback) for a
missing, damaged, truncated or wrong file at every X-Dub input."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from omnisync_core.cli import main
from omnisync_core.io.audio import write_wav
from omnisync_core.io.video import read_video, write_video
from omnisync_core.model.files import xdub_file
from tiny import make_speech_like
from xdub_standins import write_bundle, write_single_files, write_wan22_vae, write_xdub_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 64  # face crops of 64×64: 4×4 latent pixels


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("xdub_bundle")
    paths = write_bundle(str(root))
    g = torch.Generator().manual_seed(0)
    ys, xs = torch.meshgrid(torch.linspace(0, 1, SIZE), torch.linspace(0, 1, SIZE), indexing="ij")
    frames = (torch.stack([ys, xs, (ys + xs) / 2], -1) + 0.05 * torch.rand(13, SIZE, SIZE, 3, generator=g)).clamp(0, 1)
    paths["video"], paths["audio"] = str(root / "face.mp4"), str(root / "speech.wav")
    write_video(paths["video"], frames, 25.0)
    write_wav(paths["audio"], make_speech_like(0.5), 16000)  # 0.5 s: 13 frames, one clip
    paths["root"] = str(root)
    return paths


@pytest.fixture(scope="module")
def singles(tmp_path_factory):
    """The speech encoders as their publishers ship them on their own (one model.safetensors each, saved under the
    registry's names, no config anywhere) and a DiT whose speech input fits them."""
    return write_single_files(str(tmp_path_factory.mktemp("xdub_singles")))


def xdub_args(p, out, **override):
    args = {"--model": p["xdub_model"], "--vae": p["wan22_vae"], "--t5": p["umt5_wan"], "--whisper": p["whisper"],
            "--wav2vec": p["wav2vec2"], "--video": p["video"], "--audio": p["audio"]}
    args.update(override)
    flat = ["xdub"] + [x for k, v in args.items() if v is not None for x in (k, v)]
    return flat + ["-o", out, "--steps", "2", "--quiet", "--device", "cpu"]


def test_cli_runs_the_published_files_end_to_end(bundle, tmp_path):
    """A fresh process, the bundle's own file names, nothing converted, nothing skipped."""
    out, report = str(tmp_path / "dubbed.mp4"), str(tmp_path / "report.json")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    run = subprocess.run([sys.executable, "-m", "omnisync_core", *xdub_args(bundle, out), "--report", report],
                         cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr and "warning: no --t5" not in run.stderr
    got, fps = read_video(out)
    assert got.shape == (13, SIZE, SIZE, 3) and fps == pytest.approx(25.0)
    with open(report) as f:
        rep = json.load(f)
    assert rep["clips"] == 1 and rep["text_condition"].endswith("1 token(s)")
    # the one adjustment of this run, said by the pipeline (a 13-frame take ping-ponged to the 77-frame clip)
    assert rep["warnings"] == ["speech is 0.50 s = 13 frames at 25 fps; 13 face frames ping-ponged to 77 "
                               "(1 clip(s) of 77)."]
    assert "warning: speech is 0.50 s" in run.stderr
    assert sorted(os.listdir(tmp_path)) == ["dubbed.mp4", "report.json"]  # nothing written to the cwd


def test_cli_runs_the_single_published_speech_encoders_end_to_end(bundle, singles, tmp_path):
    """openai/whisper-large-v2's and facebook/wav2vec2-base-960h's model.safetensors, no config.json anywhere: their
    configurations come from the tensor shapes, in a fresh process."""
    root = os.path.dirname(os.path.dirname(singles["whisper"]))
    assert not [f for _, _, files in os.walk(root) for f in files if f.endswith(".json")]
    out = str(tmp_path / "dubbed.mp4")
    args = xdub_args(bundle, out, **{"--model": singles["xdub_model"], "--whisper": singles["whisper"],
                                     "--wav2vec": singles["wav2vec2"]})
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    run = subprocess.run([sys.executable, "-m", "omnisync_core", *args, "--report", str(tmp_path / "r.json")],
                         cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    got, fps = read_video(out)
    assert got.shape == (13, SIZE, SIZE, 3) and fps == pytest.approx(25.0)
    with open(tmp_path / "r.json") as f:
        assert json.load(f)["clips"] == 1


def test_comfy_umt5_and_a_prompt_with_the_bundles_tokenizer(bundle, tmp_path, capsys):
    out = str(tmp_path / "comfy.mp4")
    rc = main(xdub_args(bundle, out, **{"--t5": bundle["umt5_comfy"], "--t5-tokenizer": bundle["umt5_tokenizer"],
                                        "--prompt": "a face that talks", "--report": str(tmp_path / "r.json")}))
    assert rc == 0, capsys.readouterr().err
    with open(tmp_path / "r.json") as f:
        assert json.load(f)["text_condition"].endswith("5 token(s)")  # 4 words + </s>


def test_without_a_text_encoder_zeros_and_a_warning(bundle, tmp_path, capsys):
    rc = main(xdub_args(bundle, str(tmp_path / "zeros.mp4"), **{"--t5": None, "--report": str(tmp_path / "r.json")}))
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "warning: no --t5: the text condition is zeros" in err and xdub_file("umt5_wan").url in err
    with open(tmp_path / "r.json") as f:
        rep = json.load(f)
    assert rep["text_condition"].startswith("zeros") and "no --t5" in rep["warnings"][0]


def test_old_torch_refuses_the_pt_and_points_to_convert_whisper(bundle, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    rc = main(xdub_args(bundle, str(tmp_path / "o.mp4")))
    err = capsys.readouterr().err
    assert rc == 2 and "older than 2.6" in err and "convert-whisper" in err and len(err.strip().splitlines()) == 1


# -- every input: missing, damaged, truncated, wrong ---------------------------------------------------

def _garbage(path):
    with open(path, "wb") as f:
        f.write(os.urandom(4096))
    return path


def _truncated(src, dst):
    with open(src, "rb") as f:
        data = f.read()
    with open(dst, "wb") as f:
        f.write(data[: len(data) // 2])
    return dst


def _wav2vec_with(bundle, tmp, name, damage):
    folder = os.path.join(tmp, name)
    shutil.copytree(bundle["wav2vec2"], folder)
    damage(folder)
    return folder


def _cases(bundle, singles, tmp):
    """(flag, value, words the one-line error must hold)."""
    t = str(tmp)
    vae_url, dit_url = xdub_file("wan22_vae").url, xdub_file("xdub_model").url
    t5_url = xdub_file("umt5_wan").url
    wh_url, pt_url = xdub_file("whisper").url, xdub_file("whisper_pt").url  # the single file, the bundle's .pt
    w2v_url, folder_url = xdub_file("wav2vec2").url, xdub_file("wav2vec2_folder").url  # the file, the bundle's folder
    evil = os.path.join(t, "evil.pt")

    class Evil:  # unpickling it would run code: weights_only refuses it
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"dims": {}, "model_state_dict": Evil()}, evil)
    other_pt = os.path.join(t, "other.pt")
    torch.save({"state_dict": {"w": torch.zeros(2)}}, other_pt)
    bad_st = _garbage(os.path.join(t, "whisper.safetensors"))
    return [
        ("--model", os.path.join(t, "none.safetensors"), ["not found", dit_url, "diffusion_models"]),
        ("--model", _garbage(os.path.join(t, "g_model.safetensors")), ["not a readable safetensors", dit_url]),
        ("--model", _truncated(bundle["xdub_model"], os.path.join(t, "t_model.safetensors")), [dit_url]),
        ("--model", bundle["wan22_vae"], ["X-Dub_model.safetensors", dit_url]),
        ("--vae", os.path.join(t, "none_vae.safetensors"), ["not found", vae_url, "models/vae/"]),
        ("--vae", _garbage(os.path.join(t, "g_vae.safetensors")), ["not a readable safetensors", vae_url]),
        ("--vae", _truncated(bundle["wan22_vae"], os.path.join(t, "t_vae.safetensors")), [vae_url]),
        ("--vae", bundle["xdub_model"], ["not a Wan VAE", vae_url]),
        ("--t5", os.path.join(t, "none_t5.safetensors"), ["not found", t5_url, "text_encoders"]),
        ("--t5", _garbage(os.path.join(t, "g_t5.safetensors")), ["not a readable safetensors", t5_url]),
        ("--t5", _truncated(bundle["umt5_wan"], os.path.join(t, "t_t5.safetensors")), [t5_url]),
        ("--t5", bundle["wan22_vae"], ["not a umT5 text encoder", t5_url]),
        ("--whisper", os.path.join(t, "none.pt"), ["not found", pt_url, wh_url, "audio_encoders"]),
        ("--whisper", os.path.join(t, "none.safetensors"), ["not found", wh_url, "save it as", pt_url]),
        ("--whisper", _garbage(os.path.join(t, "g_large-v2.pt")), ["weights_only", pt_url]),
        ("--whisper", _truncated(bundle["whisper"], os.path.join(t, "t_large-v2.pt")), ["weights_only", pt_url]),
        ("--whisper", other_pt, ["not an openai-whisper checkpoint", pt_url]),
        ("--whisper", evil, ["weights_only", pt_url]),
        ("--whisper", bad_st, ["not a readable safetensors", wh_url]),
        ("--whisper", _truncated(singles["whisper"], os.path.join(t, "t_whisper.safetensors")),
         ["not a readable safetensors", wh_url]),
        ("--whisper", singles["wav2vec2"], ["not a Whisper checkpoint", wh_url]),
        ("--whisper", bundle["wan22_vae"], ["not a Whisper checkpoint", wh_url]),
        ("--wav2vec", os.path.join(t, "none_w2v"), ["not found", folder_url, w2v_url, "audio_encoders"]),
        ("--wav2vec", os.path.join(t, "none_w2v.safetensors"), ["not found", w2v_url, "save it as", folder_url]),
        ("--wav2vec", _wav2vec_with(bundle, t, "w_garbage", lambda d: _garbage(os.path.join(d, "model.safetensors"))),
         ["not a readable safetensors", folder_url]),
        ("--wav2vec", _wav2vec_with(bundle, t, "w_trunc", lambda d: _truncated(
            os.path.join(bundle["wav2vec2"], "model.safetensors"), os.path.join(d, "model.safetensors"))),
         [folder_url]),
        ("--wav2vec", _wav2vec_with(bundle, t, "w_config", lambda d: _garbage(os.path.join(d, "config.json"))),
         ["config", folder_url]),
        ("--wav2vec", _wav2vec_with(bundle, t, "w_empty", lambda d: os.remove(os.path.join(d, "model.safetensors"))),
         ["neither model.safetensors nor pytorch_model.bin", folder_url]),
        ("--wav2vec", _truncated(singles["wav2vec2"], os.path.join(t, "t_w2v.safetensors")),
         ["not a readable safetensors", w2v_url]),
        ("--wav2vec", singles["whisper"], ["not a wav2vec2 checkpoint", w2v_url]),
        ("--wav2vec", bundle["wan22_vae"], ["not a wav2vec2 checkpoint", w2v_url]),
        ("--wav2vec", bundle["whisper"], ["not a wav2vec2 file", w2v_url]),
        ("--t5-tokenizer", _garbage(os.path.join(t, "tokenizer-file")), ["takes a folder", "umt5-xxl"]),
        ("--t5-tokenizer", _wav2vec_with(bundle, t, "not_a_tokenizer", lambda d: None), ["tokenizer", "umt5-xxl"]),
        ("--video", _garbage(os.path.join(t, "g.mp4")), ["g.mp4"]),
        ("--audio", _garbage(os.path.join(t, "g.wav")), ["g.wav"]),
    ]


def test_every_input_gives_one_line_and_rc_2(bundle, singles, tmp_path, capsys):
    failures = []
    for flag, value, words in _cases(bundle, singles, tmp_path):
        extra = {"--prompt": "a face"} if flag == "--t5-tokenizer" else {}
        rc = main(xdub_args(bundle, str(tmp_path / "never.mp4"), **{flag: value}, **extra))
        err = capsys.readouterr().err.strip()
        lines = [line for line in err.splitlines() if not line.startswith("warning:")]
        ok = rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and all(w in lines[0] for w in words)
        if not ok or lines[0].count("huggingface.co") > 2:  # the source named once (twice for umT5's two files)
            failures.append((flag, os.path.basename(value), rc, err[-1200:]))
    assert not failures, failures
    assert not os.path.exists(tmp_path / "never.mp4")


def test_pickled_wav2vec2_folder_loads(bundle, tmp_path):
    """facebook/wav2vec2-base-960h's pytorch_model.bin, read with weights_only=True like the Whisper .pt."""
    from omnisync_core.audio.xdub_features import load_xdub_audio_encoders
    from xdub_standins import write_wav2vec2_folder

    pickled = write_wav2vec2_folder(str(tmp_path / "wav2vec2-base-960h"), pickled=True)
    assert os.path.isfile(os.path.join(pickled, "pytorch_model.bin"))
    a = load_xdub_audio_encoders(bundle["whisper"], pickled)
    b = load_xdub_audio_encoders(bundle["whisper"], bundle["wav2vec2"])
    assert set(a.wav2vec.state_dict()) == set(b.wav2vec.state_dict())
    assert all(torch.equal(v, b.wav2vec.state_dict()[k]) for k, v in a.wav2vec.state_dict().items())


def test_pt_and_converted_whisper_give_the_same_encoder(bundle, tmp_path):
    from omnisync_core.audio.xdub_features import convert_openai_whisper, load_xdub_audio_encoders

    st = str(tmp_path / "whisper-large-v2-encoder.safetensors")
    convert_openai_whisper(bundle["whisper"], st)
    a = load_xdub_audio_encoders(bundle["whisper"], bundle["wav2vec2"]).whisper.state_dict()
    b = load_xdub_audio_encoders(st, bundle["wav2vec2"]).whisper.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_standin_writers_are_deterministic(tmp_path):
    from safetensors.torch import load_file

    for writer in (write_xdub_model, write_wan22_vae):
        a, b = writer(str(tmp_path / "a.safetensors")), writer(str(tmp_path / "b.safetensors"))
        x, y = load_file(a), load_file(b)
        assert set(x) == set(y) and all(torch.equal(x[k], y[k]) for k in x)
