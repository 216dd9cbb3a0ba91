"""X-Dub nodes: loaders, Encode → Sampler → Assemble on a random X-Dub-layout model, tiny random encoders and a
stand-in for ComfyUI's Wan 2.2 VAE (same raw-latent layouts as ``comfy.sd.VAE``); the nodes give what the
pipeline gives, and say what is wrong where it enters."""

import json
import math
import os

import numpy as np
import pytest
import torch

from fakes import comfy_fakes
from fakes.comfy_vae import FakeComfyWan22VAE as FakeWan22VAE
from tiny import make_frames, make_speech_like, make_wav2vec2_folder, make_whisper_folder, make_xdub_checkpoint

FPS = 25.0
CROP = 64  # px; X-Dub needs sides divisible by 32 (16 VAE × 2 patch)
SAMPLER = dict(steps=2, shift=5.0, seed=7, tau=1.0, ref_cfg_scale=2.5, ref_cfg_schedule=True, omega_base=10.0,
               omega_peak=10.0, sigma_spatial=0.15, gamma=1.5, border_width=1, color_correction=True)


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    """Fake ComfyUI whose models dir holds a tiny X-Dub DiT and tiny Whisper + wav2vec2 folders."""
    base = tmp_path_factory.mktemp("comfy")
    os.makedirs(base / "models" / "diffusion_models")
    os.makedirs(base / "models" / "audio_encoders")
    model = make_xdub_checkpoint(str(base / "models" / "diffusion_models"))
    whisper = make_whisper_folder(str(base / "models" / "audio_encoders"))
    wav2vec = make_wav2vec2_folder(str(base / "models" / "audio_encoders"))
    with comfy_fakes(base):
        import nodes

        yield nodes, os.path.basename(model), os.path.basename(whisper), os.path.basename(wav2vec)


@pytest.fixture(scope="module")
def loaded(comfy):
    nodes, name, whisper, wav2vec = comfy
    (model,) = nodes.OmniSyncXDubModelLoader.execute(name, "fp32", "default")
    (encoders,) = nodes.OmniSyncXDubAudioLoader.execute(whisper, wav2vec)
    return model, encoders


def comfy_audio(seconds, sr=22050, seed=0):
    wave = make_speech_like(seconds, sr=sr, seed=seed)
    return {"waveform": torch.from_numpy(np.stack([wave, wave]))[None], "sample_rate": sr}


def run_chain(nodes, model, encoders, vae, crops, audio, **sampler):
    (latent,) = nodes.OmniSyncXDubEncode.execute(model, vae, encoders, crops, audio, FPS)
    sampled, report = nodes.OmniSyncXDubSampler.execute(model, latent, **{**SAMPLER, **sampler})
    return latent, sampled, json.loads(report)


def test_loaders_list_and_load_the_files(comfy, loaded):
    nodes, name, whisper, wav2vec = comfy
    model, encoders = loaded
    assert nodes.OmniSyncXDubModelLoader.INPUT_TYPES()["required"]["model_name"][1]["options"] == [name]
    choices = nodes.OmniSyncXDubAudioLoader.INPUT_TYPES()["required"]["whisper"][1]["options"]
    assert whisper in choices and wav2vec in choices  # Hugging Face folders (config.json inside)
    assert not any(c.startswith((whisper + "/", wav2vec + "/")) for c in choices)  # not the files inside them
    assert model.report["dim"] == 128 and model.report["layers"] == 1 and model.dtype == torch.float32
    assert model.report["parameters"] == sum(p.numel() for p in model.model.parameters())
    assert sum(encoders.dims) == model.model.config.audio_dim and encoders.device == torch.device("cpu")


