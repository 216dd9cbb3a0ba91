"""ComfyUI entry point: registers the OmniSync nodes when loaded by ComfyUI (``comfy_entrypoint``, the V3 node
API), serves its frontend extension (``nodes/web/``: a validation error about a missing model file names the
file's source and folder), and puts the bundled samples where the example workflows expect them (ComfyUI's input
folder, never overwriting a file).

``omnisync_core`` never imports this file, and this file registers nothing outside ComfyUI (when
``folder_paths`` cannot be imported), so the library and its CLI work without ComfyUI.
"""

import importlib.util
import os
import sys

# The frontend extension (nodes/web/): validation errors about a missing model file name its source and folder.
WEB_DIRECTORY = "./nodes/web"

if __package__ and importlib.util.find_spec("folder_paths") is not None:
    # ComfyUI loads custom nodes by file path, so the plugin folder is not on sys.path; the nodes
    # import the library as the top-level package `omnisync_core` (as a pip install would provide).
    _HERE = os.path.dirname(os.path.abspath(__file__))
    if importlib.util.find_spec("omnisync_core") is None:
        sys.path.append(_HERE)
    from .nodes import comfy_entrypoint
    from .nodes.loaders import copy_samples_to_input

    copy_samples_to_input()  # the example workflows name them; core Load Video / Load Audio read input/

    __all__ = ["comfy_entrypoint", "WEB_DIRECTORY"]
