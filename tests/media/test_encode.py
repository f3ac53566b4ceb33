"""Story encoding with the real ffmpeg: frames, order, sections, audio, clips, failures."""

from __future__ import annotations

import math
import struct
import subprocess
import wave
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import psutil
import pytest
from PIL import Image

from fakes import full_disk_ffmpeg
from sdmorph.core.errors import MovieError
from sdmorph.core.timeline import EncodeOptions, Segment
from sdmorph.formats.clips import read_clips_json
from sdmorph.media.encode import encode_story as encode
from sdmorph.media.encode import story_timeline
from sdmorph.media.ffmpeg import probe, song_duration

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
LEVELS = (0, 128, 255)
PALETTE = np.array([(r, g, b) for r in LEVELS for g in LEVELS for b in LEVELS], dtype=float)
SIZE = (33, 25)  # odd on purpose: h264 must pad it, mjpeg must not


# ---------------------------------------------------------------- helpers


def write_frames(folder: Path, colours: list[int], size: tuple[int, int] = SIZE) -> list[Path]:
    """A transition folder whose frame k is a solid palette colour `colours[k]`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, colour in enumerate(colours):
        path = folder / f"frame{k:06d}.png"
        Image.new("RGB", size, tuple(int(v) for v in PALETTE[colour])).save(path)
        paths.append(path)
    return paths


def story(root: Path, sections: tuple[int, int] = (2, 5),
          size: tuple[int, int] = SIZE) -> list[Segment]:
    """a->b and b->c in the first section, then c->d played from a folder rendered d->c."""
    first, second = sections
    ab = write_frames(root / "a-1 to b-1", [0, 1, 2, 3], size)
    bc = write_frames(root / "b-1 to c-1", [4, 5, 6], size)
    dc = write_frames(root / "d-1 to c-1", [7, 8, 9, 10], size)
    return [
        Segment("a-1 to b-1", tuple(ab), first),
        Segment("b-1 to c-1", tuple(bc), first),
        Segment("c-1 to d-1", tuple(reversed(dc)), second),
    ]


# What the story above must play: every meeting frame once, the reversed folder backwards.
COMBINED = [0, 1, 2, 3, 5, 6, 9, 8, 7]
FIRST_SECTION = [0, 1, 2, 3, 5, 6]
SECOND_SECTION = [10, 9, 8, 7]


def colours(path: Path, blends: bool = False) -> list[int]:
    """Decode a video and name each frame by its nearest palette colour (centre pixels).

    Unless `blends` (interpolated in-between frames), every frame must be a palette colour.
    """
    info = probe(path)
    raw = subprocess.run(
        [FFMPEG, "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0", "-f", "rawvideo",
         "-pix_fmt", "rgb24", "-"],
        capture_output=True, check=True,
    ).stdout
    w, h = info.width, info.height
    frames = np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3).astype(float)
    centre = frames[:, h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].reshape(len(frames), -1, 3)
    dist = ((centre.mean(axis=1)[:, None, :] - PALETTE[None]) ** 2).sum(axis=-1)
    assert blends or dist.min(axis=1).max() < 3 * 20**2, "a frame matches no palette colour"
    return dist.argmin(axis=1).tolist()


def write_wav(path: Path, parts: list[tuple[float, bool]], rate: int = 8000,
              channels: int = 1) -> Path:
    """A WAV of consecutive (seconds, loud) parts: a 440 Hz tone or silence."""
    samples = []
    for seconds, loud in parts:
        for i in range(round(seconds * rate)):
            value = int(12000 * math.sin(2 * math.pi * 440 * i / rate)) if loud else 0
            samples.append(struct.pack("<h", value) * channels)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(samples))
    return path


def loudness(path: Path, start: float, end: float, rate: int = 8000) -> float:
    """RMS of a video's audio between two times."""
    raw = subprocess.run(
        [FFMPEG, "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "s16le",
         "-ac", "1", "-ar", str(rate), "-"],
        capture_output=True, check=True,
    ).stdout
    samples = np.frombuffer(raw, np.int16).astype(float)
    window = samples[int(start * rate) : int(end * rate)]
    assert len(window) > 0
    return float(np.sqrt((window**2).mean()))


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if "sdmorph-tmp" in p.name]


# ---------------------------------------------------------------- the movies


