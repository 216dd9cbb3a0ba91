"""Wan 2.2's video VAE (48 latent channels, 4× in time, 16× in space) as a :class:`~.codec.VAECodec`.

X-Dub's DiT works on Wan 2.2 latents normalised per channel, z = (μ − mean)/std, with the constants
below (``WanVideoVAE38`` of the reference code, also in diffusers' ``AutoencoderKLWan`` config of
Wan2.2-TI2V-5B). Any VAE object that speaks *raw* latents can be wrapped with :func:`wan22_codec`:
ComfyUI's ``comfy.sd.VAE`` (the nodes) or :class:`DiffusersWanVAE` (the CLI).

The CLI reads the bundle's single file ``Wan2.2_VAE.safetensors`` (Wan's own key layout) directly: diffusers'
``AutoencoderKLWan`` is the network, built from a config read off the file's shapes (never from the hub), and
:func:`wan22_to_diffusers_keys` renames the keys. diffusers' own single-file loader is not used: its
``convert_wan_vae_to_diffusers`` knows only Wan 2.1's flat layout, and it fetches the config from the hub.
Checked against ComfyUI's Wan 2.2 VAE (tests/test_xdub_vae_golden.py). diffusers is the ``xdub`` extra of
pyproject.toml (``pip install "diffusers>=0.35"``); without it the loader says so.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, Tuple

import torch
from safetensors import safe_open

from ..errors import OmniSyncError
from .checkpoint import _key_list
from .codec import VAECodec
from .files import missing_message, xdub_file

WAN22_LATENT_CHANNELS = 48
WAN22_TEMPORAL_FACTOR = 4  # video frames per latent frame after the first
WAN22_SPATIAL_FACTOR = 16  # pixels per latent pixel, each side
WAN22_LATENTS_MEAN = (
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
)
WAN22_LATENTS_STD = (
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
    0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
    0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
    0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
)
XDUB_EXTRA = "diffusers>=0.35"  # = pyproject.toml's xdub extra (a test compares them)
DIFFUSERS_HINT = (f"the command line runs Wan 2.2's VAE with diffusers' AutoencoderKLWan, the plugin's xdub extra: "
                  f"pip install \"{XDUB_EXTRA}\" (or use the ComfyUI nodes, whose core Load VAE reads the file)")
# Wan's layout: (sub-)keys of one residual block → diffusers' names
_RESIDUAL_RENAMES = (("residual.0.gamma", "norm1.gamma"), ("residual.2.", "conv1."), ("residual.3.gamma", "norm2.gamma"),
                     ("residual.6.", "conv2."), ("shortcut.", "conv_shortcut."))
_TOP_RENAMES = (("encoder.conv1.", "encoder.conv_in."), ("decoder.conv1.", "decoder.conv_in."),
                ("encoder.head.0.", "encoder.norm_out."), ("encoder.head.2.", "encoder.conv_out."),
                ("decoder.head.0.", "decoder.norm_out."), ("decoder.head.2.", "decoder.conv_out."),
                ("conv1.", "quant_conv."), ("conv2.", "post_quant_conv."))
WAN22_MARKER_KEYS = ("decoder.middle.0.residual.0.gamma", "decoder.upsamples.0.upsamples.0.residual.2.weight",
                     "encoder.conv1.weight", "conv2.weight")  # what ComfyUI tests too: a Wan 2.2 VAE, not 2.1


def wan22_codec(vae: Any) -> VAECodec:
    """A VAE returning raw Wan 2.2 latents (``encode((T, H, W, 3) [0, 1]) -> (1, 48, F, h, w)``,
    ``decode((1, 48, F, h, w)) -> (1, T, H, W, 3) [0, 1]``) → the codec of X-Dub's normalised latents."""
    return VAECodec(vae, latent_channels=WAN22_LATENT_CHANNELS, temporal_factor=WAN22_TEMPORAL_FACTOR,
                    spatial_factor=WAN22_SPATIAL_FACTOR, latents_mean=WAN22_LATENTS_MEAN,
                    latents_std=WAN22_LATENTS_STD)


class DiffusersWanVAE:
    """diffusers' ``AutoencoderKLWan`` behind the raw-latent contract of :func:`wan22_codec`.

    Encoding takes the posterior mean (deterministic, as the reference does); decoding clamps to
    [−1, 1] (diffusers does) and maps to [0, 1]. ``vae``: an ``AutoencoderKLWan`` in eval mode.
    """

    def __init__(self, vae, device="cpu", dtype: torch.dtype = torch.float32):
        if next(vae.parameters()).dtype != dtype:  # the loaders read the weights in ``dtype`` already
            vae = vae.to(dtype=dtype)
        self.vae = vae.to(device=device).eval()
        self.device, self.dtype = torch.device(device), dtype

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(3, 0, 1, 2)[None].to(self.device, self.dtype) * 2 - 1  # (1, 3, T, H, W) in [-1, 1]
        return self.vae.encode(x).latent_dist.mode().float()  # (1, 48, F, h, w) raw

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        out = self.vae.decode(latents.to(self.device, self.dtype)).sample  # (1, 3, T, H, W) in [-1, 1]
        return ((out.float() + 1) / 2).permute(0, 2, 3, 4, 1)  # (1, T, H, W, 3)


