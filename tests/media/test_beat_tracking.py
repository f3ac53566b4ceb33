"""Finding beats in audio the tests synthesise, and `movie --beats` end to end.

Click tracks at 90, 120 and 150 BPM, one that changes tempo, one swung, one with missing
beats, and a music-like track (a kick drum under a sustained chord) must give their tempo
and their beats; silence, noise and a speech-like recording must be refused. The movies
are decoded and each keyframe's picture is found in them: it must show within one frame
period of a beat of the audio.
"""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from sdmorph.cli.app import app
from sdmorph.core.errors import MovieError
from sdmorph.core.ids import ImageId
from sdmorph.formats.clips import read_clips_json
from sdmorph.formats.plan_tables import read_story
from sdmorph.formats.song import load_song, resolver
from sdmorph.media.beats import find_beats
from sdmorph.media.ffmpeg import probe
from sdmorph.media.store import TransitionManifest
from songs import SETTINGS, env_for, write_song

# librosa compiles its numba code on first use in each process: minutes, not seconds.
pytestmark = pytest.mark.slow

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
RATE = 22050
runner = CliRunner()


# ---------------------------------------------------------------- synthesised audio


def click() -> np.ndarray:
    """A short woodblock-like click: a 1.5 kHz tone dying in a few milliseconds."""
    t = np.arange(int(0.03 * RATE)) / RATE
    return np.sin(2 * np.pi * 1500 * t) * np.exp(-t / 0.004)


def kick() -> np.ndarray:
    """A kick drum: a sine sweeping down from 150 to 50 Hz, fading in a quarter second."""
    t = np.arange(int(0.25 * RATE)) / RATE
    pitch = 50 + 100 * np.exp(-t / 0.03)
    return np.sin(2 * np.pi * np.cumsum(pitch) / RATE) * np.exp(-t / 0.08)


def chord(seconds: float) -> np.ndarray:
    """A sustained A major chord, no attacks after its start."""
    t = np.arange(int(seconds * RATE)) / RATE
    return 0.15 * sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.18, 329.63, 440.0))


def place(times: np.ndarray, seconds: float, sound: np.ndarray,
          gain: float = 0.8) -> np.ndarray:
    out = np.zeros(int(seconds * RATE) + len(sound))
    for t in times:
        i = int(round(t * RATE))
        out[i:i + len(sound)] += gain * sound
    return out[:int(seconds * RATE)]


def steady(bpm: float, seconds: float, start: float = 0.5) -> np.ndarray:
    return np.arange(start, seconds - 0.05, 60 / bpm)


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Syllables: voiced bursts of random pitch and length, with irregular pauses."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * RATE))
    t = 0.3
    while t < seconds - 0.5:
        length = rng.uniform(0.08, 0.3)
        n = int(length * RATE)
        tt = np.arange(n) / RATE
        f0 = rng.uniform(100, 200)
        voiced = sum(np.sin(2 * np.pi * f0 * k * tt) / k for k in range(1, 8))
        out[int(t * RATE):int(t * RATE) + n] += voiced * np.hanning(n) * rng.uniform(0.2, 0.6)
        t += length + rng.uniform(0.02, 0.5) + (rng.uniform(0.3, 1.0) if rng.random() < 0.1
                                                else 0.0)
    return out


def write_wav(path: Path, samples: np.ndarray) -> Path:
    pcm = (np.clip(samples, -1, 1) * 32000).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(pcm.tobytes())
    return path


def convert(wav: Path, suffix: str) -> Path:
    """The same audio as mp3 or flac, encoded by ffmpeg."""
    target = wav.with_suffix(suffix)
    subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-y", "-i", str(wav), str(target)],
                   check=True)
    return target


