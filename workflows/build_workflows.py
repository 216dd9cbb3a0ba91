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
# The model files of ComfyUI's own Wan templates (comfyui-workflow-templates 0.1.94: text_to_video_wan,
# video_wan2_2_5B_ti2v), with the metadata those templates give them; files of the X-Dub registry come from it.
CORE_TEMPLATE_MODELS = os.path.join(HERE, "schemas", "core_template_models_0.1.94.json")
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
# The frontend shows a node's progress text (our warnings and reports) below its widgets, inside the node's
# height, without growing it: room for six lines (two warnings, wrapped) on every OmniSync node.
FEEDBACK_H = 90
# Model widgets: the file inputs whose value the frontend's Missing Models dialog checks (``properties.models``).
MODEL_WIDGETS = {"UNETLoader": ("unet_name",), "CLIPLoader": ("clip_name",), "VAELoader": ("vae_name",),
                 "OmniSyncXDubModelLoader": ("model_name",), "OmniSyncXDubAudioLoader": ("whisper", "wav2vec2")}

# The saved view (``extra.ds``): a template opens with its notes and its whole graph on screen in a 1600×1000
# window. Measured in ComfyUI 0.3.64's frontend 1.27.10 (headless Chromium, new menu at the top): the canvas
# starts below the top bar and right of the side bar; the minimap is open at the bottom right; the zoom toolbar
# and the stats text sit along the bottom edge. screen = (graph + offset) · scale + canvas corner.
WINDOW = (1600, 1000)
CANVAS_TOP_LEFT = (64, 78)
FREE = (84, 98, 1580, 925)  # where nodes may land on screen (x0, y0, x1, y1)
MINIMAP = (1306, 734, 1556, 934)  # screen rectangle no node may be under
BADGE_H = 22  # the frontend draws a node-source badge ("omnisync") above a custom node's title bar
# Below this scale the frontend draws nodes without text (LiteGraph.Canvas.MinFontSizeForLOD 8 px over the
# 14 px node font): a note would open unreadable.
MIN_SCALE = 8 / 14

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


def stack(x: int, y: int, *column: Node) -> List[Node]:
    """Place nodes top to bottom at x, starting with the first title bar at y, GAP apart; each node is
    first grown to the height the frontend gives it."""
    defs = node_definitions()
    for n in column:
        if n.type != NOTE:
            n.size = (n.size[0], max(n.size[1], min_height(n, defs)))
        n.pos = (x, y + TITLE_H)
        y += TITLE_H + n.size[1] + GAP
    return list(column)


def min_height(n: Node, defs: dict) -> int:
    """The body height the frontend computes for ``n`` (socket rows, widget rows, padding), plus room for the
    text an OmniSync node shows on the canvas after a run (its warnings and reports)."""
    d = defs[n.type]
    sockets = widgets = 0
    for name, spec, _ in ordered_inputs(d):
        if input_kind(spec) not in WIDGET_TYPES:
            sockets += 1
        elif name in n.widgets or name in n.links:
            opts = spec[1] if len(spec) > 1 else {}
            widgets += 2 if input_kind(spec) == "INT" and (opts.get("control_after_generate") or name in SEED_NAMES) else 1
    feedback = FEEDBACK_H if n.type.startswith("OmniSync") else 0
    return SLOT_H * max(sockets, len(d["output"])) + WIDGET_H * widgets + BODY_PAD + feedback


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
        models = model_metadata(n)
        if models:
            node["properties"]["models"] = models
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
        "extra": {"ds": saved_view(nodes)}, "version": 0.4,
    }


def screen_rectangles(nodes, ds) -> Dict[int, Tuple[float, float, float, float]]:
    """Where each UI node (badge and title bar included) lands in the window under the view ``ds``."""
    (ox, oy), s = ds["offset"], ds["scale"]
    cx, cy = CANVAS_TOP_LEFT
    return {n["id"]: ((n["pos"][0] + ox) * s + cx, (n["pos"][1] - TITLE_H - BADGE_H + oy) * s + cy,
                      (n["pos"][0] + n["size"][0] + ox) * s + cx, (n["pos"][1] + n["size"][1] + oy) * s + cy)
            for n in nodes}


