"""Gephi files and plan pictures."""

from __future__ import annotations

import time
from pathlib import Path

import networkx as nx
from PIL import Image

from sdmorph.core.ids import ImageId
from sdmorph.core.paths import SceneSpec, build_graph, plan_path, plan_paths, union_transitions
from sdmorph.media.plan_picture import draw_plan, write_gexf


def song(n_scenes: int, n_images: int) -> list[SceneSpec]:
    return [
        SceneSpec(
            f"scene {k}",
            tuple(ImageId(f"p-{k}", 100 + j) for j in range(n_images)),
            k % 3,
            k // 5,
            avoid=frozenset({ImageId(f"p-{k}", 100)}),
        )
        for k in range(n_scenes)
    ]


def test_gexf_carries_scenes_existence_and_path(tmp_path: Path) -> None:
    scenes = song(3, 4)
    hops = plan_path(scenes, 1)
    exists = {
        frozenset((hops[0].a, hops[0].b)),
        frozenset((ImageId("p-0", 101), ImageId("p-1", 102))),
    }
    target = tmp_path / "story" / "graph.gexf"
    write_gexf(build_graph(scenes), target, hops, exists)
    graph = nx.read_gexf(target)
    assert graph.number_of_nodes() == 12
    assert graph.nodes["p-1_102"]["scene"] == "scene 1"
    assert graph.nodes["p-1_102"]["section"] == 0
    first = graph.edges[hops[0].a.stem, hops[0].b.stem]
    assert first["exists"] is True and first["on_path"] is True
    assert first["kind"] == hops[0].kind
    other = graph.edges["p-0_101", "p-1_102"]
    assert other["kind"] == "inter" and other["exists"] is True
    assert sum(d["on_path"] for *_, d in graph.edges(data=True)) == len(hops)
    assert sum(d["exists"] for *_, d in graph.edges(data=True)) == 2
    assert [p.name for p in target.parent.iterdir()] == ["graph.gexf"]


def test_plan_picture_is_a_png(tmp_path: Path) -> None:
    scenes = song(5, 5)
    paths = plan_paths(scenes, 0, 3)
    exists = {frozenset(p) for p in union_transitions(paths[1:])}
    target = tmp_path / "story" / "plan.png"
    draw_plan(scenes, paths[0], exists, target)
    with Image.open(target) as image:
        assert image.format == "PNG"
        width, height = image.size
        image.verify()
    assert width > 300 and height > 200
    assert [p.name for p in target.parent.iterdir()] == ["plan.png"]


def test_large_plan_picture_stays_fast(tmp_path: Path) -> None:
    scenes = song(200, 30)
    paths = plan_paths(scenes, 0, 30)
    exists = {frozenset(p) for p in union_transitions(paths[1:])}
    began = time.perf_counter()
    draw_plan(scenes, paths[0], exists, tmp_path / "plan.png")
    assert time.perf_counter() - began < 20
    with Image.open(tmp_path / "plan.png") as image:
        assert image.size[0] <= 4500 and image.size[1] <= 3500