def test_missing_files_name_the_file_its_source_and_the_folder(comfy):
    """A loader that finds no file says which published file it is, where it comes from (the registry's address) and
    the folder it goes to, at run time and when ComfyUI validates the prompt (before any node runs; a V3 combo's
    options are not checked by ComfyUI 0.3.64, so this is the only message the user sees)."""
    import folder_paths

    from omnisync_core.errors import OmniSyncError
    from omnisync_core.model.files import xdub_file

    nodes, name, whisper, wav2vec = comfy
    model_dir = folder_paths.get_folder_paths("diffusion_models")[0]
    audio_dir = folder_paths.get_folder_paths("audio_encoders")[0]
    published = {k: xdub_file(k) for k in ("xdub_model", "whisper", "wav2vec2")}
    with pytest.raises(OmniSyncError) as e:
        nodes.OmniSyncXDubModelLoader.execute("X-Dub_model.safetensors", "bf16", "default")
    text = str(e.value)
    assert os.path.join(model_dir, "X-Dub_model.safetensors") in text
    assert published["xdub_model"].url in text and "ComfyUI/models/diffusion_models/" in text
    with pytest.raises(OmniSyncError) as e:
        nodes.OmniSyncXDubAudioLoader.execute(whisper, "wav2vec2-base-960h")
    text = str(e.value)
    assert os.path.join(audio_dir, "wav2vec2-base-960h") in text
    assert published["wav2vec2"].url in text and "ComfyUI/models/audio_encoders/" in text
    # the same lines when ComfyUI validates the prompt
    assert nodes.OmniSyncXDubModelLoader.validate_inputs(model_name="nope.safetensors") == str(
        nodes.xdub.published_file_missing("xdub_model", "diffusion_models", "nope.safetensors"))
    both = nodes.OmniSyncXDubAudioLoader.validate_inputs(whisper="large-v2.pt", wav2vec2="wav2vec2-base-960h")
    assert published["whisper"].url in both and published["wav2vec2"].url in both
    # the bundle's forms: their own source first, the single file as the other accepted form
    pt, folder = xdub_file("whisper_pt"), xdub_file("wav2vec2_folder")
    assert both.index(pt.url) < both.index(published["whisper"].url) < both.index(folder.url) \
        < both.index(published["wav2vec2"].url)
    assert nodes.OmniSyncXDubAudioLoader.validate_inputs(whisper=whisper, wav2vec2=wav2vec) is True
    assert nodes.OmniSyncXDubModelLoader.validate_inputs(model_name=name) is True
    assert nodes.OmniSyncXDubAudioLoader.validate_inputs() is True  # linked values are not known yet
    # ComfyUI 0.3.64 lists models/unet before models/diffusion_models: the message names the folder the file goes to
    unet = os.path.join(os.path.dirname(model_dir), "unet")
    folder_paths.add_model_folder_path("diffusion_models", unet, is_default=True)
    try:
        text = nodes.OmniSyncXDubModelLoader.validate_inputs(model_name="X-Dub_model.safetensors")
    finally:
        folder_paths.folder_names_and_paths["diffusion_models"][0].remove(unet)
    assert f"not found at {os.path.join(model_dir, 'X-Dub_model.safetensors')!r}" in text
    assert f"also searched {unet}." in text


def test_the_publishers_single_files_are_listed_validated_and_loaded(comfy, tmp_path):
    """whisper-large-v2.safetensors and wav2vec2-base-960h.safetensors (the publishers' model.safetensors saved under
    the workflows' names, no config.json beside them) are listed, load, and when absent the validation names the
    file, its address, that it is saved under that name, and its folder."""
    import folder_paths

    from omnisync_core.model.files import xdub_file
    from xdub_standins import write_single_files

    nodes, _, _, _ = comfy
    audio_dir = folder_paths.get_folder_paths("audio_encoders")[0]
    names = [xdub_file("whisper").name, xdub_file("wav2vec2").name]
    missing = nodes.OmniSyncXDubAudioLoader.validate_inputs(whisper=names[0], wav2vec2=names[1])
    for key, name in zip(("whisper", "wav2vec2"), names):
        assert f"{name} not found at {os.path.join(audio_dir, name)!r}" in missing
        assert f"{xdub_file(key).url} (save it as ComfyUI/models/audio_encoders/{name})" in missing
    assert xdub_file("whisper_pt").url in missing and xdub_file("wav2vec2_folder").url in missing  # also accepted
    singles = write_single_files(str(tmp_path))
    for key, name in zip(("whisper", "wav2vec2"), names):
        os.replace(singles[key], os.path.join(audio_dir, name))
    try:
        choices = nodes.OmniSyncXDubAudioLoader.INPUT_TYPES()["required"]["whisper"][1]["options"]
        assert set(names) <= set(choices)
        assert nodes.OmniSyncXDubAudioLoader.validate_inputs(whisper=names[0], wav2vec2=names[1]) is True
        (encoders,) = nodes.OmniSyncXDubAudioLoader.execute(*names)
        assert encoders.dims == (64, 64) and encoders.normalize_wav2vec
    finally:
        for name in names:
            os.remove(os.path.join(audio_dir, name))


