"""Landmark detectors behind one small interface, reduced to the three anchors LatentSync aligns on.

The anchors are (x, y) image pixels of: the eyebrow centre on the image's left, the eyebrow centre on
the image's right, and the nose centre — what the official code averages from insightface's 106 points.
Backends:
  * ``mediapipe`` (default): FaceMesh from mediapipe 0.10.14, whose model ships inside the wheel, so it
    works offline on CPU and tracks across video frames;
  * ``face-alignment``: FAN 2D 68-point landmarks (downloads its weights on first use; GPU-capable).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class DetectedFace:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
    anchors: np.ndarray  # (3, 2) float64: left eyebrow centre, right eyebrow centre, nose centre

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)


class LandmarkDetector(Protocol):
    def detect(self, frame: np.ndarray) -> list[DetectedFace]:
        """frame (H, W, 3) uint8 RGB -> faces found, any order (empty when none)."""

    def close(self) -> None: ...


def select_face(faces: list[DetectedFace], index: int = 0) -> DetectedFace | None:
    """The ``index``-th largest face (0 = the largest), or None when there are not that many."""
    ranked = sorted(faces, key=lambda face: face.area, reverse=True)
    return ranked[index] if 0 <= index < len(ranked) else None


# FaceMesh indices (chosen against the reference fixture's hand-placed anchors): the upper eyebrow
# contours, and nose tip/bridge points whose mean sits where insightface's nose centre does.
_MESH_BROW_IMAGE_LEFT = [70, 63, 105, 66, 107]
_MESH_BROW_IMAGE_RIGHT = [300, 293, 334, 296, 336]
_MESH_NOSE = [1, 4, 5, 195]


class MediaPipeDetector:
    """FaceMesh in tracking mode (``static_image_mode=False``): frames of one clip must come in order."""

    def __init__(self, max_faces: int = 4, min_confidence: float = 0.5, static_images: bool = False):
        import mediapipe as mp

        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=static_images,
            max_num_faces=max_faces,
            refine_landmarks=False,
            min_detection_confidence=min_confidence,
            min_tracking_confidence=min_confidence,
        )

    def detect(self, frame: np.ndarray) -> list[DetectedFace]:
        h, w = frame.shape[:2]
        result = self._mesh.process(np.ascontiguousarray(frame))
        faces = []
        for mesh in result.multi_face_landmarks or []:
            points = np.array([(p.x * w, p.y * h) for p in mesh.landmark], dtype=np.float64)
            box = (*points.min(axis=0), *points.max(axis=0))
            anchors = np.stack(
                [points[idx].mean(axis=0) for idx in (_MESH_BROW_IMAGE_LEFT, _MESH_BROW_IMAGE_RIGHT, _MESH_NOSE)]
            )
            faces.append(DetectedFace(tuple(float(v) for v in box), anchors))
        return faces

    def close(self) -> None:
        self._mesh.close()


class FaceAlignmentDetector:
    """FAN 68-point landmarks from the ``face-alignment`` package (optional dependency)."""

    def __init__(self, device: str = "cpu"):
        try:
            import face_alignment
        except ImportError as exc:
            raise InputError(
                "the 'face-alignment' landmark backend needs the face-alignment package: "
                "pip install face-alignment (it downloads its model on first use), or use --landmarks mediapipe"
            ) from exc
        self._fa = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, device=device)

    def detect(self, frame: np.ndarray) -> list[DetectedFace]:
        found = self._fa.get_landmarks_from_image(frame) or []
        faces = []
        for points in found:
            points = np.asarray(points, dtype=np.float64)[:, :2]
            # 68-point scheme: 17-21 / 22-26 are the eyebrows (image left / right), 27-35 the nose.
            anchors = np.stack([points[17:22].mean(0), points[22:27].mean(0), points[[30, 31, 33, 35]].mean(0)])
            faces.append(DetectedFace((*points.min(0), *points.max(0)), anchors))
        return faces

    def close(self) -> None:
        pass


BACKENDS = ("mediapipe", "face-alignment")


def make_detector(name: str = "mediapipe", device: str = "cpu") -> LandmarkDetector:
    if name == "mediapipe":
        return MediaPipeDetector()
    if name == "face-alignment":
        return FaceAlignmentDetector(device=device)
    raise ValueError(f"unknown landmark backend {name!r}; choose one of {', '.join(BACKENDS)}")
