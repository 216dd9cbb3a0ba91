"""wav2vec2 as people have it → a transformers ``Wav2Vec2Model`` with every weight from the file; no network.

The forms read, each checked tensor by tensor against the model its configuration builds:

- a single ``.safetensors`` with no configuration anywhere, as facebook/wav2vec2-base-960h ships
  ``model.safetensors`` (``Wav2Vec2ForCTC``: ``wav2vec2.*`` + ``lm_head.*`` keys, weight norm stored as
  ``weight_g`` / ``weight_v``, metadata ``{"format": "pt"}``): the ``Wav2Vec2Config`` is derived from the tensor
  shapes by :func:`wav2vec2_config_from_shapes`;
- a single ``.safetensors`` with its config in its metadata or a config.json beside it (these take precedence);
- a Hugging Face folder (config.json + model.safetensors, or pytorch_model.bin read with
  ``torch.load(weights_only=True)`` on torch >= 2.6): the Kling bundle's ``wav2vec2-base-960h/``.

Input normalisation (the preprocessor's ``do_normalize``) comes from a preprocessor_config.json beside the weights,
else :data:`WAV2VEC2_NORM_DEFAULT` (wav2vec2-base-960h's). Every failure is one OmniSyncError line naming the
published source (:mod:`omnisync_core.model.files`).
"""

from __future__ import annotations

import json
import os
import re
from typing import Dict, Mapping, Optional, Tuple

import torch

from ..errors import OmniSyncError
from ..model.files import accepted_forms, read_pickled_weights, xdub_file_for

WAV2VEC2_NORM_DEFAULT = True  # wav2vec2-base-960h's preprocessor_config.json: do_normalize = true
WAV2VEC2_PREFIX = "wav2vec2."  # Wav2Vec2ForCTC keys; Wav2Vec2Model keys have no prefix
WAV2VEC2_HEAD_PREFIXES = ("lm_head.", "quantizer.", "project_q.", "project_hid.", "dropout_features")  # not encoder
WAV2VEC2_OPTIONAL = ("masked_spec_embed",)  # used only for training-time masking; zeros when absent
WEIGHT_NORM_RENAMES = ((".weight_g", ".parametrizations.weight.original0"),
                       (".weight_v", ".parametrizations.weight.original1"))  # pre-2.1 torch weight_norm names
# What the tensor shapes cannot tell, as facebook's wav2vec2 base and large configs have it (not XLS-R 1B / 2B,
# whose heads are 80 / 120 wide: those need their config.json):
WAV2VEC2_HEAD_DIM = 64  # attention heads are 64 wide (base: 768 / 12, large: 1024 / 16)
WAV2VEC2_CONV_STRIDE = (5, 2, 2, 2, 2, 2, 2)  # feature encoder strides: 320 samples per frame, 50 frames/s at 16 kHz
CONV = "feature_extractor.conv_layers"
POS_CONV_V = "encoder.pos_conv_embed.conv.parametrizations.weight.original1"  # (D, D / groups, kernel)


def _encoder_name(key: str) -> Optional[str]:
    """A checkpoint key under ``Wav2Vec2Model``'s name: ``wav2vec2.`` dropped, weight norm renamed to torch's
    parametrizations; None for a head (CTC, pre-training) tensor."""
    key = key[len(WAV2VEC2_PREFIX):] if key.startswith(WAV2VEC2_PREFIX) else key
    if key.startswith(WAV2VEC2_HEAD_PREFIXES):
        return None
    for old, new in WEIGHT_NORM_RENAMES:
        if key.endswith(old):
            key = key[: -len(old)] + new
    return key


