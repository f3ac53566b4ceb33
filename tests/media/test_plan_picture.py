"""Gephi files and plan pictures."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import networkx as nx
import pytest
from PIL import Image

from sdmorph.core.ids import ImageId, Pair, pair_key
from sdmorph.core.paths import Hop, SceneSpec, build_graph, plan_path, plan_paths
from sdmorph.media.plan_picture import draw_plan, write_gexf
from songs import union_transitions


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


def _networkx_gexf(graph: nx.Graph, target: Path, hops: list[Hop], exists: set[Pair]) -> None:
    """The file as sdmorph wrote it through networkx's writer before the streamed one."""
    on_path = {pair_key(hop.a, hop.b) for hop in hops}
    out = nx.Graph()
    for node, attrs in graph.nodes(data=True):
        out.add_node(node.stem, label=node.stem, scene=attrs["scene"], section=attrs["section"])
    for a, b, attrs in graph.edges(data=True):
        key = pair_key(a, b)
        out.add_edge(a.stem, b.stem, kind=attrs["type"], exists=key in exists,
                     on_path=key in on_path)
    nx.write_gexf(out, target)


def _marked(scenes: list[SceneSpec]) -> tuple[list[Hop], set[Pair]]:
    """A planned path, and as rendered: every other hop of it plus one edge off it."""
    hops = plan_path(scenes, 1)
    exists = {pair_key(hop.a, hop.b) for hop in hops[::2]}
    exists.add(pair_key(scenes[0].images[1], scenes[1].images[2]))
    return hops, exists


def test_gexf_reads_back_as_the_graph_and_as_networkx_wrote_it(tmp_path: Path) -> None:
    scenes = song(4, 5)
    graph = build_graph(scenes)
    hops, exists = _marked(scenes)
    write_gexf(graph, tmp_path / "graph.gexf", hops, exists)
    _networkx_gexf(graph, tmp_path / "networkx.gexf", hops, exists)
    ours, theirs = nx.read_gexf(tmp_path / "graph.gexf"), nx.read_gexf(tmp_path / "networkx.gexf")
    # Same nodes, edges, attributes, edge ids and order as networkx's writer gave.
    assert list(ours.nodes(data=True)) == list(theirs.nodes(data=True))
    assert list(ours.edges(data=True)) == list(theirs.edges(data=True))
    # And what the graph says: every node and edge, with their attributes.
    assert ours.number_of_nodes() == graph.number_of_nodes() == 20
    assert ours.number_of_edges() == graph.number_of_edges()
    for node, attrs in graph.nodes(data=True):
        assert ours.nodes[node.stem] == {"label": node.stem, "scene": attrs["scene"],
                                         "section": attrs["section"]}
    on_path = {pair_key(hop.a, hop.b) for hop in hops}
    for a, b, attrs in graph.edges(data=True):
        data = ours.edges[a.stem, b.stem]
        assert (data["kind"], data["exists"], data["on_path"]) == (
            attrs["type"], pair_key(a, b) in exists, pair_key(a, b) in on_path)
    assert sum(d["on_path"] for *_, d in ours.edges(data=True)) == len(on_path)
    assert sum(d["exists"] for *_, d in ours.edges(data=True)) == len(exists)


def test_gexf_declares_gexf_1_2_for_gephi(tmp_path: Path) -> None:
    scenes = song(2, 3)
    write_gexf(build_graph(scenes), tmp_path / "graph.gexf", plan_path(scenes, 0), set())
    root = ElementTree.parse(tmp_path / "graph.gexf").getroot()
    ns = "{http://www.gexf.net/1.2draft}"
    assert root.tag == f"{ns}gexf" and root.get("version") == "1.2"
    graph = root.find(f"{ns}graph")
    assert graph is not None and graph.get("defaultedgetype") == "undirected"
    # The order the GEXF schema asks for: attribute declarations, then nodes, then edges.
    assert [child.tag.removeprefix(ns) for child in graph] == [
        "attributes", "attributes", "nodes", "edges"]
    titles = {a.get("title"): a.get("type") for a in graph.iter(f"{ns}attribute")}
    assert titles == {"scene": "string", "section": "long", "kind": "string",
                      "exists": "boolean", "on_path": "boolean"}


def test_gexf_escapes_names_and_drops_what_xml_cannot_hold(tmp_path: Path) -> None:
    odd = 'a <b> & "c" \'d\'\tline\nbreak 🎵'
    scenes = [
        SceneSpec(f"{odd} scene\x01", (ImageId(odd, 1), ImageId("plain", 2)), 1, 3),
        SceneSpec("next", (ImageId("x&y", 3),), 0, 4),
    ]
    write_gexf(build_graph(scenes), tmp_path / "graph.gexf", plan_path(scenes, 0), set())
    graph = nx.read_gexf(tmp_path / "graph.gexf")
    assert graph.nodes[f"{odd}_1"]["scene"] == f"{odd} scene\ufffd"
    assert graph.nodes["x&y_3"]["section"] == 4
    assert graph.edges[f"{odd}_1", "plain_2"]["kind"] == "intra"
    assert graph.number_of_edges() == 3
    text = (tmp_path / "graph.gexf").read_text(encoding="utf-8")
    assert "x&amp;y_3" in text and "&lt;b&gt;" in text and "&#10;" in text and "\x01" not in text


def test_gexf_is_the_same_bytes_for_the_same_input(tmp_path: Path) -> None:
    scenes = song(5, 4)
    hops, exists = _marked(scenes)
    write_gexf(build_graph(scenes), tmp_path / "a.gexf", hops, exists)
    # Another graph object and the rendered pairs in another order: still the same file.
    write_gexf(build_graph(scenes), tmp_path / "b.gexf", hops, list(reversed(list(exists))))
    assert (tmp_path / "a.gexf").read_bytes() == (tmp_path / "b.gexf").read_bytes()
    write_gexf(build_graph(scenes), tmp_path / "a.gexf", hops, exists)  # over the old file
    assert (tmp_path / "a.gexf").read_bytes() == (tmp_path / "b.gexf").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gexf", "b.gexf"]


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


@pytest.mark.slow
def test_large_plan_picture_stays_bounded(tmp_path: Path) -> None:
    # How long it takes is measured by the benchmarks (plan_only_200x30), not asserted here.
    scenes = song(200, 30)
    paths = plan_paths(scenes, 0, 30)
    exists = {frozenset(p) for p in union_transitions(paths[1:])}
    draw_plan(scenes, paths[0], exists, tmp_path / "plan.png")
    with Image.open(tmp_path / "plan.png") as image:
        assert image.size[0] <= 4500 and image.size[1] <= 3500
