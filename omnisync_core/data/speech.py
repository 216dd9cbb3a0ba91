"""Speech with phoneme timings from espeak-ng, the voice of the synthetic talking-character dataset.

Route: libespeak-ng through ``ctypes``, in ``AUDIO_OUTPUT_SYNCHRONOUS`` mode with phoneme events
enabled. One ``espeak_Synth`` call delivers both the 16-bit samples and an ``espeakEVENT_PHONEME``
event at the start of every phoneme (its ``sample`` field is the sample index in that same audio,
``audio_position`` the same instant in ms), so audio and timings come from one synthesis and agree
to the sample. The ``espeak-ng`` command line cannot do this: ``-x``/``--ipa`` print phonemes
without times, so a CLI route would have to guess the timings. Debian's ``espeak-ng`` package
depends on ``libespeak-ng1``, so wherever the command is installed the library is too, and the
CLI route is not implemented.

Phoneme symbols are espeak-ng's ASCII mnemonics as the library reports them (``h @ l oU w 3: l d``
for "hello world"; pauses are ``_`` and ``_:``), which :mod:`omnisync_core.data.visemes` maps to
mouth shapes.

The library keeps one synthesiser per process (voice, parameters, callback), so this module
initialises it once, on first use, and serialises every call with a lock. After ``fork`` (a
DataLoader worker) the child inherits the initialised library and gets a fresh lock.

Layouts:
    Utterance.waveform: (N,) float32 in [−1, 1] at ``Utterance.sample_rate`` Hz (espeak-ng's own
        rate, 22 050 Hz for its standard voices; resample with ``audio.features.to_mono_16k``).
    Phoneme.start / Phoneme.end: seconds from the first sample.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import OmniSyncError

INSTALL_HINT = "install it: apt-get install espeak-ng (macOS: brew install espeak-ng)"
LIBRARY_NAMES = ("libespeak-ng.so.1", "libespeak-ng.so", "libespeak-ng.1.dylib", "libespeak-ng.dylib")

RATE_WPM_RANGE = (80, 450)  # espeakRATE_MINIMUM .. espeakRATE_MAXIMUM, words per minute
PITCH_RANGE = (0, 100)  # espeakPITCH: 50 = the voice's normal base pitch
DEFAULT_SPEED_WPM = 160
DEFAULT_PITCH = 50

# Dataset ranges (both splits): speaking rate in words per minute and espeakPITCH units.
DATASET_SPEED_WPM = (120, 220)
DATASET_PITCH = (25, 75)

# Human-sounding voice variants ("en+f3"); croak, whisper, klatt, robosoft etc. are left out because
# they are not plausible speech for a talking face (whisper has no voicing at all).
HUMAN_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
# Held-out voices: a whole accent never heard in training, and two variants on every accent.
HELDOUT_BASE_VOICES = ("en-gb-x-gbcwmd", "en-029")
HELDOUT_VARIANTS = ("m3", "f4")

# -- the ctypes binding (speak_lib.h, API revision 12) ----------------------------------------------

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000  # return an error instead of calling exit() when data is missing
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE, _PARAM_PUNCTUATION, _PARAM_WORDGAP = 1, 2, 3, 4, 5, 7
_NORMAL_VOLUME = 100
_NORMAL_RANGE = 50
_INT16_SCALE = 32768.0


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms into the generated audio
        ("sample", ctypes.c_int),  # sample index into the generated audio
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # (priority byte, UTF-8 name, NUL)* NUL
        ("identifier", ctypes.c_char_p),  # file under espeak-ng-data/voices, e.g. "gmw/en-US"
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class Phoneme:
    """One phoneme: espeak-ng mnemonic and its span in seconds, ``0 <= start < end``."""

    symbol: str
    start: float
    end: float


@dataclass
class Utterance:
    """Synthesised speech and the phonemes it was made of.

    waveform: (N,) float32 in [−1, 1] at ``sample_rate`` Hz. phonemes: in time order, contiguous from
    the first phoneme onset to the end of the audio, pauses included as ``_``/``_:``.
    """

    text: str
    waveform: np.ndarray
    sample_rate: int
    phonemes: List[Phoneme]
    voice: str
    speed: int
    pitch: int

    @property
    def duration(self) -> float:
        """Length of the audio in seconds."""
        return len(self.waveform) / self.sample_rate


class _Espeak:
    """The process's one initialised libespeak-ng; every method must run under ``self.lock``."""

    def __init__(self, path: str):
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            raise OmniSyncError(f"could not load the espeak-ng library {path!r} ({e}); {INSTALL_HINT}.") from e
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_ListVoices.argtypes = [ctypes.POINTER(_Voice)]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        sample_rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT
        )
        if sample_rate <= 0:
            raise OmniSyncError(
                f"espeak-ng ({path}) failed to initialise: its espeak-ng-data is missing; {INSTALL_HINT}."
            )
        self.lib = lib
        self.path = path
        self.sample_rate = int(sample_rate)
        self.lock = threading.Lock()
        self._variants: Optional[Dict[str, str]] = None
        self._language_voices: Optional[List[Tuple[str, List[str]]]] = None
        self._chunks: List[np.ndarray] = []
        self._events: List[Tuple[str, int]] = []
        # The C library keeps only a raw function pointer: this reference keeps the thunk alive.
        self._callback = _SynthCallback(self._on_synth)
        lib.espeak_SetSynthCallback(self._callback)

    def _on_synth(self, wav, num_samples, events) -> int:
        if wav and num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (num_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            e = events[i]
            if e.type == _EVENT_PHONEME:
                self._events.append((bytes(e.id.string).split(b"\0", 1)[0].decode("utf-8", "replace"), int(e.sample)))
            i += 1
        return 0  # continue synthesis

    def synth(self, text: str, voice: str, speed: int, pitch: int) -> Tuple[np.ndarray, List[Tuple[str, int]]]:
        """(int16 samples (N,), [(phoneme, onset sample)]) for one utterance."""
        if self.lib.espeak_SetVoiceByName(voice.encode("utf-8")) != 0:
            raise OmniSyncError(f"espeak-ng has no voice {voice!r}; pick one of list_voices().")
        # Set every parameter each call: they persist in the library between calls.
        for param, value in (
            (_PARAM_RATE, speed), (_PARAM_PITCH, pitch), (_PARAM_VOLUME, _NORMAL_VOLUME),
            (_PARAM_RANGE, _NORMAL_RANGE), (_PARAM_PUNCTUATION, 0), (_PARAM_WORDGAP, 0),
        ):  # fmt: skip
            self.lib.espeak_SetParameter(param, value, 0)
        self._chunks, self._events = [], []
        data = text.encode("utf-8")
        err = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        chunks, events = self._chunks, self._events
        self._chunks, self._events = [], []
        if err != 0:
            raise OmniSyncError(f"espeak-ng failed to synthesise {text[:40]!r} (error {err}).")
        audio = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        return audio, events

    def voices(self, languages: Optional[str]) -> List[Tuple[str, List[str]]]:
        """[(identifier, [language, ...])] as espeak_ListVoices reports them."""
        spec = None
        if languages is not None:
            spec_voice = _Voice()
            buf = ctypes.create_string_buffer(languages.encode("utf-8"))
            spec_voice.languages = ctypes.cast(buf, ctypes.c_void_p)
            spec = ctypes.byref(spec_voice)
        table = self.lib.espeak_ListVoices(spec)
        out = []
        i = 0
        while table[i]:
            v = table[i].contents
            out.append((v.identifier.decode("utf-8"), _parse_languages(v.languages)))
            i += 1
        return out


def _parse_languages(address: Optional[int]) -> List[str]:
    langs = []
    while address and ctypes.string_at(address, 1) != b"\0":
        name = ctypes.string_at(address + 1)  # skip the priority byte
        langs.append(name.decode("utf-8"))
        address += 1 + len(name) + 1
    return langs


_ENGINE: Optional[_Espeak] = None
_ENGINE_LOCK = threading.Lock()


def _library_path() -> Optional[str]:
    """Where libespeak-ng is, or None when espeak-ng is not installed."""
    found = ctypes.util.find_library("espeak-ng")
    if found:
        return found
    for name in LIBRARY_NAMES:
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return name
    return None


def _engine() -> _Espeak:
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            path = _library_path()
            if path is None:
                raise OmniSyncError(f"espeak-ng is not installed (libespeak-ng was not found); {INSTALL_HINT}.")
            _ENGINE = _Espeak(path)
        return _ENGINE


def _fresh_locks_after_fork() -> None:
    # A lock held by another thread at fork time would stay locked forever in the child.
    global _ENGINE_LOCK
    _ENGINE_LOCK = threading.Lock()
    if _ENGINE is not None:
        _ENGINE.lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_locks_after_fork)


