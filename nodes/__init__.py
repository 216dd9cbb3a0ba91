"""ComfyUI nodes for OmniSync: thin adapters over ``omnisync_core`` (category ``OmniSync``)."""

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

NODE_CLASS_MAPPINGS = {
    "OmniSyncModelLoader": OmniSyncModelLoader,
    "OmniSyncWhisperLoader": OmniSyncWhisperLoader,
    "OmniSyncAudioEncode": OmniSyncAudioEncode,
    "OmniSyncNoiseInit": OmniSyncNoiseInit,
    "OmniSyncSampler": OmniSyncSampler,
    "OmniSyncVideoAssemble": OmniSyncVideoAssemble,
    "OmniSyncLipSync": OmniSyncLipSync,
    "OmniSyncGuidanceStrip": OmniSyncGuidanceStrip,
    "OmniSyncFaceCrop": OmniSyncFaceCrop,
    "OmniSyncFacePasteBack": OmniSyncFacePasteBack,
    "OmniSyncXDubModelLoader": OmniSyncXDubModelLoader,
    "OmniSyncXDubAudioLoader": OmniSyncXDubAudioLoader,
    "OmniSyncXDubEncode": OmniSyncXDubEncode,
    "OmniSyncXDubSampler": OmniSyncXDubSampler,
    "OmniSyncXDubAssemble": OmniSyncXDubAssemble,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "OmniSyncModelLoader": "Load OmniSync Model",
    "OmniSyncWhisperLoader": "Load Whisper Audio Encoder",
    "OmniSyncAudioEncode": "OmniSync Audio Encode",
    "OmniSyncNoiseInit": "OmniSync Noise Init (flow matching)",
    "OmniSyncSampler": "OmniSync DS-CFG Sampler",
    "OmniSyncVideoAssemble": "OmniSync Video Assemble",
    "OmniSyncLipSync": "OmniSync Lip Sync (all-in-one)",
    "OmniSyncGuidanceStrip": "OmniSync Guidance Strip",
    "OmniSyncFaceCrop": "OmniSync Face Crop",
    "OmniSyncFacePasteBack": "OmniSync Face Paste Back",
    "OmniSyncXDubModelLoader": "Load X-Dub Model",
    "OmniSyncXDubAudioLoader": "Load X-Dub Audio Encoders",
    "OmniSyncXDubEncode": "X-Dub Encode (Wan 2.2 VAE)",
    "OmniSyncXDubSampler": "X-Dub Sampler",
    "OmniSyncXDubAssemble": "X-Dub Assemble",
}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
