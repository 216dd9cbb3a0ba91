"""ComfyUI node contract and behaviour, with fakes of the few ComfyUI modules the nodes touch."""

import importlib.util
import inspect
import json
import os
import sys

import pytest
import torch

from fakes import comfy_fakes
from tiny import AUDIO_TOKEN_DIM, WHISPER_D_MODEL, WHISPER_LAYERS, make_frames, make_model_checkpoint, make_speech_like

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    """Fake ComfyUI with a models dir holding a tiny OmniSync model; yields the nodes package."""
    base = tmp_path_factory.mktemp("comfy")
    os.makedirs(base / "models" / "omnisync")
    make_model_checkpoint(str(base / "models" / "omnisync"))
    with comfy_fakes(base):
        import nodes

        yield nodes


@pytest.fixture
def fresh(comfy):
    from fakes import reset_fake_state

    reset_fake_state()
    yield comfy
    reset_fake_state()


def comfy_audio(seconds, sr=22050, channels=2, seed=0):
    import numpy as np

    wave = make_speech_like(seconds, sr=sr, seed=seed)
    w = torch.from_numpy(np.stack([wave] * channels))[None]  # (1, C, N)
    return {"waveform": w, "sample_rate": sr}


# -- contract ------------------------------------------------------------------------------------


# node ids and display names as saved workflows name them: never changed (tests/test_workflows.py checks the
# shipped workflows against the schemas)
NODE_IDS = {
    "OmniSyncModelLoader": "Load OmniSync Model",
    "OmniSyncWhisperLoader": "Load Whisper Audio Encoder",
    "OmniSyncAudioEncode": "OmniSync Audio Encode",
    "OmniSyncNoiseInit": "OmniSync Noise Init (flow matching)",
    "OmniSyncSampler": "OmniSync DS-CFG Sampler",
    "OmniSyncVideoAssemble": "OmniSync Video Assemble",
    "OmniSyncLipSync": "OmniSync Lip Sync (all-in-one)",
    "OmniSyncGuidanceStrip": "OmniSync Guidance Strip",
    "OmniSyncFaceCrop": "OmniSync Face Crop",
    "OmniSyncFacePasteBack": "OmniSync Face Paste Back",
    "OmniSyncXDubModelLoader": "Load X-Dub Model",
    "OmniSyncXDubAudioLoader": "Load X-Dub Audio Encoders",
    "OmniSyncXDubEncode": "X-Dub Encode (Wan 2.2 VAE)",
    "OmniSyncXDubSampler": "X-Dub Sampler",
    "OmniSyncXDubAssemble": "X-Dub Assemble",
}


def test_every_node_declares_a_valid_v3_contract(comfy):
    from comfy_api.latest import io

    schemas = {}
    for cls in comfy.NODES:
        assert issubclass(cls, io.ComfyNode), cls
        schema = cls.GET_SCHEMA()  # as ComfyUI's loader does: ids unique between inputs and outputs
        schemas[schema.node_id] = schema
        name = schema.node_id
        assert schema.display_name == cls.DISPLAY_NAME, name
        assert schema.category == "OmniSync", name
        assert isinstance(schema.description, str) and len(schema.description) > 20, name
        assert io.Hidden.unique_id in schema.hidden, f"{name} cannot show text on its node"
        info = schema.get_v1_info(cls)  # what /object_info serves
        assert len(info.output) == len(info.output_name) == len(info.output_tooltips), name
        assert all(info.output_name) and all(info.output_tooltips), name
        assert info.input["required"], name
        for section in ("required", "optional"):
            for inp, (typ, opts) in info.input.get(section, {}).items():
                assert opts.get("tooltip", "").strip(), f"{name}.{inp} has no tooltip"
                if typ == "COMBO":
                    assert all(isinstance(o, str) for o in opts["options"]), (name, inp)
                    if "default" in opts:
                        assert opts["default"] in opts["options"], (name, inp)
                elif typ in ("INT", "FLOAT"):
                    assert opts["min"] <= opts["default"] <= opts["max"], (name, inp)
                    if typ == "INT":
                        assert all(isinstance(opts[k], int) for k in ("default", "min", "max")), (name, inp)
                elif typ == "BOOLEAN":
                    assert isinstance(opts["default"], bool)
                else:
                    assert typ.isupper(), (name, inp)
        params = inspect.signature(cls.execute).parameters
        declared = [i.id for i in schema.inputs]
        assert list(params) == declared, f"{name}.execute takes {list(params)}, the schema declares {declared}"
    assert {k: s.display_name for k, s in schemas.items()} == NODE_IDS


