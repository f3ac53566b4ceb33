"""`transitions`: render the in-between frames of planned transitions, resumably.

A transition's frames are t = linspace(0, 1, n) (`pacing: linear`), or with `pacing: even`
the t's `sdmorph.core.pacing` chooses from probe renders, recorded in the manifest. Frames 0
and n-1 are the two keyframes themselves; the frames between are rendered in batches whose
boundaries depend only on n, the batch size and (even pacing) the chosen t's, never on what
is on disk, so a resumed run gives the same bytes.

Even pacing, resumably: probe renders are kept as files in the transition's folder while it
renders. A resumed run loads the probes on disk and renders only the missing ones, in the
very batches of an unbroken run, so the distances, and so the chosen t's, come out the same.
The chosen t's go into the partial marker before the first frame between the keyframes is
written; the probes are removed just before the manifest.

On a Ray cluster of N workers (`Renderer.parallel`), N threads render N transitions at once,
each as a separate sdmorph process would: its own view of the store, its own frame writer,
the same per-transition locks; only the renderer, and so the engine's workers, is shared.
"""

from __future__ import annotations

import copy
import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from PIL import Image

from sdmorph import __version__
from sdmorph.core import pacing, sharing
from sdmorph.core.errors import RenderError, SdmorphError
from sdmorph.core.ids import Ends, ImageId, pair_key, transition_name
from sdmorph.core.paths import Hop
from sdmorph.core.progress import SILENT, Listener
from sdmorph.media.frame_distance import distance, features
from sdmorph.media.store import (
    MANIFEST_NAME,
    PARTIAL_NAME,
    SharingRecord,
    TransitionManifest,
    TransitionStore,
)
from sdmorph.render.engine import DarkFrameError
from sdmorph.render.renderer import FrameWriter, Renderer, png_info
from sdmorph.render.shared import SharedTree, check_engine, join_steps
from sdmorph.stages.keyframes import render_keyframes
from sdmorph.stages.plan import draw_graphs

Status = Literal["rendered", "done", "legacy", "skipped", "stale", "incomplete-legacy", "busy",
                 "failed"]


class TransitionError(RenderError):
    """One transition failed (a dark frame, no folder to render into...); others can go on.

    Errors that concern the whole run (out of memory, a full disk, Ctrl-C) are not
    TransitionErrors: they still stop it.
    """


class _Stopped(Exception):  # noqa: N818 - not an error
    """Raised in a rendering thread, between two batches, when the run is stopping."""


@dataclass
class Outcome:
    a: ImageId
    b: ImageId
    status: Status
    frames: int = 0
    folder: Path | None = None
    reason: str = ""


@dataclass
class RenderReport:
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0
    unet_passes: int = 0  # UNet evaluations of this run (CFG counts the negative pass)
    vae_decodes: int = 0  # latents the VAE decoded (probes and shared keyframe trees too)
    model_frames: int = 0  # frames the model rendered (keyframes included)

    @property
    def passes_per_frame(self) -> float:
        """UNet passes per frame written (probes and shared trees are paid by the frames)."""
        return self.unet_passes / self.frames if self.frames else 0.0

    @property
    def decodes_per_frame(self) -> float:
        return self.vae_decodes / self.frames if self.frames else 0.0

    def count(self, *statuses: str) -> int:
        return sum(1 for o in self.outcomes if o.status in statuses)

    def having(self, *statuses: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.status in statuses]

    @property
    def frames(self) -> int:
        return sum(o.frames for o in self.outcomes)


def interior_batches(frames: int, batch_size: int) -> list[list[int]]:
    """Indices 1..n-2 in fixed batches (the ends are the keyframes)."""
    inner = list(range(1, frames - 1))
    return [inner[i : i + batch_size] for i in range(0, len(inner), batch_size)]


