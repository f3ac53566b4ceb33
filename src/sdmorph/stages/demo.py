"""`sdmorph demo`: a bundled example song, copied out and run end to end on the tiny model."""

from __future__ import annotations

import math
import shutil
import struct
import wave
from importlib import resources
from pathlib import Path

from sdmorph.core.errors import SdmorphError
from sdmorph.formats.fsio import atomic_path, write_text

DEMO_SONG = "harbour"
DEMO_FILES = ("prompt_image_definitions.csv", "scene_sequence.csv", "tgen_settings.json")
RATE = 22050
# A slow arpeggio, one note per beat, that makes the demo's audio track (A minor), over a
# soft kick drum on every beat (80 BPM) so that `movie --beats` has a beat to follow.
NOTES = (220.0, 261.63, 329.63, 392.0, 440.0, 392.0, 329.63, 261.63)
BEAT = 0.75
KICK_LEVEL = 0.35  # with the notes' 0.3, peaks stay well below full scale
KICK_DECAY = 0.08  # seconds: a short thump
KICK_SWEEP = 0.03  # seconds for its pitch to fall from 150 Hz to 50 Hz


def tones(seconds: float) -> bytes:
    """Mono 16-bit PCM of soft sine notes with short fades (no clicks), a kick on each."""
    frames = bytearray()
    total = int(seconds * RATE)
    per_note = int(BEAT * RATE)
    fade = int(0.02 * RATE)
    for i in range(total):
        note = NOTES[(i // per_note) % len(NOTES)]
        pos = i % per_note
        envelope = min(1.0, pos / fade, (per_note - pos) / fade)
        value = 0.3 * envelope * math.sin(2 * math.pi * note * i / RATE) + kick(pos / RATE)
        frames += struct.pack("<h", int(value * 32767))
    return bytes(frames)


def kick(t: float) -> float:
    """A kick drum `t` seconds after its beat: a sine falling from 150 to 50 Hz, fading fast.

    It starts at phase 0, so it adds no click of its own.
    """
    sweep = 100 * KICK_SWEEP * (1 - math.exp(-t / KICK_SWEEP))  # the pitch fall, integrated
    return KICK_LEVEL * math.exp(-t / KICK_DECAY) * math.sin(2 * math.pi * (50 * t + sweep))


def write_audio(target: Path, seconds: float = 12.0) -> None:
    with atomic_path(target) as tmp, wave.open(str(tmp), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(tones(seconds))


def install_demo(root: Path, force: bool = False) -> tuple[Path, Path]:
    """Copy the demo song into `root`/meta, write `root`/.env; returns (meta, media) dirs."""
    meta = root / "meta" / DEMO_SONG
    media = root / "media"
    if meta.exists() and not force and any(meta.iterdir()):
        return meta, media
    meta.mkdir(parents=True, exist_ok=True)
    bundled = resources.files("sdmorph") / "demo"
    for name in DEMO_FILES:
        source = bundled / name
        if not source.is_file():
            raise SdmorphError(f"the installed sdmorph lacks its demo file {name}")
        with resources.as_file(source) as path:
            shutil.copyfile(path, meta / name)
    write_audio(meta / f"{DEMO_SONG}.wav")
    env = f"media_dir={media.resolve()}\nmeta_dir={(root / 'meta').resolve()}\n"
    write_text(root / ".env", env)
    return meta, media
