"""ComfyUI ↔ omnisync_core type translation; no maths here.

ComfyUI layouts (as the core nodes use them):
    IMAGE: (T, H, W, 3) float in [0, 1] — the batch axis is the frame axis for video;
    MASK:  (T, H, W) float in [0, 1];
    AUDIO: {"waveform": (B, C, N) float, "sample_rate": int};
    CONDITIONING: [[cond (B, L, D), {...}], ...].

The objects passed between OmniSync nodes (OMNISYNC_MODEL, OMNISYNC_AUDIO, OMNISYNC_LATENT) are
small dataclasses defined here; they hold tensors and the bookkeeping the next node needs. Their socket types
(``io.Custom``) are declared here too, once, for every node that takes or gives them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

import torch
from comfy_api.latest import io

from omnisync_core.errors import Cancelled, OmniSyncError

log = logging.getLogger("omnisync")

CATEGORY = "OmniSync"
MODEL_FOLDER = "omnisync"  # ComfyUI/models/omnisync and <this plugin>/models
AUDIO_ENCODER_FOLDER = "audio_encoders"  # ComfyUI/models/audio_encoders (registered by ComfyUI itself)
PLUGIN_MODELS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models")
# What the bundled OmniSync model can dub, said in the description of every node that runs it (issue 23).
BUNDLED_MODEL_DOMAIN = "The bundled model is for synthetic characters; for real faces use X-Dub."

# socket types of the objects passed between OmniSync nodes
OmniSyncModelType = io.Custom("OMNISYNC_MODEL")
OmniSyncAudioEncoderType = io.Custom("OMNISYNC_AUDIO_ENCODER")
OmniSyncAudioType = io.Custom("OMNISYNC_AUDIO")
OmniSyncLatentType = io.Custom("OMNISYNC_LATENT")


# -- objects passed between OmniSync nodes ---------------------------------------------------------


@dataclass
class OmniSyncModel:
    """OMNISYNC_MODEL: the network (the bundled pixel-space U-Net, or a DiT) with what its checkpoint says about
    codec and audio features."""

    model: torch.nn.Module  # OmniSyncUNet or OmniSyncDiT (checkpoint's "arch"), eval mode, on ``device`` in ``dtype``
    codec_spec: dict  # checkpoint metadata "codec"
    audio_spec: Any  # AudioFeatureSpec or None
    meta: dict  # the whole checkpoint metadata
    device: torch.device  # where it runs (ComfyUI's torch device); between runs ComfyUI may offload it
    dtype: torch.dtype
    name: str = ""
    patcher: Any = None  # comfy.model_patcher.ModelPatcher over ``model``: ComfyUI's memory management
    swap: Any = None  # omnisync_core.model.offload.BlockSwap with offload = blocks (then no patcher)


@dataclass
class OmniSyncAudio:
    """OMNISYNC_AUDIO: speech features aligned to the output frames, and the frame index plan.

    frame_features: (T_out, L·D) float32, one row per output video frame (layer-major: L layers of D).
    frame_indices: (T_out,) long — which source frame each output frame shows (loop / ping-pong / trim).
    waveform: (N,) float32 at ``sample_rate``, already matched to T_out frames.
    """

    frame_features: torch.Tensor
    num_layers: int
    dim: int
    frame_indices: torch.Tensor
    fps: float
    waveform: torch.Tensor
    sample_rate: int
    source: str  # "omnisync_whisper" or "comfy_audio_encoder"
    report: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.frame_features.shape[0])


@dataclass
class OmniSyncLatent:
    """OMNISYNC_LATENT: latents of the (padded) clip and what is needed to decode and crop them back.

    latents: (C, F, h, w) — x_init after Noise Init, the denoised latents after the sampler.
    sigmas: (S + 1,) the truncated flow-matching schedule, starting at τ.
    video: ``omnisync_core.pipelines.omnisync.EncodedVideo``: the source latents (the model's source condition),
        the source frames after the frame plan, unpadded (for fallback frames and compositing), padding.
    """

    latents: torch.Tensor
    sigmas: torch.Tensor
    video: Any
    codec: Any
    tau: float
    seed: int
    denoised: bool = False
    mouth_centres: Optional[torch.Tensor] = None  # (T, 2) frame fractions, after sampling
    fallback_frames: List[int] = field(default_factory=list)  # video frames passed through unchanged
    report: dict = field(default_factory=dict)

    @property
    def source(self) -> torch.Tensor:
        return self.video.source

    @property
    def source_frames(self) -> torch.Tensor:
        return self.video.frames

    @property
    def pads(self) -> Tuple[int, int]:
        return self.video.pads

    @property
    def frames_added(self) -> int:
        return self.video.frames_added

    @property
    def frame_indices(self) -> Optional[torch.Tensor]:
        return self.video.frame_indices

    @property
    def num_frames(self) -> int:
        return self.video.num_frames


def load_for_sampling(model: OmniSyncModel) -> None:
    """Ask ComfyUI's model management to put the network on its device (freeing or offloading other models
    as needed); it may offload it again when another model needs the memory."""
    import comfy.model_management as mm

    if model.patcher is not None:
        mm.load_models_gpu([model.patcher])


def pipeline_for(model: OmniSyncModel, codec: Any, audio_encoder: Any = None):
    """The core pipeline of a loaded model: its device, precision and the audio window of its checkpoint."""
    from omnisync_core.pipelines.omnisync import OmniSyncPipeline

    frame_window = getattr(model.audio_spec, "frame_window", None)
    return OmniSyncPipeline(model.model, codec, audio_encoder, device=model.device, dtype=model.dtype,
                            frame_window=frame_window, meta=model.meta)


def all_warnings(*reports: Optional[dict]) -> List[str]:
    """The ``"warnings"`` of several node reports, in order, each line once."""
    out: List[str] = []
    for r in reports:
        for message in (r or {}).get("warnings", []):
            if message not in out:
                out.append(message)
    return out


AUTO_WIDGETS = ("num_steps", "window", "tau", "shift", "omega_base", "omega_peak")  # 0 on these widgets = auto
AUTO_WIDGETS_NEGATIVE = ("overlap", "cfg_cutoff")  # 0 is a real value on these: −1 = auto


def sync_options(model: OmniSyncModel, on_warning, **widgets):
    """Widget values → (SyncOptions, report): 0 in ``num_steps``, ``window``, ``tau``, ``shift``, ``omega_base``
    or ``omega_peak`` and −1 in ``overlap`` or ``cfg_cutoff`` mean auto (the checkpoint's recommended sampling,
    else the default); a recommendation this version does not know is a warning (``on_warning``)."""
    from omnisync_core.sampling.options import AUTO, resolve_options

    for name in AUTO_WIDGETS:
        if widgets.get(name) == 0:
            widgets[name] = AUTO
    for name in AUTO_WIDGETS_NEGATIVE:
        if name in widgets and widgets[name] is not None and widgets[name] < 0:
            widgets[name] = AUTO
    options, report = resolve_options(model.meta, **widgets)
    if report["ignored"]:
        on_warning("the checkpoint recommends sampling settings this version does not know, ignored: "
                   + ", ".join(report["ignored"]) + ".")
    return options, report


H264_SIZE_MULTIPLE = 2  # yuv420p halves the chroma planes: Save Video's H.264 needs even width and height


def pad_for_h264(frames, report: dict, on_warning):
    """(T, H, W, 3) -> the frames for the VIDEO output, with even H and W (the last row/column repeated):
    Save Video writes yuv420p H.264, which cannot hold odd sizes. The IMAGE output keeps the exact size;
    the padding is a warning (``on_warning``) and ``report["padded_to_even"]``."""
    from omnisync_core.model.codec import pad_to_stride

    padded, pads = pad_to_stride(frames, H264_SIZE_MULTIPLE)
    if any(pads):
        H, W = frames.shape[1:3]
        report["padded_to_even"] = f"{W}x{H} -> {padded.shape[2]}x{padded.shape[1]}"
        on_warning(
            f"the VIDEO output is {W}x{H} -> {padded.shape[2]}x{padded.shape[1]}: Save Video's H.264 (yuv420p) needs "
            "even sizes, so the last row/column is repeated there; the IMAGE output keeps the exact size.")
    return padded.contiguous()


# -- model folders ---------------------------------------------------------------------------------


def register_model_folders() -> None:
    """models/omnisync under ComfyUI's models dir and the plugin's bundled models/ folder."""
    import folder_paths

    folder_paths.add_model_folder_path(MODEL_FOLDER, os.path.join(folder_paths.models_dir, MODEL_FOLDER))
    folder_paths.add_model_folder_path(MODEL_FOLDER, PLUGIN_MODELS_DIR)


def _is_omnisync_checkpoint(path: Optional[str]) -> bool:
    """True for a safetensors file with OmniSync metadata (reads the header only)."""
    from safetensors import SafetensorError, safe_open

    from omnisync_core.model.checkpoint import METADATA_KEY

    if not path:
        return False
    try:
        with safe_open(path, framework="pt") as f:
            return METADATA_KEY in (f.metadata() or {})
    except (OSError, SafetensorError):
        return False


def model_file_list() -> List[str]:
    """The OmniSync checkpoints in the model folders; other safetensors files there (the eval's mouth reader,
    a training state) are left out of the list."""
    import folder_paths

    return [f for f in folder_paths.get_filename_list(MODEL_FOLDER)
            if f.lower().endswith(".safetensors") and _is_omnisync_checkpoint(folder_paths.get_full_path(MODEL_FOLDER, f))]


def missing_file_error(folder: str, name: str, what: str) -> OmniSyncError:
    import folder_paths

    try:
        where = ", ".join(folder_paths.get_folder_paths(folder))
    except KeyError:
        where = f"models/{folder}"
    return OmniSyncError(
        f"{what} {name!r} not found in models/{folder} (searched: {where}). Put the file there and "
        "refresh the node list; nothing is downloaded at run time."
    )


# -- progress and cancellation ---------------------------------------------------------------------


class ComfyProgress:
    """The core's ``progress(done, total, message)`` → ``comfy.utils.ProgressBar.update_absolute``."""

    def __init__(self):
        self.bar = None

    def __call__(self, done: int, total: int, message: str = "") -> None:
        import comfy.utils

        if self.bar is None:
            self.bar = comfy.utils.ProgressBar(total)
        self.bar.update_absolute(done, total)


