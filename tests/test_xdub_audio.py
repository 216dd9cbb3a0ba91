"""X-Dub audio features: golden parity with the reference, the Whisper .pt converter, windows, bad inputs.

tests/fixtures/xdub/audio_features.safetensors holds a tiny random Whisper encoder (openai-whisper names, d_model 32,
2 heads, 2 layers, 80 mels) and a tiny random wav2vec2 (HF names, hidden 32, 2 layers), both as float16 values, and
the features / windows the X-Dub reference (WhisperProcessor / Wav2VecProcessor .audio2feat and
crop_overlap_audio_window, run outside this repo in float32 on CPU) computed for two waveforms built by
:func:`fixture_wave` (a 1.70 s clip and a 30.57 s clip that spans two Whisper windows).
"""

import json
import math
import os

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from omnisync_core.audio.xdub_features import (
    XDUB_AUDIO_DIM,
    convert_openai_whisper,
    openai_whisper_encoder_to_hf,
    extract_xdub_features,
    load_xdub_audio_encoders,
    xdub_audio_windows,
    xdub_window_indices,
)
from omnisync_core.audio.wav2vec2 import wav2vec2_encoder_tensors
from omnisync_core.errors import OmniSyncError

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "xdub", "audio_features.safetensors")
TOL = 1e-5  # float32 parity bound asked by the issue


def fixture_wave(num_samples, silent, loud_from):
    """int16 pseudo-noise; zeros in [silent[0], silent[1]); 4× louder from loud_from on (same as the generator)."""
    n = np.arange(num_samples, dtype=np.int64)
    noise = (n * n * 40503 + n * 9973) % 65521 - 32760
    gain = np.where(n >= loud_from, 4, 1)
    wave = noise * gain // 8
    wave[silent[0]:silent[1]] = 0
    return wave.astype(np.int16)


