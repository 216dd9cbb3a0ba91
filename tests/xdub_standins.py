"""Tiny random stand-ins of the X-Dub files, written in exactly their publishers' formats and names.

:func:`write_bundle` lays out ``hf download KlingTeam/X-Dub`` as the reference README shows it (``checkpoints/``:
``X-Dub_model.safetensors``, ``Wan2.2_VAE.safetensors``, ``models_t5_umt5-xxl-enc-bf16.safetensors``, ``umt5-xxl/``,
``whisper/large-v2.pt``, ``wav2vec2-base-960h/``) and Comfy-Org's ``umt5_xxl_fp8_e4m3fn_scaled.safetensors`` beside
it. Each file holds random weights at test size, in the publisher's key layout and container:

- the DiT: X-Dub's ``LipSyncModel`` state dict, bare keys, safetensors;
- the VAE: Wan 2.2's ``vae2_2.WanVAE`` state dict (``encoder.downsamples.i.downsamples.j.residual.k``…), safetensors
  (the key/shape list is written here from Wan's module structure and checked against ComfyUI's own module);
- umT5 in Wan's layout (``token_embedding``, ``blocks.N.attn.q``…), bf16, as ``wan/modules/t5.py`` names it; and in
  ComfyUI's (transformers' names, float8_e4m3fn weights with a float32 ``scale_weight`` each and a ``scaled_fp8``
  marker, as ComfyUI's scaled-fp8 ops save it; checked against a key list recorded from ComfyUI);
- Whisper: ``torch.save({"dims": …, "model_state_dict": …})`` exactly as openai-whisper saves its checkpoints
  (encoder and decoder, openai's names, float16);
- wav2vec2: a Hugging Face folder of ``Wav2Vec2ForCTC`` (``wav2vec2.*`` + ``lm_head.*`` keys) with config.json and
  preprocessor_config.json, as facebook/wav2vec2-base-960h ships it (model.safetensors, or pytorch_model.bin).

:func:`write_single_files` writes the two speech encoders as their own publishers ship them on their own, one
``model.safetensors`` each with no configuration anywhere (saved under the registry's names, as a user does), and a
test-size X-Dub DiT whose speech input fits them:

- openai/whisper-large-v2's ``model.safetensors``: ``WhisperForConditionalGeneration`` keys (``model.encoder.*``,
  ``model.decoder.*``; no ``proj_out.weight``, which is tied to the token embedding), float32, metadata
  ``{"format": "pt"}``;
- facebook/wav2vec2-base-960h's ``model.safetensors``: ``Wav2Vec2ForCTC`` keys (``wav2vec2.*`` + ``lm_head.*``),
  the positional conv's weight norm as ``weight_g`` / ``weight_v``, float32, metadata ``{"format": "pt"}``.

Both keep the real models' conventions the loader derives a configuration from (64-wide attention heads; for
wav2vec2 the base model's 7 convs with their kernels and strides, no conv biases, a group norm on conv 0 only).
"""

from __future__ import annotations

import json
import math
import os
from typing import Dict, Sequence, Tuple

import torch
from safetensors.torch import save_file

from tiny import WHISPER_D_MODEL, XDUB_WAV2VEC_DIM

TEXT_DIM = 16  # the tiny DiT's text width = the tiny umT5's d_model
UMT5_VOCAB = ("<pad>", "</s>", "<unk>", "a", "face", "that", "talks")
WHISPER_DIMS = {"n_mels": 80, "n_vocab": 51865, "n_audio_ctx": 1500, "n_audio_state": WHISPER_D_MODEL,
                "n_audio_head": 4, "n_audio_layer": 2, "n_text_ctx": 16, "n_text_state": WHISPER_D_MODEL,
                "n_text_head": 4, "n_text_layer": 1}  # openai-whisper's ModelDimensions, as a dict (asdict)
VAE_TINY = dict(base=4, dec_base=4, z=48, mult=(1, 2, 2, 2), nrb=1, temporal=(False, True, True))
VAE_REAL = dict(base=160, dec_base=256, z=48, mult=(1, 2, 4, 4), nrb=2, temporal=(False, True, True))  # Wan2.2_VAE


