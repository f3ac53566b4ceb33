"""The planning half of `transitions`: choose paths, write the plan files an artist edits.

The plan depends only on the song's files and the seed; only the folder names written
beside it look at the disk (a legacy folder that already holds a transition is named).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sdmorph.core.errors import Problem, SdmorphError
from sdmorph.core.ids import Ends
from sdmorph.core.paths import Hop, build_graph, edge_count, plan_paths
from sdmorph.formats.plan_tables import (
    INTER_FILE,
    INTRA_FILE,
    META_FOLDER,
    PLANNED_FILE,
    read_story,
    read_transition_tables,
    write_planned_path,
    write_transition_tables,
)
from sdmorph.formats.song import Song, resolver
from sdmorph.media.plan_picture import draw_plan, write_gexf
from sdmorph.media.store import TransitionStore

# Up to this many edges (about 100 scenes of 18 seeds) graph.gexf is written unasked.
GEXF_AUTO_EDGES = 50_000


@dataclass
class Plan:
    paths: list[list[Hop]]
    pairs: list[Ends]
    skipped: list[Ends]
    files: list[Path]


def open_store(song: Song) -> TransitionStore:
    return TransitionStore(song.media_dir, song.seeds_by_prompt(),
                           song.profile.interpolation_steps)


def make_plan(song: Song, seed: int, n_paths: int, store: TransitionStore,
              gexf: bool = False) -> Plan:
    """Plan `n_paths` paths (seeds seed, seed+1, ...) and write the plan files.

    `gexf` writes story/graph.gexf even for a graph too big to write unasked (`draw_graphs`).
    """
    paths = plan_paths(song.scenes, seed, n_paths)
    hops = [hop for path in paths for hop in path]
    meta = song.media_dir / META_FOLDER
    intra, inter = write_transition_tables(meta, hops, song.profile.interpolation_steps,
                                           resolve=resolver(song))
    pairs = [row.images() for row in [*intra, *inter] if row.compute == "y"]
    skipped = [row.images() for row in [*intra, *inter]
               if row.compute != "y" and row.planned == "y"]
    files = [meta / "intrascene_transitions.csv", meta / "interscene_transitions.csv",
             write_planned_path(song.media_dir, paths[0], store.locate)]
    files += draw_graphs(song, paths[0], store, gexf)
    return Plan(paths=paths, pairs=pairs, skipped=skipped, files=files)


def draw_graphs(song: Song, path: list[Hop] | None, store: TransitionStore,
                gexf: bool = False) -> list[Path]:
    """story/plan_graph.png and story/graph.gexf, marking what is rendered now.

    `path` None: the planned path written last (story/trans_sequence_gen.csv). The GEXF
    holds every transition a path may take: for a big song hundreds of thousands of edges
    and tens of megabytes that only Gephi users want, so past `GEXF_AUTO_EDGES` it is
    written when asked for (`gexf`) and kept up to date once it exists.
    """
    path = planned_path(song) if path is None else path
    story = song.media_dir / "story"
    exists = store.complete_pairs()
    written = [story / "plan_graph.png"]
    target = story / "graph.gexf"
    if gexf or target.is_file() or edge_count(song.scenes) <= GEXF_AUTO_EDGES:
        write_gexf(build_graph(song.scenes), target, path, exists)
        written.insert(0, target)
    draw_plan(song.scenes, path, exists, story / "plan_graph.png")
    return written


def planned_path(song: Song) -> list[Hop]:
    """The planned path as story/trans_sequence_gen.csv holds it; [] if none or unreadable
    (the picture then shows what is rendered without a path, rather than nothing)."""
    path = song.media_dir / PLANNED_FILE
    if not path.is_file():
        return []
    try:
        rows = read_story(path, resolver(song))
    except SdmorphError:
        return []
    return [Hop(row.c1, row.c2, row.scene_from, row.scene_to, row.section,
                "intra" if row.kind == "intra" or (not row.kind and row.scene_from == row.scene_to)
                else "inter")
            for row in rows]


def planned_pairs(song: Song) -> tuple[list[Ends], list[Ends]]:
    """(to render, set to n by the artist) from the transition tables, as written."""
    meta = song.media_dir / META_FOLDER
    intra, inter = read_transition_tables(meta)
    if not intra and not inter:
        raise SdmorphError(f"{meta}: no plan yet (intrascene_transitions.csv and "
                           f"interscene_transitions.csv); run `sdmorph transitions {song.name}` "
                           "without --render-only first")
    resolve = resolver(song)
    todo: list[Ends] = []
    skipped: list[Ends] = []
    problems: list[Problem] = []
    for table, rows in ((meta / INTRA_FILE, intra), (meta / INTER_FILE, inter)):
        for row in rows:
            try:
                if row.compute == "y":
                    todo.append(row.images(resolve))
                elif row.planned == "y":  # not the n rows kept only to be remembered
                    skipped.append(row.images(resolve))
            except SdmorphError as exc:
                problems.append(Problem(f"{exc} (plan again, or fix the row)", table, row.row,
                                        "from_seed/to_seed"))
    if problems:
        raise SdmorphError(*problems)
    return todo, skipped
