"""Read the watermark back from a video file: find the face in each frame, align it, decode over all frames."""

from __future__ import annotations

import os

import numpy as np

from ..face import FaceAligner
from ..face.landmarks import make_detector
from ..face.landmarks import select_face
from ..media import iter_frames
from .watermark import DEFAULT_KEY, Detection, decide, frame_votes

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
    """Yield (frame, alignment matrix or None) like ``track_faces``, without warping the face (not needed)."""
    for frame in frames:
        face = select_face(detector.detect(frame), face_index)
        yield frame, None if face is None else aligner.smoothed_matrix(face.anchors)