def _random(shapes: Dict[str, Tuple[int, ...]], seed: int, dtype=torch.float32) -> Dict[str, torch.Tensor]:
    """Seeded weights of a sensible scale: norms ≈ 1, biases ≈ 0, matrices ~ N(0, 1/fan_in)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key in sorted(shapes):
        shape = shapes[key]
        if key.endswith(("gamma", "norm.weight", "ln.weight", "_ln.weight", "ln_post.weight", "layer_norm.weight",
                         "norm1.weight", "norm2.weight")):
            t = 1 + 0.1 * torch.randn(shape, generator=g)
        elif key.endswith("bias"):
            t = 0.02 * torch.randn(shape, generator=g)
        else:
            fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
            t = torch.randn(shape, generator=g) / math.sqrt(fan_in)
        out[key] = t.to(dtype).contiguous()
    return out


# -- X-Dub's DiT ------------------------------------------------------------------------------------

def write_xdub_model(path: str, seed: int = 0, audio_dim: int = WHISPER_D_MODEL + XDUB_WAV2VEC_DIM) -> str:
    """``X-Dub_model.safetensors``: the bare state dict of a test-size X-Dub DiT (published key names) whose speech
    input is ``audio_dim`` wide (Whisper + wav2vec2 widths)."""
    from omnisync_core.model.config import AudioProjConfig, DiTConfig
    from omnisync_core.model.xdub_dit import XDubDiT

    torch.manual_seed(seed)
    audio = audio_dim
    cfg = DiTConfig(dim=128, ffn_dim=256, num_heads=1, num_layers=1, latent_channels=48, text_dim=TEXT_DIM,
                    freq_dim=32, audio_dim=audio, source_layout="sequence",
                    audio_proj=AudioProjConfig(input_dim=audio, dim=64, num_layers=1, num_heads=1))
    model = XDubDiT(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():  # no zero-initialised layer: every pass differs
            if "head" in name or name.endswith((".o.weight", ".o.bias")):
                p.copy_(torch.randn(p.shape) * 0.02)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    return path


# -- Wan 2.2's VAE ----------------------------------------------------------------------------------

def _residual(prefix: str, cin: int, cout: int) -> Dict[str, Tuple[int, ...]]:
    s = {f"{prefix}.residual.0.gamma": (cin, 1, 1, 1), f"{prefix}.residual.2.weight": (cout, cin, 3, 3, 3),
         f"{prefix}.residual.2.bias": (cout,), f"{prefix}.residual.3.gamma": (cout, 1, 1, 1),
         f"{prefix}.residual.6.weight": (cout, cout, 3, 3, 3), f"{prefix}.residual.6.bias": (cout,)}
    if cin != cout:
        s.update({f"{prefix}.shortcut.weight": (cout, cin, 1, 1, 1), f"{prefix}.shortcut.bias": (cout,)})
    return s


def _middle(prefix: str, c: int) -> Dict[str, Tuple[int, ...]]:
    s = {**_residual(f"{prefix}.middle.0", c, c), **_residual(f"{prefix}.middle.2", c, c)}
    s.update({f"{prefix}.middle.1.norm.gamma": (c, 1, 1), f"{prefix}.middle.1.to_qkv.weight": (3 * c, c, 1, 1),
              f"{prefix}.middle.1.to_qkv.bias": (3 * c,), f"{prefix}.middle.1.proj.weight": (c, c, 1, 1),
              f"{prefix}.middle.1.proj.bias": (c,)})
    return s


def wan22_vae_shapes(base: int, dec_base: int, z: int, mult: Sequence[int], nrb: int,
                     temporal: Sequence[bool]) -> Dict[str, Tuple[int, ...]]:
    """Keys and shapes of Wan 2.2's ``WanVAE`` (``wan/modules/vae2_2.py``; patch 2 → 12 input channels)."""
    s: Dict[str, Tuple[int, ...]] = {}
    dims = [base * m for m in [1, *mult]]
    s["encoder.conv1.weight"], s["encoder.conv1.bias"] = (dims[0], 12, 3, 3, 3), (dims[0],)
    for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
        for j in range(nrb):
            s.update(_residual(f"encoder.downsamples.{i}.downsamples.{j}", cin if j == 0 else cout, cout))
        if i != len(mult) - 1:  # every stage but the last halves H and W (and T where temporal[i])
            r = f"encoder.downsamples.{i}.downsamples.{nrb}"
            s[f"{r}.resample.1.weight"], s[f"{r}.resample.1.bias"] = (cout, cout, 3, 3), (cout,)
            if temporal[i]:
                s[f"{r}.time_conv.weight"], s[f"{r}.time_conv.bias"] = (cout, cout, 3, 1, 1), (cout,)
    s.update(_middle("encoder", dims[-1]))
    s["encoder.head.0.gamma"] = (dims[-1], 1, 1, 1)
    s["encoder.head.2.weight"], s["encoder.head.2.bias"] = (2 * z, dims[-1], 3, 3, 3), (2 * z,)
    s["conv1.weight"], s["conv1.bias"] = (2 * z, 2 * z, 1, 1, 1), (2 * z,)
    s["conv2.weight"], s["conv2.bias"] = (z, z, 1, 1, 1), (z,)
    up = list(temporal)[::-1]
    dims = [dec_base * m for m in [mult[-1], *mult[::-1]]]
    s["decoder.conv1.weight"], s["decoder.conv1.bias"] = (dims[0], z, 3, 3, 3), (dims[0],)
    s.update(_middle("decoder", dims[0]))
    for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
        for j in range(nrb + 1):
            s.update(_residual(f"decoder.upsamples.{i}.upsamples.{j}", cin if j == 0 else cout, cout))
        if i != len(mult) - 1:
            r = f"decoder.upsamples.{i}.upsamples.{nrb + 1}"
            s[f"{r}.resample.1.weight"], s[f"{r}.resample.1.bias"] = (cout, cout, 3, 3), (cout,)
            if i < len(up) and up[i]:
                s[f"{r}.time_conv.weight"], s[f"{r}.time_conv.bias"] = (2 * cout, cout, 3, 1, 1), (2 * cout,)
    s["decoder.head.0.gamma"] = (dims[-1], 1, 1, 1)
    s["decoder.head.2.weight"], s["decoder.head.2.bias"] = (12, dims[-1], 3, 3, 3), (12,)
    return s


