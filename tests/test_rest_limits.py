"""The REST API's refusals and its voice job, in process (FastAPI's TestClient on ``RestAPI.app``; the real
service on tiny checkpoints): 429 when the queue is full, 503 without weights, /sync's length limit, and a
voice-cloning job (tiny XTTS and Whisper) submitted, run and fetched through the API."""

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from latentsync_demo.media import count_frames, probe
from latentsync_demo.rest import RestAPI
from latentsync_demo.service import LipSyncService
from latentsync_demo.testing.media import make_speech_wav, make_talking_head_clip


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("rest_limits_media")
    return {
        "video": make_talking_head_clip(root / "face.mp4", seconds=0.8, fps=25, size=(160, 128)),
        "speech": make_speech_wav(root / "speech.wav", seconds=0.6),
        "two_s": make_speech_wav(root / "two_s.wav", seconds=2.04),
        "voice": make_speech_wav(root / "voice.wav", seconds=4.0, seed=3),  # >= 3 s of voice to clone
    }


def _files(**paths) -> dict:
    return {role: (Path(path).name, Path(path).read_bytes()) for role, path in paths.items()}


def _post(client, media, path="/jobs", audio="speech", **fields):
    return client.post(path, files=_files(video=media["video"], audio=media[audio]),
                       data={"steps": "1", "consent": "true", **fields})


def _error(response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert all(w in message for w in words), message
    return message


def _folders(api: RestAPI) -> list[Path]:
    """Job folders under the API's root (created with the first saved job)."""
    return sorted(api.manager.root.iterdir()) if api.manager.root.exists() else []


def test_a_full_queue_answers_429_and_takes_jobs_again_once_one_ends(tiny_service, media, tmp_path):
    api = RestAPI(tiny_service, root=tmp_path / "jobs", max_pending=2)  # worker not started: jobs stay queued
    client = TestClient(api.app)
    first, second = (_post(client, media).json()["id"] for _ in range(2))
    message = _error(_post(client, media), 429, "2 jobs are already waiting", "try again")
    assert "Retry-After" in _post(client, media).headers
    assert [f.name for f in _folders(api)] == sorted([first, second])  # the refused uploads were never saved
    assert client.delete(f"/jobs/{first}").json()["status"] == "cancelling"
    api.manager.start()
    try:
        deadline = time.time() + 120
        while client.get(f"/jobs/{second}").json()["status"] != "done":
            assert time.time() < deadline, client.get(f"/jobs/{second}").json()
            time.sleep(0.1)
        assert client.get(f"/jobs/{first}").json()["status"] == "cancelled"
        assert _post(client, media).status_code == 202, message  # room again
    finally:
        api.manager.stop()


def test_missing_weights_answer_503_naming_the_download(tmp_path, media):
    service = LipSyncService(checkpoints=tmp_path / "empty", device="cpu")
    api = RestAPI(service, root=tmp_path / "jobs")
    client = TestClient(api.app)
    for path in ("/jobs", "/sync"):
        _error(_post(client, media, path), 503, "model weights for latentsync-1.5 are not installed",
               f"python -m latentsync_demo.download --preset latentsync-1.5 --checkpoints {tmp_path / 'empty'}")
    _error(_post(client, media, preset="latentsync-1.6"), 503, "latentsync-1.6")
    assert _folders(api) == []  # refused before any upload was saved


def test_sync_refuses_clips_over_its_limit_and_points_to_jobs(tiny_service, media, tmp_path):
    api = RestAPI(tiny_service, root=tmp_path / "jobs", sync_max_seconds=1.5)
    client = TestClient(api.app)
    # The message keeps the limit's and the clip's own precision (2.04 s is not "2 s" against a 1.5 s limit).
    _error(_post(client, media, "/sync", audio="two_s"), 400, "/sync takes clips up to 1.5 s",
           "this one lasts 2.0 s", "POST /api/v1/jobs")
    assert _folders(api) == []  # the uploads of the refused request are gone
    api.manager.start()
    try:
        answer = _post(client, media, "/sync", length_mode="cut")  # 0.8 s video, 0.6 s speech: under the limit
        assert answer.status_code == 200 and answer.headers["content-type"] == "video/mp4", answer.text
        (tmp_path / "sync.mp4").write_bytes(answer.content)
        assert count_frames(tmp_path / "sync.mp4") == 15
        assert _post(client, media, "/jobs", audio="two_s").status_code == 202  # /jobs has no such limit
    finally:
        api.manager.stop()


def test_a_voice_cloning_job_through_rest(tmp_path, media):
    from latentsync_demo.testing.tiny_checkpoints import write_tiny_checkpoints

    checkpoints = write_tiny_checkpoints(tmp_path / "ckpt", voice=True)
    api = RestAPI(LipSyncService(checkpoints, device="cpu", output_dir=tmp_path / "outputs"), root=tmp_path / "jobs")
    client = TestClient(api.app)
    fields = {"voice": "script", "language": "en", "steps": "1", "consent": "true"}
    no_text = client.post("/jobs", files=_files(video=media["video"], voice_reference=media["voice"]), data=fields)
    _error(no_text, 400, "Script voice needs the words the speaker should say")
    api.manager.start()
    try:
        submitted = client.post("/jobs", files=_files(video=media["video"], voice_reference=media["voice"]),
                                data={**fields, "text": "good morning"})
        assert submitted.status_code == 202, submitted.text
        job_id, stages = submitted.json()["id"], set()
        deadline = time.time() + 300
        while (status := client.get(f"/jobs/{job_id}").json())["status"] not in ("done", "failed", "cancelled"):
            assert time.time() < deadline, status
            stages.add(status["stage"])
            time.sleep(0.1)
        assert status["status"] == "done", status
        assert "voice" in stages  # the speech was made by the voice model, then lip-synced
        result = client.get(f"/jobs/{job_id}/result")
        assert result.status_code == 200
        out = tmp_path / "voice_job.mp4"
        out.write_bytes(result.content)
        # The tiny XTTS says every sentence in about 1.7 s: the video (0.8 s) follows the new speech's length.
        assert probe(out).has_audio and 1.2 < count_frames(out) / 25 < 2.2
    finally:
        api.manager.stop()