@dataclass
class TransitionRenderer:
    """Renders transitions of one song into its store."""

    renderer: Renderer
    store: TransitionStore
    frames: int
    batch_size: int
    force: bool = False
    on_frames: Callable[[int], None] | None = None

    def refresh(self) -> None:
        """Re-read the store (another process may have finished transitions meanwhile)."""
        self.store.scan()

    def fork(self, stop: threading.Event) -> TransitionRenderer:
        """The same renderer for another thread: its own copy of the store's last scan (a
        store is not thread-safe; the copy sees other threads' folders as it would another
        process's, under the pair locks), ending its render at the next batch once `stop`
        is set."""
        def on_frames(n: int) -> None:
            if self.on_frames:
                self.on_frames(n)
            if stop.is_set():
                raise _Stopped

        return dataclasses.replace(self, store=copy.deepcopy(self.store), on_frames=on_frames)

    def key(self, a: ImageId, b: ImageId) -> str:
        return TransitionManifest(from_image=a, to_image=b, frames=self.frames,
                                  recipe=self.renderer.transition_recipe(a, b, self.frames)
                                  ).recipe_key

    def blocked(self, a: ImageId, b: ImageId) -> Outcome | None:
        """Why not to render a->b: already done, stale or an incomplete legacy folder."""
        for x, y in ((a, b), (b, a)):
            found = self.store.find(x, y, self.key(x, y))
            if found is not None:
                status: Status = "legacy" if found.kind == "legacy" else "done"
                return Outcome(a, b, status, folder=found.folder)
        if self.force:
            return None
        for info in self.store.folders_between(a, b):
            if info.state == "stale" or (info.kind == "sdmorph" and info.state == "complete"):
                return Outcome(a, b, "stale", folder=info.path,
                               reason=info.reason or "rendered with other settings")
            if info.kind == "legacy" and info.state == "incomplete":
                return Outcome(a, b, "incomplete-legacy", folder=info.path, reason=info.reason)
        return None

    def render(self, a: ImageId, b: ImageId, writer: FrameWriter) -> Outcome:
        blocked = self.blocked(a, b)
        if blocked is not None:
            self._tidy(a, b, blocked)
            return blocked
        with self.store.lock(a, b) as got:
            if not got:
                return Outcome(a, b, "busy", reason="another sdmorph process is rendering it")
            # Another process may have finished it between our scan and taking the lock.
            self.store.refresh_pair(a, b)
            return self.blocked(a, b) or self._render_locked(a, b, writer)

    def _tidy(self, a: ImageId, b: ImageId, done: Outcome) -> None:
        """Drop the partial marker of a finished render killed between its last two steps
        (manifest written, marker not yet removed), under the pair's lock."""
        if done.status != "done" or done.folder is None or \
                not (done.folder / PARTIAL_NAME).is_file():
            return
        with self.store.lock(a, b) as got:
            if got and _finished_marker(done.folder):
                (done.folder / PARTIAL_NAME).unlink(missing_ok=True)

    def _render_locked(self, a: ImageId, b: ImageId, writer: FrameWriter) -> Outcome:
        recipe = self.renderer.transition_recipe(a, b, self.frames)
        manifest = TransitionManifest(from_image=a, to_image=b, recipe=recipe, frames=self.frames,
                                      batch_size=self.batch_size)
        with _this_pair(a, b):
            folder = self.store.folder_for(a, b)
            manifest = self.store.begin(folder, manifest)
        missing = set(self.store.missing_frames(folder, self.frames))
        written = self._write_ends(folder, a, b, missing, writer)
        # A resumed render keeps the batches it began with (see TransitionManifest.batch_size).
        batch_size = manifest.batch_size or self.batch_size
        if self.renderer.song.profile.sharing > 0:
            manifest, written_between = self._render_shared(folder, a, b, manifest, missing,
                                                            writer, batch_size)
        elif self.renderer.song.profile.pacing == "even":
            manifest, written_between = self._render_even(folder, a, b, manifest, missing,
                                                          writer, batch_size)
        else:
            times = self.renderer.transition_times(self.frames)
            written_between = self._render_frames(folder, a, b, times,
                                                  interior_batches(self.frames, batch_size),
                                                  missing, writer)
        written += written_between
        writer.flush()
        with _this_pair(a, b):
            self.store.finish(folder, manifest)
        return Outcome(a, b, "rendered", frames=written, folder=folder)

    def _render_frames(self, folder: Path, a: ImageId, b: ImageId, times: Sequence[float],
                       batches: Sequence[Sequence[int]], missing: set[int],
                       writer: FrameWriter) -> int:
        """Render the batches of frame indices that hold a missing frame; frames written."""
        written = 0
        for batch in batches:
            todo = [i for i in batch if i in missing]
            if not todo:
                continue
            pictures = self._pictures(a, b, [times[i] for i in batch],
                                      [f"frame {i}" for i in batch])
            for index, picture in zip(batch, pictures, strict=True):
                if index in missing:
                    writer.put(self.store.frame_path(folder, index), picture,
                               png_info(self._frame_text(a, b, index, times[index])))
            written += len(todo)
            if self.on_frames:
                self.on_frames(len(todo))
        return written

    def _pictures(self, a: ImageId, b: ImageId, times: Sequence[float],
                  labels: Sequence[str]) -> list[Image.Image]:
        """Render the frames at `times` as one batch; a dark frame is named by its label."""
        try:
            return self.renderer.render([self.renderer.frame_input(a, b, t) for t in times])
        except DarkFrameError as exc:
            raise TransitionError(f"transition '{transition_name(a, b)}' "
                                  f"{labels[exc.position]} came out {exc.what}; {exc.hint}"
                                  ) from None

    # ------------------------------------------------------------ even pacing

    def _render_even(self, folder: Path, a: ImageId, b: ImageId,
                     manifest: TransitionManifest, missing: set[int], writer: FrameWriter,
                     batch_size: int) -> tuple[TransitionManifest, int]:
        """Probe and choose the t's (a resumed render: load the probes, keep the marker's
        t's), then write the frames between the keyframes: a probe's render where a t is a
        probe's, a render of their own, in fixed batches, elsewhere."""
        inner = range(1, self.frames - 1)
        if manifest.times is not None and not any(i in missing for i in inner):
            return manifest, 0  # finished but for the manifest (the probes may be gone)
        probes: dict[int, Image.Image] = {}
        grid = self._probe(folder, a, b, writer, batch_size, probes)
        if manifest.times is None:
            writer.flush()  # every probe on disk before the marker names the t's
            manifest = manifest.model_copy(update={"times": [pacing.as_t(k) for k in grid]})
            self.store.update_marker(folder, manifest)
        else:
            grid = [round(t * pacing.GRID) for t in manifest.times]
        times = [pacing.as_t(k) for k in grid]
        copied = [i for i in inner if grid[i] in probes and i in missing]
        for i in copied:
            writer.put(self.store.frame_path(folder, i), probes[grid[i]],
                       png_info(self._frame_text(a, b, i, times[i])))
        if self.on_frames and copied:
            self.on_frames(len(copied))
        rendered = [i for i in inner if grid[i] not in probes]
        batches = [rendered[j : j + batch_size] for j in range(0, len(rendered), batch_size)]
        written = self._render_frames(folder, a, b, times, batches, missing, writer)
        return manifest, written + len(copied)

    def _probe(self, folder: Path, a: ImageId, b: ImageId, writer: FrameWriter,
               batch_size: int, probes: dict[int, Image.Image],
               tree: SharedTree | None = None) -> list[int]:
        """Render the probe rounds (loading those on disk) and choose the frames' t's."""
        feats = {0: features(self.renderer.keyframe(a)),
                 pacing.GRID: features(self.renderer.keyframe(b))}
        budget = pacing.probe_budget(self.frames)
        todo, spent = pacing.initial_probes(budget), 0
        steps: dict[tuple[int, int], float] = {}
        while True:
            found = (self._probe_round(folder, a, b, todo, writer, batch_size) if tree is None
                     else self._grown(tree, sharing.between(tree.levels, todo), batch_size))
            for k, picture in found:
                probes[k] = picture
                feats[k] = features(picture)
            spent += len(todo)
            points = sorted(feats)
            for x, y in zip(points, points[1:], strict=False):
                if (x, y) not in steps:  # only the new intervals are measured
                    steps[x, y] = distance(feats[x], feats[y])
            d = [steps[x, y] for x, y in zip(points, points[1:], strict=False)]
            todo = pacing.next_probes(points, d, budget - spent)
            if not todo:
                return pacing.even_times(points, d, self.frames)

    def _probe_round(self, folder: Path, a: ImageId, b: ImageId, ks: Sequence[int],
                     writer: FrameWriter, batch_size: int) -> list[tuple[int, Image.Image]]:
        """One round of probes: loaded from disk, or rendered in the round's fixed batches."""
        out: list[tuple[int, Image.Image]] = []
        for start in range(0, len(ks), batch_size):
            batch = list(ks[start : start + batch_size])
            stored = [_load(self.store.probe_path(folder, k)) for k in batch]
            if all(picture is not None for picture in stored):
                out += [(k, p) for k, p in zip(batch, stored, strict=True) if p is not None]
                continue
            pictures = self._pictures(a, b, [pacing.as_t(k) for k in batch],
                                      [f"probe at t={pacing.as_t(k):.6f}" for k in batch])
            for k, picture in zip(batch, pictures, strict=True):
                writer.put(self.store.probe_path(folder, k), picture)
            out += list(zip(batch, pictures, strict=True))
        return out

    # ------------------------------------------------------------ shared denoising

    def _render_shared(self, folder: Path, a: ImageId, b: ImageId,
                       manifest: TransitionManifest, missing: set[int], writer: FrameWriter,
                       batch_size: int) -> tuple[TransitionManifest, int]:
        """Render the in-betweens as a tree of shared denoising (sdmorph.core.sharing).

        The tree is grown again on a resumed render (its states live in memory), in the same
        batches, so its frames come out the same; only missing frames are written. What an
        unbroken render costs goes into the partial marker before the first frame between
        the keyframes (with the t's, for even pacing), so a resumed one records the same.
        """
        inner = range(1, self.frames - 1)
        if manifest.sharing is not None and not any(i in missing for i in inner):
            return manifest, 0  # finished but for the manifest
        keep = self._join_steps()
        if self.renderer.song.profile.pacing == "even":
            tree = SharedTree(self.renderer, a, b, pacing.as_t, keep)
            return self._shared_even(tree, folder, a, b, manifest, missing, writer, batch_size)
        times = self.renderer.transition_times(self.frames)
        branches = sharing.bisection(self.frames)
        if manifest.sharing is None:
            counter = SharedTree(self.renderer, a, b, times.__getitem__, keep)
            counter.roots(0, self.frames - 1, render=False)
            for batch in _level_batches(branches, batch_size):
                counter.count(batch)
            manifest = self._with_record(folder, manifest, counter)
        tree = SharedTree(self.renderer, a, b, times.__getitem__, keep)
        tree.roots(0, self.frames - 1)
        return manifest, self._shared_linear(tree, branches, folder, a, b, missing, writer,
                                             batch_size)

    def _with_record(self, folder: Path, manifest: TransitionManifest, tree: SharedTree,
                     update: dict[str, object] | None = None) -> TransitionManifest:
        record = SharingRecord.model_validate(tree.record(self.frames))
        manifest = manifest.model_copy(update={**(update or {}), "sharing": record})
        self.store.update_marker(folder, manifest)
        return manifest

    def _join_steps(self) -> set[int]:
        engine = self.renderer.engine
        iterations = engine.iterations(self.renderer.song.profile.num_inference_steps)  # type: ignore[union-attr]
        return set(join_steps(self.renderer.song.profile.sharing, iterations).values())

    def _shared_linear(self, tree: SharedTree, branches: Sequence[sharing.Branch],
                       folder: Path, a: ImageId, b: ImageId, missing: set[int],
                       writer: FrameWriter, batch_size: int) -> int:
        """The bisection tree; a batch is grown when a missing frame needs it (itself or as
        an ancestor)."""
        needed = sharing.with_ancestors(branches, missing)
        times = self.renderer.transition_times(self.frames)
        written = 0
        for batch in _level_batches(branches, batch_size):
            if not needed.intersection(br.key for br in batch):
                continue
            pictures = self._grow(tree, a, b, batch)
            here = [(br.key, p) for br, p in zip(batch, pictures, strict=True)
                    if br.key in missing]
            for index, picture in here:
                writer.put(self.store.frame_path(folder, index), picture,
                           png_info(self._frame_text(a, b, index, times[index])))
            written += len(here)
            if self.on_frames and here:
                self.on_frames(len(here))
        return written

    def _shared_even(self, tree: SharedTree, folder: Path, a: ImageId, b: ImageId,
                     manifest: TransitionManifest, missing: set[int], writer: FrameWriter,
                     batch_size: int) -> tuple[TransitionManifest, int]:
        """Probes grown between their nearest rendered neighbours, then the frames between
        the nearest probes or keyframes; the chosen t's go into the marker as without
        sharing, with what the whole tree costs."""
        tree.roots(0, pacing.GRID)
        probes: dict[int, Image.Image] = {}
        grid = self._probe(folder, a, b, writer, batch_size, probes, tree)
        if manifest.times is not None:
            grid = [round(t * pacing.GRID) for t in manifest.times]
        index_of = {grid[i]: i for i in range(1, self.frames - 1)}
        finals = sharing.between(tree.levels, [k for k in index_of if k not in probes],
                                 chain=False)
        if manifest.times is None or manifest.sharing is None:
            for batch in _level_batches(finals, batch_size):
                tree.count(batch)
            manifest = self._with_record(folder, manifest, tree,
                                         {"times": [pacing.as_t(k) for k in grid]})
        pictures = dict(probes)
        pictures.update(self._grown(tree, finals, batch_size))
        todo = [i for i in range(1, self.frames - 1) if i in missing]
        for i in todo:
            writer.put(self.store.frame_path(folder, i), pictures[grid[i]],
                       png_info(self._frame_text(a, b, i, pacing.as_t(grid[i]))))
        if self.on_frames and todo:
            self.on_frames(len(todo))
        return manifest, len(todo)

    def _grown(self, tree: SharedTree, branches: Sequence[sharing.Branch],
               batch_size: int) -> list[tuple[int, Image.Image]]:
        """Grow every branch, a level at a time in batches; (key, picture) pairs."""
        out: list[tuple[int, Image.Image]] = []
        for batch in _level_batches(branches, batch_size):
            pictures = self._grow(tree, tree.a, tree.b, batch)
            out += [(br.key, p) for br, p in zip(batch, pictures, strict=True)]
        return out

    def _grow(self, tree: SharedTree, a: ImageId, b: ImageId,
              batch: Sequence[sharing.Branch]) -> list[Image.Image]:
        try:
            return tree.grow(batch)
        except DarkFrameError as exc:
            t = tree.where(batch[exc.position].key)
            raise TransitionError(f"transition '{transition_name(a, b)}' frame at t={t:.6f} "
                                  f"came out {exc.what}; {exc.hint}") from None

    def _write_ends(self, folder: Path, a: ImageId, b: ImageId, missing: set[int],
                    writer: FrameWriter) -> int:
        ends = {0: a, self.frames - 1: b}
        written = 0
        for index, image in ends.items():
            if index in missing:
                # A copy: Pillow's save sets attributes on the image, and transitions that
                # share a keyframe may be written by several threads at once.
                writer.put(self.store.frame_path(folder, index),
                           self.renderer.keyframe(image).copy(),
                           png_info(self._frame_text(a, b, index, float(index > 0))))
                written += 1
        if self.on_frames and written:
            self.on_frames(written)
        return written

    def _frame_text(self, a: ImageId, b: ImageId, index: int, t: float) -> dict[str, object]:
        """The frame's recipe: the shared settings, both images and where it lies (t)."""
        recipe = self.renderer.transition_recipe(a, b, self.frames)
        return {**self.renderer.settings(), "transition": transition_name(a, b),
                "from": recipe["from"], "to": recipe["to"], "frame": index, "t": f"{t:.6f}",
                "sdmorph_version": __version__}


