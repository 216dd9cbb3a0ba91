"""The training batch contract and the paper's timestep-dependent data sampling.

A :class:`PairSource` serves single training examples, each a dict

    source_latents: (C, F, h, w)      the reference clip the model sees as ``source``
    target_latents: (C, F, h, w)      x_0, the clip that matches the audio
    audio_tokens:   (F, N_a, D) or None   per-latent-frame audio tokens of the target's speech
    text:           (L, text_dim) or None
    loss_weight:    (F, h, w) or absent   optional per-position loss weight (e.g. around the mouth)
    mouth_at:       (F, 2) or absent      optional target mouth centre per latent frame (x, y fractions)
    mouth_params:   (F, P) or absent      optional target mouth parameters per latent frame
                                          (both for the U-Net's mouth read-out, TrainConfig.aux_mouth_weight)

in two kinds:

* ``arbitrary(generator)``: source and target are different segments of one video (or the very same
  clip: reconstruction). Pose and expression may differ; the model learns to keep identity.
* ``pseudo_paired(generator)``: source has the target's identity and pose but different speech;
  the target is the clip matching the audio. The model learns to change only the mouth.

Timestep-dependent sampling (OmniSync §3.2): σ is drawn per example first; at high noise
(t = 1000·σ > 850) the layout is still being decided, so the example is pseudo-paired; below, it
is arbitrary. :func:`choose_pair_kind` is the one place this rule lives.

All randomness comes from the ``generator`` the trainer passes in, so a run resumes bit-identically
and every rank of a distributed run draws its own data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Protocol, Sequence, Tuple

import torch

from ..errors import OmniSyncError
from ..sampling.schedule import sigma_to_timestep
from .config import TrainConfig

ARBITRARY = "arbitrary"
PSEUDO_PAIRED = "pseudo_paired"

Example = Dict[str, Optional[torch.Tensor]]


class PairSource(Protocol):
    """``crop`` > 0 asks for square crops of that many pixels that hold the target's mouth (0 = whole frames)."""
    def arbitrary(self, generator: torch.Generator, crop: int = 0) -> Example: ...
    def pseudo_paired(self, generator: torch.Generator, crop: int = 0) -> Example: ...


def choose_pair_kind(t: float, threshold: float) -> str:
    """Pseudo-paired data when the paper's timestep ``t`` ∈ [0, 1000] exceeds ``threshold``.

    Strictly greater: with the paper's 850, t = 850 is arbitrary and t = 851 pseudo-paired.
    """
    return PSEUDO_PAIRED if t > threshold else ARBITRARY


