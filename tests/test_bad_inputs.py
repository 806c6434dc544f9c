"""Bad input is refused up front, with one message, whichever way it comes in: the CLI, the Python API
(``LipSyncService``) and the web app's ``lipsync`` endpoint all go through ``latentsync_demo.validation``.

Every case must fail before generation starts (most before any model loads), so the corpus is fast. Web
messages must also speak the user's language: no server paths, no command-line flags, no traceback, and never
the app's generic "Something went wrong" fallback.
"""

from __future__ import annotations

import math
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile
from gradio_client import Client, handle_file

from latentsync_demo.cli import main as cli_main
from latentsync_demo.errors import InputError, LatentSyncError, as_sentence, user_message
from latentsync_demo.media import VideoWriter, read_frames
from latentsync_demo.service import LipSyncService
from latentsync_demo.settings import VoiceRequest
from latentsync_demo.store import DEFAULT_PRESET
from latentsync_demo.testing.media import make_speech_wav, make_talking_head_clip
from latentsync_demo.webhooks import CallbackPolicy

sys.path.insert(0, str(Path(__file__).parent))
from test_app import _start_app  # noqa: E402  (the same start-up as the app tests)

MAX_PIXELS = 200 * 200  # the server's cap in these tests; the clips are 128x128, "big" is 256x256


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_checkpoints):
    root = tmp_path_factory.mktemp("bad_inputs")
    face = make_talking_head_clip(root / "face.mp4", seconds=0.4, fps=25, size=(128, 128))
    frames = read_frames(face)
    with VideoWriter(root / "two faces.mp4", 256, 128, 25) as writer:  # the face twice, mirrored
        for frame in frames:
            writer.write(np.hstack([frame, frame[:, ::-1]]))
    broken = make_speech_wav(root / "speech.wav", seconds=0.5).read_bytes()
    samples = (0.2 * np.sin(np.arange(8000) / 7)).astype(np.float32)
    samples[[100, 2000]] = [np.nan, np.inf]
    scipy.io.wavfile.write(root / "nan.wav", 16000, samples)
    (root / "notes.mp4").write_text("this is not a video")
    read_only = root / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    if os.geteuid() == 0:  # root writes into a chmod 555 folder anyway; /proc refuses new files even to root
        read_only = Path("/proc")
    return {
        "root": root, "face": face, "two": root / "two faces.mp4", "speech": root / "speech.wav",
        "nan": root / "nan.wav", "notes": root / "notes.mp4", "read_only": read_only, "broken_bytes": broken,
        "big": make_talking_head_clip(root / "big.mp4", seconds=0.2, fps=25, size=(256, 256), with_audio=False),
        "tiny": tiny_checkpoints,
    }


# id, service keyword overrides, the same on the command line, the same as app arguments, expected message.
SETTINGS_CASES = [
    ("seed 2**70", {"seed": 2**70}, ["--seed", str(2**70)], {"seed": 2**70}, r"Seed must be a whole number from 0 to"),
    ("seed -1", {"seed": -1}, ["--seed", "-1"], {"seed": -1}, r"Seed must be a whole number"),
    ("guidance inf", {"guidance_scale": math.inf}, ["--guidance", "inf"], {"guidance": math.inf},
     r"Audio guidance must be a number from 1 to 3"),
    ("guidance nan", {"guidance_scale": math.nan}, ["--guidance", "nan"], {"guidance": math.nan},
     r"Audio guidance must be .* not nan"),
    ("guidance -1", {"guidance_scale": -1.0}, ["--guidance", "-1"], {"guidance": -1.0},
     r"Audio guidance must be .* not -1"),
    ("steps 0", {"num_inference_steps": 0}, ["--steps", "0"], {"steps": 0}, r"Steps must be a whole number"),
    ("face index -1", {"face_index": -1}, ["--face-index", "-1"], {"face_index": -1}, r"Face index must be"),
]

# The app's sliders (app.py: steps 1-50, audio guidance 1-3): Gradio refuses a value below these itself.
APP_SLIDER_MINIMUM = {"steps": 1, "guidance": 1.0}


def _service(corpus, **kwargs) -> LipSyncService:
    return LipSyncService(corpus["tiny"], device="cpu", max_pixels=MAX_PIXELS, **kwargs)


