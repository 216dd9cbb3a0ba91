"""CTranslate2 Whisper (faster-whisper) ``model.bin`` → a transformers Whisper state dict, without ctranslate2.

The file layout follows ``ModelSpec._serialize`` in CTranslate2's ``python/ctranslate2/specs/model_spec.py``
and the reader in ``src/models/model.cc`` (binary versions 1–6), all little-endian::

    u32 binary_version
    [version >= 2]  str spec_name ("WhisperSpec"), u32 spec_revision
    u32 num_variables, then per variable:
        str name, u8 rank, u32 × rank shape,
        [version >= 4] u8 dtype_id, u32 num_bytes  |  [version < 4] u8 item_size, u32 num_items
        bytes payload (row-major)
    [version >= 3]  u32 num_aliases, then per alias: str alias, str variable_name
    str = u16 length (including a trailing NUL), bytes

Quantised weights (int8, int16) are stored with a ``<name>_scale`` variable: CTranslate2 multiplied the
float weight by the scale before rounding, so the float weight is ``q / scale`` (per output row for
int8, one number for int16). :func:`dequantize` undoes that.

The name mapping to transformers' ``WhisperModel`` mirrors CTranslate2's ``WhisperLoader`` (in
``python/ctranslate2/converters/transformers.py``): self-attention q, k, v are fused row-wise into
``linear_0``; cross-attention keeps q in ``linear_0`` and fuses k, v into ``linear_1``.
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..errors import OmniSyncError

SUPPORTED_BINARY_VERSIONS = range(1, 7)  # CTranslate2 4.x writes version 6
# dtype ids in the order of CTranslate2's DataType enum (include/ctranslate2/types.h)
CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
_NUMPY_DTYPES = {"float32": np.float32, "int8": np.int8, "int16": np.int16, "int32": np.int32,
                 "float16": np.float16, "bfloat16": np.uint16}  # bfloat16: raw bits, widened on read
_ITEM_SIZE_DTYPES = {4: "float32", 2: "int16", 1: "int8"}  # binary version < 4 (get_dtype_from_item_size)
WHISPER_HEAD_DIM = 64  # every Whisper size uses 64-dim heads; used when a file lacks num_heads


@dataclass
class Ct2Model:
    """The contents of a ``model.bin``: variables by name (aliases resolved to the same array)."""

    spec: str
    revision: int
    binary_version: int
    variables: Dict[str, np.ndarray]
    aliases: Dict[str, str] = field(default_factory=dict)


# -- reading ---------------------------------------------------------------------------------------

class _Cursor:
    """Sequential little-endian reads over a read-only memory map of the file."""

    def __init__(self, path: str):
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            raise OmniSyncError(f"{path!r} is missing or empty; pass a CTranslate2 model.bin (faster-whisper folder).")
        self.path = path
        self.buf = np.memmap(path, dtype=np.uint8, mode="r")
        self.pos = 0

    def take(self, n: int) -> np.ndarray:
        if self.pos + n > self.buf.shape[0]:
            raise OmniSyncError(
                f"{self.path!r} ends early (wanted {n} bytes at offset {self.pos}); the CTranslate2 model.bin is "
                "truncated or not a CTranslate2 file: download or convert it again."
            )
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        return struct.unpack("<" + fmt, self.take(size).tobytes())

    def string(self) -> str:
        (n,) = self.unpack("H")
        if n == 0:
            raise OmniSyncError(f"{self.path!r} has an invalid string at offset {self.pos}; it is not a CTranslate2 "
                                "model.bin.")
        return self.take(n)[:-1].tobytes().decode("utf-8")


def read_ct2_model(path: str) -> Ct2Model:
    """Read a CTranslate2 ``model.bin`` (no pickle, no ctranslate2). Arrays are numpy, file layout:

    float32 / float16 / int8 / int16 / int32 as stored; bfloat16 is widened to float32. Payloads are
    memory-mapped views (read-only) except the widened ones.
    """
    cur = _Cursor(path)
    (version,) = cur.unpack("I")
    if version not in SUPPORTED_BINARY_VERSIONS:
        raise OmniSyncError(
            f"{path!r}: CTranslate2 binary version {version} is not supported (supported: "
            f"{SUPPORTED_BINARY_VERSIONS.start}–{SUPPORTED_BINARY_VERSIONS.stop - 1}); it may not be a CTranslate2 "
            "model.bin, or it comes from a newer CTranslate2: convert the model to a Hugging Face folder instead."
        )
    spec, revision = ("", 1)
    if version >= 2:
        spec = cur.string()
        (revision,) = cur.unpack("I")
    (count,) = cur.unpack("I")
    variables: Dict[str, np.ndarray] = {}
    for _ in range(count):
        name = cur.string()
        (rank,) = cur.unpack("B")
        shape = cur.unpack("I" * rank) if rank else ()
        if version >= 4:
            type_id, num_bytes = cur.unpack("BI")
            if type_id >= len(CT2_DTYPES):
                raise OmniSyncError(f"{path!r}: variable {name!r} has unknown dtype id {type_id}.")
            dtype = CT2_DTYPES[type_id]
        else:
            item_size, num_items = cur.unpack("BI")
            dtype = _ITEM_SIZE_DTYPES.get(item_size)
            if dtype is None:
                raise OmniSyncError(f"{path!r}: variable {name!r} has unknown item size {item_size}.")
            num_bytes = num_items * item_size
        np_dtype = np.dtype(_NUMPY_DTYPES[dtype])
        expected = int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize
        if num_bytes != expected:
            raise OmniSyncError(
                f"{path!r}: variable {name!r} {tuple(shape)} {dtype} has {num_bytes} bytes, expected {expected}; "
                "the file is corrupt."
            )
        value = cur.take(num_bytes).view(np_dtype).reshape(shape)
        if dtype == "bfloat16":
            value = (value.astype(np.uint32) << 16).view(np.float32)
        variables[name] = value
    aliases: Dict[str, str] = {}
    if version >= 3:
        (n_alias,) = cur.unpack("I")
        for _ in range(n_alias):
            alias, target = cur.string(), cur.string()
            aliases[alias] = target
            # as model.cc does: an alias also covers the target's quantisation scale
            for suffix in ("", "_scale", "_zero"):
                if target + suffix in variables:
                    variables[alias + suffix] = variables[target + suffix]
    return Ct2Model(spec=spec, revision=revision, binary_version=version, variables=variables, aliases=aliases)


def dequantize(variables: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Replace every quantised weight ``w`` that has a ``w_scale`` by float32 ``w / scale``; drop the scales.

    int8: ``scale`` is (out,) per output row (conv weights (out, in, k) too); int16: one scalar.
    Other variables are returned unchanged.
    """
    out = {}
    for name, value in variables.items():
        if name.endswith("_scale") and name[: -len("_scale")] in variables:
            continue
        if name.endswith("_zero") and name[: -len("_zero")] in variables:
            raise OmniSyncError(
                f"variable {name!r}: AWQ-quantised CTranslate2 models are not supported; use a float16, float32 "
                "or int8 conversion (ct2-transformers-converter --quantization float16)."
            )
        scale = variables.get(name + "_scale")
        if scale is not None and value.dtype in (np.int8, np.int16):
            s = np.asarray(scale, dtype=np.float32)
            s = s.reshape(s.shape + (1,) * (value.ndim - s.ndim)) if s.ndim else s
            out[name] = value.astype(np.float32) / s
        else:
            out[name] = value
    return out


