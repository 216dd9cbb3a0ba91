"""ComfyUI entry point: registers the OmniSync nodes when loaded by ComfyUI; nothing else.

``omnisync_core`` never imports this file, and this file registers nothing outside ComfyUI (when
``folder_paths`` cannot be imported), so the library and its CLI work without ComfyUI.
"""

import importlib.util
import os
import sys

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}

if __package__ and importlib.util.find_spec("folder_paths") is not None:
    # ComfyUI loads custom nodes by file path, so the plugin folder is not on sys.path; the nodes
    # import the library as the top-level package `omnisync_core` (as a pip install would provide).
    _HERE = os.path.dirname(os.path.abspath(__file__))
    if importlib.util.find_spec("omnisync_core") is None:
        sys.path.append(_HERE)
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: F811

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