def write_wan22_vae(path: str, seed: int = 0) -> str:
    """``Wan2.2_VAE.safetensors``: a test-size Wan 2.2 VAE (48 latent channels) in Wan's key layout, float32."""
    sd = _random(wan22_vae_shapes(**VAE_TINY), seed)
    sd["decoder.head.2.weight"] = sd["decoder.head.2.weight"] * 0.3  # decoded frames stay mostly inside [-1, 1]
    save_file(sd, path)
    return path


# -- umT5 -------------------------------------------------------------------------------------------

def umt5_wan_shapes(vocab: int = len(UMT5_VOCAB), dim: int = TEXT_DIM, ffn: int = 32, heads: int = 2,
                    layers: int = 1, buckets: int = 32) -> Dict[str, Tuple[int, ...]]:
    """Keys and shapes of Wan's ``T5Encoder`` (umT5: a relative-position table in every block)."""
    s = {"token_embedding.weight": (vocab, dim), "norm.weight": (dim,)}
    for b in range(layers):
        p = f"blocks.{b}"
        s.update({f"{p}.norm1.weight": (dim,), f"{p}.norm2.weight": (dim,),
                  f"{p}.pos_embedding.embedding.weight": (buckets, heads),
                  f"{p}.ffn.gate.0.weight": (ffn, dim), f"{p}.ffn.fc1.weight": (ffn, dim),
                  f"{p}.ffn.fc2.weight": (dim, ffn)})
        s.update({f"{p}.attn.{n}.weight": (dim, dim) for n in "qkvo"})
    return s


def write_umt5_wan(path: str, seed: int = 1) -> str:
    """``models_t5_umt5-xxl-enc-bf16.safetensors``: umT5 in Wan's layout, bfloat16."""
    save_file(_random(umt5_wan_shapes(), seed, torch.bfloat16), path)
    return path


