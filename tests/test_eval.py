"""Held-out metrics by hand: the mouth region, the errors and the summary."""

import math

import numpy as np
import pytest
import torch

from omnisync_core.errors import OmniSyncError
from omnisync_core.eval.heldout import _balanced, clip_metrics, mouth_region, summarise


def test_mouth_region_is_the_union_of_grown_boxes():
    a = np.array([[0.25, 0.25, 0.5, 0.5]])  # grown by 0.25·0.25 = 0.0625 on each side
    b = np.array([[0.5, 0.5, 0.75, 0.75]])
    r = mouth_region(a, b, 8, 8)[0]
    xs = (np.arange(8) + 0.5) / 8
    in_a = (xs >= 0.1875) & (xs <= 0.5625)
    in_b = (xs >= 0.4375) & (xs <= 0.8125)
    expect = np.outer(in_a, in_a) | np.outer(in_b, in_b)
    assert np.array_equal(r.numpy(), expect)


def test_clip_metrics_by_hand():
    source = torch.zeros(1, 4, 4, 3)
    truth = source.clone()
    truth[0, :2, :2] = 1.0  # the mouth moved: region = top-left 2×2
    region = torch.zeros(1, 4, 4, dtype=torch.bool)
    region[0, :2, :2] = True
    out = truth.clone()
    out[0, 3, 3] = 0.1  # a small error outside the mouth
    m = clip_metrics(out, source, truth, region)
    assert m["mouth_mae"] == pytest.approx(0.0)
    assert m["copy_mouth_mae"] == pytest.approx(255.0)
    mse = 0.01 / 12  # one pixel (3 channels of 0.1² each) over 12 outside pixels × 3 channels
    assert m["psnr_outside"] == pytest.approx(10 * math.log10(1 / mse))


def test_summary_and_balanced_selection():
    rows = [{"kind": "human", "mouth_mae": 2.0, "copy_mouth_mae": 4.0, "psnr_outside": 30.0},
            {"kind": "robot", "mouth_mae": 3.0, "copy_mouth_mae": 3.0, "psnr_outside": 40.0}]
    s = summarise(rows)
    assert s["human"]["improvement"] == pytest.approx(0.5)
    assert s["all"]["mouth_mae"] == pytest.approx(2.5) and s["all"]["clips"] == 2
    entries = [{"kind": k, "i": i} for i, k in enumerate(["a", "a", "a", "b", "c", "c"])]
    assert [e["i"] for e in _balanced(entries, 4)] == [0, 3, 4, 1]


def test_mouth_region_takes_the_shorter_of_two_box_tracks():
    a = np.tile([[0.2, 0.2, 0.4, 0.4]], (5, 1))
    b = np.tile([[0.6, 0.6, 0.8, 0.8]], (3, 1))
    assert mouth_region(a, b, 10, 10).shape == (3, 10, 10)


# -- lip-sync scores read by the mouth reader, and the inference ablation ---------------------------


def _params(open_track):
    """(T, 5) mouth parameters: the given openness, the other four fixed."""
    p = torch.full((len(open_track), 5), 0.5)
    p[:, 0] = torch.tensor(open_track)
    return p


def test_sync_metrics_by_hand():
    from omnisync_core.eval.heldout import sync_metrics

    a, b = _params([1.0, 0.5, 0.0, 0.5]), _params([0.0, 0.5, 1.0, 0.5])  # openness of a = −(b) + 1
    # a perfect reader, an output that copies the source mouth
    m = sync_metrics(read_output=a, read_source=a, read_truth=b, params_source=a, params_truth=b)
    assert m["sync_target"] == pytest.approx(-1.0) and m["sync_source"] == pytest.approx(1.0)
    assert m["copy_sync_target"] == pytest.approx(-1.0) and m["reader_sync"] == pytest.approx(1.0)
    assert m["shape_error"] == m["copy_shape_error"] == pytest.approx(0.5 / 5)  # |Δopen| mean 0.5, over 5 params
    assert m["reader_shape_error"] == 0.0
    # an output with the target's mouth; a frozen mouth follows nothing
    assert sync_metrics(b, a, b, a, b)["sync_target"] == pytest.approx(1.0)
    assert sync_metrics(_params([0.3] * 4), a, b, a, b)["sync_target"] == 0.0


