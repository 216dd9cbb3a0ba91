"""Dataset builder (real espeak-ng + renderer + a tiny random Whisper), the folder pair source, and
the train CLI end to end on it."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors import safe_open

from omnisync_core.errors import OmniSyncError
from omnisync_core.model.codec import PixelCodec
from tiny import WHISPER_D_MODEL, WHISPER_LAYERS, make_whisper_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 32


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from omnisync_core.audio.whisper import load_whisper
    from omnisync_core.data.dataset import build_dataset

    base = tmp_path_factory.mktemp("ds")
    encoder = load_whisper(make_whisper_folder(str(base)), device="cpu")
    root = str(base / "chars")
    build_dataset(root, 3, split="train", size=SIZE, encoder=encoder)
    build_dataset(root, 2, split="heldout", size=SIZE, encoder=encoder)
    return root


def _frames(path):
    with safe_open(path, framework="pt") as f:
        return f.get_tensor("frames"), f.get_tensor("features"), f.metadata()


def test_samples_have_media_json_and_cache(dataset):
    from omnisync_core.io.audio import read_audio
    from omnisync_core.io.video import read_video

    index = json.load(open(os.path.join(dataset, "dataset.json")))
    assert [e["kind"] for e in index["splits"]["train"]] == ["human", "stylized", "nonhuman"]
    assert len(index["splits"]["heldout"]) == 2 and index["size"] == SIZE
    folder = os.path.join(dataset, index["splits"]["train"][0]["dir"])
    meta = json.load(open(os.path.join(folder, "a.json")))
    T = meta["num_frames"]
    assert T == int(np.ceil(meta["duration_s"] * 25))
    assert len(meta["visemes"]) == T and np.array(meta["mouth_params"]).shape == (T, 5)
    assert np.array(meta["mouth_centre"]).shape == (T, 2) and np.array(meta["mouth_box"]).shape == (T, 4)
    assert meta["phonemes"] and meta["text"] and meta["voice"]
    frames, feats, cache_meta = _frames(os.path.join(folder, "a.safetensors"))
    assert frames.shape == (T, SIZE, SIZE, 3) and frames.dtype == torch.uint8
    assert feats.shape == (T, (WHISPER_LAYERS + 1) * WHISPER_D_MODEL)
    assert json.loads(cache_meta["audio_spec"])["dim"] == WHISPER_D_MODEL
    video, fps = read_video(os.path.join(folder, "a.mp4"))
    assert video.shape[0] == T and abs(fps - 25) < 1e-3
    wave, sr = read_audio(os.path.join(folder, "a.wav"))
    assert abs(wave.shape[-1] / sr - meta["duration_s"]) < 0.01


def test_the_two_utterances_are_a_pseudo_pair(dataset):
    index = json.load(open(os.path.join(dataset, "dataset.json")))
    for e in index["splits"]["train"]:
        folder = os.path.join(dataset, e["dir"])
        a, _, _ = _frames(os.path.join(folder, "a.safetensors"))
        b, _, _ = _frames(os.path.join(folder, "b.safetensors"))
        ma, mb = (json.load(open(os.path.join(folder, f"{n}.json"))) for n in "ab")
        T = min(a.shape[0], b.shape[0])
        assert ma["text"] != mb["text"] and ma["character_seed"] == mb["character_seed"]
        assert np.allclose(ma["mouth_box"][:T], mb["mouth_box"][:T])  # same pose
        boxes = np.array(ma["mouth_box"][:T])
        outside = torch.ones(T, SIZE, SIZE, dtype=torch.bool)
        for t, (x0, y0, x1, y1) in enumerate(boxes):
            outside[t, max(int(y0 * SIZE) - 1, 0): int(np.ceil(y1 * SIZE)) + 1,
                    max(int(x0 * SIZE) - 1, 0): int(np.ceil(x1 * SIZE)) + 1] = False
        assert torch.equal(a[:T][outside], b[:T][outside])  # identical outside the mouth box
        assert not torch.equal(a[:T], b[:T])  # and the mouths differ


def test_folder_pair_source_serves_both_kinds(dataset):
    from omnisync_core.data.dataset import FolderPairSource

    codec = PixelCodec(patch=2)
    src = FolderPairSource(dataset, "train", clip_frames=4, codec=codec, num_layers=2, frame_window=2)
    assert len(src) == 3
    g = torch.Generator().manual_seed(0)
    for example in (src.pseudo_paired(g), src.arbitrary(g)):
        assert example["source_latents"].shape == (12, 4, SIZE // 2, SIZE // 2)
        assert example["target_latents"].shape == example["source_latents"].shape
        assert example["audio_tokens"].shape == (4, 1 + 2 * 2, 2 * WHISPER_D_MODEL)  # last 2 layers
        assert float(example["source_latents"].min()) >= -1 and float(example["source_latents"].max()) <= 1
    # arbitrary pairs within max_offset frames: the source segment starts at most 1 frame away
    near = FolderPairSource(dataset, "train", clip_frames=4, codec=codec, num_layers=2, kinds=["human"], max_offset=1)
    assert len(near) == 1
    g = torch.Generator().manual_seed(1)
    for _ in range(10):
        ex = near.arbitrary(g)
        target, source = (codec.decode(ex[k]) for k in ("target_latents", "source_latents"))
        hits = []
        for clip in near.pairs[0]:
            segs = [clip.frames[s:s + 4].float() / 255 for s in range(clip.frames.shape[0] - 3)]
            st = [s for s, f in enumerate(segs) if torch.allclose(f, target, atol=1e-3)]
            ss = [s for s, f in enumerate(segs) if torch.allclose(f, source, atol=1e-3)]
            hits += [(a, b) for a in st for b in ss]
        assert hits and min(abs(a - b) for a, b in hits) <= 1
    # the optional mouth loss weight covers the (grown) mouth box of the target's frames
    weighted = FolderPairSource(dataset, "train", clip_frames=4, codec=codec, num_layers=2, mouth_weight=9.0)
    ex = weighted.pseudo_paired(torch.Generator().manual_seed(2))
    w = ex["loss_weight"]
    assert w.shape == (4, SIZE // 2, SIZE // 2) and set(w.unique().tolist()) == {1.0, 10.0}
    assert 0.0 < float((w > 1).float().mean()) < 0.5
    assert "loss_weight" not in src.arbitrary(g)
    # the optional mouth centres and parameters (auxiliary mouth probe) are the target segment's own
    assert "mouth_at" not in src.arbitrary(g)
    probed = FolderPairSource(dataset, "train", clip_frames=4, codec=codec, num_layers=2, mouth_params=True)
    for ex in (probed.pseudo_paired(torch.Generator().manual_seed(3)), probed.arbitrary(torch.Generator().manual_seed(4))):
        assert ex["mouth_at"].shape == (4, 2) and ex["mouth_params"].shape == (4, 5)
        target = codec.decode(ex["target_latents"])
        found = False
        for clip in (c for pair in probed.pairs for c in pair):
            for s in range(clip.frames.shape[0] - 3):
                if torch.allclose(clip.frames[s:s + 4].float() / 255, target, atol=1e-3):
                    found = found or (torch.equal(ex["mouth_at"], clip.centres[s:s + 4])
                                      and torch.equal(ex["mouth_params"], clip.params[s:s + 4]))
        assert found
    with pytest.raises(OmniSyncError, match="caches"):
        FolderPairSource(dataset, "train", 4, codec, num_layers=WHISPER_LAYERS + 2)
    with pytest.raises(OmniSyncError, match="not an OmniSync dataset"):
        FolderPairSource(os.path.dirname(dataset), "train", 4, codec, 2)


def test_train_cli_runs_on_the_folder_and_exports_a_checkpoint(dataset, tmp_path):
    from omnisync_core.model.checkpoint import load_checkpoint

    cfg = json.load(open(os.path.join(ROOT, "configs", "tiny_cpu.json")))
    cfg.update({"audio": {"encoder": "whisper-tiny-random", "num_layers": 2, "dim": WHISPER_D_MODEL, "frame_window": 2},
                "max_steps": 3, "log_every": 1, "ckpt_every": 3, "val_every": 3, "size": SIZE,
                "model_overrides": {"use_text": False, "prediction": "x0_residual"}, "loss_weighting": "x0"})
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "omnisync_core", "train", "--config", str(path), "--data", dataset,
                          "--out-dir", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "step=3" in res.stdout and "validation" in res.stdout
    model, meta = load_checkpoint(str(out / "omnisync_ema.safetensors"))
    assert model.config.prediction == "x0_residual" and meta["audio"]["num_layers"] == 2
    rows = (out / "train.csv").read_text().strip().splitlines()
    assert len(rows) == 4  # header + 3 steps
    # the validation rendered the held-out clip (source | output | truth) and measured it
    val = (out / "val.csv").read_text().strip().splitlines()
    header, row = val[0].split(","), dict(zip(val[0].split(","), val[1].split(",")))
    assert {"val_mouth_mae", "val_copy_mouth_mae", "val_psnr_outside", "val_loss"} <= set(header)
    assert float(row["val_copy_mouth_mae"]) > 0
    videos = os.listdir(out / "val")
    assert len(videos) == 2 and all(v.startswith("step000003_") for v in videos)


def test_heldout_eval_measures_model_and_copy_baseline(dataset, tmp_path):
    from omnisync_core.api import load_runtime
    from omnisync_core.eval.heldout import evaluate_heldout, markdown_table
    from omnisync_core.pipelines.omnisync import OmniSyncPipeline, SyncOptions
    from tiny import make_model_checkpoint

    whisper = os.path.join(os.path.dirname(dataset), "whisper-tiny-random")
    model, codec, encoder, _ = load_runtime(make_model_checkpoint(str(tmp_path)), whisper, "cpu", torch.float32)
    pipe = OmniSyncPipeline(model, codec, encoder)
    opts = SyncOptions(num_steps=4, mouth=(0.5, 0.6), length_mode="follow_video", window=4, overlap=1)
    result = evaluate_heldout(pipe, dataset, opts)
    rows, summary = result["clips"], result["summary"]
    assert [r["kind"] for r in rows] == ["human", "stylized"]
    for r in rows:
        assert r["copy_mouth_mae"] > 0 and r["mouth_mae"] > 0 and np.isfinite(r["psnr_outside"])
    assert summary["all"]["clips"] == 2
    assert summary["all"]["mouth_mae"] == pytest.approx(np.mean([r["mouth_mae"] for r in rows]))
    assert "| human | 1 |" in markdown_table(summary)
    with pytest.raises(OmniSyncError, match="follow_video"):
        evaluate_heldout(pipe, dataset, SyncOptions())


def test_silence_clip_is_a_closed_still_mouth_on_near_silence(dataset):
    from omnisync_core.data.speech import NEAR_SILENCE_DBFS
    from omnisync_core.data.visemes import SILENCE, VISEME_TARGETS
    from omnisync_core.io.audio import read_audio

    index = json.load(open(os.path.join(dataset, "dataset.json")))
    e = index["splits"]["train"][0]
    folder = os.path.join(dataset, e["dir"])
    ma, ms = (json.load(open(os.path.join(folder, f"{n}.json"))) for n in "as")
    assert e["frames"]["s"] == e["frames"]["a"] == ms["num_frames"] and ms["phonemes"] == []
    assert np.allclose(ms["mouth_params"], np.tile(VISEME_TARGETS[SILENCE], (ms["num_frames"], 1)), atol=1e-4)
    a, _, _ = _frames(os.path.join(folder, "a.safetensors"))
    s, _, _ = _frames(os.path.join(folder, "s.safetensors"))
    assert s.shape == a.shape and not torch.equal(s[1:], s[:1].expand_as(s[1:]))  # the head still moves
    outside = torch.ones(a.shape[:3], dtype=torch.bool)
    boxes = np.concatenate([np.minimum(np.array(ma["mouth_box"])[:, :2], np.array(ms["mouth_box"])[:, :2]),
                            np.maximum(np.array(ma["mouth_box"])[:, 2:], np.array(ms["mouth_box"])[:, 2:])], 1)
    for t, (x0, y0, x1, y1) in enumerate(boxes):
        outside[t, max(int(y0 * SIZE) - 1, 0): int(np.ceil(y1 * SIZE)) + 1,
                max(int(x0 * SIZE) - 1, 0): int(np.ceil(x1 * SIZE)) + 1] = False
    assert torch.equal(a[outside], s[outside])  # the same character and motion as a
    wave, sr = read_audio(os.path.join(folder, "s.wav"))
    dbfs = 20 * np.log10(float(torch.as_tensor(wave).double().pow(2).mean().sqrt()))
    assert NEAR_SILENCE_DBFS[0] - 1 < dbfs < NEAR_SILENCE_DBFS[1] + 1


def test_folder_pair_source_draws_closed_targets_and_silence(dataset):
    from omnisync_core.data.dataset import MOUTH_WEIGHT_GROW, FolderPairSource, grown_box_mask

    codec = PixelCodec(patch=2)
    closed = FolderPairSource(dataset, "train", clip_frames=2, codec=codec, num_layers=2, closed_target_prob=1.0,
                              mouth_params=True, mouth_weight=9.0, weight_source_mouth=True)
    assert closed.closed_starts
    for p, t, s in closed.closed_starts:
        assert float(closed.pairs[p][t].params[s:s + 2, 0].max()) <= FolderPairSource.CLOSED_OPEN
        assert float(closed.pairs[p][1 - t].params[s:s + 2, 0].min()) >= FolderPairSource.OPEN_OPEN
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        ex = closed.pseudo_paired(g)
        assert float(ex["mouth_params"][:, 0].max()) <= FolderPairSource.CLOSED_OPEN
        target, source = (codec.decode(ex[k]) for k in ("target_latents", "source_latents"))
        match = [(p, t, s) for p, t, s in closed.closed_starts
                 if torch.allclose(closed.pairs[p][t].frames[s:s + 2].float() / 255, target, atol=1e-3)
                 and torch.allclose(closed.pairs[p][1 - t].frames[s:s + 2].float() / 255, source, atol=1e-3)]
        assert match
        p, t, s = match[0]
        # the loss weight covers the source's (open) mouth box as well as the target's
        h = SIZE // 2
        want = (grown_box_mask(closed.pairs[p][t].boxes[s:s + 2], h, h, MOUTH_WEIGHT_GROW)
                | grown_box_mask(closed.pairs[p][1 - t].boxes[s:s + 2], h, h, MOUTH_WEIGHT_GROW))
        assert torch.equal(ex["loss_weight"] > 1, want)
    quiet = FolderPairSource(dataset, "train", clip_frames=2, codec=codec, num_layers=2, silence_prob=1.0,
                             mouth_params=True)
    assert len(quiet.silences) == len(quiet.pairs) == 3
    ex = quiet.pseudo_paired(torch.Generator().manual_seed(1))
    assert float(ex["mouth_params"][:, 0].max()) == 0.0
    target = codec.decode(ex["target_latents"])
    hits = [(i, s) for i, clip in enumerate(quiet.silences) for s in range(clip.frames.shape[0] - 1)
            if torch.allclose(clip.frames[s:s + 2].float() / 255, target, atol=1e-3)]
    assert hits
    i, s = hits[0]
    assert torch.equal(ex["audio_tokens"], quiet.silences[i].tokens[s:s + 2].float())
    # the plain draw is unchanged by the new options at 0 (the same random stream, the same examples)
    plain = FolderPairSource(dataset, "train", clip_frames=2, codec=codec, num_layers=2)
    zero = FolderPairSource(dataset, "train", clip_frames=2, codec=codec, num_layers=2, closed_target_prob=0.0,
                            silence_prob=0.0)
    a, b = plain.pseudo_paired(torch.Generator().manual_seed(5)), zero.pseudo_paired(torch.Generator().manual_seed(5))
    assert torch.equal(a["target_latents"], b["target_latents"])
    with pytest.raises(OmniSyncError, match="probabilities"):
        FolderPairSource(dataset, "train", 2, codec, 2, closed_target_prob=0.8, silence_prob=0.3)


def test_merge_datasets_links_the_characters(dataset, tmp_path):
    from omnisync_core.data.dataset import FolderPairSource, merge_datasets

    out = str(tmp_path / "merged")
    index = merge_datasets(out, [dataset])
    assert [e["seed"] for e in index["splits"]["train"]] == [e["seed"] for e in
                                                             json.load(open(os.path.join(dataset, "dataset.json")))
                                                             ["splits"]["train"]]
    assert len(FolderPairSource(out, "train", 2, PixelCodec(patch=2), 2)) == 3
    with pytest.raises(OmniSyncError, match="seeds"):
        merge_datasets(str(tmp_path / "twice"), [dataset, out])
