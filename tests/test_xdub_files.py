"""The X-Dub files registry: one source for the README's table, the errors and ComfyUI's model metadata; and the
stand-ins of tests/xdub_standins.py against the publishers' layouts recorded from ComfyUI and the reference."""

import json
import os

import pytest
import torch
from safetensors import safe_open

from omnisync_core.errors import OmniSyncError
from omnisync_core.model.files import (
    XDUB_FILES, accepted_forms, comfy_model_metadata, missing_message, named_source, readme_table, torch_load_is_safe,
    xdub_file, xdub_file_for,
)
from xdub_standins import (
    UMT5_VOCAB, VAE_REAL, VAE_TINY, comfy_from_wan, openai_whisper_shapes, umt5_wan_shapes, wan22_vae_shapes,
    WHISPER_DIMS,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "xdub")


def test_readme_holds_the_registry_table():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert readme_table() in readme
    for f in XDUB_FILES:  # every file, its address and its folder are in the table, once
        assert readme_table().count(f.url) == 1 and f"`{f.directory}/`" in readme_table()


def test_xdub_extra_is_declared_once_and_installed():
    """diffusers (the xdub extra) is declared in pyproject.toml only; CI installs it from there; the README's
    install lines name the same requirement."""
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        extra = tomllib.load(f)["project"]["optional-dependencies"]["xdub"]
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        assert "extras xdub" in f.read()
    from omnisync_core.model.wan22_vae import DIFFUSERS_HINT, XDUB_EXTRA

    assert extra == [XDUB_EXTRA] and f'pip install "{XDUB_EXTRA}"' in DIFFUSERS_HINT
    for spec in extra:
        assert readme.count(f'pip install "{spec}"') == 1 and f'requirements-dev.txt "{spec}"' in readme
        for req in ("requirements.txt", "requirements-dev.txt"):
            with open(os.path.join(ROOT, req), encoding="utf-8") as f:
                assert spec.split(">")[0] not in f.read()


def test_registry_entries_as_published():
    names = {f.key: (f.repo, f.path_in_repo, f.directory) for f in XDUB_FILES}
    assert names["xdub_model"] == ("KlingTeam/X-Dub", "X-Dub_model.safetensors", "diffusion_models")
    assert names["wan22_vae"] == ("KlingTeam/X-Dub", "Wan2.2_VAE.safetensors", "vae")
    assert names["umt5_wan"] == ("KlingTeam/X-Dub", "models_t5_umt5-xxl-enc-bf16.safetensors", "text_encoders")
    assert names["whisper"] == ("openai/whisper-large-v2", "model.safetensors", "audio_encoders")
    assert names["whisper_pt"] == ("KlingTeam/X-Dub", "whisper/large-v2.pt", "audio_encoders")
    assert names["wav2vec2"] == ("facebook/wav2vec2-base-960h", "model.safetensors", "audio_encoders")
    assert names["wav2vec2_folder"] == ("KlingTeam/X-Dub", "wav2vec2-base-960h/", "audio_encoders")
    assert names["umt5_comfy"] == ("Comfy-Org/Wan_2.1_ComfyUI_repackaged",
                                   "split_files/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors", "text_encoders")
    assert xdub_file("X-Dub_model.safetensors").key == "xdub_model"
    with pytest.raises(KeyError):
        xdub_file("nope")


def test_comfy_model_metadata():
    assert comfy_model_metadata("xdub_model") == {
        "name": "X-Dub_model.safetensors", "directory": "diffusion_models",
        "url": "https://huggingface.co/KlingTeam/X-Dub/resolve/main/X-Dub_model.safetensors"}
    assert comfy_model_metadata("umt5_comfy")["url"] == ("https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/"
                                                         "resolve/main/split_files/text_encoders/"
                                                         "umt5_xxl_fp8_e4m3fn_scaled.safetensors")
    # the speech encoders: the publishers' single files, saved under names of their own (the dialog downloads
    # a file whose name ends in .safetensors)
    assert comfy_model_metadata("whisper") == {
        "name": "whisper-large-v2.safetensors", "directory": "audio_encoders",
        "url": "https://huggingface.co/openai/whisper-large-v2/resolve/main/model.safetensors"}
    assert comfy_model_metadata("wav2vec2") == {
        "name": "wav2vec2-base-960h.safetensors", "directory": "audio_encoders",
        "url": "https://huggingface.co/facebook/wav2vec2-base-960h/resolve/main/model.safetensors"}
    with pytest.raises(ValueError, match="folder"):
        comfy_model_metadata("wav2vec2_folder")
    with pytest.raises(ValueError, match="folder"):
        comfy_model_metadata("umt5_tokenizer")


def test_alternative_forms_of_the_speech_encoders():
    """The bundle's large-v2.pt and wav2vec2 folder stand in for the single files: an error about a path names the
    form that path has first, then the other; a renamed file says what to save it as."""
    assert [f.key for f in accepted_forms("whisper")] == ["whisper", "whisper_pt"]
    assert [f.key for f in accepted_forms("wav2vec2_folder")] == ["wav2vec2", "wav2vec2_folder"]
    assert [f.key for f in accepted_forms("xdub_model")] == ["xdub_model"]
    assert xdub_file_for("whisper", "checkpoints/whisper/large-v2.pt").key == "whisper_pt"
    assert xdub_file_for("whisper", "x/whisper-large-v2.safetensors").key == "whisper"
    assert xdub_file_for("whisper", "x/some-hf-folder").key == "whisper"  # no folder form: the primary
    assert xdub_file_for("wav2vec2", "checkpoints/wav2vec2-base-960h").key == "wav2vec2_folder"
    assert xdub_file_for("wav2vec2", "x/wav2vec2-base-960h.safetensors").key == "wav2vec2"
    single, folder = xdub_file("wav2vec2"), xdub_file("wav2vec2_folder")
    assert single.renamed and single.published_name == "model.safetensors" and not folder.renamed
    assert "save it as ComfyUI/models/audio_encoders/wav2vec2-base-960h.safetensors" in single.source()
    msg = missing_message("wav2vec2_folder", "/x/wav2vec2-base-960h", "--wav2vec")
    assert msg.index(folder.url) < msg.index(single.url) and "\n" not in msg
    assert "Also accepted" not in missing_message("xdub_model", "/x/m.safetensors")


