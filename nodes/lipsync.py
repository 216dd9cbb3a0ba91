"""OmniSync Lip Sync (all-in-one): one node over ``omnisync_core.pipelines.omnisync.OmniSyncPipeline``: the same
stages, in the same order, as the split nodes."""

from __future__ import annotations

from omnisync_core.errors import OmniSyncError
from omnisync_core.sampling.mouth import DEFAULT_MOUTH_CENTRE
from omnisync_core.sampling.options import SyncOptions
from omnisync_core.length import LENGTH_MODES

from .bridge import (
    CATEGORY, ComfyProgress, audio_from_comfy, audio_to_comfy, comfy_cancel, format_report, load_for_sampling,
    make_video, node_warner,
    pad_for_h264, pipeline_for, run_cancellable, sync_options, text_from_conditioning,
)
from .sampling import AUTO_TIP, CUTOFF_TIP, OVERLAP_TIP, WINDOW_TIP


class OmniSyncLipSync:
    DESCRIPTION = (
        "Lip-syncs a video to new speech in one node: Whisper features, progressive noise init (τ), DS-CFG "
        "sampling in overlapping windows, decode, optional composite. The separate OmniSync nodes run the "
        "same steps one by one and give the same frames."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "AUDIO", "MASK", "FLOAT", "VIDEO", "STRING")
    RETURN_NAMES = ("images", "audio", "guidance_map", "fps", "video", "report")
    OUTPUT_TOOLTIPS = (
        "Lip-synced frames (T, H, W, 3).",
        "The speech matched to the output length (16 kHz mono).",
        "DS-CFG guidance map per frame (T, H, W) in [0, 1].",
        "Frame rate of the output.",
        "Frames + speech as a VIDEO (connect to Save Video).",
        "Run report (JSON).",
    )
    FUNCTION = "sync"

    @classmethod
    def INPUT_TYPES(cls):
        d = SyncOptions()
        return {
            "required": {
                "model": ("OMNISYNC_MODEL", {"tooltip": "From Load OmniSync Model."}),
                "audio_encoder": ("OMNISYNC_AUDIO_ENCODER", {"tooltip": "From Load Whisper Audio Encoder."}),
                "images": ("IMAGE", {"tooltip": "Source video frames (T, H, W, 3)."}),
                "audio": ("AUDIO", {"tooltip": "Target speech (any sample rate, mono or stereo)."}),
                "fps": ("FLOAT", {
                    "default": 16.0, "min": 1.0, "max": 120.0, "step": 0.001,
                    "tooltip": "Frame rate of the video (Wan 2.1 outputs 16 fps; use Get Video Components' fps).",
                }),
                "length_mode": (list(LENGTH_MODES), {
                    "default": d.length_mode,
                    "tooltip": "follow_audio_*: as long as the speech (video looped / ping-ponged); follow_video: "
                               "keep the video length, trim or pad the speech.",
                }),
                "tau": ("FLOAT", {
                    "default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                    "tooltip": "τ: noise strength of the start (1 = pure noise); lower keeps more of the source. "
                               + AUTO_TIP.format(f"{d.tau} (the paper's)"),
                }),
                "steps": ("INT", {
                    "default": 0, "min": 0, "max": 1000,
                    "tooltip": "Length of the full flow-matching schedule; only the steps with σ ≤ τ run. "
                               + AUTO_TIP.format(f"{d.num_steps} (the paper's)"),
                }),
                "seed": ("INT", {"default": d.seed, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "tooltip": "Noise seed."}),
                "omega_peak": ("FLOAT", {
                    "default": 0.0, "min": 0.0, "max": 20.0, "step": 0.05,
                    "tooltip": "ω_peak: audio CFG scale at the mouth centre at the first step. 0 = auto: the "
                               f"checkpoint's recommendation, else {d.guidance.omega_peak} (the paper's; the bundled "
                               "model recommends 12).",
                }),
                "mouth": (["auto", "point", "mask"], {
                    "default": "auto",
                    "tooltip": "auto: found by the model; point: mouth_x / mouth_y; mask: the connected mouth_mask.",
                }),
                "mouth_x": ("FLOAT", {"default": DEFAULT_MOUTH_CENTRE[0], "min": 0.0, "max": 1.0, "step": 0.01,
                                      "tooltip": "Mouth position across the frame (0 = left), for mouth = point."}),
                "mouth_y": ("FLOAT", {"default": DEFAULT_MOUTH_CENTRE[1], "min": 0.0, "max": 1.0, "step": 0.01,
                                      "tooltip": "Mouth position down the frame (0 = top), for mouth = point."}),
                "window": ("INT", {"default": 0, "min": 0, "max": 4096,
                                   "tooltip": "Latent frames per window. " + WINDOW_TIP}),
                "overlap": ("INT", {"default": -1, "min": -1, "max": 4095,
                                    "tooltip": "Latent frames shared by neighbouring windows. " + OVERLAP_TIP}),
                "composite": ("BOOLEAN", {
                    "default": d.composite,
                    "tooltip": "Keep every pixel outside a feathered disc around the mouth identical to the source.",
                }),
            },
            "optional": {
                "cfg_cutoff": ("FLOAT", {"default": -1.0, "min": -1.0, "max": 1.0, "step": 0.01, "tooltip": CUTOFF_TIP}),
                "vae": ("VAE", {"tooltip": "Wan 2.1 VAE, for models that work in its latent space."}),
                "conditioning": ("CONDITIONING", {"tooltip": "Optional video description (Wan umT5 encoder)."}),
                "mouth_mask": ("MASK", {
                    "tooltip": "Mouth region: one mask, one per source frame or one per output frame; for mouth = mask.",
                }),
            },
        }

    def sync(self, model, audio_encoder, images, audio, fps, length_mode, tau, steps, seed, omega_peak, mouth,
             mouth_x, mouth_y, window, overlap, composite, cfg_cutoff=-1.0, vae=None, conditioning=None,
             mouth_mask=None):
        import comfy.model_management as mm

        from omnisync_core.model.codec import codec_from_spec
        from omnisync_core.pipelines.stream import sync_frames

        if mouth == "mask" and mouth_mask is None:
            raise OmniSyncError("mouth = mask needs a MASK connected to mouth_mask (or choose auto / point).")
        wave, sr, audio_report = audio_from_comfy(audio)
        text, warning = text_from_conditioning(conditioning, model)
        opts, chosen = sync_options(
            model, tau=tau, num_steps=steps, seed=seed, omega_peak=omega_peak,
            mouth=(mouth_x, mouth_y) if mouth == "point" else "auto", mouth_mask=mouth_mask if mouth == "mask" else None,
            window=window, overlap=overlap, cfg_cutoff=cfg_cutoff, length_mode=length_mode, composite=composite,
            text=text,
        )
        pipe = pipeline_for(model, codec_from_spec(model.codec_spec, vae=vae), audio_encoder)
        load_for_sampling(model)
        report = {"warnings": []}
        on_warning = node_warner(report, "OmniSync Lip Sync")
        if warning:
            on_warning(warning)
        if "batch" in audio_report:
            on_warning(audio_report["batch"] + ".")
        # window by window when the codec maps frames one by one (the bundled pixel codec) and no per-frame mask is
        # given: beside the IMAGE batch only the output frames are held whole; otherwise the in-memory stages
        call = dict(progress=ComfyProgress(), cancel=comfy_cancel, on_warning=on_warning)
        if pipe.codec.temporal_factor == 1 and opts.mouth_mask is None:
            result = run_cancellable(sync_frames, pipe, images, fps, wave, sr, opts, **call)
        else:
            result = run_cancellable(pipe, images, fps, wave, sr, opts, **call)
        report.update({k: v for k, v in result.report.items() if k != "warnings"}, audio_input=audio_report,
                      options=chosen)
        frames = result.frames.float().cpu().contiguous()
        video_frames = pad_for_h264(frames, report, "OmniSync Lip Sync")
        out_audio = audio_to_comfy(result.waveform, result.sample_rate)
        fps_out = float(result.fps)
        return (frames, out_audio, result.guidance_map.clamp(0, 1), fps_out, make_video(video_frames, out_audio, fps_out),
                format_report(report))
