"""`run`: the main job, render-prompts, transitions and movie in sequence, each resuming."""

from __future__ import annotations

from collections.abc import Callable

from sdmorph.core.errors import SdmorphError
from sdmorph.core.ids import transition_name
from sdmorph.core.progress import SILENT, Listener
from sdmorph.formats.song import Song
from sdmorph.render.renderer import Renderer, batch_size_for
from sdmorph.stages.keyframes import render_keyframes, select_images
from sdmorph.stages.movie import (
    MovieRequest,
    MovieResult,
    check_request,
    make_movie,
    transitions_command,
)
from sdmorph.stages.plan import make_plan, open_store, planned_pairs
from sdmorph.stages.transitions import RenderReport, failure, render_planned

_WHY_UNRENDERED = {"stale": "was rendered with other settings",
                   "incomplete-legacy": "is an incomplete legacy folder",
                   "busy": "is being rendered by another sdmorph process"}
_SHOWN_UNRENDERED = 3


def run_song(song: Song, request: MovieRequest, open_renderer: Callable[[], Renderer], *,
             batch_size: int | None = None, listener: Listener = SILENT) -> MovieResult:
    """Keyframes, then the planned transitions, then the movie.

    The movie request is checked before the model loads: a bad codec, audio file or story
    name fails at once, not after hours of rendering. The transitions' report is shown
    before a movie that cannot be made (planned transitions left unrendered) stops the run.
    """
    check_request(song, request)
    renderer = open_renderer()
    batch = batch_size_for(renderer, batch_size)
    listener.note("1/3 keyframes")
    images = select_images(renderer, None)
    with listener.bars(("keyframes", len(images))) as (advance,):
        render_keyframes(renderer, images, batch_size=batch, on_image=advance)
    listener.note("2/3 transitions")
    store = open_store(song)
    plan = make_plan(song, request.seed, 1, store)
    pairs, _ = planned_pairs(song)
    report = render_planned(renderer, store, pairs, plan.skipped, batch_size=batch,
                            path=plan.paths[0], listener=listener)
    listener.show(report)
    problem = failure(report) or unrendered(song, request, report)
    if problem is not None:
        raise problem
    listener.note("3/3 movie")
    return make_movie(song, request, listener)


def unrendered(song: Song, request: MovieRequest, report: RenderReport) -> SdmorphError | None:
    """The movie needs the planned transitions: say which are left and how to fix it."""
    left = report.having(*_WHY_UNRENDERED)
    if not left:
        return None
    shown = "; ".join(
        f"'{transition_name(o.a, o.b)}' {_WHY_UNRENDERED[o.status]}"
        + (f" ({o.reason})" if o.reason and o.status != "busy"
           and o.reason not in _WHY_UNRENDERED[o.status] else "")
        for o in left[:_SHOWN_UNRENDERED])
    more = f" and {len(left) - _SHOWN_UNRENDERED} more" if len(left) > _SHOWN_UNRENDERED else ""
    command = transitions_command(song, request) + (f" --seed {request.seed}"
                                                    if request.seed else "")
    if all(o.status == "busy" for o in left):
        fix = "run the same command again once the other process has finished"
    else:
        fix = f"`{command} --force` renders them into new folders; then run the same command again"
    return SdmorphError(f"{len(left)} planned transition(s) not rendered, so no movie was made: "
                        f"{shown}{more}; {fix}")
