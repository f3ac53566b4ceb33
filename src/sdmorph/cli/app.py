"""The `sdmorph` command: parses options, calls the stages, reports. Nothing else lives here."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from sdmorph import __version__
from sdmorph.cli import ui
from sdmorph.core.errors import SdmorphError
from sdmorph.core.sharing import cluster_refusal
from sdmorph.formats.folders import Folders, load_folders
from sdmorph.render.scheduler_names import SCHEDULER_ALIASES

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="sdmorph",
    help="Turn a song's prompt sheet into a movie that morphs between Stable Diffusion images.\n\n"
    "Workflow: init -> validate -> explore -> render-prompts -> transitions -> movie "
    "(or `run` for the last three). Folders come from .env (media_dir, meta_dir, "
    "model_cache_dir), the environment, or the global options below.\n\n"
    "Models (tgen_settings.json): model_string is SD 1.x or SDXL ('tiny', 'tiny-xl', hub id, "
    "folder, .safetensors); scheduler: " + ", ".join(SCHEDULER_ALIASES) + " or a diffusers "
    "class name; timestep_spacing: trailing for Turbo models; loras: "
    '[{"path": "style.safetensors", "scale": 0.8}]. Guidance <= 1 skips the negative pass.',
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

SongArg = Annotated[str, typer.Argument(help="Song name: a folder under meta_dir and media_dir.")]
ProfileOpt = Annotated[
    str, typer.Option("--profile", "-P", help="Settings profile in tgen_settings.json.")
]
ScenesOpt = Annotated[
    str | None,
    typer.Option("--scenes", help="Use scene_sequence_<NAME>.csv instead of scene_sequence.csv."),
]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Treat warnings as errors.")]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", help="Override the profile's model_string ('tiny', 'tiny-xl', hub id, "
                 "folder, .safetensors file)."),
]
DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="cuda, mps or cpu (default: best available).")
]


def reported(fn: F) -> F:
    """Turn sdmorph errors into a few plain lines and exit code 2; Ctrl-C into exit 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SdmorphError as exc:
            for problem in exc.problems:
                ui.error(str(problem))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            ui.err.print("interrupted: everything finished so far is kept; run the same "
                         "command again to resume", soft_wrap=True)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the last resort: one line, never a traceback
            if os.environ.get("SDMORPH_DEBUG"):
                raise
            ui.error(f"unexpected {type(exc).__name__}: {exc} (this is a bug in sdmorph: please "
                     "report it with the command you ran; SDMORPH_DEBUG=1 shows the traceback)")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def folders_of(ctx: typer.Context) -> Folders:
    return ctx.obj["folders"]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sdmorph {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    media_dir: Annotated[Path | None, typer.Option(help="Folder for everything generated.")] = None,
    meta_dir: Annotated[Path | None, typer.Option(help="Folder of song metadata.")] = None,
    model_cache_dir: Annotated[
        Path | None, typer.Option(help="Hugging Face cache folder for model weights.")
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Global options apply to every command and override .env and the environment."""
    ctx.obj = {"folders": load_folders(
        media_dir=media_dir, meta_dir=meta_dir, model_cache_dir=model_cache_dir
    )}


def load(ctx: typer.Context, song: str, profile: str, scenes: str | None, strict: bool,
         checks: list[Callable[[Any], list[Any]]] | None = None) -> Any:
    """Load a song and print its warnings; `checks` add problems reported with the sheet's
    and scenes' (all at once)."""
    from sdmorph.formats.song import load_song

    folders = folders_of(ctx)
    loaded = load_song(folders.meta_song(song), folders.media_song(song), profile=profile,
                       scenes=scenes, strict=strict, checks=checks or [])
    return _warned(loaded)


def _warned(loaded: Any) -> Any:
    for warning in loaded.warnings:
        ui.warn(warning)
    return loaded


@app.command()
@reported
def init(
    ctx: typer.Context,
    song: SongArg,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Create a small working example song (prompt sheet, settings, scene sequence)."""
    from sdmorph.stages.init import write_example

    folders = folders_of(ctx)
    written = write_example(folders.meta_song(song), force=force)
    for path in written:
        ui.info(f"wrote {path}")
    ui.info(f"next: sdmorph validate {song}")


@app.command()
@reported
def validate(
    ctx: typer.Context,
    song: SongArg,
    profile: ProfileOpt = "default",
    scenes: ScenesOpt = None,
    strict: StrictOpt = False,
) -> None:
    """Check a song's metadata (prompts, seeds, scenes, masks, model settings) and summarise it."""
    from sdmorph.formats.song import summary
    from sdmorph.media.masks import mask_problems

    loaded = load(ctx, song, profile, scenes, strict, [mask_problems, _model_check()])
    ui.table(f"{song}: valid", ["", ""], summary(loaded))


def _model_check(model: str | None = None) -> Callable[[Any], list[Any]]:
    """The settings the model loader would refuse (scheduler, local model paths), up front."""

    def check(loaded: Any) -> list[Any]:
        from sdmorph.render.sources import profile_problems

        return profile_problems(loaded.profile, loaded.settings_path, model)

    return check


BatchOpt = Annotated[
    int | None,
    typer.Option("--batch-size", min=1, help="Images per model call (default: 8 on CUDA, 4 else)."),
]
CompileOpt = Annotated[
    bool, typer.Option("--compile", help="torch.compile the UNet and VAE (for long GPU runs).")
]
ClusterOpt = Annotated[
    str | None,
    typer.Option("--cluster", metavar="ADDRESS", help="Render on a Ray cluster: auto (the one "
                 "`ray start` joined here), HOST:PORT, ray://HOST:PORT, or local (Ray on this "
                 "machine, all its GPUs). One worker per GPU loads the model; frames come back "
                 "here. Needs pip install 'sdmorph[cluster]'."),
]
ClusterCpusOpt = Annotated[
    int | None,
    typer.Option("--cluster-cpus", min=1, help="With --cluster on machines without a GPU: CPUs "
                 "per worker (default: as many as the smallest machine has)."),
]
PacingOpt = Annotated[
    str | None,
    typer.Option("--pacing", help="Where frames lie along t: linear (evenly spaced t) or even "
                 "(consecutive frames differ about equally; up to 1.5x the renders). Default: "
                 "the profile's pacing, else linear."),
]


SharingOpt = Annotated[
    float | None,
    typer.Option("--sharing", help="Shared denoising, 0 <= s < 1: in-between frames join their "
                 "neighbours' denoising at a depth s sets, costing about 1 - s of a frame each "
                 "(0: every frame from its own noise). Default: the profile's sharing, else 0."),
]


def _paced(loaded: Any, pacing: str | None, sharing: float | None = None) -> Any:
    """The song with --pacing and --sharing in place of its profile's (recipe fields)."""
    import dataclasses

    from sdmorph.core.sharing import SHARING_MAX
    from sdmorph.formats.profile import PACINGS

    changes: dict[str, Any] = {}
    if pacing is not None:
        if pacing not in PACINGS:
            raise SdmorphError(f"--pacing {pacing!r}: use {' or '.join(PACINGS)}")
        changes["pacing"] = pacing
    if sharing is not None:
        if not 0 <= sharing <= SHARING_MAX:
            raise SdmorphError(f"--sharing {sharing}: use a number from 0 to {SHARING_MAX}")
        changes["sharing"] = sharing
    if not changes:
        return loaded
    profile = loaded.profile.model_copy(update=changes)
    return dataclasses.replace(loaded, settings=loaded.settings.model_copy(
        update={"profile": profile}))


def renderer_for(ctx: typer.Context, song: Any, model: str | None, device: str | None,
                 compile: bool = False, cluster: str | None = None,
                 cluster_cpus: int | None = None) -> Any:
    from sdmorph.render.renderer import open_renderer

    if cluster_cpus is not None and cluster is None:
        raise SdmorphError("--cluster-cpus needs --cluster ADDRESS")
    refusal = cluster_refusal(song.profile.sharing) if cluster else None
    if refusal:  # before Ray starts
        raise SdmorphError(f"--cluster: {refusal}")
    where = f" on the Ray cluster ({cluster})" if cluster else ""
    with ui.err.status(f"loading model {model or song.profile.model_string}{where} ..."):
        renderer = open_renderer(song, model=model, device=device, compile=compile,
                                 cache_dir=folders_of(ctx).model_cache_dir, cluster=cluster,
                                 cluster_cpus=cluster_cpus)
    renderer.engine.on_warning = ui.warn
    for notice in renderer.notices():
        ui.warn(notice)
    if cluster:
        ctx.call_on_close(renderer.engine.close)  # the workers stop with the command
        ui.info(f"rendering on the {renderer.engine.describe()}")
    return renderer


@app.command("render-prompts")
@reported
def render_prompts(
    ctx: typer.Context,
    song: SongArg,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Render only this prompt (repeatable).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Re-render images on disk.")] = False,
    profile: ProfileOpt = "default",
    scenes: ScenesOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    batch_size: BatchOpt = None,
    cluster: ClusterOpt = None,
    cluster_cpus: ClusterCpusOpt = None,
    strict: StrictOpt = False,
) -> None:
    """Render every (prompt, seed) keyframe to prompt_images/<prompt>_<seed>.png (resumable)."""
    from sdmorph.render.renderer import batch_size_for
    from sdmorph.stages.keyframes import render_keyframes, select_images

    loaded = load(ctx, song, profile, scenes, strict, [_model_check(model)])
    renderer = renderer_for(ctx, loaded, model, device, cluster=cluster,
                            cluster_cpus=cluster_cpus)
    images = select_images(renderer, only)
    with ui.bar("keyframes", len(images)) as advance:
        report = render_keyframes(renderer, images, force=force,
                                  batch_size=batch_size_for(renderer, batch_size), on_image=advance)
    for image in report.stale:
        ui.warn(f"{renderer.song.keyframe_path(image)} was rendered with other settings: kept "
                "(--force re-renders it)")
    ui.info(f"keyframes: {len(report.rendered)} rendered, {len(report.skipped)} already on "
            f"disk, in {report.seconds:.1f}s -> {loaded.media_dir / 'prompt_images'}")


@app.command()
@reported
def explore(
    ctx: typer.Context,
    song: SongArg,
    more: Annotated[
        list[int] | None,
        typer.Argument(help="More seeds for --keep or --seeds: `--keep 12 34 56`.",
                       show_default=False),
    ] = None,
    prompt: Annotated[
        str | None, typer.Option("--prompt", "-p", help="Prompt name (default: every prompt "
                                 "without seeds).")
    ] = None,
    n: Annotated[int, typer.Option("-n", min=1, help="How many random seeds to try.")] = 8,
    seeds: Annotated[
        list[int] | None, typer.Option("--seeds", help="Render these seeds instead (repeat or "
                                       "space-separate).")
    ] = None,
    prompt_text: Annotated[
        str | None, typer.Option("--prompt-text", help="Explore a prompt not in the sheet yet.")
    ] = None,
    keep: Annotated[
        list[int] | None, typer.Option("--keep", help="Append these seeds to the prompt's seeds "
                                       "cell in the sheet (repeatable); renders nothing.")
    ] = None,
    sweep: Annotated[
        list[str] | None, typer.Option("--sweep", help="KEY=V1,V2,... : render the first seed "
                                       "at every value (at most two keys: rows x columns).")
    ] = None,
    rng_seed: Annotated[
        int | None, typer.Option("--rng-seed", help="Make the random seed draw reproducible.")
    ] = None,
    profile: ProfileOpt = "default",
    scenes: ScenesOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    batch_size: BatchOpt = None,
    strict: StrictOpt = False,
) -> None:
    """Try seeds for a prompt: images plus a contact sheet labelled by seed; keep the good ones.

    Only the prompt sheet and settings are read (not the scene sequence, --scenes is accepted
    for uniform scripts): a new song's prompts without seeds are what explore is for.
    """
    from sdmorph.render.renderer import batch_size_for
    keep, seeds = _more_seeds(keep, seeds, more)
    _check_explore_options(prompt, prompt_text, keep, seeds, sweep)
    if keep:
        _keep(ctx, song, prompt, keep, prompt_text)
        return
    loaded = _load_prompts(ctx, song, profile, strict, model)
    names = _explore_names(loaded, prompt, bool(sweep))
    if not names:
        return
    if prompt:
        from sdmorph.stages.explore import with_prompt

        loaded = with_prompt(loaded, prompt, prompt_text)
    renderer = renderer_for(ctx, loaded, model, device)
    if sweep:
        for name in names:
            _sweep(renderer, name, seeds, sweep)
        return
    _explore(renderer, names, n, seeds, rng_seed, batch_size_for(renderer, batch_size))


def _check_explore_options(prompt: str | None, prompt_text: str | None, keep: list[int] | None,
                           seeds: list[int] | None, sweep: list[str] | None) -> None:
    """Refuse options that would otherwise be silently ignored; report them together."""
    problems = []
    if prompt_text is not None and not prompt:
        problems.append("--prompt-text needs -p NAME (the new prompt's name)")
    if keep and seeds:
        problems.append("--keep writes seeds to the sheet and --seeds renders seeds: give one "
                        "of them")
    if keep and sweep:
        problems.append("--keep renders nothing, so --sweep would be ignored: give one of them")
    if problems:
        raise SdmorphError(*problems)


def _load_prompts(ctx: typer.Context, song: str, profile: str, strict: bool,
                  model: str | None) -> Any:
    """The sheet and settings only: explore needs no scene sequence, nor seeds in its scenes."""
    from sdmorph.formats.song import load_prompts

    folders = folders_of(ctx)
    return _warned(load_prompts(folders.meta_song(song), folders.media_song(song),
                                profile=profile, strict=strict, checks=[_model_check(model)]))


def _explore_names(loaded: Any, prompt: str | None, sweep: bool) -> list[str]:
    """-p's prompt; else a sweep tunes every prompt with seeds, a plain run tries new ones."""
    from sdmorph.stages.explore import unexplored

    if prompt:
        return [prompt]
    if sweep:
        names = [name for name, p in loaded.prompts.items() if p.seeds]
        if not names:
            raise SdmorphError(f"no prompt in {loaded.sheet_path} has seeds yet: name one with "
                               "-p and give --seeds for the sweep")
        return names
    names = unexplored(loaded)
    if not names:
        ui.info("every prompt has seeds already; name one with -p to explore it further")
    return names


def _more_seeds(keep: list[int] | None, seeds: list[int] | None,
                more: list[int] | None) -> tuple[list[int] | None, list[int] | None]:
    """Click options take one value each; trailing numbers extend --keep or --seeds."""
    if not more:
        return keep, seeds
    if keep and seeds:
        return keep, seeds  # refused by _check_explore_options
    if keep:
        return [*keep, *more], seeds
    if seeds:
        return keep, [*seeds, *more]
    raise SdmorphError(f"unexpected numbers {more}: did you mean --keep or --seeds?")


def _keep(ctx: typer.Context, song: str, prompt: str | None, seeds: list[int],
          prompt_text: str | None) -> None:
    from sdmorph.formats.prompt_sheet import keep_seeds
    from sdmorph.formats.song import SHEET_FILE

    if not prompt:
        raise SdmorphError("--keep needs the prompt: -p NAME")
    sheet = folders_of(ctx).meta_song(song) / SHEET_FILE
    result = keep_seeds(sheet, prompt, seeds, prompt_text=prompt_text)
    if not result.changed:
        ui.info(f"{prompt}: seeds {', '.join(map(str, seeds))} already kept; sheet unchanged")
        return
    ui.info(f"{prompt}: kept {', '.join(map(str, result.added))} in {sheet} "
            f"(backup: {result.backup})")


def _explore(renderer: Any, names: list[str], n: int, seeds: list[int] | None,
             rng_seed: int | None, batch_size: int) -> None:
    import random

    from sdmorph.stages.explore import explore_prompt, random_seeds

    rng = random.Random(rng_seed)
    for name in names:
        chosen = list(seeds) if seeds else random_seeds(n, rng)
        with ui.bar(f"explore {name}", len(chosen)) as advance:
            result = explore_prompt(renderer, name, chosen, batch_size=batch_size,
                                    on_image=advance)
        ui.info(f"{name}: seeds {' '.join(map(str, result.seeds))}")
        ui.info(f"contact sheet: {result.sheet}")
        ui.info(f"keep the good ones: sdmorph explore {renderer.song.name} -p '{name}' --keep "
                "SEED ...")


def _sweep(renderer: Any, name: str, seeds: list[int] | None, specs: list[str]) -> None:
    from sdmorph.media.contact_sheet import parse_sweep
    from sdmorph.render.renderer import open_renderer
    from sdmorph.stages.explore import sweep as run_sweep

    song = renderer.song
    prompt = song.prompts[name]
    chosen = seeds or list(prompt.seeds[:1])
    if not chosen:
        raise SdmorphError(f"prompt {name!r} has no seeds yet: give --seeds for the sweep")
    sweeps = parse_sweep(specs)
    cells = 1
    for _, values in sweeps:
        cells *= len(values)
    for seed in chosen:
        with ui.bar(f"sweep {name} seed {seed}", cells) as advance:
            grid = run_sweep(lambda variant: open_renderer(variant, model=renderer.model,
                                                           engine=renderer.engine),
                             song, name, seed, sweeps, on_image=advance)
        ui.info(f"sweep grid: {grid}")


SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the random choices (reproducible).")]


@app.command()
@reported
def transitions(
    ctx: typer.Context,
    song: SongArg,
    seed: SeedOpt = 0,
    paths: Annotated[
        int, typer.Option("--paths", min=1, help="Plan N paths (seeds S, S+1, ...) and render "
                          "their union, so later stories have more to choose from.")
    ] = 1,
    plan_only: Annotated[
        bool, typer.Option("--plan-only", help="Write the plan files, render nothing.")
    ] = False,
    render_only: Annotated[
        bool, typer.Option("--render-only", help="Render what the plan files list (compute = y); "
                           "do not plan again.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Re-render stale transitions and incomplete legacy "
                           "folders (into new sdmorph folders).")
    ] = False,
    gexf: Annotated[
        bool, typer.Option("--gexf", help="Write story/graph.gexf (Gephi) even for a big song "
                           "(written unasked up to 50,000 transitions, kept up to date after).")
    ] = False,
    profile: ProfileOpt = "default",
    scenes: ScenesOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    batch_size: BatchOpt = None,
    compile: CompileOpt = False,
    pacing: PacingOpt = None,
    sharing: SharingOpt = None,
    cluster: ClusterOpt = None,
    cluster_cpus: ClusterCpusOpt = None,
    strict: StrictOpt = False,
) -> None:
    """Plan a path through the scene graph, then render each transition's frames (resumable)."""
    from sdmorph.stages.plan import make_plan, open_store, planned_pairs

    if plan_only and render_only:
        raise SdmorphError("--plan-only and --render-only exclude each other")
    loaded = _paced(load(ctx, song, profile, scenes, strict), pacing, sharing)
    store = open_store(loaded)
    path, skipped = None, None  # with --render-only: the plan files as they are
    if not render_only:
        plan = make_plan(loaded, seed, paths, store, gexf)
        path, skipped = plan.paths[0], plan.skipped
        hops = sum(len(p) for p in plan.paths)
        ui.info(f"planned {len(plan.paths)} path(s), {hops} hops, {len(plan.pairs)} transitions "
                f"to render ({len(plan.skipped)} set to compute = n)")
        for file in plan.files:
            ui.info(f"wrote {file}")
        if not any(file.suffix == ".gexf" for file in plan.files):
            ui.info("story/graph.gexf (Gephi) left out for a graph this big: --gexf writes it")
    if plan_only:
        return  # before anything imports torch: planning a big song takes seconds, not tens
    from sdmorph.cli import tables
    from sdmorph.cli.terminal import TERMINAL
    from sdmorph.render.renderer import batch_size_for
    from sdmorph.stages.transitions import failure, render_planned

    pairs, table_skipped = planned_pairs(loaded)
    renderer = renderer_for(ctx, loaded, model, device, compile, cluster, cluster_cpus)
    report = render_planned(renderer, store, pairs,
                            table_skipped if skipped is None else skipped,
                            batch_size=batch_size_for(renderer, batch_size), force=force,
                            path=path, listener=TERMINAL)
    tables.transitions_summary(report)
    problem = failure(report)
    if problem is not None:
        raise problem


@app.command()
@reported
def movie(
    ctx: typer.Context,
    song: SongArg,
    seed: SeedOpt = 0,
    name: StoryNameOpt = "base",
    from_plan: Annotated[
        bool, typer.Option("--from-plan", help="Use the planned path story/trans_sequence_gen.csv.")
    ] = False,
    sequence: Annotated[
        Path | None, typer.Option("--sequence", help="Encode this story file as it is (e.g. a "
                                  "hand-edited story/trans_sequence.csv).")
    ] = None,
    codec: Annotated[
        str, typer.Option("--codec", help="mjpeg (.mov, every frame a keyframe, for VJ "
                          "software), h264 (.mp4, browsers) or both.")
    ] = "both",
    fps: Annotated[
        float | None, typer.Option("--fps", min=0.001, help="Frames per second (default: "
                                   "settings' fps, else 10).")
    ] = None,
    quality: Annotated[
        int | None, typer.Option("--quality", help="mjpeg -q:v (1 best..31, default 3) / h264 "
                                 "crf (0..51, default 18).")
    ] = None,
    hold: Annotated[
        float, typer.Option("--hold", min=0.0, help="Seconds to pause on each keyframe.")
    ] = 0.0,
    smooth: Annotated[
        float | None, typer.Option("--smooth", min=1.0, help="Raise the frame rate to this with "
                                   "motion interpolation (ffmpeg minterpolate).")
    ] = None,
    audio: Annotated[
        Path | None, typer.Option("--audio", help="Audio file (default: <song>.wav/.mp3/.flac/"
                                  ".m4a or audio.* in the song's meta folder).")
    ] = None,
    no_audio: Annotated[bool, typer.Option("--no-audio", help="Leave the audio out.")] = False,
    fit_audio: Annotated[
        bool, typer.Option("--fit-audio", help="Set the fps so the movie lasts as long as the "
                           "audio.")
    ] = False,
    clips: Annotated[
        bool, typer.Option("--clips", help="Also write every transition as its own clip, with "
                           "clips.json (for VJ software).")
    ] = False,
    beats: BeatsOpt = False,
    beats_per_transition: BeatsPerTransitionOpt = None,
    profile: ProfileOpt = "default",
    scenes: ScenesOpt = None,
    strict: StrictOpt = False,
) -> None:
    """Choose a story through the rendered transitions and encode it with the song's audio."""
    from sdmorph.cli import tables
    from sdmorph.cli.terminal import TERMINAL
    from sdmorph.stages.movie import MovieRequest, make_movie

    loaded = load(ctx, song, profile, scenes, strict)
    request = MovieRequest(
        name=name, seed=seed, from_plan=from_plan, sequence=sequence, codec=codec, fps=fps,
        quality=quality, hold=hold, smooth=smooth, audio=audio, no_audio=no_audio,
        fit_audio=fit_audio, clips=clips, profile=profile, scenes=scenes, beats=beats,
        beats_per_transition=beats_per_transition,
    )
    result = make_movie(loaded, request, TERMINAL)
    tables.movie_summary(result)


@app.command()
@reported
def status(
    ctx: typer.Context,
    song: SongArg,
    profile: ProfileOpt = "default",
    scenes: ScenesOpt = None,
    model: ModelOpt = None,
    strict: StrictOpt = False,
) -> None:
    """Show what exists and what is missing at each stage, and the next command to run."""
    from sdmorph.cli import tables
    from sdmorph.stages.status import song_status

    loaded = load(ctx, song, profile, scenes, strict)
    for title, columns, rows in tables.status_tables(
        song_status(loaded, profile=profile, scenes=scenes, model=model)
    ):
        ui.table(title, columns, rows)


@app.command()
@reported
def adopt(
    ctx: typer.Context,
    song: SongArg,
    write_manifests: Annotated[
        bool, typer.Option("--write-manifests", help="Add sdmorph manifests beside complete "
                           "legacy frames so later runs skip the scan (frames untouched).")
    ] = False,
    profile: ProfileOpt = "default",
    scenes: ScenesOpt = None,
    model: ModelOpt = None,
    strict: StrictOpt = False,
) -> None:
    """Survey a song made with the old scripts: what is usable as is, what would render next."""
    from sdmorph.cli import tables
    from sdmorph.stages.adopt import adopt_report
    from sdmorph.stages.adopt import write_manifests as add_manifests

    loaded = load(ctx, song, profile, scenes, strict)
    for title, columns, rows in tables.adopt_tables(
        adopt_report(loaded, profile=profile, scenes=scenes, model=model)
    ):
        ui.table(title, columns, rows)
    if write_manifests:
        written = add_manifests(loaded)
        for path in written:
            ui.info(f"wrote {path}")
        ui.info(f"{len(written)} manifests written; no frame was changed")
    else:
        ui.info("no song file or frame was changed")


@app.command()
@reported
def inspect(
    ctx: typer.Context,
    song: SongArg,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print every transition's measures as JSON.")
    ] = False,
    top: Annotated[
        int, typer.Option("--top", min=1, help="Rows to show, jumpiest first.")
    ] = 20,
    profile: ProfileOpt = "default",
    scenes: ScenesOpt = None,
    strict: StrictOpt = False,
) -> None:
    """Rank the rendered transitions by how much they jump (J = max / median step), with
    where along t the jump is; draws story/smoothness.png. Scores are cached."""
    import json

    from sdmorph.cli import tables
    from sdmorph.cli.terminal import TERMINAL
    from sdmorph.stages.inspect import inspect_song

    loaded = load(ctx, song, profile, scenes, strict)
    result = inspect_song(loaded, listener=TERMINAL)
    if as_json:
        typer.echo(json.dumps(result.as_json(), indent=2, ensure_ascii=False))
        return
    for title, columns, rows in tables.inspect_tables(result, top):
        ui.table(title, columns, rows)
    if result.plot is not None:
        ui.info(f"picture: {result.plot}")


@app.command()
@reported
def report(
    ctx: typer.Context,
    song: SongArg,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Folder for the page and its previews "
                                  "(default: <media_dir>/<song>/report/).")
    ] = None,
    open_page: Annotated[
        bool, typer.Option("--open", help="Open the page in the web browser.")
    ] = False,
    profile: ProfileOpt = "default",
    scenes: ScenesOpt = None,
    model: ModelOpt = None,
    strict: StrictOpt = False,
) -> None:
    """Write a static review page: keyframes, explore sheets, transition previews, stories."""
    import webbrowser

    from sdmorph.cli.terminal import TERMINAL
    from sdmorph.stages.report import gather_report, summary_counts, write_report

    loaded = load(ctx, song, profile, scenes, strict)
    with ui.err.status("surveying the song's media folder ..."):
        survey = gather_report(loaded, out, profile=profile, scenes=scenes, model=model)
    result = write_report(survey, TERMINAL)
    counts = ", ".join(f"{n} {what}" for what, n in summary_counts(survey))
    failed = f", {result.failed} without a readable frame" if result.failed else ""
    ui.info(f"report: {result.page} ({counts})")
    ui.info(f"previews: {result.made} made, {result.reused} reused{failed}")
    if open_page:
        webbrowser.open(result.page.resolve().as_uri())
    else:
        ui.info(f"open it: {result.page.resolve().as_uri()}")


