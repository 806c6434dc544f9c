"""The mel spectrogram StableSyncNet was trained on (LatentSync ``latentsync/utils/audio.py``, from Wav2Lip).

16 kHz audio -> pre-emphasis 0.97 -> |STFT| (n_fft 800, hop 200, window 800 Hann, librosa's centred frames)
-> 80 Slaney mel bands 55-7600 Hz -> 20 log10(max(1e-5, x)) - 20 dB -> symmetric normalisation to [-4, 4]
(min level -100 dB, clipped). 80 columns per second, so video frame i (25 fps) starts at column int(3.2 i), and
a window of f frames is ceil(f / 5 * 16) columns (52 for 16 frames), as the official ``crop_audio_window``.
"""

from __future__ import annotations

import functools
import math

import numpy as np

SAMPLE_RATE = 16000
N_FFT, HOP, WIN = 800, 200, 800
N_MELS, FMIN, FMAX = 80, 55.0, 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB, REF_LEVEL_DB, MAX_ABS = -100.0, 20.0, 4.0
MEL_PER_SECOND = SAMPLE_RATE / HOP  # 80


@functools.lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX)


def syncnet_mel(waveform: np.ndarray) -> np.ndarray:
    """(N,) float 16 kHz mono in [-1, 1] -> (80, 1 + N // 200) float32 normalised mel in [-4, 4]."""
    import librosa
    from scipy.signal import lfilter

    emphasised = lfilter([1, -PREEMPHASIS], [1], np.asarray(waveform, dtype=np.float64))
    spec = np.abs(librosa.stft(y=emphasised, n_fft=N_FFT, hop_length=HOP, win_length=WIN))
    db = 20 * np.log10(np.maximum(10 ** (MIN_LEVEL_DB / 20), _mel_basis() @ spec)) - REF_LEVEL_DB
    normalised = 2 * MAX_ABS * (db - MIN_LEVEL_DB) / -MIN_LEVEL_DB - MAX_ABS
    return np.clip(normalised, -MAX_ABS, MAX_ABS).astype(np.float32)


def mel_window_length(num_frames: int, fps: float = 25.0) -> int:
    """Mel columns covering ``num_frames`` video frames: ceil(f / 5 * 16) at 25 fps (52 for 16)."""
    return math.ceil(num_frames / fps * MEL_PER_SECOND)


def mel_start(frame: int, fps: float = 25.0) -> int:
    """First mel column of video frame ``frame``: int(80 * frame / fps), the official rounding."""
    return int(MEL_PER_SECOND * (frame / float(fps)))
