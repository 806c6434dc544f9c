"""Per-job scratch folders."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def job_tempdir(prefix: str = "latentsync_", dir: str | os.PathLike | None = None) -> Iterator[Path]:
    """A fresh temporary folder that is deleted when the block ends, also when it ends with an exception."""
    # ignore_cleanup_errors: a file still open elsewhere (Windows) must not mask the job's own exception.
    with tempfile.TemporaryDirectory(prefix=prefix, dir=dir, ignore_cleanup_errors=True) as path:
        yield Path(path)