def comfy_cancel() -> bool:
    """The core's ``cancel()`` check: ComfyUI raises its own InterruptProcessingException here."""
    import comfy.model_management

    comfy.model_management.throw_exception_if_processing_interrupted()
    return False


def run_cancellable(fn, *args, **kwargs):
    """Call ``fn``; a core :class:`Cancelled` becomes ComfyUI's InterruptProcessingException."""
    import comfy.model_management

    try:
        return fn(*args, **kwargs)
    except Cancelled as e:
        raise comfy.model_management.InterruptProcessingException() from e


# -- ComfyUI values ↔ core tensors ----------------------------------------------------------------


def audio_from_comfy(audio: Any) -> Tuple[torch.Tensor, int, dict]:
    """AUDIO dict → (waveform (C, N) of the first batch item, sample_rate, report)."""
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise OmniSyncError(
            "audio must be ComfyUI AUDIO ({'waveform': (B, C, N), 'sample_rate': int}); connect Load Audio "
            "or Get Video Components."
        )
    wave = torch.as_tensor(audio["waveform"])
    report = {}
    if wave.ndim == 3:
        if wave.shape[0] > 1:
            report["batch"] = f"audio batch of {wave.shape[0]}: only the first item is used"
        wave = wave[0]
    return wave.float().cpu(), int(audio["sample_rate"]), report


