"""X-Dub nodes: load the public X-Dub weights (Wan 2.2 TI2V-5B lip-sync DiT, Whisper large-v2, wav2vec2-base-960h)
and run the three stages of ``omnisync_core.pipelines.xdub.XDubPipeline`` on face crops, one node each.

The graph: Get Video Components → Face Crop → X-Dub Encode (speech features, the take ping-ponged to the speech,
reference latents through ComfyUI's Wan 2.2 VAE) → X-Dub Sampler → X-Dub Assemble (decoded crops, and the full
frames and face boxes in the take's order) → Face Paste Back → Create Video. The VAE comes from core Load VAE,
the text from core Load CLIP (type wan) + CLIP Text Encode. No maths here: every number is computed in
``omnisync_core``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, List, Optional

import torch
from comfy_api.latest import io

from omnisync_core.errors import OmniSyncError
from omnisync_core.model.fp8 import WEIGHT_DTYPES

from .bridge import (
    AUDIO_ENCODER_FOLDER, CATEGORY, ComfyProgress, audio_from_comfy, audio_to_comfy, comfy_cancel, format_report,
    run_cancellable,
)
from .facecrop import FaceCropType
from .feedback import HIDDEN, Feedback
from .widgets import check_choices
from .xdub_model import load_xdub_patcher

DIFFUSION_FOLDER = "diffusion_models"  # ComfyUI/models/diffusion_models (and models/unet)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
HF_FOLDER_MARKER = "config.json"  # a Hugging Face model folder
# Listed audio-encoder files: single .safetensors (the publishers' model.safetensors, saved under their registry
# names), and the bundle's openai-whisper large-v2.pt (read with torch.load(weights_only=True) on torch >= 2.6,
# never unpickled otherwise)
AUDIO_ENCODER_SUFFIXES = (".safetensors", ".pt")
COMFY_UMT5_FILE = "umt5_xxl_fp8_e4m3fn_scaled.safetensors"  # ComfyUI's layout of umT5-XXL (Comfy-Org/Wan_2.1_ComfyUI_repackaged)

XDubModelType = io.Custom("XDUB_MODEL")
XDubAudioEncodersType = io.Custom("XDUB_AUDIO_ENCODERS")
XDubLatentType = io.Custom("XDUB_LATENT")


# -- objects passed between X-Dub nodes ------------------------------------------------------------


@dataclass
class XDubModel:
    """XDUB_MODEL: the X-Dub DiT in a ComfyUI ``ModelPatcher`` (``patcher.model`` is the network; ComfyUI's model
    management places its weights), the device it computes on and its compute dtype."""

    patcher: Any
    device: torch.device
    dtype: torch.dtype
    name: str = ""
    report: dict = field(default_factory=dict)

    @property
    def model(self) -> torch.nn.Module:
        return self.patcher.model


@dataclass
class XDubLatent:
    """XDUB_LATENT: a take after X-Dub Encode (``encoded``) and, after the Sampler, its ``sampled`` latents.

    pipeline: the ``omnisync_core.pipelines.xdub.XDubPipeline`` that made it (model, Wan 2.2 codec);
    options: the sampler's ``XDubOptions`` (Assemble's colour match and border blend follow them).
    """

    pipeline: Any
    encoded: Any  # XDubEncoded
    sampled: Any = None  # XDubSampled
    options: Any = None
    report: dict = field(default_factory=dict)


# -- file lists ------------------------------------------------------------------------------------


def diffusion_model_files() -> List[str]:
    import folder_paths

    return [f for f in folder_paths.get_filename_list(DIFFUSION_FOLDER) if f.lower().endswith(".safetensors")]


def audio_encoder_choices() -> List[str]:
    """Hugging Face folders (with config.json), .safetensors files and the bundle's Whisper .pt in
    models/audio_encoders; the weight files inside such a folder are not listed on their own."""
    import folder_paths

    folders = set()
    for root in folder_paths.get_folder_paths(AUDIO_ENCODER_FOLDER):
        if os.path.isdir(root):
            folders |= {name for name in os.listdir(root) if os.path.isfile(os.path.join(root, name, HF_FOLDER_MARKER))}
    files = {f for f in folder_paths.get_filename_list(AUDIO_ENCODER_FOLDER)
             if f.lower().endswith(AUDIO_ENCODER_SUFFIXES) and f.split("/")[0] not in folders}
    return sorted(folders | files)


def find_audio_encoder(name: str) -> Optional[str]:
    """The path of file or folder ``name`` in models/audio_encoders, None if it is not there."""
    import folder_paths

    for root in folder_paths.get_folder_paths(AUDIO_ENCODER_FOLDER):
        candidate = os.path.join(root, name)
        if os.path.exists(candidate):
            return candidate
    return None


def audio_encoder_path(name: str, key: str) -> str:
    """The path of ``name`` in models/audio_encoders; ``key``: the X-Dub registry's file it stands for."""
    path = find_audio_encoder(name)
    if path is None:
        raise published_file_missing(key, AUDIO_ENCODER_FOLDER, name)
    return path