def _events_until_error(start_job, expected: str) -> list:
    """Start a job (``start_job()``: bad input fails right there) and run it to its error; returns the events
    seen before the error."""
    events = []
    with pytest.raises(InputError, match=expected):
        for event in start_job():
            events.append(event)
    return events


def _cli(capsys, *args: str) -> tuple[int, str]:
    rc = cli_main([*args, "--consent"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


# ------------------------------------------------------------------------------------------------ Python API
@pytest.mark.parametrize("case", SETTINGS_CASES, ids=[c[0] for c in SETTINGS_CASES])
def test_api_refuses_bad_settings_before_loading_models(corpus, case):
    _, overrides, _, _, expected = case
    service = _service(corpus)
    events = _events_until_error(lambda: service.lipsync(corpus["face"], corpus["speech"], corpus["root"] / "out.mp4",
                                                         consent=True, **overrides), expected)
    assert events == [] and service._models == {}  # nothing started, nothing loaded


def test_api_refuses_bad_files_and_outputs_up_front(corpus):
    service, root = _service(corpus), corpus["root"]
    face, speech = corpus["face"], corpus["speech"]
    cases = [
        ((face, corpus["nan"], root / "o.mp4"), r"nan\.wav contains 2 invalid samples \(NaN or infinite"),
        ((corpus["notes"], speech, root / "o.mp4"), r"not a video or audio file.*notes\.mp4"),
        ((face, speech, root / "missing" / "o.mp4"), r"output folder .*missing does not exist"),
        ((face, speech, corpus["read_only"] / "o.mp4"), r"cannot write into the output folder .*: choose a folder"),
        ((face, speech, root), r"is a folder: give a file name"),
        ((face, speech, root / "o.txt"), r"cannot write a video named o\.txt: the output must end in \.mp4"),
        ((face, speech, face), r"also an input"),
        ((corpus["big"], speech, root / "o.mp4"), r"big\.mp4 is 256x256 .*accepts up to 0\.0 megapixels"),
        ((face, None, root / "o.mp4"), r"no speech given"),
    ]
    for (video, audio, out), expected in cases:
        assert _events_until_error(lambda: service.lipsync(video, audio, out, consent=True), expected) == []
    assert service._models == {} and not (root / "missing").exists() and not (root / "o.txt").exists()


def test_api_refuses_callbacks_the_host_does_not_allow(corpus):
    """A REST job's callback_url is checked with the rest of the request (prepare_request): by default no
    destination is allowed; an internal address stays refused when every name is allowed."""
    service, face, speech, out = _service(corpus), corpus["face"], corpus["speech"], corpus["root"] / "o.mp4"
    cases = [
        (None, "http://hooks.example.org/", r"^this server allows no callbacks \(callback_url\)"),
        (CallbackPolicy(("*",), "s"), "http://10.0.0.1/", r"10\.0\.0\.1 is a private, loopback, link-local"),
        (CallbackPolicy(("*",), "s"), "http://[fe80::1]/", r"fe80::1 is a private, loopback, link-local"),
        (CallbackPolicy(("127.0.0.1:9",), "s"), "http://127.0.0.1:10/", r"127\.0\.0\.1:10 is not among the hosts"),
        (CallbackPolicy(("*",), "s"), "javascript:alert(1)", r"must start with http:// or https://"),
    ]
    for policy, url, expected in cases:
        with pytest.raises(InputError, match=expected):
            service.prepare(face, speech, out, consent=True, callback_url=url, callbacks=policy)
    allowed = service.prepare(face, speech, out, consent=True, callback_url="http://127.0.0.1:9/hook",
                              callbacks=CallbackPolicy(("127.0.0.1:9",), "s"))
    assert allowed.callback.addresses == ("127.0.0.1",) and allowed.callback.path == "/hook"
    assert service._models == {}


def _fake_record(output: Path, frames: int = 50, generated: int = 40) -> None:
    """A record beside ``output`` whose fields say ``frames`` output frames, ``generated`` of them lip-synced:
    enough for the checks a redo makes before any work (no job has to run)."""
    import json

    from latentsync_demo.pipeline.record import RECORD_VERSION, REDO_GOP, record_dir
    from latentsync_demo.provenance.manifest import sha256

    folder = record_dir(output)
    folder.mkdir(exist_ok=True)
    for name in ("faces_in.u8", "faces_out.raw", "sources.npy", "matrices.npy", "video.mp4", "audio.wav"):
        (folder / name).write_bytes(b"")
    meta = {"version": RECORD_VERSION, "num_frames": frames, "num_generated": generated, "gop": REDO_GOP,
            "video": "video.mp4", "audio": "audio.wav", "preset": DEFAULT_PRESET, "settings": {},
            "output_sha256": sha256(output)}
    (folder / "job.json").write_text(json.dumps(meta))


def test_redo_refuses_a_gone_record_and_bad_spans_before_any_work(corpus, capsys):
    """A redo of a job whose record is gone, and spans that are reversed, empty, outside the clip or over frames
    that were never lip-synced: one message each, before a model loads (API and CLI)."""
    import shutil

    from latentsync_demo.commands import main as commands_main

    service, root = _service(corpus), corpus["root"]
    lonely = root / "lonely.mp4"
    shutil.copyfile(corpus["face"], lonely)
    with pytest.raises(InputError, match=r"the job record of lonely\.mp4 is gone .*run the job again without "
                                         r"--no-record") as gone:
        service.redo(lonely, 0.2, 0.6, seed=7)
    assert "--" not in user_message(gone.value) and "run the lip-sync again" in user_message(gone.value)  # the web's
    with pytest.raises(InputError, match=r"there is no finished job at .*missing\.mp4"):
        service.redo(root / "missing.mp4", 0.2, 0.6)
    job = root / "job.mp4"
    shutil.copyfile(corpus["face"], job)
    _fake_record(job)  # 2.0 s, lip-synced up to 1.6 s
    for start, end, expected in [(1.0, 0.5, r"0\.5 s is reversed: the end must come after the start"),
                                 (0.5, 0.5, "is empty"), (-1, 0.5, r"outside the clip, which lasts 2\.00 s"),
                                 (0.5, 3.0, "outside the clip"), (0.52, 0.53, "shorter than one frame"),
                                 (1.0, 1.9, r"frames after 1\.60 s were not lip-synced"),
                                 (math.nan, 1.0, "not a pair of numbers")]:
        with pytest.raises(InputError, match=expected):
            service.redo(job, start, end, seed=7)
    with pytest.raises(InputError, match=r"Seed must be"):
        service.redo(job, 0.2, 0.6, seed=-1)
    assert not service._models  # all refused before any model loaded
    for args, expected in [(["--from", str(lonely), "--start", "0.2", "--end", "0.6"],
                            "record of lonely.mp4 is gone (lonely.mp4.job beside it was deleted, or the job ran with "
                            "--no-record; a dialogue, with --speech per face, keeps none yet): a segment can only be "
                            "redone while its record is kept; run the job again without --no-record"),
                           (["--from", str(job), "--start", "1", "--end", "0.5"], "reversed")]:
        assert commands_main(["redo", *args, "--checkpoints", str(corpus["tiny"]), "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err


def _finished_job(service: LipSyncService, corpus, name: str) -> Path:
    out = corpus["root"] / name
    assert list(service.lipsync(corpus["face"], corpus["speech"], out, num_inference_steps=1, consent=True))[-1].stage \
        == "done"
    return out


def test_app_redo_of_a_result_whose_record_is_gone_is_a_note(corpus, tiny_service):
    """The app's Redo works on the page's last finished job: when that job's record, or the result itself, is gone
    (results expire after an hour), or no job ran yet, the note under the Redo button says so in the web's words,
    before any work."""
    import shutil

    from latentsync_demo.app_handlers import DemoHandlers, redo_base
    from latentsync_demo.pipeline.record import record_dir
    from latentsync_demo.settings import GenerationSettings, JobEvent

    on = DemoHandlers(tiny_service)
    job = _finished_job(tiny_service, corpus, "app_job.mp4")
    base = redo_base(JobEvent("done", 1.0, "", output=job, frames=10), GenerationSettings(), DEFAULT_PRESET)
    assert base["job"] == str(job)

    def note(base, start=0.1, end=0.3):
        updates = list(on.redo(base, start, end, 7))
        assert len(updates) == 1 and updates[0][1] == {"__type__": "update"}  # the players untouched
        shown = updates[0][3]
        assert shown["visible"] and "Traceback" not in shown["value"] and "/" not in shown["value"], shown
        return shown["value"]

    assert re.match(r"Give the segment's start and end in seconds \(the result lasts 0\.40 s\)", note(base, None))
    assert re.match(r"The span 0\.3-0\.1 s is reversed", note(base, 0.3, 0.1))
    shutil.rmtree(record_dir(job))
    assert note(base) == ("The job record of app_job.mp4 is gone: a segment can only be redone while its record is "
                          "kept; run the lip-sync again, then redo a segment of the new result")
    job.unlink()
    assert note(base).startswith("This result is no longer on the server (results are kept for an hour)")
    assert note(None).startswith("There is no finished lip-sync result on this page to redo a segment of")


def test_rest_redo_of_a_job_whose_record_is_gone_is_409_naming_the_job(corpus, tiny_service, tmp_path):
    """REST: the job is there (its status answers), so not 404; its record is not, so the redo conflicts with its
    state (409), and the message names the job and how to get a record. The same when the record goes while the
    redo waits in the queue (the redo job fails with that message), and for a redo of a redo."""
    import shutil
    import time

    from fastapi.testclient import TestClient

    from latentsync_demo.pipeline.record import record_dir
    from latentsync_demo.rest import RestAPI

    service = tiny_service
    api = RestAPI(service, root=tmp_path / "jobs")
    client = TestClient(api.app)
    files = {"video": ("face.mp4", corpus["face"].read_bytes()), "audio": ("speech.wav", corpus["speech"].read_bytes())}
    api.manager.start()
    try:
        def submitted(response) -> str:
            assert response.status_code == 202, response.text
            return response.json()["id"]

        def finished(job_id) -> dict:
            deadline = time.time() + 120
            while (status := client.get(f"/jobs/{job_id}").json())["status"] not in ("done", "failed"):
                assert time.time() < deadline, status
                time.sleep(0.05)
            return status

        def refused(job_id, status=409) -> str:
            response = client.post(f"/jobs/{job_id}/redo", data={"start": "0.1", "end": "0.3", "seed": "7"})
            assert response.status_code == status, response.text
            return response.json()["error"]

        first = submitted(client.post("/jobs", files=files, data={"steps": "1", "consent": "true"}))
        assert finished(first)["status"] == "done"
        second = submitted(client.post(f"/jobs/{first}/redo", data={"start": "0.1", "end": "0.3"}))
        assert finished(second)["status"] == "done"
        assert refused(second) == (f"Job {second} is itself a redo (of job {first}), and a redo's result keeps no "
                                   f"job record: redo another segment of job {first} instead (each redo starts from "
                                   "that job's result)")
        with service._run_lock:  # the worker takes the redo, which waits for the accelerator ...
            queued = submitted(client.post(f"/jobs/{first}/redo", data={"start": "0.1", "end": "0.3"}))
            while client.get(f"/jobs/{queued}").json()["status"] != "running":
                time.sleep(0.05)
            assert refused(queued) == f"Job {queued} is running: only a finished job's segment can be redone"
            shutil.rmtree(record_dir(api.manager.root / first / "result.mp4"))  # ... while the record goes
        status = finished(queued)
        expected = (f"The job record of job {first} is gone (%s): submit the job again (POST /api/v1/jobs; every job "
                    "keeps its record until it expires or is deleted), then redo a segment of the new job")
        assert status["status"] == "failed" and status["error"] == expected % (
            "the job was deleted or expired before this redo ran"), status
        assert refused(first) == expected % "its files were removed from the server"
        assert client.get(f"/jobs/{first}").status_code == 200  # the job itself is still there: hence 409, not 404
        assert client.delete(f"/jobs/{first}").status_code == 200
        assert "unknown, expired or deleted" in refused(first, 404)
    finally:
        api.manager.stop()


def test_float_wav_with_nan_is_refused_when_loading_audio(corpus):
    from latentsync_demo.media import load_audio

    with pytest.raises(InputError, match="invalid samples"):
        load_audio(corpus["nan"])
    assert load_audio(corpus["speech"]).dtype == np.float32  # integer PCM is never scanned


def test_unknown_or_absent_devices_are_refused(corpus):
    for device, expected in (("foo", r"unknown device 'foo'"), ("cuda:7", r"cuda:7"), ("gpu", "unknown device")):
        if device.startswith("cuda") and __import__("torch").cuda.device_count() > 7:
            continue
        with pytest.raises(InputError, match=expected):
            _service(corpus).__class__(corpus["tiny"], device=device)


def test_face_index_beyond_the_faces_says_how_many_there_are(corpus):
    service = _service(corpus)
    def job():
        return service.lipsync(corpus["two"], corpus["speech"], corpus["root"] / "o.mp4", face_index=5,
                               num_inference_steps=1, consent=True)

    events = _events_until_error(job, r"Face index 5 .* the video shows at most 2 faces: choose 0 \(the largest\) to 1")
    # Known only once the face pass has seen every frame; the streaming job encodes the audio meanwhile, but no
    # chunk is generated.
    assert "generating" not in {e.stage for e in events}


def test_a_face_index_no_thumbnail_showed_is_refused_before_work(corpus):
    """The app lists the faces of an upload (thumbnails to click); an index none of them showed is refused with
    the indices that were shown, before any model loads, through the API and the app's handler alike."""
    from latentsync_demo.app_handlers import DemoHandlers

    service = _service(corpus)
    expected = r"Face index 2 is not one of the faces found in the video's first seconds: choose 0 or 1"
    assert _events_until_error(lambda: service.lipsync(corpus["two"], corpus["speech"], corpus["root"] / "o.mp4",
                                                       face_index=2, shown_faces=(0, 1), consent=True), expected) == []
    on = DemoHandlers(service)
    _, listed, _ = on.list_faces(str(corpus["two"]), None, "LatentSync 1.5 · 256 px", "auto")
    assert listed["faces"] == [0, 1]
    updates = list(on.lipsync(str(corpus["two"]), str(corpus["speech"]), "LatentSync 1.5 · 256 px", "DDIM (quality)",
                              1, 1.5, 1247, 2, "pingpong", consent=True, listed_faces=listed))
    note = updates[-1][6]
    assert len(updates) == 1 and note["visible"] and re.match(expected, note["value"]), updates
    assert "click a face's thumbnail" in note["value"] and service._models == {}


def test_speech_tracks_per_face_are_checked_before_work(corpus, capsys):
    """A dialogue (a speech track per face): a track for a face the listing did not show, or that the video's
    first seconds do not show; two tracks for one face; tracks beside the single audio or a voice mode; a bad
    FACE=FILE; a missing, corrupt or soundless track. One message each, before a model loads (API and CLI)."""
    service, root = _service(corpus), corpus["root"]
    two, speech = corpus["two"], corpus["speech"]
    cases = [
        ({"speech": {0: speech, 3: speech}}, r"speech track for face 3, but the video's first seconds show no such "
                                             r"face: give speech tracks to face 0 or 1"),
        ({"speech": {0: speech, 1: speech}, "shown_faces": (0,)}, r"speech track for face 1, .*to face 0 \("),
        ({"speech": [f"0={speech}", f"1={speech}", f"0={corpus['nan']}"]},
         r"face 0 has two speech tracks \(speech\.wav and nan\.wav\)"),
        ({"speech": {0: speech, 1: speech}, "audio": speech}, r"either one speech audio .* or a speech track per face"),
        ({"speech": {0: speech, 1: speech}, "voice": VoiceRequest("revoice")}, r"cannot be combined with a voice mode"),
        ({"speech": ["speech.wav"]}, r"FACE=FILE, e\.g\. 0=alice\.wav .* not 'speech\.wav'"),
        ({"speech": [f"left={speech}"]}, r"FACE=FILE"),
        ({"speech": {0: speech, 1: root / "gone.wav"}}, r"file not found: .*gone\.wav"),
        ({"speech": {0: speech, 1: corpus["notes"]}}, r"not a video or audio file.*notes\.mp4"),
        ({"speech": {0: speech, 1: corpus["big"]}}, r"big\.mp4 has no sound"),
        ({"speech": {4: speech}}, r"speech track for face 4, .*give speech tracks to face 0 or 1"),
    ]
    for kwargs, expected in cases:
        kwargs = {"audio": None, **kwargs}
        audio = kwargs.pop("audio")
        with pytest.raises(InputError, match=expected):
            service.lipsync(two, audio, root / "o.mp4", consent=True, **kwargs)
    assert service._models == {}
    base = ["--checkpoints", str(corpus["tiny"]), "--device", "cpu", "--video", str(two), "--out", str(root / "c.mp4")]
    for extra, expected in [(["--speech", f"0={speech}", "--speech", f"0={speech}"], "face 0 has two speech tracks"),
                            (["--speech", f"0={speech}", "--audio", str(speech)], "or a speech track per face, not both"),
                            (["--speech", f"1={speech}", "--speech", f"7={speech}"], "speech track for face 7"),
                            (["--speech", "0:speech.wav"], "FACE=FILE")]:
        rc, err = _cli(capsys, *base, *extra)
        assert rc == 2 and expected in err, (extra, err)


# ------------------------------------------------------------------------------------------------------ CLI
@pytest.mark.parametrize("case", SETTINGS_CASES, ids=[c[0] for c in SETTINGS_CASES])
def test_cli_refuses_bad_settings_with_exit_code_2(corpus, capsys, case):
    _, _, args, _, expected = case
    rc, err = _cli(capsys, "--checkpoints", str(corpus["tiny"]), "--device", "cpu", "--video", str(corpus["face"]),
                   "--audio", str(corpus["speech"]), "--out", str(corpus["root"] / "cli.mp4"), *args)
    assert rc == 2 and err.startswith("error: ") and re.search(expected, err), err


def test_cli_refuses_bad_devices_files_and_outputs(corpus, capsys):
    root = corpus["root"]
    base = ["--checkpoints", str(corpus["tiny"]), "--video", str(corpus["face"]), "--audio", str(corpus["speech"])]
    cases = [
        (["--device", "foo", "--out", str(root / "c.mp4")], r"unknown device 'foo'"),
        (["--device", "cuda:7", "--out", str(root / "c.mp4")], r"cuda:7"),
        (["--out", str(root / "c.txt")], r"must end in \.mp4"),
        (["--out", str(root)], r"is a folder"),
        (["--out", str(corpus["read_only"] / "c.mp4")], r"cannot write into the output folder"),
        (["--audio", str(corpus["nan"]), "--out", str(root / "c.mp4")], r"invalid samples"),
        (["--video", str(corpus["two"]), "--face-index", "5", "--steps", "1", "--out", str(root / "c.mp4")],
         r"shows at most 2 faces"),
    ]
    for extra, expected in cases:
        rc, err = _cli(capsys, *base, *extra)
        assert rc == 2 and re.search(expected, err), (extra, err)


def test_cli_creates_a_missing_output_folder(corpus, capsys):
    out = corpus["root"] / "new" / "deeper" / "cli.mp4"
    rc, err = _cli(capsys, "--checkpoints", str(corpus["tiny"]), "--device", "cpu", "--video", str(corpus["face"]),
                   "--audio", str(corpus["speech"]), "--out", str(out), "--steps", "1")
    assert rc == 0 and out.is_file(), err


# ------------------------------------------------------------------------------------------- web messages
def test_user_message_shows_uploaded_names_not_server_paths():
    exc = InputError("file not found: /tmp/gradio/3f2a9c/My clip.mp4. Check; see https://coqui.ai/cpml",
                     web=None)
    assert user_message(exc, {"/tmp/gradio/3f2a9c/My clip.mp4": "My clip.mp4"}) == (
        "file not found: My clip.mp4. Check; see https://coqui.ai/cpml")
    assert user_message(InputError("no audio in /srv/x/y/speech.wav.")) == "no audio in speech.wav."
    assert user_message(LatentSyncError("run python -m x --flag", web="press the button")) == "press the button"


def test_messages_shown_on_their_own_start_with_a_capital_but_keep_file_names():
    assert as_sentence("no speech given: upload it.") == "No speech given: upload it."
    assert as_sentence("video: unsupported file type '.exe'") == "Video: unsupported file type '.exe'"
    assert as_sentence("clip.MOV is not a video") == "clip.MOV is not a video"  # the name as uploaded
    assert as_sentence("/sync takes clips up to 20 s") == "/sync takes clips up to 20 s"


@pytest.fixture(scope="module")
def app(corpus, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad_inputs_app")
    proc, url = _start_app(corpus["tiny"], tmp, "--max-seconds", "3", "--max-pixels", str(MAX_PIXELS))
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def _app_error(client: Client, video, audio, **settings) -> str:
    args = dict(preset_label="LatentSync 1.5 · 256 px", sampler_label="DDIM (quality)", steps=1, guidance=1.5,
                seed=1247, face_index=0, length_mode="pingpong")
    args.update(settings)
    job = client.submit(handle_file(str(video)), handle_file(str(audio)), *args.values(), consent=True, api_name="/lipsync")
    updates = list(job)
    try:
        job.result()
    except Exception as exc:  # Gradio's own range checks, before the handler runs, still raise
        message = str(exc)
    else:  # the app's refusals are the note by the consent box (its last update, results untouched)
        last = updates[-1]
        assert last[3] == {"__type__": "update"} and last[6]["visible"] is True, last
        message = last[6]["value"]
    assert "Something went wrong" not in message and "Traceback" not in message
    assert "/tmp" not in message and not re.search(r"(^|\s)--[a-z]", message), message
    return message


def test_app_endpoint_refuses_the_corpus_with_clear_messages(app, corpus):
    client = Client(app, verbose=False)
    for name, _, _, settings, expected in SETTINGS_CASES:
        if any(isinstance(v, float) and not math.isfinite(v) for v in settings.values()):
            continue  # JSON cannot carry NaN or infinity: no browser or API client can send them
        message = _app_error(client, corpus["face"], corpus["speech"], **settings)
        # Sliders are range-checked by Gradio itself before the handler runs, with its own clear message;
        # every other field reaches the app's own check.
        below_slider = any(k in APP_SLIDER_MINIMUM and v < APP_SLIDER_MINIMUM[k] for k, v in settings.items())
        pattern = r"less than minimum value 1" if below_slider else expected
        assert re.search(pattern, message), (name, message)
    files = [
        (corpus["face"], corpus["nan"], r"nan\.wav contains 2 invalid samples"),
        (corpus["notes"], corpus["speech"], r"notes\.mp4 is not a video or audio file this app can read"),
        (corpus["big"], corpus["speech"], r"big\.mp4 is 256x256"),
        (corpus["two"], corpus["speech"], r"Face index 5 .* at most 2 faces"),
    ]
    for video, audio, expected in files:
        extra = {"face_index": 5} if video == corpus["two"] else {}
        message = _app_error(client, video, audio, **extra)
        assert re.search(expected, message), message
    # ... and the server still serves a good request afterwards
    job = client.submit(handle_file(str(corpus["face"])), handle_file(str(corpus["speech"])),
                        "LatentSync 1.5 · 256 px", "DDIM (quality)", 1, consent=True, api_name="/lipsync")
    assert list(job)[-1][0].startswith("**Done**")


def test_a_flat_official_set_serves_only_its_own_preset(tmp_path):
    """Files directly in checkpoints/ (the official release's flat layout) are one 256 px set: LatentSync 1.6
    must not silently run on them, and its error says where its own files go."""
    from latentsync_demo.errors import CheckpointError
    from latentsync_demo.store import resolve

    (tmp_path / "whisper").mkdir()
    for name in ("latentsync_unet.pt", "whisper/tiny.pt"):
        (tmp_path / name).write_bytes(b"weights")
    assert resolve("latentsync-1.5", tmp_path).folder == tmp_path
    other = resolve("latentsync-1.6", tmp_path)
    assert other.folder == tmp_path / "latentsync-1.6" and other.resolution == 512
    with pytest.raises(CheckpointError, match=r"holds a 256 px set, used for LatentSync 1\.5.*needs its own files"):
        other.require()
