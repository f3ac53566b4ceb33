"""`report`: one static page showing a song's whole state, for artists who judge by looking.

The page is gathered from what is on disk (`status.song_status` for the states and the next
command, explore's folders, the story folders) and renders nothing: no model, no torch. Its
only heavy work is a small looping preview per transition folder, made once and reused while
the folder is unchanged (`sdmorph.media.previews`).

`<media>/<song>/report/index.html` links everything else relatively (keyframes, explore
images, movies, the plan picture), so the page works from `file://` and after the media folder
is copied elsewhere. It is built with Jinja2 with autoescaping: prompt names and texts are the
artist's input and always show as text. The page and each preview are written atomically.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote

import jinja2
from PIL import Image

from sdmorph import __version__
from sdmorph.core.errors import SdmorphError
from sdmorph.core.ids import ImageId
from sdmorph.core.progress import SILENT, Listener
from sdmorph.core.smoothness import JUMP_THRESHOLD, measure
from sdmorph.formats.fsio import safe_name, write_text
from sdmorph.formats.plan_tables import read_story
from sdmorph.formats.song import Song, resolver, summary
from sdmorph.media.frame_scores import cached_scores
from sdmorph.media.previews import (
    PreviewJob,
    make_previews,
    preview_key,
    preview_path,
    prune_previews,
)
from sdmorph.media.store import FolderInfo
from sdmorph.stages.status import (
    KeyframeStatus,
    MovieFile,
    PlannedStatus,
    SongStatus,
    StoryStatus,
    song_status,
)

REPORT_DIR = "report"
PAGE_NAME = "index.html"
PREVIEWS_DIR = "previews"
TEMPLATE = "report.html.j2"
# Written into every page: a folder whose index.html lacks it is not ours to overwrite.
GENERATOR = "sdmorph report"
EXPLORE_DIR = "explore_images"
PLAN_PICTURE = Path("story") / "plan_graph.png"
PLAN_GEXF = Path("story") / "graph.gexf"

KEYFRAME_STATES = {"sdmorph": "current", "legacy": "old scripts'", "stale": "stale",
                   "incomplete": "incomplete", "missing": "missing"}
PLANNED_STATES = {"rendered": "complete", "legacy": "legacy", "stale": "stale",
                  "incomplete": "incomplete", "in-progress": "incomplete",
                  "missing": "missing", "skipped": "compute = n"}
FOLDER_STATES = {"stale": "stale", "incomplete": "incomplete", "in-progress": "incomplete",
                 "unparseable": "unreadable", "ambiguous": "unreadable"}
# Which transition states may have frames worth a preview (missing and n have no folder).
_PREVIEWED = {"complete", "legacy", "stale", "incomplete", "unreadable"}


# ------------------------------------------------------------------------ the model


@dataclass(frozen=True)
class KeyframeCard:
    """One (prompt, seed) keyframe as the page shows it."""

    stem: str
    prompt: str
    seed: int
    text: str  # the prompt's text, '' when the prompt left the sheet
    guidance: float | None
    state: str
    reason: str
    href: str | None  # only for a whole PNG: a broken one would show as a broken image


@dataclass(frozen=True)
class SceneCard:
    name: str
    section: int
    duration: int
    keyframes: tuple[KeyframeCard, ...]
    start: tuple[str, ...] = ()
    avoid: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExploreCard:
    seed: int
    href: str
    command: str  # the exact `sdmorph explore ... --keep SEED` to copy
    kept: bool  # the seed is in the sheet already


@dataclass(frozen=True)
class ExploreGroup:
    prompt: str
    folder: str
    sheet: str | None  # contact_sheet.png
    sweeps: tuple[str, ...]
    images: tuple[ExploreCard, ...]
    in_sheet: bool


@dataclass(frozen=True)
class TransitionCard:
    name: str
    state: str
    planned: bool
    folder: str  # the serving folder's name, '' when none
    kind: str
    frames: int
    reason: str
    reversed: bool
    preview: str | None = None  # href, once the preview exists
    jump: float | None = None  # J of its frames, where `sdmorph inspect` has scored them


@dataclass(frozen=True)
class MovieLink:
    name: str
    href: str
    size: int
    playable: bool  # h264 .mp4 plays in a browser; mjpeg .mov is a download


@dataclass(frozen=True)
class StorySection:
    number: int
    movies: tuple[MovieLink, ...]
    path: tuple[str, ...]  # image stems in playing order


@dataclass(frozen=True)
class StoryCard:
    name: str
    story_file: str | None
    combined: tuple[MovieLink, ...]
    sections: tuple[StorySection, ...]
    problem: str = ""


@dataclass
class SongReport:
    """Everything the page shows, plus the previews still to make."""

    song: str
    out_dir: Path
    settings: list[tuple[str, str]]
    scenes: list[SceneCard]
    loose: list[KeyframeCard]  # keyframes of prompts no scene uses
    explore: list[ExploreGroup]
    transitions: list[TransitionCard]
    stories: list[StoryCard]
    next_command: str
    problems: list[str]
    plan_picture: str | None
    plan_gexf: str | None
    size: tuple[int, int] = (1, 1)  # the song's frame size: cards keep its shape
    pending: list[PreviewJob] = field(default_factory=list)
    reused: int = 0
    wanted: set[str] = field(default_factory=set)  # preview file names the page uses

    @property
    def page(self) -> Path:
        return self.out_dir / PAGE_NAME

    @property
    def aspect(self) -> str:
        """CSS aspect-ratio of the song's frames."""
        return f"{self.size[0]} / {self.size[1]}"

    @property
    def keyframe_count(self) -> int:
        return sum(len(s.keyframes) for s in self.scenes) + len(self.loose)


