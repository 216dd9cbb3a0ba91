"""The sampling widgets (and the optional sockets beside them), declared once for every node that shows them
(Lip Sync, Noise Init, DS-CFG Sampler, Audio Encode, Video Assemble): name, range, tooltip, and the default from
:class:`SyncOptions`.

On the auto widgets, 0 (``num_steps``, ``window``, ``tau``, ``shift``, ``omega_base``, ``omega_peak``) or −1
(``overlap``, ``cfg_cutoff``, where 0 is a real value) means "the checkpoint's recommendation, else the default"
(``bridge.sync_options`` turns them into :data:`~omnisync_core.sampling.options.AUTO`).
"""

from __future__ import annotations

from typing import Callable, Dict, List

from comfy_api.latest import io

from omnisync_core.errors import OmniSyncError
from omnisync_core.length import LENGTH_MODES
from omnisync_core.sampling.mouth import DEFAULT_MOUTH_CENTRE
from omnisync_core.sampling.options import SyncOptions

MOUTH_MODES = ["auto", "point", "mask"]
SEED_MAX = 0xFFFFFFFFFFFFFFFF
_D = SyncOptions()
_G = _D.guidance
AUTO_TIP = "0 = auto: the checkpoint's recommendation, else {}."
WINDOW_TIP = (f"0 = auto: the checkpoint's recommendation, else {_D.window}; for the whole clip in one window (cost "
              "grows with the square of its length), give a window at least as long as the clip.")
OVERLAP_TIP = f"−1 = auto: the checkpoint's recommendation, else {_D.overlap}."
CUTOFF_TIP = (f"σ below which guidance is off and only the conditional pass runs (half the work per step there); "
              f"0 = guidance at every step. −1 = auto: the checkpoint's recommendation, else {_G.cfg_cutoff}.")

_WIDGETS: Dict[str, Callable[[], io.Input]] = {
    "fps": lambda: io.Float.Input(
        "fps", default=25.0, min=1.0, max=120.0, step=0.001,
        tooltip="Frame rate of the video: connect Get Video Components' fps (Wan 2.1 outputs 16 fps, the bundled "
                "sample is 25)."),
    "length_mode": lambda: io.Combo.Input(
        "length_mode", options=list(LENGTH_MODES), default=_D.length_mode,
        tooltip="follow_audio_loop / _pingpong: output as long as the speech, repeating the video (looped or "
                "back-and-forth); follow_video: keep the video length, trim or pad the speech."),
    "tau": lambda: io.Float.Input(
        "tau", default=0.0, min=0.0, max=1.0, step=0.01,
        tooltip="τ: noise strength of the start (1 = pure noise); lower keeps more of the source. "
                + AUTO_TIP.format(f"{_D.tau} (the paper's)")),
    "steps": lambda: io.Int.Input(
        "steps", default=0, min=0, max=1000,
        tooltip="Length of the full flow-matching schedule; only the steps with σ ≤ τ run. "
                + AUTO_TIP.format(f"{_D.num_steps} (the paper's)")),
    "shift": lambda: io.Float.Input(
        "shift", default=0.0, min=0.0, max=20.0, step=0.01,
        tooltip="Schedule shift (1 = linear σ; larger spends more steps at high noise). " + AUTO_TIP.format(_D.shift)),
    "seed": lambda: io.Int.Input(
        "seed", default=_D.seed, min=0, max=SEED_MAX,
        tooltip="Noise seed (per latent frame, so windows and lengths do not change the noise)."),
    "omega_base": lambda: io.Float.Input(
        "omega_base", default=0.0, min=0.0, max=20.0, step=0.05,
        tooltip="ω_base: audio CFG scale far from the mouth (1 = no extra guidance). "
                + AUTO_TIP.format(_G.omega_base)),
    "omega_peak": lambda: io.Float.Input(
        "omega_peak", default=0.0, min=0.0, max=20.0, step=0.05,
        tooltip="ω_peak: audio CFG scale at the mouth centre at the first step. "
                + AUTO_TIP.format(f"{_G.omega_peak} (the paper's; the bundled model recommends 12)")),
    "sigma_spatial": lambda: io.Float.Input(
        "sigma_spatial", default=_G.sigma_spatial, min=0.01, max=2.0, step=0.01,
        tooltip="Width of the Gaussian around the mouth, as a fraction of the frame."),
    "gamma": lambda: io.Float.Input(
        "gamma", default=_G.gamma, min=0.0, max=10.0, step=0.05,
        tooltip="γ: how fast guidance decays over the steps (ω ∝ σ^γ)."),
    "mouth": lambda: io.Combo.Input(
        "mouth", options=MOUTH_MODES, default="auto",
        tooltip="auto: found from the model's own audio response; point: mouth_x / mouth_y; mask: centre of the "
                "connected mouth mask per frame."),
    "mouth_x": lambda: io.Float.Input(
        "mouth_x", default=DEFAULT_MOUTH_CENTRE[0], min=0.0, max=1.0, step=0.01,
        tooltip="Mouth position across the frame (0 = left, 1 = right), for mouth = point."),
    "mouth_y": lambda: io.Float.Input(
        "mouth_y", default=DEFAULT_MOUTH_CENTRE[1], min=0.0, max=1.0, step=0.01,
        tooltip="Mouth position down the frame (0 = top, 1 = bottom), for mouth = point."),
    "window": lambda: io.Int.Input(
        "window", default=0, min=0, max=4096,
        tooltip="Latent frames per window; bounds memory on long clips. " + WINDOW_TIP),
    "overlap": lambda: io.Int.Input(
        "overlap", default=-1, min=-1, max=4095,
        tooltip="Latent frames shared (and cross-faded) by neighbouring windows. " + OVERLAP_TIP),
    "composite": lambda: io.Boolean.Input(
        "composite", default=_D.composite,
        tooltip="Keep every pixel outside a feathered disc around the mouth identical to the source."),
    "cfg_cutoff": lambda: io.Float.Input(
        "cfg_cutoff", default=-1.0, min=-1.0, max=1.0, step=0.01, optional=True, tooltip=CUTOFF_TIP),
    "mouth_mask": lambda: io.Mask.Input(
        "mouth_mask", optional=True,
        tooltip="Mouth region: one mask, one per source frame or one per output frame; for mouth = mask."),
    "conditioning": lambda: io.Conditioning.Input(
        "conditioning", optional=True,
        tooltip="Optional video description (CLIP Text Encode with the Wan umT5 encoder)."),
    "vae": lambda: io.Vae.Input(
        "vae", optional=True, tooltip="Wan 2.1 VAE, for models that work in its latent space."),
}


def shared_inputs(*names: str) -> List[io.Input]:
    """Fresh inputs for ``names`` (a schema owns its inputs), in that order."""
    return [_WIDGETS[name]() for name in names]


def check_choices(node: type, **values) -> None:
    """Raises :class:`OmniSyncError` naming the first widget value that is not among its combo's options. ComfyUI
    0.3.64 checks only V1 list combos itself, not the options of a V3 ``io.Combo`` (an API prompt can send any
    value), so each node checks its own choices first thing in ``execute``."""
    options = {i.id: i.options for i in node.define_schema().inputs if isinstance(i, io.Combo.Input)}
    for name, value in values.items():
        if value not in options[name]:
            raise OmniSyncError(f"{name} {value!r} is not one of {', '.join(map(str, options[name]))}; choose one "
                                "of them.")
