"""The faces of a clip's first seconds, numbered as the job numbers them: what ``--list-faces`` prints and the
app shows as thumbnails to click.

Face ``k`` of the listing is, by construction, the face a job with ``face_index=k`` follows: the listing runs the
job's own ``FaceFollower(k)`` over the same 25 fps frames with the same detector, for every ``k`` up to the most
faces seen in one frame. So the index a script or a click picks selects that person in the job, and "face 1" is
the same person in every scanned frame (it is followed by overlap, not re-ranked by size each frame).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import islice
from typing import Iterable

import cv2
import numpy as np

from .track import FaceFollower, detect_frames
from .types import LandmarkDetector

LIST_SECONDS = 3.0  # how much of the clip's start the listing scans (every frame at the job's 25 fps)
THUMBNAIL_SIZE = 160  # the longer side of a thumbnail, pixels
_THUMBNAIL_MARGIN = 0.25  # of the box's size on each side: hair and chin, so a person is recognisable


@dataclass(frozen=True)
class ListedFace:
    """One face of the listing. ``box``: its mean (x0, y0, x1, y1) over the frames it was seen in, in pixels of
    the video as displayed; ``share``: frames_seen / frames_scanned; ``thumbnail``: (h, w, 3) uint8 RGB crop
    from the first frame it was seen in."""

    index: int
    box: tuple[int, int, int, int]
    frames_seen: int
    frames_scanned: int
    thumbnail: np.ndarray = field(repr=False, compare=False)

    @property
    def share(self) -> float:
        return self.frames_seen / self.frames_scanned if self.frames_scanned else 0.0

    def line(self) -> str:
        """One line for a terminal: index, box, frames seen, share."""
        x0, y0, x1, y1 = self.box
        return (f"face {self.index}  box {x0},{y0},{x1},{y1} ({x1 - x0}x{y1 - y0})  "
                f"seen in {self.frames_seen}/{self.frames_scanned} frames  {self.share:.0%}")

    def caption(self) -> str:
        return f"face {self.index} · {self.share:.0%}"


class _FaceRecord:
    """What one follower saw: its boxes and its first sighting's thumbnail."""

    def __init__(self, index: int):
        self.follower = FaceFollower(index)
        self.boxes: list[tuple[float, float, float, float]] = []
        self.thumbnail: np.ndarray | None = None

    def see(self, frame: np.ndarray, faces) -> None:
        face = self.follower.choose(faces)
        if face is None:
            return
        self.boxes.append(face.box)
        if self.thumbnail is None:
            self.thumbnail = thumbnail(frame, face.box)


def list_faces(frames: Iterable[np.ndarray], detector: LandmarkDetector, max_frames: int) -> list[ListedFace]:
    """The faces of the first ``max_frames`` of ``frames`` (25 fps RGB frames, as the job decodes them), by index.

    A follower is added when a frame first shows more faces than there are followers; one that starts late
    behaves exactly like one that had been there from the first frame (it found nothing to follow before)."""
    records: list[_FaceRecord] = []
    scanned = 0
    for frame, faces in detect_frames(islice(frames, max_frames), detector):
        scanned += 1
        while len(records) < len(faces):
            records.append(_FaceRecord(len(records)))
        for record in records:
            record.see(frame, faces)
    return [ListedFace(r.follower.face_index, tuple(int(round(v)) for v in np.mean(r.boxes, axis=0)),
                       len(r.boxes), scanned, r.thumbnail) for r in records if r.boxes]


def thumbnail(frame: np.ndarray, box, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """The box grown by a margin, clipped to the frame, scaled so its longer side is at most ``size``."""
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) * _THUMBNAIL_MARGIN, (y1 - y0) * _THUMBNAIL_MARGIN
    left, top = max(int(x0 - mx), 0), max(int(y0 - my), 0)
    right, bottom = min(int(np.ceil(x1 + mx)), w), min(int(np.ceil(y1 + my)), h)
    crop = np.ascontiguousarray(frame[top:max(bottom, top + 1), left:max(right, left + 1)])
    scale = size / max(crop.shape[:2])
    if scale < 1:
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    return crop
