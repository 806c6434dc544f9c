"""The app's translate mode (issue 25), on a real server with tiny random lip-sync, Whisper, M2M100 and XTTS
models: "Transcribe & translate" fills the transcript table, an edited translation is what the job speaks and
subtitles (the .srt offered beside the result, a mov_text track in the MP4), through gradio_client and in Chromium.
"""

import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from test_app import SERVER_LOGS, _browser_or_skip, _launch, _start_app

from latentsync_demo.media import mux
from latentsync_demo.media.ffmpeg import ffmpeg_exe
from latentsync_demo.media.subtitles import read_srt
from latentsync_demo.testing.media import make_talking_head_clip
from latentsync_demo.testing.tiny_checkpoints import write_tiny_checkpoints

TRANSLATE = "Translate: dub into another language"


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("dub_app_media")
    # 4 s: voice cloning wants at least 3 s of the speaker's speech
    clip = make_talking_head_clip(root / "clip.mp4", seconds=4.0, fps=25, size=(128, 128))
    mute = make_talking_head_clip(root / "mute.mp4", seconds=1.0, fps=25, size=(128, 128), with_audio=False)
    return {"clip": clip, "silent": mux(mute, np.zeros(16000, np.float32), root / "silent.mp4")}


@pytest.fixture(scope="module")
def dub_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dub_app")
    checkpoints = write_tiny_checkpoints(tmp / "checkpoints", voice=True)
    proc, url = _start_app(checkpoints, tmp, "--max-seconds", "5")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def _subtitle_streams(path) -> list[str]:
    """The subtitle streams ffmpeg lists for ``path`` ("Stream #0:2(spa): Subtitle: mov_text ...")."""
    text = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    return [line.strip() for line in text.splitlines() if "Subtitle:" in line]


def test_transcribe_then_generate_an_edited_row_through_the_api(dub_app, media):
    client = Client(dub_app, verbose=False)
    table, note = client.predict(handle_file(str(media["clip"])), None, "es", None, api_name="/transcribe")
    rows = table["data"]
    assert table["headers"] == ["start", "end", "original", "translation"] and rows, table
    assert all(0 <= start < end <= 4.0 and original.strip() and text.strip() for start, end, original, text in rows)
    assert note["visible"] and f"{len(rows)} segment" in note["value"] and "→ es" in note["value"]
    transcribed = [row[:3] for row in rows]
    edited = [[start + 0.5, end, "changed by hand", f"frase editada {i}"] for i, (start, end, _, _) in enumerate(rows)]
    job = client.submit(handle_file(str(media["clip"])), None, voice_label=TRANSLATE, target_language="es",
                        dub_table={"headers": table["headers"], "data": edited}, steps=1, consent=True,
                        api_name="/lipsync")
    updates = list(job)
    job.result()
    status, *_, result, _, _, note, subtitles = updates[-1]
    assert status.startswith("**Done**") and not note["visible"], updates[-1]
    assert subtitles["visible"] and Path(subtitles["value"]).name == "clip_lipsync.srt"
    cues = read_srt(Path(subtitles["value"]).read_text())
    assert [c.text for c in cues] == [row[3] for row in edited]  # the edited translations are what was spoken
    # Only the translation column counts: the start and the original words stay as transcribed.
    assert [abs(c.start - start) < 0.04 for c, (start, _, _) in zip(cues, transcribed)] == [True] * len(cues)
    assert any("spa" in s and "mov_text" in s for s in _subtitle_streams(result))  # the soft track, in Spanish


def test_transcribe_refusals_are_notes_without_tracebacks(dub_app, media):
    client = Client(dub_app, verbose=False)
    table, note = client.predict(handle_file(str(media["clip"])), None, None, None, api_name="/transcribe")
    assert table["data"] == [] and note["value"] == "Choose the language to dub into in the “Dub into” menu first."
    table, note = client.predict(handle_file(str(media["silent"])), None, "fr", None, api_name="/transcribe")
    assert table["data"] == [] and note["value"].startswith("No speech was found in silent.mp4, so there is nothing "
                                                            "to translate")
    log = SERVER_LOGS[dub_app].read_text()
    assert "transcription refused (InputError)" in log and "Traceback" not in log


def test_browser_edit_a_translation_cell_then_its_subtitle_shows_the_edit(dub_app, media, tmp_path):
    browser_path = _browser_or_skip()
    from playwright import sync_api as playwright

    with playwright.sync_playwright() as p:
        browser = _launch(p, browser_path)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(dub_app)
        page.locator("#video-in input[type=file]").set_input_files(str(media["clip"]))
        page.get_by_label(TRANSLATE).check()
        page.locator("#dub-transcribe").click()  # no target language yet: said at the button, no error badge
        page.locator("#dub-note").get_by_text("Choose the language to dub into", exact=False).wait_for(timeout=30_000)
        assert page.get_by_text("Error", exact=True).count() == 0
        page.locator("#dub-target input").click()
        page.get_by_role("option", name="es", exact=True).click()
        page.locator("#dub-transcribe").click()
        page.locator("#dub-note").get_by_text("→ es", exact=False).wait_for(timeout=60_000)
        page.get_by_test_id("cell-0-2").dblclick()  # the original words: no editor opens
        assert page.get_by_test_id("cell-0-2").locator("textarea").count() == 0
        cell = page.get_by_test_id("cell-0-3")  # row 0's translation
        cell.dblclick()
        editor = cell.locator("textarea")
        editor.fill("hola desde el navegador")
        editor.press("Enter")
        assert cell.inner_text().startswith("hola desde el navegador")
        steps = page.get_by_label("number input for Steps")  # the slider's number box
        steps.fill("1")
        steps.press("Tab")
        page.locator("#consent input[type=checkbox]").check()
        page.wait_for_timeout(500)
        page.locator("#run").click()
        page.locator("#status").get_by_text("Done", exact=False).first.wait_for(timeout=120_000)
        link = page.locator("#subtitles-out a").first
        link.wait_for(timeout=10_000)
        page.screenshot(path=str(tmp_path / "dub.png"), full_page=True)
        href = link.get_attribute("href")
        browser.close()
    srt = urllib.request.urlopen(urllib.parse.urljoin(dub_app, href), timeout=30).read().decode()
    assert read_srt(srt)[0].text == "hola desde el navegador", srt


