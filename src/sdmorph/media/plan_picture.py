"""Pictures of a plan and Gephi files of the transition graph.

Both show the same things: images grouped by scene, which transitions are rendered, and
which ones the planned path (or story) uses. Files are written atomically.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Collection, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, TextIO
from xml.sax.saxutils import quoteattr

import networkx as nx
import numpy as np

from sdmorph.core.ids import ImageId, Pair, pair_key
from sdmorph.core.paths import Hop, SceneSpec
from sdmorph.formats.fsio import atomic_path, write_bytes

if TYPE_CHECKING:
    from matplotlib.axes import Axes

# Above these sizes the picture drops node labels / thins scene names to stay readable.
_LABEL_NODES_MAX = 150
_SCENE_NAMES_MAX = 60
_CURVE_POINTS = 9


def write_gexf(
    graph: nx.Graph,
    path: Path,
    path_hops: Sequence[Hop],
    exists: Collection[Pair],
) -> None:
    """Write `graph` (from `plan.build_graph`) for Gephi, as GEXF 1.2.

    Nodes are named by image stem, with `scene` and `section`; edges carry `kind`
    (intra/inter; the graph's `type` attribute, renamed because GEXF reserves `type` for
    directed/undirected), `exists` (rendered, either direction) and `on_path`.

    The XML is streamed line by line rather than through networkx's writer, which builds
    an element tree of the whole graph first (11 s for 200 scenes x 30 seeds, 266,100
    edges). Same content and attribute ids as that writer; no date, so same input, same bytes.
    """
    on_path = {pair_key(hop.a, hop.b) for hop in path_hops}
    ids = {node: _xml_attr(_node_id(node)) for node in graph}  # quoted once, used per edge
    marks = _edge_marks(exists, on_path)
    with atomic_path(Path(path)) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as out:
        out.write(_GEXF_HEAD)
        _write_chunked(out, _gexf_nodes(graph, ids))
        out.write("    </nodes>\n    <edges>\n")
        _write_chunked(out, _gexf_edges(graph, ids, marks))
        out.write("    </edges>\n  </graph>\n</gexf>\n")


# The namespace and version networkx writes (and reads back) and Gephi opens; attribute ids
# as networkx numbers them, so files before and after the streamed writer compare.
_GEXF_HEAD = """\
<?xml version="1.0" encoding="UTF-8"?>
<gexf xmlns="http://www.gexf.net/1.2draft" \
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" \
xsi:schemaLocation="http://www.gexf.net/1.2draft http://www.gexf.net/1.2draft/gexf.xsd" \
version="1.2">
  <meta>
    <creator>sdmorph</creator>
    <description>The transition graph: images (nodes) grouped by scene; edges are the \
transitions a path may take (kind intra/inter), exists = rendered, on_path = on the \
planned path.</description>
  </meta>
  <graph defaultedgetype="undirected" mode="static">
    <attributes class="node" mode="static">
      <attribute id="0" title="scene" type="string"/>
      <attribute id="1" title="section" type="long"/>
    </attributes>
    <attributes class="edge" mode="static">
      <attribute id="2" title="kind" type="string"/>
      <attribute id="3" title="exists" type="boolean"/>
      <attribute id="4" title="on_path" type="boolean"/>
    </attributes>
    <nodes>
