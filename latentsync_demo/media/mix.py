"""Mixing new speech over the original soundtrack: sidechain ducking, and summing tracks without clipping.

Dubbing replaces the words but should keep the room (music, ambience, footsteps). Without a source-separation
model the original soundtrack still holds the old voice, so it is *ducked*: turned down by ``depth_db`` wherever
the new speech is active, with smoothed attack and release (no clicks, no pumping between words), and left
exactly as it was where the new speech is silent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .audio import QUIET_DBFS

CONTROL_RATE = 1000  # gain steps per second; the gain is interpolated between them, sample by sample


def _as_mono(samples) -> np.ndarray:
    array = np.asarray(samples)
    if array.dtype == np.int16:
        array = array.astype(np.float32) / np.float32(32768.0)
    array = array.astype(np.float32, copy=False)
    if array.ndim != 1:
        raise ValueError(f"expected mono samples shaped (n,), got {array.shape}")
    return array


def _padded(samples: np.ndarray, length: int) -> np.ndarray:
    return np.pad(samples, (0, length - len(samples))) if len(samples) < length else samples


def speech_activity(speech: np.ndarray, sample_rate: int, threshold_db: float = QUIET_DBFS,
                    window_s: float = 0.02) -> np.ndarray:
    """Per control step (1 ms): whether the speech's RMS over ``window_s`` around it is above ``threshold_db``."""
    step = max(1, round(sample_rate / CONTROL_RATE))
    steps = -(-len(speech) // step)
    energy = np.square(_padded(speech, steps * step).astype(np.float64)).reshape(steps, step).mean(axis=1)
    span = max(1, round(window_s * CONTROL_RATE))
    smoothed = np.convolve(energy, np.ones(span) / span, mode="same")
    return smoothed > 10 ** (threshold_db / 10)  # mean square against the level squared


def ducking_gain(active: np.ndarray, depth_db: float, attack_s: float, release_s: float) -> np.ndarray:
    """Per control step: the room's gain, 1 where the speech is silent and -``depth_db`` where it is active,
    ramping in dB (linear in loudness, so no click) down over ``attack_s`` and back up over ``release_s``. The
    activity is looked ahead by ``attack_s`` so that the room is already down when a word starts; a ramp ends
    exactly at 0 dB, so the room more than ``release_s`` away from any speech is bit-for-bit the original."""
    ahead = max(1, round(attack_s * CONTROL_RATE))
    counts = np.concatenate([[0], np.cumsum(active[::-1])])[::-1]  # counts[i]: active steps from i to the end
    upcoming = counts[: len(active)] - np.concatenate([counts[ahead:], np.zeros(ahead, counts.dtype)])[: len(active)]
    target = np.where(upcoming > 0, -float(depth_db), 0.0)
    fall = depth_db / max(attack_s * CONTROL_RATE, 1.0)  # dB per step
    rise = depth_db / max(release_s * CONTROL_RATE, 1.0)
    level = np.empty(len(target))
    db = 0.0
    for i, t in enumerate(target):  # one step per ms: about a second of Python per hour of audio
        db = max(t, db - fall) if t < db else min(t, db + rise)
        level[i] = db
    return np.power(10.0, level / 20)  # 10 ** 0.0 is exactly 1.0


def duck_under(room, speech, sample_rate: int, depth_db: float = 12.0, attack_s: float = 0.05,
               release_s: float = 0.3, threshold_db: float = QUIET_DBFS) -> np.ndarray:
    """``speech`` over ``room`` (mono float in [-1, 1], the same rate), the room turned down by ``depth_db`` where
    the speech is active (``speech_activity``; smoothed by ``ducking_gain``); as long as the longer of the two,
    clipped to [-1, 1]."""
    room, speech = _as_mono(room), _as_mono(speech)
    length = max(len(room), len(speech))
    room, speech = _padded(room, length), _padded(speech, length)
    if length == 0:
        return np.zeros(0, np.float32)
    step = max(1, round(sample_rate / CONTROL_RATE))
    gain_steps = ducking_gain(speech_activity(speech, sample_rate, threshold_db), depth_db, attack_s, release_s)
    at = (np.arange(len(gain_steps)) + 0.5) * step  # each step's gain sits at the middle of its samples
    gain = np.interp(np.arange(length), at, gain_steps).astype(np.float32)
    # Where the gain is exactly 1 (interpolated between two steps at 1), the room passes through unchanged.
    return np.clip(speech + room * gain, -1.0, 1.0).astype(np.float32)


def mix_tracks(tracks: Sequence, peak: float = 1.0) -> np.ndarray:
    """The sum of mono float tracks of any lengths (as long as the longest), scaled down just enough that its peak
    stays within [-``peak``, ``peak``] (a sum that stays within is returned as it is)."""
    arrays = [_as_mono(t) for t in tracks]
    length = max((len(a) for a in arrays), default=0)
    total = np.zeros(length, np.float64)
    for array in arrays:
        total[: len(array)] += array
    loudest = float(np.abs(total).max()) if length else 0.0
    if loudest > peak:
        total *= peak / loudest
    return total.astype(np.float32)
