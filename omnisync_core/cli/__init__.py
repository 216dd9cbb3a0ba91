"""Command line of omnisync_core.

    python -m omnisync_core sync --video in.mp4 --audio speech.wav --model m.safetensors -o out.mp4
    python -m omnisync_core demo -o out.mp4           # the bundled sample with the bundled model
    python -m omnisync_core make-data --out data/talking_chars --characters 300 --split train
    python -m omnisync_core train --config configs/bundled_unet128.json   (or under torchrun)
    python -m omnisync_core eval --model models/omnisync_unet128.safetensors --data data/talking_chars
    python -m omnisync_core train-reader --data data/chars128 --out models/mouth_reader.safetensors
    python -m omnisync_core xdub --model X-Dub_model.safetensors --whisper W --wav2vec V --vae VAE --video face.mp4 ...
    python -m omnisync_core convert-fp8 X-Dub_model.safetensors X-Dub_fp8_scaled.safetensors
    torchrun --nproc-per-node 8 -m omnisync_core batch manifest.csv [--engine xdub ...]

One module per family of commands: :mod:`.omnisync` (sync, demo), :mod:`.training` (make-data, train, eval,
train-reader, convert-whisper), :mod:`.xdub` (xdub), :mod:`.scale` (convert-fp8, batch); what they share is in
:mod:`.common`. This file builds the parser and runs a command. The Python API is :mod:`omnisync_core.api`.

Errors from bad input are printed as one line (``error: ...``) with exit code 2, never a traceback;
everything that can be checked (paths, output names, device, option ranges, clip lengths) is checked
before the model is loaded (:mod:`omnisync_core.pipelines.checks`). Every adjustment made to the input is
printed as one ``warning: ...`` line on stderr and listed in the report's ``"warnings"``. Ctrl-C ends a
run with exit code 130, SIGTERM with 143, and neither leaves a partial output or temporary file.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from ..errors import Cancelled, OmniSyncError
from . import omnisync, scale, training, xdub
from .common import SIGTERM_EXIT_CODE, Terminated, process


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m omnisync_core", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    omnisync.add_parsers(sub)
    training.add_parsers(sub)
    xdub.add_parsers(sub)
    scale.add_scale_parsers(sub)
    sub.choices["convert-fp8"].set_defaults(run=scale.run_convert_fp8)
    sub.choices["batch"].set_defaults(run=scale.run_batch)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    with process():
        parser = build_parser()
        args = parser.parse_args(argv)
        try:
            return args.run(args)
        except OmniSyncError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except Cancelled:
            print("cancelled", file=sys.stderr)
            return 130
        except Terminated:
            print("cancelled (SIGTERM)", file=sys.stderr)
            return SIGTERM_EXIT_CODE
        except KeyboardInterrupt:
            print("cancelled", file=sys.stderr)
            return 130