# -- public API ------------------------------------------------------------------------------------


def _check_int(name: str, value: int, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise OmniSyncError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}.")
    return int(value)


def speak(
    text: str,
    voice: str = "en",
    speed: int = DEFAULT_SPEED_WPM,
    pitch: int = DEFAULT_PITCH,
    variant: Optional[str] = None,
) -> Utterance:
    """Synthesise ``text`` with espeak-ng and return the audio with its phoneme timings.

    Args:
        text: what to say (UTF-8; not empty).
        voice: an espeak-ng voice, optionally with a variant: ``"en"``, ``"en-us"``, ``"en+f3"``,
            ``"en-gb-x-rp+m2"`` (see :func:`list_voices`).
        speed: speaking rate in words per minute, 80–450 (espeak-ng's limits).
        pitch: base pitch, 0–100, 50 = the voice's normal pitch.
        variant: a voice variant (``"f3"``, ``"m2"``) to add to ``voice``; None keeps ``voice`` as given.

    Returns:
        :class:`Utterance` with waveform (N,) float32 in [−1, 1] at espeak-ng's sample rate and
        phonemes that tile the audio from the first onset to its end. A phoneme's end is the next
        one's onset; zero-length phonemes (espeak-ng emits a ``_`` at the same instant as the next
        onset at a clause end) are dropped. Two calls with the same arguments are not bit-identical:
        espeak-ng's wave generator keeps its phase and noise state between calls, which moves phoneme
        onsets by under a pitch period. Keep the returned audio and timings together.
    """
    if not isinstance(text, str) or not text.strip():
        raise OmniSyncError(f"speak() needs some text to say, got {text!r}.")
    speed = _check_int("speed (words per minute)", speed, *RATE_WPM_RANGE)
    pitch = _check_int("pitch", pitch, *PITCH_RANGE)
    base, _, own_variant = voice.partition("+") if isinstance(voice, str) else ("", "", "")
    if not base:
        raise OmniSyncError(f"voice must name an espeak-ng voice such as 'en' or 'en-us+f3', got {voice!r}.")
    if variant is not None:
        if own_variant:
            raise OmniSyncError(f"voice {voice!r} already names a variant; pass variant={variant!r} or '+', not both.")
        own_variant = variant
    engine = _engine()
    with engine.lock:
        if own_variant and own_variant not in _variant_names(engine):
            # espeak-ng silently ignores an unknown variant: catch it here.
            raise OmniSyncError(f"espeak-ng has no voice variant {own_variant!r}; use one of {HUMAN_VARIANTS}.")
        name = f"{base}+{own_variant}" if own_variant else base
        audio, events = engine.synth(text, name, speed, pitch)
        sample_rate = engine.sample_rate
    if not np.any(audio) or not any(not s.startswith("_") for s, _ in events):
        raise OmniSyncError(
            f"espeak-ng voice {name!r} produced no speech for {text[:40]!r}; mbrola voices need the "
            "mbrola program and its voice files, use a voice from list_voices()."
        )
    return Utterance(
        text=text,
        waveform=audio.astype(np.float32) / _INT16_SCALE,  # (N,)
        sample_rate=sample_rate,
        phonemes=_phoneme_spans(events, len(audio), sample_rate),
        voice=name,
        speed=speed,
        pitch=pitch,
    )


