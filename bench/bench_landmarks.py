"""Benchmark the face pass per landmark backend, and how far mediapipe's anchor sets sit from each other.

    python bench/bench_landmarks.py [VIDEO] [--frames 100] [--device cpu] [--checkpoints DIR] [--reference DIR]

For each backend that can run here (insightface needs its two ONNX files, see ``python -m
latentsync_demo.download``) it prints the frames per second of detection + anchors over the first
``--frames`` 25 fps frames (``track_faces``, so insightface batches 8 frames per call). It then prints, on the
same frames, the distance between FaceMesh's calibrated anchors (``face.landmarks.mesh_anchors``) and the
earlier hand-tuned set, in pixels and in brow distances, and - when insightface ran - between insightface's
anchors and both mediapipe sets.

Against the official conformance fixture (``--reference``, default $LATENTSYNC_REFERENCE_DIR or
../shared/reference; skipped when absent) it prints, per frame, how far mediapipe's anchors sit from the
fixture's hand-placed ones (the brows and nose the alignment test uses; ``tests/test_landmarks.py`` bounds
them). And where the calibrated nose sits along FaceMesh's nasion (168) -> subnasale (2) line, 0 = nasion,
1 = subnasale, over the fixture frames and the video's frames (and insightface's nose on the same line when it
ran). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from pathlib import Path

import numpy as np

from latentsync_demo.face import FaceAligner
from latentsync_demo.face.landmarks import MediaPipeDetector, insightface_available, make_detector
from latentsync_demo.face.types import DetectedFace, select_face
from latentsync_demo.face.track import track_faces
from latentsync_demo.media import MODEL_FPS, iter_frames
from latentsync_demo.store import resolve

# the FaceMesh anchors used before the calibration (hand-tuned against hand-placed points)
OLD_MESH = ([70, 63, 105, 66, 107], [300, 293, 334, 296, 336], [1, 4, 5, 195])


class _OldMesh(MediaPipeDetector):
    name = "mediapipe (old set)"

    def detect(self, frame):
        h, w = frame.shape[:2]
        result = self._mesh.process(np.ascontiguousarray(frame))
        faces = []
        for mesh in result.multi_face_landmarks or []:
            points = np.array([(p.x * w, p.y * h) for p in mesh.landmark])
            box = (*points.min(0), *points.max(0))
            faces.append(DetectedFace(box, np.stack([points[i].mean(0) for i in OLD_MESH])))
        return faces


def _anchors(detector, frames):
    """(seconds, [anchors (3, 2) or None per frame]) of the largest face, through track_faces."""
    found = []
    detect = detector.detect
    many = getattr(detector, "detect_many", None)

    def keep(faces):
        face = select_face(faces)
        found.append(None if face is None else face.anchors)
        return faces

    detector.detect = lambda frame: keep(detect(frame))
    if many is not None:
        detector.detect_many = lambda chunk: [keep(faces) for faces in many(chunk)]
    start = time.perf_counter()
    for _ in track_faces(frames, detector, FaceAligner(256)):
        pass
    return time.perf_counter() - start, found


class _MeshPoints(MediaPipeDetector):
    """Calibrated anchors, also keeping the largest face's 468 FaceMesh points (``self.points``)."""

    def detect(self, frame):
        h, w = frame.shape[:2]
        result = self._mesh.process(np.ascontiguousarray(frame))
        meshes = [np.array([(p.x * w, p.y * h) for p in m.landmark]) for m in result.multi_face_landmarks or []]
        meshes.sort(key=lambda p: -np.prod(p.max(0) - p.min(0)))
        self.points = meshes[0] if meshes else None
        return super().detect(frame)


NASION, SUBNASALE = 168, 2  # FaceMesh midline points


def _along_midline(nose: np.ndarray, points: np.ndarray) -> float:
    """Position of `nose` projected on the nasion -> subnasale line: 0 at the nasion, 1 at the subnasale."""
    a, b = points[NASION], points[SUBNASALE]
    return float(np.dot(nose - a, b - a) / np.dot(b - a, b - a))


def _nose_positions(frames, others=None):
    """Calibrated mediapipe nose (and each anchor set in `others`, same frames) along the midline, per frame."""
    mesh = _MeshPoints(static_images=True)
    ours, theirs = [], []
    for i, frame in enumerate(frames):
        face = select_face(mesh.detect(frame))
        if face is None:
            continue
        ours.append(_along_midline(face.anchors[2], mesh.points))
        if others is not None and others[i] is not None:
            theirs.append(_along_midline(others[i][2], mesh.points))
    mesh.close()
    return np.array(ours), np.array(theirs)