def saved_view(nodes) -> dict:
    """``extra.ds`` that shows every node (notes first among them) at the largest scale up to 1 that fits FREE,
    centred across; raises if that scale would draw the nodes without text or a node would sit under the
    minimap (then the layout needs changing)."""
    x0 = min(n["pos"][0] for n in nodes)
    y0 = min(n["pos"][1] - TITLE_H - BADGE_H for n in nodes)
    x1 = max(n["pos"][0] + n["size"][0] for n in nodes)
    y1 = max(n["pos"][1] + n["size"][1] for n in nodes)
    fx0, fy0, fx1, fy1 = FREE
    scale = min(1.0, (fx1 - fx0) / (x1 - x0), (fy1 - fy0) / (y1 - y0))
    if scale < MIN_SCALE:
        raise ValueError(f"the graph ({x1 - x0}×{y1 - y0}) fits the window only at scale {scale:.2f}, below "
                         f"{MIN_SCALE:.2f} where the frontend drops node text: make the layout more compact")
    scale = round(scale, 3)
    spare = (fx1 - fx0) - (x1 - x0) * scale
    offset = [round((fx0 + spare / 2 - CANVAS_TOP_LEFT[0]) / scale - x0, 1),
              round((fy0 - CANVAS_TOP_LEFT[1]) / scale - y0, 1)]
    ds = {"scale": scale, "offset": offset}
    for nid, (a, b, c, d) in screen_rectangles(nodes, ds).items():
        if not (c <= MINIMAP[0] or a >= MINIMAP[2] or d <= MINIMAP[1] or b >= MINIMAP[3]):
            raise ValueError(f"node {nid} would open under the minimap: move it or shorten its column")
    return ds


@functools.lru_cache(maxsize=1)
def _registry():
    """``omnisync_core.model.files``: the X-Dub files, their publishers, URLs and ComfyUI folders."""
    added = ROOT not in sys.path
    if added:
        sys.path.insert(0, ROOT)
    try:
        from omnisync_core.model import files
    finally:
        if added:
            sys.path.remove(ROOT)
    return files


@functools.lru_cache(maxsize=1)
def _core_template_models() -> Dict[str, dict]:
    with open(CORE_TEMPLATE_MODELS, encoding="utf-8") as f:
        return {m["name"]: m for models in json.load(f).values() for m in models}


def file_metadata(name: str) -> Optional[dict]:
    """The frontend's ``{name, url, directory}`` of a model file: the X-Dub registry's entry where it lists the
    file, else the one ComfyUI's own Wan templates give it; None for a folder (the frontend downloads files only)."""
    files = _registry()
    try:
        entry = files.xdub_file(name)
    except KeyError:
        return dict(_core_template_models()[name])
    return None if entry.is_folder else files.comfy_model_metadata(entry.key)


def model_metadata(n: Node) -> List[dict]:
    """``properties.models`` of a node: one entry per file its model widgets name."""
    names = [n.widgets[w] for w in MODEL_WIDGETS.get(n.type, ()) if w in n.widgets]
    return [m for m in map(file_metadata, names) if m is not None]


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
WAN21_FILES = {  # ComfyUI model folder -> file, as in ComfyUI's text_to_video_wan template
    "diffusion_models": "wan2.1_t2v_1.3B_fp16.safetensors",
    "text_encoders": "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
    "vae": "wan_2.1_vae.safetensors",
}
WAN22_MODEL = "wan2.2_ti2v_5B_fp16.safetensors"  # as in ComfyUI's video_wan2_2_5B_ti2v template


def xdub_name(key: str) -> str:
    """The published name of an X-Dub registry file (``omnisync_core.model.files``)."""
    return _registry().xdub_file(key).name


