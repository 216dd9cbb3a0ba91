"""Model and codec configuration: plain dataclasses, serialised into checkpoint metadata.

:class:`DiTConfig` describes an :class:`~omnisync_core.model.dit.OmniSyncDiT`; its field names follow
Wan 2.1's ``WanModel`` arguments (``in_dim`` = ``out_dim`` = ``latent_channels`` here), so a Wan 2.1
T2V checkpoint maps onto the ``"wan2.1-1.3b"`` preset. :class:`CodecSpec` names the latent space the
model was trained in (pixel space-to-depth or an external VAE); :func:`~omnisync_core.model.codec.
codec_from_spec` builds the codec from it. Both survive a JSON round trip (tuples come back as tuples).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..errors import OmniSyncError

# Whisper tiny.en: d_model 384, 4 encoder layers -> 5 hidden states (embedding output + 4 layers).
# OmniSync stacks all of them per audio feature, so one audio token is 5 · 384 = 1920 numbers.
WHISPER_TINY_EN_TOKEN_DIM = 5 * 384


def _from_dict(cls, d: Mapping[str, Any], what: str):
    if not isinstance(d, Mapping):
        raise OmniSyncError(f"{what} must be a JSON object (dict), got {type(d).__name__}.")
    known = [f.name for f in dataclasses.fields(cls)]
    for key in d:
        if key not in known:
            raise OmniSyncError(
                f"unknown {what} key {key!r}; valid keys are {known}. Remove or rename it "
                "(the file may come from a newer OmniSync version)."
            )
    return cls(**dict(d))


# -- the DiT ---------------------------------------------------------------------------------------

# Where the source (reference) latents enter the DiT.
#   "channels": OmniSync: concatenated to the noisy latents on the channel axis.
#   "sequence": X-Dub: appended as a second set of latent frames, [reference, target] along the token
#       sequence, with timestep 0, their RoPE shifted by (0, H', W'), and excluded from the text and audio
#       cross-attention and from the output.
SOURCE_LAYOUTS = ("channels", "sequence")


@dataclass
class AudioProjConfig:
    """X-Dub's audio projection (``AudioProjModule``): raw per-frame audio windows -> DiT width.

    input_dim: width of one raw audio token (Whisper large-v2 1280 + wav2vec2-base 768 = 2048).
    dim: width inside the projection. num_heads: heads of its attention (X-Dub: 24 heads of 64 = 1536).
    num_layers: layers of (pre-norm self-attention over the window, pre-norm GEGLU feed-forward).
    ff_mult: feed-forward hidden width = ff_mult · dim.
    max_window: audio tokens per frame the sinusoidal position table covers.
    eps: epsilon of its LayerNorms (PyTorch's default 1e-5 there, unlike the DiT's 1e-6).
    """

    input_dim: int = 2048
    dim: int = 1536
    num_layers: int = 4
    num_heads: int = 24
    ff_mult: int = 4
    max_window: int = 100
    eps: float = 1e-5

    def __post_init__(self):
        if min(self.input_dim, self.dim, self.num_layers, self.num_heads, self.ff_mult, self.max_window) < 1:
            raise OmniSyncError("bad audio projection config: every size must be >= 1.")
        if self.dim % self.num_heads or self.dim % 2:
            raise OmniSyncError(f"bad audio projection config: dim {self.dim} must be even and divisible by "
                                f"num_heads {self.num_heads}.")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AudioProjConfig":
        return _from_dict(cls, d, "audio projection config")


PREDICTIONS = ("velocity", "x0_residual")
X0_MIN_SIGMA = 0.05  # x0_residual: v = (x − x̂₀)/max(σ, this), as JiT clamps t near the data end
# Fields of DiT checkpoints saved before the training-only mouth probe was removed; every such file
# carries them, inert when mouth_probe is 0, so from_dict drops them there (and refuses a real probe).
RETIRED_FIELDS = ("mouth_probe", "mouth_probe_layer")


@dataclass
class DiTConfig:
    """Sizes and switches of :class:`OmniSyncDiT`.

    dim, ffn_dim, num_heads, num_layers: transformer width, MLP width, heads, blocks.
    latent_channels: C of the latents the model denoises (in and out).
    text_dim: width of the text features (umT5-XXL: 4096). text_len: Wan 2.1 zero-pads the text
        features to this many tokens before embedding them (it was trained that way); longer text is
        refused. use_text=False builds no text branch at all.
    freq_dim: width of the sinusoidal timestep features.
    patch_size: (t, h, w) patch of the 3D patch embedding.
    audio_dim: width of one audio token (Whisper hidden states stacked); 0 = no audio branch.
    source_condition: the model is conditioned on reference/source latents.
    source_layout: where they enter (see SOURCE_LAYOUTS): "channels" (OmniSync) or "sequence" (X-Dub).
    audio_layers: indices of the blocks that have the audio cross-attention; None = every block.
    audio_proj: the audio projection of X-Dub (AudioProjConfig); None = OmniSync's two-layer MLP.
    qk_norm: RMS-normalise queries and keys. cross_attn_norm: LayerNorm before text cross-attention.
    eps: epsilon of every norm.
    prediction: what the network's head outputs. "velocity" (Wan 2.1): v directly. "x0_residual":
        the clean frames as a residual on the source, x̂₀ = source + head(...), returned as the velocity
        v = (x − x̂₀)/max(σ, X0_MIN_SIGMA). For pixel-space models whose patches (16×16×3 values) are
        wider than the transformer: noise is full-rank and cannot pass a narrow token, clean frames can
        (JiT, "Back to Basics: Let Denoising Generative Models Denoise", 2025); and with the zero-init
        head a fresh model returns the source exactly, so training only has to learn the edit.
    """

    dim: int
    ffn_dim: int
    num_heads: int
    num_layers: int
    latent_channels: int
    text_dim: int = 4096
    freq_dim: int = 256
    patch_size: Tuple[int, int, int] = (1, 2, 2)
    audio_dim: int = 0
    text_len: int = 512
    use_text: bool = True
    source_condition: bool = True
    qk_norm: bool = True
    cross_attn_norm: bool = True
    eps: float = 1e-6
    prediction: str = "velocity"
    source_layout: str = "channels"
    audio_layers: Optional[Tuple[int, ...]] = None
    audio_proj: Optional[AudioProjConfig] = None

    def __post_init__(self):
        self.patch_size = tuple(int(p) for p in self.patch_size)
        if self.audio_layers is not None:
            self.audio_layers = tuple(int(i) for i in self.audio_layers)
        if isinstance(self.audio_proj, Mapping):
            self.audio_proj = AudioProjConfig.from_dict(self.audio_proj)
        # lazily evaluated, in order, so that a later check may assume the earlier ones hold
        checks = [
            (lambda: min(self.dim, self.ffn_dim, self.num_heads, self.num_layers, self.latent_channels) >= 1,
             "dim, ffn_dim, num_heads, num_layers and latent_channels must be >= 1"),
            (lambda: self.dim % self.num_heads == 0,
             f"dim {self.dim} must be divisible by num_heads {self.num_heads}"),
            (lambda: self.head_dim % 2 == 0 and self.head_dim >= 6,
             f"head_dim = dim / num_heads must be even and >= 6 for the 3D RoPE (got {self.dim}/{self.num_heads})"),
            (lambda: len(self.patch_size) == 3 and min(self.patch_size) >= 1,
             "patch_size is three positive ints (t, h, w)"),
            (lambda: self.freq_dim >= 2 and self.freq_dim % 2 == 0, "freq_dim must be even and >= 2"),
            (lambda: self.audio_dim >= 0, "audio_dim must be >= 0 (0 = no audio branch)"),
            (lambda: self.text_dim >= 1 and self.text_len >= 1, "text_dim and text_len must be >= 1"),
            (lambda: self.eps > 0, "eps must be > 0"),
            (lambda: self.prediction in PREDICTIONS, f"prediction must be one of {PREDICTIONS}"),
            (lambda: self.prediction == "velocity" or self.source_condition,
             "prediction 'x0_residual' needs source_condition=True (the residual is added to the source)"),
            (lambda: self.source_layout in SOURCE_LAYOUTS, f"source_layout must be one of {SOURCE_LAYOUTS}"),
            (lambda: self.source_layout == "channels" or (self.source_condition and self.prediction == "velocity"),
             "source_layout 'sequence' needs source_condition=True and prediction 'velocity'"),
            (lambda: self.source_layout == "channels" or self.patch_size[0] == 1,
             "source_layout 'sequence' needs patch t = 1 (timesteps and audio windows are per latent frame)"),
            (lambda: self.source_layout == "channels" or (self.head_dim // 3) % 2 == 0,
             f"source_layout 'sequence' needs head_dim // 3 even, so that X-Dub's RoPE split (d − 2⌊d/3⌋, ⌊d/3⌋, "
             f"⌊d/3⌋) is Wan's (got head_dim {self.dim // self.num_heads})"),
            (lambda: self.audio_layers is None or all(0 <= i < self.num_layers for i in self.audio_layers),
             f"audio_layers must be block indices in [0, {self.num_layers})"),
            (lambda: self.audio_proj is None or (isinstance(self.audio_proj, AudioProjConfig)
                                                 and self.audio_proj.input_dim == self.audio_dim),
             "audio_proj.input_dim must equal audio_dim (the raw audio token width)"),
        ]
        for ok, message in checks:
            if not ok():
                raise OmniSyncError(f"bad DiT config: {message}.")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def in_channels(self) -> int:
        """Channels entering the patch embedding: noisy latents, plus source latents when channel-concatenated."""
        return self.latent_channels * (2 if self.source_condition and self.source_layout == "channels" else 1)

    def has_audio(self, block: int) -> bool:
        """Whether block ``block`` has the audio cross-attention."""
        return bool(self.audio_dim) and (self.audio_layers is None or block in self.audio_layers)

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["patch_size"] = list(self.patch_size)
        if self.audio_layers is not None:
            d["audio_layers"] = list(self.audio_layers)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DiTConfig":
        if isinstance(d, Mapping) and any(key in d for key in RETIRED_FIELDS):
            if d.get("mouth_probe", 0):
                raise OmniSyncError(
                    f"this DiT was trained with a mouth probe of {d['mouth_probe']} outputs, a training aid this "
                    "version no longer has; load it with the OmniSync version that trained it.")
            d = {key: value for key, value in d.items() if key not in RETIRED_FIELDS}
        return _from_dict(cls, d, "DiT config")


PRESETS: Dict[str, DiTConfig] = {
    # Wan 2.1 T2V-1.3B backbone; audio tokens are Whisper tiny.en, 5 hidden states x 384.
    "wan2.1-1.3b": DiTConfig(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30, latent_channels=16,
                             text_dim=4096, audio_dim=WHISPER_TINY_EN_TOKEN_DIM),
    # For tests and CPU smoke runs: seconds per step.
    "tiny": DiTConfig(dim=64, ffn_dim=128, num_heads=2, num_layers=2, latent_channels=12, text_dim=32,
                      audio_dim=40),
    # X-Dub (Kling, arXiv 2512.25066): Wan 2.2 TI2V-5B with the reference in the token sequence and
    # Whisper large-v2 (1280) + wav2vec2-base-960h (768) audio windows in every block.
    "xdub-5b": DiTConfig(dim=3072, ffn_dim=14336, num_heads=24, num_layers=30, latent_channels=48,
                         text_dim=4096, freq_dim=256, audio_dim=2048, source_layout="sequence",
                         audio_proj=AudioProjConfig()),
    # X-Dub layout at test size: head_dim 32 splits into RoPE parts 12:10:10 as the reference's d − 2⌊d/3⌋, ⌊d/3⌋.
    "tiny-xdub": DiTConfig(dim=64, ffn_dim=128, num_heads=2, num_layers=2, latent_channels=48, text_dim=16,
                           freq_dim=32, audio_dim=40, source_layout="sequence",
                           audio_proj=AudioProjConfig(input_dim=40, dim=32, num_layers=2, num_heads=2)),
}


def preset(name: str, **overrides: Any) -> DiTConfig:
    """A copy of ``PRESETS[name]`` with fields replaced by ``overrides`` (validated again)."""
    if name not in PRESETS:
        raise OmniSyncError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}.")
    d = PRESETS[name].to_dict()
    for key in overrides:
        if key not in d:
            raise OmniSyncError(f"unknown DiT config field {key!r} in the overrides; valid fields are {list(d)}.")
    d.update(overrides)
    return DiTConfig.from_dict(d)


# -- the codec -------------------------------------------------------------------------------------

CODEC_TYPES = ("pixel", "vae")
# Wan 2.1 VAE: 16 channels, 4 video frames per latent frame (after the first), 8 pixels per latent pixel.
WAN_VAE_DEFAULTS = {"latent_channels": 16, "temporal_factor": 4, "spatial_factor": 8}


@dataclass
class CodecSpec:
    """The latent space a checkpoint was trained in.

    type: "pixel" (space-to-depth of the frames, needs ``patch``) or "vae" (an external video VAE).
    latent_channels, temporal_factor, spatial_factor: left as None, they are filled in from the type:
        pixel -> 3·patch², 1, patch; vae -> Wan 2.1's 16, 4, 8.
    latents_mean, latents_std: optional per-channel VAE latent normalisation (vae only).
    """

    type: str = "pixel"
    patch: Optional[int] = None
    latent_channels: Optional[int] = None
    temporal_factor: Optional[int] = None
    spatial_factor: Optional[int] = None
    latents_mean: Optional[List[float]] = None
    latents_std: Optional[List[float]] = None

    def __post_init__(self):
        if self.type not in CODEC_TYPES:
            raise OmniSyncError(f"codec type must be one of {CODEC_TYPES}, got {self.type!r}.")
        if self.type == "pixel":
            if self.patch is None or int(self.patch) < 1:
                raise OmniSyncError("a pixel codec spec needs patch >= 1, e.g. CodecSpec(type='pixel', patch=8).")
            self.patch = int(self.patch)
            implied = {"latent_channels": 3 * self.patch ** 2, "temporal_factor": 1, "spatial_factor": self.patch}
        else:
            implied = WAN_VAE_DEFAULTS
        for key, value in implied.items():
            got = getattr(self, key)
            if got is None:
                setattr(self, key, value)
            elif self.type == "pixel" and int(got) != value:
                raise OmniSyncError(
                    f"pixel codec with patch {self.patch} has {key}={value}, but the spec says {got}; "
                    f"drop {key} from the spec or fix it."
                )
            else:
                setattr(self, key, int(got))
        for key in ("latents_mean", "latents_std"):
            value = getattr(self, key)
            if value is not None:
                setattr(self, key, [float(v) for v in value])

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CodecSpec":
        return _from_dict(cls, d, "codec spec")
