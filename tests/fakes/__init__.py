"""Fakes of the few ComfyUI modules the nodes touch (folder_paths, comfy, comfy_api.latest, server), installed only
for node tests.

``comfy_fakes(tmp)`` puts this folder first on sys.path, points the fake models dir at ``tmp`` and,
on exit, removes the path and every fake / node module again, so core tests never see them.
"""

import contextlib
import os
import sys

FAKES = os.path.dirname(os.path.abspath(__file__))
FAKE_TOPS = ("folder_paths", "comfy", "comfy_api", "server")


def _drop_modules():
    for name in list(sys.modules):
        top = name.split(".")[0]
        if top in FAKE_TOPS or top == "nodes":
            del sys.modules[name]


@contextlib.contextmanager
def comfy_fakes(base_dir):
    _drop_modules()
    sys.path.insert(0, FAKES)
    try:
        import folder_paths

        folder_paths.set_base(str(base_dir))
        yield
    finally:
        sys.path.remove(FAKES)
        _drop_modules()


def reset_fake_state():
    """Clear what the fakes record across calls: progress updates, the progress hook, the interrupt flag."""
    import comfy.model_management as mm
    import comfy.utils as cu

    cu.UPDATES.clear()
    cu.HOOK = None
    mm.interrupt_processing = False


@contextlib.contextmanager
def fresh_model_management():
    """The fake ``comfy.model_management`` with no model loaded and no forced low-VRAM budget, reset again on exit
    (a test sets ``LOWVRAM_MODEL_MEMORY`` to force partial loading). Yields the module."""
    import comfy.model_management as mm

    mm.current_loaded_models.clear()
    mm.LOWVRAM_MODEL_MEMORY = 0
    try:
        yield mm
    finally:
        mm.current_loaded_models.clear()
        mm.LOWVRAM_MODEL_MEMORY = 0