def _level_batches(branches: Sequence[sharing.Branch],
                   batch_size: int) -> list[list[sharing.Branch]]:
    """Branches (sorted by level) in batches of one level each, at most `batch_size` long."""
    out: list[list[sharing.Branch]] = []
    for branch in branches:
        if out and out[-1][0].level == branch.level and len(out[-1]) < batch_size:
            out[-1].append(branch)
        else:
            out.append([branch])
    return out


@contextmanager
def _this_pair(a: ImageId, b: ImageId) -> Iterator[None]:
    """The store's RenderErrors (no free folder name, a folder it may not write into, frames
    gone missing) concern this pair only; its WriteErrors (disk full...) stop the run."""
    try:
        yield
    except RenderError as exc:
        name = transition_name(a, b)
        raise TransitionError(str(exc) if name in str(exc) else f"transition '{name}': {exc}"
                              ) from None


def _load(path: Path) -> Image.Image | None:
    """A probe written earlier (whole PNGs only: writes are atomic), or None."""
    try:
        with Image.open(path) as stored:
            stored.load()
            return stored.convert("RGB")
    except (OSError, ValueError, SyntaxError):
        return None


def _finished_marker(folder: Path) -> bool:
    """Whether the folder's partial marker is of the very render its manifest completed."""
    try:
        done = TransitionManifest.read(folder / MANIFEST_NAME)
        marker = TransitionManifest.read(folder / PARTIAL_NAME)
    except (OSError, ValueError):
        return False
    return done.complete and (done.recipe_key, done.frames, done.pair) == (
        marker.recipe_key, marker.frames, marker.pair)


