"""The ``convert-fp8`` and ``batch`` commands.

    python -m omnisync_core convert-fp8 X-Dub_model.safetensors X-Dub_model_fp8_scaled.safetensors
    python -m omnisync_core batch manifest.csv                          # the bundled OmniSync model, one worker
    torchrun --nproc-per-node 8 -m omnisync_core batch manifest.csv --engine xdub --model X-Dub_model.safetensors \\
        --whisper W --wav2vec V --vae VAE                               # 8 GPUs; add --nnodes ... for machines
"""

from __future__ import annotations

import json
import os
import sys

import torch

from ..errors import OmniSyncError


def add_scale_parsers(sub) -> None:
    p = sub.add_parser("convert-fp8", help="X-Dub_model.safetensors → the blocks' linear weights in fp8 e4m3fn, "
                       "ComfyUI's scaled-fp8 file (half the size)")
    p.add_argument("src", help="X-Dub_model.safetensors")
    p.add_argument("out", help="the .safetensors to write (must not exist)")

    p = sub.add_parser("batch", help="dub every row of a manifest (video, speech, output); under torchrun the rows "
                       "are spread over the workers; a rerun skips finished outputs")
    p.add_argument("manifest", help=".csv with a header video,speech,output (or .jsonl); paths relative to it")
    p.add_argument("--engine", choices=("omnisync", "xdub"), default="omnisync",
                   help="omnisync: an OmniSync checkpoint (default: the bundled model); xdub: X-Dub's weights, each "
                   "video a 25 fps face crop")
    p.add_argument("--model", help="the checkpoint (omnisync: default the bundled model; xdub: X-Dub_model.safetensors)")
    p.add_argument("--whisper", help="Whisper (omnisync: default the bundled tiny.en; xdub: large-v2, required)")
    p.add_argument("--wav2vec", help="xdub: wav2vec2-base-960h (its model.safetensors, or the bundle's folder)")
    p.add_argument("--vae", help="xdub: Wan 2.2 VAE diffusers folder")
    p.add_argument("--weight-dtype", choices=("default", "fp8_e4m3fn"), default="default",
                   help="xdub: fp8_e4m3fn stores the blocks' linear weights in 1 byte (computed in bf16)")
    p.add_argument("--device", help="default: cuda:LOCAL_RANK when CUDA is available, else cpu")
    p.add_argument("--report", help="write this worker's report (JSON) here; with several workers .rankN is added")


def run_convert_fp8(args) -> int:
    from ..model.xdub_weights import convert_xdub_fp8

    if os.path.exists(args.out):
        raise OmniSyncError(f"{args.out} exists; pass a new file name (nothing is overwritten).")
    info = convert_xdub_fp8(args.src, args.out)
    print(f"wrote {args.out}: {info['layers']} linear layers in fp8 e4m3fn (scaled per tensor), "
          f"{info['bytes_in'] / 1e9:.2f} GB -> {info['bytes_out'] / 1e9:.2f} GB")
    return 0


def _dubber(args, device: str):
    if args.engine == "omnisync":
        from ..api import BUNDLED_MODEL, OmniSyncPipeline, load_runtime, resolve_options

        model, codec, encoder, meta = load_runtime(args.model or BUNDLED_MODEL, args.whisper, device=device)
        from ..batch import omnisync_dubber

        return omnisync_dubber(OmniSyncPipeline(model, codec, encoder), resolve_options(meta)[0])
    missing = [f"--{k}" for k in ("model", "whisper", "wav2vec", "vae") if not getattr(args, k)]
    if missing:
        raise OmniSyncError(f"--engine xdub needs {', '.join(missing)} (X-Dub's DiT, Whisper large-v2, "
                            "wav2vec2-base-960h, the Wan 2.2 VAE).")
    from ..audio.xdub_features import load_xdub_audio_encoders
    from ..batch import xdub_dubber
    from ..model.wan22_vae import load_wan22_vae
    from ..model.xdub_weights import load_xdub_model
    from ..pipelines.xdub import XDubPipeline

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    codec = load_wan22_vae(args.vae, device=device)
    model = load_xdub_model(args.model, device=device, dtype=dtype, weight_dtype=args.weight_dtype)
    encoders = load_xdub_audio_encoders(args.whisper, args.wav2vec, device=device)
    return xdub_dubber(XDubPipeline(model, codec, encoders, device=device))


def run_batch(args) -> int:
    from ..batch import read_manifest, run_batch as run, worker_env

    rank, world, local = worker_env()
    rows = read_manifest(args.manifest)  # every row checked before a model is loaded
    device = args.device or (f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    tag = f"[worker {rank}/{world}]"
    mine = len(rows[rank::world])
    print(f"{tag} {mine} of {len(rows)} rows on {device}", flush=True)
    loaded = []

    def dub(row, path):  # the model is loaded for the first row with work: a finished worker loads nothing
        if not loaded:
            loaded.append(_dubber(args, device))
        return loaded[0](row, path)

    def on_row(entry):
        extra = f" ({entry['seconds']} s)" if "seconds" in entry else f": {entry['error']}" if "error" in entry else ""
        print(f"{tag} row {entry['index']}: {entry['status']} {entry['output']}{extra}", flush=True)

    report = run(rows, dub, rank, world, on_row=on_row)
    report["model_loaded"] = bool(loaded)
    if args.report:
        root, ext = os.path.splitext(args.report)
        path = f"{root}.rank{rank}{ext}" if world > 1 else args.report
        with open(path, "w") as f:
            json.dump(report, f, indent=2)
    print(f"{tag} done {len(report['done'])}, skipped {len(report['skipped'])} (already written), "
          f"failed {len(report['failed'])} in {report['seconds']:.1f} s", flush=True)
    for failure in report["failed"]:
        print(f"error: row {failure['index']} ({failure['output']}): {failure['error']}", file=sys.stderr)
    return 1 if report["failed"] else 0

