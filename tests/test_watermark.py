"""Invisible watermark: payload coding, keyed patterns, marking, and reading back after what a shared clip goes
through, on a synthetic clip (always) and on windows of the real clips in ../shared/media (when present).

The statistics (every window of both real clips at three sizes, 8 transformations, false positives over >300
unmarked trials, PSNR, marking cost) are printed by bench/bench_watermark.py; this file checks a few cases.
"""

import os
from pathlib import Path

import numpy as np
import pytest

from latentsync_demo.media import run_ffmpeg
from latentsync_demo.media.ffmpeg import fs_path
from latentsync_demo.provenance.detect import make_marker, scan
from latentsync_demo.provenance.watermark import (
    AMPLITUDE,
    CODED_BITS,
    DEFAULT_KEY,
    KEY_ENV,
    THRESHOLD,
    decode_soft,
    detect,
    encode_payload,
    job_number,
    key_from_env,
    layout,
    tile,
    tile_size,
)
from latentsync_demo.testing import watermark_corpus as corpus
from latentsync_demo.testing.media import make_talking_head_clip

MEDIA = Path(os.environ.get("LATENTSYNC_MEDIA_DIR", Path(__file__).resolve().parents[2] / "shared" / "media"))
TRANSFORMS = {t.name: t for t in corpus.TRANSFORMS}
KEY = 0x7E57


def test_payload_round_trip_and_errors_are_corrected():
    rng = np.random.default_rng(0)
    for job in (0, 1, 0x4149, 0xFFFF, int(rng.integers(1 << 16))):
        coded = encode_payload(job)
        assert coded.shape == (CODED_BITS,) and set(np.unique(coded)) <= {-1.0, 1.0}
        assert decode_soft(coded * 2)[0] == job
        noisy = coded * 1.5 + rng.standard_normal(CODED_BITS)  # ~7 % of the hard decisions wrong
        noisy[rng.choice(CODED_BITS, 4, replace=False)] *= -1  # and 4 more bits flipped outright
        assert decode_soft(noisy)[0] == job
    assert job_number("1a2b3c4d5e6f") == 0x1A2B


def test_noise_almost_never_decodes():
    """The threshold's model: unit-variance soft values pass it with probability <= 2^16 Q(6) = 6.5e-5."""
    rng = np.random.default_rng(1)
    scores = [decode_soft(rng.standard_normal(CODED_BITS).astype(np.float32))[1] for _ in range(500)]
    assert max(scores) < THRESHOLD and 3.5 < np.median(scores) < 5.0  # best of 2^16: ~4.3


def test_tile_is_keyed_carries_the_job_and_has_the_set_strength():
    a, b = tile(0x1234, KEY), tile(0x1234, KEY + 1)
    assert a.shape == (128, 128) and abs(a.std() - AMPLITUDE) < 0.01 and abs(a.mean()) < 1e-9
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.2  # another key: an unrelated pattern
    other_job = tile(0x4321, KEY)
    assert 0.2 < np.corrcoef(a.ravel(), other_job.ravel())[0, 1] < 0.8  # same sync, different payload
    lay = layout(KEY)
    assert (lay.owner == -1).sum() > 100 and np.bincount(lay.owner[lay.owner >= 0]).min() == 3
    assert tile_size(1920, 1080) == 192 and tile_size(1280, 720) == 128 and tile_size(360, 640) == 96


def test_marking_is_a_deterministic_copy_luma_only_and_needs_no_face():
    frames = np.random.default_rng(2).integers(30, 226, (3, 360, 640, 3), dtype=np.uint8)  # no clipping
    original = frames.copy()
    marker = make_marker(0x1234, KEY, 256)
    marked = [marker.mark(frame, None) for frame in frames]
    assert np.array_equal(frames, original)  # the job may still show or reuse the frame passed in
    # Worker threads may mark frames in any order, with or without a face: a frame's mark is the frame's alone.
    again = [make_marker(0x1234, KEY, 512).mark(frame, np.eye(2, 3)) for frame in frames[::-1]][::-1]
    assert all(np.array_equal(a, b) for a, b in zip(marked, again))
    change = marked[0].astype(np.int16) - frames[0]
    assert np.array_equal(change[..., 0], change[..., 1]) and np.array_equal(change[..., 0], change[..., 2])
    assert np.array_equal(change, marked[1].astype(np.int16) - frames[1])  # the same in every frame
    psnr = 10 * np.log10(255 ** 2 / np.mean(change.astype(float) ** 2))
    assert 41.0 < psnr < 43.0, psnr  # >= 40 dB required over the face; the same everywhere
    off, first = make_marker(None, KEY, 256), frames[0]
    assert off.mark(first, None) is first and off.resolution == 256


