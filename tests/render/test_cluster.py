"""Rendering on a real Ray cluster: a head started with `ray start` on this machine.

Frames must be the bytes a local run writes (every keyframe and frame file is compared),
whatever happens to the workers or the driver: a worker killed in the middle of a batch is
restarted and its batch rendered again; a driver killed and run again resumes like a local
run. A cluster without the GPU that --device cuda needs is one line. The workers get one CPU
(one torch thread) each, as the local reference has (conftest: OMP_NUM_THREADS=1), since CPU
pixels depend on the thread count.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from sdmorph.cli.app import app
from sdmorph.core.progress import Advance, Silent
from sdmorph.formats.song import load_song
from sdmorph.render.cluster import ClusterError, RemoteEngine, plan_workers
from sdmorph.render.engine import Engine
from sdmorph.render.renderer import Renderer, open_renderer
from sdmorph.stages.plan import make_plan, open_store, planned_pairs
from sdmorph.stages.transitions import render_planned
from songs import SETTINGS, env_for, write_song

RAY = Path(sys.executable).parent / "ray"
# Batches of 2 frames: every transition takes several model calls, so kills land inside one.
FRAME_SETTINGS = {"default": {**SETTINGS["default"], "interpolation_steps": 8,
                              "batch_size": 2}}
runner = CliRunner()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def head() -> Iterator[str]:
    """A Ray head of 2 CPUs on 127.0.0.1, stopped with the module.

    Started with --block and stopped by ending that process (not `ray stop`, which would
    stop every Ray cluster of this machine); its own short temp folder (Ray's socket paths
    must stay under 108 characters) keeps it apart from any other cluster here.
    """
    pytest.importorskip("ray")
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    proc = subprocess.Popen(
        [str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
         f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
         "--disable-usage-stats", f"--temp-dir={temp}", "--object-store-memory=200000000"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # Ray's reaper reads its stdin to notice its parent dying (under xdist, this worker's
        # stdin is its channel to pytest), and kills its process group: keep it off both.
        stdin=subprocess.DEVNULL, start_new_session=True,
        # No token authentication: a driver given an address presents no token (Ray turns
        # token authentication on for `ray start` where ~/.ray/auth_token exists).
        env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    try:
        _wait_for_start(proc)
        yield f"127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for_start(proc: subprocess.Popen[str], timeout: float = 300) -> None:
    """Until `ray start` says the cluster runs; its output is read on to the end, so that it
    never blocks on a full pipe."""
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Ray runtime started" in line:
                started.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not started.wait(0.2):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("ray start failed:\n" + "".join(lines))


def frames_of(root: Path) -> dict[str, bytes]:
    """Every keyframe and transition frame, by path under the song's media folder."""
    media = root / "media" / "song"
    return {str(p.relative_to(media)): p.read_bytes()
            for p in sorted([*media.glob("prompt_images/*.png"),
                             *media.glob("transition_images/*/frame*.png")])}


def written(folders: Path) -> int:
    """Frames in transition folders so far (0 while a folder moves from its staging name)."""
    try:
        return len(list(folders.glob("*/frame*.png")))
    except FileNotFoundError:
        return 0


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The song's frames rendered locally (in this process, one torch thread)."""
    root = tmp_path_factory.mktemp("local")
    write_song(root, settings=FRAME_SETTINGS)
    result = runner.invoke(app, ["transitions", "song"], env=env_for(root))
    assert result.exit_code == 0, result.output
    frames = frames_of(root)
    assert len(frames) == 6 + 5 * 8  # the keyframes the planned transitions use
    return frames


@pytest.mark.slow
def test_a_cluster_without_the_gpu_a_setting_needs_is_one_line(head: str,
                                                              tmp_path: Path) -> None:
    write_song(tmp_path)
    result = runner.invoke(app, ["render-prompts", "song", "--cluster", head, "--device", "cuda"],
                           env=env_for(tmp_path))
    assert result.exit_code == 2, result.output
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        f"error: the Ray cluster at {head} has no GPU, but --device cuda needs one; use a "
        "cluster with GPUs, or render on CPUs (--device cpu, noise: cpu)"]
    assert not (tmp_path / "media/song/prompt_images").exists()


class KillWorker(Silent):
    """A listener that kills a worker's process while it renders, once frames are written."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.killed = threading.Event()
        self._started = False

    @contextmanager
    def bars(self, *tasks: tuple[str, int]) -> Iterator[list[Advance]]:
        with super().bars(*tasks) as advancers:
            if len(tasks) == 3:  # keyframes, transitions, frames
                advancers[2] = self._on_frames
            yield advancers

    def _on_frames(self, n: int) -> None:
        if not self._started:
            self._started = True
            threading.Thread(target=self._kill_when_busy, daemon=True).start()

    def _kill_when_busy(self) -> None:
        """SIGKILL as soon as the worker uses CPU: it is in the middle of a render."""
        proc = psutil.Process(self.pid)
        before = sum(proc.cpu_times()[:2])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum(proc.cpu_times()[:2]) < before + 0.02:
            time.sleep(0.002)
        os.kill(self.pid, signal.SIGKILL)
        self.killed.set()


@contextmanager
def cluster_renderer(root: Path, head: str) -> Iterator[Renderer]:
    """The song's renderer on two one-CPU workers of the head, stopped afterwards."""
    song = load_song(root / "meta" / "song", root / "media" / "song")
    renderer = open_renderer(song, cluster=head, cluster_cpus=1)
    assert isinstance(renderer.engine, RemoteEngine)
    try:
        yield renderer
    finally:
        renderer.engine.close()


