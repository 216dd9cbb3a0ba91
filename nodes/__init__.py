"""ComfyUI nodes for OmniSync: thin adapters over ``omnisync_core`` (category ``OmniSync``), in ComfyUI's V3
schema (``comfy_api.latest.io``). ComfyUI loads them through :func:`comfy_entrypoint`."""

from comfy_api.latest import ComfyExtension, io

from .assemble import OmniSyncVideoAssemble
from .audio import OmniSyncAudioEncode
from .facecrop import OmniSyncFaceCrop, OmniSyncFacePasteBack
from .lipsync import OmniSyncLipSync
from .loaders import OmniSyncModelLoader, OmniSyncWhisperLoader
from .preview import OmniSyncGuidanceStrip
from .sampling import OmniSyncNoiseInit, OmniSyncSampler
from .xdub import (
    OmniSyncXDubAssemble, OmniSyncXDubAudioLoader, OmniSyncXDubEncode, OmniSyncXDubModelLoader, OmniSyncXDubSampler,
)

NODES = [  # the order of the Add Node menu
    OmniSyncModelLoader,
    OmniSyncWhisperLoader,
    OmniSyncAudioEncode,
    OmniSyncNoiseInit,
    OmniSyncSampler,
    OmniSyncVideoAssemble,
    OmniSyncLipSync,
    OmniSyncGuidanceStrip,
    OmniSyncFaceCrop,
    OmniSyncFacePasteBack,
    OmniSyncXDubModelLoader,
    OmniSyncXDubAudioLoader,
    OmniSyncXDubEncode,
    OmniSyncXDubSampler,
    OmniSyncXDubAssemble,
]


class OmniSyncExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


async def comfy_entrypoint() -> OmniSyncExtension:
    return OmniSyncExtension()


__all__ = ["NODES", "comfy_entrypoint"]