def test_the_key_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert key_from_env() == DEFAULT_KEY
    monkeypatch.setenv(KEY_ENV, "0xC0FFEE")
    assert key_from_env() == 0xC0FFEE and make_marker(7, None, 256)._marker.key == 0xC0FFEE
    monkeypatch.setenv(KEY_ENV, "not a number")
    with pytest.raises(ValueError, match=KEY_ENV):
        key_from_env()


def test_container_tags_never_carry_the_key(monkeypatch):
    from latentsync_demo.provenance.manifest import container_tags
    from latentsync_demo.settings import GenerationSettings

    secret = 0x5EC2E7A1
    monkeypatch.setenv(KEY_ENV, hex(secret))
    tags = container_tags("beef12345678", "latentsync-1.5", GenerationSettings(), "beef")
    text = " ".join(tags.values()).lower()
    assert str(secret) not in text and f"{secret:x}" not in text and "watermark_key" not in text


def test_unmarked_pictures_do_not_decode():
    """Noise, a flat picture and a periodic grid (a tiled wall, codec blocks): no mark is read."""
    rng = np.random.default_rng(3)
    grid = np.full((360, 640), 200.0)
    grid[::32] = grid[:, ::32] = 90.0
    for picture in (rng.normal(128, 20, (360, 640)), np.full((360, 640), 80.0), grid):
        found = detect(picture, 25, KEY)
        assert not found.found and found.score < THRESHOLD


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A 1 s 640x360 synthetic talking head, unmarked and marked as the job marks its output (CRF 18)."""
    root = tmp_path_factory.mktemp("wm")
    src = make_talking_head_clip(root / "src.mp4", seconds=1.0, fps=25, size=(640, 360), with_audio=False, seed=7)
    return {"root": root, "src": src, "marked": corpus.mark_clip(src, root / "marked.mp4", 0xA11C, KEY)}


@pytest.mark.parametrize("name", ["H.264 CRF 28, 720p", "VP9 CRF 36 (web)", "crop, face kept",
                                  "25 -> 24 fps (dropped)"])
def test_synthetic_mark_survives_and_the_original_reads_unmarked(synthetic, name):
    root = synthetic["root"]
    marked = scan(corpus.apply(TRANSFORMS[name], synthetic["marked"], root / "a"), KEY)
    assert marked.found and marked.job == 0xA11C, (marked.score, marked.sync)
    assert not scan(synthetic["marked"], KEY + 1).found  # another host's key reads nothing
    unmarked = scan(corpus.apply(TRANSFORMS[name], synthetic["src"], root / "b"), KEY)
    assert not unmarked.found, unmarked.score


@pytest.fixture(scope="module")
def real_windows(tmp_path_factory):
    if not (MEDIA / "demo1_video.mp4").exists():
        pytest.skip(f"the real clips are not in {MEDIA}")
    root = tmp_path_factory.mktemp("wm_real")
    clips = {}
    for clip, start in (("demo1", 3), ("demo2", 12)):  # 1 s at 540x960 (demo1's face: ~60 px wide)
        src = root / f"{clip}.mp4"
        run_ffmpeg(["-y", "-ss", str(start), "-i", fs_path(MEDIA / f"{clip}_video.mp4"), "-t", "1", "-vf",
                    "scale=540:960", *corpus.H264, "-crf", "18", fs_path(src)])
        clips[clip] = (src, corpus.mark_clip(src, root / f"{clip}_marked.mp4", 0x0B0B, KEY))
    return root, clips


@pytest.mark.parametrize("name", ["H.264 CRF 35", "H.264 CRF 28, 720p"])
def test_real_faces_1s_windows_are_found_after_reencoding(real_windows, name):
    root, clips = real_windows
    for clip, (src, marked) in clips.items():
        found = scan(corpus.apply(TRANSFORMS[name], marked, root / "a"), KEY)
        assert found.found and found.job == 0x0B0B, (clip, found.score)
        assert found.score > THRESHOLD + 2, (clip, found.score)  # bench: >= 9 on every such window
        assert not scan(corpus.apply(TRANSFORMS[name], src, root / "b"), KEY).found


def test_verify_key_option_reads_a_hosts_marks(synthetic, capsys, monkeypatch):
    from latentsync_demo import verify

    monkeypatch.delenv(KEY_ENV, raising=False)
    marked = synthetic["marked"]
    assert verify.main([str(marked), "--key", hex(KEY), "--json"]) == 0
    assert '"job": "a11c"' in capsys.readouterr().out
    assert verify.main([str(marked)]) == 1  # the public default key does not read a host's own marks
    monkeypatch.setenv(KEY_ENV, str(KEY))
    assert verify.main([str(marked)]) == 0  # the host's verifier, with the same environment as its jobs
    with pytest.raises(SystemExit):
        verify.main([str(marked), "--key", "secret"])
