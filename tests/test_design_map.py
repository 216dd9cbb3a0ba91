"""docs/DESIGN.md cannot drift silently: its module map lists every module (and only modules that exist), and
the defaults it and the README state are the dataclasses' defaults."""

import ast
import dataclasses
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DESIGN = open(os.path.join(ROOT, "docs", "DESIGN.md"), encoding="utf-8").read()
README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
PACKAGES = ("omnisync_core", "nodes")


def design_map():
    """The module map of DESIGN.md's "Layers" section, in layer order: ["omnisync_core/io/fps.py", ...]."""
    section = DESIGN[DESIGN.index("## Layers"):]
    block = section[section.index("```\n") + 4:]
    block = block[:block.index("```")]
    entries, root = [], None
    for line in block.splitlines():
        top = re.match(r"^(\w+)/(\s|$)", line)
        if top:
            root = top.group(1)
            continue
        entry = re.match(r"^  (\S+\.py)(\s{2,}|$)", line)
        if entry:
            assert root is not None, f"map entry before its package: {line!r}"
            entries.append(f"{root}/{entry.group(1)}")
    return entries


def _docstring_only(path):
    body = ast.parse(open(path, encoding="utf-8").read()).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
               for n in body)


def source_modules():
    """Every module of the packages, as repository paths; a package __init__.py with only a docstring is not a module
    the map needs to name."""
    found = []
    for package in PACKAGES:
        for dirpath, dirnames, files in os.walk(os.path.join(ROOT, package)):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    if name == "__init__.py" and _docstring_only(path):
                        continue
                    found.append(os.path.relpath(path, ROOT).replace(os.sep, "/"))
    return sorted(found)


def test_the_map_parser_reads_entries_and_continuations():
    entries = design_map()
    assert entries[:2] == ["omnisync_core/__init__.py", "omnisync_core/errors.py"] and "nodes/bridge.py" in entries
    assert not any(" " in e for e in entries)
    assert len(entries) == len(set(entries)), "a module is listed twice"


def test_every_module_is_in_the_design_map():
    missing = sorted(set(source_modules()) - set(design_map()))
    assert missing == [], f"add these to docs/DESIGN.md's module map (Layers): {missing}"


def test_every_map_entry_names_a_module_that_exists():
    stale = sorted(set(design_map()) - set(source_modules()))
    assert stale == [], f"docs/DESIGN.md's module map names modules that do not exist: {stale}"


# -- defaults --------------------------------------------------------------------------------------------

def _documented_defaults(text, name):
    """``name(field=value, ...)`` as written in the docs → {field: value} for the top-level arguments whose value
    is a plain literal (``window=16 (0 = whole clip)`` → 16; ``mouth="auto" | (x, y)`` → "auto")."""
    start = text.find(name + "(")
    assert start >= 0, f"{name}(...) is not in the text"
    i, depth, pieces, current = start + len(name) + 1, 1, [], ""
    while depth:
        ch = text[i]
        depth += (ch == "(") - (ch == ")")
        if depth == 1 and ch == ",":
            pieces.append(current)
            current = ""
        elif depth:
            current += ch
        i += 1
    pieces.append(current)
    out = {}
    for piece in pieces:
        m = re.match(r"\s*(\w+)=(.*)", piece, flags=re.S)
        if not m:
            continue
        value = re.split(r"\s+\(|\s*\|", m.group(2).strip())[0].strip()
        try:
            out[m.group(1)] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            continue
    return out


def _dataclass_defaults(cls):
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
    return out


def _classes():
    from omnisync_core.audio.features import AudioFeatureSpec
    from omnisync_core.model.unet import UNetConfig
    from omnisync_core.sampling.guidance import GuidanceConfig
    from omnisync_core.sampling.options import SyncOptions
    from omnisync_core.sampling.xdub import XDubOptions

    return {"SyncOptions": SyncOptions, "GuidanceConfig": GuidanceConfig, "XDubOptions": XDubOptions,
            "UNetConfig": UNetConfig, "AudioFeatureSpec": AudioFeatureSpec}


@pytest.mark.parametrize("name", ["SyncOptions", "GuidanceConfig", "XDubOptions", "UNetConfig", "AudioFeatureSpec"])
def test_design_defaults_are_the_dataclass_defaults(name):
    cls = _classes()[name]
    documented = _documented_defaults(DESIGN, f"`{name}")
    actual = _dataclass_defaults(cls)
    assert len(documented) >= 3, f"too few defaults read from DESIGN.md's {name}(...): {documented}"
    wrong = {k: (v, actual.get(k, "no such field")) for k, v in documented.items()
             if k not in actual or (isinstance(v, list) and tuple(v) != tuple(actual[k]))
             or (not isinstance(v, list) and v != actual[k])}
    assert wrong == {}, f"DESIGN.md's {name} defaults differ from the code (documented, actual): {wrong}"


def test_design_nested_guidance_defaults():
    """The GuidanceConfig inside SyncOptions (cfg_cutoff from DEFAULT_CFG_CUTOFF) and XDubOptions (the reference's)."""
    from omnisync_core.sampling.options import DEFAULT_CFG_CUTOFF, SyncOptions
    from omnisync_core.sampling.xdub import XDubOptions

    assert SyncOptions().guidance.cfg_cutoff == DEFAULT_CFG_CUTOFF
    assert f"DEFAULT_CFG_CUTOFF = {DEFAULT_CFG_CUTOFF:g}" in DESIGN
    a = XDubOptions().audio
    documented = _documented_defaults(DESIGN, "audio=GuidanceConfig")
    assert documented == {"omega_base": a.omega_base, "omega_peak": a.omega_peak, "sigma_spatial": a.sigma_spatial,
                          "gamma": a.gamma}


def test_readme_states_the_code_defaults():
    """The README's sentences of defaults, for both families, against the dataclasses."""
    from omnisync_core.sampling.options import SyncOptions
    from omnisync_core.sampling.xdub import XDubOptions

    d, x = SyncOptions(), XDubOptions()
    g = d.guidance
    assert (f"the paper's default ({d.num_steps} steps, τ = {d.tau:g}, ω_peak {g.omega_peak:g}, γ {g.gamma:g}) and "
            f"windows of {d.window} latent frames sharing {d.overlap}") in re.sub(r"\s+", " ", README)
    text = re.sub(r"\s+", " ", README)
    assert (f"The defaults are the reference's: {x.num_steps} steps, shift {x.shift:g}, reference CFG "
            f"{x.ref_cfg_scale:g}") in text
    assert f"speech CFG {x.audio.omega_peak:g}·σ^{x.audio.gamma:g}, τ = {x.tau:g}" in text
