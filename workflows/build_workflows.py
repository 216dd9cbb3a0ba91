"""Writes the example workflows (UI and API JSON) and their graph thumbnails from one description.

    python workflows/build_workflows.py

Each graph is listed once below (node id, type, size, widget values, links); the UI format (what users
open from the Templates menu or drag into ComfyUI, ``workflows/*.json``) and the API format (what is
POSTed to /prompt, ``workflows/api/*_api.json``; kept out of ``workflows/`` itself because ComfyUI lists
every .json there as a template) are both derived from it, with widget order taken from the node
definitions: ComfyUI 0.3.64's object_info for core nodes (the subset used is kept in
``workflows/schemas/core_nodes_0.3.64.json``) and our INPUT_TYPES for OmniSync nodes.
Needs matplotlib for the thumbnails (``<name>.jpg``, the Templates menu's card pictures); ComfyUI itself
is not needed.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import os
import sys
import types
import uuid
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
API_DIR = os.path.join(HERE, "api")
CORE_SCHEMA = os.path.join(HERE, "schemas", "core_nodes_0.3.64.json")
FAKES = os.path.join(ROOT, "tests", "fakes")  # holds a fake of comfy_api (the V3 schema API), for when ComfyUI is absent
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
# Extra UI-only widget values the frontend stores after the declared ones (upload buttons, previews).
EXTRA_UI_WIDGETS = {"LoadVideo": ["image"], "LoadAudio": [None, None]}
SEED_NAMES = ("seed", "noise_seed")  # INT widgets the frontend follows with "control after generate"
NOTE = "Note"  # frontend-only text node: in the UI JSON, never in the API JSON
NOTE_COLOURS = {"color": "#432", "bgcolor": "#653"}  # the frontend's yellow note colours
TITLE_H = 30  # LiteGraph draws the title bar above ``pos``: a node covers y from pos.y − 30 to pos.y + size.h
GAP = 40  # free space between stacked nodes (the frontend draws a source badge above each title)
# The frontend (1.27.10) grows a node to its computeSize on load: 20 px per socket row (the longer of the
# input and output columns), 24 px per widget, 14 px padding. Heights below are at least that.
SLOT_H, WIDGET_H, BODY_PAD = 20, 24, 14

# The files the shipped workflows name. The bundled model is changed here, in one place.
MODEL_FILE = "omnisync_unet128.safetensors"  # in the plugin's models/ folder
STEPS = 0  # 0 = auto: the checkpoint's recommended schedule (the bundled model: 8 steps)
WINDOW = 0  # 0 = auto: the checkpoint's recommended window (the bundled model: 16 frames)
OVERLAP = -1  # −1 = auto: the checkpoint's recommended overlap (the bundled model: 0)
@dataclass
class Node:
    id: int
    type: str
    pos: Optional[Tuple[int, int]] = None  # None: set by stack()
    widgets: Dict[str, object] = field(default_factory=dict)
    links: Dict[str, Tuple[int, int]] = field(default_factory=dict)  # input name -> (source id, output slot)
    size: Tuple[int, int] = (300, 130)
    title: Optional[str] = None
    models: List[dict] = field(default_factory=list)  # files the frontend offers to download when missing


def stack(x: int, y: int, *column: Node) -> List[Node]:
    """Place nodes top to bottom at x, starting with the first title bar at y, GAP apart; each node is
    first grown to the height the frontend gives it."""
    defs = node_definitions()
    for n in column:
        n.size = (n.size[0], max(n.size[1], min_height(n, defs)))
        n.pos = (x, y + TITLE_H)
        y += TITLE_H + n.size[1] + GAP
    return list(column)


def min_height(n: Node, defs: dict) -> int:
    """The body height the frontend computes for ``n``: socket rows, widget rows, padding."""
    d = defs[n.type]
    sockets = widgets = 0
    for name, spec, _ in ordered_inputs(d):
        if input_kind(spec) not in WIDGET_TYPES:
            sockets += 1
        elif name in n.widgets or name in n.links:
            opts = spec[1] if len(spec) > 1 else {}
            widgets += 2 if input_kind(spec) == "INT" and (opts.get("control_after_generate") or name in SEED_NAMES) else 1
    return SLOT_H * max(sockets, len(d["output"])) + WIDGET_H * widgets + BODY_PAD


def _schema_only_folder_paths() -> types.ModuleType:
    """A stand-in for ComfyUI's ``folder_paths`` that lists no files: the builder reads only the nodes'
    declared inputs (file names come from the graphs below), so it runs without ComfyUI."""
    fp = types.ModuleType("folder_paths")
    fp.models_dir = os.path.join(ROOT, "models")
    fp.add_model_folder_path = lambda folder_name, full_folder_path, is_default=False: None
    fp.get_folder_paths = lambda folder_name: []
    fp.get_filename_list = lambda folder_name: []
    return fp


@functools.lru_cache(maxsize=1)
def node_definitions() -> dict:
    """object_info-shaped definitions of the core nodes used and of the OmniSync nodes (their V3 schemas, read
    through ``comfy_api.latest.io``: ComfyUI's own when it is importable, else the test fake of it)."""
    with open(CORE_SCHEMA, encoding="utf-8") as f:
        defs = json.load(f)
    added = [ROOT]
    if importlib.util.find_spec("comfy_api") is None:
        added.append(FAKES)
    sys.path[:0] = added
    real = sys.modules.get("folder_paths")
    sys.modules["folder_paths"] = real or _schema_only_folder_paths()
    try:
        from nodes import NODES

        for cls in NODES:
            info = dataclasses.asdict(cls.GET_SCHEMA().get_v1_info(cls))  # the node's entry of /object_info
            defs[info["name"]] = {k: info[k] for k in ("input", "input_order", "output", "output_name", "display_name")}
    finally:
        if real is None:
            del sys.modules["folder_paths"]
        for path in added:
            sys.path.remove(path)
    return defs


def sample_inputs() -> Tuple[str, str]:
    """(video, audio): the names the plugin gives the bundled samples in ComfyUI's input folder."""
    from nodes.loaders import SAMPLE_INPUTS

    return SAMPLE_INPUTS


def input_kind(spec) -> str:
    """'COMBO' for option lists, else the declared type name."""
    t = spec[0]
    return "COMBO" if isinstance(t, list) else t


def ordered_inputs(defn: dict):
    for section in ("required", "optional"):
        for name in defn.get("input_order", {}).get(section, []):
            yield name, defn["input"][section][name], section == "optional"


def to_api(graph) -> dict:
    out = {}
    for n in graph:
        if n.type == NOTE:
            continue
        inputs = {k: v for k, v in n.widgets.items()}
        inputs.update({k: [str(src), slot] for k, (src, slot) in n.links.items()})
        out[str(n.id)] = {"class_type": n.type, "inputs": inputs, "_meta": {"title": n.title or n.type}}
    return out


def to_ui(graph, defs) -> dict:
    notes = [n for n in graph if n.type == NOTE]
    graph = [n for n in graph if n.type != NOTE]
    by_id = {n.id: n for n in graph}
    links, link_id = [], 0
    out_links: Dict[Tuple[int, int], list] = {}
    in_link: Dict[Tuple[int, str], int] = {}
    for n in sorted(graph, key=lambda n: n.id):
        for name, (src, slot) in n.links.items():
            link_id += 1
            typ = defs[by_id[src].type]["output"][slot]
            target_slot = [i for i, (nm, spec, _) in enumerate(_sockets(n, defs)) if nm == name][0]
            links.append([link_id, src, slot, n.id, target_slot, typ])
            out_links.setdefault((src, slot), []).append(link_id)
            in_link[(n.id, name)] = link_id
    nodes = []
    for order, n in enumerate(_topological(graph)):
        d = defs[n.type]
        inputs = []
        for name, spec, optional in _sockets(n, defs):
            entry = {"name": name, "type": input_kind(spec), "link": in_link.get((n.id, name))}
            if optional:
                entry["shape"] = 7
            if input_kind(spec) in WIDGET_TYPES:
                entry["widget"] = {"name": name}
            inputs.append(entry)
        widgets_values = []
        for name, spec, _ in ordered_inputs(d):
            if input_kind(spec) not in WIDGET_TYPES:
                continue
            opts = spec[1] if len(spec) > 1 else {}
            if name in n.widgets:
                value = n.widgets[name]
            elif name in n.links:
                value = opts.get("default")  # a widget fed by a link still keeps a value
            else:
                continue  # optional widget left out (e.g. CLIPLoader's advanced device)
            widgets_values.append(value)
            if input_kind(spec) == "INT" and (opts.get("control_after_generate") or name in SEED_NAMES):
                widgets_values.append("fixed")
        widgets_values += EXTRA_UI_WIDGETS.get(n.type, [])
        outputs = [
            {"name": nm, "type": typ, "links": out_links.get((n.id, i), []), "slot_index": i}
            for i, (nm, typ) in enumerate(zip(d["output_name"], d["output"]))
        ]
        size = [n.size[0], max(n.size[1], min_height(n, defs))]
        node = {
            "id": n.id, "type": n.type, "pos": list(n.pos), "size": size, "flags": {}, "order": order,
            "mode": 0, "inputs": inputs, "outputs": outputs,
            "properties": {"Node name for S&R": n.type}, "widgets_values": widgets_values,
        }
        if n.title:
            node["title"] = n.title
        if n.models:
            node["properties"]["models"] = n.models
        nodes.append(node)
    for n in notes:
        nodes.append({"id": n.id, "type": NOTE, "pos": list(n.pos), "size": list(n.size), "flags": {},
                      "order": len(nodes), "mode": 0, "inputs": [], "outputs": [], "properties": {},
                      "widgets_values": [n.widgets["text"]], **NOTE_COLOURS})
        if n.title:
            nodes[-1]["title"] = n.title
    graph = graph + notes
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "omnisync/" + "/".join(n.type for n in graph))),
        "revision": 0, "last_node_id": max(n.id for n in graph), "last_link_id": link_id,
        "nodes": nodes, "links": links, "groups": [], "config": {},
        "extra": {"ds": {"scale": 0.6, "offset": [60, 60]}}, "version": 0.4,
    }


