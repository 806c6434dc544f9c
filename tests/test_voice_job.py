"""Voice cloning wired into the service and the CLI, on tiny random lip-sync and voice models."""

import subprocess
import sys

import pytest

from latentsync_demo.errors import InputError
from latentsync_demo.media import count_frames, probe
from latentsync_demo.service import LipSyncService, VoiceRequest
from latentsync_demo.testing.media import make_talking_head_clip
from latentsync_demo.testing.tiny_checkpoints import write_tiny_checkpoints


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return write_tiny_checkpoints(tmp_path_factory.mktemp("voice_ckpt"), voice=True)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    # 8 s of the speech-like track gives the speaker reference enough voiced audio (>= 3 s).
    return make_talking_head_clip(tmp_path_factory.mktemp("voice_media") / "clip.mp4", seconds=8.0, fps=25,
                                  size=(192, 192))


def test_script_mode_speaks_then_lip_syncs(checkpoints, clip, tmp_path):
    service = LipSyncService(checkpoints, device="cpu", output_dir=tmp_path / "outputs")
    out = tmp_path / "script.mp4"
    events = list(service.lipsync(clip, None, out, voice=VoiceRequest("script", "hello there"),
                                  num_inference_steps=1, consent=True))
    speech = [e.audio for e in events if e.audio is not None]
    assert events[0].stage == "voice" and len(speech) == 1 and speech[0].suffix == ".wav"
    spoken = probe(speech[0]).duration
    assert 0.5 < spoken < 8.0
    assert abs(count_frames(out) - round(spoken * 25)) <= 1  # the new speech drives the video's length


def test_script_without_text_and_voice_off_without_audio_are_refused(checkpoints, clip, tmp_path):
    service = LipSyncService(checkpoints, device="cpu", output_dir=tmp_path / "outputs")
    with pytest.raises(InputError, match="Script voice needs the words the speaker should say"):
        list(service.lipsync(clip, None, tmp_path / "x.mp4", voice=VoiceRequest("script", "  "), consent=True))
    with pytest.raises(InputError, match="no speech given"):
        list(service.lipsync(clip, None, tmp_path / "x.mp4", consent=True))


def test_cli_script_mode(checkpoints, clip, tmp_path):
    out = tmp_path / "cli_script.mp4"
    result = subprocess.run(
        [sys.executable, "-m", "latentsync_demo", "--checkpoints", str(checkpoints), "--device", "cpu",
         "--video", str(clip), "--voice", "script", "--text", "good morning", "--language", "en",
         "--steps", "1", "--consent", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert probe(out).has_audio and count_frames(out) > 10
    usage = subprocess.run([sys.executable, "-m", "latentsync_demo", "--video", str(clip), "--out", str(out)],
                           capture_output=True, text=True, timeout=120)
    assert usage.returncode == 2 and "--audio is required" in usage.stderr
