"""Shared pieces of the benchmarks: figures, timers, memory sampling, machine facts."""

from __future__ import annotations

import datetime as dt
import os
import platform
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil


@dataclass
class Figure:
    """One measured number, the target it is held to, and whether it meets it."""

    key: str
    name: str
    measured: float | None
    unit: str = ""
    target: str = ""
    passed: bool | None = None  # None: reported only, no target
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check(value: float, op: str, bound: float) -> bool:
    return value >= bound if op == ">=" else value <= bound


def machine_info() -> dict[str, Any]:
    """What the numbers depend on (torch is imported only if a benchmark already did)."""
    import sys

    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.is_available()
    return info


class RssSampler:
    """Peak resident memory of a process tree, sampled on a thread every `interval` s."""

    def __init__(self, pid: int | None = None, interval: float = 0.01) -> None:
        self.pid = pid or os.getpid()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def tree_rss(self) -> int:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue  # a child that just exited
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.tree_rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.peak = self.tree_rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.tree_rss())


@contextmanager
def timed(into: dict[str, float], key: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        into[key] = into.get(key, 0.0) + time.perf_counter() - start


def best_of(repeats: int, run: Callable[[], float]) -> float:
    """The shortest of `repeats` timings: other load on the machine only ever adds time."""
    return min(run() for _ in range(repeats))


def mb(n_bytes: float) -> float:
    return n_bytes / 2**20


class LoadMeter:
    """How busy other processes kept the CPUs while a block ran (0 = idle, 1 = all CPUs).

    Timings of a busy machine are not comparable: torch's OpenMP threads spin-wait for each
    other, so a core taken by another process can slow a 2-thread model many times over.
    """

    def __init__(self) -> None:
        self.other_share = 0.0

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0)

    @staticmethod
    def _own() -> float:
        t = psutil.Process().cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    def __enter__(self) -> LoadMeter:
        self._start = (time.perf_counter(), self._busy(), self._own())
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._start[0]
        other = (self._busy() - self._start[1]) - (self._own() - self._start[2])
        self.other_share = max(0.0, other / (wall * (psutil.cpu_count() or 1))) if wall else 0.0
