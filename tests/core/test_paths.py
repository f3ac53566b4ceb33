"""Planning paths and choosing stories: the rules, the errors, the speed."""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdmorph.core import paths as paths_module
from sdmorph.core.errors import SdmorphError
from sdmorph.core.ids import ImageId
from sdmorph.core.paths import (
    Hop,
    PlanError,
    SceneSpec,
    build_graph,
    choose_story,
    plan_path,
    plan_paths,
)
from songs import union_transitions


def imgs(prompt: str, n: int, first: int = 1) -> tuple[ImageId, ...]:
    return tuple(ImageId(prompt, first + k) for k in range(n))


def scene(name: str, n: int, duration: int = 0, section: int = 1, **kw) -> SceneSpec:
    return SceneSpec(name=name, images=imgs(name, n), duration=duration, section=section, **kw)


def walk_of(hops: Sequence[Hop]) -> list[ImageId]:
    return [hops[0].a] + [hop.b for hop in hops] if hops else []


def check_rules(scenes: Sequence[SceneSpec], hops: Sequence[Hop], available=None) -> None:
    """Assert every rule of a path; `available` restricts the transitions it may use."""
    owner = {image: k for k, spec in enumerate(scenes) for image in spec.images}
    walk = walk_of(hops)
    if len(scenes) == 1 and scenes[0].duration == 0:
        assert hops == []
        return
    assert len(walk) == len(set(walk)), "an image is used twice"
    assert all(a.b == b.a for a, b in itertools.pairwise(hops)), "hops do not chain"
    avoided = frozenset().union(*(spec.avoid for spec in scenes))
    assert not avoided & set(walk)
    # The walk visits scenes in order, each for exactly duration + 1 images.
    expected = [k for k, spec in enumerate(scenes) for _ in range(spec.duration + 1)]
    assert [owner[image] for image in walk] == expected
    for k, spec in enumerate(scenes):
        entry = walk[expected.index(k)]
        if spec.start:
            assert entry in spec.start
    for hop in hops:
        src, dst = scenes[owner[hop.a]], scenes[owner[hop.b]]
        assert (hop.scene_from, hop.scene_to, hop.section) == (src.name, dst.name, src.section)
        assert hop.kind == ("intra" if src is dst else "inter")
        if available is not None:
            assert frozenset((hop.a, hop.b)) in available


def graph_pairs(scenes: Sequence[SceneSpec]) -> set[frozenset[ImageId]]:
    return {frozenset(edge) for edge in build_graph(scenes).edges}


# ------------------------------------------------------------------ graph


def test_build_graph_nodes_and_edges() -> None:
    scenes = [scene("a", 3, section=1), scene("b", 2, section=2), scene("c", 2, section=2)]
    graph = build_graph(scenes)
    assert graph.number_of_nodes() == 7
    assert graph.nodes[ImageId("b", 2)] == {"scene": "b", "section": 2}
    # intra: 3 + 1 + 1; inter: a-b 6, b-c 4; nothing between a and c
    assert graph.number_of_edges() == 5 + 10
    assert graph.edges[ImageId("a", 1), ImageId("a", 3)]["type"] == "intra"
    assert graph.edges[ImageId("b", 1), ImageId("a", 3)]["type"] == "inter"
    assert not graph.has_edge(ImageId("a", 1), ImageId("c", 1))


# ------------------------------------------------------------------ rules


def test_single_start_image_is_entered() -> None:
    scenes = [
        scene("a", 4, 1, start=(ImageId("a", 3),)),
        scene("b", 4, 2, start=(ImageId("b", 2),)),
    ]
    for seed in range(10):
        hops = plan_path(scenes, seed)
        check_rules(scenes, hops)
        assert hops[0].a == ImageId("a", 3)
        assert [h.b for h in hops if h.kind == "inter"] == [ImageId("b", 2)]


