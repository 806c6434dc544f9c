"""Voice cloning (issue 6): speaker reference, timing, tiny XTTS + Whisper end to end, caching, downloads."""

import numpy as np
import pytest

from latentsync_demo.errors import CheckpointError, InputError
from latentsync_demo.media import count_frames, load_audio, mux, write_wav
from latentsync_demo.testing.media import make_speech_wav, make_talking_head_clip, speech_like
from latentsync_demo.testing.tiny_voice import write_tiny_voice_models
from latentsync_demo.voice import (LicenceNotAgreedError, VoiceService, download_voice_models, prepare_driving_audio,
                                   speaker_reference)
from latentsync_demo.voice.download import main as download_main
from latentsync_demo.voice.reference import REFERENCE_RATE, concatenate_speech, voiced_regions
from latentsync_demo.voice.timing import place_segments, time_stretch, trim_silence
from latentsync_demo.voice.xtts import VoiceCloner, split_text

W, H = 320, 240  # big enough for the face detector in the lip-sync run


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("voice_media")
    silent_video = make_talking_head_clip(root / "mute.mp4", seconds=1.0, fps=25, size=(64, 48), with_audio=False)
    return {
        "clip": make_talking_head_clip(root / "talk.mp4", seconds=8.0, fps=25, size=(W, H)),
        "mute": silent_video,
        "silent_track": mux(silent_video, np.zeros(16000, np.float32), root / "silent.mp4"),
        "driving": make_speech_wav(root / "driving.wav", seconds=2.5, seed=3),
        "short_ref": make_speech_wav(root / "short_ref.wav", seconds=2.0, seed=4),
    }


@pytest.fixture(scope="module")
def voice_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("voice_models")
    write_tiny_voice_models(root)
    return root


@pytest.fixture(scope="module")
def service(voice_root):
    return VoiceService(voice_root, device="cpu")


@pytest.fixture(scope="module")
def reference(media):
    return speaker_reference(media["clip"])


# --- speaker reference ------------------------------------------------------------------------------------------


def test_reference_from_the_videos_own_speech(reference):
    assert reference.dtype == np.float32 and reference.ndim == 1
    seconds = reference.size / REFERENCE_RATE
    assert 6.0 <= seconds <= 8.0  # syllable pauses stay in, so nearly all of the 8 s clip is speech
    assert np.abs(reference).max() > 0.1


def test_voiced_regions_skip_silence_and_cap_length():
    sr = 16000
    speech = speech_like(4.0, sr, seed=1)
    audio = np.concatenate([np.zeros(2 * sr), speech[: 3 * sr], np.zeros(sr), speech[3 * sr:], np.zeros(sr)])
    regions = voiced_regions(audio.astype(np.float32), sr)
    assert len(regions) == 2
    assert abs(regions[0][0] / sr - 2.0) < 0.15 and abs(regions[1][1] / sr - 7.0) < 0.15
    joined = concatenate_speech(audio, regions, sr)
    assert abs(joined.size / sr - 4.0) < 0.3  # the 4 s of speech, without the 4 s of silence
    assert concatenate_speech(audio, regions, sr, max_s=2.5).size == int(2.5 * sr)


def test_video_without_audio_track_asks_for_a_reference(media):
    with pytest.raises(InputError, match="reference clip") as info:
        speaker_reference(media["mute"])
    assert "no audio" in str(info.value)


def test_silent_track_asks_for_a_reference(media):
    with pytest.raises(InputError, match="has no speech.*reference clip"):
        speaker_reference(media["silent_track"])


def test_user_reference_file(media, tmp_path):
    wav = make_speech_wav(tmp_path / "ref.wav", seconds=7.0, sample_rate=44100, seed=5)
    assert 6.0 <= speaker_reference(wav, user_supplied=True).size / REFERENCE_RATE <= 7.0
    with pytest.raises(InputError, match="at least 6 s"):
        speaker_reference(media["short_ref"], user_supplied=True)


# --- timing -------------------------------------------------------------------------------------------------------


def _dominant_hz(x, sr):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return np.argmax(spectrum) * sr / x.size