REFRESH = "Refresh the node list (R) once the files are there."


def published_file_missing(key: str, folder: str, name: str, refresh: bool = True) -> OmniSyncError:
    """A published X-Dub file (registry ``key``) is not at models/<folder>/<name>: the registry's line (the file,
    where it comes from, where it goes; for the published form ``name`` has: the single file, or the bundle's .pt
    or folder) and the other folders ComfyUI searched."""
    import folder_paths

    from omnisync_core.model.files import missing_message, xdub_file, xdub_file_for

    key = xdub_file_for(key, name).key

    roots = folder_paths.get_folder_paths(folder)
    # the folder the registry names first (ComfyUI lists e.g. models/unet before models/diffusion_models)
    roots = sorted(roots, key=lambda r: os.path.basename(os.path.normpath(r)) != xdub_file(key).directory)
    path = os.path.join(roots[0], name) if roots else f"models/{folder}/{name}"
    searched = f" ComfyUI also searched {', '.join(roots[1:])}." if len(roots) > 1 else ""
    return OmniSyncError(missing_message(key, path) + searched + (" " + REFRESH if refresh else ""))


# -- loaders ---------------------------------------------------------------------------------------


class OmniSyncXDubModelLoader(io.ComfyNode):
    DISPLAY_NAME = "Load X-Dub Model"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="OmniSyncXDubModelLoader",
            display_name=cls.DISPLAY_NAME,
            category=CATEGORY,
            description=(
                "Loads the X-Dub lip-sync DiT (X-Dub_model.safetensors, Wan 2.2 TI2V-5B with the reference frames in "
                "its token sequence) from models/diffusion_models; its size is read from the file. ComfyUI's model "
                "management places it like its own models: it offloads other models of the graph to make room, and "
                "when X-Dub does not fit the GPU it keeps part of the weights in CPU memory and copies each layer to "
                "the GPU for its call (low-VRAM loading; --lowvram / --reserve-vram steer it)."
            ),
            inputs=[
                io.Combo.Input("model_name", options=diffusion_model_files(),
                               tooltip="X-Dub_model.safetensors in ComfyUI/models/diffusion_models."),
                io.Combo.Input("dtype", options=list(DTYPES), default="bf16",
                               tooltip="Precision of the computation (and of the weights with weight_dtype default): "
                                       "bf16 as published (11.72 GiB of weights); fp32 doubles that and is for CPU "
                                       "tests."),
                io.Combo.Input("weight_dtype", options=list(WEIGHT_DTYPES), default="default",
                               tooltip="How the weights are stored (as core Load Diffusion Model): default = dtype "
                                       "(a scaled-fp8 file stays fp8); fp8_e4m3fn keeps the transformer blocks' "
                                       "linear weights in 1 byte with a scale each (about half the memory), computed "
                                       "in dtype, slightly less exact."),
            ],
            outputs=[XDubModelType.Output(display_name="model", tooltip="The X-Dub DiT, ready for the X-Dub Sampler.")],
            hidden=list(HIDDEN),
        )

    @classmethod
    def validate_inputs(cls, model_name=None) -> bool | str:
        """Before any node of the prompt runs: the file is there (ComfyUI does not check a V3 combo's options)."""
        import folder_paths

        if model_name is not None and folder_paths.get_full_path(DIFFUSION_FOLDER, model_name) is None:
            return str(published_file_missing("xdub_model", DIFFUSION_FOLDER, model_name))
        return True

    @classmethod
    def execute(cls, model_name, dtype, weight_dtype) -> io.NodeOutput:
        import folder_paths

        check_choices(cls, dtype=dtype, weight_dtype=weight_dtype)
        path = folder_paths.get_full_path(DIFFUSION_FOLDER, model_name)
        if path is None:
            raise published_file_missing("xdub_model", DIFFUSION_FOLDER, model_name)
        torch_dtype = DTYPES[dtype]
        # the weights wait on ComfyUI's offload device; the X-Dub Sampler asks model management to load them
        patcher = run_cancellable(load_xdub_patcher, path, torch_dtype, weight_dtype, progress=ComfyProgress(),
                                  cancel=comfy_cancel)
        model = patcher.model
        cfg = model.config
        report = {"file": model_name, "dtype": dtype, "weight_dtype": weight_dtype, "dim": cfg.dim,
                  "layers": cfg.num_layers, "parameters": sum(p.numel() for p in model.parameters()),
                  "weight_bytes": patcher.model_size()}
        return io.NodeOutput(XDubModel(patcher=patcher, device=patcher.load_device, dtype=torch_dtype, name=model_name,
                                       report=report))


