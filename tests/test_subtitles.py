"""Subtitles (SubRip files, the soft mov_text track, burned-in cues), the job's soundtrack, and ducking the room."""

import json
import subprocess

import numpy as np
import pytest

import latentsync_demo.service as service_module
from latentsync_demo.errors import InputError
from latentsync_demo.media import VideoWriter, load_audio, mux, read_frames, write_wav
from latentsync_demo.media.ffmpeg import ffmpeg_exe
from latentsync_demo.media import subtitles
from latentsync_demo.media.mix import duck_under, mix_tracks
from latentsync_demo.media.subtitles import (MP4_LANGUAGES, SCRIPT_SAMPLES, Cue, burn_filter, check_burn_font,
                                             find_subtitle_font, iso639_2, read_srt, srt_text, write_srt)
from latentsync_demo.provenance.detect import make_marker
from latentsync_demo.provenance import c2pa_embed
from latentsync_demo.provenance.manifest import GENERATION_LABEL, read_metadata, stamp
from latentsync_demo.provenance.signing import C2paSigning
from latentsync_demo.testing.media import make_speech_wav, make_talking_head_clip

CUES = [Cue(0.0, 0.36, "¿Hola, qué tal?"), Cue(0.4, 0.52, "Línea uno\nlínea dos"), Cue(61.25, 3725.5, "fin")]
W, H = 320, 240


def _streams(path) -> list[str]:
    """The "Stream #..." lines of ``ffmpeg -i`` (imageio-ffmpeg ships no ffprobe)."""
    text = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    return [line.strip() for line in text.splitlines() if line.strip().startswith("Stream #")]


def _soft_track(path) -> list[Cue]:
    """The MP4's first subtitle track, extracted back to SubRip and parsed."""
    text = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(path), "-map", "0:s:0",
                           "-f", "srt", "-"], capture_output=True, text=True, check=True).stdout
    return read_srt(text)


def test_srt_round_trip(tmp_path):
    path = write_srt(CUES, tmp_path / "cues.srt")
    assert read_srt(path) == CUES
    assert read_srt(srt_text(CUES)) == CUES
    text = path.read_text(encoding="utf-8")
    assert text.startswith("1\n00:00:00,000 --> 00:00:00,360\n¿Hola, qué tal?\n\n2\n")
    assert "3\n00:01:01,250 --> 01:02:05,500\nfin\n\n" in text
    # What editors and other tools write: a BOM, CRLF line ends, no final blank line, a missing index, "." ms.
    windows = "\ufeff1\r\n00:00:00,000 --> 00:00:00,360\r\n¿Hola, qué tal?\r\n\r\n00:00:00.400 --> 00:00:00.520\r\n" \
              "Línea uno\r\nlínea dos\r\n\r\n3\r\n00:01:01,250 --> 01:02:05,500\r\nfin"
    (tmp_path / "windows.srt").write_bytes(windows.encode("utf-8"))
    assert read_srt(tmp_path / "windows.srt") == CUES
    (tmp_path / "empty.srt").write_text("\n")
    assert read_srt(tmp_path / "empty.srt") == []


