"""Fake of ``comfy_api.latest`` (ComfyUI 0.3.64): the V3 node API (``io``), ``ComfyExtension``, and the video
types Save Video consumes (``InputImpl.VideoFromComponents``, ``Types.VideoComponents``)."""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

from . import _io as io  # noqa: F401  (the real package exposes the class namespace _IO under this name)


class ComfyExtension(ABC):
    async def on_load(self) -> None:
        """Called when an extension is loaded."""

    @abstractmethod
    async def get_node_list(self) -> list:
        """The node classes this extension provides."""


@dataclass
class VideoComponents:
    images: object
    frame_rate: Fraction
    audio: Optional[dict] = None
    metadata: Optional[dict] = None


class VideoFromComponents:
    def __init__(self, components: VideoComponents):
        self._components = components

    def get_components(self) -> VideoComponents:
        return self._components

    def get_dimensions(self):
        return self._components.images.shape[2], self._components.images.shape[1]


class InputImpl:
    VideoFromComponents = VideoFromComponents


class Types:
    VideoComponents = VideoComponents
