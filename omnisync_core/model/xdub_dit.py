"""X-Dub's DiT: Wan 2.2 TI2V-5B with the reference frames in the token sequence, beside OmniSync's DiT.

As Wan keeps ``WanModel_S2V`` beside ``WanModel``, :class:`XDubDiT` is its own class over the blocks of
:mod:`.dit` (``diffsynth/models/wan_video_dit_lip_sync.py`` and ``model_fn_wan_video`` in
``diffsynth/pipelines/lip_sync.py``), with X-Dub's parameter names (``blocks.N.norm4`` / ``audio_attn`` for the
audio branch; loaded by :func:`.xdub_weights.load_xdub_model`). What differs from :class:`.dit.OmniSyncDiT`:

* the reference latents are appended as F more latent frames, ``[reference, target]`` along the tokens
  (``config.source_layout = "sequence"``), instead of on the channel axis;
* the reference tokens get timestep 0 (as may the first target frames, the motion frames carried from the
  previous clip), so the time signal is per latent frame: ``timestep`` may be (B, F);
* the reference's RoPE positions are shifted by (0, H', W');
* text and audio cross-attention act on the target tokens only, and only they reach the output;
* the audio windows are projected by :class:`.audio_proj.AudioProjection`.
"""

from __future__ import annotations

from typing import Optional

import torch

from .dit import OmniSyncDiT

XDUB_AUDIO_NAMES = ("norm4", "audio_attn")  # the audio branch's norm and attention in X-Dub's checkpoint


class XDubDiT(OmniSyncDiT):
    """X-Dub's network: ``forward(x, timestep, source=reference, audio=windows, text, motion_frames) -> v``.

    Layout at the boundary: x, source (B, C, F, H, W) (source: the reference latents); timestep (B,) or (B, F)
    in [0, 1000]; audio (B, F, N_a, audio_dim) raw windows; text (B, L, text_dim); ``motion_frames``: the first
    that many latent frames of x hold clean latents carried over from the previous clip and get timestep 0
    (the caller writes them into x). Returns the velocity of the target frames (B, C, F, H, W).

    Built as ``XDubDiT(config, device=None, dtype=None, operations=torch.nn)`` (:class:`.dit.OmniSyncDiT`'s
    constructor); ComfyUI's loader passes ``comfy.ops`` layers as ``operations``.
    """

    source_layout = "sequence"
    audio_names = XDUB_AUDIO_NAMES

    def embed_tokens(self, x: torch.Tensor, t: torch.Tensor, source: Optional[torch.Tensor]):
        """[reference, target] frames as one token sequence; the reference at timestep 0 with its RoPE shifted
        by (0, H', W'); one time group per latent frame; the target tokens are the second half."""
        h = self.patch_embedding(torch.cat([source, x], dim=2).to(self.patch_embedding.weight.dtype))  # (B, D, 2F', H', W')
        grid = (h.shape[2] // 2, h.shape[3], h.shape[4])  # the target's (F', H', W')
        h = h.flatten(2).transpose(1, 2).float()  # (B, L, D)
        cos, sin = self.rope(grid, x.device)
        ref_cos, ref_sin = self.rope(grid, x.device, (0, grid[1], grid[2]))
        t_groups = torch.cat([torch.zeros_like(t), t], dim=1)  # (B, 2F): the reference's frames, then the target's
        return h, grid, (torch.cat([ref_cos, cos]), torch.cat([ref_sin, sin])), t_groups, h.shape[1] // 2