def _rename_residual(rest: str) -> str:
    for old, new in _RESIDUAL_RENAMES:
        if rest.startswith(old):
            return new + rest[len(old):]
    return rest


def wan22_to_diffusers_keys(key: str, num_res_blocks: int) -> str:
    """One key of Wan 2.2's VAE (``Wan2.2_VAE.safetensors``, ``wan/modules/vae2_2.py``) → ``AutoencoderKLWan``'s.

    Encoder stage i holds ``num_res_blocks`` residual blocks then its resampler (``downsamples.i.downsamples.j``);
    decoder stage i holds ``num_res_blocks + 1`` then its upsampler; the middle is resnet, attention, resnet.
    """
    m = re.match(r"(encoder|decoder)\.(down|up)samples\.(\d+)\.(?:down|up)samples\.(\d+)\.(.*)", key)
    if m:
        part, kind, i, j, rest = m.group(1), m.group(2), int(m.group(3)), int(m.group(4)), m.group(5)
        blocks = num_res_blocks + (1 if part == "decoder" else 0)
        stage = f"{part}.{kind}_blocks.{i}"
        if j < blocks:
            return f"{stage}.resnets.{j}.{_rename_residual(rest)}"
        return f"{stage}.{kind}sampler.{rest}"
    m = re.match(r"(encoder|decoder)\.middle\.(\d)\.(.*)", key)
    if m:
        part, j, rest = m.group(1), int(m.group(2)), m.group(3)
        if j == 1:
            return f"{part}.mid_block.attentions.0.{rest}"
        return f"{part}.mid_block.resnets.{j // 2}.{_rename_residual(rest)}"
    for old, new in _TOP_RENAMES:
        if key.startswith(old):
            return new + key[len(old):]
    return key


