"""The face ops' window shortcuts (align reads, restore computes, only around the face) equal the full frame.

`FaceAligner.align` / `restore` with crop=True (the default) must give exactly the crop=False result, which is
the full-frame computation checked against the official fixture in test_face_alignment.py.
"""

import itertools
import math

import numpy as np
import pytest
import torch

from latentsync_demo.face import FaceAligner
from latentsync_demo.face.landmarks import make_detector
from latentsync_demo.face.types import select_face
from latentsync_demo.media import iter_frames

FRAMES = (0, 30)  # 25 fps frame indices taken from each clip


@pytest.fixture(scope="module")
def real_faces(real_media_dir):
    """{clip: [(frame (1920, 1080, 3) uint8, anchors (3, 2))]} for FRAMES of both real clips."""
    found = {}
    detector = make_detector("mediapipe")
    try:
        for clip in ("demo1", "demo2"):
            frames = itertools.islice(iter_frames(real_media_dir / f"{clip}_video.mp4"), 0, FRAMES[-1] + 1)
            picked = [frame for i, frame in enumerate(frames) if i in FRAMES]
            faces = [select_face(detector.detect(frame)) for frame in picked]
            assert all(face is not None for face in faces), f"no face found in {clip}"
            found[clip] = [(frame, face.anchors) for frame, face in zip(picked, faces)]
    finally:
        detector.close()
    return found


@pytest.mark.parametrize("clip, resolution", [("demo1", 256), ("demo2", 512)])
def test_window_equals_full_frame_on_real_clips(real_faces, clip, resolution):
    window, full = FaceAligner(resolution), FaceAligner(resolution)  # same frames in order: same smoothing state
    generator = torch.Generator().manual_seed(resolution)
    for frame, anchors in real_faces[clip]:
        assert frame.shape == (1920, 1080, 3)
        face, matrix = window.align(frame, anchors)
        face_full, matrix_full = full.align(frame, anchors, crop=False)
        np.testing.assert_array_equal(matrix, matrix_full)
        assert np.array_equal(face, face_full), "align: window warp differs from the full-frame warp"

        # A perturbed face, as the model hands it back: the paste changes the frame, and only around the face.
        unit = torch.from_numpy(face).permute(2, 0, 1).float() / 127.5 - 1
        generated = (unit + 0.2 * torch.randn(unit.shape, generator=generator)).clamp(-1, 1)
        restored = window.restore_generated(frame, generated, matrix)
        restored_full = window.restore_generated(frame, generated, matrix, crop=False)
        assert np.array_equal(restored, restored_full), "restore: window differs from the full-frame paste"
        changed = np.argwhere((restored != frame).any(-1))
        assert len(changed) > 10_000  # the face was pasted
        (top, left), (bottom, right) = changed.min(0), changed.max(0)
        assert bottom - top < 1920 // 2 and right - left < 1080 // 2  # a face-sized part of the frame


def test_window_equals_full_frame_near_and_past_the_edges():
    """Random faces of random size and tilt on small random frames, also partly or wholly off the frame."""
    rng = np.random.default_rng(7)
    for _ in range(24):
        h, w = (int(v) for v in rng.integers(24, 200, 2))
        frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        centre = rng.uniform(-0.3, 1.3, 2) * (w, h)
        scale, angle = rng.uniform(0.05, 1.0) * min(h, w) / 2, rng.uniform(-0.6, 0.6)
        rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        anchors = np.array([[-1.0, -0.5], [1.0, -0.5], [0.0, 0.5]]) * scale @ rotation.T + centre
        window, full = FaceAligner(256), FaceAligner(256)
        face, matrix = window.align_unresized(frame, anchors)
        assert np.array_equal(face, full.align_unresized(frame, anchors, crop=False)[0]), (h, w, anchors)
        generated = torch.rand(3, *window.face_size, generator=torch.Generator().manual_seed(int(h * w))) * 2 - 1
        restored = window.restore(frame, generated, matrix)
        assert np.array_equal(restored, window.restore(frame, generated, matrix, crop=False)), (h, w, anchors)