def file_note(names, header: str) -> str:
    """A note listing each file (or folder) the graph names: where it goes and where it comes from; a file whose
    address ends in another name (the speech encoders' ``model.safetensors``) says what to save it as."""
    lines = [header, ""]
    for name in names:
        meta = file_metadata(name)
        if meta is None:  # a folder of the X-Dub registry
            f = _registry().xdub_file(name)
            meta = {"name": name + "/", "url": f.url, "directory": f.directory}
        url = meta["url"].split("?")[0]
        rename = f" (save it as {meta['name']})" if url.rsplit("/", 1)[-1] != meta["name"].rstrip("/") else ""
        lines += [f"ComfyUI/models/{meta['directory']}/{meta['name']}", f"    from {url}{rename}"]
    return "\n".join(lines)


FILES_HEADER = ("Model files (not bundled; nothing is downloaded at run time): put each one where its line says, "
                "then press R. The Missing Models dialog lists each missing file with a Download button; a browser "
                "keeps the address's file name, so save a file whose line says \"save it as\" under that name.")
XDUB_BUNDLE_NOTE = ("The X-Dub bundle's whisper/large-v2.pt and wav2vec2-base-960h/ folder load in Load X-Dub Audio "
                    "Encoders instead of the two audio_encoders files (README).")


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

WAN21_NOTE = file_note(WAN21_FILES.values(), FILES_HEADER + f"\nThe OmniSync model ({MODEL_FILE}) and the speech "
                                                             "sample come with the plugin.")
BUNDLED_LIMITS_NOTE = "\n".join([
    "What the bundled OmniSync model can dub: the synthetic talking characters it was trained on (human-like, "
    "stylised and non-human heads, 128×128). On realistic faces it leaves the mouth almost unchanged or paints a "
    "cartoon mouth over the lips; the prompt below asks Wan for a cartoon character for that reason.",
    "",
    "Realistic people: open the template wan22_ti2v_then_xdub (Wan 2.2 TI2V-5B, dubbed with the X-Dub weights). "
    "X-Dub is not used here: it needs 25 fps video and the Wan 2.2 VAE, and Wan 2.1 1.3B makes 16 fps frames "
    "with the Wan 2.1 VAE.",
])


