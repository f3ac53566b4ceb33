"""Kill sdmorph at any moment; running the same command again must end where an unbroken run does.

    .venv/bin/python scripts/crash.py --kills 50

For each stage (render-prompts, transitions, movie, transitions --pacing even, explore --keep)
a tiny song goes through the stages uninterrupted once: the reference. Then, in a copy of the
reference taken just before a stage, the stage's command is started as its own process
(`python -m sdmorph ...`) and interrupted: at a moment drawn uniformly over the reference
run's duration, or just after the k-th output file appeared. It is restarted and interrupted
again, a few times (a round), then left to finish. After every interruption no finished file
may be cut short (PNG, video, CSV, JSON, the prompt sheet, which must be the old or a newer
whole version); a folder with a manifest must hold all its frames. At the end of a round
every output must be byte-identical to the reference's (absolute paths in CSVs aside) and no
temporary file, partial-render marker or probe render may be left.

Most interruptions are SIGKILL of the sdmorph process (a crash, the OOM killer; an ffmpeg it
started is orphaned and finishes on its own). Some are SIGINT to the whole process group, as
Ctrl-C in a terminal sends it: the process must exit with code 130, print the one line
saying how to resume, and no traceback.

tests/test_crash.py runs a few kill points per stage with these functions; this script runs
many and prints a table (kill points survived, mismatching rounds, time).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sdmorph.core.errors import MovieError
from sdmorph.formats.fsio import is_temp
from sdmorph.formats.legacy import frame_name
from sdmorph.media.ffmpeg import probe
from sdmorph.media.store import MANIFEST_NAME, PARTIAL_NAME, png_complete

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from songs import SETTINGS, SHEET, env_for, write_song  # noqa: E402

SONG = "song"
KEEP_PROMPT = "luna"
CRASH_SETTINGS = {"default": {**SETTINGS["default"], "interpolation_steps": 6,
                              "pipe_kwargs": {"num_inference_steps": 2}}}
INTERRUPTED = ("interrupted: everything finished so far is kept; run the same command again "
               "to resume")
RUN_TIMEOUT = 300.0
_POLL = 0.003
_SKIPPED_PARTS = {".locks", ".sdmorph"}  # lock files; the frame-check cache (mtimes inside)


@dataclass(frozen=True)
class Stage:
    """One command, and the folders (relative to the song root) where its progress shows.

    `ctrl_c`: also interrupt it with SIGINT while it works. Stages whose work is one short
    write at the end (movie, keep) would mostly be hit before the command starts or after it
    finished, where Python, not sdmorph, answers Ctrl-C.
    """

    name: str
    args: tuple[str, ...]
    watch: tuple[str, ...]
    ctrl_c: bool = False


STAGES = (
    Stage("render-prompts", ("render-prompts", SONG), (f"media/{SONG}/prompt_images",),
          ctrl_c=True),
    Stage("transitions", ("transitions", SONG),
          (f"media/{SONG}/transition_images", f"media/{SONG}/transition_meta",
           f"media/{SONG}/story"), ctrl_c=True),
    Stage("movie", ("movie", SONG), (f"media/{SONG}/stories", f"media/{SONG}/story")),
    # Even pacing renders the same transitions again (--force: the linear ones are stale
    # now), with probe files that must all be gone, and t's that must come out the same.
    Stage("transitions --pacing even", ("transitions", SONG, "--pacing", "even", "--force"),
          (f"media/{SONG}/transition_images", f"media/{SONG}/transition_meta",
           f"media/{SONG}/story"), ctrl_c=True),
    # Shared denoising grows each transition's tree again on a rerun, from nothing on disk
    # (the states live in memory), and records its cost in the marker with the t's.
    Stage("transitions --sharing", ("transitions", SONG, "--pacing", "even", "--sharing", "0.8",
                                    "--force"),
          (f"media/{SONG}/transition_images", f"media/{SONG}/transition_meta",
           f"media/{SONG}/story"), ctrl_c=True),
    Stage("explore --keep", ("explore", SONG, "-p", KEEP_PROMPT, "--keep", "42", "43"),
          (f"meta/{SONG}",)),
)
STAGE = {stage.name: stage for stage in STAGES}


@dataclass(frozen=True)
class Kill:
    """When and how to interrupt one run.

    `when` "time": at uniform(lo, hi) x the reference run's seconds after the start;
    "files": once k files appeared or changed, k = ceil(uniform(lo, hi) x the outputs still
    missing), at least 1. A Ctrl-C comes before the last output, while work remains.
    """

    when: str
    sig: int = signal.SIGKILL
    within: tuple[float, float] = (0.0, 1.0)

    def __str__(self) -> str:
        return f"{signal.Signals(self.sig).name} by {self.when}"


@dataclass
class Reference:
    """A stage run uninterrupted: the tree before it, its outputs after, how long it took."""

    stage: Stage
    before: Path
    after: dict[str, bytes]
    seconds: float
    roots: tuple[Path, ...]


@dataclass
class Round:
    """One copy of the song, interrupted a few times, then finished."""

    stage: str
    kills: list[str] = field(default_factory=list)  # interruptions delivered
    problems: list[str] = field(default_factory=list)  # broken invariants (after kills, at the end)
    mismatches: list[str] = field(default_factory=list)  # outputs that differ from the reference
    missed: str = ""  # how the command ended when an interruption came too late
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems and not self.mismatches


# ---------------------------------------------------------------- running sdmorph


def start(root: Path, args: Sequence[str]) -> subprocess.Popen[bytes]:
    """`python -m sdmorph ARGS` on the song under `root`, in its own process group."""
    env = {**os.environ, **env_for(root), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "sdmorph", *args], env=env, cwd=root,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=_ctrl_c_as_in_a_terminal)


def _ctrl_c_as_in_a_terminal() -> None:
    """A shell without job control starts its background jobs ignoring Ctrl-C, and every
    child inherits that (`make test &` from a script): the command must get it, as it does
    in a terminal, or no interruption by Ctrl-C is ever tested."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def finish(proc: subprocess.Popen[bytes], timeout: float = RUN_TIMEOUT) -> str:
    """Wait for the process; its output, decoded. Killed if it hangs, or if we are stopped."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return out.decode(errors="replace")


def run(root: Path, args: Sequence[str]) -> tuple[int, str, float]:
    """Run to the end: (exit code, output, seconds)."""
    began = time.perf_counter()
    proc = start(root, args)
    out = finish(proc)
    return proc.returncode, out, time.perf_counter() - began


def settle(pgid: int, timeout: float = 10.0) -> None:
    """Wait until every process of the group has gone (orphaned ffmpegs finish on their own)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