def test_summary_sums_counts_and_table_marks_missing_scores():
    rows = [{"kind": "human", "mouth_mae": 2.0, "copy_mouth_mae": 4.0, "psnr_outside": 30.0, "frames": 10,
             "passed_through": 1, "sync_target": 0.8, "sync_source": 0.1},
            {"kind": "robot", "mouth_mae": 3.0, "copy_mouth_mae": 3.0, "psnr_outside": 40.0, "frames": 5,
             "passed_through": 0, "sync_target": 0.4, "sync_source": 0.3}]
    s = summarise(rows)
    assert s["all"]["frames"] == 15 and s["all"]["passed_through"] == 1
    assert s["all"]["sync_target"] == pytest.approx(0.6) and "shape_error" not in s["all"]
    from omnisync_core.eval.heldout import markdown_table

    row = [line for line in markdown_table(s).splitlines() if line.startswith("| all |")][0]
    assert "| +0.60 | +0.20 | – | – | 2.50 | 3.50 |" in row and row.endswith("| 1 | – |")


def test_ablation_variants_are_data_applied_to_the_base_run():
    from omnisync_core.eval.ablation import ABLATIONS, ablation_options
    from omnisync_core.pipelines.omnisync import SyncOptions
    from omnisync_core.sampling.guidance import GuidanceConfig

    base = SyncOptions(tau=0.9, guidance=GuidanceConfig(omega_base=1.5, omega_peak=4.0, gamma=1.5))
    got = {name: ablation_options(base, o) for name, o in ABLATIONS}
    assert len(got) == 6 and got["default"] == base
    assert got["τ = 1 (no progressive init)"].tau == 1.0
    g = {name: (o.guidance.omega_base, o.guidance.omega_peak, o.guidance.gamma) for name, o in got.items()}
    assert g["static CFG ω = 1"] == (1.0, 1.0, 0.0) and g["static CFG ω = 3"] == (3.0, 3.0, 0.0)
    assert g["no spatial Gaussian"] == (4.0, 4.0, 1.5)  # ω_base = the base run's ω_peak
    assert g["no temporal decay"] == (1.5, 4.0, 0.0)
    assert base.guidance.omega_base == 1.5  # the base is not changed
    with pytest.raises(OmniSyncError, match="unknown ablation knob"):
        ablation_options(base, {"cfg": 2.0})


@pytest.fixture(scope="module")
def heldout_pairs(tmp_path_factory):
    from omnisync_core.data.dataset import build_dataset

    root = str(tmp_path_factory.mktemp("eval") / "chars")
    build_dataset(root, 2, split="heldout", size=32)
    return root


class _CopySource:
    """A pipeline stand-in that returns the source frames: the copy baseline. Records the options."""

    def __init__(self):
        self.options = []

    def __call__(self, frames, fps, wave, sr, options):
        from types import SimpleNamespace

        self.options.append(options)
        return SimpleNamespace(frames=frames, report={"mouth": {"fallback_frames": [0]}})


def test_copying_the_source_scores_as_the_copy_baseline(heldout_pairs):
    from omnisync_core.eval.heldout import evaluate_heldout
    from omnisync_core.eval.mouth_reader import MouthReader, ReaderConfig
    from omnisync_core.pipelines.omnisync import SyncOptions

    torch.manual_seed(0)
    reader = MouthReader(ReaderConfig(crop=16, channels=(4, 8)))
    result = evaluate_heldout(_CopySource(), heldout_pairs, SyncOptions(length_mode="follow_video"), reader=reader)
    for r in result["clips"]:
        assert r["mouth_mae"] == r["copy_mouth_mae"] and r["shape_error"] == r["copy_shape_error"]
        assert r["sync_target"] == r["copy_sync_target"] and r["passed_through"] == 1
    assert result["summary"]["all"]["passed_through"] == 2 and result["summary"]["all"]["clips"] == 2


def test_ablation_runs_every_variant_on_the_same_clips(heldout_pairs):
    from omnisync_core.eval.ablation import ablation_table, evaluate_ablation
    from omnisync_core.pipelines.omnisync import SyncOptions

    pipe = _CopySource()
    variants = [("default", {}), ("τ = 1", {"tau": 1.0})]
    results = evaluate_ablation(pipe, heldout_pairs, SyncOptions(length_mode="follow_video"), variants, limit=1)
    assert [o.tau for o in pipe.options] == [0.92, 1.0]
    assert [r["name"] for r in results] == ["default", "τ = 1"] and results[1]["options"]["tau"] == 1.0
    table = ablation_table(results).splitlines()
    assert len(table) == 4 and table[3].startswith("| τ = 1 | 1 | 1 | 3 | 1.5 |")


