"""Tests of the media layer (latentsync_demo.media) on small generated clips. CPU only, no network."""

from __future__ import annotations

import functools
import os
import subprocess
import time
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest

from latentsync_demo.errors import InputError, LatentSyncError
from latentsync_demo.media import (
    VideoWriter,
    count_frames,
    ffmpeg_exe,
    iter_batches,
    iter_frames,
    job_tempdir,
    load_audio,
    mux,
    probe,
    read_frames,
    run_ffmpeg,
    write_wav,
)
from latentsync_demo.media import video as video_module
from latentsync_demo.testing.media import make_speech_wav, make_talking_head_clip


@functools.cache
def _encoders() -> str:
    return run_ffmpeg(["-encoders"]).stdout.decode()


def _need_encoder(name: str) -> None:
    if f" {name} " not in _encoders():
        pytest.skip(f"this ffmpeg has no {name} encoder")


def _ffmpeg(*args: str) -> None:
    run_ffmpeg(["-y", *args])


def _native_audio_seconds(path: Path) -> float:
    """Length of the first audio track, by decoding it at its own sample rate."""
    info = probe(path)
    raw = run_ffmpeg(["-i", str(path), "-map", "0:a:0", "-f", "s16le", "-acodec", "pcm_s16le", "-ac", "1",
                      "pipe:1"]).stdout
    return len(raw) / 2 / info.audio_sample_rate


def _top_level_atoms(path: Path) -> list[str]:
    data, i, names = path.read_bytes(), 0, []
    while i + 8 <= len(data):
        size, name = int.from_bytes(data[i:i + 4], "big"), data[i + 4:i + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[i + 8:i + 16], "big")
        elif size == 0:
            size = len(data) - i
        names.append(name)
        i += size
    return names


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def clip(media_dir) -> Path:
    """2 s, 30 fps, 320x240 H.264 + AAC 44.1 kHz talking-head clip."""
    return make_talking_head_clip(media_dir / "clip.mp4", seconds=2.0, fps=30, size=(320, 240))


@pytest.fixture(scope="module")
def silent_clip(media_dir) -> Path:
    return make_talking_head_clip(media_dir / "silent.mp4", seconds=1.0, fps=25, size=(64, 48),
                                  with_audio=False, face=False)


# ---------------------------------------------------------------- probing and decoding


def test_probe_generated_mp4(clip):
    info = probe(clip)
    assert (info.width, info.height, info.fps, info.rotation) == (320, 240, 30.0, 0)
    assert info.duration == pytest.approx(2.0, abs=0.05)
    assert info.has_video and info.has_audio
    assert (info.video_codec, info.audio_codec, info.audio_sample_rate) == ("h264", "aac", 44100)
    assert info.num_frames == 60 and info.frames_at(25) == 50


def test_30fps_clip_decodes_to_25fps(clip):
    frames = read_frames(clip)  # default: the model's 25 fps
    assert abs(len(frames) - 2.0 * 25) <= 1
    assert frames.shape[1:] == (240, 320, 3) and frames.dtype == np.uint8
    assert len(read_frames(clip, fps=None)) == 60 == count_frames(clip)
    assert frames.std() > 20  # real picture content, not a blank frame
    assert read_frames(clip, size=(160, 120)).shape[1:] == (120, 160, 3)
    batches = list(iter_batches(clip, 16))
    assert [len(b) for b in batches] == [16, 16, 16, len(frames) - 48]


def test_rotated_clip_reports_and_decodes_displayed_size(clip, media_dir):
    rotated = media_dir / "rotated.mp4"
    try:  # a phone-style portrait recording: landscape pixels plus a display matrix
        _ffmpeg("-display_rotation", "90", "-i", str(clip), "-c", "copy", str(rotated))
    except RuntimeError as e:
        pytest.skip(f"this ffmpeg cannot write rotation metadata: {e}")
    info = probe(rotated)
    assert (info.width, info.height, info.rotation) == (240, 320, 270)
    frames = read_frames(rotated, fps=None)
    assert frames.shape[1:] == (320, 240, 3)
    upright = read_frames(clip, fps=None)
    # -display_rotation 90 means 90 degrees counter-clockwise, which is what np.rot90 does.
    assert np.abs(frames[5].astype(int) - np.rot90(upright[5]).astype(int)).mean() < 2