def test_the_bundles_whisper_pt_is_listed(comfy):
    """The bundle's large-v2.pt is read as published (torch.load(weights_only=True)), so the loader lists it."""
    import folder_paths

    nodes, _, _, _ = comfy
    pt = os.path.join(folder_paths.get_folder_paths("audio_encoders")[0], "large-v2.pt")
    open(pt, "wb").close()
    try:
        assert "large-v2.pt" in nodes.OmniSyncXDubAudioLoader.INPUT_TYPES()["required"]["whisper"][1]["options"]
    finally:
        os.remove(pt)


def test_split_nodes_give_what_the_pipeline_gives(comfy, loaded):
    """Encode → Sampler → Assemble equal one XDubPipeline call on the same inputs, take 2 clips (motion latents),
    encode each clip through the VAE on its own, and return the full frames and boxes in the take's order."""
    import folder_paths

    from omnisync_core.model.xdub_weights import load_xdub_model
    from omnisync_core.sampling.guidance import GuidanceConfig
    from omnisync_core.sampling.xdub import XDubOptions
    from omnisync_core.pipelines.xdub import XDubPipeline

    nodes = comfy[0]
    model, encoders = loaded
    full = make_frames(T=12, H=96, W=80, seed=1)
    crops, track, _ = nodes.OmniSyncFaceCrop.execute(full, "point", CROP, 1.45, 2.0, "shift", 0, 0, 8, 8, 0.5, 0.45,
                                                    0.6)
    seconds = 3.3  # 83 frames at 25 fps: 2 clips of 77 frames (the second starts at frame 72)
    audio = comfy_audio(seconds)
    vae = FakeWan22VAE()
    latent, sampled, report = run_chain(nodes, model, encoders, vae, crops, audio)
    assert report["clips"] == 2 and report["text"].startswith("none")
    encodes = [shape for kind, shape in vae.calls if kind == "encode"]
    assert encodes[:2] == [(77, CROP, CROP, 3)] * 2  # the reference frames, clip by clip
    assert encodes[2:] == [(5, CROP, CROP, 3)]  # the motion frames of clip 1, re-encoded for clip 2

    out_crops, images, face_crop, out_audio, fps, _ = nodes.OmniSyncXDubAssemble.execute(sampled, full, track)
    T = math.ceil(seconds * FPS)
    assert out_crops.shape == (T, CROP, CROP, 3) and fps == FPS
    assert out_audio["sample_rate"] == 16000 and out_audio["waveform"].shape == (1, 1, T * 16000 // 25)
    idx = latent.encoded.frame_indices[:T]
    assert idx[:14].tolist() == list(range(12)) + [10, 9]  # ping-pong, as the reference
    assert torch.equal(images, full[idx]) and torch.equal(face_crop.boxes, track.boxes[idx])
    pasted, _ = nodes.OmniSyncFacePasteBack.execute(images, out_crops, face_crop, 4.0)
    assert pasted.shape == (T, 96, 80, 3)

    options = XDubOptions(**{k: SAMPLER[k] for k in ("tau", "shift", "seed", "ref_cfg_scale", "ref_cfg_schedule",
                                                      "border_width", "color_correction")},
                          num_steps=SAMPLER["steps"],
                          audio=GuidanceConfig(omega_base=10.0, omega_peak=10.0, sigma_spatial=0.15, gamma=1.5))
    wave = audio["waveform"][0]
    # the network as the CLI loads it (torch.nn layers), not the node's (comfy.ops layers under a ModelPatcher)
    plain = load_xdub_model(folder_paths.get_full_path("diffusion_models", comfy[1]), dtype=torch.float32)
    with torch.no_grad():
        expected = XDubPipeline(plain, nodes.xdub.wan22_codec(FakeWan22VAE()), encoders)(
            crops, FPS, wave, audio["sample_rate"], None, options)
    assert torch.equal(out_crops, expected.frames)
    assert torch.equal(out_audio["waveform"][0, 0], expected.waveform)


def test_conditioning_is_used_and_a_wrong_text_encoder_is_named(comfy, loaded):
    from omnisync_core.errors import OmniSyncError

    nodes = comfy[0]
    model, encoders = loaded
    crops, audio = make_frames(T=6, H=CROP, W=CROP), comfy_audio(0.5)
    text_dim = model.model.config.text_dim
    cond = torch.zeros(1, 512, text_dim)  # as CLIP Text Encode gives umT5's: padded with zeros to 512 tokens
    cond[0, :3] = torch.randn(3, text_dim, generator=torch.Generator().manual_seed(0))
    _, with_text, report = run_chain(nodes, model, encoders, FakeWan22VAE(), crops, audio, conditioning=[[cond, {}]])
    _, without, _ = run_chain(nodes, model, encoders, FakeWan22VAE(), crops, audio)
    assert report["text"] == "CONDITIONING"
    assert not torch.equal(with_text.sampled.latents, without.sampled.latents)
    clip_l = [[torch.zeros(1, 77, 768), {"pooled_output": None}]]  # what Load CLIP makes of Wan's umT5 layout
    (latent,) = nodes.OmniSyncXDubEncode.execute(model, FakeWan22VAE(), encoders, crops, audio, FPS)
    with pytest.raises(OmniSyncError, match=r"\(1, 77, 768\).*models_t5_umt5-xxl-enc-bf16"):
        nodes.OmniSyncXDubSampler.execute(model, latent, conditioning=clip_l, **SAMPLER)


def test_progress_and_cancel(comfy, loaded):
    import comfy.model_management as mm
    import comfy.utils as cu

    nodes = comfy[0]
    model, encoders = loaded
    (latent,) = nodes.OmniSyncXDubEncode.execute(model, FakeWan22VAE(), encoders, make_frames(T=6, H=CROP, W=CROP),
                                                  comfy_audio(0.5), FPS)
    cu.UPDATES.clear()
    nodes.OmniSyncXDubSampler.execute(model, latent, **{**SAMPLER, "steps": 4})
    assert cu.UPDATES[-1] == (4, 4)
    cu.UPDATES.clear()
    cu.HOOK = lambda done, total: mm.interrupt_current_processing(True) if done == 1 else None
    try:
        with pytest.raises(mm.InterruptProcessingException):
            nodes.OmniSyncXDubSampler.execute(model, latent, **{**SAMPLER, "steps": 4})
    finally:
        cu.HOOK = None
        mm.interrupt_processing = False
    assert max(d for d, _ in cu.UPDATES) < 4


def test_bad_inputs_are_refused_where_they_enter(comfy, loaded):
    from omnisync_core.errors import OmniSyncError

    nodes = comfy[0]
    model, encoders = loaded
    crops, audio = make_frames(T=6, H=CROP, W=CROP), comfy_audio(0.5)
    wan21 = FakeWan22VAE()
    wan21.latent_channels = 16
    with pytest.raises(OmniSyncError, match="16 latent channels.*Wan 2.2"):
        nodes.OmniSyncXDubEncode.execute(model, wan21, encoders, crops, audio, FPS)
    with pytest.raises(OmniSyncError, match="25 fps"):
        nodes.OmniSyncXDubEncode.execute(model, FakeWan22VAE(), encoders, crops, audio, 30.0)
    (latent,) = nodes.OmniSyncXDubEncode.execute(model, FakeWan22VAE(), encoders, crops, audio, FPS)
    with pytest.raises(OmniSyncError, match="not been sampled"):
        nodes.OmniSyncXDubAssemble.execute(latent)
    sampled, _ = nodes.OmniSyncXDubSampler.execute(model, latent, **SAMPLER)
    with pytest.raises(OmniSyncError, match="already sampled"):
        nodes.OmniSyncXDubSampler.execute(model, sampled, **SAMPLER)
    with pytest.raises(OmniSyncError, match="Face Crop cut the crops from"):
        nodes.OmniSyncXDubAssemble.execute(sampled, images=crops[:3])
