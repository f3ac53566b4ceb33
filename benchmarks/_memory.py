"""Peak memory of a real `sdmorph transitions` run (plan, keyframes, frames) at the default
batch size: the CLI runs in a child process and its resident memory is sampled."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from _common import RssSampler
from _song import SongSpec, write_song


@dataclass(frozen=True)
class RunMemory:
    size: int
    frames: int  # frames written into transition folders
    transitions: int
    seconds: float
    peak_rss: int  # bytes, the CLI process and any children


def transitions_run(root: Path, spec: SongSpec) -> RunMemory:
    meta, media = write_song(root, spec)
    env = {**os.environ, "meta_dir": str(meta.parent), "media_dir": str(media.parent),
           "NO_COLOR": "1", "COLUMNS": "120"}
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "sdmorph", "transitions", meta.name],
                             cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    with RssSampler(child.pid, interval=0.01) as sampler:
        output, _ = child.communicate()
    seconds = time.perf_counter() - start
    if child.returncode != 0:
        raise RuntimeError(f"sdmorph transitions failed (exit {child.returncode}):\n{output}")
    folders = [p for p in (media / "transition_images").iterdir()
               if p.is_dir() and not p.name.startswith(".")]
    frames = sum(len(list(p.glob("frame*.png"))) for p in folders)
    return RunMemory(spec.size, frames, len(folders), seconds, sampler.peak)