@dataclass(frozen=True)
class ReportResult:
    page: Path
    made: int
    reused: int
    failed: int  # folders none of whose frames decode: shown without a preview
    seconds: float


class _Links:
    """Relative, URL-quoted links from the page's folder: the page survives being copied."""

    def __init__(self, out_dir: Path) -> None:
        self.base = os.path.abspath(out_dir)

    def __call__(self, path: Path) -> str:
        rel = os.path.relpath(os.path.abspath(path), self.base)
        return quote(rel.replace(os.sep, "/"))


# ------------------------------------------------------------------------ gathering


def report_dir(song: Song, out: Path | None = None) -> Path:
    return Path(out) if out is not None else song.media_dir / REPORT_DIR


def gather_report(song: Song, out: Path | None = None, *, profile: str | None = None,
                  scenes: str | None = None, model: str | None = None) -> SongReport:
    """Survey the song for the page (`out`: the page's folder, default `<song media>/report`).

    Writes nothing but the store's frame-check cache (as `status` does); the previews still
    to make are listed in `pending` for `write_report`.
    """
    out_dir = report_dir(song, out)
    _check_ours(out_dir)
    status = song_status(song, profile=profile, scenes=scenes, model=model)
    link = _Links(out_dir)
    cards = {k.image: _keyframe_card(song, k, link) for k in status.keyframes}
    report = SongReport(
        song=song.name, out_dir=out_dir, settings=_settings(song), scenes=_scenes(song, cards),
        loose=_loose(song, cards), explore=_explore(song, link),
        transitions=[], stories=[_story(song, s, link) for s in status.stories],
        next_command=status.next_command, problems=list(status.plan_problems),
        plan_picture=_if_file(song.media_dir / PLAN_PICTURE, link),
        plan_gexf=_if_file(song.media_dir / PLAN_GEXF, link),
        size=(song.profile.res_width, song.profile.res_height),
    )
    _add_transitions(report, status, link)
    return report