def wan_t2v_graph():
    # The Wan 2.1 part keeps the nodes and settings of ComfyUI's text_to_video_wan template
    # (comfyui-workflow-templates 0.1.94), packed into columns so the whole graph opens readable.
    _, speech = sample_inputs()
    return [
        *stack(0, 0,
               Node(70, NOTE, widgets={"text": WAN21_NOTE}, size=(460, 300), title="Wan 2.1 model files"),
               Node(71, NOTE, widgets={"text": BUNDLED_LIMITS_NOTE}, size=(460, 280),
                    title="Bundled model: synthetic characters only"),
               Node(37, "UNETLoader", widgets={"unet_name": WAN21_FILES["diffusion_models"], "weight_dtype": "default"},
                    size=(460, 82)),
               Node(38, "CLIPLoader", widgets={"clip_name": WAN21_FILES["text_encoders"], "type": "wan",
                                               "device": "default"}, size=(460, 106)),
               Node(39, "VAELoader", widgets={"vae_name": WAN21_FILES["vae"]}, size=(460, 60))),
        *stack(500, 0,
               Node(6, "CLIPTextEncode", widgets={"text": "a stylised 3D cartoon character with a round head talking "
                                                          "to the camera, head and shoulders, front view, plain light "
                                                          "background, static camera"},
                    links={"clip": (38, 0)}, size=(425, 164), title="CLIP Text Encode (Positive Prompt)"),
               Node(7, "CLIPTextEncode", widgets={"text": WAN_NEGATIVE}, links={"clip": (38, 0)}, size=(425, 180),
                    title="CLIP Text Encode (Negative Prompt)"),
               Node(40, "EmptyHunyuanLatentVideo", widgets={"width": 832, "height": 480, "length": 33, "batch_size": 1},
                    size=(425, 130))),
        *stack(965, 0,
               Node(48, "ModelSamplingSD3", widgets={"shift": 8.0}, links={"model": (37, 0)}, size=(315, 58)),
               Node(3, "KSampler", widgets={"seed": 82628696717253, "steps": 30, "cfg": 6.0, "sampler_name": "uni_pc",
                                            "scheduler": "simple", "denoise": 1.0},
                    links={"model": (48, 0), "positive": (6, 0), "negative": (7, 0), "latent_image": (40, 0)},
                    size=(315, 262)),
               Node(8, "VAEDecode", links={"samples": (3, 0), "vae": (39, 0)}, size=(315, 46)),
               Node(49, "CreateVideo", widgets={"fps": 16.0}, links={"images": (8, 0)}, size=(315, 78)),
               Node(50, "SaveVideo", widgets={"filename_prefix": "video/wan_t2v", "format": "auto", "codec": "auto"},
                    links={"video": (49, 0)}, size=(315, 330))),
        # OmniSync: dub the generated clip with a speech track
        *stack(1320, 0,
               Node(60, "LoadAudio", widgets={"audio": speech}, size=(320, 140)),
               Node(61, "OmniSyncModelLoader", widgets={"model_name": MODEL_FILE, "dtype": "auto", "offload": "none",
                                                       "resident_blocks": 0}, size=(320, 130)),
               Node(62, "OmniSyncWhisperLoader", widgets={"encoder_name": "bundled: whisper tiny.en"}, size=(320, 60)),
               Node(65, "OmniSyncGuidanceStrip", widgets={"frames": 8}, links={"guidance_map": (63, 2)},
                    size=(320, 60), title="Guidance map (8 frames)"),
               Node(66, "PreviewImage", links={"images": (65, 0)}, size=(320, 250))),
        *stack(1680, 0,
               Node(63, "OmniSyncLipSync",
                    widgets={"fps": 16.0, "length_mode": "follow_audio_pingpong", "tau": 0.92, "steps": STEPS,
                             "seed": 0, "omega_peak": 0.0, "mouth": "auto", "mouth_x": 0.5, "mouth_y": 0.62,
                             "window": WINDOW, "overlap": OVERLAP, "composite": False},
                    links={"model": (61, 0), "audio_encoder": (62, 0), "images": (8, 0), "audio": (60, 0),
                           "vae": (39, 0), "conditioning": (6, 0)}, size=(340, 480))),
        *stack(2060, 0,
               Node(64, "SaveVideo", widgets={"filename_prefix": "video/omnisync_wan", "format": "auto", "codec": "auto"},
                    links={"video": (63, 4)}, size=(420, 440))),
    ]


XDUB_KEYS = ("xdub_model", "wan22_vae", "umt5_comfy", "whisper", "wav2vec2")  # what a ComfyUI X-Dub graph names
XDUB_NOTE = file_note([xdub_name(k) for k in XDUB_KEYS],
                      FILES_HEADER + " " + XDUB_BUNDLE_NOTE + " Their licence is their owner's. GPU memory: "
                                     "ComfyUI loads what fits and casts the rest per call; weight_dtype fp8_e4m3fn on "
                                     "Load X-Dub Model halves the weights (README).")


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


def xdub_loaders(model_id: int, audio_id: int):
    """Load X-Dub Model and Load X-Dub Audio Encoders on the published files."""
    return (Node(model_id, "OmniSyncXDubModelLoader",
                 widgets=widget_defaults("OmniSyncXDubModelLoader", model_name=xdub_name("xdub_model")),
                 size=(340, 90)),
            Node(audio_id, "OmniSyncXDubAudioLoader", widgets={"whisper": xdub_name("whisper"),
                                                               "wav2vec2": xdub_name("wav2vec2")}, size=(340, 60)))