# ---------------------------------------------------------------- files


def song_files(root: Path) -> Iterator[Path]:
    """Every file under the song's media and meta folders, locks and caches aside."""
    for base in (root / "media" / SONG, root / "meta" / SONG):
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(base)
            if _SKIPPED_PARTS & set(rel.parts) or path.name.endswith(".lock"):
                continue
            if path.is_file():
                yield path


def file_states(root: Path, folders: Sequence[str]) -> set[tuple[str, int, int]]:
    """(path, size, mtime) of every finished file in `folders`: progress, as a set."""
    states = set()
    for folder in folders:
        base = root / folder
        if not base.is_dir():
            continue
        # os.walk, not rglob: the stage renames and removes staging folders while we
        # look, and rglob raises when a folder it is about to list has gone.
        for folder_path, _dirs, names in os.walk(base):
            for name in names:
                path = Path(folder_path) / name
                if is_temp(path) or name.endswith(".lock") or _SKIPPED_PARTS & set(path.parts):
                    continue
                try:
                    st = path.stat()
                except OSError:  # renamed or removed while we looked
                    continue
                states.add((str(path), st.st_size, st.st_mtime_ns))
    return states


def normalized(data: bytes, roots: Sequence[Path]) -> bytes:
    """File bytes with the absolute song roots (written into story CSVs) replaced."""
    for root in sorted(roots, key=lambda r: -len(str(r))):
        data = data.replace(str(root).encode(), b"<root>")
    return data


def outputs(root: Path, roots: Sequence[Path]) -> dict[str, bytes]:
    """What a run leaves: every finished file of the song, by path relative to `root`."""
    return {str(p.relative_to(root)): normalized(p.read_bytes(), roots)
            for p in song_files(root) if not is_temp(p)}


def differences(got: dict[str, bytes], want: dict[str, bytes]) -> list[str]:
    out = [f"{name}: missing" for name in sorted(want.keys() - got.keys())]
    out += [f"{name}: not in the reference" for name in sorted(got.keys() - want.keys())]
    out += [f"{name}: differs" for name in sorted(want.keys() & got.keys())
            if got[name] != want[name]]
    return out