def render_all(
    tr: TransitionRenderer, pairs: Sequence[tuple[ImageId, ImageId]],
    on_transition: Callable[[Outcome], None] | None = None,
    skipped: Sequence[tuple[ImageId, ImageId]] = (),
) -> RenderReport:
    """Render every pair not done yet, in order (on a cluster, as many at once as it has
    workers), and list `skipped` (compute = n) as such.

    A transition that fails is recorded as failed and the others go on; errors of the
    whole run (out of memory, disk full, Ctrl-C) stop it, keeping what is done.
    `on_transition` and the renderer's `on_frames` are called from the thread that renders
    the transition.
    """
    started = time.perf_counter()
    report = RenderReport([Outcome(a, b, "skipped", reason="compute = n") for a, b in skipped])
    engine = tr.renderer.engine
    passes, frames, decodes = engine.unet_evals, engine.frames_rendered, engine.vae_decodes
    tr.refresh()
    workers = min(tr.renderer.parallel, len(pairs))
    if workers > 1:
        report.outcomes += _render_on_workers(tr, pairs, on_transition, workers)
    else:
        report.outcomes += _render_in_turn(tr, pairs, on_transition)
    report.seconds = time.perf_counter() - started
    report.unet_passes = engine.unet_evals - passes
    report.model_frames = engine.frames_rendered - frames
    report.vae_decodes = engine.vae_decodes - decodes
    return report


