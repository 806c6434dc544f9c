"""Translation dubbing (issue 25): translation model, editable transcript, placement on the original timing,
re-speaking only edited segments, and the checks made before any work. Tiny random models throughout."""

import json

import numpy as np
import pytest

from latentsync_demo.errors import CheckpointError, InputError
from latentsync_demo.testing.media import make_talking_head_clip
from latentsync_demo.testing.tiny_translation import write_tiny_translation_model
from latentsync_demo.testing.tiny_voice import write_tiny_voice_models
from latentsync_demo.voice import VoiceService, speaker_reference
from latentsync_demo.voice import service as service_module
from latentsync_demo.voice.dubbing import (STRETCH_RANGE, DubScript, DubSegment, load_script, place_dub,
                                           script_from_json, timing_notes, xtts_language)
from latentsync_demo.voice.translate import Translator

SR = 24000


@pytest.fixture(scope="module")
def voice_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("dub_models")
    write_tiny_voice_models(root)
    write_tiny_translation_model(root)
    return root


@pytest.fixture(scope="module")
def voice(voice_root):
    return VoiceService(voice_root, device="cpu")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_talking_head_clip(tmp_path_factory.mktemp("dub_media") / "talk.mp4", seconds=6.0, fps=25,
                                  size=(160, 120))


def _script(texts=("hola amigo", "que tal", "muy bien gracias")):
    starts = [(0.3, 1.6), (2.0, 3.1), (3.6, 5.4)]
    return DubScript("en", "es", tuple(DubSegment(a, b, f"source {i}", t) for i, ((a, b), t) in
                                       enumerate(zip(starts, texts))))


# --- languages and the translation model --------------------------------------------------------------------------


def test_target_language_codes_and_refusal():
    assert xtts_language("es") == "es" and xtts_language("zh") == "zh-cn" and xtts_language("PT_br") == "pt"
    with pytest.raises(InputError, match="cannot dub into 'xx'.*en, es, fr"):
        xtts_language("xx")
    with pytest.raises(InputError, match="choose the language to dub into"):
        xtts_language("")


def test_tiny_translator_real_format_translates_each_segment(voice_root):
    folder = voice_root / "translation"
    assert {"config.json", "generation_config.json", "model.safetensors", "sentencepiece.bpe.model",
            "tokenizer_config.json", "vocab.json"} <= {p.name for p in folder.iterdir()}
    translator = Translator(folder)
    assert {"en", "es", "zh", "ja", "hi", "ar"} <= translator.languages  # XTTS's languages are all there
    out = translator.translate(["hello there", "a second phrase"], "en", "es")
    assert len(out) == 2 and all(t and any(c.isalpha() for c in t) for t in out)
    assert "__es__" not in out[0] and "<" not in out[0]  # language token and specials are not text
    assert translator.translate(["hello there"], "en", "es") == out[:1]  # deterministic, segment by segment
    assert translator.translate(["same language"], "en", "en") == ["same language"]
    with pytest.raises(InputError, match="cannot translate into 'tlh'"):
        translator.translate(["x"], "en", "tlh")


def test_missing_translation_model_names_the_download(tmp_path, clip):
    write_tiny_voice_models(tmp_path)  # XTTS and Whisper, but no translation model
    with pytest.raises(CheckpointError, match=r"voice\.download --agree-cpml --translation --checkpoints") as info:
        VoiceService(tmp_path).transcribe_translate(clip, "es")
    assert str(tmp_path / "translation" / "config.json") in str(info.value)


# --- the transcript file ------------------------------------------------------------------------------------------


def test_transcript_json_round_trip_and_bad_files(tmp_path):
    script = _script()
    path = script.save(tmp_path / "t.json")
    assert load_script(path) == script
    data = json.loads(path.read_text())
    data["segments"][1]["text"] = "editado"
    path.write_text(json.dumps(data))
    assert load_script(path).segments[1].text == "editado" and load_script(path, "de").target_language == "de"
    with pytest.raises(InputError, match="not a transcript file"):
        script_from_json('{"segments": [{"start": 1}]}')
    data["segments"][2]["text"] = "  "
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"segment 3 of t.json \(3.60-5.40 s\) has no words"):
        load_script(path)
    with pytest.raises(InputError, match="neither .json nor .srt"):
        load_script(tmp_path / "t.txt")
    with pytest.raises(InputError, match="has no segments: no speech"):
        load_script(DubScript("en", "es", ()).save(tmp_path / "empty.json"))


# --- placement ----------------------------------------------------------------------------------------------------