def _sockets(n: Node, defs):
    """UI input slots: every non-widget input, plus widgets that a link feeds."""
    return [(nm, spec, opt) for nm, spec, opt in ordered_inputs(defs[n.type])
            if input_kind(spec) not in WIDGET_TYPES or nm in n.links]


def _topological(graph):
    done, order = set(), []
    pending = sorted(graph, key=lambda n: n.id)
    while pending:
        for n in pending:
            if all(src in done for src, _ in n.links.values()):
                order.append(n)
                done.add(n.id)
                pending.remove(n)
                break
        else:
            raise ValueError("cycle in graph")
    return order


# -- the graphs ----------------------------------------------------------------------------------

SAMPLER_WIDGETS = dict(omega_base=0.0, omega_peak=0.0, sigma_spatial=0.15, gamma=1.5, mouth="auto",
                       mouth_x=0.5, mouth_y=0.62, window=WINDOW, overlap=OVERLAP)
WAN_REPACKAGED = "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/"
WAN_FILES = {  # ComfyUI model folder -> file, as in ComfyUI's text_to_video_wan template
    "diffusion_models": "wan2.1_t2v_1.3B_fp16.safetensors",
    "text_encoders": "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
    "vae": "wan_2.1_vae.safetensors",
}


def wan_model(directory: str) -> List[dict]:
    name = WAN_FILES[directory]
    return [{"name": name, "url": f"{WAN_REPACKAGED}{directory}/{name}?download=true", "directory": directory}]


