"""OmniSync Noise Init (Eq. 5) and OmniSync DS-CFG Sampler (Eqs. 7–9): adapters over the pipeline's
``encode_video`` + ``init`` and ``sample`` stages (``omnisync_core.pipelines.omnisync``)."""

from __future__ import annotations

import dataclasses

from omnisync_core.errors import OmniSyncError
from omnisync_core.sampling.mouth import DEFAULT_MOUTH_CENTRE
from omnisync_core.sampling.options import SyncOptions

from .bridge import (
    CATEGORY, ComfyProgress, OmniSyncLatent, comfy_cancel, format_report, load_for_sampling, node_warner,
    pipeline_for, run_cancellable, sync_options, text_from_conditioning,
)

MOUTH_MODES = ["auto", "point", "mask"]
AUTO_TIP = "0 = auto: the checkpoint's recommendation, else {}."
WINDOW_TIP = (f"0 = auto: the checkpoint's recommendation, else {SyncOptions.window}; for the whole clip in one "
              "window (cost grows with the square of its length), give a window at least as long as the clip.")
OVERLAP_TIP = f"−1 = auto: the checkpoint's recommendation, else {SyncOptions.overlap}."
CUTOFF_TIP = (f"σ below which guidance is off and only the conditional pass runs (half the work per step there); "
              f"0 = guidance at every step. −1 = auto: the checkpoint's recommendation, else "
              f"{SyncOptions().guidance.cfg_cutoff}.")