# -- conversion to transformers ---------------------------------------------------------------------

def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(x, dtype=np.float32))  # a writable float32 copy


def _layer_count(variables: Dict[str, np.ndarray], prefix: str) -> int:
    found = {int(m.group(1)) for k in variables if (m := re.match(re.escape(prefix) + r"/layer_(\d+)/", k))}
    return max(found) + 1 if found else 0


def _num_heads(variables, prefix: str, d_model: int) -> int:
    v = variables.get(f"{prefix}/num_heads")
    return int(v) if v is not None else d_model // WHISPER_HEAD_DIM


def _linear(sd, variables, src: str, dst: str, bias: bool = True):
    sd[f"{dst}.weight"] = _t(variables[f"{src}/weight"])
    if bias:
        sd[f"{dst}.bias"] = _t(variables[f"{src}/bias"])


def _norm(sd, variables, src: str, dst: str):
    sd[f"{dst}.weight"] = _t(variables[f"{src}/gamma"])
    sd[f"{dst}.bias"] = _t(variables[f"{src}/beta"])


def _split_rows(sd, variables, src: str, dsts, d_model: int):
    """A fused linear (n·D, D) → n linears (D, D). k_proj has no bias in Whisper: CTranslate2 stored zeros
    (and a key bias would not change attention anyway: it adds the same q·b to every score of a query)."""
    w, b = variables[f"{src}/weight"], variables[f"{src}/bias"]
    for i, dst in enumerate(dsts):
        sd[f"{dst}.weight"] = _t(w[i * d_model:(i + 1) * d_model])
        if not dst.endswith("k_proj"):
            sd[f"{dst}.bias"] = _t(b[i * d_model:(i + 1) * d_model])