def test_eval_cli_errors_are_one_line(heldout_pairs, tmp_path, capsys):
    from omnisync_core.cli import main

    cases = [(["--data", str(tmp_path)], "not an OmniSync dataset folder"),
             (["--data", heldout_pairs, "--split", "train"], "no 'train' split"),
             (["--data", heldout_pairs, "--limit", "0"], "--limit"),
             (["--data", heldout_pairs, "--reader", str(tmp_path / "none.safetensors")], "train-reader")]
    for args, message in cases:
        assert main(["eval", "--model", str(tmp_path / "no_model.safetensors"), "--quiet"] + args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and message in err and err.count("\n") == 1, err


def test_eval_cli_runs_and_reports(heldout_pairs, tmp_path, capsys):
    """The whole eval command on one held-out character with the bundled model and reader."""
    import json

    from omnisync_core.cli import main

    report = tmp_path / "eval.json"
    assert main(["eval", "--data", heldout_pairs, "--limit", "1", "--steps", "2", "--quiet",
                 "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "| all | 1 |" in out
    data = json.loads(report.read_text())
    assert data["summary"]["all"]["clips"] == 1 and data["options"]["steps"] == 2


def test_ghost_metric_by_hand():
    from omnisync_core.eval.heldout import ghost_metric

    source = torch.zeros(2, 2, 3, 3)
    truth = source.clone()
    out = source.clone()
    truth[0, 0, 0] = 1.0; out[0, 0, 0] = 0.25      # a quarter of the way to the truth: 0.75 of the old mouth left
    truth[0, 0, 1] = 0.05                           # below GHOST_PIXEL_DIFF: not part of the old mouth
    truth[0, 1, 0] = 0.5; out[0, 1, 0] = 0.5        # exactly the truth: nothing left
    source[0, 1, 1] = 0.5; truth[0, 1, 1] = 1.0; out[0, 1, 1] = 0.2   # further from the truth than the source: 1
    truth[0, 0, 2] = 1.0                            # outside the region: ignored although copied
    truth[1] = 1.0                                  # frame 1: the target is open, not a ghost frame
    region = torch.ones(2, 2, 3, dtype=torch.bool)
    region[:, 0, 2] = False
    open_source, open_truth = torch.tensor([0.5, 0.5]), torch.tensor([0.0, 0.4])
    m = ghost_metric(out, source, truth, region, open_source, open_truth)
    assert m["ghost_frames"] == 1
    assert m["ghost"] == pytest.approx((0.75 + 0.0 + 1.0) / 3)
    # copying the source leaves all of it; the truth leaves none
    assert ghost_metric(source, source, truth, region, open_source, open_truth)["ghost"] == pytest.approx(1.0)
    assert ghost_metric(truth, source, truth, region, open_source, open_truth)["ghost"] == pytest.approx(0.0)
    # no frame with a closed target over an open source (a source at 0.2 is not open): undefined
    none = ghost_metric(out, source, truth, region, torch.tensor([0.2, 0.5]), open_truth)
    assert math.isnan(none["ghost"]) and none["ghost_frames"] == 0


def test_silence_metrics_by_hand():
    from omnisync_core.eval.heldout import silence_metrics

    m = silence_metrics(torch.tensor([0.1, 0.3, 0.2, 0.2]), torch.tensor([0.05, 0.05, 0.05, 0.05]))
    assert m["silence_open"] == pytest.approx(0.2) and m["silence_truth_open"] == pytest.approx(0.05)
    assert m["silence_gap"] == pytest.approx(0.15)
    assert m["silence_spread"] == pytest.approx(math.sqrt((0.01 + 0.01) / 4))  # over time, population std
    assert m["silence_open_frames"] == pytest.approx(0.25)  # 0.3 reads as open


def test_summary_fractions_distributions_and_undefined_ghosts():
    from omnisync_core.eval.heldout import distribution_table, markdown_table

    rows = [{"kind": "human", "mouth_mae": 3.0, "copy_mouth_mae": 4.0, "psnr_outside": 45.0, "ghost": 0.2},
            {"kind": "human", "mouth_mae": 5.0, "copy_mouth_mae": 4.0, "psnr_outside": 39.0, "ghost": float("nan")},
            {"kind": "human", "mouth_mae": 2.0, "copy_mouth_mae": 4.0, "psnr_outside": 50.0, "ghost": 0.4}]
    m = summarise(rows)["human"]
    assert m["mae_above_copy"] == pytest.approx(1 / 3) and m["psnr_below_40"] == pytest.approx(1 / 3)
    assert m["ghost"] == pytest.approx(0.3) and m["ghost_clips"] == 2  # the clip without ghost frames left out
    d = m["distributions"]["mouth_mae_ratio"]  # per clip 0.75, 1.25, 0.5
    assert (d["min"], d["p50"], d["max"]) == pytest.approx((0.5, 0.75, 1.25))
    assert d["p10"] == pytest.approx(0.5 + 0.2 * 0.25) and d["p90"] == pytest.approx(0.75 + 0.8 * 0.5)  # positions 0.2, 1.8
    assert m["distributions"]["ghost"]["p50"] == pytest.approx(0.3)
    assert "sync_target" not in m["distributions"] and "silence_gap" not in m["distributions"]
    assert "| human | mouth_mae_ratio | 0.500 | 0.550 | 0.750 | 1.150 | 1.250 |" in distribution_table(summarise(rows))
    assert "| 0.300 |" in markdown_table(summarise(rows)) and "| 33% |" in markdown_table(summarise(rows))


class _RecordingCopy(_CopySource):
    """The copy stand-in that also keeps the speech it was given."""

    def __init__(self):
        super().__init__()
        self.waves = []

    def __call__(self, frames, fps, wave, sr, options):
        self.waves.append((torch.as_tensor(wave).double(), sr))
        return super().__call__(frames, fps, wave, sr, options)


def test_silence_case_runs_on_near_silence_and_reads_the_closed_truth(heldout_pairs, tmp_path):
    import json
    import os
    import shutil

    from omnisync_core.eval.heldout import SILENCE_DBFS, evaluate_heldout
    from omnisync_core.eval.mouth_reader import MouthReader, ReaderConfig, read_mouths
    from omnisync_core.pipelines.omnisync import SyncOptions
    from safetensors import safe_open

    torch.manual_seed(0)
    reader = MouthReader(ReaderConfig(crop=16, channels=(4, 8)))
    opts = SyncOptions(length_mode="follow_video")
    pipe = _RecordingCopy()
    result = evaluate_heldout(pipe, heldout_pairs, opts, reader=reader, limit=1)
    row = result["clips"][0]
    (speech, _), (silence, _) = pipe.waves
    rms = lambda w: float(w.pow(2).mean().sqrt())  # noqa: E731
    assert rms(speech) > 0.01 and 10 ** (-70 / 20) * 0.9 < rms(silence) < 10 ** (-50 / 20) * 1.1
    folder = os.path.join(heldout_pairs, json.load(open(os.path.join(heldout_pairs, "dataset.json")))
                          ["splits"]["heldout"][0]["dir"])
    T = row["frames"]
    with safe_open(os.path.join(folder, "s.safetensors"), framework="pt") as f:
        closed = f.get_tensor("frames")[:T]
    with safe_open(os.path.join(folder, "a.safetensors"), framework="pt") as f:
        source = f.get_tensor("frames")[:T]
    boxes = np.array(json.load(open(os.path.join(folder, "s.json")))["mouth_box"])[:T]
    read_out = read_mouths(reader, source.float() / 255, boxes)[:, 0]  # the copy stand-in returns the source
    assert row["silence_truth_open"] == pytest.approx(float(read_mouths(reader, closed.float() / 255, boxes)[:, 0].mean()),
                                                      abs=1e-6)
    assert row["silence_open"] == pytest.approx(float(read_out.mean()), abs=1e-6)
    assert row["silence_spread"] == pytest.approx(float(read_out.double().std(unbiased=False)), abs=1e-6)
    assert "silence_gap" in result["summary"]["all"]["distributions"]
    # a dataset without silence clips: the generated near-silence at SILENCE_DBFS and the renderer's closed mouth
    bare = tmp_path / "bare"
    shutil.copytree(heldout_pairs, bare)
    for root, _, files in os.walk(bare):
        for name in files:
            if name.startswith("s."):
                os.remove(os.path.join(root, name))
    pipe = _RecordingCopy()
    row = evaluate_heldout(pipe, str(bare), opts, reader=reader, limit=1)["clips"][0]
    assert rms(pipe.waves[1][0]) == pytest.approx(10 ** (SILENCE_DBFS / 20), rel=0.1)
    assert row["silence_truth_open"] == 0.0
    # no silence case without a reader, or when asked not to
    assert "silence_open" not in evaluate_heldout(_CopySource(), heldout_pairs, opts, limit=1)["clips"][0]
    assert "silence_open" not in evaluate_heldout(_CopySource(), heldout_pairs, opts, reader=reader, limit=1,
                                                  silence=False)["clips"][0]
