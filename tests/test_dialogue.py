"""Dialogue: one speech track per face, in one job. Each face's generated chunks get its own track's whisper
features (instrumented at the chunk stream), the soundtrack is the tracks' mix, a face that leaves the frame is
passed through where it is missing (and the result says so), and a single chosen face leaves the other one
bit-identical. The two-face clips are generated here, as in ``test_face_listing``; the right face's colour
channels are swapped so that its aligned crops can be told from the left face's."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from latentsync_demo.cli import main as cli_main
from latentsync_demo.errors import InputError
from latentsync_demo.face.track import FaceFollower, choose_distinct
from latentsync_demo.face.types import DetectedFace
from latentsync_demo.media import SAMPLE_RATE, VideoWriter, load_audio, read_frames
from latentsync_demo.pipeline import job as job_module
from latentsync_demo.pipeline import streaming
from latentsync_demo.pipeline.dialogue import MIX_PEAK, mix_speech, presence_notes, spans
from latentsync_demo.settings import GenerationSettings
from latentsync_demo.testing.media import make_speech_wav, make_talking_head_clip

FRAMES, WIDTH = 10, 128  # 0.4 s of 256 x 128 frames: a face in each half
RIGHT_LEAVES = 6  # the right face is gone from this frame on


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("dialogue")
    frames = read_frames(make_talking_head_clip(root / "face.mp4", seconds=0.4, fps=25, size=(WIDTH, WIDTH)))
    with VideoWriter(root / "two.mp4", 2 * WIDTH, WIDTH, 25) as writer:
        for i, frame in enumerate(frames):
            right = np.full_like(frame, 200)
            if i < RIGHT_LEAVES:  # a smaller head, colours swapped (bluish crops), that then leaves the frame
                right[16:112, 16:112] = cv2.resize(frame, (96, 96), interpolation=cv2.INTER_AREA)[..., ::-1]
            writer.write(np.hstack([frame, right]))
    return SimpleNamespace(root=root, two=root / "two.mp4", a=make_speech_wav(root / "a.wav", seconds=0.4, seed=1),
                           b=make_speech_wav(root / "b.wav", seconds=0.4, seed=2),
                           long_b=make_speech_wav(root / "long_b.wav", seconds=0.6, seed=2))


def _recording(monkeypatch):
    """Record what the job hands on: (person, output frames, faces, audio features) per generated chunk, and
    (input, pasted-back) per output frame before the watermark."""
    chunks, frames = [], []
    dialogue_chunks, write = job_module.dialogue_chunks, streaming.PasteBack._write

    def recorded_chunks(*args, **kwargs):
        for person, window, faces, audio in dialogue_chunks(*args, **kwargs):
            chunks.append((person, window, faces.clone(), audio.clone()))
            yield person, window, faces, audio

    def recorded_write(self, s, frame, result):
        frames.append((np.array(frame), np.array(result)))
        return write(self, s, frame, result)

    monkeypatch.setattr(job_module, "dialogue_chunks", recorded_chunks)
    monkeypatch.setattr(streaming.PasteBack, "_write", recorded_write)
    return chunks, frames


@pytest.fixture(scope="module")
def dialogue(tiny_service, clips):
    monkeypatch = pytest.MonkeyPatch()
    chunks, frames = _recording(monkeypatch)
    try:
        events = list(tiny_service.lipsync(clips.two, None, clips.root / "dialogue.mp4",
                                           speech={1: clips.b, 0: clips.a}, landmarks="mediapipe",
                                           num_inference_steps=1, consent=True))
    finally:
        monkeypatch.undo()
    return SimpleNamespace(events=events, chunks=chunks, frames=frames, out=clips.root / "dialogue.mp4")


def _features(tiny_service, track, frames: range) -> torch.Tensor:
    encoder = tiny_service.pipeline().audio_encoder
    features = encoder.encode(load_audio(track), windows=GenerationSettings().audio_windows)
    return encoder.frame_chunks(features, fps=25, frame_indices=frames)


def test_each_face_is_driven_by_its_own_tracks_features(tiny_service, clips, dialogue):
    assert dialogue.events[-1].stage == "done"
    assert [(person, window) for person, window, _, _ in dialogue.chunks] == [(0, range(0, 10)), (1, range(0, 10))]
    own = {0: _features(tiny_service, clips.a, range(FRAMES)), 1: _features(tiny_service, clips.b, range(FRAMES))}
    assert not torch.allclose(own[0], own[1])  # two tracks of clearly different content
    for person, _, faces, audio in dialogue.chunks:
        assert torch.equal(audio, own[person]), f"face {person} got another track's features"
        r = faces.shape[-1]
        red, _, blue = faces[:, :, r // 4:3 * r // 4, r // 4:3 * r // 4].float().mean(dim=(0, 2, 3))  # centre
        assert (red > blue + 20) if person == 0 else (blue > red + 20), (person, red, blue)  # its own face


def test_a_face_that_leaves_is_passed_through_and_the_result_says_so(dialogue):
    assert len(dialogue.frames) == FRAMES
    notes = dialogue.events[-1].notes
    assert "Dialogue: 2 speech tracks mixed" in notes
    assert "Face 1 is not found at 0.24-0.40 s" in notes and "Face 0 is not found" not in notes
    assert "overlap" not in notes  # one face per half: their boxes never meet
    for i, (frame, result) in enumerate(dialogue.frames):
        left = np.abs(result[:, :WIDTH].astype(int) - frame[:, :WIDTH]).mean()
        assert left > 1, (i, left)  # face 0 lip-synced in every frame
        if i < RIGHT_LEAVES:
            assert np.abs(result[:, WIDTH:].astype(int) - frame[:, WIDTH:]).mean() > 0.5, i
        else:
            assert np.array_equal(result[:, WIDTH:], frame[:, WIDTH:]), i  # face 1 missing: nothing pasted


def test_the_soundtrack_is_the_tracks_mixed(clips, dialogue):
    heard = load_audio(dialogue.out)
    a, b = load_audio(clips.a), load_audio(clips.b)
    mixed = mix_speech([a, b])
    n = min(len(heard), len(mixed))
    assert abs(len(heard) - len(mixed)) < SAMPLE_RATE * 0.05

    def corr(x, y):
        return float(np.corrcoef(x[:n], y[:n])[0, 1])

    assert corr(heard, mixed) > 0.95 and corr(heard, a) < 0.85 and corr(heard, b) < 0.85, \
        (corr(heard, mixed), corr(heard, a), corr(heard, b))


def test_mix_sums_and_scales_only_when_it_would_clip():
    quiet = [np.full(4, 0.2, np.float32), np.full(2, 0.3, np.float32)]
    assert np.allclose(mix_speech(quiet), [0.5, 0.5, 0.2, 0.2])  # as long as the longest, an untouched sum
    loud = mix_speech([np.full(3, 0.8, np.float32), np.full(3, 0.7, np.float32)])
    assert np.allclose(loud, MIX_PEAK) and loud.dtype == np.float32


def test_one_chosen_face_leaves_the_other_bit_identical(tiny_service, clips, monkeypatch):
    """One speech track is that face's plain job: the other face's half is the input's decode, bit for bit."""
    chunks, frames = _recording(monkeypatch)
    events = list(tiny_service.lipsync(clips.two, None, clips.root / "face0.mp4", speech=["0=" + str(clips.a)],
                                       landmarks="mediapipe", num_inference_steps=1, consent=True))
    assert events[-1].stage == "done" and chunks == []  # no dialogue engine for one face
    assert len(frames) == FRAMES
    for frame, result in frames:
        assert np.array_equal(frame[:, WIDTH:], result[:, WIDTH:])
    assert min(np.abs(r[:, :WIDTH].astype(int) - f[:, :WIDTH]).mean() for f, r in frames) > 1