def lipsync_video_graph():
    video, speech = sample_inputs()
    return [
        *stack(0, 0,
               Node(1, "LoadVideo", widgets={"file": video}, size=(300, 400)),
               Node(2, "GetVideoComponents", links={"video": (1, 0)}, size=(260, 70)),
               Node(3, "LoadAudio", widgets={"audio": speech}, size=(300, 140))),
        *stack(360, 0,
               Node(4, "OmniSyncModelLoader", widgets={"model_name": MODEL_FILE, "dtype": "auto", "offload": "none",
                                                       "resident_blocks": 0}, size=(320, 130)),
               Node(5, "OmniSyncWhisperLoader", widgets={"encoder_name": "bundled: whisper tiny.en"}, size=(320, 60)),
               Node(6, "OmniSyncAudioEncode", widgets={"fps": 25.0, "num_frames": 33, "length_mode": "follow_audio_loop"},
                    links={"audio": (3, 0), "fps": (2, 2), "audio_encoder": (5, 0), "images": (2, 0)},
                    size=(320, 170))),
        *stack(740, 0,
               Node(7, "OmniSyncNoiseInit", widgets={"tau": 0.92, "steps": STEPS, "shift": 1.0, "seed": 0},
                    links={"model": (4, 0), "images": (2, 0), "omnisync_audio": (6, 0)}, size=(320, 220)),
               Node(8, "OmniSyncSampler", widgets=dict(SAMPLER_WIDGETS),
                    links={"model": (4, 0), "latent": (7, 0), "omnisync_audio": (6, 0)}, size=(320, 330))),
        *stack(1120, 0,
               Node(9, "OmniSyncVideoAssemble", widgets={"composite": False, "composite_radius": 0.2, "feather_px": 4.0},
                    links={"latent": (8, 0), "omnisync_audio": (6, 0)}, size=(320, 150)),
               Node(12, "OmniSyncGuidanceStrip", widgets={"frames": 8}, links={"guidance_map": (8, 1)},
                    size=(320, 60), title="Guidance map (8 frames)"),
               Node(13, "PreviewImage", links={"images": (12, 0)}, size=(320, 250))),
        *stack(1500, 0,
               Node(11, "SaveVideo", widgets={"filename_prefix": "video/omnisync", "format": "auto", "codec": "auto"},
                    links={"video": (9, 3)}, size=(420, 540))),
    ]