def wan22_config_from_shapes(shapes: Dict[str, Tuple[int, ...]], name: str) -> Dict[str, Any]:
    """``AutoencoderKLWan`` config of a Wan-layout Wan 2.2 VAE, read off its shapes (base width, decoder width,
    latent channels, width multipliers, residual blocks per stage, which stages downsample in time)."""
    src = xdub_file("wan22_vae")
    missing = [k for k in WAN22_MARKER_KEYS if k not in shapes]
    if missing:
        wan21 = "decoder.middle.0.residual.0.gamma" in shapes
        what = ("a Wan 2.1 VAE (16 latent channels); X-Dub needs Wan 2.2's (48)" if wan21 else
                f"not a Wan VAE in Wan's key layout (it has {_key_list(shapes)})")
        raise OmniSyncError(f"{name} is {what}; pass {src.source()}.")
    base = shapes["encoder.conv1.weight"][0]
    in_ch = shapes["encoder.conv1.weight"][1]
    z_dim = shapes["conv2.weight"][0]
    stages = sorted({int(m.group(1)) for k in shapes if (m := re.match(r"encoder\.downsamples\.(\d+)\.", k))})
    res = sorted({int(m.group(1)) for k in shapes
                  if (m := re.match(r"encoder\.downsamples\.0\.downsamples\.(\d+)\.residual", k))})
    if not stages or not res:
        raise OmniSyncError(f"{name} has no encoder stages in Wan 2.2's layout; pass {src.source()}.")
    nrb = len(res)
    mult = [shapes[f"encoder.downsamples.{i}.downsamples.0.residual.6.weight"][0] // base for i in stages]
    temporal = [f"encoder.downsamples.{i}.downsamples.{nrb}.time_conv.weight" in shapes for i in stages[:-1]]
    dec_base = shapes["decoder.head.2.weight"][1]
    patch = int(round((in_ch // 3) ** 0.5))
    return {"base_dim": base, "decoder_base_dim": dec_base, "z_dim": z_dim, "dim_mult": mult, "num_res_blocks": nrb,
            "attn_scales": [], "temperal_downsample": temporal, "dropout": 0.0, "is_residual": True,
            "in_channels": in_ch, "out_channels": shapes["decoder.head.2.weight"][0], "patch_size": patch,
            "scale_factor_temporal": 2 ** sum(temporal), "scale_factor_spatial": patch * 2 ** (len(stages) - 1),
            "latents_mean": list(WAN22_LATENTS_MEAN) if z_dim == WAN22_LATENT_CHANNELS else [0.0] * z_dim,
            "latents_std": list(WAN22_LATENTS_STD) if z_dim == WAN22_LATENT_CHANNELS else [1.0] * z_dim}


def _import_autoencoder_kl_wan():
    try:
        from diffusers import AutoencoderKLWan
    except ImportError:
        raise OmniSyncError(f"diffusers is not installed: {DIFFUSERS_HINT}.") from None
    return AutoencoderKLWan


def read_wan22_vae_file(path: str, dtype: torch.dtype = torch.float32):
    """``Wan2.2_VAE.safetensors`` (Wan's key layout, as the Kling bundle and Comfy-Org ship it) → an
    ``AutoencoderKLWan`` with every weight from the file (nothing random, nothing downloaded)."""
    src = xdub_file("wan22_vae")
    with _open_safetensors(path, src) as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        cfg = wan22_config_from_shapes(shapes, repr(path))
        if cfg["z_dim"] != WAN22_LATENT_CHANNELS:
            raise OmniSyncError(f"the VAE in {path!r} has {cfg['z_dim']} latent channels; X-Dub needs Wan 2.2's "
                                f"({WAN22_LATENT_CHANNELS}); pass {src.source()}.")
        AutoencoderKLWan = _import_autoencoder_kl_wan()
        with torch.device("meta"):
            vae = AutoencoderKLWan(**cfg)
        expected = {k: tuple(v.shape) for k, v in vae.state_dict().items()}
        renamed = {wan22_to_diffusers_keys(k, cfg["num_res_blocks"]): k for k in shapes}
        missing = sorted(set(expected) - set(renamed))
        unexpected = sorted(renamed[k] for k in set(renamed) - set(expected))
        wrong = sorted(renamed[k] for k in set(expected) & set(renamed) if expected[k] != shapes[renamed[k]])
        if missing or unexpected or wrong:
            raise OmniSyncError(
                f"{path!r} is not a complete Wan 2.2 VAE (missing: {_key_list(missing) or 'none'}; unexpected: "
                f"{_key_list(unexpected) or 'none'}; wrong shape: {_key_list(wrong) or 'none'}); it is damaged or "
                f"another model: re-download {src.source()}.")
        state = {new: f.get_tensor(old).to(dtype) for new, old in renamed.items()}
    vae.load_state_dict(state, strict=True, assign=True)
    return vae.eval()


def _open_safetensors(path: str, src):
    if not os.path.isfile(path):
        raise OmniSyncError(missing_message(src.key, path, src.cli_flag))
    try:
        return safe_open(path, framework="pt", device="cpu")
    except Exception as exc:  # noqa: BLE001 — safetensors raises its own error types for a bad header
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OmniSyncError(f"{path!r} is not a readable safetensors file ({first}): it is damaged, truncated or "
                            f"another format; re-download {src.source()}.") from None


def load_wan22_vae(path: str, device="cpu", dtype: torch.dtype = torch.float32) -> VAECodec:
    """Wan 2.2's VAE → the X-Dub codec. Nothing is downloaded.

    path: the bundle's single file ``Wan2.2_VAE.safetensors`` (Wan's key layout; what ComfyUI's Load VAE reads
        too), or a diffusers ``AutoencoderKLWan`` folder (config.json + diffusion_pytorch_model.safetensors, e.g.
        the ``vae`` folder of Wan2.2-TI2V-5B-Diffusers).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        return wan22_codec(DiffusersWanVAE(_read_diffusers_folder(path, dtype), device, dtype))
    return wan22_codec(DiffusersWanVAE(read_wan22_vae_file(path, dtype), device, dtype))


def _read_diffusers_folder(path: str, dtype: torch.dtype):
    src = xdub_file("wan22_vae")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise OmniSyncError(f"{path!r} is a folder without config.json; pass {src.source()}, or a diffusers "
                            "AutoencoderKLWan folder (config.json + diffusion_pytorch_model.safetensors).")
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            z_dim = json.load(f).get("z_dim")
    except (OSError, ValueError) as exc:
        raise OmniSyncError(f"{path!r}: config.json is not readable JSON ({exc}); pass {src.source()}.") from None
    if z_dim != WAN22_LATENT_CHANNELS:
        raise OmniSyncError(f"the VAE in {path!r} has {z_dim} latent channels; X-Dub needs Wan 2.2's VAE "
                            f"({WAN22_LATENT_CHANNELS}), not Wan 2.1's (16); pass {src.source()}.")
    AutoencoderKLWan = _import_autoencoder_kl_wan()
    try:
        vae = AutoencoderKLWan.from_pretrained(path, local_files_only=True, use_safetensors=True, torch_dtype=dtype)
    except Exception as exc:  # noqa: BLE001 — diffusers raises OSError, ValueError, safetensors errors …
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OmniSyncError(f"could not load the Wan 2.2 VAE folder {path!r} ({first}); it needs config.json and "
                            f"diffusion_pytorch_model.safetensors, or pass {src.source()}.") from None
    return vae.eval()