def _reference_fixture(reference: Path):
    """Per frame: mediapipe's calibrated anchors against the fixture's hand-placed ones; returns its frames."""
    fixture = np.load(reference / "affine_fixture.npz")
    frames, expected = fixture["frames"], fixture["landmarks"]
    mesh = MediaPipeDetector(static_images=True)
    print(f"mediapipe vs the fixture's hand-placed anchors ({reference / 'affine_fixture.npz'}, "
          f"{len(frames)} frames of {frames.shape[2]}x{frames.shape[1]}):")
    print("  frame  brow-left  brow-right  nose (px)   | in brow distances  | brow distance (px)")
    for i, (frame, want) in enumerate(zip(frames, expected)):
        face = select_face(mesh.detect(frame))
        if face is None:
            print(f"  {i}: no face found")
            continue
        err = np.linalg.norm(face.anchors - want, axis=1)
        brow = np.linalg.norm(want[1] - want[0])
        rel = " ".join(f"{v:.3f}" for v in err / brow)
        print(f"  {i:5d}  {err[0]:9.1f}  {err[1]:10.1f}  {err[2]:9.1f}   | {rel:18s} | {brow:.1f}")
    mesh.close()
    return list(frames)


def _compare(name, a, b):
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if not pairs:
        print(f"  {name}: no frame with a face in both")
        return
    brow = np.array([np.linalg.norm(y[1] - y[0]) for _, y in pairs])
    dist = np.array([np.linalg.norm(x - y, axis=1) for x, y in pairs])  # (n, 3)
    rel = dist / brow[:, None]
    print(f"  {name}: mean |d| brow-left {dist[:, 0].mean():.1f} px, brow-right {dist[:, 1].mean():.1f} px, "
          f"nose {dist[:, 2].mean():.1f} px (max {dist.max():.1f} px); in brow distances: mean "
          f"{rel.mean(0).round(3).tolist()}, max {rel.max():.3f} (brow distance {brow.mean():.0f} px)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("video", nargs="?", help="a clip to time the backends on (optional)")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--checkpoints", default=None)
    default = os.environ.get("LATENTSYNC_REFERENCE_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "reference"))
    parser.add_argument("--reference", type=Path, default=Path(default), help="official conformance vectors")
    args = parser.parse_args()
    fixture_frames = []
    if (args.reference / "affine_fixture.npz").is_file():
        fixture_frames = _reference_fixture(args.reference)
    else:
        print(f"no fixture at {args.reference / 'affine_fixture.npz'}: fixture comparison skipped")
    if args.video is None:
        nose, _ = _nose_positions(fixture_frames)
        _print_nose("fixture", nose)
        return
    frames = list(itertools.islice(iter_frames(args.video, fps=MODEL_FPS), args.frames))
    h, w = frames[0].shape[:2]
    print(f"{len(frames)} frames of {w}x{h} from {args.video}, device {args.device}")
    checkpoints = resolve(root=args.checkpoints)
    results = {}
    backends = ["mediapipe"] + (["insightface"] if insightface_available(checkpoints.insightface_files()) else [])
    for name in backends:
        detector = make_detector(name, args.device, checkpoints.insightface_files())
        seconds, results[name] = _anchors(detector, frames)
        detector.close()
        print(f"{name:12s} {len(frames) / seconds:6.1f} frames/s ({seconds:.2f} s), "
              f"face in {sum(a is not None for a in results[name])}/{len(frames)} frames")
    if "insightface" not in results:
        print("insightface: files not found under", checkpoints.insightface_dir, "- skipped")
    old = _OldMesh()
    _, results["old"] = _anchors(old, frames)
    old.close()
    print("anchor distances (largest face):")
    _compare("mediapipe calibrated vs old set", results["mediapipe"], results["old"])
    if "insightface" in results:
        _compare("insightface vs mediapipe calibrated", results["insightface"], results["mediapipe"])
        _compare("insightface vs mediapipe old set", results["insightface"], results["old"])
    nose, _ = _nose_positions(fixture_frames)
    _print_nose("fixture", nose)
    nose, insight = _nose_positions(frames, results.get("insightface"))
    _print_nose(f"{len(frames)} video frames", nose)
    _print_nose(f"{len(frames)} video frames, insightface's nose", insight)


def _print_nose(what: str, positions: np.ndarray) -> None:
    if len(positions):
        print(f"nose along nasion -> subnasale ({what}, {len(positions)} faces): "
              f"{positions.mean():.3f} +- {positions.std():.3f}")


if __name__ == "__main__":
    main()