WAN_NEGATIVE = ("色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
                "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，"
                "静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走")

WAN_NOTE = "\n".join([
    "Wan 2.1 files (not bundled; nothing is downloaded at run time). Put them here, then press R to refresh:",
    "",
    *(f"ComfyUI/models/{d}/{f}" for d, f in WAN_FILES.items()),
    "",
    "From Hugging Face: Comfy-Org/Wan_2.1_ComfyUI_repackaged (split_files/<folder>/<file>).",
    "",
    f"The OmniSync model ({MODEL_FILE}) and the speech sample come with the plugin.",
])


def wan_t2v_graph():
    # Nodes 3–50 keep the layout of ComfyUI's template text_to_video_wan.json (comfyui-workflow-templates 0.1.94).
    _, speech = sample_inputs()
    return [
        Node(70, NOTE, (-120, -250), {"text": WAN_NOTE}, size=(430, 230), title="Wan 2.1 model files"),
        Node(37, "UNETLoader", (-120, 40), {"unet_name": WAN_FILES["diffusion_models"], "weight_dtype": "default"},
             size=(390, 82), models=wan_model("diffusion_models")),
        Node(38, "CLIPLoader", (-120, 170), {"clip_name": WAN_FILES["text_encoders"], "type": "wan",
                                             "device": "default"}, size=(390, 106), models=wan_model("text_encoders")),
        Node(39, "VAELoader", (-120, 320), {"vae_name": WAN_FILES["vae"]}, size=(390, 60), models=wan_model("vae")),
        Node(40, "EmptyHunyuanLatentVideo", (-80, 490), {"width": 832, "height": 480, "length": 33, "batch_size": 1},
             size=(315, 130)),
        Node(6, "CLIPTextEncode", (310, 40), {"text": "a news presenter talking to the camera in a bright studio, "
                                                      "medium close-up, static camera"},
             links={"clip": (38, 0)}, size=(422, 164), title="CLIP Text Encode (Positive Prompt)"),
        Node(7, "CLIPTextEncode", (310, 250), {"text": WAN_NEGATIVE}, links={"clip": (38, 0)}, size=(425, 180),
             title="CLIP Text Encode (Negative Prompt)"),
        Node(48, "ModelSamplingSD3", (770, 40), {"shift": 8.0}, links={"model": (37, 0)}, size=(210, 58)),
        Node(3, "KSampler", (770, 160), {"seed": 82628696717253, "steps": 30, "cfg": 6.0, "sampler_name": "uni_pc",
                                         "scheduler": "simple", "denoise": 1.0},
             links={"model": (48, 0), "positive": (6, 0), "negative": (7, 0), "latent_image": (40, 0)}, size=(315, 262)),
        Node(8, "VAEDecode", (1110, 40), links={"samples": (3, 0), "vae": (39, 0)}, size=(210, 46)),
        Node(49, "CreateVideo", (1110, 140), {"fps": 16.0}, links={"images": (8, 0)}, size=(270, 78)),
        Node(50, "SaveVideo", (1110, 270), {"filename_prefix": "video/wan_t2v", "format": "auto", "codec": "auto"},
             links={"video": (49, 0)}, size=(480, 440)),
        # OmniSync: dub the generated clip with a speech track (a column right of the Wan graph).
        *stack(1650, 0,
               Node(60, "LoadAudio", widgets={"audio": speech}, size=(320, 140)),
               Node(61, "OmniSyncModelLoader", widgets={"model_name": MODEL_FILE, "dtype": "auto", "offload": "none",
                                                       "resident_blocks": 0}, size=(320, 130)),
               Node(62, "OmniSyncWhisperLoader", widgets={"encoder_name": "bundled: whisper tiny.en"}, size=(320, 60))),
        *stack(2030, 0,
               Node(63, "OmniSyncLipSync",
                    widgets={"fps": 16.0, "length_mode": "follow_audio_pingpong", "tau": 0.92, "steps": STEPS,
                             "seed": 0, "omega_peak": 0.0, "mouth": "auto", "mouth_x": 0.5, "mouth_y": 0.62,
                             "window": WINDOW, "overlap": OVERLAP, "composite": False},
                    links={"model": (61, 0), "audio_encoder": (62, 0), "images": (8, 0), "audio": (60, 0),
                           "vae": (39, 0), "conditioning": (6, 0)}, size=(340, 480))),
        *stack(2430, 0,
               Node(64, "SaveVideo", widgets={"filename_prefix": "video/omnisync_wan", "format": "auto", "codec": "auto"},
                    links={"video": (63, 4)}, size=(480, 440)),
               Node(65, "OmniSyncGuidanceStrip", widgets={"frames": 8}, links={"guidance_map": (63, 2)},
                    size=(320, 60), title="Guidance map (8 frames)"),
               Node(66, "PreviewImage", links={"images": (65, 0)}, size=(320, 250))),
    ]


