"""`status` and `adopt`: every state of keyframes, planned transitions, folders and stories."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from sdmorph.cli.tables import adopt_tables, status_tables
from sdmorph.core.ids import ImageId, transition_name
from sdmorph.core.paths import plan_paths
from sdmorph.formats.legacy import frame_name
from sdmorph.formats.recipe import recipe_key
from sdmorph.formats.song import Song, load_song
from sdmorph.media.store import (
    MANIFEST_NAME,
    TransitionManifest,
    TransitionStore,
)
from sdmorph.stages.adopt import adopt_report, write_manifests
from sdmorph.stages.status import song_status
from songs import SETTINGS, SHEET, write_song

# `moon` makes the 4-digit prefix 5555 ambiguous in legacy folder names.
SHEET_MOON = SHEET + 'moon,"a moon, pale",55551 55552,7.5\n'
L1, L2, L3 = ImageId("luna", 1001), ImageId("luna", 1002), ImageId("luna", 1003)
S1, S2, S3 = ImageId("sun", 2001), ImageId("sun", 2002), ImageId("sun", 2003)
T1, T2, T3 = ImageId("star", 3001), ImageId("star", 3002), ImageId("star", 3003)
FRAMES = 4  # interpolation_steps of tests/songs.py
PROMPTS = {"luna": "a moon, glowing", "sun": "a sun, burning", "star": "a star",
           "moon": "a moon, pale"}
GUIDANCE = {"luna": 7.5, "sun": 7.5, "star": 8.0, "moon": 7.5}
INTRA_HEAD = ",from_name,from_seed,to_name,to_seed,compute,duration,scene\n"
INTER_HEAD = ",from_name,from_seed,to_name,to_seed,compute,duration,scene_from,scene_to\n"


def png(size: tuple[int, int] = (8, 8), text: dict[str, object] | None = None,
        shade: int = 0) -> bytes:
    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, str(value))
    buf = io.BytesIO()
    Image.new("RGB", size, (shade % 256, 60, 120)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def load(meta: Path, media: Path, **kwargs: object) -> Song:
    return load_song(meta, media, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def song(tmp_path: Path) -> Song:
    return load(*write_song(tmp_path, sheet=SHEET_MOON))


def settings_recipe(**changes: object) -> dict[str, object]:
    """What `Renderer.settings()` records for the test song (tiny on the CPU)."""
    return {"model": "tiny-random", "width": 64, "height": 64, "steps": 3,
            "scheduler": "PNDMScheduler", "noise": "cpu", "dtype": "float32", **changes}


def image_recipe(image: ImageId) -> dict[str, object]:
    return {"prompt": PROMPTS[image.prompt], "negative_prompt": "", "seed": image.seed,
            "guidance": GUIDANCE[image.prompt]}


def keyframe_text(image: ImageId, **changes: object) -> dict[str, object]:
    recipe = {**settings_recipe(**changes), **image_recipe(image)}
    return {**recipe, "recipe_key": recipe_key(recipe), "sdmorph_version": "0.1.0"}


def write_keyframes(song: Song, images: list[ImageId] | None = None) -> None:
    """Keyframes as the old scripts left them: 64x64 PNGs without sdmorph metadata."""
    for image in images if images is not None else song.all_images():
        path = song.keyframe_path(image)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png((64, 64)))


def legacy(song: Song, name: str, n: int = FRAMES, cut: int | None = None) -> Path:
    """A legacy folder of `n` frames; frame `cut` is truncated like a half download."""
    folder = song.media_dir / "transition_images" / name
    folder.mkdir(parents=True)
    for i in range(n):
        data = png(shade=i)
        (folder / frame_name(i)).write_bytes(data[: len(data) // 2] if i == cut else data)
    return folder


def store_of(song: Song) -> TransitionStore:
    return TransitionStore(song.media_dir, song.seeds_by_prompt(), FRAMES)


def sdmorph_folder(song: Song, a: ImageId, b: ImageId, finish: bool = True,
                   **changes: object) -> Path:
    """A transition rendered (or, unfinished, begun) by sdmorph with the recipe it records."""
    recipe = {**settings_recipe(**changes), "frames": FRAMES, "from": image_recipe(a),
              "to": image_recipe(b)}
    manifest = TransitionManifest(from_image=a, to_image=b, recipe=recipe, frames=FRAMES)
    store = store_of(song)
    folder = store.folder_for(a, b)
    store.begin(folder, manifest)
    for i in range(FRAMES if finish else 2):
        (folder / frame_name(i)).write_bytes(png(shade=i))
    if finish:
        store.finish(folder, manifest)
    return folder


def write_plan(song: Song, intra: str, inter: str) -> None:
    meta = song.media_dir / "transition_meta"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "intrascene_transitions.csv").write_text(INTRA_HEAD + intra, encoding="utf-8")
    (meta / "interscene_transitions.csv").write_text(INTER_HEAD + inter, encoding="utf-8")


def movie(path: Path, size: int = 1500) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)


def every_file(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file() and ".sdmorph" not in p.parts}


# ------------------------------------------------------------------------ scenes


def build_old_song(song: Song) -> None:
    """Every folder state the store knows, and a plan naming each planned state."""
    write_keyframes(song)
    legacy(song, "luna-1001 to sun-2001")
    legacy(song, "sun-2002 to luna-1002")  # serves luna-1002 to sun-2002 backwards
    folder = legacy(song, "luna-1003 to sun-2003", cut=2)
    (folder / "frame000001 (1).png").write_bytes(png())  # cloud-drive duplicate: ignored
    legacy(song, "star-3001 to star-3002", n=3)
    legacy(song, "wrong_num_images", n=2)
    legacy(song, "moon-5555 to luna-1001")
    sdmorph_folder(song, T2, T3)
    sdmorph_folder(song, S1, T1, steps=50)
    sdmorph_folder(song, T1, T3, finish=False)
    write_plan(
        song,
        intra="0,luna,1001,luna,1002,n,4,luna\n"
              "1,luna,1001,luna,1003,y,4,luna\n"
              "2,star,3001,star,3002,y,4,star\n"
              "3,star,3002,star,3003,y,4,star\n"
              "4,star,3001,star,3003,y,4,star\n"
              "5,comet,9999,star,3003,y,4,star\n",
        inter="0,luna,1001,sun,2001,y,4,luna,sun\n"
              "1,luna,1002,sun,2002,y,4,luna,sun\n"
              "2,luna,1003,sun,2003,y,4,luna,sun\n"
              "3,sun,2001,star,3001,y,4,sun,star\n"
              "4,sun,2001,luna,1001,y,4,sun,luna\n",  # the same transition again: once
    )


# ------------------------------------------------------------------------- tests


@pytest.mark.slow
def test_status_never_imports_torch() -> None:
    code = ("import sys, sdmorph.stages.status; "
            "bad = [m for m in ('torch', 'diffusers', 'transformers', 'sdmorph.render.renderer', "
            "'sdmorph.cli.app', 'matplotlib') if m in sys.modules]; assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_keyframe_states(song: Song) -> None:
    write_keyframes(song, [L1])
    song.keyframe_path(L2).write_bytes(png((32, 32)))
    song.keyframe_path(L3).write_bytes(png((64, 64), keyframe_text(L3)))
    song.keyframe_path(S1).write_bytes(png((64, 64), keyframe_text(S1, steps=50)))
    song.keyframe_path(S2).write_bytes(png((64, 64))[:-30])
    song.keyframe_path(S3).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 60)
    states = {k.image: k for k in song_status(song).keyframes}
    assert len(states) == len(song.all_images()) == 11
    assert (states[L1].state, states[L1].reason) == ("legacy", "")
    assert states[L2].state == "legacy" and "32x32, the song renders 64x64" in states[L2].reason
    assert (states[L3].state, states[L3].reason) == ("current", "")
    assert states[S1].state == "stale" and "steps '50' (now 3)" in states[S1].reason
    assert states[S2].state == "incomplete" and states[S3].state == "incomplete"
    assert states[T1].state == "missing"
    assert states[T1].path == song.media_dir / "prompt_images" / "star_3001.png"


def test_a_new_prompt_text_makes_sdmorph_keyframes_stale(tmp_path: Path) -> None:
    meta, media = write_song(tmp_path, sheet=SHEET_MOON)
    first = load(meta, media)
    first.keyframe_path(L1).parent.mkdir(parents=True)
    first.keyframe_path(L1).write_bytes(png((64, 64), keyframe_text(L1)))
    assert song_status(first).keyframes[0].state == "current"
    sheet = SHEET_MOON.replace("a moon, glowing", "a moon, shining")
    second = load(*write_song(tmp_path, sheet=sheet))
    first_state = song_status(second).keyframes[0]
    assert first_state.state == "stale"
    assert "prompt 'a moon, glowing' (now 'a moon, shining')" in first_state.reason


def test_planned_transitions_and_folders(song: Song) -> None:
    build_old_song(song)
    status = song_status(song)
    planned = {(p.a, p.b): p for p in status.planned}
    assert len(status.planned) == 9  # the repeated sun-2001 to luna-1001 row counts once
    assert planned[L1, L2].state == "skipped"
    assert planned[L1, L3].state == "missing" and planned[L1, L3].folder is None
    assert planned[L1, S1].state == "legacy" and not planned[L1, S1].reversed
    back = planned[L2, S2]
    assert (back.state, back.reversed) == ("legacy", True)
    assert back.folder is not None and back.folder.name == "sun-2002 to luna-1002"
    cut = planned[L3, S3]
    assert (cut.state, cut.kind, cut.frames_found) == ("incomplete", "legacy", 4)
    assert "cut short" in cut.reason and "frame000002.png" in cut.reason
    short = planned[T1, T2]
    assert (short.state, short.frames_found) == ("incomplete", 3)
    assert "first missing frame000003.png" in short.reason
    assert planned[T2, T3].state == "rendered"
    assert planned[S1, T1].state == "stale" and "steps 50 (now 3)" in planned[S1, T1].reason
    assert planned[T1, T3].state == "in-progress" and planned[T1, T3].frames_found == 2
    assert len(status.plan_problems) == 1 and "comet" in status.plan_problems[0]
    assert "row 7" in status.plan_problems[0]
    assert status.next_command == "sdmorph transitions song"


def test_every_folder_is_listed_with_its_state(song: Song) -> None:
    build_old_song(song)
    folders = {f.name: f for f in song_status(song).folders}
    assert len(folders) == 9
    assert folders["wrong_num_images"].state == "unparseable"
    assert folders["wrong_num_images"].reason == "not a transition folder name"
    ambiguous = folders["moon-5555 to luna-1001"]
    assert ambiguous.state == "ambiguous" and "55551 and 55552" in ambiguous.reason
    assert folders["luna-1001 to sun-2001"].state == "complete"
    assert folders[transition_name(S1, T1)].state == "stale"
    assert folders[transition_name(T1, T3)].state == "in-progress"
    assert folders[transition_name(T2, T3)].kind == "sdmorph"


def test_tables_summarise_then_list_problems(song: Song) -> None:
    build_old_song(song)
    tables = {title: (columns, rows) for title, columns, rows in status_tables(
        song_status(song))}
    assert list(tables) == ["keyframes", "planned transitions", "planned transitions to look at",
                            "plan problems", "transition folders",
                            "transition folders to look at", "stories", "next"]
    assert tables["keyframes"][1] == [["on disk (old scripts, used as is)", "11"]]
    counts = dict(tables["planned transitions"][1])
    assert counts == {"rendered (sdmorph)": "1", "rendered (old scripts)": "2",
                      "in progress or interrupted": "1", "incomplete": "2",
                      "rendered with other settings": "1", "missing": "1",
                      "skipped by the artist (compute n)": "1"}
    folders = {row[0]: row[1:] for row in tables["transition folders"][1]}
    assert folders == {"complete": ["1", "2"], "incomplete": ["0", "2"],
                       "in-progress": ["1", "0"], "stale": ["1", "0"],
                       "unparseable": ["0", "1"], "ambiguous": ["0", "1"]}
    odd = {row[0] for row in tables["transition folders to look at"][1]}
    assert odd == {"luna-1003 to sun-2003", "star-3001 to star-3002", "wrong_num_images",
                   "moon-5555 to luna-1001", transition_name(S1, T1), transition_name(T1, T3)}
    assert tables["stories"][1] == [["none yet", "", "", ""]]
    assert tables["next"][1] == [["sdmorph transitions song"]]


def test_long_problem_lists_are_cut(tmp_path: Path) -> None:
    seeds = " ".join(str(1000 + i) for i in range(40))
    song = load(*write_song(tmp_path, sheet=f"name,prompt,seeds\nluna,a moon,{seeds}\n",
                            scenes=",scene,duration,section\n0,luna,1,1\n"))
    for image in song.all_images():
        song.keyframe_path(image).parent.mkdir(parents=True, exist_ok=True)
        song.keyframe_path(image).write_bytes(b"\x89PNG\r\n\x1a\n")
    tables = {t[0]: t[2] for t in status_tables(song_status(song))}
    rows = tables["keyframes to look at"]
    assert len(rows) == 31 and rows[-1][0] == "... 10 more"
    assert tables["keyframes"] == [["incomplete file (not a whole PNG)", "40"]]


def test_next_command_follows_the_stages(song: Song) -> None:
    assert song_status(song).next_command == "sdmorph render-prompts song"
    write_keyframes(song)
    assert song_status(song).next_command == "sdmorph transitions song"  # no plan yet
    write_plan(song, intra="0,luna,1001,luna,1002,y,4,luna\n1,luna,1002,luna,1003,n,4,luna\n",
               inter="")
    assert song_status(song).next_command == "sdmorph transitions song"
    folder = sdmorph_folder(song, L1, L2, steps=50)
    assert song_status(song).next_command == "sdmorph transitions song --force"
    (folder / MANIFEST_NAME).unlink()
    for frame in folder.iterdir():
        frame.unlink()
    folder.rmdir()
    legacy(song, "luna-1001 to luna-1002", n=2)
    assert song_status(song).next_command == "sdmorph transitions song --force"
    legacy(song, "luna-1002 to luna-1001")
    assert song_status(song).next_command == "sdmorph movie song"
    movie(song.media_dir / "stories" / "base" / "sections" / "section_1.mov")
    assert song_status(song).next_command == "sdmorph movie song"  # no combined movie yet
    movie(song.media_dir / "stories" / "base" / "base_combined.mov")
    assert song_status(song).next_command == (
        "done; re-spin a story with sdmorph movie song --seed N -o NAME")


def test_next_command_repeats_profile_and_scenes(tmp_path: Path) -> None:
    settings = {**SETTINGS, "cell": {**SETTINGS["default"], "res_width": 128}}
    scenes = ",scene,duration,section\n0,luna,1,1\n"
    meta, media = write_song(tmp_path, name="my song", settings=settings,
                             extra={"scene_sequence_short cut.csv": scenes})
    song = load(meta, media, profile="cell", scenes="short cut")
    expected = "sdmorph render-prompts 'my song' --profile cell --scenes 'short cut'"
    assert song_status(song).next_command == expected
    assert song_status(song, profile="default", scenes=None).next_command.endswith(
        "--scenes 'short cut'")
    write_keyframes(song)
    status = song_status(song)
    # 64x64 legacy keyframes at a 128-wide profile: kept, with a note.
    assert status.keyframes[0].state == "legacy" and "128x64" in status.keyframes[0].reason
    assert status.next_command.startswith("sdmorph transitions 'my song' --profile cell")


def test_stories_list_their_files_and_movies(song: Song) -> None:
    base = song.media_dir / "stories" / "base"
    (base / "sections").mkdir(parents=True)
    (base / "trans_sequence_base.csv").write_text(",section,c1,c2,reversed\n")
    for n in (10, 2, 1):
        movie(base / "sections" / f"section_{n}.mov", 1000)
    movie(base / "sections" / ".section_3.mov.x.sdmorph-tmp.mov")
    movie(base / "base_combined.mov", 2_500_000)
    movie(base / "base_combined.mp4", 1_000_000)
    (song.media_dir / "stories" / "later").mkdir()
    stories = song_status(song).stories
    assert [s.name for s in stories] == ["base", "later"]
    first, later = stories
    assert first.story_file == base / "trans_sequence_base.csv"
    assert [m.path.name for m in first.sections] == [
        "section_1.mov", "section_2.mov", "section_10.mov"]
    assert {m.path.name: m.size for m in first.combined} == {
        "base_combined.mov": 2_500_000, "base_combined.mp4": 1_000_000}
    assert later.story_file is None and not later.has_movie and first.has_movie
    table = {t[0]: t[2] for t in status_tables(song_status(song))}["stories"]
    assert table[0] == ["base", "trans_sequence_base.csv", "3 (3.0 KB)",
                        "base_combined.mov (2.5 MB), base_combined.mp4 (1.0 MB)"]
    assert table[1] == ["later", "missing", "-", "-"]


def test_adopt_reports_and_changes_nothing(song: Song) -> None:
    build_old_song(song)
    story = song.media_dir / "story" / "trans_sequence.csv"
    story.parent.mkdir()
    story.write_text(",path_section,section,scene_from,c1,c2,reversed,input_image_folder\n"
                     "0,1,1,luna,luna-1001,sun-2001,False,G:\\x\\luna-1001 to sun-2001\n"
                     "1,1,1,sun,sun-2001,luna-1002,False,G:\\x\\sun-2001 to luna-1002\n")
    bad = song.media_dir / "stories" / "base" / "trans_sequence_base.csv"
    bad.parent.mkdir(parents=True)
    bad.write_text(",section,c1,c2,reversed\n0,1,moon-5555,luna-1001,False\n")
    before = every_file(song.media_dir)
    report = adopt_report(song)
    assert every_file(song.media_dir) == before
    assert report.has_plan and report.skipped == 1
    why = {(p.a, p.b): p.state for p in report.to_render}
    assert why == {(L1, L3): "missing", (L3, S3): "incomplete", (T1, T2): "incomplete",
                   (S1, T1): "stale", (T1, T3): "in-progress"}
    assert [f.name for f in report.without_manifest] == ["luna-1001 to sun-2001",
                                                         "sun-2002 to luna-1002"]
    checks = {c.path.name: c for c in report.story_files}
    assert (checks["trans_sequence.csv"].rows, checks["trans_sequence.csv"].covered) == (2, 1)
    assert "ambiguous" in checks["trans_sequence_base.csv"].problems[0]
    tables = {t[0]: t[2] for t in adopt_tables(report)}
    found = dict(tables[f"found in {song.media_dir}"])
    assert found["legacy folders: complete"] == "2"
    assert found["legacy folders: ambiguous"] == "1"
    assert found["keyframes: on disk (old scripts, used as is)"] == "11"
    render = tables["sdmorph would render next (5 transitions, 1 skipped by the artist)"]
    rows = dict(render)
    assert rows["luna-1001 to luna-1003"] == "no folder"
    assert rows["luna-1003 to sun-2003"].startswith("legacy folder incomplete: 1 of 4 frames")
    assert rows["sun-2001 to star-3001"].endswith("re-rendered with --force")
    assert "--write-manifests" in tables["next"][0][0]
    assert {r[0] for r in tables["legacy folders to look at"]} == {
        "luna-1003 to sun-2003", "star-3001 to star-3002", "wrong_num_images",
        "moon-5555 to luna-1001"}


def test_adopt_without_a_plan_shows_the_plan_transitions_would_make(song: Song) -> None:
    write_keyframes(song, [L1])
    legacy(song, "luna-1001 to sun-2001")
    report = adopt_report(song)
    assert report.planned_now and not report.plan_files
    (path,) = plan_paths(song.scenes, 0, 1)
    served = {frozenset((L1, S1))}
    expected = {frozenset((h.a, h.b)) for h in path} - served
    assert {frozenset((p.a, p.b)) for p in report.to_render} == expected
    tables = {t[0]: t[2] for t in adopt_tables(report)}
    (title,) = [t for t in tables if t.startswith("sdmorph would render next")]
    assert "no plan yet: the path `sdmorph transitions song` would plan, not written" in title
    assert tables["story files"] == [["none", "", "", ""]]
    assert not (song.media_dir / "transition_meta").exists()


def test_write_manifests_leaves_frames_alone(song: Song) -> None:
    build_old_song(song)
    frames = {p: (p.read_bytes(), p.stat().st_mtime_ns)
              for p in (song.media_dir / "transition_images").rglob("frame*.png")}
    written = write_manifests(song)
    assert sorted(p.parent.name for p in written) == ["luna-1001 to sun-2001",
                                                      "sun-2002 to luna-1002"]
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in frames} == frames
    manifest = json.loads(written[1].read_text())
    assert manifest["kind"] == "legacy" and manifest["complete"] is True
    assert (manifest["from_image"], manifest["frames"]) == ({"prompt": "sun", "seed": 2002}, 4)
    assert write_manifests(song) == []
    status = song_status(song)
    planned = {(p.a, p.b): p.state for p in status.planned}
    assert planned[L1, S1] == planned[L2, S2] == "legacy"
    assert adopt_report(song).without_manifest == []


def test_status_agrees_with_what_the_real_renderer_records(tmp_path: Path) -> None:
    """The tiny model renders for real: its recipes read as current, then as stale."""
    from sdmorph.render.renderer import open_renderer
    from sdmorph.stages.keyframes import render_keyframes
    from sdmorph.stages.transitions import TransitionRenderer, render_all

    meta, media = write_song(tmp_path)
    song = load(meta, media)
    renderer = open_renderer(song, device="cpu")
    render_keyframes(renderer, [L1, L2], batch_size=2)
    store = store_of(song)
    render_all(TransitionRenderer(renderer, store, FRAMES, batch_size=2), [(L1, L2)])
    write_plan(song, intra="0,luna,1001,luna,1002,y,4,luna\n", inter="")
    status = song_status(song)
    assert [k.state for k in status.keyframes[:3]] == ["current", "current", "missing"]
    assert [(p.state, p.kind) for p in status.planned] == [("rendered", "sdmorph")]
    changed = {"default": {**SETTINGS["default"], "pipe_kwargs": {"num_inference_steps": 5}}}
    stale = song_status(load(*write_song(tmp_path, settings=changed)))
    assert stale.keyframes[0].state == "stale" and "steps '3' (now 5)" in stale.keyframes[0].reason
    assert stale.planned[0].state == "stale" and "steps 3 (now 5)" in stale.planned[0].reason


def test_header_only_plan_tables_plan_nothing(song: Song) -> None:
    meta = song.media_dir / "transition_meta"
    meta.mkdir(parents=True)
    (meta / "intrascene_transitions.csv").write_text(
        ",from_name,from_seed,to_name,to_seed,compute,duration,scene\n")
    report = adopt_report(song)
    assert report.plan_files == [] and report.planned_now  # the plan transitions would make
    assert report.to_render