def _check_ours(out_dir: Path) -> None:
    """Refuse to replace an index.html that another tool (or the artist) wrote."""
    page = out_dir / PAGE_NAME
    if not page.exists():
        return
    try:
        with open(page, "rb") as fh:
            head = fh.read(2048)
    except OSError as err:
        raise SdmorphError(f"{page}: cannot read it ({err.strerror}); pick another -o") from None
    if f'content="{GENERATOR}' not in head.decode("utf-8", "replace"):
        raise SdmorphError(f"{page}: not a page sdmorph wrote; pick another folder with -o")


def _if_file(path: Path, link: _Links) -> str | None:
    return link(path) if path.is_file() else None


def _settings(song: Song) -> list[tuple[str, str]]:
    """validate's summary, plus the render settings sdmorph adds when the profile sets them."""
    p = song.profile
    extra = [("frames per transition", str(p.interpolation_steps)), ("pacing", p.pacing)]
    extra += [(name, str(value)) for name, value in (
        ("fps", p.fps), ("batch size", p.batch_size), ("noise", p.noise),
        ("scheduler", p.scheduler), ("timestep spacing", p.timestep_spacing),
        ("dtype", p.dtype), ("sharing", p.sharing or None)) if value is not None]
    extra += [("LoRA", f"{lora.path} x {lora.scale:g}") for lora in p.loras]
    return [*summary(song), ("guidance (default)", f"{p.guidance_scale:g}"), *extra]


def _keyframe_card(song: Song, k: KeyframeStatus, link: _Links) -> KeyframeCard:
    prompt = song.prompts.get(k.image.prompt)
    shown = k.state not in ("missing", "incomplete")
    return KeyframeCard(
        stem=k.image.stem, prompt=k.image.prompt, seed=k.image.seed,
        text=prompt.prompt if prompt else "",
        guidance=song.guidance(prompt) if prompt else None,
        state=KEYFRAME_STATES.get(k.state, k.state), reason=k.reason,
        href=link(k.path) if shown else None,
    )


def _scenes(song: Song, cards: dict[ImageId, KeyframeCard]) -> list[SceneCard]:
    return [SceneCard(name=scene.name, section=scene.section, duration=scene.duration,
                      keyframes=tuple(cards[i] for i in scene.images if i in cards),
                      start=tuple(i.stem for i in scene.start),
                      avoid=tuple(sorted(i.stem for i in scene.avoid)))
            for scene in song.scenes]


def _loose(song: Song, cards: dict[ImageId, KeyframeCard]) -> list[KeyframeCard]:
    used = {image for scene in song.scenes for image in scene.images}
    return [card for image, card in cards.items() if image not in used]


# ------------------------------------------------------------------------ explore


def _explore(song: Song, link: _Links) -> list[ExploreGroup]:
    """Every explore_images/<prompt>/ folder: the sheet prompts' first, then the others."""
    root = song.media_dir / EXPLORE_DIR
    if not root.is_dir():
        return []
    # explore writes to explore_images/<safe_name(prompt)>/ (`stages.explore.explore_dir`,
    # not imported: that module loads the renderer, and so torch).
    by_folder = {safe_name(name): name for name in song.prompts}
    folders = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: (p.name not in by_folder, p.name))
    groups = [_explore_group(song, folder, by_folder.get(folder.name), link)
              for folder in folders]
    return [g for g in groups if g.images or g.sheet or g.sweeps]


def _explore_group(song: Song, folder: Path, prompt: str | None, link: _Links) -> ExploreGroup:
    name = prompt if prompt is not None else folder.name
    kept = set(song.prompts[prompt].seeds) if prompt is not None else set()
    pattern = re.compile(rf"^{re.escape(safe_name(name))}_(\d+)\.png$")
    found = sorted((int(m.group(1)), p) for p in folder.iterdir()
                   if (m := pattern.match(p.name)) and p.is_file())
    images = tuple(
        ExploreCard(seed=seed, href=link(path), kept=seed in kept,
                    command=_keep_command(song.name, name, seed,
                                          None if prompt is not None else _prompt_text(path)))
        for seed, path in found)
    sheet = folder / "contact_sheet.png"
    sweeps = tuple(link(p) for p in sorted(folder.glob("sweep_*.png")))
    return ExploreGroup(prompt=name, folder=folder.name, in_sheet=prompt is not None,
                        sheet=link(sheet) if sheet.is_file() else None, sweeps=sweeps,
                        images=images)