XDUB_FILES = {  # ComfyUI model folder -> the files the X-Dub workflow names
    "diffusion_models": "X-Dub_model.safetensors",
    "vae": "Wan2.2_VAE.safetensors",
    "text_encoders": WAN_FILES["text_encoders"],  # ComfyUI's layout of the same umT5-XXL (see the README)
    "audio_encoders": ("whisper-large-v2-encoder.safetensors", "wav2vec2-base-960h"),
}
XDUB_HF = "https://huggingface.co/KlingTeam/X-Dub"
XDUB_NOTE = "\n".join([
    "X-Dub weights (not bundled; nothing is downloaded at run time; their licence is their owner's).",
    "Put them here, then press R to refresh:",
    "",
    f"ComfyUI/models/diffusion_models/{XDUB_FILES['diffusion_models']}   ({XDUB_HF})",
    f"ComfyUI/models/vae/{XDUB_FILES['vae']}   (same bundle)",
    f"ComfyUI/models/text_encoders/{XDUB_FILES['text_encoders']}   (Comfy-Org/Wan_2.1_ComfyUI_repackaged)",
    f"ComfyUI/models/audio_encoders/{XDUB_FILES['audio_encoders'][0]}   (the bundle's whisper/large-v2.pt,",
    "    converted once: python -m omnisync_core convert-whisper whisper/large-v2.pt "
    f"ComfyUI/models/audio_encoders/{XDUB_FILES['audio_encoders'][0]})",
    f"ComfyUI/models/audio_encoders/{XDUB_FILES['audio_encoders'][1]}/   (the bundle's folder)",
    "",
    "GPU memory: offload = blocks on Load X-Dub Model for 12-16 GB cards (README).",
])


