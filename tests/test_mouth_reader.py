"""The mouth-parameter reader: crops by hand, accuracy maths, a few training steps, the file round trip."""

import math

import pytest
import torch

from omnisync_core.errors import OmniSyncError
from omnisync_core.eval.mouth_reader import (
    MouthReader,
    ReaderConfig,
    ReaderTrainConfig,
    augment,
    crop_mouths,
    evaluate_reader,
    load_reader,
    load_reader_clips,
    pearson,
    r_squared,
    read_mouths,
    reader_accuracy,
    save_reader,
    train_reader,
)

SMALL = ReaderConfig(crop=16, channels=(4, 8))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from omnisync_core.data.dataset import build_dataset

    root = str(tmp_path_factory.mktemp("reader") / "chars")
    build_dataset(root, 2, split="train", size=48, write_media=False)
    build_dataset(root, 1, split="heldout", size=48, write_media=False)
    return root


def _white_box_frame():
    """(1, 64, 64, 3) black with white pixels x 24..39, y 16..31, and that box as fractions."""
    frame = torch.zeros(1, 64, 64, 3)
    frame[0, 16:32, 24:40] = 1.0
    return frame, torch.tensor([[24 / 64, 16 / 64, 40 / 64, 32 / 64]])


def test_crop_is_the_box_and_grow_adds_a_margin():
    frame, box = _white_box_frame()
    assert torch.equal(crop_mouths(frame, box, 8, grow=0.0), torch.ones(1, 3, 8, 8))
    # grow 0.5: a 32-px square, the box is its centre half (the 2× samples fall on pixel centres)
    expect = torch.zeros(8, 8)
    expect[2:6, 2:6] = 1.0
    crops = crop_mouths((frame * 255).to(torch.uint8), box, 8, grow=0.5)
    assert torch.equal(crops, expect.expand(1, 3, 8, 8))


def test_jitter_scale_equals_growing_the_box():
    frame = torch.rand(2, 40, 40, 3, generator=torch.Generator().manual_seed(0))
    box = torch.tensor([[0.3, 0.4, 0.6, 0.7], [0.2, 0.2, 0.5, 0.4]])
    doubled = torch.tensor([[0.0, 0.0, math.log(2.0)]] * 2)  # side × 2 = side × (1 + 2 · 0.5)
    assert torch.allclose(crop_mouths(frame, box, 8, 0.0, jitter=doubled), crop_mouths(frame, box, 8, 0.5), atol=1e-6)


def test_crop_rejects_mismatched_boxes():
    with pytest.raises(OmniSyncError, match=r"\(T, 4\)"):
        crop_mouths(torch.zeros(3, 8, 8, 3), torch.zeros(2, 4), 8, 0.25)


def test_pearson_and_r2_by_hand():
    x = torch.tensor([0.0, 1.0, 2.0, 3.0])
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert pearson(x, -x) == pytest.approx(-1.0)
    assert pearson(x, torch.ones(4)) == 0.0  # a frozen mouth follows nothing
    assert r_squared(x, x) == pytest.approx(1.0)
    assert r_squared(torch.full((4,), 1.5), x) == pytest.approx(0.0)  # the mean
    assert r_squared(torch.tensor([0.0, 1.0, 2.0, 4.0]), x) == pytest.approx(1 - 1 / 5)  # SS_res 1, SS_tot 5


def test_perfect_reader_accuracy():
    truth = torch.rand(10, 5, generator=torch.Generator().manual_seed(1))
    acc = reader_accuracy(truth, truth, clip_lengths=[6, 4])
    assert all(m["r2"] == pytest.approx(1) and m["corr"] == pytest.approx(1) and m["mae"] == 0
               for m in acc["params"].values())
    assert acc["mean_r2"] == pytest.approx(1) and acc["open_clip_corr_median"] == pytest.approx(1)
    assert list(acc["params"]) == ["open", "width", "round", "teeth", "tongue"] and acc["frames"] == 10


def test_augment_keeps_a_flat_crop_flat_without_noise():
    tc = ReaderTrainConfig(brightness=0.0, noise_max=0.0, blur_prob=1.0)
    context = torch.full((3, 3, 24, 24), 100, dtype=torch.uint8)
    x = augment(context, SMALL, tc, torch.Generator().manual_seed(0))
    assert x.shape == (3, 3, 16, 16)
    assert torch.allclose(x, torch.full_like(x, 100 / 255), atol=1e-5)  # jitter, flips and blur move nothing


