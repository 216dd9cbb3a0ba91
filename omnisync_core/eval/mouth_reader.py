"""A mouth-parameter reader: a small CNN that reads the renderer's mouth parameters from a frame.

The paper scores lip sync with LMD and SyncNet's LSE-C, which need real faces and weights we do not
have. On the synthetic suite the renderer knows every frame's true mouth parameters
(:data:`omnisync_core.data.visemes.MOUTH_PARAMS`: open, width, round, teeth, tongue, each in [0, 1])
and mouth box, so a reader trained on rendered frames turns any video of a known character into
parameter tracks that can be compared with the speech's true track (:mod:`omnisync_core.eval.heldout`).

Top-down:

1. :func:`crop_mouths`: per frame, the square around the renderer's mouth box (grown by ``grow`` of its
   side on each side), sampled bilinearly at ``crop × crop`` pixels (2× supersampled, then averaged).
2. :class:`MouthReader`: conv blocks (each halves the resolution) → flatten → linear → 5 parameters.
3. :func:`read_mouths`: frames + boxes → (T, 5) parameters clamped to [0, 1].
4. :func:`train_reader`: ground-truth frames of a dataset's ``train`` split with light augmentation
   (box jitter, flips, brightness, blur, noise), so it also reads slightly blurred model outputs;
   the best weights on a validation split are kept.
5. :func:`reader_accuracy` / :func:`evaluate_reader`: R² and Pearson correlation per parameter.
6. :func:`save_reader` / :func:`load_reader`: one safetensors file, config and accuracy in its metadata.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.visemes import MOUTH_PARAMS
from ..errors import OmniSyncError
from ..progress import CancelCheck, ProgressCallback, check_cancel, report

READER_FORMAT = "omnisync-mouth-reader"
SUPERSAMPLE = 2  # crops are sampled at 2× and average-pooled (the grown box is ~50 px wide at 128², the crop 32)
CONTEXT = 1.5  # training keeps a square 1.5× the crop's side around each mouth, room for the box jitter
OPEN = MOUTH_PARAMS.index("open")


@dataclass
class ReaderConfig:
    """The reader's input and network. Serialised into the checkpoint metadata."""

    crop: int = 32  # side of the square crop the network sees, pixels
    grow: float = 0.25  # the renderer's mouth box grown by this fraction of its side, on each side
    channels: Tuple[int, ...] = (16, 32, 64, 96)  # conv widths; each block halves the resolution
    params: Tuple[str, ...] = MOUTH_PARAMS  # output columns

    def __post_init__(self):
        self.channels, self.params = tuple(self.channels), tuple(self.params)
        if self.crop < 8 or self.crop % 2 ** len(self.channels):
            raise OmniSyncError(f"crop must be a multiple of 2^{len(self.channels)} (one halving per conv block), "
                                f"got {self.crop}.")
        if self.grow < 0:
            raise OmniSyncError(f"grow must be ≥ 0 (a fraction of the mouth box side), got {self.grow}.")


@dataclass
class ReaderTrainConfig:
    """Training and augmentation. Lengths are in crop pixels, jitter in fractions of the crop side."""

    steps: int = 3000
    batch: int = 64
    lr: float = 2e-3  # AdamW, cosine decay to 0 after a linear warm-up
    warmup: int = 100
    weight_decay: float = 1e-4
    frame_stride: int = 2  # keep every n-th training frame: neighbours are near duplicates
    jitter_shift: float = 0.06  # box centre moved by up to this fraction of the crop side
    jitter_scale: float = 0.10  # crop side scaled by exp(±this)
    brightness: float = 0.15  # gain in 1 ± this, offset in ± this/2 (frames in [0, 1])
    blur_prob: float = 0.5  # share of examples blurred
    blur_max: float = 2.5  # Gaussian blur σ, uniform in (0, blur_max] crop pixels (model outputs are softer)
    noise_max: float = 0.03  # additive Gaussian noise, std uniform in [0, noise_max]
    val_every: int = 250  # steps between validations (the best validated weights are kept)
    seed: int = 0

    def __post_init__(self):
        if self.steps < 1 or self.batch < 2 or self.frame_stride < 1 or self.val_every < 1:
            raise OmniSyncError(f"reader training needs steps ≥ 1, batch ≥ 2, frame_stride ≥ 1 and val_every ≥ 1; "
                                f"got steps={self.steps}, batch={self.batch}, frame_stride={self.frame_stride}, "
                                f"val_every={self.val_every}.")