class OmniSyncXDubAudioLoader(io.ComfyNode):
    DISPLAY_NAME = "Load X-Dub Audio Encoders"

    @classmethod
    def define_schema(cls) -> io.Schema:
        choices = audio_encoder_choices()
        return io.Schema(
            node_id="OmniSyncXDubAudioLoader",
            display_name=cls.DISPLAY_NAME,
            category=CATEGORY,
            description=(
                "Loads X-Dub's two speech encoders from models/audio_encoders: Whisper large-v2 "
                "(whisper-large-v2.safetensors: openai/whisper-large-v2's model.safetensors saved under that name; "
                "or the X-Dub bundle's large-v2.pt, read with torch.load(weights_only=True) on torch >= 2.6) and "
                "wav2vec2-base-960h (wav2vec2-base-960h.safetensors: facebook/wav2vec2-base-960h's model.safetensors "
                "saved under that name; or the bundle's wav2vec2-base-960h folder). A single file needs no "
                "config.json: its configuration is read from its tensor shapes."
            ),
            inputs=[
                io.Combo.Input("whisper", options=choices,
                               tooltip="Whisper large-v2 in models/audio_encoders: whisper-large-v2.safetensors "
                                       "(openai/whisper-large-v2's model.safetensors, renamed), or the bundle's "
                                       "large-v2.pt, a Hugging Face folder or a converted .safetensors."),
                io.Combo.Input("wav2vec2", options=choices,
                               tooltip="wav2vec2-base-960h in models/audio_encoders: wav2vec2-base-960h.safetensors "
                                       "(facebook/wav2vec2-base-960h's model.safetensors, renamed), or the bundle's "
                                       "wav2vec2-base-960h folder."),
            ],
            outputs=[XDubAudioEncodersType.Output(display_name="audio_encoders",
                                                  tooltip="Whisper + wav2vec2, for X-Dub Audio Encode.")],
            hidden=list(HIDDEN),
        )

    @classmethod
    def validate_inputs(cls, whisper=None, wav2vec2=None) -> bool | str:
        """Before any node of the prompt runs: both files are there (ComfyUI does not check a V3 combo's options)."""
        # ComfyUI shows the returned line under each input it checked: one line names every missing file
        missing = [str(published_file_missing(key, AUDIO_ENCODER_FOLDER, name, refresh=False))
                   for name, key in ((whisper, "whisper"), (wav2vec2, "wav2vec2"))
                   if name is not None and find_audio_encoder(name) is None]
        return " ".join(missing + [REFRESH]) if missing else True

    @classmethod
    def execute(cls, whisper, wav2vec2) -> io.NodeOutput:
        from omnisync_core.audio.xdub_features import load_xdub_audio_encoders

        # in CPU memory until X-Dub Encode needs them (it moves them to the GPU and back, as the reference does)
        return io.NodeOutput(load_xdub_audio_encoders(audio_encoder_path(whisper, "whisper"),
                                                      audio_encoder_path(wav2vec2, "wav2vec2"), device="cpu"))


