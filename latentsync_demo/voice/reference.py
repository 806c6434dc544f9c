"""The speaker reference for voice cloning: a few seconds of the speaker's clean speech, mono, at XTTS's rate.

By default it comes from the input video's own audio track; the user may upload a reference clip instead. An
energy-based voice activity detector skips silence and pauses, and the voiced regions are joined (with short
fades) into one clip of at most 30 s; XTTS needs about 3 s at the very least and does best with 6 s or more.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from ..errors import InputError
from ..media import load_audio

REFERENCE_RATE = 22050  # XTTS computes its conditioning latents at 22.05 kHz (the speaker encoder resamples)
MIN_SPEECH_S = 3.0
GOOD_SPEECH_S = 6.0
MAX_SPEECH_S = 30.0

log = logging.getLogger(__name__)


def voiced_regions(audio: np.ndarray, sample_rate: int, *, floor_db: float = -50.0, below_peak_db: float = 35.0,
                   above_noise_db: float = 10.0, gap_s: float = 0.25, min_s: float = 0.1,
                   pad_s: float = 0.05) -> list[tuple[int, int]]:
    """Sample ranges [(i0, i1), ...] that hold speech, by frame energy (10 ms hops, 20 ms frames).

    A frame is voiced when it is louder than all of: ``floor_db`` dBFS (silence and hiss), ``below_peak_db``
    under the loudest frame, and ``above_noise_db`` over the noise floor (10th percentile). Pauses shorter
    than ``gap_s`` stay inside a region (they are part of speaking), regions shorter than ``min_s`` are
    dropped (clicks), and each region is padded by ``pad_s`` so word onsets and endings are kept.
    """
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    hop = max(1, int(round(0.010 * sample_rate)))
    n = x.size // hop - 1
    if n <= 0:
        return []
    frames = np.lib.stride_tricks.sliding_window_view(x, 2 * hop)[::hop][:n]
    db = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    threshold = max(floor_db, db.max() - below_peak_db, np.percentile(db, 10) + above_noise_db)
    voiced = db > threshold
    # Close short pauses, then drop short blips (morphological closing/opening on frames).
    edges = np.flatnonzero(np.diff(np.concatenate([[0], voiced.astype(np.int8), [0]])))
    runs = [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2])]
    merged: list[list[int]] = []
    for a, b in runs:
        if merged and (a - merged[-1][1]) * hop < gap_s * sample_rate:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    pad = int(pad_s * sample_rate)
    regions = []
    for a, b in merged:
        if (b - a) * hop >= min_s * sample_rate:
            i0, i1 = max(0, a * hop - pad), min(x.size, (b + 1) * hop + pad)
            if regions and i0 <= regions[-1][1]:
                regions[-1] = (regions[-1][0], i1)
            else:
                regions.append((i0, i1))
    return regions


def concatenate_speech(audio: np.ndarray, regions: list[tuple[int, int]], sample_rate: int,
                       max_s: float = MAX_SPEECH_S, fade_s: float = 0.01) -> np.ndarray:
    """The voiced regions joined end to end (short fades at the joins), at most ``max_s`` seconds."""
    budget = int(max_s * sample_rate)
    fade = max(1, int(fade_s * sample_rate))
    parts = []
    for i0, i1 in regions:
        part = np.array(audio[i0: min(i1, i0 + budget)], dtype=np.float32)
        ramp = np.linspace(0.0, 1.0, min(fade, part.size // 2), dtype=np.float32)
        if ramp.size:
            part[: ramp.size] *= ramp
            part[part.size - ramp.size:] *= ramp[::-1]
        parts.append(part)
        budget -= part.size
        if budget <= 0:
            break
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def speaker_reference(path: str | os.PathLike, *, user_supplied: bool = False,
                      sample_rate: int = REFERENCE_RATE) -> np.ndarray:
    """3-30 s of the speaker's speech from ``path`` (the input video, or a reference clip the user uploaded).

    Raises InputError with what to do when there is no audio track or too little speech in it.
    """
    what = "the reference clip" if user_supplied else "the video's audio track"
    advice = ("Upload a clip with at least 6 s of the speaker talking clearly (little music or noise)."
              if user_supplied else
              "Upload a short reference clip of the speaker's voice instead (--voice-reference FILE, or the "
              "app's voice reference upload), or turn voice cloning off.")
    try:
        audio = load_audio(path, sample_rate)
    except InputError as exc:  # no audio track, empty or undecodable: say why, then what to do instead
        raise InputError(f"Voice cloning needs a sample of the speaker's voice, but {what} cannot give one: "
                         f"{exc} {advice}") from exc
    regions = voiced_regions(audio, sample_rate)
    speech = concatenate_speech(audio, regions, sample_rate)
    seconds = speech.size / sample_rate
    if seconds < MIN_SPEECH_S:
        found = "no speech" if seconds == 0 else f"only {seconds:.1f} s of speech"
        raise InputError(f"Voice cloning needs at least {MIN_SPEECH_S:.0f} s of the speaker's speech, but {what} "
                         f"({path}) has {found}. {advice}",
                         web=f"Voice cloning needs at least {MIN_SPEECH_S:.0f} s of the speaker's speech, but {what} "
                             f"has {found}. Upload a voice sample of the speaker (Voice sample), or set Voice to Off.")
    if seconds < GOOD_SPEECH_S:
        log.warning("only %.1f s of speech in %s; %d s or more clones the voice better", seconds, what,
                    GOOD_SPEECH_S)
    return speech