# ---------------------------------------------------------------- invariants


class SheetVersions:
    """Tells whole versions of the prompt sheet: the original with seeds appended to one cell."""

    def __init__(self, original: str = SHEET, prompt: str = KEEP_PROMPT) -> None:
        data = original.encode()
        row = re.search(rb"^" + re.escape(prompt.encode()) + rb",.*$", data, re.MULTILINE)
        assert row is not None
        cell = re.search(rb",([0-9 ]+),[^,]*$", row.group(0))
        assert cell is not None
        split = row.start() + cell.end(1)
        self.head, self.tail = data[:split], data[split:]

    def appended(self, data: bytes) -> tuple[int, ...] | None:
        """The seeds kept since the original, or None if `data` is not a whole version."""
        if not (data.startswith(self.head) and data.endswith(self.tail)):
            return None
        middle = data[len(self.head) : len(data) - len(self.tail)]
        if not re.fullmatch(rb"( [0-9]+)*", middle):
            return None
        return tuple(int(s) for s in middle.split())

    def check(self, root: Path) -> list[str]:
        """The sheet and its backup are whole versions, the backup no newer than the sheet."""
        sheet = root / "meta" / SONG / "prompt_image_definitions.csv"
        found = self.appended(sheet.read_bytes()) if sheet.is_file() else None
        if found is None:
            return [f"{sheet.name} is missing or not a whole version"]
        backup = sheet.with_name(sheet.name + ".bak")
        if not backup.is_file():
            return []
        old = self.appended(backup.read_bytes())
        if old is None or found[: len(old)] != old:
            return [f"{backup.name} is not a whole version older than the sheet"]
        return []


def broken_file(path: Path) -> str | None:
    """Why a finished file is not whole, or None."""
    suffix = path.suffix.lower()
    if suffix == ".png":
        return None if png_complete(path) else "truncated PNG"
    if suffix in (".mov", ".mp4"):
        try:
            probe(path)
        except MovieError as exc:
            return f"unreadable video ({exc.problems[0]})"
        return None
    try:
        if suffix == ".json":
            json.loads(path.read_bytes())
        elif suffix == ".csv":
            list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"))))
    except (ValueError, csv.Error) as exc:
        return f"does not parse ({exc})"
    return None


def incomplete_finished_folders(root: Path) -> list[str]:
    """Transition folders whose manifest says complete, yet lack a whole frame."""
    out = []
    store = root / "media" / SONG / "transition_images"
    for manifest in sorted(store.glob(f"*/{MANIFEST_NAME}")):
        frames = json.loads(manifest.read_bytes())["frames"]
        missing = [i for i in range(frames) if not png_complete(manifest.parent / frame_name(i))]
        if missing:
            out.append(f"{manifest.parent.name}: manifest written, {frame_name(missing[0])} "
                       "is not whole")
    return out


def check_after_kill(root: Path, sheet: SheetVersions) -> list[str]:
    """What must hold at any moment: finished files whole, sheet a whole version."""
    problems = [f"{p.relative_to(root)}: {why}" for p in song_files(root)
                if not is_temp(p) and (why := broken_file(p))]
    return problems + incomplete_finished_folders(root) + sheet.check(root)


def check_final(root: Path) -> list[str]:
    """What must hold once a command finished: no temp files, no markers of finished work."""
    problems = [f"{p.relative_to(root)}: temporary file left"
                for base in (root / "media", root / "meta") for p in sorted(base.rglob("*"))
                if is_temp(p)]
    problems += [f"{p.relative_to(root)}: partial marker left"
                 for p in (root / "media" / SONG / "transition_images").glob(f"*/{PARTIAL_NAME}")]
    return problems + [f"{p.relative_to(root)}: truncated PNG" for p in song_files(root)
                       if p.suffix == ".png" and not png_complete(p)]


def check_interrupted(kill: Kill, code: int | None, out: str) -> list[str]:
    """A SIGKILLed process dies at once; a Ctrl-C'd one says how to resume and exits 130."""
    if kill.sig == signal.SIGKILL:
        return [] if code == -signal.SIGKILL else [f"exit code {code} after SIGKILL"]
    problems = []
    if code != 130:
        problems.append(f"exit code {code} after Ctrl-C, not 130")
    if out.count(INTERRUPTED) != 1:
        problems.append("Ctrl-C: the 'interrupted: ...' line is not printed exactly once")
    if "Traceback" in out:
        problems.append("Ctrl-C printed a traceback")
    return problems