def near(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """For each true beat, the distance (seconds) to the nearest beat found."""
    return np.abs(found[None, :] - truth[:, None]).min(axis=1)


# ---------------------------------------------------------------- tempo and beats


@pytest.mark.parametrize("bpm", [90, 120, 150])
def test_steady_clicks_give_their_tempo_and_beats(tmp_path: Path, bpm: int) -> None:
    truth = steady(bpm, 20.0)
    beats = find_beats(write_wav(tmp_path / "clicks.wav", place(truth, 20.0, click())))
    assert beats.tempo == pytest.approx(bpm, rel=0.02)
    assert beats.slowest == pytest.approx(bpm, rel=0.02)
    assert beats.fastest == pytest.approx(bpm, rel=0.02)
    found = np.array(beats.times)
    assert len(found) == len(truth)
    assert near(found, truth).max() < 0.010  # on each click's attack, not 15 ms after


def test_a_tempo_change_is_followed(tmp_path: Path) -> None:
    slow = np.arange(0.5, 15.0, 60 / 100)
    fast = np.arange(slow[-1] + 60 / 140, 30.0 - 0.05, 60 / 140)
    truth = np.concatenate([slow, fast])
    beats = find_beats(write_wav(tmp_path / "change.wav", place(truth, 30.0, click())))
    assert beats.slowest == pytest.approx(100, rel=0.03)
    assert beats.fastest == pytest.approx(140, rel=0.03)
    found = np.array(beats.times)
    assert np.mean(near(found, truth) < 0.02) >= 0.95
    assert abs(len(found) - len(truth)) <= 2


def test_swing_keeps_the_beat_not_the_offbeats(tmp_path: Path) -> None:
    truth = steady(110, 20.0)
    offbeats = truth[:-1] + 2 / 3 * 60 / 110  # the swung eighth, softer
    audio = place(truth, 20.0, click()) + place(offbeats, 20.0, click(), gain=0.5)
    beats = find_beats(write_wav(tmp_path / "swing.wav", audio))
    assert beats.tempo == pytest.approx(110, rel=0.02)
    found = np.array(beats.times)
    assert np.mean(near(found, truth) < 0.01) >= 0.95
    assert np.mean(near(found, offbeats) < 0.05) < 0.05


def test_missing_beats_are_filled_in(tmp_path: Path) -> None:
    truth = steady(120, 20.0)
    played = np.delete(truth, [10, 11, 25])  # two in a row, then one more
    beats = find_beats(write_wav(tmp_path / "gaps.wav", place(played, 20.0, click())))
    assert beats.tempo == pytest.approx(120, rel=0.02)
    found = np.array(beats.times)
    assert near(found, truth).max() < 0.02  # the silent beats too


def test_kick_under_a_sustained_chord(tmp_path: Path) -> None:
    truth = steady(100, 20.0)
    audio = place(truth, 20.0, kick()) + chord(20.0)
    beats = find_beats(write_wav(tmp_path / "kick.wav", audio))
    assert beats.tempo == pytest.approx(100, rel=0.02)
    assert near(np.array(beats.times), truth).max() < 0.010


@pytest.mark.parametrize("suffix", [".mp3", ".flac"])
def test_compressed_audio_gives_the_same_beats(tmp_path: Path, suffix: str) -> None:
    truth = steady(120, 12.0)
    wav = write_wav(tmp_path / "clicks.wav", place(truth, 12.0, click()))
    beats = find_beats(convert(wav, suffix))
    assert beats.tempo == pytest.approx(120, rel=0.02)
    assert near(np.array(beats.times), truth).max() < 0.010  # mp3's encoder delay undone


@pytest.mark.parametrize(("kind", "message"), [
    ("silence", "the audio is silent"),
    ("noise", "no steady beat found"),
    ("speech", "no steady beat found"),
])
def test_audio_without_a_beat_is_refused(tmp_path: Path, kind: str, message: str) -> None:
    audio = {
        "silence": np.zeros(10 * RATE),
        "noise": 0.3 * np.random.default_rng(0).standard_normal(20 * RATE),
        "speech": speech_like(20.0),
    }[kind]
    with pytest.raises(MovieError, match=message) as caught:
        find_beats(write_wav(tmp_path / f"{kind}.wav", audio))
    text = str(caught.value)
    assert "--fit-audio" in text and "\n" not in text


def test_a_file_without_audio_is_refused(tmp_path: Path) -> None:
    notes = tmp_path / "notes.wav"
    notes.write_text("not audio")
    with pytest.raises(MovieError, match="notes.wav: the audio cannot be decoded"):
        find_beats(notes)


# ---------------------------------------------------------------- movies on the beat

FPS = 24
FRAMES = 8  # per transition folder
SONG_SECONDS = 12.0
BPM = 120
# A story over six folders: a loop round luna's three seeds and on to the sun (section 1),
# back and forth in the sun, to the star, then a cut back to luna (section 2).
STORY = [
    (1, "luna-1001", "luna-1002"), (1, "luna-1002", "luna-1003"), (1, "luna-1003", "luna-1001"),
    (1, "luna-1001", "luna-1002"), (1, "luna-1002", "luna-1003"), (1, "luna-1003", "luna-1001"),
    (1, "luna-1001", "sun-2001"), (2, "sun-2001", "sun-2002"), (2, "sun-2002", "sun-2001"),
    (2, "sun-2001", "sun-2002"), (2, "sun-2002", "star-3001"), (2, "luna-1002", "luna-1003"),
    (2, "luna-1003", "luna-1001"),
]
FOLDERS = ["luna-1001 to luna-1002", "luna-1002 to luna-1003", "luna-1003 to luna-1001",
           "luna-1001 to sun-2001", "sun-2001 to sun-2002", "sun-2002 to star-3001"]


def colour(folder: int, k: int) -> tuple[int, int, int]:
    """Unique to (folder, frame): every keyframe of the story can be found by its colour."""
    return 30 + 36 * folder, 20 + 30 * k, 200 - 20 * k


def beat_song(root: Path, audio: np.ndarray | None = None) -> Path:
    """The test song with its six transitions rendered, a story file, and the song's audio
    (a click track at 120 BPM from 0.5 s unless given); returns the story file."""
    meta, media = write_song(root, settings={
        "default": {**SETTINGS["default"], "interpolation_steps": FRAMES}})
    for f, name in enumerate(FOLDERS):
        folder = media / "transition_images" / name
        folder.mkdir(parents=True)
        for k in range(FRAMES):
            Image.new("RGB", (64, 64), colour(f, k)).save(folder / f"frame{k:06d}.png")
        a, b = (ImageId(label.split("-")[0], int(label.split("-")[1]))
                for label in name.split(" to "))
        TransitionManifest(from_image=a, to_image=b, frames=FRAMES, complete=True,
                           recipe={"test": 1}).write(folder / "manifest.json")
    if audio is None:
        audio = place(steady(BPM, SONG_SECONDS), SONG_SECONDS, click())
    write_wav(meta / "song.wav", audio)
    story = root / "story.csv"
    rows = [f"{i},{s},{s},,{a},{b},False,\n" for i, (s, a, b) in enumerate(STORY)]
    story.write_text(",path_section,section,scene_from,c1,c2,reversed,input_image_folder\n"
                     + "".join(rows))
    return story


def decoded(video: Path) -> list[tuple[int, int]]:
    """(folder, frame) of every frame of a video, found by colour."""
    info = probe(video)
    raw = subprocess.run(
        [FFMPEG, "-nostdin", "-v", "error", "-i", str(video), "-map", "0:v:0", "-f", "rawvideo",
         "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, info.height, info.width, 3)
    centres = frames[:, 16:48, 16:48].reshape(len(frames), -1, 3).mean(axis=1)
    keys = [(f, k) for f in range(len(FOLDERS)) for k in range(FRAMES)]
    table = np.array([colour(*key) for key in keys], dtype=float)
    out = []
    for rgb in centres:
        distance = np.abs(table - rgb).max(axis=1)
        assert distance.min() < 12, f"frame colour {rgb} is no frame of the story"
        out.append(keys[int(distance.argmin())])
    return out


def played_keys(row: tuple[int, str, str]) -> tuple[tuple[int, int], tuple[int, int]]:
    """(first, last) keyframe of a story row as played: a folder is played backwards when
    only the other direction is rendered."""
    _, a, b = row
    if f"{a} to {b}" in FOLDERS:
        f = FOLDERS.index(f"{a} to {b}")
        return (f, 0), (f, FRAMES - 1)
    f = FOLDERS.index(f"{b} to {a}")
    return (f, FRAMES - 1), (f, 0)


def arrivals(frames: list[tuple[int, int]], rows: int) -> list[int]:
    """Where each keyframe after the first shows first in a decoded movie: a transition's
    last image, or at a cut the next transition's first image."""
    found = []
    at = 0
    for j in range(rows):
        cut = j + 1 < rows and STORY[j + 1][1] != STORY[j][2]
        key = played_keys(STORY[j + 1])[0] if cut else played_keys(STORY[j])[1]
        at = frames.index(key, at + 1)
        found.append(at)
    return found


def on_beat(positions: list[int], beats: np.ndarray) -> np.ndarray:
    """Seconds between each keyframe's first frame and its nearest beat."""
    times = np.array(positions) / FPS
    return np.abs(times[:, None] - beats[None, :]).min(axis=1)


def story_folder(root: Path, name: str) -> Path:
    return root / "media" / "song" / "stories" / name


def invoke(root: Path, *args: str):
    return runner.invoke(app, list(args), env=env_for(root))


@pytest.mark.parametrize("codec", ["mjpeg", "h264"])
def test_keyframes_land_on_the_beats_in_the_decoded_movie(tmp_path: Path, codec: str) -> None:
    story = beat_song(tmp_path)
    result = invoke(tmp_path, "movie", "song", "--beats", "--fps", str(FPS), "--codec", codec,
                    "--sequence", str(story), "-o", "beat", "--clips")
    assert result.exit_code == 0, result.output
    assert "120" in result.stdout and "BPM" in result.stdout
    folder = story_folder(tmp_path, "beat")
    ext = ".mov" if codec == "mjpeg" else ".mp4"
    combined = folder / f"beat_combined{ext}"
    info = probe(combined)
    assert abs(info.frames - SONG_SECONDS * FPS) <= 1  # the movie lasts as long as the song
    assert info.audio_duration == pytest.approx(SONG_SECONDS, abs=1 / FPS + 0.03)
    frames = decoded(combined)
    found = arrivals(frames, len(STORY))
    offsets = on_beat(found, steady(BPM, SONG_SECONDS))
    assert np.mean(offsets <= 1 / FPS) >= 0.95 and offsets.max() <= 1 / FPS
    # Sections hold their part of the combined movie, the shared keyframe included.
    song = load_song(tmp_path / "meta" / "song", tmp_path / "media" / "song")
    rows = read_story(folder / "trans_sequence_beat.csv", resolver(song))
    assert len(rows) == len(STORY)
    first = [r.first_frame for r in rows]
    last = [r.last_frame for r in rows]
    assert first[0] == 0 and last[-1] == info.frames - 1
    section_2 = next(i for i, r in enumerate(rows) if r.section == 2)
    assert decoded(folder / "sections" / f"section_1{ext}") == frames[:last[section_2 - 1] + 1]
    # Section 2 opens on the keyframe section 1 ends on, from its own first transition.
    opening = decoded(folder / "sections" / f"section_2{ext}")
    assert opening[0] == played_keys(STORY[section_2])[0]
    assert opening[1:] == frames[first[section_2] + 1:]
    for j, at in enumerate(found):  # each row's range ends with its keyframe's block
        assert first[j] <= at <= last[j] + 1
    # Each clip is its transition as retimed, keyframes once, as clips.json says.
    index = read_clips_json(folder / "clips.json")
    for clip in index.clips:
        video = folder / clip.files[codec]
        shown = decoded(video)
        assert probe(video).frames == clip.frames == len(shown)
        start, end = played_keys(STORY[clip.index])
        assert shown[0] == start and shown[-1] == end
        assert start not in shown[1:] and end not in shown[:-1]


def test_beats_per_transition_and_holds_cut_a_long_story(tmp_path: Path) -> None:
    story = beat_song(tmp_path)
    # 4 beats each: the song's 22 beat intervals (0.5 s to 11.5 s) hold 5 transitions.
    result = invoke(tmp_path, "movie", "song", "--beats", "--beats-per-transition", "4",
                    "--hold", "0.1", "--fps", str(FPS), "--codec", "mjpeg", "--sequence",
                    str(story), "-o", "held")
    assert result.exit_code == 0, result.output
    assert "5 of 13 transitions play" in result.stdout
    folder = story_folder(tmp_path, "held")
    combined = folder / "held_combined.mov"
    assert abs(probe(combined).frames - SONG_SECONDS * FPS) <= 1
    frames = decoded(combined)
    found = arrivals(frames, 5)
    beats = steady(BPM, SONG_SECONDS)
    assert np.allclose(np.array(found) / FPS, beats[[4, 8, 12, 16, 20]], atol=1 / FPS)
    for at in found[:-1]:  # each keyframe held 0.1 s (2 frames) after its beat
        assert frames[at] == frames[at + 1] == frames[at + 2] != frames[at + 3]
    assert not (folder / "sections" / "section_2.mov").exists()  # section 2 was cut
    rows = (folder / "trans_sequence_held.csv").read_text().splitlines()
    assert len(rows) == 1 + 5


@pytest.mark.parametrize(("args", "message"), [
    (("--audio", "noise.wav"), "no steady beat found"),
    (("--fit-audio",), "--fit-audio"),
    (("--no-audio",), "--beats needs the song's audio"),
])
def test_beats_refused_with_one_line_and_nothing_written(tmp_path: Path, args: tuple[str, ...],
                                                         message: str) -> None:
    story = beat_song(tmp_path)
    noise = 0.3 * np.random.default_rng(1).standard_normal(int(SONG_SECONDS * RATE))
    write_wav(tmp_path / "noise.wav", noise)
    result = invoke(tmp_path, "movie", "song", "--beats", "--sequence", str(story),
                    *[str(tmp_path / a) if a.endswith(".wav") else a for a in args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert not (tmp_path / "media" / "song" / "stories").exists()


def test_beats_per_transition_needs_beats(tmp_path: Path) -> None:
    story = beat_song(tmp_path)
    result = invoke(tmp_path, "movie", "song", "--beats-per-transition", "2", "--sequence",
                    str(story))
    assert result.exit_code == 2 and "--beats-per-transition needs --beats" in result.stderr
