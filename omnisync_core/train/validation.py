"""Validation that renders held-out clips during training.

Every ``val_every`` steps the trainer calls :class:`RenderValidator`: for a few held-out characters it
lip-syncs the first ``clip_frames`` frames of utterance ``a`` to the audio of ``b`` with the current
weights (progressive noise init + the inference sampler, ``sampling.sampler.sample_windowed``, with
the mouth at the default point), writes ``source | output | truth``
videos to ``out_dir/val/``, and returns the mouth-region error against the renderer's exact ground
truth next to the "copy the source" baseline (:mod:`omnisync_core.eval.heldout` metrics), plus the
held-out flow-matching loss.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Optional

import numpy as np
import torch
from torch import nn

from ..data.dataset import load_clip, read_index
from ..eval.heldout import clip_metrics, mouth_region
from ..sampling.guidance import GuidanceConfig
from ..sampling.mouth import DEFAULT_MOUTH_CENTRE, centres_from_point
from ..sampling.noise_init import progressive_noise_init
from ..sampling.options import SyncOptions
from ..sampling.sampler import sample_windowed
from ..sampling.schedule import FlowMatchSchedule

VALIDATION_STEPS = 20  # schedule length of the validation renders: cheaper than the paper's 50 during training


class RenderValidator:
    """``validator(model, step) -> dict`` for :func:`omnisync_core.train.trainer.train`.

    Args:
        root: dataset folder with a ``heldout`` split; codec: the training codec (temporal factor 1).
        num_layers, frame_window: the audio feature layout the model trains on.
        clips: held-out characters rendered each time; frames: frames per clip.
        tau, steps: progressive noise init strength and the full schedule length (only σ ≤ τ run).
        guidance: DS-CFG configuration (default: :class:`GuidanceConfig`'s).
    """

    def __init__(self, root: str, out_dir: str, codec, num_layers: Optional[int], frame_window: int = 2,
                 clips: int = 3, frames: int = 16, tau: float = SyncOptions.tau, steps: int = VALIDATION_STEPS,
                 guidance: Optional[GuidanceConfig] = None, write_videos: bool = True):
        entries = read_index(root)["splits"].get("heldout") or []
        self.items = []
        for e in entries[:clips]:
            folder = os.path.join(root, e["dir"])
            a, b = (load_clip(os.path.join(folder, f"{n}.safetensors"), num_layers, frame_window) for n in "ab")
            ma, mb = (json.load(open(os.path.join(folder, f"{n}.json"))) for n in "ab")
            T = min(frames, a.frames.shape[0], b.frames.shape[0])
            self.items.append({"kind": e["kind"], "seed": e["seed"], "a": a.frames[:T], "b": b.frames[:T],
                               "tokens": b.tokens[:T] if b.tokens is not None else None,
                               "region": mouth_region(np.array(ma["mouth_box"]), np.array(mb["mouth_box"]),
                                                      *a.frames.shape[1:3])[:T], "fps": ma["fps"]})
        self.codec, self.out_dir, self.tau = codec, out_dir, tau
        self.sigmas = FlowMatchSchedule(steps).truncate(tau)
        self.guidance = guidance or GuidanceConfig()
        self.write_videos = write_videos

    @torch.no_grad()
    def __call__(self, model: nn.Module, step: int) -> Dict[str, float]:
        from ..image.pictures import side_by_side
        from ..io.video import write_video

        core = getattr(model, "module", model)  # DDP / FSDP wrapper → the DiT
        was_training = core.training
        core.eval()
        device = next(core.parameters()).device
        rows = []
        for item in self.items:
            source = item["a"].float() / 255.0
            truth = item["b"].float() / 255.0
            src = self.codec.encode(source)  # (C, F, h, w); the sampler moves it to the model's device
            x_init = progressive_noise_init(src, self.tau, seed=SyncOptions.seed)
            tokens = item["tokens"].float() if item["tokens"] is not None else None
            centres = centres_from_point(DEFAULT_MOUTH_CENTRE, src.shape[1])
            latents, _, _ = sample_windowed(core, x_init, src, tokens, None, self.sigmas, self.guidance, centres,
                                            device=device)
            out = self.codec.decode(latents.cpu()).clamp(0, 1)[: source.shape[0]]
            rows.append(clip_metrics(out, source, truth, item["region"]))
            if self.write_videos and int(os.environ.get("RANK", "0")) == 0:
                os.makedirs(os.path.join(self.out_dir, "val"), exist_ok=True)
                path = os.path.join(self.out_dir, "val", f"step{step:06d}_{item['kind']}_{item['seed']}.mp4")
                write_video(path, side_by_side(side_by_side(source, out), truth), item["fps"])
        core.train(was_training)
        result = {k: float(np.mean([r[k] for r in rows])) for k in ("mouth_mae", "copy_mouth_mae", "psnr_outside")}
        return result