def _render_one(tr: TransitionRenderer, a: ImageId, b: ImageId,
                writer: FrameWriter) -> Outcome:
    try:
        return tr.render(a, b, writer)
    except TransitionError as exc:
        return Outcome(a, b, "failed", reason=str(exc))


def _render_in_turn(tr: TransitionRenderer, pairs: Sequence[tuple[ImageId, ImageId]],
                    on_transition: Callable[[Outcome], None] | None) -> list[Outcome]:
    outcomes = []
    with FrameWriter() as writer:
        for a, b in pairs:
            outcomes.append(_render_one(tr, a, b, writer))
            if on_transition:
                on_transition(outcomes[-1])
    return outcomes


def _render_on_workers(tr: TransitionRenderer, pairs: Sequence[tuple[ImageId, ImageId]],
                       on_transition: Callable[[Outcome], None] | None,
                       workers: int) -> list[Outcome]:
    """The outcomes in the pairs' order. A pair listed again (either way round) waits until
    the others are done: two threads on one pair would find it locked and call it busy,
    where one after the other finds it done, as a local run does."""
    seen: set[frozenset[ImageId]] = set()
    first, again = [], []
    for k, (a, b) in enumerate(pairs):
        (again if pair_key(a, b) in seen else first).append(k)
        seen.add(pair_key(a, b))
    outcomes = dict(zip(first, _render_at_once(tr, [pairs[k] for k in first], on_transition,
                                               workers), strict=True))
    outcomes |= dict(zip(again, _render_in_turn(tr, [pairs[k] for k in again], on_transition),
                         strict=True))
    return [outcomes[k] for k in range(len(pairs))]


