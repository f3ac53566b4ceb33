"""The `sdmorph` command: parses options, calls the stages, reports. Nothing else lives here."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from sdmorph import __version__, ui
from sdmorph.config import Settings, load_settings
from sdmorph.errors import SdmorphError

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="sdmorph",
    help="Turn a song's prompt sheet into a movie that morphs between Stable Diffusion images.\n\n"
    "Workflow: init -> validate -> explore -> render-prompts -> transitions -> movie "
    "(or `run` for the last three). Folders come from .env (media_dir, meta_dir, "
    "model_cache_dir), the environment, or the global options below.",
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
    typer.Option("--model", help="Override the profile's model_string ('tiny', hub id, folder, "
                 ".safetensors file)."),
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
                ui.err.print(f"[red]error:[/red] {problem}", markup=True, soft_wrap=True,
                             highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            ui.err.print("interrupted: everything finished so far is kept; run the same "
                         "command again to resume", soft_wrap=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def settings_of(ctx: typer.Context) -> Settings:
    return ctx.obj["settings"]


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
    ctx.obj = {"settings": load_settings(
        media_dir=media_dir, meta_dir=meta_dir, model_cache_dir=model_cache_dir
    )}


def load(ctx: typer.Context, song: str, profile: str, scenes: str | None, strict: bool) -> Any:
    """Load a song and print its warnings."""
    from sdmorph.song import load_song

    settings = settings_of(ctx)
    loaded = load_song(settings.meta_song(song), settings.media_song(song), profile=profile,
                       scenes=scenes, strict=strict)
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
    from sdmorph.example import write_example

    settings = settings_of(ctx)
    written = write_example(settings.meta_song(song), force=force)
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
    """Check a song's metadata (prompts, seeds, scenes, masks) and summarise it."""
    from sdmorph.song import check_masks, summary

    loaded = load(ctx, song, profile, scenes, strict)
    check_masks(loaded)
    ui.table(f"{song}: valid", ["", ""], summary(loaded))


def main() -> None:
    """Console entry point."""
    app(prog_name="sdmorph")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
