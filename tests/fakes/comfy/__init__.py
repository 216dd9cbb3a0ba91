"""Fake ``comfy`` package for node tests (ComfyUI is not installed in CI)."""