def audio_to_comfy(waveform: torch.Tensor, sample_rate: int) -> dict:
    """(N,) or (C, N) → AUDIO {"waveform": (1, C, N), "sample_rate"}."""
    w = waveform.float().cpu()
    if w.ndim == 1:
        w = w[None]
    return {"waveform": w[None].contiguous(), "sample_rate": int(sample_rate)}


def text_from_conditioning(conditioning: Any, model: OmniSyncModel) -> Tuple[Optional[torch.Tensor], Optional[str]]:
    """CONDITIONING → (text (L, text_dim) or None, warning or None)."""
    if conditioning is None:
        return None, None
    cfg = model.model.config
    if not cfg.use_text:
        return None, "this model has no text branch: the CONDITIONING input is ignored."
    try:
        cond = torch.as_tensor(conditioning[0][0])
    except (IndexError, TypeError) as e:
        raise OmniSyncError("conditioning must be ComfyUI CONDITIONING (e.g. from CLIP Text Encode).") from e
    if cond.ndim != 3:
        raise OmniSyncError(f"the conditioning tensor must be (B, L, D), got shape {tuple(cond.shape)}.")
    if cond.shape[-1] != cfg.text_dim:
        raise OmniSyncError(
            f"the text conditioning has dim {cond.shape[-1]} but this model expects {cfg.text_dim} (Wan 2.1: "
            "umT5-XXL, 4096); encode the description with the text encoder the model was trained with "
            "(Load CLIP type 'wan')."
        )
    return cond[0], None


def make_video(images: torch.Tensor, audio: Optional[dict], fps: float):
    """VIDEO for Save Video, from IMAGE (T, H, W, 3), AUDIO and fps (as an exact rate: 29.97 → 30000/1001)."""
    from comfy_api.latest import InputImpl, Types

    from omnisync_core.io.fps import exact_fps

    return InputImpl.VideoFromComponents(Types.VideoComponents(images=images, audio=audio, frame_rate=exact_fps(fps)))


def format_report(report: dict) -> str:
    import json

    return json.dumps(report, indent=1, default=str)
