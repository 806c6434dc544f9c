"""Find the face the way the verifier does, to mark output frames and to read the mark back from a file.

Marking uses the landmarks of the *finished* frame (not the job's source frame): a generated mouth moves the
landmarks a little, and the verifier only ever sees finished frames. The job's own alignment matrices would
save this landmark pass in the paste-back thread, but they are rounded to whole pixels, temporally smoothed
(the official quirk), may come from another backend (insightface) and describe the source frame; the mark
is only read back when the verifier's grid lands within ~0.5 % in scale of the one used when marking, so
marking measures the face exactly as verification will.
"""

from __future__ import annotations

import os

import numpy as np

from ..face import FaceAligner
from ..face.landmarks import make_detector
from ..face.types import select_face
from ..media import iter_frames
from .watermark import DEFAULT_KEY, Detection, FrameWatermark, decide, frame_votes, key_from_env

VERIFY_RESOLUTION = 256  # the mark is defined in units of the aligned face, so any resolution reads it


def scan(path: str | os.PathLike, key: int = DEFAULT_KEY, max_frames: int | None = 250,
         landmarks: str = "mediapipe", face_index: int = 0) -> Detection:
    """Detection over the first ``max_frames`` frames of ``path`` (InputError when it cannot be read)."""
    detector = make_detector(landmarks)
    aligner = FaceAligner(VERIFY_RESOLUTION)
    frames = iter_frames(path, fps=None)
    rows = []
    try:
        for i, (frame, matrix) in enumerate(face_matrices(frames, detector, aligner, face_index)):
            if matrix is not None:
                rows.append(frame_votes(frame, matrix, key))
            if max_frames is not None and i + 1 >= max_frames:
                break
    finally:
        frames.close()
        detector.close()
    return decide(np.stack(rows) if rows else np.zeros((0, 1)))


def face_matrices(frames, detector, aligner: FaceAligner, face_index: int = 0):
    """Yield (frame, alignment matrix or None) per frame: the 256 px aligner's matrix of the face's anchors,
    neither rounded to whole pixels nor temporally smoothed (unlike the generation's alignment), so that it
    depends on this frame alone and as little as possible on the resolution the verifier sees."""
    for frame in frames:
        face = select_face(detector.detect(frame), face_index)
        yield frame, None if face is None else aligner.estimate_matrix(face.anchors)


class OutputMarker:
    """``mark(frame) -> frame`` for every output frame of a job, in order (the tracker and the aligner's
    smoothing follow the clip exactly as the verifier's will). ``close()`` frees the landmark detector."""

    def __init__(self, job: int, key: int | None = None, face_index: int = 0, landmarks: str = "mediapipe"):
        self.watermark = FrameWatermark(job, key_from_env() if key is None else key)
        self.face_index, self.landmarks = face_index, landmarks
        self.aligner = FaceAligner(VERIFY_RESOLUTION)
        self.detector = None
        self.last_matrix = None

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        if self.detector is None:
            self.detector = make_detector(self.landmarks)
        _, self.last_matrix = next(face_matrices([frame], self.detector, self.aligner, self.face_index))
        return frame if self.last_matrix is None else self.watermark.embed(frame, self.last_matrix)

    def close(self) -> None:
        if self.detector is not None:
            self.detector.close()
            self.detector = None


class _NoMark:
    def __call__(self, frame: np.ndarray) -> np.ndarray:
        return frame

    def mark(self, frame: np.ndarray, matrix) -> np.ndarray:
        return frame

    def close(self) -> None:
        pass


def frame_marker(job: int | None, face_index: int = 0) -> OutputMarker | _NoMark:
    """The per-frame marker of a job with watermark number ``job`` (a no-op when None: watermark off)."""
    return _NoMark() if job is None else OutputMarker(job, face_index=face_index)


class _LandmarkMarker:
    """``mark(frame, matrix)`` over ``OutputMarker``: the job's matrix is not used (see the module docstring)."""

    def __init__(self, marker: OutputMarker):
        self.marker = marker

    def mark(self, frame: np.ndarray, matrix) -> np.ndarray:
        return self.marker(frame)


def make_marker(job: int | None, key: int | None = None, resolution: int = VERIFY_RESOLUTION):
    """The marker of a job with watermark number ``job``: ``mark(frame, matrix)`` per finished frame (the
    identity when ``job`` is None)."""
    return _LandmarkMarker(OutputMarker(job, key)) if job is not None else _NoMark()
