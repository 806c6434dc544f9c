"""Stand-ins for insightface's ``det_10g.onnx`` and ``2d106det.onnx``, built with the ``onnx`` package.

Same interfaces as the real files (input names and shapes, output count, order and layout), with outputs the
tests know exactly:

* ``write_scrfd_graph``: a detector whose 9 outputs (scores, box and keypoint distances for strides 8/16/32,
  2 anchors per cell, for a 512x512 input) are fixed maps holding the given ``FakeFace`` entries. The real
  det_10g fixes the batch to 1 and returns 2-D (rows, C) maps; ``batched=True`` makes a dynamic-batch variant
  with (N, rows, C) maps.
* ``write_landmark_graph``: a 106-point model (input (N, 3, 192, 192), output (N, 212) in [-1, 1]) that returns
  either fixed normalised ``points`` for every crop, or (``points=None``) the soft-argmax position of the
  brightest spot of input channel 0 plus ``offsets``: it "finds" a bright dot, so the crop, channel order,
  normalisation and inverse transform are all exercised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

STRIDES = (8, 16, 32)
NUM_ANCHORS = 2
DET_INPUT = 512
LMK_INPUT = 192


@dataclass(frozen=True)
class FakeFace:
    """One detection: the anchor cell (row, col, anchor) of a stride, its score and its distances in strides."""

    stride: int
    row: int
    col: int
    anchor: int
    score: float
    box: tuple[float, float, float, float]  # left, top, right, bottom distances from the anchor centre
    kps: tuple[float, ...] = (-1, -1, 1, -1, 0, 0, -1, 1, 1, 1)  # 5 (dx, dy) pairs

    @property
    def index(self) -> int:
        return (self.row * (DET_INPUT // self.stride) + self.col) * NUM_ANCHORS + self.anchor


def scrfd_maps(faces: list[FakeFace]) -> list[np.ndarray]:
    """The 9 output maps [score x3, box x3, kps x3] (strides 8, 16, 32) holding ``faces``; elsewhere score 0."""
    rows = {s: (DET_INPUT // s) ** 2 * NUM_ANCHORS for s in STRIDES}
    scores = {s: np.zeros((rows[s], 1), np.float32) for s in STRIDES}
    boxes = {s: np.ones((rows[s], 4), np.float32) for s in STRIDES}
    kps = {s: np.zeros((rows[s], 10), np.float32) for s in STRIDES}
    for face in faces:
        scores[face.stride][face.index, 0] = face.score
        boxes[face.stride][face.index] = face.box
        kps[face.stride][face.index] = face.kps
    return [scores[s] for s in STRIDES] + [boxes[s] for s in STRIDES] + [kps[s] for s in STRIDES]


def write_scrfd_graph(path: str | Path, faces: list[FakeFace], batched: bool = False) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    maps = scrfd_maps(faces)
    names = [f"{kind}_{s}" for kind in ("score", "bbox", "kps") for s in STRIDES]
    batch = "n" if batched else 1
    x = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [batch, 3, "h", "w"])
    nodes, inits, outputs = [], [], []
    if batched:  # (1, rows, C) maps expanded to the input's batch
        nodes.append(helper.make_node("Shape", ["input.1"], ["shape"]))
        inits.append(numpy_helper.from_array(np.array([0], np.int64), "zero"))
        inits.append(numpy_helper.from_array(np.array([1], np.int64), "one"))
        nodes.append(helper.make_node("Slice", ["shape", "zero", "one"], ["n"]))
    for name, value in zip(names, maps):
        if batched:
            inits.append(numpy_helper.from_array(value[None], f"{name}_value"))
            inits.append(numpy_helper.from_array(np.array(value.shape, np.int64), f"{name}_tail"))
            nodes.append(helper.make_node("Concat", ["n", f"{name}_tail"], [f"{name}_shape"], axis=0))
            nodes.append(helper.make_node("Expand", [f"{name}_value", f"{name}_shape"], [name]))
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n", *value.shape]))
        else:
            inits.append(numpy_helper.from_array(value, f"{name}_value"))
            nodes.append(helper.make_node("Identity", [f"{name}_value"], [name]))
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    graph = helper.make_graph(nodes, "scrfd_stand_in", [x], outputs, inits)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path)


def write_landmark_graph(path: str | Path, points: np.ndarray | None = None, offsets: np.ndarray | None = None,
                         sharpness: float = 0.5) -> Path:
    """``points`` (106, 2) fixed normalised output; or None: soft-argmax of channel 0 (x, y) + ``offsets``."""
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("data", TensorProto.FLOAT, ["None", 3, LMK_INPUT, LMK_INPUT])
    y = helper.make_tensor_value_info("fc1", TensorProto.FLOAT, ["None", 212])
    inits = [numpy_helper.from_array(np.array([0, -1], np.int64), "flat_shape")]
    if points is not None:
        inits.append(numpy_helper.from_array(np.asarray(points, np.float32).reshape(1, 212), "points"))
        nodes = [  # points broadcast to the batch: 0 * (mean of each item) + points
            helper.make_node("Reshape", ["data", "flat_shape"], ["flat"]),
            helper.make_node("ReduceMean", ["flat"], ["mean"], axes=[1], keepdims=1),
            helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
            helper.make_node("Add", ["nothing", "points"], ["fc1"]),
        ]
        inits.append(numpy_helper.from_array(np.zeros((1, 1), np.float32), "zero"))
    else:
        v, u = np.mgrid[:LMK_INPUT, :LMK_INPUT].astype(np.float32)
        grid = np.stack([u.ravel() / (LMK_INPUT // 2) - 1, v.ravel() / (LMK_INPUT // 2) - 1], axis=1)
        offsets = np.zeros((106, 2), np.float32) if offsets is None else np.asarray(offsets, np.float32)
        inits += [numpy_helper.from_array(np.array([0, 212], np.int64), "out_shape"),
                  numpy_helper.from_array(np.array([0], np.int64), "c0"),
                  numpy_helper.from_array(np.array([1], np.int64), "c1"),
                  numpy_helper.from_array(np.array([1], np.int64), "axis1"),
                  numpy_helper.from_array(np.array([[sharpness]], np.float32), "beta"),
                  numpy_helper.from_array(grid, "grid"),
                  numpy_helper.from_array(np.array([0, 1, 2], np.int64), "pair_shape"),
                  numpy_helper.from_array(offsets.reshape(1, 106, 2), "offsets")]
        nodes = [
            helper.make_node("Slice", ["data", "c0", "c1", "axis1"], ["channel0"]),
            helper.make_node("Reshape", ["channel0", "flat_shape"], ["flat"]),
            helper.make_node("Mul", ["flat", "beta"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["weights"], axis=1),
            helper.make_node("MatMul", ["weights", "grid"], ["spot"]),  # (N, 2) normalised (x, y)
            helper.make_node("Reshape", ["spot", "pair_shape"], ["spot3"]),  # (N, 1, 2)
            helper.make_node("Add", ["spot3", "offsets"], ["all_points"]),  # (N, 106, 2)
            helper.make_node("Reshape", ["all_points", "out_shape"], ["fc1"]),
        ]
    graph = helper.make_graph(nodes, "landmark_106_stand_in", [x], [y], inits)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path)


def _save(model, path: str | Path) -> Path:
    import onnx

    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
