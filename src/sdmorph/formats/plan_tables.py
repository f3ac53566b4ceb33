"""The CSV files around plans and stories: the old scripts' columns first, then sdmorph's.

Files (inside a song's media folder):
- `transition_meta/intrascene_transitions.csv`, `transition_meta/interscene_transitions.csv`:
  the transitions to render. Artists set `compute` to `n` by hand to skip one; a rewrite
  keeps their `n`, also for transitions the new plan does not use (listed after its rows).
- `story/trans_sequence_gen.csv`: the planned path.
- `stories/<name>/trans_sequence_<name>.csv`: the story a movie was made from; a copy goes to
  `story/trans_sequence.csv` (the latest story, which artists also edit by hand).

Every file starts with an unnamed index column 0..n-1, as the old scripts (pandas) wrote
them. Readers accept what the old scripts and hand edits left: a byte-order mark, extra or
reordered columns, empty rows, Windows paths, seeds cut to their first 4 digits (resolved
through a caller-supplied `resolve(prompt, digits)`). Rows are numbered as a spreadsheet
shows them (the header is row 1).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from sdmorph.core.errors import Problem, SdmorphError
from sdmorph.core.ids import ImageId, Pair, pair_key
from sdmorph.core.paths import Hop
from sdmorph.formats.csv_table import non_empty_rows, read_csv
from sdmorph.formats.fsio import safe_name, write_bytes, write_text, writing

Resolver = Callable[[str, str], ImageId]
"""(prompt name, seed digits as written) -> the image; raises SdmorphError if none or several."""
Locator = Callable[[ImageId, ImageId], tuple[Path, bool]]
"""(a, b) -> (the transition folder holding a to b's frames, whether they play backwards)."""

INTRA_FILE = "intrascene_transitions.csv"
INTER_FILE = "interscene_transitions.csv"
META_FOLDER = "transition_meta"
PLANNED_FILE = Path("story") / "trans_sequence_gen.csv"
LATEST_STORY_FILE = Path("story") / "trans_sequence.csv"
# The latest story as it was before sdmorph first replaced it (artists edit it by hand).
LATEST_STORY_BACKUP = Path("story") / "trans_sequence.before-sdmorph.csv"
STORIES_FOLDER = "stories"

_LABEL = re.compile(r"^(?P<prompt>.+)-(?P<digits>[0-9]+)\Z", re.DOTALL)
_TRUE = {"true", "1", "1.0", "yes", "y"}
_FALSE = {"false", "0", "0.0", "no", "n"}


# -------------------------------------------------------------------- cell values


class _BadCell(ValueError):
    """A cell that cannot be read; the message says what would be valid."""


def split_label(label: str) -> tuple[str, str]:
    """`<prompt>-<digits>` -> (prompt, digits), split at the last hyphen before digits only.

    Prompt names may hold hyphens and spaces (`cloud-goddess 4-4440`).
    """
    match = _LABEL.match(label.strip())
    if not match or not match["prompt"].strip():
        raise _BadCell(f"{label!r} is not an image written <prompt>-<seed>")
    return match["prompt"].strip(), match["digits"]


def folder_name(path_text: str) -> str:
    """The last component of a path written on any machine (`G:\\a\\b` or `/a/b`)."""
    return re.split(r"[\\/]", path_text.strip().rstrip("/\\"))[-1]


def _text(raw: str) -> str:
    return raw


def _required(raw: str) -> str:
    if not raw:
        raise _BadCell("empty (a value is needed)")
    return raw


def _is_seed(raw: str) -> bool:
    # str.isdigit() also accepts digits such as '²' that int() rejects.
    return raw.isascii() and raw.isdigit()


def _digits(raw: str) -> str:
    if not _is_seed(raw):
        raise _BadCell(f"{raw!r} is not a seed (digits only)")
    return raw


def _integer(raw: str) -> int | None:
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        value = float(raw)  # spreadsheets write whole numbers as "3.0"
    except ValueError:
        value = float("nan")
    if not value.is_integer():
        raise _BadCell(f"{raw!r} is not a whole number")
    return int(value)


def _required_integer(raw: str) -> int | None:
    return _integer(_required(raw))


def _boolean(raw: str) -> bool:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise _BadCell(f"{raw!r} is not true or false (True/False, true/false, 1/0)")


def _compute(raw: str) -> str:
    if raw.lower() in ("y", "yes"):
        return "y"
    if raw.lower() in ("n", "no"):
        return "n"
    raise _BadCell(f"{raw!r} is not y or n (n skips the transition)")


def _kind(raw: str) -> str:
    if raw not in ("", "intra", "inter"):
        raise _BadCell(f"{raw!r} is not intra or inter")
    return raw


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, ImageId):
        return value.label
    return str(value)


