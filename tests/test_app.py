"""The Gradio app, started for real on tiny checkpoints and driven through gradio_client and a browser."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from latentsync_demo.media import count_frames, probe
from latentsync_demo.testing.media import make_speech_wav, make_talking_head_clip
from latentsync_demo.testing.tiny_checkpoints import write_tiny_checkpoints

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_app(checkpoints: Path, tmp: Path, *extra: str):
    port = _free_port()
    log = open(tmp / f"app_{port}.log", "w")
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "app.py"), "--checkpoints", str(checkpoints), "--port", str(port),
         "--device", "cpu", *extra],
        cwd=tmp, stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited: {(tmp / f'app_{port}.log').read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("app did not start within 120 s")


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("app_media")
    return {
        "video": make_talking_head_clip(root / "face.mp4", seconds=1.2, fps=30, size=(256, 256)),
        "speech": make_speech_wav(root / "speech.wav", seconds=1.4),  # 35 frames -> 3 chunks
        "long": make_speech_wav(root / "long.wav", seconds=4.0),
        "text": _write(root / "notes.mp4", "this is not a video"),
    }


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("app")
    checkpoints = write_tiny_checkpoints(tmp / "tiny")
    proc, url = _start_app(checkpoints, tmp, "--max-seconds", "3")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def _lipsync(client: Client, video, audio):
    """All streamed updates; raises the app's error message (gradio_client only raises it from result())."""
    job = client.submit(handle_file(str(video)), handle_file(str(audio)), consent=True, api_name="/lipsync")
    updates = list(job)
    job.result()
    return updates


def test_api_streams_one_update_per_chunk_and_returns_the_video(app, media):
    client = Client(app, verbose=False)
    updates = _lipsync(client, media["video"], media["speech"])
    chunk_updates = [u for u in updates if u[0].startswith("generated chunk")]
    assert [u[0] for u in chunk_updates] == [f"generated chunk {k} of 3…" for k in (1, 2, 3)]
    assert all(u[1] for u in chunk_updates)  # each carries a preview image
    status, _, original, result, download, _ = updates[-1]
    assert status == "Done." and result == download
    info = probe(result)
    assert info.video_codec == "h264" and info.has_audio and count_frames(result) == 35
    assert Path(original).name == Path(media["video"]).name


def test_bad_input_reports_and_server_keeps_serving(app, media):
    client = Client(app, verbose=False)
    with pytest.raises(Exception, match="not a video or audio file"):
        _lipsync(client, media["text"], media["speech"])
    with pytest.raises(Exception, match="accepts up to 3 s"):
        _lipsync(client, media["video"], media["long"])
    updates = _lipsync(client, media["video"], media["speech"])
    assert updates[-1][0] == "Done."


def test_missing_weights_app_still_starts_and_names_the_download(tmp_path, media):
    proc, url = _start_app(tmp_path / "empty", tmp_path)
    try:
        page = urllib.request.urlopen(url, timeout=10).read().decode()
        assert "LatentSync" in page
        with pytest.raises(Exception, match="python -m latentsync_demo.download --preset latentsync-1.5"):
            _lipsync(Client(url, verbose=False), media["video"], media["speech"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_browser_upload_generate_and_compare(app, media, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    browser_path = _chromium()
    if browser_path is None:
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=browser_path,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(app)
        page.locator("#video-in input[type=file]").set_input_files(str(media["video"]))
        page.locator("#audio-in input[type=file]").set_input_files(str(media["speech"]))
        page.locator("#consent input[type=checkbox]").check()
        page.wait_for_timeout(1500)
        page.locator("#run").click()
        page.get_by_text("generated chunk", exact=False).first.wait_for(timeout=120_000)
        page.locator("#status").get_by_text("Done.").wait_for(timeout=120_000)
        assert page.locator("#original-out video").count() == 1
        assert page.locator("#result-out video").count() == 1
        page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        browser.close()
    assert (tmp_path / "app.png").stat().st_size > 10_000


def test_lcm_sampler_through_the_api(app, media):
    """The tiny checkpoint set carries a distilled student, so the app offers and runs 4-step LCM."""
    client = Client(app, verbose=False)
    job = client.submit(handle_file(str(media["video"])), handle_file(str(media["speech"])),
                        "LatentSync 1.5 · 256 px", "LCM · 4 steps (speed)", 4, consent=True, api_name="/lipsync")
    updates = list(job)
    job.result()
    assert updates[-1][0] == "Done." and count_frames(updates[-1][3]) == 35
