"""The real `sdmorph` command: help, version, init, validate on good and bad songs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sdmorph import __version__
from sdmorph.cli import app
from songs import SHEET, env_for, write_song

runner = CliRunner()


def invoke(root: Path, *args: str):
    return runner.invoke(app, list(args), env=env_for(root))


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"sdmorph {__version__}"


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("init", "validate"):
        assert command in result.stdout


def test_every_subcommand_has_help() -> None:
    import typer.main

    group = typer.main.get_command(app)
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        assert command.help, f"{name} has no help text"
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, name
        assert "Usage" in result.stdout


def test_init_then_validate(tmp_path: Path) -> None:
    result = invoke(tmp_path, "init", "demo")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "meta" / "demo" / "prompt_image_definitions.csv").is_file()
    result = invoke(tmp_path, "validate", "demo")
    assert result.exit_code == 0, result.output
    assert "valid" in result.stdout and "tiny" in result.stdout and "128x128" in result.stdout
    again = invoke(tmp_path, "init", "demo")
    assert again.exit_code == 2 and "already exists" in again.stderr


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


@pytest.mark.parametrize("args", [["--version"], ["validate", "--help"]])
def test_console_script_runs(args: list[str]) -> None:
    exe = Path(sys.executable).parent / "sdmorph"
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
