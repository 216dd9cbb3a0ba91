"""Example workflows: valid against ComfyUI 0.3.64's node schemas and our nodes, runnable end to end, and
naming the files the plugin ships.

Core node schemas come from workflows/schemas/core_nodes_0.3.64.json (cut from ComfyUI 0.3.64's
/object_info; checked against the full dump in ../shared/comfyui/ beside the repo); the API graphs run
through our node classes with tiny models, and with small stand-ins for the core nodes (LoadVideo,
GetVideoComponents, LoadAudio, CreateVideo, SaveVideo, ...).
"""

import json
import math
import os
import sys

import numpy as np
import pytest
import torch

from fakes import comfy_fakes
from fakes.comfy_vae import FakeComfyWan22VAE
from tiny import (
    make_frames, make_model_checkpoint, make_speech_like, make_wav2vec2_folder, make_whisper_folder, make_xdub_checkpoint,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKFLOWS = os.path.join(ROOT, "workflows")
CORE_SCHEMA = os.path.join(WORKFLOWS, "schemas", "core_nodes_0.3.64.json")
FULL_SCHEMA = os.path.join(ROOT, "..", "shared", "comfyui", "object_info-0.3.64.json")
NAMES = ["omnisync_lipsync_video", "omnisync_after_wan21_t2v", "xdub_lipsync_video", "wan22_ti2v_then_xdub"]
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
# Combos listing files on the user's disk: any file name is valid in a shared workflow.
FILE_COMBOS = {"unet_name", "clip_name", "vae_name", "file", "audio", "model_name", "encoder_name", "whisper",
               "wav2vec2"}
UI_EXTRA_WIDGETS = {"LoadVideo": 1, "LoadAudio": 2}  # upload button / audio preview values
TITLE_H = 30  # LiteGraph's title bar, drawn above a node's pos
TINY_MODEL = "tiny-omnisync.safetensors"
XDUB = {}  # file widgets of the X-Dub workflow -> the tiny stand-ins the env fixture writes

sys.path.insert(0, WORKFLOWS)
import build_workflows  # noqa: E402


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy")
    for folder in ("omnisync", "audio_encoders", "diffusion_models"):
        os.makedirs(base / "models" / folder)
    make_model_checkpoint(str(base / "models" / "omnisync"))
    whisper = make_whisper_folder(str(base / "models" / "audio_encoders"))
    XDUB["model_name"] = os.path.basename(make_xdub_checkpoint(str(base / "models" / "diffusion_models")))
    XDUB["whisper"] = os.path.basename(whisper)
    XDUB["wav2vec2"] = os.path.basename(make_wav2vec2_folder(str(base / "models" / "audio_encoders")))
    with comfy_fakes(base):
        import nodes

        yield nodes, os.path.basename(whisper)


@pytest.fixture(scope="module")
def defs(env):
    return build_workflows.node_definitions()


def load(name):
    folder = os.path.join(WORKFLOWS, "api") if name.endswith("_api.json") else WORKFLOWS
    with open(os.path.join(folder, name), encoding="utf-8") as f:
        return json.load(f)


def graph_nodes(ui):
    """UI nodes that run (frontend-only notes left out)."""
    return [n for n in ui["nodes"] if n["type"] != build_workflows.NOTE]


def kind(decl):
    t = decl[0]
    if isinstance(t, list):
        return "COMBO"
    return t


def options(decl):
    t, opts = decl[0], (decl[1] if len(decl) > 1 else {})
    return t if isinstance(t, list) else opts.get("options", [])


def all_inputs(d):
    for section in ("required", "optional"):
        for name in d.get("input_order", {}).get(section, []):
            yield name, d["input"][section][name], section == "required"


def check_widget(node_type, name, decl, value):
    k = kind(decl)
    opts = decl[1] if len(decl) > 1 else {}
    where = f"{node_type}.{name}={value!r}"
    if k == "COMBO":
        if name in FILE_COMBOS:
            assert isinstance(value, str) and value, where
        else:
            assert value in options(decl), where
    elif k in ("INT", "FLOAT"):
        assert isinstance(value, (int, float)) and not isinstance(value, bool), where
        if k == "INT":
            assert isinstance(value, int), where
        assert opts.get("min", -float("inf")) <= value <= opts.get("max", float("inf")), where
    elif k == "BOOLEAN":
        assert isinstance(value, bool), where
    elif k == "STRING":
        assert isinstance(value, str), where


def test_schema_subset_matches_comfyui_0_3_64():
    if not os.path.exists(FULL_SCHEMA):
        message = f"ComfyUI 0.3.64's object_info dump is missing: {os.path.normpath(FULL_SCHEMA)}"
        if in_ci():
            pytest.fail(message + " (CI lays shared/ beside the repo)")
        pytest.skip(message)
    with open(FULL_SCHEMA, encoding="utf-8") as f:
        full = json.load(f)
    with open(CORE_SCHEMA, encoding="utf-8") as f:
        subset = json.load(f)
    for name, d in subset.items():
        assert full[name] == d, name
    for name in NAMES:
        used = {n["class_type"] for n in load(name + "_api.json").values()}
        assert {t for t in used if not t.startswith("OmniSync")} <= set(subset), name


@pytest.mark.parametrize("name", NAMES)
def test_files_are_what_the_builder_writes(name, defs):
    graph = build_workflows.GRAPHS[name]()
    assert load(name + ".json") == json.loads(json.dumps(build_workflows.to_ui(graph, defs), ensure_ascii=False))
    assert load(name + "_api.json") == json.loads(json.dumps(build_workflows.to_api(graph), ensure_ascii=False))


@pytest.mark.parametrize("name", NAMES)
def test_workflow_names_the_bundled_files(name, env):
    from nodes.loaders import SAMPLE_INPUTS, SAMPLES_DIR

    nodes, _ = env
    api = load(name + "_api.json")
    models = nodes.OmniSyncModelLoader.INPUT_TYPES()["required"]["model_name"][1]["options"]
    for node in api.values():
        inputs = node["inputs"]
        if node["class_type"] == "OmniSyncModelLoader":
            assert inputs["model_name"] == build_workflows.MODEL_FILE
            assert os.path.isfile(os.path.join(ROOT, "models", build_workflows.MODEL_FILE))
            assert build_workflows.MODEL_FILE in models  # listed from the plugin's own models/ folder
        if node["class_type"] == "OmniSyncWhisperLoader":
            assert inputs["encoder_name"] == "bundled: whisper tiny.en"
        if node["class_type"] in ("LoadVideo", "LoadAudio"):
            value = inputs.get("file", inputs.get("audio"))
            assert value in SAMPLE_INPUTS  # copied to input/ when the plugin loads
            assert os.path.isfile(os.path.join(SAMPLES_DIR, value))


# -- model files: the frontend's metadata, the notes ------------------------------------------------

# the file widgets whose value the frontend's Missing Models dialog checks, per node type
MODEL_WIDGETS = {"UNETLoader": ["unet_name"], "CLIPLoader": ["clip_name"], "VAELoader": ["vae_name"],
                 "OmniSyncXDubModelLoader": ["model_name"], "OmniSyncXDubAudioLoader": ["whisper", "wav2vec2"]}
CORE_TEMPLATE_MODELS = os.path.join(WORKFLOWS, "schemas", "core_template_models_0.1.94.json")


def model_files(ui):
    """(node, widget name, file name) of every model widget of a UI workflow."""
    for n in graph_nodes(ui):
        if n["type"] in MODEL_WIDGETS:
            values = dict(zip([w for w in widget_names(n["type"])], n["widgets_values"]))
            for w in MODEL_WIDGETS[n["type"]]:
                yield n, w, values[w]


def widget_names(node_type):
    with open(CORE_SCHEMA, encoding="utf-8") as f:
        core = json.load(f)
    d = core.get(node_type) or build_workflows.node_definitions()[node_type]
    return [name for name, decl, _ in all_inputs(d) if kind(decl) in WIDGET_TYPES]


def expected_metadata(name):
    """What the frontend should get for a model file: the X-Dub registry's entry (None for a folder), else the
    entry ComfyUI's own Wan templates give the file."""
    from omnisync_core.model.files import XDUB_FILES, comfy_model_metadata

    for f in XDUB_FILES:
        if f.name == name:
            return None if f.is_folder else comfy_model_metadata(f.key)
    with open(CORE_TEMPLATE_MODELS, encoding="utf-8") as f:
        core = {m["name"]: m for models in json.load(f).values() for m in models}
    return core[name]


@pytest.mark.parametrize("name", NAMES)
def test_every_model_widget_carries_the_registry_metadata(name, defs):
    """ComfyUI's Missing Models dialog lists a file only from ``properties.models`` entries whose name is one of the
    node's string widget values and which have a url (frontend 1.27.10, getSelectedModelsMetadata)."""
    ui = load(name + ".json")
    seen = 0
    for n, widget, value in model_files(ui):
        want = expected_metadata(value)
        models = n.get("properties", {}).get("models", [])
        if want is None:  # a folder: the frontend downloads single files only; the note names it
            assert not [m for m in models if m["name"] == value], (n["type"], value)
            continue
        assert [m for m in models if m["name"] == value] == [want], (n["type"], widget, value)
        assert want["name"] in n["widgets_values"] and want["url"].startswith("https://huggingface.co/")
        seen += 1
    for n in graph_nodes(ui):  # nothing but the files the widgets name
        names = {v for _, _, v in model_files({"nodes": [n]})}
        assert {m["name"] for m in n.get("properties", {}).get("models", [])} <= names, n["type"]
    assert seen or name == "omnisync_lipsync_video"  # that one names only the bundled files


def test_xdub_workflows_name_every_file_comfyui_reads():
    from omnisync_core.model.files import XDUB_FILES

    read_in_comfy = {f.name for f in XDUB_FILES if f.read_by and not f.alternative_to}  # the bundle's forms: README
    assert len(read_in_comfy) == 5
    # every file the X-Dub graphs name is a single .safetensors, which the Missing Models dialog can download
    assert all(name.endswith(".safetensors") for name in read_in_comfy)
    for name in ("xdub_lipsync_video", "wan22_ti2v_then_xdub"):
        assert {v for _, _, v in model_files(load(name + ".json"))} >= read_in_comfy, name


def test_core_template_models_match_comfyui_workflow_templates():
    """The cut of ComfyUI's Wan templates the workflows copy their metadata from equals the templates themselves
    (comfyui-workflow-templates, installed with ComfyUI; not in CI)."""
    templates = pytest.importorskip("comfyui_workflow_templates")
    folder = os.path.join(os.path.dirname(templates.__file__), "templates")
    with open(CORE_TEMPLATE_MODELS, encoding="utf-8") as f:
        cut = json.load(f)
    for template, models in cut.items():
        with open(os.path.join(folder, template + ".json"), encoding="utf-8") as f:
            real = json.load(f)
        assert models == [m for n in real["nodes"] for m in n.get("properties", {}).get("models", [])], template


@pytest.mark.parametrize("name", NAMES)
def test_notes_list_every_model_file_with_its_source_and_folder(name):
    ui = load(name + ".json")
    text = "\n".join(n["widgets_values"][0] for n in ui["nodes"] if n["type"] == build_workflows.NOTE)
    for n, _, value in model_files(ui):
        want = expected_metadata(value)
        if want is None:
            from omnisync_core.model.files import xdub_file

            f = xdub_file(value)
            want = {"name": value + "/", "directory": f.directory, "url": f.url}
        assert f"ComfyUI/models/{want['directory']}/{want['name']}" in text, (name, value)
        assert want["url"].split("?")[0] in text, (name, value)


def test_wan21_workflow_says_what_the_bundled_model_cannot_do():
    ui = load("omnisync_after_wan21_t2v.json")
    text = " ".join(n["widgets_values"][0] for n in ui["nodes"] if n["type"] == build_workflows.NOTE)
    assert "synthetic talking characters" in text and "realistic faces" in text
    assert "wan22_ti2v_then_xdub" in text and "wan22_ti2v_then_xdub" in build_workflows.GRAPHS


@pytest.mark.parametrize("name", NAMES)
def test_saved_view_shows_notes_and_every_node_readable(name):
    """The view a template opens with (``extra.ds``) puts every node, notes included, inside the free part of a
    1600×1000 window of ComfyUI 0.3.64's frontend (canvas corner, minimap and toolbars measured there), at a scale
    where the frontend still draws node text."""
    ui = load(name + ".json")
    ds = ui["extra"]["ds"]
    assert build_workflows.MIN_SCALE <= ds["scale"] <= 1
    (ox, oy), s = ds["offset"], ds["scale"]
    cx, cy = build_workflows.CANVAS_TOP_LEFT
    fx0, fy0, fx1, fy1 = build_workflows.FREE
    mx0, my0, mx1, my1 = build_workflows.MINIMAP
    for n in ui["nodes"]:
        top = n["pos"][1] - TITLE_H - build_workflows.BADGE_H
        x0, y0 = (n["pos"][0] + ox) * s + cx, (top + oy) * s + cy
        x1, y1 = (n["pos"][0] + n["size"][0] + ox) * s + cx, (n["pos"][1] + n["size"][1] + oy) * s + cy
        assert fx0 - 0.5 <= x0 and x1 <= fx1 + 0.5 and fy0 - 0.5 <= y0 and y1 <= fy1 + 0.5, (n["id"], x0, y0, x1, y1)
        assert x1 <= mx0 or x0 >= mx1 or y1 <= my0 or y0 >= my1, f"node {n['id']} opens under the minimap"


def test_saved_view_check_sees_a_node_off_screen():
    nodes = [{"id": 1, "pos": [0, 0], "size": [300, 100]}, {"id": 2, "pos": [5000, 0], "size": [300, 100]}]
    with pytest.raises(ValueError, match="scale"):
        build_workflows.saved_view(nodes)
    nodes[1]["pos"] = [2000, 900]  # fits, but under the minimap at the bottom right
    with pytest.raises(ValueError, match="minimap"):
        build_workflows.saved_view(nodes)


def rectangles(ui):
    """(id, x0, y0, x1, y1) of every node as drawn: the title bar sits above pos."""
    return [(n["id"], n["pos"][0], n["pos"][1] - TITLE_H, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
            for n in ui["nodes"]]


@pytest.mark.parametrize("name", NAMES)
def test_no_nodes_overlap(name):
    boxes = rectangles(load(name + ".json"))
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            apart = a[3] <= b[1] or b[3] <= a[1] or a[4] <= b[2] or b[4] <= a[2]
            assert apart, f"nodes {a[0]} and {b[0]} overlap: {a[1:]} {b[1:]}"


def test_rectangle_check_sees_an_overlap():
    ui = {"nodes": [{"id": 1, "pos": [0, 30], "size": [100, 100]}, {"id": 2, "pos": [99, 30], "size": [50, 50]}]}
    (_, *a), (_, *b) = rectangles(ui)
    assert not (a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1])


@pytest.mark.parametrize("name", NAMES)
def test_api_workflow_is_valid(name, defs):
    api = load(name + "_api.json")
    for nid, node in api.items():
        assert node["class_type"] in defs, f"unknown node type {node['class_type']}"
        d = defs[node["class_type"]]
        declared = {n: (decl, req) for n, decl, req in all_inputs(d)}
        for inp, value in node["inputs"].items():
            assert inp in declared, f"{node['class_type']} has no input {inp}"
            decl, _ = declared[inp]
            if isinstance(value, list):
                src = api[value[0]]
                out_type = defs[src["class_type"]]["output"][value[1]]
                want = kind(decl)
                assert out_type == want, f"{src['class_type']}[{value[1]}] {out_type} -> {node['class_type']}.{inp} {want}"
            else:
                assert kind(decl) in WIDGET_TYPES, f"{node['class_type']}.{inp} needs a link"
                check_widget(node["class_type"], inp, decl, value)
        for inp, (decl, required) in declared.items():
            if required:
                assert inp in node["inputs"], f"{node['class_type']} (id {nid}) misses required {inp}"


@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_is_valid_and_matches_api(name, defs):
    ui = load(name + ".json")
    api = load(name + "_api.json")
    assert ui["version"] == 0.4
    nodes = {n["id"]: n for n in graph_nodes(ui)}
    assert {str(i) for i in nodes} == set(api)
    links = {l[0]: l for l in ui["links"]}
    for link_id, src, src_slot, dst, dst_slot, typ in ui["links"]:
        out = nodes[src]["outputs"][src_slot]
        inp = nodes[dst]["inputs"][dst_slot]
        assert out["type"] == typ == inp["type"], (link_id, out, inp)
        assert typ == defs[nodes[src]["type"]]["output"][src_slot]
        assert link_id in out["links"] and inp["link"] == link_id
        assert api[str(dst)]["inputs"][inp["name"]] == [str(src), src_slot]
    for nid, n in nodes.items():
        d = defs[n["type"]]
        for k in ("pos", "size", "inputs", "outputs", "widgets_values"):
            assert k in n, (nid, k)
        linked = {i["name"] for i in n["inputs"] if i["link"] is not None}
        for i in n["inputs"]:
            assert i["link"] is None or i["link"] in links
        widgets = []
        for inp, decl, required in all_inputs(d):
            if kind(decl) in WIDGET_TYPES:
                widgets.append((inp, decl))
            elif required:
                assert inp in linked, f"{n['type']} (id {nid}) input {inp} is not connected"
        values = list(n["widgets_values"])
        for inp, decl in widgets:
            if not values:
                break
            value = values.pop(0)
            if inp not in linked:
                check_widget(n["type"], inp, decl, value)
                assert api[str(nid)]["inputs"][inp] == value
            opts = decl[1] if len(decl) > 1 else {}
            if kind(decl) == "INT" and (opts.get("control_after_generate") or inp in ("seed", "noise_seed")):
                assert values.pop(0) in ("fixed", "randomize", "increment", "decrement")
        assert len(values) == UI_EXTRA_WIDGETS.get(n["type"], 0), (n["type"], values)


@pytest.mark.parametrize("name", NAMES)
def test_thumbnail_exists(name):
    path = os.path.join(WORKFLOWS, name + ".jpg")  # the Templates menu shows <name>.jpg on the card
    with open(path, "rb") as f:
        assert f.read(3) == b"\xff\xd8\xff"


# -- running the API graphs ------------------------------------------------------------------------

SRC_T, SRC_FPS, SPEECH_S = 10, 25.0, 0.6
OUT_RATE_HZ = 16000  # Audio Encode / Lip Sync return the speech at Whisper's 16 kHz


def follow_audio_length(fps):
    """follow_audio_*: ceil(speech·fps) frames, and the speech padded to exactly those frames (in samples)."""
    frames = math.ceil(SPEECH_S * fps)
    return frames, round(frames * OUT_RATE_HZ / fps)


class StandIns:
    """Minimal core nodes: synthetic media in, recorded media out."""

    def __init__(self, text_dim, size=(32, 32)):
        self.saved, self.previews, self.text_dim, self.size, self.vaes = [], [], text_dim, size, []

    def classes(self):
        me = self

        def node(fn):
            return type(fn.__name__, (), {"FUNCTION": "run", "run": lambda self, **kw: fn(**kw)})

        def LoadVideo(file):
            return ({"file": file},)

        def GetVideoComponents(video):
            audio = {"waveform": torch.from_numpy(make_speech_like(SRC_T / SRC_FPS, sr=44100))[None, None],
                     "sample_rate": 44100}
            return (make_frames(T=SRC_T, H=me.size[0], W=me.size[1]), audio, SRC_FPS)

        def LoadAudio(audio):
            wave = make_speech_like(SPEECH_S, sr=22050, seed=3)
            return ({"waveform": torch.from_numpy(np.stack([wave, wave]))[None], "sample_rate": 22050},)

        def CreateVideo(images, fps, audio=None):
            from comfy_api.latest import InputImpl, Types
            from fractions import Fraction

            return (InputImpl.VideoFromComponents(Types.VideoComponents(images=images, audio=audio,
                                                                        frame_rate=Fraction(fps))),)

        def SaveVideo(video, filename_prefix, format, codec):
            me.saved.append((filename_prefix, video.get_components()))
            return ()

        def PreviewImage(images):
            me.previews.append(images)
            return ()

        def UNETLoader(unet_name, weight_dtype):
            return ("wan-model",)

        def CLIPLoader(clip_name, type, device="default"):
            return ("umt5",)

        def VAELoader(vae_name):
            if vae_name == build_workflows.xdub_name("wan22_vae"):
                me.vaes.append(FakeComfyWan22VAE())
                return (me.vaes[-1],)
            return (None,)  # the tiny OmniSync model works on pixels and ignores the VAE

        def CLIPTextEncode(text, clip):
            return ([[torch.randn(1, 5, me.text_dim), {}]],)

        def EmptyHunyuanLatentVideo(width, height, length, batch_size):
            return ({"length": length},)

        def Wan22ImageToVideoLatent(vae, width, height, length, batch_size, start_image=None):
            assert isinstance(vae, FakeComfyWan22VAE)  # the one Wan 2.2 VAE loader serves Wan and X-Dub
            return ({"length": length},)

        def ModelSamplingSD3(model, shift):
            return (model,)

        def KSampler(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise):
            return (latent_image,)

        def VAEDecode(samples, vae):
            return (make_frames(T=samples["length"], seed=5),)

        fns = [LoadVideo, GetVideoComponents, LoadAudio, CreateVideo, SaveVideo, PreviewImage,
               UNETLoader, CLIPLoader, VAELoader, CLIPTextEncode, EmptyHunyuanLatentVideo, ModelSamplingSD3,
               KSampler, VAEDecode, Wan22ImageToVideoLatent]
        return {f.__name__: node(f) for f in fns}


def execute(api, classes, canvas=None):
    """Runs an API-format graph the way ComfyUI's executor does: inputs resolved from upstream outputs; a V3 node
    runs as a clone that knows its node id (``cls.hidden.unique_id``), a V1 stand-in as an instance. ``canvas``
    collects the progress text each node sent, {node id: its last message}, as the frontend shows it."""
    from comfy_api.latest import io
    import server

    outputs = {}

    def run(nid):
        if nid not in outputs:
            node = api[nid]
            cls = classes[node["class_type"]]
            kwargs = {k: run(v[0])[v[1]] if isinstance(v, list) else v for k, v in node["inputs"].items()}
            if issubclass(cls, io.ComfyNode):
                clone = cls.PREPARE_CLASS_CLONE({io.Hidden.unique_id: nid})
                outputs[nid] = getattr(clone, clone.FUNCTION)(**kwargs).result or ()
            else:
                outputs[nid] = getattr(cls(), cls.FUNCTION)(**kwargs)
        return outputs[nid]

    server.TEXTS.clear()

    for nid in api:
        run(nid)
    if canvas is not None:
        canvas.update(server.TEXTS)
    return outputs


def nodes_by_id(nodes):
    return {cls.GET_SCHEMA().node_id: cls for cls in nodes.NODES}


def fast(api, **widgets):
    for node in api.values():
        for k, v in widgets.items():
            if k in node["inputs"] and not isinstance(node["inputs"][k], list):
                node["inputs"][k] = v
    return api


def test_lipsync_video_workflow_runs_end_to_end(env):
    import comfy.utils as cu

    nodes, whisper_name = env
    api = fast(load("omnisync_lipsync_video_api.json"), steps=10, window=0, encoder_name=whisper_name,
               model_name=TINY_MODEL, mouth="point", mouth_x=0.3, mouth_y=0.7, sigma_spatial=0.1)
    stand = StandIns(text_dim=0)
    cu.UPDATES.clear()
    canvas = {}
    out = execute(api, {**stand.classes(), **nodes_by_id(nodes)}, canvas)

    expected_T, expected_samples = follow_audio_length(SRC_FPS)  # follow_audio_loop: as long as the speech
    (prefix, comps), = stand.saved
    assert prefix == "video/omnisync"
    assert comps.images.shape == (expected_T, 32, 32, 3)
    assert float(comps.frame_rate) == SRC_FPS
    assert comps.audio["waveform"].shape[-1] == expected_samples
    assert 0.0 <= float(comps.images.min()) and float(comps.images.max()) <= 1.0

    gmap = out["8"][1]
    assert gmap.shape == (expected_T, 32, 32) and float(gmap.max()) == pytest.approx(1.0)
    y, x = divmod(int(gmap[0].flatten().argmax()), 32)
    assert abs((x + 0.5) / 32 - 0.3) <= 0.1 and abs((y + 0.5) / 32 - 0.7) <= 0.1
    strip, = stand.previews  # one image: 8 of the frames side by side, 2 px apart
    assert strip.shape == (1, 32, 8 * 32 + 7 * 2, 3)
    assert torch.equal(strip[0, :, :32, 0], gmap[0]) and torch.equal(strip[0, :, -32:, 0], gmap[-1])

    # the warnings show on the nodes that gave them: Audio Encode (id 6) resampled the 22.05 kHz speech and looped
    # the video to its length
    assert canvas["6"].split("\n") == ["⚠ " + w for w in out["6"][0].report["warnings"]]
    assert "22050 Hz to 16000 Hz" in canvas["6"] and "video looped" in canvas["6"]

    steps_run = len(out["7"][0].sigmas) - 1
    assert [d for d, _ in cu.UPDATES] == list(range(1, steps_run + 1)) or cu.UPDATES[-1] == (steps_run, steps_run)
    assert len(cu.UPDATES) >= steps_run


def test_wan_workflow_runs_our_part_with_a_tiny_model(env):
    nodes, whisper_name = env
    model = nodes.OmniSyncModelLoader.execute(TINY_MODEL, "fp32")[0]
    api = fast(load("omnisync_after_wan21_t2v_api.json"), steps=8, window=0, encoder_name=whisper_name,
               model_name=TINY_MODEL, length=9)
    stand = StandIns(text_dim=model.model.config.text_dim)
    execute(api, {**stand.classes(), **nodes_by_id(nodes)})
    saved = dict(stand.saved)
    assert saved["video/wan_t2v"].images.shape[0] == 9
    ours = saved["video/omnisync_wan"]
    expected_T, expected_samples = follow_audio_length(16.0)  # 9.6 frames of speech -> 10, audio padded to 0.625 s
    assert ours.images.shape == (expected_T, 32, 32, 3)
    assert float(ours.frame_rate) == 16.0
    assert ours.audio["waveform"].shape[-1] == expected_samples


def test_odd_sized_video_leaves_assemble_with_even_sizes(env):
    """Save Video's H.264 needs even sizes: a 21×15 source's VIDEO leaves as 22×16 (last row/column repeated),
    its IMAGE at 21×15."""
    nodes, whisper_name = env
    api = fast(load("omnisync_lipsync_video_api.json"), steps=2, window=0, encoder_name=whisper_name,
               model_name=TINY_MODEL, mouth="point")
    stand = StandIns(text_dim=0, size=(15, 21))
    out = execute(api, {**stand.classes(), **nodes_by_id(nodes)})
    (_, comps), = stand.saved
    images = out["9"][0]
    assert comps.images.shape[1:] == (16, 22, 3) and images.shape[1:] == (15, 21, 3)  # IMAGE keeps the exact size
    assert torch.equal(comps.images[:, -1], comps.images[:, -2]) and torch.equal(comps.images[:, :, -1], comps.images[:, :, -2])
    assert "21x15 -> 22x16" in json.loads(out["9"][4])["padded_to_even"]


def test_xdub_workflow_names_the_published_files():
    from omnisync_core.model.files import xdub_file

    ui = load("xdub_lipsync_video.json")
    note, = [n for n in ui["nodes"] if n["type"] == build_workflows.NOTE]
    assert "licence is their owner's" in note["widgets_values"][0]
    for key in ("whisper", "wav2vec2"):  # published as model.safetensors: the note says what to save each as
        f = xdub_file(key)
        assert f"{f.url} (save it as {f.name})" in note["widgets_values"][0]
    widgets = {n["type"]: n["widgets_values"] for n in graph_nodes(ui)}
    name = lambda key: xdub_file(key).name  # noqa: E731
    assert widgets["OmniSyncXDubModelLoader"][0] == name("xdub_model")
    assert widgets["VAELoader"][0] == name("wan22_vae") and widgets["CLIPLoader"][:2] == [name("umt5_comfy"), "wan"]
    assert widgets["OmniSyncXDubAudioLoader"] == [name("whisper"), name("wav2vec2")]


def test_wan22_xdub_workflow_shares_one_vae_and_one_text_encoder():
    api = load("wan22_ti2v_then_xdub_api.json")
    loaders = {nid: n for nid, n in api.items() if n["class_type"] in ("VAELoader", "CLIPLoader")}
    (vae_id,) = [nid for nid, n in loaders.items() if n["class_type"] == "VAELoader"]
    (clip_id,) = [nid for nid, n in loaders.items() if n["class_type"] == "CLIPLoader"]
    users = {nid: n["class_type"] for nid, n in api.items()
             if any(v == [vae_id, 0] for v in n["inputs"].values())}
    assert sorted(users.values()) == ["OmniSyncXDubEncode", "VAEDecode", "Wan22ImageToVideoLatent"]
    encoders = [n for n in api.values() if n["inputs"].get("clip") == [clip_id, 0]]
    assert len(encoders) == 3  # Wan's positive and negative prompts, X-Dub's empty prompt
    xdub_prompt, = [n for n in encoders if n["inputs"]["text"] == ""]
    samplers = [n for n in api.values() if n["class_type"] == "OmniSyncXDubSampler"]
    assert [api[s["inputs"]["conditioning"][0]] for s in samplers] == [xdub_prompt]


def test_wan22_xdub_workflow_runs_end_to_end(env):
    """Wan 2.2 TI2V-5B (stand-ins for the core nodes: the decoder returns a made-up clip) → Face Crop → X-Dub
    Encode / Sampler / Assemble → Face Paste Back → Create Video → Save Video with the tiny X-Dub stand-ins."""
    nodes, _ = env
    api = fast(load("wan22_ti2v_then_xdub_api.json"), steps=2, size=64, dtype="fp32", length=9, **XDUB)
    stand = StandIns(text_dim=16)
    out = execute(api, {**stand.classes(), **nodes_by_id(nodes)})
    expected_T, expected_samples = follow_audio_length(25.0)  # as long as the speech, at X-Dub's 25 fps
    (prefix, comps), = stand.saved
    assert prefix == "video/wan22_xdub" and float(comps.frame_rate) == 25.0
    assert comps.images.shape == (expected_T, 32, 32, 3) and comps.audio["waveform"].shape[-1] == expected_samples
    (vae,) = stand.vaes
    assert [shape for kind, shape in vae.calls if kind == "encode"] == [(77, 64, 64, 3)]  # one 77-frame clip
    wan_frames = [v for k, v in out.items() if api[k]["class_type"] == "VAEDecode"][0][0]
    assert wan_frames.shape[0] == 9


def test_xdub_workflow_runs_end_to_end(env):
    """Load Video → Face Crop → X-Dub Encode / Sampler / Assemble → Face Paste Back → Create Video → Save Video, with
    the tiny X-Dub stand-ins, a stand-in Wan 2.2 VAE and a stand-in umT5 CONDITIONING; steps and crop size cut."""
    nodes, _ = env
    api = fast(load("xdub_lipsync_video_api.json"), steps=2, size=64, dtype="fp32", **XDUB)
    stand = StandIns(text_dim=16)
    out = execute(api, {**stand.classes(), **nodes_by_id(nodes)})
    expected_T, expected_samples = follow_audio_length(SRC_FPS)  # X-Dub: as long as the speech, at 25 fps
    (prefix, comps), = stand.saved
    assert prefix == "video/xdub" and float(comps.frame_rate) == SRC_FPS
    assert comps.images.shape == (expected_T, 32, 32, 3) and comps.audio["waveform"].shape[-1] == expected_samples
    assert json.loads(out["11"][1])["text"] == "CONDITIONING"
    (vae,) = stand.vaes
    assert [shape for kind, shape in vae.calls if kind == "encode"] == [(77, 64, 64, 3)]  # one 77-frame clip
    crops = out["12"][0]
    assert crops.shape == (expected_T, 64, 64, 3)


def test_samples_are_copied_to_the_input_folder_once_and_never_overwrite(env, tmp_path):
    import folder_paths
    from nodes.loaders import SAMPLE_INPUTS, SAMPLES_DIR, copy_samples_to_input

    input_dir = folder_paths.get_input_directory()
    video, speech = SAMPLE_INPUTS
    for name in (video, speech):
        if os.path.exists(os.path.join(input_dir, name)):
            os.remove(os.path.join(input_dir, name))
    os.makedirs(input_dir, exist_ok=True)
    with open(os.path.join(input_dir, speech), "wb") as f:
        f.write(b"the user's own file")
    copy_samples_to_input()
    with open(os.path.join(input_dir, video), "rb") as f, open(os.path.join(SAMPLES_DIR, video), "rb") as g:
        assert f.read() == g.read()
    with open(os.path.join(input_dir, speech), "rb") as f:
        assert f.read() == b"the user's own file"
