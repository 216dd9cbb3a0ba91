"""espeak-ng speech with phoneme timings, and phonemes → visemes → mouth parameters.

The speech tests run the real espeak-ng (CI installs it: apt-get install espeak-ng) and are skipped,
with the reason, only where it is absent. The viseme tests build their own phoneme lists.
"""

import math
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest

from omnisync_core.data import speech, visemes
from omnisync_core.data.speech import Phoneme
from omnisync_core.data.visemes import MOUTH_PARAMS, VISEME_INDEX, VISEME_NAMES, VISEME_TARGETS, viseme_track
from omnisync_core.errors import OmniSyncError

OPEN = MOUTH_PARAMS.index("open")
FPS = 25.0


@pytest.fixture(scope="module")
def espeak():
    if speech._library_path() is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    return speech


def _rms(w, sr, win_s=0.01):
    n = int(win_s * sr)
    frames = w[: len(w) // n * n].reshape(-1, n)
    return np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)), n  # (F,), samples per window


def _f0(utt):
    """Median autocorrelation pitch (Hz) over loud 40 ms windows."""
    w, sr = utt.waveform.astype(np.float64), utt.sample_rate
    n, hop = int(0.04 * sr), int(0.01 * sr)
    starts = range(0, len(w) - n, hop)
    loud = max(np.sqrt(np.mean(w[i : i + n] ** 2)) for i in starts)
    lo, hi = int(sr / 400), int(sr / 60)  # 60–400 Hz
    est = []
    for i in starts:
        x = w[i : i + n] - w[i : i + n].mean()
        if np.sqrt(np.mean(x**2)) < 0.3 * loud:
            continue
        ac = np.correlate(x, x, "full")[n - 1 :]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.5 * ac[0]:  # clearly periodic
            est.append(sr / lag)
    assert len(est) >= 10
    return float(np.median(est))


# -- speech ----------------------------------------------------------------------------------------


def test_hello_world_audio_and_timings_agree(espeak):
    utt = espeak.speak("hello world")
    w, sr = utt.waveform, utt.sample_rate
    assert sr == 22050  # espeak-ng's standard voices
    assert w.dtype == np.float32 and w.ndim == 1 and np.abs(w).max() <= 1.0
    assert np.abs(w).max() > 0.1
    assert 0.5 <= utt.duration <= 3.0 and utt.duration == len(w) / sr
    ph = utt.phonemes
    assert all(p.start < p.end for p in ph)
    assert all(a.end == pytest.approx(b.start) for a, b in zip(ph, ph[1:]))  # contiguous, ordered
    assert 0.0 <= ph[0].start < 0.1 and ph[-1].end == pytest.approx(utt.duration)
    spoken = [p for p in ph if not p.symbol.startswith("_")]
    assert len(spoken) >= 7 and {"h", "l", "w", "d"} <= {p.symbol for p in spoken}
    assert not visemes.to_visemes(ph)[1]  # every symbol is in the viseme table

    rms, n = _rms(w, sr)
    centres = (np.arange(len(rms)) + 0.5) * n / sr
    voiced = centres[rms > 0.1 * rms.max()]
    inside = [any(p.start <= t < p.end for p in spoken) for t in voiced]
    assert len(voiced) > 20 and np.mean(inside) >= 0.95
    # Before the first onset and inside pauses the audio is silent.
    assert np.abs(w[: int(ph[0].start * sr)]).max(initial=0.0) < 0.01


def test_pause_phonemes_are_silent(espeak):
    utt = espeak.speak("Papa, mama.")
    pauses = [p for p in utt.phonemes if p.symbol == "_:" and p.end - p.start > 0.05]
    assert pauses  # the comma pause
    for p in pauses:
        seg = utt.waveform[int(p.start * utt.sample_rate) : int(p.end * utt.sample_rate)]
        assert np.sqrt(np.mean(seg**2)) < 0.01


def test_speed_shortens(espeak):
    text = "The farmer bought a purple boat."
    slow, fast = espeak.speak(text, speed=120), espeak.speak(text, speed=220)
    assert fast.duration < 0.75 * slow.duration  # measured 0.53 with espeak-ng 1.51
    assert [p.symbol for p in fast.phonemes if p.symbol[0] != "_"] == [
        p.symbol for p in slow.phonemes if p.symbol[0] != "_"
    ]


def test_pitch_raises_f0(espeak):
    text = "Our mother moved a warm blue boat."
    low, mid, high = (_f0(espeak.speak(text, voice="en", pitch=p)) for p in (25, 50, 75))
    assert 60 < low < mid < high < 300
    assert high > 1.25 * low  # measured 86 → 132 Hz with espeak-ng 1.51
    assert _f0(espeak.speak(text, voice="en+f3")) > 1.5 * mid  # a female variant sits higher


