"""The web app's handlers called directly, without a server (tests/test_app.py drives the real app)."""

import inspect
import math
import re
import threading
import time
import types
from pathlib import Path

import gradio as gr
import pytest

from latentsync_demo import space
from latentsync_demo.app_handlers import (
    GUIDANCE_INFO, SCORE_WEIGHTS_GONE, DemoHandlers, LipSyncForm, collect_settings, lipsync_gpu_seconds,
    progress_line, redo_gpu_seconds,
)
from latentsync_demo.errors import CheckpointError
from latentsync_demo.service import LipSyncService
from latentsync_demo.testing.media import make_speech_wav, make_talking_head_clip


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("handler_media")
    return {
        "video": make_talking_head_clip(root / "face.mp4", seconds=0.8, fps=25, size=(128, 128)),
        "speech": make_speech_wav(root / "speech.wav", seconds=0.8),  # 20 frames -> 2 chunks
        "four_s": make_speech_wav(root / "four.wav", seconds=4.0),
        "minute": make_speech_wav(root / "minute.wav", seconds=60.0),
        "text": _write(root / "notes.mp4", "this is not a video"),
    }


def _write(path, text):
    path.write_text(text)
    return path


def _session(name="s1"):
    return types.SimpleNamespace(session_hash=name)  # what the handlers read from a gr.Request


def _error_text(info) -> str:
    return info.value.message if isinstance(info.value, gr.Error) else str(info.value)


def test_collect_settings_maps_labels_and_whole_floats():
    settings = collect_settings(8.0, 1.5, 42.0, 1.0, "loop", "UniPC · 8 steps (fast)", "mediapipe", deepcache=0)
    assert (settings.sampler, settings.num_inference_steps, settings.seed, settings.face_index) == ("unipc", 8, 42, 1)
    assert all(type(v) is int for v in (settings.num_inference_steps, settings.seed, settings.face_index))
    assert (settings.length_mode, settings.landmarks, settings.deepcache) == ("loop", "mediapipe", False)
    # Empty widgets fall back to the defaults; a fractional or unknown value is left for validation to refuse.
    empty = collect_settings(2.5, 1.0, None, 0, "", "lcm", None)
    assert (empty.length_mode, empty.landmarks, empty.deepcache, empty.num_inference_steps) == (None, "auto", True,
                                                                                                 2.5)
    assert empty.sampler == "lcm" and empty.seed is None


def test_gpu_seconds_follows_clip_length_sampler_steps_and_preset(media):
    # 4 s = 100 frames = 7 chunks of 16; DDIM's 20 steps with guidance = 280 UNet rows.
    frames, rows = 100, math.ceil(100 / 16) * 20 * 2
    assert space.gpu_seconds(media["four_s"], "latentsync-1.5", "ddim", None) == int(15 + 0.05 * frames + 1.5 * rows
                                                                                     * 0.06)
    assert space.gpu_seconds(media["four_s"], "latentsync-1.6", "ddim", 20) == int(15 + 0.05 * frames + 1.5 * rows
                                                                                   * 0.2)
    # 4-step LCM (no guidance) is short: the floor; a minute on the 512 px model: the cap; bad input: the floor.
    assert space.gpu_seconds(media["four_s"], "latentsync-1.5", "lcm", None) == space.GPU_MIN_SECONDS
    assert space.gpu_seconds(media["minute"], "latentsync-1.6", "ddim", 20) == space.GPU_MAX_SECONDS
    assert space.gpu_seconds(media["text"], "latentsync-1.6", "ddim", 20) == space.GPU_MIN_SECONDS