def test_start_list_picks_one_of_them_at_random() -> None:
    starts = (ImageId("b", 1), ImageId("b", 4))
    scenes = [scene("a", 2), scene("b", 5, 1, start=starts)]
    entries = {plan_path(scenes, seed)[0].b for seed in range(30)}
    assert entries == set(starts)


def test_free_start_uses_any_image() -> None:
    scenes = [scene("a", 5, 0), scene("b", 2)]
    firsts = {plan_path(scenes, seed)[0].a for seed in range(60)}
    assert firsts == set(imgs("a", 5))


def test_duration_zero_passes_straight_through() -> None:
    scenes = [scene("a", 3, 1), scene("b", 4, 0), scene("c", 3, 1)]
    hops = plan_path(scenes, 3)
    check_rules(scenes, hops)
    assert not [h for h in hops if h.scene_from == "b" and h.kind == "intra"]
    kinds = [h.kind for h in hops]
    assert kinds == ["intra", "inter", "inter", "intra"]


def test_duration_visits_distinct_images_and_last_scene_counts() -> None:
    scenes = [scene("a", 6, 5), scene("b", 6, 3), scene("c", 4, 3)]
    for seed in range(20):
        hops = plan_path(scenes, seed)
        check_rules(scenes, hops)
        tail = [h for h in hops if h.scene_from == "c"]
        assert len(tail) == 3 and all(h.kind == "intra" for h in tail)
        assert len({h.b for h in tail} | {tail[0].a}) == 4


def test_avoided_images_are_never_used() -> None:
    avoid = frozenset({ImageId("a", 1), ImageId("b", 2), ImageId("b", 3)})
    scenes = [
        scene("a", 3, 1, avoid=avoid & set(imgs("a", 3))),
        scene("b", 4, 1, start=(ImageId("b", 2), ImageId("b", 4)), avoid=avoid - {ImageId("a", 1)}),
    ]
    for seed in range(25):
        hops = plan_path(scenes, seed)
        check_rules(scenes, hops)
        assert not set(walk_of(hops)) & avoid
        assert [h.b for h in hops if h.kind == "inter"] == [ImageId("b", 4)]


def test_sections_on_hops() -> None:
    scenes = [scene("a", 3, 1, section=1), scene("b", 3, 1, section=2), scene("c", 2, 0, 3)]
    hops = plan_path(scenes, 0)
    assert [(h.scene_from, h.section) for h in hops] == [
        ("a", 1),
        ("a", 1),
        ("b", 2),
        ("b", 2),
    ]


def test_same_seed_same_plan_other_seeds_differ() -> None:
    scenes = [scene("a", 8, 3), scene("b", 8, 3), scene("c", 8, 2)]
    assert plan_path(scenes, 42) == plan_path(scenes, 42)
    assert len({tuple(plan_path(scenes, seed)) for seed in range(10)}) == 10


def test_plan_paths_uses_consecutive_seeds_and_union_is_unordered() -> None:
    scenes = [scene("a", 4, 2), scene("b", 4, 2)]
    paths = plan_paths(scenes, 7, 4)
    assert paths == [plan_path(scenes, seed) for seed in (7, 8, 9, 10)]
    pairs = union_transitions(paths)
    keys = [frozenset(p) for p in pairs]
    assert len(keys) == len(set(keys))
    assert set(keys) == {frozenset((h.a, h.b)) for path in paths for h in path}
    assert pairs[: len(paths[0])] == [(h.a, h.b) for h in paths[0]]
    a, b = ImageId("x", 1), ImageId("x", 2)
    hop = Hop(a, b, "x", "x", 1, "intra")
    assert union_transitions([[hop], [Hop(b, a, "x", "x", 1, "intra")]]) == [(a, b)]


