"""`report`: the page's contents, its previews cache, crashes, and the real `sdmorph report`."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
from markupsafe import escape
from PIL import Image
from test_status import SHEET_MOON, build_old_song, legacy, load, png
from typer.testing import CliRunner

from sdmorph.cli.app import app
from sdmorph.formats.legacy import frame_name
from sdmorph.formats.song import Song
from sdmorph.media.previews import PREVIEW_FRAMES, PREVIEW_SIDE
from sdmorph.stages.report import gather_report, render_page, write_report
from songs import SCENES, SETTINGS, SHEET, env_for, write_song

runner = CliRunner()
EXE = Path(sys.executable).parent / "sdmorph"
SCRIPT = "<script>alert(1)</script>"
# A prompt named like markup, with markup in its text, in a scene of its own.
MARKUP_SHEET = (SHEET + f'"{SCRIPT}","a red cube, <b>bold</b> & \'quoted\'",4001,7.5\n'
                "it's late,a clock,5001,7\n")
MARKUP_SCENES = SCENES + f"3,{SCRIPT},0,2,,\n"


class _Links(HTMLParser):
    """Every src/href of a page, and the text it shows."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self.scripts = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"
        self.links += [(tag, v) for k, v in attrs if k in ("src", "href") and v]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def report_of(song: Song, out: Path | None = None) -> tuple[Path, object]:
    survey = gather_report(song, out)
    result = write_report(survey)
    return result.page, result


def previews_of(song: Song) -> list[Path]:
    """The finished previews (a killed write's temporary file starts with a dot)."""
    found = (song.media_dir / "report" / "previews").glob("*.webp")
    return sorted(p for p in found if not p.name.startswith("."))


@pytest.fixture
def old_song(tmp_path: Path) -> Song:
    song = load(*write_song(tmp_path, sheet=SHEET_MOON))
    build_old_song(song)
    return song


# ------------------------------------------------------------------ contents


def test_page_shows_every_state_and_the_next_command(old_song: Song) -> None:
    page, _ = report_of(old_song)
    text = page.read_text(encoding="utf-8")
    survey = gather_report(old_song)
    states = {card.name: card.state for card in survey.transitions}
    assert states == {
        "luna-1001 to luna-1002": "compute = n", "luna-1001 to luna-1003": "missing",
        "star-3001 to star-3002": "incomplete", "star-3002 to star-3003": "complete",
        "star-3001 to star-3003": "incomplete", "luna-1001 to sun-2001": "legacy",
        "luna-1002 to sun-2002": "legacy", "luna-1003 to sun-2003": "incomplete",
        "sun-2001 to star-3001": "stale", "moon-5555 to luna-1001": "unreadable",
        "wrong_num_images": "unreadable",
    }
    served_backwards = next(c for c in survey.transitions if c.name == "luna-1002 to sun-2002")
    assert served_backwards.reversed and served_backwards.folder == "sun-2002 to luna-1002"
    for state in ("complete", "stale", "legacy", "incomplete", "compute = n", "missing"):
        assert f'data-state="{state}"' in text
    assert "old scripts&#39;" in text  # keyframes without sdmorph's metadata
    assert "sdmorph transitions song" in text  # status's advice, as status gives it
    assert "rendered with other settings: steps 50 (now 3)" in text
    assert 'content="sdmorph report' in text
    settings = dict(survey.settings)
    assert settings["pacing"] == "linear" and settings["frames per transition"] == "4"


def test_jump_scores_show_once_inspect_has_measured_them(old_song: Song) -> None:
    from sdmorph.stages.inspect import inspect_song

    before = report_of(old_song)[0].read_text(encoding="utf-8")
    assert "no jump scores yet" in before and 'id="worst-first"' not in before
    inspect_song(old_song, plot=False)
    survey = gather_report(old_song)
    scored = [card for card in survey.transitions if card.jump is not None]
    assert scored and all(card.jump >= 1.0 for card in scored)  # J = max / median >= 1
    text = render_page(survey)
    assert 'id="worst-first"' in text and "no jump scores yet" not in text
    for card in scored:
        assert f'data-jump="{card.jump:.3f}"' in text


def test_every_link_is_relative_and_points_at_a_file(old_song: Song) -> None:
    page, _ = report_of(old_song)
    links = parsed(page).links
    assert any(tag == "img" and "previews/" in src for tag, src in links)
    for tag, src in links:
        if src.startswith(("#", "data:")):
            continue
        assert "://" not in src and not src.startswith("/"), src
        assert (page.parent / unquote(src)).is_file(), (tag, src)