def test_two_people_never_share_one_detection():
    def face(x0, size=50):
        return DetectedFace((x0, 10.0, x0 + size, 10.0 + size), np.zeros((3, 2)))

    followers = [FaceFollower(0), FaceFollower(1)]
    first = choose_distinct(followers, [face(0), face(100, 45)])
    assert [f.box[0] for f in first] == [0, 100]
    # The left person is hidden (or left): only the right one is found. Follower 0, lost, starts again by size
    # and picks it too; it goes to the follower whose last box overlaps it most, the other sees no face.
    clash = choose_distinct(followers, [face(90)])
    assert clash[0] is None and clash[1].box[0] == 90
    assert followers[0].last_box[0] == 0  # kept: finds its own person again when they are back
    back = choose_distinct(followers, [face(92), face(2)])
    assert [f.box[0] for f in back] == [2, 92]


def _box(x0, size=52):
    return DetectedFace((x0, 10.0, x0 + size, 10.0 + size), np.zeros((3, 2)))


def test_a_stale_box_never_hands_a_speakers_track_to_someone_else():
    """Face 0 leaves; face 1 walks onto the spot where face 0 stood. Face 1 keeps its own track all the way."""
    followers = [FaceFollower(0), FaceFollower(1)]
    assert [f.box[0] for f in choose_distinct(followers, [_box(0), _box(100, 50)])] == [0, 100]
    for x in range(100, -1, -5):  # face 0 is gone; face 1 moves left in 5 px steps, over face 0's last box
        chosen = choose_distinct(followers, [_box(x, 50)])
        assert chosen[0] is None and chosen[1].box[0] == x, x