# -- the take --------------------------------------------------------------------------------------


def wan22_codec(vae):
    """ComfyUI's VAE (core Load VAE on Wan2.2_VAE.safetensors: raw latents, (1, 48, F, h, w)) → the pipeline's
    codec of X-Dub's normalised latents."""
    from omnisync_core.model.wan22_vae import WAN22_LATENT_CHANNELS, wan22_codec as make

    if vae is None or not hasattr(vae, "encode") or not hasattr(vae, "decode"):
        raise OmniSyncError("connect a VAE: core Load VAE with Wan2.2_VAE.safetensors (models/vae).")
    channels = getattr(vae, "latent_channels", WAN22_LATENT_CHANNELS)
    if channels != WAN22_LATENT_CHANNELS:
        raise OmniSyncError(f"this VAE has {channels} latent channels; X-Dub works in the Wan 2.2 VAE's "
                            f"{WAN22_LATENT_CHANNELS} (Wan2.2_VAE.safetensors, not the Wan 2.1 VAE).")
    return make(vae)


class OmniSyncXDubEncode(io.ComfyNode):
    DISPLAY_NAME = "X-Dub Encode (Wan 2.2 VAE)"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="OmniSyncXDubEncode",
            display_name=cls.DISPLAY_NAME,
            category=CATEGORY,
            description=(
                "X-Dub stage 1: computes the speech's Whisper + wav2vec2 features, makes the take as long as the "
                "speech (the face crops played back and forth, as the reference), cuts it into 77-frame clips and "
                "encodes each with the Wan 2.2 VAE as X-Dub's reference frames. Video must be 25 fps, crops 512×512 "
                "for the published weights (sides divisible by 32)."
            ),
            inputs=[
                XDubModelType.Input("model", tooltip="From Load X-Dub Model (its sizes decide the crop stride and the "
                                                     "speech channels)."),
                io.Vae.Input("vae", tooltip="Core Load VAE with Wan2.2_VAE.safetensors (48 channels, 4×16×16)."),
                XDubAudioEncodersType.Input("audio_encoders", tooltip="From Load X-Dub Audio Encoders."),
                io.Image.Input("crops", tooltip="Face crops (T, S, S, 3) from Face Crop; S = 512 for the published "
                                                "model."),
                io.Audio.Input("audio", tooltip="The new speech (any sample rate, mono or stereo); the output is as "
                                                "long as it."),
                io.Float.Input("fps", default=25.0, min=1.0, max=120.0, step=0.001,
                               tooltip="Frame rate of the video: connect Get Video Components' fps. X-Dub needs 25 fps "
                                       "(convert other videos first)."),
            ],
            outputs=[XDubLatentType.Output(display_name="latent", tooltip="The encoded take: reference latents and "
                                                                          "speech windows per clip (connect to X-Dub "
                                                                          "Sampler).")],
            hidden=list(HIDDEN),
        )

    @classmethod
    def execute(cls, model, vae, audio_encoders, crops, audio, fps) -> io.NodeOutput:
        import comfy.model_management as mm

        from omnisync_core.pipelines.xdub import XDubPipeline

        wave, sr, audio_report = audio_from_comfy(audio)
        pipe = XDubPipeline(model.model, wan22_codec(vae), audio_encoders, device=model.device)
        audio_encoders.to(device=mm.get_torch_device())  # the reference runs them on the GPU, then offloads them
        feedback = Feedback(cls, cls.DISPLAY_NAME)
        if "batch" in audio_report:
            feedback.warn(audio_report["batch"] + ".")
        try:
            with torch.no_grad():  # ComfyUI runs nodes in inference mode; this keeps direct calls as lean
                encoded = run_cancellable(pipe.encode, torch.as_tensor(crops), fps, wave, sr,
                                          progress=ComfyProgress(), cancel=comfy_cancel, on_warning=feedback.warn)
        finally:
            audio_encoders.to(device="cpu")
            mm.soft_empty_cache()
        report = dict(encoded.report, audio_input=audio_report) if audio_report else dict(encoded.report)
        return io.NodeOutput(XDubLatent(pipeline=pipe, encoded=encoded, report=report))


