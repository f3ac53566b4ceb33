"""`clips.json`: a story's transitions as separate videos, and which can follow which."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from sdmorph.core.errors import MovieError
from sdmorph.core.timeline import CONTAINER, Segment
from sdmorph.formats.fsio import safe_name

CLIPS_JSON = "clips.json"



class NextClip(BaseModel):
    """A clip that can follow another: it starts (or, played backwards, ends) on its last image."""

    clip: str
    reversed: bool


class ClipEntry(BaseModel):
    """One transition written as its own video, for VJ software."""

    model_config = ConfigDict(populate_by_name=True)

    name: str
    files: dict[str, str]  # codec -> path relative to the story folder
    from_: str = Field(alias="from")
    to: str
    scene_from: str = ""  # the scenes of `from` and `to` ("" where the story does not say)
    scene_to: str = ""
    section: int
    frames: int
    index: int  # first position in the story
    indices: list[int]  # every position in the story (a transition can be played twice)
    next: list[NextClip]


class ClipIndex(BaseModel):
    """`clips.json`: the clips of a story and which can follow which."""

    story: str
    fps: float
    clips: list[ClipEntry]

    def dump(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2) + "\n"


def read_clips_json(path: Path) -> ClipIndex:
    """Read a story's clips.json."""
    try:
        return ClipIndex.model_validate_json(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise MovieError(f"{path}: not a readable clips index ({exc})") from exc


def build_clip_index(
    segments: Sequence[Segment],
    story: str,
    fps: float,
    frames: Callable[[Segment], int],
    codecs: Sequence[str],
) -> ClipIndex:
    """One entry per distinct transition; `next` holds every clip that can follow it."""
    entries: dict[str, ClipEntry] = {}
    stems: dict[str, str] = {}
    for index, seg in enumerate(segments):
        if seg.name in entries:
            entries[seg.name].indices.append(index)
            continue
        start, end = seg.labels
        stem = _clip_stem(seg.name, index, stems)
        files = {c: f"clips/{stem}{CONTAINER[c]}" for c in codecs}
        entries[seg.name] = ClipEntry(
            name=seg.name, files=files, from_=start, to=end, scene_from=seg.scene_from,
            scene_to=seg.scene_to, section=seg.section,
            frames=frames(seg), index=index, indices=[index], next=[],
        )
    for entry in entries.values():
        entry.next = [NextClip(clip=o.name, reversed=False) for o in entries.values()
                      if o.from_ == entry.to]
        entry.next += [NextClip(clip=o.name, reversed=True) for o in entries.values()
                       if o.to == entry.to]
    return ClipIndex(story=story, fps=fps, clips=list(entries.values()))


def _clip_stem(name: str, index: int, taken: dict[str, str]) -> str:
    stem = safe_name(name)
    if taken.get(stem, name) != name:  # two names that only differ in unsafe characters
        stem = safe_name(f"{name}~{index}")
    taken[stem] = name
    return stem