# ---------------------------------------------------------------------- tables


@dataclass
class _Table:
    """One CSV file's rows as stripped strings, and the problems found reading them."""

    path: Path
    columns: list[str]
    rows: list[tuple[int, dict[str, str]]]
    problems: list[Problem] = field(default_factory=list)

    def bad(self, row: int | None, column: str | None, message: str) -> None:
        self.problems.append(Problem(message, file=self.path, row=row, column=column))

    def read(
        self, row: int, cells: dict[str, str], column: str, parse: Callable[[str], object]
    ) -> object:
        try:
            return parse(cells.get(column, ""))
        except _BadCell as exc:
            self.bad(row, column, str(exc))
            return None

    def require(self, *columns: str) -> None:
        for column in columns:
            if column not in self.columns:
                found = ", ".join(c for c in self.columns if c) or "none"
                self.bad(None, None, f"missing column '{column}' (columns found: {found})")

    def check(self) -> None:
        if self.problems:
            raise SdmorphError(*self.problems)


def _read_table(path: Path, known: Sequence[str]) -> _Table:
    """Rows with content in any of the `known` columns (the index column is not content)."""
    path = Path(path)
    table = read_csv(path)
    rows = [(row, cells) for row, cells in non_empty_rows(table)
            if any(cells.get(col) for col in known)]
    return _Table(path, list(table.columns), rows)


def _write_table(target: Path, columns: Sequence[str], records: Iterable[Sequence[str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["", *columns])
    for index, record in enumerate(records):
        writer.writerow([str(index), *record])
    write_text(target, buffer.getvalue())


# -------------------------------------------------------- transitions to render


class _TransitionRow(BaseModel):
    model_config = ConfigDict(frozen=True)
    COLUMNS: ClassVar[tuple[str, ...]] = ()
    REQUIRED: ClassVar[tuple[str, ...]] = (
        "from_name",
        "from_seed",
        "to_name",
        "to_seed",
        "compute",
    )

    from_name: str
    from_seed: str  # digits as written: full seeds from sdmorph, 4-digit prefixes in old files
    to_name: str
    to_seed: str
    compute: Literal["y", "n"] = "y"
    duration: int | None = None  # frames per transition
    section: int | None = None
    # sdmorph's own: "n" marks an artist's compute = n row kept although the plan no longer
    # uses it (old files lack the column: every row is planned).
    planned: Literal["y", "n"] = "y"
    row: int | None = None  # spreadsheet row when read from a file

    def images(self, resolve: Resolver | None = None) -> tuple[ImageId, ImageId]:
        """The two images; without `resolve` the seeds are taken as written."""
        if resolve is None:
            return (
                ImageId(self.from_name, int(self.from_seed)),
                ImageId(self.to_name, int(self.to_seed)),
            )
        return resolve(self.from_name, self.from_seed), resolve(self.to_name, self.to_seed)

    def cells(self) -> list[str]:
        return [_cell(getattr(self, column)) for column in self.COLUMNS]


class IntraRow(_TransitionRow):
    """A transition between two images of one scene (intrascene_transitions.csv)."""

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "from_name",
        "from_seed",
        "to_name",
        "to_seed",
        "compute",
        "duration",
        "scene",
        "section",
        "planned",
    )
    scene: str = ""


class InterRow(_TransitionRow):
    """A transition between two consecutive scenes (interscene_transitions.csv)."""

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "from_name",
        "from_seed",
        "to_name",
        "to_seed",
        "compute",
        "duration",
        "scene_from",
        "scene_to",
        "section",
        "planned",
    )
    scene_from: str = ""
    scene_to: str = ""


_TRANSITION_PARSERS: dict[str, Callable[[str], object]] = {
    "from_name": _required,
    "to_name": _required,
    "from_seed": _digits,
    "to_seed": _digits,
    "compute": _compute,
    "planned": lambda raw: _compute(raw) if raw else "y",  # an emptied cell: planned
    "duration": _integer,
    "section": _integer,
}


