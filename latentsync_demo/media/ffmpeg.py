"""Locate and run the ffmpeg executable.

Every call passes an argument list to subprocess (never a shell string), so file names with spaces, quotes or
shell metacharacters are safe. Paths go through `fs_path`, which makes them absolute: ffmpeg would otherwise
read a name that starts with "-" as an option, or one that contains ":" as a protocol.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections.abc import Sequence

from ..errors import InputError

ENV_VAR = "LATENTSYNC_FFMPEG"

# Quiet by default: only errors reach stderr, so error tails are short and pipes never fill with progress lines.
BASE_ARGS = ("-hide_banner", "-nostdin", "-loglevel", "error")

_LOG_PREFIX = re.compile(r"^(\[[^\]]*\]\s*)+")


def ffmpeg_exe() -> str:
    """Path of the ffmpeg executable: $LATENTSYNC_FFMPEG, else imageio-ffmpeg's bundled binary, else PATH."""
    env = os.environ.get(ENV_VAR)
    if env:
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            raise RuntimeError(f"{ENV_VAR}={env!r} is not an executable file; point it at an ffmpeg binary")
        return env
    return _default_ffmpeg()


@functools.lru_cache(maxsize=1)
def _default_ffmpeg() -> str:
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        pass
    found = shutil.which("ffmpeg")
    if found:
        return found
    raise RuntimeError(f"ffmpeg not found: `pip install imageio-ffmpeg`, or set {ENV_VAR} to an ffmpeg executable")


def fs_path(path: str | os.PathLike) -> str:
    """Absolute form of `path`, safe to hand to ffmpeg as an input or output name."""
    return os.path.abspath(os.fspath(path))


def widen_pipe(pipe, size: int = 1 << 20) -> None:
    """Grow a pipe's kernel buffer (Linux only; a no-op elsewhere or when refused).

    The default 64 KiB buffer costs ~100 context switches per 1080p frame; 1 MiB (the usual unprivileged
    maximum) makes streaming frames through the pipe about 1.7x faster.
    """
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, size)
    except (ImportError, AttributeError, OSError):
        pass


def stderr_tail(stderr: bytes | str, lines: int = 4) -> str:
    """The last few non-empty lines of ffmpeg's stderr, without the "[demuxer @ 0x...]" prefixes."""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    kept = [_LOG_PREFIX.sub("", line).strip() for line in text.splitlines()]
    return " | ".join([line for line in kept if line][-lines:]) or "(ffmpeg printed no error message)"


def run_ffmpeg(
    args: Sequence[str], *, input: bytes | None = None, input_error: str | None = None
) -> subprocess.CompletedProcess:
    """Run ffmpeg with `args` (after the quiet base options), capturing stdout and stderr as bytes.

    On failure this raises InputError(f"{input_error}: <ffmpeg's last lines>") when `input_error` is given (the
    caller knows the input file is at fault), else RuntimeError.
    """
    cmd = [ffmpeg_exe(), *BASE_ARGS, *args]
    proc = subprocess.run(cmd, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        tail = stderr_tail(proc.stderr)
        if input_error:
            raise InputError(f"{input_error}: {tail}", web=f"{input_error}.")
        raise RuntimeError(f"ffmpeg failed (exit code {proc.returncode}): {tail}")
    return proc