def colour_folder(song: Song, name: str, n: int, size: tuple[int, int] = (400, 300)) -> Path:
    """A legacy folder of `n` frames of clearly different colours."""
    folder = song.media_dir / "transition_images" / name
    folder.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", size, (i * 255 // n, 90, 255 - i * 255 // n)).save(folder / frame_name(i))
    return folder


def test_previews_loop_are_small_and_only_for_folders_with_frames(tmp_path: Path) -> None:
    song = load(*write_song(tmp_path))
    colour_folder(song, "luna-1001 to sun-2001", 4)
    colour_folder(song, "sun-2001 to star-3001", 40)
    survey = gather_report(song)
    assert all(card.preview for card in survey.transitions)
    write_report(survey)
    frames = []
    for path in previews_of(song):
        with Image.open(path) as image:
            assert image.format == "WEBP" and getattr(image, "is_animated", False)
            assert image.size == (PREVIEW_SIDE, PREVIEW_SIDE * 3 // 4)
            frames.append(image.n_frames)
    # There and back again (4 frames: 1 2 3 4 3 2), so the loop never jumps; long
    # transitions are sampled down to PREVIEW_FRAMES.
    assert sorted(frames) == [6, 2 * PREVIEW_FRAMES - 2]


def test_markup_in_prompt_names_and_texts_shows_as_text(tmp_path: Path) -> None:
    song = load(*write_song(tmp_path, sheet=MARKUP_SHEET, scenes=MARKUP_SCENES))
    text = render_page(gather_report(song))
    assert SCRIPT not in text and "<b>bold</b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "a red cube, &lt;b&gt;bold&lt;/b&gt; &amp; &#39;quoted&#39;" in text
    page = tmp_path / "page.html"
    page.write_text(text, encoding="utf-8")
    shown = parsed(page)
    assert shown.scripts == 1  # the page's own, and no other
    assert SCRIPT in "".join(shown.text)


def test_explore_images_each_carry_the_keep_command(tmp_path: Path) -> None:
    song = load(*write_song(tmp_path, sheet=MARKUP_SHEET, scenes=MARKUP_SCENES))
    for folder, seeds in (("_script_alert(1)__script_", (12, 4001)), ("it's late", (77,))):
        where = song.media_dir / "explore_images" / folder
        where.mkdir(parents=True)
        for seed in seeds:
            (where / f"{folder}_{seed}.png").write_bytes(png((64, 64)))
        (where / "contact_sheet.png").write_bytes(png((130, 70)))
    new = song.media_dir / "explore_images" / "dusk"  # explored with --prompt-text
    new.mkdir()
    (new / "dusk_9.png").write_bytes(png((64, 64), {"prompt": "a dusk sky"}))
    survey = gather_report(song)
    commands = {(g.prompt, e.seed): (e.command, e.kept) for g in survey.explore for e in g.images}
    assert commands == {
        (SCRIPT, 12): (f"sdmorph explore song -p '{SCRIPT}' --keep 12", False),
        (SCRIPT, 4001): (f"sdmorph explore song -p '{SCRIPT}' --keep 4001", True),
        ("it's late", 77): ("sdmorph explore song -p 'it'\"'\"'s late' --keep 77", False),
        ("dusk", 9): ("sdmorph explore song -p dusk --keep 9 --prompt-text 'a dusk sky'", False),
    }
    assert shlex.split(commands["it's late", 77][0])[4] == "it's late"
    text = render_page(survey)
    for command, _ in commands.values():
        assert str(escape(command)) in text
    assert text.count("contact sheet</a>") == 2


def test_stories_show_their_movies_sections_and_path(old_song: Song) -> None:
    folder = old_song.media_dir / "stories" / "base"
    (folder / "sections").mkdir(parents=True)
    (folder / "trans_sequence_base.csv").write_text(
        "path_section,section,scene_from,c1,c2,reversed,input_image_folder\n"
        "1,1,luna,luna-1001,sun-2001,False,x/luna-1001 to sun-2001\n"
        "2,2,sun,sun-2001,star-3001,False,x/sun-2001 to star-3001\n"
        "2,2,star,star-3002,star-3003,False,x/star-3002 to star-3003\n", encoding="utf-8")
    for name in ("base_combined.mp4", "base_combined.mov", "sections/section_1.mp4",
                 "sections/section_2.mp4"):
        (folder / name).write_bytes(b"\0" * 100)
    (story,) = gather_report(old_song).stories
    assert [m.name for m in story.combined] == ["base_combined.mov", "base_combined.mp4"]
    assert [m.playable for m in story.combined] == [False, True]
    assert [(s.number, s.path) for s in story.sections] == [
        (1, ("luna_1001", "sun_2001")),
        (2, ("sun_2001", "star_3001", "star_3002", "star_3003")),  # a cut in the story
    ]
    assert [m.name for s in story.sections for m in s.movies] == ["section_1.mp4",
                                                                   "section_2.mp4"]


# ------------------------------------------------------------------ the cache


def test_previews_are_reused_until_their_folder_changes(old_song: Song) -> None:
    _, first = report_of(old_song)
    made = first.made  # type: ignore[attr-defined]
    assert made == len(previews_of(old_song)) > 0
    _, again = report_of(old_song)
    assert (again.made, again.reused) == (0, made)  # type: ignore[attr-defined]
    before = set(previews_of(old_song))
    frame = old_song.media_dir / "transition_images" / "luna-1001 to sun-2001" / frame_name(1)
    frame.write_bytes(png(shade=99))
    os.utime(frame, ns=(time.time_ns(), time.time_ns() + 10**9))
    _, changed = report_of(old_song)
    assert (changed.made, changed.reused) == (1, made - 1)  # type: ignore[attr-defined]
    after = set(previews_of(old_song))
    assert len(after - before) == 1 and len(before - after) == 1  # the old one is gone


@pytest.mark.slow
def test_a_killed_run_leaves_no_half_preview_or_page(old_song: Song, tmp_path: Path) -> None:
    """SIGKILL just before a preview is renamed into place: nothing looks finished."""
    code = (
        "import os, signal, sys\n"
        "from sdmorph.formats.song import load_song\n"
        "from sdmorph.stages.report import gather_report, write_report\n"
        "def killed(*a, **k): os.kill(os.getpid(), signal.SIGKILL)\n"
        "survey = gather_report(load_song(*map(__import__('pathlib').Path, sys.argv[1:3])))\n"
        "os.replace = killed\n"
        "write_report(survey)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(old_song.meta_dir),
                           str(old_song.media_dir)], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    out = old_song.media_dir / "report"
    assert not (out / "index.html").exists() and previews_of(old_song) == []
    assert [p for p in (out / "previews").iterdir() if "sdmorph-tmp" in p.name]
    page, result = report_of(old_song)
    assert result.made == len(previews_of(old_song)) > 0  # type: ignore[attr-defined]
    assert sorted(p.name for p in (out / "previews").iterdir()) == [
        p.name for p in previews_of(old_song)]  # the killed run's temp file is cleaned
    assert page.is_file()


def test_a_folder_whose_frames_do_not_decode_has_no_preview(tmp_path: Path) -> None:
    song = load(*write_song(tmp_path))
    folder = legacy(song, "luna-1001 to sun-2001")
    for frame in folder.iterdir():
        frame.write_bytes(b"not a png")
    page, result = report_of(song)
    assert (result.made, result.failed) == (0, 1)  # type: ignore[attr-defined]
    assert "previews/" not in page.read_text(encoding="utf-8")


@pytest.mark.slow
def test_two_thousand_transitions_write_in_seconds_once_previews_exist(tmp_path: Path) -> None:
    sheet = "name,prompt,seeds\n" + "".join(f"p{i},prompt {i},{1000 + i}\n" for i in range(50))
    song = load(*write_song(tmp_path, sheet=sheet, scenes=",scene,duration,section\n0,p0,0,1\n"))
    data = png()
    pairs = [(i, j) for i in range(50) for j in range(50) if i != j][:2000]
    for i, j in pairs:  # complete legacy folders the plan does not use: one preview each
        folder = song.media_dir / "transition_images" / f"p{i}-{1000 + i} to p{j}-{1000 + j}"
        folder.mkdir(parents=True)
        for f in range(4):
            (folder / frame_name(f)).write_bytes(data)
    survey = gather_report(song)
    assert len(survey.transitions) == 2000
    assert len(survey.pending) == 2000
    for job in survey.pending:  # stand-ins: making 2,000 real ones is measured by hand
        job.target.parent.mkdir(parents=True, exist_ok=True)
        job.target.write_bytes(b"RIFF")
    result = write_report(gather_report(song))
    # A cached run makes no preview again; how long it takes is measured by hand (README).
    assert (result.made, result.reused) == (0, 2000)


# ------------------------------------------------------------------ the command


@pytest.mark.slow
def test_report_never_imports_torch() -> None:
    code = ("import sys, sdmorph.stages.report; "
            "bad = [m for m in ('torch', 'diffusers', 'transformers', 'sdmorph.render.renderer', "
            "'sdmorph.cli.app', 'matplotlib') if m in sys.modules]; assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def sdmorph(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real console script, as an artist runs it."""
    env = {**os.environ, **env_for(root), "COLUMNS": "200"}
    return subprocess.run([str(EXE), *args], env=env, cwd=root, capture_output=True,
                          text=True, timeout=300)


def rendered_song(root: Path) -> Path:
    """A tiny song, rendered for real: keyframes, transitions, an h264 movie, explore images.

    Has a prompt named `<script>alert(1)</script>`. Returns the song's media folder.
    """
    settings = {"default": {**SETTINGS["default"], "fps": 4}}
    write_song(root, sheet=MARKUP_SHEET, scenes=MARKUP_SCENES, settings=settings)
    for args in (["run", "song", "--codec", "h264"],
                 ["explore", "song", "-p", SCRIPT, "--seeds", "7", "8"]):
        result = runner.invoke(app, args, env=env_for(root))
        assert result.exit_code == 0, result.output
    return root / "media" / "song"


_RENDERED: dict[str, Path] = {}


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`rendered_song` once per test process (the browser test uses it too)."""
    if "media" not in _RENDERED:
        _RENDERED["media"] = rendered_song(tmp_path_factory.mktemp("rendered"))
    return _RENDERED["media"]


@pytest.mark.slow
def test_the_command_writes_the_page_then_reuses_previews(rendered: Path) -> None:
    root = rendered.parent.parent
    first = sdmorph(root, "report", "song")
    assert first.returncode == 0, first.stderr
    made = int(re.search(r"previews: (\d+) made, 0 reused", first.stdout).group(1))
    assert made >= 5
    assert f"report: {rendered / 'report' / 'index.html'}" in first.stdout
    again = sdmorph(root, "report", "song")
    assert f"previews: 0 made, {made} reused" in again.stdout, again.stdout
    text = (rendered / "report" / "index.html").read_text(encoding="utf-8")
    assert '<video src="../stories/base/base_combined.mp4"' in text
    assert 'src="../story/plan_graph.png"' in text
    assert "done; re-spin a story with sdmorph movie song --seed N -o NAME" in text


@pytest.mark.slow
def test_the_command_writes_elsewhere_with_o_and_refuses_foreign_pages(rendered: Path,
                                                                       tmp_path: Path) -> None:
    root = rendered.parent.parent
    out = tmp_path / "review"
    result = sdmorph(root, "report", "song", "-o", str(out))
    assert result.returncode == 0, result.stderr
    links = parsed(out / "index.html").links
    assert all((out / unquote(src)).is_file() for _, src in links
               if not src.startswith(("#", "data:")))
    foreign = tmp_path / "site"
    foreign.mkdir()
    (foreign / "index.html").write_text("<html>mine</html>")
    refused = sdmorph(root, "report", "song", "-o", str(foreign))
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"error: {foreign / 'index.html'}: not a page sdmorph wrote; pick another folder with -o"]
    assert (foreign / "index.html").read_text() == "<html>mine</html>"


@pytest.mark.slow
def test_open_hands_the_page_to_the_web_browser(tmp_path: Path) -> None:
    write_song(tmp_path)
    opened = tmp_path / "opened.txt"
    # webbrowser runs $BROWSER with the page's URL in place of %s.
    record = f"import sys; open({str(opened)!r}, 'w').write(sys.argv[1])"
    env = {**os.environ, **env_for(tmp_path),
           "BROWSER": f"{shlex.quote(sys.executable)} -c {shlex.quote(record)} %s"}
    result = subprocess.run([str(EXE), "report", "song", "--open"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    page = tmp_path / "media" / "song" / "report" / "index.html"
    assert opened.read_text() == page.as_uri()


@pytest.mark.slow
def test_the_command_reports_a_bad_song_in_one_line(tmp_path: Path) -> None:
    result = sdmorph(tmp_path, "report", "nosuchsong")
    assert result.returncode == 2 and result.stderr.startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr
