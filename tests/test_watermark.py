"""Invisible watermark: payload coding, keyed patterns, and a small corpus through CRF 28 + a 2/3 downscale.

bench/bench_watermark.py runs the same check on 50 clips (synthetic 1080p -> 720p, or real talking heads).
"""

import numpy as np
import pytest

from latentsync_demo.provenance.watermark import (
    CODED_BITS,
    DEFAULT_KEY,
    THRESHOLD,
    decode_soft,
    encode_payload,
    job_number,
    patterns,
)
from latentsync_demo.testing.media import make_talking_head_clip
from latentsync_demo.testing.watermark_corpus import evaluate_clip


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
    """False-positive floor: unit-variance noise passes the decoding threshold with probability ~1e-4."""
    rng = np.random.default_rng(1)
    scores = [decode_soft(rng.standard_normal(CODED_BITS).astype(np.float32))[1] for _ in range(2000)]
    assert sum(s >= THRESHOLD for s in scores) <= 5 and 3.5 < np.median(scores) < 5.0  # best of 2^16: ~4.3


def test_patterns_are_orthonormal_smooth_and_keyed():
    p = patterns(DEFAULT_KEY)
    both = np.concatenate([p.data, p.reference])
    np.testing.assert_allclose(both @ both.T, np.eye(len(both)), atol=1e-4)
    other = patterns(DEFAULT_KEY + 1)
    assert np.abs(p.data @ other.data.T).max() < 0.5  # another key: unrelated patterns
    assert np.all(p.dither != other.dither)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """4 clips (2 s, 960x540, different motion), marked and unmarked, re-encoded at CRF 28 scaled to 360p."""
    results = []
    for i in range(4):
        work = tmp_path_factory.mktemp(f"wm{i}")
        src = make_talking_head_clip(work / "src.mp4", seconds=2.0, fps=25, size=(960, 540), with_audio=False,
                                     seed=40 + i)
        results.append(evaluate_clip(src, 0x2B00 + 97 * i, work, height=360, crf=28))
    return results


def test_mark_survives_crf28_and_downscale_with_the_right_payload(corpus):
    """Measured on this corpus: 3 of 4 clips decode after CRF 28 + the 2/3 downscale (the issue's >= 99 %
    target is NOT met yet; see bench/bench_watermark.py). A detection must never name a wrong job."""
    found = [r for r in corpus if r.marked.found]
    assert all(r.marked.job == r.job for r in found)
    assert len(found) >= 2, [(r.job, r.marked.score, r.bit_errors) for r in corpus]
    assert all(r.bit_errors <= 16 for r in corpus)  # of 64 coded bits, before decoding


def test_unmarked_clips_are_not_detected(corpus):
    assert not any(r.unmarked.found for r in corpus)


def test_psnr_in_the_face_region_is_at_least_40_db(corpus):
    assert min(r.psnr_face for r in corpus) >= 40.0