def _tone(seconds, freq=220.0):
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _onsets(track, starts, window=0.2):
    """First sample louder than 1e-3 after each expected start - window."""
    out = []
    for s in starts:
        i0 = max(0, int((s - window) * SR))
        loud = np.nonzero(np.abs(track[i0:]) > 1e-3)[0]
        out.append((i0 + loud[0]) / SR)
    return out


def test_each_segment_starts_on_its_source_and_stretch_stays_in_bounds():
    pieces = [(0.3, 1.6, _tone(1.3)),  # fits as is
              (2.0, 3.1, _tone(0.6)),  # short: slowed, at most to 0.8x
              (3.6, 4.0, _tone(2.0))]  # far too long: 1.25x and still runs over, into the video's end
    track, placements = place_dub(pieces, 5 * SR, SR)
    for (start, _, _), onset in zip(pieces, _onsets(track, [p[0] for p in pieces])):
        assert abs(onset - start) <= 0.04  # the bound; placement is sample-exact, fades are 5 ms
    slow, fast = STRETCH_RANGE
    assert all(slow - 1e-3 <= p.rate <= fast + 1e-3 for p in placements)
    assert placements[0].rate == pytest.approx(1.0, abs=1e-3) and placements[1].rate == pytest.approx(slow, abs=1e-3)
    assert placements[2].rate == pytest.approx(fast, abs=1e-3) and placements[2].overrun > 0
    assert track.size == round((3.6 + 2.0 / fast) * SR)  # grown, not cut: what does not fit is kept
    note = timing_notes(placements, _script())
    assert "Segment 3 (3.60-5.40 s) is too long" in note and "past the end of the video" in note
    assert "Segment 1" not in note and "Segment 2" not in note


def test_overrun_into_the_next_segment_is_reported():
    pieces = [(0.0, 0.5, _tone(1.5)), (1.0, 2.0, _tone(1.0))]
    _, placements = place_dub(pieces, 3 * SR, SR)
    assert placements[0].overrun == pytest.approx(1.5 / 1.25 - 1.0, abs=1e-3)
    assert "into segment 2" in timing_notes(placements, _script())


# --- the voice service: transcribe, translate, dub, edit ------------------------------------------------------------


def test_transcribe_translate_gives_timed_translated_segments(voice, clip):
    script = voice.transcribe_translate(clip, "es")
    assert script.source_language == "en" and script.target_language == "es" and script.segments
    assert all(0 <= s.start < s.end <= 6.0 + 1e-6 and s.source and s.text for s in script.segments)
    again = voice.transcribe_translate(clip, "es")
    assert again == script  # the same clip, the same transcript


def test_editing_one_segment_respeaks_only_it(voice, clip, monkeypatch):
    reference = speaker_reference(clip)
    script = _script()
    first, sr, placements = voice.dub(script, reference, 6.0, seed=3)
    calls = []
    cloner = voice.cloner()
    original = cloner.synthesize
    monkeypatch.setattr(cloner, "synthesize", lambda text, *a, **k: calls.append(text) or original(text, *a, **k))
    edited = script.with_texts(["hola amigo", "una frase nueva", "muy bien gracias"])
    second, _, placements2 = voice.dub(edited, reference, 6.0, seed=3)
    assert calls == ["una frase nueva"]  # the other two came from the segment cache
    service_module._SEGMENTS.memory.clear()  # a forked ZeroGPU call starts with an empty memory: the disk has them
    assert np.array_equal(voice.dub(edited, reference, 6.0, seed=3)[0], second) and len(calls) == 1
    changed = np.nonzero(first[: min(first.size, second.size)] != second[: min(first.size, second.size)])[0]
    p = placements2[1]
    assert changed.size and changed[0] >= int(round(min(p.start, placements[1].start) * sr))
    assert changed[-1] < int(round(max(p.end, placements[1].end) * sr))  # only segment 2's samples moved
    assert np.array_equal(first[: int(placements[1].start * sr)], second[: int(placements[1].start * sr)])


def test_offline_translation_download_names_the_command(tmp_path, voice_root, capsys):
    """XTTS and the recogniser are there; the translation model cannot come (HF_HUB_OFFLINE=1, conftest)."""
    import shutil

    from latentsync_demo.voice.download import main as download_main

    for folder in ("xtts-v2", "asr"):
        shutil.copytree(voice_root / folder, tmp_path / folder)
    assert download_main(["--checkpoints", str(tmp_path), "--translation"]) == 1
    err = capsys.readouterr().err
    assert "translation model" in err and "offline" in err
    assert f"voice.download --agree-cpml --translation --checkpoints {tmp_path}" in err
    assert not (tmp_path / "translation" / "model.safetensors").exists()