_WAN_TO_COMFY = (("token_embedding.weight", "shared.weight"), ("norm.weight", "encoder.final_layer_norm.weight"))
_BLOCK_TO_COMFY = {"norm1.weight": "0.layer_norm.weight", "attn.q.weight": "0.SelfAttention.q.weight",
                   "attn.k.weight": "0.SelfAttention.k.weight", "attn.v.weight": "0.SelfAttention.v.weight",
                   "attn.o.weight": "0.SelfAttention.o.weight",
                   "pos_embedding.embedding.weight": "0.SelfAttention.relative_attention_bias.weight",
                   "norm2.weight": "1.layer_norm.weight", "ffn.gate.0.weight": "1.DenseReluDense.wi_0.weight",
                   "ffn.fc1.weight": "1.DenseReluDense.wi_1.weight", "ffn.fc2.weight": "1.DenseReluDense.wo.weight"}


def comfy_from_wan(wan: Dict[str, torch.Tensor], fp8: bool) -> Dict[str, torch.Tensor]:
    """The same umT5 as Comfy-Org repackages it: transformers' names; with ``fp8``, every Linear weight as
    float8_e4m3fn over a float32 ``scale_weight`` (max |w| / 448) and a ``scaled_fp8`` marker; else float16."""
    out = {}
    for key, value in wan.items():
        new = dict(_WAN_TO_COMFY).get(key)
        if new is None:
            _, b, rest = key.split(".", 2)
            new = f"encoder.block.{b}.layer.{_BLOCK_TO_COMFY[rest]}"
        linear = new.endswith(("q.weight", "k.weight", "v.weight", "o.weight", "wi_0.weight", "wi_1.weight",
                               "wo.weight"))
        if fp8 and linear:
            scale = value.float().abs().max() / torch.finfo(torch.float8_e4m3fn).max
            out[new] = (value.float() / scale).to(torch.float8_e4m3fn)
            out[new[: -len(".weight")] + ".scale_weight"] = scale.reshape(())
        else:
            out[new] = value.to(torch.float16)
    if fp8:
        out["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    return out


def write_umt5_comfy(path: str, wan_path: str, fp8: bool = True) -> str:
    """``umt5_xxl_fp8_e4m3fn_scaled.safetensors`` (or the fp16 file): the Wan-layout file's weights, Comfy-Org's way."""
    from safetensors.torch import load_file

    save_file({k: v.contiguous() for k, v in comfy_from_wan(load_file(wan_path), fp8).items()}, path)
    return path


def write_umt5_tokenizer(folder: str) -> str:
    """``umt5-xxl/``: a word-level stand-in of umT5's tokenizer that appends ``</s>`` (id 1), as the real one."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(UMT5_VOCAB)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>",
                            unk_token="<unk>").save_pretrained(folder)
    return folder


# -- Whisper ----------------------------------------------------------------------------------------

def openai_whisper_shapes(d: Dict[str, int]) -> Dict[str, Tuple[int, ...]]:
    """Keys and shapes of openai-whisper's ``Whisper`` model (``whisper/model.py``), encoder and decoder."""
    s: Dict[str, Tuple[int, ...]] = {}
    a, t = d["n_audio_state"], d["n_text_state"]
    s.update({"encoder.conv1.weight": (a, d["n_mels"], 3), "encoder.conv1.bias": (a,),
              "encoder.conv2.weight": (a, a, 3), "encoder.conv2.bias": (a,),
              "encoder.positional_embedding": (d["n_audio_ctx"], a),
              "encoder.ln_post.weight": (a,), "encoder.ln_post.bias": (a,)})

    def block(p: str, n: int, cross: bool):
        for name in (["attn"] + (["cross_attn"] if cross else [])):
            s.update({f"{p}.{name}.query.weight": (n, n), f"{p}.{name}.query.bias": (n,),
                      f"{p}.{name}.key.weight": (n, n), f"{p}.{name}.value.weight": (n, n),
                      f"{p}.{name}.value.bias": (n,), f"{p}.{name}.out.weight": (n, n), f"{p}.{name}.out.bias": (n,),
                      f"{p}.{name}_ln.weight": (n,), f"{p}.{name}_ln.bias": (n,)})
        s.update({f"{p}.mlp.0.weight": (4 * n, n), f"{p}.mlp.0.bias": (4 * n,), f"{p}.mlp.2.weight": (n, 4 * n),
                  f"{p}.mlp.2.bias": (n,), f"{p}.mlp_ln.weight": (n,), f"{p}.mlp_ln.bias": (n,)})

    for i in range(d["n_audio_layer"]):
        block(f"encoder.blocks.{i}", a, cross=False)
    s.update({"decoder.token_embedding.weight": (d["n_vocab"], t), "decoder.positional_embedding": (d["n_text_ctx"], t),
              "decoder.ln.weight": (t,), "decoder.ln.bias": (t,)})
    for i in range(d["n_text_layer"]):
        block(f"decoder.blocks.{i}", t, cross=True)
    return s


def write_whisper_pt(path: str, seed: int = 2) -> str:
    """``whisper/large-v2.pt`` at test size: ``torch.save({"dims", "model_state_dict"})`` as openai-whisper, float16."""
    sd = _random(openai_whisper_shapes(WHISPER_DIMS), seed, torch.float16)
    torch.save({"dims": dict(WHISPER_DIMS), "model_state_dict": sd}, path)
    return path


# -- wav2vec2 ---------------------------------------------------------------------------------------

WAV2VEC2_PREPROCESSOR = {"do_normalize": True, "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
                         "padding_side": "right", "padding_value": 0.0, "return_attention_mask": False,
                         "sampling_rate": 16000}  # facebook/wav2vec2-base-960h's preprocessor_config.json


def write_wav2vec2_folder(folder: str, pickled: bool = False, seed: int = 3) -> str:
    """``wav2vec2-base-960h/``: a test-size ``Wav2Vec2ForCTC`` (50 Hz: the real conv strides, narrow channels)
    with config.json and preprocessor_config.json; weights as model.safetensors, or pytorch_model.bin."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    torch.manual_seed(seed)
    cfg = Wav2Vec2Config(hidden_size=XDUB_WAV2VEC_DIM, num_hidden_layers=1, num_attention_heads=1,
                         intermediate_size=16, conv_dim=(8,) * 7, num_conv_pos_embeddings=4,
                         num_conv_pos_embedding_groups=2, vocab_size=8, do_stable_layer_norm=False,
                         feat_extract_norm="group", architectures=["Wav2Vec2ForCTC"])
    model = Wav2Vec2ForCTC(cfg)
    model.save_pretrained(folder)
    if pickled:  # as the original upload: torch.save of the state dict (transformers 5 writes safetensors only)
        os.remove(os.path.join(folder, "model.safetensors"))
        torch.save(model.state_dict(), os.path.join(folder, "pytorch_model.bin"))
    with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
        json.dump(WAV2VEC2_PREPROCESSOR, f, indent=2)
    return folder


# -- the speech encoders' own single files ---------------------------------------------------------------

SINGLE_WHISPER_D_MODEL = 64  # one 64-wide head, as the real model's 1280 = 20 × 64
SINGLE_WAV2VEC2_DIM = 64  # one 64-wide head, as the real model's 768 = 12 × 64
PUBLISHED_METADATA = {"format": "pt"}  # all the metadata both publishers' model.safetensors carry


def single_whisper_config():
    """The tiny Whisper of :func:`write_whisper_single` (what a config.json beside it would say)."""
    from transformers import WhisperConfig

    return WhisperConfig(d_model=SINGLE_WHISPER_D_MODEL, encoder_layers=2, encoder_attention_heads=1,
                         encoder_ffn_dim=4 * SINGLE_WHISPER_D_MODEL, decoder_layers=1, decoder_attention_heads=1,
                         decoder_ffn_dim=4 * SINGLE_WHISPER_D_MODEL, num_mel_bins=80, max_source_positions=1500,
                         max_target_positions=16, vocab_size=64, pad_token_id=0, bos_token_id=0, eos_token_id=0,
                         decoder_start_token_id=1)


def single_wav2vec2_config():
    """The tiny wav2vec2 of :func:`write_wav2vec2_single`: base-960h's structure (7 convs with its kernels and
    strides, no conv bias, group norm, post-norm encoder) at test widths."""
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(hidden_size=SINGLE_WAV2VEC2_DIM, num_hidden_layers=1, num_attention_heads=1,
                          intermediate_size=16, conv_dim=(8,) * 7, conv_bias=False, num_conv_pos_embeddings=4,
                          num_conv_pos_embedding_groups=2, vocab_size=8, do_stable_layer_norm=False,
                          feat_extract_norm="group", architectures=["Wav2Vec2ForCTC"])


def _shapes_of(module_class, config) -> Dict[str, Tuple[int, ...]]:
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in module_class(config).state_dict().items()}


def write_whisper_single(path: str, seed: int = 4) -> str:
    """openai/whisper-large-v2's ``model.safetensors`` at test size (save it under any name)."""
    from transformers import WhisperForConditionalGeneration

    shapes = _shapes_of(WhisperForConditionalGeneration, single_whisper_config())
    shapes.pop("proj_out.weight")  # tied to model.decoder.embed_tokens: the published file stores it once
    save_file(_random(shapes, seed), path, metadata=dict(PUBLISHED_METADATA))
    return path


