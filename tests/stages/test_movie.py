"""The `movie` stage: choosing stories from rendered transitions, and encoding them for real.

Transition folders are built directly (solid-colour frames whose colour names the folder
and the frame) so that decoding a movie tells exactly which frames it plays, in which order.
"""

from __future__ import annotations

import subprocess
import threading
import time
import wave
from itertools import pairwise
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fakes import full_disk_ffmpeg
from sdmorph.cli.app import app
from sdmorph.core.errors import MovieError
from sdmorph.core.ids import ImageId, transition_name
from sdmorph.core.paths import build_graph
from sdmorph.formats.clips import read_clips_json
from sdmorph.formats.fsio import try_locked
from sdmorph.formats.plan_tables import read_story, written_by_sdmorph
from sdmorph.formats.song import Song, load_song, resolver
from sdmorph.media.ffmpeg import probe
from sdmorph.media.store import TransitionManifest
from sdmorph.stages.movie import (
    LOCK_NAME,
    MovieRequest,
    codecs_of,
    find_audio,
    movie_fps,
    plan_movie,
)
from songs import SETTINGS, env_for, write_song

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
runner = CliRunner()
SEEDS = {
    "luna": (10012345, 10029876, 10031111),
    "sun": (20014444, 20025555, 20036666),
    "star": (30017777, 30028888, 30039999),
}
SHEET = "name,prompt,seeds,guidance_scale\n" + "".join(
    f'{name},"a {name}",{" ".join(map(str, seeds))},7.5\n' for name, seeds in SEEDS.items()
)
STEPS = 4  # interpolation_steps of the test song
SIZE = 64


def img(prompt: str, k: int) -> ImageId:
    return ImageId(prompt, SEEDS[prompt][k])


L0, L1, L2 = img("luna", 0), img("luna", 1), img("luna", 2)
S0, S1, S2 = img("sun", 0), img("sun", 1), img("sun", 2)
T0, T1, T2 = img("star", 0), img("star", 1), img("star", 2)


def legacy_name(a: ImageId, b: ImageId) -> str:
    return f"{a.prompt}-{str(a.seed)[:4]} to {b.prompt}-{str(b.seed)[:4]}"