def _form(video, table, held, target="es", **voice):
    from latentsync_demo.app_handlers import LipSyncForm

    return LipSyncForm(str(video), None, "LatentSync 1.5 · 256 px", "DDIM (quality)", 1, 1.5, 1247, 0, None, TRANSLATE,
                       target_language=target, dub_table=table, dub_script=held, **voice)


def test_the_table_speaks_only_its_translation_column_and_only_for_its_own_speech(media):
    """No models: the form -> VoiceRequest step. Times and original words come from the held transcript, and a
    table made for other speech, another target language or with rows added is refused with what to do."""
    from latentsync_demo.app_handlers import speech_key
    from latentsync_demo.errors import InputError
    from latentsync_demo.voice.dubbing import DubScript, DubSegment

    script = DubScript("en", "es", (DubSegment(0.3, 1.5, "hello", "hola"), DubSegment(2.0, 3.0, "bye", "adiós")))
    held = {"speech": speech_key(str(media["clip"]), None), "script": script.to_json()}
    table = [[9.0, 9.5, "typed over", "hola a todos"], [2.0, 3.0, "bye", None]]  # an emptied cell arrives as None
    voice = _form(media["clip"], [table[0], [2.0, 3.0, "bye", "chao"]], held, subtitles="Burned into the picture",
                  keep_room=True).voice_request()
    assert (voice.mode, voice.target_language, voice.subtitles, voice.keep_room) == ("translate", "es", "burn", True)
    assert voice.transcript.segments == (DubSegment(0.3, 1.5, "hello", "hola a todos"),
                                         DubSegment(2.0, 3.0, "bye", "chao"))
    assert _form(media["clip"], table, None).voice_request().transcript is None  # no table: the job transcribes
    with pytest.raises(InputError, match="made for another video or speech"):
        _form(media["silent"], table, held).voice_request()
    with pytest.raises(InputError, match="translated into 'es', but the target language is now 'de'"):
        _form(media["clip"], table, held, target="de").voice_request()
    with pytest.raises(InputError, match="has 3 rows but the video has 2 segments"):
        _form(media["clip"], [*table, [4.0, 5.0, "", "más"]], held).voice_request()
    emptied = _form(media["clip"], table, held).voice_request().transcript
    assert emptied.segments[1].text == ""  # the job's check_script then names the row without words


def test_a_dubs_end_shows_its_timing_notes_and_offers_its_srt(tiny_service, tmp_path):
    """The tiny XTTS never speaks long enough to overrun a slot, so the done event is made here: what did not
    fit is in the status line's notes, and the .srt is shown."""
    import threading

    from latentsync_demo.app_handlers import DemoHandlers, collect_settings
    from latentsync_demo.settings import JobEvent

    notes = "Segment 2 (1.00-2.00 s) is too long for its slot even at 1.25x speed: it runs 0.40 s into segment 3."
    done = JobEvent("done", 1.0, "wrote it", output=tmp_path / "out.mp4", frames=25, compare=tmp_path / "c.mp4",
                    subtitles=tmp_path / "out.srt", notes=notes)
    settings = collect_settings(1, 1.5, 1247, 0, "pingpong", "DDIM (quality)", "auto")
    *_, last = DemoHandlers(tiny_service)._follow(iter([done]), settings, "latentsync-1.5", threading.Event(),
                                                  lambda *a, **k: None)
    status, _, _, _, _, _, srt, _ = last  # (the redo base last)
    assert status.startswith("**Done**") and status.endswith(f"\n\n{notes}")
    assert srt == {"__type__": "update", "value": str(tmp_path / "out.srt"), "visible": True}


def test_translate_mode_names_the_missing_translation_model_and_offers_the_download(tiny_service):
    from latentsync_demo.app_handlers import DemoHandlers

    on = DemoHandlers(tiny_service)  # the shared tiny set has no voice models
    script, options, note, agree, download, speech = on.voice_widgets(TRANSLATE)
    assert not script["visible"] and options["visible"] and agree["visible"] and download["visible"]
    assert "translation" in note["value"] and "2 GB more for the translation model" in note["value"]
    assert "translation" not in on.voice_widgets("Re-voice: its words in the speaker's own voice")[2]["value"]
    assert on.dub_widgets(TRANSLATE) == {"__type__": "update", "visible": True}
    assert on.dub_widgets("Script: type what the speaker says") == {"__type__": "update", "visible": False}