def test_variable_frame_rate_input(clip, media_dir):
    vfr = media_dir / "vfr.mp4"
    # 30 frames at 30 fps, then 30 frames at 15 fps: 3 s in all, no constant rate.
    _ffmpeg("-i", str(clip), "-an", "-vf", "setpts='if(lt(N,30),N/30,1+(N-30)/15)/TB'", "-fps_mode", "vfr",
            "-c:v", "libx264", "-preset", "ultrafast", str(vfr))
    info = probe(vfr)
    assert info.duration == pytest.approx(3.0, abs=0.1)
    assert info.fps == pytest.approx(20.0, abs=0.5)  # the average rate
    frames = read_frames(vfr)
    assert abs(len(frames) - info.duration * 25) <= 1
    assert len(read_frames(vfr, fps=None)) == 60


@pytest.mark.parametrize(
    "name, codec, encoder",
    [("clip.webm", "vp9", "libvpx-vp9"), ("clip.mkv", "h264", "libx264"), ("clip.avi", "mpeg4", "mpeg4"),
     ("hevc.mov", "hevc", "libx265")],
)
def test_other_containers_and_codecs_decode(media_dir, name, codec, encoder):
    _need_encoder(encoder)
    path = make_talking_head_clip(media_dir / name, seconds=1.0, fps=30, size=(96, 64),
                                  video_codec="libx265" if codec == "hevc" else None)
    info = probe(path)
    assert (info.video_codec, info.width, info.height) == (codec, 96, 64)
    frames = read_frames(path)
    assert frames.shape[1:] == (64, 96, 3) and abs(len(frames) - 25) <= 1
    assert len(load_audio(path)) == pytest.approx(16000, abs=800)


def test_webm_without_duration_is_scanned(media_dir):
    """Live-recorded webm (browser webcam) has no duration in its header; probe counts packets instead."""
    _need_encoder("libvpx-vp9")
    src = make_talking_head_clip(media_dir / "live_src.webm", seconds=1.0, fps=30, size=(64, 64),
                                 with_audio=False)
    live = media_dir / "live.webm"
    _ffmpeg("-i", str(src), "-c", "copy", "-f", "webm", "-live", "1", str(live))
    info = probe(live)
    assert info.fps == pytest.approx(30.0, abs=1.0) and info.duration == pytest.approx(1.0, abs=0.1)
    assert abs(len(read_frames(live)) - 25) <= 1


def test_odd_input_size(media_dir):
    odd = make_talking_head_clip(media_dir / "odd.mp4", seconds=0.5, fps=25, size=(101, 75), with_audio=False)
    info = probe(odd)
    assert (info.width, info.height) == (101, 75)
    frames = read_frames(odd)
    assert frames.shape[1:] == (75, 101, 3)
    out = media_dir / "odd_out.mp4"
    with VideoWriter(out, 101, 75) as writer:
        writer.write_batch(frames)
    info = probe(out)
    assert (info.width, info.height) == (100, 74)  # cropped to even for yuv420p
    assert count_frames(out) == len(frames)