StoryNameOpt = Annotated[
    str, typer.Option("--name", "-o", help="Story name: output goes to stories/<NAME>/.")
]
CodecOpt = Annotated[
    str, typer.Option("--codec", help="mjpeg (.mov, every frame a keyframe, for VJ software), "
                      "h264 (.mp4, browsers) or both.")
]
FpsOpt = Annotated[
    float | None,
    typer.Option("--fps", min=0.001, help="Frames per second (default: settings' fps, else 10)."),
]
AudioOpt = Annotated[
    Path | None, typer.Option("--audio", help="Audio file (default: <song>.wav/.mp3/.flac/.m4a "
                              "or audio.* in the song's meta folder).")
]
BeatsOpt = Annotated[
    bool, typer.Option("--beats", help="Land every keyframe on a beat of the audio (each "
                       "transition a whole number of beats); the movie lasts as long as the audio.")
]
BeatsPerTransitionOpt = Annotated[
    int | None, typer.Option("--beats-per-transition", help="With --beats: the beats every "
                             "transition lasts (default: nearest its natural length).")
]


@app.command()
@reported
def run(
    ctx: typer.Context,
    song: SongArg,
    seed: SeedOpt = 0,
    profile: ProfileOpt = "default",
    scenes: ScenesOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    fps: FpsOpt = None,
    audio: AudioOpt = None,
    codec: CodecOpt = "both",
    name: StoryNameOpt = "base",
    beats: BeatsOpt = False,
    beats_per_transition: BeatsPerTransitionOpt = None,
    batch_size: BatchOpt = None,
    pacing: PacingOpt = None,
    sharing: SharingOpt = None,
    cluster: ClusterOpt = None,
    cluster_cpus: ClusterCpusOpt = None,
    strict: StrictOpt = False,
) -> None:
    """The main job: render-prompts, transitions and movie in sequence, each resuming."""
    from sdmorph.stages.movie import MovieRequest

    loaded = _paced(load(ctx, song, profile, scenes, strict), pacing, sharing)
    request = MovieRequest(seed=seed, codec=codec, fps=fps, audio=audio, profile=profile,
                           scenes=scenes, name=name, beats=beats,
                           beats_per_transition=beats_per_transition)
    _run_all(ctx, loaded, request, model=model, device=device, batch_size=batch_size,
             cluster=cluster, cluster_cpus=cluster_cpus)


