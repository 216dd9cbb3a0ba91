"""OmniSync: mask-free lip synchronisation with a flow-matching diffusion transformer.

A plain PyTorch library: it never imports ComfyUI. See ``docs/DESIGN.md`` for the module map.
"""

__version__ = "0.1.0"