def test_reader_trains_a_few_steps_and_round_trips(dataset, tmp_path):
    train_clips, held = load_reader_clips(dataset, "train"), load_reader_clips(dataset, "heldout")
    assert len(train_clips) == 4 and train_clips[0].params.shape[1] == 5
    tc = ReaderTrainConfig(steps=3, batch=4, val_every=2, warmup=1)
    reader, log = train_reader(train_clips, SMALL, tc, held)
    assert [v["step"] for v in log["validation"]] == [2, 3] and math.isfinite(log["final_loss"])
    acc = evaluate_reader(reader, held)
    path = save_reader(str(tmp_path / "r.safetensors"), reader, {"accuracy": acc})
    loaded, meta = load_reader(path)
    assert meta["config"]["crop"] == 16 and meta["accuracy"]["params"]["open"]["r2"] == acc["params"]["open"]["r2"]
    clip = held[0]
    read = read_mouths(loaded, clip.frames, clip.boxes)
    assert read.shape == clip.params.shape and 0 <= float(read.min()) and float(read.max()) <= 1
    assert torch.equal(read, read_mouths(reader, clip.frames, clip.boxes))


def test_load_reader_errors_name_the_fix(tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(OmniSyncError, match="train-reader"):
        load_reader(str(tmp_path / "missing.safetensors"))
    other = str(tmp_path / "other.safetensors")
    save_file({"w": torch.zeros(1)}, other, metadata={"format": "something-else"})
    with pytest.raises(OmniSyncError, match="not a mouth reader"):
        load_reader(other)
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_bytes(b"not a safetensors file")
    with pytest.raises(OmniSyncError, match="safetensors"):
        load_reader(str(bogus))


def test_train_config_and_split_errors(dataset):
    with pytest.raises(OmniSyncError, match="steps"):
        ReaderTrainConfig(steps=0)
    with pytest.raises(OmniSyncError, match="multiple"):
        ReaderConfig(crop=20, channels=(4, 8, 16))
    with pytest.raises(OmniSyncError, match="make-data"):
        load_reader_clips(dataset, "validation")


def test_train_reader_cli_writes_reader_and_report(dataset, tmp_path, capsys):
    import json

    from omnisync_core.cli import main

    out = tmp_path / "reader.safetensors"
    assert main(["train-reader", "--data", dataset, "--out", str(out), "--steps", "2", "--batch", "4",
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| open |" in printed and "wrote" in printed
    report = json.loads((tmp_path / "reader.json").read_text())
    assert report["heldout_characters"] == 1 and report["train"]["steps"] == 2
    assert load_reader(str(out))[1]["accuracy"] == report["accuracy"]


@pytest.mark.parametrize("args, message", [
    (["--out", "reader.pt"], "must end in .safetensors"),
    (["--steps", "0"], "steps ≥ 1"),
    (["--characters", "0"], "at least 1"),
])
def test_train_reader_cli_errors_are_one_line(dataset, tmp_path, capsys, args, message):
    from omnisync_core.cli import main

    argv = ["train-reader", "--data", dataset, "--out", str(tmp_path / "r.safetensors"), "--quiet"] + args
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and err.count("\n") == 1


def test_train_reader_cli_needs_a_heldout_split(tmp_path, capsys):
    from omnisync_core.cli import main
    from omnisync_core.data.dataset import build_dataset

    root = str(tmp_path / "only_train")
    build_dataset(root, 1, split="train", size=32, write_media=False)
    assert main(["train-reader", "--data", root, "--out", str(tmp_path / "r.safetensors"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "'heldout'" in err and not (tmp_path / "r.safetensors").exists()


def test_random_reader_reads_in_range():
    torch.manual_seed(0)
    reader = MouthReader(SMALL)
    frame, box = _white_box_frame()
    read = read_mouths(reader, frame.expand(3, -1, -1, -1), box.expand(3, 4), batch=2)
    assert read.shape == (3, 5) and torch.allclose(read, read[:1].expand(3, 5))