def xdub_graph():
    video, speech = sample_inputs()
    model, audio_encoders = xdub_loaders(7, 6)
    return [
        Node(30, NOTE, (0, -380), {"text": XDUB_NOTE}, size=(700, 300), title="X-Dub model files"),
        *stack(0, 0,
               Node(1, "LoadVideo", widgets={"file": video}, size=(300, 400)),
               Node(2, "GetVideoComponents", links={"video": (1, 0)}, size=(260, 70)),
               Node(3, "LoadAudio", widgets={"audio": speech}, size=(300, 140))),
        *stack(360, 0,
               Node(4, "OmniSyncFaceCrop", widgets=widget_defaults("OmniSyncFaceCrop", mode="point"),
                    links={"images": (2, 0)}, size=(340, 300)),
               Node(5, "VAELoader", widgets={"vae_name": xdub_name("wan22_vae")}, size=(340, 60)),
               audio_encoders),
        *stack(760, 0,
               model,
               Node(8, "CLIPLoader", widgets={"clip_name": xdub_name("umt5_comfy"), "type": "wan", "device": "default"},
                    size=(340, 106)),
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
                    links={"video": (14, 0)}, size=(420, 440))),
    ]


WAN22_NOTE = file_note([WAN22_MODEL, *(xdub_name(k) for k in XDUB_KEYS)],
                       FILES_HEADER + " " + XDUB_BUNDLE_NOTE + " One Load VAE (Wan 2.2) and one Load CLIP (umT5) "
                                      "serve both Wan and X-Dub. "
                                      "Comfy-Org's wan2.2_vae.safetensors (the VAE of ComfyUI's Wan 2.2 templates) "
                                      "also loads in Load VAE; X-Dub's reference code uses the bundle's file.")
WAN22_HOW = "\n".join([
    "Wan 2.2 TI2V-5B writes the clip from the prompt (settings of ComfyUI's video_wan2_2_5B_ti2v template; connect "
    "a Load Image to start_image for image-to-video), X-Dub dubs it with the speech in Load Audio.",
    "",
    "Face Crop: point mode, centred at 0.5 / 0.45 with a crop of 0.75 of the frame height, where the prompt puts "
    "the face; move point_x / point_y after the first run if your clip frames the face elsewhere.",
    "X-Dub runs at 25 fps: the 24 fps Wan frames are taken as 25 fps (4% faster), and the dubbed clip is as long "
    "as the speech (the frames played back and forth).",
])


