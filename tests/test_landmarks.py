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


def test_mediapipe_anchors_close_to_reference_anchors(reference_dir, detector):
    """The fixture's hand-placed anchors stand for insightface's; ours must land near them."""
    fixture = np.load(reference_dir / "affine_fixture.npz")
    for frame, expected in zip(fixture["frames"][:2], fixture["landmarks"][:2]):
        faces = detector.detect(frame)
        assert faces, "face not found in the fixture frame"
        error = np.linalg.norm(select_face(faces).anchors - expected, axis=1)
        assert error.max() < 20, error  # brow-to-brow distance here is ~90 px


def test_unknown_and_unavailable_backends():
    with pytest.raises(ValueError, match="unknown landmark backend"):
        make_detector("dlib")
    try:
        import face_alignment  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="pip install face-alignment"):
            make_detector("face-alignment")
