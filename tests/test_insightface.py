"""The insightface landmark backend: official pre/post-processing checked with stand-in ONNX graphs (CPU).

The stand-ins (``testing/tiny_insightface.py``) have the real files' interfaces and outputs the tests know, so
the expected boxes, landmarks and anchors below are worked out by hand from insightface 0.7.3's formulas:
box = (anchor centre -/+ distance * stride) / det_scale, landmark = box centre + p * 0.75 * max(w, h) for a
normalised output p, anchors = round(mean(round(landmarks))).
"""

import numpy as np
import pytest

from latentsync_demo.errors import CheckpointError
from latentsync_demo.face import FaceAligner
from latentsync_demo.face.insightface import (InsightFaceDetector, InsightFaceFiles, Landmark106, ScrfdDetector,
                                              official_anchors, open_session)
from latentsync_demo.face.landmarks import make_detector, mesh_anchors, resolve_backend
from latentsync_demo.face.types import select_face
from latentsync_demo.face.track import track_faces
from latentsync_demo.store import resolve
from latentsync_demo.testing.tiny_insightface import FakeFace, write_landmark_graph, write_scrfd_graph

F1 = FakeFace(stride=16, row=10, col=20, anchor=1, score=0.9, box=(3, 4, 5, 6))  # det box (272, 96, 400, 256)
F1_DUP = FakeFace(stride=16, row=10, col=21, anchor=0, score=0.7, box=(3, 4, 5, 6))  # IoU 0.78 with F1: NMS
F2 = FakeFace(stride=32, row=5, col=3, anchor=0, score=0.95, box=(2, 2, 2, 2))  # (32, 96, 160, 224): smaller
TINY = FakeFace(stride=8, row=20, col=60, anchor=1, score=0.8, box=(1, 1, 1, 1))  # 16 px: official filter drops it
LOW = FakeFace(stride=8, row=5, col=50, anchor=0, score=0.3, box=(2, 2, 2, 2))  # under det_thresh 0.5
FACES = [F1, F1_DUP, F2, TINY, LOW]
# det-space boxes (x0, y0, x1, y1) worked out by hand, in the detector's score order after NMS
DET_BOXES = {F2: (32, 96, 160, 224), F1: (272, 96, 400, 256), TINY: (472, 152, 488, 168)}
KPS_STEPS = np.array(F1.kps, np.float64).reshape(5, 2)

# 400x640 frames letterbox to 512x320 (det_scale 0.8); 576x1024 ones to 512x288 (det_scale 0.5)
FRAME_A, SCALE_A = np.zeros((400, 640, 3), np.uint8), 0.8
FRAME_B, SCALE_B = np.zeros((576, 1024, 3), np.uint8), 0.5


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    root = tmp_path_factory.mktemp("insightface")
    points = np.random.RandomState(3).uniform(-0.9, 0.9, (106, 2)).astype(np.float32)
    return {
        "det": write_scrfd_graph(root / "det_10g.onnx", FACES),
        "det_batched": write_scrfd_graph(root / "det_batched.onnx", FACES, batched=True),
        "lmk": write_landmark_graph(root / "2d106det.onnx", points),
        "dot": write_landmark_graph(root / "dot.onnx"),
        "points": points,
    }


def _expected_dets(scale):
    order = [F2, F1, TINY]
    boxes = np.array([DET_BOXES[f] for f in order], np.float64) / scale
    scores = np.array([f.score for f in order])
    kps = []
    for f in order:
        cx, cy = f.col * f.stride, f.row * f.stride
        kps.append((np.array([cx, cy]) + np.array(f.kps, np.float64).reshape(5, 2) * f.stride) / scale)
    return boxes, scores, np.array(kps)


@pytest.mark.parametrize("batched", [False, True], ids=["fixed-batch", "dynamic-batch"])
def test_detector_decodes_boxes_keypoints_and_nms(graphs, batched):
    session = open_session(graphs["det_batched" if batched else "det"])
    detector = ScrfdDetector(session)
    assert detector.batched == batched
    results = detector.detect_many([FRAME_A, FRAME_B, FRAME_A])
    for (dets, kps), scale in zip(results, (SCALE_A, SCALE_B, SCALE_A)):
        boxes, scores, points = _expected_dets(scale)
        np.testing.assert_allclose(dets[:, :4], boxes, atol=1e-3)
        np.testing.assert_allclose(dets[:, 4], scores, atol=1e-6)
        np.testing.assert_allclose(kps, points, atol=1e-3)


