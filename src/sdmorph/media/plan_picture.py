"""Pictures of a plan and Gephi files of the transition graph.

Both show the same things: images grouped by scene, which transitions are rendered, and
which ones the planned path (or story) uses. Files are written atomically.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Collection, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import TextIO
from xml.sax.saxutils import quoteattr

import networkx as nx
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from sdmorph.core.ids import ImageId, Pair, pair_key
from sdmorph.core.paths import Hop, SceneSpec
from sdmorph.formats.fsio import atomic_path, write_bytes

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
    Drawn with Pillow: matplotlib's import and two renders took 2.3 s of a 200 x 30 plan.
    """
    where = _layout(scenes)
    canvas = _Canvas(scenes)
    rendered = _draw_rendered(canvas, where, exists)
    on_path = _draw_path(canvas, path_hops, where, exists)
    _draw_nodes(canvas, scenes, where, label=len(where) <= _LABEL_NODES_MAX)
    _draw_scene_names(canvas, scenes)
    avoided = any(spec.avoid for spec in scenes)
    _draw_legend(canvas, avoided, rendered > 0, path_hops, on_path)
    info = PngInfo()
    info.add_text("Software", "sdmorph")
    info.add_text("path_rendered", f"{on_path} of {len(path_hops)}")
    info.add_text("rendered_transitions", str(rendered))
    buffer = io.BytesIO()
    # Fast zlib: level 6 spent 0.25 s of a 200 x 30 plan for a file a third smaller.
    canvas.image.save(buffer, format="PNG", pnginfo=info, compress_level=1)
    write_bytes(Path(target), buffer.getvalue())


Point = tuple[float, float]
_BLUE, _GREY, _RED, _INK = (31, 119, 180), (191, 191, 191), (214, 39, 40), (40, 40, 40)
_NAMES_BAND = 130  # pixels under the columns for the scene names, written at an angle
_LEGEND_BAND = 44  # two lines of legend


class _Canvas:
    """The picture and the map from plan coordinates (scene, -image row) to its pixels."""

    def __init__(self, scenes: Sequence[SceneSpec]) -> None:
        tallest = max((len(spec.images) for spec in scenes), default=1)
        self.columns = max(len(scenes), 1)
        width = int(min(4000, max(600, 110 * self.columns)))
        height = int(min(3000, max(400, 36 * tallest + 150)))
        self.image = Image.new("RGB", (width, height), "white")
        self.draw = ImageDraw.Draw(self.image, "RGBA")  # RGBA: fills blend by their alpha
        self.font = ImageFont.load_default(size=11)
        self.small = ImageFont.load_default(size=9)
        self.rows = max(tallest - 1, 1)
        self.left, self.right = 40.0, width - 40.0
        self.top, self.bottom = _LEGEND_BAND + 14.0, height - _NAMES_BAND - 10.0

    def at(self, point: Point) -> Point:
        x = self.left + (point[0] + 0.5) / self.columns * (self.right - self.left)
        y = self.top + (-point[1]) / self.rows * (self.bottom - self.top)
        return x, y


def _layout(scenes: Sequence[SceneSpec]) -> dict[ImageId, Point]:
    where: dict[ImageId, Point] = {}
    for x, spec in enumerate(scenes):
        for y, image in enumerate(dict.fromkeys(spec.images)):
            where.setdefault(image, (float(x), -float(y)))
    return where


def _segment(a: Point, b: Point) -> list[Point]:
    """A straight line between scenes; an arc bulging right inside one (columns overlap)."""
    if a[0] != b[0]:
        return [a, b]
    bulge = 0.12 * min(3.0, abs(a[1] - b[1]))
    steps = [k / (_CURVE_POINTS - 1) for k in range(_CURVE_POINTS)]
    return [(a[0] + bulge * math.sin(math.pi * t), a[1] + (b[1] - a[1]) * t) for t in steps]


def _edges_between(pairs: Collection[Pair], where: dict[ImageId, Point]) -> list[list[Point]]:
    lines = []
    for pair in pairs:
        ends = sorted(pair)
        if len(ends) == 2 and all(end in where for end in ends):
            a, b = where[ends[0]], where[ends[1]]
            if abs(a[0] - b[0]) <= 1:  # only edges of the graph: same or consecutive scenes
                lines.append(_segment(a, b))
    return sorted(lines)  # drawn in one order whatever order the pairs came in


def _draw_rendered(canvas: _Canvas, where: dict[ImageId, Point], exists: Collection[Pair]) -> int:
    """Draw the rendered transitions; returns how many were drawn."""
    lines = _edges_between(exists, where)
    # Thousands of rendered transitions would paint a solid block: fade them as they grow.
    alpha = round(255 * min(0.8, max(0.05, 1500 / max(len(lines), 1))))
    for line in lines:
        canvas.draw.line([canvas.at(p) for p in line], fill=(128, 128, 128, alpha), width=1)
    return len(lines)