def widget_defaults(node_type: str, **overrides) -> Dict[str, object]:
    """Every widget of ``node_type`` at its declared default (the first option of a list without one), then
    ``overrides``: a graph states only what it changes. File lists are empty here, so a file widget needs an
    override."""
    values = {}
    for name, spec, _ in ordered_inputs(node_definitions()[node_type]):
        if input_kind(spec) in WIDGET_TYPES:
            opts = spec[1] if len(spec) > 1 else {}
            values[name] = opts["default"] if "default" in opts else (spec[0][0] if spec[0] else None)
    unknown = set(overrides) - set(values)
    if unknown:
        raise KeyError(f"{node_type} has no widgets {sorted(unknown)}")
    values.update(overrides)
    unset = [name for name, value in values.items() if value is None]
    if unset:
        raise KeyError(f"{node_type}: give {unset} (no default, e.g. a file name)")
    return values


def xdub_graph():
    video, speech = sample_inputs()
    files = XDUB_FILES
    return [
        Node(30, NOTE, (0, -330), {"text": XDUB_NOTE}, size=(700, 280), title="X-Dub model files"),
        *stack(0, 0,
               Node(1, "LoadVideo", widgets={"file": video}, size=(300, 400)),
               Node(2, "GetVideoComponents", links={"video": (1, 0)}, size=(260, 70)),
               Node(3, "LoadAudio", widgets={"audio": speech}, size=(300, 140))),
        *stack(360, 0,
               Node(4, "OmniSyncFaceCrop", widgets=widget_defaults("OmniSyncFaceCrop", mode="point"),
                    links={"images": (2, 0)}, size=(340, 300)),
               Node(5, "VAELoader", widgets={"vae_name": files["vae"]}, size=(340, 60),
                    models=[{"name": files["vae"], "url": f"{XDUB_HF}/resolve/main/{files['vae']}", "directory": "vae"}]),
               Node(6, "OmniSyncXDubAudioLoader", widgets={"whisper": files["audio_encoders"][0],
                                                           "wav2vec2": files["audio_encoders"][1]}, size=(340, 60))),
        *stack(760, 0,
               Node(7, "OmniSyncXDubModelLoader", widgets=widget_defaults("OmniSyncXDubModelLoader",
                                                                          model_name=files["diffusion_models"]),
                    size=(340, 90)),
               Node(8, "CLIPLoader", widgets={"clip_name": files["text_encoders"], "type": "wan", "device": "default"},
                    size=(340, 106), models=wan_model("text_encoders")),
               Node(9, "CLIPTextEncode", widgets={"text": ""}, links={"clip": (8, 0)}, size=(420, 120),
                    title="CLIP Text Encode (X-Dub prompt: empty, as the reference)"),
               Node(10, "OmniSyncXDubEncode", widgets=widget_defaults("OmniSyncXDubEncode"),
                    links={"model": (7, 0), "vae": (5, 0), "audio_encoders": (6, 0), "crops": (4, 0), "audio": (3, 0),
                           "fps": (2, 2)}, size=(340, 150))),
        *stack(1260, 0,
               Node(11, "OmniSyncXDubSampler", widgets=widget_defaults("OmniSyncXDubSampler"),
                    links={"model": (7, 0), "latent": (10, 0), "conditioning": (9, 0)}, size=(340, 400))),
        *stack(1660, 0,
               Node(12, "OmniSyncXDubAssemble", links={"latent": (11, 0), "images": (2, 0), "face_crop": (4, 1)},
                    size=(340, 130)),
               Node(13, "OmniSyncFacePasteBack", widgets=widget_defaults("OmniSyncFacePasteBack"),
                    links={"images": (12, 1), "crops": (12, 0), "face_crop": (12, 2)}, size=(340, 100)),
               Node(14, "CreateVideo", widgets={"fps": 25.0}, links={"images": (13, 0), "audio": (12, 3), "fps": (12, 4)},
                    size=(340, 80))),
        *stack(2060, 0,
               Node(15, "SaveVideo", widgets={"filename_prefix": "video/xdub", "format": "auto", "codec": "auto"},
                    links={"video": (14, 0)}, size=(420, 540))),
    ]