def write_wav2vec2_single(path: str, seed: int = 5) -> str:
    """facebook/wav2vec2-base-960h's ``model.safetensors`` at test size (save it under any name)."""
    from transformers import Wav2Vec2ForCTC

    shapes = {}
    for key, shape in _shapes_of(Wav2Vec2ForCTC, single_wav2vec2_config()).items():  # the file's weight-norm names
        key = key.replace("parametrizations.weight.original0", "weight_g")
        shapes[key.replace("parametrizations.weight.original1", "weight_v")] = shape
    save_file(_random(shapes, seed), path, metadata=dict(PUBLISHED_METADATA))
    return path


def write_single_files(root: str) -> Dict[str, str]:
    """``root/audio_encoders/`` with ``whisper-large-v2.safetensors`` and ``wav2vec2-base-960h.safetensors`` (no
    config.json anywhere) and ``root/diffusion_models/X-Dub_model.safetensors``, a test-size DiT whose speech input is
    their two widths; returns {registry key: path}."""
    enc, dit = os.path.join(root, "audio_encoders"), os.path.join(root, "diffusion_models")
    for d in (enc, dit):
        os.makedirs(d, exist_ok=True)
    return {
        "whisper": write_whisper_single(os.path.join(enc, "whisper-large-v2.safetensors")),
        "wav2vec2": write_wav2vec2_single(os.path.join(enc, "wav2vec2-base-960h.safetensors")),
        "xdub_model": write_xdub_model(os.path.join(dit, "X-Dub_model.safetensors"),
                                       audio_dim=SINGLE_WHISPER_D_MODEL + SINGLE_WAV2VEC2_DIM),
    }