# -- 1. crops ----------------------------------------------------------------------------------------


def crop_mouths(frames: torch.Tensor, boxes, crop: int, grow: float,
                jitter: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Square mouth crops.

    Args:
        frames: (T, H, W, 3) uint8 or float in [0, 1].
        boxes: (T, 4) mouth boxes (x0, y0, x1, y1) as frame fractions (the renderer's ``mouth_box``).
        crop: output side in pixels.
        grow: the square's side is max(box width, box height) in pixels × (1 + 2·grow), centred on the box.
        jitter: optional (T, 3): centre shift (dx, dy) in fractions of the side, and log of a side scale.

    Returns:
        (T, 3, crop, crop) float in [0, 1]. Outside the frame the border pixels are repeated.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise OmniSyncError(f"frames must be (T, H, W, 3), got shape {tuple(frames.shape)}.")
    b = torch.as_tensor(boxes, dtype=torch.float32)
    T, H, W, _ = frames.shape
    if b.shape != (T, 4):
        raise OmniSyncError(f"boxes must be (T, 4) = ({T}, 4) fractions (x0, y0, x1, y1), got {tuple(b.shape)}.")
    x = frames.permute(0, 3, 1, 2).float()  # (T, 3, H, W)
    if frames.dtype == torch.uint8:
        x = x / 255.0
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2  # (T,) fractions
    side = torch.maximum((b[:, 2] - b[:, 0]) * W, (b[:, 3] - b[:, 1]) * H) * (1 + 2 * grow)  # (T,) pixels
    if jitter is not None:
        cx = cx + jitter[:, 0] * side / W
        cy = cy + jitter[:, 1] * side / H
        side = side * jitter[:, 2].exp()
    theta = torch.zeros(T, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = side / W, 2 * cx - 1  # affine_grid works in [-1, 1] frame coordinates
    theta[:, 1, 1], theta[:, 1, 2] = side / H, 2 * cy - 1
    n = crop * SUPERSAMPLE
    grid = F.affine_grid(theta.to(x.device), [T, 3, n, n], align_corners=False)  # (T, n, n, 2)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return F.avg_pool2d(out, SUPERSAMPLE)  # (T, 3, crop, crop)


# -- 2. the network ----------------------------------------------------------------------------------


class MouthReader(nn.Module):
    """(N, 3, crop, crop) float in [0, 1] → (N, P) mouth parameters (unclamped; :func:`read_mouths` clamps)."""

    def __init__(self, config: ReaderConfig):
        super().__init__()
        self.config = config
        blocks, c_in = [], 3
        for c in config.channels:
            blocks += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
        self.features = nn.Sequential(*blocks)
        side = config.crop // 2 ** len(config.channels)
        self.head = nn.Linear(c_in * side * side, len(config.params))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        h = self.features(crops * 2 - 1)  # (N, C, s, s)
        return self.head(h.flatten(1))  # (N, P)


@torch.no_grad()
def read_mouths(reader: MouthReader, frames: torch.Tensor, boxes, batch: int = 256) -> torch.Tensor:
    """(T, H, W, 3) frames (uint8, or float in [0, 1]) + (T, 4) mouth boxes → (T, P) float in [0, 1]."""
    was_training = reader.training
    reader.eval()
    device = next(reader.parameters()).device
    b = torch.as_tensor(boxes, dtype=torch.float32)
    out = []
    for s in range(0, frames.shape[0], batch):
        crops = crop_mouths(frames[s:s + batch], b[s:s + batch], reader.config.crop, reader.config.grow)
        out.append(reader(crops.to(device)).float().cpu())
    reader.train(was_training)
    return torch.cat(out).clamp(0, 1) if out else torch.zeros(0, len(reader.config.params))


# -- 3. data -----------------------------------------------------------------------------------------


@dataclass
class ReaderClip:
    """One rendered utterance: frames (T, H, W, 3) uint8, boxes (T, 4) fractions, params (T, P) truth."""

    frames: torch.Tensor
    boxes: torch.Tensor
    params: torch.Tensor
    kind: str
    name: str


def load_reader_clips(root: str, split: str, limit: Optional[int] = None) -> List[ReaderClip]:
    """Both utterances of every character of ``root/<split>`` (frames, boxes and true parameters)."""
    from safetensors import safe_open

    from ..data.dataset import read_index

    if limit is not None and limit < 1:
        raise OmniSyncError(f"the number of characters to load must be at least 1, got {limit}.")
    entries = read_index(root)["splits"].get(split) or []
    if not entries:
        raise OmniSyncError(f"dataset {root!r} has no {split!r} split; build it with "
                            f"`python -m omnisync_core make-data --out {root} --split {split}`.")
    clips = []
    for e in entries[:limit]:
        for n in ("a", "b"):
            folder = os.path.join(root, e["dir"])
            with safe_open(os.path.join(folder, f"{n}.safetensors"), framework="pt") as f:
                frames = f.get_tensor("frames")  # (T, H, W, 3) uint8
            with open(os.path.join(folder, f"{n}.json")) as f:
                info = json.load(f)
            params = torch.tensor(info["mouth_params"], dtype=torch.float32)  # (T, P)
            if params.ndim != 2 or params.shape[1] != len(MOUTH_PARAMS):
                raise OmniSyncError(f"{folder}/{n}.json has {params.shape[1]} mouth parameters, the reader reads "
                                    f"{len(MOUTH_PARAMS)} ({', '.join(MOUTH_PARAMS)}); rebuild the dataset.")
            clips.append(ReaderClip(frames, torch.tensor(info["mouth_box"], dtype=torch.float32), params,
                                    e["kind"], f"{e['dir']}/{n}"))
    return clips


def _context_crops(clips: Sequence[ReaderClip], config: ReaderConfig, stride: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, 3, S, S) squares ``CONTEXT``× the reader's crop around every ``stride``-th frame, and (N, P) truth.

    The reader's own crop is the centred square of side S / CONTEXT; training re-crops it with jitter.
    """
    side = round(config.crop * CONTEXT)
    grow = (CONTEXT * (1 + 2 * config.grow) - 1) / 2  # the same centre, a CONTEXT× larger square
    crops, params = [], []
    for c in clips:
        crops.append((crop_mouths(c.frames[::stride], c.boxes[::stride], side, grow) * 255).round().to(torch.uint8))
        params.append(c.params[::stride])
    return torch.cat(crops), torch.cat(params)


# -- 4. training -------------------------------------------------------------------------------------


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """(N, 3, S, S) blurred with a per-example Gaussian of std ``sigma`` (N,) pixels (0 = unchanged)."""
    N, C, S, _ = x.shape
    radius = max(1, math.ceil(3 * float(sigma.max())))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-t[None] ** 2 / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))  # (N, K)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(C, 0)  # (N·C, K): one kernel per channel
    h = F.pad(x.reshape(1, N * C, S, S), (radius, radius, radius, radius), mode="replicate")
    h = F.conv2d(h, k[:, None, None, :], groups=N * C)  # along x
    h = F.conv2d(h, k[:, None, :, None], groups=N * C)  # along y
    return h.reshape(N, C, S, S)


def augment(context: torch.Tensor, config: ReaderConfig, tc: ReaderTrainConfig, g: torch.Generator) -> torch.Tensor:
    """uint8 context squares (N, 3, S, S) → (N, 3, crop, crop) float reader inputs with random jitter,
    horizontal flips (the parameters are left-right symmetric), brightness, blur and noise."""
    N = context.shape[0]
    u = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731
    # the reader's box inside a context square: centred, 1 / (CONTEXT · (1 + 2·grow)) of its side
    half = 0.5 / (CONTEXT * (1 + 2 * config.grow))
    boxes = torch.tensor([0.5 - half, 0.5 - half, 0.5 + half, 0.5 + half]).expand(N, 4)
    jitter = torch.cat([(u(N, 2) * 2 - 1) * tc.jitter_shift, (u(N, 1) * 2 - 1) * tc.jitter_scale], 1)
    x = crop_mouths(context.permute(0, 2, 3, 1), boxes, config.crop, config.grow, jitter)  # (N, 3, c, c)
    flip = u(N) < 0.5
    x[flip] = x[flip].flip(-1)
    gain = 1 + (u(N, 1, 1, 1) * 2 - 1) * tc.brightness
    x = x * gain + (u(N, 1, 1, 1) - 0.5) * tc.brightness
    if tc.blur_prob > 0 and tc.blur_max > 0:
        sigma = torch.where(u(N) < tc.blur_prob, u(N) * tc.blur_max, torch.zeros(N))
        x = _gaussian_blur(x, sigma)
    x = x + torch.randn(x.shape, generator=g) * u(N, 1, 1, 1) * tc.noise_max
    return x.clamp(0, 1)


def train_reader(train_clips: Sequence[ReaderClip], config: ReaderConfig, tc: ReaderTrainConfig,
                 val_clips: Optional[Sequence[ReaderClip]] = None, progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancelCheck] = None) -> Tuple[MouthReader, Dict]:
    """Train a reader on ground-truth clips (L2 on the parameters, AdamW, cosine decay).

    With ``val_clips`` the weights with the best mean R² over the parameters (checked every
    ``val_every`` steps and at the end) are returned; without, the last weights.
    Returns (reader in eval mode, log dict with steps, seconds, final loss, validation history).
    """
    context, targets = _context_crops(train_clips, config, tc.frame_stride)  # (N, 3, S, S) uint8, (N, P)
    torch.manual_seed(tc.seed)
    g = torch.Generator().manual_seed(tc.seed)
    reader = MouthReader(config)
    opt = torch.optim.AdamW(reader.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    lr_at = lambda s: tc.lr * min(1.0, (s + 1) / tc.warmup) * 0.5 * (1 + math.cos(math.pi * s / tc.steps))  # noqa: E731
    best, best_score, history, start, loss_avg = None, -math.inf, [], time.time(), None
    for step in range(tc.steps):
        check_cancel(cancel)
        idx = torch.randint(context.shape[0], (tc.batch,), generator=g)
        x = augment(context[idx], config, tc, g)  # (B, 3, crop, crop)
        loss = F.mse_loss(reader(x), targets[idx])
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = float(loss.detach())
        loss_avg = value if loss_avg is None else 0.98 * loss_avg + 0.02 * value
        message = f"loss {loss_avg:.4f}"
        if val_clips and ((step + 1) % tc.val_every == 0 or step + 1 == tc.steps):
            acc = evaluate_reader(reader, val_clips)
            score = acc["mean_r2"]
            history.append({"step": step + 1, "loss": loss_avg, "mean_r2": score,
                            "r2_open": acc["params"]["open"]["r2"]})
            if score > best_score:
                best, best_score = copy.deepcopy(reader.state_dict()), score
            message += f", val mean R² {score:.3f} (best {best_score:.3f})"
        report(progress, step + 1, tc.steps, message)
    if best is not None:
        reader.load_state_dict(best)
    reader.eval()
    log = {"steps": tc.steps, "seconds": round(time.time() - start, 1), "train_frames": int(context.shape[0]),
           "final_loss": loss_avg, "validation": history, "best_val_mean_r2": best_score if best else None}
    return reader, log


# -- 5. accuracy -------------------------------------------------------------------------------------


def pearson(x, y) -> float:
    """Pearson correlation of two 1-D series; 0 when either is constant (a frozen mouth follows nothing)."""
    x = torch.as_tensor(x, dtype=torch.float64).flatten()
    y = torch.as_tensor(y, dtype=torch.float64).flatten()
    if x.shape != y.shape or x.numel() < 2:
        raise OmniSyncError(f"pearson needs two series of the same length ≥ 2, got {x.numel()} and {y.numel()}.")
    x, y = x - x.mean(), y - y.mean()
    den = float((x.square().sum() * y.square().sum()).sqrt())
    return float((x * y).sum()) / den if den > 1e-12 else 0.0


def r_squared(pred, truth) -> float:
    """Coefficient of determination 1 − SS_res / SS_tot (1 = perfect, 0 = as good as the mean, can be < 0)."""
    pred = torch.as_tensor(pred, dtype=torch.float64).flatten()
    truth = torch.as_tensor(truth, dtype=torch.float64).flatten()
    ss_tot = float((truth - truth.mean()).square().sum())
    return 1.0 - float((pred - truth).square().sum()) / ss_tot if ss_tot > 1e-12 else 0.0


def reader_accuracy(pred: torch.Tensor, truth: torch.Tensor, names: Sequence[str] = MOUTH_PARAMS,
                    clip_lengths: Optional[Sequence[int]] = None) -> Dict:
    """pred, truth: (N, P) over all frames. R², correlation and mean |error| per parameter (pooled over
    frames), their mean R²; with ``clip_lengths`` also the median over clips of the openness correlation."""
    out = {"frames": int(truth.shape[0]), "params": {}}
    for i, name in enumerate(names):
        out["params"][name] = {"r2": r_squared(pred[:, i], truth[:, i]), "corr": pearson(pred[:, i], truth[:, i]),
                               "mae": float((pred[:, i] - truth[:, i]).abs().mean())}
    out["mean_r2"] = float(np.mean([v["r2"] for v in out["params"].values()]))
    if clip_lengths:
        per_clip, s = [], 0
        for n in clip_lengths:
            if n >= 2:
                per_clip.append(pearson(pred[s:s + n, OPEN], truth[s:s + n, OPEN]))
            s += n
        out["open_clip_corr_median"] = float(np.median(per_clip)) if per_clip else None
    return out


def accuracy_table(accuracy: Dict) -> str:
    """Markdown: one row per parameter (R², correlation, mean |error|), then the per-clip openness line."""
    lines = ["| parameter | R² | correlation | mean abs error |", "|---|---:|---:|---:|"]
    for name, m in accuracy["params"].items():
        lines.append(f"| {name} | {m['r2']:.3f} | {m['corr']:.3f} | {m['mae']:.3f} |")
    if accuracy.get("open_clip_corr_median") is not None:
        lines.append(f"\nmedian over clips of the openness correlation: {accuracy['open_clip_corr_median']:.3f}")
    return "\n".join(lines)


def evaluate_reader(reader: MouthReader, clips: Sequence[ReaderClip]) -> Dict:
    """:func:`reader_accuracy` of ``reader`` on ground-truth clips (no augmentation)."""
    pred = torch.cat([read_mouths(reader, c.frames, c.boxes) for c in clips])
    truth = torch.cat([c.params for c in clips])
    return reader_accuracy(pred, truth, reader.config.params, [c.frames.shape[0] for c in clips])


# -- 6. files ----------------------------------------------------------------------------------------


def save_reader(path: str, reader: MouthReader, extra: Optional[Dict] = None) -> str:
    """Weights (float32) + metadata: format, config, and each ``extra`` value as JSON."""
    from safetensors.torch import save_file

    meta = {"format": READER_FORMAT, "config": json.dumps(asdict(reader.config))}
    meta.update({k: json.dumps(v) for k, v in (extra or {}).items()})
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in reader.state_dict().items()
               if v.dtype.is_floating_point}
    tensors.update({k: v.contiguous().cpu() for k, v in reader.state_dict().items() if not v.dtype.is_floating_point})
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file(tensors, path, metadata=meta)
    return path


def load_reader(path: str, device: str = "cpu") -> Tuple[MouthReader, Dict]:
    """(reader in eval mode, metadata with JSON values decoded) from :func:`save_reader`'s file."""
    from safetensors import SafetensorError, safe_open

    if not os.path.isfile(path):
        raise OmniSyncError(f"mouth reader {path!r} not found; train one with `python -m omnisync_core train-reader "
                            "--data DIR --out models/mouth_reader.safetensors`, or pass --reader PATH.")
    try:
        with safe_open(path, framework="pt") as f:
            raw = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise OmniSyncError(f"{path} is not a readable safetensors file ({exc}); point --reader at a mouth reader "
                            "written by train-reader.") from exc
    if raw.get("format") != READER_FORMAT:
        raise OmniSyncError(f"{path} is not a mouth reader (metadata format {raw.get('format')!r}, expected "
                            f"{READER_FORMAT!r}); point --reader at a file written by train-reader.")
    meta = {k: (json.loads(v) if k != "format" else v) for k, v in raw.items()}
    reader = MouthReader(ReaderConfig(**meta["config"]))
    reader.load_state_dict(state)
    return reader.to(device).eval(), meta
