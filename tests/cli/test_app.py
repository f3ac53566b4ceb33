"""The real `sdmorph` command: help, version, init, validate on good and bad songs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sdmorph import __version__
from sdmorph.cli.app import app
from songs import SETTINGS, SHEET, env_for, write_song

runner = CliRunner()


def invoke(root: Path, *args: str):
    return runner.invoke(app, list(args), env=env_for(root))


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"sdmorph {__version__}"


def test_help_lists_commands() -> None:
    import typer.main

    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    names = list(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    assert {"init", "validate", "render-prompts", "transitions", "movie", "status"} <= set(names)
    listed = {line.split()[1] for line in result.stdout.splitlines()
              if line.startswith("│ ") and len(line.split()) > 1}
    assert set(names) <= listed


@pytest.mark.slow
def test_every_subcommand_has_help() -> None:
    import typer.main

    group = typer.main.get_command(app)
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        assert command.help, f"{name} has no help text"
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, name
        assert f" {name} [OPTIONS]" in result.stdout.split("\n\n")[0], name


def test_init_then_validate(tmp_path: Path) -> None:
    result = invoke(tmp_path, "init", "demo")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "meta" / "demo" / "prompt_image_definitions.csv").is_file()
    result = invoke(tmp_path, "validate", "demo")
    assert result.exit_code == 0, result.output
    assert "valid" in result.stdout and "tiny" in result.stdout and "128x128" in result.stdout
    again = invoke(tmp_path, "init", "demo")
    assert again.exit_code == 2 and "already exists" in again.stderr


@pytest.mark.slow
def test_the_example_song_renders_its_words_at_its_guidance(tmp_path: Path) -> None:
    """`init`'s sheet asks guidance 7.5-8 of tiny: its profile picks a scheduler that takes it."""
    import numpy as np
    from PIL import Image

    from sdmorph.media.caption_match import object_colour_matches

    assert invoke(tmp_path, "init", "demo").exit_code == 0
    result = invoke(tmp_path, "render-prompts", "demo", "--only", "dawn")
    assert result.exit_code == 0, result.output
    assert "blotches" not in result.output
    pictures = sorted((tmp_path / "media/demo/prompt_images").glob("dawn_*.png"))
    assert len(pictures) == 3
    assert all(object_colour_matches(np.asarray(Image.open(p).convert("RGB")),
                                     "a yellow sun over the sea") for p in pictures)


def test_validate_bad_song_exits_2_without_traceback(tmp_path: Path) -> None:
    write_song(tmp_path, sheet=SHEET.replace("1001 1002 1003", "10x1"))
    result = invoke(tmp_path, "validate", "song")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "row 2, column 'seeds'" in result.stderr


def test_validate_missing_meta_dir_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", "song"], env={"meta_dir": "", "media_dir": ""})
    assert result.exit_code == 2
    assert "meta_dir is not set" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_strict_turns_warnings_into_errors(tmp_path: Path) -> None:
    write_song(tmp_path, sheet=SHEET + "luna,dup,5,7\n")
    assert invoke(tmp_path, "validate", "song").exit_code == 0
    result = invoke(tmp_path, "validate", "song", "--strict")
    assert result.exit_code == 2 and "duplicate" in result.stderr


def test_global_options_override_env(tmp_path: Path) -> None:
    write_song(tmp_path)
    result = runner.invoke(
        app,
        ["--meta-dir", str(tmp_path / "meta"), "--media-dir", str(tmp_path / "media"),
         "validate", "song"],
        env={"meta_dir": "/nonexistent"},
    )
    assert result.exit_code == 0, result.output
    assert "song: valid" in result.stdout and "64x64" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("args", [["--version"], ["validate", "--help"]])
def test_console_script_runs(args: list[str]) -> None:
    exe = Path(sys.executable).parent / "sdmorph"
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    if args == ["--version"]:
        assert proc.stdout == f"sdmorph {__version__}\n"
    else:
        assert proc.stdout.lstrip().startswith("Usage: sdmorph validate [OPTIONS]")


@pytest.mark.parametrize(("extra", "shown"), [({"weird": 1}, "'weird'"),
                                               ({"res_width": 132}, "res_width 132")])
def test_strict_counts_settings_warnings(tmp_path: Path, extra: dict[str, object],
                                         shown: str) -> None:
    write_song(tmp_path, settings={"default": {**SETTINGS["default"], **extra}})
    lenient = invoke(tmp_path, "validate", "song")
    assert lenient.exit_code == 0 and shown in lenient.stderr
    strict = invoke(tmp_path, "validate", "song", "--strict")
    assert strict.exit_code == 2, strict.output
    assert shown in strict.stderr and "(--strict)" in strict.stderr
    assert "valid" not in strict.stdout


def test_validate_reports_seed_and_mask_problems_together(tmp_path: Path) -> None:
    sheet = "name,prompt,seeds,mask\nluna,a moon,12 zz,circle\nsun,a sun,1,square\n"
    scenes = ",scene,duration,section\n0,luna,0,1\n1,sun,0,1\n"
    settings = {"default": {**SETTINGS["default"], "controlnet_string": "tiny-random"}}
    write_song(tmp_path, sheet=sheet, scenes=scenes, settings=settings)
    result = invoke(tmp_path, "validate", "song")
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert any("row 2, column 'seeds'" in line and "'zz'" in line for line in lines)
    assert any("row 2, column 'mask'" in line and "'circle'" in line for line in lines)
    assert any("row 3, column 'mask'" in line and "'square'" in line for line in lines)


def test_validate_checks_what_the_model_loader_would_refuse(tmp_path: Path) -> None:
    settings = {"default": {**SETTINGS["default"], "scheduler": "Nope",
                            "model_string": "./weights/gone.safetensors"},
                "folder": {**SETTINGS["default"], "model_string": "/no/such/model/folder"},
                "hub": {**SETTINGS["default"], "model_string": "someone/some-model",
                        "scheduler": "eulerdiscretescheduler"}}
    write_song(tmp_path, settings=settings)
    result = invoke(tmp_path, "validate", "song")
    assert result.exit_code == 2
    settings_file = str(tmp_path / "meta/song/tgen_settings.json")
    lines = result.stderr.strip().splitlines()
    assert any(f"{settings_file}: profile 'default': scheduler 'Nope'" in line
               for line in lines)
    assert any(f"{settings_file}: profile 'default': model_string "
               "'./weights/gone.safetensors': no such file" in line for line in lines)
    folder = invoke(tmp_path, "validate", "song", "-P", "folder")
    assert folder.exit_code == 2 and "'/no/such/model/folder': no such folder" in folder.stderr
    hub = invoke(tmp_path, "validate", "song", "-P", "hub")  # nothing loaded, nothing fetched
    assert hub.exit_code == 0, hub.output


def test_render_prompts_scheduler_error_names_the_settings_file(tmp_path: Path) -> None:
    write_song(tmp_path, settings={"default": {**SETTINGS["default"], "scheduler": "Nope"}})
    result = invoke(tmp_path, "render-prompts", "song")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert (f"{tmp_path / 'meta/song/tgen_settings.json'}: profile 'default': scheduler 'Nope'"
            in result.stderr)
    assert not (tmp_path / "media/song/prompt_images").exists()
