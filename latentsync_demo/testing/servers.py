"""Start a server in a child process for a test and wait until it answers (the app, a Space stand-in)."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(argv: list[str], port: int, log: Path, *, cwd: Path, env: dict[str, str],
                 seconds: float = 120) -> tuple[subprocess.Popen, str]:
    """Run ``argv`` (which serves on ``port``) with its output in ``log``; return it and its URL once the URL
    answers. AssertionError with the log's tail when it exits first or does not answer within ``seconds``."""
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{Path(argv[-1]).name if argv else 'server'} exited: {log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise AssertionError(f"the server did not answer within {seconds:.0f} s: {log.read_text()[-3000:]}")