# -- the bundle -------------------------------------------------------------------------------------

def write_bundle(root: str) -> Dict[str, str]:
    """``root/checkpoints/`` as ``hf download KlingTeam/X-Dub`` lays it out, and ``root/comfy/`` with Comfy-Org's
    umT5 files; returns {registry key: path} (plus ``"umt5_comfy_fp16"``)."""
    ck = os.path.join(root, "checkpoints")
    comfy = os.path.join(root, "comfy")
    for d in (ck, os.path.join(ck, "whisper"), comfy):
        os.makedirs(d, exist_ok=True)
    paths = {
        "xdub_model": write_xdub_model(os.path.join(ck, "X-Dub_model.safetensors")),
        "wan22_vae": write_wan22_vae(os.path.join(ck, "Wan2.2_VAE.safetensors")),
        "umt5_wan": write_umt5_wan(os.path.join(ck, "models_t5_umt5-xxl-enc-bf16.safetensors")),
        "umt5_tokenizer": write_umt5_tokenizer(os.path.join(ck, "umt5-xxl")),
        "whisper": write_whisper_pt(os.path.join(ck, "whisper", "large-v2.pt")),
        "wav2vec2": write_wav2vec2_folder(os.path.join(ck, "wav2vec2-base-960h")),
    }
    paths["umt5_comfy"] = write_umt5_comfy(os.path.join(comfy, "umt5_xxl_fp8_e4m3fn_scaled.safetensors"),
                                           paths["umt5_wan"])
    paths["umt5_comfy_fp16"] = write_umt5_comfy(os.path.join(comfy, "umt5_xxl_fp16.safetensors"), paths["umt5_wan"],
                                                fp8=False)
    return paths