def test_gpu_seconds_reads_the_lipsync_handlers_own_arguments(media, tiny_service):
    """ZeroGPU calls the duration function with every argument of the handler (labels, not names)."""
    args = (str(media["video"]), str(media["four_s"]), "LatentSync 1.6 · 512 px", "DDIM (quality)", 20, 1.5, 1247,
            0, "pingpong", "Off: use the uploaded speech", None, None, None, "auto", {}, True, True, "seamless")
    inspect.signature(DemoHandlers(tiny_service).lipsync).bind(*args, request=None)  # the handler's arity
    assert lipsync_gpu_seconds(*args, request=None) == space.gpu_seconds(media["four_s"], "latentsync-1.6", "ddim", 20)
    # The sampler's label decides the default steps and guidance (UniPC: 8, DDIM: 20).
    unipc = lipsync_gpu_seconds(str(media["video"]), str(media["four_s"]), "LatentSync 1.6 · 512 px",
                                "UniPC · 8 steps (fast)", None)
    assert unipc == space.gpu_seconds(media["four_s"], "latentsync-1.6", "unipc", None) < \
        space.gpu_seconds(media["four_s"], "latentsync-1.6", "ddim", None)
    # A second speaker (dialogue): each face is generated, twice the UNet rows.
    two = lipsync_gpu_seconds(*args, None, None, str(media["four_s"]), request=None)
    assert two == space.gpu_seconds(media["four_s"], "latentsync-1.6", "ddim", 20, faces=2) > \
        space.gpu_seconds(media["four_s"], "latentsync-1.6", "ddim", 20)
    # No speech: the video's length counts.
    assert lipsync_gpu_seconds(str(media["video"]), None, "LatentSync 1.5 · 256 px", "DDIM (quality)", 20) == \
        space.gpu_seconds(media["video"], "latentsync-1.5", "ddim", 20)


def test_redo_gpu_seconds_reads_the_redo_handlers_own_arguments(tiny_service):
    """A redo borrows the GPU for its span's frames, with the job's preset and sampler unless it changes them."""
    base = {"job": "x.mp4", "seconds": 60.0, "seed": 1, "sampler": "ddim", "steps": 20, "preset": "latentsync-1.6"}
    args = (base, 2.0, 52.0, 7, 0, "Same as the job")  # 0 steps: the job's
    inspect.signature(DemoHandlers(tiny_service).redo).bind(*args, request=None)  # the handler's arity
    assert redo_gpu_seconds(*args, request=None) == space.frames_gpu_seconds(50 * 25, "latentsync-1.6", "ddim", 20)
    assert redo_gpu_seconds(base, 2.0, 52.0, 7, 4, "LCM · 4 steps (speed)") == \
        space.frames_gpu_seconds(50 * 25, "latentsync-1.6", "lcm", 4) < redo_gpu_seconds(*args)
    assert redo_gpu_seconds(None, None, 1.0, 7) == space.GPU_MIN_SECONDS  # nothing to redo: the handler says so


def test_progress_line_adds_an_eta_once_a_quarter_is_done():
    assert progress_line("Reading", 0.1, 5) == "**Reading** · 10% · 0:05 elapsed"
    assert progress_line("Generating chunk 2 of 2", 0.5, 65) == \
        "**Generating chunk 2 of 2** · 50% · 1:05 elapsed · about 1:05 left"