# ---------------------------------------------------------------- references


def build_references(workdir: Path, stages: Sequence[Stage] = STAGES,
                     runs: int = 1) -> dict[str, Reference]:
    """Run the stages in order, uninterrupted, on a fresh song under `workdir`.

    With several `runs` (each on its own song copy) the outputs must agree byte for byte,
    and each stage's duration is the shortest run's (a busy machine only slows runs down).
    """
    references: dict[str, Reference] = {}
    for chain in range(runs):
        root = workdir / f"reference-{chain}"
        write_song(root, settings=CRASH_SETTINGS)
        for i, stage in enumerate(stages):
            before = workdir / f"before-{i}"
            if chain == 0:
                shutil.copytree(root, before, symlinks=True)
            code, out, seconds = run(root, stage.args)
            if code != 0:
                raise RuntimeError(f"reference `sdmorph {' '.join(stage.args)}` failed:\n{out}")
            ref = references.setdefault(
                stage.name, Reference(stage, before, outputs(root, [root]), seconds, (root,)))
            if chain:
                ref.roots = (*ref.roots, root)
            ref.seconds = min(ref.seconds, seconds)
            unlike = differences(outputs(root, ref.roots), ref.after)
            if unlike:
                raise RuntimeError(f"two uninterrupted runs of `sdmorph {' '.join(stage.args)}` "
                                   "differ: " + "; ".join(unlike[:5]))
    return references


def missing_outputs(root: Path, ref: Reference) -> int:
    """Files of the reference, in the stage's folders, that `root` lacks or holds otherwise."""
    got = outputs(root, (*ref.roots, root))
    prefixes = tuple(folder + "/" for folder in ref.stage.watch)
    return sum(1 for name, data in ref.after.items()
               if name.startswith(prefixes) and got.get(name) != data)


# ---------------------------------------------------------------- interrupting


def interrupt(proc: subprocess.Popen[bytes], kill: Kill, trigger: Callable[[], bool]) -> bool:
    """Wait for `trigger`, then send the signal; False if the process ended first."""
    while not trigger():
        if proc.poll() is not None:
            return False
        time.sleep(_POLL)
    if proc.poll() is not None:
        return False
    if kill.sig == signal.SIGKILL:
        os.kill(proc.pid, signal.SIGKILL)  # only sdmorph: a crash orphans its ffmpegs
    else:
        os.killpg(proc.pid, kill.sig)  # Ctrl-C reaches the whole foreground group
    return True


def trigger_for(kill: Kill, root: Path, ref: Reference, rng: random.Random) -> Callable[[], bool]:
    lo, hi = kill.within
    if kill.when == "time":
        deadline = time.monotonic() + rng.uniform(lo, hi) * ref.seconds
        return lambda: time.monotonic() >= deadline
    base = file_states(root, ref.stage.watch)
    missing = missing_outputs(root, ref)
    k = max(1, math.ceil(rng.uniform(lo, hi) * missing))
    if kill.sig != signal.SIGKILL:
        k = max(1, min(k, missing - 1))
    return lambda: len(file_states(root, ref.stage.watch) - base) >= k


def run_round(ref: Reference, root: Path, kills: Sequence[Kill], rng: random.Random) -> Round:
    """Copy the tree from before the stage to `root`, interrupt the command at each kill
    point in turn (restarting it), let it finish, and compare with the reference."""
    began = time.perf_counter()
    result = Round(ref.stage.name)
    shutil.copytree(ref.before, root, symlinks=True)
    sheet = SheetVersions()
    finished = False
    for kill in kills:
        trigger = trigger_for(kill, root, ref, rng)
        proc = start(root, ref.stage.args)
        try:
            delivered = interrupt(proc, kill, trigger)
        except BaseException:  # the harness itself was stopped: leave no sdmorph running
            os.killpg(proc.pid, signal.SIGKILL)
            finish(proc)
            raise
        out = finish(proc)
        settle(proc.pid)
        if proc.returncode == 0 and INTERRUPTED not in out:
            delivered = False  # it exited just before the signal came
        if not delivered:
            finished = True
            result.missed = f"{kill}: exit {proc.returncode} with files {trigger()}: {out[-400:]}"
            if proc.returncode != 0:
                result.problems.append(f"exit code {proc.returncode}:\n{out[-2000:]}")
            break
        result.kills.append(str(kill))
        where = f"after {kill} #{len(result.kills)}"
        said = check_interrupted(kill, proc.returncode, out)
        result.problems += [f"{where}: {p}" for p in said] + ([out[-2000:]] if said else [])
        result.problems += [f"{where}: {p}" for p in check_after_kill(root, sheet)]
    if not finished:
        code, out, _ = run(root, ref.stage.args)
        if code != 0:
            result.problems.append(f"final run: exit code {code}:\n{out[-2000:]}")
    result.problems += check_final(root)
    result.mismatches = differences(outputs(root, (*ref.roots, root)), ref.after)
    result.seconds = time.perf_counter() - began
    return result