def _phoneme_spans(events: Sequence[Tuple[str, int]], num_samples: int, sample_rate: int) -> List[Phoneme]:
    onsets = [min(max(sample, 0), num_samples) for _, sample in events]
    ends = onsets[1:] + [num_samples]
    return [
        Phoneme(symbol, start / sample_rate, end / sample_rate)
        for (symbol, _), start, end in zip(events, onsets, ends)
        if end > start
    ]


def _variant_names(engine: _Espeak) -> Dict[str, str]:
    """{variant name: identifier}, e.g. {"f3": "!v/f3"}; read once (the data files do not change)."""
    if engine._variants is None:
        engine._variants = {ident.rsplit("/", 1)[-1]: ident for ident, _ in engine.voices("variant")}
    return engine._variants


def list_voices(language_prefix: Optional[str] = "en") -> List[str]:
    """Usable espeak-ng voices on this machine whose language starts with ``language_prefix``.

    Each language voice (by its file name, lower case: ``en``, ``en-us``, ``en-gb-scotland``,
    ``en-gb-x-rp`` ...) is listed plain and with each human-sounding variant found
    (``en+m1`` ... ``en+f5``, see ``HUMAN_VARIANTS``). Mbrola voices are left out: they need the
    separate mbrola program. ``language_prefix`` matches whole language tags ("en" matches "en-us",
    not "eo"); None or "" lists every language. Sorted; depends on the installed espeak-ng-data.
    """
    prefix = (language_prefix or "").lower()
    engine = _engine()
    with engine.lock:
        variants = _variant_names(engine)
        if engine._language_voices is None:  # read once: the data files do not change
            engine._language_voices = engine.voices(None)
        voices = engine._language_voices
    bases = set()
    for ident, langs in voices:
        if ident.startswith(("mb/", "!v/")) or not langs:
            continue
        lang = langs[0].lower()
        if not prefix or lang == prefix or lang.startswith(prefix + "-"):
            bases.add(ident.rsplit("/", 1)[-1].lower())
    usable = [v for v in HUMAN_VARIANTS if v in variants]
    return [name for base in sorted(bases) for name in [base] + [f"{base}+{v}" for v in usable]]