def test_lipsync_streams_chunks_then_the_videos(tiny_service, media):
    handlers = DemoHandlers(tiny_service)
    calls = []
    updates = list(handlers.lipsync(str(media["video"]), str(media["speech"]), "LatentSync 1.5 · 256 px",
                                    "DDIM (quality)", 2.0, 1.5, 1247.0, 0.0, "pingpong", consent=True,
                                    request=_session(), progress=lambda fraction, desc: calls.append(desc)))
    labels = [re.match(r"\*\*(.+?)\*\* · \d+% · \d+:\d\d elapsed", u[0]) for u in updates[:-1]]
    assert all(labels), [u[0] for u in updates]
    chunk_labels = [m[1] for m in labels if m[1].startswith(("Generating", "Writing"))]
    assert list(dict.fromkeys(chunk_labels)) == [  # a step slower than a second repeats its label (the clock ticks)
        "Generating chunk 1 of 2", "Generating chunk 2 of 2", "Writing the video"]
    assert calls == [m[1] for m in labels]  # the progress bar follows the status line
    assert sum(not isinstance(u[1], dict) for u in updates) == 2  # one preview image per chunk
    status, _, compare, result, download, _, note, subtitles, redo_base = updates[-1]
    assert subtitles == {"__type__": "update", "value": None, "visible": False}  # not a dub: no .srt
    assert note == {"__type__": "update", "value": "", "visible": False}  # no note from an earlier mistake
    assert status.startswith("**Done** · 20 frames") and "DDIM 2 steps" in status
    assert result == download and result.endswith("face_lipsync.mp4") and compare.endswith("face_side_by_side.mp4")
    # What "Redo a segment" works on (a State): the result with its record, its length and settings.
    assert redo_base == {"job": result, "seconds": 0.8, "seed": 1247, "sampler": "ddim", "steps": 2,
                         "preset": "latentsync-1.5"}
    assert all(u[7] == u[8] == gr.update() for u in updates[:-1])  # the .srt and the redo base come at the end
    group, start, end, seed, redo_status, *_ = handlers.redo_controls(redo_base)
    assert group["visible"] and end == gr.update(value=0.8, minimum=0, maximum=0.8) and seed["value"] == 1248
    assert "lasts 0.80 s" in redo_status and handlers.redo_controls(None)[0] == gr.update(visible=False)
    assert handlers.stops == {}  # the stop switch is dropped with the job


def test_stop_pressed_while_queued_ends_the_job_before_it_starts(tiny_service, media):
    handlers = DemoHandlers(tiny_service)
    assert handlers.request_stop(_session()) == "**Stopped** before it started."
    updates = list(handlers.lipsync(str(media["video"]), str(media["speech"]), "LatentSync 1.5 · 256 px",
                                    "DDIM (quality)", 2, 1.5, 1247, 0, "pingpong", consent=True, request=_session()))
    assert [u[0] for u in updates] == ["**Stopped** before it started."] and not handlers.stop_early
    handlers.request_stop(_session("s2"))
    handlers.arm(_session("s2"))  # a new click forgets the earlier Stop
    assert not handlers.stop_early


def _refused(handlers, video, audio, consent=True):
    """The one update a refused request gets: the note by the consent box; the result panels untouched."""
    updates = list(handlers.lipsync(str(video), str(audio), "LatentSync 1.5 · 256 px", "DDIM (quality)", 2, 1.5,
                                    1247, 0, "pingpong", consent=consent, request=_session()))
    assert len(updates) == 1
    status, *results, note, subtitles, redo_base = updates[0]
    assert subtitles == gr.update()
    assert redo_base == gr.update()  # the page's last result, if any, can still be redone
    assert status == "Results appear here." and all(r == gr.update() for r in results)  # no error badges
    assert note["visible"] is True
    return note["value"]


def test_bad_upload_is_a_note_naming_the_upload_without_server_paths(tiny_service, media):
    text = _refused(DemoHandlers(tiny_service), media["text"], media["speech"])
    assert text.startswith("notes.mp4 is not a video or audio file this app can read")
    assert str(media["text"].parent) not in text and "Traceback" not in text


def test_missing_consent_is_a_note_at_the_box_in_the_web_words(tiny_service, media):
    text = _refused(DemoHandlers(tiny_service), media["video"], media["speech"], consent=False)
    assert text.startswith("**Tick the consent box above first.**") and "API" not in text