def _read_transitions(path: Path, model: type[_TransitionRow]) -> list[_TransitionRow]:
    table = _read_table(path, model.COLUMNS)
    table.require(*model.REQUIRED)
    table.check()
    rows = []
    for row, cells in table.rows:
        values = {
            column: table.read(row, cells, column, _TRANSITION_PARSERS.get(column, _text))
            for column in model.COLUMNS
            if column in table.columns
        }
        if not any(p.row == row for p in table.problems):
            rows.append(model(**{k: v for k, v in values.items() if v is not None}, row=row))
    table.check()
    return rows


def read_intrascene(path: Path) -> list[IntraRow]:
    """Read an intrascene_transitions.csv (old or sdmorph's)."""
    return [row for row in _read_transitions(path, IntraRow) if isinstance(row, IntraRow)]


def read_interscene(path: Path) -> list[InterRow]:
    """Read an interscene_transitions.csv (old or sdmorph's)."""
    return [row for row in _read_transitions(path, InterRow) if isinstance(row, InterRow)]


def read_transition_tables(meta_dir: Path) -> tuple[list[IntraRow], list[InterRow]]:
    """Both tables of a song's `transition_meta` folder; a missing file reads as no rows."""
    intra_path, inter_path = Path(meta_dir) / INTRA_FILE, Path(meta_dir) / INTER_FILE
    intra = read_intrascene(intra_path) if intra_path.is_file() else []
    inter = read_interscene(inter_path) if inter_path.is_file() else []
    return intra, inter


def skipped_by_artist(meta_dir: Path, resolve: Resolver | None = None) -> set[Pair]:
    """Transitions (either direction) the tables in `meta_dir` mark `compute = n`.

    With `resolve`, seeds cut to 4 digits are resolved to full seeds; a row naming no
    single image (prompt gone, ambiguous prefix) is left out: it cannot be matched.
    """
    return set(_artist_skips(meta_dir, resolve))


def _artist_skips(meta_dir: Path, resolve: Resolver | None) -> dict[Pair,
                                                                     _TransitionRow]:
    """The `compute = n` rows of both tables, by transition, seeds made full; first row wins."""
    intra, inter = read_transition_tables(meta_dir)
    found: dict[Pair, _TransitionRow] = {}
    for row in [*intra, *inter]:
        if row.compute != "n":
            continue
        try:
            a, b = row.images(resolve)
        except SdmorphError:
            continue
        full = row.model_copy(update={"from_seed": str(a.seed), "to_seed": str(b.seed),
                                      "row": None, "planned": "n"})
        found.setdefault(pair_key(a, b), full)
    return found


def write_transition_tables(
    meta_dir: Path,
    hops: Iterable[Hop],
    frames: int,
    *,
    skipped: Collection[Pair] | None = None,
    resolve: Resolver | None = None,
) -> tuple[list[IntraRow], list[InterRow]]:
    """Write the two tables for `hops` (e.g. all planned paths, chained) into `meta_dir`.

    Each transition appears once, in the direction first seen, with full seeds.
    `compute` is `y`, except for transitions in `skipped` (default: what the existing
    tables mark `n`, read with `resolve`), which stay `n`. `duration` is `frames`.

    Rows the artist set to `n` that this plan does not use are kept after the planned
    rows, as they were (seeds made full): an artist's `n` is never forgotten, so a later
    plan that takes the transition again skips it again. Returns every row written.
    """
    meta_dir = Path(meta_dir)
    remembered = _artist_skips(meta_dir, resolve)
    if skipped is None:
        skipped = set(remembered)
    intra: list[IntraRow] = []
    inter: list[InterRow] = []
    seen: set[Pair] = set()
    for hop in hops:
        key = pair_key(hop.a, hop.b)
        if key in seen:
            continue
        seen.add(key)
        common = dict(
            from_name=hop.a.prompt,
            from_seed=str(hop.a.seed),
            to_name=hop.b.prompt,
            to_seed=str(hop.b.seed),
            compute="n" if key in skipped else "y",
            duration=frames,
            section=hop.section,
        )
        if hop.kind == "intra":
            intra.append(IntraRow(**common, scene=hop.scene_from))
        else:
            inter.append(InterRow(**common, scene_from=hop.scene_from, scene_to=hop.scene_to))
    for key, row in remembered.items():
        if key not in seen:
            (intra if isinstance(row, IntraRow) else inter).append(row)  # type: ignore[arg-type]
    _write_table(meta_dir / INTRA_FILE, IntraRow.COLUMNS, (r.cells() for r in intra))
    _write_table(meta_dir / INTER_FILE, InterRow.COLUMNS, (r.cells() for r in inter))
    return intra, inter


