"""Synthetic talking characters: human-like, stylized and non-human heads whose mouth follows a track.

One file (~1,200 lines) on purpose: the drawing order is the pseudo-pair guarantee below (the mouth drawn after
everything it may cover and before everything that may cover it), and every part (head, hair, hat, ears, face,
mouth, occluders) shares the one head-unit geometry and pose map; split by part, that order and geometry would be
spread over files that each need the others' private helpers.

Face-detector-based lip-sync tools fail on cartoons, animals, robots and slimes; this module draws
such heads procedurally so that the model can be trained on them. A :class:`Character` (drawn from
a seed by :func:`random_character`) fixes everything about one identity and one shot; a
:class:`MotionTrack` (:func:`random_motion`) moves the head; :func:`render_clip` draws the clip with
the mouth driven by ``mouth_params``.

Pseudo-pair property: the mouth is drawn after everything it may cover and before everything that
may cover it, inside a mouth box that depends on the character and the pose only. Two renders of
the same character and motion with different mouth tracks therefore differ only inside the mouth
box: same identity, same pose, different speech.

Geometry: every shape is a polygon in *head units* (origin at the head centre, y down, the head's
half-height is 1), mapped to pixels per frame by an affine map: a pseudo-3D feature map (turn and
nod move a feature by its depth on a sphere-like face and foreshorten it) followed by the head map
(roll, scale, sway). Frames are drawn ``SUPERSAMPLE`` times larger with ``PIL.ImageDraw`` and
box-filtered down, which anti-aliases edges. Nothing here is random at render time: a
:class:`Character` and a :class:`MotionTrack` determine the bytes.

Layouts:
    mouth_params: (T, 5) float in [0, 1], columns ``MOUTH_PARAMS`` (open 0 = lips closed)
    RenderResult.frames: (T, H, W, 3) uint8
    RenderResult.mouth_centre: (T, 2) float32 frame fractions (x, y)
    RenderResult.mouth_box: (T, 4) float32 frame fractions (x0, y0, x1, y1)
    RenderResult.mouth_mask: (T, H, W) uint8 in {0, 1}
"""

from __future__ import annotations

import argparse
import colorsys
import dataclasses
import math
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from ..errors import OmniSyncError
from .visemes import MOUTH_PARAMS

KINDS = ("human", "stylized", "nonhuman")
SUBTYPES = {
    "human": ("human",),
    "stylized": ("cartoon", "anime", "alien"),
    "nonhuman": ("cat", "dog", "bear", "robot", "blob", "fish", "bird"),
}

RGB = Tuple[int, int, int]

# -- rendering constants ---------------------------------------------------------------------------
SUPERSAMPLE = 2  # frames are drawn this many times larger, then box-filtered down (anti-aliasing)
MOUTH_PAD_PX = 2  # supersampled pixels added around the mouth box for polygon rasterisation
HEAD_POINTS = 56  # polygon vertices of a head outline
FEATURE_POINTS = 28  # polygon vertices of eyes, mouth and other small shapes
FACE_DEPTH = 0.9  # depth of the face centre in head units: how far turn/nod move the features
# Mouth shape (head units are scaled by the character's mouth_size m):
MOUTH_HALF_WIDTH = (0.7, 0.5)  # half-width = m·(0.7 + 0.5·width)·(1 − ROUND_NARROWING·round)
ROUND_NARROWING = 0.4
MOUTH_HALF_OPEN = (0.55, 0.35)  # inner half-height = m·open·(0.55 + 0.35·round)
ROUND_EXPONENT = 2.0  # superellipse exponent of a fully rounded mouth (an ellipse)
JAW_DROP = 0.35  # the opening's centre moves down by this fraction of its half-height
LIP_SIDE = 0.12  # lips extend this far (× m) beyond the corners of the opening
LIP_ROUND_PUSH = 0.3  # rounding thickens the lips by this fraction
TEETH_BAND = 0.3  # upper-teeth band height as a fraction of the opening (teeth = 1)
LOWER_TEETH_BAND = 0.12
TONGUE_BAND = 0.4  # tongue height as a fraction of the opening (tongue = 1)
TEETH_MIN_OPEN = 0.2  # teeth show only where open > 0.2 ...
TEETH_MIN_PARAM = 0.5  # ... and teeth > 0.5 (ramps over the next RAMP)
RAMP = 0.15
MIN_OPEN_UNITS = 1e-3  # below this half-height (head units) the mouth is drawn closed (lip line)
# Colours: the inner mouth is darker than DARK_LUMA, skin and fur are lighter than SKIN_MIN_LUMA.
DARK_LUMA = 45
SKIN_MIN_LUMA = 80

# -- framing and motion constants ------------------------------------------------------------------
HEAD_SCALE_RANGE = (0.35, 0.9)  # head height / frame height: medium shot to close-up
MOTION_MARGIN = 0.1  # frame fraction kept between the resting mouth box and the frame edge
OCCLUDER_PROB = 0.15
OCCLUDER_COVER = (0.2, 0.4)  # how far an occluder reaches into the mouth region (fraction)
BLINK_INTERVAL_S = (2.0, 6.0)
BLINK_DURATION_S = 0.15
# (std, time constant in s) of each low-passed random walk at liveliness 1; clipped at MOTION_LIMIT_STD.
MOTION_CHANNELS = {
    "dx": (0.012, 1.5),  # frame-width fraction
    "dy": (0.008, 1.2),  # frame-height fraction
    "nod": (0.05, 0.8),  # radians
    "turn": (0.10, 1.5),  # radians
    "roll": (0.035, 2.0),  # radians
    "scale": (0.006, 2.0),  # relative
}
MOTION_LIMIT_STD = 2.5
LIVELINESS_RANGE = (0.3, 1.2)
BREATH_PERIOD_S = (3.0, 5.0)
BREATH_AMPLITUDE = 0.008


# -- colour helpers --------------------------------------------------------------------------------


def _rgb(c: Sequence[float]) -> RGB:
    return tuple(int(round(min(255.0, max(0.0, float(v))))) for v in c)  # type: ignore[return-value]


def _mix(a: Sequence[float], b: Sequence[float], t: float) -> RGB:
    return _rgb([x + (y - x) * t for x, y in zip(a, b)])


def _shade(c: Sequence[float], k: float) -> RGB:
    return _rgb([v * k for v in c])


def _luma(c: Sequence[float]) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _lift(c: Sequence[float], min_luma: float = SKIN_MIN_LUMA) -> RGB:
    """Mix ``c`` with white until its luma reaches ``min_luma`` (keeps skin lighter than a mouth)."""
    lum = _luma(c)
    if lum >= min_luma:
        return _rgb(c)
    return _mix(c, (255, 255, 255), (min_luma - lum) / (255.0 - lum) + 1e-3)


def _hsv(h: float, s: float, v: float) -> RGB:
    return _rgb([255 * x for x in colorsys.hsv_to_rgb(h % 1.0, s, v)])


HUMAN_SKIN = ((255, 224, 196), (241, 194, 167), (224, 172, 138), (198, 134, 99), (161, 102, 72),
              (125, 82, 60), (104, 70, 54))
HAIR = ((30, 25, 22), (70, 45, 30), (120, 80, 45), (205, 165, 95), (165, 70, 35), (205, 205, 200),
        (95, 92, 95))
IRIS = ((90, 60, 35), (60, 40, 25), (70, 120, 170), (80, 130, 80), (120, 125, 130))
FUR = {
    "cat": ((232, 150, 70), (150, 150, 155), (240, 235, 225), (95, 90, 90), (160, 115, 80)),
    "dog": ((215, 175, 120), (145, 100, 62), (240, 236, 228), (110, 95, 85), (200, 150, 90)),
    "bear": ((145, 100, 62), (110, 80, 58), (235, 230, 218), (185, 140, 95)),
    "robot": ((172, 178, 188), (120, 150, 192), (205, 175, 95), (192, 75, 62), (232, 232, 236)),
}
MOUTH_INNER = ((45, 12, 18), (35, 8, 14), (55, 16, 22))
WHITE = (255, 255, 255)
NEAR_BLACK = (28, 22, 30)


# -- data ------------------------------------------------------------------------------------------


