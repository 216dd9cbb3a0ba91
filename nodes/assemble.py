"""OmniSync Video Assemble: decode, crop the padding back, optional composite → IMAGE, AUDIO, fps, VIDEO."""

from __future__ import annotations

from omnisync_core.errors import OmniSyncError

from .bridge import CATEGORY, audio_to_comfy, format_report, log, make_video, pad_for_h264


class OmniSyncVideoAssemble:
    DESCRIPTION = (
        "Decodes the sampled latents to frames, removes the padding added for the model, optionally keeps "
        "every pixel outside the mouth identical to the source, and pairs the frames with the matched speech "
        "as IMAGE + AUDIO + fps and as a VIDEO for Save Video. An odd width or height is padded to even "
        "(the last row/column repeated, said in the report), as H.264 needs."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "AUDIO", "FLOAT", "VIDEO", "STRING")
    RETURN_NAMES = ("images", "audio", "fps", "video", "report")
    OUTPUT_TOOLTIPS = (
        "Lip-synced frames (T, H, W, 3), H and W even.",
        "The speech matched to the output length.",
        "Frame rate of the output (the fps given to Audio Encode).",
        "Frames + speech as a VIDEO (connect to Save Video).",
        "Run report (JSON).",
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
        from omnisync_core.pipeline import assemble

        if not latent.denoised:
            raise OmniSyncError("this latent has not been sampled yet; connect the output of OmniSync DS-CFG Sampler.")
        T = latent.num_frames
        frames = assemble(latent.codec, latent.latents, latent.video, latent.fallback_frames, latent.mouth_centres,
                          composite=composite, composite_radius=composite_radius, composite_feather_px=feather_px)
        report = {"frames": T}
        if latent.fallback_frames:
            report["fallback_frames"] = latent.fallback_frames  # no mouth located: source pixels kept
        if composite:
            report["composite"] = {"radius": composite_radius, "feather_px": feather_px}
        frames, report = pad_for_h264(frames, report, "OmniSync Video Assemble")
        frames = frames.contiguous()  # padding may leave a view
        if omnisync_audio.num_frames != T:
            raise OmniSyncError(
                f"the audio covers {omnisync_audio.num_frames} frames but the video has {T}; connect the same "
                "OmniSync Audio Encode output to Noise Init, the Sampler and Assemble."
            )
        audio = audio_to_comfy(omnisync_audio.waveform, omnisync_audio.sample_rate)
        fps = float(omnisync_audio.fps)
        report["sampler"] = latent.report
        return (frames, audio, fps, make_video(frames, audio, fps), format_report(report))
