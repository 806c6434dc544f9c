"""Fit synthesised speech into the original timing: pitch-preserving time stretch and segment placement.

Pure numpy/scipy functions on mono float32 arrays, so they are easy to test. The stretch is WSOLA (waveform
similarity overlap-add): it copies short windows of the input at a new rate and nudges each window by up to half
a pitch period so that it continues the previous one's waveform. Unlike resampling this keeps the pitch, and unlike
a phase vocoder it does not smear speech into a "phasey" sound.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.signal import correlate

FRAME_S = 0.030  # WSOLA window: a few pitch periods of a voice (70-400 Hz)
TOLERANCE_S = 0.008  # how far a window may move to match the waveform; > half the longest pitch period we expect


def time_stretch(audio: np.ndarray, target_len: int, sample_rate: int) -> np.ndarray:
    """``audio`` played over exactly ``target_len`` samples at the same pitch (WSOLA); float32."""
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    target_len = int(target_len)
    if target_len <= 0:
        return np.zeros(0, np.float32)
    if x.size == target_len:
        return x.copy()
    frame = max(8, 2 * int(round(FRAME_S * sample_rate / 2)))
    hop_out = frame // 2
    if x.size < 2 * frame:  # too short to overlap-add: pad with silence or cut (nothing audible is lost)
        return _fit(x, target_len)
    hop_in = hop_out * x.size / target_len
    tol = max(1, int(round(TOLERANCE_S * sample_rate)))
    window = np.hanning(frame + 1)[:-1].astype(np.float32)  # periodic Hann: 50 % overlaps sum to 1
    n_frames = target_len // hop_out + 2
    padded = np.concatenate([np.zeros(tol, np.float32), x, np.zeros(frame + 2 * tol + hop_out, np.float32)])
    out = np.zeros(n_frames * hop_out + frame, np.float32)
    norm = np.zeros_like(out)
    pos = 0  # chosen start of the previous window, in `x` coordinates
    for k in range(n_frames):
        nominal = int(round(k * hop_in))
        if k == 0:
            start = nominal
        else:
            # The window that would continue the previous one seamlessly; find the best match near `nominal`.
            natural = padded[pos + tol + hop_out: pos + tol + hop_out + frame]
            lo = min(max(nominal, 0), x.size)  # search region starts `tol` before nominal (offset by padding)
            region = padded[lo: lo + frame + 2 * tol]
            if natural.size < frame or region.size < frame + 2 * tol:
                start = nominal
            else:
                score = correlate(region, natural, mode="valid", method="auto")
                start = lo - tol + int(np.argmax(score))
        start = min(max(start, -tol), x.size + hop_out)
        seg = padded[start + tol: start + tol + frame]
        out[k * hop_out: k * hop_out + seg.size] += window[: seg.size] * seg
        norm[k * hop_out: k * hop_out + seg.size] += window[: seg.size]
        pos = start
    out = out / np.maximum(norm, 1e-3)
    return _fit(out, target_len)


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """Cut or zero-pad to exactly ``n`` samples."""
    out = np.zeros(n, np.float32)
    out[: min(n, x.size)] = x[:n]
    return out


def trim_silence(audio: np.ndarray, sample_rate: int, threshold_db: float = -40.0, pad_s: float = 0.02) -> np.ndarray:
    """Drop leading and trailing stretches quieter than ``threshold_db`` below the peak (XTTS often adds some),
    so the stretch spends the segment's duration on speech. Returns ``audio`` itself when it is all quiet."""
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    hop = max(1, int(0.010 * sample_rate))
    n = x.size // hop
    if n == 0:
        return x
    rms = np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    loud = np.nonzero(20 * np.log10(rms / rms.max()) > threshold_db)[0] if rms.max() > 1e-6 else []
    if len(loud) == 0:
        return x
    pad = int(pad_s * sample_rate)
    return x[max(0, loud[0] * hop - pad): min(x.size, (loud[-1] + 1) * hop + pad)]


def place_segments(pieces: Sequence[tuple[float, float, np.ndarray]], total_len: int, sample_rate: int,
                   fade_s: float = 0.005) -> np.ndarray:
    """A track of exactly ``total_len`` samples with each ``(start_s, end_s, audio)`` stretched into its slot.

    Slots are clipped to the track; short fades at both ends of each piece avoid clicks. Overlapping pieces
    are summed, and the sum is clipped to [-1, 1].
    """
    track = np.zeros(int(total_len), np.float32)
    for start_s, end_s, audio in pieces:
        i0 = min(max(int(round(start_s * sample_rate)), 0), track.size)
        i1 = min(max(int(round(end_s * sample_rate)), i0), track.size)
        if i1 <= i0 or np.asarray(audio).size == 0:
            continue
        track[i0:i1] += stretched_piece(audio, i1 - i0, sample_rate, fade_s)
    return np.clip(track, -1.0, 1.0)


def stretched_piece(audio: np.ndarray, length: int, sample_rate: int, fade_s: float = 0.005) -> np.ndarray:
    """``audio`` time-stretched to ``length`` samples (pitch kept), with ``fade_s`` ramps at both ends so that
    placing it in a track makes no click."""
    piece = time_stretch(audio, length, sample_rate)
    ramp = np.linspace(0.0, 1.0, min(max(1, int(fade_s * sample_rate)), piece.size // 2), dtype=np.float32)
    if ramp.size:
        piece[: ramp.size] *= ramp
        piece[piece.size - ramp.size:] *= ramp[::-1]
    return piece
