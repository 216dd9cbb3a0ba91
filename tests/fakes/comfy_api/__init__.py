"""Fake ``comfy_api`` (ComfyUI 0.3.64): only ``comfy_api.latest``, the V3 node API the OmniSync nodes use."""
