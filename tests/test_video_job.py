"""Video in, video out with tiny random models: faces, lengths, pass-through frames, errors, cleanup."""

import subprocess
import sys
import tempfile

import numpy as np
import pytest

import latentsync_demo.service as service_module
from latentsync_demo.errors import InputError
from latentsync_demo.face import load_mask
from latentsync_demo.media import VideoWriter, count_frames, probe, read_frames
from latentsync_demo.pipeline.length import pingpong_index
from latentsync_demo.provenance.detect import make_marker
from latentsync_demo.service import LipSyncService
from latentsync_demo.testing.media import make_speech_wav, make_talking_head_clip
from latentsync_demo.testing.tiny_checkpoints import write_tiny_checkpoints

W, H = 320, 240


@pytest.fixture
def service(tiny_service):
    """The session's shared CPU service on the tiny checkpoints (conftest)."""
    return tiny_service


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    clip = make_talking_head_clip(root / "clip.mp4", seconds=1.2, fps=30, size=(W, H))  # 30 frames at 25 fps
    frames = read_frames(clip)
    covered = frames.copy()
    covered[10:20] = 128  # ten frames with no face at all
    with VideoWriter(root / "covered.mp4", W, H, 25) as writer:
        writer.write_batch(covered)
    return {
        "clip": clip,
        "covered": root / "covered.mp4",
        "speech_short": make_speech_wav(root / "short.wav", seconds=0.8),
        "speech_long": make_speech_wav(root / "long.wav", seconds=2.0),
        "no_face": make_talking_head_clip(root / "shapes.mp4", seconds=0.6, fps=25, size=(W, H), face=False),
    }


def _run(service, video, audio, out, **settings):
    events = list(service.lipsync(video, audio, out, num_inference_steps=1, consent=True, **settings))
    return events


def test_output_follows_audio_and_keeps_size(service, media, tmp_path):
    out = tmp_path / "out.mp4"
    events = _run(service, media["clip"], media["speech_long"], out)
    info = probe(out)
    assert (info.width, info.height, info.fps) == (W, H, 25.0)
    assert count_frames(out) == 50  # 2.0 s of audio at 25 fps, not a multiple of 16
    assert info.has_audio and abs(info.duration - 2.0) <= 0.04
    stages = [e.stage for e in events]
    assert stages[0] in ("loading models", "reading") and stages[-1] == "done" and events[-1].output == out
    generating = [e for e in events if e.stage == "generating"]
    assert [e.chunk for e in generating] == [1, 2, 3, 4] and generating[-1].num_chunks == 4
    assert all(e.preview is not None and e.preview.shape[0] == 256 for e in generating)
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_pingpong_order():
    assert [pingpong_index(i, 3) for i in range(8)] == [0, 1, 2, 2, 1, 0, 0, 1]


def test_audio_longer_than_video_plays_back_and_forth(service, media, tmp_path):
    out = tmp_path / "pingpong.mp4"
    _run(service, media["clip"], media["speech_long"], out)
    source, result = read_frames(media["clip"]), read_frames(out)
    # Above the eyes (hair and background, which move from frame to frame) nothing is generated, so each
    # output frame shows source frame pingpong_index(i, 30): 0..29, then 29..0 from output frame 30 on.
    top = slice(0, int(H * 0.3))
    for i in (5, 29, 30, 35, 45):
        distances = [np.abs(source[j][top].astype(float) - result[i][top]).mean() for j in range(len(source))]
        assert abs(int(np.argmin(distances)) - pingpong_index(i, len(source))) <= 1


def test_pixels_far_from_mouth_unchanged_and_mouth_changed(service, media, tmp_path):
    out = tmp_path / "short.mp4"
    _run(service, media["clip"], media["speech_short"], out)
    source, result = read_frames(media["clip"])[:20], read_frames(out)
    assert len(result) == 20
    diff = np.abs(source.astype(int) - result.astype(int)).mean(axis=(0, 3))
    assert diff[:30, :].mean() < 3.0 and diff[:, :30].mean() < 3.0  # borders: only re-encoding noise
    assert diff.max() > 20  # the lower face was generated (random tiny model => visibly different)


@pytest.fixture
def unmarked(monkeypatch):
    """Marking off: the watermark deliberately covers every frame (2 grey levels RMS), and re-encoding a marked
    frame moves sharp synthetic edges past these tests' thresholds; they are about what generation changes."""
    monkeypatch.setattr(service_module, "make_marker", lambda job, key=None, resolution=256: make_marker(None))


def test_frames_without_face_pass_through(service, media, tmp_path, unmarked):
    out = tmp_path / "covered_out.mp4"
    _run(service, media["covered"], media["speech_short"], out)
    source, result = read_frames(media["covered"]), read_frames(out)
    per_frame = np.abs(source[:20].astype(int) - result.astype(int)).max(axis=(1, 2, 3))
    assert (per_frame[10:20] <= 8).all()  # covered frames: identical up to re-encoding
    assert (per_frame[:10] > 20).all()  # frames with a face were generated


