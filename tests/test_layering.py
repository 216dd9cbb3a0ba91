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
    "omnisync_core.cli.common",
    "omnisync_core.cli.omnisync",
    "omnisync_core.cli.training",
    "omnisync_core.pipelines.checks",
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


# -- the import graph against DESIGN.md's layer order ------------------------------------------------------


def _module_name(path):
    """"omnisync_core/io/files.py" → "omnisync_core.io.files" ("…/__init__.py" → the package)."""
    name = path[:-3].replace("/", ".")
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def import_graph():
    """{module: {modules of omnisync_core / nodes it imports}} from every import statement in the source (those
    inside functions too: a lazy import is still a dependency), relative imports resolved."""
    import ast

    from test_design_map import source_modules

    modules = {_module_name(p): p for p in source_modules()}
    packages = set()
    for package in ("omnisync_core", "nodes"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, package)):
            if "__init__.py" in files:
                packages.add(os.path.relpath(dirpath, ROOT).replace(os.sep, "."))
    graph = {}
    for name, path in modules.items():
        is_package = path.endswith("__init__.py")
        base = name.split(".") if is_package else name.split(".")[:-1]
        edges = set()
        for node in ast.walk(ast.parse(open(os.path.join(ROOT, path), encoding="utf-8").read())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parent = base[: len(base) - (node.level - 1)]
                    target = ".".join(parent + ([node.module] if node.module else []))
                else:
                    target = node.module
                targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in modules or f"{target}.{a.name}" in packages
                           else target for a in node.names]
            else:
                continue
            edges.update(t for t in targets if t in modules and t != name)
        graph[name] = edges
    return graph


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_relative_lazy_and_package_imports():
    graph = import_graph()
    assert "omnisync_core.cli.common" in graph["omnisync_core.cli.omnisync"]  # from .common import ...
    assert "omnisync_core.cli.xdub" in graph["omnisync_core.cli"]  # from . import omnisync, training, xdub
    assert "omnisync_core.image.pictures" in graph["omnisync_core.api"]  # inside a function
    assert "nodes.bridge" in graph["nodes.lipsync"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert _cycles(import_graph()) == []


def test_every_import_points_down_the_layer_order():
    """A module imports only modules listed above it in docs/DESIGN.md's module map."""
    from test_design_map import design_map

    order = {_module_name(p): i for i, p in enumerate(design_map())}
    upward = sorted(f"{a} -> {b}" for a, targets in import_graph().items() for b in targets
                    if a in order and b in order and order[b] >= order[a])
    assert upward == [], "imports that point up DESIGN.md's layer order (move the module, or the helper down): " + \
        ", ".join(upward)
