"""ffmpeg: finding it, running it, reading videos back, and its errors in one line."""

from __future__ import annotations

import contextlib
import functools
import re
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg

from sdmorph.core.errors import MovieError
from sdmorph.core.timeline import DEFAULT_QUALITY

_REASON_CHARS = 240
_DISK_FULL = "No space left on device"
# `[mov @ 0x55d...] ` and `[aost#0:1/aac @ 0x...] [enc:aac @ 0x...] ` prefixes of ffmpeg's lines.
_CONTEXT = re.compile(r"^(\[[^\]]*\]\s*)+")
# Lines ffmpeg prints after the cause, saying only that the failure spread.
_CASCADE = re.compile(
    r"Task finished with error code|Terminating thread with return code|Nothing was written "
    r"into output file|Could not open encoder before EOF|Error sending frames to consumers|"
    r"Error while opening encoder|^Conversion failed!?$|Error closing file|Error muxing a packet"
)

@dataclass(frozen=True)
class VideoInfo:
    """What ffmpeg reads back from a video file."""

    frames: int
    duration: float  # seconds of video, measured by decoding
    width: int
    height: int
    codec: str
    fps: float | None
    has_audio: bool
    audio_codec: str | None = None
    audio_duration: float | None = None





@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """The ffmpeg binary that imageio-ffmpeg ships (or the one IMAGEIO_FFMPEG_EXE names)."""
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise MovieError(f"ffmpeg is not available: {exc}") from exc


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [ffmpeg_exe(), "-nostdin", "-hide_banner", *args],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
        )
    except OSError as exc:
        raise MovieError(f"could not run ffmpeg ({ffmpeg_exe()}): {exc}") from exc


@functools.lru_cache(maxsize=1)
def _encoders() -> frozenset[str]:
    out = _run(["-encoders"]).stdout
    return frozenset(m.group(1) for m in re.finditer(r"^\s*V\S*\s+(\S+)", out, re.MULTILINE))


@dataclass(frozen=True)
class Codec:
    name: str  # the codec asked for
    stream: str  # the codec name ffmpeg reports for the written stream
    args: tuple[str, ...]
    even: bool  # needs even width and height
    warning: str | None = None


def codec(name: str, quality: int | None) -> Codec:
    q = DEFAULT_QUALITY[name] if quality is None else quality
    if name == "mjpeg":  # every frame a keyframe: VJ software scrubs and plays backwards
        return Codec(name, "mjpeg", ("-c:v", "mjpeg", "-q:v", str(q), "-pix_fmt", "yuvj420p"),
                      even=False)
    h264 = ("-pix_fmt", "yuv420p", "-movflags", "+faststart")
    if "libx264" in _encoders():
        return Codec(name, "h264", ("-c:v", "libx264", "-crf", str(q), *h264), even=True)
    if "libopenh264" in _encoders():
        return Codec(name, "h264", ("-c:v", "libopenh264", "-b:v", "8M", *h264), even=True,
                      warning="this ffmpeg has no libx264: h264 made with libopenh264 at 8 Mb/s")
    return Codec(name, "mpeg4", ("-c:v", "mpeg4", "-q:v", "2", *h264), even=True,
                  warning="this ffmpeg has no h264 encoder: the .mp4 files hold MPEG-4 video")


def rate_arg(rate: Fraction) -> str:
    return f"{rate.numerator}/{rate.denominator}"


def audio_filter(offset: float, duration: float) -> str:
    """The song from `offset`, `duration` long: cut, or padded with silence."""
    return (f"atrim=start={offset:.6f}:duration={duration:.6f},asetpts=PTS-STARTPTS,"
            f"apad=whole_dur={duration:.6f},atrim=duration={duration:.6f}")


# ---------------------------------------------------------------- reading back


_STREAM = re.compile(r"Stream #\d+:\d+\S*: (Video|Audio): (\w+)(.*)")
_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")


