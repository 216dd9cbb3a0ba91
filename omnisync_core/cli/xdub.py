"""The ``xdub`` command: lip-sync a face video to speech with X-Dub's published weights.

    python -m omnisync_core xdub --model checkpoints/X-Dub_model.safetensors \\
        --vae checkpoints/Wan2.2_VAE.safetensors --t5 checkpoints/models_t5_umt5-xxl-enc-bf16.safetensors \\
        --whisper checkpoints/whisper/large-v2.pt --wav2vec checkpoints/wav2vec2-base-960h \\
        --video face.mp4 --audio speech.wav -o dubbed.mp4

Every file is read as its publisher ships it (``hf download KlingTeam/X-Dub``, or the speech encoders' own single
``model.safetensors`` files; see :mod:`omnisync_core.model.files`), with no conversion step; every error about one
names its source. Every
sampling flag defaults to :class:`~omnisync_core.sampling.xdub.XDubOptions` (the reference's settings). The
Wan 2.2 VAE runs on diffusers' ``AutoencoderKLWan`` (the plugin's ``xdub`` extra): without it the command stops
at once with what to install.

The run goes through the same checks as ``sync`` before anything is loaded (:func:`check_xdub_args`: the
files, the DiT's header, output names, device and precision, step and guidance bounds, then the video's
header: 25 fps, frame size, clip length); the output and report appear only when complete; every adjustment
is one ``warning:`` line and in the report's ``"warnings"``.
"""

from __future__ import annotations

import argparse
import os

import torch

from ..errors import OmniSyncError
from ..model.files import missing_message, named_source, xdub_file, xdub_file_for
from ..model.precision import DTYPES
from ..sampling.xdub import XDubOptions
from .common import (
    VIDEO_SUFFIXES,
    Warnings,
    add_offload_arguments,
    check_offload_args,
    check_outputs,
    close_bar,
    mouth_arg,
    progress_bar,
    write_report,
)

# how the xdub command spells the options whose bounds are checked
XDUB_FLAGS = {"num_steps": "--steps", "tau": "--tau", "omega_base": "--audio-cfg-scale", "omega_peak": "--omega-peak",
              "ref_cfg_scale": "--ref-cfg-scale"}


def _numbers(n: int):
    def parse(value: str):
        try:
            values = tuple(float(v) for v in value.split(","))
        except ValueError:
            values = ()
        if len(values) != n:
            raise argparse.ArgumentTypeError(f"expected {n} comma-separated numbers, got {value!r}")
        return values

    parse.__name__ = f"{n} numbers"
    return parse


def add_parsers(sub) -> None:
    """The xdub sub-command."""
    p = sub.add_parser("xdub", help="lip-sync a face video with X-Dub's weights (Wan 2.2 5B)")
    add_xdub_arguments(p)
    p.set_defaults(run=run_xdub)


