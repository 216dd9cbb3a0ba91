"""OmniSync Video Assemble: decode, crop the padding back, optional composite → IMAGE, AUDIO, fps, VIDEO."""

from __future__ import annotations

from comfy_api.latest import io

from omnisync_core.errors import OmniSyncError
from omnisync_core.sampling.options import SyncOptions

from .bridge import (
    CATEGORY, OmniSyncAudioType, OmniSyncLatentType, all_warnings, audio_to_comfy, format_report, make_video,
    pad_for_h264,
)
from .feedback import HIDDEN, Feedback
from .widgets import shared_inputs


class OmniSyncVideoAssemble(io.ComfyNode):
    DISPLAY_NAME = "OmniSync Video Assemble"

    @classmethod
    def define_schema(cls) -> io.Schema:
        d = SyncOptions()
        return io.Schema(
            node_id="OmniSyncVideoAssemble",
            display_name=cls.DISPLAY_NAME,
            category=CATEGORY,
            description=(
                "Decodes the sampled latents to frames, removes the padding added for the model, optionally keeps "
                "every pixel outside the mouth identical to the source, and pairs the frames with the matched "
                "speech as IMAGE + AUDIO + fps and as a VIDEO for Save Video. IMAGE keeps the source's exact size; "
                "for an odd width or height the VIDEO output is padded to even (the last row/column repeated, "
                "warned), as H.264 needs."
            ),
            inputs=[
                OmniSyncLatentType.Input("latent", tooltip="From OmniSync DS-CFG Sampler."),
                OmniSyncAudioType.Input("omnisync_audio", tooltip="From OmniSync Audio Encode (speech and fps)."),
                *shared_inputs("composite"),
                io.Float.Input("composite_radius", default=d.composite_radius, min=0.01, max=1.0, step=0.01,
                               tooltip="Radius of the edited disc around the mouth, as a fraction of the shorter "
                                       "frame side."),
                io.Float.Input("feather_px", default=d.composite_feather_px, min=0.0, max=64.0, step=0.5,
                               tooltip="Soft edge of the composite mask in pixels (0 = hard edge)."),
            ],
            outputs=[
                io.Image.Output(display_name="images", tooltip="Lip-synced frames (T, H, W, 3) at the source's size."),
                io.Audio.Output(display_name="audio", tooltip="The speech matched to the output length."),
                io.Float.Output(display_name="fps",
                                tooltip="Frame rate of the output (the fps given to Audio Encode)."),
                io.Video.Output(display_name="video", tooltip="Frames + speech as a VIDEO (connect to Save Video)."),
                io.String.Output(display_name="report", tooltip="Run report (JSON): every warning of the chain (length "
                                                                "matching, padding, frames passed through)."),
            ],
            hidden=list(HIDDEN),
        )

    @classmethod
    def execute(cls, latent, omnisync_audio, composite, composite_radius, feather_px) -> io.NodeOutput:
        from omnisync_core.pipelines.omnisync import assemble

        if not latent.denoised:
            raise OmniSyncError("this latent has not been sampled yet; connect the output of OmniSync DS-CFG Sampler.")
        T = latent.num_frames
        if omnisync_audio.num_frames != T:
            raise OmniSyncError(
                f"the audio covers {omnisync_audio.num_frames} frames but the video has {T}; connect the same "
                "OmniSync Audio Encode output to Noise Init, the Sampler and Assemble."
            )
        frames = assemble(latent.codec, latent.latents, latent.video, latent.fallback_frames, latent.mouth_centres,
                          composite=composite, composite_radius=composite_radius, composite_feather_px=feather_px)
        sampler = latent.report or {}
        report = {"frames": T, "warnings": all_warnings(omnisync_audio.report, sampler.get("noise_init"), sampler)}
        feedback = Feedback(cls, cls.DISPLAY_NAME, report)
        if latent.fallback_frames:
            report["fallback_frames"] = latent.fallback_frames  # no mouth found: source pixels kept (the sampler warned)
        if composite:
            report["composite"] = {"radius": composite_radius, "feather_px": feather_px}
        video_frames = pad_for_h264(frames, report, feedback.warn)
        frames = frames.contiguous()
        audio = audio_to_comfy(omnisync_audio.waveform, omnisync_audio.sample_rate)
        report["sampler"] = latent.report
        return io.NodeOutput(frames, audio, float(omnisync_audio.fps),
                             make_video(video_frames, audio, omnisync_audio.fps), format_report(report))
