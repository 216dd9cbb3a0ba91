"""The OmniSync U-Net (the bundled model's network): identity at initialisation, the model interface the
sampler uses, the checkpoint round trip, mouth crops for training, and a short training run."""

import json
import os
import subprocess
import sys

import pytest
import torch

from omnisync_core.errors import OmniSyncError
from omnisync_core.model.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from omnisync_core.model.config import CodecSpec, X0_MIN_SIGMA
from omnisync_core.model.unet import OmniSyncUNet, UNetConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(latent_channels=12, channels=(8, 16), audio_dim=24, audio_layers=3, audio_tokens=5, adapter_dim=8,
            freq_dim=8, mouth_params=5)


def _inputs(B=2, C=12, F=3, H=8, W=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, source = torch.randn(B, C, F, H, W, generator=g), torch.randn(B, C, F, H, W, generator=g)
    audio = torch.randn(B, F, 5, 24, generator=g)
    return x, source, audio


def _randomised(seed=0):
    torch.manual_seed(seed)
    model = OmniSyncUNet(UNetConfig(**TINY))
    with torch.no_grad():
        model.out.weight.normal_(0, 0.1)
    return model.eval()


def test_a_fresh_model_returns_the_source():
    """Zero-initialised output convolution: x̂₀ = source, so v = (x − source)/max(σ, X0_MIN_SIGMA)."""
    model = OmniSyncUNet(UNetConfig(**TINY))
    x, source, audio = _inputs()
    t = torch.tensor([920.0, 30.0])
    v = model(x, t, source=source, audio=audio)
    sigma = (t / 1000).clamp_min(X0_MIN_SIGMA).view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(v, (x - source) / sigma, rtol=0, atol=1e-5)


def test_audio_changes_the_output_and_frames_are_independent():
    model = _randomised()
    x, source, audio = _inputs()
    t = torch.tensor([500.0, 500.0])
    v = model(x, t, source=source, audio=audio)
    assert not torch.allclose(v, model(x, t, source=source, audio=audio.flip(1)))
    # audio=None is the unconditional input: the zero tokens condition dropout trains on
    torch.testing.assert_close(model(x, t, source=source, audio=None),
                               model(x, t, source=source, audio=torch.zeros_like(audio)))
    # frame 1 depends only on frame 1's inputs (2D convolutions over B·F images)
    x2, audio2 = x.clone(), audio.clone()
    x2[:, :, 0] += 1.0
    audio2[:, 2] += 1.0
    torch.testing.assert_close(model(x2, t, source=source, audio=audio2)[:, :, 1], v[:, :, 1])


def test_bad_inputs_are_refused_with_the_fix():
    model = _randomised()
    x, source, audio = _inputs()
    with pytest.raises(OmniSyncError, match="divisible by the patch size"):
        model(x[..., :7], 500.0, source=source[..., :7], audio=audio)
    with pytest.raises(OmniSyncError, match="source-conditioned"):
        model(x, 500.0, audio=audio)
    with pytest.raises(OmniSyncError, match="tokens per frame"):
        model(x, 500.0, source=source, audio=audio[:, :, :3])
    with pytest.raises(OmniSyncError, match="no text branch"):
        model(x, 500.0, source=source, audio=audio, text=torch.zeros(2, 4, 8))
    with pytest.raises(OmniSyncError, match="bad U-Net config"):
        UNetConfig(**{**TINY, "audio_dim": 25})


def test_mouth_read_out_comes_with_mouth_at():
    model = _randomised()
    x, source, audio = _inputs()
    v, params = model(x, 500.0, source=source, audio=audio, mouth_at=torch.zeros(2, 3, 2))
    assert params.shape == (2, 3, 5) and params.dtype == torch.float32
    torch.testing.assert_close(v, model(x, 500.0, source=source, audio=audio))


def test_checkpoint_round_trip_with_sampling_recommendation(tmp_path):
    model = _randomised()
    path = str(tmp_path / "unet.safetensors")
    codec = CodecSpec(type="pixel", patch=2)
    save_checkpoint(path, model, codec, {"encoder": "x", "num_layers": 3, "dim": 8, "frame_window": 2},
                    sampling={"num_steps": 8})
    meta = read_metadata(path)
    assert meta["arch"] == "unet" and meta["sampling"] == {"num_steps": 8}
    loaded, _ = load_checkpoint(path)
    assert isinstance(loaded, OmniSyncUNet) and loaded.config.channels == (8, 16)
    x, source, audio = _inputs()
    torch.testing.assert_close(loaded(x, 300.0, source=source, audio=audio), model(x, 300.0, source=source, audio=audio),
                               rtol=0, atol=0)
    # an unknown architecture names the fix
    from safetensors.torch import load_file, save_file
    bad = dict(meta, arch="transformer9")
    save_file(load_file(path), str(tmp_path / "bad.safetensors"), metadata={"omnisync": json.dumps(bad)})
    with pytest.raises(OmniSyncError, match="update the plugin"):
        load_checkpoint(str(tmp_path / "bad.safetensors"))


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    from omnisync_core.audio.whisper import load_whisper
    from omnisync_core.data.dataset import build_dataset
    from tiny import make_whisper_folder

    base = tmp_path_factory.mktemp("unet_ds")
    encoder = load_whisper(make_whisper_folder(str(base)), device="cpu")
    root = str(base / "chars")
    build_dataset(root, 2, split="train", size=64, encoder=encoder, write_media=False)
    return root


def test_mouth_crops_hold_the_mouth_box(tiny_dataset):
    from omnisync_core.data.dataset import FolderPairSource
    from omnisync_core.model.codec import PixelCodec
    from tiny import WHISPER_LAYERS

    src = FolderPairSource(tiny_dataset, "train", clip_frames=2, codec=PixelCodec(patch=2),
                           num_layers=WHISPER_LAYERS + 1, mouth_weight=10.0, mouth_params=True)
    g = torch.Generator().manual_seed(0)
    for draw in (src.pseudo_paired, src.arbitrary):
        for _ in range(5):
            ex = draw(g, crop=32)
            assert ex["source_latents"].shape == (12, 2, 16, 16) == ex["target_latents"].shape
            assert ex["loss_weight"].shape == (2, 16, 16)
            # the weight's mouth cells (the target's grown box) lie inside the crop, not cut at its border
            inside = ex["loss_weight"] > 1
            assert inside.any()
            assert ((ex["mouth_at"] >= 0) & (ex["mouth_at"] <= 1)).all()
    with pytest.raises(OmniSyncError, match="multiple of the codec"):
        src.pseudo_paired(g, crop=33)


def test_unet_training_run_exports_a_loadable_model(tiny_dataset, tmp_path):
    cfg = json.load(open(os.path.join(ROOT, "configs", "bundled_unet128.json")))
    from tiny import WHISPER_D_MODEL, WHISPER_LAYERS
    cfg.update({"audio": {"encoder": "whisper-tiny-random", "num_layers": WHISPER_LAYERS + 1, "dim": WHISPER_D_MODEL,
                          "frame_window": 2},
                "model_overrides": {"channels": [8, 16], "adapter_dim": 8, "freq_dim": 8, "mouth_params": 5},
                "size": 64, "train_crop": 32, "full_frame_every": 2, "batch_size": 2, "max_steps": 4,
                "log_every": 1, "ckpt_every": 2, "export_every": 2, "warmup_steps": 1})
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "omnisync_core", "train", "--config", str(path), "--data", tiny_dataset,
                          "--out-dir", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "loss_aux=" in res.stdout and "step=4" in res.stdout
    assert (out / "omnisync_ema_step000002.safetensors").exists()
    model, meta = load_checkpoint(str(out / "omnisync_ema.safetensors"))
    assert isinstance(model, OmniSyncUNet) and meta["sampling"] == cfg["sampling"]


def test_sampler_path_batches_start_from_the_source_and_can_be_crops(tiny_dataset):
    """k = 0 of the sampler path is the progressive init from the SOURCE (Eq. 5), the state sampling starts in."""
    from omnisync_core.data.dataset import FolderPairSource
    from omnisync_core.model.codec import PixelCodec
    from omnisync_core.train.config import TrainConfig
    from omnisync_core.train.trainer import draw_rollout_batch, rollout_sigmas
    from tiny import WHISPER_D_MODEL, WHISPER_LAYERS

    src = FolderPairSource(tiny_dataset, "train", clip_frames=2, codec=PixelCodec(patch=2), num_layers=WHISPER_LAYERS + 1)
    cfg = TrainConfig(arch="unet", batch_size=2, rollout_prob=1.0, rollout_steps=1, rollout_tau=0.92)
    model = OmniSyncUNet(UNetConfig(**{**TINY, "audio_dim": (WHISPER_LAYERS + 1) * WHISPER_D_MODEL}))
    batch, noise, x = draw_rollout_batch(model, src, cfg, torch.Generator().manual_seed(0), False, torch.device("cpu"),
                                         crop=32)
    assert batch.source.shape == (2, 12, 2, 16, 16) and torch.allclose(batch.sigma, rollout_sigmas(cfg)[0].expand(2))
    torch.testing.assert_close(x, 0.08 * batch.source + 0.92 * noise)


def test_init_from_takes_a_unet_of_the_same_config_only(tmp_path):
    from omnisync_core.train.trainer import init_from_wan

    model = _randomised(seed=1)
    path = str(tmp_path / "start.safetensors")
    save_checkpoint(path, model, CodecSpec(type="pixel", patch=2), {"encoder": "x", "num_layers": 3, "dim": 8})
    fresh = OmniSyncUNet(UNetConfig(**TINY))
    init_from_wan(fresh, path)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))
    with pytest.raises(OmniSyncError, match="not an OmniSync U-Net of this config"):
        init_from_wan(OmniSyncUNet(UNetConfig(**{**TINY, "channels": (8, 8)})), path)


def test_in_memory_pair_source_refuses_crops():
    from omnisync_core.train.batches import TensorPairSource

    src = TensorPairSource([torch.zeros(12, 2, 8, 8)], pseudo_pairs=[(0, 0)])
    g = torch.Generator().manual_seed(0)
    assert src.arbitrary(g, 0)["target_latents"].shape == (12, 2, 8, 8)
    with pytest.raises(OmniSyncError, match="set train_crop to 0"):
        src.pseudo_paired(g, crop=4)
