"""Planning: which transitions to render, and which story to play from what is rendered.

Pure logic, no files and no torch. A song's scenes form a graph: one node per image,
an edge between every two images of a scene ("intra") and between every two images of
consecutive scenes ("inter"). A path walks the scenes in order: it enters each scene at an
allowed start image, makes exactly `duration` hops between distinct images of the scene,
then hops into the next scene. No image is used twice and avoided images are never used.

`plan_path` plans on the complete graph (what to render); `choose_story` plans on the
transitions already rendered (what to play). Random choices come from `random.Random(seed)`
only, and sets are never iterated to make a choice, so a plan depends on the scenes and the
seed alone, whatever the process's hash seed.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal, NamedTuple

import networkx as nx

from sdmorph.core.errors import Problem, SdmorphError
from sdmorph.core.ids import ImageId, Pair, transition_name

HopKind = Literal["intra", "inter"]
# How many missing transitions an error lists (the attribute keeps the same ones).
_MISSING_SHOWN = 6


@dataclass(frozen=True)
class SceneSpec:
    """One row of the scene sequence, resolved to images (the song loader builds these)."""

    name: str
    images: tuple[ImageId, ...]  # the scene's images, in sheet order
    duration: int  # hops between distinct images inside the scene (0 = pass straight through)
    section: int
    start: tuple[ImageId, ...] = ()  # allowed entry images; () = free choice
    avoid: Pair = frozenset()
    row: int | None = None  # the row in the scene sequence file, for messages


class Hop(NamedTuple):
    """One transition of a path: `a` to `b` (played backwards if only `b` to `a` exists)."""

    a: ImageId
    b: ImageId
    scene_from: str
    scene_to: str
    section: int  # the section of a's scene
    kind: HopKind


class PlanError(SdmorphError):
    """No path satisfies the scene sequence; says which scene and why.

    `missing` lists transitions that, once rendered, let the story through the failing
    point (rendering all of them is enough); empty when rendering cannot help.
    """

    def __init__(
        self,
        *problems: Problem | str,
        scene: str | None = None,
        missing: Iterable[tuple[ImageId, ImageId]] = (),
    ) -> None:
        super().__init__(*problems)
        self.scene = scene
        self.missing: list[tuple[ImageId, ImageId]] = list(missing)


# ---------------------------------------------------------------------------- graph


def build_graph(scenes: Sequence[SceneSpec]) -> nx.Graph:
    """The complete transition graph: node attrs `scene`, `section`; edge attr `type`."""
    graph = nx.Graph()
    for spec in scenes:
        for image in _unique(spec.images):
            graph.add_node(image, scene=spec.name, section=spec.section)
    for index, spec in enumerate(scenes):
        images = _unique(spec.images)
        for i, a in enumerate(images):
            for b in images[i + 1 :]:
                graph.add_edge(a, b, type="intra")
        if index + 1 < len(scenes):
            for a in images:
                for b in _unique(scenes[index + 1].images):
                    graph.add_edge(a, b, type="inter")
    return graph


def edge_count(scenes: Sequence[SceneSpec]) -> int:
    """The number of edges `build_graph` would make, counted without building it."""
    sizes = [len(_unique(spec.images)) for spec in scenes]
    inside = sum(n * (n - 1) // 2 for n in sizes)
    return inside + sum(a * b for a, b in zip(sizes, sizes[1:], strict=False))


def _unique(images: Iterable[ImageId]) -> list[ImageId]:
    return list(dict.fromkeys(images))


# ------------------------------------------------------------------- scene checks


@dataclass(frozen=True)
class _Scene:
    """A scene ready for planning: the images a path may use, and where it may enter."""

    spec: SceneSpec
    usable: list[ImageId]  # sheet order, avoided images removed
    entries: list[ImageId]  # usable allowed start images, sheet order

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def duration(self) -> int:
        return self.spec.duration

    @property
    def where(self) -> str:
        row = f" (row {self.spec.row})" if self.spec.row is not None else ""
        return f"scene '{self.spec.name}'{row}"


def _prepare(scenes: Sequence[SceneSpec]) -> list[_Scene]:
    """Check what can be checked without a graph; raise every problem found at once."""
    if not scenes:
        raise PlanError("the scene sequence has no scenes")
    problems: list[str] = []
    failing: list[str] = []
    avoided = frozenset().union(*(spec.avoid for spec in scenes))
    for problem, scene_name in _shared_images(scenes):
        problems.append(problem)
        failing.append(scene_name)
    prepared = []
    for spec in scenes:
        scene, found = _prepare_one(spec, avoided)
        prepared.append(scene)
        problems += found
        failing += [spec.name] * len(found)
    if problems:
        raise PlanError(*problems, scene=failing[0])
    return prepared


def _shared_images(scenes: Sequence[SceneSpec]) -> list[tuple[str, str]]:
    owner: dict[ImageId, str] = {}
    found = []
    for spec in scenes:
        for image in _unique(spec.images):
            if image in owner:
                found.append(
                    (
                        f"image {image.stem} is in scene '{owner[image]}' and in scene "
                        f"'{spec.name}'; an image belongs to one scene only",
                        spec.name,
                    )
                )
            else:
                owner[image] = spec.name
    return found


def _prepare_one(spec: SceneSpec, avoided: Pair) -> tuple[_Scene, list[str]]:
    images = _unique(spec.images)
    usable = [image for image in images if image not in avoided]
    scene = _Scene(spec, usable, usable)
    problems: list[str] = []
    if spec.duration < 0:
        problems.append(f"{scene.where}: duration {spec.duration} is negative (0 or more)")
    if not images:
        problems.append(f"{scene.where}: the scene has no images")
    if spec.start:
        entries, start_problems = _entries(scene, images, avoided)
        scene = _Scene(spec, usable, entries)
        problems += start_problems
    need = spec.duration + 1
    if images and spec.duration >= 0 and len(usable) < need:
        n_avoided = len(images) - len(usable)
        why = f" ({n_avoided} avoided)" if n_avoided else ""
        problems.append(
            f"{scene.where}: duration {spec.duration} needs {need} distinct "
            f"{'image' if need == 1 else 'images'}, only {len(usable)} "
            f"{'is' if len(usable) == 1 else 'are'} usable{why}"
        )
    return scene, problems


def _entries(
    scene: _Scene, images: list[ImageId], avoided: Pair
) -> tuple[list[ImageId], list[str]]:
    members = set(images)
    starts = _unique(scene.spec.start)
    problems = [
        f"{scene.where}: start image {image.stem} is not one of the scene's images"
        for image in starts
        if image not in members
    ]
    inside = [image for image in starts if image in members]
    entries = [image for image in inside if image not in avoided]
    if inside and not entries:
        names = ", ".join(image.stem for image in inside)
        verb = "is avoided" if len(inside) == 1 else "are all avoided"
        problems.append(f"{scene.where}: start image{'s' * (len(inside) > 1)} {names} {verb}")
    return entries, problems


def _hops(scenes: Sequence[_Scene], walks: Sequence[Sequence[ImageId]]) -> list[Hop]:
    hops: list[Hop] = []
    for index, (scene, walk) in enumerate(zip(scenes, walks, strict=True)):
        section = scene.spec.section
        hops += [Hop(a, b, scene.name, scene.name, section, "intra") for a, b in pairwise(walk)]
        if index + 1 < len(scenes):
            nxt = scenes[index + 1]
            hops.append(Hop(walk[-1], walks[index + 1][0], scene.name, nxt.name, section, "inter"))
    return hops


# ------------------------------------------------------------------------ planning


def plan_path(scenes: Sequence[SceneSpec], seed: int) -> list[Hop]:
    """One random path through the complete graph (every transition may be rendered)."""
    prepared = _prepare(scenes)
    rng = random.Random(seed)
    walks = []
    for scene in prepared:
        entry = rng.choice(scene.entries)
        rest = [image for image in scene.usable if image != entry]
        walks.append([entry, *rng.sample(rest, scene.duration)])
    return _hops(prepared, walks)


def plan_paths(scenes: Sequence[SceneSpec], seed: int, n: int) -> list[list[Hop]]:
    """`n` paths, planned with seeds `seed`, `seed + 1`, ..."""
    return [plan_path(scenes, seed + k) for k in range(n)]



# --------------------------------------------------------------- choosing a story


def choose_story(
    scenes: Sequence[SceneSpec], available: Collection[Pair], seed: int
) -> list[Hop]:
    """A path using only `available` transitions (pairs rendered in either direction).

    Scenes share no image, so whether a story can go on from an entry image of scene i
    does not depend on the scenes before it. Scenes are searched from the last to the
    first: for each allowed entry image, a randomised depth-first search (failed states
    memoised, dead branches pruned by reachability, a polynomial step budget) finds a
    walk of exactly `duration` hops to an image joined to a live entry of the next scene.
    The story is then drawn forwards from the live entries.
    """
    prepared = _prepare(scenes)
    rng = random.Random(seed)
    links = _Links(prepared, available)
    _check_joins(prepared, links)
    live, walks = _search_backwards(prepared, links, rng)
    return _hops(prepared, _draw_forwards(prepared, links, live, walks, rng))


class _Links:
    """The available transitions between usable images, by position in `_Scene.usable`."""

    def __init__(self, scenes: Sequence[_Scene], available: Collection[Pair]) -> None:
        where = {
            image: (i, p) for i, scene in enumerate(scenes) for p, image in enumerate(scene.usable)
        }
        self.inside: list[list[set[int]]] = [[set() for _ in s.usable] for s in scenes]
        self.onward: list[list[set[int]]] = [[set() for _ in s.usable] for s in scenes]
        for pair in available:
            ends = [where.get(image) for image in pair]
            if len(ends) != 2 or ends[0] is None or ends[1] is None:
                continue
            (i, p), (j, q) = sorted(ends)
            if i == j:
                self.inside[i][p].add(q)
                self.inside[i][q].add(p)
            elif j == i + 1:
                self.onward[i][p].add(q)

    def ordered_inside(self, scene: int, rng: random.Random) -> list[list[int]]:
        """Neighbour lists inside a scene, each in a random (seeded) order."""
        lists = [sorted(neighbours) for neighbours in self.inside[scene]]
        for neighbours in lists:
            rng.shuffle(neighbours)
        return lists


def _positions(scene: _Scene, images: Iterable[ImageId]) -> list[int]:
    index = {image: p for p, image in enumerate(scene.usable)}
    return [index[image] for image in images]


def _exit_candidates(scene: _Scene) -> list[int]:
    """Positions a walk through the scene may end at, ignoring what is rendered inside."""
    if scene.duration == 0:
        return _positions(scene, scene.entries)
    entries = set(_positions(scene, scene.entries))
    # With one entry and duration > 0 the walk cannot end where it started.
    others = [p for p in range(len(scene.usable)) if p not in entries]
    return others + ([] if len(entries) == 1 else sorted(entries))


def _check_joins(scenes: Sequence[_Scene], links: _Links) -> None:
    """Fail fast when two consecutive scenes are not joined by any usable transition."""
    for i in range(len(scenes) - 1):
        targets = set(_positions(scenes[i + 1], scenes[i + 1].entries))
        if not any(links.onward[i][p] & targets for p in _exit_candidates(scenes[i])):
            raise _join_error(scenes, links, i, sorted(targets), joined=False)


def _search_backwards(
    scenes: Sequence[_Scene], links: _Links, rng: random.Random
) -> tuple[list[list[int]], list[dict[int, list[int]]]]:
    """Per scene: the live entries (sheet order) and one walk from each to a good exit."""
    live: list[list[int]] = [[] for _ in scenes]
    walks: list[dict[int, list[int]]] = [{} for _ in scenes]
    for i in reversed(range(len(scenes))):
        scene = scenes[i]
        targets = _good_exits(scenes, links, live, i)
        finder = _WalkFinder(links.ordered_inside(i, rng), scene.duration, targets)
        entries = _positions(scene, scene.entries)
        for entry in rng.sample(entries, len(entries)):
            walk = finder.find(entry)
            if walk is not None:
                walks[i][entry] = walk
        live[i] = [entry for entry in entries if entry in walks[i]]
        if not live[i]:
            raise _scene_error(scenes, links, live, i, targets, finder)
    return live, walks


def _good_exits(scenes: Sequence[_Scene], links: _Links, live: list[list[int]], i: int) -> set[int]:
    if i == len(scenes) - 1:
        return set(range(len(scenes[i].usable)))
    onward_live = set(live[i + 1])
    return {p for p, onward in enumerate(links.onward[i]) if onward & onward_live}


def _draw_forwards(
    scenes: Sequence[_Scene],
    links: _Links,
    live: list[list[int]],
    walks: list[dict[int, list[int]]],
    rng: random.Random,
) -> list[list[ImageId]]:
    result = []
    entry = rng.choice(live[0])
    for i, scene in enumerate(scenes):
        walk = walks[i][entry]
        result.append([scene.usable[p] for p in walk])
        if i + 1 < len(scenes):
            onward = links.onward[i][walk[-1]]
            entry = rng.choice([q for q in live[i + 1] if q in onward])
    return result


class _WalkFinder:
    """Finds simple walks of exactly `hops` hops inside one scene, ending in `targets`.

    Exact-length simple paths are NP-hard in general, so each search is capped at a step
    budget polynomial in the scene's size; `gave_up` records that a cap was hit. States
    that cannot be completed are remembered as (node, visited set) and shared between
    entries, since completing a walk depends on nothing else.
    """

    def __init__(self, neighbours: list[list[int]], hops: int, targets: set[int]) -> None:
        self.neighbours = neighbours
        self.hops = hops
        self.targets = targets
        n_edges = sum(len(ns) for ns in neighbours) // 2
        self.budget = max(5_000, 2 * len(neighbours) * n_edges)
        self.failed: set[tuple[int, int]] = set()
        self.careful = False  # prune with reachability once a search has had to backtrack
        self.gave_up = False
        self.spent = 0

    def find(self, start: int) -> list[int] | None:
        if self.hops == 0:
            return [start] if start in self.targets else None
        if not self.targets or not self._can_finish(start, 1 << start, self.hops):
            return None
        self.spent = 0
        return self._search(start)

    def _search(self, start: int) -> list[int] | None:
        path, mask = [start], 1 << start
        pending = [iter(self.neighbours[start])]
        while pending:
            step = self._next_step(pending[-1], mask, self.hops - len(path) + 1)
            if step is None:  # budget spent
                return None
            if step < 0:  # every way on from the tip fails
                self.failed.add((path[-1], mask))
                self.careful = True
                pending.pop()
                mask ^= 1 << path.pop()
                continue
            path.append(step)
            if len(path) == self.hops + 1:
                return path
            mask |= 1 << step
            pending.append(iter(self.neighbours[step]))
        return None

    def _next_step(self, candidates: Iterable[int], mask: int, left: int) -> int | None:
        """The next node worth trying, -1 when none is, None when the budget is spent."""
        for node in candidates:
            self.spent += 1
            if self.spent > self.budget:
                self.gave_up = True
                return None
            if mask >> node & 1:
                continue
            if left == 1:
                if node in self.targets:
                    return node
                continue
            state = (node, mask | 1 << node)
            if state in self.failed:
                continue
            if self.careful and not self._can_finish(node, state[1], left - 1):
                self.failed.add(state)
                continue
            return node
        return -1

    def _can_finish(self, node: int, mask: int, left: int) -> bool:
        """Whether enough unvisited nodes, a target among them, are reachable from `node`."""
        seen, frontier, target_seen = 0, [node], False
        visited = mask
        while frontier:
            current = frontier.pop()
            for other in self.neighbours[current]:
                self.spent += 1
                if not visited >> other & 1:
                    visited |= 1 << other
                    seen += 1
                    target_seen = target_seen or other in self.targets
                    frontier.append(other)
        return seen >= left and target_seen


# ------------------------------------------------------------------------- errors


def _scene_error(
    scenes: Sequence[_Scene],
    links: _Links,
    live: list[list[int]],
    i: int,
    targets: set[int],
    finder: _WalkFinder,
) -> PlanError:
    scene = scenes[i]
    entries = _positions(scene, scene.entries)
    is_last = i == len(scenes) - 1
    fix = _best_repair(scene, links.inside[i], entries, sorted(targets))
    if not is_last and fix is None:
        return _join_error(scenes, links, i, live[i + 1], joined=True)
    missing = fix or []
    ends = "any image" if is_last else f"an image joined to scene '{scenes[i + 1].name}'"
    gave_up = f" (the search gave up after {finder.budget} steps)" if finder.gave_up else ""
    return PlanError(
        f"{scene.where}: found no walk of exactly {scene.duration} rendered transitions "
        f"through distinct images of the scene from {_starts_text(scene)} to {ends}{gave_up}"
        + _missing_text(missing),
        scene=scene.name,
        missing=missing,
    )


def _starts_text(scene: _Scene) -> str:
    if not scene.spec.start:
        return "any of its images"
    names = [image.stem for image in scene.entries]
    shown = ", ".join(names[:_MISSING_SHOWN]) + (", ..." if len(names) > _MISSING_SHOWN else "")
    return f"its start image{'s' * (len(names) > 1)} {shown}"


def _join_error(
    scenes: Sequence[_Scene], links: _Links, i: int, targets: Sequence[int], joined: bool
) -> PlanError:
    scene, nxt = scenes[i], scenes[i + 1]
    missing = []
    for p in _exit_candidates(scene):
        missing += [
            (scene.usable[p], nxt.usable[q]) for q in targets if q not in links.onward[i][p]
        ]
        if len(missing) >= _MISSING_SHOWN:
            break
    missing = missing[:_MISSING_SHOWN]
    if joined:
        why = (
            f"no rendered transition leads from '{scene.name}' to an image of "
            f"'{nxt.name}' from which the story can go on"
        )
    else:
        why = "no rendered transition joins them"
    return PlanError(
        f"{nxt.where} cannot be reached from {scene.where}: {why}" + _missing_text(missing),
        scene=nxt.name,
        missing=missing,
    )


def _missing_text(missing: Sequence[tuple[ImageId, ImageId]]) -> str:
    if not missing:
        return ""
    shown = ", ".join(transition_name(a, b) for a, b in missing[:_MISSING_SHOWN])
    more = len(missing) - _MISSING_SHOWN
    return f"; missing: {shown}" + (f" and {more} more" if more > 0 else "")


def _best_repair(
    scene: _Scene, inside: list[set[int]], entries: list[int], targets: list[int]
) -> list[tuple[ImageId, ImageId]] | None:
    """The fewest unrendered hops of a walk from an entry to a target, or None if none fits."""
    best: list[tuple[int, int]] | None = None
    for entry in entries[:8]:
        for target in targets[:8]:
            if (target == entry) != (scene.duration == 0):
                continue
            walk = _greedy_walk(inside, len(scene.usable), scene.duration, entry, target)
            gaps = [(a, b) for a, b in pairwise(walk) if b not in inside[a]]
            if best is None or len(gaps) < len(best):
                best = gaps
    if best is None:
        return None
    return [(scene.usable[a], scene.usable[b]) for a, b in best]


def _greedy_walk(inside: list[set[int]], n: int, hops: int, start: int, end: int) -> list[int]:
    """A walk of `hops` hops from start to end through distinct nodes, using rendered hops
    where it can: a cheap stand-in for the optimum, good enough to suggest what to render."""
    walk, used = [start], {start, end}
    for step in range(hops - 1):
        here = walk[-1]
        free = [u for u in range(n) if u not in used]
        last = step == hops - 2
        walk.append(max(free, key=lambda u: (u in inside[here]) * 2 + (last and end in inside[u])))
        used.add(walk[-1])
    return walk + [end] if hops else walk