def _draw_path(
    canvas: _Canvas, hops: Sequence[Hop], where: dict[ImageId, Point], exists: Collection[Pair]
) -> int:
    """Draw the path; returns how many of its hops are rendered."""
    for hop in hops:
        if hop.a in where and hop.b in where:
            line = [canvas.at(p) for p in _segment(where[hop.a], where[hop.b])]
            if pair_key(hop.a, hop.b) in exists:
                canvas.draw.line(line, fill=_RED, width=3, joint="curve")
            else:
                _dashed(canvas.draw, line, _RED, 3)
    return sum(pair_key(hop.a, hop.b) in exists for hop in hops)


def _dashed(draw: ImageDraw.ImageDraw, line: list[Point], fill: tuple[int, ...], width: int,
            dash: float = 8.0) -> None:
    """A polyline drawn as dashes of `dash` pixels with gaps as long, continuing across corners."""
    travelled = 0.0
    for (x0, y0), (x1, y1) in zip(line, line[1:], strict=False):
        length = math.hypot(x1 - x0, y1 - y0)
        done = 0.0
        while done < length:
            phase = travelled % (2 * dash)
            run = min(length - done, (dash if phase < dash else 2 * dash) - phase)
            if phase < dash:
                a, b = done / length, (done + run) / length
                draw.line([(x0 + (x1 - x0) * a, y0 + (y1 - y0) * a),
                           (x0 + (x1 - x0) * b, y0 + (y1 - y0) * b)], fill=fill, width=width)
            done += run
            travelled += run


def _draw_nodes(
    canvas: _Canvas, scenes: Sequence[SceneSpec], where: dict[ImageId, Point], label: bool
) -> None:
    avoided = frozenset().union(*(spec.avoid for spec in scenes))
    for image, point in where.items():
        x, y = canvas.at(point)
        canvas.draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=_GREY if image in avoided else _BLUE)
        if label:
            canvas.draw.text((x + 5, y - 12), image.stem, fill=_INK, font=canvas.small)


def _draw_scene_names(canvas: _Canvas, scenes: Sequence[SceneSpec]) -> None:
    """Every scene's name and section under its column, slanted so long names fit."""
    step = max(1, -(-len(scenes) // _SCENE_NAMES_MAX))
    for index in range(0, len(scenes), step):
        spec = scenes[index]
        text = f"{spec.name[:40]} (s{spec.section})"
        box = canvas.draw.textbbox((0, 0), text, font=canvas.font)
        label = Image.new("L", (box[2] + 4, box[3] + 4), 0)
        ImageDraw.Draw(label).text((2, 2), text, fill=255, font=canvas.font)
        turned = label.rotate(30, expand=True, resample=Image.Resampling.BICUBIC)
        x, _ = canvas.at((float(index), 0.0))
        corner = (int(x - turned.width), int(canvas.bottom + 12))
        canvas.image.paste(Image.new("RGB", turned.size, _INK), corner, turned)


def _draw_legend(canvas: _Canvas, avoided: bool, rendered: bool, hops: Sequence[Hop],
                 on_path: int) -> None:
    entries: list[tuple[str, str]] = [("dot", "image")]
    if avoided:
        entries.append(("avoided", "avoided image"))
    if rendered:
        entries.append(("grey", "rendered transition"))
    if on_path:
        entries.append(("solid", "path (rendered)"))
    if on_path < len(hops):
        entries.append(("dashed", "path (not rendered)"))
    x, y = canvas.left, 8.0
    for kind, text in entries:
        if x + 40 + canvas.draw.textlength(text, font=canvas.font) > canvas.right:
            x, y = canvas.left, y + 18  # a narrow picture: the legend wraps
        if kind in ("dot", "avoided"):
            fill = _BLUE if kind == "dot" else _GREY
            canvas.draw.ellipse((x + 8, y + 4, x + 14, y + 10), fill=fill)
        elif kind == "dashed":
            _dashed(canvas.draw, [(x, y + 7), (x + 22, y + 7)], _RED, 3, dash=5)
        else:
            colour, width = ((128, 128, 128), 1) if kind == "grey" else (_RED, 3)
            canvas.draw.line([(x, y + 7), (x + 22, y + 7)], fill=colour, width=width)
        canvas.draw.text((x + 28, y), text, fill=_INK, font=canvas.font)
        x += 40 + canvas.draw.textlength(text, font=canvas.font)
