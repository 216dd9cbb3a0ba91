"""OmniSync Lip Sync (all-in-one): one node over ``omnisync_core.pipelines.omnisync.OmniSyncPipeline``: the same
stages, in the same order, as the split nodes."""

from __future__ import annotations

from comfy_api.latest import io

from omnisync_core.errors import OmniSyncError

from .bridge import (
    BUNDLED_MODEL_DOMAIN, CATEGORY, ComfyProgress, OmniSyncAudioEncoderType, OmniSyncModelType, audio_from_comfy,
    audio_to_comfy, comfy_cancel, format_report, load_for_sampling, make_video, pad_for_h264, pipeline_for,
    run_cancellable, sync_options, text_from_conditioning,
)
from .feedback import HIDDEN, Feedback
from .widgets import check_choices, shared_inputs


class OmniSyncLipSync(io.ComfyNode):
    DISPLAY_NAME = "OmniSync Lip Sync (all-in-one)"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="OmniSyncLipSync",
            display_name=cls.DISPLAY_NAME,
            category=CATEGORY,
            description=(
                "Lip-syncs a video to new speech in one node: Whisper features, progressive noise init (τ), DS-CFG "
                "sampling in overlapping windows, decode, optional composite. The separate OmniSync nodes run the "
                "same steps one by one and give the same frames. " + BUNDLED_MODEL_DOMAIN
            ),
            inputs=[
                OmniSyncModelType.Input("model", tooltip="From Load OmniSync Model."),
                OmniSyncAudioEncoderType.Input("audio_encoder", tooltip="From Load Whisper Audio Encoder."),
                io.Image.Input("images", tooltip="Source video frames (T, H, W, 3)."),
                io.Audio.Input("audio", tooltip="Target speech (any sample rate, mono or stereo)."),
                *shared_inputs("fps", "length_mode", "tau", "steps", "seed", "omega_peak", "mouth", "mouth_x",
                               "mouth_y", "window", "overlap", "composite", "cfg_cutoff", "vae", "conditioning",
                               "mouth_mask"),
            ],
            outputs=[
                io.Image.Output(display_name="images", tooltip="Lip-synced frames (T, H, W, 3)."),
                io.Audio.Output(display_name="audio", tooltip="The speech matched to the output length (16 kHz mono)."),
                io.Mask.Output(display_name="guidance_map",
                               tooltip="DS-CFG guidance map per frame (T, H, W) in [0, 1]."),
                io.Float.Output(display_name="fps", tooltip="Frame rate of the output."),
                io.Video.Output(display_name="video", tooltip="Frames + speech as a VIDEO (connect to Save Video)."),
                io.String.Output(display_name="report", tooltip="Run report (JSON)."),
            ],
            hidden=list(HIDDEN),
        )

    @classmethod
    def execute(cls, model, audio_encoder, images, audio, fps, length_mode, tau, steps, seed, omega_peak, mouth,
                mouth_x, mouth_y, window, overlap, composite, cfg_cutoff=-1.0, vae=None, conditioning=None,
                mouth_mask=None) -> io.NodeOutput:
        from omnisync_core.model.codec import codec_from_spec

        check_choices(cls, length_mode=length_mode, mouth=mouth)
        if mouth == "mask" and mouth_mask is None:
            raise OmniSyncError("mouth = mask needs a MASK connected to mouth_mask (or choose auto / point).")
        report = {"warnings": []}
        feedback = Feedback(cls, cls.DISPLAY_NAME, report)
        wave, sr, audio_report = audio_from_comfy(audio)
        text, warning = text_from_conditioning(conditioning, model)
        opts, chosen = sync_options(
            model, feedback.warn, tau=tau, num_steps=steps, seed=seed, omega_peak=omega_peak,
            mouth=(mouth_x, mouth_y) if mouth == "point" else "auto",
            mouth_mask=mouth_mask if mouth == "mask" else None,
            window=window, overlap=overlap, cfg_cutoff=cfg_cutoff, length_mode=length_mode, composite=composite,
            text=text,
        )
        pipe = pipeline_for(model, codec_from_spec(model.codec_spec, vae=vae), audio_encoder)
        load_for_sampling(model)
        if warning:
            feedback.warn(warning)
        if "batch" in audio_report:
            feedback.warn(audio_report["batch"] + ".")
        result = run_cancellable(pipe, images, fps, wave, sr, opts, progress=ComfyProgress(), cancel=comfy_cancel,
                                 on_warning=feedback.warn)
        report.update({k: v for k, v in result.report.items() if k != "warnings"}, audio_input=audio_report,
                      options=chosen)
        frames = result.frames.float().cpu().contiguous()
        video_frames = pad_for_h264(frames, report, feedback.warn)
        out_audio = audio_to_comfy(result.waveform, result.sample_rate)
        fps_out = float(result.fps)
        return io.NodeOutput(frames, out_audio, result.guidance_map.clamp(0, 1), fps_out,
                             make_video(video_frames, out_audio, result.fps), format_report(report))