def _run_all(ctx: typer.Context, loaded: Any, request: Any, *, model: str | None,
             device: str | None, batch_size: int | None, cluster: str | None = None,
             cluster_cpus: int | None = None) -> Any:
    from sdmorph.cli import tables
    from sdmorph.cli.terminal import TERMINAL
    from sdmorph.stages.run import run_song

    result = run_song(loaded, request,
                      lambda: renderer_for(ctx, loaded, model, device, cluster=cluster,
                                           cluster_cpus=cluster_cpus),
                      batch_size=batch_size, listener=TERMINAL)
    tables.movie_summary(result)
    return result


@app.command()
@reported
def demo(
    ctx: typer.Context,
    folder: Annotated[
        Path, typer.Argument(help="Where to put the demo song, its .env and its media.")
    ] = Path("sdmorph-demo"),
    force: Annotated[bool, typer.Option("--force", help="Re-copy the demo song's files.")] = False,
) -> None:
    """Copy the bundled demo song into FOLDER and make its movies with the tiny model."""
    from sdmorph.formats.folders import Folders
    from sdmorph.formats.song import load_song
    from sdmorph.stages.demo import DEMO_SONG, install_demo
    from sdmorph.stages.movie import MovieRequest

    meta, media = install_demo(folder, force=force)
    ui.info(f"demo song: {meta} (settings in {folder / '.env'})")
    ctx.obj["folders"] = Folders(media_dir=media.resolve(), meta_dir=meta.parent.resolve(),
                                   model_cache_dir=folders_of(ctx).model_cache_dir)
    loaded = load_song(meta, media / DEMO_SONG)
    result = _run_all(ctx, loaded, MovieRequest(), model=None, device="cpu", batch_size=None)
    ui.info("movies:")
    for video in result.report.videos:
        if video.kind == "combined":
            ui.info(f"  {video.path}")
    ui.info(f"next: cd {folder} && sdmorph status {DEMO_SONG}")


def main() -> None:
    """Console entry point."""
    try:
        app(prog_name="sdmorph")
    except KeyboardInterrupt:  # outside a command (option parsing, start-up)
        print("interrupted: nothing was changed", file=sys.stderr)
        exit_after_ctrl_c()
    except SystemExit as exc:
        if exc.code == 130:
            exit_after_ctrl_c()
        raise


def exit_after_ctrl_c() -> NoReturn:
    """Exit 130 now that every `finally` has run.

    A plain sys.exit is not enough: when the Ctrl-C landed inside code that an import ran
    through eval (pydantic and typing evaluate annotations so), CPython remembers it and
    kills itself with SIGINT at shutdown, although sdmorph handled it and printed its line.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
