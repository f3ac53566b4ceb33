"""Finding a song's beats, for `movie --beats`.

ffmpeg decodes the audio (any format the movie can carry); librosa tracks the beats on an
onset envelope, following tempo changes, then each beat is moved onto its sound's attack on
a finer envelope (the tracker's frames lag the attack by 10-20 ms, which is half a frame at
30 fps). Audio without a steady beat is refused rather than given made-up beats.

librosa is imported only here, and only when --beats is used: its first import takes
seconds, and its first beat tracking compiles numba code (once per installation).
"""

from __future__ import annotations

import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sdmorph.core.errors import MovieError
from sdmorph.media.ffmpeg import ffmpeg_exe, reason

SAMPLE_RATE = 22050
HOP = 256  # 11.6 ms tracking frames
FINE_HOP = 64  # 2.9 ms frames to find each beat's attack
FINE_FFT = 512
BEFORE, AFTER = 0.06, 0.06  # seconds around a tracked beat searched for its attack
MIN_BEATS = 4
# A steady beat: the onset envelope, less its mean, correlates with itself one beat later
# (speech and noise stay below 0.15, click tracks and drum patterns above 0.5) ...
MIN_CLARITY = 0.3
# ... and the beats stand out of it (a sustained tone's ripples do not).
MIN_PROMINENCE = 2.0
CLARITY_WINDOW = 8.0  # seconds: local, so a tempo change does not blur the measure
SILENT_RMS = 1e-4  # -80 dBFS
TEMPO_SPAN = 8  # beats per window of the local tempo
_FIX = "--beats needs music with a steady beat; --fit-audio fits the movie to any audio"


@dataclass(frozen=True)
class Beats:
    """A song's beats, and how sure the tracker is of them."""

    times: tuple[float, ...]  # seconds from the start of the audio
    tempo: float  # beats per minute, the median of the song
    slowest: float  # the slowest and fastest local tempo (beats per minute)
    fastest: float
    clarity: float  # 0..1: how periodic the song's onsets are at its beat


def find_beats(path: Path) -> Beats:
    """The beats of an audio file; MovieError if it has no steady beat."""
    samples = decode(path)
    if samples.size == 0 or float(np.sqrt(np.mean(samples ** 2))) < SILENT_RMS:
        raise MovieError(f"{path}: the audio is silent: {_FIX}")
    librosa = _librosa()
    with warnings.catch_warnings():  # librosa warns about short or odd input; we judge below
        warnings.simplefilter("ignore")
        envelope, frames = _track(librosa, samples)
        clarity = _check_steady(path, envelope, frames)
        times = _on_attacks(librosa, samples, frames * HOP / SAMPLE_RATE)
    if len(times) < MIN_BEATS:
        raise MovieError(f"{path}: no steady beat found ({len(times)} beats): {_FIX}")
    slowest, median, fastest = _tempi(times)
    return Beats(tuple(float(t) for t in times), median, slowest, fastest, clarity)


def _check_steady(path: Path, envelope: np.ndarray, frames: np.ndarray) -> float:
    """The beat's clarity; MovieError when the beats are too few, not periodic or too weak
    (the tracker finds beats in anything, noise included)."""
    if len(frames) < MIN_BEATS:
        raise MovieError(f"{path}: no steady beat found ({len(frames)} beats): {_FIX}")
    clarity = _clarity(envelope, frames)
    if clarity < MIN_CLARITY:
        raise MovieError(f"{path}: no steady beat found (pulse clarity {clarity:.2f}, a beat "
                         f"needs {MIN_CLARITY:.2f}): {_FIX}")
    prominence = _prominence(envelope, frames)
    if prominence < MIN_PROMINENCE:
        raise MovieError(f"{path}: no steady beat found (the beats stand {prominence:.1f}x "
                         f"out of the other onsets, a beat needs {MIN_PROMINENCE:g}x): {_FIX}")
    return clarity


def decode(path: Path) -> np.ndarray:
    """The audio as mono samples at SAMPLE_RATE (float64, full scale 1), decoded by ffmpeg."""
    try:
        result = subprocess.run(
            [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0",
             "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le", "-"],
            stdin=subprocess.DEVNULL, capture_output=True,
        )
    except OSError as exc:
        raise MovieError(f"could not run ffmpeg ({ffmpeg_exe()}): {exc}") from exc
    if result.returncode != 0:
        why = reason(result.stderr.decode(errors="replace"))
        raise MovieError(f"{path}: the audio cannot be decoded ({why})")
    return np.frombuffer(result.stdout, dtype="<f4").astype(np.float64)