def test_errors_name_file_source_and_folder():
    msg = missing_message("wan22_vae", "/x/vae.safetensors", "--vae")
    assert "Wan2.2_VAE.safetensors" in msg and xdub_file("wan22_vae").url in msg and "models/vae/" in msg
    assert "\n" not in msg and "--vae" in msg
    with pytest.raises(OmniSyncError) as e:
        with named_source("xdub_model"):
            raise OmniSyncError("'m.safetensors' lacks blocks.0.")
    assert str(e.value).count(xdub_file("xdub_model").url) == 1
    with pytest.raises(OmniSyncError) as e:  # a message that already names the source is left as it is
        with named_source("xdub_model"):
            raise OmniSyncError(missing_message("xdub_model", "m"))
    assert str(e.value) == missing_message("xdub_model", "m")


def test_pickle_reader_needs_torch_2_6():
    assert torch_load_is_safe("2.6.0") and torch_load_is_safe("2.13.0+cpu")
    assert not torch_load_is_safe("2.5.1") and not torch_load_is_safe("2.4.0+cu121")


# -- the stand-ins are the publishers' layouts --------------------------------------------------------

def test_vae_standin_layout_is_comfyuis():
    """The key/shape list written from Wan's module structure = the state dict of ComfyUI's own Wan 2.2 VAE
    (the golden fixture's weights were saved from it)."""
    with safe_open(os.path.join(FIXTURES, "wan22_vae_tiny_weights.safetensors"), framework="pt") as f:
        comfy = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    tiny = dict(VAE_TINY, mult=(1, 2, 2, 2))
    assert wan22_vae_shapes(**tiny) == comfy


def test_real_vae_config_on_meta():
    """The published Wan2.2_VAE.safetensors' key set gives diffusers' Wan 2.2 config and loads into it exactly."""
    from diffusers import AutoencoderKLWan

    from omnisync_core.model.wan22_vae import wan22_config_from_shapes, wan22_to_diffusers_keys

    shapes = wan22_vae_shapes(**VAE_REAL)
    cfg = wan22_config_from_shapes(shapes, "real")
    assert (cfg["base_dim"], cfg["decoder_base_dim"], cfg["z_dim"], cfg["dim_mult"], cfg["num_res_blocks"]) == \
        (160, 256, 48, [1, 2, 4, 4], 2)
    assert (cfg["temperal_downsample"], cfg["scale_factor_spatial"], cfg["patch_size"]) == ([False, True, True], 16, 2)
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in AutoencoderKLWan(**cfg).state_dict().items()}
    assert {wan22_to_diffusers_keys(k, 2): v for k, v in shapes.items()} == expected


def test_umt5_standins_are_the_publishers_layouts():
    with safe_open(os.path.join(FIXTURES, "umt5_wan_tiny_weights.safetensors"), framework="pt") as f:
        ref = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # saved from the reference WanTextEncoder
    assert set(umt5_wan_shapes(vocab=64, dim=32, ffn=48, heads=4, layers=2, buckets=8)) == set(ref)
    assert umt5_wan_shapes(vocab=64, dim=32, ffn=48, heads=4, layers=2, buckets=8) == ref
    with open(os.path.join(FIXTURES, "umt5_comfy_fp8_keys.json")) as f:
        comfy = json.load(f)["keys"]  # ComfyUI's umT5 with scaled-fp8 ops (d_model 32, d_ff 48, 4 heads, 2 layers)
    wan = {k: torch.zeros(s) for k, s in umt5_wan_shapes(vocab=64, dim=32, ffn=48, heads=4, layers=2).items()}
    ours = {k: [list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in comfy_from_wan(wan, fp8=True).items()}
    norms = [k for k in comfy if comfy[k][1] == "float32" and not k.endswith("scale_weight")]
    for k in norms:  # ComfyUI keeps norms and embeddings in the file's float type; ours are float16
        ours[k][1] = "float32"
    assert ours == comfy
    assert len(UMT5_VOCAB) < 64


def test_whisper_standin_is_openai_whispers_layout():
    from omnisync_core.audio.xdub_features import openai_whisper_encoder_to_hf

    shapes = openai_whisper_shapes(WHISPER_DIMS)
    enc, dropped = openai_whisper_encoder_to_hf({k: torch.zeros(s) for k, s in shapes.items()})
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    cfg = WhisperConfig(num_mel_bins=80, max_source_positions=1500, d_model=WHISPER_DIMS["n_audio_state"],
                        encoder_attention_heads=4, encoder_layers=2, encoder_ffn_dim=4 * WHISPER_DIMS["n_audio_state"])
    with torch.device("meta"):
        expected = {"encoder." + k: tuple(v.shape) for k, v in WhisperEncoder(cfg).state_dict().items()}
    assert {k: tuple(v.shape) for k, v in enc.items()} == expected and dropped > 0
