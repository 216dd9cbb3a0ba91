"""OmniSync Noise Init (Eq. 5) and OmniSync DS-CFG Sampler (Eqs. 7–9): adapters over the pipeline's
``encode_video`` + ``init`` and ``sample`` stages (``omnisync_core.pipelines.omnisync``)."""

from __future__ import annotations

import dataclasses

from comfy_api.latest import io

from omnisync_core.errors import OmniSyncError

from .bridge import (
    BUNDLED_MODEL_DOMAIN, CATEGORY, ComfyProgress, OmniSyncAudioType, OmniSyncLatent, OmniSyncLatentType,
    OmniSyncModelType, comfy_cancel, format_report, load_for_sampling, pipeline_for, run_cancellable, sync_options,
    text_from_conditioning,
)
from .feedback import HIDDEN, Feedback
from .widgets import check_choices, shared_inputs


class OmniSyncNoiseInit(io.ComfyNode):
    DISPLAY_NAME = "OmniSync Noise Init (flow matching)"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="OmniSyncNoiseInit",
            display_name=cls.DISPLAY_NAME,
            category=CATEGORY,
            description=(
                "Progressive noise initialisation (OmniSync Eq. 5): encodes the source frames and mixes in noise, "
                "x_init = (1 − τ)·source + τ·noise, so only the last steps of the flow-matching schedule run and "
                "pose and identity come from the source. " + BUNDLED_MODEL_DOMAIN
            ),
            inputs=[
                OmniSyncModelType.Input("model", tooltip="From Load OmniSync Model."),
                io.Image.Input("images", tooltip="Source video frames (T, H, W, 3)."),
                *shared_inputs("tau", "steps", "shift", "seed", "vae"),
                OmniSyncAudioType.Input("omnisync_audio", optional=True,
                                        tooltip="From OmniSync Audio Encode: loops / trims the frames to the speech "
                                                "length."),
            ],
            outputs=[OmniSyncLatentType.Output(display_name="latent", tooltip="Noisy start latents, source latents "
                                                                               "and the truncated σ schedule.")],
            hidden=list(HIDDEN),
        )

    @classmethod
    def execute(cls, model, images, tau, steps, shift, seed, vae=None, omnisync_audio=None) -> io.NodeOutput:
        from omnisync_core.model.codec import codec_from_spec

        feedback = Feedback(cls, cls.DISPLAY_NAME)  # encode_video keeps its warnings in video.report
        options, chosen = sync_options(model, feedback.warn, tau=tau, num_steps=steps, shift=shift, seed=seed)
        codec = codec_from_spec(model.codec_spec, vae=vae)
        pipe = pipeline_for(model, codec)
        video = pipe.encode_video(images, omnisync_audio.frame_indices if omnisync_audio is not None else None,
                                  fps=omnisync_audio.fps if omnisync_audio is not None else None,
                                  on_warning=feedback.warn)
        x_init, sigmas = pipe.init(video, options.tau, options.num_steps, options.shift, options.seed)
        report = {**video.report, "options": chosen}
        if vae is not None and model.codec_spec.get("type") != "vae":
            report["vae"] = "this model works on pixels: the VAE input is ignored"
            feedback.report = report
            feedback.warn(report["vae"] + ".")
        return io.NodeOutput(OmniSyncLatent(latents=x_init, sigmas=sigmas, video=video, codec=codec, tau=options.tau,
                                            seed=options.seed, report=report))


class OmniSyncSampler(io.ComfyNode):
    DISPLAY_NAME = "OmniSync DS-CFG Sampler"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="OmniSyncSampler",
            display_name=cls.DISPLAY_NAME,
            category=CATEGORY,
            description=(
                "Denoises the latents with the OmniSync model and dynamic spatiotemporal CFG (DS-CFG, Eqs. 7–9): "
                "guidance strongest around the mouth (Gaussian from ω_base to ω_peak) and early in sampling "
                "(∝ σ^γ). Long clips run in overlapping windows. The mask output shows where guidance was "
                "strongest. " + BUNDLED_MODEL_DOMAIN
            ),
            inputs=[
                OmniSyncModelType.Input("model", tooltip="From Load OmniSync Model."),
                OmniSyncLatentType.Input("latent", tooltip="From OmniSync Noise Init."),
                OmniSyncAudioType.Input("omnisync_audio", tooltip="From OmniSync Audio Encode."),
                *shared_inputs("omega_base", "omega_peak", "sigma_spatial", "gamma", "mouth", "mouth_x", "mouth_y",
                               "window", "overlap", "cfg_cutoff", "conditioning", "mouth_mask"),
            ],
            outputs=[
                OmniSyncLatentType.Output(display_name="latent",
                                          tooltip="Denoised latents (decode with OmniSync Video Assemble)."),
                io.Mask.Output(display_name="guidance_map", tooltip="DS-CFG guidance map per frame (T, H, W) in "
                                                                    "[0, 1]: where the model edited most."),
                io.String.Output(display_name="report",
                                 tooltip="Run report (JSON): windows, mouth source, fallback frames, warnings."),
            ],
            hidden=list(HIDDEN),
        )

    @classmethod
    def execute(cls, model, latent, omnisync_audio, omega_base, omega_peak, sigma_spatial, gamma, mouth, mouth_x,
                mouth_y, window, overlap, cfg_cutoff=-1.0, conditioning=None, mouth_mask=None) -> io.NodeOutput:
        check_choices(cls, mouth=mouth)
        if latent.denoised:
            raise OmniSyncError("this latent was already sampled; connect the output of OmniSync Noise Init.")
        if omnisync_audio.num_frames != latent.num_frames:
            raise OmniSyncError(
                f"the audio covers {omnisync_audio.num_frames} frames but the latent holds {latent.num_frames}; "
                "connect the OmniSync Audio Encode output to Noise Init's omnisync_audio input so the video "
                "follows the speech."
            )
        if mouth == "mask" and mouth_mask is None:
            raise OmniSyncError("mouth = mask needs a MASK connected to mouth_mask (or choose auto / point).")
        report = {"noise_init": latent.report, "audio": omnisync_audio.report, "warnings": []}
        feedback = Feedback(cls, cls.DISPLAY_NAME, report)
        options, chosen = sync_options(model, feedback.warn, omega_base=omega_base, omega_peak=omega_peak,
                                       sigma_spatial=sigma_spatial, gamma=gamma,
                                       mouth=(mouth_x, mouth_y) if mouth == "point" else "auto", window=window,
                                       overlap=overlap, cfg_cutoff=cfg_cutoff)
        report["options"] = chosen
        text, warning = text_from_conditioning(conditioning, model)
        pipe = pipeline_for(model, latent.codec)
        load_for_sampling(model)
        if warning:
            feedback.warn(warning)
        sampled = run_cancellable(
            pipe.sample, latent.latents, latent.video, latent.sigmas, omnisync_audio.frame_features,
            omnisync_audio.num_layers, options.guidance, options.mouth, mouth_mask if mouth == "mask" else None,
            options.window, options.overlap, text, progress=ComfyProgress(), cancel=comfy_cancel,
            on_warning=feedback.warn,
        )
        report.update({k: v for k, v in sampled.report.items() if k != "warnings"})
        out = dataclasses.replace(latent, latents=sampled.latents, denoised=True, mouth_centres=sampled.mouth_centres,
                                  fallback_frames=sampled.fallback_frames, report=report)
        return io.NodeOutput(out, sampled.guidance_map.clamp(0, 1), format_report(report))