def _librosa() -> Any:
    try:
        import librosa
    except ImportError as exc:
        raise MovieError(f"--beats needs librosa ({exc}): pip install librosa") from None
    return librosa


def _track(librosa: Any, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The onset envelope and the beat frames, with a tempo that may change over the song."""
    envelope = librosa.onset.onset_strength(y=samples, sr=SAMPLE_RATE, hop_length=HOP)
    tempo = librosa.feature.tempo(onset_envelope=envelope, sr=SAMPLE_RATE, hop_length=HOP,
                                  aggregate=None)
    # Untrimmed: librosa's own trim drops seconds of real beats at the end after a tempo
    # change; beats in a silent intro or outro are trimmed on their attacks instead.
    _, frames = librosa.beat.beat_track(onset_envelope=envelope, sr=SAMPLE_RATE,
                                        hop_length=HOP, bpm=tempo, units="frames", trim=False)
    return envelope, np.asarray(frames, dtype=int)


def _clarity(envelope: np.ndarray, frames: np.ndarray) -> float:
    """Median over windows of the envelope's autocorrelation at the local beat period."""
    width = int(CLARITY_WINDOW * SAMPLE_RATE / HOP)
    values = []
    for start in range(0, max(1, len(envelope) - width // 2), width // 2):
        window = envelope[start:start + width]
        inside = frames[(frames >= start) & (frames < start + width)]
        if len(inside) < 3:
            continue
        lag = int(round(float(np.median(np.diff(inside)))))
        centred = window - window.mean()
        energy = float(np.dot(centred, centred))
        if energy <= 0 or not 0 < lag < len(centred):
            continue
        values.append(float(np.dot(centred[:-lag], centred[lag:])) / energy)
    return float(np.median(values)) if values else 0.0


def _prominence(envelope: np.ndarray, frames: np.ndarray) -> float:
    """How far the envelope's peaks at the beats stand above its mean (median over beats)."""
    peaks = [envelope[max(0, f - 2):f + 3].max() for f in frames]
    mean = float(envelope.mean())
    return float(np.median(peaks)) / mean if mean > 0 else 0.0


def _on_attacks(librosa: Any, samples: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Each beat moved to the strongest attack just around it, on 2.9 ms frames.

    A beat with no attack of its own inside the music (a missing beat the tracker filled
    in) keeps its time, shifted by the beats' typical lag; those before the first attack
    and after the last one (a silent intro or outro) are dropped.
    """
    fine = librosa.onset.onset_strength(y=samples, sr=SAMPLE_RATE, hop_length=FINE_HOP,
                                        n_fft=FINE_FFT)
    step = FINE_HOP / SAMPLE_RATE
    attacks = np.array([_attack(fine, t, step) for t in times])
    strengths = fine[attacks]
    strong = strengths >= 0.25 * float(np.median(strengths))
    found = attacks * step
    lag = float(np.median(times[strong] - found[strong]))
    moved = np.where(strong, found, times - lag)
    kept = np.flatnonzero(strong)
    return moved[kept[0]:kept[-1] + 1]


def _attack(fine: np.ndarray, t: float, step: float) -> int:
    """The fine frame of the strongest onset within BEFORE/AFTER seconds of time t."""
    lo = min(len(fine) - 1, max(0, int(round((t - BEFORE) / step))))
    hi = max(lo + 1, min(len(fine), int(round((t + AFTER) / step)) + 1))
    return lo + int(np.argmax(fine[lo:hi]))


def _tempi(times: np.ndarray) -> tuple[float, float, float]:
    """(slowest, median, fastest) tempo in beats per minute: the median over the song of
    the inter-beat time, and the extremes of its median over TEMPO_SPAN-beat windows."""
    gaps = np.diff(times)
    median = 60.0 / float(np.median(gaps))
    span = min(TEMPO_SPAN, len(gaps))
    local = [60.0 / float(np.median(gaps[i:i + span])) for i in range(len(gaps) - span + 1)]
    return min(local), median, max(local)
