"""Landmark detectors behind one small interface, reduced to the three anchors LatentSync aligns on.

The anchors are (x, y) image pixels of: the eyebrow centre on the image's left, the eyebrow centre on
the image's right, and the nose centre — what the official code averages from insightface's 106 points.
Backends:
  * ``insightface`` (the default when its two ONNX files are present): the official detector + 106-point
    model on onnxruntime, with the official face choice and rounding (``face/insightface.py``);
  * ``mediapipe`` (the offline fallback): FaceMesh from mediapipe 0.10.14, whose model ships inside the wheel,
    so it works offline on CPU and tracks across video frames; its anchors are calibrated to insightface's
    definition (see below);
  * ``face-alignment``: FAN 2D 68-point landmarks (downloads its weights on first use; GPU-capable).
``auto`` picks insightface when its files are there, mediapipe otherwise.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .insightface import InsightFaceDetector
from .types import DetectedFace, InsightFaceFiles, LandmarkDetector

# FaceMesh anchors, calibrated to insightface's definition by matching the two published layouts point by point
# (insightface 2d106 mark-up, alignment/coordinate_reg in deepinsight/insightface; FaceMesh's 468-point canonical
# topology). Each anchor is a weighted mean of mesh points: {mesh index: weight}.
#  * brow, image left = 2d106 points 43, 48, 49, 51, 50: the brow's outer tip (43) and its upper contour from the
#    outside in (48 -> 50). FaceMesh draws the brow as an upper (70, 63, 105, 66, 107) and a lower (46, 53, 52,
#    65, 55) line that both start at the tip, so the tip is the midpoint of 70 and 46 and the upper contour is
#    63, 105, 66, 107. The image-right brow (101 tip, 102-105) mirrors it with 300/276 and 336, 296, 334, 293.
#  * nose = 2d106 points 74, 86, 77, 83: mid-bridge (74, about halfway from the nasion to the subnasale), the
#    tip (86) and the outermost points of the two nostril wings (77, 83; the alar base 78-80/84-85 lies below).
#    FaceMesh: 5 (mid-bridge; the midline runs 168, 6, 197, 195, 5, 4, 1, 2), 1 (the tip) and 129 / 358 (the
#    outermost points of the nostril wings). The earlier hand-tuned set (1, 4, 5, 195) sat about 0.12
#    brow-distances higher: it averaged bridge points only.
_MESH_BROW_IMAGE_LEFT = {70: 0.1, 46: 0.1, 63: 0.2, 105: 0.2, 66: 0.2, 107: 0.2}
_MESH_BROW_IMAGE_RIGHT = {300: 0.1, 276: 0.1, 293: 0.2, 334: 0.2, 296: 0.2, 336: 0.2}
_MESH_NOSE = {5: 0.25, 1: 0.25, 129: 0.25, 358: 0.25}


def mesh_anchors(points: np.ndarray) -> np.ndarray:
    """FaceMesh points (468, 2) -> (3, 2) float64 anchors: image-left brow, image-right brow, nose."""
    return np.stack([sum(w * points[i] for i, w in weights.items())
                     for weights in (_MESH_BROW_IMAGE_LEFT, _MESH_BROW_IMAGE_RIGHT, _MESH_NOSE)])


class MediaPipeDetector:
    """FaceMesh in tracking mode (``static_image_mode=False``): frames of one clip must come in order."""

    name = "mediapipe"

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
            faces.append(DetectedFace(tuple(float(v) for v in box), mesh_anchors(points)))
        return faces

    def close(self) -> None:
        self._mesh.close()


class FaceAlignmentDetector:
    """FAN 68-point landmarks from the ``face-alignment`` package (optional dependency)."""

    name = "face-alignment"

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
            # 68-point scheme: 17-21 / 22-26 are the eyebrows (image left / right), 27-35 the nose. The common
            # 106 -> 68 correspondence maps insightface's brow anchors (43, 48, 49, 51, 50 / 102-105, 101) onto
            # 17-21 / 22-26 exactly and its nose points 74, 86 onto 29, 30; the nostril wings (77, 83) have no
            # 68-point twin, the nearest are the alar bases 31 and 35.
            anchors = np.stack([points[17:22].mean(0), points[22:27].mean(0), points[[29, 30, 31, 35]].mean(0)])
            faces.append(DetectedFace((*points.min(0), *points.max(0)), anchors))
        return faces

    def close(self) -> None:
        pass


BACKENDS = ("insightface", "mediapipe", "face-alignment")
LANDMARK_CHOICES = ("auto", *BACKENDS)


def insightface_available(files: InsightFaceFiles | None) -> bool:
    """Whether the insightface backend can run: its ONNX files exist and onnxruntime imports."""
    if files is None or files.missing():
        return False
    try:
        import onnxruntime  # noqa: F401  (optional: only the insightface backend needs it)
    except ImportError:
        return False
    return True


def resolve_backend(name: str, insightface: InsightFaceFiles | None = None) -> str:
    """``auto`` -> ``insightface`` when its files are there, else ``mediapipe``; any other name as it is."""
    if name != "auto":
        return name
    return "insightface" if insightface_available(insightface) else "mediapipe"


def make_detector(name: str = "mediapipe", device: str = "cpu",
                  insightface: InsightFaceFiles | None = None) -> LandmarkDetector:
    """A detector for ``name`` (one of ``LANDMARK_CHOICES``). ``insightface``: that backend's files, from
    ``store.CheckpointSet.insightface_files()``; without them ``auto`` means mediapipe. A missing file raises a
    CheckpointError that names the download command."""
    name = resolve_backend(name, insightface)
    if name == "insightface":
        if insightface is None:
            raise ValueError("the insightface backend needs its model files: pass "
                             "insightface=store.resolve(preset, root).insightface_files()")
        insightface.require()
        return InsightFaceDetector(insightface, device=device)
    if name == "mediapipe":
        return MediaPipeDetector()
    if name == "face-alignment":
        return FaceAlignmentDetector(device=device)
    raise ValueError(f"unknown landmark backend {name!r}; choose one of {', '.join(LANDMARK_CHOICES)}")