def test_keep_video_tail(service, media, tmp_path):
    out = tmp_path / "tail.mp4"
    _run(service, media["clip"], media["speech_short"], out, length_mode="keep-tail")
    assert count_frames(out) == 30
    assert abs(probe(out).duration - 1.2) <= 0.04


def test_no_face_fails_before_generation(service, media, tmp_path):
    calls = []
    unet = service.models().unet
    hook = unet.register_forward_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(InputError, match="no face was found"):
            _run(service, media["no_face"], media["speech_short"], tmp_path / "x.mp4")
    finally:
        hook.remove()
    assert calls == []
    assert not (tmp_path / "x.mp4").exists()


def test_bad_inputs_give_clear_errors(service, media, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(InputError, match="empty"):
        _run(service, empty, media["speech_short"], tmp_path / "o.mp4")
    with pytest.raises(InputError, match="not a video or audio file"):
        _run(service, text, media["speech_short"], tmp_path / "o.mp4")
    with pytest.raises(InputError, match="no video stream"):
        _run(service, media["speech_short"], media["speech_short"], tmp_path / "o.mp4")
    silent_video = tmp_path / "silent.mp4"
    make_talking_head_clip(silent_video, seconds=0.5, fps=25, size=(W, H), with_audio=False)
    with pytest.raises(InputError, match="has no sound"):
        _run(service, media["clip"], silent_video, tmp_path / "o.mp4")


def test_temp_folders_are_removed(service, media, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    _run(service, media["clip"], media["speech_long"], tmp_path / "ok.mp4")  # ping-pong keeps frames on disk
    with pytest.raises(InputError):
        _run(service, media["no_face"], media["speech_short"], tmp_path / "bad.mp4")
    job = service.lipsync(media["clip"], media["speech_long"], tmp_path / "cancelled.mp4", num_inference_steps=1,
                          consent=True)
    for event in job:
        if event.stage == "generating":
            job.close()  # a cancelled request
            break
    assert list(scratch.iterdir()) == []


def test_cli_end_to_end_and_error_exit(tiny_checkpoints, media, tmp_path):
    out = tmp_path / "cli.mp4"
    base = [sys.executable, "-m", "latentsync_demo", "--checkpoints", str(tiny_checkpoints), "--steps", "1",
            "--device", "cpu", "--consent", "--audio", str(media["speech_short"])]
    ok = subprocess.run(base + ["--video", str(media["clip"]), "--out", str(out)], capture_output=True, text=True,
                        timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert count_frames(out) == 20
    bad = subprocess.run(base + ["--video", str(media["no_face"]), "--out", str(tmp_path / "n.mp4")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "no face was found" in bad.stderr
    missing = subprocess.run(base[:3] + ["--consent", "--checkpoints", str(tmp_path / "none"), "--video", str(media["clip"]),
                                         "--audio", str(media["speech_short"]), "--out", str(out)],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "python -m latentsync_demo.download" in missing.stderr


def test_generated_region_matches_mask_geometry(service, media, tmp_path, unmarked):
    """Sanity: the changed pixels sit in the lower face, below the eyes."""
    out = tmp_path / "geom.mp4"
    _run(service, media["clip"], media["speech_short"], out)
    source, result = read_frames(media["clip"])[:20], read_frames(out)
    changed = np.abs(source.astype(int) - result.astype(int)).max(axis=(0, 3)) > 30
    rows = np.nonzero(changed.any(axis=1))[0]
    assert rows.size and rows.min() > H * 0.3  # nothing above the upper third changed (eyes, hair)
    assert load_mask(64).shape == (3, 64, 64)


def test_service_loads_each_preset_once(service):
    first = service.models()
    assert service.models() is first  # cached for the process, shared by every job
    assert service.models().unet.device.type == "cpu"


def test_lcm_sampler_runs_the_student_once_per_step(service, media, tmp_path):
    calls = []
    student = service.pipeline("latentsync-1.5", "lcm").unet
    assert student is not service.models().unet  # the distilled student from <checkpoints>/lcm/
    hook = student.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    try:
        list(service.lipsync(media["clip"], media["speech_short"], tmp_path / "lcm.mp4", sampler="lcm",
                             num_inference_steps=4, consent=True))
    finally:
        hook.remove()
    assert calls == [1] * 8  # 20 frames = 2 chunks x 4 steps, batch 1: no classifier-free doubling
    assert count_frames(tmp_path / "lcm.mp4") == 20


def test_sampler_errors_are_clear(tmp_path, media):
    bare = write_tiny_checkpoints(tmp_path / "no_lcm")
    import shutil

    shutil.rmtree(bare / "lcm")
    service = LipSyncService(checkpoints=bare, device="cpu")
    with pytest.raises(InputError, match="LCM sampler takes 1 to 8 steps"):
        list(service.lipsync(media["clip"], media["speech_short"], tmp_path / "o.mp4", sampler="lcm",
                             num_inference_steps=20, consent=True))
    with pytest.raises(Exception, match="distilled student") as info:
        list(service.lipsync(media["clip"], media["speech_short"], tmp_path / "o.mp4", sampler="lcm",
                             num_inference_steps=4, consent=True))
    assert "ddim sampler" in str(info.value)
