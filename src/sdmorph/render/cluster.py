"""Rendering on a Ray cluster: many GPUs, many machines, one sdmorph command.

Workers are Ray actors that each hold one GPU (on machines without one: some CPUs) and load
the model once, then render batch after batch. The driver (the machine running sdmorph)
keeps everything that touches the media folder: it prepares every frame's inputs as a local
run does (the Renderer interpolates embeddings and noise), sends them to an idle worker, gets
the pixels back as uint8 arrays and writes the PNGs itself. So frames are the bytes a local
run on the same kind of device writes, and no file system is shared.

`RemoteEngine` has the part of `Engine`'s interface that `Renderer` and the stages use, so
neither knows where frames are rendered. A worker that dies (its process killed, its machine
rebooted) is restarted by Ray, which loads the model again and reruns the calls it lost
(`max_restarts=-1`, `max_task_retries=-1`); nothing the driver wrote is lost either way.

Ray is an optional dependency (`pip install 'sdmorph[cluster]'`): it is imported only when a
cluster is asked for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image

from sdmorph.core.errors import ConfigError, ModelError, RenderError, SdmorphError, SongError
from sdmorph.render.engine import DarkFrameError, Engine, FrameInput

INSTALL_HINT = "pip install 'sdmorph[cluster]'"
# Ray retries an address where nothing listens for many minutes; a plain TCP connect tells
# at once whether anything is there.
_PROBE_SECONDS = 5.0
# Errors a worker sends back by name, rebuilt on the driver (the CLI shows them as one line).
_ERRORS: dict[str, type[SdmorphError]] = {
    cls.__name__: cls for cls in (SdmorphError, ModelError, RenderError, ConfigError, SongError)
}


class ClusterError(SdmorphError):
    """The cluster cannot be used: Ray missing, nothing at the address, no GPU, a bad option."""


@dataclass(frozen=True)
class EngineSpec:
    """What every worker passes to `Engine` (the arguments `open_renderer` would use)."""

    model: str
    controlnet: str | None = None
    device: str | None = None
    cache_dir: Path | None = None
    scheduler: str | None = None
    compile: bool = False
    dtype: str | None = None
    timestep_spacing: str | None = None
    loras: tuple[tuple[Path, float], ...] = ()


@dataclass
class Reply:
    """A worker's answer: the value, or the error to raise on the driver, and what the call
    added to the worker's counters and warnings (the driver adds them up)."""

    value: Any = None
    error: tuple[Any, ...] | None = None
    unet_evals: int = 0
    vae_decodes: int = 0
    frames: int = 0
    warnings: list[str] = field(default_factory=list)
    host: str = field(default_factory=socket.gethostname)

    def result(self) -> Any:
        """The value, or the worker's error raised as the same error a local run raises."""
        if self.error is None:
            return self.value
        kind, *rest = self.error
        if kind == "dark":
            raise DarkFrameError(*rest)
        where = f"on cluster worker {self.host}"
        if kind == "bug":
            raise RuntimeError(f"{where}: {rest[0]}")
        raise _ERRORS[kind](f"{where}: {rest[0]}")