def test_split_and_all_in_one_nodes_share_one_declaration_per_widget(comfy):
    """Lip Sync shows the same widgets as Noise Init, the Sampler, Audio Encode and Assemble: same type, default,
    range and tooltip, declared once (nodes/widgets.py)."""
    all_in_one = comfy.OmniSyncLipSync.INPUT_TYPES()
    split = {}
    for cls in (comfy.OmniSyncNoiseInit, comfy.OmniSyncSampler, comfy.OmniSyncAudioEncode, comfy.OmniSyncVideoAssemble):
        for section, decls in cls.INPUT_TYPES(include_hidden=False).items():
            for inp, decl in decls.items():
                split.setdefault((section, inp), decl)
    shared = [(section, inp) for section, decls in all_in_one.items() if section != "hidden" for inp in decls
              if (section, inp) in split]
    assert {inp for _, inp in shared} >= {"length_mode", "tau", "steps", "seed", "omega_peak", "mouth", "mouth_x",
                                          "mouth_y", "window", "overlap", "composite", "cfg_cutoff", "vae",
                                          "conditioning", "mouth_mask"}
    for section, inp in shared:
        assert all_in_one[section][inp] == split[(section, inp)], inp


def test_bundled_model_nodes_say_what_the_model_cannot_do(comfy):
    for cls in (comfy.OmniSyncModelLoader, comfy.OmniSyncLipSync, comfy.OmniSyncNoiseInit, comfy.OmniSyncSampler):
        description = cls.GET_SCHEMA().description
        assert "synthetic characters" in description and "real faces use X-Dub" in description, cls


def test_model_folder_registered_for_comfy_and_plugin(comfy):
    import folder_paths

    paths = folder_paths.get_folder_paths("omnisync")
    assert os.path.join(folder_paths.models_dir, "omnisync") in paths
    assert os.path.join(ROOT, "models") in paths
    listed = comfy.OmniSyncModelLoader.INPUT_TYPES()["required"]["model_name"][1]["options"]
    assert "tiny-omnisync.safetensors" in listed
    # the plugin's models/ folder also holds the eval's mouth reader and a training state: not models to load
    assert "omnisync_unet128.safetensors" in listed
    assert not any(name.endswith(("mouth_reader.safetensors", "state.safetensors", "optim.safetensors")) for name in listed)


def _load_root_package(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "__init__.py"),
                                                  submodule_search_locations=[ROOT])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]
    return module


def test_root_package_registers_nodes_only_inside_comfyui(comfy):
    import asyncio

    from comfy_api.latest import ComfyExtension

    pkg = _load_root_package("omnisync_pkg_under_comfy")
    assert not hasattr(pkg, "NODE_CLASS_MAPPINGS")  # ComfyUI 0.3.64 would take that V1 path instead
    extension = asyncio.run(pkg.comfy_entrypoint())
    assert isinstance(extension, ComfyExtension)
    listed = asyncio.run(extension.get_node_list())
    assert [cls.GET_SCHEMA().node_id for cls in listed] == list(NODE_IDS)