@pytest.mark.slow
def test_plan_is_independent_of_hash_seed() -> None:
    code = (
        "from sdmorph.core.paths import *; from sdmorph.core.ids import ImageId as I\n"
        "sc=[SceneSpec(n, tuple(I(n+' x', s) for s in range(7)), 2, 1, "
        "avoid=frozenset({I(n+' x', 3)})) for n in 'abc']\n"
        "av={frozenset((h.a, h.b)) for p in plan_paths(sc, 0, 3) for h in p}\n"
        "print(plan_path(sc, 5)); print(choose_story(sc, av, 9))\n"
    )
    outputs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        run = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(run.stdout)
    assert len(outputs) == 1


# ------------------------------------------------------------------ impossible plans


def plan_error(scenes: Sequence[SceneSpec], available=None) -> PlanError:
    with pytest.raises(PlanError) as info:
        if available is None:
            plan_path(scenes, 0)
        else:
            choose_story(scenes, available, 0)
    assert isinstance(info.value, SdmorphError)
    return info.value


def test_too_few_images_names_scene_row_and_counts() -> None:
    avoid = frozenset({ImageId("sun", 1), ImageId("sun", 2)})
    scenes = [scene("moon", 3, 1), SceneSpec("sun", imgs("sun", 5), 4, 1, avoid=avoid, row=3)]
    err = plan_error(scenes)
    assert str(err) == (
        "scene 'sun' (row 3): duration 4 needs 5 distinct images, only 3 are usable (2 avoided)"
    )
    assert err.scene == "sun"
    # choose_story checks the same before looking at any transition
    assert str(plan_error(scenes, available=set())) == str(err)


def test_start_avoided() -> None:
    moon7 = ImageId("moon", 7)
    spec = SceneSpec("moon", imgs("moon", 8), 0, 1, start=(moon7,), avoid=frozenset({moon7}))
    err = plan_error([scene("sun", 2), spec])
    assert str(err) == "scene 'moon': start image moon_7 is avoided"
    assert err.scene == "moon"


def test_start_not_in_scene_and_every_problem_reported() -> None:
    specs = [
        SceneSpec("a", imgs("a", 2), 0, 1, start=(ImageId("zz", 1),)),
        SceneSpec("b", imgs("a", 1, first=2), -1, 1),
    ]
    text = str(plan_error(specs))
    assert "scene 'a': start image zz_1 is not one of the scene's images" in text
    assert "image a_2 is in scene 'a' and in scene 'b'" in text
    assert "scene 'b': duration -1 is negative" in text


def test_no_scenes_is_an_error() -> None:
    assert "no scenes" in str(plan_error([]))


# ------------------------------------------------------------------ choosing stories


def test_story_uses_only_available_transitions() -> None:
    scenes = [scene("a", 6, 2), scene("b", 6, 2), scene("c", 6, 1)]
    paths = plan_paths(scenes, 0, 3)
    available = {frozenset(p) for p in union_transitions(paths)}
    for seed in range(10):
        story = choose_story(scenes, available, seed)
        check_rules(scenes, story, available)


def test_story_plays_transitions_backwards() -> None:
    a1, b1, b2 = ImageId("a", 1), ImageId("b", 1), ImageId("b", 2)
    scenes = [scene("a", 1, 0), scene("b", 2, 1)]
    rendered = [(b2, a1), (b1, b2)]  # folders "b-2 to a-1" and "b-1 to b-2"
    story = choose_story(scenes, {frozenset(p) for p in rendered}, 0)
    assert [(h.a, h.b) for h in story] == [(a1, b2), (b2, b1)]
    assert all((h.b, h.a) in rendered for h in story)


def test_story_depends_on_seed_when_several_exist() -> None:
    scenes = [scene("a", 5, 2), scene("b", 5, 2)]
    available = graph_pairs(scenes)
    stories = {tuple(choose_story(scenes, available, seed)) for seed in range(8)}
    assert len(stories) > 1
    assert choose_story(scenes, available, 3) == choose_story(scenes, available, 3)