def test_a_bystander_never_takes_over_a_lost_speakers_track():
    """Faces 0 and 1 speak, person C is also in the picture; when face 1 leaves, C does not get its speech."""
    followers = [FaceFollower(0), FaceFollower(1)]
    first = choose_distinct(followers, [_box(0, 80), _box(200, 60), _box(400, 40)])
    assert [f.box[0] for f in first] == [0, 200]
    for _ in range(3):  # face 1 has left: C (at 400) stays unclaimed
        chosen = choose_distinct(followers, [_box(0, 80), _box(400, 40)])
        assert chosen[0].box[0] == 0 and chosen[1] is None
    back = choose_distinct(followers, [_box(0, 80), _box(202, 60), _box(400, 40)])
    assert back[1].box[0] == 202  # found again by overlap when face 1 returns
    cut = choose_distinct(followers, [_box(600, 70), _box(800, 50)])  # a cut: nobody overlaps, numbering restarts
    assert [f.box[0] for f in cut] == [600, 800]


def test_presence_notes_name_faces_and_seconds():
    def person(index, boxes):
        return SimpleNamespace(face_index=index, boxes=boxes, matrices=[None if b is None else 1 for b in boxes])

    left = person(0, [(0, 0, 10, 10)] * 50)
    right = person(3, [(20, 0, 30, 10)] * 10 + [(5, 0, 15, 10)] * 15 + [None] * 25)
    notes = presence_notes([left, right], 50)
    assert "Faces 0 and 3 overlap at 0.40-1.00 s" in notes
    assert "Face 3 is not found at 1.00-2.00 s" in notes and "Face 0 is not found" not in notes
    assert spans([True, False, True, True]) == "0.00-0.04 s, 0.08-0.16 s"


def test_cli_dialogue_end_to_end(clips, tiny_checkpoints, capsys):
    out = clips.root / "cli.mp4"
    rc = cli_main(["--video", str(clips.two), "--speech", f"0={clips.a}", "--speech", f"1={clips.long_b}",
                   "--out", str(out), "--steps", "1", "--landmarks", "mediapipe", "--checkpoints",
                   str(tiny_checkpoints), "--device", "cpu", "--consent"])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    assert "the output follows the longest, face 1's (0.6 s)" in printed.out
    assert "face 0's ends at 0.4 s" in printed.out
    assert len(read_frames(out)) == 15  # the longest track: 0.6 s at 25 fps (the 0.4 s clip plays back and forth)


def test_rest_takes_a_list_of_speech_files_with_their_faces(tiny_service, clips, tmp_path):
    from fastapi.testclient import TestClient

    from latentsync_demo.rest import RestAPI

    api = RestAPI(tiny_service, root=tmp_path / "jobs")
    client = TestClient(api.app)

    def post(path, faces, tracks):
        files = [("video", ("two.mp4", clips.two.read_bytes()))]
        files += [("speech", (track.name, track.read_bytes())) for track in tracks]
        return client.post(path, files=files, data={"speech_face": [str(f) for f in faces], "steps": "1",
                                                    "consent": "true"})

    mismatch = post("/jobs", [0], [clips.a, clips.b])
    assert mismatch.status_code == 400 and "one speech_face (the face index) per speech file" in mismatch.text
    absent = post("/jobs", [0, 5], [clips.a, clips.b])
    assert absent.status_code == 400 and "speech track for face 5" in absent.json()["error"], absent.text
    api.manager.start()
    try:
        answer = post("/sync", [0, 1], [clips.a, clips.long_b])
        assert answer.status_code == 200 and answer.headers["content-type"] == "video/mp4", answer.text
        (tmp_path / "sync.mp4").write_bytes(answer.content)
        assert len(read_frames(tmp_path / "sync.mp4")) == 15  # the longest track, 0.6 s
    finally:
        api.manager.stop()