def test_voice_variant_argument(espeak):
    a = espeak.speak("mama", voice="en", variant="f3")
    b = espeak.speak("mama", voice="en+f3")
    assert a.voice == b.voice == "en+f3"
    # Not bit-identical (espeak-ng's wave generator keeps its phase between calls), but the same
    # phonemes to within a pitch period.
    assert [p.symbol for p in a.phonemes] == [p.symbol for p in b.phonemes]
    assert max(abs(p.start - q.start) for p, q in zip(a.phonemes, b.phonemes)) < 0.005
    with pytest.raises(OmniSyncError, match="variant"):
        espeak.speak("mama", voice="en+nosuchvariant")
    with pytest.raises(OmniSyncError, match="no voice"):
        espeak.speak("mama", voice="xx-nosuchvoice")
    with pytest.raises(OmniSyncError, match=r"\[80, 450\]"):
        espeak.speak("mama", speed=20)


def test_empty_text_is_an_error():
    for text in ("", "   ", None):
        with pytest.raises(OmniSyncError, match="text"):
            speech.speak(text)


def test_missing_espeak_gives_install_hint(monkeypatch):
    monkeypatch.setattr(speech, "_library_path", lambda: None)
    monkeypatch.setattr(speech, "_ENGINE", None)
    with pytest.raises(OmniSyncError, match="apt-get install espeak-ng"):
        speech.speak("hello")
    with pytest.raises(OmniSyncError, match="apt-get install espeak-ng"):
        speech.list_voices()


def test_voices_and_splits(espeak):
    voices = espeak.list_voices("en")
    assert {"en", "en-us", "en+f3", "en-us+m2"} <= set(voices) and len(voices) >= 26
    assert all(v.split("+")[0] == "en" or v.startswith("en-") for v in voices)
    assert not any("whisper" in v or "croak" in v for v in voices)
    train, held = set(espeak.split_voices("train")), set(espeak.split_voices("heldout"))
    assert train and held and not train & held and train | held == set(voices)

    rng = np.random.default_rng(0)
    draws = [espeak.random_voice(rng, "train") for _ in range(200)]
    assert {v for v, _, _ in draws} <= train
    assert min(s for _, s, _ in draws) >= 120 and max(s for _, s, _ in draws) <= 220
    assert min(p for _, _, p in draws) >= 25 and max(p for _, _, p in draws) <= 75
    assert len({v for v, _, _ in draws}) > 20  # spread over the voices
    voice, speed, pitch = espeak.random_voice(np.random.default_rng(1), "heldout")
    assert voice in held and espeak.speak("a hollow pebble", voice, speed, pitch).duration > 0.3
    same_seed = [espeak.random_voice(np.random.default_rng(5), "train") for _ in range(2)]
    assert same_seed[0] == same_seed[1]


def test_sentence_vocabularies_disjoint_and_seeded():
    train, held = speech.vocabulary_words("train"), speech.vocabulary_words("heldout")
    assert not train & held and len(train) >= 100 and len(held) >= 60
    for words in (train, held):  # lip-readable sounds in both splits
        assert sum(any(c in w for c in "pbm") for w in words) >= 25
        assert sum(any(c in w for c in "fv") for w in words) >= 8
        assert sum(any(c in w for c in "ou") for w in words) >= 25
        assert sum("a" in w for w in words) >= 15
    for split, vocab in (("train", train), ("heldout", held)):
        a = [speech.random_sentence(np.random.default_rng(7), split) for _ in range(3)]
        assert a[0] == a[1] == a[2]  # same seed, same sentence
        rng = np.random.default_rng(0)
        sentences = [speech.random_sentence(rng, split) for _ in range(100)]
        assert len(set(sentences)) == 100
        for s in sentences:
            assert s[0].isupper() and s.endswith(".")
            words = s[:-1].lower().split()
            assert 4 <= len(words) <= 11 and set(words) <= vocab
    with pytest.raises(OmniSyncError):
        speech.random_sentence(np.random.default_rng(0), "test")


# -- visemes ---------------------------------------------------------------------------------------


def test_papa_mama_closes_and_opens(espeak):
    utt = espeak.speak("papa mama")
    vis, params = viseme_track(utt, FPS)
    assert vis.shape == (math.ceil(utt.duration * FPS),) and params.shape == (len(vis), 5)
    assert params.dtype == np.float32 and params.min() >= 0 and params.max() <= 1
    assert (params[:, OPEN] < 0.1).sum() >= 4 and (params[:, OPEN] > 0.5).sum() >= 4
    lead = visemes.Coarticulation().closure_lead_s  # a p's closure precedes its burst
    for p in utt.phonemes:  # every bilabial shuts the lips on a frame of its closure
        if p.symbol in ("p", "m"):
            k = np.arange(int((p.start - (lead if p.symbol == "p" else 0)) * FPS), int(math.ceil(p.end * FPS)))
            assert (params[k, OPEN] == 0).any() and (vis[k] == VISEME_INDEX["PBM"]).any()
    assert set(VISEME_NAMES[v] for v in vis) >= {"PBM", "A"}