GRAPHS = {
    "omnisync_lipsync_video": lipsync_video_graph,
    "omnisync_after_wan21_t2v": wan_t2v_graph,
    "xdub_lipsync_video": xdub_graph,
}


def render_thumbnail(graph, defs, path: str, title: str) -> None:
    """A simple picture of the graph: one box per node, one arrow per link, coloured by kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    by_id = {n.id: n for n in graph}
    box_h = 56
    width = {n.id: max(n.size[0], 200) for n in graph}  # the node's width in the UI
    fig, ax = plt.subplots(figsize=(16, 7), dpi=80)
    for n in graph:
        for src, _ in n.links.values():
            a, b = by_id[src].pos, n.pos
            wa, wb = width[src], width[n.id]
            if b[0] < a[0] + wa:  # target not right of the source: top to bottom
                start, end = (a[0] + wa / 2, a[1] + box_h), (b[0] + wb / 2, b[1])
            else:
                start, end = (a[0] + wa, a[1] + box_h / 2), (b[0], b[1] + box_h / 2)
            ax.add_patch(FancyArrowPatch(start, end,
                                         arrowstyle="-|>", mutation_scale=12, color="#8899aa", lw=1.2,
                                         connectionstyle="arc3,rad=0.08"))
    for n in graph:
        colour = "#2e7d6b" if n.type.startswith("OmniSync") else "#6b5a33" if n.type == NOTE else "#3f4a5c"
        ax.add_patch(FancyBboxPatch((n.pos[0], n.pos[1]), width[n.id], box_h, boxstyle="round,pad=4,rounding_size=12",
                                    fc=colour, ec="#d0d8e0", lw=1.2))
        label = n.title if n.type == NOTE else defs[n.type].get("display_name") or n.type
        ax.text(n.pos[0] + width[n.id] / 2, n.pos[1] + box_h / 2, label, ha="center", va="center", color="white",
                fontsize=8)
    xs = [n.pos[0] for n in graph]
    ys = [n.pos[1] for n in graph]
    ax.set_xlim(min(xs) - 40, max(n.pos[0] + width[n.id] for n in graph) + 40)
    ax.set_ylim(max(ys) + box_h + 40, min(ys) - 80)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, color="white", fontsize=14)
    fig.patch.set_facecolor("#1e1e24")
    fig.savefig(path, facecolor=fig.get_facecolor(), bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    defs = node_definitions()
    titles = {"omnisync_lipsync_video": "OmniSync: lip-sync a video to new speech",
              "omnisync_after_wan21_t2v": "Wan 2.1 text-to-video, then OmniSync lip-sync",
              "xdub_lipsync_video": "X-Dub weights: lip-sync real footage (face crop, paste back)"}
    for name, make in GRAPHS.items():
        graph = make()
        with open(os.path.join(HERE, name + ".json"), "w", encoding="utf-8") as f:
            json.dump(to_ui(graph, defs), f, indent=1, ensure_ascii=False)
        os.makedirs(API_DIR, exist_ok=True)
        with open(os.path.join(API_DIR, name + "_api.json"), "w", encoding="utf-8") as f:
            json.dump(to_api(graph), f, indent=1, ensure_ascii=False)
        # <name>.jpg beside <name>.json is the card picture in ComfyUI's Templates menu.
        render_thumbnail(graph, defs, os.path.join(HERE, name + ".jpg"), titles[name])
        print("wrote", name)


if __name__ == "__main__":
    main()