@dataclass
class Character:
    """Everything that defines one character and one shot; JSON-serialisable (:meth:`to_dict`).

    Lengths are in head units (the head's half-height is 1) unless noted; colours are RGB 0–255.
    """

    seed: int
    kind: str  # one of KINDS
    subtype: str  # one of SUBTYPES[kind]
    # head
    skin: RGB
    skin_shade: RGB
    outline: Optional[RGB]
    outline_w: float
    head_aspect: float  # half-width / half-height
    head_n: float  # superellipse exponent (2 ellipse, larger = boxier)
    head_taper: float  # chin narrowing (negative: wider at the bottom)
    # framing (head centre in frame fractions at rest; head height / frame height)
    head_scale: float
    head_cx: float
    head_cy: float
    # features
    ears: Optional[str]
    ear_colour: RGB
    muzzle: Optional[RGB]
    nose: Optional[str]
    nose_colour: RGB
    eye_style: str
    eye_size: float
    eye_spacing: float  # eye centre x as a fraction of the head half-width
    eye_y: float
    iris: RGB
    sclera: RGB
    lash: RGB
    brows: Optional[RGB]
    hair: Optional[str]
    hair_colour: RGB
    hat: Optional[str]
    hat_colour: RGB
    glasses: Optional[str]  # None, "clear" or "sun"
    glasses_colour: RGB
    beard: Optional[str]  # None, "full", "goatee" or "moustache"
    cheeks: Optional[RGB]
    extras: Tuple[str, ...]  # antenna, shine, drips, tail, crest, whiskers, bolts
    # mouth
    mouth_style: str  # lips, simple, grille or beak
    mouth_size: float  # m: the scale of every mouth length
    mouth_y: float
    mouth_n: float  # superellipse exponent of the unrounded mouth
    mouth_depth: float  # relative protrusion (snouts > 1)
    lip_thickness: float  # × m
    lip_colour: RGB
    teeth_colour: RGB
    tongue_colour: RGB
    inner_colour: RGB
    # body, background, occluder
    body: Optional[RGB]
    bg_style: str  # flat, gradient, stripes, noise or room
    bg_colours: Tuple[RGB, RGB]
    bg_seed: int
    occluder: Optional[str]  # None, hand, mic, pencil or cup
    occluder_side: int  # −1 left, +1 right (image coordinates)
    occluder_cover: float  # fraction of the mouth region's width or height it reaches into
    occluder_colour: RGB

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Character":
        names = {f.name for f in dataclasses.fields(cls)}
        missing, unknown = names - set(d), set(d) - names
        if missing or unknown:
            raise OmniSyncError(
                f"Character dict does not match this version: missing {sorted(missing)}, unknown "
                f"{sorted(unknown)}. Regenerate it with random_character(seed) from this version."
            )
        return cls(**{k: _tuples(v) for k, v in d.items()})


def _jsonable(v: Any) -> Any:
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    return v


def _tuples(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_tuples(x) for x in v)
    return v


@dataclass
class MotionTrack:
    """Per-frame head motion; every channel is a (T,) float32 array.

    dx, dy: sway in frame fractions (+ right, + down); nod, turn, roll: radians (nod + moves the
    facial features down, turn + moves them right, roll + rotates clockwise in the image); scale:
    head size multiplier (breathing, ~1); blink: eyelid closure in [0, 1].
    """

    fps: float
    dx: np.ndarray
    dy: np.ndarray
    nod: np.ndarray
    turn: np.ndarray
    roll: np.ndarray
    scale: np.ndarray
    blink: np.ndarray

    def __post_init__(self) -> None:
        lengths = set()
        for name in ("dx", "dy", "nod", "turn", "roll", "scale", "blink"):
            arr = np.array(getattr(self, name), dtype=np.float32).reshape(-1)  # a copy: no aliasing
            setattr(self, name, arr)
            lengths.add(arr.shape[0])
        if len(lengths) != 1:
            raise OmniSyncError(f"MotionTrack channels have different lengths {sorted(lengths)}; "
                                "give every channel one value per frame.")
        if not self.fps > 0:
            raise OmniSyncError(f"MotionTrack fps must be positive, got {self.fps}.")

    @property
    def num_frames(self) -> int:
        return int(self.dx.shape[0])

    @classmethod
    def still(cls, num_frames: int, fps: float) -> "MotionTrack":
        """A head that does not move or blink."""
        z = np.zeros(num_frames, np.float32)
        return cls(fps, z, z, z, z, z, np.ones(num_frames, np.float32), z)


@dataclass
class RenderResult:
    """frames (T, H, W, 3) uint8; mouth_centre (T, 2) and mouth_box (T, 4) float32 frame fractions;
    mouth_mask (T, H, W) uint8: 1 on the visible part of the region the mouth can occupy in this pose
    (the same for every mouth track); mouth_visible (T,) float32: its unoccluded fraction."""

    frames: np.ndarray
    mouth_centre: np.ndarray
    mouth_box: np.ndarray
    mouth_mask: np.ndarray
    mouth_visible: np.ndarray


# -- random characters -----------------------------------------------------------------------------