def sinusoids(length, channels, max_timescale=10000):
    """openai-whisper's fixed positional embedding (stored in every .pt as encoder.positional_embedding)."""
    log_timescale_increment = np.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-log_timescale_increment * torch.arange(channels // 2))
    scaled_time = torch.arange(length)[:, np.newaxis] * inv_timescales[np.newaxis, :]
    return torch.cat([torch.sin(scaled_time), torch.cos(scaled_time)], dim=1)


def _fixture():
    with safe_open(FIXTURE, framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def make_openai_pt(path, tensors, dims):
    """A tiny checkpoint in openai-whisper's .pt layout: {'dims': dict, 'model_state_dict': encoder + decoder}."""
    sd = {k[len("whisper."):]: v.float() for k, v in tensors.items() if k.startswith("whisper.")}
    sd["encoder.positional_embedding"] = sinusoids(dims["n_audio_ctx"], dims["n_audio_state"])
    g = torch.Generator().manual_seed(0)
    d = dims["n_text_state"]
    sd["decoder.token_embedding.weight"] = torch.randn(dims["n_vocab"], d, generator=g)
    sd["decoder.positional_embedding"] = torch.randn(dims["n_text_ctx"], d, generator=g)
    sd["decoder.blocks.0.attn.query.weight"] = torch.randn(d, d, generator=g)
    sd["decoder.ln.weight"] = torch.ones(d)
    torch.save({"dims": dims, "model_state_dict": sd}, path)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    tensors, meta = _fixture()
    root = tmp_path_factory.mktemp("xdub_audio")
    dims = json.loads(meta["whisper_dims"])
    pt = make_openai_pt(str(root / "tiny-whisper.pt"), tensors, dims)
    whisper_st = str(root / "tiny-whisper-encoder.safetensors")
    summary = convert_openai_whisper(pt, whisper_st)

    config = Wav2Vec2Config(**json.loads(meta["wav2vec2_config"]))
    w2v = Wav2Vec2Model(config)
    w2v.load_state_dict({k[len("wav2vec2."):]: v.float() for k, v in tensors.items() if k.startswith("wav2vec2.")})
    w2v_dir = str(root / "tiny-wav2vec2")  # a transformers folder, written directly (save_pretrained is slower)
    os.makedirs(w2v_dir)
    save_file({k: v.contiguous() for k, v in w2v.state_dict().items()}, os.path.join(w2v_dir, "model.safetensors"))
    config.to_json_file(os.path.join(w2v_dir, "config.json"))
    with open(os.path.join(w2v_dir, "preprocessor_config.json"), "w") as f:
        json.dump({"feature_extractor_type": "Wav2Vec2FeatureExtractor", "do_normalize": True, "feature_size": 1,
                   "sampling_rate": 16000, "padding_value": 0.0, "return_attention_mask": False}, f)
    encoders = load_xdub_audio_encoders(whisper_st, w2v_dir)
    feats = {}
    for clip in ("short", "long"):
        wave = fixture_wave(**json.loads(meta[clip]))
        feats[clip] = extract_xdub_features(encoders, wave, 16000)  # int16 PCM → /32768, as the reference's loader
    return dict(tensors=tensors, meta=meta, root=root, pt=pt, whisper_st=whisper_st, w2v_dir=w2v_dir,
                summary=summary, encoders=encoders, feats=feats, dims=dims)


def _max_err(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max())


# -- parity with the reference ---------------------------------------------------------------------

def test_features_match_reference(setup):
    t = setup["tensors"]
    short, long = setup["feats"]["short"], setup["feats"]["long"]
    assert [short.whisper.shape[0], short.wav2vec.shape[0]] == t["short.lengths"].tolist() == [85, 84]
    assert [long.whisper.shape[0], long.wav2vec.shape[0]] == t["long.lengths"].tolist() == [1528, 1528]
    errs = {
        "short whisper": _max_err(short.whisper, t["short.whisper"]),
        "short wav2vec2": _max_err(short.wav2vec, t["short.wav2vec"]),
        "long whisper (30 s boundary + end)": _max_err(long.whisper[t["long.whisper_rows"]], t["long.whisper"]),
        "long wav2vec2": _max_err(long.wav2vec[t["long.wav2vec_rows"]], t["long.wav2vec"]),
    }
    print("max abs errors:", errs)
    assert all(e <= TOL for e in errs.values()), errs
    # the last window of the long clip was padded explicitly and the result says so
    assert long.whisper_padded_mel_frames == 3000 - (489_123 // 160 - 3000)
    assert "padded with" in long.message and "cut back" in long.message


@pytest.mark.parametrize("name", ["short.windows.s0.n77.w0", "short.windows.s0.n77.w1", "short.windows.s30.n21.w0",
                                  "long.windows.s745.n13.w0", "long.windows.s761.n9.w0"])
def test_windows_match_reference(setup, name):
    clip, _, start, n, w = name.split(".")
    win = xdub_audio_windows(setup["feats"][clip], int(start[1:]), int(n[1:]), frame_window=int(w[1:]))
    ref = setup["tensors"][name]
    err = _max_err(win.tokens, ref)
    print(name, "max abs error", err)
    assert err <= TOL


def test_converter_output(setup):
    s = setup["summary"]
    assert s["tensors"] == 3 + 2 + 2 * 15 + 2 - 1 + 1  # see below: every encoder tensor, no decoder tensor
    assert s["dropped_decoder_tensors"] == 4
    assert s["config"]["d_model"] == 32 and s["config"]["encoder_attention_heads"] == 2
    with safe_open(setup["whisper_st"], framework="pt") as f:
        keys = set(f.keys())
        meta = f.metadata()
        assert f.get_tensor("encoder.layers.1.self_attn.k_proj.weight").dtype == torch.float32  # dtype kept
    assert "encoder.embed_positions.weight" in keys and "encoder.layer_norm.weight" in keys
    assert not any(k.startswith("decoder.") or ".blocks." in k for k in keys)
    assert json.loads(meta["config"])["num_mel_bins"] == 80
    with pytest.raises(OmniSyncError, match="already exists"):
        convert_openai_whisper(setup["pt"], setup["whisper_st"])


def test_converter_matches_openai_names(setup):
    """Each openai tensor lands under its transformers name unchanged (checked on two of each kind)."""
    t = setup["tensors"]
    with safe_open(setup["whisper_st"], framework="pt") as f:
        pairs = {"encoder.conv1.weight": "encoder.conv1.weight",
                 "encoder.blocks.0.attn.query.bias": "encoder.layers.0.self_attn.q_proj.bias",
                 "encoder.blocks.1.attn.key.weight": "encoder.layers.1.self_attn.k_proj.weight",
                 "encoder.blocks.0.attn.out.weight": "encoder.layers.0.self_attn.out_proj.weight",
                 "encoder.blocks.1.attn_ln.weight": "encoder.layers.1.self_attn_layer_norm.weight",
                 "encoder.blocks.0.mlp.2.weight": "encoder.layers.0.fc2.weight",
                 "encoder.blocks.1.mlp_ln.bias": "encoder.layers.1.final_layer_norm.bias",
                 "encoder.ln_post.weight": "encoder.layer_norm.weight"}
        for old, new in pairs.items():
            assert torch.equal(f.get_tensor(new), t["whisper." + old].float()), old


def test_hf_folder_and_single_file_give_the_same_features(setup, tmp_path):
    """Whisper from a transformers folder and wav2vec2 from a lone .safetensors (CTC-style keys) load identically."""
    from transformers import WhisperConfig, WhisperModel

    with safe_open(setup["whisper_st"], framework="pt") as f:
        cfg = WhisperConfig(**json.loads(f.metadata()["config"]), pad_token_id=0, bos_token_id=0, eos_token_id=0,
                            decoder_start_token_id=1)  # a decoder of the tiny vocabulary, only to save a folder
        enc = {k: f.get_tensor(k).float() for k in f.keys()}
    model = WhisperModel(cfg)
    missing, _ = model.load_state_dict(enc, strict=False)
    assert not [k for k in missing if k.startswith("encoder.")]
    folder = str(tmp_path / "whisper-hf")
    model.save_pretrained(folder)
    w2v_single = str(tmp_path / "w2v" / "wav2vec2-ctc.safetensors")
    os.makedirs(os.path.dirname(w2v_single))
    with safe_open(os.path.join(setup["w2v_dir"], "model.safetensors"), framework="pt") as f:
        sd = {"wav2vec2." + k: f.get_tensor(k) for k in f.keys()}
    sd["lm_head.weight"] = torch.zeros(4, 32)  # a CTC head: ignored
    for k in list(sd):  # pre-2.1 weight-norm names, as older wav2vec2 files have them
        if k.endswith("parametrizations.weight.original0"):
            sd[k.replace("parametrizations.weight.original0", "weight_g")] = sd.pop(k)
        elif k.endswith("parametrizations.weight.original1"):
            sd[k.replace("parametrizations.weight.original1", "weight_v")] = sd.pop(k)
    save_file(sd, w2v_single)
    with open(os.path.join(setup["w2v_dir"], "config.json")) as src, \
            open(os.path.join(os.path.dirname(w2v_single), "config.json"), "w") as dst:
        dst.write(src.read())
    enc2 = load_xdub_audio_encoders(folder, w2v_single)
    wave = fixture_wave(**json.loads(setup["meta"]["short"]))
    feats = extract_xdub_features(enc2, wave, 16000)
    ref = setup["feats"]["short"]
    assert _max_err(feats.whisper, ref.whisper) <= 1e-6
    assert _max_err(feats.wav2vec, ref.wav2vec) <= 1e-6


def test_other_rates_are_resampled(setup):
    """48 kHz stereo in → the same features as the 16 kHz mono clip, up to resampling error."""
    from omnisync_core.audio.features import to_mono_16k

    wave16 = to_mono_16k(fixture_wave(**json.loads(setup["meta"]["short"])), 16000).numpy()
    t = np.arange(wave16.shape[0] * 3) / 48000
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    feats = extract_xdub_features(setup["encoders"], np.stack([tone, tone]), 48000)
    assert feats.num_samples == wave16.shape[0]
    assert feats.whisper.shape[0] == wave16.shape[0] // 320


# -- window arithmetic -----------------------------------------------------------------------------

def test_window_indices_by_hand():
    idx = xdub_window_indices(0, 9)  # 3 latent frames, 8 positions each
    assert idx.shape == (3, 8)
    assert idx[0].tolist() == [-6, -5, -4, -3, -2, -1, 0, 1]  # frames -3…0: three before the clip, then frame 0
    assert idx[1].tolist() == list(range(2, 10))  # frames 1…4
    assert idx[2].tolist() == list(range(10, 18))  # frames 5…8
    idx = xdub_window_indices(72, 77, frame_window=1)  # second clip of the reference's 77/5 schedule
    assert idx.shape == (20, 12)
    assert idx[0].tolist() == list(range(2 * 68, 2 * 74))  # frames 68…73 (w = 1 on each side)
    assert idx[-1, -1].item() == 2 * (72 + 76 + 1) + 1


def test_windows_report_clamping(setup):
    short = setup["feats"]["short"]  # 85 Whisper / 84 wav2vec2 features = 42.5 video frames
    win = xdub_audio_windows(short, 0, 77)
    assert win.tokens.shape == (20, 8, 64)
    assert win.before_start == 6  # latent frame 0: frames −3…−1
    past = (xdub_window_indices(0, 77) > 84).sum().item()
    assert win.past_end == {"whisper": past, "wav2vec2": (xdub_window_indices(0, 77) > 83).sum().item()}
    assert "repeat its first feature" in win.message and "repeat its last feature" in win.message
    # positions past the end are the last feature, exactly
    assert torch.equal(win.tokens[-1, :, :32], short.whisper[-1].expand(8, 32))
    assert torch.equal(win.tokens[-1, :, 32:], short.wav2vec[-1].expand(8, 32))
    inside = xdub_audio_windows(short, 10, 5)
    assert inside.before_start == 0 and inside.past_end == {"whisper": 0, "wav2vec2": 0}
    assert torch.equal(inside.tokens[1, :, :32], short.whisper[22:30])  # frames 11…14


def test_total_video_frames(setup):
    assert setup["feats"]["short"].total_video_frames() == math.ceil(27_237 / 16000 * 25)
    assert setup["feats"]["long"].total_video_frames(25) == math.ceil(489_123 / 16000 * 25)


def test_real_size_key_sets_on_meta():
    """Whisper large-v2 in openai-whisper's names (model.py's modules) and wav2vec2-base-960h as its CTC
    checkpoint names it map onto transformers' modules exactly, with every shape right (no weights allocated)."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2Model, WhisperConfig

    from omnisync_core.audio.whisper import _encoder_from_state_dict

    D, M, ctx, layers = 1280, 80, 1500, 32  # large-v2 dims
    shapes = {"conv1.weight": (D, M, 3), "conv1.bias": (D,), "conv2.weight": (D, D, 3), "conv2.bias": (D,),
              "positional_embedding": (ctx, D), "ln_post.weight": (D,), "ln_post.bias": (D,)}
    for i in range(layers):
        for name, shape in {"attn.query.weight": (D, D), "attn.query.bias": (D,), "attn.key.weight": (D, D),
                            "attn.value.weight": (D, D), "attn.value.bias": (D,), "attn.out.weight": (D, D),
                            "attn.out.bias": (D,), "attn_ln.weight": (D,), "attn_ln.bias": (D,),
                            "mlp.0.weight": (4 * D, D), "mlp.0.bias": (4 * D,), "mlp.2.weight": (D, 4 * D),
                            "mlp.2.bias": (D,), "mlp_ln.weight": (D,), "mlp_ln.bias": (D,)}.items():
            shapes[f"blocks.{i}.{name}"] = shape
    openai = {"encoder." + k: torch.empty(s, device="meta", dtype=torch.float16) for k, s in shapes.items()}
    openai["decoder.token_embedding.weight"] = torch.empty(51865, D, device="meta")
    hf, dropped = openai_whisper_encoder_to_hf(openai)
    config = WhisperConfig(num_mel_bins=M, max_source_positions=ctx, d_model=D, encoder_attention_heads=20,
                           encoder_layers=layers, encoder_ffn_dim=4 * D)
    encoder = _encoder_from_state_dict(config, hf, "large-v2 key set")  # raises on a missing / extra key
    assert dropped == 1 and len(hf) == 7 + 15 * layers
    per_layer = 4 * D * D + 3 * D + 2 * 2 * D + (4 * D * D + 4 * D) + (4 * D * D + D)  # attn, 2 LN, fc1, fc2
    by_hand = (D * M * 3 + D) + (D * D * 3 + D) + ctx * D + layers * per_layer + 2 * D
    assert sum(p.numel() for p in encoder.parameters()) == by_hand == 636_784_640  # Whisper large-v2 encoder

    with torch.device("meta"):
        ctc = Wav2Vec2ForCTC(Wav2Vec2Config())  # transformers' defaults are wav2vec2-base-960h's config
        base = Wav2Vec2Model(Wav2Vec2Config())
    hub = {}
    for k, v in ctc.state_dict().items():  # the hub file still uses the old weight-norm names
        k = k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1",
                                                                             "weight_v")
        hub[k] = v
    mapped = wav2vec2_encoder_tensors(hub)
    expected = base.state_dict()
    assert set(mapped) == set(expected)
    assert all(mapped[k].shape == expected[k].shape for k in expected)
    assert base.config.hidden_size + config.d_model == XDUB_AUDIO_DIM == 2048


# -- bad inputs -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    (dict(start_frame=0, num_frames=76), "1 \\+ 4"),
    (dict(start_frame=-1, num_frames=77), "start_frame"),
    (dict(start_frame=0, num_frames=77, fps=30), "25 fps"),
    (dict(start_frame=0, num_frames=77, frame_window=-1), "frame_window"),
])
def test_window_errors(setup, kwargs, match):
    with pytest.raises(OmniSyncError, match=match):
        xdub_audio_windows(setup["feats"]["short"], **kwargs)


def test_loader_errors(setup, tmp_path):
    w2v, wh = setup["w2v_dir"], setup["whisper_st"]
    direct = load_xdub_audio_encoders(setup["pt"], w2v).whisper.state_dict()  # the .pt itself, weights_only
    converted = setup["encoders"].whisper.state_dict()
    assert set(direct) == set(converted) and all(torch.equal(direct[k], converted[k]) for k in direct)
    with pytest.raises(OmniSyncError, match="whisper-large-v2.safetensors not found.*huggingface.co/openai/"
                                            "whisper-large-v2.*large-v2.pt from https://huggingface.co/KlingTeam"):
        load_xdub_audio_encoders(str(tmp_path / "nope"), w2v)
    with pytest.raises(OmniSyncError, match="large-v2.pt not found.*huggingface.co/KlingTeam/X-Dub"):
        load_xdub_audio_encoders(str(tmp_path / "large-v2.pt"), w2v)
    with pytest.raises(OmniSyncError, match="does not exist"):
        load_xdub_audio_encoders(wh, str(tmp_path / "nope"))
    empty = tmp_path / "w2v-bin"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    (empty / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(OmniSyncError, match="pytorch_model.bin.*weights_only"):  # a damaged pickle: one line
        load_xdub_audio_encoders(wh, str(empty))
    with pytest.raises(OmniSyncError, match="wav2vec2"):  # a Whisper file where wav2vec2 belongs
        load_xdub_audio_encoders(wh, wh)
    with pytest.raises(OmniSyncError):  # wav2vec2 where Whisper belongs
        load_xdub_audio_encoders(os.path.join(w2v, "model.safetensors"), w2v)


def test_feature_errors(setup):
    enc = setup["encoders"]
    with pytest.raises(OmniSyncError, match="at least 400"):
        extract_xdub_features(enc, 0.1 * np.sin(np.arange(300, dtype=np.float32)), 16000)  # a constant is silence
    with pytest.raises(OmniSyncError, match="silent"):
        extract_xdub_features(enc, np.zeros(16000, np.float32), 16000)
    with pytest.raises(OmniSyncError, match="load_xdub_audio_encoders"):
        extract_xdub_features(object(), np.zeros(16000, np.float32), 16000)


def test_converter_errors(tmp_path):
    with pytest.raises(OmniSyncError, match="not found"):
        convert_openai_whisper(str(tmp_path / "none.pt"), str(tmp_path / "o.safetensors"))
    not_whisper = str(tmp_path / "other.pt")
    torch.save({"state_dict": {"w": torch.zeros(2)}}, not_whisper)
    with pytest.raises(OmniSyncError, match="not an openai-whisper checkpoint"):
        convert_openai_whisper(not_whisper, str(tmp_path / "o.safetensors"))

    class Evil:  # an object whose unpickling would run code: weights_only refuses it
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = str(tmp_path / "evil.pt")
    torch.save({"dims": {}, "model_state_dict": Evil()}, evil)
    with pytest.raises(OmniSyncError, match="weights_only"):
        convert_openai_whisper(evil, str(tmp_path / "o.safetensors"))
    with pytest.raises(OmniSyncError, match=".safetensors"):
        convert_openai_whisper(not_whisper, str(tmp_path / "o.bin"))


def test_cli_convert_whisper(setup, tmp_path, capsys):
    from omnisync_core.cli import main

    out = str(tmp_path / "whisper.safetensors")
    assert main(["convert-whisper", setup["pt"], out]) == 0
    assert "wrote" in capsys.readouterr().out
    with safe_open(out, framework="pt") as a, safe_open(setup["whisper_st"], framework="pt") as b:
        assert sorted(a.keys()) == sorted(b.keys())
    assert main(["convert-whisper", setup["pt"], out]) == 2  # exists: a one-line error, no traceback
    assert capsys.readouterr().err.startswith("error: ")


def test_xdub_fixtures_stay_small():
    """All X-Dub golden fixtures together stay under the issue's 2 MB; this one under 0.5 MB."""
    folder = os.path.dirname(FIXTURE)
    total = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    assert os.path.getsize(FIXTURE) < 500_000 and total < 2_000_000