# --------------------------------------------------------------- paths and stories


class StoryRow(BaseModel):
    """One transition of a planned path or a story, in playing order."""

    model_config = ConfigDict(frozen=True)

    section: int  # which section's movie the transition goes to
    c1: ImageId
    c2: ImageId
    reversed: bool = False  # the frames are in the folder `c2 to c1` and play backwards
    input_image_folder: str = ""  # as written; only its last component can be trusted
    scene_from: str = ""
    path_section: int | None = None  # the section the planner gave it (sections may be edited)
    scene_to: str = ""
    kind: str = ""  # intra, inter, or "" when the file does not say
    first_frame: int | None = None  # frame range in the combined movie, 0-based, inclusive
    last_frame: int | None = None
    row: int | None = None  # spreadsheet row when read from a file

    @property
    def folder_name(self) -> str:
        """The transition folder's name, the one trustworthy part of `input_image_folder`."""
        return folder_name(self.input_image_folder)

    def cells(self, columns: Sequence[str]) -> list[str]:
        extra = {
            "c1_name": self.c1.prompt,
            "c1_seed": self.c1.seed,
            "c2_name": self.c2.prompt,
            "c2_seed": self.c2.seed,
        }
        return [_cell(extra[c] if c in extra else getattr(self, c)) for c in columns]


PLANNED_COLUMNS = (
    "scene_from",
    "c1",
    "c2",
    "section",
    "reversed",
    "input_image_folder",
    "c1_seed",
    "c2_seed",
    "scene_to",
    "kind",
)
STORY_COLUMNS = (
    "path_section",
    "section",
    "scene_from",
    "c1",
    "c2",
    "reversed",
    "input_image_folder",
    "c1_name",
    "c1_seed",
    "c2_name",
    "c2_seed",
    "first_frame",
    "last_frame",
)
_STORY_KNOWN = tuple(dict.fromkeys(STORY_COLUMNS + PLANNED_COLUMNS))
_STORY_PARSERS: dict[str, Callable[[str], object]] = {
    "section": _required_integer,
    "reversed": _boolean,
    "path_section": _integer,
    "first_frame": _integer,
    "last_frame": _integer,
    "kind": _kind,
}


def story_rows(
    hops: Sequence[Hop],
    locate: Locator,
    frame_ranges: Sequence[tuple[int, int]] | None = None,
) -> list[StoryRow]:
    """Rows for `hops`, with their folders from `locate` and optional movie frame ranges."""
    rows = []
    for index, hop in enumerate(hops):
        folder, backwards = locate(hop.a, hop.b)
        first, last = frame_ranges[index] if frame_ranges is not None else (None, None)
        rows.append(
            StoryRow(
                section=hop.section,
                c1=hop.a,
                c2=hop.b,
                reversed=backwards,
                input_image_folder=str(folder),
                scene_from=hop.scene_from,
                path_section=hop.section,
                scene_to=hop.scene_to,
                kind=hop.kind,
                first_frame=first,
                last_frame=last,
            )
        )
    return rows


def write_planned_path(song_media: Path, hops: Sequence[Hop], locate: Locator) -> Path:
    """Write `story/trans_sequence_gen.csv`, the planned path; returns its path."""
    target = Path(song_media) / PLANNED_FILE
    rows = story_rows(hops, locate)
    _write_table(target, PLANNED_COLUMNS, (row.cells(PLANNED_COLUMNS) for row in rows))
    return target


def story_file(song_media: Path, name: str) -> Path:
    """`stories/<name>/trans_sequence_<name>.csv` (the name made safe for a path)."""
    safe = safe_name(name)
    return Path(song_media) / STORIES_FOLDER / safe / f"trans_sequence_{safe}.csv"


# Columns the old scripts never wrote: a story file holding them was written by sdmorph.
_SDMORPH_STORY_COLUMNS = ("c1_name", "c1_seed", "c2_name", "c2_seed", "first_frame", "last_frame")