"""
_Marks = tuple[bool, bool]  # an edge's (exists, on_path)
_UNMARKED: _Marks = (False, False)
_MARKS = {(e, p): f'<attvalue for="3" value="{str(e).lower()}"/>'
                  f'<attvalue for="4" value="{str(p).lower()}"/>'
          for e in (False, True) for p in (False, True)}
_CHUNK_LINES = 4096
# Characters XML 1.0 cannot hold at all, not even escaped (tab, LF and CR it can).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_attr(text: str) -> str:
    """`text` as a quoted XML attribute value: escaped, characters XML forbids replaced."""
    return quoteattr(_NOT_XML.sub("\ufffd", text))


def _gexf_nodes(graph: nx.Graph, ids: dict[object, str]) -> Iterator[str]:
    for node, attrs in graph.nodes(data=True):
        scene = _xml_attr(str(attrs.get("scene", "")))
        section = int(attrs.get("section", 0))
        yield (f'      <node id={ids[node]} label={ids[node]}><attvalues>'
               f'<attvalue for="0" value={scene}/><attvalue for="1" value="{section}"/>'
               "</attvalues></node>\n")


def _edge_marks(
    exists: Collection[Pair], on_path: set[Pair]
) -> dict[object, dict[object, _Marks]]:
    """node -> {neighbour: marks} for the few marked edges, both directions.

    Looking up the edge's first end (the same for runs of edges) and then the other is
    cheaper than building a pair key for each of hundreds of thousands of edges.
    """
    rendered = set(exists)  # any collection may come in; only a set answers `in` quickly
    marks: dict[object, dict[object, _Marks]] = {}
    for pair in rendered | on_path:
        if len(pair) == 2:
            a, b = pair
            marks.setdefault(a, {})[b] = marks.setdefault(b, {})[a] = (
                pair in rendered, pair in on_path)
    return marks


def _gexf_edges(
    graph: nx.Graph, ids: dict[object, str], marks: dict[object, dict[object, _Marks]]
) -> Iterator[str]:
    kinds: dict[object, str] = {}  # "intra"/"inter", quoted once
    none: dict[object, _Marks] = {}
    for number, (a, b, kind) in enumerate(graph.edges(data="type", default="")):
        quoted = kinds.get(kind) or kinds.setdefault(kind, _xml_attr(str(kind)))
        flags = _MARKS[marks.get(a, none).get(b, _UNMARKED)]
        yield (f'      <edge id="{number}" source={ids[a]} target={ids[b]}><attvalues>'
               f'<attvalue for="2" value={quoted}/>{flags}</attvalues></edge>\n')


def _write_chunked(out: TextIO, lines: Iterator[str]) -> None:
    """Write `lines` a few thousand at a time: few write calls, little memory."""
    while chunk := "".join(islice(lines, _CHUNK_LINES)):
        out.write(chunk)


def _node_id(node: object) -> str:
    return node.stem if isinstance(node, ImageId) else str(node)


def draw_plan(
    scenes: Sequence[SceneSpec],
    path_hops: Sequence[Hop],
    exists: Collection[Pair],
    target: Path,
) -> None:
    """Save a PNG: scenes as columns in order, images as dots, rendered transitions as thin
    grey lines, the path as a thick line (solid where rendered, dashed where not).

    The PNG's text chunks say the same in numbers (`path_rendered`: "3 of 5"), for scripts.
    """
    # A Figure of its own, not pyplot: no global figure registry or GUI backend to load.
    from matplotlib.figure import Figure

    where = _layout(scenes)
    n_nodes = len(where)
    fig = Figure(figsize=_figure_size(scenes), dpi=100)
    ax = fig.subplots()
    rendered = _draw_rendered(ax, where, exists)
    on_path = _draw_path(ax, path_hops, where, exists)
    _draw_nodes(ax, scenes, where, label=n_nodes <= _LABEL_NODES_MAX)
    _decorate(ax, scenes)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # A name with an emoji or a rare script only misses its glyph in the picture.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.savefig(buffer, format="png", bbox_inches="tight", metadata={
            "Software": "sdmorph",
            "path_rendered": f"{on_path} of {len(path_hops)}",
            "rendered_transitions": str(rendered),
        })
    write_bytes(Path(target), buffer.getvalue())


def _layout(scenes: Sequence[SceneSpec]) -> dict[ImageId, tuple[float, float]]:
    where: dict[ImageId, tuple[float, float]] = {}
    for x, spec in enumerate(scenes):
        for y, image in enumerate(dict.fromkeys(spec.images)):
            where.setdefault(image, (float(x), -float(y)))
    return where


def _figure_size(scenes: Sequence[SceneSpec]) -> tuple[float, float]:
    tallest = max((len(spec.images) for spec in scenes), default=1)
    width = min(40.0, max(6.0, 1.2 * len(scenes)))
    height = min(30.0, max(4.0, 0.4 * tallest + 1.5))
    return width, height


def _segment(a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    """A straight line between scenes; an arc bulging right inside one (columns overlap)."""
    if a[0] != b[0]:
        return np.array([a, b])
    t = np.linspace(0.0, 1.0, _CURVE_POINTS)
    bulge = 0.12 * min(3.0, abs(a[1] - b[1])) * np.sin(np.pi * t)
    return np.column_stack([a[0] + bulge, a[1] + (b[1] - a[1]) * t])


def _edges_between(
    pairs: Collection[Pair], where: dict[ImageId, tuple[float, float]]
) -> list[np.ndarray]:
    lines = []
    for pair in pairs:
        ends = sorted(pair)
        if len(ends) == 2 and all(end in where for end in ends):
            a, b = where[ends[0]], where[ends[1]]
            if abs(a[0] - b[0]) <= 1:  # only edges of the graph: same or consecutive scenes
                lines.append(_segment(a, b))
    return lines


def _draw_rendered(
    ax: Axes,
    where: dict[ImageId, tuple[float, float]],
    exists: Collection[Pair],
) -> int:
    """Draw the rendered transitions; returns how many were drawn."""
    from matplotlib.collections import LineCollection

    lines = _edges_between(exists, where)
    if lines:
        # Thousands of rendered transitions would paint a solid block: fade them as they grow.
        alpha = min(0.8, max(0.05, 1500 / len(lines)))
        ax.add_collection(
            LineCollection(
                lines,
                colors="0.5",
                linewidths=0.6,
                alpha=alpha,
                zorder=1,
                label="rendered transition",
            )
        )
    return len(lines)


def _draw_path(
    ax: Axes,
    hops: Sequence[Hop],
    where: dict[ImageId, tuple[float, float]],
    exists: Collection[Pair],
) -> int:
    """Draw the path; returns how many of its hops are rendered."""
    from matplotlib.collections import LineCollection

    solid, dashed = [], []
    for hop in hops:
        if hop.a in where and hop.b in where:
            line = _segment(where[hop.a], where[hop.b])
            (solid if pair_key(hop.a, hop.b) in exists else dashed).append(line)
    style = dict(colors="tab:red", linewidths=2.2, zorder=3)
    if solid:
        ax.add_collection(LineCollection(solid, label="path (rendered)", **style))
    if dashed:
        ax.add_collection(
            LineCollection(dashed, linestyles="dashed", label="path (not rendered)", **style)
        )
    return sum(pair_key(hop.a, hop.b) in exists for hop in hops)


def _draw_nodes(
    ax: Axes, scenes: Sequence[SceneSpec], where: dict[ImageId, tuple[float, float]], label: bool
) -> None:
    avoided = frozenset().union(*(spec.avoid for spec in scenes))
    for group, color, name in ((False, "tab:blue", "image"), (True, "0.75", "avoided image")):
        points = [xy for image, xy in where.items() if (image in avoided) == group]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.scatter(xs, ys, s=18, c=color, zorder=4, label=name)
    if label:
        for image, (x, y) in where.items():
            ax.annotate(
                image.stem, (x, y), xytext=(4, 2), textcoords="offset points", fontsize=6,
                zorder=5, parse_math=False,  # names are text: `$x$` must not turn into maths
            )


def _decorate(ax: Axes, scenes: Sequence[SceneSpec]) -> None:
    step = max(1, -(-len(scenes) // _SCENE_NAMES_MAX))
    ticks = list(range(0, len(scenes), step))
    ax.set_xticks(ticks)
    ax.set_xticklabels(
        [f"{scenes[i].name}\n(s{scenes[i].section})" for i in ticks],
        rotation=60,
        parse_math=False,
        ha="right",
        fontsize=7,
    )
    ax.set_yticks([])
    ax.set_xlim(-0.6, max(len(scenes) - 0.4, 0.6))
    ax.autoscale(axis="y")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=5, fontsize=7, frameon=False)
