"""Peak memory of CLI runs of the bundled model beside ``pipelines.budget.estimate``: the data the budget's
constants were fitted to. Each run is a fresh process (its peak resident set from ``getrusage``).

    OMP_NUM_THREADS=1 python benchmarks/budget_calibration.py
"""

import os
import subprocess
import sys
import tempfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from omnisync_core.api import BUNDLED_MODEL, BUNDLED_SPEECH  # noqa: E402
from omnisync_core.io.video import write_video  # noqa: E402
from omnisync_core.model.checkpoint import read_metadata  # noqa: E402
from omnisync_core.pipelines.budget import estimate  # noqa: E402

RUN = ("import resource, sys; from omnisync_core import cli; rc = cli.main(sys.argv[1:]); "
       "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, rc)")
CASES = [(256, 3), (512, 3), (1024, 3), (512, 12)]  # (side px, frames)

meta = read_metadata(BUNDLED_MODEL)
with tempfile.TemporaryDirectory() as d:
    print("frames   measured MB   estimate MB")
    for side, n in CASES:
        video = os.path.join(d, f"v{side}x{n}.mp4")
        write_video(video, torch.rand(n, side, side, 3), 25)
        out = subprocess.run([sys.executable, "-c", RUN, "sync", "--quiet", "--video", video, "--audio", BUNDLED_SPEECH,
                              "--model", BUNDLED_MODEL, "-o", os.path.join(d, "out.mp4"), "--steps", "1", "--tau", "1",
                              "--mouth", "0.5,0.6", "--length-mode", "follow_video"],
                             cwd=ROOT, capture_output=True, text=True, check=True)
        measured = int(out.stdout.split()[-2])
        est = estimate(meta, (side, side), n, meta["sampling"]["window"], codec=meta["codec"])
        print(f"{n:2d}×{side}²   {measured:10d}   {est['memory_bytes'] >> 20:11d}")