class _Draw:
    """Thin wrapper over a numpy Generator returning plain Python values (JSON-safe)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def u(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def p(self, prob: float) -> bool:
        return bool(self.rng.random() < prob)

    def choice(self, seq: Sequence[Any], weights: Optional[Sequence[float]] = None) -> Any:
        if weights is None:
            return seq[int(self.rng.integers(len(seq)))]
        w = np.asarray(weights, float)
        return seq[int(self.rng.choice(len(seq), p=w / w.sum()))]

    def jitter(self, c: RGB, amount: float = 10.0) -> RGB:
        return _rgb(np.asarray(c, float) + self.rng.uniform(-amount, amount, 3))

    def hue(self, s: Tuple[float, float] = (0.35, 0.7), v: Tuple[float, float] = (0.7, 0.95)) -> RGB:
        return _hsv(self.u(0, 1), self.u(*s), self.u(*v))


def random_character(seed: int, kind: Optional[str] = None) -> Character:
    """Draw a character from ``seed``; ``kind`` (one of KINDS) fixes the kind, None draws it."""
    r = _Draw(seed)
    if kind is None:
        kind = r.choice(KINDS)
    elif kind not in KINDS:
        raise OmniSyncError(f"kind must be one of {KINDS} or None, got {kind!r}.")
    subtype = r.choice(SUBTYPES[kind])
    c: Dict[str, Any] = dict(seed=int(seed), kind=kind, subtype=subtype)

    # Defaults (a plain human face), then each subtype overrides what makes it itself.
    skin = r.jitter(r.choice(HUMAN_SKIN), 8)
    hair_colour = r.jitter(r.choice(HAIR), 8)
    c.update(
        skin=skin, outline=None, outline_w=0.012, head_aspect=r.u(0.72, 0.84), head_n=r.u(2.0, 2.4),
        head_taper=r.u(0.12, 0.3), ears="human", muzzle=None, nose="human", eye_style="human",
        eye_size=r.u(0.075, 0.1), eye_spacing=r.u(0.36, 0.44), eye_y=r.u(-0.12, 0.0),
        iris=r.choice(IRIS), sclera=(245, 244, 238), lash=(40, 30, 30), brows=_shade(hair_colour, 0.8),
        hair=r.choice(("short", "long", "bun", "afro", None), (0.45, 0.3, 0.07, 0.06, 0.12)),
        hair_colour=hair_colour,
        hat=r.choice(("cap", "beanie", "tophat")) if r.p(0.2) else None, hat_colour=r.hue(),
        glasses=r.choice(("clear", "sun"), (0.8, 0.2)) if r.p(0.25) else None,
        glasses_colour=r.choice(((30, 30, 35), (120, 80, 40), (180, 180, 190), r.hue())),
        beard=r.choice(("full", "goatee", "moustache")) if r.p(0.2) else None, cheeks=None, extras=(),
        mouth_style="lips", mouth_size=r.u(0.2, 0.28), mouth_y=r.u(0.48, 0.6), mouth_n=r.u(1.4, 1.8),
        mouth_depth=1.0, lip_thickness=r.u(0.15, 0.3),
        teeth_colour=r.jitter((240, 238, 225), 8), tongue_colour=r.jitter((205, 95, 105), 12),
        inner_colour=r.choice(MOUTH_INNER), body=r.hue((0.2, 0.7), (0.3, 0.9)),
    )
    c["lip_colour"] = _mix(_shade(skin, 0.82), (175, 70, 85), r.u(0.25, 0.5))

    if subtype == "cartoon":
        skin = r.jitter(r.choice(HUMAN_SKIN), 8) if r.p(0.6) else r.hue((0.3, 0.6), (0.75, 0.95))
        simple = r.p(0.6)
        c.update(
            skin=skin, outline=NEAR_BLACK if r.p(0.75) else None, outline_w=r.u(0.025, 0.05),
            head_aspect=r.u(0.8, 1.0), head_n=r.u(2.0, 2.6), head_taper=r.u(0.0, 0.2),
            eye_style=r.choice(("dot", "human")), eye_size=r.u(0.1, 0.14), eye_spacing=r.u(0.32, 0.45),
            nose=r.choice(("button", "none")), brows=NEAR_BLACK if r.p(0.6) else None,
            hair=r.choice(("short", "spiky", "long", "bun", None)),
            hair_colour=r.hue() if r.p(0.4) else hair_colour,
            mouth_style="simple" if simple else "lips", mouth_size=r.u(0.22, 0.32),
            lip_thickness=r.u(0.07, 0.1) if simple else r.u(0.15, 0.25), mouth_n=r.u(1.5, 1.9),
            lip_colour=_shade(skin, 0.55) if simple else _mix(skin, (220, 60, 80), 0.5),
            cheeks=_mix(skin, (255, 110, 130), 0.45) if r.p(0.4) else None, beard=None,
        )
    elif subtype == "anime":
        skin = r.jitter(r.choice(HUMAN_SKIN[:3]), 6) if r.p(0.8) else r.hue((0.15, 0.35), (0.85, 1.0))
        c.update(
            skin=skin, outline=_shade(skin, 0.45) if r.p(0.6) else None, outline_w=r.u(0.015, 0.03),
            head_aspect=r.u(0.75, 0.85), head_n=2.2, head_taper=r.u(0.3, 0.45),
            eye_style="anime", eye_size=r.u(0.15, 0.19), eye_spacing=r.u(0.38, 0.44), eye_y=r.u(0.0, 0.1),
            iris=r.hue((0.5, 0.9), (0.5, 0.9)), nose="anime", lash=(30, 20, 30),
            hair=r.choice(("spiky", "long", "short")), hair_colour=r.hue((0.3, 0.9), (0.4, 0.95)),
            mouth_style="simple", mouth_size=r.u(0.17, 0.22), mouth_y=r.u(0.56, 0.66),
            lip_thickness=r.u(0.06, 0.09), lip_colour=_shade(skin, 0.6),
            cheeks=_mix(skin, (255, 120, 140), 0.4) if r.p(0.5) else None, beard=None, glasses=None,
        )
        c["brows"] = _shade(c["hair_colour"], 0.7)
    elif subtype == "alien":
        skin = _hsv(r.choice((0.3, 0.45, 0.55, 0.75, 0.85, 0.1)) + r.u(-0.04, 0.04), r.u(0.3, 0.6),
                    r.u(0.6, 0.9))
        c.update(
            skin=skin, outline=_shade(skin, 0.35) if r.p(0.5) else None, outline_w=r.u(0.02, 0.04),
            head_aspect=r.u(0.8, 1.05), head_n=r.u(2.0, 2.6), head_taper=r.u(0.15, 0.4),
            eye_style=r.choice(("anime", "dot", "animal")), eye_size=r.u(0.12, 0.17),
            iris=r.hue((0.5, 0.9), (0.4, 0.9)), nose=r.choice(("none", "button")), brows=None,
            hair=r.choice(("spiky", "short", None, None)), hair_colour=r.hue(), beard=None,
            mouth_style=r.choice(("lips", "simple")), lip_colour=_mix(_shade(skin, 0.6), (120, 40, 120), 0.4),
            lip_thickness=r.u(0.08, 0.2), extras=("antenna",) if r.p(0.3) else (),
        )
    elif kind == "nonhuman":
        c.update(hair=None, hat=None, glasses=None, beard=None, brows=None, cheeks=None,
                 outline=NEAR_BLACK if r.p(0.5) else None, outline_w=r.u(0.02, 0.045))
        if subtype in ("cat", "dog", "bear"):
            fur = r.jitter(r.choice(FUR[subtype]), 10)
            muzzle = _mix(fur, WHITE, r.u(0.45, 0.75))
            c.update(
                skin=fur, muzzle=muzzle, nose="animal", mouth_style="lips", mouth_depth=1.25,
                mouth_size=r.u(0.15, 0.21), mouth_y=r.u(0.45, 0.55), mouth_n=r.u(1.5, 1.9),
                lip_thickness=r.u(0.08, 0.14), lip_colour=_mix(_shade(muzzle, 0.55), (150, 60, 70), 0.3),
                eye_size=r.u(0.09, 0.13), eye_spacing=r.u(0.35, 0.45), eye_y=r.u(-0.2, -0.05),
                body=_shade(fur, 0.9) if r.p(0.6) else r.hue((0.3, 0.7), (0.4, 0.9)),
            )
            if subtype == "cat":
                c.update(ears="cat", head_aspect=r.u(1.0, 1.15), head_n=2.2, head_taper=r.u(0.05, 0.15),
                         nose_colour=(225, 130, 150), eye_style="animal",
                         iris=r.choice(((200, 190, 60), (120, 190, 90), (90, 160, 200), (220, 150, 50))),
                         extras=("whiskers",))
            elif subtype == "dog":
                c.update(ears="dog", head_aspect=r.u(0.85, 1.0), head_n=2.1, head_taper=r.u(0.1, 0.25),
                         nose_colour=(35, 30, 30), eye_style="dot")
            else:
                c.update(ears="bear", head_aspect=r.u(0.95, 1.1), head_n=2.0, head_taper=r.u(0.0, 0.1),
                         nose_colour=(45, 35, 35), eye_style="dot")
        elif subtype == "robot":
            metal = r.jitter(r.choice(FUR["robot"]), 8)
            led = r.choice(((90, 230, 255), (120, 255, 140), (255, 90, 80), (255, 200, 60)))
            c.update(
                skin=metal, ears="robot", head_aspect=r.u(0.85, 1.0), head_n=r.u(4.0, 7.0),
                head_taper=r.u(0.0, 0.05), nose=None, eye_style="led", eye_size=r.u(0.1, 0.14),
                eye_spacing=r.u(0.36, 0.46), eye_y=r.u(-0.2, -0.05), iris=led,
                outline=(40, 40, 50) if r.p(0.6) else None,
                mouth_style="grille", mouth_n=6.0, mouth_size=r.u(0.24, 0.32), mouth_y=r.u(0.45, 0.55),
                lip_thickness=0.15, lip_colour=_shade(metal, 0.7), teeth_colour=(200, 225, 245),
                tongue_colour=led, inner_colour=(15, 15, 22), body=_shade(metal, 0.8),
                extras=tuple(e for e, pr in (("antenna", 0.6), ("bolts", 0.7)) if r.p(pr)),
            )
        elif subtype == "blob":
            skin = r.hue((0.4, 0.7), (0.7, 0.95))
            c.update(
                skin=skin, ears=None, head_aspect=r.u(1.0, 1.2), head_n=2.0, head_taper=r.u(-0.35, -0.15),
                nose=None, eye_style=r.choice(("googly", "dot")), eye_size=r.u(0.12, 0.17),
                eye_y=r.u(-0.35, -0.15), mouth_style="simple", mouth_size=r.u(0.22, 0.3),
                mouth_y=r.u(0.3, 0.45), lip_thickness=0.08, lip_colour=_shade(skin, 0.5), body=None,
                extras=("shine", "drips") if r.p(0.5) else ("shine",), outline=_shade(skin, 0.5) if r.p(0.5) else None,
            )
        elif subtype == "fish":
            skin = r.choice(((240, 140, 50), (80, 150, 220), (235, 205, 70), (70, 190, 175), (230, 110, 150)))
            skin = r.jitter(skin, 10)
            c.update(
                skin=skin, ears="fin", head_aspect=r.u(1.15, 1.35), head_n=2.0,
                head_taper=0.0, nose=None, eye_style="googly", eye_size=r.u(0.13, 0.18),
                eye_spacing=r.u(0.5, 0.6), eye_y=r.u(-0.35, -0.2), mouth_style="lips", mouth_n=2.0,
                mouth_size=r.u(0.2, 0.26), mouth_y=r.u(0.3, 0.45), lip_thickness=r.u(0.35, 0.5),
                lip_colour=_mix(skin, (235, 100, 120), 0.5), body=None, extras=("tail",),
            )
        else:  # bird
            skin = r.choice(((70, 120, 220), (215, 60, 50), (240, 205, 60), (90, 180, 90), (240, 240, 240)))
            skin = r.jitter(skin, 10)
            c.update(
                skin=skin, ears=None, head_aspect=r.u(0.9, 1.0), head_n=2.0, head_taper=0.05, nose=None,
                eye_style=r.choice(("googly", "dot")), eye_size=r.u(0.11, 0.15), eye_spacing=r.u(0.4, 0.5),
                eye_y=r.u(-0.25, -0.1), mouth_style="beak", mouth_n=1.25, mouth_size=r.u(0.2, 0.26),
                mouth_y=r.u(0.35, 0.45), mouth_depth=1.3, lip_thickness=r.u(0.4, 0.55),
                lip_colour=r.choice(((245, 170, 40), (240, 200, 60), (230, 120, 40))),
                body=_shade(skin, 0.85), extras=("crest",),
            )

    skin = c["skin"] = _lift(c["skin"])
    c["skin_shade"] = _shade(skin, 0.82)
    if c["kind"] == "human":
        c["outline"] = _shade(skin, 0.7)
    # Ear and nose colours follow the final skin, except where a subtype chose its own.
    ear_shade = {"robot": 0.75, "dog": 0.7, "fin": 0.8}.get(c["ears"], 1.0)
    c["ear_colour"] = _shade(skin, ear_shade)
    if c["nose"] == "button":
        c["nose_colour"] = _mix(skin, (230, 110, 110), 0.35)
    elif c["nose"] != "animal":
        c["nose_colour"] = _shade(skin, 0.72)
    c["muzzle"] = _lift(c["muzzle"]) if c["muzzle"] is not None else None

    # Keep the widest mouth inside the head outline at the mouth's height.
    y = c["mouth_y"]
    n = c["head_n"]
    head_half_w = c["head_aspect"] * (1 - max(c["head_taper"], 0.0) * y * y) * (1 - y ** n) ** (1 / n)
    widest = MOUTH_HALF_WIDTH[0] + MOUTH_HALF_WIDTH[1] + LIP_SIDE  # × m
    c["mouth_size"] = float(min(c["mouth_size"], 0.7 * head_half_w / widest))

    # Framing: head size, then the mouth's resting position, then the head centre.
    head_scale = r.u(*HEAD_SCALE_RANGE)
    half = head_scale / 2  # frame fraction per head unit (vertical)
    ext_x = 1.4 * c["mouth_size"] * half
    ext_y = 1.3 * c["mouth_size"] * (1 + c["lip_thickness"]) * half
    mx = r.u(max(0.3, ext_x + MOTION_MARGIN), min(0.7, 1 - ext_x - MOTION_MARGIN))
    lo = max(0.3, ext_y + MOTION_MARGIN, -0.2 + half + y * half)  # head top at most 0.2 above frame
    hi = max(lo, min(0.85, 1 - ext_y - MOTION_MARGIN))
    my = r.u(lo, hi)
    c.update(head_scale=head_scale, head_cx=mx, head_cy=my - y * half)

    # Background and occluder (their parameters are drawn even when unused: stable seeds).
    bg_style = r.choice(("flat", "gradient", "stripes", "noise", "room"), (0.2, 0.25, 0.15, 0.2, 0.2))
    base = r.hue((0.1, 0.5), (0.35, 0.95))
    c.update(bg_style=bg_style, bg_colours=(base, _mix(base, r.hue((0.1, 0.6), (0.2, 1.0)), r.u(0.3, 0.8))),
             bg_seed=int(r.rng.integers(2 ** 31)))
    occluder = r.choice(("hand", "mic", "pencil", "cup"))
    occ_colour = {"hand": c["skin"] if kind != "nonhuman" else r.choice(HUMAN_SKIN), "mic": (60, 60, 66),
                  "pencil": (245, 200, 60), "cup": r.hue((0.3, 0.8), (0.5, 0.95))}[occluder]
    c.update(occluder=occluder if r.p(OCCLUDER_PROB) else None, occluder_side=r.choice((-1, 1)),
             occluder_cover=r.u(*OCCLUDER_COVER), occluder_colour=_rgb(occ_colour))
    for k in ("head_aspect", "head_n", "head_taper", "eye_size", "eye_spacing", "eye_y", "mouth_size",
              "mouth_y", "mouth_n", "mouth_depth", "lip_thickness", "outline_w"):
        c[k] = float(c[k])
    return Character(**c)


# -- random motion ---------------------------------------------------------------------------------


def _smooth_walk(rng: np.random.Generator, num_frames: int, fps: float, tau_s: float) -> np.ndarray:
    """Unit-variance Ornstein–Uhlenbeck walk with time constant ``tau_s``, smoothed twice by an EMA
    of tau_s/4 so it has no frame-to-frame jitter; clipped to ±MOTION_LIMIT_STD."""
    a = math.exp(-1.0 / (fps * tau_s))
    noise = rng.standard_normal(num_frames)
    x = np.empty(num_frames)
    x[0] = noise[0]
    for t in range(1, num_frames):
        x[t] = a * x[t - 1] + math.sqrt(1 - a * a) * noise[t]
    alpha = 1 - math.exp(-4.0 / (fps * tau_s))
    for _ in range(2):
        y = np.empty_like(x)
        y[0] = x[0]
        for t in range(1, num_frames):
            y[t] = y[t - 1] + alpha * (x[t] - y[t - 1])
        x = y
    return np.clip(x, -MOTION_LIMIT_STD, MOTION_LIMIT_STD)


def _blinks(rng: np.random.Generator, num_frames: int, fps: float) -> np.ndarray:
    """Eyelid closure: a blink every BLINK_INTERVAL_S lasting BLINK_DURATION_S; the frame nearest
    each blink's middle is fully closed, so a blink is never lost between frames."""
    closure = np.zeros(num_frames)
    times = np.arange(num_frames) / fps
    t = rng.uniform(0.3, BLINK_INTERVAL_S[0])
    while t < num_frames / fps:
        half = BLINK_DURATION_S / 2
        closure = np.maximum(closure, np.clip(1 - np.abs(times - t) / half, 0, 1) ** 0.5)
        centre = int(round(t * fps))
        if centre < num_frames:
            closure[centre] = 1.0
        t += rng.uniform(*BLINK_INTERVAL_S)
    return closure