def test_iter_frames_is_lazy_and_cleans_up(media_dir, monkeypatch):
    long_clip = media_dir / "long.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-t", "60", "-c:v", "libx264",
            "-preset", "ultrafast", str(long_clip))
    started: list[subprocess.Popen] = []

    class RecordingPopen(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(video_module.subprocess, "Popen", RecordingPopen)
    frames = iter_frames(long_clip)  # probes the file (one short ffmpeg run), decodes nothing yet
    assert not [p for p in started if "rawvideo" in p.args]
    t0 = time.perf_counter()
    first = [next(frames) for _ in range(3)]
    assert time.perf_counter() - t0 < 3.0  # far less than decoding 60 s
    assert len(first) == 3 and first[0].shape == (240, 320, 3)
    (proc,) = [p for p in started if "rawvideo" in p.args]
    assert proc.poll() is None  # still running, blocked on the pipe
    frames.close()
    assert proc.returncode is not None  # killed and reaped: no zombie
    assert not Path(f"/proc/{proc.pid}").exists() or os.name != "posix"


def test_frames_are_writable(silent_clip):
    frame = next(iter_frames(silent_clip))
    frame[0, 0] = 7  # callers may draw on frames in place
    assert frame.flags.writeable


# ---------------------------------------------------------------- audio


def test_wav_conversion_is_exact_int16_over_32768(media_dir):
    path = media_dir / "known.wav"
    ints = np.random.default_rng(1).integers(-32768, 32768, 16000 * 3 // 2).astype(np.int16)
    ints[:4] = [-32768, 32767, 0, -1]
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(16000)
        f.writeframes(ints.tobytes())
    samples = load_audio(path)
    assert samples.dtype == np.float32
    np.testing.assert_array_equal(samples, ints.astype(np.float32) / np.float32(32768))


def test_write_wav_round_trip(media_dir):
    speech = load_audio(make_speech_wav(media_dir / "speech.wav", seconds=1.0))
    write_wav(media_dir / "again.wav", speech)
    np.testing.assert_array_equal(load_audio(media_dir / "again.wav"), speech)
    assert np.abs(speech).max() > 0.1


@pytest.mark.parametrize(
    "ext, encoder",
    [(".wav", None), (".mp3", "libmp3lame"), (".m4a", "aac"), (".flac", "flac"), (".ogg", "libvorbis"),
     (".opus", "libopus")],
)
def test_audio_formats_load_as_16k_mono_float32(media_dir, ext, encoder):
    if encoder:
        _need_encoder(encoder)
    src = make_speech_wav(media_dir / f"src{ext}.wav", seconds=1.5, sample_rate=44100)
    path = media_dir / f"speech{ext}"
    if ext == ".wav":
        path = src
    else:
        _ffmpeg("-i", str(src), "-ac", "2", "-c:a", encoder, str(path))  # stereo, to exercise the downmix
    samples = load_audio(path)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert len(samples) == pytest.approx(1.5 * 16000, abs=0.01 * 16000)
    assert 0.05 < np.abs(samples).max() <= 1.0


def test_audio_from_video_track(clip):
    samples = load_audio(clip)
    assert samples.dtype == np.float32 and len(samples) == pytest.approx(32000, abs=160)


# ---------------------------------------------------------------- writing and muxing


def _check_output(path: Path, n_frames: int) -> None:
    info = probe(path)
    summary = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    stream_line = next(line for line in summary.splitlines() if "Video:" in line)
    assert "h264" in stream_line and "yuv420p" in stream_line
    assert info.fps == 25.0 and info.has_audio and info.audio_codec == "aac"
    assert count_frames(path) == n_frames
    assert abs(_native_audio_seconds(path) - n_frames / 25) < 1 / 25
    atoms = _top_level_atoms(path)
    assert atoms.index("moov") < atoms.index("mdat")  # faststart: playable while downloading


@pytest.mark.parametrize("audio_seconds", [1.0, 2.2, 3.0])  # shorter, longer, much longer than the video
def test_writer_and_mux_give_equal_durations(clip, media_dir, audio_seconds):
    frames = read_frames(clip)  # 2 s
    n = len(frames)
    silent = media_dir / f"silent_{audio_seconds}.mp4"
    with VideoWriter(silent, 320, 240, preset="ultrafast") as writer:
        for frame in frames[:10]:
            writer.write(frame)
        writer.write_batch(frames[10:])
    assert writer.frames_written == n
    audio = load_audio(clip)[: int(audio_seconds * 16000)]
    out = mux(silent, audio, media_dir / f"muxed_{audio_seconds}.mp4")
    _check_output(out, n)
    assert np.abs(read_frames(out)[3].astype(int) - frames[3]).mean() < 3  # colours survive the round trip


def test_mux_with_audio_file_keeps_its_rate(clip, media_dir):
    silent = media_dir / "silent_for_file.mp4"
    with VideoWriter(silent, 320, 240) as writer:
        writer.write_batch(read_frames(clip)[:30])
    out = mux(silent, clip, media_dir / "muxed from file.mp4")  # audio track of the original upload
    _check_output(out, 30)
    assert probe(out).audio_sample_rate == 44100


def test_writer_rejects_bad_frames_and_removes_partial_file(media_dir):
    out = media_dir / "partial.mp4"
    with pytest.raises(ValueError, match="uint8"):
        with VideoWriter(out, 64, 48) as writer:
            writer.write(np.zeros((48, 64, 3), np.uint8))
            writer.write(np.zeros((48, 64, 3), np.float32))
    assert not out.exists()
    with pytest.raises(RuntimeError, match="no frames"):
        with VideoWriter(out, 64, 48):
            pass


# ---------------------------------------------------------------- bad input


def test_missing_and_empty_files(media_dir):
    with pytest.raises(InputError, match="file not found"):
        probe(media_dir / "nope.mp4")
    empty = media_dir / "empty.mp4"
    empty.touch()
    with pytest.raises(InputError, match="the file is empty"):
        iter_frames(empty)
    with pytest.raises(InputError, match="the file is empty"):
        load_audio(empty)


def test_text_file_renamed_mp4(media_dir):
    fake = media_dir / "notes.mp4"
    fake.write_text("this is not a video\n" * 20)
    with pytest.raises(InputError, match="not a video or audio file, or unreadable") as e:
        iter_frames(fake)
    assert isinstance(e.value, LatentSyncError) and isinstance(e.value, ValueError)


def test_truncated_mp4(clip, media_dir):
    cut = media_dir / "truncated.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])  # moov is at the end: now missing
    with pytest.raises(InputError, match="corrupt or truncated"):
        read_frames(cut)


def test_truncated_faststart_mp4_is_refused_not_shortened(clip, media_dir):
    """With the index up front the cut file still probes as 2 s; ffmpeg decodes the first ~23 frames and exits 0.
    Passing those on would turn a broken upload into a silently shorter video, so decoding refuses it."""
    fast = media_dir / "fast.mp4"
    _ffmpeg("-i", str(clip), "-c", "copy", "-movflags", "+faststart", str(fast))
    cut = media_dir / "fast_cut.mp4"
    cut.write_bytes(fast.read_bytes()[: fast.stat().st_size // 2])
    assert probe(cut).duration == pytest.approx(2.0, abs=0.1)  # the index still promises the whole clip
    with pytest.raises(InputError, match=r"is truncated: its data ends after \d+ frames") as e:
        read_frames(cut)
    assert "cut off" in e.value.web and "/" not in e.value.web
    assert len(read_frames(fast)) == 50  # the whole file decodes in full


def test_audio_file_passed_as_video(media_dir):
    wav = make_speech_wav(media_dir / "voice.wav", seconds=0.5)
    with pytest.raises(InputError, match="has no video stream"):
        iter_frames(wav)


def test_cover_art_is_not_a_video(media_dir, tmp_path):
    _need_encoder("libmp3lame")
    cover = tmp_path / "cover.png"
    cv2.imwrite(str(cover), np.full((32, 32, 3), 128, np.uint8))
    song = media_dir / "song.mp3"
    _ffmpeg("-i", str(make_speech_wav(tmp_path / "v.wav", seconds=0.5)), "-i", str(cover), "-map", "0", "-map", "1",
            "-c:a", "libmp3lame", "-c:v", "mjpeg", "-disposition:v", "attached_pic", str(song))
    info = probe(song)
    assert info.has_audio and not info.has_video
    with pytest.raises(InputError, match="has no video stream"):
        iter_frames(song)
    assert len(load_audio(song)) == pytest.approx(8000, abs=200)


def test_video_without_audio_track(silent_clip, media_dir):
    with pytest.raises(InputError, match="no audio track in this video"):
        load_audio(silent_clip)
    with pytest.raises(InputError, match="no audio track"):
        mux(silent_clip, silent_clip, media_dir / "never.mp4")
    assert not (media_dir / "never.mp4").exists()


def test_odd_file_names_are_safe(silent_clip, media_dir):
    odd = media_dir / "-my clip; $(rm -rf x) 'a':b.mp4"
    odd.write_bytes(silent_clip.read_bytes())
    assert probe(odd).has_video and len(read_frames(odd)) == 25


def test_ffmpeg_override(monkeypatch, silent_clip, tmp_path):
    import imageio_ffmpeg

    monkeypatch.setenv("LATENTSYNC_FFMPEG", str(tmp_path / "missing-ffmpeg"))
    with pytest.raises(RuntimeError, match="LATENTSYNC_FFMPEG"):
        probe(silent_clip)
    monkeypatch.setenv("LATENTSYNC_FFMPEG", imageio_ffmpeg.get_ffmpeg_exe())
    assert probe(silent_clip).has_video


# ---------------------------------------------------------------- temporary folders


def test_job_tempdir_is_removed_even_after_an_exception():
    with job_tempdir() as tmp:
        (tmp / "x.bin").write_bytes(b"1")
        assert tmp.name.startswith("latentsync_")
    assert not tmp.exists()
    with pytest.raises(KeyError):
        with job_tempdir() as tmp2:
            (tmp2 / "sub").mkdir()
            (tmp2 / "sub" / "y.bin").write_bytes(b"2")
            raise KeyError("boom")
    assert not tmp2.exists()
