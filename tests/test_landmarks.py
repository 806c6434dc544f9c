"""Landmark backends: the three anchors, face selection, and agreement with the reference anchors."""

import cv2
import numpy as np
import pytest
from skimage.data import astronaut

from latentsync_demo.errors import InputError
from latentsync_demo.face.landmarks import MediaPipeDetector, make_detector
from latentsync_demo.face.types import DetectedFace, select_face


@pytest.fixture(scope="module")
def detector():
    det = MediaPipeDetector(static_images=True)
    yield det
    det.close()


def _two_faces() -> np.ndarray:
    face = astronaut()[30:230, 130:330]  # 200 x 200 around her face
    canvas = np.full((400, 800, 3), 200, np.uint8)
    canvas[50:350, 20:320] = cv2.resize(face, (300, 300), interpolation=cv2.INTER_CUBIC)
    canvas[100:300, 500:700] = face
    return canvas


def test_anchors_are_brows_then_nose(detector):
    faces = detector.detect(astronaut())
    assert len(faces) == 1
    (lx, ly), (rx, ry), (nx, ny) = faces[0].anchors
    x0, y0, x1, y1 = faces[0].box
    assert x0 < lx < nx < rx < x1  # image-left brow, nose between, image-right brow
    assert ny > max(ly, ry) + 20  # nose well below the brows
    assert y0 < min(ly, ry) and ny < y1


def test_largest_face_by_default_and_others_by_index(detector):
    faces = detector.detect(_two_faces())
    assert len(faces) == 2
    largest, second = select_face(faces, 0), select_face(faces, 1)
    assert largest.anchors[:, 0].mean() < 400 < second.anchors[:, 0].mean()
    assert select_face(faces, 2) is None
    assert select_face([], 0) is None


def test_select_face_orders_by_area():
    small = DetectedFace((0, 0, 10, 10), np.zeros((3, 2)))
    big = DetectedFace((0, 0, 50, 40), np.ones((3, 2)))
    assert select_face([small, big]) is big and select_face([small, big], 1) is small


def test_no_face_gives_empty_list(detector):
    assert detector.detect(np.full((240, 320, 3), 90, np.uint8)) == []


# Largest anchor error per fixture frame, in brow distances (|brow-left - brow-right| of the fixture, 85-90 px).
# Measured with `python bench/bench_landmarks.py` (its fixture table): 0.150, 0.187, 0.259, 0.318, 0.480; the
# bounds are 1.25x that. The fixture's anchors are hand-placed: one base point set plus +-3 px of jitter for all 5
# frames (reference README section 4), which sits on the face in frames 0-1; over frames 2-4 the head turns
# and closes its eyes while the hand-placed points stay put, so mediapipe (which follows the head) drifts
# 23-41 px away from them. Those three bounds guard against a regression, they do not measure accuracy.
FIXTURE_BOUNDS = (0.19, 0.23, 0.32, 0.40, 0.60)


def test_mediapipe_anchors_close_to_reference_anchors(reference_dir, detector):
    """The fixture's hand-placed anchors stand for insightface's; ours must land near them, in every frame."""
    fixture = np.load(reference_dir / "affine_fixture.npz")
    assert len(fixture["frames"]) == len(FIXTURE_BOUNDS)
    for i, (frame, expected) in enumerate(zip(fixture["frames"], fixture["landmarks"])):
        faces = detector.detect(frame)
        assert faces, f"face not found in fixture frame {i}"
        brow = np.linalg.norm(expected[1] - expected[0])
        error = np.linalg.norm(select_face(faces).anchors - expected, axis=1) / brow
        assert error.max() < FIXTURE_BOUNDS[i], f"frame {i}: errors {error.round(3)} brow distances"


def test_unknown_and_unavailable_backends():
    with pytest.raises(ValueError, match="unknown landmark backend"):
        make_detector("dlib")
    try:
        import face_alignment  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="pip install face-alignment"):
            make_detector("face-alignment")