@pytest.mark.parametrize("ratio", [0.55, 0.8, 1.0, 1.3, 2.0])
def test_time_stretch_exact_length_and_same_pitch(ratio):
    sr = 24000
    t = np.arange(sr) / sr
    tone = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    target = int(round(sr * ratio)) + 7  # odd lengths too
    out = time_stretch(tone, target, sr)
    assert out.dtype == np.float32 and out.size == target
    assert abs(_dominant_hz(out, sr) / 220 - 1) < 0.03
    middle = out[target // 4: 3 * target // 4]
    assert 0.3 < np.sqrt(2 * np.mean(middle ** 2)) < 0.6  # no dropouts or doubling in the overlap-add


def test_time_stretch_edge_cases():
    assert time_stretch(np.ones(100, np.float32), 0, 24000).size == 0
    short = time_stretch(np.ones(100, np.float32), 300, 24000)
    assert short.size == 300 and short[:100].min() == 1 and short[100:].max() == 0


def test_place_segments_offsets_and_lengths():
    sr = 16000
    piece = (0.3 * np.sin(2 * np.pi * 200 * np.arange(sr) / sr)).astype(np.float32)
    track = place_segments([(0.5, 1.25, piece), (2.0, 2.5, piece[: sr // 4]), (2.9, 4.0, piece)], 3 * sr, sr)
    assert track.size == 3 * sr and track.dtype == np.float32
    loud = np.abs(track) > 1e-4
    assert not loud[: int(0.5 * sr)].any() and loud[int(0.51 * sr): int(1.24 * sr)].mean() > 0.9
    assert not loud[int(1.25 * sr): 2 * sr].any() and loud[int(2.01 * sr): int(2.49 * sr)].mean() > 0.9
    assert not loud[int(2.5 * sr): int(2.9 * sr)].any() and loud[int(2.91 * sr):].mean() > 0.9  # cut at the end
    assert abs(_dominant_hz(track[int(0.5 * sr): int(1.25 * sr)], sr) / 200 - 1) < 0.05


def test_trim_silence():
    sr = 16000
    x = np.concatenate([np.zeros(sr), 0.5 * np.ones(sr // 2), np.zeros(sr)]).astype(np.float32)
    assert abs(trim_silence(x, sr).size - sr // 2) <= 0.05 * sr
    assert trim_silence(np.zeros(sr, np.float32), sr).size == sr


def test_split_text():
    assert split_text("Hi there. How are you?\nFine!", 250) == ["Hi there. How are you? Fine!"]
    chunks = split_text("One sentence here. " * 30, 60)
    assert all(len(c) <= 60 for c in chunks) and " ".join(chunks) == ("One sentence here. " * 30).strip()
    assert all(len(c) <= 20 for c in split_text("a very long sentence without any stops at all " * 3, 20))
    assert split_text("  \n ", 250) == []


# --- tiny XTTS + Whisper -------------------------------------------------------------------------------------------


def test_speaker_latents_are_cached_by_content(voice_root, reference):
    cloner = VoiceCloner(voice_root / "xtts-v2")
    calls = {"gpt": 0, "speaker": 0}
    gpt, spk = cloner.model.get_gpt_cond_latents, cloner.model.get_speaker_embedding

    def count(name, fn):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapped

    cloner.model.get_gpt_cond_latents = count("gpt", gpt)
    cloner.model.get_speaker_embedding = count("speaker", spk)
    first = cloner.speaker_latents(reference)
    again = cloner.speaker_latents(reference.copy())  # same samples, different array
    assert again is first and calls == {"gpt": 1, "speaker": 1}
    other = cloner.speaker_latents(reference[: 5 * REFERENCE_RATE])
    assert other.key != first.key and calls == {"gpt": 2, "speaker": 2}
    assert cloner.language("zh") == "zh-cn" and cloner.language("EN") == "en"
    with pytest.raises(InputError, match="choose one of"):
        cloner.language("xx")


def test_transcriber_long_form_and_no_timestamp_fallback(voice_root, monkeypatch):
    import torch

    from latentsync_demo.voice.asr import Transcriber

    asr = Transcriber(voice_root / "asr")
    long = asr.transcribe(speech_like(35.0, 16000, seed=2))  # > 30 s: Whisper's sequential long-form decoding
    assert long.language == "en" and long.segments and long.segments[-1].end <= 35.0
    assert all(0 <= s.start < s.end for s in long.segments) and long.segments[-1].start > 30.0
    # A model that gives no timestamps: one segment over the speech (here 1.0 s to 2.5 s of a 3 s clip).
    letters = asr.processor.tokenizer.convert_tokens_to_ids(list("hello"))
    monkeypatch.setattr(asr.model, "generate", lambda *a, **k: {"sequences": torch.tensor([letters])})
    audio = np.concatenate([np.zeros(16000), speech_like(1.5, 16000), np.zeros(8000)]).astype(np.float32)
    (only,) = asr.transcribe(audio, language="en").segments
    assert only.text == "hello" and abs(only.start - 1.0) < 0.1 and abs(only.end - 2.5) < 0.1


def test_script_mode_drives_a_lipsync_run(service, media, reference, tiny_service, tmp_path):
    wav = tmp_path / "script.wav"
    audio, sr = service.script("Hello there. This is my own voice.", "en", reference, out_path=wav, seed=0)
    assert sr == 24000 and audio.dtype == np.float32 and audio.ndim == 1
    assert 0.5 < audio.size / sr < 4.0  # the tiny GPT always speaks 37 audio tokens (~1.7 s) per chunk
    assert np.abs(audio).max() > 1e-3
    assert abs(load_audio(wav).size / 16000 - audio.size / sr) < 0.01

    out = tmp_path / "synced.mp4"
    list(tiny_service.lipsync(media["clip"], wav, out, num_inference_steps=1, consent=True))
    assert out.is_file() and abs(count_frames(out) - audio.size / sr * 25) <= 1


def test_revoice_keeps_the_driving_audio_length(service, media, reference, tmp_path):
    driving = load_audio(media["driving"])
    audio, sr = service.revoice(media["driving"], reference, out_path=tmp_path / "revoiced.wav")
    assert audio.size == round(driving.size * sr / 16000)
    assert np.abs(audio).max() > 1e-3  # something was spoken
    assert abs(load_audio(tmp_path / "revoiced.wav").size - driving.size) <= 1


def test_prepare_driving_audio_modes(service, media, tmp_path):
    wav = media["driving"]
    assert prepare_driving_audio("off", media["clip"], wav, None, None, None, tmp_path, service) == wav
    assert VoiceService(service.paths.root).cloner() is service.cloner()  # loaded once per process
    revoiced = prepare_driving_audio("revoice", media["clip"], wav, None, None, None, tmp_path, service)
    assert revoiced.parent == tmp_path and abs(load_audio(revoiced).size - load_audio(wav).size) <= 1
    ref = make_speech_wav(tmp_path / "ref.wav", seconds=6.5, seed=9)
    spoken = prepare_driving_audio("script", media["mute"], None, "Bonjour.", "fr", ref, tmp_path, service)
    assert spoken.is_file()
    with pytest.raises(InputError, match="reference clip"):  # no reference and a video without sound
        prepare_driving_audio("script", media["mute"], None, "Hello.", "en", None, tmp_path, service)
    with pytest.raises(InputError, match="type the script"):
        prepare_driving_audio("script", media["clip"], None, "  ", "en", None, tmp_path, service)
    with pytest.raises(InputError, match="unknown voice mode"):
        prepare_driving_audio("clone", media["clip"], wav, None, None, None, tmp_path, service)


# --- model files --------------------------------------------------------------------------------------------------


def test_missing_models_name_the_download_command(tmp_path, reference):
    with pytest.raises(CheckpointError, match="python -m latentsync_demo.voice.download --agree-cpml") as info:
        VoiceService(tmp_path, device="cpu").script("Hello.", "en", reference)
    assert str(tmp_path / "xtts-v2" / "model.pth") in str(info.value)


def test_download_refuses_without_cpml_agreement(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("COQUI_TOS_AGREED", raising=False)
    with pytest.raises(LicenceNotAgreedError) as info:
        download_voice_models(tmp_path, agree_to_cpml=False)
    message = str(info.value)
    assert "non-commercial" in message and "--agree-cpml" in message and "COQUI_TOS_AGREED=1" in message
    assert download_main(["--checkpoints", str(tmp_path)]) == 1
    assert "Coqui Public Model License" in capsys.readouterr().err
    assert not (tmp_path / "xtts-v2" / "model.pth").exists()


def test_offline_download_names_the_command(tmp_path, monkeypatch, voice_root):
    monkeypatch.setenv("COQUI_TOS_AGREED", "1")  # agreed through the environment; HF_HUB_OFFLINE=1 (conftest)
    with pytest.raises(CheckpointError, match="(?s)offline.*python -m latentsync_demo.voice.download"):
        download_voice_models(tmp_path)
    # XTTS present, recogniser missing: no licence question, just the offline error for the recogniser.
    monkeypatch.delenv("COQUI_TOS_AGREED")
    partial = tmp_path / "partial"
    (partial / "xtts-v2").mkdir(parents=True)
    for name in ("config.json", "model.pth", "vocab.json"):
        (partial / "xtts-v2" / name).write_bytes((voice_root / "xtts-v2" / name).read_bytes())
    with pytest.raises(CheckpointError, match="(?s)speech recogniser.*offline") as info:
        download_voice_models(partial)
    assert not isinstance(info.value, LicenceNotAgreedError)


def test_write_wav_at_xtts_rate_roundtrip(tmp_path):
    # The revoiced/scripted track is written at 24 kHz; the lip sync reads it back at 16 kHz.
    x = (0.3 * np.sin(2 * np.pi * 300 * np.arange(24000) / 24000)).astype(np.float32)
    write_wav(tmp_path / "a.wav", x, 24000)
    assert load_audio(tmp_path / "a.wav").size == 16000
