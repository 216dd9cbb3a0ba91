"""OmniSync Video Assemble: decode, crop the padding back, optional composite → IMAGE, AUDIO, fps, VIDEO."""

from __future__ import annotations

from omnisync_core.errors import OmniSyncError

from .bridge import CATEGORY, all_warnings, audio_to_comfy, format_report, make_video, pad_for_h264


class OmniSyncVideoAssemble:
    DESCRIPTION = (
        "Decodes the sampled latents to frames, removes the padding added for the model, optionally keeps "
        "every pixel outside the mouth identical to the source, and pairs the frames with the matched speech "
        "as IMAGE + AUDIO + fps and as a VIDEO for Save Video. IMAGE keeps the source's exact size; for an odd "
        "width or height the VIDEO output is padded to even (the last row/column repeated, warned), as "
        "H.264 needs."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "AUDIO", "FLOAT", "VIDEO", "STRING")
    RETURN_NAMES = ("images", "audio", "fps", "video", "report")
    OUTPUT_TOOLTIPS = (
        "Lip-synced frames (T, H, W, 3) at the source's size.",
        "The speech matched to the output length.",
        "Frame rate of the output (the fps given to Audio Encode).",
        "Frames + speech as a VIDEO (connect to Save Video).",
        "Run report (JSON): every warning of the chain (length matching, padding, frames passed through).",
    )
    FUNCTION = "assemble"

    @classmethod
    def INPUT_TYPES(cls):
        from omnisync_core.sampling.options import SyncOptions

        d = SyncOptions()
        return {
            "required": {
                "latent": ("OMNISYNC_LATENT", {"tooltip": "From OmniSync DS-CFG Sampler."}),
                "omnisync_audio": ("OMNISYNC_AUDIO", {"tooltip": "From OmniSync Audio Encode (speech and fps)."}),
                "composite": ("BOOLEAN", {
                    "default": d.composite,
                    "tooltip": "Keep every pixel outside a feathered disc around the mouth identical to the source.",
                }),
                "composite_radius": ("FLOAT", {
                    "default": d.composite_radius, "min": 0.01, "max": 1.0, "step": 0.01,
                    "tooltip": "Radius of the edited disc around the mouth, as a fraction of the shorter frame side.",
                }),
                "feather_px": ("FLOAT", {
                    "default": d.composite_feather_px, "min": 0.0, "max": 64.0, "step": 0.5,
                    "tooltip": "Soft edge of the composite mask in pixels (0 = hard edge).",
                }),
            },
        }

    def assemble(self, latent, omnisync_audio, composite, composite_radius, feather_px):
        from omnisync_core.pipelines.omnisync import assemble

        if not latent.denoised:
            raise OmniSyncError("this latent has not been sampled yet; connect the output of OmniSync DS-CFG Sampler.")
        T = latent.num_frames
        frames = assemble(latent.codec, latent.latents, latent.video, latent.fallback_frames, latent.mouth_centres,
                          composite=composite, composite_radius=composite_radius, composite_feather_px=feather_px)
        sampler = latent.report or {}
        report = {"frames": T, "warnings": all_warnings(omnisync_audio.report, sampler.get("noise_init"), sampler)}
        if latent.fallback_frames:
            report["fallback_frames"] = latent.fallback_frames  # no mouth located: source pixels kept
        if composite:
            report["composite"] = {"radius": composite_radius, "feather_px": feather_px}
        video_frames = pad_for_h264(frames, report, "OmniSync Video Assemble")
        frames = frames.contiguous()
        if omnisync_audio.num_frames != T:
            raise OmniSyncError(
                f"the audio covers {omnisync_audio.num_frames} frames but the video has {T}; connect the same "
                "OmniSync Audio Encode output to Noise Init, the Sampler and Assemble."
            )
        audio = audio_to_comfy(omnisync_audio.waveform, omnisync_audio.sample_rate)
        fps = float(omnisync_audio.fps)
        report["sampler"] = latent.report
        return (frames, audio, fps, make_video(video_frames, audio, fps), format_report(report))
