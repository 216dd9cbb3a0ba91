"""The synthetic talking-character dataset: building it, and serving training pairs from it.

Layout of a dataset folder (``python -m omnisync_core make-data --out DIR``)::

    DIR/dataset.json                 splits, size, fps, audio feature spec, sample list
    DIR/<split>/c<seed>/a.mp4 a.wav a.json a.safetensors
    DIR/<split>/c<seed>/b.mp4 b.wav b.json b.safetensors
    DIR/<split>/c<seed>/s.mp4 s.wav s.json s.safetensors   (silence; datasets built since stage 5)

Each character is drawn from its seed, gets one head-motion track, and says two different
utterances ``a`` and ``b`` over that same track (and ``s``: ``a``'s length of near-silence with the
mouth closed and still): ``(a, b)`` is a pseudo-pair (same identity, same
pose, different speech — the paper's MEAD-style pairs), and ``b`` is the exact ground truth of
"source clip ``a`` lip-synced to audio ``b``". Two segments of one clip form an arbitrary pair.
The json holds the character, voice, text, phoneme timings, visemes and mouth parameters per frame,
and the mouth centre and box per frame; the ``.safetensors`` holds the raw rendered frames (uint8,
what the mp4 shows before compression) and the Whisper features aligned per frame, so training reads
no video. The ``heldout`` split uses character seeds, voices and sentence words never used in ``train``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import OmniSyncError
from ..io.files import atomic_output
from ..progress import CancelCheck, ProgressCallback, check_cancel, report

SPLITS = ("train", "heldout")
KINDS = ("human", "stylized", "nonhuman")
SPLIT_SEED_BASE = {"train": 0, "heldout": 10_000_000}  # character seeds of the splits never meet
MOTION_SEED_OFFSET = 7_777  # the motion track's seed, derived from the character seed
SILENCE_SEED_OFFSET = 5_555  # the silence clip's level and noise, derived from the character seed
UTTERANCES = ("a", "b")       # the two spoken utterances of a character; "s" (silence) when built with it
DATASET_FILE = "dataset.json"


def _motion_prefix(motion, num_frames: int):
    """The first ``num_frames`` frames of a MotionTrack (both utterances share one track)."""
    from .characters import MotionTrack

    channels = ("dx", "dy", "nod", "turn", "roll", "scale", "blink")
    return MotionTrack(motion.fps, *(getattr(motion, c)[:num_frames] for c in channels))


def _sample_dir(root: str, split: str, seed: int) -> str:
    return os.path.join(root, split, f"c{seed:08d}")


def build_dataset(root: str, num_characters: int, split: str = "train", size: int = 128, fps: float = 25.0,
                  encoder=None, seed: int = 0, write_media: bool = True, silence: bool = True,
                  progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCheck] = None) -> Dict:
    """Render ``num_characters`` characters × 2 utterances into ``root/<split>``.

    Args:
        encoder: a ``WhisperFeatureExtractor``; when given, per-frame Whisper features are cached
            (all its hidden states; a model picks the last ``num_layers`` it was trained with).
        seed: offsets the character seeds (within the split's own seed range).
        write_media: also write mp4 + wav (the human-viewable copy); the json and safetensors are always written.
        silence: also render ``s``: utterance ``a``'s length of near-silence (:func:`.speech.near_silence`,
            a seeded level in ``NEAR_SILENCE_DBFS``) over the same head motion with the mouth closed and
            still: the truth of "speech replaced by near-silence" (training and the held-out silence case).

    Returns the dataset index (also written to ``root/dataset.json``, merged with other splits).
    """
    from ..audio.features import align_features_to_frames, to_mono_16k
    from ..io.video import write_video
    from ..io.audio import write_wav
    from .characters import random_character, random_motion, render_clip
    from .speech import random_sentence, random_voice, speak
    from .visemes import VISEME_NAMES, viseme_track

    if split not in SPLITS:
        raise OmniSyncError(f"split must be one of {SPLITS}, got {split!r}.")
    if num_characters < 1:
        raise OmniSyncError("num_characters must be at least 1.")
    os.makedirs(os.path.join(root, split), exist_ok=True)
    vocabulary = "train" if split == "train" else "heldout"
    samples = []
    for i in range(num_characters):
        check_cancel(cancel)
        cseed = SPLIT_SEED_BASE[split] + seed + i
        rng = np.random.default_rng(cseed)
        character = random_character(cseed, kind=KINDS[i % len(KINDS)])
        voice, speed, pitch = random_voice(rng, split=vocabulary)
        utts = {}
        for name in ("a", "b"):
            text = random_sentence(rng, vocabulary=vocabulary)
            utts[name] = speak(text, voice=voice, speed=speed, pitch=pitch)
        n_frames = {k: int(np.ceil(u.duration * fps)) for k, u in utts.items()}
        if silence:  # "a" with its speech replaced by near-silence: the closed, still mouth is the truth
            utts["s"] = silence_utterance(cseed, utts["a"].duration, utts["a"].sample_rate)
            n_frames["s"] = n_frames["a"]
        motion = random_motion(cseed + MOTION_SEED_OFFSET, max(n_frames.values()), fps)
        folder = _sample_dir(root, split, cseed)
        os.makedirs(folder, exist_ok=True)
        for name, utt in utts.items():
            T = n_frames[name]
            visemes, params = viseme_track(utt, fps, T)
            render = render_clip(character, _motion_prefix(motion, T), params, size=(size, size))
            tensors = {"frames": torch.from_numpy(np.ascontiguousarray(render.frames))}
            if encoder is not None:
                wave16k = to_mono_16k(utt.waveform, utt.sample_rate)
                feats = encoder.encode(wave16k)  # (N_feat, L, D)
                frame_feats, _ = align_features_to_frames(feats, fps, T, silence_feature=encoder.silence_feature())
                tensors["features"] = frame_feats.half().contiguous()
            meta = {"kind": character.kind, "fps": str(fps)}
            if encoder is not None:
                meta["audio_spec"] = json.dumps(encoder.spec.to_dict())
            save_file(tensors, os.path.join(folder, f"{name}.safetensors"), metadata=meta)
            info = {
                "character_seed": cseed, "character": character.to_dict(), "motion_seed": cseed + MOTION_SEED_OFFSET,
                "kind": character.kind, "text": utt.text, "voice": utt.voice, "speed": utt.speed, "pitch": utt.pitch,
                "fps": fps, "num_frames": T, "size": size, "duration_s": utt.duration,
                "phonemes": [[p.symbol, round(p.start, 4), round(p.end, 4)] for p in utt.phonemes],
                "viseme_names": list(VISEME_NAMES), "visemes": [int(v) for v in visemes],
                "mouth_params": np.round(params, 4).tolist(),
                "mouth_centre": np.round(render.mouth_centre, 5).tolist(),
                "mouth_box": np.round(render.mouth_box, 5).tolist(),
            }
            with open(os.path.join(folder, f"{name}.json"), "w") as f:
                json.dump(info, f)
            if write_media:
                wav_path = os.path.join(folder, f"{name}.wav")
                write_wav(wav_path, utt.waveform, utt.sample_rate)
                write_video(os.path.join(folder, f"{name}.mp4"), torch.from_numpy(render.frames).float() / 255,
                            fps, utt.waveform, utt.sample_rate)
        samples.append({"split": split, "seed": cseed, "kind": character.kind,
                        "dir": os.path.relpath(folder, root), "frames": n_frames})
        # the index is rewritten after every character: an interrupted build keeps what it finished
        index = _write_index(root, split, samples, size, fps, encoder)
        report(progress, i + 1, num_characters, f"{split} character {i + 1}/{num_characters}")
    return index


def silence_utterance(character_seed: int, duration_s: float, sample_rate: int):
    """The ``s`` utterance of a character: near-silence of ``duration_s`` at a level drawn from its own seed
    (the character's other draws are unchanged), with no phonemes (:func:`.visemes.viseme_track` gives the
    closed ``sil`` mouth for every frame)."""
    from .speech import NEAR_SILENCE_DBFS, Utterance, near_silence

    seed = character_seed + SILENCE_SEED_OFFSET
    level = float(np.random.default_rng(seed).uniform(*NEAR_SILENCE_DBFS))
    wave = near_silence(duration_s, sample_rate, level, seed)
    return Utterance(text="", waveform=wave, sample_rate=sample_rate, phonemes=[], voice=f"near-silence {level:.1f} dBFS",
                     speed=0, pitch=0)


def merge_datasets(out: str, roots: Sequence[str], split: str = "train") -> Dict:
    """One dataset folder ``out`` whose ``split`` is the union of the same split of ``roots`` (built in parallel
    with make-data ``--seed`` offsets): the character folders are linked, not copied. The roots must agree on
    size, fps and audio features and not share a character seed. Returns the index written."""
    samples, first = [], None
    for root in roots:
        index = read_index(root)
        head = {k: index.get(k) for k in ("size", "fps", "audio_spec")}
        if first is not None and head != first:
            raise OmniSyncError(f"{root!r} differs from {roots[0]!r} in size, fps or audio features; merge only "
                                "folders built with the same make-data settings.")
        first = head
        for e in index["splits"].get(split) or []:
            link = os.path.join(out, e["dir"])
            os.makedirs(os.path.dirname(link), exist_ok=True)
            if not os.path.lexists(link):
                os.symlink(os.path.abspath(os.path.join(root, e["dir"])), link)
            samples.append(e)
    seeds = [e["seed"] for e in samples]
    if len(set(seeds)) != len(seeds):
        raise OmniSyncError("the folders share character seeds; build them with different make-data --seed offsets.")
    index = _read_index(out)
    index.update(first or {})
    index.setdefault("splits", {})[split] = samples
    os.makedirs(out, exist_ok=True)
    tmp = os.path.join(out, DATASET_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(index, f, indent=1)
    os.replace(tmp, os.path.join(out, DATASET_FILE))
    return index


def _write_index(root: str, split: str, samples: List[Dict], size: int, fps: float, encoder) -> Dict:
    index = _read_index(root)
    index.update({"size": size, "fps": fps,
                  "audio_spec": encoder.spec.to_dict() if encoder is not None else None})
    index.setdefault("splits", {})[split] = samples
    with atomic_output(os.path.join(root, DATASET_FILE)) as part, open(part, "w") as f:
        json.dump(index, f, indent=1)
    return index


def _read_index(root: str) -> Dict:
    path = os.path.join(root, DATASET_FILE)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def read_index(root: str) -> Dict:
    """The dataset.json of ``root``, with a clear error when it is not a dataset folder."""
    index = _read_index(root)
    if not index.get("splits"):
        raise OmniSyncError(f"{root!r} is not an OmniSync dataset folder (no {DATASET_FILE} with splits); "
                            "build one with `python -m omnisync_core make-data --out DIR`.")
    return index


# -- serving pairs to the trainer -----------------------------------------------------------------


MOUTH_WEIGHT_GROW = 0.25  # the loss-weighted mouth box is grown by this fraction of its size per side


def grown_box_mask(boxes, H: int, W: int, grow: float) -> torch.Tensor:
    """(T, H, W) bool: the cells of an H×W grid whose centres lie inside each frame's box (x0, y0, x1, y1
    as frame fractions, (T, 4) array or tensor) grown by ``grow`` of the box size on each side."""
    b = torch.as_tensor(boxes, dtype=torch.float32)
    gx, gy = (b[:, 2] - b[:, 0]) * grow, (b[:, 3] - b[:, 1]) * grow
    ys = ((torch.arange(H, dtype=torch.float32) + 0.5) / H).view(1, H, 1)
    xs = ((torch.arange(W, dtype=torch.float32) + 0.5) / W).view(1, 1, W)
    return ((xs >= (b[:, 0] - gx).view(-1, 1, 1)) & (xs <= (b[:, 2] + gx).view(-1, 1, 1))
            & (ys >= (b[:, 1] - gy).view(-1, 1, 1)) & (ys <= (b[:, 3] + gy).view(-1, 1, 1)))


@dataclass
class Clip:
    """One rendered utterance in memory: frames (T, H, W, 3) uint8; tokens (T, N_a, K) float16 or None;
    boxes (T, 4) mouth boxes as frame fractions, when loaded."""

    frames: torch.Tensor
    tokens: Optional[torch.Tensor]
    character: int
    kind: str
    boxes: Optional[torch.Tensor] = None
    centres: Optional[torch.Tensor] = None   # (T, 2) mouth centres (x, y fractions), when loaded
    params: Optional[torch.Tensor] = None    # (T, P) renderer mouth parameters, when loaded


def load_clip(path: str, num_layers: Optional[int], frame_window: int) -> Clip:
    """Read one ``<name>.safetensors``; keep the last ``num_layers`` Whisper hidden states."""
    from ..audio.features import latent_audio_tokens

    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        frames = f.get_tensor("frames")
        feats = f.get_tensor("features") if (num_layers and "features" in f.keys()) else None
    tokens = None
    if num_layers:
        if feats is None:
            raise OmniSyncError(f"{path} has no audio features; rebuild the dataset with a Whisper encoder "
                                "(make-data --whisper PATH, or the bundled tiny.en).")
        spec = json.loads(meta["audio_spec"])
        L, D = spec["num_layers"], spec["dim"]
        if num_layers > L:
            raise OmniSyncError(f"{path} caches {L} Whisper layers but the model wants {num_layers}.")
        feats = feats.view(feats.shape[0], L, D)[:, L - num_layers:].reshape(feats.shape[0], num_layers * D)
        tokens = latent_audio_tokens(feats.float(), 1, frame_window).half()  # (T, N_a, K): pixel codec, 1 frame per latent
    seed = int(os.path.basename(os.path.dirname(path))[1:])
    return Clip(frames=frames, tokens=tokens, character=seed, kind=meta.get("kind", "?"))


class FolderPairSource:
    """A :class:`omnisync_core.train.batches.PairSource` over one split of a dataset folder.

    Examples are ``clip_frames`` long segments encoded with ``codec`` (temporal factor 1).
    * pseudo-paired: character c, segment start s inside both utterances; source = the *other*
      utterance's frames at s, target = this one's at s (same pose, different mouth), audio = target's.
    * arbitrary: one utterance; target segment at s, source segment at s' (the same character at
      another moment: other pose, other mouth), audio = target's. s' is anywhere in the clip, or within
      ``max_offset`` frames of s when ``max_offset`` > 0.

    With ``mouth_weight`` > 0 every example also carries ``loss_weight`` (F, h, w): 1 + mouth_weight inside
    the target's mouth box (from the renderer's json, grown by ``MOUTH_WEIGHT_GROW`` of its size), 1 elsewhere;
    with ``weight_source_mouth`` the source's mouth box of a pseudo-pair counts too (same pose: where the old
    mouth was is where its ghost would stay), and mouth crops hold both boxes.
    With ``mouth_params`` every example also carries the target's ``mouth_at`` (F, 2) mouth centres and
    ``mouth_params`` (F, P) renderer mouth parameters (for the trainer's auxiliary mouth probe).

    Pseudo-pairs drawn on purpose (stage 5 of the bundled model; both 0 = the plain draw, same random stream):
    * ``closed_target_prob``: a segment where the target's mouth is closed (openness ≤ ``CLOSED_OPEN``) and the
      source's is open (≥ ``OPEN_OPEN``): the pairs where a copied source mouth shows as a ghost.
    * ``silence_prob``: target = the character's silence clip ``s`` (near-silence audio, closed still mouth),
      source = ``a`` or ``b`` at the same moment. Needs a dataset built with silence clips.
    """

    CLOSED_OPEN = 0.05   # renderer openness at or below which a mouth counts as closed
    OPEN_OPEN = 0.30     # ... and at or above which as open

    def __init__(self, root: str, split: str, clip_frames: int, codec, num_layers: Optional[int],
                 frame_window: int = 2, kinds: Optional[Sequence[str]] = None, max_offset: int = 0,
                 mouth_weight: float = 0.0, mouth_params: bool = False, closed_target_prob: float = 0.0,
                 silence_prob: float = 0.0, weight_source_mouth: bool = False):
        if getattr(codec, "temporal_factor", 1) != 1:
            raise OmniSyncError("FolderPairSource serves frame-aligned clips: use a codec with temporal factor 1 "
                                "(the pixel codec); VAE training needs pre-encoded latents.")
        if not (0.0 <= closed_target_prob and 0.0 <= silence_prob and closed_target_prob + silence_prob <= 1.0):
            raise OmniSyncError("closed_target_prob and silence_prob are probabilities >= 0 with a sum <= 1.")
        index = read_index(root)
        entries = index["splits"].get(split)
        if not entries:
            raise OmniSyncError(f"dataset {root!r} has no {split!r} split; build it with make-data --split {split}.")
        self.codec, self.clip_frames, self.max_offset = codec, clip_frames, max_offset
        self.mouth_weight, self.mouth_params = mouth_weight, mouth_params
        self.closed_target_prob, self.silence_prob = closed_target_prob, silence_prob
        self.weight_source_mouth = weight_source_mouth
        names = UTTERANCES + (("s",) if silence_prob > 0 else ())
        self.pairs: List[List[Clip]] = []
        self.silences: List[Clip] = []
        for e in entries:
            if kinds and e["kind"] not in kinds:
                continue
            if "s" in names and not os.path.exists(os.path.join(root, e["dir"], "s.safetensors")):
                raise OmniSyncError(f"{root!r}/{e['dir']} has no silence clip (s.safetensors) but silence_prob > 0; "
                                    "rebuild the data with this version's make-data, or set silence_prob to 0.")
            clips = [load_clip(os.path.join(root, e["dir"], f"{n}.safetensors"), num_layers, frame_window)
                     for n in names]
            for n, clip in zip(names, clips):  # the renderer's mouth track: crops, loss weight, read-out
                with open(os.path.join(root, e["dir"], f"{n}.json")) as f:
                    info = json.load(f)
                clip.boxes = torch.tensor(info["mouth_box"], dtype=torch.float32)  # (T, 4)
                clip.centres = torch.tensor(info["mouth_centre"], dtype=torch.float32)  # (T, 2)
                clip.params = torch.tensor(info["mouth_params"], dtype=torch.float32)  # (T, P)
            if min(c.frames.shape[0] for c in clips) >= clip_frames:
                self.pairs.append(clips[:2])
                if "s" in names:
                    self.silences.append(clips[2])
        if not self.pairs:
            raise OmniSyncError(f"no clips of at least {clip_frames} frames in {root!r}/{split}.")
        self.closed_starts = self._closed_starts() if closed_target_prob > 0 else []
        if closed_target_prob > 0 and not self.closed_starts:
            raise OmniSyncError(f"no segment of {root!r}/{split} has a closed target mouth over an open source one; "
                                "set closed_target_prob to 0.")

    def _closed_starts(self) -> List[tuple]:
        """(pair, target index, start) of every segment whose target mouth is closed on all its frames while
        the source's is open on all of them."""
        out = []
        for p, pair in enumerate(self.pairs):
            common = min(c.frames.shape[0] for c in pair)
            n = common - self.clip_frames + 1
            for t in (0, 1):
                tgt, src = pair[t].params[:common, 0], pair[1 - t].params[:common, 0]
                ok = (tgt <= self.CLOSED_OPEN) & (src >= self.OPEN_OPEN)                      # (common,)
                seg = ok.unfold(0, self.clip_frames, 1).all(1)                                # (n,)
                out.extend((p, t, int(s)) for s in torch.nonzero(seg[:n]).flatten())
        return out

    def __len__(self) -> int:
        return len(self.pairs)

    def _segment(self, clip: Clip, start: int):
        frames = clip.frames[start:start + self.clip_frames].float() / 255.0  # (F, H, W, 3)
        latents = self.codec.encode(frames)  # (C, F, h, w)
        tokens = clip.tokens[start:start + self.clip_frames].float() if clip.tokens is not None else None
        return latents, tokens

    def _boxes(self, clip: Clip, start: int, also: Optional[Clip] = None) -> torch.Tensor:
        """(F, 4) the segment's mouth boxes; with ``also`` (a pseudo-pair's source, weight_source_mouth), the
        bounding box of both clips' boxes per frame."""
        b = clip.boxes[start:start + self.clip_frames]
        if also is None or not self.weight_source_mouth:
            return b
        o = also.boxes[start:start + self.clip_frames]
        return torch.cat([torch.minimum(b[:, :2], o[:, :2]), torch.maximum(b[:, 2:], o[:, 2:])], 1)

    def _weight(self, clip: Clip, start: int, h: int, w: int, also: Optional[Clip] = None) -> Optional[torch.Tensor]:
        """(F, h, w): 1 + mouth_weight inside the grown mouth box of each frame (both clips' with ``also`` and
        weight_source_mouth), else 1."""
        if not self.mouth_weight:
            return None
        end = start + self.clip_frames
        inside = grown_box_mask(clip.boxes[start:end], h, w, MOUTH_WEIGHT_GROW)
        if also is not None and self.weight_source_mouth:
            inside = inside | grown_box_mask(also.boxes[start:end], h, w, MOUTH_WEIGHT_GROW)
        return 1.0 + self.mouth_weight * inside.float()

    def _randint(self, n: int, g: torch.Generator) -> int:
        return int(torch.randint(n, (1,), generator=g))

    def pseudo_paired(self, generator: torch.Generator, crop: int = 0) -> Dict:
        """A pseudo-pair; ``crop`` > 0: a random ``crop``×``crop`` pixel window that holds the target's mouth."""
        u = float(torch.rand((), generator=generator)) if (self.closed_target_prob or self.silence_prob) else 1.0
        if u < self.closed_target_prob:
            p, t, s = self.closed_starts[self._randint(len(self.closed_starts), generator)]
            tgt, src = self.pairs[p][t], self.pairs[p][1 - t]
        elif u < self.closed_target_prob + self.silence_prob:
            p = self._randint(len(self.pairs), generator)
            tgt, src = self.silences[p], self.pairs[p][self._randint(2, generator)]
            common = min(tgt.frames.shape[0], src.frames.shape[0])
            s = self._randint(common - self.clip_frames + 1, generator)
        else:
            pair = self.pairs[self._randint(len(self.pairs), generator)]
            t = self._randint(2, generator)
            tgt, src = pair[t], pair[1 - t]
            common = min(tgt.frames.shape[0], src.frames.shape[0])
            s = self._randint(common - self.clip_frames + 1, generator)
        target, tokens = self._segment(tgt, s)
        source, _ = self._segment(src, s)
        return self._example(source, target, tokens, self._weight(tgt, s, *target.shape[2:], also=src), tgt, s,
                             crop, generator, boxes=self._boxes(tgt, s, also=src))

    def _crop_window(self, boxes: torch.Tensor, crop: int, h: int, w: int, generator: torch.Generator):
        """(y0, x0, side) in latent cells: a random square of ``crop`` pixels holding the segment's mouth
        ``boxes`` (F, 4)."""
        sf = self.codec.spatial_factor
        side = crop // sf
        if crop % sf or not 1 <= side <= min(h, w):
            raise OmniSyncError(f"train_crop {crop} must be a multiple of the codec's {sf} pixels and at most the "
                                f"frame ({h * sf}×{w * sf}).")
        b = boxes
        lo = torch.stack([b[:, 0].min() * w, b[:, 1].min() * h])   # mouth's union box, in cells (x, y)
        hi = torch.stack([b[:, 2].max() * w, b[:, 3].max() * h])
        limit = torch.tensor([w - side, h - side], dtype=torch.float32)
        first = (hi - side).clamp(0, None).minimum(limit)          # lowest corner that still holds the box
        last = lo.clamp(None, limit).maximum(first)
        u = torch.rand(2, generator=generator)
        x0, y0 = (first + u * (last - first)).floor().int().tolist()
        return y0, x0, side

    def _example(self, source, target, tokens, weight, clip: Clip, start: int, crop: int = 0,
                 generator: Optional[torch.Generator] = None, boxes: Optional[torch.Tensor] = None) -> Dict:
        end = start + self.clip_frames
        centres = clip.centres[start:end]
        if crop:
            h, w = target.shape[2:]
            y0, x0, side = self._crop_window(clip.boxes[start:end] if boxes is None else boxes, crop, h, w, generator)
            cut = lambda v: v[..., y0:y0 + side, x0:x0 + side].contiguous()  # noqa: E731
            source, target = cut(source), cut(target)
            weight = cut(weight) if weight is not None else None
            centres = (centres * torch.tensor([w, h]) - torch.tensor([x0, y0])) / side
        ex = {"source_latents": source, "target_latents": target, "audio_tokens": tokens, "text": None}
        if weight is not None:
            ex["loss_weight"] = weight
        if self.mouth_params:
            ex["mouth_at"], ex["mouth_params"] = centres, clip.params[start:end]
        return ex

    def arbitrary(self, generator: torch.Generator, crop: int = 0) -> Dict:
        """An arbitrary pair; ``crop`` as in :meth:`pseudo_paired`."""
        clip = self.pairs[self._randint(len(self.pairs), generator)][self._randint(2, generator)]
        n = clip.frames.shape[0] - self.clip_frames + 1
        s_t = self._randint(n, generator)
        if self.max_offset:
            lo, hi = max(0, s_t - self.max_offset), min(n - 1, s_t + self.max_offset)
            s_s = lo + self._randint(hi - lo + 1, generator)
        else:
            s_s = self._randint(n, generator)
        target, tokens = self._segment(clip, s_t)
        source, _ = self._segment(clip, s_s)
        return self._example(source, target, tokens, self._weight(clip, s_t, *target.shape[2:]), clip, s_t,
                             crop, generator)