def test_batch_manifests_take_speech_lists(tiny_service, clips, tmp_path):
    import argparse
    import json

    from latentsync_demo.batch import read_manifest, run_row
    from latentsync_demo.errors import InputError

    (tmp_path / "jobs.jsonl").write_text(
        json.dumps({"id": "listed", "video": str(clips.two), "speech": [f"0={clips.a}", "1=b.wav"]}) + "\n"
        + json.dumps({"id": "object", "video": str(clips.two), "speech": {"1": str(clips.b), "0": str(clips.a)}}))
    (tmp_path / "jobs.csv").write_text(f"id,video,speech\ncell,{clips.two},1=b.wav; 0=a.wav\n")
    listed, as_object = read_manifest(tmp_path / "jobs.jsonl")
    assert listed.speech == ((0, clips.a), (1, tmp_path / "b.wav"))  # relative to the manifest's folder
    assert as_object.speech == ((0, clips.a), (1, clips.b))
    assert read_manifest(tmp_path / "jobs.csv")[0].speech == ((0, tmp_path / "a.wav"), (1, tmp_path / "b.wav"))
    (tmp_path / "twice.csv").write_text(f"id,video,speech\nx,{clips.two},0=a.wav;0=b.wav\n")
    with pytest.raises(InputError, match=r"twice\.csv row 1: face 0 has two speech tracks"):
        read_manifest(tmp_path / "twice.csv")
    defaults = argparse.Namespace(preset="latentsync-1.5", sampler=None, steps=1, guidance=None, seed=None,
                                  face_index=None, length_mode=None, audio_windows=None)
    result = run_row(tiny_service, listed, tmp_path, defaults)  # b.wav is not there: refused before work
    assert result["status"] == "failed" and "b.wav" in result["error"], result


def test_app_second_speaker_makes_a_dialogue_through_the_handler(tiny_service, clips):
    from latentsync_demo.app_handlers import DemoHandlers, LipSyncForm

    on = DemoHandlers(tiny_service)
    _, listed, _ = on.list_faces(str(clips.two), None, "LatentSync 1.5 · 256 px", "mediapipe")
    args = (str(clips.two), str(clips.a), "LatentSync 1.5 · 256 px", "DDIM (quality)", 1, 1.5, 1247)
    form = LipSyncForm(*args, 0, "pingpong", second_face=1, second_speech=str(clips.b))
    assert form.speech() == [(0, str(clips.a)), (1, str(clips.b))]
    assert LipSyncForm(*args, 0, "pingpong").speech() is None  # no second speech: a one-face job

    def note(face, second_face):
        updates = list(on.lipsync(*args, face, "pingpong", consent=True, landmarks="mediapipe",
                                  listed_faces=listed, second_face=second_face, second_speech=str(clips.b)))
        return updates[-1][6]["value"]

    assert "Face 0 has two speech tracks (a.wav and b.wav)" in note(0, 0)
    assert note(0, 3) == ("There is a speech track for face 3, but the video's first seconds show no such face: "
                          "give speech tracks to face 0 or 1 (the face listing shows them).")
    done = list(on.lipsync(*args, 0, "pingpong", consent=True, landmarks="mediapipe", listed_faces=listed,
                           second_face=1, second_speech=str(clips.long_b)))[-1]
    assert done[0].startswith("**Done**") and "face 1's (0.6 s)" in done[0], done[0]
    assert len(read_frames(done[3])) == 15  # the result: as long as the second speaker's longer track


def test_a_face_missing_from_the_whole_clip_fails_clearly(tiny_service, clips):
    """A listing that showed a face the job never finds (here: one claimed for a one-face clip): a clear error
    naming the face, not a crash."""
    from latentsync_demo.errors import InputError

    with pytest.raises(InputError, match=r"^face 1 was not found in any frame of the video"):
        list(tiny_service.lipsync(clips.root / "face.mp4", None, clips.root / "missing.mp4", shown_faces=(0, 1),
                                  speech={0: clips.a, 1: clips.b}, landmarks="mediapipe", num_inference_steps=1,
                                  consent=True))


@pytest.mark.parametrize("speech", [[0], [(0, "a.wav", 1)], {"0": 5}, {0: ["a.wav"]}, ["²=a.wav"]])
def test_malformed_speech_entries_are_input_errors(speech):
    """What a JSON manifest or a Python caller might pass: a clear FACE=FILE message, never a TypeError."""
    from latentsync_demo.request import speech_pairs

    with pytest.raises(InputError, match="a speech track is given as FACE=FILE"):
        speech_pairs(speech)
