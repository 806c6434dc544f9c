"""Whisper log-mel spectrogram, exactly as LatentSync's bundled whisper computes it.

Spec: shared/reference/README.md section 3, item 2. The normalisation uses the maximum over the *whole* clip (not
per 30-s window), so this must be called once on the full waveform.
"""

from __future__ import annotations

import functools

import torch
import torchaudio.functional as AF

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160


@functools.lru_cache(maxsize=8)
def mel_filters(n_mels: int = 80, device: str = "cpu") -> torch.Tensor:
    """Slaney-normalised, Slaney-scale mel filterbank, (n_mels, N_FFT // 2 + 1) float32.

    Same filters as whisper's `mel_filters.npz` (librosa). torchaudio computes them in float32 while librosa uses
    float64, hence differences of ~6e-8 (a few float32 ulps; ~1e-6 in log-mel), far below any tolerance.
    """
    fb = AF.melscale_fbanks(
        n_freqs=N_FFT // 2 + 1,
        f_min=0.0,
        f_max=SAMPLE_RATE / 2,
        n_mels=n_mels,
        sample_rate=SAMPLE_RATE,
        norm="slaney",
        mel_scale="slaney",
    )
    return fb.T.contiguous().to(device)


def log_mel_spectrogram(waveform: torch.Tensor, n_mels: int = 80) -> torch.Tensor:
    """(N,) float 16 kHz mono waveform -> (n_mels, floor(N / 160)) float32 normalised log-mel.

    Needs N > 200 samples (torch's reflect padding of 200 requires it); callers validate user input first.
    """
    audio = waveform.to(torch.float32)
    window = torch.hann_window(N_FFT, device=audio.device)  # periodic Hann, like whisper
    stft = torch.stft(audio, N_FFT, HOP_LENGTH, window=window, center=True, pad_mode="reflect", return_complex=True)
    power = stft[..., :-1].abs() ** 2  # whisper drops the last frame -> T = N // 160
    mel = mel_filters(n_mels, str(audio.device)) @ power
    log_spec = torch.clamp(mel, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)  # global max over the whole clip
    return (log_spec + 4.0) / 4.0
