"""A song made with the old scripts works as it is: legacy keyframes, folders and stories."""

from __future__ import annotations

import itertools
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from sdmorph.cli.app import app
from sdmorph.media.ffmpeg import probe
from songs import SETTINGS, env_for, write_song

runner = CliRunner()
SEEDS = {"luna": (44401234, 5551), "sun": (1234567, 77), "cloud goddess": (99990001, 31)}
SHEET = "name,prompt,seeds\n" + "".join(
    f'{name},a {name},"{", ".join(map(str, seeds))}"\n' for name, seeds in SEEDS.items())
SCENES = ",scene,duration,section,start,avoid\n0,luna,1,1,,\n1,sun,0,1,,\n2,cloud goddess,1,2,,\n"
FRAMES = 4


def invoke(root: Path, *args: str):
    return runner.invoke(app, list(args), env=env_for(root))


def legacy_label(prompt: str, seed: int) -> str:
    return f"{prompt}-{str(seed)[:4]}"


def colour(folder: int, frame: int) -> tuple[int, int, int]:
    return (folder * 20 % 256, frame * 60, 255 - folder * 20 % 256)


def build_legacy_song(root: Path) -> dict[str, tuple[int, int]]:
    """Keyframes and one legacy folder per graph edge, colours encoding folder and frame."""
    write_song(root, sheet=SHEET, scenes=SCENES,
               settings={"default": {**SETTINGS["default"], "interpolation_steps": FRAMES}})
    media = root / "media" / "song"
    images = [(p, s) for p, seeds in SEEDS.items() for s in seeds]
    (media / "prompt_images").mkdir(parents=True)
    for prompt, seed in images:
        Image.new("RGB", (64, 64), (seed % 256, 0, 0)).save(
            media / "prompt_images" / f"{prompt}_{seed}.png")
    names = list(SEEDS)
    edges = [(a, b) for a, b in itertools.combinations(images, 2)
             if a[0] == b[0] or abs(names.index(a[0]) - names.index(b[0])) == 1]
    folders = {}
    for index, (a, b) in enumerate(edges):
        name = f"{legacy_label(*a)} to {legacy_label(*b)}"
        folder = media / "transition_images" / name
        folder.mkdir(parents=True)
        for frame in range(FRAMES):
            Image.new("RGB", (64, 64), colour(index, frame)).save(
                folder / f"frame{frame:06d}.png")
        folders[name] = (index, len(edges))
    junk = media / "transition_images" / "wrong_num_images"
    junk.mkdir()
    (junk / "frame000000.png").write_bytes(b"")
    return folders


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_transitions_render_nothing_when_legacy_covers_the_plan(tmp_path: Path) -> None:
    folders = build_legacy_song(tmp_path)
    images = tmp_path / "media/song/transition_images"
    keyframes = tmp_path / "media/song/prompt_images"
    before, keys_before = snapshot(images), snapshot(keyframes)
    result = invoke(tmp_path, "transitions", "song")
    assert result.exit_code == 0, result.output
    assert "0 frames rendered" in result.stdout and "legacy" in result.stdout
    assert snapshot(images) == before  # nothing written into (or beside) legacy folders
    assert snapshot(keyframes) == keys_before  # the old keyframes are used as they are
    assert len([p for p in images.iterdir() if not p.name.startswith(".")]) == len(folders) + 1


def test_movies_and_respun_stories_from_legacy_folders(tmp_path: Path) -> None:
    build_legacy_song(tmp_path)
    first = invoke(tmp_path, "movie", "song", "--codec", "mjpeg", "--no-audio")
    assert first.exit_code == 0, first.output
    respun = invoke(tmp_path, "movie", "song", "--seed", "5", "-o", "respin", "--codec", "mjpeg",
                    "--no-audio")
    assert respun.exit_code == 0, respun.output
    stories = tmp_path / "media/song/stories"
    base = (stories / "base/trans_sequence_base.csv").read_text()
    other = (stories / "respin/trans_sequence_respin.csv").read_text()
    assert base != other
    assert "44401234" in base or "44401234" in other  # full seeds, never cut
    info = probe(stories / "base/base_combined.mov")
    # 1 + 0 + 1 hops inside scenes plus 2 between them: 4 transitions of 4 frames, 3 shared.
    assert info.frames == 4 * FRAMES - 3