def _ffn(sd, variables, src: str, dst: str):
    _linear(sd, variables, f"{src}/ffn/linear_0", f"{dst}.fc1")
    _linear(sd, variables, f"{src}/ffn/linear_1", f"{dst}.fc2")
    _norm(sd, variables, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")


def _special_token_ids(vocab_size: int, vocabulary: Optional[List[str]]) -> Dict[str, Optional[int]]:
    """Whisper's special tokens (only the decoder uses them), looked up in the vocabulary when given, else
    WhisperConfig's defaults (end of text 50256, start of transcript 50257). An id that is missing or does
    not fit the vocabulary is left out (pad/bos/eos None, decoder start at WhisperConfig's default)."""
    ids: Dict[str, Optional[int]] = {"eos": 50256, "sot": 50257}
    if vocabulary is not None:
        ids = {k: vocabulary.index(t) if t in vocabulary else None
               for k, t in (("eos", "<|endoftext|>"), ("sot", "<|startoftranscript|>"))}
    eos, sot = (i if i is not None and i < vocab_size else None for i in (ids["eos"], ids["sot"]))
    out: Dict[str, Optional[int]] = dict(pad_token_id=eos, bos_token_id=eos, eos_token_id=eos)
    if sot is not None:
        out["decoder_start_token_id"] = sot
    return out


def ct2_to_hf_whisper(variables: Dict[str, np.ndarray], include_decoder: bool = False,
                      vocabulary: Optional[List[str]] = None):
    """CTranslate2 Whisper variables (float or quantised) → ``(WhisperConfig, state_dict)``.

    Keys are transformers ``WhisperModel`` keys (``encoder.conv1.weight`` …, and ``decoder.*`` when
    ``include_decoder``); values are float32 tensors. Sizes are read off the weights; the special token
    ids come from ``vocabulary`` (the folder's token list) when given.
    """
    from transformers import WhisperConfig

    v = dequantize(variables)
    try:
        conv1 = v["encoder/conv1/weight"]  # (D, n_mels, 3)
        d_model, n_mels = int(conv1.shape[0]), int(conv1.shape[1])
        enc_layers = _layer_count(v, "encoder")
        cfg = dict(
            d_model=d_model, num_mel_bins=n_mels, encoder_layers=enc_layers,
            encoder_attention_heads=_num_heads(v, "encoder", d_model),
            encoder_ffn_dim=int(v["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
            max_source_positions=int(v["encoder/position_encodings/encodings"].shape[0]),
        )
        if "decoder/embeddings/weight" in v:
            cfg.update(
                vocab_size=int(v["decoder/embeddings/weight"].shape[0]),
                decoder_layers=_layer_count(v, "decoder"),
                decoder_attention_heads=_num_heads(v, "decoder", d_model),
                decoder_ffn_dim=int(v["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
                max_target_positions=int(v["decoder/position_encodings/encodings"].shape[0]),
                **_special_token_ids(int(v["decoder/embeddings/weight"].shape[0]), vocabulary),
            )

        sd: Dict[str, torch.Tensor] = {}
        _linear(sd, v, "encoder/conv1", "encoder.conv1")
        _linear(sd, v, "encoder/conv2", "encoder.conv2")
        sd["encoder.embed_positions.weight"] = _t(v["encoder/position_encodings/encodings"])
        for i in range(enc_layers):
            src, dst = f"encoder/layer_{i}", f"encoder.layers.{i}"
            attn = f"{dst}.self_attn"
            _split_rows(sd, v, f"{src}/self_attention/linear_0", [f"{attn}.q_proj", f"{attn}.k_proj", f"{attn}.v_proj"],
                        d_model)
            _linear(sd, v, f"{src}/self_attention/linear_1", f"{attn}.out_proj")
            _norm(sd, v, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
            _ffn(sd, v, src, dst)
        _norm(sd, v, "encoder/layer_norm", "encoder.layer_norm")

        if include_decoder:
            sd["decoder.embed_tokens.weight"] = _t(v["decoder/embeddings/weight"])
            sd["decoder.embed_positions.weight"] = _t(v["decoder/position_encodings/encodings"])
            for i in range(cfg["decoder_layers"]):
                src, dst = f"decoder/layer_{i}", f"decoder.layers.{i}"
                sa, ca = f"{dst}.self_attn", f"{dst}.encoder_attn"
                _split_rows(sd, v, f"{src}/self_attention/linear_0", [f"{sa}.q_proj", f"{sa}.k_proj", f"{sa}.v_proj"],
                            d_model)
                _linear(sd, v, f"{src}/self_attention/linear_1", f"{sa}.out_proj")
                _norm(sd, v, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
                _linear(sd, v, f"{src}/attention/linear_0", f"{ca}.q_proj")
                _split_rows(sd, v, f"{src}/attention/linear_1", [f"{ca}.k_proj", f"{ca}.v_proj"], d_model)
                _linear(sd, v, f"{src}/attention/linear_2", f"{ca}.out_proj")
                _norm(sd, v, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
                _ffn(sd, v, src, dst)
            _norm(sd, v, "decoder/layer_norm", "decoder.layer_norm")
    except KeyError as exc:
        raise OmniSyncError(
            f"the CTranslate2 model lacks variable {exc.args[0]!r}, which a Whisper model has; it is not a "
            "Whisper (faster-whisper) conversion, or it is damaged."
        ) from None
    return WhisperConfig(**cfg), sd


def load_ct2_whisper(folder: str, include_decoder: bool = False) -> Tuple[Any, Dict[str, torch.Tensor], Dict[str, Any]]:
    """A CTranslate2 Whisper folder (``model.bin`` + ``config.json``) → ``(WhisperConfig, state_dict, ct2_config)``.

    ct2_config is CTranslate2's own ``config.json`` (suppressed tokens, alignment heads), ``{}`` if absent.
    """
    path = os.path.join(folder, "model.bin")
    model = read_ct2_model(path)
    if model.spec != "WhisperSpec":
        raise OmniSyncError(
            f"{path!r} is a CTranslate2 {model.spec or 'model without a spec name'}, not a Whisper model "
            "(WhisperSpec); pass a faster-whisper / CTranslate2 Whisper folder."
        )
    config, sd = ct2_to_hf_whisper(model.variables, include_decoder=include_decoder,
                                   vocabulary=read_ct2_vocabulary(folder))
    ct2_config: Dict[str, Any] = {}
    config_path = os.path.join(folder, "config.json")
    if os.path.isfile(config_path):
        with open(config_path, encoding="utf-8") as f:
            ct2_config = json.load(f)
    return config, sd, ct2_config


def read_ct2_vocabulary(folder: str) -> Optional[List[str]]:
    """The folder's token list: ``vocabulary.json`` (a JSON list) or ``vocabulary.txt`` (one per line); None."""
    json_path, txt_path = os.path.join(folder, "vocabulary.json"), os.path.join(folder, "vocabulary.txt")
    if os.path.isfile(json_path):
        with open(json_path, encoding="utf-8") as f:
            return json.load(f)
    if os.path.isfile(txt_path):
        with open(txt_path, encoding="utf-8") as f:
            tokens = f.read().split("\n")  # byte-level BPE tokens never contain a newline
        return tokens[:-1] if tokens and tokens[-1] == "" else tokens
    return None