def test_silence_before_and_after_is_closed(espeak):
    utt = espeak.speak("papa mama")
    shift = 0.5  # a leading pause
    phonemes = [Phoneme("_", 0.0, shift)] + [Phoneme(p.symbol, p.start + shift, p.end + shift) for p in utt.phonemes]
    end = utt.duration + shift
    T = math.ceil((end + 0.5) * FPS)
    vis, params = viseme_track(phonemes, FPS, num_frames=T)
    t = np.arange(T) / FPS
    before, after = t + 1 / FPS <= shift - 0.1, t >= end + 0.2
    quiet = before | after
    np.testing.assert_allclose(params[quiet], np.broadcast_to(VISEME_TARGETS[0], params[quiet].shape), atol=1e-6)
    assert (vis[before | after] == VISEME_INDEX["sil"]).all()
    assert params[(t > shift) & (t < end), OPEN].max() > 0.5


def test_unknown_symbol_is_counted_not_fatal():
    ph = [Phoneme("a", 0.0, 0.2), Phoneme("Q!", 0.2, 0.4), Phoneme("Q!", 0.4, 0.5), Phoneme("'a#", 0.5, 0.7)]
    ids, unknown = visemes.to_visemes(ph)
    assert unknown == Counter({"Q!": 2})
    neutral = VISEME_INDEX[visemes.NEUTRAL_VISEME]
    assert ids.tolist() == [VISEME_INDEX["A"], neutral, neutral, VISEME_INDEX["A"]]
    vis, params = viseme_track(ph, FPS)
    assert vis.shape == (math.ceil(0.7 * FPS),) and np.isfinite(params).all()
    assert VISEME_INDEX[visemes.NEUTRAL_VISEME] in vis


def test_table_and_targets():
    assert len(VISEME_NAMES) == len(VISEME_TARGETS) == 14 and VISEME_TARGETS.shape[1] == len(MOUTH_PARAMS)
    assert VISEME_TARGETS.min() >= 0 and VISEME_TARGETS.max() <= 1
    assert VISEME_TARGETS[VISEME_INDEX["PBM"], OPEN] == 0 and VISEME_TARGETS[VISEME_INDEX["sil"], OPEN] == 0
    mouth = {name: VISEME_TARGETS[i] for i, name in enumerate(VISEME_NAMES)}
    assert mouth["A"][OPEN] > mouth["E"][OPEN] > mouth["I"][OPEN]  # open > mid > close vowels
    assert mouth["U"][2] > mouth["O"][2] > mouth["A"][2]  # rounding
    for sym, name in (("p", "PBM"), ("f", "FV"), ("T", "TH"), ("tS", "SH"), ("u:", "U"), ("oU", "O"), ("_:", "sil")):
        assert visemes.PHONEME_TO_VISEME.get(sym, 0) == VISEME_INDEX[name]


def test_steady_vowel_reaches_its_target_and_default_length():
    ph = [Phoneme("_", 0.0, 0.2), Phoneme("A:", 0.2, 1.2), Phoneme("_", 1.2, 1.33)]
    vis, params = viseme_track(ph, FPS)
    assert len(vis) == math.ceil(1.33 * FPS) == 34
    mid = slice(int(0.5 * FPS), int(1.0 * FPS))  # > 5 time constants from both edges
    target = np.broadcast_to(VISEME_TARGETS[VISEME_INDEX["A"]], params[mid].shape)
    np.testing.assert_allclose(params[mid], target, atol=1e-3)
    # Anticipation: the mouth starts opening in the frame before the vowel, lags after it.
    assert 0 < params[4, OPEN] < params[5, OPEN] and params[30, OPEN] > 0.2


def test_short_bilabial_still_closes():
    for fps in (24.0, 25.0, 30.0, 60.0):
        for offset in np.linspace(0.0, 0.05, 7):  # against every frame phase
            s = 0.3 + offset
            ph = [Phoneme("A:", 0.0, s), Phoneme("m", s, s + 0.012), Phoneme("A:", s + 0.012, 0.7)]
            vis, params = viseme_track(ph, fps, smoothing=visemes.Coarticulation(closure_lead_s=0.0))
            assert (params[:, OPEN] == 0).sum() >= 1 and (vis == VISEME_INDEX["PBM"]).sum() >= 1


def test_bad_track_input():
    ph = [Phoneme("a", 0.0, 0.2)]
    with pytest.raises(OmniSyncError, match="fps"):
        viseme_track(ph, 0)
    with pytest.raises(OmniSyncError, match="num_frames"):
        viseme_track(ph, FPS, num_frames=-1)
    with pytest.raises(OmniSyncError, match="order"):
        viseme_track([Phoneme("a", 0.2, 0.3), Phoneme("b", 0.0, 0.1)], FPS)
    assert viseme_track([], FPS)[1].shape == (0, 5)
    vis, params = viseme_track([Phoneme("m", 0.1, 0.1)], FPS, num_frames=5)  # zero-length: no closure
    assert (vis == VISEME_INDEX["sil"]).all()
    np.testing.assert_allclose(params, np.broadcast_to(VISEME_TARGETS[0], params.shape), atol=1e-6)
    vis, _ = viseme_track(ph, Fraction(30000, 1001))  # NTSC rates arrive as fractions
    assert len(vis) == math.ceil(0.2 * 30000 / 1001)
