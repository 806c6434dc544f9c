"""Whisper audio features: conformance with the official Audio2Feature vectors, plus self-contained tests."""

import math
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from latentsync_demo.audio import FeatureCache, WhisperAudioEncoder, log_mel_spectrogram
from latentsync_demo.audio.mel import mel_filters
from latentsync_demo.audio.windows import plan_windows
from latentsync_demo.errors import CheckpointError, InputError
from latentsync_demo.testing.whisper import random_openai_whisper_state, write_random_openai_whisper

CLIPS = {"demo1": "media/demo1_audio.wav", "long": "reference/long_audio_demo2_demo3.wav"}


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768


# ------------------------------------------------------------------------------------- conformance (reference)
@pytest.fixture(scope="module")
def ref_encoder(reference_dir):
    return WhisperAudioEncoder.from_openai_checkpoint(reference_dir / "whisper_tiny_random.pt")


def load_clip(reference_dir: Path, clip: str):
    fixture = torch.load(reference_dir / f"whisper_fixture_{clip}.pt", weights_only=True)
    audio = read_wav(reference_dir.parent / CLIPS[clip])
    assert audio.shape[0] == fixture["num_audio_samples"]
    return audio, fixture


def test_mel_filters_match_reference(reference_dir):
    expected = torch.load(reference_dir / "whisper_fixture_demo1.pt", weights_only=True)["mel_filters"]
    assert (mel_filters(80) - expected).abs().max() < 3e-7  # measured 6.3e-8 (`python bench/bench_conformance.py --only whisper`)


@pytest.mark.parametrize("clip", sorted(CLIPS))
def test_features_match_reference(reference_dir, ref_encoder, clip):
    """The official windows mode reproduces the official features; the seamless default differs only past 30 s."""
    audio, fx = load_clip(reference_dir, clip)
    mel = log_mel_spectrogram(torch.from_numpy(audio))
    assert mel.shape == fx["log_mel"].shape
    # Bounds at 4-5x the measured max |diff| (float32 CPU, 2 threads, `python bench/bench_conformance.py --only whisper`):
    # log-mel 6.4e-6 (demo1) / 6.2e-6 (long), features 4.8e-6, stored chunks 3.8e-6 on both clips.
    assert (mel - fx["log_mel"]).abs().max() < 3e-5

    features = ref_encoder.encode(audio, windows="official", use_cache=False)
    assert features.dtype == torch.float32 and features.shape == fx["features"].shape
    assert (features - fx["features"]).abs().max() < 2e-5

    indices = WhisperAudioEncoder.chunk_indices(features.shape[0], fps=25)
    assert len(indices) == fx["num_chunks"]
    assert torch.equal(indices, fx["chunk_feature_indices"].long())
    chunks = WhisperAudioEncoder.frame_chunks(features, 25, frame_indices=fx["chunks_subset_index"])
    assert (chunks - fx["chunks_subset"]).abs().max() < 1.9e-5

    seamless = ref_encoder.encode(audio, windows="seamless", use_cache=False)
    assert seamless.shape == features.shape
    if len(audio) <= 30 * 16000:  # one window: the very same computation
        assert torch.equal(seamless, features)
    else:  # the first 24 s are the same first window's; from there on, rows come from the overlapping window
        assert torch.equal(seamless[:1200], features[:1200]) and not torch.allclose(seamless[1200:], features[1200:])


# --------------------------------------------------------------------------------- self-contained (tiny model)
@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("whisper") / "tiny.pt"
    write_random_openai_whisper(path)
    return path


@pytest.fixture(scope="module")
def tiny(tiny_ckpt) -> WhisperAudioEncoder:
    return WhisperAudioEncoder.from_openai_checkpoint(tiny_ckpt)


def synth(seconds: float, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    noise = np.random.default_rng(seed).standard_normal(t.shape)
    return (0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t) + 0.02 * noise).astype(np.float32)