@pytest.mark.slow
def test_a_worker_killed_mid_render_loses_nothing(head: str, reference: dict[str, bytes],
                                                  tmp_path: Path) -> None:
    write_song(tmp_path, settings=FRAME_SETTINGS)
    with cluster_renderer(tmp_path, head) as renderer:
        engine = renderer.engine
        assert isinstance(engine, RemoteEngine)
        pids = engine.worker_pids()
        listener = KillWorker(pids[0])
        store = open_store(renderer.song)
        plan = make_plan(renderer.song, 0, 1, store)
        pairs, _ = planned_pairs(renderer.song)
        report = render_planned(renderer, store, pairs, plan.skipped, batch_size=2,
                                path=plan.paths[0], listener=listener)
        assert listener.killed.is_set()
        restarted = engine.worker_pids()
    assert pids[0] not in restarted and pids[1] in restarted
    assert [o.status for o in report.outcomes] == ["rendered"] * 5
    assert frames_of(tmp_path) == reference


@pytest.mark.slow
def test_a_driver_killed_and_run_again_resumes(head: str, reference: dict[str, bytes],
                                               tmp_path: Path) -> None:
    write_song(tmp_path, settings=FRAME_SETTINGS)
    command = [sys.executable, "-m", "sdmorph", "transitions", "song", "--cluster", head,
               "--cluster-cpus", "1"]
    proc = subprocess.Popen(command, env={**os.environ, **env_for(tmp_path)}, cwd=tmp_path,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    folders = tmp_path / "media/song/transition_images"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and written(folders) < 12:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    manifests = list(folders.glob("*/manifest.json"))
    assert len(manifests) < 5, "the driver finished before it was killed"
    result = runner.invoke(app, ["transitions", "song", "--render-only", "--cluster", head,
                                 "--cluster-cpus", "1"], env=env_for(tmp_path))
    assert result.exit_code == 0, result.output
    assert f"Ray cluster at {head}: 2 workers (1 CPU each) on cpu" in result.stdout
    assert "│ rendered          │" in result.stdout
    assert frames_of(tmp_path) == reference  # every keyframe and frame, byte for byte
    assert not list(folders.glob("*/.sdmorph-partial.json"))


# ------------------------------------------- the stages' parallel paths, without Ray


class TwoWorkers:
    """A local engine that says it has two workers, so the stages render two transitions
    (and two keyframe batches) at once as on a cluster; its calls take turns (a lock)."""

    workers = 2

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> object:
        found = getattr(self._engine, name)
        if not callable(found):
            return found

        def locked(*args: object, **kwargs: object) -> object:
            with self._lock:
                return found(*args, **kwargs)

        return locked


class Counting(Silent):
    """A listener that adds up how far each bar moved."""

    def __init__(self) -> None:
        self.moved: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def bars(self, *tasks: tuple[str, int]) -> Iterator[list[Advance]]:
        def advance(name: str) -> Advance:
            def move(n: int) -> None:
                with self._lock:
                    self.moved[name] = self.moved.get(name, 0) + n
            return move

        yield [advance(name) for name, _ in tasks]


@pytest.mark.slow
def test_transitions_rendered_two_at_once_are_those_rendered_in_turn(
        reference: dict[str, bytes], tmp_path: Path) -> None:
    write_song(tmp_path, settings=FRAME_SETTINGS)
    song = load_song(tmp_path / "meta" / "song", tmp_path / "media" / "song")
    renderer = open_renderer(song, engine=TwoWorkers(Engine("tiny-random", device="cpu")))  # type: ignore[arg-type]
    assert renderer.parallel == 2
    store = open_store(song)
    plan = make_plan(song, 0, 1, store)
    pairs, _ = planned_pairs(song)
    again = (pairs[0][1], pairs[0][0])  # the first pair again, the other way round
    listener = Counting()
    report = render_planned(renderer, store, [*pairs, again], plan.skipped, batch_size=2,
                            path=plan.paths[0], listener=listener)
    assert [o.status for o in report.outcomes] == ["rendered"] * 5 + ["done"]
    assert [(o.a, o.b) for o in report.outcomes] == [*pairs, again]
    assert listener.moved == {"keyframes": 6, "transitions": 6, "frames": 6 * 8}
    assert frames_of(tmp_path) == reference


# ------------------------------------------------------------------ how workers are planned


def test_one_worker_per_gpu() -> None:
    nodes = [{"CPU": 16, "GPU": 4}, {"CPU": 8, "GPU": 2}, {"CPU": 4}]
    plan = plan_workers(nodes, None, None, None, "auto")
    assert (plan.count, plan.gpus, plan.cpus, plan.device) == (6, 1, 1, "cuda")
    assert plan.describe() == "6 workers (1 GPU each)"


def test_cpu_workers_default_to_the_smallest_machine() -> None:
    nodes = [{"CPU": 8}, {"CPU": 4}, {"CPU": 2}]
    assert plan_workers(nodes, None, None, None, "auto").count == 4 + 2 + 1
    assert plan_workers(nodes, "cpu", 4, None, "auto").count == 3
    both = plan_workers([{"CPU": 8, "GPU": 1}], "cpu", 4, None, "auto")
    assert (both.count, both.gpus, both.device) == (2, 0, "cpu")


@pytest.mark.parametrize(("device", "cpus", "needs_gpu", "said"), [
    ("cuda", None, None, "has no GPU, but --device cuda needs one"),
    (None, None, "noise: cuda in x.json", "has no GPU, but noise: cuda in x.json needs one"),
    (None, 16, None, "--cluster-cpus 16: no machine of the Ray cluster at h:1 has that many"),
])
def test_impossible_worker_plans_are_refused(device: str | None, cpus: int | None,
                                             needs_gpu: str | None, said: str) -> None:
    with pytest.raises(ClusterError, match=said):
        plan_workers([{"CPU": 8}], device, cpus, needs_gpu, "h:1")