def reason(text: str) -> str:
    """ffmpeg's last meaningful line: its own words for what went wrong, on one line.

    ffmpeg follows the cause with lines that only say the failure spread (threads ending,
    nothing written): those are skipped, as are the `[muxer @ 0x...]` prefixes. A full disk
    is said plainly, since ffmpeg's line for it names a syscall, not the remedy.
    """
    lines = [_CONTEXT.sub("", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    meaningful = [line for line in lines if not _CASCADE.search(line)] or lines
    # The cause's own line if ffmpeg printed one, else a follow-up line that names it.
    full = [line for line in meaningful if _DISK_FULL in line] or [
        line for line in lines if _DISK_FULL in line]
    if full:
        return f"disk full ({_short(full[-1])}): free some space and run again"
    return _short(meaningful[-1]) if meaningful else "no message"


def _short(line: str) -> str:
    return line if len(line) <= _REASON_CHARS else line[: _REASON_CHARS - 3] + "..."


def _progress_values(stdout: str) -> dict[str, str]:
    """The last value of each key in ffmpeg's `-progress` output."""
    values: dict[str, str] = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def _progress_seconds(values: dict[str, str]) -> float | None:
    raw = values.get("out_time_us", "N/A")
    return int(raw) / 1e6 if raw.lstrip("-").isdigit() else None


def probe(path: Path) -> VideoInfo:
    """Frames, duration, size and streams of a video, read back with ffmpeg."""
    path = Path(path)
    if not path.is_file():
        raise MovieError(f"{path}: no such video file")
    result = _run(["-nostats", "-i", str(path), "-map", "0:v:0", "-f", "null", "-",
                   "-progress", "pipe:1"])
    streams = [m.groups() for m in _STREAM.finditer(result.stderr)]
    video = next((s for s in streams if s[0] == "Video"), None)
    values = _progress_values(result.stdout)
    duration = _progress_seconds(values)
    if result.returncode != 0 or video is None or duration is None:
        raise MovieError(f"{path}: not a readable video ({reason(result.stderr)})")
    size = re.search(r", (\d+)x(\d+)", video[2])
    fps = re.search(r", ([\d.]+) fps", video[2])
    audio = next((s for s in streams if s[0] == "Audio"), None)
    return VideoInfo(
        frames=int(values.get("frame", "0")),
        duration=duration,
        width=int(size.group(1)) if size else 0,
        height=int(size.group(2)) if size else 0,
        codec=video[1],
        fps=float(fps.group(1)) if fps else None,
        has_audio=audio is not None,
        audio_codec=audio[1] if audio else None,
        audio_duration=_audio_seconds(path) if audio else None,
    )


def _audio_seconds(path: Path) -> float:
    result = _run(["-nostats", "-i", str(path), "-map", "0:a:0", "-c", "copy", "-f", "null", "-",
                   "-progress", "pipe:1"])
    seconds = _progress_seconds(_progress_values(result.stdout))
    if result.returncode != 0 or seconds is None:
        raise MovieError(f"{path}: its audio cannot be read ({reason(result.stderr)})")
    return seconds


def song_duration(path: Path) -> float:
    """Seconds of audio in a song file (ffmpeg's `Duration:`); MovieError if it has none."""
    path = Path(path)
    if not path.is_file():
        raise MovieError(f"{path}: audio file not found")
    stderr = _run(["-i", str(path)]).stderr  # no output named: ffmpeg only describes the input
    if not any(m.group(1) == "Audio" for m in _STREAM.finditer(stderr)):
        raise MovieError(f"{path}: ffmpeg finds no audio in this file ({reason(stderr)})")
    match = _DURATION.search(stderr)
    if match:
        h, m, s = match.groups()
        seconds = int(h) * 3600 + int(m) * 60 + float(s)
    else:  # streams without a header duration: decode to measure
        seconds = _audio_seconds(path)
    if seconds <= 0:
        raise MovieError(f"{path}: the audio is empty")
    return seconds




class Ffmpeg:
    """One ffmpeg reading raw RGB frames on stdin and writing one video."""

    def __init__(self, args: list[str], target: Path) -> None:
        self.target = target
        self.closed = False
        self.finished = False
        # A file, not a pipe: ffmpeg can never block on it. Closed in wait() or kill().
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                [ffmpeg_exe(), *args], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                stderr=self._log,
            )
        except OSError as exc:
            self._log.close()
            raise MovieError(f"could not run ffmpeg ({ffmpeg_exe()}): {exc}") from exc

    def write(self, data: bytes, copies: int = 1) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            for _ in range(copies):
                stdin.write(data)
            stdin.flush()
        except OSError:  # ffmpeg quit early: its own message says why
            self.wait()
            raise MovieError(f"{self.target}: ffmpeg stopped reading frames") from None

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self._proc.stdin.close()  # type: ignore[union-attr]

    def exited(self) -> bool:
        return self._proc.poll() is not None

    def wait(self) -> None:
        if self.finished:
            return
        self.close()
        code = self._proc.wait()
        self.finished = True
        self._log.seek(0)
        text = self._log.read().decode(errors="replace")
        self._log.close()
        if code != 0:
            raise MovieError(f"{self.target}: ffmpeg failed (exit code {code}): {reason(text)}")

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self.close()
        self._log.close()
