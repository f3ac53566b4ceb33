"""transitions through the real CLI: plan files, rendering, resume, concurrency, staleness."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from sdmorph.cli.app import app
from songs import SETTINGS, env_for, write_song

runner = CliRunner()
FRAME_SETTINGS = {"default": {**SETTINGS["default"], "interpolation_steps": 6}}


def invoke(root: Path, *args: str):
    return runner.invoke(app, list(args), env=env_for(root))


def frames_of(root: Path) -> dict[str, bytes]:
    base = root / "media" / "song" / "transition_images"
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.glob("*/frame*.png"))}


def pixels(path: Path) -> bytes:
    with Image.open(path) as image:
        return image.convert("RGB").tobytes()


@pytest.mark.slow
def test_plan_only_writes_old_columns_and_keeps_compute_n(tmp_path: Path) -> None:
    write_song(tmp_path, settings=FRAME_SETTINGS)
    result = invoke(tmp_path, "transitions", "song", "--plan-only")
    assert result.exit_code == 0, result.output
    media = tmp_path / "media" / "song"
    intra = pd.read_csv(media / "transition_meta/intrascene_transitions.csv", dtype=str)
    inter = pd.read_csv(media / "transition_meta/interscene_transitions.csv", dtype=str)
    assert list(intra.columns[1:8]) == ["from_name", "from_seed", "to_name", "to_seed",
                                        "compute", "duration", "scene"]
    assert list(inter.columns[1:9]) == ["from_name", "from_seed", "to_name", "to_seed",
                                        "compute", "duration", "scene_from", "scene_to"]
    assert len(intra) == 3 and len(inter) == 2
    gen = pd.read_csv(media / "story/trans_sequence_gen.csv", dtype=str)
    assert list(gen.columns[1:7]) == ["scene_from", "c1", "c2", "section", "reversed",
                                      "input_image_folder"]
    assert (media / "story/plan_graph.png").stat().st_size > 1000
    assert (media / "story/graph.gexf").is_file()
    assert not (media / "transition_images").exists()
    # The artist skips one transition; planning again keeps the n.
    intra.loc[0, "compute"] = "n"
    intra.to_csv(media / "transition_meta/intrascene_transitions.csv", index=True)
    invoke(tmp_path, "transitions", "song", "--plan-only")
    again = pd.read_csv(media / "transition_meta/intrascene_transitions.csv", dtype=str)
    assert again.loc[0, "compute"] == "n"
    assert "1 set to compute = n" in invoke(tmp_path, "transitions", "song",
                                            "--plan-only").stdout


@pytest.mark.slow
def test_plan_is_reproducible_by_seed(tmp_path: Path) -> None:
    write_song(tmp_path, settings=FRAME_SETTINGS)
    gen = tmp_path / "media/song/story/trans_sequence_gen.csv"
    invoke(tmp_path, "transitions", "song", "--plan-only", "--seed", "3")
    first = gen.read_bytes()
    invoke(tmp_path, "transitions", "song", "--plan-only", "--seed", "4")
    invoke(tmp_path, "transitions", "song", "--plan-only", "--seed", "3")
    assert gen.read_bytes() == first


def test_impossible_plan_names_the_scene(tmp_path: Path) -> None:
    scenes = ",scene,duration,section,start,avoid\n0,luna,5,1,,\n1,sun,1,1,,\n"
    write_song(tmp_path, settings=FRAME_SETTINGS, scenes=scenes)
    result = invoke(tmp_path, "transitions", "song", "--plan-only")
    assert result.exit_code == 2
    assert "luna" in result.stderr and "Traceback" not in result.output


@pytest.mark.slow
def test_render_endpoints_equal_keyframes_and_skip_compute_n(tmp_path: Path) -> None:
    write_song(tmp_path, settings=FRAME_SETTINGS)
    media = tmp_path / "media" / "song"
    invoke(tmp_path, "transitions", "song", "--plan-only")
    table = media / "transition_meta/interscene_transitions.csv"
    inter = pd.read_csv(table, dtype=str, index_col=0)
    inter.loc[inter.index[0], "compute"] = "n"
    inter.to_csv(table)
    result = invoke(tmp_path, "transitions", "song", "--render-only")
    assert result.exit_code == 0, result.output
    folders = sorted(p for p in (media / "transition_images").iterdir()
                     if not p.name.startswith("."))
    assert len(folders) == 4
    skipped = f"{inter.iloc[0]['from_name']}-{inter.iloc[0]['from_seed']} to " \
              f"{inter.iloc[0]['to_name']}-{inter.iloc[0]['to_seed']}"
    assert skipped not in [f.name for f in folders]
    for folder in folders:
        frames = sorted(folder.glob("frame*.png"))
        assert [f.name for f in frames] == [f"frame{i:06d}.png" for i in range(6)]
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["complete"] and manifest["frames"] == 6
        a, b = folder.name.split(" to ")
        pa, sa = a.rsplit("-", 1)
        pb, sb = b.rsplit("-", 1)
        assert pixels(frames[0]) == pixels(media / f"prompt_images/{pa}_{sa}.png")
        assert pixels(frames[-1]) == pixels(media / f"prompt_images/{pb}_{sb}.png")
        assert pixels(frames[1]) != pixels(frames[0])
        with Image.open(frames[2]) as image:
            assert "t" in image.text and "model" in image.text  # type: ignore[attr-defined]
    again = invoke(tmp_path, "transitions", "song", "--render-only")
    assert "0 frames rendered" in again.stdout


def run_cli(root: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, **env_for(root)}
    return subprocess.Popen([sys.executable, "-m", "sdmorph", *args], env=env, cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_resume_after_kill_gives_identical_frames(tmp_path: Path) -> None:
    settings = {"default": {**SETTINGS["default"], "interpolation_steps": 12}}
    for name in ("a", "b"):
        write_song(tmp_path / name, settings=settings)
    assert invoke(tmp_path / "a", "transitions", "song").exit_code == 0
    reference = frames_of(tmp_path / "a")
    base = tmp_path / "b/media/song/transition_images"
    for attempt in range(2):
        proc = run_cli(tmp_path / "b", "transitions", "song")
        deadline = time.time() + 120
        target = 8 + attempt * 20
        while time.time() < deadline and len(list(base.glob("*/frame*.png"))) < target:
            if proc.poll() is not None:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert invoke(tmp_path / "b", "transitions", "song").exit_code == 0
    assert frames_of(tmp_path / "b") == reference
    assert not list(base.glob("*/*sdmorph-tmp*"))
    assert not list(base.glob("*/.sdmorph-partial.json"))


@pytest.mark.slow
def test_two_processes_split_the_work(tmp_path: Path) -> None:
    settings = {"default": {**SETTINGS["default"], "interpolation_steps": 10}}
    write_song(tmp_path, settings=settings)
    assert invoke(tmp_path, "transitions", "song", "--plan-only").exit_code == 0
    procs = [run_cli(tmp_path, "transitions", "song", "--render-only") for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    rendered = 0
    for out in outputs:
        for line in out.splitlines():
            if "│ rendered" in line:
                rendered += int(line.split("│")[2])
    assert rendered == 5, outputs  # each transition rendered exactly once
    folders = [p for p in (tmp_path / "media/song/transition_images").iterdir()
               if not p.name.startswith(".")]
    assert len(folders) == 5
    for folder in folders:
        assert len(list(folder.glob("frame*.png"))) == 10
        assert json.loads((folder / "manifest.json").read_text())["complete"]


@pytest.mark.slow
def test_settings_change_marks_stale_and_force_rerenders(tmp_path: Path) -> None:
    write_song(tmp_path, settings=FRAME_SETTINGS)
    assert invoke(tmp_path, "transitions", "song").exit_code == 0
    before = frames_of(tmp_path)
    changed = {"default": {**FRAME_SETTINGS["default"], "pipe_kwargs": {"num_inference_steps": 4}}}
    write_song(tmp_path, settings=changed)
    result = invoke(tmp_path, "transitions", "song")
    assert result.exit_code == 0
    assert "stale" in result.stdout and "--force" in result.stderr
    assert frames_of(tmp_path) == before
    forced = invoke(tmp_path, "transitions", "song", "--force")
    assert forced.exit_code == 0
    after = frames_of(tmp_path)
    assert after.keys() == before.keys() and after != before


def table_rows(path: Path) -> list[tuple[str, str]]:
    frame = pd.read_csv(path, dtype=str, index_col=0)
    return [(f"{r.from_name}-{r.from_seed} to {r.to_name}-{r.to_seed}", r.compute)
            for r in frame.itertuples()]


def summary_count(output: str, label: str) -> int:
    """The count of `label` in the transitions end table (0 when the row is not shown)."""
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 2 and cells[1] == label:
            return int(cells[2])
    return 0


@pytest.mark.slow
def test_compute_n_survives_a_plan_without_the_pair(tmp_path: Path) -> None:
    write_song(tmp_path, settings=FRAME_SETTINGS)
    media = tmp_path / "media" / "song"
    table = media / "transition_meta/intrascene_transitions.csv"
    assert invoke(tmp_path, "transitions", "song", "--plan-only", "--seed", "0").exit_code == 0
    intra = pd.read_csv(table, dtype=str, index_col=0)
    skipped = "sun-2001 to sun-2003"
    assert table_rows(table)[1] == (skipped, "y")
    intra.loc[intra.index[1], "compute"] = "n"
    intra.to_csv(table)
    # Seed 5 plans other sun transitions: the artist's n row is kept, after the plan's rows.
    assert invoke(tmp_path, "transitions", "song", "--plan-only", "--seed", "5").exit_code == 0
    rows = table_rows(table)
    assert rows[-1] == (skipped, "n") and len(rows) == 4
    assert skipped not in [name for name, _ in rows[:-1]]
    assert pd.read_csv(table, dtype=str, index_col=0)["planned"].tolist() == ["y", "y", "y", "n"]
    # Kept only to be remembered: not a skip of this plan, for --render-only as for the plan.
    only = invoke(tmp_path, "transitions", "song", "--render-only")
    assert only.exit_code == 0, only.output
    assert summary_count(only.stdout, "skipped (compute = n)") == 0
    # Seed 0 takes it again: still n, so it is not rendered, and the end table says so.
    result = invoke(tmp_path, "transitions", "song", "--seed", "0")
    assert result.exit_code == 0, result.output
    assert (skipped, "n") in table_rows(table)
    assert "(1 set to compute = n)" in result.stdout
    assert summary_count(result.stdout, "skipped (compute = n)") == 1
    # The 4 others: rendered now, or already by the --render-only run of the seed 5 plan.
    assert summary_count(result.stdout, "rendered") + summary_count(result.stdout, "done") == 4
    assert "frames/s" in result.stdout
    assert not (media / "transition_images" / skipped).exists()


@pytest.mark.slow
def test_a_failed_transition_is_listed_and_the_others_render(tmp_path: Path) -> None:
    from sdmorph.core.ids import ImageId
    from sdmorph.media.store import TransitionStore

    write_song(tmp_path, settings=FRAME_SETTINGS)
    base = tmp_path / "media/song/transition_images"
    assert invoke(tmp_path, "transitions", "song", "--plan-only").exit_code == 0
    # Files (not folders) under every name sdmorph could render luna-1002 -> luna-1003 into:
    # the store refuses that one transition, as it would on a real song.
    base.mkdir()
    names = TransitionStore._candidate_names(ImageId("luna", 1002), ImageId("luna", 1003))
    for name in names:
        (base / name).write_text("in the way")
    result = invoke(tmp_path, "transitions", "song", "--render-only")
    assert result.exit_code == 2, result.output
    assert summary_count(result.stdout, "failed") == 1
    assert summary_count(result.stdout, "rendered") == 4
    assert "frames/s" in result.stdout
    assert "transition 'luna-1002 to luna-1003'" in result.stderr
    assert result.stderr.count("error:") == 1 and "run the same command again" in result.stderr
    assert "no free folder name" in result.stderr and "Traceback" not in result.output
    rendered = [p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(rendered) == 4 and all((p / "manifest.json").is_file() for p in rendered)
    # The plan picture is redrawn after --render-only too, marking what was rendered.
    with Image.open(tmp_path / "media/song/story/plan_graph.png") as image:
        assert image.text["path_rendered"] == "4 of 5"  # type: ignore[attr-defined]


@pytest.mark.slow
def test_resume_keeps_the_batch_size_it_began_with(tmp_path: Path) -> None:
    settings = {"default": {**SETTINGS["default"], "interpolation_steps": 9}}
    for name in ("a", "b"):
        write_song(tmp_path / name, settings=settings)
    assert invoke(tmp_path / "a", "transitions", "song", "--batch-size", "2").exit_code == 0
    assert invoke(tmp_path / "b", "transitions", "song", "--batch-size", "2").exit_code == 0
    # Turn b's folders back into renders stopped half-way: marker in place of the manifest,
    # the later frames gone.
    for folder in transition_folders(tmp_path / "b"):
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["batch_size"] == 2
        (folder / ".sdmorph-partial.json").write_text(json.dumps({**manifest, "complete": False}))
        (folder / "manifest.json").unlink()
        for index in range(4, 9):
            (folder / f"frame{index:06d}.png").unlink()
    assert invoke(tmp_path / "b", "transitions", "song", "--batch-size", "5").exit_code == 0
    assert frames_of(tmp_path / "b") == frames_of(tmp_path / "a")
    for folder in transition_folders(tmp_path / "b"):
        assert json.loads((folder / "manifest.json").read_text())["batch_size"] == 2


def transition_folders(root: Path) -> list[Path]:
    return [p for p in (root / "media/song/transition_images").iterdir()
            if not p.name.startswith(".")]