class RenderWorker:
    """One worker (a Ray actor): an `Engine` loaded once, then called batch after batch.

    It never raises: a failure travels back in the `Reply`, so the driver can show it as the
    same one-line error a local run gives (Ray would wrap it in a remote traceback).
    """

    def __init__(self, spec: EngineSpec, threads: int | None = None) -> None:
        if threads:
            import torch

            # CPU pixels depend on the thread count (how sums are split): use what Ray gave.
            torch.set_num_threads(threads)
        self.warnings: list[str] = []
        self.engine: Engine | None = None
        self.error: tuple[Any, ...] | None = None
        cache = spec.cache_dir if spec.cache_dir and Path(spec.cache_dir).is_dir() else None
        try:
            self.engine = Engine(spec.model, spec.controlnet, device=spec.device,
                                 cache_dir=cache, scheduler=spec.scheduler,
                                 compile=spec.compile, dtype=spec.dtype,
                                 on_warning=self.warnings.append,
                                 timestep_spacing=spec.timestep_spacing, loras=spec.loras)
        except Exception as exc:  # noqa: BLE001 - sent to the driver, which raises it
            self.error = _error_of(exc, None)

    def pid(self) -> int:
        """This worker's process id (tests kill it to see the work go on)."""
        return os.getpid()

    def facts(self) -> Reply:
        """The engine's facts that go into every recipe, or why it could not load."""
        return self._call(lambda engine: {
            "device": engine.device, "dtype": str(engine.dtype).replace("torch.", ""),
            "family": engine.family, "scheduler_name": engine.scheduler_name,
            "scheduler_options": engine.scheduler_options, "stochastic": engine.stochastic})

    def embed(self, prompt: str, negative: str) -> Reply:
        return self._call(lambda engine: engine.embed(prompt, negative))

    def noise(self, seed: int, source: str, width: int, height: int) -> Reply:
        return self._call(lambda engine: engine.noise(seed, source, width, height))

    def step_noise(self, seed: int, source: str, width: int, height: int, steps: int) -> Reply:
        return self._call(lambda engine: engine.step_noise(seed, source, width, height, steps))

    def render(self, frames: Sequence[FrameInput], options: dict[str, Any]) -> Reply:
        """The frames as (h, w, 3) uint8 arrays: compact, and exactly the PIL images' pixels."""
        return self._call(lambda engine: [np.asarray(picture) for picture in
                                          engine.render(frames, **options)])

    def _call(self, work: Callable[[Engine], Any]) -> Reply:
        engine = self.engine
        if engine is None:
            return Reply(error=self.error)
        before = (engine.unet_evals, engine.vae_decodes, engine.frames_rendered)
        self.warnings.clear()
        try:
            value = work(engine)
        except Exception as exc:  # noqa: BLE001 - sent to the driver, which raises it
            return Reply(error=_error_of(exc, engine), warnings=list(self.warnings))
        evals, decodes, frames = (now - then for now, then in zip(
            (engine.unet_evals, engine.vae_decodes, engine.frames_rendered), before,
            strict=True))
        return Reply(value, None, evals, decodes, frames, list(self.warnings))


