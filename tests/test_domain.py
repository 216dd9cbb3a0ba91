"""The bundled model's domain check (omnisync_core.image.domain): features, the fitted check in the shipped
checkpoint, and its verdict on a drawn character and on photo-like frames made here."""

import numpy as np
import pytest
import torch

from omnisync_core.api import BUNDLED_MODEL
from omnisync_core.data.characters import random_character, random_motion, render_clip
from omnisync_core.data.dataset import SPLIT_SEED_BASE
from omnisync_core.errors import OmniSyncError
from omnisync_core.image.domain import (
    FEATURE_NAMES,
    DomainCheck,
    domain_check_for,
    domain_features,
    fit_domain_check,
)
from omnisync_core.model.checkpoint import read_metadata, update_metadata


def _character(seed=SPLIT_SEED_BASE["heldout"] + 3, size=128, T=8):
    ch = random_character(seed, kind="human")
    mouths = np.random.default_rng(seed).uniform(0, 1, (T, 5)).astype(np.float32)
    return render_clip(ch, random_motion(seed + 1, T, 25.0), mouths, size=(size, size)).frames


def _photo_like(T=8, size=160, seed=0):
    """Soft shading and fine texture with sensor noise: what a camera or a video model gives."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    base = torch.stack([0.35 + 0.3 * xx, 0.3 + 0.25 * yy, 0.25 + 0.2 * xx * yy], -1)
    texture = torch.nn.functional.interpolate(torch.rand(1, 3, size // 4, size // 4, generator=g), size=(size, size),
                                              mode="bicubic", align_corners=False)[0].permute(1, 2, 0)
    frames = [(base + 0.25 * texture + 0.02 * torch.randn(size, size, 3, generator=g)).clamp(0, 1) for _ in range(T)]
    return (torch.stack(frames) * 255).round().byte().numpy()


def test_features_are_shares_and_agree_for_uint8_and_float_frames():
    clip = _character(T=4)
    f8 = domain_features(clip)
    ff = domain_features(torch.from_numpy(clip).float() / 255.0)
    assert f8.shape == (len(FEATURE_NAMES),)
    assert ((f8 >= 0) & (f8 <= 1)).all()
    np.testing.assert_allclose(f8, ff, atol=1e-12)


def test_hand_computed_features_of_a_flat_frame():
    frames = np.full((2, 16, 16, 3), 200, dtype=np.uint8)
    frames[..., 0] = 50  # one colour everywhere: saturation (200 − 50) / 200 = 0.75
    f = dict(zip(FEATURE_NAMES, domain_features(frames)))
    assert f["flat_le0"] == 1.0 and f["edge_ge48"] == 0.0 and f["palette6_top8"] == 1.0
    assert f["saturation_mean"] == pytest.approx(0.75) and f["brightness_mean"] == pytest.approx(200 / 255)


def test_large_frames_are_downscaled_before_the_statistics():
    """A drawn character at 512² (nearest 4× of a 128² render) is area-downscaled to 256² and still not warned."""
    small = torch.from_numpy(_character(size=128, T=2)).permute(0, 3, 1, 2).float()
    big = torch.nn.functional.interpolate(small, scale_factor=4, mode="nearest").permute(0, 2, 3, 1).byte().numpy()
    check = domain_check_for(read_metadata(BUNDLED_MODEL))
    assert check.warning(big) is None
    assert check.warning(np.kron(_photo_like(T=2), np.ones((1, 4, 4, 1), dtype=np.uint8))) is not None


def test_the_shipped_model_carries_a_domain_check_that_separates_drawn_from_photo_like():
    check = domain_check_for(read_metadata(BUNDLED_MODEL))
    assert check is not None, "run benchmarks/domain_check.py --write-checkpoint on the shipped model"
    assert check.warning(_character()) is None
    assert check.warning(_character(size=256)) is None
    message = check.warning(_photo_like())
    assert message is not None and "X-Dub" in message and "synthetic" in message


def test_a_checkpoint_without_domain_is_never_checked_and_a_bad_one_is_refused():
    assert domain_check_for({"format": 1}) is None
    with pytest.raises(OmniSyncError, match="refit"):
        DomainCheck.from_dict({"name": "x"})
    good = domain_check_for(read_metadata(BUNDLED_MODEL)).to_dict()
    with pytest.raises(OmniSyncError, match="other features"):
        DomainCheck.from_dict({**good, "features": list(FEATURE_NAMES)[:-1]})
    with pytest.raises(OmniSyncError, match="non-finite"):
        DomainCheck.from_dict({**good, "bias": float("nan")})


def test_fit_separates_two_clusters_and_round_trips_through_a_checkpoint(tmp_path):
    import shutil

    drawn = np.stack([domain_features(_character(seed=SPLIT_SEED_BASE["heldout"] + 500 + i, T=2)) for i in range(4)])
    photo = np.stack([domain_features(_photo_like(T=2, seed=i)) for i in range(4)])
    fit = fit_domain_check(np.concatenate([drawn, photo]), np.array([0] * 4 + [1] * 4))
    check = DomainCheck(name="n", advice="a", **fit)
    assert all(check.score_features(f) < 0 for f in drawn) and all(check.score_features(f) > 0 for f in photo)
    path = str(tmp_path / "m.safetensors")
    shutil.copy(BUNDLED_MODEL, path)
    update_metadata(path, domain=check.to_dict())
    again = domain_check_for(read_metadata(path))
    assert again.to_dict() == check.to_dict()


def test_the_engine_and_the_split_stage_warn_once_for_photo_like_frames_and_not_for_a_character(tmp_path):
    """The bundled model's check, carried by a tiny model's metadata: the engine (every front end) and the
    split nodes' encode stage put the one warning line in the report and through on_warning."""
    from omnisync_core.api import load_runtime
    from omnisync_core.pipelines.omnisync import OmniSyncPipeline, SyncOptions

    from tiny import make_model_checkpoint, make_speech_like, make_whisper_folder

    root = str(tmp_path)
    model, codec, encoder, meta = load_runtime(make_model_checkpoint(root), make_whisper_folder(root), "cpu", torch.float32)
    meta = {**meta, "domain": read_metadata(BUNDLED_MODEL)["domain"]}
    pipe = OmniSyncPipeline(model, codec, encoder, meta=meta)
    speech = make_speech_like(0.4)
    opts = SyncOptions(num_steps=2, tau=0.9, seed=1, mouth=(0.5, 0.6))
    for frames, warned in ((_photo_like(T=10, size=32), True), (_character(size=32, T=10), False)):
        heard = []
        result = pipe(torch.from_numpy(frames).float() / 255, 25.0, speech, 16000, opts, on_warning=heard.append)
        domain = [w for w in result.report["warnings"] if "training data" in w]
        assert len(domain) == int(warned) and [w for w in heard if "training data" in w] == domain
        video = pipe.encode_video(torch.from_numpy(frames).float() / 255, fps=25.0)
        assert len([w for w in video.report.get("warnings", []) if "training data" in w]) == int(warned)