def test_hand_edited_old_story_file(tmp_path: Path) -> None:
    folders = build_legacy_song(tmp_path)
    story = tmp_path / "media/song/story/trans_sequence.csv"
    story.parent.mkdir(parents=True)
    backward = "luna-4440 to luna-5551"  # played luna-5551 -> luna-4440
    forward = "luna-4440 to sun-1234"
    assert forward in folders and backward in folders
    story.write_bytes(
        "\ufeff,path_section,section,scene_from,c1,c2,reversed,input_image_folder\r\n"
        f"0,1,1,luna,luna-5551,luna-4440,True,G:\\My Drive\\song\\transition_images\\{backward}\r\n"
        f"1,1,1,luna,luna-4440,sun-1234,False,G:\\My Drive\\song\\transition_images\\{forward}\r\n"
        .encode())
    original = story.read_bytes()
    result = invoke(tmp_path, "movie", "song", "--sequence", str(story), "-o", "edit",
                    "--codec", "mjpeg", "--no-audio")
    assert result.exit_code == 0, result.output
    assert story.read_bytes() == original
    import subprocess

    from sdmorph.media.ffmpeg import ffmpeg_exe

    movie = tmp_path / "media/song/stories/edit/edit_combined.mov"
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(movie), "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    size = 64 * 64 * 3
    frames = [raw[i : i + size] for i in range(0, len(raw), size)]
    assert len(frames) == 2 * FRAMES - 1
    centre = (32 * 64 + 32) * 3
    got = [tuple(frame[centre : centre + 3]) for frame in frames]
    i_fwd, i_back = folders[forward][0], folders[backward][0]
    want = [colour(i_back, f) for f in reversed(range(FRAMES))] + [
        colour(i_fwd, f) for f in range(1, FRAMES)]
    for g, w in zip(got, want, strict=True):
        assert max(abs(x - y) for x, y in zip(g, w, strict=True)) < 12, (got, want)


def test_status_and_adopt(tmp_path: Path) -> None:
    folders = build_legacy_song(tmp_path)
    broken = tmp_path / "media/song/transition_images" / next(iter(folders))
    (broken / "frame000002.png").write_bytes(b"\x89PNG\r\n\x1a\n cut")
    status = invoke(tmp_path, "status", "song")
    assert status.exit_code == 0, status.output
    assert "legacy" in status.stdout and "incomplete" in status.stdout
    assert "wrong_num_images" in status.stdout
    images = tmp_path / "media/song/transition_images"
    before = {k: v for k, v in snapshot(images).items() if not k.startswith(".")}
    adopt = invoke(tmp_path, "adopt", "song", "--write-manifests")
    assert adopt.exit_code == 0, adopt.output
    after = snapshot(images)
    for name, value in before.items():
        assert after[name] == value  # frames untouched
    manifests = [k for k in after if k.endswith("manifest.json")]
    assert len(manifests) == len(folders) - 1  # every complete legacy folder, not the broken one


@pytest.mark.slow
def test_undecodable_legacy_frame_is_incomplete_and_force_renders_anew(tmp_path: Path) -> None:
    import io

    import pandas as pd

    folders = build_legacy_song(tmp_path)
    media = tmp_path / "media/song"
    assert invoke(tmp_path, "transitions", "song", "--plan-only").exit_code == 0
    first = pd.read_csv(media / "transition_meta/intrascene_transitions.csv", dtype=str).iloc[0]
    a = (first["from_name"], int(first["from_seed"]))
    b = (first["to_name"], int(first["to_seed"]))
    forward, backward = (f"{legacy_label(*x)} to {legacy_label(*y)}" for x, y in ((a, b), (b, a)))
    name = forward if forward in folders else backward
    # Signature, IHDR and IEND intact, the pixel data zeroed: a damaged cloud download that
    # only decoding tells from a good frame.
    noise = bytes((i * 7919 + i // 3) % 251 for i in range(64 * 64 * 3))
    buffer = io.BytesIO()
    Image.frombytes("RGB", (64, 64), noise).save(buffer, format="PNG")
    data = buffer.getvalue()
    third = len(data) // 3
    broken = media / "transition_images" / name / "frame000002.png"
    broken.write_bytes(data[:third] + b"\0" * third + data[2 * third :])
    before = snapshot(media / "transition_images" / name)
    result = invoke(tmp_path, "transitions", "song")
    assert result.exit_code == 0, result.output
    assert "incomplete-legacy" in result.stdout
    assert "frame000002.png" in result.stderr and "--force" in result.stderr
    ours = media / "transition_images" / f"{first['from_name']}-{first['from_seed']} to " \
        f"{first['to_name']}-{first['to_seed']}"
    assert not ours.exists()
    forced = invoke(tmp_path, "transitions", "song", "--force")
    assert forced.exit_code == 0, forced.output
    assert (ours / "manifest.json").is_file()
    assert len(list(ours.glob("frame*.png"))) == FRAMES
    assert snapshot(media / "transition_images" / name) == before  # legacy work untouched


def test_adopt_without_a_plan_shows_what_transitions_would_plan(tmp_path: Path) -> None:
    folders = build_legacy_song(tmp_path)
    media = tmp_path / "media/song"
    covered = invoke(tmp_path, "adopt", "song")
    assert covered.exit_code == 0, covered.output
    assert "no plan yet" in covered.stdout and "nothing: every planned" in covered.stdout
    for name in folders:
        shutil.rmtree(media / "transition_images" / name)
    bare = invoke(tmp_path, "adopt", "song")
    assert bare.exit_code == 0, bare.output
    assert re.search(r"would render next \([1-9]\d* transitions", bare.stdout), bare.stdout
    assert "no folder" in bare.stdout
    assert not (media / "transition_meta").exists()  # adopt writes no plan