# ---------------------------------------------------------------- concurrent keeps


@dataclass
class KeepRace:
    """Several `explore --keep` processes at once, some killed, then restarted."""

    kept: list[int]  # seeds whose process exited 0 first time round
    killed: list[int]  # seeds whose process was killed
    versions_seen: int
    problems: list[str]


def _watch_sheet(root: Path, sheet: SheetVersions, stop: threading.Event,
                 seen: list[tuple[int, ...]], problems: list[str]) -> None:
    """Read the sheet over and over: every read is a whole version, never older than before."""
    path = root / "meta" / SONG / "prompt_image_definitions.csv"
    while not stop.is_set():
        found = sheet.appended(path.read_bytes())
        if found is None:
            problems.append("the sheet was read half-written")
        elif seen and found[: len(seen[-1])] != seen[-1]:
            problems.append(f"the sheet went back from {seen[-1]} to {found}")
        elif not seen or found != seen[-1]:
            seen.append(found)
        time.sleep(0.001)


def keep_race(root: Path, processes: int, victims: int, rng: random.Random,
              seconds: float) -> KeepRace:
    """Start `processes` keeps of distinct seeds at once; SIGKILL `victims` of them at
    uniform moments over `seconds`; then rerun the killed ones, as a user would."""
    write_song(root, settings=CRASH_SETTINGS)
    sheet = SheetVersions()
    seeds = [900_000 + i for i in range(processes)]
    args = ("explore", SONG, "-p", KEEP_PROMPT, "--keep")
    stop, seen, problems = threading.Event(), [], []
    watcher = threading.Thread(target=_watch_sheet, args=(root, sheet, stop, seen, problems))
    watcher.start()
    procs = {seed: start(root, (*args, str(seed))) for seed in seeds}
    began = time.monotonic()
    for when, seed in sorted((rng.uniform(0, seconds), s) for s in rng.sample(seeds, victims)):
        time.sleep(max(0.0, began + when - time.monotonic()))
        if procs[seed].poll() is None:
            os.kill(procs[seed].pid, signal.SIGKILL)
    outs = {seed: finish(proc) for seed, proc in procs.items()}
    kept = [s for s in seeds if procs[s].returncode == 0]
    killed = [s for s in seeds if procs[s].returncode == -signal.SIGKILL]
    problems += [f"keep {s}: exit code {procs[s].returncode}:\n{outs[s][-1000:]}"
                 for s in seeds if s not in kept and s not in killed]
    final = sheet.appended((root / "meta" / SONG / "prompt_image_definitions.csv").read_bytes())
    missing = [s for s in kept if final is None or s not in final]
    if missing:
        problems.append(f"seeds {missing} were kept (exit 0) but are not in the sheet")
    for seed in killed:
        code, out, _ = run(root, (*args, str(seed)))
        if code != 0:
            problems.append(f"rerun of keep {seed}: exit code {code}:\n{out[-1000:]}")
    stop.set()
    watcher.join()
    final = sheet.appended((root / "meta" / SONG / "prompt_image_definitions.csv").read_bytes())
    if final is None or sorted(final) != seeds:
        problems.append(f"after the reruns the sheet keeps {final}, not {seeds}")
    problems += sheet.check(root) + check_final(root)
    return KeepRace(kept, killed, len(seen), problems)


# ---------------------------------------------------------------- the script