def _keep_command(song: str, prompt: str, seed: int, text: str | None) -> str:
    """`sdmorph explore SONG -p PROMPT --keep SEED`; a prompt new to the sheet needs its text."""
    words = ["sdmorph", "explore", song, "-p", prompt, "--keep", str(seed)]
    if text:
        words += ["--prompt-text", text]
    return shlex.join(words)


def _prompt_text(path: Path) -> str | None:
    """The prompt text explore wrote into the PNG (for a prompt not in the sheet yet)."""
    try:
        with Image.open(path) as image:
            text = image.info.get("prompt")
    except (OSError, ValueError, SyntaxError):
        return None
    return text if isinstance(text, str) else None


# ------------------------------------------------------------------------ transitions


def _add_transitions(report: SongReport, status: SongStatus, link: _Links) -> None:
    """Planned transitions in plan order, then folders the plan does not use; and previews."""
    by_path = {info.path: info for info in status.folders}
    serving = {p.folder for p in status.planned if p.folder is not None}
    planned = [(_planned_card(p), by_path.get(p.folder) if p.folder else None)
               for p in status.planned]
    others = [(_folder_card(info), info) for info in status.folders
              if info.path not in serving]
    previews = report.out_dir / PREVIEWS_DIR
    jumps = _jumps(status)
    for card, info in [*planned, *others]:
        card = _with_preview(report, card, info, previews, link)
        jump = jumps.get(info.path) if info is not None else None
        report.transitions.append(dataclasses.replace(card, jump=jump))


def _jumps(status: SongStatus) -> dict[Path, float]:
    """J of every folder `inspect` has scored (read from its cache: no frame is decoded)."""
    scores = cached_scores(status.media_dir, [info.path for info in status.folders])
    return {folder: measure(s.d, s.end_to_end).jump for folder, s in scores.items()}


def _planned_card(p: PlannedStatus) -> TransitionCard:
    return TransitionCard(name=p.name, state=PLANNED_STATES.get(p.state, p.state), planned=True,
                          folder=p.folder.name if p.folder else "", kind=p.kind,
                          frames=p.frames_found, reason=p.reason, reversed=p.reversed)


def _folder_card(info: FolderInfo) -> TransitionCard:
    state = FOLDER_STATES.get(info.state, "legacy" if info.kind == "legacy" else "complete")
    name = f"{info.a.label} to {info.b.label}" if info.a and info.b else info.name
    return TransitionCard(name=name, state=state, planned=False, folder=info.name,
                          kind=info.kind, frames=info.frames_found, reason=info.reason,
                          reversed=False)


def _with_preview(report: SongReport, card: TransitionCard, info: FolderInfo | None,
                  previews: Path, link: _Links) -> TransitionCard:
    """The card with its preview's link; a preview not made yet is queued in `pending`."""
    if info is None or card.state not in _PREVIEWED or not info.frames_found:
        return card
    key = preview_key(info.path, info.manifest)
    if key is None:
        return card
    target = preview_path(previews, key)
    if target.name not in report.wanted:
        report.wanted.add(target.name)
        if target.is_file():
            report.reused += 1
        else:
            report.pending.append(PreviewJob(info.path, target))
    return replace(card, preview=link(target))


# ------------------------------------------------------------------------ stories


def _movie_link(movie: MovieFile, link: _Links) -> MovieLink:
    return MovieLink(name=movie.path.name, href=link(movie.path), size=movie.size,
                     playable=movie.path.suffix.lower() == ".mp4")


