"""Fake ``comfy_api`` (the video types Save Video consumes)."""