def kill_plan(stage: Stage, n: int, rng: random.Random, sigint_every: int = 5) -> list[Kill]:
    """`n` kill points, half by time, half by files; every `sigint_every`-th by files a
    Ctrl-C when the stage takes one."""
    plan = []
    for i in range(n):
        if i % 2 == 0:
            plan.append(Kill("time"))
        elif stage.ctrl_c and sigint_every and (i // 2) % sigint_every == sigint_every - 1:
            plan.append(Kill("files", signal.SIGINT))
        else:
            plan.append(Kill("files"))
    rng.shuffle(plan)
    return plan


@dataclass
class StageSummary:
    stage: str
    kills: int = 0
    sigints: int = 0
    survived: int = 0
    rounds: int = 0
    mismatched_rounds: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


def soak(ref: Reference, workdir: Path, kills: int, per_round: int,
         rng: random.Random) -> StageSummary:
    """Rounds of `per_round` kill points until `kills` were delivered."""
    summary = StageSummary(ref.stage.name)
    began = time.perf_counter()
    plan = kill_plan(ref.stage, kills, rng)
    started = 0  # sdmorph processes started; a round's last one may end before its kill point
    while summary.kills < kills and started < 8 * kills:
        todo = plan[summary.kills : summary.kills + per_round]
        summary.rounds += 1
        round_root = workdir / f"{ref.stage.name.replace(' ', '_')}-{summary.rounds}"
        result = run_round(ref, round_root, todo, rng)
        shutil.rmtree(round_root, ignore_errors=True)
        started += len(result.kills) + 1
        summary.kills += len(result.kills)
        summary.sigints += sum(1 for k in result.kills if k.startswith("SIGINT"))
        if result.ok:
            summary.survived += len(result.kills)
        else:
            summary.mismatched_rounds += bool(result.mismatches)
            summary.failures += [f"round {summary.rounds} ({', '.join(result.kills)}): {p}"
                                 for p in result.problems + result.mismatches]
        print(f"  {ref.stage.name}: round {summary.rounds}, {len(result.kills)} kills "
              f"({', '.join(result.kills) or 'none delivered'}), "
              f"{'ok' if result.ok else 'FAILED'}, {result.seconds:.1f}s", flush=True)
        for problem in (result.problems + result.mismatches)[:5]:  # now: a soak may be cut short
            print(f"    {problem}", flush=True)
    summary.seconds = time.perf_counter() - began
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50, help="kill points per command")
    parser.add_argument("--per-round", type=int, default=5,
                        help="kill points before a round's run may finish (default 5)")
    parser.add_argument("--stage", action="append", choices=list(STAGE),
                        help="only these commands (repeatable)")
    parser.add_argument("--race", type=int, default=10,
                        help="concurrent explore --keep races (6 processes, 2 killed)")
    parser.add_argument("--seed", type=int, default=None, help="random seed, to repeat a run")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    print(f"crash soak, seed {seed}", flush=True)
    with tempfile.TemporaryDirectory(prefix="sdmorph-crash-") as tmp:
        workdir = Path(tmp)
        refs = build_references(workdir, runs=2)
        for ref in refs.values():
            print(f"reference {ref.stage.name}: {ref.seconds:.1f}s", flush=True)
        chosen = [STAGE[name] for name in args.stage] if args.stage else list(STAGES)
        summaries = [soak(refs[s.name], workdir, args.kills, args.per_round, rng) for s in chosen]
        races = []
        race_began = time.perf_counter()
        for i in range(args.race):
            races.append(keep_race(workdir / f"race-{i}", 6, 2, rng,
                                   refs["explore --keep"].seconds))
        race_seconds = time.perf_counter() - race_began
    return report(summaries, races, race_seconds)


def report(summaries: Sequence[StageSummary], races: Sequence[KeepRace], seconds: float) -> int:
    print()
    print(f"{'command':<16} {'kill points':>11} {'(Ctrl-C)':>8} {'survived':>8} {'rounds':>6} "
          f"{'mismatches':>10} {'time':>7}")
    for s in summaries:
        print(f"{s.stage:<16} {s.kills:>11} {s.sigints:>8} {s.survived:>8} {s.rounds:>6} "
              f"{s.mismatched_rounds:>10} {s.seconds:>6.0f}s")
    failed = [f for s in summaries for f in s.failures]
    if races:
        bad = [r for r in races if r.problems]
        print(f"concurrent keeps: {len(races)} races of 6 processes, "
              f"{sum(len(r.killed) for r in races)} killed, "
              f"{sum(len(r.kept) for r in races)} kept seeds checked, {len(bad)} failed, "
              f"{seconds:.0f}s")
        failed += [p for r in bad for p in r.problems]
    for failure in failed:
        print(f"FAILED {failure}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