def sample_sigmas(n: int, config: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """``(n,)`` σ ∈ [0, 1): uniform or logit-normal, then the flow shift σ' = sσ / (1 + (s−1)σ)."""
    if config.timestep_sampling == "uniform":
        sigma = torch.rand(n, generator=generator, dtype=torch.float64)
    else:
        z = torch.randn(n, generator=generator, dtype=torch.float64)
        sigma = torch.sigmoid(config.logit_mean + config.logit_std * z)
    s = config.timestep_shift
    return (s * sigma / (1.0 + (s - 1.0) * sigma)).float()


@dataclass
class Batch:
    """One micro-batch on the trainer's device.

    sigma: (B,) float32 in [0, 1]; paired: (B,) bool, True = pseudo-paired;
    source, target: (B, C, F, h, w); audio: (B, F, N_a, D) or None; text: (B, L, text_dim) or None;
    weight: (B, F, h, w) per-position loss weight, or None (uniform).
    mouth_at: (B, F, 2), mouth_params: (B, F, P): the target's mouth centres and parameters, or None.
    """
    sigma: torch.Tensor
    paired: torch.Tensor
    source: torch.Tensor
    target: torch.Tensor
    audio: Optional[torch.Tensor]
    text: Optional[torch.Tensor]
    weight: Optional[torch.Tensor] = None
    mouth_at: Optional[torch.Tensor] = None
    mouth_params: Optional[torch.Tensor] = None

    def to(self, device) -> "Batch":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Batch(*(move(t) for t in (self.sigma, self.paired, self.source, self.target, self.audio, self.text,
                                         self.weight, self.mouth_at, self.mouth_params)))


def collate(examples: Sequence[Example], sigma: torch.Tensor, kinds: Sequence[str]) -> Batch:
    """Stack examples. A missing text among present ones becomes zero tokens (the "no prompt" text)."""
    def stack(key: str) -> Optional[torch.Tensor]:
        items = [e.get(key) for e in examples]
        present = [t for t in items if t is not None]
        if not present:
            return None
        if key != "text" and len(present) != len(items):
            raise OmniSyncError(f"some examples have {key} and some do not; a PairSource must be consistent.")
        shapes = {tuple(t.shape) for t in present}
        if len(shapes) != 1:
            raise OmniSyncError(f"examples disagree on the shape of {key}: {sorted(shapes)}; "
                                "crop or pad clips (and text) to one size in the PairSource.")
        return torch.stack([torch.zeros_like(present[0]) if t is None else t for t in items])

    return Batch(sigma=sigma, paired=torch.tensor([k == PSEUDO_PAIRED for k in kinds]),
                 source=stack("source_latents"), target=stack("target_latents"),
                 audio=stack("audio_tokens"), text=stack("text"), weight=stack("loss_weight"),
                 mouth_at=stack("mouth_at"), mouth_params=stack("mouth_params"))


def draw_batch(pairs: PairSource, n: int, config: TrainConfig, generator: torch.Generator, crop: int = 0) -> Batch:
    """σ first, then one example of the kind that σ calls for (timestep-dependent data sampling).

    ``crop`` > 0 asks the source for square crops of that many pixels around the mouth (dataset folders).
    """
    sigma = sample_sigmas(n, config, generator)
    kinds = [choose_pair_kind(float(sigma_to_timestep(s)), config.pair_threshold_t) for s in sigma]
    examples = [pairs.pseudo_paired(generator, crop) if k == PSEUDO_PAIRED else pairs.arbitrary(generator, crop)
                for k in kinds]
    return collate(examples, sigma, kinds)


class TensorPairSource:
    """A :class:`PairSource` over in-memory clips (tests, small experiments).

    latents: N clips, each (C, F, h, w); audio: N × (F, N_a, D) or None; text: N × (L, text_dim) or None.
    video_ids: N ints, clips of one video share an id (arbitrary pairs stay inside a video);
      default: every clip is its own video, so arbitrary examples are reconstructions.
    pseudo_pairs: (source_index, target_index) pairs with the same identity and pose but different
      speech; the target's audio and text go with the example.
    """

    def __init__(self, latents: Sequence[torch.Tensor], audio: Optional[Sequence[torch.Tensor]] = None,
                 text: Optional[Sequence[Optional[torch.Tensor]]] = None,
                 video_ids: Optional[Sequence[int]] = None,
                 pseudo_pairs: Sequence[Tuple[int, int]] = ()):
        n = len(latents)
        if n == 0:
            raise OmniSyncError("TensorPairSource needs at least one clip.")
        for name, seq in (("audio", audio), ("text", text), ("video_ids", video_ids)):
            if seq is not None and len(seq) != n:
                raise OmniSyncError(f"TensorPairSource: {len(seq)} {name} entries for {n} clips; give one per clip.")
        if any(not (0 <= i < n and 0 <= j < n) for i, j in pseudo_pairs):
            raise OmniSyncError(f"TensorPairSource: pseudo_pairs index out of range for {n} clips.")
        self.latents = list(latents)
        self.audio = list(audio) if audio is not None else [None] * n
        self.text = list(text) if text is not None else [None] * n
        self.video_ids = list(video_ids) if video_ids is not None else list(range(n))
        self.pseudo_pairs = list(pseudo_pairs)

    def _example(self, src: int, tgt: int) -> Example:
        return {"source_latents": self.latents[src], "target_latents": self.latents[tgt],
                "audio_tokens": self.audio[tgt], "text": self.text[tgt]}

    def _no_crop(self, crop: int) -> None:
        if crop:
            raise OmniSyncError("TensorPairSource serves whole clips (it knows no mouth boxes); set train_crop to 0.")

    def arbitrary(self, generator: torch.Generator, crop: int = 0) -> Example:
        self._no_crop(crop)
        tgt = int(torch.randint(len(self.latents), (1,), generator=generator))
        same_video = [i for i, v in enumerate(self.video_ids) if v == self.video_ids[tgt]]
        src = same_video[int(torch.randint(len(same_video), (1,), generator=generator))]
        return self._example(src, tgt)

    def pseudo_paired(self, generator: torch.Generator, crop: int = 0) -> Example:
        self._no_crop(crop)
        if not self.pseudo_pairs:
            raise OmniSyncError("this TensorPairSource has no pseudo_pairs, but σ > threshold asked for one; "
                                "give pseudo_pairs or set pair_threshold_t = 1000 (arbitrary pairs only).")
        src, tgt = self.pseudo_pairs[int(torch.randint(len(self.pseudo_pairs), (1,), generator=generator))]
        return self._example(src, tgt)


class MixedSizePairSource:
    """Several :class:`PairSource` s of different frame sizes (e.g. 128² and 256² renders of the same kind of
    data), one picked per training step with the given probabilities (a batch has one frame size).

    entries: (source, probability, crop side in pixels for the crop steps; 0 = whole frames). The
    probabilities must sum to 1. The trainer calls :meth:`pick` once per step with its generator.
    """

    def __init__(self, entries: Sequence[Tuple[PairSource, float, int]]):
        if not entries:
            raise OmniSyncError("MixedSizePairSource needs at least one (source, probability, crop) entry.")
        probs = [float(p) for _, p, _ in entries]
        if min(probs) < 0 or abs(sum(probs) - 1.0) > 1e-6:
            raise OmniSyncError(f"MixedSizePairSource probabilities must be >= 0 and sum to 1, got {probs}.")
        self.entries = [(src, p, int(c)) for (src, _, c), p in zip(entries, probs)]

    def pick(self, generator: torch.Generator) -> Tuple[PairSource, int]:
        """(source, crop side) for one step."""
        u, acc = float(torch.rand((), generator=generator)), 0.0
        for src, p, crop in self.entries:
            acc += p
            if u < acc:
                return src, crop
        return self.entries[-1][0], self.entries[-1][2]

    def arbitrary(self, generator: torch.Generator, crop: int = 0) -> Example:
        return self.entries[0][0].arbitrary(generator, crop)

    def pseudo_paired(self, generator: torch.Generator, crop: int = 0) -> Example:
        return self.entries[0][0].pseudo_paired(generator, crop)
