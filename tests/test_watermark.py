"""Invisible watermark: payload coding, keyed patterns, and the issue's evidence on a generated corpus:
50 clips, 1080p -> 720p at H.264 CRF 28, detection, false positives and PSNR in the face region.

bench/bench_watermark.py runs the same check on longer or real clips and prints the figures.
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
    np.testing.assert_allclose(p.data @ p.data.T, np.eye(len(p.data)), atol=1e-4)
    other = patterns(DEFAULT_KEY + 1)
    assert np.abs(p.data @ other.data.T).max() < 0.5  # another key: unrelated patterns
    assert np.all(p.dither != other.dither)


CORPUS, FRAMES = 50, 8  # clips, frames (25 fps) each; at 6 frames 1 clip in 50 scored only 6.2 (threshold 6.0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """50 short 1920x1080 clips (different motion, job number and key each), marked as the pipeline marks its
    output, written at CRF 18, then re-encoded with H.264 CRF 28 scaled to 1280x720; the same clips unmarked
    go through the same steps. Each clip has its own key: the corpus reuses one face, and with one key every
    unmarked clip would test the same face against the same patterns."""
    results = []
    for i in range(CORPUS):
        work = tmp_path_factory.mktemp(f"wm{i}")
        src = make_talking_head_clip(work / "src.mp4", seconds=FRAMES / 25, fps=25, size=(1920, 1080),
                                     with_audio=False, seed=40 + i)
        job = (0x2B00 + 40503 * i) & 0xFFFF
        results.append(evaluate_clip(src, job, work, height=720, crf=28, key=DEFAULT_KEY + 7919 * i))
    return results


def test_mark_survives_crf28_and_downscale_to_720p_with_the_right_payload(corpus):
    """The issue's target: detected with the right payload in >= 99 % of the re-encoded clips (50 of 50)."""
    found = [r for r in corpus if r.marked.found and r.marked.job == r.job]
    assert all(r.marked.job == r.job for r in corpus if r.marked.found)  # never a wrong job
    assert len(found) >= 0.99 * len(corpus), [(r.job, r.marked.score, r.bit_errors) for r in corpus]


def test_unmarked_clips_are_not_detected(corpus):
    """<= 1 % of the same clips unmarked (0 of 50) read as marked."""
    false = [r.unmarked.score for r in corpus if r.unmarked.found]
    assert len(false) <= 0.01 * len(corpus), false


def test_psnr_in_the_face_region_is_at_least_40_db(corpus):
    assert all(r.marked.frames == FRAMES and r.unmarked.frames == FRAMES for r in corpus)  # every face found
    assert min(r.psnr_face for r in corpus) >= 40.0


def test_marking_is_deterministic_per_job_and_differs_between_jobs(tmp_path):
    """Two jobs' outputs differ by their job numbers only: the same frames marked for the same job are
    bit-identical (a fresh detector each time), and another job number changes them."""
    from latentsync_demo.media import iter_frames
    from latentsync_demo.provenance.detect import OutputMarker

    src = make_talking_head_clip(tmp_path / "src.mp4", seconds=0.4, fps=25, size=(640, 360), with_audio=False,
                                 seed=3)
    frames = list(iter_frames(src))

    def marked(job):
        marker = OutputMarker(job, key=DEFAULT_KEY)
        try:
            return [marker(frame.copy()) for frame in frames]
        finally:
            marker.close()

    first, again, other = marked(0x1234), marked(0x1234), marked(0x4321)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))
    assert any(not np.array_equal(a, f) for a, f in zip(first, frames))  # and the mark is really there
