"""Crash at any moment: kill a command mid-run, run it again, get the very same files.

Each command runs as its own process (`python -m sdmorph ...`) on a tiny song and is
interrupted three times (SIGKILL at a random moment or after the k-th output file, and a
Ctrl-C for the rendering commands) before it may finish; its outputs must then equal those of
an uninterrupted run, byte for byte. The harness is scripts/crash.py, which runs many more
kill points: `.venv/bin/python scripts/crash.py --kills 50`. `transitions --pacing even` is
one of the stages: its probe renders, the t's it chooses from them and its frames must come
out the same however often it is killed; `--sharing` another (its tree is grown again).
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sdmorph.cli.app import app
from sdmorph.formats.fsio import atomic_path, clean_temp_files, is_temp, write_text
from sdmorph.media.store import MANIFEST_NAME, PARTIAL_NAME

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import crash  # noqa: E402

RETRIES = 3  # a fast command can end before a kill point comes: run the round again
# Temporary files are locked while written only where fcntl exists.
NO_LOCKS = pytest.mark.skipif(sys.platform == "win32", reason="no fcntl locks on Windows")


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> dict[str, crash.Reference]:
    return crash.build_references(tmp_path_factory.mktemp("crash"))


def kills_for(stage: crash.Stage) -> list[crash.Kill]:
    """The first interruption comes while the command is writing its outputs, for sure."""
    first = crash.Kill("files", signal.SIGINT if stage.ctrl_c else signal.SIGKILL, (0.0, 0.5))
    return [first, crash.Kill("time"), crash.Kill("files")]


@pytest.mark.slow
@pytest.mark.parametrize("stage", crash.STAGES, ids=[s.name for s in crash.STAGES])
def test_killed_and_rerun_ends_like_an_unbroken_run(
    stage: crash.Stage, references: dict[str, crash.Reference], tmp_path: Path
) -> None:
    rng = random.Random(17)
    kills = kills_for(stage)
    for attempt in range(RETRIES):
        result = crash.run_round(references[stage.name], tmp_path / f"{attempt}", kills, rng)
        if result.kills[:1] == [str(kills[0])]:
            break
    assert result.kills[:1] == [str(kills[0])], result.missed
    assert not result.problems, "\n".join(result.problems)
    assert not result.mismatches, "\n".join(result.mismatches)


def test_the_ctrl_c_check_catches_tracebacks_and_wrong_exit_codes() -> None:
    interrupted = crash.Kill("files", signal.SIGINT)
    assert crash.check_interrupted(interrupted, 130, f"keyframes ...\n{crash.INTERRUPTED}\n") == []
    traceback = f"Traceback (most recent call last):\nKeyboardInterrupt\n{crash.INTERRUPTED}\n"
    assert crash.check_interrupted(interrupted, 130, traceback) == ["Ctrl-C printed a traceback"]
    assert len(crash.check_interrupted(interrupted, 1, "")) == 2
    assert crash.check_interrupted(crash.Kill("time"), 0, "") == ["exit code 0 after SIGKILL"]


@pytest.mark.slow
def test_concurrent_keeps_lose_no_seed(references: dict[str, crash.Reference],
                                       tmp_path: Path) -> None:
    race = crash.keep_race(tmp_path, processes=5, victims=2, rng=random.Random(5),
                           seconds=references["explore --keep"].seconds)
    assert not race.problems, "\n".join(race.problems)
    assert len(race.kept) >= 3 and race.versions_seen >= 2


@pytest.mark.slow
def test_render_killed_between_manifest_and_marker_is_tidied(
    references: dict[str, crash.Reference], tmp_path: Path
) -> None:
    """The one step no random kill hits: manifest written, partial marker not yet removed."""
    root = tmp_path / "song"
    shutil.copytree(references["movie"].before, root)  # the tree just after `transitions`
    folders = sorted((root / "media" / crash.SONG / "transition_images").glob(
        f"*/{MANIFEST_NAME}"))
    finished, other = folders[0].parent, folders[1].parent
    manifest = json.loads(folders[0].read_text())
    (finished / PARTIAL_NAME).write_text(json.dumps({**manifest, "complete": False}))
    changed = json.loads(folders[1].read_text())
    changed["recipe"]["steps"] = 99  # a marker of another render: not ours to remove
    (other / PARTIAL_NAME).write_text(json.dumps({**changed, "complete": False}))
    before = crash.outputs(root, [root])
    result = CliRunner().invoke(app, ["transitions", crash.SONG, "--render-only"],
                                env=crash.env_for(root))
    assert result.exit_code == 0, result.output
    assert not (finished / PARTIAL_NAME).exists()
    assert (other / PARTIAL_NAME).exists()
    unmarked = [{k: v for k, v in files.items() if not k.endswith(f"/{PARTIAL_NAME}")}
                for files in (before, crash.outputs(root, [root]))]
    assert unmarked[0] == unmarked[1]  # nothing was rendered again


@NO_LOCKS
def test_rewriting_a_file_removes_temp_files_killed_writes_left(tmp_path: Path) -> None:
    dead = tmp_path / ".plan.csv.k1ll3d_.sdmorph-tmp.csv"
    dead.write_text("half a plan")
    other = tmp_path / ".plan.csv.bak.k1ll3d_.sdmorph-tmp.bak"  # another file's: kept
    other.write_text("half a backup")
    write_text(tmp_path / "plan.csv", "a,b\n")
    assert not dead.exists() and other.exists()
    assert (tmp_path / "plan.csv").read_text() == "a,b\n"


@NO_LOCKS
def test_cleaning_spares_a_write_under_way(tmp_path: Path) -> None:
    target = tmp_path / "frame000001.png"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"being written")
        (tmp_path / ".frame000002.png.d3ad__.sdmorph-tmp.png").write_bytes(b"left by a kill")
        assert clean_temp_files(tmp_path) == 1  # only the dead one
        write_text(target, "a second writer of the same file")  # removes only dead temps
        assert tmp.read_bytes() == b"being written"
    assert target.read_bytes() == b"being written"
    assert not [p for p in tmp_path.iterdir() if is_temp(p)]