@pytest.mark.slow
def test_story_plays_every_frame_once_in_order(tmp_path: Path) -> None:
    segments = story(tmp_path / "frames")
    out = tmp_path / "out"
    (out / "sections").mkdir(parents=True)
    (out / "sections" / "section_2.mov").write_bytes(b"an older movie")
    seen: list[int] = []

    report = encode(segments, out, "base", EncodeOptions(), progress=seen.append)

    assert report.frames == len(COMBINED) and report.fps == 10.0 and report.hold_frames == 0
    assert seen == list(range(1, len(COMBINED) + 1))
    expected = {
        "base_combined": COMBINED,
        "sections/section_2": FIRST_SECTION,
        "sections/section_5": SECOND_SECTION,
    }
    for stem, frames in expected.items():
        for ext, codec, size in ((".mov", "mjpeg", (33, 25)), (".mp4", "h264", (34, 26))):
            path = out / f"{stem}{ext}"
            info = probe(path)
            assert colours(path) == frames, path
            assert (info.codec, info.width, info.height) == (codec, *size)
            assert info.duration == pytest.approx(len(frames) / 10, abs=0.01)
            assert not info.has_audio
    assert len(report.videos) == 6
    for video in report.videos:
        assert video.path.stat().st_size == video.size_bytes > 0
    assert temp_files(out) == []
    assert sorted(p.name for p in (out / "sections").iterdir()) == [
        "section_2.mov", "section_2.mp4", "section_5.mov", "section_5.mp4"]


def test_holds_pause_on_every_keyframe(tmp_path: Path) -> None:
    segments = story(tmp_path / "frames")
    out = tmp_path / "out"

    report = encode(segments, out, "held", EncodeOptions(codecs=("mjpeg",), hold=0.2))

    assert report.hold_frames == 2
    assert colours(out / "held_combined.mov") == [0, 0, 0, 1, 2, 3, 3, 3, 5, 6, 6, 6, 9, 8, 7, 7, 7]
    assert colours(out / "sections" / "section_2.mov") == [0, 0, 0, 1, 2, 3, 3, 3, 5, 6, 6, 6]
    assert colours(out / "sections" / "section_5.mov") == [10, 10, 10, 9, 8, 7, 7, 7]
    assert report.frames == 17
    assert probe(out / "held_combined.mov").duration == pytest.approx(1.7, abs=0.01)


@pytest.mark.slow
def test_smooth_interpolates_to_the_target_rate(tmp_path: Path) -> None:
    segments = story(tmp_path / "frames", size=(48, 40))  # minterpolate needs 32x32 or more
    out = tmp_path / "out"

    report = encode(segments, out, "smooth", EncodeOptions(smooth=25))

    assert report.out_fps == 25.0
    for ext in (".mov", ".mp4"):
        info = probe(out / f"smooth_combined{ext}")
        assert info.frames == round(len(COMBINED) * 2.5)
        assert info.duration == pytest.approx(len(COMBINED) / 10, abs=1 / 25 + 0.001)
        played = colours(out / f"smooth_combined{ext}", blends=True)
        # The story's ends survive interpolation: it starts on a and rests on d.
        assert played[0] == 0 and played[-1] == 7
    assert probe(out / "sections" / "section_5.mov").frames == 10


def test_smooth_refuses_frames_too_small(tmp_path: Path) -> None:
    with pytest.raises(MovieError, match="too small to smooth"):
        encode(story(tmp_path / "frames"), tmp_path / "out", "s", EncodeOptions(smooth=25))
    assert temp_files(tmp_path / "out") == []


def test_plan_counts_frames_and_section_starts(tmp_path: Path) -> None:
    def seg(n: int, section: int, a: str, b: str) -> Segment:
        return Segment(f"{a} to {b}", tuple(tmp_path / f"frame{k:06d}.png" for k in range(n)),
                       section)

    segments = [seg(5, 1, "a", "b"), seg(4, 1, "b", "c"), seg(6, 2, "c", "d"),
                seg(3, 3, "d", "e"), seg(2, 3, "e", "f")]
    plan = story_timeline(segments, EncodeOptions(fps=10, hold=0.3))

    assert plan.hold_frames == 3
    assert plan.frames == (5 + 4 + 6 + 3 + 2) - 4 + 3 * 6
    assert [s.section for s in plan.sections] == [1, 2, 3]
    assert [s.frames for s in plan.sections] == [8 + 9, 6 + 6, 4 + 9]
    # Each section opens on the previous one's last keyframe, held copies included.
    assert [s.start for s in plan.sections] == [0, 13, 21]
    last = plan.sections[-1]
    assert last.start + last.frames == plan.frames
    # The story jumps from c to x: d-to-e's section opens on its own first frame.
    segments[3] = seg(3, 3, "x", "e")
    cut = story_timeline(segments, EncodeOptions(fps=10, hold=0.3))
    assert cut.joins == (False, True, True, False, True)
    assert cut.frames == plan.frames + 1 + 3
    assert [s.start for s in cut.sections] == [0, 13, 25]
    assert cut.sections[-1].frames == 13 and cut.ranges[3] == (25, 33)