def test_encode_shapes_and_chunk_layout(tiny):
    features = tiny.encode(synth(2.3), use_cache=False)
    n_hidden, d = tiny.num_layers + 1, tiny.feature_dim
    assert features.shape == (115, n_hidden, d) == (115, 3, 64)
    chunks = tiny.frame_chunks(features, fps=25)
    assert chunks.shape == (115 // 2 + 2, 10 * n_hidden, d)
    for i in (0, 1, 30, len(chunks) - 1):
        for k in range(10):
            row = min(max(2 * i - 4 + k, 0), 114)
            for layer in range(n_hidden):
                assert torch.equal(chunks[i, n_hidden * k + layer], features[row, layer])


def openai_encoder_states(state: dict, dims: dict, mel: torch.Tensor) -> torch.Tensor:
    """Independent float64 transcription of OpenAI's encoder (q and k scaled by head_dim^-1/4, no ln_post)."""
    p = {k: v.double() for k, v in state.items() if k.startswith("encoder.")}
    F, heads = torch.nn.functional, dims["n_audio_head"]
    x = F.gelu(F.conv1d(mel.double()[None], p["encoder.conv1.weight"], p["encoder.conv1.bias"], padding=1))
    x = F.gelu(F.conv1d(x, p["encoder.conv2.weight"], p["encoder.conv2.bias"], stride=2, padding=1))
    x = x[0].T + p["encoder.positional_embedding"]
    states = [x]
    for i in range(dims["n_audio_layer"]):
        b = lambda n: p[f"encoder.blocks.{i}.{n}"]  # noqa: E731
        ln = lambda v, n: F.layer_norm(v, v.shape[-1:], b(f"{n}.weight"), b(f"{n}.bias"), 1e-5)  # noqa: E731
        h = ln(x, "attn_ln")
        split = lambda v: v.view(v.shape[0], heads, -1).transpose(0, 1)  # noqa: E731
        scale = (h.shape[-1] // heads) ** -0.25
        q = split(h @ b("attn.query.weight").T + b("attn.query.bias")) * scale
        k = split(h @ b("attn.key.weight").T) * scale
        v = split(h @ b("attn.value.weight").T + b("attn.value.bias"))
        a = (torch.softmax(q @ k.transpose(1, 2), -1) @ v).transpose(0, 1).reshape(h.shape)
        x = x + a @ b("attn.out.weight").T + b("attn.out.bias")
        h = F.gelu(ln(x, "mlp_ln") @ b("mlp.0.weight").T + b("mlp.0.bias"))
        x = x + h @ b("mlp.2.weight").T + b("mlp.2.bias")
        states.append(x)
    return torch.stack(states, 1)


def test_encoder_matches_openai_math(tiny, tiny_ckpt):
    ckpt = torch.load(tiny_ckpt, weights_only=True)
    mel = log_mel_spectrogram(torch.from_numpy(synth(4.0)))
    window = torch.zeros(80, 3000)
    window[:, : mel.shape[1]] = mel
    expected = openai_encoder_states(ckpt["model_state_dict"], ckpt["dims"], window)[:200]
    assert (tiny.encode(synth(4.0), use_cache=False).double() - expected).abs().max() < 1e-4


@pytest.mark.parametrize("windows", ["official", "seamless"])
def test_long_audio_uses_30s_windows(tiny, windows):
    audio = synth(31.0)
    features = tiny.encode(audio, windows=windows, use_cache=False)
    assert features.shape[0] == 1500 + (3100 - 3000) // 2
    tiny.batch_size = 1  # one window per forward must give the same result as the batched forward
    try:
        assert (tiny.encode(audio, windows=windows, use_cache=False) - features).abs().max() < 1e-5
    finally:
        tiny.batch_size = 8


def official_chunk_indices(length: int, fps: float, left: int = 2, right: int = 2) -> list[list[int]]:
    """Direct transcription of the official feature2chunks / get_sliced_feature loops."""
    out, i, mult = [], 0, 50.0 / fps
    while True:
        start_idx = int(i * mult)
        centre = int(i * 50 / fps)
        out.append([min(length - 1, max(0, j)) for j in range(centre - left * 2, centre + (right + 1) * 2)])
        i += 1
        if start_idx > length:
            return out


@pytest.mark.parametrize("fps", [25, 30, 29.97, 24, 12.5, 50, 60])
def test_chunk_indices_follow_official_loop(fps):
    for length in (1, 2, 3, 115, 480, 1921):
        got = WhisperAudioEncoder.chunk_indices(length, fps)
        assert got.tolist() == official_chunk_indices(length, fps), (fps, length)
        if fps == 25:
            assert len(got) == length // 2 + 2
    assert WhisperAudioEncoder.chunk_indices(40, 25, (1, 3)).tolist() == official_chunk_indices(40, 25, 1, 3)


def write_ckpt(path: Path, edit) -> Path:
    ckpt = random_openai_whisper_state()
    edit(ckpt["model_state_dict"])
    torch.save(ckpt, path)
    return path


def test_truncated_or_corrupt_checkpoint(tiny_ckpt, tmp_path):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(tiny_ckpt.read_bytes()[: tiny_ckpt.stat().st_size // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint" * 100)
    for path in (truncated, garbage, tmp_path / "missing.pt"):
        with pytest.raises(CheckpointError, match=path.name):
            WhisperAudioEncoder.from_openai_checkpoint(path)


def test_strict_key_checks(tmp_path):
    missing = write_ckpt(tmp_path / "a.pt", lambda sd: sd.pop("encoder.blocks.1.mlp_ln.bias"))
    with pytest.raises(CheckpointError, match=r"missing: encoder\.blocks\.1\.mlp_ln\.bias"):
        WhisperAudioEncoder.from_openai_checkpoint(missing)
    shape = write_ckpt(tmp_path / "b.pt", lambda sd: sd.update({"encoder.conv1.bias": torch.zeros(65).half()}))
    with pytest.raises(CheckpointError, match=r"encoder\.conv1\.bias: checkpoint \(65,\), expected \(64,\)"):
        WhisperAudioEncoder.from_openai_checkpoint(shape)
    extra = write_ckpt(tmp_path / "c.pt", lambda sd: sd.update({"encoder.blocks.0.attn.key.bias": torch.zeros(64)}))
    with pytest.raises(CheckpointError, match=r"unexpected: encoder\.blocks\.0\.attn\.key\.bias"):
        WhisperAudioEncoder.from_openai_checkpoint(extra)

    def encoder_only(sd):  # decoder and ln_post are optional: they are never used
        for k in [k for k in sd if k.startswith("decoder.") or "ln_post" in k]:
            del sd[k]

    enc = WhisperAudioEncoder.from_openai_checkpoint(write_ckpt(tmp_path / "d.pt", encoder_only))
    assert (enc.feature_dim, enc.num_layers) == (64, 2)


@pytest.mark.parametrize("audio", [np.zeros(0, np.float32), np.zeros(100, np.float32),
                                   np.zeros((320, 2), np.float32), np.zeros(1000, np.int16),
                                   np.full(1000, np.nan, np.float32)])
def test_bad_waveform_raises_input_error(tiny, audio):
    with pytest.raises(InputError):
        tiny.encode(audio)


def test_silence_is_fine(tiny):
    assert torch.isfinite(tiny.encode(np.zeros(16000, np.float32), use_cache=False)).all()


def test_cache_hit_skips_encoder(tiny_ckpt, tmp_path):
    calls = []
    enc = WhisperAudioEncoder.from_openai_checkpoint(tiny_ckpt, cache=FeatureCache(directory=tmp_path / "cache"))
    enc.encoder.register_forward_hook(lambda *args: calls.append(1))
    audio = synth(1.0)
    first = enc.encode(audio)
    assert len(calls) == 1
    first.zero_()  # callers get copies: this must not corrupt the cache
    again = enc.encode(audio.copy())
    assert len(calls) == 1 and again.abs().max() > 0
    enc.encode(synth(1.0, seed=1))  # different audio -> recompute
    assert len(calls) == 2
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2

    # A fresh encoder with the same weights reuses the on-disk entries.
    enc2 = WhisperAudioEncoder.from_openai_checkpoint(tiny_ckpt, cache=FeatureCache(directory=tmp_path / "cache"))
    enc2.encoder.register_forward_hook(lambda *args: calls.append(2))
    assert torch.equal(enc2.encode(audio), again) and len(calls) == 2
    assert enc2.fingerprint == enc.fingerprint
    enc2.encode(audio, use_cache=False)
    assert len(calls) == 3
    assert math.isfinite(float(again.sum()))


# ---------------------------------------------------------------------------- audio windows (official | seamless)
def test_30_seconds_or_less_is_identical_in_both_modes(tiny):
    for seconds in (2.3, 30.0):  # 30.0 s = exactly one window of 3000 mel frames
        audio = synth(seconds, seed=3)
        assert torch.equal(tiny.encode(audio, windows="seamless", use_cache=False),
                           tiny.encode(audio, windows="official", use_cache=False))


def test_seamless_rows_come_from_a_window_centring_them(tiny):
    """61 s: every row equals the row the encoder gives for the 20-s-hopped 30-s window in which it sits farthest
    from an edge (computed here from the mel directly), with >= 5 s of context each side where the clip has it;
    within 1 s of a hand-over (midway through two windows' overlap) it is the linear crossfade of the two windows'
    rows. The row count and chunks are those of the official windows."""
    audio = synth(61.0, seed=4)
    seamless = tiny.encode(audio, windows="seamless", use_cache=False)
    official = tiny.encode(audio, windows="official", use_cache=False)
    mel = log_mel_spectrogram(torch.from_numpy(audio))
    n_rows = mel.shape[1] // 2
    assert seamless.shape == official.shape == (n_rows, 3, 64) and n_rows == 3050
    assert torch.equal(tiny.chunk_indices(len(seamless)), tiny.chunk_indices(len(official)))

    starts = range(0, mel.shape[1], 2000)  # every window that holds any row: 0, 20, 40, 60 s
    windows = torch.zeros(len(starts), 80, 3000)
    for w, s in enumerate(starts):
        windows[w, :, : min(3000, mel.shape[1] - s)] = mel[:, s: s + 3000]
    with torch.no_grad():
        states = torch.cat([tiny(windows[w: w + 1]) for w in range(len(starts))])  # one window per forward

    def centred(row):  # (window, its row) where the row sits farthest from a window edge
        held = [(min(row - s // 2, s // 2 + 1499 - row), w) for w, s in enumerate(starts)
                if s // 2 <= row < min(s // 2 + 1500, n_rows)]
        w = max(held)[1]
        first = starts[w] // 2
        assert row - first >= min(row, 250)  # 5 s before it, or the clip's start
        assert min(first + 1500, n_rows) - 1 - row >= min(n_rows - 1 - row, 250)  # 5 s after it, or the clip's end
        return w, states[w, row - first]

    worst = 0.0
    hand_overs = [s // 2 + 250 for s in starts[1:]]  # midway through the 10-s overlaps: rows 1250 and 2250
    for row in range(n_rows):
        near = [h for h in hand_overs if h - 50 <= row < h + 50]
        if near:  # weight of the later window: (i + 0.5) / 100 for the i-th row of the 2-s crossfade
            later = starts.index(2 * (near[0] - 250))
            t = (row - (near[0] - 50) + 0.5) / 100
            earlier_row = states[later - 1, row - starts[later - 1] // 2]
            expected = (1 - t) * earlier_row + t * states[later, row - starts[later] // 2]
        else:
            expected = centred(row)[1]
        worst = max(worst, float((seamless[row] - expected).abs().max()))
    assert worst < 1e-5, worst  # batched vs one-window forwards: float rounding only
    assert torch.equal(seamless[:1200], official[:1200]) and not torch.allclose(seamless[1200:], official[1200:])


def test_window_plans_cover_every_row_once_and_cost_at_most_1_5x():
    for frames in (2, 960, 3000, 3001, 3840, 5001, 6100, 7500, 9001, 11001, 12000):
        for mode in ("official", "seamless"):
            plan = plan_windows(frames, mode=mode)
            assert plan[0].first_row == 0 and plan[-1].end_row == frames // 2
            # Neighbours share exactly their crossfade rows, whose weights sum to 1.
            assert all(b.first_row == a.end_row - a.fade_out and a.fade_out == b.fade_in
                       for a, b in zip(plan, plan[1:]))
            for a, b in zip(plan, plan[1:]):
                assert np.allclose(a.weights()[len(a.weights()) - a.fade_out:] + b.weights()[: b.fade_in], 1)
            # (<=: an official 1-frame tail window keeps no row)
            assert all(p.start // 2 <= p.first_row <= p.end_row <= p.start // 2 + 1500 for p in plan)
        seamless, official = plan_windows(frames), plan_windows(frames, mode="official")
        assert len(seamless) <= 1.5 * len(official)
        if frames <= 3000:
            assert seamless == official
    with pytest.raises(InputError, match="unknown audio windows 'overlap'; choose one of seamless, official"):
        plan_windows(100, mode="overlap")


def test_cache_keys_differ_per_windows_mode(tiny_ckpt, tmp_path):
    calls = []
    enc = WhisperAudioEncoder.from_openai_checkpoint(tiny_ckpt, cache=FeatureCache(directory=tmp_path / "cache"))
    enc.encoder.register_forward_hook(lambda *args: calls.append(1))
    audio = synth(1.0)
    assert enc.cache_fingerprint("official") == f"{enc.fingerprint}|{enc.dtype}"  # the key used before the modes
    assert enc.cache_fingerprint("seamless") != enc.cache_fingerprint("official")
    official = enc.encode(audio, windows="official")
    seamless = enc.encode(audio, windows="seamless")
    assert len(calls) == 2 and len(list((tmp_path / "cache").glob("*.safetensors"))) == 2
    assert torch.equal(official, seamless)  # one window: the same features, each mode under its own key
    enc.encode(audio, windows="official"), enc.encode(audio, windows="seamless")
    assert len(calls) == 2
    with pytest.raises(InputError, match="unknown audio windows"):
        enc.encode(audio, windows="centred")
