"""Choosing the speaker by looking: the face listing (API, CLI, app handlers) numbers faces as the job does, and
the job follows the chosen person by overlap, so a listed index lip-syncs that person and leaves the other alone.

The clips are generated here from the synthetic talking head (``testing.media``): two faces side by side, of
different sizes (a clear size order) and of the same size (mirrored: a size order per frame would hop)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from latentsync_demo.cli import main as cli_main
from latentsync_demo.errors import InputError
from latentsync_demo.face.track import FaceFollower
from latentsync_demo.face.types import DetectedFace, select_face
from latentsync_demo.media import VideoWriter, read_frames
from latentsync_demo.pipeline import streaming
from latentsync_demo.testing.media import make_speech_wav, make_talking_head_clip

FRAMES = 10  # 0.4 s at 25 fps: the whole clip is inside the listing's first seconds
WIDTH = 128  # each face's half of the 256 x 128 two-face frames


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("face_listing")
    frames = read_frames(make_talking_head_clip(root / "face.mp4", seconds=0.4, fps=25, size=(WIDTH, WIDTH)))
    with VideoWriter(root / "two.mp4", 2 * WIDTH, WIDTH, 25) as two, \
            VideoWriter(root / "mirrored.mp4", 2 * WIDTH, WIDTH, 25) as mirrored:
        for frame in frames:
            smaller = np.full_like(frame, 200)  # the same head at 3/4 size, centred in the right half
            smaller[16:112, 16:112] = cv2.resize(frame, (96, 96), interpolation=cv2.INTER_AREA)
            two.write(np.hstack([frame, smaller]))
            mirrored.write(np.hstack([frame, frame[:, ::-1]]))
    return SimpleNamespace(root=root, two=root / "two.mp4", mirrored=root / "mirrored.mp4",
                           speech=make_speech_wav(root / "speech.wav", seconds=0.4))


def _area(box) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def test_two_faces_are_listed_by_size_with_their_boxes_and_thumbnails(tiny_service, clips):
    faces = tiny_service.list_faces(clips.two, landmarks="mediapipe")
    assert [face.index for face in faces] == [0, 1]
    left, right = faces
    assert right.box[0] > left.box[2] and left.box[2] <= WIDTH <= right.box[0]  # one face per half
    assert 0 <= left.box[0] and right.box[2] <= 2 * WIDTH and 0 <= left.box[1] < left.box[3] <= WIDTH
    assert _area(left.box) > 1.3 * _area(right.box)  # 128 px head vs 96 px head: (4/3)^2 = 1.8
    for face in faces:
        assert (face.frames_seen, face.frames_scanned, face.share) == (FRAMES, FRAMES, 1.0)
        assert face.thumbnail.dtype == np.uint8 and face.thumbnail.shape[2] == 3
        assert 40 <= max(face.thumbnail.shape[:2]) <= 160
    assert faces[1].caption() == "face 1 · 100%"
    assert re.fullmatch(r"face 1  box \d+,\d+,\d+,\d+ \(\d+x\d+\)  seen in 10/10 frames  100%", faces[1].line())


def test_same_size_faces_keep_their_index_in_every_frame(tiny_service, clips):
    """Mirrored twins: which is 'larger' is detector noise frame to frame. Each listed face stays on its own
    side in all 10 frames: a face whose index hopped would have a mean box straddling the middle."""
    faces = tiny_service.list_faces(clips.mirrored, landmarks="mediapipe")
    assert len(faces) == 2 and all(face.frames_seen == FRAMES for face in faces)
    sides = sorted((face.box[2] <= WIDTH, face.box[0] >= WIDTH) for face in faces)
    assert sides == [(False, True), (True, False)], [face.box for face in faces]


def test_the_follower_keeps_a_person_whose_size_rank_changes():
    def face(x0, size):
        return DetectedFace((x0, 10.0, x0 + size, 10.0 + size), np.zeros((3, 2)))

    frames = [[face(0, 50), face(100, 48)], [face(101, 52), face(1, 49)], [face(2, 47), face(102, 53)]]
    follower = FaceFollower(1)  # the smaller one in the first frame: the person on the right
    assert [follower.choose(faces).box[0] for faces in frames] == [100, 101, 102]
    assert [select_face(faces, 1).box[0] for faces in frames] == [100, 1, 2]  # ranking per frame hops
    follower = FaceFollower(0)
    assert follower.choose([]) is None and follower.choose([face(100, 40), face(0, 30)]).box[0] == 100
    assert follower.choose([face(300, 60), face(1, 30)]).box[0] == 300  # lost (no overlap): by size again


@pytest.fixture(scope="module")
def job_frames(tiny_service, clips):
    """(input, pasted-back) frames of a 1-step job on face 1 of the two-face clip, as the paste-back hands them
    to the marker and the writer (the invisible watermark then touches every frame, and the encoder is lossy)."""
    seen = []
    original = streaming.PasteBack._write

    def recording(self, s, frame, result):
        seen.append((np.array(frame), np.array(result)))
        return original(self, s, frame, result)

    streaming.PasteBack._write = recording
    try:
        events = list(tiny_service.lipsync(clips.two, clips.speech, clips.root / "face1.mp4", face_index=1,
                                           landmarks="mediapipe", num_inference_steps=1, consent=True))
    finally:
        streaming.PasteBack._write = original
    assert events[-1].stage == "done"
    return seen


def test_the_listed_index_lip_syncs_that_face_and_leaves_the_other_bit_identical(tiny_service, clips, job_frames):
    left, right = tiny_service.list_faces(clips.two, landmarks="mediapipe")
    assert len(job_frames) == FRAMES
    x0, y0, x1, y1 = left.box
    for frame, result in job_frames:
        assert np.array_equal(frame[:, :WIDTH], result[:, :WIDTH])  # face 0's whole half, untouched
    rx0, ry0, rx1, ry1 = right.box
    changed = [np.abs(result[ry0:ry1, rx0:rx1].astype(int) - frame[ry0:ry1, rx0:rx1]).mean()
               for frame, result in job_frames]
    assert min(changed) > 2, changed  # the tiny random model repaints face 1's lower half in every frame


def test_cli_prints_one_line_per_face(clips, tiny_checkpoints, capsys):
    assert cli_main(["--list-faces", str(clips.two), "--landmarks", "mediapipe",
                     "--checkpoints", str(tiny_checkpoints), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[0] for line in lines] == ["face 0", "face 1"]
    assert all("seen in 10/10 frames  100%" in line for line in lines), lines


def test_listing_refuses_bad_input_clearly(tiny_service, clips, tiny_checkpoints, capsys):
    with pytest.raises(InputError, match=r"file not found: .*nothere\.mp4"):
        tiny_service.list_faces(clips.root / "nothere.mp4")
    with pytest.raises(InputError, match=r"unknown landmark backend 'foo'"):
        tiny_service.list_faces(clips.two, landmarks="foo")
    assert cli_main(["--list-faces", str(clips.speech), "--checkpoints", str(tiny_checkpoints)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "speech.wav" in err and "Traceback" not in err


def test_app_shows_thumbnails_and_a_click_sets_the_face_index(tiny_service, clips):
    from latentsync_demo.app_handlers import DemoHandlers, LipSyncForm

    on = DemoHandlers(tiny_service)
    gallery, listed, note = on.list_faces(str(clips.two), None, "LatentSync 1.5 · 256 px", "mediapipe")
    assert gallery["visible"] and [caption for _, caption in gallery["value"]] == ["face 0 · 100%", "face 1 · 100%"]
    assert listed["faces"] == [0, 1] and "2 faces found" in note["value"]
    index, note = on.pick_face(listed, SimpleNamespace(index=1))
    assert index == 1 and note["value"] == "Lip-syncing face 1."
    form = LipSyncForm(str(clips.two), str(clips.speech), "LatentSync 1.5 · 256 px", "DDIM (quality)", 1, 1.5, 0, 1,
                       None, listed_faces=listed)
    assert form.shown_faces() == (0, 1)
    other = LipSyncForm(str(clips.mirrored), None, "", "", 1, 1.5, 0, 1, None, listed_faces=listed)
    assert other.shown_faces() is None  # thumbnails of another video check nothing
    assert on.list_faces(None, None, "LatentSync 1.5 · 256 px", "auto")[1] is None