def test_unexpected_failure_is_a_short_message_and_the_switch_is_dropped(tiny_service, media, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError(f"CUDA went away while reading {media['video']}")
        yield

    monkeypatch.setattr(tiny_service, "run", broken)
    handlers = DemoHandlers(tiny_service)
    with pytest.raises(gr.Error) as info:
        list(handlers.lipsync(str(media["video"]), str(media["speech"]), "LatentSync 1.5 · 256 px", "DDIM (quality)",
                              2, 1.5, 1247, 0, "pingpong", consent=True, request=_session()))
    text = _error_text(info)
    assert text.startswith("Something went wrong on the server (RuntimeError)") and "face.mp4" not in text
    assert handlers.stops == {}


def test_missing_weights_turn_lipsync_off_and_name_the_files(tmp_path):
    service = LipSyncService(tmp_path / "empty", device="cpu")
    note, button, run = DemoHandlers(service, allow_download=True).weights_note("LatentSync 1.5 · 256 px")
    assert note["visible"] and "model weights for LatentSync 1.5 · 256 px are missing" in note["value"]
    assert all(f"`{path.name}`" in note["value"] for path in service.missing_files("latentsync-1.5"))
    assert button["visible"] and run["interactive"] is False
    note, button, _ = DemoHandlers(service, allow_download=False).weights_note("LatentSync 1.5 · 256 px")
    assert "The host adds them" in note["value"] and button["visible"] is False
    with pytest.raises(gr.Error, match="Downloads are turned off"):
        DemoHandlers(service, allow_download=False).download("LatentSync 1.5 · 256 px")
    # No distilled student here: LCM is not offered, and a stale LCM choice falls back to DDIM.
    sampler, steps, guidance = DemoHandlers(service).sampler_widgets("LatentSync 1.5 · 256 px",
                                                                     "LCM · 4 steps (speed)")
    assert "LCM · 4 steps (speed)" not in sampler["choices"] and sampler["value"] == "DDIM (quality)"
    assert steps["value"] == 20 and guidance["interactive"] is True


def test_lcm_sampler_sets_its_steps_and_turns_guidance_off(tiny_service):
    sampler, steps, guidance = DemoHandlers(tiny_service).sampler_widgets("LatentSync 1.5 · 256 px",
                                                                          "LCM · 4 steps (speed)")
    assert sampler["value"] == "LCM · 4 steps (speed)" and len(sampler["choices"]) == 4
    assert (steps["value"], steps["maximum"], guidance["interactive"]) == (4, 8, False)
    assert guidance["info"].startswith("Not used by LCM: its distilled model has the guidance built in")  # why grey
    assert DemoHandlers(tiny_service).sampler_widgets("LatentSync 1.5 · 256 px", "DDIM (quality)")[2] == gr.update(
        interactive=True, info=GUIDANCE_INFO)


def test_an_unreadable_video_leaves_the_player_with_advice_for_a_video(tiny_service, media):
    """Issue 21: a corrupt upload was told to re-export "as MP4 or WAV", and its player showed NaN:NaN."""
    with pytest.warns(UserWarning) as said:  # gr.Warning outside a running app
        video, sources, notice = DemoHandlers(tiny_service).show_upload(str(media["text"]), {}, _session())
    assert video is None and sources == {} and notice["visible"] is False  # taken out of the player
    text = next(str(w.message) for w in said if "notes.mp4" in str(w.message))
    assert text.startswith("notes.mp4 is not a video or audio file") and "Export it again as MP4 and" in text
    assert "WAV" not in text


def test_the_score_is_asked_for_under_advanced_and_its_weights_fetched_then(tiny_service, monkeypatch):
    """Issue 21: no download button after every job; ticking the score is what fetches its weights."""
    handlers = DemoHandlers(tiny_service)
    missing = tiny_service.metric_files_missing()
    assert any(path.name == "syncnet_v2.model" for path in missing)  # the tiny set has no scoring weights
    done = "**Done** · 20 frames"
    # Not asked for (the default), or the job did not finish: no score and nothing said.
    assert handlers.score_result(done, "v.mp4", "a.wav", "r.mp4", {}, False) == gr.update(value="", visible=False)
    assert handlers.score_result("Results appear here.", "v.mp4", "a.wav", "r.mp4", {}, True)["visible"] is False
    fetched = []
    monkeypatch.setattr(tiny_service, "download_metric_weights", lambda: fetched.append(True))
    assert handlers.score_option(False) == (gr.update(), gr.update(value="", visible=False)) and fetched == []
    box, note = handlers.score_option(True)
    assert fetched == [True] and box == gr.update() and "Scoring weights downloaded" in note["value"]

    def offline():
        raise CheckpointError("could not download syncnet_v2.model: offline",
                              web="could not download syncnet_v2.model (this server is offline).")

    monkeypatch.setattr(tiny_service, "download_metric_weights", offline)
    box, note = handlers.score_option(True)
    assert box == gr.update(value=False)  # unticked, and the note says why
    assert note["value"] == "**No lip-sync score:** Could not download syncnet_v2.model (this server is offline)."
    box, note = DemoHandlers(tiny_service, allow_download=False).score_option(True)
    assert box == gr.update(value=False) and note["value"] == SCORE_WEIGHTS_GONE
    # Asked for, weights still missing: the score's place says so instead of a number.
    assert handlers.score_result(done, "v.mp4", "a.wav", "r.mp4", {}, True) == gr.update(value=SCORE_WEIGHTS_GONE,
                                                                                      visible=True)


@pytest.mark.parametrize("click", ["before the preview", "on the preview's path", "on Gradio's cached copy"])
def test_the_job_reads_the_original_upload_behind_a_browser_preview(tiny_service, tmp_path, click):
    """A phone clip (HEVC) is shown as a smaller H.264 preview; whenever Lip-sync is clicked, the job reads the
    upload at its own size (issue 21: a click after the preview replaced the widget's value got the preview)."""
    from latentsync_demo.media import probe

    upload = make_talking_head_clip(tmp_path / "phone.mov", seconds=0.8, fps=25, size=(96, 128),
                                    video_codec="libx265")
    handlers = DemoHandlers(tiny_service)
    handlers.preview_max_height = 64  # as the 720p preview of a 1080x1920 clip: smaller than the upload
    assert handlers.preview_notice(str(upload))["visible"] is True  # the spinner is explained at once
    preview, sources, notice = handlers.show_upload(str(upload), {}, _session())
    assert notice["visible"] is False  # and the words go with it
    assert (probe(preview).width, probe(preview).height) == (48, 64)
    # What the next event receives as the widget's value: Gradio serves the preview from its cache (a copy at
    # another path), which is what the browser then sends back.
    cached = gr.Video().move_resource_to_block_cache(preview)
    assert cached != preview and Path(cached).read_bytes() == Path(preview).read_bytes()
    shown = {"before the preview": str(upload), "on the preview's path": preview,
             "on Gradio's cached copy": cached}[click]
    form = LipSyncForm(shown, str(_speech(tmp_path)), "LatentSync 1.5 · 256 px", "DDIM (quality)", 1, 1.5,
                       1247, 0, "pingpong", sources=sources if click != "before the preview" else {}, consent=True)
    job, _, _ = handlers.start_job(form, threading.Event())
    events = list(job)
    result = probe(events[-1].output)
    assert events[-1].stage == "done" and (result.width, result.height) == (96, 128)
    assert form.display_names()[str(shown)] == "phone.mov"  # errors name the upload, never the preview


def _speech(folder):
    return make_speech_wav(folder / "speech.wav", seconds=0.8)


def test_user_mistakes_are_one_log_line_and_faults_keep_their_traceback(tiny_service, media, monkeypatch, caplog):
    """Issue 21, item 7: the server log says a user's mistake in one line; a real fault keeps its traceback."""
    handlers = DemoHandlers(tiny_service)
    with caplog.at_level("INFO", logger="latentsync_demo"):
        _refused(handlers, media["text"], media["speech"])
        _refused(handlers, media["video"], media["speech"], consent=False)
    records = [r for r in caplog.records if r.name.startswith("latentsync_demo")]
    assert [(r.levelname, r.exc_info) for r in records] == [("WARNING", None)] * 2
    first = records[0].getMessage()
    assert "InputError" in first and "notes.mp4" in first and "\n" not in first
    assert "ConsentError" in records[1].getMessage()

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA went away")
        yield

    monkeypatch.setattr(tiny_service, "run", broken)
    caplog.clear()
    with caplog.at_level("INFO", logger="latentsync_demo"), pytest.raises(gr.Error):
        list(handlers.lipsync(str(media["video"]), str(media["speech"]), "LatentSync 1.5 · 256 px",
                              "DDIM (quality)", 2, 1.5, 1247, 0, "pingpong", consent=True, request=_session()))
    faults = [r for r in caplog.records if r.name.startswith("latentsync_demo")]
    assert len(faults) == 1 and faults[0].levelname == "ERROR" and faults[0].exc_info[0] is RuntimeError


def test_the_end_summary_says_what_was_looped(tiny_service, tmp_path):
    """Issue 21, item 6: a 0.2 s clip looped to 0.8 s of speech is told in the status line's summary."""
    clip = make_talking_head_clip(tmp_path / "blink.mp4", seconds=0.2, fps=25, size=(128, 128))
    updates = list(DemoHandlers(tiny_service).lipsync(str(clip), str(_speech(tmp_path)), "LatentSync 1.5 · 256 px",
                                                      "DDIM (quality)", 1, 1.5, 1247, 0, "pingpong", consent=True,
                                                      request=_session()))
    status = updates[-1][0]
    assert status.startswith("**Done**") and status.endswith(
        "\n\nLooped: the 0.2 s video played back and forth to cover 0.8 s of speech.")


def test_the_status_clock_ticks_and_the_eta_counts_down_during_a_slow_step(tiny_service, tmp_path):
    """Issue 21, item 2: the status line is the one progress display; while a step runs without events its
    elapsed time keeps moving and its ETA goes down, never up."""
    from latentsync_demo.app_handlers import ticking
    from latentsync_demo.settings import JobEvent

    def slow_job():
        time.sleep(1.0)
        yield JobEvent("generating", 0.5, "generated chunk 1 of 2", chunk=1, num_chunks=2)
        time.sleep(2.6)  # a slow chunk: no event for 2.6 s
        yield JobEvent("done", 1.0, "wrote it", output=tmp_path / "out.mp4", frames=20, compare=tmp_path / "c.mp4")

    handlers = DemoHandlers(tiny_service)
    settings = collect_settings(20, 1.5, 1247, 0, "pingpong", "DDIM (quality)", "auto")
    calls = []
    lines = [u[0] for u in handlers._follow(ticking(slow_job(), 0.25), settings, "latentsync-1.5",
                                            threading.Event(), lambda fraction, desc: calls.append(desc))]
    during = [re.match(r"\*\*Generating chunk 2 of 2\*\* · 50% · 0:0(\d) elapsed · about 0:0(\d) left", line)
              for line in lines if line.startswith("**Generating chunk 2")]
    assert len(during) >= 8 and all(during), lines
    elapsed, left = [int(m[1]) for m in during], [int(m[2]) for m in during]
    assert elapsed == sorted(elapsed) and elapsed[0] == 1 and elapsed[-1] == 3  # it ticks
    assert left == sorted(left, reverse=True) and left[0] == 1 and left[-1] == 0  # counts down from the pace
    assert lines[-1].startswith("**Done**") and len(calls) == len(lines) - 1


def test_ticking_hands_a_jobs_error_to_the_caller_and_closes_the_job():
    from latentsync_demo.app_handlers import ticking

    closed = threading.Event()

    def failing():
        try:
            yield "first"
            raise ValueError("disk full")
        finally:
            closed.set()

    events = ticking(failing(), 5.0)
    assert next(events) == "first"
    with pytest.raises(ValueError, match="disk full"):
        next(events)
    assert closed.wait(5)