class OmniSyncNoiseInit:
    DESCRIPTION = (
        "Progressive noise initialisation (OmniSync Eq. 5): encodes the source frames and mixes in noise, "
        "x_init = (1 − τ)·source + τ·noise, so only the last steps of the flow-matching schedule run and pose "
        "and identity come from the source."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("OMNISYNC_LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("Noisy start latents, source latents and the truncated σ schedule.",)
    FUNCTION = "init"

    @classmethod
    def INPUT_TYPES(cls):
        d = SyncOptions()
        return {
            "required": {
                "model": ("OMNISYNC_MODEL", {"tooltip": "From Load OmniSync Model."}),
                "images": ("IMAGE", {"tooltip": "Source video frames (T, H, W, 3)."}),
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
                "shift": ("FLOAT", {
                    "default": 0.0, "min": 0.0, "max": 20.0, "step": 0.01,
                    "tooltip": "Schedule shift (1 = linear σ; larger spends more steps at high noise). "
                               + AUTO_TIP.format(d.shift),
                }),
                "seed": ("INT", {
                    "default": d.seed, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                    "tooltip": "Noise seed (per latent frame, so windows and lengths do not change the noise).",
                }),
            },
            "optional": {
                "vae": ("VAE", {"tooltip": "Wan 2.1 VAE, for models that work in its latent space."}),
                "omnisync_audio": ("OMNISYNC_AUDIO", {
                    "tooltip": "From OmniSync Audio Encode: loops / trims the frames to the speech length.",
                }),
            },
        }

    def init(self, model, images, tau, steps, shift, seed, vae=None, omnisync_audio=None):
        from omnisync_core.model.codec import codec_from_spec

        options, chosen = sync_options(model, tau=tau, num_steps=steps, shift=shift, seed=seed)
        codec = codec_from_spec(model.codec_spec, vae=vae)
        pipe = pipeline_for(model, codec)
        on_warning = node_warner({}, "OmniSync Noise Init")  # encode_video keeps its warnings in video.report
        video = pipe.encode_video(images, omnisync_audio.frame_indices if omnisync_audio is not None else None,
                                  fps=omnisync_audio.fps if omnisync_audio is not None else None,
                                  on_warning=on_warning)
        x_init, sigmas = pipe.init(video, options.tau, options.num_steps, options.shift, options.seed)
        report = {**video.report, "options": chosen}
        if vae is not None and model.codec_spec.get("type") != "vae":
            report["vae"] = "this model works on pixels: the VAE input is ignored"
            node_warner(report, "OmniSync Noise Init")(report["vae"] + ".")
        return (OmniSyncLatent(latents=x_init, sigmas=sigmas, video=video, codec=codec, tau=options.tau,
                               seed=options.seed, report=report),)


class OmniSyncSampler:
    DESCRIPTION = (
        "Denoises the latents with the OmniSync model and dynamic spatiotemporal CFG (DS-CFG, Eqs. 7–9): "
        "guidance strongest around the mouth (Gaussian from ω_base to ω_peak) and early in sampling (∝ σ^γ). "
        "Long clips run in overlapping windows. The mask output shows where guidance was strongest."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("OMNISYNC_LATENT", "MASK", "STRING")
    RETURN_NAMES = ("latent", "guidance_map", "report")
    OUTPUT_TOOLTIPS = (
        "Denoised latents (decode with OmniSync Video Assemble).",
        "DS-CFG guidance map per frame (T, H, W) in [0, 1]: where the model edited most.",
        "Run report (JSON): windows, mouth source, fallback frames, warnings.",
    )
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        d = SyncOptions()
        g = d.guidance
        return {
            "required": {
                "model": ("OMNISYNC_MODEL", {"tooltip": "From Load OmniSync Model."}),
                "latent": ("OMNISYNC_LATENT", {"tooltip": "From OmniSync Noise Init."}),
                "omnisync_audio": ("OMNISYNC_AUDIO", {"tooltip": "From OmniSync Audio Encode."}),
                "omega_base": ("FLOAT", {
                    "default": 0.0, "min": 0.0, "max": 20.0, "step": 0.05,
                    "tooltip": "ω_base: audio CFG scale far from the mouth (1 = no extra guidance). "
                               + AUTO_TIP.format(g.omega_base),
                }),
                "omega_peak": ("FLOAT", {
                    "default": 0.0, "min": 0.0, "max": 20.0, "step": 0.05,
                    "tooltip": "ω_peak: audio CFG scale at the mouth centre at the first step. "
                               + AUTO_TIP.format(f"{g.omega_peak} (the paper's; the bundled model recommends 12)"),
                }),
                "sigma_spatial": ("FLOAT", {
                    "default": g.sigma_spatial, "min": 0.01, "max": 2.0, "step": 0.01,
                    "tooltip": "Width of the Gaussian around the mouth, as a fraction of the frame.",
                }),
                "gamma": ("FLOAT", {
                    "default": g.gamma, "min": 0.0, "max": 10.0, "step": 0.05,
                    "tooltip": "γ: how fast guidance decays over the steps (ω ∝ σ^γ).",
                }),
                "mouth": (MOUTH_MODES, {
                    "default": "auto",
                    "tooltip": "auto: found from the model's own audio response; point: mouth_x / mouth_y; "
                               "mask: centre of the connected mouth mask per frame.",
                }),
                "mouth_x": ("FLOAT", {
                    "default": DEFAULT_MOUTH_CENTRE[0], "min": 0.0, "max": 1.0, "step": 0.01,
                    "tooltip": "Mouth position across the frame (0 = left, 1 = right), for mouth = point.",
                }),
                "mouth_y": ("FLOAT", {
                    "default": DEFAULT_MOUTH_CENTRE[1], "min": 0.0, "max": 1.0, "step": 0.01,
                    "tooltip": "Mouth position down the frame (0 = top, 1 = bottom), for mouth = point.",
                }),
                "window": ("INT", {
                    "default": 0, "min": 0, "max": 4096,
                    "tooltip": "Latent frames per window; bounds memory on long clips. " + WINDOW_TIP,
                }),
                "overlap": ("INT", {
                    "default": -1, "min": -1, "max": 4095,
                    "tooltip": "Latent frames shared (and cross-faded) by neighbouring windows. " + OVERLAP_TIP,
                }),
            },
            "optional": {
                "cfg_cutoff": ("FLOAT", {"default": -1.0, "min": -1.0, "max": 1.0, "step": 0.01, "tooltip": CUTOFF_TIP}),
                "conditioning": ("CONDITIONING", {
                    "tooltip": "Optional video description (CLIP Text Encode with the Wan umT5 encoder).",
                }),
                "mouth_mask": ("MASK", {
                    "tooltip": "Mouth region: one mask, one per source frame or one per output frame; for mouth = mask.",
                }),
            },
        }

    def sample(self, model, latent, omnisync_audio, omega_base, omega_peak, sigma_spatial, gamma, mouth,
               mouth_x, mouth_y, window, overlap, cfg_cutoff=-1.0, conditioning=None, mouth_mask=None):
        import comfy.model_management as mm

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
        options, chosen = sync_options(model, omega_base=omega_base, omega_peak=omega_peak, sigma_spatial=sigma_spatial,
                                       gamma=gamma, mouth=(mouth_x, mouth_y) if mouth == "point" else "auto",
                                       window=window, overlap=overlap, cfg_cutoff=cfg_cutoff)
        text, warning = text_from_conditioning(conditioning, model)
        pipe = pipeline_for(model, latent.codec)
        load_for_sampling(model)
        report = {"noise_init": latent.report, "audio": omnisync_audio.report, "options": chosen, "warnings": []}
        on_warning = node_warner(report, "OmniSync DS-CFG Sampler")
        if warning:
            on_warning(warning)
        sampled = run_cancellable(
            pipe.sample, latent.latents, latent.video, latent.sigmas, omnisync_audio.frame_features,
            omnisync_audio.num_layers, options.guidance, options.mouth, mouth_mask if mouth == "mask" else None,
            options.window, options.overlap, text, progress=ComfyProgress(), cancel=comfy_cancel, on_warning=on_warning,
        )
        report.update({k: v for k, v in sampled.report.items() if k != "warnings"})
        out = dataclasses.replace(latent, latents=sampled.latents, denoised=True, mouth_centres=sampled.mouth_centres,
                                  fallback_frames=sampled.fallback_frames, report=report)
        return (out, sampled.guidance_map.clamp(0, 1), format_report(report))