def add_xdub_arguments(p: argparse.ArgumentParser) -> None:
    d = XDubOptions()
    a = d.audio
    p.add_argument("--model", required=True, help="X-Dub DiT: the bundle's X-Dub_model.safetensors")
    p.add_argument("--whisper", required=True, help="Whisper large-v2: openai/whisper-large-v2's model.safetensors "
                   "(no config.json needed), the bundle's whisper/large-v2.pt (read with torch.load(weights_only=True), "
                   "torch >= 2.6), or a Hugging Face folder")
    p.add_argument("--wav2vec", required=True, help="wav2vec2-base-960h: facebook/wav2vec2-base-960h's "
                   "model.safetensors (no config.json needed) or the bundle's wav2vec2-base-960h folder")
    p.add_argument("--vae", required=True, help="the bundle's Wan2.2_VAE.safetensors (or a diffusers AutoencoderKLWan "
                   "folder); runs on diffusers, the plugin's xdub extra")
    p.add_argument("--t5", help="umT5-XXL: the bundle's models_t5_umt5-xxl-enc-bf16.safetensors, Comfy-Org's "
                   "umt5_xxl_fp8_e4m3fn_scaled.safetensors, or a transformers folder; encodes the prompt as the "
                   "reference does (default: none, and the text condition is zeros, with a warning)")
    p.add_argument("--t5-tokenizer", help="umT5's tokenizer: the bundle's umt5-xxl folder; only for a non-empty "
                   "--prompt (the empty prompt is one end-of-text token)")
    p.add_argument("--prompt", default="", help="video description for --t5 (the reference uses the empty prompt)")
    p.add_argument("--video", required=True, help="video at 25 fps: a face crop (H, W multiples of 32; 512×512 for "
                   "the published weights), or any video with --crop")
    p.add_argument("--crop", choices=("none", "box", "point", "auto"), default="none",
                   help="crop the face from --video and paste the result back: 'box' (--box), 'point' (--point, "
                   "--scale), 'auto' (needs mediapipe); default none: --video is already the face crop")
    p.add_argument("--box", type=_numbers(4), help="face box x,y,w,h in pixels (--crop box)")
    p.add_argument("--point", type=_numbers(2), help="face centre x,y in frame fractions (--crop point)")
    p.add_argument("--scale", type=float, help="crop side as a fraction of the frame's shorter side (--crop point)")
    p.add_argument("--crop-size", type=int, default=512, help="side of the face crop the model sees (default 512)")
    p.add_argument("--feather", type=float, help="soft edge of the paste-back, pixels of the frame")
    p.add_argument("--audio", required=True, help="speech (wav; mp3/m4a/mp4 through ffmpeg)")
    p.add_argument("-o", "--output", default="xdub.mp4", help="output mp4 (speech muxed in)")
    p.add_argument("--tau", type=float, default=d.tau, help=f"progressive noise init τ (1 = the reference; default {d.tau})")
    p.add_argument("--steps", type=int, default=d.num_steps, help=f"flow-matching steps (default {d.num_steps})")
    p.add_argument("--shift", type=float, default=d.shift, help=f"schedule shift (default {d.shift})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"noise seed (default {d.seed})")
    p.add_argument("--ref-cfg-scale", type=float, default=d.ref_cfg_scale,
                   help=f"reference guidance scale (default {d.ref_cfg_scale})")
    p.add_argument("--no-ref-schedule", action="store_true",
                   help="keep the reference scale constant (default: falls to 0.6× and 0.3× over sampling)")
    p.add_argument("--audio-cfg-scale", type=float, default=a.omega_base,
                   help=f"audio guidance scale ω_base, everywhere (default {a.omega_base})")
    p.add_argument("--omega-peak", type=float, help="DS-CFG: audio guidance at the mouth (default: = --audio-cfg-scale, "
                   "uniform as the reference)")
    p.add_argument("--sigma-spatial", type=float, default=a.sigma_spatial,
                   help=f"DS-CFG: Gaussian width around the mouth, fraction of the frame (default {a.sigma_spatial})")
    p.add_argument("--gamma", type=float, default=a.gamma,
                   help=f"DS-CFG: audio guidance decays as σ^γ (default {a.gamma}; 0 = constant)")
    p.add_argument("--mouth", type=mouth_arg, default=d.mouth, help="'auto' or 'x,y': where --omega-peak applies")
    p.add_argument("--border-width", type=int, default=d.border_width,
                   help=f"latent pixels along the crop's edge kept from the source (default {d.border_width}; 0 = off)")
    p.add_argument("--no-color-correction", action="store_true", help="do not match colours to the source")
    p.add_argument("--sequential-passes", action="store_true",
                   help="run the three guidance passes one at a time (less memory, slower)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), help="DiT precision (default: bf16 on a GPU, fp32 on the CPU)")
    add_offload_arguments(p)
    p.add_argument("--report", help="write the run report (JSON) here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def options_from_args(args) -> XDubOptions:
    from ..sampling.guidance import GuidanceConfig

    audio = GuidanceConfig(omega_base=args.audio_cfg_scale,
                           omega_peak=args.audio_cfg_scale if args.omega_peak is None else args.omega_peak,
                           sigma_spatial=args.sigma_spatial, gamma=args.gamma)
    return XDubOptions(tau=args.tau, num_steps=args.steps, shift=args.shift, seed=args.seed,
                       ref_cfg_scale=args.ref_cfg_scale, ref_cfg_schedule=not args.no_ref_schedule, audio=audio,
                       mouth=args.mouth, border_width=args.border_width,
                       color_correction=not args.no_color_correction, batch_passes=not args.sequential_passes)


def check_xdub_files(args) -> None:
    """Every X-Dub file the flags name exists, or a one-line error naming it, its source and its folder."""
    for key, value in (("xdub_model", args.model), ("wan22_vae", args.vae), ("whisper", args.whisper),
                       ("wav2vec2", args.wav2vec), ("umt5_wan", args.t5), ("umt5_tokenizer", args.t5_tokenizer)):
        if value is None:
            continue
        f = xdub_file_for(key, value)  # the published form the path has (the bundle's .pt or folder, or the file)
        key = f.key
        if not os.path.exists(value):
            also = f" (or {xdub_file('umt5_comfy').source()})" if key == "umt5_wan" else ""
            raise OmniSyncError(missing_message(key, value, f.cli_flag).rstrip(".") + also + ".")
        if f.is_folder and not os.path.isdir(value):
            raise OmniSyncError(f"{f.cli_flag} takes a folder, but {value!r} is a file; pass {f.source()}.")


def encode_xdub_prompt(args, dtype: torch.dtype) -> torch.Tensor:
    """``--prompt`` through ``--t5`` as the reference encodes it: ``(L, 4096)`` float32 on the CPU ("" → 1 token)."""
    from ..model.t5 import load_t5_encoder, load_umt5_file

    # the reference runs umT5 in bf16 on a GPU; fp16 overflows in T5's feed-forward, so never fp16
    t5_dtype = torch.bfloat16 if str(args.device).startswith("cuda") and dtype != torch.float32 else torch.float32
    with named_source("umt5_wan", "umt5_comfy"):
        if os.path.isdir(args.t5):
            encoder = load_t5_encoder(args.t5, device=args.device, dtype=t5_dtype)
        else:
            encoder = load_umt5_file(args.t5, args.t5_tokenizer, device=args.device, dtype=t5_dtype)
    return encoder.encode(args.prompt).float().cpu()


def check_xdub_args(args, on_warning):
    """Everything about an xdub run that can be checked before reading media or loading a model:
    → (options, the DiT's config read from its header, dtype)."""
    from ..model.precision import resolve_dtype
    from ..pipelines.checks import (
        check_device,
        check_input_file,
        check_sampling_bounds,
        check_xdub_model_path,
        dtype_warnings,
    )

    options = options_from_args(args)  # bad flags fail before anything is loaded
    a = options.audio
    check_sampling_bounds(options.num_steps, options.shift, options.tau,
                          {"omega_base": a.omega_base, "omega_peak": a.omega_peak,
                           "ref_cfg_scale": options.ref_cfg_scale}, XDUB_FLAGS)
    if args.prompt.strip() and not args.t5:
        raise OmniSyncError(f"a --prompt needs its text encoder: pass --t5 with {xdub_file('umt5_wan').source()} "
                            "(and --t5-tokenizer), or drop the prompt.")
    check_xdub_files(args)  # every file is there
    try:  # the VAE's reader, missing: said before the files are read, in a second
        import diffusers  # noqa: F401
    except ImportError:
        from ..model.wan22_vae import DIFFUSERS_HINT

        raise OmniSyncError(f"diffusers is not installed: {DIFFUSERS_HINT}.") from None
    check_input_file(args.video, "video")
    check_input_file(args.audio, "audio")
    with named_source("xdub_model"):
        config = check_xdub_model_path(args.model)
    check_outputs((("output video (-o)", args.output, VIDEO_SUFFIXES), ("--report file", args.report, (".json",))),
                  (args.video, args.audio, args.model, args.whisper, args.wav2vec), on_warning)
    check_device(args.device)
    check_offload_args(args, on_warning)
    dtype = DTYPES[args.dtype] if args.dtype else (torch.bfloat16 if str(args.device).startswith("cuda") else torch.float32)
    for message in dtype_warnings(args.device, resolve_dtype(dtype, args.device)):
        on_warning(message)
    if not args.t5:
        on_warning(f"no --t5: the text condition is zeros, not the reference's encoded empty prompt; pass --t5 "
                   f"with {xdub_file('umt5_wan').source()}.")
    return options, config, dtype


def check_xdub_video(args, config, audio_seconds: float, num_frames: int, fps, size) -> None:
    """The video's header against what X-Dub takes: 25 fps, frames big enough, face crops (no --crop) whose
    sides the VAE and patch divide, and a clip and speech of the minimum length."""
    from ..io.fps import exact_fps
    from ..model.wan22_vae import WAN22_SPATIAL_FACTOR
    from ..pipelines.checks import check_clip_length, check_frame_size
    from ..sampling.xdub import XDUB_FPS

    if exact_fps(fps) != XDUB_FPS:
        raise OmniSyncError(f"X-Dub was trained on {XDUB_FPS} fps video, and {args.video!r} is {float(fps):g} fps; "
                            f"convert it first: ffmpeg -i in.mp4 -r {XDUB_FPS} out.mp4.")
    check_frame_size(*size)
    stride = WAN22_SPATIAL_FACTOR * max(config.patch_size[1:])
    H, W = size
    if args.crop == "none" and (H % stride or W % stride):
        raise OmniSyncError(f"{args.video!r} is {W}×{H}: without --crop it must be the face crop itself, with sides "
                            f"divisible by {stride} (512×512 for the published weights); pass --crop box|point|auto "
                            "to crop the face from the frame.")
    check_clip_length(fps, num_frames, audio_seconds)


def run_xdub(args) -> int:
    from ..audio.xdub_features import load_xdub_audio_encoders
    from ..io.audio import read_audio
    from ..io.video import VideoReader, read_video, write_video
    from ..model.offload import place_model
    from ..model.wan22_vae import load_wan22_vae
    from ..model.xdub_weights import load_xdub_model
    from ..pipelines.budget import check_budget
    from ..sampling.xdub import CLIP_FRAMES
    from ..pipelines.xdub import XDubPipeline

    warnings = Warnings()
    options, config, dtype = check_xdub_args(args, warnings)  # before any media is read or model loaded
    with VideoReader(args.video) as reader:  # the header: a bad video fails here, before the models load
        num_frames, fps, size = reader.num_frames, reader.fps, reader.size
    wave, sr = read_audio(args.audio)
    check_xdub_video(args, config, torch.as_tensor(wave).shape[-1] / sr, num_frames, fps, size)
    codec = load_wan22_vae(args.vae, device=args.device)
    frames, fps = read_video(args.video, on_warning=warnings)  # each adjustment of the reader: one warning line
    encoders = load_xdub_audio_encoders(args.whisper, args.wav2vec, device=args.device)
    text, text_report = None, "zeros (no text encoder)"
    if args.t5:
        text = encode_xdub_prompt(args, dtype)
        text_report = f"umT5 ({args.t5}), prompt {args.prompt!r}: {tuple(text.shape)[0]} token(s)"
    with named_source("xdub_model"):
        model = load_xdub_model(args.model, device="cpu" if args.offload else args.device, dtype=dtype)
    if args.offload:
        place_model(model, args.device, "blocks", args.resident_blocks)
    crop_side = args.crop_size if args.crop != "none" else None
    check_budget(model, (crop_side, crop_side) if crop_side else size, num_frames, window=CLIP_FRAMES,
                 codec=codec, output_paths=[args.output])  # before any compute: memory and disk
    pipe = XDubPipeline(model, codec, encoders, device=args.device)

    track = None
    if args.crop != "none":
        from ..image.facecrop import crop_faces, face_track

        kw = {k: v for k, v in (("box", args.box), ("point", args.point), ("scale", args.scale)) if v is not None}
        track = face_track(frames, args.crop, **kw)
        crops = crop_faces(frames, track, size=args.crop_size)
    else:
        crops = frames
    bar, progress = progress_bar("x-dub", args.quiet, unit="step", warnings=warnings)
    try:
        result = pipe(crops, fps, wave, sr, text=text, options=options, progress=progress, on_warning=warnings)
    finally:
        close_bar(bar, warnings)
    report = dict(result.report)
    out = result.frames
    if track is not None:  # back into the full frames, in the take's order (the video may be ping-ponged)
        from ..image.facecrop import paste_back

        idx = result.frame_indices
        kw = {} if args.feather is None else {"feather_px": args.feather}
        out = paste_back(frames[idx], out, track.take(idx.tolist()), **kw)
        report["face_crop"] = track.report.to_dict()
        if report["face_crop"].get("no_face"):
            warnings(report["face_crop"]["no_face"])
    info = write_video(args.output, out, result.fps, result.waveform, result.sample_rate)  # whole, or not at all
    for message in info["warnings"]:
        warnings(message)
    report["text_condition"] = text_report
    report["written"] = [args.output]
    report["options"] = options_report(options)
    report["warnings"] = warnings.lines  # the CLI's own and the run's, in the order printed
    write_report(args.report, report)
    print(f"wrote {args.output} ({result.frames.shape[0]} frames at {result.fps:g} fps, {report['clips']} "
          f"clip(s), {report['steps']} steps, {report['seconds']:.1f} s)")
    return 0


def options_report(options: XDubOptions) -> dict:
    """The run's X-Dub options as JSON-ready values (the report's ``"options"``, as sync's)."""
    import dataclasses

    out = dataclasses.asdict(options)
    out["mouth"] = options.mouth if isinstance(options.mouth, str) else list(options.mouth)
    return out
