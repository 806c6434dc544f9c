"""Translation dubbing end to end (issue 25): the Python API, the CLI, REST and batch run the real translate path
(tiny random Whisper, M2M100, XTTS and lip-sync models): subtitles in and beside the MP4, an edited transcript
spoken, timing on the source segments, and the refusals made before any work."""

import json
import subprocess
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from latentsync_demo.batch import main as batch_main
from latentsync_demo.cli import main as cli_main
from latentsync_demo.errors import CheckpointError, InputError
from latentsync_demo.media import count_frames, load_audio, mux, probe
from latentsync_demo.media.ffmpeg import ffmpeg_exe
from latentsync_demo.media.subtitles import read_srt
from latentsync_demo.rest import RestAPI
from latentsync_demo.service import LipSyncService, VoiceRequest
from latentsync_demo.testing.media import make_talking_head_clip
from latentsync_demo.testing.tiny_checkpoints import write_tiny_checkpoints
from latentsync_demo.testing.tiny_voice import write_tiny_voice_models

@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return write_tiny_checkpoints(tmp_path_factory.mktemp("dub_ckpt"), voice=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("dub_media")
    clip = make_talking_head_clip(root / "clip.mp4", seconds=4.0, fps=25, size=(128, 128))
    mute = make_talking_head_clip(root / "mute.mp4", seconds=1.0, fps=25, size=(128, 128), with_audio=False)
    return {"clip": clip, "mute": mute, "silent": mux(mute, np.zeros(16000, np.float32), root / "silent.mp4")}


@pytest.fixture(scope="module")
def service(checkpoints, tmp_path_factory):
    return LipSyncService(checkpoints, device="cpu", output_dir=tmp_path_factory.mktemp("dub_outputs"))


def _subtitle_streams(path) -> list[str]:
    """The subtitle streams ffmpeg lists for ``path`` ("Stream #0:2(spa): Subtitle: mov_text ...")."""
    text = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    return [line.strip() for line in text.splitlines() if "Subtitle:" in line]


def test_translate_job_through_the_api(service, media, tmp_path):
    script = service.transcribe_translate(media["clip"], "es")
    edited = script.with_texts([f"frase numero {i}" for i in range(len(script.segments))])
    out = tmp_path / "dub.mp4"
    events = list(service.lipsync(media["clip"], None, out, voice=VoiceRequest(
        "translate", target_language="es", transcript=edited), num_inference_steps=1, consent=True))
    done = events[-1]
    assert done.stage == "done" and events[0].stage == "voice"
    srt = out.with_suffix(".srt")
    assert done.subtitles == srt and srt.is_file()
    cues = read_srt(srt)
    assert [c.text for c in cues] == [s.text for s in edited.segments]  # the subtitles are the spoken segments
    for cue, segment in zip(cues, edited.segments):
        assert abs(cue.start - segment.start) <= 0.04  # each spoken segment starts on its source segment
    assert any("spa" in s and "mov_text" in s for s in _subtitle_streams(out))
    assert probe(out).has_audio and count_frames(out) >= 90  # the dub keeps the 4 s clip's length (or more)
    manifest = json.dumps(json.loads(done.manifest.read_text()))
    assert "machine-translated (en->es)" in manifest  # the action says so, with both languages


def test_keep_room_mixes_the_videos_own_sound_under_the_speech(service, media, tmp_path):
    script = service.transcribe_translate(media["clip"], "de")
    plain, room = tmp_path / "plain.mp4", tmp_path / "room.mp4"
    for out, keep in ((plain, False), (room, True)):
        list(service.lipsync(media["clip"], None, out, voice=VoiceRequest(
            "translate", target_language="de", transcript=script, subtitles="off", keep_room=keep),
            num_inference_steps=1, consent=True))
    a, b = load_audio(plain), load_audio(room)
    n = min(a.size, b.size)
    assert np.abs(a[:n] - b[:n]).mean() > 1e-3  # the room is there
    assert not _subtitle_streams(plain) and plain.with_suffix(".srt").is_file()  # subtitles="off": the file only


def test_cli_transcript_out_then_edited_transcript(checkpoints, media, tmp_path, capsys):
    transcript = tmp_path / "t.json"
    base = ["--checkpoints", str(checkpoints), "--device", "cpu", "--video", str(media["clip"])]
    assert cli_main([*base, "--voice", "translate", "--to", "fr", "--transcript-out", str(transcript)]) == 0
    printed = capsys.readouterr().out
    assert "wrote the transcript" in printed and "--transcript" in printed
    data = json.loads(transcript.read_text())
    assert data["target_language"] == "fr" and data["segments"]
    data["segments"][0]["text"] = "bonjour tout le monde"
    transcript.write_text(json.dumps(data))
    out = tmp_path / "cli_dub.mp4"
    assert cli_main([*base, "--voice", "translate", "--transcript", str(transcript), "--steps", "1",
                     "--subtitles", "burn", "--consent", "--out", str(out)]) == 0, capsys.readouterr().err[-3000:]
    assert read_srt(out.with_suffix(".srt"))[0].text == "bonjour tout le monde"
    assert not _subtitle_streams(out)  # burned in: drawn into the picture, no track


@pytest.mark.parametrize("args, message", [
    (["--to", "tlh"], "cannot dub into 'tlh'"),
    ([], "--voice translate needs --to LANG"),
    (["--to", "es", "--transcript", "t.json", "--transcript-out", "u.json"], "exclude each other"),
])
def test_cli_refuses_bad_translate_arguments(checkpoints, media, tmp_path, args, message, capsys):
    out = tmp_path / "never.mp4"
    try:  # in process: the same main() as the command, without paying for a second interpreter's imports
        code = cli_main(["--checkpoints", str(checkpoints), "--device", "cpu", "--video", str(media["clip"]),
                         "--voice", "translate", *args, "--consent", "--out", str(out)])
    except SystemExit as exc:  # argparse's parser.error
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not out.exists()


def test_refusals_before_any_work(service, media, tmp_path):
    out = tmp_path / "x.mp4"
    with pytest.raises(InputError, match="no speech was found in silent.mp4, so there is nothing to translate"):
        service.prepare(media["silent"], None, out, voice=VoiceRequest("translate", target_language="es"),
                        consent=True)
    with pytest.raises(InputError, match="cannot dub into 'klingon'"):
        service.prepare(media["clip"], None, out, voice=VoiceRequest("translate", target_language="klingon"),
                        consent=True)
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"source_language": "en", "target_language": "es", "segments": []}))
    with pytest.raises(InputError, match="has no segments"):
        service.prepare(media["clip"], None, out, voice=VoiceRequest("translate", transcript=empty), consent=True)
    with pytest.raises(InputError, match="belong to the translate voice mode"):
        service.prepare(media["clip"], None, out, voice=VoiceRequest("script", "hello", target_language="es"),
                        consent=True)
    with pytest.raises(InputError, match="no sound of its own, so there is no room sound to keep"):
        service.prepare(media["mute"], media["clip"], out, voice=VoiceRequest(
            "translate", target_language="es", keep_room=True), consent=True)
    own = tmp_path / "talk_es.srt"
    own.write_text("1\n00:00:00,280 --> 00:00:03,000\nhola\n\n")
    with pytest.raises(InputError, match="would overwrite talk_es.srt"):
        service.prepare(media["clip"], None, tmp_path / "talk_es.mp4", voice=VoiceRequest(
            "translate", target_language="es", transcript=own), consent=True)
    with pytest.raises(InputError, match="does not know the language 'klingon'"):
        service.prepare(media["clip"], None, out, voice=VoiceRequest(
            "translate", language="klingon", target_language="es"), consent=True)
    for times, message in (([0, float("inf")], "no finite time"), ([2, 3, 0, 1], "keep the segments in the order")):
        segments = [{"start": a, "end": b, "text": "hola"} for a, b in zip(times[::2], times[1::2])]
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"target_language": "es", "segments": segments}))
        with pytest.raises(InputError, match=message):
            service.prepare(media["clip"], None, out, voice=VoiceRequest("translate", transcript=bad), consent=True)
    no_translation = write_tiny_voice_models(tmp_path / "ckpt").root  # voice models, no translation model
    bare = LipSyncService(no_translation, device="cpu")
    with pytest.raises(CheckpointError, match="--translation --checkpoints"):
        bare.prepare(media["clip"], None, out, voice=VoiceRequest("translate", target_language="es"), consent=True)
    assert not out.exists()


