"""One lip-sync path: the Python API (what the CLI runs), the all-in-one node and the chain of split nodes
give the same frames, with windows, overlaps and the checkpoint's recommended sampling."""

import dataclasses
import json
import os

import numpy as np
import pytest
import torch

from fakes import comfy_fakes
from tiny import make_frames, make_model_checkpoint, make_speech_like, make_whisper_folder

FPS = 25.0
TOLERANCE = 1e-6  # float32, max abs difference


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy")
    os.makedirs(base / "models" / "omnisync")
    checkpoint = make_model_checkpoint(str(base / "models" / "omnisync"))
    whisper = make_whisper_folder(str(base))
    with comfy_fakes(base):
        import nodes
        from omnisync_core.audio.whisper import load_whisper

        (model,) = nodes.OmniSyncModelLoader.execute(os.path.basename(checkpoint), "fp32")
        yield nodes, model, load_whisper(whisper, device="cpu"), checkpoint, whisper


def comfy_audio(seconds):
    wave = make_speech_like(seconds, sr=22050)
    return {"waveform": torch.from_numpy(np.stack([wave, wave]))[None], "sample_rate": 22050}  # (1, 2, N)


def three_paths(env, frames, audio, mode, widgets, meta_sampling=None):
    """(api, all-in-one, split chain) outputs: each a dict of frames, guidance_map, waveform, report."""
    from omnisync_core.api import OmniSyncPipeline, load_runtime, resolve_options

    nodes, model, encoder, checkpoint, whisper = env
    if meta_sampling is not None:
        model = dataclasses.replace(model, meta={**model.meta, "sampling": meta_sampling})
    w = widgets
    mouth = (w["mouth_x"], w["mouth_y"]) if w["mouth"] == "point" else "auto"

    # (a) the Python API, as `python -m omnisync_core sync` calls it
    net, codec, api_encoder, meta = load_runtime(checkpoint, whisper, "cpu", torch.float32)
    if meta_sampling is not None:
        meta = {**meta, "sampling": meta_sampling}
    auto = lambda v: "auto" if v == 0 else v  # noqa: E731  (the CLI spells the nodes' 0 "auto")
    opts, _ = resolve_options(meta, tau=auto(w["tau"]), num_steps=auto(w["steps"]), seed=w["seed"],
                              omega_peak=w["omega_peak"], mouth=mouth, window=auto(w["window"]),
                              overlap=w["overlap"], length_mode=mode, composite=w["composite"])
    res = OmniSyncPipeline(net, codec, api_encoder)(frames, FPS, audio["waveform"], audio["sample_rate"], opts)
    api = {"frames": res.frames, "guidance_map": res.guidance_map, "waveform": res.waveform, "report": res.report}

    # (b) the all-in-one node
    images, out_audio, gmap, fps, _, report = nodes.OmniSyncLipSync.execute(
        model, encoder, frames, audio, FPS, mode, w["tau"], w["steps"], w["seed"], w["omega_peak"], w["mouth"],
        w["mouth_x"], w["mouth_y"], w["window"], w["overlap"], w["composite"])
    one = {"frames": images, "guidance_map": gmap, "waveform": out_audio["waveform"][0, 0], "fps": fps,
           "report": json.loads(report)}

    # (c) Audio Encode → Noise Init → DS-CFG Sampler → Video Assemble
    oa, split_audio = nodes.OmniSyncAudioEncode.execute(audio, FPS, frames.shape[0], mode, audio_encoder=encoder,
                                                         images=frames)
    (lat,) = nodes.OmniSyncNoiseInit.execute(model, frames, w["tau"], w["steps"], 0.0, w["seed"], omnisync_audio=oa)
    g = opts.guidance
    latent, gmap, report = nodes.OmniSyncSampler.execute(
        model, lat, oa, g.omega_base, w["omega_peak"], g.sigma_spatial, g.gamma, w["mouth"], w["mouth_x"],
        w["mouth_y"], w["window"], w["overlap"])
    images, split_audio, fps, _, _ = nodes.OmniSyncVideoAssemble.execute(
        latent, oa, w["composite"], opts.composite_radius, opts.composite_feather_px)
    split = {"frames": images, "guidance_map": gmap, "waveform": split_audio["waveform"][0, 0], "fps": fps,
             "report": json.loads(report)}
    return api, one, split, opts


def max_diff(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a.float() - b.float()).abs().max())


CASES = {
    # 9 frames, windows of 3 latent frames sharing 1, the mouth at a point
    "windows": dict(frames=9, seconds=9 / FPS, mode="follow_video",
                    widgets=dict(tau=0.9, steps=6, seed=3, omega_peak=3.0, mouth="point", mouth_x=0.3, mouth_y=0.7,
                                 window=3, overlap=1, composite=False)),
    # the checkpoint's recommended sampling (steps, τ, window, overlap) with those widgets on auto;
    # ping-pong to the speech length, composite outside the mouth
    "recommended_sampling": dict(frames=9, seconds=0.6, mode="follow_audio_pingpong",
                                 sampling={"num_steps": 5, "tau": 0.8, "window": 4, "overlap": 2},
                                 widgets=dict(tau=0.0, steps=0, seed=0, omega_peak=2.5, mouth="point", mouth_x=0.4,
                                              mouth_y=0.7, window=0, overlap=2, composite=True)),
    # the mouth searched by the model: this random one finds none, so every frame falls back to the source
    "auto_mouth_fallback": dict(frames=9, seconds=9 / FPS, mode="follow_video",
                                widgets=dict(tau=0.9, steps=3, seed=1, omega_peak=3.0, mouth="auto", mouth_x=0.5,
                                             mouth_y=0.62, window=3, overlap=1, composite=False)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_api_all_in_one_node_and_split_nodes_give_the_same_frames(env, case):
    c = CASES[case]
    frames = make_frames(T=c["frames"])
    api, one, split, opts = three_paths(env, frames, comfy_audio(c["seconds"]), c["mode"], c["widgets"],
                                        c.get("sampling"))
    assert len(api["report"]["windows"]) > 1  # the seams are exercised
    for key in ("frames", "guidance_map", "waveform"):
        assert max_diff(api[key], one[key]) <= TOLERANCE, key
        assert max_diff(api[key], split[key]) <= TOLERANCE, key
    assert one["fps"] == split["fps"] == FPS
    # one engine: the all-in-one node and the API both run window by window (OmniSyncPipeline.stream)
    assert one["report"]["streamed"] is True and api["report"]["streamed"] is True
    assert api["report"]["mouth"].get("fallback_frames") == one["report"]["mouth"].get("fallback_frames") \
        == split["report"]["mouth"].get("fallback_frames")
    if c["widgets"]["mouth"] == "point":
        assert max_diff(api["frames"][:frames.shape[0]], frames) > 0.01  # the model did edit the frames
    if "sampling" in c:
        rec = c["sampling"]
        assert (opts.num_steps, opts.tau, opts.window, opts.overlap) == (rec["num_steps"], rec["tau"], rec["window"],
                                                                       rec["overlap"])
        assert api["report"]["steps"] == 4 * len(api["report"]["windows"])  # 5-step schedule from τ 0.8: 4 run
    elif case == "windows":
        assert api["report"]["windows"] == [(0, 3), (2, 5), (4, 7), (6, 9)]