def test_detector_input_is_letterboxed_bgr_normalised(graphs):
    """Official: RGB frames go to insightface, whose swapRB hands the network B, G, R; (v - 127.5) / 128."""
    frame = np.zeros((400, 640, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = 10, 100, 200  # R, G, B
    blob, scales = ScrfdDetector(open_session(graphs["det"])).blob([frame])
    assert blob.shape == (1, 3, 512, 512) and scales == [0.8]
    for channel, value in enumerate((200, 100, 10)):
        assert np.allclose(blob[0, channel, :320], (value - 127.5) / 128)  # the resized frame: rows 0..319
        assert np.allclose(blob[0, channel, 320:], -127.5 / 128)  # black padding below


def _expected_anchors(points, box):
    x0, y0, x1, y1 = box
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    lmk = centre + points.astype(np.float64) * 0.75 * max(x1 - x0, y1 - y0)
    used = lmk[[43, 48, 49, 51, 50, 101, 102, 103, 104, 105, 74, 77, 83, 86]]
    assert np.abs(used - np.floor(used) - 0.5).min() > 1e-3, "test points too close to a rounding tie"
    lmk = np.round(lmk)
    return np.round([lmk[[43, 48, 49, 51, 50]].mean(0), lmk[101:106].mean(0), lmk[[74, 77, 83, 86]].mean(0)])


def test_landmarks_anchors_and_official_face_choice(graphs):
    detector = InsightFaceDetector(InsightFaceFiles(graphs["det"], graphs["lmk"]))
    faces = detector.detect(FRAME_A)
    boxes = [np.array(DET_BOXES[f]) / SCALE_A for f in (F2, F1)]  # TINY fails the official size filter
    assert [face.box for face in faces] == [tuple(np.floor(b)) for b in boxes]
    for face, box in zip(faces, boxes):
        np.testing.assert_array_equal(face.anchors, _expected_anchors(graphs["points"], box))
    # the largest box wins, although F2 scores higher
    assert select_face(faces) is faces[1] and faces[1].box == (340, 120, 500, 320)


def test_landmark_crop_finds_a_dot_where_it_is(graphs):
    """The stand-in finds the bright spot of blob channel 0 in its 192x192 crop: crop, channel order,
    normalisation and the inverse transform must all be right for the point to come back in place."""
    model = Landmark106(open_session(graphs["dot"]))
    frame = np.zeros((400, 640, 3), np.uint8)
    frame[203:208, 428:433, 2] = 255  # 5x5 dot in the blue channel, centred on (430, 205)
    frame[150:155, 118:123, 2] = 255  # another for the second box, centred on (120, 152)
    boxes = [(340.0, 120.0, 500.0, 320.0), (40.0, 120.0, 200.0, 280.0)]
    found = model.predict([(frame, box) for box in boxes])
    assert found.shape == (2, 106, 2)
    np.testing.assert_allclose(found[0], np.tile([430, 205], (106, 1)), atol=0.75)
    np.testing.assert_allclose(found[1], np.tile([120, 152], (106, 1)), atol=0.75)
    red = np.roll(frame, -2, axis=2)  # the same dots in the red channel: the network does not see them there
    assert np.abs(model.predict([(red, boxes[0])])[0, 0] - [430, 205]).max() > 10


def test_rounding_is_numpy_half_to_even_twice():
    lmk = np.zeros((106, 2))
    lmk[[43, 48, 49, 51, 50]] = [[10.5, 20.0], [11.5, 20.0], [12.0, 20.0], [13.0, 20.0], [14.0, 20.0]]
    lmk[101:106] = [[30.0, 41.0], [30.0, 41.0], [31.0, 41.0], [31.0, 42.0], [30.5, 42.0]]
    lmk[[74, 77, 83, 86]] = [[50.0, 60.5], [51.0, 62.5], [51.0, 64.5], [50.0, 66.5]]
    # brow 1: rounded x 10, 12, 12, 13, 14 -> mean 12.2 -> 12; brow 2: x 30, 30, 31, 31, 30 -> 30.4 -> 30,
    # y 41, 41, 41, 42, 42 -> 41.4 -> 41; nose: x mean 50.5 -> 50 (the tie goes to the even side); y rounds
    # to 60, 62, 64, 66 first -> 63 (without that first rounding: 63.5 -> 64; rounding half up: 64)
    np.testing.assert_array_equal(official_anchors(lmk), [[12, 20], [30, 41], [50, 63]])


def test_track_faces_batches_frames_and_matches_per_frame(graphs):
    fixed = InsightFaceDetector(InsightFaceFiles(graphs["det"], graphs["lmk"]))
    batched = InsightFaceDetector(InsightFaceFiles(graphs["det_batched"], graphs["lmk"]))
    calls = []
    many = batched.detect_many
    batched.detect_many = lambda frames: calls.append(len(frames)) or many(frames)
    frames = [FRAME_A if i % 3 else FRAME_B for i in range(10)]
    tracked = list(track_faces(frames, batched, FaceAligner(256)))
    assert calls == [8, 2] and len(tracked) == 10
    # same matrices as one frame at a time through the fixed-batch model, smoothing included
    reference = FaceAligner(256)
    for frame, (_, face, matrix) in zip(frames, tracked):
        assert face.shape == (256, 256, 3)
        np.testing.assert_array_equal(matrix, reference.smoothed_matrix(select_face(fixed.detect(frame)).anchors))


def _install(graphs, root):
    target = root / "auxiliary" / "models" / "buffalo_l"
    target.mkdir(parents=True)
    (target / "det_10g.onnx").write_bytes(graphs["det"].read_bytes())
    (target / "2d106det.onnx").write_bytes(graphs["lmk"].read_bytes())


def test_auto_picks_insightface_when_its_files_exist(graphs, tmp_path):
    checkpoints = resolve("latentsync-1.5", tmp_path)
    assert resolve_backend("auto", checkpoints.insightface_files()) == "mediapipe"
    _install(graphs, tmp_path)
    assert checkpoints.insightface_dir == tmp_path / "auxiliary" / "models" / "buffalo_l"
    assert resolve_backend("auto", checkpoints.insightface_files()) == "insightface"
    detector = make_detector("auto", insightface=checkpoints.insightface_files())
    assert detector.name == "insightface" and isinstance(detector, InsightFaceDetector)
    assert resolve_backend("mediapipe", checkpoints.insightface_files()) == "mediapipe"


def test_missing_files_name_the_download_command(tmp_path):
    checkpoints = resolve("latentsync-1.6", tmp_path)
    with pytest.raises(CheckpointError) as error:
        make_detector("insightface", insightface=checkpoints.insightface_files())
    message = str(error.value)
    assert "det_10g.onnx" in message and "2d106det.onnx" in message
    assert f"python -m latentsync_demo.download --preset latentsync-1.6 --checkpoints {tmp_path}" in message


def test_download_fetches_only_the_two_files_into_the_official_layout(tmp_path, monkeypatch):
    import huggingface_hub

    from latentsync_demo.download import download_insightface

    calls = []

    def fake_download(repo_id, filename, local_dir):
        calls.append((repo_id, filename))
        target = local_dir / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(filename.encode())
        return str(target)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    checkpoints = resolve("latentsync-1.5", tmp_path)
    download_insightface(checkpoints)
    assert calls == [("KwaiVGI/LivePortrait", "insightface/models/buffalo_l/det_10g.onnx"),
                     ("KwaiVGI/LivePortrait", "insightface/models/buffalo_l/2d106det.onnx")]
    folder = tmp_path / "auxiliary" / "models" / "buffalo_l"
    assert sorted(p.name for p in folder.iterdir()) == ["2d106det.onnx", "det_10g.onnx"]
    assert (folder / "det_10g.onnx").read_bytes() == b"insightface/models/buffalo_l/det_10g.onnx"
    assert not (tmp_path / "auxiliary" / "models" / ".download").exists()
    calls.clear()
    download_insightface(checkpoints)
    assert calls == []


def test_offline_download_names_the_file_and_the_command(tmp_path):
    from latentsync_demo.download import download_insightface

    with pytest.raises(CheckpointError) as error:
        download_insightface(resolve("latentsync-1.5", tmp_path))
    message = str(error.value)
    assert "det_10g.onnx" in message and "offline" in message
    assert f"python -m latentsync_demo.download --preset latentsync-1.5 --checkpoints {tmp_path}" in message


def test_mediapipe_anchor_table_uses_the_documented_points():
    points = np.zeros((468, 2))
    points[[70, 46]] = [[0, 10], [0, 20]]  # brow tip halves
    points[[63, 105, 66, 107]] = [[10, 0], [20, 0], [30, 0], [40, 0]]  # upper contour
    points[[300, 276, 293, 334, 296, 336]] = 100
    points[[5, 1, 129, 358]] = [[50, 60], [50, 70], [40, 72], [60, 74]]  # mid-bridge, tip, nostril wings
    anchors = mesh_anchors(points)
    np.testing.assert_allclose(anchors, [[20, 3], [100, 100], [50, 69]])


def test_service_job_reports_the_backend(graphs, tmp_path):
    from latentsync_demo.service import LipSyncService
    from latentsync_demo.testing.media import make_speech_wav, make_talking_head_clip
    from latentsync_demo.testing.tiny_checkpoints import write_tiny_checkpoints

    tiny = write_tiny_checkpoints(tmp_path / "ckpt")
    _install(graphs, tiny)
    clip = make_talking_head_clip(tmp_path / "clip.mp4", seconds=0.4, fps=25, size=(320, 240))
    speech = make_speech_wav(tmp_path / "speech.wav", seconds=0.4)
    service = LipSyncService(checkpoints=tiny, device="cpu")
    events = list(service.lipsync(clip, speech, tmp_path / "out.mp4", num_inference_steps=1, consent=True))
    assert events[-1].stage == "done"
    assert any("(insightface)" in e.message for e in events if e.stage == "detecting faces")


def _real_files():
    files = resolve().insightface_files()
    if files.missing():
        pytest.skip(f"real insightface weights not found ({', '.join(map(str, files.missing()))}); "
                    "fetch them with python -m latentsync_demo.download")
    return files


def test_real_weights_interfaces_and_a_real_face():
    """Only where det_10g.onnx / 2d106det.onnx are downloaded: the interfaces this module assumes, and one face."""
    import onnx
    from skimage.data import astronaut

    files = _real_files()
    det, lmk = open_session(files.detector), open_session(files.landmarks)
    assert det.get_inputs()[0].shape[:2] == [1, 3] and len(det.get_outputs()) == 9
    assert lmk.get_inputs()[0].shape[1:] == [3, 192, 192] and lmk.get_outputs()[0].shape[1] == 212
    # insightface's rule for the landmark model's normalisation: Sub and Mul among the first nodes -> 0 / 1
    names = [node.name for node in onnx.load(str(files.landmarks)).graph.node[:8]]
    assert any(n.startswith(("Sub", "_minus")) for n in names) and any(n.startswith(("Mul", "_mul")) for n in names)
    faces = InsightFaceDetector(files).detect(astronaut())
    assert len(faces) == 1
    (lx, ly), (rx, ry), (nx, ny) = faces[0].anchors
    assert lx < nx < rx and ny > max(ly, ry) + 20


def test_service_refuses_an_unknown_backend_before_any_work(tmp_path):
    from latentsync_demo.errors import InputError
    from latentsync_demo.settings import GenerationSettings
    from latentsync_demo.service import LipSyncService

    with pytest.raises(InputError, match="unknown landmark backend 'dlib'; choose one of auto, insightface"):
        LipSyncService(checkpoints=tmp_path).check_settings("latentsync-1.5", GenerationSettings(landmarks="dlib"))