def test_root_package_without_comfyui_registers_nothing():
    import subprocess

    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('omnisync_plain', {os.path.join(ROOT, '__init__.py')!r}, "
        f"submodule_search_locations=[{ROOT!r}])\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['omnisync_plain'] = m; spec.loader.exec_module(m)\n"
        "print(hasattr(m, 'comfy_entrypoint'), hasattr(m, 'NODE_CLASS_MAPPINGS'), sorted(k for k in sys.modules if "
        "k.split('.')[0] in ('comfy', 'folder_paths', 'comfy_api', 'server', 'omnisync_core')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False []"


# -- behaviour -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded(comfy, tmp_path_factory):
    from tiny import make_whisper_folder

    (model,) = comfy.OmniSyncModelLoader.execute("tiny-omnisync.safetensors", "fp32")
    from omnisync_core.audio.whisper import load_whisper

    encoder = load_whisper(make_whisper_folder(str(tmp_path_factory.mktemp("whisper"))), device="cpu")
    return model, encoder


def test_loader_hands_the_network_to_comfy_model_management(fresh, loaded):
    import comfy.model_management as mm
    import comfy.model_patcher

    from omnisync_core.model.precision import auto_dtype

    model, _ = loaded
    assert model.device == torch.device("cpu") and model.dtype == torch.float32
    assert model.codec_spec["type"] == "pixel"
    assert model.model.config.audio_dim == AUDIO_TOKEN_DIM
    # a ModelPatcher over the network: ComfyUI loads it for sampling and may offload it between runs
    assert isinstance(model.patcher, comfy.model_patcher.ModelPatcher) and model.patcher.model is model.model
    assert (model.patcher.load_device, model.patcher.offload_device) == (mm.get_torch_device(), mm.unet_offload_device())
    (auto,) = fresh.OmniSyncModelLoader.execute("tiny-omnisync.safetensors", "auto")
    assert auto.dtype == auto_dtype("cpu")  # bf16 where this CPU computes it natively, else fp32


def test_missing_model_names_folder_and_file(fresh):
    from omnisync_core.errors import OmniSyncError

    with pytest.raises(OmniSyncError, match=r"nope\.safetensors.*models/omnisync"):
        fresh.OmniSyncModelLoader.execute("nope.safetensors", "fp32")


def _chain(comfy, model, encoder, T=6, seconds=None, fps=25.0, mode="follow_video", steps=8, **sampler):
    frames = make_frames(T=T)
    audio = comfy_audio(seconds if seconds is not None else T / fps)
    oa, out_audio = comfy.OmniSyncAudioEncode.execute(audio, fps, T, mode, audio_encoder=encoder, images=frames)
    (lat,) = comfy.OmniSyncNoiseInit.execute(model, frames, 0.9, steps, 1.0, 3, omnisync_audio=oa)
    args = dict(omega_base=1.0, omega_peak=3.0, sigma_spatial=0.1, gamma=1.5, mouth="point", mouth_x=0.3,
                mouth_y=0.7, window=0, overlap=2)
    args.update(sampler)
    return frames, oa, out_audio, lat, args


def test_progress_per_step_and_cancel_stops_the_sampler(fresh, loaded):
    import comfy.model_management as mm
    import comfy.utils as cu

    model, encoder = loaded
    _, oa, _, lat, args = _chain(fresh, model, encoder, steps=10)
    mm.calls.clear()
    fresh.OmniSyncSampler.execute(model, lat, oa, **args)
    assert ("load_models_gpu", ["ModelPatcher"]) in mm.calls  # model management loads the network to sample
    totals = {t for _, t in cu.UPDATES}
    assert len(totals) == 1
    total = totals.pop()
    assert total == len(lat.sigmas) - 1
    assert [d for d, _ in cu.UPDATES][-1] == total and len(cu.UPDATES) >= total

    cu.UPDATES.clear()
    cu.HOOK = lambda done, total: mm.interrupt_current_processing(True) if done == 2 else None
    with pytest.raises(mm.InterruptProcessingException):
        fresh.OmniSyncSampler.execute(model, lat, oa, **args)
    assert max(d for d, _ in cu.UPDATES) < total


def test_conditioning_dim_must_match_text_dim(fresh, loaded):
    from omnisync_core.errors import OmniSyncError

    model, encoder = loaded
    _, oa, _, lat, args = _chain(fresh, model, encoder, steps=4)
    bad = [[torch.zeros(1, 7, model.model.config.text_dim + 1), {}]]
    with pytest.raises(OmniSyncError, match="text conditioning has dim"):
        fresh.OmniSyncSampler.execute(model, lat, oa, conditioning=bad, **args)
    good = [[torch.randn(1, 7, model.model.config.text_dim), {}]]
    latent, gmap, report = fresh.OmniSyncSampler.execute(model, lat, oa, conditioning=good, **args)
    assert gmap.shape == (6, 32, 32)


def _comfy_encoder_output(layers, dim, seconds, batch=1):
    positions = 1500
    return {
        "encoded_audio": torch.randn(batch, positions, dim),
        "encoded_audio_all_layers": tuple(torch.randn(batch, positions, dim) for _ in range(layers)),
        "audio_samples": int(seconds * 16000),
    }


def test_core_audio_encoder_output_is_accepted_when_dims_match(fresh, loaded):
    from omnisync_core.errors import OmniSyncError

    model, _ = loaded
    T, fps = 6, 25.0
    frames = make_frames(T=T)
    audio = comfy_audio(T / fps)
    enc = _comfy_encoder_output(WHISPER_LAYERS + 1, WHISPER_D_MODEL, T / fps)
    oa, _ = fresh.OmniSyncAudioEncode.execute(audio, fps, T, "follow_video", images=frames, encoded_audio=enc)
    assert oa.source == "comfy_audio_encoder" and oa.frame_features.shape == (T, AUDIO_TOKEN_DIM)
    (lat,) = fresh.OmniSyncNoiseInit.execute(model, frames, 0.9, 4, 1.0, 0, omnisync_audio=oa)
    args = dict(omega_base=1.0, omega_peak=3.0, sigma_spatial=0.1, gamma=1.5, mouth="auto", mouth_x=0.5,
                mouth_y=0.5, window=0, overlap=2)
    fresh.OmniSyncSampler.execute(model, lat, oa, **args)

    large_v3 = _comfy_encoder_output(33, 40, T / fps)  # stands in for 33 × 1280
    oa_big, _ = fresh.OmniSyncAudioEncode.execute(audio, fps, T, "follow_video", images=frames, encoded_audio=large_v3)
    with pytest.raises(OmniSyncError, match=r"33 layers × 40 .* model expects 96"):
        fresh.OmniSyncSampler.execute(model, lat, oa_big, **args)
    with pytest.raises(OmniSyncError, match="30 s"):
        fresh.OmniSyncAudioEncode.execute(audio, fps, T, "follow_video", images=frames,
                                           encoded_audio=_comfy_encoder_output(3, 32, 31.0))


def test_audio_encode_needs_exactly_one_encoder(fresh, loaded):
    from omnisync_core.errors import OmniSyncError

    with pytest.raises(OmniSyncError, match="exactly one"):
        fresh.OmniSyncAudioEncode.execute(comfy_audio(0.3), 25.0, 6, "follow_video")


def test_audio_encode_refuses_a_still_image_where_it_enters(fresh, loaded):
    from omnisync_core.errors import OmniSyncError

    _, encoder = loaded
    with pytest.raises(OmniSyncError, match="at least 2 source frames.*Repeat Image Batch"):
        fresh.OmniSyncAudioEncode.execute(comfy_audio(0.3), 25.0, 6, "follow_video", audio_encoder=encoder,
                                           images=make_frames(T=1))


def test_mismatched_audio_and_latent_is_a_clear_error(fresh, loaded):
    from omnisync_core.errors import OmniSyncError

    model, encoder = loaded
    frames = make_frames(T=6)
    oa, _ = fresh.OmniSyncAudioEncode.execute(comfy_audio(0.6), 25.0, 6, "follow_audio_loop",
                                               audio_encoder=encoder, images=frames)
    (lat,) = fresh.OmniSyncNoiseInit.execute(model, frames, 0.9, 4, 1.0, 0)  # frame plan not applied
    with pytest.raises(OmniSyncError, match="omnisync_audio input"):
        fresh.OmniSyncSampler.execute(model, lat, oa, 1.0, 3.0, 0.1, 1.5, "auto", 0.5, 0.5, 0, 2)


def test_fallback_frames_take_source_pixels_in_assemble(fresh, loaded):
    model, encoder = loaded
    frames, oa, _, lat, args = _chain(fresh, model, encoder, steps=4)
    (latent, _, _) = fresh.OmniSyncSampler.execute(model, lat, oa, **args)
    latent.fallback_frames = [1, 4]  # as the sampler reports frames where no mouth was located
    images, audio, fps, video, report = fresh.OmniSyncVideoAssemble.execute(latent, oa, False, 0.2, 4.0)
    assert torch.equal(images[[1, 4]], frames[[1, 4]])
    assert not torch.equal(images[0], frames[0])
    assert "fallback_frames" in report


def test_composite_keeps_pixels_far_from_the_mouth(fresh, loaded):
    model, encoder = loaded
    frames, oa, _, lat, args = _chain(fresh, model, encoder, steps=4)
    (latent, _, _) = fresh.OmniSyncSampler.execute(model, lat, oa, **args)  # mouth point (0.3, 0.7)
    images, *_ = fresh.OmniSyncVideoAssemble.execute(latent, oa, True, 0.15, 2.0)
    assert torch.equal(images[:, :4], frames[:, :4])  # top rows: far from the mouth
    assert images.shape == frames.shape


def test_all_in_one_node_keeps_odd_sizes_and_pads_only_the_video_for_save_video(fresh, loaded):
    model, encoder = loaded
    frames = make_frames(T=6, H=15, W=21)
    images, _, _, _, video, report = fresh.OmniSyncLipSync.execute(
        model, encoder, frames, comfy_audio(0.3), 20.0, "follow_video", 0.9, 2, 0, 3.0, "point", 0.5, 0.6, 0, 2, False)
    padded = video.get_components().images
    assert images.shape[1:] == (15, 21, 3) and padded.shape[1:] == (16, 22, 3)
    assert torch.equal(padded[:, :15, :21], images)
    assert torch.equal(padded[:, -1], padded[:, -2]) and torch.equal(padded[:, :, -1], padded[:, :, -2])
    report = json.loads(report)
    assert "21x15 -> 22x16" in report["padded_to_even"]
    assert any("Save Video" in w for w in report["warnings"])


def test_all_in_one_node(fresh, loaded):
    import comfy.utils as cu

    model, encoder = loaded
    frames = make_frames(T=8)
    images, audio, gmap, fps, video, report = fresh.OmniSyncLipSync.execute(
        model, encoder, frames, comfy_audio(0.6), 20.0, "follow_audio_pingpong", 0.9, 8, 0, 3.0, "point", 0.3, 0.7,
        0, 2, False,
    )
    assert images.shape == (12, 32, 32, 3)  # 0.6 s at 20 fps
    assert audio["sample_rate"] == 16000 and audio["waveform"].shape == (1, 1, 9600)
    assert gmap.shape == (12, 32, 32) and fps == 20.0
    comps = video.get_components()
    assert comps.images is images and float(comps.frame_rate) == 20.0 and comps.audio is audio
    assert cu.UPDATES and cu.UPDATES[-1][0] == cu.UPDATES[-1][1]


# -- feedback on the canvas ------------------------------------------------------------------------


def run_on_canvas(cls, node_id, *args, **kwargs):
    """Runs a node as ComfyUI's executor does: a clone of the class that knows its node id."""
    from comfy_api.latest import io

    clone = cls.PREPARE_CLASS_CLONE({io.Hidden.unique_id: node_id})
    return getattr(clone, clone.FUNCTION)(*args, **kwargs)


def test_every_warning_reaches_the_canvas_as_progress_text(fresh, loaded):
    """A run's warnings go to the node's report and, as they happen, to the frontend's progress-text channel under
    the node's id; each message holds all of the node's lines so far (the frontend keeps only the latest)."""
    import server

    model, encoder = loaded
    frames = make_frames(T=6, H=15, W=21)  # odd size: the VIDEO output is padded for H.264, with a warning
    audio = comfy_audio(0.3, sr=22050)  # resampled to Whisper's 16 kHz, with a warning
    server.TEXTS.clear()
    out = run_on_canvas(fresh.OmniSyncLipSync, "42", model, encoder, frames, audio, 20.0, "follow_video", 0.9, 2, 0,
                        3.0, "point", 0.5, 0.6, 0, 2, False)
    warnings = json.loads(out.result[5])["warnings"]
    assert any("16000 Hz" in w for w in warnings) and any("Save Video" in w for w in warnings)
    assert [node for node, _ in server.TEXTS] == ["42"] * len(warnings)  # one message per warning, on node 42
    last = server.TEXTS[-1][1].split("\n")
    assert last == ["⚠ " + w for w in warnings]

    server.TEXTS.clear()
    fresh.OmniSyncLipSync.execute(model, encoder, frames, audio, 20.0, "follow_video", 0.9, 2, 0, 3.0, "point", 0.5,
                                  0.6, 0, 2, False)
    assert server.TEXTS == []  # called outside ComfyUI's executor: no node to show it on (console and report only)


def test_face_crop_tells_the_canvas_about_frames_without_a_face(fresh):
    import server

    from omnisync_core.image.facecrop import DEFAULT_MAX_GAP

    T = DEFAULT_MAX_GAP + 9
    frames = make_frames(T=T, H=32, W=32)
    mask = torch.zeros(T, 32, 32)
    mask[:, 8:24, 8:24] = 1
    mask[4:DEFAULT_MAX_GAP + 5] = 0  # no face for longer than the gaps Face Crop fills
    server.TEXTS.clear()
    _, _, report = run_on_canvas(fresh.OmniSyncFaceCrop, "7", frames, "mask", 16, 1.0, 0.0, "shift", 0, 0, 1, 1, 0.5,
                                 0.5, 0.5, mask=mask)
    (node, text), = server.TEXTS
    assert node == "7" and f"no face in {DEFAULT_MAX_GAP + 1} of {T} frame(s)" in text
    assert json.loads(report)["warnings"] == [text[2:]]


def test_video_output_keeps_an_exact_frame_rate(fresh):
    from fractions import Fraction

    from nodes.bridge import make_video

    frames = torch.zeros(2, 4, 4, 3)
    assert make_video(frames, None, 29.97).get_components().frame_rate == Fraction(30000, 1001)
    assert make_video(frames, None, 25.0).get_components().frame_rate == 25
    assert make_video(frames, None, 12.5).get_components().frame_rate == Fraction(25, 2)


# -- bad choices and missing files ------------------------------------------------------------------


def test_every_combo_choice_is_checked(comfy):
    """ComfyUI 0.3.64 checks only V1 list combos against their options, so an API prompt reaches a V3 node with any
    value: each node checks its own fixed choices first thing (a clear error, never a KeyError), and its model
    files in validate_inputs, which ComfyUI calls before any node of the prompt runs."""
    from comfy_api.latest import io

    from omnisync_core.errors import OmniSyncError

    files = {"model_name", "encoder_name", "whisper", "wav2vec2"}
    for cls in comfy.NODES:
        combos = [i for i in cls.GET_SCHEMA().inputs if isinstance(i, io.Combo.Input)]
        for combo in combos:
            if combo.id in files:
                assert combo.id in inspect.signature(cls.validate_inputs).parameters, (cls, combo.id)
                continue
            good = {c.id: c.options[0] if c.options else None for c in combos}  # the rest is not looked at first
            args = {**{i.id: None for i in cls.GET_SCHEMA().inputs}, **good, combo.id: "bogus"}
            with pytest.raises(OmniSyncError, match=f"{combo.id} 'bogus' is not one of {combo.options[0]}"):
                cls.execute(**args)


def test_validation_names_the_missing_file(comfy):
    assert comfy.OmniSyncModelLoader.validate_inputs(model_name="tiny-omnisync.safetensors") is True
    assert comfy.OmniSyncModelLoader.validate_inputs() is True  # a linked value is not known yet
    missing = comfy.OmniSyncModelLoader.validate_inputs(model_name="gone.safetensors")
    assert "'gone.safetensors' not found in models/omnisync" in missing
    gone = comfy.OmniSyncWhisperLoader.validate_inputs(encoder_name="gone")
    assert "'gone' not found in models/audio_encoders" in gone
    assert comfy.OmniSyncWhisperLoader.validate_inputs(encoder_name="bundled: whisper tiny.en") is True