@pytest.mark.slow
@pytest.mark.parametrize("sections", [(1, 1, 1), (1, 2, 2)])
def test_cut_plays_both_end_frames(tmp_path: Path, sections: tuple[int, int, int]) -> None:
    # a->b, then a cut to c->d and back: c's first frame must play, in every video.
    ab = write_frames(tmp_path / "frames" / "a-1 to b-1", [0, 1, 2, 3])
    cd = write_frames(tmp_path / "frames" / "c-1 to d-1", [4, 5, 6])
    segments = [Segment("a-1 to b-1", tuple(ab), sections[0]),
                Segment("c-1 to d-1", tuple(cd), sections[1]),
                Segment("d-1 to c-1", tuple(reversed(cd)), sections[2])]
    out = tmp_path / "out"

    report = encode(segments, out, "cut", EncodeOptions(codecs=("mjpeg",), hold=0.1))

    first, second = [0, 0, 1, 2, 3, 3], [4, 4, 5, 6, 6, 5, 4, 4]
    assert colours(out / "cut_combined.mov") == first + second
    assert report.frames == len(first + second)
    plan = story_timeline(segments, EncodeOptions(hold=0.1))
    assert plan.ranges == ((0, 5), (6, 10), (9, 13))
    if sections[1] == 1:
        assert colours(out / "sections" / "section_1.mov") == first + second
    else:
        assert colours(out / "sections" / "section_1.mov") == first
        assert colours(out / "sections" / "section_2.mov") == second
        assert [s.start for s in plan.sections] == [0, 6]  # its audio starts there too


# ---------------------------------------------------------------- audio


@pytest.mark.slow
def test_audio_is_sliced_per_section_and_cut_to_the_video(tmp_path: Path) -> None:
    # Loud until 0.5 s, silent to 0.7 s, loud again to 2 s: longer than the 0.9 s story.
    song = write_wav(tmp_path / "song.wav", [(0.5, True), (0.2, False), (1.3, True)])
    out = tmp_path / "out"

    encode(story(tmp_path / "frames"), out, "base", EncodeOptions(audio=song))

    for ext in (".mov", ".mp4"):
        combined = probe(out / f"base_combined{ext}")
        assert combined.audio_codec == "aac"
        assert combined.audio_duration == pytest.approx(0.9, abs=0.1)
        second = out / "sections" / f"section_5{ext}"
        assert probe(second).audio_duration == pytest.approx(0.4, abs=0.1)
        # Section 5 starts at 0.5 s of the song: first silence, then the tone again.
        assert loudness(second, 0.03, 0.15) < 300
        assert loudness(second, 0.27, 0.37) > 3000
        assert loudness(out / "sections" / f"section_2{ext}", 0.05, 0.4) > 3000


def test_short_audio_is_padded_with_silence(tmp_path: Path) -> None:
    song = write_wav(tmp_path / "short.wav", [(0.3, True)])
    out = tmp_path / "out"

    encode(story(tmp_path / "frames"), out, "base", EncodeOptions(codecs=("h264",), audio=song))

    combined = out / "base_combined.mp4"
    assert probe(combined).audio_duration == pytest.approx(0.9, abs=0.1)
    assert loudness(combined, 0.05, 0.25) > 3000
    assert loudness(combined, 0.4, 0.85) < 300
    assert probe(out / "sections" / "section_5.mp4").has_audio


@pytest.mark.slow
def test_fit_audio_makes_the_video_last_as_long_as_the_song(tmp_path: Path) -> None:
    song = write_wav(tmp_path / "song.wav", [(1.37, True)])
    out = tmp_path / "out"
    duration = song_duration(song)

    report = encode(story(tmp_path / "frames"), out, "fit",
                    EncodeOptions(audio=song, fit_audio=True, hold=0.1))

    assert duration == pytest.approx(1.37, abs=0.01)
    assert report.hold_frames == 1 and report.frames == len(COMBINED) + 4
    assert report.fps == pytest.approx(report.frames / duration, rel=1e-3)
    for ext in (".mov", ".mp4"):
        info = probe(out / f"fit_combined{ext}")
        assert info.frames == report.frames
        assert info.duration == pytest.approx(duration, abs=1 / report.fps)
        assert info.audio_duration == pytest.approx(duration, abs=1 / report.fps)


