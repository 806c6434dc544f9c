"""What every landmark backend returns and takes: a detected face, the detector interface, the face choice, and
the insightface backend's two model files (which the store locates and the backends open).

A module of its own so that the backends (``landmarks``, ``insightface``) and the store share these types
without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..hub import missing_files_error


@dataclass(frozen=True)
class DetectedFace:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
    anchors: np.ndarray  # (3, 2) float64: left eyebrow centre, right eyebrow centre, nose centre

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)


class LandmarkDetector(Protocol):
    name: str  # the backend, for the job's log

    def detect(self, frame: np.ndarray) -> list[DetectedFace]:
        """frame (H, W, 3) uint8 RGB -> faces found, any order (empty when none)."""

    def close(self) -> None: ...


def select_face(faces: list[DetectedFace], index: int = 0) -> DetectedFace | None:
    """The ``index``-th largest face (0 = the largest), or None when there are not that many."""
    ranked = sorted(faces, key=lambda face: face.area, reverse=True)
    return ranked[index] if 0 <= index < len(ranked) else None


@dataclass(frozen=True)
class InsightFaceFiles:
    """The official face pass's ONNX files (``store.CheckpointSet.insightface_files`` says where they live)."""

    detector: Path  # det_10g.onnx
    landmarks: Path  # 2d106det.onnx
    download_command: str = "python -m latentsync_demo.download"  # named in the error when files are missing

    def missing(self) -> list[Path]:
        return [p for p in (self.detector, self.landmarks) if not p.is_file()]

    def require(self) -> None:
        """Raise a CheckpointError naming the missing files and the download command."""
        missing = self.missing()
        if missing:
            raise missing_files_error("the insightface landmark backend needs", missing, self.download_command,
                                      "or choose the offline backend with --landmarks mediapipe.")