def _is_heldout_voice(voice: str) -> bool:
    base, _, variant = voice.partition("+")
    return base in HELDOUT_BASE_VOICES or variant in HELDOUT_VARIANTS


def split_voices(split: str, language_prefix: str = "en") -> List[str]:
    """The voices of one split: "heldout" has the accents in ``HELDOUT_BASE_VOICES`` (all variants)
    and the variants in ``HELDOUT_VARIANTS`` (on every accent); "train" has all other voices."""
    if split not in ("train", "heldout"):
        raise OmniSyncError(f"split must be 'train' or 'heldout', got {split!r}.")
    voices = [v for v in list_voices(language_prefix) if _is_heldout_voice(v) == (split == "heldout")]
    if not voices:
        raise OmniSyncError(
            f"no {split} espeak-ng voices for language {language_prefix!r} on this machine; {INSTALL_HINT}."
        )
    return voices


def random_voice(rng: np.random.Generator, split: str = "train") -> Tuple[str, int, int]:
    """(voice, speed in words per minute, pitch) for one dataset sample.

    The voice comes from :func:`split_voices` (disjoint between splits); speed is uniform in
    ``DATASET_SPEED_WPM`` (120–220) and pitch uniform in ``DATASET_PITCH`` (25–75), both inclusive.
    """
    voices = split_voices(split)
    voice = voices[int(rng.integers(len(voices)))]
    speed = int(rng.integers(DATASET_SPEED_WPM[0], DATASET_SPEED_WPM[1] + 1))
    pitch = int(rng.integers(DATASET_PITCH[0], DATASET_PITCH[1] + 1))
    return voice, speed, pitch


# -- sentences -------------------------------------------------------------------------------------
# Two vocabularies with no word in common, so held-out sentences are never heard in training. Each is
# rich in the sounds a viewer reads from lips: bilabials (p b m), labiodentals (f v), rounded (o u)
# and open (a) vowels. A sentence is "det [adj] noun verb det [adj] noun [prep det noun]".

