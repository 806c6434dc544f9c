"""Checkpoints the trainer saves with research improvements run through the normal service path (CPU, tiny models):
phoneme-aware audio (a tiny random Wav2Vec2 beside Whisper) and hierarchical attention (longer windows)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import latentsync_demo.service as service_module
from latentsync_demo.audio.phoneme import PhonemeAwareAudioEncoder
from latentsync_demo.errors import CheckpointError, InputError
from latentsync_demo.media import read_frames
from latentsync_demo.models.improvements import Improvements
from latentsync_demo.pipeline import batching
from latentsync_demo.settings import GenerationSettings
from latentsync_demo.provenance.detect import make_marker
from latentsync_demo.service import LipSyncService
from latentsync_demo.testing.media import make_speech_wav, make_talking_head_clip
from latentsync_demo.testing.tiny_improved import (TINY_WAV2VEC_DIM, train_improved_set, write_improved_cache,
                                                   write_tiny_wav2vec2)
from latentsync_demo.validation import check_settings

W, H = 320, 240
PHONEME = Improvements(phoneme_audio=True, wav2vec_dim=TINY_WAV2VEC_DIM, fused_audio_dim=96)
HIERARCHICAL = Improvements(hierarchical_temporal=True)


@pytest.fixture(scope="module")
def sets(tmp_path_factory, tiny_checkpoints):
    root = tmp_path_factory.mktemp("improved")
    base = tiny_checkpoints  # read only: the trained sets link to its whisper/ and vae/
    cache = write_improved_cache(root / "cache", resolution=64)
    w2v = write_tiny_wav2vec2(root / "w2v")
    return {
        "root": root, "base": base, "w2v": w2v,
        "phoneme": train_improved_set(root / "phoneme", base, cache, PHONEME, wav2vec=w2v),
        "hierarchical": train_improved_set(root / "hier", base, cache, HIERARCHICAL, num_frames=32),
        "both": train_improved_set(root / "both", base, cache, Improvements(
            phoneme_audio=True, wav2vec_dim=TINY_WAV2VEC_DIM, fused_audio_dim=96, hierarchical_temporal=True),
            num_frames=32, steps=1, wav2vec=w2v),
        "official": {},  # window -> frames of the official tiny set's output, each made once
    }


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    return {"clip": make_talking_head_clip(root / "clip.mp4", seconds=1.0, fps=25, size=(W, H)),
            "speech": make_speech_wav(root / "speech.wav", seconds=1.0)}  # 25 frames: 2 chunks of 16, 1 of 32


@pytest.fixture(autouse=True)
def no_watermark(monkeypatch):
    """Every job's watermark carries its own job number (from a fresh job id), so two jobs' marked frames differ
    by design even when their generations are equal: marking is off here, so that equal generations give equal
    frames."""
    monkeypatch.setattr(service_module, "make_marker", lambda job, key=None, resolution=256: make_marker(None))


def _run(checkpoints, media, out, **settings):
    service = LipSyncService(checkpoints=checkpoints, device="cpu")
    events = list(service.lipsync(media["clip"], media["speech"], out, num_inference_steps=1, consent=True,
                                  **settings))
    assert events[-1].stage == "done" and events[-1].output == out
    chunks = [e.num_chunks for e in events if e.stage == "generating"]
    return service, read_frames(out), chunks[-1]


def _official(sets, media, tmp_path, window=16):
    if window not in sets["official"]:
        sets["official"][window] = _run(sets["base"], media, tmp_path / f"official{window}.mp4",
                                        window_frames=window)[1]
    return sets["official"][window]


def test_step0_phoneme_checkpoint_runs_with_wav2vec_and_equals_the_official_output(sets, media, tmp_path):
    saved = json.loads((sets["phoneme"] / "improvements.json").read_text())
    assert saved["phoneme_audio"] and saved["wav2vec_model"] == str(sets["w2v"])
    assert (sets["phoneme"] / "wav2vec2" / "config.json").is_file()  # linked by the trainer
    expected = _official(sets, media, tmp_path)
    service, frames, chunks = _run(sets["phoneme"], media, tmp_path / "phoneme.mp4")
    models = service.models()
    assert isinstance(models.audio_encoder, PhonemeAwareAudioEncoder)
    assert models.unet.config.cross_attention_dim == 96 and chunks == 2  # 16-frame windows, as trained
    tokens = models.audio_encoder.frame_chunks(models.audio_encoder.encode(np.sin(np.arange(16000) / 9.0)),
                                               frame_indices=range(4))
    assert tokens.shape == (4, 50, 96) and tokens[..., 64:].abs().sum() > 0  # Wav2Vec2 really is fed
    # zero-initialised extra key/value columns: the Wav2Vec2 part changes nothing yet
    assert frames.shape == expected.shape and np.array_equal(frames, expected)


def test_step0_hierarchical_checkpoint_generates_longer_windows(sets, media, tmp_path):
    assert json.loads((sets["hierarchical"] / "improvements.json").read_text())["num_frames"] == 32
    service, frames, chunks = _run(sets["hierarchical"], media, tmp_path / "hier.mp4")
    assert chunks == 1  # 25 frames in one window of 32 (the trained clip length; memory allows on this host)
    assert np.array_equal(frames, _official(sets, media, tmp_path, 32))  # zero-initialised new attention
    models = service.models()
    assert service.window_frames(models, GenerationSettings(window_frames=16)) == 16  # an explicit setting wins
    official = LipSyncService(checkpoints=sets["base"], device="cpu")
    assert official.window_frames(official.models(), GenerationSettings()) == 16  # official sets: as before


def test_trained_checkpoint_with_both_improvements_runs_and_differs(sets, media, tmp_path):
    service, frames, chunks = _run(sets["both"], media, tmp_path / "both.mp4")
    assert len(frames) == 25 and chunks == 1
    assert isinstance(service.models().audio_encoder, PhonemeAwareAudioEncoder)
    official = _official(sets, media, tmp_path, 32)
    assert np.abs(frames.astype(int) - official.astype(int)).max() > 0  # one training step moved the weights


def _without_wav2vec(sets, folder, model):
    """A copy of the phoneme-aware set whose Wav2Vec2 is the hub model ``model``, not yet fetched."""
    shutil.copytree(sets["phoneme"], folder, symlinks=True)
    (folder / "wav2vec2").unlink()
    imp = Improvements.load(folder)
    imp.wav2vec_model = model
    imp.save(folder)
    return folder


def test_missing_wav2vec_model_is_a_clear_offline_error(sets, media, tmp_path):
    folder = _without_wav2vec(sets, tmp_path / "no_w2v", "facebook/wav2vec2-base-960h")
    service = LipSyncService(checkpoints=folder, device="cpu")
    assert service.missing_files() == [folder / "wav2vec2" / "config.json"]  # the app lists it, offers the download
    with pytest.raises(CheckpointError, match="wav2vec2"):
        list(service.lipsync(media["clip"], media["speech"], tmp_path / "x.mp4", consent=True))
    with pytest.raises(CheckpointError) as err:
        service.download()
    assert "python -m latentsync_demo.audio.wav2vec" in str(err.value) and "offline" in str(err.value)


def test_wav2vec_download_lands_whole_in_the_checkpoint_folder(sets, tmp_path, monkeypatch, capsys):
    """The fetch command with the hub replaced by the tiny model's files: config + safetensors (the .bin is tried
    only when a repo has no safetensors), moved into <set>/wav2vec2 in one piece."""
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError

    from latentsync_demo.audio import wav2vec

    folder = _without_wav2vec(sets, tmp_path / "fetch", "someone/tiny-wav2vec2")
    asked = []

    def fake_download(repo_id, filename, local_dir):
        asked.append((repo_id, filename))
        if not (sets["w2v"] / filename).is_file():
            raise EntryNotFoundError(filename)
        Path(local_dir).mkdir(parents=True, exist_ok=True)
        return shutil.copy(sets["w2v"] / filename, Path(local_dir) / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    assert wav2vec.main([str(folder)]) == 0 and "ready" in capsys.readouterr().out
    assert asked == [("someone/tiny-wav2vec2", "config.json"), ("someone/tiny-wav2vec2", "model.safetensors")]
    assert sorted(p.name for p in (folder / "wav2vec2").iterdir() if p.is_file()) == ["config.json",
                                                                                     "model.safetensors"]
    assert not list(folder.glob(".*download*"))
    assert wav2vec.main([str(sets["base"])]) == 1  # an official set needs no Wav2Vec2


def test_auto_window_follows_free_memory(monkeypatch):
    monkeypatch.setattr(batching, "free_memory_bytes", lambda device: 1 << 40)
    assert batching.auto_window_frames("cpu", 256, torch.float32, 64) == 64
    need32 = batching.chunk_memory_bytes(256, torch.float16, True, 32)
    monkeypatch.setattr(batching, "free_memory_bytes", lambda device: int(need32 / 0.7) + 1)
    assert batching.auto_window_frames("cuda", 256, torch.float16, 64) == 32
    monkeypatch.setattr(batching, "free_memory_bytes", lambda device: 1)
    assert batching.auto_window_frames("cuda", 256, torch.float16, 64) == 16
    monkeypatch.setattr(batching, "free_memory_bytes", lambda device: None)
    assert batching.auto_window_frames("mps", 256, torch.float16, 64) == 16
    with pytest.raises(InputError, match="Window frames"):
        check_settings(GenerationSettings(window_frames=-1))


def test_training_cache_pairs_wav2vec_with_whisper_as_inference_does(sets, media, tmp_path):
    """training.data caches Wav2Vec2 chunks that the fusion turns into exactly the tokens inference makes."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from latentsync_demo.media import load_audio
    from latentsync_demo.training.data import preprocess_video

    models = LipSyncService(checkpoints=sets["phoneme"], device="cpu").models()
    encoder = models.audio_encoder
    files = preprocess_video(media["clip"], tmp_path / "cache", encoder.whisper, 64, wav2vec=encoder.wav2vec)
    clip = load_file(str(files[0]))
    with safe_open(str(files[0]), "pt") as f:
        first = int(f.metadata()["first_frame"])
        assert f.metadata()["audio_windows"] == "seamless"  # the default, as at inference
    n = len(clip["faces"])
    assert clip["wav2vec"].shape == (n, 10, TINY_WAV2VEC_DIM)
    inference = encoder.frame_chunks(encoder.encode(load_audio(media["clip"])), frame_indices=range(first, first + n))
    torch.testing.assert_close(encoder.fusion(clip["audio"], clip["wav2vec"]), inference)