def _wait(client, job_id, seconds=300):
    deadline = time.time() + seconds
    while (status := client.get(f"/jobs/{job_id}").json())["status"] not in ("done", "failed", "cancelled"):
        assert time.time() < deadline, status
        time.sleep(0.1)
    return status


def test_translate_through_rest_with_an_edited_transcript(service, media, tmp_path):
    api = RestAPI(service, root=tmp_path / "jobs")
    client = TestClient(api.app)
    video = ("clip.mp4", media["clip"].read_bytes())
    made = client.post("/transcripts", files={"video": video}, data={"to": "it"})
    assert made.status_code == 200, made.text
    data = made.json()
    assert data["target_language"] == "it" and data["segments"][0]["source"]
    data["segments"][-1]["text"] = "arrivederci"
    stray = client.post("/jobs", files={"video": video, "audio": video},
                        data={"to": "es", "consent": "true"})
    assert stray.status_code == 400 and "belong to a voice mode" in stray.json()["error"]
    bad = client.post("/transcripts", files={"video": video}, data={"to": "xx"})
    assert bad.status_code == 400 and "Cannot dub into 'xx'" in bad.json()["error"]
    api.manager.start()
    try:
        submitted = client.post("/jobs", files={"video": video, "transcript": ("t.json", json.dumps(data))},
                                data={"voice": "translate", "steps": "1", "consent": "true"})
        assert submitted.status_code == 202, submitted.text
        status = _wait(client, submitted.json()["id"])
        assert status["status"] == "done", status
        subtitles = client.get(f"/jobs/{status['id']}/subtitles")
        assert subtitles.status_code == 200 and "arrivederci" in subtitles.text
    finally:
        api.manager.stop()


def test_translate_row_in_a_batch_manifest(checkpoints, media, tmp_path):
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"id": "dub", "video": str(media["clip"]), "voice": "translate", "to": "pt",
                                    "steps": "1"}) + "\n")
    assert batch_main([str(manifest), "--out", str(tmp_path / "out"), "--checkpoints", str(checkpoints),
                       "--device", "cpu", "--consent"]) == 0
    assert (tmp_path / "out" / "dub.srt").is_file() and (tmp_path / "out" / "dub.mp4").is_file()
