"""X-Dub's speech encoders read from their publishers' single ``model.safetensors`` files, which carry no
configuration: the config derived from the tensor shapes equals the published one (wav2vec2-base-960h, a
layer-norm wav2vec2, Whisper large-v2, checked on meta tensors), the features equal those of the config.json route
exactly (tiny stand-ins in the publishers' layouts, tests/xdub_standins.py), and a wrong, damaged or truncated file
is one error line that names the published source."""

import json
import os
import shutil

import numpy as np
import pytest
import torch

from omnisync_core.audio.wav2vec2 import wav2vec2_config_from_shapes
from omnisync_core.audio.whisper import whisper_config_from_shapes
from omnisync_core.audio.xdub_features import extract_xdub_features, load_xdub_audio_encoders
from omnisync_core.errors import OmniSyncError
from omnisync_core.model.files import xdub_file
from tiny import make_speech_like
from xdub_standins import (
    single_wav2vec2_config, single_whisper_config, write_single_files, write_wan22_vae, write_wav2vec2_folder,
    write_whisper_pt,
)

# facebook/wav2vec2-base-960h's config.json, by hand (the fields that shape the encoder)
BASE_960H = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                 conv_dim=(512,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
                 conv_bias=False, feat_extract_norm="group", do_stable_layer_norm=False, num_conv_pos_embeddings=128,
                 num_conv_pos_embedding_groups=16, vocab_size=32)
# facebook/wav2vec2-large-960h-lv60-self's: the layer-norm ("stable") layout
LARGE_LV60 = dict(BASE_960H, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                  conv_bias=True, feat_extract_norm="layer", do_stable_layer_norm=True)
# openai/whisper-large-v2's config.json, the encoder's fields
LARGE_V2 = dict(d_model=1280, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120, num_mel_bins=80,
                max_source_positions=1500)
LARGE_V2_DECODER = dict(decoder_layers=32, decoder_attention_heads=20, decoder_ffn_dim=5120, vocab_size=51865,
                        max_target_positions=448)  # only to build the whole model the file holds
HUB_WEIGHT_NORM = (("parametrizations.weight.original0", "weight_g"), ("parametrizations.weight.original1", "weight_v"))


def hub_shapes(model_class, config, drop=(), old_names=True):
    """Key → shape of ``model_class(config)`` on meta, with the hub files' old weight-norm names (or torch's)."""
    with torch.device("meta"):
        sd = model_class(config).state_dict()
    out = {}
    for key, value in sd.items():
        for new, old in HUB_WEIGHT_NORM if old_names else ():
            key = key.replace(new, old)
        if key not in drop:
            out[key] = tuple(value.shape)
    return out


@pytest.mark.parametrize("published", [BASE_960H, LARGE_LV60], ids=["base-960h", "large-960h-lv60-self"])
def test_wav2vec2_config_from_the_published_shapes(published):
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    shapes = hub_shapes(Wav2Vec2ForCTC, Wav2Vec2Config(**published))
    assert "wav2vec2.encoder.pos_conv_embed.conv.weight_g" in shapes and "lm_head.weight" in shapes
    derived = wav2vec2_config_from_shapes(shapes, "hub")
    assert {k: (tuple(v) if isinstance(v, list) else v) for k, v in derived.to_dict().items() if k in published} == \
        published
    new_names = hub_shapes(Wav2Vec2ForCTC, Wav2Vec2Config(**published), old_names=False)  # torch >= 2.1's names
    assert wav2vec2_config_from_shapes(new_names, "hub").to_dict() == derived.to_dict()


