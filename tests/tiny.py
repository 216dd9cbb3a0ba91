"""Tiny components the tests build themselves: a random OmniSync checkpoint and a random Whisper."""

from __future__ import annotations

import math
import os

import numpy as np
import torch

WHISPER_D_MODEL = 32
WHISPER_LAYERS = 2  # hidden states = layers + 1 (embedding output)
AUDIO_TOKEN_DIM = (WHISPER_LAYERS + 1) * WHISPER_D_MODEL
PIXEL_PATCH = 2


def make_whisper_folder(root: str) -> str:
    """A random tiny Whisper saved as a Hugging Face folder (config.json + model.safetensors)."""
    from transformers import WhisperConfig, WhisperModel

    torch.manual_seed(0)
    cfg = WhisperConfig(
        d_model=WHISPER_D_MODEL, encoder_layers=WHISPER_LAYERS, decoder_layers=1,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
        num_mel_bins=80, max_source_positions=1500, max_target_positions=32, vocab_size=64,
        pad_token_id=0, bos_token_id=0, eos_token_id=0, decoder_start_token_id=1,
    )
    path = os.path.join(root, "whisper-tiny-random")
    WhisperModel(cfg).save_pretrained(path, safe_serialization=True)
    return path


def make_model_checkpoint(root: str, use_text: bool = True, seed: int = 0) -> str:
    """A random tiny OmniSync DiT with a pixel codec (patch 2), saved as a self-describing file.

    The audio cross-attention output projections are randomised (not zero) so audio matters.
    """
    from omnisync_core.audio.features import AudioFeatureSpec
    from omnisync_core.model.checkpoint import save_checkpoint
    from omnisync_core.model.config import CodecSpec, preset
    from omnisync_core.model.dit import OmniSyncDiT

    torch.manual_seed(seed)
    cfg = preset("tiny", latent_channels=3 * PIXEL_PATCH ** 2, audio_dim=AUDIO_TOKEN_DIM, use_text=use_text)
    model = OmniSyncDiT(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "audio_cross_attn.o" in name or name.startswith("head.head"):
                p.normal_(0, 0.05)
    spec = AudioFeatureSpec(encoder="whisper-tiny-random", num_layers=WHISPER_LAYERS + 1, dim=WHISPER_D_MODEL)
    codec = CodecSpec(type="pixel", patch=PIXEL_PATCH, latent_channels=cfg.latent_channels,
                      temporal_factor=1, spatial_factor=PIXEL_PATCH)
    path = os.path.join(root, "tiny-omnisync.safetensors")
    save_checkpoint(path, model, codec=codec, audio=spec.to_dict())
    return path


def make_frames(T: int = 12, H: int = 32, W: int = 32, seed: int = 0) -> torch.Tensor:
    """(T, H, W, 3) float in [0, 1]: a smooth moving pattern (compresses well in mp4)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(3, generator=g)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, H), torch.linspace(0, 1, W), indexing="ij")
    frames = []
    for t in range(T):
        phase = 2 * math.pi * t / max(T, 1)
        img = torch.stack([0.5 + 0.4 * torch.sin(3 * xx + phase + 2 * c * base[c]) * torch.cos(2 * yy) for c in range(3)], -1)
        frames.append(img)
    return torch.stack(frames).clamp(0, 1)


def make_speech_like(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """A voiced, syllable-modulated tone (not silence, not white noise): (N,) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 140 + 20 * np.sin(2 * np.pi * 0.7 * t)
    voiced = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / sr) / k for k in range(1, 6))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)))
    return (0.3 * voiced * envelope + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


# -- X-Dub stand-ins -----------------------------------------------------------------------------------

XDUB_WAV2VEC_DIM = 8  # tiny wav2vec2 hidden size; with the tiny Whisper's 32: 40-wide audio tokens


def make_wav2vec2_folder(root: str) -> str:
    """A random tiny wav2vec2 (50 Hz output: the real conv strides, narrow channels) as a transformers folder."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    cfg = Wav2Vec2Config(hidden_size=XDUB_WAV2VEC_DIM, num_hidden_layers=1, num_attention_heads=1, intermediate_size=16,
                         conv_dim=(8,) * 7, num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2,
                         vocab_size=8, do_stable_layer_norm=False, feat_extract_norm="group")
    path = os.path.join(root, "wav2vec2-tiny-random")
    Wav2Vec2Model(cfg).save_pretrained(path, safe_serialization=True)
    return path


def make_xdub_checkpoint(root: str, seed: int = 0) -> str:
    """A random X-Dub DiT at test size with the published key names (dim 128 = 1 head of 128, the real head
    width, so the loader's defaults apply; audio projection 64 wide = 1 head of 64; 40-wide audio tokens)."""
    from safetensors.torch import save_file

    from omnisync_core.model.config import AudioProjConfig, DiTConfig
    from omnisync_core.model.xdub_dit import XDubDiT

    torch.manual_seed(seed)
    cfg = DiTConfig(dim=128, ffn_dim=256, num_heads=1, num_layers=1, latent_channels=48, text_dim=16, freq_dim=32,
                    audio_dim=WHISPER_D_MODEL + XDUB_WAV2VEC_DIM, source_layout="sequence",
                    audio_proj=AudioProjConfig(input_dim=WHISPER_D_MODEL + XDUB_WAV2VEC_DIM, dim=64, num_layers=1,
                                               num_heads=1))
    model = XDubDiT(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():  # no zero-initialised layer: every pass differs
            if "head" in name or name.endswith(".o.weight") or name.endswith(".o.bias"):
                p.copy_(torch.randn(p.shape) * 0.02)
    path = os.path.join(root, "xdub-tiny-random.safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    return path


class TinyWan22VAE:
    """A weight-free stand-in for Wan 2.2's VAE with its raw-latent contract (what ComfyUI's VAE and the
    diffusers adapter give): 16×16 average pooling, causal 4-frame groups, RGB repeated to 48 channels.

    encode(frames (T, H, W, 3) [0, 1], T = 1 + 4k) -> (1, 48, F, H/16, W/16); decode inverts it up to the
    pooling (nearest upsampling, each latent frame repeated over its frames)."""

    def encode(self, frames):
        x = frames.permute(3, 0, 1, 2)  # (3, T, H, W)
        groups = [x[:, :1]] + [x[:, i:i + 4] for i in range(1, x.shape[1], 4)]
        z = torch.stack([g.mean(1) for g in groups], 1)  # (3, F, H, W)
        z = torch.nn.functional.avg_pool2d(z, 16)  # (3, F, h, w)
        return (z * 2 - 1).repeat(16, 1, 1, 1)[None]  # (1, 48, F, h, w)

    def decode(self, latents):
        z = (latents[0, :3] + 1) / 2  # (3, F, h, w)
        z = torch.cat([z[:, :1], z[:, 1:].repeat_interleave(4, 1)], 1)  # (3, T, h, w)
        x = torch.nn.functional.interpolate(z, scale_factor=16, mode="nearest")  # (3, T, H, W)
        return x.permute(1, 2, 3, 0)[None].clamp(0, 1)  # (1, T, H, W, 3)


def make_umt5_folder(root: str, d_model: int = 16) -> str:
    """A random tiny umT5 encoder with a word-level tokenizer that appends </s>, as a transformers folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate("a face that talks".split())}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    path = os.path.join(root, "umt5-tiny-random")
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>").save_pretrained(path)
    cfg = UMT5Config(vocab_size=len(vocab), d_model=d_model, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                     relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    UMT5EncoderModel(cfg).save_pretrained(path, safe_serialization=True)
    return path
