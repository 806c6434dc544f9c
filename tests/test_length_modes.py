"""Length modes: the pure plan for every mode, then the real video job with tiny models."""

import numpy as np
import pytest

from latentsync_demo.errors import InputError
from latentsync_demo.media import count_frames, probe, read_frames
from latentsync_demo.media.audio import silence_note
from latentsync_demo.pipeline.length import LENGTH_MODES, length_note, plan_length, resolve_length_mode
from latentsync_demo.testing.media import make_speech_wav, make_talking_head_clip, speech_like

# (mode, source frames, speech frames) -> (sources, generated count, speech frames kept)
EXPECTED = {
    # speech longer than the video: 4 source frames, 10 speech frames
    ("pingpong", 4, 10): ([0, 1, 2, 3, 3, 2, 1, 0, 0, 1], 10, 10),
    ("loop", 4, 10): ([0, 1, 2, 3, 0, 1, 2, 3, 0, 1], 10, 10),
    ("cut", 4, 10): ([0, 1, 2, 3], 4, 4),
    ("keep-tail", 4, 10): ([0, 1, 2, 3, 3, 2, 1, 0, 0, 1], 10, 10),
    ("pad-silence", 4, 10): ([0, 1, 2, 3, 3, 2, 1, 0, 0, 1], 10, 10),
    # video longer than the speech: 7 source frames, 3 speech frames
    ("pingpong", 7, 3): ([0, 1, 2], 3, 3),
    ("loop", 7, 3): ([0, 1, 2], 3, 3),
    ("cut", 7, 3): ([0, 1, 2], 3, 3),
    ("keep-tail", 7, 3): ([0, 1, 2, 3, 4, 5, 6], 3, 3),
    ("pad-silence", 7, 3): ([0, 1, 2, 3, 4, 5, 6], 7, 3),
    # equal lengths: every mode is the identity
    **{(mode, 5, 5): ([0, 1, 2, 3, 4], 5, 5) for mode in LENGTH_MODES},
}


@pytest.mark.parametrize("mode,num_source,num_audio", list(EXPECTED))
def test_plan_frame_count_and_order(mode, num_source, num_audio):
    sources, num_generated, speech = EXPECTED[mode, num_source, num_audio]
    plan = plan_length(num_source, num_audio, mode)
    assert list(plan.sources) == sources and plan.num_frames == len(sources)
    assert plan.generated == tuple([True] * num_generated + [False] * (len(sources) - num_generated))
    assert plan.speech_frames == speech and plan.silent_frames == len(sources) - speech


def test_long_loops_cover_every_frame_evenly():
    plan = plan_length(30, 95, "loop")
    assert plan.num_frames == 95 and np.bincount(plan.sources).tolist() == [4] * 5 + [3] * 25
    pingpong = plan_length(30, 120, "pingpong")
    assert pingpong.sources[29:31] == (29, 29) and pingpong.sources[59:61] == (0, 0)  # it bounces, never jumps
    assert not pingpong.in_file_order() and plan_length(30, 20, "pingpong").in_file_order()


def test_driving_audio_is_padded_with_silence_only_for_generated_frames():
    speech = np.full(3 * 640, 0.5, np.float32)
    padded = plan_length(7, 3, "pad-silence").driving_audio(speech)
    assert padded.shape == (7 * 640,) and (padded[:1920] == 0.5).all() and (padded[1920:] == 0).all()
    assert plan_length(7, 3, "keep-tail").driving_audio(speech) is speech  # the tail is not generated
    assert plan_length(2, 3, "cut").driving_audio(speech) is speech  # never cut before whisper


def test_mode_names():
    assert resolve_length_mode(None) == "pingpong"
    assert resolve_length_mode("loop") == "loop"
    with pytest.raises(InputError, match="unknown length mode 'bounce'; choose one of pingpong, loop, cut"):
        resolve_length_mode("bounce")
    with pytest.raises(InputError, match="at least one video frame"):
        plan_length(0, 5)


def test_length_note_says_what_was_looped_cut_or_padded_and_by_how_much():
    assert length_note(5, 100, "pingpong") == "Looped: the 0.2 s video played back and forth to cover 4.0 s of speech."
    assert length_note(5, 100, "loop") == "Looped: the 0.2 s video was repeated 20.0 times to cover 4.0 s of speech."
    assert length_note(50, 100, "cut") == \
        "Cut: the speech (4.0 s) was cut to the video's 2.0 s (the last 2.0 s dropped)."
    for mode in ("pingpong", "loop", "cut"):
        assert length_note(100, 25, mode) == "Cut: the video (4.0 s) was cut to the speech's 1.0 s (the last 3.0 s " \
            "dropped)."
    assert length_note(100, 25, "keep-tail").startswith("Kept: the video's last 3.0 s after the 1.0 s of speech")
    assert length_note(100, 25, "pad-silence").startswith("Padded: 3.0 s of silence after the 1.0 s of speech")
    assert [length_note(100, n, mode) for n in (98, 100, 102) for mode in LENGTH_MODES] == [""] * 15  # < 0.1 s