def _render_at_once(tr: TransitionRenderer, pairs: Sequence[tuple[ImageId, ImageId]],
                    on_transition: Callable[[Outcome], None] | None,
                    workers: int) -> list[Outcome]:
    """`workers` threads take the next pair in turn; the first error of the whole run stops
    the others at their next batch and is raised here (what they finished is kept)."""
    todo: queue.SimpleQueue[tuple[int, tuple[ImageId, ImageId]]] = queue.SimpleQueue()
    for item in enumerate(pairs):
        todo.put(item)
    outcomes: dict[int, Outcome] = {}
    errors: list[BaseException] = []
    stop = threading.Event()

    def work(fork: TransitionRenderer) -> None:
        try:
            with FrameWriter() as writer:
                while not stop.is_set():
                    try:
                        index, (a, b) = todo.get_nowait()
                    except queue.Empty:
                        return
                    outcomes[index] = _render_one(fork, a, b, writer)
                    if on_transition:
                        on_transition(outcomes[index])
        except _Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - raised in the calling thread below
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=work, args=(tr.fork(stop),), daemon=True,
                                name=f"sdmorph-transitions-{k}") for k in range(workers)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except BaseException:  # Ctrl-C: the threads stop after their current batch
        stop.set()
        raise
    if errors:
        raise errors[0]
    return [outcomes[k] for k in sorted(outcomes)]