@pytest.mark.parametrize("kind", ["missing", "not audio"])
def test_unusable_audio_is_refused_before_encoding(tmp_path: Path, kind: str) -> None:
    song = tmp_path / "song.wav"
    if kind == "not audio":
        Image.new("RGB", (8, 8)).save(song, format="PNG")
    out = tmp_path / "out"

    with pytest.raises(MovieError, match="song.wav"):
        encode(story(tmp_path / "frames"), out, "base", EncodeOptions(audio=song))
    assert not out.exists()


# ---------------------------------------------------------------- clips


@pytest.mark.slow
def test_clips_and_their_index(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    ab = tuple(write_frames(frames / "a-1 to b-1", [0, 1, 2]))
    bc = tuple(write_frames(frames / "b-1 to c-1", [4, 5, 6, 7]))
    segments = [
        Segment("a-1 to b-1", ab, 1, scene_from="dawn", scene_to="noon"),
        Segment("b-1 to c-1", bc, 1, scene_from="noon", scene_to="noon"),
        Segment("c-1 to b-1", tuple(reversed(bc)), 3, scene_from="noon", scene_to="noon"),
        Segment("b-1 to c-1", bc, 3),  # played a second time: one clip
    ]
    out = tmp_path / "out"

    report = encode(segments, out, "vj", EncodeOptions(clips=True))

    index = read_clips_json(out / "clips.json")
    assert report.clips_json == out / "clips.json"
    by_name = {clip.name: clip for clip in index.clips}
    assert list(by_name) == ["a-1 to b-1", "b-1 to c-1", "c-1 to b-1"]
    expected = {"a-1 to b-1": [0, 1, 2], "b-1 to c-1": [4, 5, 6, 7], "c-1 to b-1": [7, 6, 5, 4]}
    for name, played in expected.items():
        clip = by_name[name]
        assert clip.frames == len(played)
        assert set(clip.files) == {"mjpeg", "h264"}
        for file in clip.files.values():
            assert colours(out / file) == played
    assert (by_name["c-1 to b-1"].from_, by_name["c-1 to b-1"].to) == ("c-1", "b-1")
    assert [(c.scene_from, c.scene_to) for c in index.clips] == [
        ("dawn", "noon"), ("noon", "noon"), ("noon", "noon")]
    raw = (out / "clips.json").read_text(encoding="utf-8")
    assert '"scene_from": "dawn"' in raw and '"scene_to": "noon"' in raw
    assert by_name["b-1 to c-1"].indices == [1, 3] and by_name["b-1 to c-1"].index == 1
    assert by_name["c-1 to b-1"].section == 3

    def follows(name: str) -> set[tuple[str, bool]]:
        return {(n.clip, n.reversed) for n in by_name[name].next}

    assert follows("a-1 to b-1") == {("b-1 to c-1", False), ("a-1 to b-1", True),
                                     ("c-1 to b-1", True)}
    assert follows("b-1 to c-1") == {("c-1 to b-1", False), ("b-1 to c-1", True)}
    assert follows("c-1 to b-1") == follows("a-1 to b-1")
    assert len([v for v in report.videos if v.kind == "clip"]) == 6


# ---------------------------------------------------------------- failures


def old_movies(out: Path) -> dict[Path, bytes]:
    files = {out / "base_combined.mov": b"old combined", out / "sections" / "section_2.mov":
             b"old section"}
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def assert_untouched(out: Path, files: dict[Path, bytes]) -> None:
    for path, data in files.items():
        assert path.read_bytes() == data
    assert temp_files(out) == []
    assert sorted(p for p in out.rglob("*") if p.is_file()) == sorted(files)


def test_truncated_frame_stops_the_movie_and_keeps_old_ones(tmp_path: Path) -> None:
    segments = story(tmp_path / "frames")
    broken = segments[2].frames[1]
    broken.write_bytes(broken.read_bytes()[:40])
    out = tmp_path / "out"
    files = old_movies(out)

    with pytest.raises(MovieError, match="does not decode") as caught:
        encode(segments, out, "base", EncodeOptions(clips=True))

    assert str(broken) in str(caught.value)
    assert_untouched(out, files)


def test_frame_of_another_size_is_refused(tmp_path: Path) -> None:
    segments = story(tmp_path / "frames")
    odd = segments[1].frames[2]
    Image.new("RGB", (32, 25)).save(odd)

    with pytest.raises(MovieError, match="32x25") as caught:
        encode(segments, tmp_path / "out", "base", EncodeOptions(codecs=("mjpeg",)))
    assert str(odd) in str(caught.value)
    assert temp_files(tmp_path / "out") == []


def test_ffmpeg_failure_reports_its_words_and_keeps_old_movies(tmp_path: Path) -> None:
    # AAC cannot encode 9 channels: a real ffmpeg failure, found once frames are flowing.
    song = write_wav(tmp_path / "nine.wav", [(1.0, True)], channels=9)
    out = tmp_path / "out"
    files = old_movies(out)

    with pytest.raises(MovieError, match="ffmpeg failed") as caught:
        encode(story(tmp_path / "frames"), out, "base", EncodeOptions(audio=song))

    message = str(caught.value)
    assert "\n" not in message and "channel" in message  # the cause, not the aftermath
    assert message.startswith(f"{out / 'base_combined.mov'}: ffmpeg failed (exit code ")
    assert_untouched(out, files)


def test_full_disk_is_one_plain_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    files = old_movies(out)
    full_disk_ffmpeg(tmp_path, monkeypatch)

    with pytest.raises(MovieError) as caught:
        encode(story(tmp_path / "frames"), out, "base", EncodeOptions(codecs=("mjpeg",)))

    path, sep, said = str(caught.value).partition(": ")
    assert sep and Path(path).parent in (out, out / "sections")  # whichever video failed first
    assert said == ("ffmpeg failed (exit code 228): disk full (Error writing trailer: No space "
                    "left on device): free some space and run again")
    assert_untouched(out, files)


def test_unwritable_output_is_a_movie_error(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "sections").write_text("a file where the sections folder should be")

    with pytest.raises(MovieError, match="cannot write"):
        encode(story(tmp_path / "frames"), out, "base", EncodeOptions(codecs=("mjpeg",)))
    assert temp_files(out) == []
    assert not (out / "base_combined.mov").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"codecs": ("vp9",)}, "unknown codec vp9"),
        ({"codecs": ()}, "no codec"),
        ({"fps": 0}, "fps must be"),
        ({"hold": -1}, "hold must be"),
        ({"smooth": -5}, "smooth must be"),
        ({"fit_audio": True}, "fit_audio needs"),
        ({"quality": 40, "codecs": ("h264", "mjpeg")}, "40 is out of range for mjpeg"),
        ({"quality": 60, "codecs": ("h264",)}, "60 is out of range for h264"),
    ],
)
def test_bad_options_are_refused(tmp_path: Path, change: dict, message: str) -> None:
    segments = story(tmp_path / "frames")
    with pytest.raises(MovieError, match=message):
        story_timeline(segments, EncodeOptions(**change))


