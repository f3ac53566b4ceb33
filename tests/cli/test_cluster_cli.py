"""`--cluster` through the real `sdmorph` command: one clear line when the cluster cannot be
used (Ray not installed, nothing at the address, a malformed option), and `--cluster local`,
Ray started by sdmorph on this machine, giving a local run's bytes.

The tests against a cluster started with `ray start` (frames, killed workers and drivers, a
cluster without the GPU a setting needs) are in tests/render/test_cluster.py.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sdmorph.cli.app import app
from songs import env_for, write_song

runner = CliRunner()


def invoke(root: Path, *args: str):
    return runner.invoke(app, list(args), env=env_for(root))


def sdmorph(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command in its own process: Ray started with `--cluster local` stops with it.

    Ray's local clusters use token authentication: a token in the environment keeps Ray
    from writing one to ~/.ray/auth_token. Ray's reaper reads stdin to notice its parent
    dying (under xdist, this worker's stdin is its channel to pytest): it gets none.
    """
    env = {**os.environ, **env_for(root), "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    return subprocess.run([sys.executable, "-m", "sdmorph", *args], cwd=root, text=True,
                          env=env, capture_output=True, timeout=600,
                          stdin=subprocess.DEVNULL)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.strip().splitlines() if line.strip()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("command", ["render-prompts", "transitions", "run"])
def test_without_ray_the_cluster_option_says_how_to_install_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    write_song(tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    result = invoke(tmp_path, command, "song", "--cluster", "auto")
    assert result.exit_code == 2, result.output
    assert error_lines(result.stderr) == [
        "error: --cluster needs Ray, which is not installed: pip install 'sdmorph[cluster]'"]
    assert not (tmp_path / "media/song/prompt_images").exists()


def test_a_cluster_that_cannot_be_reached_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    write_song(tmp_path)
    port = free_port()  # nothing listens there
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        result = invoke(tmp_path, "render-prompts", "song", "--cluster", address)
        assert result.exit_code == 2, result.output
        assert error_lines(result.stderr) == [
            f"error: --cluster {address}: cannot reach a Ray cluster at 127.0.0.1:{port} "
            "(Connection refused); start one with `ray start --head`, or check the address"]


@pytest.mark.parametrize(("args", "said"), [
    (["--cluster", "nonsense"], "--cluster 'nonsense': use auto, local, HOST:PORT or "
                                "ray://HOST:PORT"),
    (["--cluster-cpus", "2"], "--cluster-cpus needs --cluster ADDRESS"),
])
def test_bad_cluster_options_are_one_line(tmp_path: Path, args: list[str], said: str) -> None:
    pytest.importorskip("ray")
    write_song(tmp_path)
    result = invoke(tmp_path, "render-prompts", "song", *args)
    assert result.exit_code == 2, result.output
    assert error_lines(result.stderr) == [f"error: {said}"]


@pytest.mark.slow
def test_render_prompts_on_a_local_cluster_gives_a_local_runs_bytes(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    for name in ("here", "ray"):
        write_song(tmp_path / name)
    assert invoke(tmp_path / "here", "render-prompts", "song").exit_code == 0
    # Two workers of one CPU (one torch thread each, as this process renders with).
    result = sdmorph(tmp_path / "ray", "render-prompts", "song", "--cluster", "local",
                     "--cluster-cpus", "1")
    assert result.returncode == 0, result.stderr
    assert "rendering on the Ray cluster at this machine: 2 workers (1 CPU each)" in result.stdout
    assert "keyframes: 9 rendered" in result.stdout
    images = [sorted((tmp_path / name / "media/song/prompt_images").glob("*.png"))
              for name in ("here", "ray")]
    assert [p.name for p in images[0]] == [p.name for p in images[1]] and len(images[0]) == 9
    assert [p.read_bytes() for p in images[0]] == [p.read_bytes() for p in images[1]]