def test_story_respects_start_and_avoid() -> None:
    avoid = frozenset({ImageId("b", 1)})
    scenes = [
        scene("a", 3, 1, start=(ImageId("a", 2),)),
        scene("b", 4, 2, start=(ImageId("b", 1), ImageId("b", 3)), avoid=avoid),
    ]
    available = graph_pairs(scenes)
    for seed in range(10):
        story = choose_story(scenes, available, seed)
        check_rules(scenes, story, available)
        assert story[0].a == ImageId("a", 2)


def test_unreachable_scene_lists_missing_transitions() -> None:
    sun, moon = scene("sun", 3, 1), scene("moon", 8, 0, start=(ImageId("moon", 7),))
    available = graph_pairs([sun]) | graph_pairs([moon])  # nothing joins them
    err = plan_error([sun, moon], available)
    assert str(err).startswith(
        "scene 'moon' cannot be reached from scene 'sun': no rendered transition joins them; "
        "missing: sun-1 to moon-7, sun-2 to moon-7, sun-3 to moon-7"
    )
    assert err.scene == "moon"
    assert err.missing == [(ImageId("sun", k), ImageId("moon", 7)) for k in (1, 2, 3)]
    # rendering what is listed is enough
    story = choose_story([sun, moon], available | {frozenset(p) for p in err.missing}, 0)
    check_rules([sun, moon], story)


def test_dead_end_entry_is_explained() -> None:
    # b's only joined entry cannot go on to c; b-2 could, but nothing reaches it from a.
    scenes = [scene("a", 1, 0), scene("b", 2, 0), scene("c", 1, 0)]
    a1, b1, b2, c1 = ImageId("a", 1), ImageId("b", 1), ImageId("b", 2), ImageId("c", 1)
    available = {frozenset((a1, b1)), frozenset((b2, c1))}
    err = plan_error(scenes, available)
    assert "scene 'b' cannot be reached from scene 'a'" in str(err)
    assert "from which the story can go on" in str(err)
    assert err.missing == [(a1, b2)]
    check_rules(scenes, choose_story(scenes, available | {frozenset(err.missing[0])}, 0))


def test_missing_walk_inside_scene_is_explained() -> None:
    # Only a chain x1-x2-x3 is rendered inside x, but the scene needs 4 hops.
    x = imgs("x", 5)
    scenes = [scene("x", 5, 4), scene("y", 1)]
    available = {frozenset(p) for p in [(x[0], x[1]), (x[1], x[2])]}
    available |= {frozenset((image, ImageId("y", 1))) for image in x}
    err = plan_error(scenes, available)
    assert str(err).startswith(
        "scene 'x': found no walk of exactly 4 rendered transitions through distinct images "
        "of the scene from any of its images to an image joined to scene 'y'; missing: "
    )
    assert err.scene == "x" and 1 <= len(err.missing) <= 2
    check_rules(scenes, choose_story(scenes, available | {frozenset(p) for p in err.missing}, 1))


def test_impossible_exact_length_gives_up_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    # A complete bipartite graph 10 x 19 has no path through all 29 images.
    left, right = imgs("l", 10), imgs("r", 19)
    spec = SceneSpec("big", left + right, 28, 1)
    available = {frozenset((a, b)) for a in left for b in right}
    searches = count_searches(monkeypatch)
    err = plan_error([spec], available)
    # Quickly means a bounded amount of work, not seconds: each entry image is searched at
    # most once, each search stops at a budget polynomial in the scene's size (plus at most
    # two reachability checks over every edge), and the error says the search gave up.
    images, edges = len(left + right), len(available)
    assert 0 < len(searches) <= images
    assert all(budget <= 2 * images * edges for _, budget, _ in searches)
    assert all(spent <= budget + 4 * edges for spent, budget, _ in searches)
    assert f"the search gave up after {searches[0][1]} steps" in str(err)
    assert "scene 'big'" in str(err) and err.missing
    assert all(frozenset(p) not in available for p in err.missing)


# ------------------------------------------------------------ against brute force


