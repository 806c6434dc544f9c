"""insightface face detection + 106-point landmarks, run straight on onnxruntime (no insightface package).

The official LatentSync 1.5/1.6 ``FaceDetector`` builds ``insightface.app.FaceAnalysis`` (insightface 0.7.3) with
the ``buffalo_l`` pack under ``checkpoints/auxiliary`` (files in ``auxiliary/models/buffalo_l/``), modules
``detection`` (``det_10g.onnx``, SCRFD-10G) and ``landmark_2d_106`` (``2d106det.onnx``), ``det_size`` 512 and
``det_thresh`` 0.5. This module repeats the pre/post-processing of insightface 0.7.3's detection class
(``model_zoo/retinaface.py``, the class the 0.7.3 router picks for SCRFD files) and ``model_zoo/landmark.py``:

Detector (per frame; the model's batch dimension decides whether frames are stacked, see ``ScrfdDetector``):
  * letterbox into det_size x det_size: keep the aspect ratio (``int()`` of the scaled side), cv2 bilinear
    resize, paste at the top-left corner of a black canvas; ``det_scale`` = new height / frame height;
  * ``cv2.dnn.blobFromImage(img, 1/128, mean 127.5, swapRB=True)``;
  * 9 outputs = scores, box distances and 5-point distances for strides 8, 16, 32, two anchors per cell:
    anchor centres (x, y) = (column, row) * stride, each repeated for its 2 anchors; a box is
    (cx - l, cy - t, cx + r, cy + b) with the distances times the stride; keypoints likewise;
  * keep scores >= 0.5, sort by score, greedy NMS at IoU 0.4 with insightface's ``+1`` pixel areas, and divide
    boxes and keypoints by ``det_scale``.
Landmarks (per face, batched):
  * crop 192x192 around the box centre, scale 192 / (1.5 * max(w, h)), no rotation
    (``cv2.warpAffine``, bilinear, black border);
  * blob with mean 0 and std 1, ``swapRB=True``: 2d106det is an MXNet export whose graph normalises its own
    input; insightface detects that from the first graph nodes and prints "0.0 1.0" for this model;
  * 212 outputs -> (106, 2) in [-1, 1]; (p + 1) * 96 in float32, then the inverse crop transform.

Official selection and rounding (``latentsync/utils/face_detector.py``, ``image_processor.py``):
  * faces whose int-truncated box is narrower than 50 or lower than 80 px, whose w/h is outside [0.2, 1.5], or
    whose score is below 0.5 are ignored; the largest remaining box area wins (first in score order on a tie);
  * the 106 points are rounded to integers (numpy half-to-even), the anchors are the means of points
    43, 48, 49, 51, 50 / 101-105 / 74, 77, 83, 86, rounded again (``aligner.landmarks3_from_106``).
  * The official pipeline hands insightface **RGB** frames (it reads video with cv2 and converts to RGB) while
    insightface expects BGR; ``swapRB`` therefore gives the networks BGR. We feed our RGB frames the same way,
    so the networks see exactly what they see in the official pipeline.
  * Detection runs on every frame, with no tracking; the aligner's bias smoothing is the only smoothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..errors import CheckpointError
from .aligner import landmarks3_from_106
from .types import DetectedFace, InsightFaceFiles

DET_SIZE = 512  # official INSIGHTFACE_DETECT_SIZE (det_size=(512, 512))
DET_THRESH = 0.5  # FaceAnalysis.prepare default, and FaceDetector's own score threshold
NMS_THRESH = 0.4
DET_MEAN, DET_STD = 127.5, 128.0
LMK_MEAN, LMK_STD = 0.0, 1.0  # 2d106det normalises inside its graph
LMK_BOX_SCALE = 1.5  # crop side = 1.5 * the box's longer side
MIN_FACE_W, MIN_FACE_H = 50, 80  # official FaceDetector filters
MIN_ASPECT, MAX_ASPECT = 0.2, 1.5
# Output layouts insightface knows: number of outputs -> (strides, anchors per cell, has keypoints).
_LAYOUTS = {6: ((8, 16, 32), 2, False), 9: ((8, 16, 32), 2, True),
            10: ((8, 16, 32, 64, 128), 1, False), 15: ((8, 16, 32, 64, 128), 1, True)}


def onnx_providers(device: str = "cpu") -> list:
    """CUDA (on the device's index) when asked for and this onnxruntime build has it; CPU otherwise."""
    import onnxruntime as ort

    if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        index = str(device).partition(":")[2] or "0"
        return [("CUDAExecutionProvider", {"device_id": int(index)}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def open_session(path: str | Path, device: str = "cpu"):
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), providers=onnx_providers(device))
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/NoSuchFile types
        raise CheckpointError(f"cannot load the ONNX model {path}: {exc}") from exc


def _fixed_batch(session) -> int | None:
    """The input's batch size when the graph fixes it (det_10g: 1), None when it is dynamic."""
    dim = session.get_inputs()[0].shape[0]
    return dim if isinstance(dim, int) and dim > 0 else None


def _run_batched(session, blob: np.ndarray) -> list[np.ndarray]:
    """Run ``blob`` (N, 3, H, W); items go one at a time when the graph fixes the batch to 1.

    Each output comes back as (N, rows, C): 3-D outputs are per item already; 2-D ones (det_10g folds the
    batch into the rows) are split evenly between the items of their run.
    """
    name = session.get_inputs()[0].name
    step = _fixed_batch(session) or len(blob)
    per_output: list[list[np.ndarray]] = []
    for start in range(0, len(blob), step):
        part = blob[start:start + step]
        for k, out in enumerate(session.run(None, {name: part})):
            if k == len(per_output):
                per_output.append([])
            per_output[k].append(out if out.ndim == 3 else out.reshape(len(part), -1, out.shape[-1]))
    return [np.concatenate(chunks, axis=0) for chunks in per_output]


def letterbox(frame: np.ndarray, size: int = DET_SIZE) -> tuple[np.ndarray, float]:
    """frame (H, W, 3) uint8 -> (size, size, 3) uint8 canvas with the resized frame at its top-left, det_scale."""
    h, w = frame.shape[:2]
    if h / w > 1.0:  # model ratio is 1 (square det_size)
        new_h, new_w = size, int(size / (h / w))
    else:
        new_w, new_h = size, int(size * (h / w))
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(frame, (new_w, new_h))
    return canvas, new_h / h


def anchor_centres(height: int, width: int, stride: int, num_anchors: int) -> np.ndarray:
    """(height * width * num_anchors, 2) float32 (x, y): row-major cells, each repeated per anchor."""
    ys, xs = np.mgrid[:height, :width]
    centres = (np.stack([xs, ys], axis=-1).astype(np.float32) * stride).reshape(-1, 2)
    return np.repeat(centres, num_anchors, axis=0) if num_anchors > 1 else centres


def nms(dets: np.ndarray, thresh: float = NMS_THRESH) -> list[int]:
    """insightface's greedy NMS on (N, 5) [x0, y0, x1, y1, score]; areas count pixels inclusively (+1)."""
    x1, y1, x2, y2, scores = dets.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        w = np.maximum(0.0, np.minimum(x2[i], x2[order[1:]]) - np.maximum(x1[i], x1[order[1:]]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[order[1:]]) - np.maximum(y1[i], y1[order[1:]]) + 1)
        inter = w * h
        overlap = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[np.where(overlap <= thresh)[0] + 1]
    return keep


class ScrfdDetector:
    """SCRFD face detector (``det_10g.onnx``) with insightface 0.7.3's pre/post-processing.

    ``detect_many`` stacks frames into one run when the model's batch dimension is dynamic; ``det_10g``
    fixes it to 1, so there frames go one by one (same results either way).
    """

    def __init__(self, session, size: int = DET_SIZE, threshold: float = DET_THRESH, nms_thresh: float = NMS_THRESH):
        self.session, self.size, self.threshold, self.nms_thresh = session, size, threshold, nms_thresh
        outputs = session.get_outputs()
        if len(outputs) not in _LAYOUTS:
            raise CheckpointError(f"not an SCRFD detector: {len(outputs)} outputs (expected 6, 9, 10 or 15)")
        self.strides, self.num_anchors, self.use_kps = _LAYOUTS[len(outputs)]
        fixed = session.get_inputs()[0].shape[2:4]
        if all(isinstance(d, int) for d in fixed) and tuple(fixed) != (size, size):
            self.size = int(fixed[0])  # insightface: a fixed input size wins over det_size

    @property
    def batched(self) -> bool:
        return _fixed_batch(self.session) is None

    def blob(self, frames: Sequence[np.ndarray]) -> tuple[np.ndarray, list[float]]:
        """(N, 3, size, size) float32 network input and each frame's det_scale."""
        boxed = [letterbox(f, self.size) for f in frames]
        blob = cv2.dnn.blobFromImages([b for b, _ in boxed], 1.0 / DET_STD, (self.size, self.size),
                                      (DET_MEAN, DET_MEAN, DET_MEAN), swapRB=True)
        return blob, [s for _, s in boxed]

    def detect_many(self, frames: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """For each (H, W, 3) uint8 frame: (dets (n, 5) float32 [x0, y0, x1, y1, score], kps (n, 5, 2) or None),
        score-ordered after NMS, in frame pixels."""
        if not len(frames):
            return []
        blob, scales = self.blob(frames)
        outs = _run_batched(self.session, blob)
        fmc = len(self.strides)
        results = []
        for b, det_scale in enumerate(scales):
            scores, boxes, points = [], [], []
            for idx, stride in enumerate(self.strides):
                centres = anchor_centres(self.size // stride, self.size // stride, stride, self.num_anchors)
                score = outs[idx][b]
                pos = np.where(score >= self.threshold)[0]
                dist = outs[idx + fmc][b][pos] * stride
                c = centres[pos]
                scores.append(score[pos])
                boxes.append(np.stack([c[:, 0] - dist[:, 0], c[:, 1] - dist[:, 1],
                                       c[:, 0] + dist[:, 2], c[:, 1] + dist[:, 3]], axis=-1))
                if self.use_kps:
                    kd = outs[idx + 2 * fmc][b][pos] * stride
                    points.append((np.tile(c, (1, kd.shape[1] // 2)) + kd).reshape(len(pos), -1, 2))
            score_all = np.vstack(scores)
            order = score_all.ravel().argsort()[::-1]
            pre = np.hstack((np.vstack(boxes) / det_scale, score_all)).astype(np.float32, copy=False)[order]
            keep = nms(pre, self.nms_thresh)
            kps = (np.vstack(points) / det_scale)[order][keep] if self.use_kps else None
            results.append((pre[keep], kps))
        return results


def crop_matrix(box: Sequence[float], size: int = 192) -> np.ndarray:
    """(2, 3) float64 matrix of insightface's landmark crop: frame pixel -> crop pixel.

    ``box`` [x0, y0, x1, y1, ...] is taken as float32 (the detector's dtype) and the arithmetic follows
    insightface's dtypes: width, height and corner sums in float32, the rest in float64.
    """
    x0, y0, x1, y1 = np.asarray(box, dtype=np.float32)[:4]
    scale = size / (max(x1 - x0, y1 - y0) * LMK_BOX_SCALE)
    cx, cy = (x1 + x0) / 2 * scale, (y1 + y0) / 2 * scale
    return np.array([[scale, 0.0, -cx + size / 2], [0.0, scale, -cy + size / 2]], dtype=np.float64)


class Landmark106:
    """2d-106 landmark regressor (``2d106det.onnx``); faces of many frames run as one batch when allowed."""

    def __init__(self, session, mean: float = LMK_MEAN, std: float = LMK_STD):
        self.session, self.mean, self.std = session, mean, std
        shape = session.get_inputs()[0].shape
        self.size = int(shape[3])
        out = session.get_outputs()[0].shape[1]
        self.num_points = (out if isinstance(out, int) else 212) // 2

    def predict(self, items: Sequence[tuple[np.ndarray, Sequence[float]]]) -> np.ndarray:
        """items: (frame (H, W, 3) uint8, box [x0, y0, x1, y1, ...]) pairs -> (n, 106, 2) float32 frame pixels."""
        if not len(items):
            return np.zeros((0, self.num_points, 2), np.float32)
        matrices = [crop_matrix(box, self.size) for _, box in items]
        crops = [cv2.warpAffine(frame, m, (self.size, self.size), borderValue=0.0)
                 for (frame, _), m in zip(items, matrices)]
        blob = cv2.dnn.blobFromImages(crops, 1.0 / self.std, (self.size, self.size),
                                      (self.mean, self.mean, self.mean), swapRB=True)
        pred = _run_batched(self.session, blob)[0].reshape(len(items), -1, 2)[:, -self.num_points:]
        pred = (pred.astype(np.float32) + 1) * (self.size // 2)
        out = np.empty_like(pred)
        for i, m in enumerate(matrices):
            inverse = cv2.invertAffineTransform(m)
            out[i] = np.concatenate([pred[i], np.ones((len(pred[i]), 1), np.float32)], axis=1) @ inverse.T
        return out


def official_faces(dets: np.ndarray) -> list[int]:
    """Indices of the detections the official FaceDetector would consider (its size/aspect/score filters)."""
    keep = []
    for i, det in enumerate(dets):
        x0, y0, x1, y1 = det[:4].astype(np.int_).tolist()
        w, h = x1 - x0, y1 - y0
        if w < MIN_FACE_W or h < MIN_FACE_H or not MIN_ASPECT <= w / h <= MAX_ASPECT or det[4] < DET_THRESH:
            continue
        keep.append(i)
    return keep


def official_anchors(lmk106: np.ndarray) -> np.ndarray:
    """(106, 2) landmarks -> (3, 2) float64 anchors exactly as the official pipeline: round, average, round."""
    return landmarks3_from_106(np.round(np.asarray(lmk106)).astype(np.int_))


class InsightFaceDetector:
    """The official face pass: SCRFD boxes, official filters, 106 points, rounded three-anchor means.

    ``detect`` returns the faces the official code would choose from (box = the int-truncated detector box it
    ranks by), so ``select_face(faces, 0)`` is the official choice.
    """

    name = "insightface"
    batch_size = 8  # frames per detect_many call in track_faces (landmark crops of all of them run together)

    def __init__(self, files: InsightFaceFiles, device: str = "cpu"):
        missing = files.missing()
        if missing:
            raise CheckpointError("insightface model files are missing: " + ", ".join(map(str, missing)))
        self.detector = ScrfdDetector(open_session(files.detector, device))
        self.landmarks = Landmark106(open_session(files.landmarks, device))

    def detect(self, frame: np.ndarray) -> list[DetectedFace]:
        return self.detect_many([frame])[0]

    def detect_many(self, frames: Sequence[np.ndarray]) -> list[list[DetectedFace]]:
        found = [(dets, official_faces(dets)) for dets, _ in self.detector.detect_many(frames)]
        items = [(frame, dets[i]) for frame, (dets, keep) in zip(frames, found) for i in keep]
        points = iter(self.landmarks.predict(items))
        return [[DetectedFace(tuple(float(v) for v in dets[i, :4].astype(np.int_)), official_anchors(next(points)))
                 for i in keep] for dets, keep in found]

    def close(self) -> None:
        self.detector = self.landmarks = None