def text_from_conditioning(conditioning, text_dim: int) -> Optional[torch.Tensor]:
    """CONDITIONING [[cond (1, L, D), {...}], ...] → (L, D) of the first entry, or None when not connected."""
    if conditioning is None:
        return None
    try:
        cond = torch.as_tensor(conditioning[0][0])
    except (IndexError, TypeError, ValueError) as e:
        raise OmniSyncError("conditioning must be ComfyUI CONDITIONING: connect CLIP Text Encode (Load CLIP type "
                            "wan, umt5-xxl).") from e
    if cond.ndim != 3 or cond.shape[-1] != text_dim:
        raise OmniSyncError(
            f"the text conditioning has shape {tuple(cond.shape)} but X-Dub takes (1, L, {text_dim}): encode the "
            f"prompt with umT5-XXL (Load CLIP, type wan, on {COMFY_UMT5_FILE} from Comfy-Org). Load CLIP does not "
            "recognise the X-Dub bundle's models_t5_umt5-xxl-enc-bf16.safetensors (Wan's own key layout) and "
            "silently builds a 768-wide CLIP-L from it."
        )
    return cond[0]


class OmniSyncXDubSampler(io.ComfyNode):
    DISPLAY_NAME = "X-Dub Sampler"

    @classmethod
    def define_schema(cls) -> io.Schema:
        from omnisync_core.sampling.xdub import XDubOptions

        d = XDubOptions()
        a = d.audio
        return io.Schema(
            node_id="OmniSyncXDubSampler",
            display_name=cls.DISPLAY_NAME,
            category=CATEGORY,
            description=(
                "X-Dub stage 2: samples the take clip by clip as X-Dub does — three passes per step (nothing / "
                "reference / reference + speech), the last frames of each clip carried into the next as motion "
                "latents, the crop's border kept. OmniSync on top: progressive noise init (τ < 1) and DS-CFG on the "
                "speech term (ω_peak > ω_base guides harder at the mouth). The defaults are the reference's."
            ),
            inputs=[
                XDubModelType.Input("model", tooltip="From Load X-Dub Model."),
                XDubLatentType.Input("latent", tooltip="From X-Dub Encode."),
                io.Int.Input("steps", default=d.num_steps, min=1, max=1000,
                             tooltip=f"Flow-matching steps of the full schedule ({d.num_steps} in the reference); with "
                                     "τ < 1 only the steps with σ ≤ τ run."),
                io.Float.Input("shift", default=d.shift, min=0.01, max=20.0, step=0.01,
                               tooltip=f"Flow shift of the σ schedule ({d.shift} for Wan and X-Dub)."),
                io.Int.Input("seed", default=d.seed, min=0, max=0xFFFFFFFFFFFFFFFF,
                             tooltip="Noise seed (the same noise for every clip, as the reference)."),
                io.Float.Input("tau", default=d.tau, min=0.01, max=1.0, step=0.01,
                               tooltip="τ, OmniSync's progressive noise init: start from (1 − τ)·reference + τ·noise "
                                       "and run only the steps with σ ≤ τ. 1 = pure noise, the reference."),
                io.Float.Input("ref_cfg_scale", default=d.ref_cfg_scale, min=0.0, max=20.0, step=0.05,
                               tooltip="Guidance towards the reference frames (identity, pose); "
                                       f"{d.ref_cfg_scale} in the reference."),
                io.Boolean.Input("ref_cfg_schedule", default=d.ref_cfg_schedule,
                                 tooltip="Lower the reference guidance to 0.6× and then 0.3× of the scale over "
                                         "sampling (the reference's dynamic CFG)."),
                io.Float.Input("omega_base", default=a.omega_base, min=0.0, max=30.0, step=0.05,
                               tooltip="ω_base: speech guidance far from the mouth (the reference's audio_cfg_scale, "
                                       f"{a.omega_base})."),
                io.Float.Input("omega_peak", default=a.omega_peak, min=0.0, max=30.0, step=0.05,
                               tooltip="ω_peak: speech guidance at the mouth (DS-CFG's spatial Gaussian). Equal to "
                                       "ω_base: the same everywhere, as the reference."),
                io.Float.Input("sigma_spatial", default=a.sigma_spatial, min=0.01, max=2.0, step=0.01,
                               tooltip="Width of DS-CFG's Gaussian around the mouth, as a fraction of the crop (used "
                                       "when ω_peak ≠ ω_base)."),
                io.Float.Input("gamma", default=a.gamma, min=0.0, max=10.0, step=0.05,
                               tooltip=f"γ: the speech guidance decays as σ^γ over sampling ({a.gamma} in the "
                                       "reference's dynamic CFG)."),
                io.Int.Input("border_width", default=d.border_width, min=0, max=16,
                             tooltip="Latent pixels along the crop's edges replaced by the reference (16 px each), so "
                                     "the crop pastes back without seams; 0 = off."),
                io.Boolean.Input("color_correction", default=d.color_correction,
                                 tooltip="Match each clip's colours to its reference frames, as the reference does."),
                io.Conditioning.Input("conditioning", optional=True,
                                      tooltip="Prompt from CLIP Text Encode (Load CLIP type wan, umT5-XXL); the "
                                              "reference uses an empty prompt. Not connected: a zero text condition, "
                                              "close to but not exactly the encoded empty prompt."),
            ],
            outputs=[
                XDubLatentType.Output(display_name="latent", tooltip="The sampled take (connect to X-Dub Assemble)."),
                io.String.Output(display_name="report", tooltip="Run report (JSON): clips, network passes, steps, "
                                                                "seconds."),
            ],
            hidden=list(HIDDEN),
        )

    @classmethod
    def execute(cls, model, latent, steps, shift, seed, tau, ref_cfg_scale, ref_cfg_schedule, omega_base, omega_peak,
                sigma_spatial, gamma, border_width, color_correction, conditioning=None) -> io.NodeOutput:
        import comfy.model_management as mm

        from omnisync_core.sampling.guidance import GuidanceConfig
        from omnisync_core.sampling.xdub import XDubOptions
        from omnisync_core.pipelines.xdub import XDubPipeline

        if latent.sampled is not None:
            raise OmniSyncError("this latent was already sampled: connect the output of X-Dub Encode.")
        options = XDubOptions(tau=tau, num_steps=steps, shift=shift, seed=seed, ref_cfg_scale=ref_cfg_scale,
                              ref_cfg_schedule=ref_cfg_schedule, border_width=border_width,
                              color_correction=color_correction,
                              audio=GuidanceConfig(omega_base=omega_base, omega_peak=omega_peak,
                                                   sigma_spatial=sigma_spatial, gamma=gamma))
        text = text_from_conditioning(conditioning, model.model.config.text_dim)
        # ComfyUI's model management places the weights: it offloads other models to make room, and loads X-Dub
        # whole or, when it does not fit, partly (the rest cast to the device layer by layer)
        mm.load_models_gpu([model.patcher])
        # the load device and compute dtype, never the first layer's: partial loading may leave it in CPU memory
        pipe = XDubPipeline(model.patcher.model, latent.pipeline.codec, device=model.patcher.load_device,
                            dtype=model.dtype)
        with torch.no_grad():
            sampled = run_cancellable(pipe.sample, latent.encoded, text, options, progress=ComfyProgress(),
                                      cancel=comfy_cancel)
        report = {"model": model.report, "encode": latent.report, **sampled.report,
                  "text": "CONDITIONING" if text is not None else "none: zero text condition"}
        if text is None:
            Feedback(cls, cls.DISPLAY_NAME, report).warn(
                "no conditioning connected: a zero text condition, close to but not exactly the reference's encoded "
                "empty prompt; connect CLIP Text Encode (Load CLIP type wan) with an empty prompt for the reference's.")
        out = XDubLatent(pipeline=pipe, encoded=latent.encoded, sampled=sampled, options=options, report=report)
        return io.NodeOutput(out, format_report(report))