def wan22_xdub_graph():
    """Wan 2.2 TI2V-5B text-to-video (core nodes), then X-Dub on the generated frames."""
    _, speech = sample_inputs()
    model, audio_encoders = xdub_loaders(20, 21)
    top = -430  # the row of notes, inputs and the output above the two halves
    return [
        Node(30, NOTE, (0, top), {"text": WAN22_NOTE}, size=(620, 370), title="Model files (Wan 2.2 + X-Dub)"),
        Node(31, NOTE, (660, top), {"text": WAN22_HOW}, size=(420, 370), title="How this graph works"),
        *stack(1120, top - TITLE_H, Node(22, "LoadAudio", widgets={"audio": speech}, size=(340, 140)), audio_encoders),
        *stack(1500, top - TITLE_H, model,
               Node(28, "CreateVideo", widgets={"fps": 25.0}, links={"images": (32, 0), "audio": (27, 3),
                                                                    "fps": (27, 4)}, size=(340, 80))),
        *stack(1880, top - TITLE_H,
               Node(29, "SaveVideo", widgets={"filename_prefix": "video/wan22_xdub", "format": "auto", "codec": "auto"},
                    links={"video": (28, 0)}, size=(420, 370))),
        # Wan 2.2 TI2V-5B
        *stack(0, 0,
               Node(37, "UNETLoader", widgets={"unet_name": WAN22_MODEL, "weight_dtype": "default"}, size=(400, 82)),
               Node(38, "CLIPLoader", widgets={"clip_name": xdub_name("umt5_comfy"), "type": "wan",
                                               "device": "default"}, size=(400, 106)),
               Node(39, "VAELoader", widgets={"vae_name": xdub_name("wan22_vae")}, size=(400, 60)),
               Node(55, "Wan22ImageToVideoLatent", widgets={"width": 1280, "height": 704, "length": 121,
                                                            "batch_size": 1},
                    links={"vae": (39, 0)}, size=(400, 150))),
        *stack(440, 0,
               Node(6, "CLIPTextEncode", widgets={"text": "A woman in her thirties talks to the camera in a bright, "
                                                          "quiet living room, medium close-up, her face centred in "
                                                          "the upper half of the frame, static camera, natural light."},
                    links={"clip": (38, 0)}, size=(430, 164), title="CLIP Text Encode (Positive Prompt)"),
               Node(7, "CLIPTextEncode", widgets={"text": WAN_NEGATIVE}, links={"clip": (38, 0)}, size=(430, 180),
                    title="CLIP Text Encode (Negative Prompt)"),
               Node(23, "CLIPTextEncode", widgets={"text": ""}, links={"clip": (38, 0)}, size=(430, 120),
                    title="CLIP Text Encode (X-Dub prompt: empty, as the reference)")),
        *stack(910, 0,
               Node(48, "ModelSamplingSD3", widgets={"shift": 8.0}, links={"model": (37, 0)}, size=(320, 58)),
               Node(3, "KSampler", widgets={"seed": 898471028164125, "steps": 20, "cfg": 5.0, "sampler_name": "uni_pc",
                                            "scheduler": "simple", "denoise": 1.0},
                    links={"model": (48, 0), "positive": (6, 0), "negative": (7, 0), "latent_image": (55, 0)},
                    size=(320, 262)),
               Node(8, "VAEDecode", links={"samples": (3, 0), "vae": (39, 0)}, size=(320, 46))),
        # X-Dub on the generated frames
        *stack(1270, 0,
               Node(24, "OmniSyncFaceCrop", widgets=widget_defaults("OmniSyncFaceCrop", mode="point"),
                    links={"images": (8, 0)}, size=(340, 300)),
               Node(25, "OmniSyncXDubEncode", widgets=widget_defaults("OmniSyncXDubEncode", fps=25.0),
                    links={"model": (20, 0), "vae": (39, 0), "audio_encoders": (21, 0), "crops": (24, 0),
                           "audio": (22, 0)}, size=(340, 150))),
        *stack(1650, 0,
               Node(26, "OmniSyncXDubSampler", widgets=widget_defaults("OmniSyncXDubSampler"),
                    links={"model": (20, 0), "latent": (25, 0), "conditioning": (23, 0)}, size=(340, 400))),
        *stack(2030, 0,
               Node(27, "OmniSyncXDubAssemble", links={"latent": (26, 0), "images": (8, 0), "face_crop": (24, 1)},
                    size=(340, 130)),
               Node(32, "OmniSyncFacePasteBack", widgets=widget_defaults("OmniSyncFacePasteBack"),
                    links={"images": (27, 1), "crops": (27, 0), "face_crop": (27, 2)}, size=(340, 100))),
    ]


GRAPHS = {
    "omnisync_lipsync_video": lipsync_video_graph,
    "omnisync_after_wan21_t2v": wan_t2v_graph,
    "xdub_lipsync_video": xdub_graph,
    "wan22_ti2v_then_xdub": wan22_xdub_graph,
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
              "xdub_lipsync_video": "X-Dub weights: lip-sync real footage (face crop, paste back)",
              "wan22_ti2v_then_xdub": "Wan 2.2 TI2V-5B text-to-video, then X-Dub lip-sync"}
    for name, make in GRAPHS.items():
        graph = make()
        ui = to_ui(graph, defs)  # raises before any file is written when a layout does not open readable
        with open(os.path.join(HERE, name + ".json"), "w", encoding="utf-8") as f:
            json.dump(ui, f, indent=1, ensure_ascii=False)
        os.makedirs(API_DIR, exist_ok=True)
        with open(os.path.join(API_DIR, name + "_api.json"), "w", encoding="utf-8") as f:
            json.dump(to_api(graph), f, indent=1, ensure_ascii=False)
        # <name>.jpg beside <name>.json is the card picture in ComfyUI's Templates menu.
        render_thumbnail(graph, defs, os.path.join(HERE, name + ".jpg"), titles[name])
        print("wrote", name)


if __name__ == "__main__":
    main()
