"""The core is a plain PyTorch library: importing all of it must not load any ComfyUI module."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CORE_MODULES = [
    "omnisync_core",
    "omnisync_core.pipelines.omnisync",
    "omnisync_core.cli",
    "omnisync_core.model.dit",
    "omnisync_core.model.checkpoint",
    "omnisync_core.model.codec",
    "omnisync_core.audio.whisper",
    "omnisync_core.sampling.sampler",
    "omnisync_core.sampling.xdub",
    "omnisync_core.pipelines.xdub",
    "omnisync_core.cli.xdub",
    "omnisync_core.model.wan22_vae",
]


def test_core_imports_no_comfyui_module():
    code = (
        "import importlib, sys\n"
        f"for m in {CORE_MODULES!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('comfy', 'comfy_api', 'comfy_extras', 'folder_paths', 'nodes', 'server'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"core pulled in ComfyUI modules: {out.stdout}"


def test_core_source_has_no_comfyui_import():
    offenders = []
    for dirpath, _, files in os.walk(os.path.join(ROOT, "omnisync_core")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                for line in open(path, encoding="utf-8"):
                    s = line.strip()
                    if s.startswith(("import comfy", "from comfy", "import folder_paths", "from folder_paths")):
                        offenders.append(f"{path}: {s}")
    assert offenders == []