def wav2vec2_encoder_tensors(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """A wav2vec2 checkpoint's tensors under ``Wav2Vec2Model`` names: ``wav2vec2.`` prefix (CTC checkpoints) and
    heads dropped, pre-2.1 weight-norm names (``weight_g`` / ``weight_v``) renamed to torch's parametrizations."""
    return {name: value for key, value in state_dict.items() if (name := _encoder_name(key)) is not None}


def wav2vec2_config_from_shapes(shapes: Mapping[str, Tuple[int, ...]], source: str):
    """The ``Wav2Vec2Config`` of a checkpoint that carries none, from its tensor shapes.

    shapes: key → shape of a ``Wav2Vec2ForCTC`` / ``Wav2Vec2Model`` state dict (either weight-norm naming).
    From the shapes: hidden_size (feature projection), num_hidden_layers (layer indices), intermediate_size,
    conv_dim / conv_kernel (each feature-encoder conv), conv_bias (whether the convs have biases),
    feat_extract_norm ("group" when only conv layer 0 has a norm, "layer" when every one has),
    num_conv_pos_embeddings and num_conv_pos_embedding_groups (the positional conv's weight), vocab_size (the CTC
    head, when present). As facebook's base and large configs set them: do_stable_layer_norm =
    (feat_extract_norm == "layer"), num_attention_heads = hidden_size / :data:`WAV2VEC2_HEAD_DIM`,
    conv_stride = :data:`WAV2VEC2_CONV_STRIDE`.
    Raises a one-line OmniSyncError when ``shapes`` is not a wav2vec2 encoder.
    """
    from transformers import Wav2Vec2Config

    enc = {name: tuple(shape) for key, shape in shapes.items() if (name := _encoder_name(key)) is not None}
    convs = sorted(int(m.group(1)) for k in enc for m in [re.fullmatch(CONV + r"\.(\d+)\.conv\.weight", k)] if m)
    layers = sorted({int(m.group(1)) for k in enc for m in [re.match(r"encoder\.layers\.(\d+)\.", k)] if m})
    proj = enc.get("feature_projection.projection.weight")
    ffn = enc.get("encoder.layers.0.feed_forward.intermediate_dense.weight")
    pos = enc.get(POS_CONV_V)
    found = ", ".join(sorted(shapes)[:3]) or "no tensors"
    if not convs or not layers or proj is None or ffn is None or pos is None:
        raise OmniSyncError(f"{source} is not a wav2vec2 checkpoint: it lacks wav2vec2's tensors (feature_extractor, "
                            f"feature_projection, encoder.layers, encoder.pos_conv_embed; found {found} …).")
    kernels = [enc[f"{CONV}.{i}.conv.weight"] for i in convs]
    normed = [i for i in convs if f"{CONV}.{i}.layer_norm.weight" in enc]
    hidden = proj[0]
    fits = (convs == list(range(len(convs))) and layers == list(range(len(layers))) and len(proj) == 2
            and all(len(k) == 3 for k in kernels) and proj[1] == kernels[-1][0] and len(pos) == 3
            and pos[0] == hidden and pos[1] and hidden % pos[1] == 0 and len(ffn) == 2 and ffn[1] == hidden)
    if not fits:
        raise OmniSyncError(f"{source}: its wav2vec2 tensor shapes do not fit together (feature projection {proj}, "
                            f"positional conv {pos}); put its config.json beside it.")
    if len(convs) != len(WAV2VEC2_CONV_STRIDE):
        raise OmniSyncError(f"{source} has {len(convs)} feature-encoder convs; their strides are known only for "
                            f"wav2vec2's {len(WAV2VEC2_CONV_STRIDE)}: put its config.json beside it.")
    if normed == [0]:
        norm = "group"
    elif normed == convs:
        norm = "layer"
    else:
        raise OmniSyncError(f"{source}: feature-encoder norms on convs {normed} fit neither wav2vec2 layout (conv 0 "
                            "only, or every conv); put its config.json beside it.")
    if hidden % WAV2VEC2_HEAD_DIM:
        raise OmniSyncError(f"{source}: hidden size {hidden} is not a multiple of {WAV2VEC2_HEAD_DIM}, so its "
                            "attention heads are unknown; put its config.json beside it.")
    vocab = {"vocab_size": shapes["lm_head.weight"][0]} if "lm_head.weight" in shapes else {}
    return Wav2Vec2Config(
        hidden_size=hidden, num_hidden_layers=len(layers), num_attention_heads=hidden // WAV2VEC2_HEAD_DIM,
        intermediate_size=ffn[0], conv_dim=tuple(k[0] for k in kernels), conv_kernel=tuple(k[2] for k in kernels),
        conv_stride=WAV2VEC2_CONV_STRIDE, conv_bias=f"{CONV}.0.conv.bias" in enc, feat_extract_norm=norm,
        do_stable_layer_norm=norm == "layer", num_conv_pos_embeddings=pos[2],
        num_conv_pos_embedding_groups=hidden // pos[1], **vocab)


def load_wav2vec2(path: str):
    """(``Wav2Vec2Model`` with every weight from ``path``, normalize flag), ``path`` in any form of the module
    docstring; the configuration from the file's metadata, else config.json beside it (or in the folder), else its
    tensor shapes."""
    from safetensors import safe_open
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    path = os.fspath(path)
    src = xdub_file_for("wav2vec2", path)
    accepted = ", or ".join(f.source() for f in (src, *(f for f in accepted_forms("wav2vec2") if f.key != src.key)))
    if not os.path.exists(path):
        raise OmniSyncError(f"wav2vec2 path {path!r} does not exist; pass {accepted}.")
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    meta: Dict[str, str] = {}
    if os.path.isdir(path):
        weights = os.path.join(path, "model.safetensors")
        pickled = os.path.join(path, "pytorch_model.bin")
        if not os.path.isfile(weights) and os.path.isfile(pickled):
            weights = pickled
        elif not os.path.isfile(weights):
            raise OmniSyncError(f"{path!r} has neither model.safetensors nor pytorch_model.bin; pass {accepted}.")
    elif path.lower().endswith(".safetensors"):
        weights = path
    else:
        raise OmniSyncError(f"{path!r} is not a wav2vec2 file OmniSync can read; pass {accepted}.")
    if weights.endswith(".bin"):
        state_dict = read_pickled_weights(weights, src.key)
        if not isinstance(state_dict, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                       for k, v in state_dict.items()):
            raise OmniSyncError(f"{weights!r} is not a state dict of tensors; pass {accepted}.")
    else:
        try:
            with safe_open(weights, framework="pt") as f:
                meta = f.metadata() or {}
                state_dict = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:  # noqa: BLE001 — safetensors raises its own error types for a bad header
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise OmniSyncError(f"{weights!r} is not a readable safetensors file ({first}): it is damaged, "
                                f"truncated or another format; re-download {src.source()}.") from None
    config_file = os.path.join(folder, "config.json")
    try:
        if "config" in meta:
            config = Wav2Vec2Config(**json.loads(meta["config"]))
        elif os.path.isfile(config_file):
            config = Wav2Vec2Config.from_json_file(config_file)
        else:
            config = None
    except (ValueError, TypeError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OmniSyncError(f"{path!r}: its config is not a wav2vec2 config ({first}); pass {accepted}.") from None
    if config is None:
        try:
            config = wav2vec2_config_from_shapes({k: tuple(v.shape) for k, v in state_dict.items()}, repr(path))
        except OmniSyncError as exc:
            raise OmniSyncError(f"{str(exc).rstrip('.')}; pass {accepted}.") from None
    if getattr(config, "model_type", "wav2vec2") != "wav2vec2":
        raise OmniSyncError(f"{path!r} holds a {config.model_type!r} model, not wav2vec2; pass {accepted}.")

    with torch.device("meta"):  # no random init: every weight comes from the file
        model = Wav2Vec2Model(config)
    expected = model.state_dict()
    sd = wav2vec2_encoder_tensors(state_dict)
    for key in WAV2VEC2_OPTIONAL:
        if key in expected and key not in sd:
            sd[key] = torch.zeros(expected[key].shape)
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = sorted(k for k in set(expected) & set(sd) if tuple(expected[k].shape) != tuple(sd[k].shape))
    if missing or unexpected or wrong:
        listing = lambda keys: (", ".join(keys[:4]) + (" …" if len(keys) > 4 else "")) or "none"  # noqa: E731
        raise OmniSyncError(
            f"{path!r}: the wav2vec2 weights do not match its config (missing: {listing(missing)}; unexpected: "
            f"{listing(unexpected)}; wrong shape: {listing(wrong)}); pass {accepted}."
        )
    model.load_state_dict(sd, strict=True, assign=True)
    normalize = WAV2VEC2_NORM_DEFAULT
    pre = os.path.join(folder, "preprocessor_config.json")
    if os.path.isfile(pre):
        try:
            with open(pre, encoding="utf-8") as f:
                normalize = bool(json.load(f).get("do_normalize", WAV2VEC2_NORM_DEFAULT))
        except (OSError, ValueError, AttributeError) as exc:
            raise OmniSyncError(f"{pre!r} is not a preprocessor config ({type(exc).__name__}); pass "
                                f"{accepted}.") from None
    return model, normalize
