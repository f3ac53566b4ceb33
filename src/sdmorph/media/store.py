"""The transition store: folders of rendered frames under `<media_dir>/<song>/transition_images/`.

Two kinds of folder live side by side. sdmorph's own carry a `.sdmorph-partial.json` marker
while rendering and a `manifest.json` (written last) once complete; the manifest names both
images with full seeds and the recipe they were rendered with. Legacy folders, left by the
old scripts, carry only frames and a name with seeds cut to 4 digits (see `sdmorph.formats.legacy`).
sdmorph never writes into a legacy folder, apart from the manifest `adopt` adds beside it.

A legacy frame counts only if it is an intact PNG: it must start with the signature, end
with the IEND chunk (half-downloaded files from cloud drives are cut short, or zero-filled
past the downloaded part) and every chunk's CRC must match (Pillow's `verify`: a whole-length
file with a zeroed or damaged middle fails it, where it would otherwise fail only later, in
`movie`, with no command able to fix it). The CRC check reads every byte but inflates
nothing: about 0.2 ms for a 512x512 frame, a twentieth of a full decode, so a first scan of
2,000 legacy transitions of 60 frames stays in seconds. The verdicts are cached by (size,
mtime_ns, ctime_ns) in `<song>/.sdmorph/framecheck.json`: a later scan only stats the files
(and never makes a cloud drive download them again). sdmorph's own folders are judged by
their manifest and by structure only: their frames are written atomically, so they are never
half-written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from sdmorph import __version__
from sdmorph.core.errors import RenderError, SdmorphError
from sdmorph.core.ids import Ends, ImageId, Pair, pair_key, transition_name
from sdmorph.formats.fsio import (
    MAX_NAME_BYTES,
    TMP_MARK,
    WriteError,
    clean_temp_files,
    inside,
    is_temp,
    make_dirs,
    safe_name,
    shorten,
    try_locked,
    write_text,
    writing,
)
from sdmorph.formats.legacy import Unparsed, frame_files, frame_index, frame_name, parse_legacy_name
from sdmorph.formats.recipe import recipe_key

TRANSITIONS_DIR = "transition_images"
MANIFEST_NAME = "manifest.json"
PARTIAL_NAME = ".sdmorph-partial.json"
LOCKS_DIR = ".locks"
FRAMECHECK_PATH = Path(".sdmorph") / "framecheck.json"
# Probe renders of an even-paced transition, kept while it renders (named by t in 1/2^20);
# removed before its manifest is written.
PROBE_PREFIX = ".sdmorph-probe-"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
# Signature, IHDR chunk and IEND chunk: no complete PNG is shorter.
_PNG_MIN_BYTES = 8 + 25 + 12
# 2: verdicts check every chunk's CRC (version 1 only checked the head and tail bytes).
# 3: keyed by ctime as well.
_CACHE_VERSION = 3
# What Pillow raises for a file that is not a decodable image.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)

Kind = Literal["sdmorph", "legacy"]
State = Literal["complete", "incomplete", "stale", "unparseable", "ambiguous", "in-progress"]


def png_complete(path: Path) -> bool:
    """True if `path` is a whole PNG file: right signature, ends with the IEND chunk."""
    try:
        with open(path, "rb") as fh:
            if fh.read(8) != PNG_SIGNATURE:
                return False
            size = fh.seek(0, os.SEEK_END)
            if size < _PNG_MIN_BYTES:
                return False
            fh.seek(size - len(PNG_IEND))
            return fh.read(len(PNG_IEND)) == PNG_IEND
    except OSError:
        return False


def png_decodes(path: Path) -> bool:
    """True if `path` is a whole PNG (see `png_complete`) whose every chunk checks out."""
    if not png_complete(path):
        return False  # cheap, and catches a missing IEND, which `verify` never reads
    try:
        with Image.open(path) as image:
            if image.format != "PNG":
                return False
            image.verify()  # chunk CRCs over every byte, without inflating the pixels
    except _DECODE_ERRORS:
        return False
    return True


class ManifestImage(BaseModel):
    """One end of a transition, with its full seed."""

    model_config = ConfigDict(frozen=True)

    prompt: str
    seed: int

    @model_validator(mode="before")
    @classmethod
    def _from_image_id(cls, data: Any) -> Any:
        if isinstance(data, ImageId):
            return {"prompt": data.prompt, "seed": data.seed}
        return data

    @property
    def image_id(self) -> ImageId:
        return ImageId(self.prompt, self.seed)


class SharingRecord(BaseModel):
    """How a transition rendered with `sharing` > 0 was denoised (see sdmorph.core.sharing):
    the iteration each level joined at, and what an unbroken render of it cost per frame of
    the transition (its keyframes' second denoising included)."""

    join_steps: dict[str, int]  # level ("3": 3 and up) -> the iteration its frames joined at
    iterations: int = Field(ge=1)  # UNet iterations of a full render
    unet_passes_per_frame: float = Field(ge=0)
    vae_decodes_per_frame: float = Field(ge=0)


class TransitionManifest(BaseModel):
    """`manifest.json` of a transition folder (and, incomplete, its partial marker)."""

    from_image: ManifestImage
    to_image: ManifestImage
    recipe: dict[str, Any] = Field(default_factory=dict)
    frames: int = Field(ge=0)
    # Not part of the recipe: other batch sizes differ at most in the last bit of a pixel.
    # Recorded so that a resumed render keeps the batches it started with, byte for byte.
    batch_size: int | None = Field(default=None, ge=1)
    # Even pacing only: each frame's t, chosen from probe renders (see sdmorph.core.pacing).
    # Absent for linear pacing (t evenly spaced), so such manifests are as they always were.
    times: list[float] | None = None
    sharing: SharingRecord | None = None  # absent unless rendered with sharing > 0
    sdmorph_version: str = __version__
    kind: Kind = "sdmorph"
    complete: bool = False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def recipe_key(self) -> str:
        """Hash of `recipe`: written to the file for readers, always recomputed from it."""
        return recipe_key(self.recipe)

    @property
    def pair(self) -> tuple[ImageId, ImageId]:
        return self.from_image.image_id, self.to_image.image_id

    @classmethod
    def read(cls, path: Path) -> TransitionManifest:
        """Load a manifest; raises OSError or ValueError (pydantic's included) if unusable."""
        return cls.model_validate_json(path.read_bytes())

    def write(self, path: Path) -> None:
        unset = {name for name in ("times", "sharing") if getattr(self, name) is None}
        write_text(path, self.model_dump_json(indent=2, exclude=unset or None) + "\n")


@dataclass(frozen=True)
class FolderInfo:
    """What `scan` found in one folder of the store."""

    path: Path
    kind: Kind
    a: ImageId | None
    b: ImageId | None
    state: State
    frames_found: int
    reason: str = ""
    manifest: TransitionManifest | None = None

    @property
    def name(self) -> str:
        return self.path.name


class Found(NamedTuple):
    """A complete folder serving a transition; `reversed`: play its frames backwards."""

    folder: Path
    reversed: bool
    kind: Kind


class FrameCheckCache:
    """Remembers which frame files decode as PNGs, keyed by (size, mtime_ns, ctime_ns)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._folders: dict[str, dict[str, list[int]]] | None = None
        self._dirty = False

    def _data(self) -> dict[str, dict[str, list[int]]]:
        if self._folders is None:
            self._folders = self._load()
        return self._folders

    def _load(self) -> dict[str, dict[str, list[int]]]:
        try:
            raw = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return {}  # no cache yet, or a damaged one: it is only a cache
        if not isinstance(raw, dict) or raw.get("version") != _CACHE_VERSION:
            return {}
        folders = raw.get("folders")
        return folders if isinstance(folders, dict) else {}

    def complete(self, frame: Path) -> bool:
        """Whether `frame` is a PNG that decodes, read from disk only if it changed."""
        try:
            st = frame.stat()
        except OSError:
            return False
        entries = self._data().setdefault(frame.parent.name, {})
        known = entries.get(frame.name)
        # ctime too: a frame repaired by `cp -p` or `rsync -a` keeps its size and mtime,
        # but writing it changed its ctime, so it is checked again.
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        if isinstance(known, list) and known[:3] == stamp:
            return bool(known[3])
        ok = png_decodes(frame)
        entries[frame.name] = [*stamp, int(ok)]
        self._dirty = True
        return ok

    def prune(self, folder_names: set[str]) -> None:
        """Forget folders that no longer exist."""
        data = self._data()
        for gone in set(data) - folder_names:
            del data[gone]
            self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        payload = {"version": _CACHE_VERSION, "folders": self._data()}
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        with contextlib.suppress(OSError):  # a read-only media folder still scans, uncached
            write_text(self.path, text)
            self._dirty = False


def _read_manifest(path: Path) -> TransitionManifest | str:
    """The manifest at `path`, or a one-line reason it cannot be used."""
    try:
        return TransitionManifest.read(path)
    except (OSError, ValueError) as err:
        # pydantic puts the field and the problem on the lines after its summary.
        lines = [line.strip() for line in str(err).strip().splitlines()[:3]]
        return f"{path.name} is unreadable: {' '.join(lines) or type(err).__name__}"


def _frames_problem(frames: list[Path], expected: int) -> str:
    """Why these frame files are not exactly frame000000..frame{expected-1}; '' if they are."""
    indices = [frame_index(f.name) for f in frames]
    if indices == list(range(expected)):
        return ""
    missing = sorted(set(range(expected)) - set(indices))
    detail = f", first missing {frame_name(missing[0])}" if missing else ""
    return f"{len(frames)} frames, expected {expected}{detail}"


def by_pair(infos: Iterable[FolderInfo]) -> dict[Ends, list[FolderInfo]]:
    """Folders by (from, to), the preferred first: sdmorph's own, then legacy, by name.

    Folders whose images could not be told are left out: they hold no known transition.
    """
    out: dict[Ends, list[FolderInfo]] = {}
    for info in infos:
        if info.a is not None and info.b is not None:
            out.setdefault((info.a, info.b), []).append(info)
    for found in out.values():
        found.sort(key=lambda info: (info.kind != "sdmorph", info.name))
    return out


def complete_pairs(infos: Iterable[FolderInfo]) -> set[Pair]:
    """The transitions (either direction) that some complete folder among `infos` holds."""
    return {pair_key(i.a, i.b) for i in infos
            if i.state == "complete" and i.a is not None and i.b is not None}


class TransitionStore:
    """The transition folders of one song, sdmorph's and the old scripts' alike.

    `find` answers from the result of the last `scan` (run on first use); call `scan`
    again to see folders other processes have written since.
    """

    def __init__(
        self,
        song_media: Path,
        seeds_by_prompt: Mapping[str, Sequence[int]],
        expected_frames: int,
    ) -> None:
        self.song_media = Path(song_media)
        self.root = self.song_media / TRANSITIONS_DIR
        self.seeds_by_prompt = seeds_by_prompt
        self.expected_frames = expected_frames
        self.framecheck = FrameCheckCache(self.song_media / FRAMECHECK_PATH)
        self._infos: dict[str, FolderInfo] | None = None
        self._by_pair: dict[Ends, list[FolderInfo]] | None = None
        self._root_resolved: Path | None = None

    # ----- scanning -------------------------------------------------------------------------

    def scan(self, current_recipe_key: str | None = None) -> list[FolderInfo]:
        """Inspect every folder directly under transition_images (dot-folders excluded)."""
        names = self._folder_names()
        self._infos = {name: self._inspect(self.root / name) for name in names}
        self._by_pair = None
        self.framecheck.prune(set(names))
        self.framecheck.save()
        return [self._judged(info, current_recipe_key) for info in self._infos.values()]

    def _folder_names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        with os.scandir(self.root) as entries:
            names = [e.name for e in entries if not e.name.startswith(".") and e.is_dir()]
        return sorted(names)

    def _inspect(self, folder: Path) -> FolderInfo:
        if (folder / MANIFEST_NAME).is_file():
            return self._inspect_manifest(folder)
        if (folder / PARTIAL_NAME).is_file():
            return self._inspect_partial(folder)
        return self._inspect_legacy(folder)

    def _inspect_manifest(self, folder: Path) -> FolderInfo:
        frames = frame_files(folder)
        manifest = _read_manifest(folder / MANIFEST_NAME)
        if isinstance(manifest, str):
            return FolderInfo(folder, "sdmorph", None, None, "unparseable", len(frames), manifest)
        a, b = manifest.pair
        state, reason = self._manifest_state(manifest, frames)
        return FolderInfo(folder, manifest.kind, a, b, state, len(frames), reason, manifest)

    def _manifest_state(
        self, manifest: TransitionManifest, frames: list[Path]
    ) -> tuple[State, str]:
        if not manifest.complete:
            return "incomplete", "manifest says the render is not complete"
        problem = _frames_problem(frames, manifest.frames)
        if problem:
            return "incomplete", problem
        if manifest.frames == self.expected_frames:
            return "complete", ""
        reason = f"has {manifest.frames} frames, the song now wants {self.expected_frames}"
        # Another frame count is another recipe: sdmorph's own render is stale (render it
        # again); legacy work is kept as it is and simply does not serve this song.
        return ("incomplete" if manifest.kind == "legacy" else "stale"), reason

    def _inspect_partial(self, folder: Path) -> FolderInfo:
        frames = frame_files(folder)
        marker = _read_manifest(folder / PARTIAL_NAME)
        if isinstance(marker, str):
            return FolderInfo(folder, "sdmorph", None, None, "unparseable", len(frames), marker)
        a, b = marker.pair
        reason = f"unfinished render: {len(frames)} of {marker.frames} frames"
        return FolderInfo(folder, "sdmorph", a, b, "in-progress", len(frames), reason, marker)

    def _inspect_legacy(self, folder: Path) -> FolderInfo:
        frames = frame_files(folder)
        parsed = parse_legacy_name(folder.name, self.seeds_by_prompt)
        if isinstance(parsed, Unparsed):
            state: State = "ambiguous" if parsed.ambiguous else "unparseable"
            return FolderInfo(folder, "legacy", None, None, state, len(frames), parsed.reason)
        problem = _frames_problem(frames, self.expected_frames) or self._broken_frames(frames)
        state = "incomplete" if problem else "complete"
        return FolderInfo(folder, "legacy", parsed.a, parsed.b, state, len(frames), problem)

    def _broken_frames(self, frames: list[Path]) -> str:
        broken = [f.name for f in frames if not self.framecheck.complete(f)]
        if not broken:
            return ""
        return (f"{len(broken)} of {len(frames)} frames do not decode (cut short, damaged or "
                f"not PNGs): {broken[0]}")

    @staticmethod
    def _judged(info: FolderInfo, current_recipe_key: str | None) -> FolderInfo:
        """`info`, marked stale if it is sdmorph's and was rendered with another recipe."""
        manifest = info.manifest
        if (
            current_recipe_key is None
            or info.kind != "sdmorph"
            or info.state != "complete"
            or manifest is None
            or manifest.recipe_key == current_recipe_key
        ):
            return info
        reason = f"rendered with another recipe ({manifest.recipe_key[:12]})"
        return dataclasses.replace(info, state="stale", reason=reason)

    def _refresh(self, folder: Path) -> None:
        if self._infos is not None and folder.parent == self.root:
            self._infos[folder.name] = self._inspect(folder)
            self._by_pair = None

    def pair_index(self) -> dict[Ends, list[FolderInfo]]:
        """Every folder by the transition it holds, the preferred one first (`by_pair`)."""
        if self._infos is None:
            self.scan()
        if self._by_pair is None:
            assert self._infos is not None
            self._by_pair = by_pair(self._infos.values())
        return self._by_pair

    def folders_between(self, a: ImageId, b: ImageId) -> list[FolderInfo]:
        """The folders holding a->b, then those holding b->a."""
        index = self.pair_index()
        return [*index.get((a, b), []), *index.get((b, a), [])]

    def complete_pairs(self) -> set[Pair]:
        """Transitions with a complete folder, either direction, whatever recipe rendered them."""
        return complete_pairs(self.scan())

    # ----- finding --------------------------------------------------------------------------

    def find(self, a: ImageId, b: ImageId, current_recipe_key: str | None = None) -> Found | None:
        """A complete folder serving a->b: a->b itself, else b->a played backwards."""
        index = self.pair_index()
        for pair, backwards in (((a, b), False), ((b, a), True)):
            # sdmorph's own render (with the current recipe) first, then legacy, by name.
            usable = [info for info in index.get(pair, [])
                      if self._judged(info, current_recipe_key).state == "complete"]
            if usable:
                return Found(usable[0].path, backwards, usable[0].kind)
        return None

    def locate(self, a: ImageId, b: ImageId, *, rendered: bool = False) -> tuple[Path, bool]:
        """Where a story plays a->b from: (folder, backwards).

        A complete folder either way round; else, unless `rendered` demands one, the folder
        sdmorph will render it into.
        """
        found = self.find(a, b)
        if found is not None:
            return found.folder, found.reversed
        if rendered:
            raise RenderError(f"transition '{transition_name(a, b)}' has no complete folder "
                              "(it vanished while planning?)")
        return self.folder_for(a, b), False

    # ----- rendering into the store ---------------------------------------------------------

    @staticmethod
    def _candidate_names(a: ImageId, b: ImageId) -> list[str]:
        base = safe_name(transition_name(a, b))
        pair_hash = hashlib.sha256(repr((tuple(a), tuple(b))).encode()).hexdigest()[:10]
        return [base, _suffixed(base, " (sdmorph)"), _suffixed(base, f" ~{pair_hash}")]

    def refresh_pair(self, a: ImageId, b: ImageId) -> None:
        """Re-read the folders that may hold a<->b: another process may have finished it."""
        if self._infos is None:
            self.scan()
            return
        for x, y in ((a, b), (b, a)):
            for name in self._candidate_names(x, y):
                if (self.root / name).is_dir():
                    self._refresh(self.root / name)

    def folder_for(self, a: ImageId, b: ImageId) -> Path:
        """Where sdmorph renders a->b: `<a.label> to <b.label>`, never a legacy folder."""
        names = self._candidate_names(a, b)
        paths = [self.root / name for name in names]
        # Resolving is what catches a folder linked to elsewhere; only the answer needs it.
        for path in paths:
            if self._owner(path) == (a, b):
                return self._resolved_child(path)
        for path in paths:
            if _is_free(path):
                return self._resolved_child(path)
        raise RenderError(
            f"{self.root}: no free folder name for transition '{transition_name(a, b)}' "
            f"(tried {', '.join(names)}); move the folders in the way elsewhere"
        )

    def _resolved_child(self, path: Path) -> Path:
        """`path`, a safe name under the root, resolved; links are followed and checked.

        Resolving the root once rather than per folder saves half a second when a story of
        1,000 transitions is written (`inside` resolves both paths every time).
        """
        if path.is_symlink():
            return inside(self.root, path)
        if self._root_resolved is None:
            self._root_resolved = inside(self.root, self.root)
        return self._root_resolved / path.name

    @staticmethod
    def _owner(folder: Path) -> tuple[ImageId, ImageId] | None:
        """The pair of an sdmorph folder (manifest or marker); None for any other folder."""
        for name in (MANIFEST_NAME, PARTIAL_NAME):
            path = folder / name
            if path.is_file():
                manifest = _read_manifest(path)
                if isinstance(manifest, str) or manifest.kind != "sdmorph":
                    return None
                return manifest.pair
        return None

    def frame_path(self, folder: Path, index: int) -> Path:
        """The file of frame `index` (0-based) in `folder`."""
        return folder / frame_name(index)

    @staticmethod
    def probe_path(folder: Path, k: int) -> Path:
        """The file of the probe render at t = k / 2^20 in `folder`."""
        return folder / f"{PROBE_PREFIX}{k:07d}.png"

    @staticmethod
    def remove_probes(folder: Path) -> None:
        """Remove the probe renders of an even-paced render from `folder`."""
        if folder.is_dir():
            for probe in folder.glob(f"{PROBE_PREFIX}*.png"):
                probe.unlink(missing_ok=True)

    def missing_frames(self, folder: Path, n: int) -> list[int]:
        """Indices in 0..n-1 without a complete frame; removes temp files a crash left."""
        clean_temp_files(folder)
        return [i for i in range(n) if not png_complete(self.frame_path(folder, i))]

    def begin(self, folder: Path, manifest: TransitionManifest) -> TransitionManifest:
        """Mark `folder` as an sdmorph render in progress (creating it); returns the marker.

        Frames left from a render with another recipe or frame count are removed, so a
        resumed render never mixes two recipes; frames of the same recipe are kept, and so
        are the batch size they were rendered in and the t's an even-paced render chose (the
        marker's, which the caller must use).
        """
        self._check_writable(folder, manifest)
        previous = self._previous_manifest(folder)
        same = previous is not None and previous.recipe_key == manifest.recipe_key \
            and previous.frames == manifest.frames
        batch = previous.batch_size if same and previous and previous.batch_size else None
        # The t's an even-paced render chose are kept too: its frames were rendered at them.
        times = previous.times if same and previous else None
        marker = manifest.model_copy(update={"complete": False, "kind": "sdmorph",
                                             "batch_size": batch or manifest.batch_size,
                                             "times": times or manifest.times,
                                             "sharing": previous.sharing if same and previous
                                             else manifest.sharing})
        if folder.is_dir():
            clean_temp_files(folder)
            marker.write(folder / PARTIAL_NAME)
        else:
            _create_with(folder, marker)
        # The marker is in place before the old manifest goes: the folder never looks
        # complete while its frames are being replaced.
        (folder / MANIFEST_NAME).unlink(missing_ok=True)
        if previous is not None and not same:
            for frame in frame_files(folder):
                frame.unlink(missing_ok=True)
            self.remove_probes(folder)
        self._refresh(folder)
        return marker

    def _previous_manifest(self, folder: Path) -> TransitionManifest | None:
        for name in (MANIFEST_NAME, PARTIAL_NAME):
            found = _read_manifest(folder / name)
            if not isinstance(found, str):
                return found
        return None

    def _check_writable(self, folder: Path, manifest: TransitionManifest) -> None:
        inside(self.root, folder)
        if folder.parent.resolve() != self.root.resolve():
            raise RenderError(f"{folder}: not a folder directly inside {self.root}")
        if _is_free(folder) or self._owner(folder) == manifest.pair:
            return
        raise RenderError(
            f"{folder}: refusing to write into a folder sdmorph did not create for "
            f"'{transition_name(*manifest.pair)}' (use folder_for to pick the folder)"
        )

    def update_marker(self, folder: Path, marker: TransitionManifest) -> None:
        """Rewrite the partial marker of a render under way (e.g. with the t's it chose)."""
        marker.model_copy(update={"complete": False, "kind": "sdmorph"}).write(
            folder / PARTIAL_NAME)

    def finish(self, folder: Path, manifest: TransitionManifest) -> TransitionManifest:
        """Write manifest.json (complete) once every frame is there; remove the marker."""
        missing = self.missing_frames(folder, manifest.frames)
        if missing:
            shown = ", ".join(frame_name(i) for i in missing[:5])
            raise RenderError(f"{folder}: cannot finish, {len(missing)} frames missing ({shown})")
        done = manifest.model_copy(update={"complete": True, "kind": "sdmorph"})
        # Probes go first: a folder with a manifest never holds them.
        self.remove_probes(folder)
        done.write(folder / MANIFEST_NAME)
        (folder / PARTIAL_NAME).unlink(missing_ok=True)
        self._refresh(folder)
        return done

    def lock_path(self, a: ImageId, b: ImageId) -> Path:
        """The lock file of the transition between a and b, in either direction."""
        first, second = sorted((a, b))
        key = json.dumps([list(first), list(second)], ensure_ascii=False)
        return self.root / LOCKS_DIR / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.lock"

    @contextlib.contextmanager
    def lock(self, a: ImageId, b: ImageId) -> Iterator[bool]:
        """Try to take the a<->b render lock without waiting; yields whether we got it.

        The OS releases it when the holder dies, so a killed render never blocks others.
        """
        with try_locked(self.lock_path(a, b)) as got:
            yield got

    # ----- adopting legacy folders ----------------------------------------------------------

    def write_legacy_manifest(
        self, info: FolderInfo, recipe: Mapping[str, Any] | None = None
    ) -> Path:
        """Add manifest.json (kind legacy) beside a complete legacy folder's frames."""
        fresh = self._inspect(info.path)
        if fresh.kind != "legacy" or fresh.state != "complete" or fresh.a is None:
            raise SdmorphError(
                f"{info.path}: not a complete legacy transition ({fresh.state}"
                f"{': ' + fresh.reason if fresh.reason else ''}); no manifest written"
            )
        assert fresh.b is not None
        manifest = TransitionManifest(
            from_image=fresh.a,
            to_image=fresh.b,
            recipe=dict(recipe or {}),
            frames=fresh.frames_found,
            kind="legacy",
            complete=True,
        )
        target = info.path / MANIFEST_NAME
        manifest.write(target)
        self._refresh(info.path)
        return target


def _create_with(folder: Path, marker: TransitionManifest) -> None:
    """Create `folder` holding the marker, in one rename: a crash or a full disk never
    leaves it empty (an empty folder with a transition's name reads as legacy work)."""
    make_dirs(folder.parent)
    # One staging name per folder: callers hold the pair's lock, so a staging folder that is
    # already there was left by a killed run and can go.
    staging = folder.parent / f".{shorten(folder.name, MAX_NAME_BYTES - 20)}{TMP_MARK}"
    shutil.rmtree(staging, ignore_errors=True)
    with writing(folder, "cannot create the folder"):
        staging.mkdir()
    try:
        marker.write(staging / PARTIAL_NAME)
        with writing(folder, "cannot create the folder"):
            os.rename(staging, folder)
    except WriteError as exc:  # name the folder, not the hidden staging one
        raise WriteError(folder, "cannot create the folder", exc.reason) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _suffixed(base: str, suffix: str) -> str:
    return shorten(base, MAX_NAME_BYTES - len(suffix.encode())) + suffix


def _is_free(folder: Path) -> bool:
    """True if nothing is at `folder`, or only an empty folder (temp files aside)."""
    if not folder.exists():
        return True
    if not folder.is_dir():
        return False
    with os.scandir(folder) as entries:
        return all(is_temp(Path(e.name)) for e in entries)