def random_motion(seed: int, num_frames: int, fps: float) -> MotionTrack:
    """Smooth head motion and blinks for ``num_frames`` frames at ``fps`` frames/s."""
    if num_frames < 1 or not fps > 0:
        raise OmniSyncError(f"random_motion needs num_frames >= 1 and fps > 0, got {num_frames}, {fps}.")
    rng = np.random.default_rng(seed)
    live = rng.uniform(*LIVELINESS_RANGE)
    ch = {name: std * live * _smooth_walk(rng, num_frames, fps, tau) for name, (std, tau) in MOTION_CHANNELS.items()}
    t = np.arange(num_frames) / fps
    breath = BREATH_AMPLITUDE * np.sin(2 * np.pi * t / rng.uniform(*BREATH_PERIOD_S) + rng.uniform(0, 2 * np.pi))
    return MotionTrack(fps=float(fps), dx=ch["dx"], dy=ch["dy"], nod=ch["nod"], turn=ch["turn"], roll=ch["roll"],
                       scale=1.0 + ch["scale"] + breath, blink=_blinks(rng, num_frames, fps))


# -- geometry --------------------------------------------------------------------------------------


@lru_cache(maxsize=512)
def _unit_superellipse(n: float, k: int) -> Tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0, 2 * np.pi, k, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    e = 2.0 / n
    return np.sign(c) * np.abs(c) ** e, np.sign(s) * np.abs(s) ** e


def _se(a: float, b: float, n: float = 2.0, cx: float = 0.0, cy: float = 0.0, taper: float = 0.0,
        k: int = FEATURE_POINTS) -> np.ndarray:
    """Superellipse |x/a|^n + |y/b|^n = 1 as (k, 2) points; taper narrows the lower half."""
    ux, uy = _unit_superellipse(round(float(n), 3), k)
    x = a * ux
    if taper:
        x = x * (1 - taper * np.clip(uy, 0, 1) ** 2)
    return np.stack([x + cx, b * uy + cy], 1)