def test_silence_note_warns_below_minus_45_dbfs():
    speech = speech_like(1.0, 16000, 0)
    assert silence_note(speech) == ""
    assert silence_note(np.zeros(16000, np.float32)).startswith("The speech is silent:")
    hum = np.full(16000, 10 ** (-50 / 20), np.float32)  # -50 dBFS
    assert silence_note(hum).startswith("The speech is nearly silent (-50 dBFS)")
    assert silence_note(hum * 10) == ""  # -30 dBFS: quiet speech is still speech


# --- end to end: 20 source frames (0.8 s at 25 fps) -------------------------------------------------

W, H = 160, 128


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    return {
        "clip": make_talking_head_clip(root / "clip.mp4", seconds=0.8, fps=25, size=(W, H)),
        "short": make_speech_wav(root / "short.wav", seconds=0.4),  # 10 frames
        "long": make_speech_wav(root / "long.wav", seconds=1.04),  # 26 frames
    }


def _run(tiny_service, media, audio, tmp_path, mode):
    out = tmp_path / f"{mode}.mp4"
    list(tiny_service.lipsync(media["clip"], media[audio], out, num_inference_steps=1, length_mode=mode, consent=True))
    return read_frames(media["clip"]), read_frames(out), out


def _closest_source(source, frame):
    top = slice(0, int(H * 0.3))  # above the eyes nothing is generated: it identifies the source frame
    return int(np.argmin([np.abs(s[top].astype(float) - frame[top]).mean() for s in source]))


def test_video_loop_restarts_from_the_first_frame(tiny_service, media, tmp_path):
    source, result, out = _run(tiny_service, media, "long", tmp_path, "loop")
    assert len(result) == 26 and abs(probe(out).duration - 1.04) <= 0.04
    for i in (5, 19, 20, 24):
        assert abs(_closest_source(source, result[i]) - i % 20) <= 1


def test_video_cut_at_the_shorter_and_tails(tiny_service, media, tmp_path):
    _, cut, cut_out = _run(tiny_service, media, "long", tmp_path, "cut")
    assert len(cut) == 20 and abs(probe(cut_out).duration - 0.8) <= 0.04  # speech cut at the video's end

    source, kept, kept_out = _run(tiny_service, media, "short", tmp_path, "keep-tail")
    _, padded, padded_out = _run(tiny_service, media, "short", tmp_path, "pad-silence")
    assert len(kept) == len(padded) == 20 and probe(padded_out).has_audio
    assert abs(probe(kept_out).duration - 0.8) <= 0.04 and abs(probe(padded_out).duration - 0.8) <= 0.04
    # keep-tail passes frames 10..19 through untouched (re-encoding noise only: a mean difference of ~3 at
    # this size); pad-silence generates them (tiny random model: ~12), both in the source frame order.
    def mean_diff(frames):
        return np.abs(frames.astype(int) - source.astype(int)).mean(axis=(1, 2, 3))

    assert (mean_diff(kept)[:10] > 8).all() and (mean_diff(kept)[10:] < 5).all()
    assert (mean_diff(padded) > 8).all()
    assert [_closest_source(source, padded[i]) for i in (10, 19)] == [10, 19]
    assert count_frames(kept_out) == 20


def test_unknown_mode_is_refused_before_any_work(tiny_service, media, tmp_path):
    with pytest.raises(InputError, match="unknown length mode"):
        list(tiny_service.lipsync(media["clip"], media["short"], tmp_path / "x.mp4", length_mode="remap", consent=True))


def test_a_looped_clip_and_silent_speech_are_told(tiny_service, tmp_path):
    """Issue 21, item 6: a 0.2 s clip looped to 1 s of silent speech: a warning before the work starts, and
    the end event says what was looped and by how much."""
    from latentsync_demo.media.audio import write_wav

    silent = tmp_path / "silent.wav"
    write_wav(silent, np.zeros(16000, np.float32), 16000)
    clip = make_talking_head_clip(tmp_path / "blink.mp4", seconds=0.2, fps=25, size=(W, H))
    events = list(tiny_service.lipsync(clip, silent, tmp_path / "out.mp4", num_inference_steps=1, consent=True))
    stages = [e.stage for e in events]
    warned = [i for i, e in enumerate(events) if e.notes and e.stage != "done"]
    assert warned and warned[0] < stages.index("detecting faces"), stages
    assert events[warned[0]].notes.startswith("The speech is silent")
    assert events[-1].stage == "done" and events[-1].notes == (
        f"{events[warned[0]].notes} Looped: the 0.2 s video played back and forth to cover 1.0 s of speech.")