def render_planned(renderer: Renderer, store: TransitionStore, pairs: Sequence[Ends],
                   skipped: Sequence[Ends], *, batch_size: int, force: bool = False,
                   path: list[Hop] | None = None,
                   listener: Listener = SILENT) -> RenderReport:
    """The transitions stage: the keyframes the pairs need, then every pair not done yet,
    then the plan pictures again (now showing what is rendered)."""
    check_engine(renderer)
    images = list(dict.fromkeys(image for pair in pairs for image in pair))
    frames = renderer.song.profile.interpolation_steps
    bars = listener.bars(("keyframes", len(images)), ("transitions", len(pairs)),
                         ("frames", len(pairs) * frames))
    with bars as (keys, transitions, frame_bar):
        render_keyframes(renderer, images, batch_size=batch_size, on_image=keys)
        # Frames the bar moved for the transition each thread is rendering (one thread,
        # unless a cluster renders several transitions at once).
        advanced: dict[int, int] = {}
        lock = threading.Lock()

        def on_frames(n: int) -> None:
            with lock:
                thread = threading.get_ident()
                advanced[thread] = advanced.get(thread, 0) + n
                frame_bar(n)

        def done(outcome: Outcome) -> None:
            # Whatever happened (done before, resumed, failed half-way), it takes `frames`.
            with lock:
                transitions(1)
                frame_bar(frames - advanced.pop(threading.get_ident(), 0))

        tr = TransitionRenderer(renderer, store, frames, batch_size, force=force,
                                on_frames=on_frames)
        report = render_all(tr, pairs, on_transition=done, skipped=skipped)
    draw_graphs(renderer.song, path, store)
    return report


def failure(report: RenderReport) -> SdmorphError | None:
    """The command's error when a transition failed: the first failure, the others counted."""
    failed = report.having("failed")
    if not failed:
        return None
    more = f" ({len(failed) - 1} more failed, listed above)" if len(failed) > 1 else ""
    return SdmorphError(f"{failed[0].reason}{more}; finished transitions are kept: fix it and "
                        "run the same command again")
