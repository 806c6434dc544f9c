"""The watermark at both ends of a job's life: ``make_marker`` for the paste-back stage, ``scan`` for the verifier.

The mark is tied to the frame, not to the face (``watermark`` explains why), so marking needs nothing from the
job's face pass: no landmarks, and the job's alignment matrix, rounded or smoothed as it may be, is accepted
by ``mark`` for the stage's fixed interface but not needed. The verifier needs no face detection either.
"""

from __future__ import annotations

import functools
import logging
import os

import numpy as np

from ..media import iter_luma
from .watermark import DEFAULT_KEY, KEY_ENV, Detection, FrameMarker, detect, key_from_env

log = logging.getLogger(__name__)
DEFAULT_SCAN_FRAMES = 250  # 10 s at 25 fps: the mark is the same in every frame, more only sharpens the average


class OutputMarker:
    """Marks one job's output frames: ``mark(frame, matrix)`` -> marked copy, for every frame, face or not."""

    def __init__(self, job: int, key: int, resolution: int = 256):
        self.resolution = resolution  # the job's aligned-face size; the mark does not depend on it
        self.job = job
        self._marker = FrameMarker(job, key)

    def mark(self, frame: np.ndarray, matrix: np.ndarray | None = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB output frame -> marked copy. ``matrix``: the job's (2, 3) alignment of the frame
        or None; the mark covers the whole frame, so frames without a face are marked too."""
        return self._marker.mark(frame)

    __call__ = mark

    def close(self) -> None:
        pass


class NoMarker:
    """The same interface with the watermark off: frames pass unchanged."""

    def __init__(self, resolution: int = 256):
        self.resolution = resolution
        self.job = None

    def mark(self, frame: np.ndarray, matrix: np.ndarray | None = None) -> np.ndarray:
        return frame

    __call__ = mark

    def close(self) -> None:
        pass


def make_marker(job_number: int | None, key: int | None = None, resolution: int = 256) -> OutputMarker | NoMarker:
    """The per-frame marker of a job carrying ``job_number`` (None: watermark off, a no-op marker). ``key``:
    None reads $LATENTSYNC_WATERMARK_KEY (else the public DEFAULT_KEY); ``resolution``: the job's R."""
    if job_number is None:
        return NoMarker(resolution)
    key = key_from_env() if key is None else key
    if key == DEFAULT_KEY:
        _warn_public_key()
    return OutputMarker(job_number, key, resolution)


@functools.lru_cache(maxsize=1)
def _warn_public_key() -> None:
    """Once per process: marks made with the public key can be read, and forged, by anyone."""
    log.warning("watermark: the public demo key is in use, so anyone can read and forge this host's marks; "
                "set %s to a secret integer of your own", KEY_ENV)


def scan(path: str | os.PathLike, key: int = DEFAULT_KEY, max_frames: int | None = DEFAULT_SCAN_FRAMES
         ) -> Detection:
    """Read the mark from the first ``max_frames`` frames of ``path`` (all: None); InputError when the file
    cannot be read."""
    total, count = None, 0
    for luma in iter_luma(path, max_frames):
        if total is None:
            total = np.zeros(luma.shape, np.float32)
        total += luma
        count += 1
    return detect(total / count, count, key)  # iter_luma raised InputError if there was no frame