def write_story(song_media: Path, name: str, rows: Sequence[StoryRow], *, story: bool = True,
                latest: bool = True) -> Path:
    """Write the story file and/or its copy `story/trans_sequence.csv`; returns the first's path.

    Callers decide which files may be replaced (`written_by_sdmorph`, `keep_latest_story`).
    """
    target = story_file(song_media, name)
    records = [row.cells(STORY_COLUMNS) for row in rows]
    if story:
        _write_table(target, STORY_COLUMNS, records)
    if latest:
        _write_table(Path(song_media) / LATEST_STORY_FILE, STORY_COLUMNS, records)
    return target


def written_by_sdmorph(path: Path) -> bool:
    """Whether a story file has the columns only sdmorph writes.

    A file without them came from the old scripts (or was typed by hand): an artist's work
    that sdmorph must not replace unasked. An unreadable file counts as theirs too.
    """
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return set(_SDMORPH_STORY_COLUMNS) <= {cell.strip() for cell in header}


def keep_latest_story(song_media: Path) -> Path | None:
    """Copy a `story/trans_sequence.csv` sdmorph did not write to
    `story/trans_sequence.before-sdmorph.csv`, once: the first copy kept is the artist's
    original. Returns the copy's path when one was made now."""
    latest = Path(song_media) / LATEST_STORY_FILE
    backup = Path(song_media) / LATEST_STORY_BACKUP
    if not latest.is_file() or backup.exists() or written_by_sdmorph(latest):
        return None
    with writing(latest, "cannot read it to keep a copy"):
        data = latest.read_bytes()
    write_bytes(backup, data)
    return backup


def read_story(path: Path, resolve: Resolver) -> list[StoryRow]:
    """Read any story file: sdmorph's, the planned path, or the old hand-edited ones.

    Images come from `c1`/`c2` (`<prompt>-<seed>`, seeds possibly cut to 4 digits),
    checked against `c1_name`/`c1_seed`... where present, and resolved by `resolve`.
    Every bad cell is reported at once, by row and column.
    """
    table = _read_table(path, _STORY_KNOWN)
    table.require("section", "reversed")
    for which in ("c1", "c2"):
        if which not in table.columns and f"{which}_name" not in table.columns:
            table.require(which)
    table.check()
    rows = [_story_row(table, row, cells, resolve) for row, cells in table.rows]
    table.check()
    return [row for row in rows if row is not None]


def _story_row(
    table: _Table, row: int, cells: dict[str, str], resolve: Resolver
) -> StoryRow | None:
    values = {
        column: table.read(row, cells, column, _STORY_PARSERS.get(column, _text))
        for column in (
            "section",
            "reversed",
            "input_image_folder",
            "scene_from",
            "path_section",
            "scene_to",
            "kind",
            "first_frame",
            "last_frame",
        )
        if column in table.columns
    }
    images = {which: _story_image(table, row, cells, which, resolve) for which in ("c1", "c2")}
    if any(p.row == row for p in table.problems):
        return None
    return StoryRow(**values, **images, row=row)


def _story_image(
    table: _Table, row: int, cells: dict[str, str], which: str, resolve: Resolver
) -> ImageId | None:
    try:
        prompt, digits = _image_parts(cells, which)
    except _BadCell as exc:
        table.bad(row, which, str(exc))
        return None
    try:
        return resolve(prompt, digits)
    except SdmorphError as exc:
        table.bad(row, which, str(exc))
        return None


def _image_parts(cells: dict[str, str], which: str) -> tuple[str, str]:
    """(prompt, seed digits) of `c1`/`c2`; `<which>_name`/`_seed`, where given, must agree."""
    label, name = cells.get(which, ""), cells.get(f"{which}_name", "")
    seed = cells.get(f"{which}_seed", "")
    if seed and not _is_seed(seed):
        raise _BadCell(f"{which}_seed {seed!r} is not a seed (digits only)")
    if not label:
        if name and seed:
            return name, seed
        raise _BadCell("empty (an image written <prompt>-<seed> is needed)")
    if seed and (not label.endswith(f"-{seed}") or len(label) <= len(seed) + 1):
        raise _disagree(label, which, name, seed)
    prompt, digits = (label[: -len(seed) - 1], seed) if seed else split_label(label)
    if name and name != prompt:
        raise _disagree(label, which, name, seed)
    return prompt, digits


def _disagree(label: str, which: str, name: str, seed: str) -> _BadCell:
    given = " and ".join(
        f"{which}_{key} {value!r}" for key, value in (("name", name), ("seed", seed)) if value
    )
    return _BadCell(
        f"{label!r} does not match {given}: correct one of them, "
        f"or clear {which}_name and {which}_seed"
    )