def test_whisper_config_from_the_published_shapes():
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    shapes = hub_shapes(WhisperForConditionalGeneration, WhisperConfig(**LARGE_V2, **LARGE_V2_DECODER),
                        drop=("proj_out.weight",))
    assert "model.decoder.embed_tokens.weight" in shapes
    derived = whisper_config_from_shapes(shapes, "hub")
    assert {k: getattr(derived, k) for k in LARGE_V2} == LARGE_V2
    encoder_only = {k[len("model."):]: v for k, v in shapes.items() if k.startswith("model.encoder.")}
    assert whisper_config_from_shapes(encoder_only, "encoder").to_dict() == derived.to_dict()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The single files with no config anywhere, and the same files with their config.json beside them."""
    root = tmp_path_factory.mktemp("single")
    paths = write_single_files(str(root / "bare"))
    with_config = {}
    for key, config in (("whisper", single_whisper_config()), ("wav2vec2", single_wav2vec2_config())):
        folder = root / f"{key}_with_config"
        folder.mkdir()
        with_config[key] = str(folder / os.path.basename(paths[key]))
        shutil.copy(paths[key], with_config[key])
        config.to_json_file(str(folder / "config.json"))
    return {"bare": paths, "config": with_config, "root": root}


def test_no_config_anywhere(files):
    folder = os.path.dirname(files["bare"]["whisper"])
    assert sorted(os.listdir(folder)) == ["wav2vec2-base-960h.safetensors", "whisper-large-v2.safetensors"]


def test_derived_configs_give_exactly_the_config_json_features(files):
    wave = make_speech_like(1.3)
    bare = load_xdub_audio_encoders(files["bare"]["whisper"], files["bare"]["wav2vec2"])
    ref = load_xdub_audio_encoders(files["config"]["whisper"], files["config"]["wav2vec2"])
    for name, derived, published in (("whisper", bare.whisper.config, single_whisper_config()),
                                     ("wav2vec2", bare.wav2vec.config, single_wav2vec2_config())):
        fields = ("d_model", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim", "num_mel_bins",
                  "max_source_positions") if name == "whisper" else tuple(k for k in BASE_960H)
        assert {f: getattr(derived, f) for f in fields} == {f: getattr(published, f) for f in fields}, name
    assert bare.normalize_wav2vec and ref.normalize_wav2vec  # base-960h's preprocessor: do_normalize
    a, b = extract_xdub_features(bare, wave, 16000), extract_xdub_features(ref, wave, 16000)
    assert a.whisper.shape == (65, 64) and a.wav2vec.shape[1] == 64
    assert torch.equal(a.whisper, b.whisper) and torch.equal(a.wav2vec, b.wav2vec)
    assert float(a.wav2vec.std()) > 0.1 and float(a.whisper.std()) > 0.1  # not a constant


def test_a_preprocessor_config_beside_the_file_still_decides_normalisation(files, tmp_path):
    path = str(tmp_path / "wav2vec2-base-960h.safetensors")
    shutil.copy(files["bare"]["wav2vec2"], path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"do_normalize": False}))
    enc = load_xdub_audio_encoders(files["bare"]["whisper"], path)
    assert enc.normalize_wav2vec is False


def _one_line(exc):
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_wrong_damaged_and_truncated_single_files(files, tmp_path):
    wh, w2v = files["bare"]["whisper"], files["bare"]["wav2vec2"]
    wh_url, w2v_url = xdub_file("whisper").url, xdub_file("wav2vec2").url
    vae = write_wan22_vae(str(tmp_path / "Wan2.2_VAE.safetensors"))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(open(w2v, "rb").read()[:50_000])
    cases = [
        (wh, wh, "not a wav2vec2 checkpoint", w2v_url),  # Whisper given as wav2vec2
        (w2v, w2v, "not a Whisper checkpoint", wh_url),  # wav2vec2 given as Whisper
        (wh, vae, "not a wav2vec2 checkpoint", w2v_url),  # the Wan VAE given as wav2vec2
        (vae, w2v, "not a Whisper checkpoint", wh_url),  # … and as Whisper (it has encoder.conv1.weight, 5-D)
        (wh, str(garbage), "not a readable safetensors", w2v_url),
        (wh, str(truncated), "not a readable safetensors", w2v_url),
        (str(garbage), w2v, "not a readable safetensors", wh_url),
    ]
    for whisper, wav2vec, words, url in cases:
        with pytest.raises(OmniSyncError) as e:
            load_xdub_audio_encoders(whisper, wav2vec)
        text = _one_line(e)
        assert words in text and url in text, (os.path.basename(whisper), os.path.basename(wav2vec), text)


def test_the_bundles_forms_still_load_and_name_their_own_source(tmp_path):
    """The Kling bundle's large-v2.pt and wav2vec2-base-960h/ folder are accepted alternatives: they load, and an
    error about one names its own source first and the single file second."""
    pt = write_whisper_pt(str(tmp_path / "large-v2.pt"))
    folder = write_wav2vec2_folder(str(tmp_path / "wav2vec2-base-960h"))
    enc = load_xdub_audio_encoders(pt, folder)
    assert enc.dims[1] == 8
    with pytest.raises(OmniSyncError) as e:
        load_xdub_audio_encoders(str(tmp_path / "missing" / "large-v2.pt"), folder)
    text = _one_line(e)
    assert text.index(xdub_file("whisper_pt").url) < text.index(xdub_file("whisper").url)
    with pytest.raises(OmniSyncError) as e:
        load_xdub_audio_encoders(pt, str(tmp_path / "missing-folder"))
    text = _one_line(e)
    assert text.index(xdub_file("wav2vec2_folder").url) < text.index(xdub_file("wav2vec2").url)