def test_malformed_srt_names_the_line(tmp_path):
    bad = "1\n00:00:00,000 --> 00:00:01,000\nhola\n\n2\n00:00:01,000 -> 00:00:02,000\nadiós\n"
    (tmp_path / "bad.srt").write_text(bad, encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.srt, line 6: expected a cue's time line.*'00:00:01,000 -> "):
        read_srt(tmp_path / "bad.srt")
    with pytest.raises(InputError, match="line 2: the cue ends before it starts"):
        read_srt("1\n00:00:02,000 --> 00:00:01,000\nhola\n")
    (tmp_path / "latin1.srt").write_bytes("1\n00:00:00,000 --> 00:00:01,000\nse\xf1or\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        read_srt(tmp_path / "latin1.srt")
    with pytest.raises(InputError, match="must end after it starts"):
        Cue(1.0, 1.0, "x")


def test_language_tags():
    assert [iso639_2(code) for code in MP4_LANGUAGES] == \
        "eng spa fra deu ita por pol tur rus nld ces ara zho hun kor jpn hin".split()
    assert iso639_2("zh") == iso639_2("ZH-CN") == iso639_2("zho") == "zho"
    with pytest.raises(InputError, match="unknown subtitle language 'xx'; choose one of en, es"):
        iso639_2("xx")
    assert set(SCRIPT_SAMPLES) == set(MP4_LANGUAGES)


@pytest.fixture(scope="module")
def grey_video(tmp_path_factory):
    """1 s of flat grey frames (25 fps): any drawn pixel shows."""
    path = tmp_path_factory.mktemp("grey") / "grey.mp4"
    with VideoWriter(path, 160, 120, 25) as writer:
        writer.write_batch(np.full((25, 120, 160, 3), 90, np.uint8))
    return path


def test_mux_adds_a_mov_text_track_with_its_language(grey_video, tmp_path):
    srt = write_srt(CUES[:2], tmp_path / "es.srt")
    out = mux(grey_video, np.zeros(16000, np.float32), tmp_path / "soft.mp4", subtitles=srt, subtitle_language="es",
              metadata={"job_id": "abc"})
    subtitle_streams = [s for s in _streams(out) if "Subtitle:" in s]
    assert len(subtitle_streams) == 1 and "(spa): Subtitle: mov_text" in subtitle_streams[0]
    assert _soft_track(out) == CUES[:2]
    assert read_metadata(out)["job_id"] == "abc"  # the same single pass wrote the tags
    plain = mux(grey_video, np.zeros(16000, np.float32), tmp_path / "plain.mp4")
    assert not [s for s in _streams(plain) if "Subtitle:" in s]
    with pytest.raises(InputError, match="unknown subtitle language"):
        mux(grey_video, np.zeros(16000, np.float32), tmp_path / "x.mp4", subtitles=srt, subtitle_language="klingon")
    assert not (tmp_path / "x.mp4").exists()


@pytest.fixture
def no_fontconfig(tmp_path, monkeypatch):
    """A fontconfig that knows no fonts: what a bare container has. libass then draws only the font we bring."""
    conf = tmp_path / "empty-fonts.conf"
    conf.write_text('<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd"><fontconfig></fontconfig>')
    monkeypatch.setenv("FONTCONFIG_FILE", str(conf))


def _drawn_pixels(burned: np.ndarray, plain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: the pixels changed by more than 60 levels in the lower sixth of the frame, and elsewhere."""
    changed = np.abs(burned.astype(int) - plain.astype(int)).max(axis=3) > 60
    bottom = changed.shape[1] * 5 // 6
    return changed[:, bottom:].sum(axis=(1, 2)), changed[:, :bottom].sum(axis=(1, 2))


def test_burn_filter_draws_the_cues_only_while_they_show(tmp_path, no_fontconfig):
    work = tmp_path / "job: a, b's [folder];"  # characters the filtergraph syntax would misread unescaped
    work.mkdir()
    frames = np.full((25, 120, 160, 3), 90, np.uint8)
    with VideoWriter(tmp_path / "burned.mp4", 160, 120, 25, video_filter=burn_filter(CUES[:2], work)) as writer:
        writer.write_batch(frames)
    with VideoWriter(tmp_path / "plain.mp4", 160, 120, 25) as writer:
        writer.write_batch(frames)
    lower, upper = _drawn_pixels(read_frames(tmp_path / "burned.mp4"), read_frames(tmp_path / "plain.mp4"))
    shown = [i for i in range(25) if any(c.start <= i / 25 < c.end for c in CUES)]  # frames 0-8 and 10-12
    assert shown == [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12]
    assert (lower[shown] > 20).all()  # text drawn at the bottom (small: 35-44 pixels in a 160x120 frame)
    assert (lower[[i for i in range(25) if i not in shown]] == 0).all() and (upper == 0).all()


def test_burning_without_a_font_for_the_script_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTSYNC_SUBTITLE_FONT", str(tmp_path / "missing.ttf"))
    with pytest.raises(InputError, match="LATENTSYNC_SUBTITLE_FONT=.*is not a font file"):
        burn_filter(CUES, tmp_path)
    monkeypatch.delenv("LATENTSYNC_SUBTITLE_FONT")
    latin, family = find_subtitle_font("¿Qué?")  # DejaVu Sans (matplotlib's or the system's): no Chinese glyphs
    assert family == "DejaVu Sans"
    monkeypatch.setenv("LATENTSYNC_SUBTITLE_FONT", str(latin))
    with pytest.raises(InputError, match="has glyphs for all their characters.*Noto Sans CJK"):
        burn_filter([Cue(0, 1, "你好")], tmp_path)
    assert check_burn_font("es") == latin  # a translate request checks its target language's script up front
    with pytest.raises(InputError, match="cannot burn zh-cn subtitles: no font on this host has that script.*"
                                         "Noto Sans CJK"):
        check_burn_font("zh")
    # Without the variable: only matplotlib's fonts (DejaVu, and LastResort, which "covers" every code point with
    # boxes showing its number and must not count) -> Russian and Arabic yes, Hindi no.
    monkeypatch.delenv("LATENTSYNC_SUBTITLE_FONT")
    monkeypatch.setattr(subtitles, "_font_dirs", lambda: [latin.parent])
    assert check_burn_font("ru").name == check_burn_font("ar").name == "DejaVuSans.ttf"
    with pytest.raises(InputError, match="cannot burn hi subtitles.*Noto Sans Devanagari"):
        check_burn_font("hi")


# --- jobs on the tiny models -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)  # 1 s: what the output should play
    write_wav(root / "room.wav", tone.astype(np.float32))
    return {"clip": make_talking_head_clip(root / "clip.mp4", seconds=1.0, fps=25, size=(W, H)),
            "speech": make_speech_wav(root / "speech.wav", seconds=0.8),
            "soundtrack": root / "room.wav",
            "srt": write_srt(CUES[:2], root / "cues.srt")}


@pytest.fixture
def unmarked(monkeypatch):
    """No watermark: its mark depends on the job number, which differs between the two jobs compared."""
    monkeypatch.setattr(service_module, "make_marker", lambda job, key=None, resolution=256: make_marker(None))


def _job(service, media, out, **options):
    events = list(service.lipsync(media["clip"], media["speech"], out, num_inference_steps=1, consent=True,
                                  **options))
    assert events[-1].stage == "done"
    return events[-1]


def test_job_with_soft_subtitles_and_a_soundtrack(tiny_service, media, tmp_path):
    out = tmp_path / "dub.mp4"
    done = _job(tiny_service, media, out, subtitles=media["srt"], subtitle_language="es",
                soundtrack=media["soundtrack"])
    assert done.subtitles == tmp_path / "dub.srt" and read_srt(done.subtitles) == CUES[:2]
    assert _soft_track(out) == CUES[:2]
    assert [s for s in _streams(out) if "Subtitle:" in s][0].count("(spa)") == 1
    played = load_audio(out)  # the soundtrack (a 440 Hz tone), not the speech the lips followed
    spectrum = np.abs(np.fft.rfft(played))
    assert abs(np.argmax(spectrum) * 16000 / len(played) - 440) <= 2
    tags = read_metadata(out)
    assert tags["subtitles"] == "soft" and tags["subtitle_language"] == "spa"
    manifest = json.loads(done.manifest.read_text())
    ingredients = {i["role"]: i for i in manifest["ingredients"]}
    assert ingredients["subtitles"]["title"] == "dub.srt" and ingredients["subtitles"]["relationship"] == "componentOf"
    assert "soundtrack" in ingredients
    action = manifest["assertions"][0]["data"]["actions"][0]
    assert action["parameters"]["subtitles"] == {"burned": False, "language": "spa"}
    assert "soft subtitle track" in action["description"]
    redone = list(tiny_service.redo(out, 0.0, 0.2, seed=7))[-1].output  # keeps the soft track
    assert _soft_track(redone) == CUES[:2] and [s for s in _streams(redone) if "(spa): Subtitle" in s]
    # Signed C2PA (what a host with signing configured embeds): an MP4 with a subtitle track signs and validates,
    # the .srt described by name (c2pa reads no SubRip) and the generation facts saying how subtitles are shown.
    stamp(out, {"video": media["clip"], "audio": media["speech"], "subtitles": done.subtitles}, read_metadata(out),
          C2paSigning.test_certificate())
    found = c2pa_embed.read(out)
    assert found.state == "Valid" and ("dub.srt", "componentOf") in {(i["title"], i["relationship"])
                                                                     for i in found.ingredients}
    assert found.assertions[GENERATION_LABEL]["subtitles"] == {"burned": False, "language": "spa"}


def test_burned_subtitles_change_only_the_frames_with_a_cue(tiny_service, media, tmp_path, unmarked, no_fontconfig):
    plain, burned = tmp_path / "plain.mp4", tmp_path / "burned.mp4"
    _job(tiny_service, media, plain)
    done = _job(tiny_service, media, burned, subtitles=media["srt"], burn_subtitles=True)
    assert read_srt(done.subtitles) == CUES[:2]  # the .srt is still written beside the output
    assert not [s for s in _streams(burned) if "Subtitle:" in s]  # burned: no soft track as well
    lower, upper = _drawn_pixels(read_frames(burned), read_frames(plain))
    shown = [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12]
    assert (lower[shown] > 300).all()  # the text (measured: 650-1030 pixels per frame)
    # No cue: only the encoder's noise (it codes the other frames differently; up to ~40 levels at sharp edges).
    assert (lower[[9, *range(13, 20)]] == 0).all() and (upper == 0).all()
    assert read_metadata(burned)["subtitles"] == "burned"
    assert "subtitles burned into the frames" in done.manifest.read_text()
    # A redo re-encodes the GOP of frames 0-19 from its record: it burns the same cues into it again.
    redone = list(tiny_service.redo(burned, 0.0, 0.2, seed=7))[-1].output
    lower, upper = _drawn_pixels(read_frames(redone), read_frames(plain))
    assert (lower[shown] > 300).all() and (lower[[9, *range(13, 20)]] == 0).all()


def test_bad_subtitle_requests_are_refused_before_work(tiny_service, media, tmp_path):
    bad = tmp_path / "bad.srt"
    bad.write_text("1\n00:00:00,000 --> 00:00:01,000\nhola\n\n2\nnot a time\nadiós\n", encoding="utf-8")

    def prepare(**options):
        return tiny_service.prepare(media["clip"], media["speech"], tmp_path / "o.mp4", consent=True, **options)

    with pytest.raises(InputError, match=r"bad\.srt, line 6"):
        prepare(subtitles=bad)
    with pytest.raises(InputError, match="unknown subtitle language 'xx'"):
        prepare(subtitles=media["srt"], subtitle_language="xx")
    with pytest.raises(InputError, match="burning subtitles in needs subtitles"):
        prepare(burn_subtitles=True)
    with pytest.raises(InputError, match="has no cues"):
        prepare(subtitles=write_srt([], tmp_path / "none.srt"))
    request = prepare(subtitles=media["srt"], subtitle_language="es")
    assert request.subtitles == media["srt"] and request.soundtrack is None and not request.burn_subtitles


# --- ducking -------------------------------------------------------------------------------------------------------

def test_ducking_lowers_the_room_under_speech_only():
    rate = 16000
    t = np.arange(4 * rate) / rate
    room = (0.2 * np.sin(2 * np.pi * 110 * t)).astype(np.float32)
    speech = np.where((t >= 1.5) & (t < 2.5), 0.3 * np.sin(2 * np.pi * 300 * t), 0).astype(np.float32)
    mixed = duck_under(room, speech, rate, depth_db=12.0, attack_s=0.05, release_s=0.3)
    ducked = mixed - speech

    def level_db(x):
        return 20 * np.log10(np.sqrt(np.mean(np.square(x.astype(np.float64)))))

    during = slice(int(1.8 * rate), int(2.3 * rate))
    assert abs(level_db(ducked[during]) - level_db(room[during]) + 12.0) < 0.3
    before, after = slice(0, int(1.4 * rate)), slice(int(2.85 * rate), None)  # > attack / release from the speech
    assert np.array_equal(mixed[before], room[before]) and np.array_equal(mixed[after], room[after])
    # No clicks: the gain applied to the room moves smoothly (a constant room shows it sample by sample).
    gain = (duck_under(np.full(4 * rate, 0.5, np.float32), speech, rate) - speech) / 0.5
    assert np.abs(np.diff(gain)).max() < 0.003 and gain.min() == pytest.approx(10 ** (-12 / 20), abs=0.01)
    assert np.abs(duck_under(np.full(100, 0.9, np.float32), np.full(200, 0.9, np.float32), rate)).max() <= 1.0


def test_mix_tracks_sums_any_lengths_without_clipping():
    a, b = np.full(10, 0.25, np.float32), np.full(4, 0.5, np.float32)
    assert np.allclose(mix_tracks([a, b]), np.r_[np.full(4, 0.75), np.full(6, 0.25)])  # no clip: as summed
    loud = mix_tracks([np.full(6, 0.8, np.float32), np.full(3, 0.7, np.float32)])
    assert len(loud) == 6 and np.abs(loud).max() == pytest.approx(1.0) and loud[4] / loud[0] == pytest.approx(0.8 / 1.5)
    assert mix_tracks([a]).dtype == np.float32 and len(mix_tracks([])) == 0