def _rotate(pts: np.ndarray, angle: float, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    p = pts - (cx, cy)
    return np.stack([c * p[:, 0] - s * p[:, 1] + cx, s * p[:, 0] + c * p[:, 1] + cy], 1)


def _clip_y(pts: np.ndarray, y: float, keep_above: bool) -> Optional[np.ndarray]:
    """Sutherland–Hodgman clip of a polygon by the line at ``y`` (keep_above: keep points y <= line)."""
    s = (pts[:, 1] - y) if keep_above else (y - pts[:, 1])
    out = []
    n = len(pts)
    for i in range(n):
        j = (i + 1) % n
        if s[i] <= 0:
            out.append(pts[i])
        if (s[i] <= 0) != (s[j] <= 0):
            out.append(pts[i] + (pts[j] - pts[i]) * (s[i] / (s[i] - s[j])))
    return np.array(out) if len(out) >= 3 else None


class _Pose:
    """The affine maps of one frame: head units → supersampled pixels."""

    def __init__(self, ch: Character, motion: MotionTrack, t: int, height: int, width: int):
        self.ch = ch
        self.px = ch.head_scale * height / 2 * float(motion.scale[t])  # pixels per head unit
        roll = float(motion.roll[t])
        c, s = math.cos(roll) * self.px, math.sin(roll) * self.px
        cx = (ch.head_cx + float(motion.dx[t])) * width
        cy = (ch.head_cy + float(motion.dy[t])) * height
        self.head = np.array([[c, -s, cx], [s, c, cy], [0, 0, 1.0]])
        self.yaw, self.pitch = float(motion.turn[t]), float(motion.nod[t])
        # The body sways less than the head and does not roll.
        rest_px = ch.head_scale * height / 2
        self.body = np.array([[rest_px, 0, (ch.head_cx + 0.4 * float(motion.dx[t])) * width],
                              [0, rest_px, (ch.head_cy + 0.4 * float(motion.dy[t])) * height], [0, 0, 1.0]])

    def at(self, ax: float, ay: float, depth: float = 1.0) -> np.ndarray:
        """Map of a feature anchored at (ax, ay) on the face: offsets are foreshortened by turn/nod
        and the anchor moves by its depth on a sphere-like face."""
        z = depth * FACE_DEPTH * math.sqrt(max(0.0, 1 - (ax / self.ch.head_aspect) ** 2 - ay * ay))
        cyaw, syaw = math.cos(self.yaw), math.sin(self.yaw)
        cp, sp = math.cos(self.pitch), math.sin(self.pitch)
        local = np.array([[cyaw, 0, ax * cyaw + z * syaw], [0, cp, ay * cp + z * sp], [0, 0, 1.0]])
        return self.head @ local


class _Canvas:
    """ImageDraw with head-unit polygons and line widths."""

    def __init__(self, img: Image.Image, px: float):
        self.d = ImageDraw.Draw(img)
        self.px = px

    @staticmethod
    def _xy(pts: np.ndarray, M: np.ndarray) -> List[float]:
        return (pts @ M[:2, :2].T + M[:2, 2]).ravel().tolist()

    def _w(self, w: float) -> int:
        return max(1, int(round(w * self.px)))

    def poly(self, pts: Optional[np.ndarray], M: np.ndarray, fill: Optional[RGB],
             outline: Optional[RGB] = None, width: float = 0.0) -> None:
        if pts is None:
            return
        xy = self._xy(pts, M)
        if fill is not None:
            self.d.polygon(xy, fill=fill)
        if outline is not None and width > 0:
            self.d.line(xy + xy[:2], fill=outline, width=self._w(width), joint="curve")

    def line(self, pts: np.ndarray, M: np.ndarray, colour: RGB, width: float) -> None:
        self.d.line(self._xy(np.asarray(pts, float), M), fill=colour, width=self._w(width), joint="curve")


# -- background and body ---------------------------------------------------------------------------


def _background(ch: Character, height: int, width: int) -> Image.Image:
    c1, c2 = (np.asarray(c, np.float32) for c in ch.bg_colours)
    rng = np.random.default_rng(ch.bg_seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy /= height
    xx /= width
    if ch.bg_style == "flat":
        return Image.new("RGB", (width, height), ch.bg_colours[0])
    if ch.bg_style == "room":
        img = Image.new("RGB", (width, height), ch.bg_colours[0])
        d = ImageDraw.Draw(img)
        horizon = rng.uniform(0.62, 0.85) * height
        d.rectangle([0, horizon, width, height], fill=_shade(ch.bg_colours[1], 0.8))
        d.rectangle([0, horizon - 0.015 * height, width, horizon], fill=_shade(ch.bg_colours[0], 0.7))
        for _ in range(int(rng.integers(1, 4))):  # windows, pictures, doors
            x0, w = rng.uniform(-0.1, 0.9) * width, rng.uniform(0.12, 0.35) * width
            y0, h = rng.uniform(0.05, 0.35) * height, rng.uniform(0.15, 0.4) * height
            frame = _shade(ch.bg_colours[0], 0.55)
            inner = _hsv(rng.uniform(0.5, 0.65), rng.uniform(0.2, 0.5), rng.uniform(0.75, 1.0)) \
                if rng.random() < 0.5 else _hsv(rng.uniform(0, 1), rng.uniform(0.2, 0.7), rng.uniform(0.3, 0.9))
            d.rectangle([x0, y0, x0 + w, y0 + h], fill=frame)
            m = 0.012 * width
            d.rectangle([x0 + m, y0 + m, x0 + w - m, y0 + h - m], fill=inner)
        return img
    if ch.bg_style == "gradient":
        a = rng.uniform(0, 2 * np.pi)
        t = math.cos(a) * xx + math.sin(a) * yy
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    elif ch.bg_style == "stripes":
        a, period = rng.uniform(0, np.pi), rng.uniform(0.06, 0.25)
        t = 0.5 + 0.5 * np.tanh(4 * np.sin(2 * np.pi * (math.cos(a) * xx + math.sin(a) * yy) / period))
    else:  # noise: smooth blotches from a small random grid
        g = rng.uniform(0, 1, (int(rng.integers(3, 8)), int(rng.integers(3, 8)))).astype(np.float32)
        t = np.asarray(Image.fromarray((g * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC),
                       np.float32) / 255
    rgb = c1 + (c2 - c1) * t[..., None]
    return Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8))


def _draw_body(cv: _Canvas, ch: Character, pose: _Pose) -> None:
    """Shoulders (which sway less than the head and do not roll) and the neck (which moves with it)."""
    if ch.body is None:
        return
    ow, oc = ch.outline_w, ch.outline
    cv.poly(_se(1.75, 0.95, 2.6, 0, 2.05, k=HEAD_POINTS), pose.body, ch.body, oc, ow)
    if ch.subtype != "robot":
        cv.poly(_se(0.38, 0.2, 2.0, 0, 1.15), pose.body, _shade(ch.body, 0.8))  # collar shadow
    neck = _se(0.26 * ch.head_aspect / 0.8, 0.55, 6.0, 0, 0.95)
    cv.poly(neck, pose.head, _shade(ch.skin, 0.75) if ch.subtype == "robot" else ch.skin_shade, oc, ow)


# -- head ------------------------------------------------------------------------------------------


def _head_outline(ch: Character, grow: float = 0.0) -> np.ndarray:
    return _se(ch.head_aspect + grow, 1.0 + grow, ch.head_n, taper=ch.head_taper, k=HEAD_POINTS)


def _draw_hair_back(cv: _Canvas, ch: Character, pose: _Pose) -> None:
    hc, oc, ow = ch.hair_colour, ch.outline, ch.outline_w
    if ch.hair == "long":
        cv.poly(_se(ch.head_aspect * 1.18, 1.2, 2.6, 0, 0.25), pose.head, hc, oc, ow)
    elif ch.hair == "afro":
        cv.poly(_se(ch.head_aspect * 1.4, 1.05, 2.0, 0, -0.35), pose.head, hc, oc, ow)
    elif ch.hair == "bun":
        cv.poly(_se(0.3, 0.28, 2.0, 0, -1.05), pose.head, hc, oc, ow)


def _draw_hair_front(cv: _Canvas, ch: Character, pose: _Pose) -> None:
    if ch.hair is None:
        return
    hc, oc, ow = ch.hair_colour, ch.outline, ch.outline_w
    hairline = ch.eye_y - ch.eye_size * 2.6 - 0.08
    cap = _clip_y(_head_outline(ch, 0.05), hairline, keep_above=True)
    cv.poly(cap, pose.head, hc, oc, ow)
    side = 1 if ch.seed % 2 else -1
    cv.poly(_se(ch.head_aspect * 0.7, 0.16, 2.0, side * 0.18, hairline - 0.02), pose.head, hc)
    if ch.hair == "spiky":
        for i in range(6):
            x = (i - 2.5) / 2.5 * ch.head_aspect * 0.8
            base_y = -math.sqrt(max(0.05, 1 - (x / ch.head_aspect) ** 2)) * 0.95
            tri = np.array([[x - 0.16, base_y + 0.1], [x + 0.16, base_y + 0.1], [x * 1.25, base_y - 0.35]])
            cv.poly(tri, pose.head, hc, oc, ow)


def _draw_hat(cv: _Canvas, ch: Character, pose: _Pose) -> None:
    if ch.hat is None:
        return
    hc, oc, ow, a = ch.hat_colour, ch.outline or _shade(ch.hat_colour, 0.6), max(ch.outline_w, 0.02), ch.head_aspect
    if ch.hat == "cap":
        cv.poly(_clip_y(_head_outline(ch, 0.07), -0.5, True), pose.head, hc, oc, ow)
        side = 1 if ch.seed % 2 else -1
        cv.poly(_se(a * 0.8, 0.1, 2.0, side * 0.3, -0.5), pose.head, _shade(hc, 0.8), oc, ow)
    elif ch.hat == "beanie":
        cv.poly(_clip_y(_head_outline(ch, 0.09), -0.4, True), pose.head, hc, oc, ow)
        cv.poly(_se(a * 1.08, 0.12, 6.0, 0, -0.45), pose.head, _shade(hc, 0.8), oc, ow)
        cv.poly(_se(0.15, 0.15, 2.0, 0, -1.12), pose.head, _mix(hc, WHITE, 0.5), oc, ow)
    else:  # tophat
        cv.poly(_se(a * 0.72, 0.5, 8.0, 0, -1.25), pose.head, hc, oc, ow)
        cv.poly(_se(a * 0.73, 0.08, 8.0, 0, -0.86), pose.head, _mix(hc, (200, 40, 40), 0.6))
        cv.poly(_se(a * 1.2, 0.09, 3.0, 0, -0.76), pose.head, hc, oc, ow)


def _draw_ears_back(cv: _Canvas, ch: Character, pose: _Pose) -> None:
    a, ec, oc, ow = ch.head_aspect, ch.ear_colour, ch.outline, ch.outline_w
    inner = _mix(ec, (240, 150, 170), 0.6)
    for sgn in (-1, 1):
        if ch.ears == "human":
            cv.poly(_se(0.13, 0.2, 2.0, sgn * a * 0.96, 0.02), pose.head, ec, oc, ow)
        elif ch.ears == "cat":
            tri = np.array([[sgn * a * 0.25, -0.85], [sgn * a * 0.85, -0.55], [sgn * a * 0.75, -1.35]])
            cv.poly(tri, pose.head, ec, oc, ow)
            cv.poly((tri - tri.mean(0)) * 0.55 + tri.mean(0) + (0, 0.05), pose.head, inner)
        elif ch.ears == "bear":
            cv.poly(_se(0.27, 0.27, 2.0, sgn * a * 0.68, -0.78), pose.head, ec, oc, ow)
            cv.poly(_se(0.15, 0.15, 2.0, sgn * a * 0.68, -0.76), pose.head, _mix(ec, WHITE, 0.4))
        elif ch.ears == "robot":
            cv.poly(_se(0.13, 0.28, 5.0, sgn * a * 1.02, 0.0), pose.head, ec, oc, ow)
        elif ch.ears == "fin":
            fin = np.array([[sgn * a * 0.7, 0.45], [sgn * a * 1.35, 0.35], [sgn * a * 1.2, 0.85]])
            cv.poly(fin, pose.head, ec, oc, ow)
    if "antenna" in ch.extras:
        cv.line([(0, -0.95), (0.05, -1.4)], pose.head, ch.outline or _shade(ch.skin, 0.5), 0.04)
        cv.poly(_se(0.09, 0.09, 2.0, 0.05, -1.43), pose.head, _mix(ch.iris, WHITE, 0.2), oc, ow)
    if "crest" in ch.extras:
        for i, ang in enumerate((-0.5, 0.0, 0.5)):
            cv.poly(_rotate(_se(0.08, 0.3, 2.0, 0, -1.15), ang, 0, -0.9), pose.head,
                    _shade(ch.skin, 0.85 + 0.1 * i), oc, ow)
    if "tail" in ch.extras:
        side = 1 if ch.seed % 2 else -1
        tail = np.array([[side * a * 0.8, 0.0], [side * a * 1.55, -0.55], [side * a * 1.55, 0.55]])
        cv.poly(tail, pose.head, _shade(ch.skin, 0.8), oc, ow)
        cv.poly(np.array([[-0.35, -0.8], [0.3, -0.85], [-0.1, -1.35]]), pose.head, _shade(ch.skin, 0.8), oc, ow)


def _draw_head(cv: _Canvas, ch: Character, pose: _Pose) -> None:
    if "drips" in ch.extras:
        cv.poly(_se(ch.head_aspect * 1.25, 0.16, 2.0, 0, 0.92), pose.head, ch.skin, ch.outline, ch.outline_w)
    cv.poly(_head_outline(ch), pose.head, ch.skin, ch.outline, ch.outline_w)
    if ch.ears == "dog":
        for sgn in (-1, 1):
            ear = _rotate(_se(0.2, 0.45, 2.0, sgn * ch.head_aspect * 0.92, -0.2), -sgn * 0.25,
                          sgn * ch.head_aspect * 0.92, -0.6)
            cv.poly(ear, pose.head, ch.ear_colour, ch.outline, ch.outline_w)
    if "shine" in ch.extras:
        cv.poly(_se(0.18, 0.1, 2.0, -0.45 * ch.head_aspect, -0.6), pose.at(0, 0, 0), _mix(ch.skin, WHITE, 0.6))
    if "drips" in ch.extras:
        for x in (-0.5, 0.15, 0.6):
            cv.poly(_se(0.07, 0.12, 2.0, x * ch.head_aspect, 0.95), pose.head, _shade(ch.skin, 0.9))
    if "bolts" in ch.extras:
        for sx in (-1, 1):
            for sy in (-1, 1):
                cv.poly(_se(0.045, 0.045, 2.0, sx * ch.head_aspect * 0.8, sy * 0.8), pose.head, _shade(ch.skin, 0.6))
        cv.line([(-ch.head_aspect * 0.7, -0.55), (ch.head_aspect * 0.7, -0.55)], pose.at(0, -0.55, 0.5),
                _shade(ch.skin, 0.7), 0.025)


def _draw_face(cv: _Canvas, ch: Character, pose: _Pose, blink: float, mouth_top: float) -> None:
    """Everything between the head and the mouth: muzzle, cheeks, nose, eyes, brows, glasses, beard."""
    a, oc, ow = ch.head_aspect, ch.outline, ch.outline_w
    if ch.muzzle is not None:
        mz_b = 0.32 if ch.subtype != "dog" else 0.36
        cv.poly(_se(0.45 if ch.subtype != "dog" else 0.38, mz_b, 2.2), pose.at(0, ch.mouth_y - 0.1, 1.1),
                ch.muzzle, oc, ow * 0.6)
    if ch.cheeks is not None:
        for sgn in (-1, 1):
            cv.poly(_se(0.13, 0.08, 2.0), pose.at(sgn * a * 0.55, ch.mouth_y - 0.25), ch.cheeks)
    # Nose: between the eyes and the top of the mouth region.
    nose_y = min(mouth_top - 0.07, ch.eye_y + ch.eye_size + 0.25)
    if ch.nose == "human":
        M = pose.at(0, nose_y, 1.15)
        cv.line([(0.02, -0.25), (0.05, -0.04)], M, ch.nose_colour, 0.018)
        cv.poly(_se(0.09, 0.035, 2.0), M, ch.nose_colour)
        for sgn in (-1, 1):
            cv.poly(_se(0.02, 0.014, 2.0, sgn * 0.045, 0.005), M, _shade(ch.nose_colour, 0.7))
    elif ch.nose == "button":
        cv.poly(_se(0.07, 0.05, 2.0), pose.at(0, nose_y, 1.15), ch.nose_colour, oc, ow * 0.5)
    elif ch.nose == "anime":
        cv.line([(0, -0.02), (-0.015, 0.02)], pose.at(0, nose_y, 1.1), ch.nose_colour, 0.015)
    elif ch.nose == "animal":
        ny = mouth_top - 0.1
        M = pose.at(0, ny, 1.3)
        cv.line([(0, 0.0), (0, 0.1)], M, _shade(ch.muzzle or ch.skin, 0.5), 0.02)
        tri = np.array([[-0.1, -0.07], [0.1, -0.07], [0.0, 0.04]])
        cv.poly(tri, M, ch.nose_colour, _shade(ch.nose_colour, 0.6), 0.02)
    if "whiskers" in ch.extras:
        for sgn in (-1, 1):
            M = pose.at(sgn * 0.2, mouth_top - 0.05, 1.2)
            for dy in (-0.05, 0.02, 0.09):
                cv.line([(0, dy * 0.3), (sgn * 0.5, dy)], M, _shade(ch.muzzle or ch.skin, 0.45), 0.012)
    for sgn in (-1, 1):
        _draw_eye(cv, ch, pose.at(sgn * ch.eye_spacing * a, ch.eye_y), sgn, blink)
    if ch.brows is not None:
        for sgn in (-1, 1):
            lift = ch.eye_size * (1.9 if ch.eye_style == "anime" else 1.7) + 0.04
            M = pose.at(sgn * ch.eye_spacing * a, ch.eye_y - lift)
            cv.poly(_rotate(_se(ch.eye_size * 1.4, 0.03, 2.5), sgn * 0.12), M, ch.brows)
    if ch.glasses is not None:
        e = ch.eye_size
        for sgn in (-1, 1):
            M = pose.at(sgn * ch.eye_spacing * a, ch.eye_y)
            cv.poly(_se(e * 1.9, e * 1.45, 3.0), M, (30, 30, 40) if ch.glasses == "sun" else None,
                    ch.glasses_colour, 0.03)
        bridge_x = ch.eye_spacing * a - e * 1.9
        cv.line([(-bridge_x, 0), (bridge_x, 0)], pose.at(0, ch.eye_y - 0.03), ch.glasses_colour, 0.03)
    if ch.beard == "full":
        beard = _clip_y(_se(a * 0.85, 0.62, 2.2, 0, ch.mouth_y + 0.05), mouth_top - 0.05, keep_above=False)
        cv.poly(beard, pose.at(0, 0, 0), ch.hair_colour)
    elif ch.beard == "goatee":
        cv.poly(_se(ch.mouth_size * 0.9, 0.16, 2.0), pose.at(0, ch.mouth_y + 0.3), ch.hair_colour)


def _eye_parts(ch: Character, sgn: int) -> Tuple[np.ndarray, RGB, List[Tuple[str, np.ndarray, Any, Any, float]]]:
    """(outer shape used by the eyelid, lid colour, draw ops) in eye-local head units."""
    e, iris, lash = ch.eye_size, ch.iris, ch.lash
    ops: List[Tuple[str, np.ndarray, Any, Any, float]] = []
    style = ch.eye_style
    if style == "human":
        outer = _se(1.45 * e, e, 1.7)
        ops += [("poly", outer, ch.sclera, None, 0.0), ("poly", _se(0.75 * e, 0.75 * e), iris, None, 0.0),
                ("poly", _se(0.36 * e, 0.36 * e), (20, 15, 15), None, 0.0),
                ("poly", _se(0.13 * e, 0.13 * e, cx=0.25 * e, cy=-0.25 * e), WHITE, None, 0.0),
                ("line", outer[outer[:, 1] <= 1e-9], lash, None, 0.16 * e)]
    elif style == "dot":
        outer = _se(0.62 * e, 0.85 * e)
        ops += [("poly", outer, (35, 28, 30), None, 0.0),
                ("poly", _se(0.2 * e, 0.2 * e, cx=0.2 * e, cy=-0.35 * e), WHITE, None, 0.0)]
    elif style == "anime":
        outer = _se(0.9 * e, 1.15 * e, 2.3)
        iris_pts = _se(0.72 * e, 0.98 * e, cy=0.12 * e)
        ops += [("poly", outer, ch.sclera, None, 0.0), ("poly", iris_pts, iris, None, 0.0),
                ("poly", _clip_y(iris_pts, -0.2 * e, True), _shade(iris, 0.6), None, 0.0),
                ("poly", _se(0.32 * e, 0.48 * e, cy=0.2 * e), (25, 20, 35), None, 0.0),
                ("poly", _se(0.24 * e, 0.24 * e, cx=0.28 * e, cy=-0.3 * e), WHITE, None, 0.0),
                ("poly", _se(0.1 * e, 0.1 * e, cx=-0.25 * e, cy=0.5 * e), WHITE, None, 0.0),
                ("line", outer[outer[:, 1] <= -0.35 * e], lash, None, 0.28 * e)]
    elif style == "led":
        outer = _se(1.2 * e, 0.8 * e, 5.0)
        ops += [("poly", outer, (30, 34, 44), None, 0.0), ("poly", _se(e, 0.6 * e, 5.0), iris, None, 0.0),
                ("poly", _se(0.55 * e, 0.28 * e, 5.0), _mix(iris, WHITE, 0.6), None, 0.0)]
    elif style == "animal":
        outer = _se(0.95 * e, 0.85 * e)
        slit = ch.subtype == "cat"
        ops += [("poly", outer, iris, _shade(iris, 0.4), 0.12 * e),
                ("poly", _se(0.16 * e, 0.75 * e) if slit else _se(0.45 * e, 0.45 * e), (20, 15, 15), None, 0.0),
                ("poly", _se(0.15 * e, 0.15 * e, cx=0.3 * e, cy=-0.3 * e), WHITE, None, 0.0)]
    else:  # googly
        outer = _se(e, e)
        ops += [("poly", outer, WHITE, (30, 25, 30), 0.1 * e),
                ("poly", _se(0.5 * e, 0.5 * e, cx=-sgn * 0.15 * e, cy=0.1 * e), (20, 15, 20), None, 0.0),
                ("poly", _se(0.14 * e, 0.14 * e, cx=-sgn * 0.05 * e, cy=-0.05 * e), WHITE, None, 0.0)]
    lid = _shade(ch.skin, 0.92) if style != "led" else _shade(ch.skin, 0.6)
    return outer, lid, ops


def _draw_eye(cv: _Canvas, ch: Character, M: np.ndarray, sgn: int, blink: float) -> None:
    outer, lid, ops = _eye_parts(ch, sgn)
    for kind, pts, colour, outline, width in ops:
        if kind == "poly":
            cv.poly(pts, M, colour, outline, width)
        elif len(pts) >= 2:
            cv.line(pts, M, colour, width)
    if blink > 0.02:
        top, bottom = float(outer[:, 1].min()), float(outer[:, 1].max())
        edge = top + (bottom - top) * min(blink, 1.0)
        lid_pts = _clip_y(outer, edge + 1e-6, keep_above=True)
        cv.poly(lid_pts, M, lid)
        if lid_pts is not None:
            on_edge = lid_pts[np.abs(lid_pts[:, 1] - (edge + 1e-6)) < 1e-6]
            if len(on_edge) >= 2:
                cv.line([(on_edge[:, 0].min(), edge), (on_edge[:, 0].max(), edge)], M, ch.lash, 0.1 * ch.eye_size)


# -- mouth -----------------------------------------------------------------------------------------

_Op = Tuple[str, np.ndarray, Optional[RGB], Optional[RGB], float]  # (poly|line, points, fill, outline, width)


def _ramp(x: float, start: float) -> float:
    return min(max((x - start) / RAMP, 0.0), 1.0)


def _mouth_ops(ch: Character, p: Sequence[float]) -> List[_Op]:
    """Draw ops of the mouth for one row of mouth params, in mouth-local head units (y down).

    The opening grows with open (its half-height is m·open·(0.55 + 0.35·round)), widens with width,
    and rounding makes it narrower and more elliptic; teeth and tongue are bands of the opening."""
    open_, width, round_, teeth, tongue = (float(v) for v in p)
    m = ch.mouth_size
    a = m * (MOUTH_HALF_WIDTH[0] + MOUTH_HALF_WIDTH[1] * width) * (1 - ROUND_NARROWING * round_)
    b = m * open_ * (MOUTH_HALF_OPEN[0] + MOUTH_HALF_OPEN[1] * round_)
    grille = ch.mouth_style == "grille"
    n = ch.mouth_n if grille else ch.mouth_n + (ROUND_EXPONENT - ch.mouth_n) * round_
    v0 = JAW_DROP * b
    lt = ch.lip_thickness * m * (1 + LIP_ROUND_PUSH * round_)
    side = LIP_SIDE * m
    ops: List[_Op] = []
    outer = _se(a + side, b + lt, n, 0, v0)
    ow = ch.outline_w * (0.7 if ch.mouth_style == "simple" else 0.5)
    ops.append(("poly", outer, ch.lip_colour, ch.outline, ow if ch.outline is not None else 0.0))
    if ch.mouth_style in ("lips", "beak"):
        ops.append(("poly", _clip_y(outer, v0, True), _shade(ch.lip_colour, 0.86), None, 0.0))
    if b < MIN_OPEN_UNITS:
        if ch.mouth_style == "simple":
            line_colour = ch.outline or _shade(ch.lip_colour, 0.7)
        else:
            line_colour = _shade(ch.lip_colour, 0.6)
        ops.append(("line", np.array([[-a - side * 0.4, v0], [a + side * 0.4, v0]]), line_colour, None, 0.08 * m))
        return ops
    inner = _se(a, b, n, 0, v0)
    ops.append(("poly", inner, ch.inner_colour, None, 0.0))
    show = _ramp(open_, TEETH_MIN_OPEN)
    tongue_h = 2 * b * TONGUE_BAND * tongue * _ramp(open_, 0.0)
    if tongue_h > 0:
        ops.append(("poly", _clip_y(inner, v0 + b - tongue_h, False), ch.tongue_colour, None, 0.0))
    upper = 2 * b * TEETH_BAND * _ramp(teeth, TEETH_MIN_PARAM) * show
    if upper > 0:
        ops.append(("poly", _clip_y(inner, v0 - b + upper, True), ch.teeth_colour, None, 0.0))
    lower = 2 * b * LOWER_TEETH_BAND * _ramp(teeth, 0.8) * show
    if lower > 0:
        ops.append(("poly", _clip_y(inner, v0 + b - lower, False), _shade(ch.teeth_colour, 0.92), None, 0.0))
    if grille:
        for x in np.linspace(-a, a, 7)[1:-1]:
            ops.append(("line", np.array([[x, v0 - b], [x, v0 + b]]), ch.lip_colour, None, 0.06 * m))
    return ops


def _mouth_extent(ch: Character) -> Tuple[float, float, float]:
    """(half-width, top, bottom) in mouth-local head units that no mouth track can leave: the
    extremes over the corners of (open, width, round), widened by half of every line width."""
    xs, top, bottom = 0.0, 0.0, 0.0
    for o in (0.0, 1.0):
        for w in (0.0, 1.0):
            for r in (0.0, 1.0):
                for kind, pts, _, outline, width in _mouth_ops(ch, (o, w, r, 1.0, 1.0)):
                    if pts is None:
                        continue
                    half = width / 2 if (kind == "line" or outline is not None) else 0.0
                    xs = max(xs, float(np.abs(pts[:, 0]).max()) + half)
                    top = min(top, float(pts[:, 1].min()) - half)
                    bottom = max(bottom, float(pts[:, 1].max()) + half)
    return xs, top, bottom


def _draw_ops(cv: _Canvas, ops: Sequence[_Op], M: np.ndarray) -> None:
    for kind, pts, fill, outline, width in ops:
        if pts is None:
            continue
        if kind == "poly":
            cv.poly(pts, M, fill, outline, width)
        else:
            cv.line(pts, M, fill, width)  # type: ignore[arg-type]


def _moustache(ch: Character) -> np.ndarray:
    m = ch.mouth_size
    return _se(m * 1.35, 0.055 + 0.1 * m, 2.0, 0, -ch.lip_thickness * m * 0.7 - 0.055)


def _occluder_ops(ch: Character, extent: Tuple[float, float, float]) -> List[_Op]:
    """An object in front of the mouth region, reaching ``occluder_cover`` of the way into it."""
    A, top, bottom = extent
    s, cover, col = ch.occluder_side, ch.occluder_cover, ch.occluder_colour
    edge = _shade(col, 0.65)
    h = bottom - top
    ops: List[_Op] = []
    if ch.occluder == "hand":
        tip = s * (A - 2 * A * cover)  # fingertips reach this far across
        palm_x = s * (A + 0.3)
        ops.append(("poly", _se(0.32, 0.42, 2.2, palm_x, bottom + 0.15), col, edge, 0.02))
        fh = h * 0.2
        for i in range(3):
            y = top + h * (0.35 + 0.24 * i)
            x0, x1 = sorted((tip, palm_x))
            ops.append(("poly", _se((x1 - x0) / 2, fh / 2, 3.0, (x0 + x1) / 2, y), col, edge, 0.015))
    elif ch.occluder == "mic":
        r = max(0.3 * (2 * A), 0.12)
        cy = bottom - cover * h + r
        cx = s * A * 0.3
        ops.append(("poly", np.array([[cx - 0.05, cy], [cx + 0.05, cy], [cx + 0.1, cy + 4], [cx - 0.1, cy + 4]]),
                     (40, 40, 44), None, 0.0))
        ops.append(("poly", _se(r, r, 2.0, cx, cy), col, (30, 30, 34), 0.02))
        for dy in (-0.5, 0.0, 0.5):
            ops.append(("line", np.array([[cx - r * 0.8, cy + dy * r], [cx + r * 0.8, cy + dy * r]]),
                        _mix(col, WHITE, 0.35), None, 0.012))
    elif ch.occluder == "pencil":
        y = bottom - cover * h
        x_in = s * (A - 2 * A * cover)
        body = np.array([[x_in, y - 0.035], [s * (A + 1.2), y - 0.035 + 0.6], [s * (A + 1.2), y + 0.035 + 0.6],
                         [x_in, y + 0.035]])
        ops.append(("poly", body, col, _shade(col, 0.6), 0.01))
        ops.append(("poly", np.array([[x_in, y - 0.035], [x_in, y + 0.035], [x_in - s * 0.08, y]]), (235, 205, 160),
                    None, 0.0))
    else:  # cup held below the mouth, seen from the side
        cw, y0 = A * 0.8, bottom - cover * h
        cx = s * A * 0.6
        ops.append(("poly", _se(cw, 0.55, 6.0, cx, y0 + 0.55), col, _shade(col, 0.6), 0.02))
        ops.append(("poly", _se(0.1, 0.16, 2.0, cx + s * (cw + 0.07), y0 + 0.35), None, col, 0.04))
    return ops


# -- clip ------------------------------------------------------------------------------------------


def _check_params(mouth_params: Any, num_frames: int) -> np.ndarray:
    p = np.asarray(mouth_params, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(MOUTH_PARAMS):
        raise OmniSyncError(f"mouth_params must be (T, {len(MOUTH_PARAMS)}) with columns {MOUTH_PARAMS}, "
                            f"got shape {tuple(p.shape)}.")
    if p.shape[0] != num_frames:
        raise OmniSyncError(f"mouth_params has {p.shape[0]} frames but the motion track has {num_frames}; "
                            "make them the same length (random_motion(seed, len(params), fps)).")
    if not np.isfinite(p).all() or p.min() < -1e-3 or p.max() > 1 + 1e-3:
        raise OmniSyncError("mouth_params must be finite and in [0, 1]; clip or renormalise the track.")
    return np.clip(p, 0.0, 1.0)


def render_clip(character: Character, motion: MotionTrack, mouth_params: Any,
                size: Tuple[int, int] = (128, 128)) -> RenderResult:
    """Render ``character`` moving by ``motion`` with its mouth driven by ``mouth_params``.

    Args:
        character: from :func:`random_character` (or :meth:`Character.from_dict`).
        motion: T frames of head motion.
        mouth_params: (T, 5) float in [0, 1], columns ``MOUTH_PARAMS``.
        size: (height, width) of the frames in pixels.

    Returns:
        A :class:`RenderResult`. Pixels outside ``mouth_box`` (dilated by one pixel for edge
        anti-aliasing) do not depend on ``mouth_params``.
    """
    params = _check_params(mouth_params, motion.num_frames)
    height, width = (int(v) for v in size)
    if height < 8 or width < 8:
        raise OmniSyncError(f"size must be (height, width) of at least 8 pixels each, got {size}.")
    ss = SUPERSAMPLE
    H, W = height * ss, width * ss
    T = motion.num_frames
    bg = _background(character, H, W)
    extent = _mouth_extent(character)
    A, top, bottom = extent
    region = _se(A, (bottom - top) / 2, 2.5, 0, (bottom + top) / 2)
    occ_ops = _occluder_ops(character, extent) if character.occluder else []

    frames = np.empty((T, height, width, 3), np.uint8)
    masks = np.empty((T, height, width), np.uint8)
    centre = np.empty((T, 2), np.float32)
    box = np.empty((T, 4), np.float32)
    visible = np.empty(T, np.float32)
    corners = np.array([[-A, top], [A, top], [A, bottom], [-A, bottom]])
    for t in range(T):
        pose = _Pose(character, motion, t, H, W)
        img = bg.copy()
        cv = _Canvas(img, pose.px)
        _draw_body(cv, character, pose)
        _draw_hair_back(cv, character, pose)
        _draw_ears_back(cv, character, pose)
        _draw_head(cv, character, pose)
        _draw_face(cv, character, pose, float(motion.blink[t]), character.mouth_y + top)
        _draw_hair_front(cv, character, pose)
        _draw_hat(cv, character, pose)
        M = pose.at(0.0, character.mouth_y, character.mouth_depth)
        _draw_ops(cv, _mouth_ops(character, params[t]), M)
        if character.beard in ("full", "moustache"):
            cv.poly(_moustache(character), M, character.hair_colour)
        _draw_ops(cv, occ_ops, M)
        frames[t] = np.asarray(img.reduce(ss))

        # Mouth region mask (visible part) and box, from the same maps.
        mimg = Image.new("L", (W, H), 0)
        mcv = _Canvas(mimg, pose.px)
        mcv.poly(region, M, 255)
        full = np.asarray(mimg.reduce(ss)) >= 128
        for kind, pts, fill, outline, w in occ_ops:
            if pts is None:
                continue
            if kind == "poly":
                mcv.poly(pts, M, 0 if fill is not None else None, 0 if outline is not None else None, w)
            else:
                mcv.line(pts, M, 0, w)  # type: ignore[arg-type]
        vis = np.asarray(mimg.reduce(ss)) >= 128
        masks[t] = vis
        visible[t] = vis.sum() / max(int(full.sum()), 1)
        c = M[:2, 2]
        centre[t] = (c[0] / W, c[1] / H)
        q = corners @ M[:2, :2].T + M[:2, 2]
        pad = MOUTH_PAD_PX
        box[t] = ((q[:, 0].min() - pad) / W, (q[:, 1].min() - pad) / H,
                  (q[:, 0].max() + pad) / W, (q[:, 1].max() + pad) / H)
    np.clip(box, 0.0, 1.0, out=box)
    return RenderResult(frames=frames, mouth_centre=centre, mouth_box=box, mouth_mask=masks, mouth_visible=visible)


# -- tools -----------------------------------------------------------------------------------------


def save_contact_sheet(path: str, frames: Sequence[np.ndarray], columns: int = 8, pad: int = 2) -> str:
    """Write (H, W, 3) uint8 frames, all the same size, as one PNG grid of ``columns`` columns."""
    if not frames:
        raise OmniSyncError("save_contact_sheet needs at least one frame.")
    shapes = {tuple(np.asarray(f).shape) for f in frames}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3 or next(iter(shapes))[2] != 3:
        raise OmniSyncError(f"save_contact_sheet needs (H, W, 3) frames of one size, got shapes {sorted(shapes)}.")
    h, w, _ = next(iter(shapes))
    cols = min(columns, len(frames))
    rows = -(-len(frames) // cols)
    sheet = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for i, f in enumerate(frames):
        r, c = divmod(i, cols)
        sheet[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = f
    Image.fromarray(sheet).save(path, format="PNG")
    return path


def demo_sheet(path: str, per_kind: int = 8, size: Tuple[int, int] = (128, 128),
               opens: Sequence[float] = (0.0, 0.8), first_seed: int = 0) -> str:
    """A visual check: ``per_kind`` characters of every kind, each at every mouth opening in ``opens``
    (width 0.5, round 0.2, teeth 0.8, tongue 0.4), still head, eyes open."""
    tiles = []
    for k, kind in enumerate(KINDS):
        for i in range(per_kind):
            ch = random_character(first_seed + 1000 * k + i, kind)
            motion = MotionTrack.still(len(opens), 25.0)
            params = np.array([[o, 0.5, 0.2, 0.8, 0.4] for o in opens], np.float32)
            tiles.extend(render_clip(ch, motion, params, size).frames)
    return save_contact_sheet(path, tiles, columns=len(opens) * 4)


def bench(num_frames: int = 50, size: Tuple[int, int] = (128, 128), seeds: Sequence[int] = (0, 1, 2),
          report: Optional[Callable[[str], None]] = print) -> float:
    """Median seconds to render one clip of ``num_frames`` frames (one per seed); reported via ``report``."""
    times = []
    for seed in seeds:
        ch = random_character(seed)
        motion = random_motion(seed, num_frames, 25.0)
        t = np.arange(num_frames)[:, None] / 25.0
        params = 0.5 + 0.5 * np.sin(2 * np.pi * t * np.array([[3.0, 1.1, 0.7, 2.3, 1.7]]))
        t0 = time.perf_counter()
        render_clip(ch, motion, params, size)
        times.append(time.perf_counter() - t0)
    median = float(np.median(times))
    if report is not None:
        report(f"render_clip: {num_frames} frames at {size[0]}x{size[1]}: {median:.3f} s "
               f"({1000 * median / num_frames:.1f} ms/frame, median of {len(times)})")
    return median


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Benchmark the character renderer; optionally write a contact sheet.")
    parser.add_argument("--sheet", help="PNG path for a contact sheet of random characters")
    args = parser.parse_args()
    bench()
    if args.sheet:
        print(demo_sheet(args.sheet))