def _story(song: Song, story: StoryStatus, link: _Links) -> StoryCard:
    """A story folder: its movies, and its sections with the path each one takes."""
    by_number: dict[int, list[MovieLink]] = {}
    for movie in story.sections:
        number = int(re.sub(r"\D", "", movie.path.stem) or 0)
        by_number.setdefault(number, []).append(_movie_link(movie, link))
    paths, problem = _story_paths(song, story.story_file)
    numbers = sorted(set(by_number) | set(paths))
    sections = tuple(StorySection(n, tuple(by_number.get(n, ())), tuple(paths.get(n, ())))
                     for n in numbers)
    return StoryCard(name=story.name,
                     story_file=link(story.story_file) if story.story_file else None,
                     combined=tuple(_movie_link(m, link) for m in story.combined),
                     sections=sections, problem=problem)


def _story_paths(song: Song, path: Path | None) -> tuple[dict[int, list[str]], str]:
    """Section -> the image stems it plays, from the story file; or why it cannot be read."""
    if path is None:
        return {}, ""
    try:
        rows = read_story(path, resolver(song))
    except SdmorphError as err:
        return {}, str(err.problems[0]) if err.problems else str(err)
    out: dict[int, list[str]] = {}
    for row in rows:
        steps = out.setdefault(row.section, [])
        if not steps or steps[-1] != row.c1.stem:
            steps.append(row.c1.stem)  # a cut: the story jumps to another image
        steps.append(row.c2.stem)
    return out, ""


# ------------------------------------------------------------------------ writing


def write_report(report: SongReport, listener: Listener = SILENT) -> ReportResult:
    """Make the missing previews (one progress bar), then write the page."""
    started = time.perf_counter()
    made = failed = 0
    if report.pending:
        with listener.bars(("previews", len(report.pending))) as (advance,):
            made, failed = make_previews(report.pending, advance)
    missing = {job.target.name for job in report.pending if not job.target.is_file()}
    if missing:  # no decodable frame: the card shows no picture rather than a broken one
        report.transitions = [_without(card, missing) for card in report.transitions]
    prune_previews(report.out_dir / PREVIEWS_DIR, report.wanted - missing)
    write_text(report.page, render_page(report))
    return ReportResult(page=report.page, made=made, reused=report.reused, failed=failed,
                        seconds=time.perf_counter() - started)


def _without(card: TransitionCard, missing: set[str]) -> TransitionCard:
    if card.preview and card.preview.rsplit("/", 1)[-1] in missing:
        return replace(card, preview=None)
    return card


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("sdmorph.media", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "j2"),
                                            default_for_string=True, default=True),
        undefined=jinja2.StrictUndefined,  # a misspelt field fails the tests, not the page
        trim_blocks=True, lstrip_blocks=True,
    )


def render_page(report: SongReport) -> str:
    """The page's HTML: every piece of the artist's text goes through autoescaping."""
    counts = _counts(card.state for card in report.transitions)
    return _environment().get_template(TEMPLATE).render(
        r=report, generator=GENERATOR, version=__version__, state_counts=counts,
        keyframe_counts=_counts(k.state for k in _all_keyframes(report)),
        jump_threshold=JUMP_THRESHOLD,
        scored=sum(card.jump is not None for card in report.transitions),
    )


def _all_keyframes(report: SongReport) -> Iterable[KeyframeCard]:
    for scene in report.scenes:
        yield from scene.keyframes
    yield from report.loose


def _counts(states: Iterable[str]) -> list[tuple[str, int]]:
    found: dict[str, int] = {}
    for state in states:
        found[state] = found.get(state, 0) + 1
    return sorted(found.items(), key=lambda item: _STATE_ORDER.get(item[0], 99))


_STATE_ORDER = {name: i for i, name in enumerate(
    ("complete", "current", "legacy", "old scripts'", "stale", "incomplete", "missing",
     "compute = n", "unreadable"))}


def summary_counts(report: SongReport) -> Sequence[tuple[str, int]]:
    """(what, how many) for the command's closing line."""
    return [("scenes", len(report.scenes)), ("keyframes", report.keyframe_count),
            ("transitions", len(report.transitions)), ("stories", len(report.stories))]