def test_bad_stories_are_refused(tmp_path: Path) -> None:
    segments = story(tmp_path / "frames")
    duplicate = segments[0].frames[0].with_name("frame000001 (1).png")
    cases = {
        "not a frame": [Segment("a to b", (segments[0].frames[0], duplicate), 1)],
        "at least its two end frames": [Segment("a to b", segments[0].frames[:1], 1)],
        "returns to section 2": [segments[0], segments[2], segments[1]],
        "no transitions": [],
    }
    for message, bad in cases.items():
        with pytest.raises(MovieError, match=message):
            story_timeline(bad, EncodeOptions())


def test_probe_refuses_what_is_not_a_video(tmp_path: Path) -> None:
    text = tmp_path / "notes.mov"
    text.write_text("not a movie")
    with pytest.raises(MovieError, match="not a readable video"):
        probe(text)
    with pytest.raises(MovieError, match="no such video"):
        probe(tmp_path / "missing.mov")


@pytest.mark.slow
def test_memory_stays_flat_while_streaming(tmp_path: Path) -> None:
    # 300 frames of 128x128 would hold ~15 MB if they were kept; streaming holds one.
    colours_ = [k % 27 for k in range(150)]
    first = write_frames(tmp_path / "a to b", colours_, (128, 128))
    second = write_frames(tmp_path / "b to c", colours_[::-1], (128, 128))
    segments = [Segment("a to b", tuple(first), 1), Segment("b to c", tuple(second), 1)]
    process = psutil.Process()
    opts = EncodeOptions(codecs=("mjpeg",))
    encode(segments[:1], tmp_path / "warm", "warm", opts)
    baseline = process.memory_info().rss
    peak = [baseline]

    def sample(written: int) -> None:
        if written % 20 == 0:
            peak.append(process.memory_info().rss)

    report = encode(segments, tmp_path / "out", "long", opts, progress=sample)

    assert report.frames == 299
    assert max(peak) - baseline < 6 * 2**20