VOCABULARY: Dict[str, Dict[str, Tuple[str, ...]]] = {
    "train": {
        "det": ("the", "a", "my", "his", "her", "one"),
        "adj": (
            "big", "blue", "warm", "happy", "purple", "bold", "soft", "brave", "pale", "funny",
            "famous", "young", "old", "bright", "cheap", "huge", "smooth", "quiet", "loud", "fine",
            "wild", "proud", "cool", "dark", "full", "tall", "busy", "fluffy",
        ),
        "noun": (
            "mother", "father", "baby", "puppy", "farmer", "monkey", "pilot", "poet", "boat", "moon",
            "fish", "apple", "banana", "pumpkin", "window", "mirror", "garden", "road", "balloon",
            "violin", "feather", "coffee", "video", "button", "ball", "box", "book", "food", "spoon",
            "boot", "rope", "ocean", "palm", "farm", "village", "photo", "piano", "bubble", "map",
            "pharmacy", "movie", "wolf",
        ),
        "verb": (
            "bought", "moved", "found", "pushed", "painted", "brought", "baked", "loved", "played",
            "followed", "caught", "watched", "fixed", "carried", "washed", "visited", "borrowed",
            "measured", "threw", "chose", "mapped", "blew",
        ),
        "prep": ("with", "by", "near", "behind", "beneath", "over"),
    },
    "heldout": {
        "det": ("this", "that", "our", "your", "every", "some"),
        "adj": (
            "rough", "shiny", "humble", "vivid", "mellow", "foolish", "polite", "gentle", "lovely",
            "sleepy", "nervous", "hollow", "murky", "frozen", "golden", "modest",
        ),
        "noun": (
            "uncle", "nephew", "buffalo", "gopher", "harbor", "meadow", "pebble", "muffin", "lobster",
            "tulip", "bamboo", "volcano", "umbrella", "wombat", "marble", "vessel", "tomato", "noodle",
            "pillow", "hammock", "cowboy", "robot", "walrus",
        ),
        "verb": (
            "polished", "swapped", "dropped", "folded", "bumped", "wrapped", "offered", "improved",
            "approved", "shoved", "mopped", "flipped", "removed", "wobbled",
        ),
        "prep": ("under", "above", "beside", "toward", "from", "inside"),
    },
}
ADJECTIVE_PROBABILITY = 0.5
PREPOSITION_PROBABILITY = 0.5


def vocabulary_words(vocabulary: str) -> frozenset:
    """Every word :func:`random_sentence` can use for ``vocabulary`` ("train" or "heldout")."""
    if vocabulary not in VOCABULARY:
        raise OmniSyncError(f"vocabulary must be 'train' or 'heldout', got {vocabulary!r}.")
    return frozenset(w for words in VOCABULARY[vocabulary].values() for w in words)


def random_sentence(rng: np.random.Generator, vocabulary: str = "train") -> str:
    """A seeded random English sentence (4–11 words) from the ``vocabulary`` word list.

    The "train" and "heldout" vocabularies share no word; the same generator state gives the same
    sentence.
    """
    vocabulary_words(vocabulary)  # validates the name
    words = VOCABULARY[vocabulary]

    def pick(part: str) -> str:
        return words[part][int(rng.integers(len(words[part])))]

    def noun_phrase() -> List[str]:
        adj = [pick("adj")] if rng.random() < ADJECTIVE_PROBABILITY else []
        return [pick("det")] + adj + [pick("noun")]

    sentence = noun_phrase() + [pick("verb")] + noun_phrase()
    if rng.random() < PREPOSITION_PROBABILITY:
        sentence += [pick("prep"), pick("det"), pick("noun")]
    text = " ".join(sentence)
    return text[0].upper() + text[1:] + "."


NEAR_SILENCE_DBFS = (-70.0, -50.0)  # room-tone levels of the silence clips (RMS, dB below full scale)


def near_silence(duration_s: float, sample_rate: int, level_dbfs: float, seed: int) -> np.ndarray:
    """(N,) float32: ``duration_s`` of white noise at ``level_dbfs`` RMS: "speech replaced by near-silence".

    The dataset's silence clips (the mouth should close and stay still) and the held-out silence case use
    this same signal, so training and evaluation hear the same thing. Seeded: the same call gives the
    same samples.
    """
    if not (duration_s > 0 and sample_rate > 0):
        raise OmniSyncError(f"near_silence needs a positive duration and sample rate, got {duration_s}, {sample_rate}.")
    if not level_dbfs < 0:
        raise OmniSyncError(f"near_silence level must be below full scale (< 0 dBFS), got {level_dbfs}.")
    n = int(round(duration_s * sample_rate))
    rms = 10.0 ** (level_dbfs / 20.0)
    noise = np.random.default_rng(seed).standard_normal(n)
    return np.clip(noise * rms, -1.0, 1.0).astype(np.float32)