def _error_of(exc: Exception, engine: Engine | None) -> tuple[Any, ...]:
    """An exception as plain data that any driver can turn back into the same error."""
    if isinstance(exc, DarkFrameError) and engine is not None:
        return ("dark", exc.position, exc.what, engine.device,
                str(engine.dtype).replace("torch.", ""))
    if isinstance(exc, SdmorphError):
        name = type(exc).__name__ if type(exc).__name__ in _ERRORS else "SdmorphError"
        return (name, str(exc))
    return ("bug", f"{type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class WorkerPlan:
    """How many workers to start and what each one holds."""

    count: int
    gpus: int  # per worker: 1, or 0 on machines without GPUs
    cpus: int  # per worker
    device: str | None  # the device each worker's engine uses

    def describe(self) -> str:
        each = "1 GPU" if self.gpus else f"{self.cpus} CPU{'s' if self.cpus > 1 else ''}"
        if self.count == 1:
            return f"1 worker ({each})"
        return f"{self.count} workers ({each} each)"


class RemoteEngine:
    """Stands in for `Engine` on the driver; its calls run on the cluster's workers.

    Thread-safe: each call takes an idle worker (waiting for one when all are busy), so as
    many driver threads as there are workers keep them all rendering (`workers`).
    """

    def __init__(self, ray: ModuleType, actors: list[Any], facts: dict[str, Any],
                 address: str, plan: WorkerPlan) -> None:
        self._ray = ray
        self._actors = actors
        self.address = address
        self.plan = plan
        self.device: str = facts["device"]
        self.dtype: str = facts["dtype"]
        self.family: str = facts["family"]
        self.scheduler_name: str = facts["scheduler_name"]
        self.scheduler_options: dict[str, Any] = facts["scheduler_options"]
        self.stochastic: bool = facts["stochastic"]
        self.on_warning: Callable[[str], None] | None = None
        self.unet_evals = 0
        self.vae_decodes = 0
        self.frames_rendered = 0
        self._idle: queue.Queue[Any] = queue.Queue()
        for actor in actors:
            self._idle.put(actor)
        self._lock = threading.Lock()
        self._embeddings: dict[tuple[str, str], tuple[np.ndarray, ...]] = {}

    @property
    def workers(self) -> int:
        """How many renders can run at once."""
        return len(self._actors)

    def describe(self) -> str:
        where = "this machine" if self.address == "local" else self.address
        return f"Ray cluster at {where}: {self.plan.describe()} on {self.device}"

    def embed(self, prompt: str, negative: str) -> tuple[np.ndarray, ...]:
        """As `Engine.embed`; cached here, as the engine caches it, so each text travels once."""
        key = (prompt, negative)
        with self._lock:
            found = self._embeddings.get(key)
        if found is None:
            found = self._call("embed", prompt, negative)
            with self._lock:
                self._embeddings[key] = found
        return found

    def noise(self, seed: int, source: str, width: int, height: int) -> np.ndarray:
        return self._call("noise", seed, source, width, height)

    def step_noise(self, seed: int, source: str, width: int, height: int,
                   steps: int) -> np.ndarray:
        return self._call("step_noise", seed, source, width, height, steps)

    def render(self, frames: Sequence[FrameInput], *, steps: int, width: int, height: int,
               control_start: float = 0.0, control_end: float = 1.0) -> list[Image.Image]:
        """As `Engine.render`, on the next idle worker; the pixels come back unchanged."""
        options = {"steps": steps, "width": width, "height": height,
                   "control_start": control_start, "control_end": control_end}
        arrays = self._call("render", list(frames), options)
        return [Image.fromarray(array) for array in arrays]

    def worker_pids(self) -> list[int]:
        """Each worker's process id, once every worker is idle (for tests)."""
        return [int(pid) for pid in self._ray.get([a.pid.remote() for a in self._actors])]

    def _call(self, method: str, *args: Any) -> Any:
        actor = self._idle.get()
        try:
            reply: Reply = self._ray.get(getattr(actor, method).remote(*args))
        except self._ray.exceptions.RayActorError as exc:
            # Only when Ray gives up on the worker (restarts are unlimited): say so plainly.
            raise RenderError(f"lost a worker of the Ray cluster at {self.address}: "
                              f"{_first_line(exc)}") from None
        finally:
            self._idle.put(actor)
        with self._lock:
            self.unet_evals += reply.unet_evals
            self.vae_decodes += reply.vae_decodes
            self.frames_rendered += reply.frames
        for warning in reply.warnings:
            if self.on_warning is not None:
                self.on_warning(warning)
        return reply.result()

    def close(self) -> None:
        """Stop the workers and leave the cluster (a local Ray started for us stops too)."""
        if not self._ray.is_initialized():
            return
        for actor in self._actors:
            with contextlib.suppress(Exception):  # already gone: nothing to stop
                self._ray.kill(actor, no_restart=True)
        self._ray.shutdown()


# ------------------------------------------------------------------------------- start-up


def start_cluster(address: str, spec: EngineSpec, *, cpus: int | None = None,
                  needs_gpu: str | None = None) -> RemoteEngine:
    """Connect to the Ray cluster at `address` (or start Ray here: 'local') and start the
    workers, each loading the model; `needs_gpu` names the setting that requires a GPU."""
    ray = import_ray()
    check_address(address)
    _connect(ray, address)
    try:
        plan = plan_workers(_nodes(ray), spec.device, cpus, needs_gpu, address)
        actors = _start_workers(ray, spec, plan)
        facts = _facts(ray, actors)
    except BaseException:
        ray.shutdown()
        raise
    return RemoteEngine(ray, actors, facts, address, plan)


def import_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise ClusterError(f"--cluster needs Ray, which is not installed: {INSTALL_HINT}"
                           ) from None
    return ray


def check_address(address: str) -> None:
    """Refuse a malformed address, and one where nothing listens, at once."""
    if address == "local":
        return
    target = _resolved(address)
    if target is None:
        return  # 'auto' with no cluster on record: Ray says so itself, at once
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--cluster {address!r}: use auto, local, HOST:PORT or "
                           "ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=_PROBE_SECONDS):
            pass
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise ClusterError(f"--cluster {address}: cannot reach a Ray cluster at {target} "
                           f"({why}); start one with `ray start --head`, or check the address"
                           ) from None


def _resolved(address: str) -> str | None:
    """HOST:PORT of the address; 'auto' is looked up as Ray does (RAY_ADDRESS, then the
    cluster `ray start` last started on this machine)."""
    if address.startswith("ray://"):
        return address.removeprefix("ray://")
    if address != "auto":
        return address
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:  # another Ray: let ray.init find it
        return None
    try:
        return canonicalize_bootstrap_address(address)
    except Exception:  # noqa: BLE001 - nothing found: ray.init reports it
        return None


def _connect(ray: ModuleType, address: str) -> None:
    options: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address == "local":
        options["include_dashboard"] = False
    try:
        ray.init(address=address, **options)
    except ImportError as exc:  # ray:// needs Ray Client's packages
        raise ClusterError(f"--cluster {address}: {_first_line(exc)}; pip install "
                           "'ray[client]'") from None
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        raise ClusterError(f"--cluster {address}: cannot connect to Ray: {_first_line(exc)}"
                           f"{_auth_hint(address)}") from None


def _auth_hint(address: str) -> str:
    """Ray presents this machine's token (~/.ray/auth_token) to the cluster `auto` finds,
    never to an address given by hand unless asked to: say how, when that may be why."""
    if address in ("auto", "local") or address.startswith("ray://") or \
            os.environ.get("RAY_AUTH_MODE"):
        return ""
    return ("; if the cluster uses token authentication, set RAY_AUTH_MODE=token, or use "
            "--cluster auto on a machine that joined it")


def _nodes(ray: ModuleType) -> list[dict[str, float]]:
    """The resources of each live machine of the cluster."""
    return [dict(node.get("Resources", {})) for node in ray.nodes() if node.get("Alive")]


def plan_workers(nodes: Sequence[dict[str, float]], device: str | None, cpus: int | None,
                 needs_gpu: str | None, address: str) -> WorkerPlan:
    """One worker per GPU; on a cluster without GPUs (or with --device cpu), workers of
    `cpus` CPUs each (default: as many as the smallest machine has, one per machine)."""
    gpus = sum(int(node.get("GPU", 0)) for node in nodes)
    kind = (device or "").split(":")[0].strip().lower()
    wants_gpu = needs_gpu or (f"--device {device}" if kind == "cuda" else None)
    where = "this machine" if address == "local" else f"the Ray cluster at {address}"
    if wants_gpu and not gpus:
        raise ClusterError(f"{where} has no GPU, but {wants_gpu} needs one; use a cluster "
                           "with GPUs, or render on CPUs (--device cpu, noise: cpu)")
    if gpus and kind in ("", "auto", "cuda"):
        count = sum(min(int(node.get("GPU", 0)), int(node.get("CPU", 0))) for node in nodes)
        if not count:
            raise ClusterError(f"{where}: its GPUs are on machines with no CPU to spare")
        return WorkerPlan(count, 1, 1, "cuda")
    sizes = [int(node.get("CPU", 0)) for node in nodes if int(node.get("CPU", 0)) > 0]
    if not sizes:
        raise ClusterError(f"{where} has no CPU to render on")
    each = cpus or min(sizes)
    count = sum(size // each for size in sizes)
    if not count:
        raise ClusterError(f"--cluster-cpus {each}: no machine of {where} has that many CPUs "
                           f"(the largest has {max(sizes)})")
    return WorkerPlan(count, 0, each, device)


def _start_workers(ray: ModuleType, spec: EngineSpec, plan: WorkerPlan) -> list[Any]:
    worker = ray.remote(RenderWorker).options(
        num_gpus=plan.gpus, num_cpus=plan.cpus, max_restarts=-1, max_task_retries=-1)
    each = dataclasses.replace(spec, device=plan.device)
    threads = None if plan.gpus else plan.cpus
    return [worker.remote(each, threads) for _ in range(plan.count)]


def _facts(ray: ModuleType, actors: list[Any]) -> dict[str, Any]:
    """Every worker's engine facts; they must agree, or frames would depend on the worker."""
    replies: list[Reply] = ray.get([actor.facts.remote() for actor in actors])
    facts = [reply.result() for reply in replies]
    for reply, other in zip(replies[1:], facts[1:], strict=True):
        differ = [key for key in facts[0] if other[key] != facts[0][key]]
        if differ:
            key = differ[0]
            raise ClusterError(f"cluster workers on {replies[0].host} and {reply.host} disagree "
                               f"on {key} ({facts[0][key]} vs {other[key]}): their frames "
                               "would differ")
    return facts[0]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
