"""Consent gate and restriction hook: no generation without consent (service, CLI, app API); host checks refuse."""

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from latentsync_demo.provenance.consent import ConsentError, consent_statement, require_consent
from latentsync_demo.provenance.restrict import RestrictedError, load_checks
from latentsync_demo.service import LipSyncService
from latentsync_demo.testing.media import make_speech_wav, make_talking_head_clip

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_checkpoints):
    root = tmp_path_factory.mktemp("consent")
    return {
        "ckpt": tiny_checkpoints,
        "video": make_talking_head_clip(root / "face.mp4", seconds=0.8, fps=25, size=(192, 192)),
        "speech": make_speech_wav(root / "speech.wav", seconds=0.6),
    }


@pytest.fixture
def service(tiny_service):
    """The session's shared CPU service on the tiny checkpoints (conftest)."""
    return tiny_service


def _unet_calls(service):
    calls = []
    return calls, service.models().unet.register_forward_hook(lambda *a: calls.append(1))


def test_service_refuses_without_explicit_consent(service, setup, tmp_path):
    calls, hook = _unet_calls(service)
    try:
        for consent in (False, None, "yes", 1):  # only True counts
            with pytest.raises(ConsentError, match="consent of the person shown"):
                list(service.lipsync(setup["video"], setup["speech"], tmp_path / "o.mp4", consent=consent))
        with pytest.raises(ConsentError):
            list(service.lipsync(setup["video"], setup["speech"], tmp_path / "o.mp4"))  # the default
    finally:
        hook.remove()
    assert calls == [] and not (tmp_path / "o.mp4").exists()


def test_statement_is_configurable(monkeypatch):
    monkeypatch.setenv("LATENTSYNC_CONSENT_TEXT", "I have a signed release from the person shown.")
    assert consent_statement() == "I have a signed release from the person shown."
    monkeypatch.delenv("LATENTSYNC_CONSENT_TEXT")
    assert "consent" in consent_statement()
    require_consent(True)


def test_restriction_hook_refuses_before_any_work(service, setup, tmp_path):
    seen = []

    def policy(job):
        seen.append(job)
        return "this face is on the protected list" if job.video.name == "face.mp4" else None

    assert service.restrictions == []  # off by default
    service.restrictions = [policy]
    calls, hook = _unet_calls(service)
    try:
        with pytest.raises(RestrictedError, match="protected list"):
            list(service.lipsync(setup["video"], setup["speech"], tmp_path / "o.mp4", consent=True))
    finally:
        hook.remove()
        service.restrictions = []
    assert calls == [] and len(seen) == 1 and seen[0].preset == "latentsync-1.5" and len(seen[0].job_id) == 12


def test_restriction_hook_from_the_environment(setup, tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTSYNC_RESTRICTIONS", "latentsync_demo.provenance.restrict:protected_names")
    monkeypatch.setenv("LATENTSYNC_PROTECTED_NAMES", "Jane Doe, face")
    hosted = LipSyncService(setup["ckpt"], device="cpu")
    with pytest.raises(RestrictedError, match="'face' is a protected person"):
        list(hosted.lipsync(setup["video"], setup["speech"], tmp_path / "o.mp4", consent=True))
    with pytest.raises(ValueError, match="module:function"):
        load_checks("no_colon_here")
    assert LipSyncService(setup["ckpt"], device="cpu").restrictions  # loaded from the env var
    monkeypatch.delenv("LATENTSYNC_RESTRICTIONS")
    assert LipSyncService(setup["ckpt"], device="cpu").restrictions == []  # off by default


def test_cli_needs_consent_when_not_on_a_terminal(setup, tmp_path):
    out = tmp_path / "cli.mp4"
    env = {k: v for k, v in os.environ.items() if k != "LATENTSYNC_CONSENT"}
    result = subprocess.run(
        [sys.executable, "-m", "latentsync_demo", "--checkpoints", str(setup["ckpt"]), "--device", "cpu",
         "--video", str(setup["video"]), "--audio", str(setup["speech"]), "--steps", "1", "--out", str(out)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, env=env, cwd=REPO,
    )
    assert result.returncode == 2 and "--consent or set LATENTSYNC_CONSENT=1" in result.stderr
    assert not out.exists()


def test_app_api_refuses_without_consent_and_shows_the_hosts_statement(setup, tmp_path):
    from gradio_client import Client, handle_file
    from test_app import _start_app  # the same launcher as the app tests

    proc, url = _start_app(setup["ckpt"], tmp_path, "--consent-text", "I hold a signed model release.")
    try:
        config = urllib.request.urlopen(url + "config", timeout=10).read().decode()
        assert "I hold a signed model release." in config  # the checkbox shows the host's statement
        client = Client(url, verbose=False)
        # Refused with the note by the consent box (the endpoint's last output), not an error: the page shows it
        # at the box without error badges on the results.
        for consent in ({}, {"consent": False}):
            job = client.submit(handle_file(str(setup["video"])), handle_file(str(setup["speech"])), **consent,
                                api_name="/lipsync")
            last = list(job)[-1]
            job.result()
            assert last[6]["visible"] is True and last[6]["value"].startswith("**Tick the consent box above first.**")
        assert not list(Path(tmp_path).rglob("lipsync_*.mp4"))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
