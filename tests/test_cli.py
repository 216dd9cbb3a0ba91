"""The CLI end to end in a subprocess: real mp4 in, mp4 with audio out; errors are one line."""

import json
import os
import subprocess
import sys

import numpy as np
import torch

from tiny import make_frames, make_model_checkpoint, make_speech_like, make_whisper_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def with_sampling(path, sampling):
    """Rewrite a checkpoint's metadata with a recommended ``"sampling"`` object (weights unchanged)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(path, framework="pt") as f:
        meta = json.loads(f.metadata()["omnisync"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, path, metadata={"omnisync": json.dumps({**meta, "sampling": sampling})})
    return path


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "omnisync_core", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_sync_writes_video_with_audio_using_the_checkpoints_recommended_sampling(tmp_path):
    from omnisync_core.io.audio import read_audio, write_wav
    from omnisync_core.io.video import read_video, write_video

    video, audio, out = tmp_path / "in.mp4", tmp_path / "speech.wav", tmp_path / "out.mp4"
    write_video(str(video), make_frames(T=20), 25.0)
    write_wav(str(audio), make_speech_like(1.0), 16000)
    model = with_sampling(make_model_checkpoint(str(tmp_path)), {"num_steps": 6, "window": 10, "overlap": 2})
    whisper = make_whisper_folder(str(tmp_path))
    res = run_cli("sync", "--video", str(video), "--audio", str(audio), "--model", model,
                  "--whisper", whisper, "-o", str(out), "--quiet", "--overlap", "1",
                  "--side-by-side", str(tmp_path / "sbs.mp4"), "--report", str(tmp_path / "report.json"))
    assert res.returncode == 0, res.stderr
    assert "from the checkpoint: num_steps, window" in res.stdout
    with open(tmp_path / "report.json") as f:
        report = json.load(f)
    assert report["options"]["from"]["overlap"] == "user" and report["options"]["from"]["tau"] == "default"
    assert report["windows"] == [[0, 9], [8, 17], [16, 25]]  # 25 frames, 3 windows of at most 10 sharing 1
    assert report["steps"] == 3 * 6  # σ from τ 0.92 down the 6-step grid (5/6, 4/6, ...): 6 steps, in 3 windows
    frames, fps = read_video(str(out))
    assert frames.shape[0] == 25 and abs(fps - 25.0) < 1e-3
    wave, sr = read_audio(str(out))
    assert abs(wave.shape[-1] / sr - 1.0) < 0.06
    sbs, _ = read_video(str(tmp_path / "sbs.mp4"))
    assert sbs.shape[2] == 2 * frames.shape[2]


def test_bad_checkpoint_is_one_line_error(tmp_path):
    from omnisync_core.io.video import write_video
    from omnisync_core.io.audio import write_wav

    video, audio = tmp_path / "in.mp4", tmp_path / "a.wav"
    write_video(str(video), make_frames(T=4), 25.0)
    write_wav(str(audio), make_speech_like(0.2), 16000)
    bogus = tmp_path / "model.ckpt"
    bogus.write_bytes(b"\x80\x04not a safetensors file")
    res = run_cli("sync", "--video", str(video), "--audio", str(audio), "--model", str(bogus), "-o",
                  str(tmp_path / "o.mp4"), "--quiet")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert res.stderr.startswith("error:") and "safetensors" in res.stderr


def test_demo_lip_syncs_the_bundled_sample_with_the_bundled_model(tmp_path):
    """The README's main job, as written (the checkpoint's recommended sampling): the output's mouth moves
    towards the renderer's truth for the new speech, and the rest of the frame stays the source's."""
    import imageio.v3 as iio

    from omnisync_core.io.audio import read_audio
    from omnisync_core.io.video import read_video

    out = tmp_path / "out.mp4"
    res = run_cli("demo", "-o", str(out), "--quiet")
    assert res.returncode == 0, res.stderr
    assert "from the checkpoint" in res.stdout
    frames, fps = read_video(str(out))
    wave, sr = read_audio(str(out))
    speech, speech_sr = read_audio(os.path.join(ROOT, "samples", "omnisync_speech.wav"))
    assert frames.shape[1:3] == (128, 128) and abs(fps - 25.0) < 1e-3
    assert frames.shape[0] == int(np.ceil(speech.shape[-1] / speech_sr * 25 - 1e-6))  # follows the speech
    assert abs(wave.shape[-1] / sr - frames.shape[0] / 25.0) < 0.05
    sbs, _ = read_video(str(tmp_path / "out_side_by_side.mp4"))
    assert sbs.shape[0] == frames.shape[0] and sbs.shape[2] == 256
    sheet = iio.imread(str(tmp_path / "out_mouths.png"))
    assert sheet.ndim == 3 and sheet.shape[0] == 3 * 64  # source, output and truth rows

    source, _ = read_video(os.path.join(ROOT, "samples", "omnisync_character.mp4"))
    truth, _ = read_video(os.path.join(ROOT, "samples", "omnisync_character_truth.mp4"))
    T = source.shape[0]  # the first pass of the (looped) source shares the truth's head motion
    out_t, src_t, tru_t = frames[:T], source, truth[:T]
    lips = (src_t - tru_t).abs().amax(-1) > 0.15          # where the two utterances' mouths differ
    far = ~torch.nn.functional.max_pool2d(lips.any(0)[None, None].float(), 41, 1, 20)[0, 0].bool()
    assert lips.float().mean() > 0.002 and far.float().mean() > 0.3
    err_out = (out_t - tru_t).abs().amax(-1)[lips].mean()
    err_copy = (src_t - tru_t).abs().amax(-1)[lips].mean()
    assert err_out < 0.7 * err_copy, (float(err_out), float(err_copy))   # the mouth follows the new speech (0.44 measured)
    mse_far = ((out_t - src_t) ** 2)[:, far].mean()
    assert 10 * np.log10(1.0 / float(mse_far)) > 35.0                    # far from the mouth: the source