class Media:
    """Builds transition folders whose frame k of folder f has a colour unique to (f, k)."""

    def __init__(self, root: Path) -> None:
        self.song_media = root / "media" / "song"
        self.root = self.song_media / "transition_images"
        self.colours: dict[tuple[str, int], tuple[int, int, int]] = {}

    def _frames(self, folder: Path, n: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        f = len({name for name, _ in self.colours})
        for k in range(n):
            colour = (10 + 30 * (f % 8), 10 + 30 * (f // 8), 20 + 70 * k)
            self.colours[(folder.name, k)] = colour
            Image.new("RGB", (SIZE, SIZE), colour).save(folder / f"frame{k:06d}.png")

    def sdmorph(self, a: ImageId, b: ImageId, n: int = STEPS, complete: bool = True) -> Path:
        folder = self.root / transition_name(a, b)
        self._frames(folder, n)
        manifest = TransitionManifest(from_image=a, to_image=b, frames=n, complete=complete,
                                      recipe={"test": 1})
        manifest.write(folder / ("manifest.json" if complete else ".sdmorph-partial.json"))
        return folder

    def legacy(self, a: ImageId, b: ImageId, n: int = STEPS) -> Path:
        folder = self.root / legacy_name(a, b)
        self._frames(folder, n)
        return folder

    def name_of(self, rgb: np.ndarray) -> tuple[str, int]:
        keys = list(self.colours)
        table = np.array([self.colours[k] for k in keys], dtype=float)
        distance = np.abs(table - rgb).max(axis=1)
        best = int(distance.argmin())
        assert distance[best] < 12, f"frame colour {rgb} is no frame of any folder"
        return keys[best]


def played(media: Media, video: Path) -> list[tuple[str, int]]:
    """(folder, frame index) of every frame of a video, by colour."""
    info = probe(video)
    raw = subprocess.run(
        [FFMPEG, "-nostdin", "-v", "error", "-i", str(video), "-map", "0:v:0", "-f", "rawvideo",
         "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, info.height, info.width, 3)
    centres = frames[:, 16:48, 16:48].reshape(len(frames), -1, 3).mean(axis=1)
    return [media.name_of(c) for c in centres]


def segment_play(folder: str, backwards: bool, hold: int = 0) -> list[tuple[str, int]]:
    """One transition's frames as played, holds on both keyframes."""
    order = list(range(STEPS))[::-1] if backwards else list(range(STEPS))
    return [(folder, k) for j, k in enumerate(order)
            for _ in range(1 + hold if j in (0, STEPS - 1) else 1)]


def expected(steps: list[tuple[str, bool]], hold: int = 0,
             cuts: tuple[int, ...] = ()) -> list[tuple[str, int]]:
    """What a story of (folder, reversed) plays: meeting frames once, holds on keyframes;
    a step listed in `cuts` starts on another image, so its first frame plays too."""
    out: list[tuple[str, int]] = []
    for i, step in enumerate(steps):
        frames = segment_play(*step, hold=hold)
        out += frames[1 + hold:] if i and i not in cuts else frames
    return out


def invoke(root: Path, *args: str):
    return runner.invoke(app, list(args), env=env_for(root))


def one_error(result: object) -> str:
    """The run failed with exit 2 and said why in exactly one line."""
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    assert "Traceback" not in result.output  # type: ignore[attr-defined]
    lines = [line for line in result.stderr.splitlines()  # type: ignore[attr-defined]
             if line.startswith("error:")]  # each problem is printed on an error: line
    assert len(lines) == 1, result.stderr  # type: ignore[attr-defined]
    return lines[0]


def snapshot(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def load(root: Path, **kwargs: object) -> Song:
    return load_song(root / "meta" / "song", root / "media" / "song", **kwargs)  # type: ignore[arg-type]


def write_wav(path: Path, seconds: float, channels: int = 1, rate: int = 8000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.repeat(tone, channels).tobytes())
    return path


# One story only: luna l0->l1, l1->sun s0 (legacy), s0->s1 only rendered s1->s0 (legacy,
# played backwards), s1->star t0 and t0->t1 (sdmorph). Decoys are incomplete or hidden.
CHAIN = [(L0, L1), (L1, S0), (S0, S1), (S1, T0), (T0, T1)]


def chain_song(root: Path) -> tuple[Media, list[tuple[str, bool]]]:
    write_song(root, sheet=SHEET)
    media = Media(root)
    l0l1 = media.legacy(L0, L1)
    media.legacy(L1, S0)
    media.legacy(S1, S0)
    media.sdmorph(S1, T0)
    media.sdmorph(T0, T1)
    media.sdmorph(L0, L2, complete=False)  # a render in progress
    media.legacy(L2, S2, n=STEPS - 1)  # a legacy folder missing a frame
    media.legacy(S2, T2)
    (media.root / legacy_name(S2, T2) / "frame000002.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    hidden = media.root / "TI_bad" / legacy_name(S0, T2)  # parked: not a transition
    media._frames(hidden, STEPS)
    Image.new("RGB", (SIZE, SIZE), (255, 0, 0)).save(l0l1 / "frame000003 (1).png")
    steps = [(legacy_name(L0, L1), False), (legacy_name(L1, S0), False),
             (legacy_name(S1, S0), True), (transition_name(S1, T0), False),
             (transition_name(T0, T1), False)]
    return media, steps


def full_song(root: Path) -> Media:
    """Every transition of the scene graph rendered (sdmorph folders)."""
    write_song(root, sheet=SHEET)
    media = Media(root)
    for a, b in build_graph(load(root).scenes).edges:
        media.sdmorph(a, b)
    return media


def story_pairs(rows: object) -> list[tuple[ImageId, ImageId]]:
    return [(row.c1, row.c2) for row in rows]  # type: ignore[attr-defined]


# ---------------------------------------------------------------- choosing stories


def test_story_uses_only_complete_transitions_and_reverses(tmp_path: Path) -> None:
    media, steps = chain_song(tmp_path)
    song = load(tmp_path)
    for seed in range(4):  # a single story exists: every seed finds it
        story = plan_movie(song, MovieRequest(seed=seed))
        assert story_pairs(story.rows) == CHAIN
        assert [(Path(r.input_image_folder).name, r.reversed) for r in story.rows] == steps
    assert [s.section for s in story.segments] == [1, 1, 1, 1, 2]
    backwards = story.segments[2]
    assert backwards.name == f"{S0.label} to {S1.label}"
    assert [p.name for p in backwards.frames] == [f"frame{k:06d}.png" for k in (3, 2, 1, 0)]
    assert all(len(s.frames) == STEPS for s in story.segments)  # "frame000003 (1).png" ignored


def test_seed_reproduces_the_story_and_other_seeds_vary(tmp_path: Path) -> None:
    full_song(tmp_path)
    song = load(tmp_path)
    first = story_pairs(plan_movie(song, MovieRequest(seed=0)).rows)
    assert story_pairs(plan_movie(song, MovieRequest(seed=0)).rows) == first
    others = {tuple(story_pairs(plan_movie(song, MovieRequest(seed=s)).rows)) for s in range(1, 8)}
    assert others - {tuple(first)}
    for pairs in [first, *others]:
        assert all(b == c for (_, b), (c, _) in pairwise(pairs))  # one continuous walk


def test_unreachable_scene_names_it_and_the_command(tmp_path: Path) -> None:
    settings = {"default": SETTINGS["default"], "cell": {**SETTINGS["default"], "fps": 12}}
    alt = ",scene,duration,section,start,avoid\n0,luna,1,1,,\n1,sun,0,1,,\n2,star,1,2,,\n"
    write_song(tmp_path, sheet=SHEET, settings=settings, extra={"scene_sequence_alt.csv": alt})
    media = Media(tmp_path)
    for a, b in [(L0, L1), (L1, S0), (L0, S0), (S0, S1), (T0, T1)]:  # nothing reaches star
        media.sdmorph(a, b)
    result = invoke(tmp_path, "movie", "song", "--profile", "cell", "--scenes", "alt")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "scene 'star'" in result.stderr
    assert "missing" in result.stderr and f"{S0.label} to {T0.label}" in result.stderr
    assert "sdmorph transitions song --profile cell --scenes alt" in result.stderr
    assert not (media.song_media / "stories").exists()


def test_rate_audio_and_codec_defaults(tmp_path: Path) -> None:
    settings = {"default": SETTINGS["default"], "cell": {**SETTINGS["default"], "fps": 12}}
    meta, _ = write_song(tmp_path, sheet=SHEET, settings=settings)
    song, cell = load(tmp_path), load(tmp_path, profile="cell")
    assert movie_fps(song, MovieRequest()) == 10
    assert movie_fps(cell, MovieRequest()) == 12
    assert movie_fps(cell, MovieRequest(fps=24)) == 24
    assert find_audio(song, MovieRequest()) is None
    (meta / "audio.txt").write_text("notes")
    (meta / "audio.ogg").write_bytes(b"")
    assert find_audio(song, MovieRequest()) == meta / "audio.ogg"
    (meta / "song.mp3").write_bytes(b"")
    assert find_audio(song, MovieRequest()) == meta / "song.mp3"
    assert find_audio(song, MovieRequest(no_audio=True)) is None
    with pytest.raises(MovieError, match="exclude each other"):
        find_audio(song, MovieRequest(no_audio=True, audio=meta / "song.mp3"))
    assert codecs_of("both") == ("mjpeg", "h264") and codecs_of("H264") == ("h264",)
    with pytest.raises(MovieError, match="mjpeg, h264 or both"):
        codecs_of("prores")


# ---------------------------------------------------------------- encoding


@pytest.mark.slow
def test_movie_plays_every_frame_in_order_per_section(tmp_path: Path) -> None:
    media, steps = chain_song(tmp_path)
    result = invoke(tmp_path, "movie", "song", "--codec", "mjpeg", "--fps", "8")
    assert result.exit_code == 0, result.output
    out = media.song_media / "stories" / "base"
    combined = out / "base_combined.mov"
    frames = expected(steps)
    assert len(frames) == len(CHAIN) * STEPS - (len(CHAIN) - 1)
    assert played(media, combined) == frames
    info = probe(combined)
    assert info.codec == "mjpeg" and not info.has_audio
    assert info.duration == pytest.approx(len(frames) / 8, abs=0.01)
    assert played(media, out / "sections" / "section_1.mov") == expected(steps[:4])
    assert played(media, out / "sections" / "section_2.mov") == expected(steps[4:])
    assert sorted(p.name for p in (out / "sections").iterdir()) == ["section_1.mov",
                                                                    "section_2.mov"]
    assert "transitions" in result.stdout and "base_combined.mov" in result.stdout
    # A killed run's temp files go; the story's own file played again is rewritten unchanged.
    leftover = out / "sections" / ".section_1.mov.abc.sdmorph-tmp.mov"
    leftover.write_bytes(b"half a movie")
    story = out / "trans_sequence_base.csv"
    before = story.read_bytes()
    again = invoke(tmp_path, "movie", "song", "--codec", "mjpeg", "--fps", "8", "--sequence",
                   str(story))
    assert again.exit_code == 0, again.output
    assert not leftover.exists()
    assert story.read_bytes() == before
    assert played(media, combined) == frames


@pytest.mark.slow
def test_both_codecs_holds_audio_and_story_file(tmp_path: Path) -> None:
    media, steps = chain_song(tmp_path)
    write_wav(tmp_path / "meta" / "song" / "song.wav", 1.0)
    result = invoke(tmp_path, "movie", "song", "--hold", "0.2", "--fps", "10")
    assert result.exit_code == 0, result.output
    out = media.song_media / "stories" / "base"
    frames = expected(steps, hold=2)
    assert len(frames) == 16 + 2 * (len(CHAIN) + 1)
    for name, codec in (("base_combined.mov", "mjpeg"), ("base_combined.mp4", "h264")):
        info = probe(out / name)
        assert info.codec == codec, name
        assert info.frames == len(frames)
        assert info.has_audio and info.audio_duration == pytest.approx(2.8, abs=0.1)
    assert played(media, out / "base_combined.mp4") == frames
    story = out / "trans_sequence_base.csv"
    text = story.read_text(encoding="utf-8")
    assert text.startswith(",path_section,section,scene_from,c1,c2,reversed,input_image_folder,")
    rows = read_story(story, resolver(load(tmp_path)))
    assert story_pairs(rows) == CHAIN and f"{L0.label},{L1.label}" in text  # full seeds
    assert [r.reversed for r in rows] == [s[1] for s in steps]
    # 8 frames each (4 + 2 holds on both keyframes), overlapping on the shared keyframe.
    ranges = [(5 * i, 5 * i + 7) for i in range(len(CHAIN))]
    assert [(r.first_frame, r.last_frame) for r in rows] == ranges
    assert ranges[-1][1] == len(frames) - 1
    assert (media.song_media / "story" / "trans_sequence.csv").read_bytes() == story.read_bytes()


@pytest.mark.slow
def test_fit_audio_sets_the_rate_to_the_song(tmp_path: Path) -> None:
    media, _ = chain_song(tmp_path)
    song_file = write_wav(tmp_path / "track.wav", 4.0, channels=2)
    result = invoke(tmp_path, "movie", "song", "--codec", "mjpeg", "--audio", str(song_file),
                    "--fit-audio")
    assert result.exit_code == 0, result.output
    info = probe(media.song_media / "stories" / "base" / "base_combined.mov")
    assert info.frames == 16
    assert info.duration == pytest.approx(4.0, abs=0.05)
    assert info.has_audio and info.audio_duration == pytest.approx(4.0, abs=0.1)
    missing = invoke(tmp_path, "movie", "song", "--audio", str(tmp_path / "nope.wav"))
    assert missing.exit_code == 2 and "nope.wav: audio file not found" in missing.stderr
    silent = invoke(tmp_path, "movie", "song", "--no-audio", "--fit-audio")
    assert silent.exit_code == 2 and "--fit-audio" in silent.stderr


@pytest.mark.slow
def test_clips_and_stale_outputs(tmp_path: Path) -> None:
    media, steps = chain_song(tmp_path)
    result = invoke(tmp_path, "movie", "song", "--codec", "mjpeg", "--clips")
    assert result.exit_code == 0, result.output
    out = media.song_media / "stories" / "base"
    index = read_clips_json(out / "clips.json")
    assert [c.name for c in index.clips] == [f"{a.label} to {b.label}" for a, b in CHAIN]
    for clip, (folder, backwards) in zip(index.clips, steps, strict=True):
        path = out / clip.files["mjpeg"]
        assert clip.frames == STEPS and probe(path).frames == STEPS
        order = [3, 2, 1, 0] if backwards else [0, 1, 2, 3]
        assert played(media, path) == [(folder, k) for k in order]
    assert index.clips[0].next[0].clip == index.clips[1].name
    assert [(c.scene_from, c.scene_to) for c in index.clips] == [
        ("luna", "luna"), ("luna", "sun"), ("sun", "sun"), ("sun", "star"), ("star", "star")]
    # A shorter story: section 2 and the clips it no longer plays go, the rest is rewritten.
    short = tmp_path / "short.csv"
    short.write_text(",section,c1,c2,reversed\n0,1,luna-1001,luna-1002,false\n"
                     "1,1,luna-1002,sun-2001,false\n", encoding="utf-8")
    again = invoke(tmp_path, "movie", "song", "--codec", "mjpeg", "--clips", "--sequence",
                   str(short))
    assert again.exit_code == 0, again.output
    assert sorted(p.name for p in (out / "sections").iterdir()) == ["section_1.mov"]
    kept = read_clips_json(out / "clips.json")
    assert sorted(p.name for p in (out / "clips").iterdir()) == sorted(
        Path(c.files["mjpeg"]).name for c in kept.clips)
    assert len(kept.clips) == 2 and "removed stale" in again.stdout
    # A story file without scene columns: the song's scene sequence names them.
    assert [(c.scene_from, c.scene_to) for c in kept.clips] == [("luna", "luna"),
                                                                ("luna", "sun")]
    other = invoke(tmp_path, "movie", "song", "--codec", "mjpeg")
    assert other.exit_code == 0, other.output
    assert "clips.json are from another story" in other.stderr


@pytest.mark.slow
def test_failed_encode_keeps_the_old_movie_and_story(tmp_path: Path) -> None:
    full_song(tmp_path)
    first = invoke(tmp_path, "movie", "song", "--codec", "mjpeg", "--seed", "0")
    assert first.exit_code == 0, first.output
    out = tmp_path / "media" / "song" / "stories" / "base"
    kept = {p: p.read_bytes() for p in [*out.rglob("*.mov"), *out.glob("*.csv"),
                                         tmp_path / "media/song/story/trans_sequence.csv"]}
    bad = write_wav(tmp_path / "nine.wav", 1.0, channels=9)  # ffmpeg's aac refuses 9 channels
    failed = invoke(tmp_path, "movie", "song", "--codec", "mjpeg", "--seed", "5",
                    "--audio", str(bad))
    line = one_error(failed)
    assert "ffmpeg failed (exit code " in line and "channel" in line
    assert {p: p.read_bytes() for p in kept} == kept
    assert not [p for p in out.rglob("*") if ".sdmorph-tmp" in p.name]


def test_full_disk_is_one_error_line_and_keeps_the_old_movie(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    full_song(tmp_path)
    first = invoke(tmp_path, "movie", "song", "--codec", "mjpeg", "--seed", "0")
    assert first.exit_code == 0, first.output
    media = tmp_path / "media" / "song"
    kept = snapshot(media / "stories") | snapshot(media / "story")
    full_disk_ffmpeg(tmp_path, monkeypatch)
    failed = invoke(tmp_path, "movie", "song", "--codec", "mjpeg", "--seed", "5")
    line = one_error(failed)
    assert ".mov: ffmpeg failed (exit code 228): disk full (" in line
    assert snapshot(media / "stories") | snapshot(media / "story") == kept


# ---------------------------------------------------------------- story files


OLD_STORY = (
    "\ufeff,path_section,section,scene_from,c1,c2,reversed,input_image_folder\n"
    "0,1,1,luna,luna-1001,luna-1002,False,G:\\renders\\song\\transition_images\\"
    "luna-1001 to luna-1002\n"
    "1,1,1,luna,luna-1002,sun-2001,False,G:\\renders\\song\\transition_images\\"
    "luna-1002 to sun-2001\n"
    "2,1,1,sun,sun-2001,sun-2002,True,G:\\renders\\song\\transition_images\\"
    "sun-2002 to sun-2001\n"
    "3,1,1,sun,sun-2002,star-3001,False,G:\\renders\\song\\transition_images\\moved away\n"
    "4,2,2,star,star-3001,star-3002,False,\n"
)


def test_sequence_plays_an_old_hand_edited_story(tmp_path: Path) -> None:
    media, steps = chain_song(tmp_path)
    old = media.song_media / "story" / "trans_sequence.csv"
    old.parent.mkdir(parents=True)
    old.write_bytes(OLD_STORY.replace("\n", "\r\n").encode("utf-8"))
    result = invoke(tmp_path, "movie", "song", "--codec", "mjpeg", "--sequence", str(old))
    assert result.exit_code == 0, result.output
    out = media.song_media / "stories" / "base"
    assert played(media, out / "base_combined.mov") == expected(steps)
    rows = read_story(out / "trans_sequence_base.csv", resolver(load(tmp_path)))
    assert story_pairs(rows) == CHAIN
    assert [Path(r.input_image_folder).name for r in rows] == [s[0] for s in steps]
    assert old.read_bytes() == OLD_STORY.replace("\n", "\r\n").encode("utf-8")  # input kept
    assert not (old.parent / "trans_sequence.before-sdmorph.csv").exists()


@pytest.mark.slow
def test_old_story_under_the_default_name_is_refused(tmp_path: Path) -> None:
    media, steps = chain_song(tmp_path)
    base = media.song_media / "stories" / "base"
    old = base / "trans_sequence_base.csv"
    base.mkdir(parents=True)
    old.write_bytes(OLD_STORY.encode("utf-8"))
    (base / "base_combined.mov").write_bytes(b"the old scripts' movie")
    before, paths = snapshot(media.song_media), set(media.song_media.rglob("*"))
    refused = invoke(tmp_path, "movie", "song", "--codec", "mjpeg")
    line = one_error(refused)
    assert str(old) in line and "old scripts" in line
    assert "-o NAME" in line and f"--sequence {old} -o NAME" in line
    assert snapshot(media.song_media) == before
    assert set(media.song_media.rglob("*")) == paths  # nothing new either
    # Another name is fine, and a story sdmorph wrote is replaced as often as asked.
    for _ in range(2):
        ok = invoke(tmp_path, "movie", "song", "--codec", "mjpeg", "-o", "new")
        assert ok.exit_code == 0, ok.output
    assert written_by_sdmorph(media.song_media / "stories/new/trans_sequence_new.csv")
    assert snapshot(base) == {p: data for p, data in before.items() if base in p.parents}


def test_old_story_folder_is_never_written_into(tmp_path: Path) -> None:
    media, steps = chain_song(tmp_path)
    old = media.song_media / "stories" / "old" / "trans_sequence_old.csv"
    old.parent.mkdir(parents=True)
    data = OLD_STORY.replace("\n", "\r\n").encode("utf-8")
    old.write_bytes(data)
    (old.parent / "old_combined.mov").write_bytes(b"the old scripts' movie")
    before = snapshot(old.parent)
    # Not even when playing its own story under its own name: its movies would be replaced.
    refused = invoke(tmp_path, "movie", "song", "--codec", "mjpeg", "--sequence", str(old),
                     "-o", "old")
    assert "-o NAME" in one_error(refused)
    played_ok = invoke(tmp_path, "movie", "song", "--codec", "mjpeg", "--sequence", str(old),
                       "-o", "replayed")
    assert played_ok.exit_code == 0, played_ok.output
    assert played(media, media.song_media / "stories/replayed/replayed_combined.mov") == \
        expected(steps)
    assert snapshot(old.parent) == before
    latest = media.song_media / "story" / "trans_sequence.csv"
    assert story_pairs(read_story(latest, resolver(load(tmp_path)))) == CHAIN


def test_story_folder_with_only_old_movies_or_an_empty_file_is_refused(tmp_path: Path) -> None:
    media, _ = chain_song(tmp_path)
    movies = media.song_media / "stories" / "movies"
    (movies / "sections").mkdir(parents=True)
    (movies / "movies_combined.mov").write_bytes(b"old")
    (movies / "sections" / "section_3.mov").write_bytes(b"old")
    empty = media.song_media / "stories" / "empty" / "trans_sequence_empty.csv"
    empty.parent.mkdir(parents=True)
    empty.write_bytes(b"")
    before = snapshot(media.song_media / "stories")
    for name in ("movies", "empty"):
        line = one_error(invoke(tmp_path, "movie", "song", "--codec", "mjpeg", "-o", name))
        assert "-o NAME" in line and "--sequence" not in line  # nothing there to play
    assert snapshot(media.song_media / "stories") == before


@pytest.mark.slow
def test_movie_killed_before_its_story_file_resumes(tmp_path: Path) -> None:
    media, steps = chain_song(tmp_path)
    assert invoke(tmp_path, "movie", "song", "--codec", "mjpeg").exit_code == 0
    base = media.song_media / "stories" / "base"
    (base / "trans_sequence_base.csv").unlink()  # as if killed between the movies and the CSV
    again = invoke(tmp_path, "movie", "song", "--codec", "mjpeg")
    assert again.exit_code == 0, again.output
    assert written_by_sdmorph(base / "trans_sequence_base.csv")
    assert played(media, base / "base_combined.mov") == expected(steps)


def test_hand_made_latest_story_is_kept_before_it_is_replaced(tmp_path: Path) -> None:
    media, _ = chain_song(tmp_path)
    latest = media.song_media / "story" / "trans_sequence.csv"
    backup = latest.with_name("trans_sequence.before-sdmorph.csv")
    latest.parent.mkdir(parents=True)
    original = OLD_STORY.replace("\n", "\r\n").encode("utf-8")
    latest.write_bytes(original)
    first = invoke(tmp_path, "movie", "song", "--codec", "mjpeg")
    assert first.exit_code == 0, first.output
    assert backup.read_bytes() == original
    assert "kept it as trans_sequence.before-sdmorph.csv" in first.stdout
    assert written_by_sdmorph(latest)
    again = invoke(tmp_path, "movie", "song", "--codec", "mjpeg", "-o", "again")
    assert again.exit_code == 0, again.output
    assert "before-sdmorph" not in again.stdout  # sdmorph's own copy is simply replaced
    assert backup.read_bytes() == original
    assert not [p for p in latest.parent.iterdir() if ".sdmorph-tmp" in p.name]


@pytest.mark.slow
@pytest.mark.parametrize("sections", [(1, 1), (1, 2)])
def test_cut_keeps_the_first_frame_after_it(tmp_path: Path, sections: tuple[int, int]) -> None:
    # luna-1003 -> luna-1001 (backwards) and back, then a cut to sun-2001 -> sun-2003 and back.
    write_song(tmp_path, sheet=SHEET)
    media = Media(tmp_path)
    a, b = media.sdmorph(L0, L2).name, media.sdmorph(S0, S2).name
    steps = [(a, True), (a, False), (b, False), (b, True)]
    story = tmp_path / "cut.csv"
    first, second = sections
    story.write_text(
        ",section,c1,c2,reversed\n"
        f"0,{first},luna-1003,luna-1001,True\n1,{first},luna-1001,luna-1003,False\n"
        f"2,{second},sun-2001,sun-2003,False\n3,{second},sun-2003,sun-2001,True\n",
        encoding="utf-8")
    result = invoke(tmp_path, "movie", "song", "--codec", "mjpeg", "--sequence", str(story),
                    "--hold", "0.1", "--fps", "10", "-o", "cut")
    assert result.exit_code == 0, result.output
    assert "row 4" in result.stderr and "cuts there" in result.stderr
    out = media.song_media / "stories" / "cut"
    frames = played(media, out / "cut_combined.mov")
    assert frames == expected(steps, hold=1, cuts=(2,))
    assert len(frames) == 14 + 6  # A3 A2 A1 A0 A1 A2 A3 | B0 B1 B2 B3 B2 B1 B0, 6 keyframes held
    if first == second:
        assert played(media, out / "sections" / "section_1.mov") == frames
    else:
        assert played(media, out / "sections" / "section_1.mov") == expected(steps[:2], 1)
        assert played(media, out / "sections" / "section_2.mov") == expected(steps[2:], 1)
    rows = read_story(out / "trans_sequence_cut.csv", resolver(load(tmp_path)))
    for row, step in zip(rows, steps, strict=True):
        assert row.first_frame is not None and row.last_frame is not None
        assert frames[row.first_frame : row.last_frame + 1] == segment_play(*step, hold=1)
    assert rows[-1].last_frame == len(frames) - 1


@pytest.mark.parametrize(("edit", "message"), [
    (("luna-1002,sun-2001,False,", "luna-1002,sun-2002,False,"), "row 3"),
    (("sun-2002,True,", "sun-2002,False,"), "set reversed to True"),
    (("4,2,2,star", "4,1,1,star"), "section"),
])
def test_sequence_errors_name_the_row(tmp_path: Path, edit: tuple[str, str],
                                      message: str) -> None:
    chain_song(tmp_path)
    story = tmp_path / "edited.csv"
    text = OLD_STORY.replace(*edit)
    if edit[0].startswith("4,2"):  # section 1 coming back after section 2
        text += "5,2,2,star,star-3002,star-3001,True,\n5,1,1,x,luna-1001,luna-1002,False,\n"
    story.write_text(text, encoding="utf-8")
    result = invoke(tmp_path, "movie", "song", "--codec", "mjpeg", "--sequence", str(story))
    assert result.exit_code == 2, result.output
    assert "edited.csv" in result.stderr and message in result.stderr
    assert not (tmp_path / "media" / "song" / "stories").exists()


@pytest.mark.slow
def test_from_plan_plays_the_planned_path(tmp_path: Path) -> None:
    full_song(tmp_path)
    planned = invoke(tmp_path, "transitions", "song", "--plan-only", "--seed", "3")
    assert planned.exit_code == 0, planned.output
    song = load(tmp_path)
    plan = read_story(tmp_path / "media/song/story/trans_sequence_gen.csv", resolver(song))
    result = invoke(tmp_path, "movie", "song", "--from-plan", "--codec", "mjpeg", "-o", "gen")
    assert result.exit_code == 0, result.output
    story = tmp_path / "media/song/stories/gen/trans_sequence_gen.csv"
    assert story_pairs(read_story(story, resolver(song))) == story_pairs(plan)
    assert probe(story.parent / "gen_combined.mov").frames == len(plan) * (STEPS - 1) + 1


@pytest.mark.slow
def test_second_run_of_a_story_waits_for_the_first(tmp_path: Path) -> None:
    media, steps = chain_song(tmp_path)
    lock = media.song_media / "stories" / "base" / LOCK_NAME
    held, release = threading.Event(), threading.Event()

    def other_run() -> None:
        with try_locked(lock) as got:
            assert got
            held.set()
            release.wait(10)

    thread = threading.Thread(target=other_run)
    thread.start()
    assert held.wait(60)
    movie = lock.parent / "base_combined.mov"
    seen_at_release: list[bool] = []

    def let_go() -> None:
        seen_at_release.append(movie.exists())
        release.set()

    # A lower bound, so a busy machine cannot break it: the clock starts before the timer,
    # and a run that waits cannot end before the timer lets the other run go.
    started = time.monotonic()
    timer = threading.Timer(0.5, let_go)
    timer.start()
    result = invoke(tmp_path, "movie", "song", "--codec", "mjpeg")
    thread.join()
    assert result.exit_code == 0, result.output
    assert "waiting for another movie run" in result.stdout
    assert time.monotonic() - started >= 0.5
    assert seen_at_release == [False]
    assert played(media, movie) == expected(steps)


@pytest.mark.slow
def test_unreachable_scene_names_the_transitions_set_to_n(tmp_path: Path) -> None:
    write_song(tmp_path, sheet="name,prompt,seeds\nluna,a moon,1001\nsun,a sun,2001\n",
               scenes=",scene,duration,section\n0,luna,0,1\n1,sun,0,1\n")
    assert invoke(tmp_path, "transitions", "song", "--plan-only").exit_code == 0
    table = tmp_path / "media/song/transition_meta/interscene_transitions.csv"
    table.write_text(table.read_text().replace(",y,", ",n,"))
    rendered = invoke(tmp_path, "transitions", "song", "--render-only")
    assert rendered.exit_code == 0, rendered.output
    result = invoke(tmp_path, "movie", "song", "--codec", "mjpeg")
    assert result.exit_code == 2, result.output
    assert "'luna-1001 to sun-2001' set to compute = n in transition_meta" in result.stderr
    assert "Traceback" not in result.output
