"""OmniSync Noise Init (Eq. 5) and OmniSync DS-CFG Sampler (Eqs. 7–9)."""

from __future__ import annotations

import torch

from omnisync_core.errors import OmniSyncError

from .bridge import (
    CATEGORY, ComfyProgress, OmniSyncLatent, comfy_cancel, format_report, log, run_cancellable,
    text_from_conditioning,
)

MOUTH_MODES = ["auto", "point", "mask"]


def stage_helpers(model, codec):
    """The lead pipeline's stage helpers (centres, maps, frame↔latent bookkeeping) for this model/codec."""
    from omnisync_core.pipeline import OmniSyncPipeline

    return OmniSyncPipeline(model.model, codec, None, device=model.device, dtype=model.dtype)


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
        return {
            "required": {
                "model": ("OMNISYNC_MODEL", {"tooltip": "From Load OmniSync Model."}),
                "images": ("IMAGE", {"tooltip": "Source video frames (T, H, W, 3)."}),
                "tau": ("FLOAT", {
                    "default": 0.92, "min": 0.01, "max": 1.0, "step": 0.01,
                    "tooltip": "τ: noise strength of the start (1 = pure noise). Lower keeps more of the source.",
                }),
                "steps": ("INT", {
                    "default": 50, "min": 1, "max": 1000,
                    "tooltip": "Length of the full flow-matching schedule; only the steps with σ ≤ τ run. "
                               "50 as in the paper; the bundled small model was fine-tuned on the "
                               "8-step path: use 8 with it.",
                }),
                "shift": ("FLOAT", {
                    "default": 1.0, "min": 0.1, "max": 20.0, "step": 0.01,
                    "tooltip": "Schedule shift (1 = linear σ; larger spends more steps at high noise).",
                }),
                "seed": ("INT", {
                    "default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
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
        from omnisync_core.media import validate_frames
        from omnisync_core.model.codec import codec_from_spec, pad_frames_to_valid, pad_to_stride
        from omnisync_core.sampling.noise_init import progressive_noise_init
        from omnisync_core.sampling.schedule import FlowMatchSchedule

        frames, frame_info = validate_frames(images)
        report = {"frames": frame_info}
        indices = None
        if omnisync_audio is not None:
            indices = omnisync_audio.frame_indices
            if int(indices.max()) >= frames.shape[0]:
                raise OmniSyncError(
                    f"the audio was planned for {int(indices.max()) + 1}+ source frames but {frames.shape[0]} "
                    "were given; connect the same images to OmniSync Audio Encode."
                )
            frames = frames[indices]
        codec = codec_from_spec(model.codec_spec, vae=vae)
        if vae is not None and model.codec_spec.get("type") != "vae":
            report["vae"] = "this model works on pixels: the VAE input is ignored"
            log.warning("OmniSync: %s", report["vae"])
        stride = codec.spatial_factor * model.model.config.patch_size[1]
        frames_p, pads = pad_to_stride(frames, stride)
        frames_p, added = pad_frames_to_valid(frames_p, codec)
        report["padding"] = {"spatial": pads, "frames_added": added}

        source = codec.encode(frames_p)  # (C, F, h, w)
        x_init = progressive_noise_init(source, tau, seed=seed)
        sigmas = FlowMatchSchedule(steps, shift).truncate(tau)
        return (OmniSyncLatent(
            latents=x_init, source=source, sigmas=sigmas, codec=codec, pads=pads, frames_added=added,
            source_frames=frames, frame_indices=indices, tau=float(tau), seed=int(seed), report=report,
        ),)


def _frame_features_for_model(audio, model) -> torch.Tensor:
    """(T, L·D) features → the layers the model was trained on; clear error when they cannot match."""
    cfg = model.model.config
    feats = audio.frame_features
    if feats.shape[1] == cfg.audio_dim:
        return feats
    spec = model.audio_spec
    if audio.dim == getattr(spec, "dim", None) and spec.num_layers < audio.num_layers:
        # the model was trained on the last spec.num_layers hidden states of the same encoder
        last = feats.view(feats.shape[0], audio.num_layers, audio.dim)[:, -spec.num_layers:]
        return last.reshape(feats.shape[0], spec.num_layers * audio.dim)
    raise OmniSyncError(
        f"the audio features are {audio.num_layers} layers × {audio.dim} = {feats.shape[1]} per frame but the "
        f"model expects {cfg.audio_dim} ({getattr(spec, 'num_layers', '?')} layers × {getattr(spec, 'dim', '?')}, "
        f"encoder {getattr(spec, 'encoder', '?')!r}); encode the speech with the encoder this checkpoint was trained "
        "with (Load Whisper Audio Encoder for OmniSync Whisper models; ComfyUI's Audio Encoder Encode only for "
        "models trained on Whisper large-v3)."
    )


class OmniSyncSampler:
    DESCRIPTION = (
        "Denoises the latents with the OmniSync DiT and dynamic spatiotemporal CFG (DS-CFG, Eqs. 7–9): "
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
        from omnisync_core.sampling.guidance import GuidanceConfig

        g = GuidanceConfig()
        return {
            "required": {
                "model": ("OMNISYNC_MODEL", {"tooltip": "From Load OmniSync Model."}),
                "latent": ("OMNISYNC_LATENT", {"tooltip": "From OmniSync Noise Init."}),
                "omnisync_audio": ("OMNISYNC_AUDIO", {"tooltip": "From OmniSync Audio Encode."}),
                "omega_base": ("FLOAT", {
                    "default": g.omega_base, "min": 0.0, "max": 20.0, "step": 0.05,
                    "tooltip": "ω_base: audio CFG scale far from the mouth (1 = no extra guidance).",
                }),
                "omega_peak": ("FLOAT", {
                    "default": g.omega_peak, "min": 0.0, "max": 20.0, "step": 0.05,
                    "tooltip": "ω_peak: audio CFG scale at the mouth centre at the first step.",
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
                    "default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01,
                    "tooltip": "Mouth position across the frame (0 = left, 1 = right), for mouth = point.",
                }),
                "mouth_y": ("FLOAT", {
                    "default": 0.62, "min": 0.0, "max": 1.0, "step": 0.01,
                    "tooltip": "Mouth position down the frame (0 = top, 1 = bottom), for mouth = point.",
                }),
                "window": ("INT", {
                    "default": 0, "min": 0, "max": 4096,
                    "tooltip": "Latent frames per window (0 = the whole clip at once). Bounds memory on long clips.",
                }),
                "overlap": ("INT", {
                    "default": 2, "min": 0, "max": 4095,
                    "tooltip": "Latent frames shared (and cross-faded) by neighbouring windows.",
                }),
            },
            "optional": {
                "conditioning": ("CONDITIONING", {
                    "tooltip": "Optional video description (CLIP Text Encode with the Wan umT5 encoder).",
                }),
                "mouth_mask": ("MASK", {"tooltip": "Mouth region per frame (or one for all), for mouth = mask."}),
            },
        }

    def sample(self, model, latent, omnisync_audio, omega_base, omega_peak, sigma_spatial, gamma, mouth,
               mouth_x, mouth_y, window, overlap, conditioning=None, mouth_mask=None):
        import comfy.model_management as mm

        from omnisync_core.audio.features import latent_audio_tokens
        from omnisync_core.pipeline import SyncOptions
        from omnisync_core.sampling.guidance import GuidanceConfig
        from omnisync_core.sampling.sampler import sample_windowed

        if latent.denoised:
            raise OmniSyncError("this latent was already sampled; connect the output of OmniSync Noise Init.")
        T = latent.num_frames
        if omnisync_audio.num_frames != T:
            raise OmniSyncError(
                f"the audio covers {omnisync_audio.num_frames} frames but the latent holds {T}; connect the "
                "OmniSync Audio Encode output to Noise Init's omnisync_audio input so the video follows the speech."
            )
        report = {"noise_init": latent.report, "audio": omnisync_audio.report}
        helpers = stage_helpers(model, latent.codec)
        codec = latent.codec

        feats = _frame_features_for_model(omnisync_audio, model)
        if latent.frames_added:
            feats = torch.cat([feats, feats[-1:].expand(latent.frames_added, -1)], 0)
        frame_window = getattr(model.audio_spec, "frame_window", 2)
        tokens = latent_audio_tokens(feats, codec.temporal_factor, frame_window)  # (F, N_a, K)
        text, warning = text_from_conditioning(conditioning, model)
        if warning:
            report["warnings"] = [warning]
            log.warning("OmniSync: %s", warning)

        mask = None
        if mouth == "mask":
            if mouth_mask is None:
                raise OmniSyncError("mouth = mask needs a MASK connected to mouth_mask (or choose auto / point).")
            mask = mouth_mask.float().cpu()
            if mask.ndim == 2:
                mask = mask[None]
            if mask.shape[0] == 1:
                mask = mask.expand(T, -1, -1)
            elif latent.frame_indices is not None and mask.shape[0] == int(latent.frame_indices.max()) + 1:
                mask = mask[latent.frame_indices]  # one mask per source frame: follow the frame plan
            if mask.shape[0] != T:
                raise OmniSyncError(
                    f"mouth_mask has {mask.shape[0]} frames; give one mask, one per source frame, or one per "
                    f"output frame ({T})."
                )
        opts = SyncOptions(mouth=(mouth_x, mouth_y) if mouth == "point" else "auto", mouth_mask=mask)
        frame_centres, mouth_report = helpers._user_centres(opts, mask, T, latent.frames_added)
        centres = "auto" if frame_centres is None else helpers._latent_centres(frame_centres)
        report["mouth"] = mouth_report

        guidance = GuidanceConfig(omega_base=omega_base, omega_peak=omega_peak, sigma_spatial=sigma_spatial,
                                  gamma=gamma)
        device, dtype = model.device, model.dtype
        mm.soft_empty_cache()
        latents, gmap, sample_report = run_cancellable(
            sample_windowed, model.model, latent.latents.to(device, dtype), latent.source.to(device, dtype),
            tokens.to(device, dtype), text.to(device, dtype) if text is not None else None, latent.sigmas,
            guidance, centres, window, overlap, progress=ComfyProgress(), cancel=comfy_cancel,
        )
        report["sampler"] = sample_report

        # latent-frame bookkeeping → video frames (T, ...) of the unpadded clip
        T_p = T + latent.frames_added
        H, W = latent.source_frames.shape[1:3]
        H_p, W_p = H + latent.pads[0], W + latent.pads[1]
        frame_map = helpers._frames_from_latent_map(gmap, T_p, H_p, W_p)[:T, :H, :W]
        guidance_map = helpers._normalise_map(frame_map, guidance)
        latent_of_frame = helpers._frame_index_of_latent(T_p)[:T]
        fallback_latents = set(int(f) for f in sample_report.get("fallback_frames", []))
        fallback = [t for t in range(T) if int(latent_of_frame[t]) in fallback_latents]
        centres_found = sample_report.get("centres")
        frame_centres_out = (helpers._frames_from_latent_centres(centres_found, T_p)[:T]
                             if centres_found is not None else frame_centres)
        if fallback:
            report["fallback_frames"] = fallback
            log.warning("OmniSync: no mouth located in %d frame(s); they are passed through unchanged.", len(fallback))

        out = OmniSyncLatent(
            latents=latents.float().cpu(), source=latent.source, sigmas=latent.sigmas, codec=codec, pads=latent.pads,
            frames_added=latent.frames_added, source_frames=latent.source_frames, frame_indices=latent.frame_indices,
            tau=latent.tau, seed=latent.seed, denoised=True, mouth_centres=frame_centres_out, fallback_frames=fallback,
            report=report,
        )
        return (out, guidance_map.clamp(0, 1), format_report(report))