class OmniSyncXDubAssemble(io.ComfyNode):
    DISPLAY_NAME = "X-Dub Assemble"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="OmniSyncXDubAssemble",
            display_name=cls.DISPLAY_NAME,
            category=CATEGORY,
            description=(
                "X-Dub stage 3: decodes the sampled take with the Wan 2.2 VAE into face crops as long as the speech, "
                "colour-matched and with the crop's border faded into the reference. Connect the full frames and Face "
                "Crop's face_crop too: they leave in the take's order (played back and forth like the crops) for Face "
                "Paste Back."
            ),
            inputs=[
                XDubLatentType.Input("latent", tooltip="From X-Dub Sampler."),
                io.Image.Input("images", optional=True, tooltip="The full frames Face Crop cut the crops from."),
                FaceCropType.Input("face_crop", optional=True, tooltip="The face_crop output of Face Crop."),
            ],
            outputs=[
                io.Image.Output(display_name="crops", tooltip="Lip-synced face crops (T, S, S, 3), T = the speech's "
                                                              "length in frames."),
                io.Image.Output(display_name="images", tooltip="The full frames in the take's order (T, H, W, 3), for "
                                                               "Face Paste Back (None when images is not connected)."),
                FaceCropType.Output(display_name="face_crop", tooltip="The face boxes in the take's order, for Face "
                                                                      "Paste Back (None when face_crop is not "
                                                                      "connected)."),
                io.Audio.Output(display_name="audio", tooltip="The speech, 16 kHz mono, exactly T frames long."),
                io.Float.Output(display_name="fps", tooltip="Frame rate of the output (25)."),
                io.String.Output(display_name="report", tooltip="Run report (JSON)."),
            ],
            hidden=list(HIDDEN),
        )

    @classmethod
    def execute(cls, latent, images=None, face_crop=None) -> io.NodeOutput:
        from omnisync_core.audio.features import SAMPLE_RATE_HZ
        from omnisync_core.sampling.xdub import XDUB_FPS

        if latent.sampled is None:
            raise OmniSyncError("this latent has not been sampled yet: connect the output of X-Dub Sampler.")
        enc = latent.encoded
        with torch.no_grad():
            crops = run_cancellable(latent.pipeline.assemble, latent.sampled, enc, latent.options)
        indices = enc.frame_indices[:enc.num_frames]  # (T,) the input frame each output frame was made from
        source_frames = int(enc.frame_indices.max()) + 1
        if images is not None:
            images = torch.as_tensor(images)
            if images.shape[0] < source_frames:
                raise OmniSyncError(f"images has {images.shape[0]} frames but the crops came from {source_frames}: "
                                    "connect the frames Face Crop cut the crops from.")
            images = images[indices.to(images.device)].contiguous()
        if face_crop is not None:
            if face_crop.num_frames < source_frames:
                raise OmniSyncError(f"face_crop has {face_crop.num_frames} boxes but the crops came from "
                                    f"{source_frames} frames: connect the Face Crop that made the crops.")
            face_crop = face_crop.take(indices)
        report = {"frames": int(crops.shape[0]), "sampler": latent.report}
        audio = audio_to_comfy(enc.waveform, SAMPLE_RATE_HZ)
        return io.NodeOutput(crops, images, face_crop, audio, float(XDUB_FPS), format_report(report))
