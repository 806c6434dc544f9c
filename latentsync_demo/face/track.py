"""The face pass over a clip: landmarks -> chosen face -> aligned crop, frame by frame.

Shared by the video job (``pipeline/streaming.py``'s ``FaceAnalysis`` thread) and the training
data preprocessing (``training/data.py``).

The chosen face keeps its identity from frame to frame (``FaceFollower``): the ``face_index``-th largest face of
the first frame that has that many, then in each frame the face that overlaps it most. Choosing by size in every
frame instead would hop between two people of about the same size. ``face.listing`` numbers the faces the same way.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import numpy as np

from .aligner import FaceAligner
from .types import DetectedFace, LandmarkDetector, select_face

# Boxes of one face in consecutive 25 fps frames overlap far more than this (a head moving a third of its width
# in 40 ms still does); two people's boxes overlap far less.
SAME_FACE_IOU = 0.3


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes; 0 when either is empty."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def best_overlap(faces: Sequence[DetectedFace], box: Sequence[float]) -> DetectedFace | None:
    """The face whose box overlaps ``box`` most, when that overlap says it is the same face (``SAME_FACE_IOU``)."""
    scored = [(box_iou(face.box, box), k) for k, face in enumerate(faces)]
    iou, k = max(scored, default=(0.0, -1))
    return faces[k] if iou >= SAME_FACE_IOU else None


class FaceFollower:
    """Chooses one person's face frame after frame: the ``face_index``-th largest (0 = the largest) where the
    choice starts, then the face overlapping the last chosen box. When nothing overlaps it (a cut, the person
    left), the choice starts again by size, as in the first frame."""

    def __init__(self, face_index: int = 0):
        self.face_index = face_index
        self.last_box: tuple[float, float, float, float] | None = None
        self.found_last = False  # whether the last frame showed this person (``choose_distinct`` trusts it more)

    def choose(self, faces: Sequence[DetectedFace]) -> DetectedFace | None:
        face = best_overlap(faces, self.last_box) if self.last_box is not None else None
        if face is None:
            face = select_face(list(faces), self.face_index)
        if face is not None:
            self.last_box = face.box
        self.found_last = face is not None
        return face


def choose_distinct(followers: Sequence[FaceFollower], faces: Sequence[DetectedFace]) -> list[DetectedFace | None]:
    """Each follower's face in one frame, never the same detection for two followers (a dialogue's faces).

    Identity goes by overlap first: followers that saw their person in the last frame keep following them (the
    best overlaps first), then followers that lost theirs may find them again, by overlap only, among the faces
    nobody follows. A stale box must not hand a speaker's track to whoever now stands where that person stood, nor
    may a follower restart by size rank and take a bystander. Followers that have never seen their person start
    by size rank, as a one-face job would, when that face is free. Only when nobody is found by overlap (a cut, or
    everyone left) do all start again by rank. A follower without a face keeps its last box."""
    if len(followers) == 1:  # one face: exactly the one-face job's choice
        return [followers[0].choose(faces)]
    chosen: list[DetectedFace | None] = [None] * len(followers)
    taken: set[int] = set()
    seen = [i for i, f in enumerate(followers) if f.last_box is not None and f.found_last]
    lost = [i for i, f in enumerate(followers) if f.last_box is not None and not f.found_last]
    for group in (seen, lost):
        pairs = sorted(((box_iou(face.box, followers[i].last_box), -i, k) for i in group
                        for k, face in enumerate(faces)), reverse=True)
        for iou, minus_i, k in pairs:
            if iou < SAME_FACE_IOU:
                break
            if chosen[-minus_i] is None and k not in taken:
                chosen[-minus_i] = faces[k]
                taken.add(k)
    restart = not taken  # nobody found by overlap: a cut (or everyone left), so numbering starts again
    ranked = sorted(range(len(faces)), key=lambda k: faces[k].area, reverse=True)
    for i, follower in enumerate(followers):
        if chosen[i] is None and (follower.last_box is None or restart):
            k = ranked[follower.face_index] if follower.face_index < len(ranked) else None
            if k is not None and k not in taken:
                chosen[i] = faces[k]
                taken.add(k)
    for follower, face in zip(followers, chosen):
        follower.found_last = face is not None
        if face is not None:
            follower.last_box = face.box
    return chosen


def track_many_faces(
    frames: Iterable[np.ndarray], detector: LandmarkDetector, aligners: Sequence[FaceAligner],
    face_indices: Sequence[int],
) -> Iterator[tuple[np.ndarray, list[tuple[np.ndarray | None, np.ndarray | None, DetectedFace | None]]]]:
    """Yield ``(frame, [(face, matrix, detection) per followed person])`` for each (H, W, 3) uint8 RGB frame.

    One ``FaceFollower`` per index in ``face_indices`` (``choose_distinct``: no detection goes to two of them),
    each with its own aligner (its own temporal smoothing). ``face``: the aligned (R, R, 3) uint8 crop,
    ``matrix``: its (2, 3) float32 alignment (for paste-back), ``detection``: what the detector found; all three
    None when the frame has no such face."""
    followers = [FaceFollower(index) for index in face_indices]
    for frame, faces in detect_frames(frames, detector):
        found = []
        for aligner, face in zip(aligners, choose_distinct(followers, faces)):
            found.append((None, None, None) if face is None else (*aligner.align(frame, face.anchors), face))
        yield frame, found


def track_faces(
    frames: Iterable[np.ndarray], detector: LandmarkDetector, aligner: FaceAligner, face_index: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]:
    """Yield ``(frame, face, matrix)`` for each (H, W, 3) uint8 RGB frame, in order.

    face: the aligned (R, R, 3) uint8 crop of the followed face (``FaceFollower``: the ``face_index``-th largest
    where it is first seen), matrix its (2, 3) float32 alignment (for paste-back); both None when the frame has no
    such face. The aligner's temporal smoothing runs across the frames, so feed one clip per fresh aligner (and
    detector, for tracking backends).
    """
    for frame, [(aligned, matrix, _)] in track_many_faces(frames, detector, [aligner], [face_index]):
        yield frame, aligned, matrix


def detect_frames(frames: Iterable[np.ndarray], detector: LandmarkDetector
                  ) -> Iterator[tuple[np.ndarray, list[DetectedFace]]]:
    """Yield ``(frame, faces found in it)`` in order; detectors with ``detect_many`` get several frames a call."""
    batch = getattr(detector, "batch_size", 1)
    for chunk in _chunks(frames, batch):
        found = detector.detect_many(chunk) if batch > 1 else [detector.detect(frame) for frame in chunk]
        yield from zip(chunk, found)


def _chunks(frames: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    chunk = []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
