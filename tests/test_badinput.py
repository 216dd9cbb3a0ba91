"""The bad-input corpus: hundreds of wrong or unusual inputs through the CLI, the Python API and the nodes.

Each case is a row of a table. An error case asserts rc 2 (CLI) or an OmniSyncError (API, nodes) whose
message is one line and says the fix (the row's pattern); a success case asserts the warning line the
run must print. No case may show a traceback. The media, checkpoints and broken files are generated once
for the module (fixture ``corpus``); CLI cases run in-process through ``cli.main(argv)`` with stdout
and stderr captured, and a few run as real subprocesses to prove the exit code and the absence of
tracebacks end to end (including Ctrl-C).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from tiny import make_frames, make_model_checkpoint, make_speech_like, make_whisper_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FPS = 25.0


# -- the corpus's files, made once --------------------------------------------------------------------


def _float_wav(path, samples: np.ndarray, sr: int) -> None:
    """A 32-bit float WAV (format 3), written by hand so NaN/Inf survive."""
    data = np.asarray(samples, "<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, sr, sr * 4, 4, 32)
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE")
        f.write(b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data)


def _ffmpeg(*args):
    from omnisync_core.io.ffmpeg import _ffmpeg_exe

    subprocess.run([_ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-v", "error", *args], check=True)


def _with_meta(src, dst, edit=None, raw=None, tensors=None):
    """Copy a checkpoint with its OmniSync metadata edited (``edit(meta)``) or replaced by ``raw``."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(src, framework="pt") as f:
        meta = json.loads(f.metadata()["omnisync"])
        stored = {k: f.get_tensor(k) for k in f.keys()}
    if edit is not None:
        edit(meta)
    save_file(stored if tensors is None else tensors(stored), dst,
              metadata={"omnisync": raw if raw is not None else json.dumps(meta)})
    return dst


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from safetensors.torch import save_file

    from omnisync_core.io.video import write_video
    from omnisync_core.io.audio import write_wav

    d = tmp_path_factory.mktemp("corpus")
    p = {}

    def path(name):
        p[name] = str(d / name)
        return p[name]

    p["model"] = make_model_checkpoint(str(d))
    p["whisper"] = make_whisper_folder(str(d))
    _with_meta(p["model"], path("trained.safetensors"), lambda m: m.update(train={"fps": 25.0, "size": 32}))
    # videos
    write_video(path("good.mp4"), make_frames(T=6), FPS)
    write_video(path("odd.mp4"), make_frames(T=4, H=77, W=101), FPS)
    write_video(path("one_frame.mp4"), make_frames(T=1), FPS)
    write_video(path("tiny.mp4"), make_frames(T=4, H=4, W=4), FPS)
    write_video(path("fps5.mp4"), make_frames(T=4), 5.0)
    write_video(path("big.mp4"), make_frames(T=3, H=72, W=72), FPS)
    write_video(path("with_audio.mp4"), make_frames(T=6), FPS, make_speech_like(0.24), 16000)
    open(path("empty.mp4"), "wb").close()
    with open(path("text.mp4"), "w") as f:
        f.write("this is not a video\n" * 20)
    with open(p["good.mp4"], "rb") as f:
        head = f.read(400)
    with open(path("truncated.mp4"), "wb") as f:
        f.write(head)
    import imageio.v3 as iio

    iio.imwrite(path("still.png"), (make_frames(T=1)[0].numpy() * 255).astype(np.uint8))
    os.makedirs(path("folder"))
    # audio
    write_wav(path("speech.wav"), make_speech_like(0.32), 16000)  # 8 frames at 25 fps
    write_wav(path("speech1s.wav"), make_speech_like(1.0), 16000)
    write_wav(path("stereo44k.wav"), np.stack([make_speech_like(0.3, 44100)] * 2), 44100)
    write_wav(path("pcm8.wav"), make_speech_like(0.3), 16000, bits=8)
    write_wav(path("pcm24_48k.wav"), make_speech_like(0.3, 48000), 48000, bits=24)
    write_wav(path("pcm32.wav"), make_speech_like(0.3), 16000, bits=32)
    write_wav(path("silent.wav"), np.zeros(8000, np.float32), 16000)
    write_wav(path("ms10.wav"), make_speech_like(0.01), 16000)
    write_wav(path("ms40.wav"), make_speech_like(0.04), 16000)
    write_wav(path("ms80.wav"), make_speech_like(0.08), 16000)
    write_wav(path("sr500.wav"), make_speech_like(0.5, 500), 500)
    write_wav(path("eight_ch.wav"), np.stack([make_speech_like(0.2)] * 8), 16000)
    clipped = np.clip(make_speech_like(0.3) * 20, -1, 1)
    write_wav(path("clipped.wav"), clipped, 16000)
    _float_wav(path("float.wav"), make_speech_like(0.3), 16000)
    nan = make_speech_like(0.3)
    nan[100:200] = np.nan
    _float_wav(path("nan.wav"), nan, 16000)
    inf = make_speech_like(0.3)
    inf[50] = np.inf
    _float_wav(path("inf.wav"), inf, 16000)
    _float_wav(path("loud.wav"), make_speech_like(0.3) * 8, 16000)  # float beyond full scale
    _float_wav(path("header_only.wav"), np.zeros(0, np.float32), 16000)
    with open(p["speech.wav"], "rb") as f:
        wav = f.read()
    with open(path("truncated.wav"), "wb") as f:
        f.write(wav[:30])
    open(path("empty.wav"), "wb").close()
    with open(path("text.wav"), "w") as f:
        f.write("hello, this is text, not audio\n" * 10)
    for ext, codec in (("mp3", "libmp3lame"), ("m4a", "aac"), ("flac", "flac"), ("ogg", "libvorbis")):
        try:
            _ffmpeg("-i", p["speech.wav"], "-c:a", codec, path(f"speech.{ext}"))
        except subprocess.CalledProcessError:
            p.pop(f"speech.{ext}")
    # checkpoints of every wrong kind
    state = {"w": torch.zeros(2, 2)}
    torch.save(state, path("pickled.pt"))
    torch.save(state, path("pickled.ckpt"))
    torch.save(state, path("pickled.bin"))
    torch.save(state, path("pickled_named.safetensors"))
    with open(path("legacy.pth"), "wb") as f:
        pickle.dump({"w": [0.0]}, f, protocol=4)
    with open(p["model"], "rb") as f:
        blob = f.read()
    with open(path("truncated.safetensors"), "wb") as f:
        f.write(blob[: len(blob) // 2])
    with open(path("header_cut.safetensors"), "wb") as f:
        f.write(blob[:20])
    open(path("empty.safetensors"), "wb").close()
    with open(path("text.safetensors"), "w") as f:
        f.write("not a checkpoint")
    save_file({"w": torch.zeros(2, 2)}, path("no_meta.safetensors"))
    save_file({"w": torch.zeros(2, 2)}, path("other_meta.safetensors"), metadata={"format": "pt"})
    _with_meta(p["model"], path("bad_json.safetensors"), raw="{not json")
    _with_meta(p["model"], path("format99.safetensors"), lambda m: m.update(format=99))
    _with_meta(p["model"], path("arch.safetensors"), lambda m: m.update(arch="mamba"))
    _with_meta(p["model"], path("missing_weights.safetensors"), tensors=lambda t: dict(list(t.items())[:3]))
    _with_meta(p["model"], path("extra_weights.safetensors"), tensors=lambda t: {**t, "stray.weight": torch.zeros(1)})
    _with_meta(p["model"], path("bad_sampling.safetensors"), lambda m: m.update(sampling={"tau": 7}))
    _with_meta(p["model"], path("bad_audio_spec.safetensors"), lambda m: m["audio"].update(num_layers=-1))
    first = next(iter(json.loads(_header(blob))))
    _with_meta(p["model"], path("wrong_shape.safetensors"),
               tensors=lambda t: {**t, first: torch.zeros(*[s + 1 for s in t[first].shape])})
    os.makedirs(path("model_folder"))
    _with_meta(p["model"], os.path.join(p["model_folder"], "inside.safetensors"))
    p["reader"] = os.path.join(ROOT, "models", "mouth_reader.safetensors")
    p["dir"] = str(d)
    return p


def _header(blob: bytes) -> str:
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    header.pop("__metadata__", None)
    return json.dumps(dict(sorted(header.items())))


# -- the CLI, in-process ------------------------------------------------------------------------------


def run_cli(capsys, argv):
    from omnisync_core import cli

    try:
        rc = cli.main(argv)
    except SystemExit as exc:  # argparse
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def _sync(c, out, **flags):
    """sync argv: the corpus's good inputs, ``flags`` replacing or adding (None drops a flag)."""
    base = {"--video": c["good.mp4"], "--audio": c["speech.wav"], "--model": c["model"], "--whisper": c["whisper"],
            "-o": out, "--steps": "2", "--mouth": "0.5,0.6"}
    base.update(flags)
    argv = ["sync", "--quiet"]
    for k, v in base.items():
        if v is None:
            continue
        argv += [k] if v is True else [k, v]
    return argv


def _assert_one_line_error(rc, out, err, pattern):
    assert "Traceback" not in out + err, err
    assert rc == 2, (rc, err)
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(pattern, lines[0]), lines[0]


# (id, flags with corpus keys as "@name" and "%out" for files in the case's folder, pattern of the error line)
CLI_ERRORS = [
    # input files
    ("video-missing", {"--video": "%nope.mp4"}, r"video file not found.*check the path"),
    ("video-empty", {"--video": "@empty.mp4"}, r"empty \(0 bytes\)"),
    ("video-folder", {"--video": "@folder"}, r"is a folder; pass the video file"),
    ("video-text", {"--video": "@text.mp4"}, r"cannot read video.*pass an mp4"),
    ("video-truncated", {"--video": "@truncated.mp4"}, r"damaged|cannot read video|0 frames"),
    ("video-is-wav", {"--video": "@speech.wav"}, r"no readable video stream|0 frames"),
    ("video-one-frame", {"--video": "@one_frame.mp4"}, r"1 frame.*at least 2 frames"),
    ("video-png-still", {"--video": "@still.png"}, r"1 frame.*at least 2 frames|no frame rate"),
    ("video-4x4", {"--video": "@tiny.mp4"}, r"4×4 pixels.*upscale"),
    ("video-empty-path", {"--video": ""}, r"no video file given"),
    ("audio-missing", {"--audio": "%nope.wav"}, r"audio file not found"),
    ("audio-empty", {"--audio": "@empty.wav"}, r"empty \(0 bytes\)"),
    ("audio-folder", {"--audio": "@folder"}, r"is a folder; pass the audio file"),
    ("audio-text", {"--audio": "@text.wav"}, r"cannot decode audio.*pass a wav"),
    ("audio-truncated-header", {"--audio": "@truncated.wav"}, r"cannot decode audio|0 samples"),
    ("audio-header-only", {"--audio": "@header_only.wav"}, r"0 samples|cannot decode"),
    ("audio-no-track", {"--audio": "@good.mp4"}, r"has no audio track"),
    ("audio-silent", {"--audio": "@silent.wav"}, r"audio is silent.*pass a clip with speech"),
    ("audio-nan", {"--audio": "@nan.wav"}, r"NaN or infinite.*re-export"),
    ("audio-inf", {"--audio": "@inf.wav"}, r"NaN or infinite"),
    ("audio-10ms", {"--audio": "@ms10.wav"}, r"speech is 10 ms, less than 2 frames at 25 fps \(80 ms\)"),
    ("audio-40ms", {"--audio": "@ms40.wav"}, r"speech is 40 ms, less than 2 frames"),
    ("audio-500hz", {"--audio": "@sr500.wav"}, r"sample_rate must be a whole number of Hz >= 1000"),
    ("say-empty", {"--audio": None, "--say": ""}, r"--say got empty text"),
    ("say-blank", {"--audio": None, "--say": "   "}, r"--say got empty text"),
    ("say-and-audio", {"--say": "hello"}, r"exactly one of --audio"),
    ("no-audio-no-say", {"--audio": None}, r"exactly one of --audio"),
    ("truth-missing", {"--truth": "%nope.mp4", "--contact-sheet": "%m.png"}, r"--truth video file not found"),
    # checkpoints of every wrong kind
    ("model-missing", {"--model": "%nope.safetensors"}, r"model file not found"),
    ("model-folder", {"--model": "@model_folder"}, r"is a folder \(it holds inside.safetensors\); pass the OmniSync"),
    ("model-empty", {"--model": "@empty.safetensors"}, r"empty \(0 bytes\)"),
    ("model-pickle-pt", {"--model": "@pickled.pt"}, r"PyTorch pickle.*only loads safetensors"),
    ("model-pickle-ckpt", {"--model": "@pickled.ckpt"}, r"PyTorch pickle"),
    ("model-pickle-bin", {"--model": "@pickled.bin"}, r"PyTorch pickle"),
    ("model-pickle-legacy", {"--model": "@legacy.pth"}, r"PyTorch pickle"),
    ("model-pickle-renamed", {"--model": "@pickled_named.safetensors"}, r"PyTorch pickle"),
    ("model-truncated", {"--model": "@truncated.safetensors"}, r"not a readable safetensors file.*re-download"),
    ("model-header-cut", {"--model": "@header_cut.safetensors"}, r"not a readable safetensors file"),
    ("model-text", {"--model": "@text.safetensors"}, r"not a readable safetensors file"),
    ("model-no-metadata", {"--model": "@no_meta.safetensors"}, r"no OmniSync metadata"),
    ("model-other-metadata", {"--model": "@other_meta.safetensors"}, r"no OmniSync metadata"),
    ("model-mouth-reader", {"--model": "@reader"}, r"no OmniSync metadata"),
    ("model-bad-json", {"--model": "@bad_json.safetensors"}, r"corrupt OmniSync metadata.*re-export"),
    ("model-format-99", {"--model": "@format99.safetensors"}, r"metadata format 99.*update the plugin"),
    ("model-wrong-arch", {"--model": "@arch.safetensors"}, r"'mamba' network.*update the plugin"),
    ("model-missing-weights", {"--model": "@missing_weights.safetensors"}, r"lacks weights.*re-export"),
    ("model-extra-weights", {"--model": "@extra_weights.safetensors"}, r"weights its metadata does not describe"),
    ("model-wrong-shape", {"--model": "@wrong_shape.safetensors"}, r"has shape .* re-export"),
    ("model-bad-sampling", {"--model": "@bad_sampling.safetensors"}, r"recommends invalid sampling.*Re-export"),
    ("model-bad-audio-spec", {"--model": "@bad_audio_spec.safetensors"}, r"audio spec has a bad value"),
    ("whisper-missing", {"--whisper": "%nope"}, r"--whisper .* does not exist"),
    ("whisper-not-whisper", {"--whisper": "@folder"}, r"not a Whisper folder"),
    ("text-encoder-missing", {"--text-encoder": "%nope", "--prompt": "a fox"}, r"--text-encoder .* does not exist"),
    ("prompt-without-encoder", {"--prompt": "a fox"}, r"--prompt needs --text-encoder"),
    # outputs: checked before anything is computed
    ("out-folder-missing", {"-o": "%missing/out.mp4"}, r"folder of the output video.*does not exist; create it"),
    ("out-is-folder", {"-o": "@folder"}, r"is a folder; pass a file name"),
    ("out-suffix", {"-o": "%out.txt"}, r"must end in \.mp4"),
    ("out-empty", {"-o": ""}, r"path is empty"),
    ("out-overwrites-input", {"-o": "@good.mp4"}, r"overwrite an input"),
    ("sbs-folder-missing", {"--side-by-side": "%missing/sbs.mp4"}, r"--side-by-side video.*does not exist"),
    ("sbs-suffix", {"--side-by-side": "%sbs.gif"}, r"must end in \.mp4"),
    ("sbs-same-as-output", {"--side-by-side": "%out.mp4"}, r"same file name"),
    ("guidance-folder-missing", {"--guidance-video": "%missing/g.mp4"}, r"--guidance-video.*does not exist"),
    ("sheet-suffix", {"--contact-sheet": "%sheet.jpg"}, r"must end in \.png"),
    ("sheet-folder-missing", {"--contact-sheet": "%missing/s.png"}, r"contact-sheet image.*does not exist"),
    ("report-folder-missing", {"--report": "%missing/r.json"}, r"--report file.*does not exist; create it first"),
    ("report-suffix", {"--report": "%r.txt"}, r"must end in \.json"),
    ("report-is-folder", {"--report": "@folder"}, r"is a folder"),
    # device
    ("device-cuda", {"--device": "cuda"}, r"device 'cuda'.*use --device cpu"),
    ("device-cuda-1", {"--device": "cuda:1"}, r"device 'cuda:1'"),
    ("device-bogus", {"--device": "gpu"}, r"unknown device 'gpu'.*use cpu, cuda"),
    ("device-mps", {"--device": "mps"}, r"MPS is not available|device 'mps'"),
    ("device-meta", {"--device": "meta"}, r"not supported; use cpu"),
    # numbers at and beyond their bounds
    ("tau-0", {"--tau": "0"}, r"tau must be in \(0, 1\]"),
    ("tau-negative", {"--tau": "-0.1"}, r"tau must be in"),
    ("tau-above-1", {"--tau": "1.0001"}, r"tau must be in"),
    ("tau-nan", {"--tau": "nan"}, r"tau must be in"),
    ("tau-inf", {"--tau": "inf"}, r"tau must be in"),
    ("steps-0", {"--steps": "0"}, r"num_steps must be a positive integer"),
    ("steps-negative", {"--steps": "-3"}, r"num_steps must be a positive integer"),
    ("shift-0", {"--shift": "0"}, r"shift must be a positive number"),
    ("shift-negative", {"--shift": "-1"}, r"shift must be a positive number"),
    ("shift-inf", {"--shift": "inf"}, r"shift must be a positive number"),
    ("omega-base-negative", {"--omega-base": "-1"}, r"cannot be negative"),
    ("omega-peak-negative", {"--omega-peak": "-0.5"}, r"cannot be negative"),
    ("omega-peak-nan", {"--omega-peak": "nan"}, r"omega_peak must be a finite number"),
    ("sigma-spatial-0", {"--sigma-spatial": "0"}, r"sigma_spatial must be > 0"),
    ("sigma-spatial-negative", {"--sigma-spatial": "-0.1"}, r"sigma_spatial must be > 0"),
    ("gamma-negative", {"--gamma": "-1"}, r"gamma must be ≥ 0"),
    ("gamma-inf", {"--gamma": "inf"}, r"gamma must be a finite number"),
    ("window-negative", {"--window": "-1"}, r"window and overlap are counts"),
    ("overlap-negative", {"--overlap": "-1"}, r"window and overlap are counts"),
    ("overlap-equals-window", {"--window": "4", "--overlap": "4"}, r"overlap \(4 latent frames\) must be smaller"),
    ("overlap-above-window", {"--window": "2", "--overlap": "5"}, r"must be smaller than the window"),
    ("mouth-outside", {"--mouth": "1.5,0.5"}, r"must be inside the frame"),
    ("mouth-below", {"--mouth": "0.5,1.01"}, r"must be inside the frame"),
    ("mouth-nan", {"--mouth": "nan,0.5"}, r"must be inside the frame"),
]

CLI_ARGPARSE = [  # refused by argparse itself: its usage line and one "error:" line, rc 2
    ("tau-text", {"--tau": "abc"}, r"--tau: expected 'auto' or float"),
    ("steps-float", {"--steps": "2.5"}, r"--steps: expected 'auto' or int"),
    ("window-text", {"--window": "wide"}, r"--window: expected 'auto' or int"),
    ("seed-text", {"--seed": "x"}, r"--seed: invalid int"),
    ("mouth-one-number", {"--mouth": "0.5"}, r"--mouth takes 'auto' or 'x,y'"),
    ("mouth-three-numbers", {"--mouth": "0.1,0.2,0.3"}, r"--mouth takes"),
    ("mouth-words", {"--mouth": "left,up"}, r"--mouth takes"),
    ("length-mode", {"--length-mode": "stretch"}, r"--length-mode: invalid choice"),
    ("dtype", {"--dtype": "int8"}, r"--dtype: invalid choice"),
    ("no-video", {"--video": None}, r"the following arguments are required: --video"),
    ("no-model", {"--model": None}, r"the following arguments are required: --model"),
    ("unknown-flag", {"--frobnicate": True}, r"unrecognized arguments: --frobnicate"),
]


def _resolve(c, tmp, flags):
    out = {}
    for k, v in flags.items():
        if isinstance(v, str) and v.startswith("@"):
            v = c[v[1:]]
        elif isinstance(v, str) and v.startswith("%"):
            v = os.path.join(tmp, v[1:])
        out[k] = v
    return out


@pytest.mark.parametrize("case,flags,pattern", CLI_ERRORS, ids=[c[0] for c in CLI_ERRORS])
def test_cli_refuses_with_one_line(corpus, tmp_path, capsys, case, flags, pattern):
    rc, out, err = run_cli(capsys, _sync(corpus, str(tmp_path / "out.mp4"), **_resolve(corpus, str(tmp_path), flags)))
    _assert_one_line_error(rc, out, err, pattern)
    left = [f for f in os.listdir(tmp_path) if f not in ("folder",)]
    assert left == [], left  # nothing written, not even a partial file


@pytest.mark.parametrize("case,flags,pattern", CLI_ARGPARSE, ids=[c[0] for c in CLI_ARGPARSE])
def test_cli_argparse_refuses_with_usage_and_one_error_line(corpus, tmp_path, capsys, case, flags, pattern):
    rc, out, err = run_cli(capsys, _sync(corpus, str(tmp_path / "out.mp4"), **_resolve(corpus, str(tmp_path), flags)))
    assert rc == 2 and "Traceback" not in out + err
    errors = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(errors) == 1 and re.search(pattern, errors[0]), err


def test_cli_refuses_before_loading_the_model(corpus, tmp_path, capsys, monkeypatch):
    """Output folders, devices and option ranges fail before any model or media is loaded."""
    from omnisync_core.cli import omnisync as cli

    def boom(*a, **k):
        raise AssertionError("loaded the model before checking the options")

    monkeypatch.setattr(cli, "load_runtime", boom)
    for flags in ({"--report": str(tmp_path / "missing" / "r.json")}, {"--device": "cuda"}, {"--tau": "2"},
                  {"-o": str(tmp_path / "missing" / "o.mp4")}, {"--window": "3", "--overlap": "3"}):
        rc, out, err = run_cli(capsys, _sync(corpus, str(tmp_path / "o.mp4"), **flags))
        assert rc == 2 and err.startswith("error:"), err


# success cases: (id, flags, the warning each must print, a check of the written files)
CLI_WARNINGS = [
    ("resampled-stereo-44k", {"--audio": "@stereo44k.wav"},
     [r"warning: 2 audio channels averaged to mono", r"warning: speech resampled from 44100 Hz to 16000 Hz"]),
    ("pcm24-48k", {"--audio": "@pcm24_48k.wav"}, [r"resampled from 48000 Hz"]),
    ("pcm8", {"--audio": "@pcm8.wav"}, [r"follow_audio_loop: speech is 0.30 s, video 0.24 s: video looped"]),
    ("pcm32", {"--audio": "@pcm32.wav"}, [r"video looped to 8 frames"]),
    ("float-wav", {"--audio": "@float.wav"}, [r"video looped to 8 frames"]),
    ("eight-channels", {"--audio": "@eight_ch.wav", "--length-mode": "follow_video"},
     [r"8 audio channels averaged to mono"]),
    ("clipped", {"--audio": "@clipped.wav"}, [r"warning: the speech is clipped: \d+ of \d+ samples"]),
    ("beyond-full-scale", {"--audio": "@loud.wav"}, [r"the speech is clipped.*peak [2-9]"]),
    ("80ms-exactly-two-frames", {"--audio": "@ms80.wav", "--length-mode": "follow_audio_loop"},
     [r"video cut to the first 2 frames"]),
    ("trim-follow-video", {"--length-mode": "follow_video"}, [r"follow_video: 6 frames .* speech trimmed from 0.32 s"]),
    ("pad-follow-video", {"--audio": "@ms80.wav", "--length-mode": "follow_video"},
     [r"padded with 0.16 s of silence"]),
    ("pingpong", {"--length-mode": "follow_audio_pingpong"}, [r"video ping-ponged to 8 frames"]),
    ("odd-size", {"--video": "@odd.mp4", "--length-mode": "follow_video", "--audio": "@ms80.wav"},
     [r"frames are 101×77: padded to 104×80 .* cropped back to 101×77",
      r"101×77 is odd.*4:4:4 \(yuv444p\)"]),
    ("fp16-on-cpu", {"--dtype": "fp16"}, [r"warning: fp16 on the CPU is many times slower"]),
    ("mouth-not-found", {"--mouth": "auto", "--length-mode": "follow_video"},
     [r"warning: no mouth found in 6 of 6 frames .* passed through unchanged"]),
    ("fps-far-from-training", {"--video": "@fps5.mp4", "--model": "@trained.safetensors", "--length-mode": "follow_video",
                               "--audio": "@speech1s.wav"},
     [r"the video is 5 fps but the model was trained at 25 fps"]),
    ("size-far-from-training", {"--video": "@big.mp4", "--model": "@trained.safetensors",
                                "--length-mode": "follow_video", "--audio": "@ms80.wav"},
     [r"frames are 72×72 but the model was trained on 32×32"]),
    ("truth-too-short", {"--truth": "@one_frame.mp4", "--contact-sheet": "%m.png"}, [r"the contact sheet has no truth row"]),
]
if True:  # encoded audio formats, when this ffmpeg build has the encoder
    for ext in ("mp3", "m4a", "flac", "ogg"):
        CLI_WARNINGS.append((f"audio-{ext}", {"--audio": f"@speech.{ext}", "--length-mode": "follow_video"},
                             [r"speech trimmed from 0.3"]))
    CLI_WARNINGS.append(("audio-from-mp4", {"--audio": "@with_audio.mp4", "--length-mode": "follow_video"}, []))


@pytest.fixture(scope="module")
def loaded_once():
    """``load_runtime`` that loads each (model, Whisper, dtype) once for the module: the CLI cases test the
    checks, warnings and files around the model, not loading (tested in test_cli.py)."""
    from omnisync_core.api import load_runtime

    cache = {}

    def load(model, whisper=None, device="cpu", dtype=torch.float32, vae=None, offload="none", resident_blocks=0):
        key = (model, whisper, str(device), dtype, offload, resident_blocks)
        if key not in cache:
            cache[key] = load_runtime(model, whisper, device, dtype, vae, offload, resident_blocks)
        return cache[key]

    return load


@pytest.mark.parametrize("case,flags,warnings", CLI_WARNINGS, ids=[c[0] for c in CLI_WARNINGS])
def test_cli_runs_and_prints_each_adjustment(corpus, tmp_path, capsys, monkeypatch, loaded_once, case, flags,
                                             warnings):
    from omnisync_core.cli import omnisync as cli
    from omnisync_core.io.video import read_video

    monkeypatch.setattr(cli, "load_runtime", loaded_once)
    resolved = _resolve(corpus, str(tmp_path), flags)
    if any(isinstance(v, str) and v.startswith("@") for v in flags.values()) and any(
            k.startswith("speech.") and k not in corpus for k in (v[1:] for v in flags.values() if isinstance(v, str))):
        pytest.skip("this ffmpeg build cannot encode the format")
    out = str(tmp_path / "out.mp4")
    report = str(tmp_path / "run.json")
    rc, stdout, err = run_cli(capsys, _sync(corpus, out, **resolved, **{"--report": report}))
    assert "Traceback" not in stdout + err
    assert rc == 0, err
    for pattern in warnings:
        assert re.search(pattern, err), (pattern, err)
    printed = [ln[len("warning: "):] for ln in err.splitlines() if ln.startswith("warning: ")]
    assert all(not ln.startswith("error") for ln in err.splitlines())
    with open(report) as f:
        assert json.load(f)["warnings"] == printed  # the report lists exactly what the console showed
    frames, _ = read_video(out)
    src, _ = read_video(resolved["--video"] if "--video" in resolved else corpus["good.mp4"])
    assert frames.shape[1:3] == src.shape[1:3]  # written at exactly the input size
    assert not [f for f in os.listdir(tmp_path) if ".partial" in f]


# -- the Python API -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runtime(corpus, loaded_once):
    from omnisync_core.pipelines.omnisync import OmniSyncPipeline

    model, codec, encoder, meta = loaded_once(corpus["model"], corpus["whisper"])
    return OmniSyncPipeline(model, codec, encoder, meta=meta)


def _speech(seconds=0.24, sr=16000):
    return torch.from_numpy(make_speech_like(seconds, sr))


def _frames(T=6, H=32, W=32):
    return make_frames(T=T, H=H, W=W)


def _nan_frames():
    f = _frames()
    f[0, 0, 0, 0] = float("nan")
    return f


def _nan_wave():
    w = _speech()
    w[10] = float("nan")
    return w


# (id, frames, fps, waveform, sample_rate, error pattern) for pipe(frames, fps, wave, sr)
API_CALL_ERRORS = [
    ("frames-none", lambda: None, FPS, _speech, 16000, r"no frames given"),
    ("frames-empty-list", lambda: [], FPS, _speech, 16000, r"0 frames"),
    ("frames-one-image", lambda: _frames()[0], FPS, _speech, 16000, r"1 frame.*at least 2"),
    ("frames-one-frame", lambda: _frames(T=1), FPS, _speech, 16000, r"got 1 frame"),
    ("frames-zero-frames", lambda: _frames()[:0], FPS, _speech, 16000, r"0 frames"),
    ("frames-5d-batch", lambda: _frames()[None], FPS, _speech, 16000, r"one clip at a time"),
    ("frames-channels-first", lambda: _frames().permute(0, 3, 1, 2), FPS, _speech, 16000, r"permute"),
    ("frames-two-channels", lambda: _frames()[..., :2], FPS, _speech, 16000, r"2 channels"),
    ("frames-nan", _nan_frames, FPS, _speech, 16000, r"NaN or infinite"),
    ("frames-inf", lambda: _frames().index_fill(0, torch.tensor([1]), float("inf")), FPS, _speech, 16000,
     r"NaN or infinite"),
    ("frames-0-255-float", lambda: _frames() * 255, FPS, _speech, 16000, r"divide by 255"),
    ("frames-minus1-1", lambda: _frames() * 2 - 1, FPS, _speech, 16000, r"\(x \+ 1\) / 2"),
    ("frames-bool", lambda: _frames() > 0.5, FPS, _speech, 16000, r"dtype torch.bool"),
    ("frames-int32", lambda: (_frames() * 255).int(), FPS, _speech, 16000, r"dtype torch.int32"),
    ("frames-mixed-sizes", lambda: [_frames()[0], _frames(H=16)[0]], FPS, _speech, 16000, r"frames differ in size"),
    ("frames-mixed-dtypes", lambda: [_frames()[0], (_frames()[0] * 255).byte()], FPS, _speech, 16000,
     r"frames differ in dtype"),
    ("frames-string", lambda: "video.mp4", FPS, _speech, 16000, r"torch tensor or numpy array"),
    ("frames-1x1", lambda: _frames(H=1, W=1), FPS, _speech, 16000, r"1×1 pixels.*upscale"),
    ("frames-7x7", lambda: _frames(H=7, W=7), FPS, _speech, 16000, r"at least 8×8"),
    ("frames-zero-height", lambda: torch.zeros(4, 0, 8, 3), FPS, _speech, 16000, r"zero size"),
    ("fps-0", _frames, 0, _speech, 16000, r"fps must be a positive number"),
    ("fps-negative", _frames, -25, _speech, 16000, r"fps must be a positive number"),
    ("fps-nan", _frames, float("nan"), _speech, 16000, r"fps must be a positive number"),
    ("fps-inf", _frames, float("inf"), _speech, 16000, r"fps must be a positive number"),
    ("fps-string", _frames, "25", _speech, 16000, r"fps must be a positive number"),
    ("fps-bool", _frames, True, _speech, 16000, r"fps must be a positive number"),
    ("fps-none", _frames, None, _speech, 16000, r"fps must be a positive number"),
    ("wave-empty", _frames, FPS, lambda: torch.zeros(0), 16000, r"empty \(0 samples\)"),
    ("wave-silent", _frames, FPS, lambda: torch.zeros(8000), 16000, r"silent"),
    ("wave-almost-silent", _frames, FPS, lambda: _speech() * 1e-6, 16000, r"silent"),
    ("wave-nan", _frames, FPS, _nan_wave, 16000, r"NaN or infinite"),
    ("wave-inf", _frames, FPS, lambda: _speech().index_fill(0, torch.tensor([5]), float("-inf")), 16000,
     r"NaN or infinite"),
    ("wave-n-by-c", _frames, FPS, lambda: torch.stack([_speech()] * 2, 1), 16000, r"pass its transpose \(C, N\)"),
    ("wave-4d", _frames, FPS, lambda: _speech()[None, None, None], 16000, r"pass \(N,\), \(C, N\) or \(B, C, N\)"),
    ("wave-empty-batch", _frames, FPS, lambda: torch.zeros(0, 1, 100), 16000, r"batch is empty"),
    ("wave-zero-channels", _frames, FPS, lambda: torch.zeros(0, 100), 16000, r"0 channels"),
    ("wave-bool", _frames, FPS, lambda: _speech() > 0, 16000, r"boolean"),
    ("wave-10ms", _frames, FPS, lambda: _speech(0.01), 16000, r"speech is 10 ms, less than 2 frames"),
    ("wave-one-frame-at-50fps", _frames, 50.0, lambda: _speech(0.02), 16000, r"less than 2 frames at 50 fps"),
    ("sr-0", _frames, FPS, _speech, 0, r"sample_rate must be a whole number of Hz >= 1000"),
    ("sr-negative", _frames, FPS, _speech, -16000, r"sample_rate must be"),
    ("sr-500", _frames, FPS, _speech, 500, r"sample_rate must be"),
    ("sr-fraction", _frames, FPS, _speech, 16000.5, r"sample_rate must be a whole number"),
    ("sr-bool", _frames, FPS, _speech, True, r"sample_rate must be"),
]


@pytest.mark.parametrize("case,frames,fps,wave,sr,pattern", API_CALL_ERRORS, ids=[c[0] for c in API_CALL_ERRORS])
def test_api_call_refuses_with_one_line(runtime, case, frames, fps, wave, sr, pattern):
    from omnisync_core.errors import OmniSyncError
    from omnisync_core.sampling.options import SyncOptions

    with pytest.raises(OmniSyncError) as exc:
        runtime(frames(), fps, wave(), sr, SyncOptions(num_steps=2))
    message = str(exc.value)
    assert "\n" not in message and re.search(pattern, message), message


# (id, options for resolve_options, error pattern)
API_OPTION_ERRORS = [
    ("tau-0", {"tau": 0}, r"tau must be in"), ("tau-1.5", {"tau": 1.5}, r"tau must be in"),
    ("tau-nan", {"tau": float("nan")}, r"tau must be in"), ("tau-str", {"tau": "high"}, r"tau must be in"),
    ("tau-bool", {"tau": True}, r"tau must be in"), ("tau-none-list", {"tau": [0.5]}, r"tau must be in"),
    ("steps-0", {"num_steps": 0}, r"num_steps must be a positive integer"),
    ("steps-float", {"num_steps": 2.5}, r"num_steps must be a positive integer"),
    ("steps-bool", {"num_steps": True}, r"num_steps must be a positive integer"),
    ("steps-negative", {"num_steps": -1}, r"num_steps must be a positive integer"),
    ("shift-0", {"shift": 0}, r"shift must be"), ("shift-nan", {"shift": float("nan")}, r"shift must be"),
    ("seed-float", {"seed": 1.5}, r"seed must be an integer"), ("seed-str", {"seed": "1"}, r"seed must be an integer"),
    ("window-negative", {"window": -2}, r"counts of latent frames"),
    ("window-float", {"window": 2.5}, r"counts of latent frames"),
    ("overlap-ge-window", {"window": 3, "overlap": 3}, r"must be smaller than the window"),
    ("length-mode", {"length_mode": "stretch"}, r"unknown length mode 'stretch'; choose one of"),
    ("mouth-word", {"mouth": "centre"}, r"mouth must be 'auto' or an \(x, y\) point"),
    ("mouth-outside", {"mouth": (1.2, 0.5)}, r"inside the frame"),
    ("mouth-negative", {"mouth": (0.5, -0.2)}, r"inside the frame"),
    ("omega-base-negative", {"omega_base": -1.0}, r"cannot be negative"),
    ("omega-peak-inf", {"omega_peak": float("inf")}, r"finite number"),
    ("sigma-spatial-0", {"sigma_spatial": 0.0}, r"sigma_spatial must be > 0"),
    ("gamma-negative", {"gamma": -0.5}, r"gamma must be ≥ 0"),
    ("unknown-option", {"temperature": 0.7}, r"unknown sync option\(s\) \['temperature'\]"),
]


@pytest.mark.parametrize("case,options,pattern", API_OPTION_ERRORS, ids=[c[0] for c in API_OPTION_ERRORS])
def test_api_options_refuse_with_one_line(case, options, pattern):
    from omnisync_core.errors import OmniSyncError
    from omnisync_core.sampling.options import resolve_options

    with pytest.raises(OmniSyncError) as exc:
        resolve_options(None, **options)
    assert "\n" not in str(exc.value) and re.search(pattern, str(exc.value)), str(exc.value)


# (id, model key, device, pattern) for load_runtime: every wrong checkpoint kind and device
API_LOAD_ERRORS = [
    (k, f"{k}", "cpu", pat) for k, pat in (
        ("nope.safetensors", r"model file not found"), ("model_folder", r"is a folder .*pass the OmniSync"),
        ("empty.safetensors", r"empty \(0 bytes\)"), ("pickled.pt", r"PyTorch pickle"), ("pickled.ckpt", r"PyTorch pickle"),
        ("pickled.bin", r"PyTorch pickle"), ("legacy.pth", r"PyTorch pickle"),
        ("pickled_named.safetensors", r"PyTorch pickle"), ("truncated.safetensors", r"not a readable safetensors"),
        ("header_cut.safetensors", r"not a readable safetensors"), ("text.safetensors", r"not a readable safetensors"),
        ("no_meta.safetensors", r"no OmniSync metadata"), ("other_meta.safetensors", r"no OmniSync metadata"),
        ("reader", r"no OmniSync metadata"), ("bad_json.safetensors", r"corrupt OmniSync metadata"),
        ("format99.safetensors", r"format 99"), ("arch.safetensors", r"'mamba'"),
        ("missing_weights.safetensors", r"lacks weights"), ("extra_weights.safetensors", r"does not describe"),
        ("wrong_shape.safetensors", r"has shape"), ("bad_audio_spec.safetensors", r"audio spec has a bad value"),
    )
] + [
    ("device-cuda", "model", "cuda", r"use --device cpu"), ("device-cuda-7", "model", "cuda:7", r"'cuda:7'"),
    ("device-tpu", "model", "tpu", r"unknown device|not supported"), ("device-int", "model", 3, r"device 3"),
]


@pytest.mark.parametrize("case,key,device,pattern", API_LOAD_ERRORS, ids=[c[0] for c in API_LOAD_ERRORS])
def test_api_load_refuses_with_one_line(corpus, case, key, device, pattern):
    from omnisync_core.api import load_runtime
    from omnisync_core.errors import OmniSyncError

    path = corpus.get(key, os.path.join(corpus["dir"], key))
    with pytest.raises(OmniSyncError) as exc:
        load_runtime(path, corpus["whisper"], device=device)
    assert "\n" not in str(exc.value) and re.search(pattern, str(exc.value)), str(exc.value)


# (id, read function, corpus key, pattern): files read through the API
API_READ_ERRORS = [
    ("video-missing", "video", "nope.mp4", r"not found"), ("video-empty", "video", "empty.mp4", r"cannot read video"),
    ("video-text", "video", "text.mp4", r"cannot read video"), ("video-folder", "video", "folder", r"not found|folder"),
    ("audio-missing", "audio", "nope.wav", r"not found"), ("audio-empty", "audio", "empty.wav", r"cannot decode|0 samples"),
    ("audio-text", "audio", "text.wav", r"cannot decode audio"), ("audio-no-track", "audio", "good.mp4", r"no audio track"),
    ("audio-header-only", "audio", "header_only.wav", r"0 samples|cannot decode"),
]


@pytest.mark.parametrize("case,kind,key,pattern", API_READ_ERRORS, ids=[c[0] for c in API_READ_ERRORS])
def test_api_read_refuses_with_one_line(corpus, case, kind, key, pattern):
    from omnisync_core.errors import OmniSyncError
    from omnisync_core.io.audio import read_audio
    from omnisync_core.io.video import read_video

    path = corpus.get(key, os.path.join(corpus["dir"], key))
    with pytest.raises(OmniSyncError) as exc:
        (read_video if kind == "video" else read_audio)(path)
    message = str(exc.value)
    assert "\n" not in message and re.search(pattern, message), message
    assert message.count(" / ") <= 2  # ffmpeg quoted by at most three whole lines


def _rgba():
    f = _frames()
    return torch.cat([f, torch.ones_like(f[..., :1])], -1)


# (id, frames, fps, wave, sr, options, warnings the run must report): successful API runs
API_WARNINGS = [
    ("resampled-44k", _frames, FPS, lambda: _speech(0.24, 44100), 44100, {}, [r"resampled from 44100 Hz"]),
    ("stereo", _frames, FPS, lambda: torch.stack([_speech()] * 2), 16000, {}, [r"2 audio channels averaged"]),
    ("batch", _frames, FPS, lambda: torch.stack([_speech()] * 2)[:, None], 16000, {}, [r"batch of 2 clips"]),
    ("int16-pcm", _frames, FPS, lambda: (_speech() * 20000).short().numpy(), 16000, {}, []),
    ("looped", _frames, FPS, lambda: _speech(0.5), 16000, {}, [r"video looped to 13 frames"]),
    ("cut", _frames, FPS, lambda: _speech(0.12), 16000, {}, [r"video cut to the first 3 frames"]),
    ("pingpong", _frames, FPS, lambda: _speech(0.5), 16000, {"length_mode": "follow_audio_pingpong"},
     [r"ping-ponged to 13 frames"]),
    ("trimmed", _frames, FPS, lambda: _speech(0.5), 16000, {"length_mode": "follow_video"}, [r"speech trimmed"]),
    ("padded", _frames, FPS, lambda: _speech(0.12), 16000, {"length_mode": "follow_video"},
     [r"padded with 0.12 s of silence"]),
    ("odd-size", lambda: _frames(H=29, W=37), FPS, _speech, 16000, {}, [r"padded to 40×32 .* cropped back to 37×29"]),
    ("odd-small", lambda: _frames(H=9, W=11), FPS, _speech, 16000, {}, [r"padded to 12×12"]),
    ("rgba", _rgba, FPS, _speech, 16000, {}, [r"alpha channel dropped"]),
    ("grayscale", lambda: _frames()[..., 0], FPS, _speech, 16000, {}, [r"grayscale \(T, H, W\) replicated to RGB"]),
    ("grayscale-1ch", lambda: _frames()[..., :1], FPS, _speech, 16000, {}, [r"grayscale \(1 channel\)"]),
    ("slightly-out-of-range", lambda: _frames().index_fill(1, torch.tensor([0]), 1.0005), FPS, _speech, 16000, {},
     [r"clamped to \[0, 1\]"]),
    ("uint8", lambda: (_frames() * 255).byte(), FPS, _speech, 16000, {}, []),
    ("numpy", lambda: _frames().numpy(), FPS, _speech, 16000, {}, []),
    ("clipped", _frames, FPS, lambda: (_speech() * 30).clamp(-1, 1), 16000, {}, [r"the speech is clipped"]),
    ("mouth-auto-fallback", _frames, FPS, _speech, 16000, {"mouth": "auto"}, [r"no mouth found in 6 of 6 frames"]),
    ("ntsc", _frames, 29.97, lambda: _speech(0.2), 16000, {}, []),
    ("two-frames", lambda: _frames(T=2), FPS, lambda: _speech(0.08), 16000, {}, []),
    ("window-over-clip", _frames, FPS, _speech, 16000, {"window": 100, "overlap": 2}, []),
]


@pytest.mark.parametrize("case,frames,fps,wave,sr,options,warnings", API_WARNINGS, ids=[c[0] for c in API_WARNINGS])
def test_api_runs_and_reports_each_adjustment(runtime, case, frames, fps, wave, sr, options, warnings):
    from omnisync_core.sampling.options import SyncOptions

    heard = []
    f = frames()
    opts = SyncOptions(num_steps=2, **{"mouth": (0.5, 0.6), **options})
    result = runtime(f, fps, wave(), sr, opts, on_warning=heard.append)
    assert result.report["warnings"] == heard  # the callback and the report say the same, in order
    for pattern in warnings:
        assert any(re.search(pattern, w) for w in heard), (pattern, heard)
    if not warnings:
        assert not [w for w in heard if not w.startswith(("speech resampled", "follow_"))], heard
    H, W = (f.shape[1], f.shape[2])
    assert tuple(result.frames.shape[1:3]) == (H, W)  # the exact input size
    assert bool(torch.isfinite(result.frames).all())


def test_api_warns_when_far_from_the_training_fps_and_size(corpus):
    from omnisync_core.api import load_runtime
    from omnisync_core.pipelines.omnisync import OmniSyncPipeline
    from omnisync_core.sampling.options import SyncOptions

    model, codec, encoder, meta = load_runtime(corpus["trained.safetensors"], corpus["whisper"])
    pipe = OmniSyncPipeline(model, codec, encoder, meta=meta)
    heard = []
    pipe(_frames(T=4, H=80, W=80), 5.0, _speech(0.8), 16000, SyncOptions(num_steps=1, mouth=(0.5, 0.5)),
         on_warning=heard.append)
    assert any("5 fps but the model was trained at 25 fps" in w for w in heard), heard
    assert any("80×80 but the model was trained on 32×32" in w for w in heard), heard
    heard.clear()
    pipe(_frames(T=4, H=40, W=40), 30.0, _speech(0.2), 16000, SyncOptions(num_steps=1, mouth=(0.5, 0.5)),
         on_warning=heard.append)
    assert not any("trained" in w for w in heard), heard  # within a factor of 2: no warning


def test_api_cancel_stops_within_one_chunk_of_frames(runtime, monkeypatch):
    """A whole-clip window of a per-frame model is called in chunks with the cancel check between them."""
    from omnisync_core.errors import Cancelled
    from omnisync_core.sampling import sampler
    from omnisync_core.sampling.options import SyncOptions

    monkeypatch.setattr(sampler, "CHUNK_LATENT_PIXELS", 16 * 16 * 2)  # 2 latent frames of 16² per call
    runtime.model.frames_independent = True  # the tiny DiT is not per-frame; pretend, to count the checks
    try:
        calls = []

        def cancel():
            calls.append(1)
            return len(calls) >= 4

        with pytest.raises(Cancelled):
            runtime(_frames(T=12), FPS, _speech(0.48), 16000, SyncOptions(num_steps=4, mouth=(0.5, 0.5)), cancel=cancel)
        assert len(calls) == 4  # stopped inside the first step, within 3 chunks
    finally:
        del runtime.model.frames_independent


def test_chunked_calls_give_the_same_velocity_as_one_call(monkeypatch):
    from omnisync_core.model.unet import OmniSyncUNet, UNetConfig
    from omnisync_core.sampling import sampler

    torch.manual_seed(0)
    cfg = UNetConfig(latent_channels=12, channels=(8, 16), audio_dim=8, audio_layers=1, audio_tokens=5,
                     adapter_dim=8, freq_dim=8)
    model = OmniSyncUNet(cfg).eval()
    torch.nn.init.normal_(model.out.weight, std=0.1)
    x, src = torch.rand(12, 6, 8, 8), torch.rand(12, 6, 8, 8)
    audio = torch.rand(6, 5, 8)
    with torch.no_grad():
        whole = sampler._predict(model, x, 0.5, src, audio, None, "both")
        monkeypatch.setattr(sampler, "CHUNK_LATENT_PIXELS", 2 * 64)
        checks = []
        parts = sampler._predict(model, x, 0.5, src, audio, None, "both", cancel=lambda: checks.append(1) and False)
    assert len(checks) == 3
    for a, b in zip(whole, parts):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


# -- interrupted runs and partial files ---------------------------------------------------------------


def test_interrupted_cli_run_leaves_no_output(corpus, tmp_path, capsys, monkeypatch, loaded_once):
    from omnisync_core.cli import omnisync as cli
    from omnisync_core.sampling import sampler

    monkeypatch.setattr(cli, "load_runtime", loaded_once)
    real = sampler.check_cancel
    calls = []

    def interrupt(cancel):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(cancel)

    monkeypatch.setattr(sampler, "check_cancel", interrupt)
    rc, out, err = run_cli(capsys, _sync(corpus, str(tmp_path / "out.mp4"), **{"--report": str(tmp_path / "r.json")}))
    assert rc == 130 and "Traceback" not in out + err
    assert [ln for ln in err.splitlines() if not ln.startswith("warning: ")] == ["cancelled"], err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("when", ["while encoding", "while muxing"])
def test_interrupted_write_leaves_no_file_with_the_final_name(tmp_path, monkeypatch, when):
    from omnisync_core.io import video as media

    if when == "while encoding":
        def broken(*a, **k):
            raise KeyboardInterrupt
        monkeypatch.setattr(media.shutil, "move", broken)
    else:
        def broken(*a, **k):
            raise media.OmniSyncError("ffmpeg failed while muxing")
        monkeypatch.setattr(media, "_run_ffmpeg", broken)
    with pytest.raises((KeyboardInterrupt, media.OmniSyncError)):
        media.write_video(str(tmp_path / "out.mp4"), _frames(T=3), FPS, _speech(0.12), 16000)
    assert os.listdir(tmp_path) == []


def test_atomic_output_renames_only_when_complete(tmp_path):
    from omnisync_core.io.files import atomic_output

    target = tmp_path / "r.json"
    with pytest.raises(RuntimeError):
        with atomic_output(str(target)) as part:
            with open(part, "w") as f:
                f.write("{half")
            raise RuntimeError("cancelled mid-write")
    assert os.listdir(tmp_path) == []
    with atomic_output(str(target)) as part:
        with open(part, "w") as f:
            f.write("{}")
        assert not target.exists()
    assert target.read_text() == "{}" and os.listdir(tmp_path) == ["r.json"]


def test_ffmpeg_errors_are_quoted_from_line_starts():
    from omnisync_core.io.ffmpeg import ffmpeg_quote

    text = "x" * 5000 + "\n[mov,mp4] moov atom not found\n\nError opening input: Invalid data\nlast line\n"
    quoted = ffmpeg_quote(text)
    assert quoted == "[mov,mp4] moov atom not found / Error opening input: Invalid data / last line"
    assert ffmpeg_quote("y" * 500).endswith("…") and len(ffmpeg_quote("y" * 500)) == 201
    assert ffmpeg_quote(b"one line") == "one line"


# -- the ComfyUI nodes ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def comfy(corpus, tmp_path_factory):
    import shutil

    from fakes import comfy_fakes

    base = tmp_path_factory.mktemp("comfy_corpus")
    models = base / "models" / "omnisync"
    os.makedirs(models)
    for key in ("model", "pickled.ckpt", "truncated.safetensors", "no_meta.safetensors", "arch.safetensors",
                "pickled_named.safetensors"):
        shutil.copy(corpus[key], models / os.path.basename(corpus[key]))
    os.makedirs(models / "a_folder.safetensors")
    with comfy_fakes(base):
        import nodes

        from omnisync_core.audio.whisper import load_whisper

        (model,) = nodes.OmniSyncModelLoader.execute("tiny-omnisync.safetensors", "fp32")
        yield nodes, model, load_whisper(corpus["whisper"], device="cpu")


@pytest.fixture
def comfy_fresh(comfy):
    from fakes import reset_fake_state

    reset_fake_state()
    yield comfy
    reset_fake_state()


def _audio(seconds=0.24, sr=16000, channels=1, wave=None):
    w = wave if wave is not None else torch.from_numpy(make_speech_like(seconds, sr))
    if w.ndim == 1:
        w = torch.stack([w] * channels)
    return {"waveform": w[None], "sample_rate": sr}


def _enc(nodes, model, encoder, audio=None, fps=FPS, T=6, mode="follow_video", images="frames", encoded=None,
         use_encoder=True):
    imgs = _frames(T=T) if images == "frames" else images
    return nodes.OmniSyncAudioEncode.execute(audio if audio is not None else _audio(), fps, T, mode,
                                              audio_encoder=encoder if use_encoder else None, images=imgs,
                                              encoded_audio=encoded)


NODE_AUDIO_ERRORS = [
    ("one-frame-batch", {"images": "one"}, r"at least 2 source frames.*Repeat Image Batch"),
    ("num-frames-1", {"images": None, "T": 1}, r"at least 2 source frames"),
    ("num-frames-0", {"images": None, "T": 0}, r"at least 2 source frames"),
    ("no-encoder", {"use_encoder": False}, r"connect exactly one of audio_encoder"),
    ("both-encoders", {"encoded": {"x": 1}}, r"connect exactly one of audio_encoder"),
    ("audio-not-dict", {"audio": "speech.wav"}, r"ComfyUI AUDIO"),
    ("audio-no-rate", {"audio": {"waveform": torch.zeros(1, 1, 10)}}, r"ComfyUI AUDIO"),
    ("audio-silent", {"audio": _audio(wave=torch.zeros(4000))}, r"silent"),
    ("audio-nan", {"audio": _audio(wave=torch.full((4000,), float("nan")))}, r"NaN or infinite"),
    ("audio-empty", {"audio": _audio(wave=torch.zeros(0))}, r"empty"),
    ("audio-10ms", {"audio": _audio(0.01)}, r"speech is 10 ms, less than 2 frames"),
    ("audio-rate-100", {"audio": _audio(0.3, sr=100)}, r"sample_rate must be"),
    ("audio-n-by-c", {"audio": {"waveform": torch.rand(1, 4000, 2) - 0.5, "sample_rate": 16000}},
     r"pass its transpose"),
    ("fps-0", {"fps": 0.0}, r"fps must be a positive number"),
    ("fps-nan", {"fps": float("nan")}, r"fps must be a positive number"),
]


@pytest.mark.parametrize("case,kw,pattern", NODE_AUDIO_ERRORS, ids=[c[0] for c in NODE_AUDIO_ERRORS])
def test_node_audio_encode_refuses_with_one_line(comfy_fresh, case, kw, pattern):
    from omnisync_core.errors import OmniSyncError

    nodes, model, encoder = comfy_fresh
    kw = dict(kw)
    if kw.get("images") == "one":
        kw["images"] = _frames(T=2)[:1]
    with pytest.raises(OmniSyncError) as exc:
        _enc(nodes, model, encoder, **kw)
    assert "\n" not in str(exc.value) and re.search(pattern, str(exc.value)), str(exc.value)


NODE_LOADER_ERRORS = [
    ("missing", "nope.safetensors", r"not found in models/omnisync"),
    ("pickle", "pickled.ckpt", r"PyTorch pickle"),
    ("pickle-renamed", "pickled_named.safetensors", r"PyTorch pickle"),
    ("truncated", "truncated.safetensors", r"not a readable safetensors"),
    ("no-metadata", "no_meta.safetensors", r"no OmniSync metadata"),
    ("wrong-arch", "arch.safetensors", r"'mamba'"),
    ("folder", "a_folder.safetensors", r"not found in models/omnisync"),  # ComfyUI lists files only
]


@pytest.mark.parametrize("case,name,pattern", NODE_LOADER_ERRORS, ids=[c[0] for c in NODE_LOADER_ERRORS])
def test_node_model_loader_refuses_with_one_line(comfy_fresh, case, name, pattern):
    from omnisync_core.errors import OmniSyncError

    nodes, _, _ = comfy_fresh
    with pytest.raises(OmniSyncError) as exc:
        nodes.OmniSyncModelLoader.execute(name, "fp32")
    assert "\n" not in str(exc.value) and re.search(pattern, str(exc.value)), str(exc.value)


def _lipsync(nodes, model, encoder, images=None, audio=None, fps=FPS, mode="follow_video", mouth="point", **kw):
    args = dict(tau=0.9, steps=2, seed=0, omega_peak=3.0, mouth=mouth, mouth_x=0.5, mouth_y=0.6, window=0, overlap=2,
                composite=False)
    args.update(kw)
    return nodes.OmniSyncLipSync.execute(model, encoder, images if images is not None else _frames(),
                                        audio if audio is not None else _audio(), fps, mode, **args)


NODE_LIPSYNC_ERRORS = [
    ("images-one-frame", {"images": _frames(T=2)[:1]}, r"got 1 frame"),
    ("images-nan", {"images": _nan_frames()}, r"NaN or infinite"),
    ("images-1x1", {"images": _frames(H=1, W=1)}, r"1×1 pixels"),
    ("images-channels-first", {"images": _frames().permute(0, 3, 1, 2)}, r"permute"),
    ("audio-silent", {"audio": _audio(wave=torch.zeros(4000))}, r"silent"),
    ("audio-10ms", {"audio": _audio(0.01)}, r"10 ms"),
    ("mask-mode-without-mask", {"mouth": "mask"}, r"mouth = mask needs a MASK"),
    ("fps-negative", {"fps": -1.0}, r"fps must be a positive number"),
    ("overlap-ge-window", {"window": 2, "overlap": 2}, r"must be smaller than the window"),
    ("mask-wrong-frames", {"mouth": "mask", "mouth_mask": torch.ones(5, 32, 32)}, r"the mouth mask has 5 frames"),
    ("conditioning-junk", {"conditioning": "a fox"}, r"CONDITIONING|text branch"),
]


@pytest.mark.parametrize("case,kw,pattern", NODE_LIPSYNC_ERRORS, ids=[c[0] for c in NODE_LIPSYNC_ERRORS])
def test_node_lipsync_refuses_with_one_line(comfy_fresh, case, kw, pattern):
    from omnisync_core.errors import OmniSyncError

    nodes, model, encoder = comfy_fresh
    with pytest.raises(OmniSyncError) as exc:
        _lipsync(nodes, model, encoder, **kw)
    assert "\n" not in str(exc.value) and re.search(pattern, str(exc.value)), str(exc.value)


NODE_WARNINGS = [
    ("resampled-stereo", {"audio": _audio(0.24, sr=22050, channels=2)},
     [r"2 audio channels averaged", r"resampled from 22050 Hz"]),
    ("audio-batch", {"audio": {"waveform": torch.stack([_audio()["waveform"][0]] * 3), "sample_rate": 16000}},
     [r"audio batch of 3: only the first item is used"]),
    ("looped", {"audio": _audio(0.5), "mode": "follow_audio_loop"}, [r"video looped to 13 frames"]),
    ("trimmed", {"audio": _audio(0.5)}, [r"speech trimmed"]),
    ("odd-size", {"images": _frames(H=15, W=21)}, [r"padded to 24×16 .* cropped back to 21×15",
                                                   r"VIDEO output is 21x15 -> 22x16"]),
    ("fallback", {"mouth": "auto"}, [r"no mouth found in 6 of 6 frames"]),
    ("alpha", {"images": _rgba()}, [r"alpha channel dropped"]),
]


@pytest.mark.parametrize("case,kw,warnings", NODE_WARNINGS, ids=[c[0] for c in NODE_WARNINGS])
def test_node_lipsync_reports_each_adjustment(comfy_fresh, caplog, case, kw, warnings):
    nodes, model, encoder = comfy_fresh
    images = kw.get("images", _frames())
    with caplog.at_level("WARNING", logger="omnisync"):
        out = _lipsync(nodes, model, encoder, **kw)
    report = json.loads(out[-1])
    logged = [r.getMessage() for r in caplog.records]
    for pattern in warnings:
        assert any(re.search(pattern, w) for w in report["warnings"]), (pattern, report["warnings"])
        assert any(re.search(pattern, m) for m in logged), (pattern, logged)  # and on the console
    assert tuple(out[0].shape[1:3]) == tuple(images.shape[1:3])  # IMAGE at the exact input size


def test_split_nodes_carry_every_warning_to_the_assemble_report(comfy_fresh):
    nodes, model, encoder = comfy_fresh
    frames = _frames(H=15, W=21)
    oa, _ = nodes.OmniSyncAudioEncode.execute(_audio(0.5, sr=44100), FPS, 6, "follow_audio_loop",
                                               audio_encoder=encoder, images=frames)
    (lat,) = nodes.OmniSyncNoiseInit.execute(model, frames, 0.9, 2, 1.0, 0, omnisync_audio=oa)
    latent, _, _ = nodes.OmniSyncSampler.execute(model, lat, oa, 1.0, 3.0, 0.1, 1.5, "auto", 0.5, 0.6, 0, 2)
    images, _, _, video, report = nodes.OmniSyncVideoAssemble.execute(latent, oa, False, 0.2, 4.0)
    warnings = json.loads(report)["warnings"]
    for pattern in (r"resampled from 44100", r"video looped to 13 frames", r"padded to 24×16", r"no mouth found",
                    r"VIDEO output is 21x15 -> 22x16"):
        assert any(re.search(pattern, w) for w in warnings), (pattern, warnings)
    assert images.shape[1:3] == (15, 21) and video.get_components().images.shape[1:3] == (16, 22)


def test_node_interrupt_stops_a_whole_clip_window_between_chunks(comfy_fresh, monkeypatch):
    """ComfyUI's /interrupt is honoured inside a step, between frame chunks, not only between steps."""
    import comfy.model_management as mm

    from omnisync_core.sampling import sampler

    nodes, model, encoder = comfy_fresh
    monkeypatch.setattr(sampler, "CHUNK_LATENT_PIXELS", 16 * 16 * 2)
    model.model.frames_independent = True
    seen = []
    real = sampler._predict_frames

    def counting(*a, **k):
        seen.append(1)
        if len(seen) == 2:
            mm.interrupt_current_processing(True)  # the user presses cancel during the first step
        return real(*a, **k)

    monkeypatch.setattr(sampler, "_predict_frames", counting)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            _lipsync(nodes, model, encoder, images=_frames(T=12), audio=_audio(0.48))
        assert len(seen) == 2  # the third chunk of the first step never ran
    finally:
        del model.model.frames_independent


def test_node_interrupt_during_sampling_from_the_progress_hook(comfy_fresh):
    import comfy.model_management as mm
    import comfy.utils as cu

    nodes, model, encoder = comfy_fresh
    cu.HOOK = lambda done, total: mm.interrupt_current_processing(True) if done == 1 else None
    with pytest.raises(mm.InterruptProcessingException):
        _lipsync(nodes, model, encoder, steps=8)
    assert max(d for d, _ in cu.UPDATES) == 1


# -- end to end, as real processes ---------------------------------------------------------------------


def _subprocess(argv, **kw):
    return subprocess.run([sys.executable, "-m", "omnisync_core", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, **kw)


@pytest.mark.parametrize("case,flags,pattern", [
    ("device-cuda", {"--device": "cuda"}, r"use --device cpu"),
    ("report-folder-missing", {"--report": "%missing/r.json"}, r"does not exist; create it first"),
    ("model-pickle", {"--model": "@pickled.ckpt"}, r"PyTorch pickle"),
], ids=["device-cuda", "report-folder-missing", "model-pickle"])
def test_subprocess_refuses_with_rc_2_and_no_traceback(corpus, tmp_path, case, flags, pattern):
    res = _subprocess(_sync(corpus, str(tmp_path / "out.mp4"), **_resolve(corpus, str(tmp_path), flags)))
    _assert_one_line_error(res.returncode, res.stdout, res.stderr, pattern)


def test_subprocess_run_prints_warnings_and_writes_exact_size(corpus, tmp_path):
    from omnisync_core.io.video import read_video

    out = str(tmp_path / "out.mp4")
    res = _subprocess(_sync(corpus, out, **{"--video": corpus["odd.mp4"], "--audio": corpus["stereo44k.wav"],
                                            "--length-mode": "follow_video", "--report": str(tmp_path / "r.json")}))
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert "warning: speech resampled from 44100 Hz" in res.stderr
    assert "warning: out.mp4: 101×77 is odd" in res.stderr
    assert read_video(out)[0].shape[1:3] == (77, 101)
    assert sorted(os.listdir(tmp_path)) == ["out.mp4", "r.json"]


def test_subprocess_ctrl_c_stops_promptly_and_leaves_no_output(corpus, tmp_path):
    """SIGINT during sampling: exit code 130 within seconds, "cancelled", no traceback, no output file."""
    argv = _sync(corpus, str(tmp_path / "out.mp4"), **{"--steps": "1000", "--tau": "1", "--report":
                                                       str(tmp_path / "r.json"), "--audio": corpus["speech1s.wav"]})
    argv.remove("--quiet")
    proc = subprocess.Popen([sys.executable, "-m", "omnisync_core", *argv], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        buf = ""
        deadline = time.time() + 90
        while "step" not in buf and time.time() < deadline:  # the progress bar has started: sampling runs
            buf += os.read(proc.stderr.fileno(), 4096).decode("utf-8", "replace")
        time.sleep(0.5)
        t0 = time.time()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        waited = time.time() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (buf, err)
    assert "Traceback" not in buf + err and err.strip().endswith("cancelled")
    assert waited < 5, waited
    assert os.listdir(tmp_path) == []
