"""The face pass over a clip: landmarks -> chosen face -> aligned crop, frame by frame.

Shared by the video job (``pipeline/streaming.py``'s ``FaceAnalysis`` thread) and the training
data preprocessing (``training/data.py``).
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from .aligner import FaceAligner
from .types import LandmarkDetector, select_face


def track_faces(
    frames: Iterable[np.ndarray], detector: LandmarkDetector, aligner: FaceAligner, face_index: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]:
    """Yield ``(frame, face, matrix)`` for each (H, W, 3) uint8 RGB frame, in order.

    face: the aligned (R, R, 3) uint8 crop of the ``face_index``-th largest face, matrix its (2, 3) float32
    alignment (for paste-back); both None when the frame has no such face. The aligner's temporal smoothing
    runs across the frames, so feed one clip per fresh aligner (and detector, for tracking backends).
    """
    batch = getattr(detector, "batch_size", 1)  # detectors with detect_many take several frames per call
    for chunk in _chunks(frames, batch):
        found = detector.detect_many(chunk) if batch > 1 else [detector.detect(frame) for frame in chunk]
        for frame, faces in zip(chunk, found):
            face = select_face(faces, face_index)
            if face is None:
                yield frame, None, None
            else:
                aligned, matrix = aligner.align(frame, face.anchors)
                yield frame, aligned, matrix


def _chunks(frames: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    chunk = []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