def brute_force_exists(scenes: Sequence[SceneSpec], available) -> bool:
    avoided = frozenset().union(*(spec.avoid for spec in scenes))
    options = []
    for spec in scenes:
        usable = [i for i in spec.images if i not in avoided]
        entries = [i for i in (spec.start or spec.images) if i in usable]
        walks = [
            w
            for w in itertools.permutations(usable, spec.duration + 1)
            if w[0] in entries and all(frozenset(p) in available for p in itertools.pairwise(w))
        ]
        options.append(walks)
    for combo in itertools.product(*options):
        if all(
            frozenset((combo[k][-1], combo[k + 1][0])) in available for k in range(len(combo) - 1)
        ):
            return True
    return False


@st.composite
def small_songs(draw: st.DrawFn) -> tuple[list[SceneSpec], set[frozenset[ImageId]], int]:
    scenes = []
    for k in range(draw(st.integers(1, 3))):
        n = draw(st.integers(1, 4))
        images = imgs(f"s{k}", n)
        duration = draw(st.integers(0, n - 1))
        start = tuple(draw(st.lists(st.sampled_from(images), max_size=2, unique=True)))
        avoid = frozenset(draw(st.lists(st.sampled_from(images), max_size=1)))
        scenes.append(SceneSpec(f"s{k}", images, duration, k, start=start, avoid=avoid))
    pairs = sorted(graph_pairs(scenes), key=sorted)
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True)) if pairs else []
    return scenes, set(chosen), draw(st.integers(0, 1000))


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_songs())
def test_choose_story_agrees_with_brute_force(song) -> None:
    scenes, available, seed = song
    try:
        story = choose_story(scenes, available, seed)
    except PlanError as err:
        assert not brute_force_exists(scenes, available), str(err)
        edges = graph_pairs(scenes)
        assert all(frozenset(p) in edges - available for p in err.missing)
        return
    check_rules(scenes, story, available)


# ------------------------------------------------------------------ speed


def big_song(n_scenes: int, n_images: int, seed: int = 0) -> list[SceneSpec]:
    rng = random.Random(seed)
    return [
        SceneSpec(
            f"scene {k}",
            imgs(f"prompt-{k}", n_images, first=1000 * k),
            rng.randint(0, 5),
            k // 10,
            start=(ImageId(f"prompt-{k}", 1000 * k),) if k % 7 == 0 else (),
        )
        for k in range(n_scenes)
    ]


def count_searches(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, bool]]:
    """(steps spent, step budget, gave up) of each walk search `choose_story` runs from now on.

    The tests count work rather than seconds, which a busy machine stretches; the benchmarks
    (benchmarks/_planning.py) time planning at scale.
    """
    record: list[tuple[int, int, bool]] = []
    find = paths_module._WalkFinder.find

    def counted(self, start: int) -> list[int] | None:
        found = find(self, start)
        record.append((self.spent, self.budget, self.gave_up))
        return found

    monkeypatch.setattr(paths_module._WalkFinder, "find", counted)
    return record


def test_planning_and_story_choosing_search_without_giving_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scenes = big_song(50, 20)
    paths = plan_paths(scenes, 0, 20)
    assert len(paths) == 20 and len({tuple(path) for path in paths}) == 20
    for path in paths:
        check_rules(scenes, path)
    available = {frozenset(p) for p in union_transitions(paths[:5])}
    searches = count_searches(monkeypatch)
    for seed in range(5):
        check_rules(scenes, choose_story(scenes, available, seed), available)
    assert searches and not any(gave_up for _, _, gave_up in searches)


@pytest.mark.slow
def test_large_song_plans_without_giving_up(monkeypatch: pytest.MonkeyPatch) -> None:
    scenes = big_song(200, 30)
    paths = plan_paths(scenes, 0, 30)
    searches = count_searches(monkeypatch)
    story = choose_story(scenes, {frozenset(p) for p in union_transitions(paths)}, 0)
    check_rules(scenes, story)
    assert searches and not any(gave_up for _, _, gave_up in searches)
