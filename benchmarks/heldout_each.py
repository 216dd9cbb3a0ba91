"""The held-out eval one clip at a time, each row written as soon as it is measured: prints numbers, asserts nothing.

    python benchmarks/heldout_each.py --data data/chars128 --limit 3 --out runs/eval/new128.json \
        [--model runs/bundled_unet128_stage5/omnisync_ema_step000040.safetensors] [--no-silence] [--skip 0]

The same clips (``--limit``: kinds in turn), options (the checkpoint's, as ``eval`` with no flags) and metrics as
``python -m omnisync_core eval --report``; ``--out`` is rewritten after every clip with the rows so far and their
summary, so an eval on a loaded machine that has to stop still leaves what it measured. ``--skip N`` starts at the
N-th of the selected clips (to continue a stopped run into another file). The report reads with
``benchmarks/issue22_targets.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main():
    from omnisync_core.api import BUNDLED_MODEL, load_runtime
    from omnisync_core.data.dataset import DATASET_FILE, read_index
    from omnisync_core.eval.heldout import _balanced, evaluate_heldout, markdown_table, summarise
    from omnisync_core.eval.mouth_reader import load_reader
    from omnisync_core.model.precision import resolve_dtype
    from omnisync_core.pipelines.omnisync import OmniSyncPipeline
    from omnisync_core.sampling.options import resolve_options

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--model", default=BUNDLED_MODEL)
    p.add_argument("--reader", default=os.path.join(os.path.dirname(BUNDLED_MODEL), "mouth_reader.safetensors"))
    p.add_argument("--limit", type=int, required=True)
    p.add_argument("--skip", type=int, default=0)
    p.add_argument("--no-silence", action="store_true")
    p.add_argument("--out", required=True)
    args = p.parse_args()

    index = read_index(args.data)
    entries = _balanced(index["splits"]["heldout"], args.limit)[args.skip:]
    reader, _ = load_reader(args.reader)
    dtype = resolve_dtype("auto", "cpu")
    model, codec, encoder, meta = load_runtime(args.model, None, "cpu", dtype)
    pipe = OmniSyncPipeline(model, codec, encoder, device="cpu", dtype=dtype)
    opts, _ = resolve_options(meta, length_mode="follow_video")
    rows = []
    with tempfile.TemporaryDirectory() as one:
        for e in entries:
            single = {**index, "splits": {"heldout": [{**e, "dir": os.path.abspath(os.path.join(args.data, e["dir"]))}]}}
            with open(os.path.join(one, DATASET_FILE), "w") as f:
                json.dump(single, f)
            rows += evaluate_heldout(pipe, one, opts, reader=reader, silence=not args.no_silence)["clips"]
            report = {"options": {"model": args.model, "data": args.data, "limit": args.limit, "skip": args.skip,
                                  "silence": not args.no_silence, "dtype": str(dtype)},
                      "clips": rows, "summary": summarise(rows)}
            with open(args.out + ".tmp", "w") as f:
                json.dump(report, f, indent=1, default=str)
            os.replace(args.out + ".tmp", args.out)
            r = rows[-1]
            print(f"{e['kind']} {e['seed']}: mouth MAE {r['mouth_mae']:.2f} (copy {r['copy_mouth_mae']:.2f}), "
                  f"PSNR out {r['psnr_outside']:.2f}, sync {r.get('sync_target', float('nan')):+.2f}, "
                  f"ghost {r['ghost']:.3f}", flush=True)
    print(markdown_table(summarise(rows)))


if __name__ == "__main__":
    main()
