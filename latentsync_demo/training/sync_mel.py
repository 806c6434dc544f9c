"""The SyncNet mel spectrogram: LatentSync's StableSyncNet hears Wav2Lip's mel, not Whisper's.

Wav2Lip hyper-parameters (LatentSync ``latentsync/utils/audio.py`` keeps them): 16 kHz, pre-emphasis 0.97,
STFT n_fft = win = 800, hop 200 (80 mel frames per second), |STFT| magnitude, 80 Slaney mel bands 55-7600 Hz,
20 log10(max(1e-5, .)) - 20 dB, then scaled symmetrically into [-4, 4] from a -100 dB floor.

One video frame at 25 fps spans 3.2 mel frames; a 16-frame window is the 52 = ceil(16 * 3.2) frames starting
at ``int(3.2 * first_frame)``: the SyncNet's ``audio (b, 1, 80, 52)`` input.
"""

from __future__ import annotations

import functools
import math

import torch
import torchaudio.functional as AF

SAMPLE_RATE = 16000
MEL_PER_VIDEO_FRAME = 80 / 25  # mel frames per video frame at 25 fps


@functools.lru_cache(maxsize=2)
def _filters(device: str = "cpu") -> torch.Tensor:
    fb = AF.melscale_fbanks(n_freqs=401, f_min=55.0, f_max=7600.0, n_mels=80, sample_rate=SAMPLE_RATE,
                            norm="slaney", mel_scale="slaney")
    return fb.T.contiguous().to(device)  # (80, 401)


def syncnet_mel(waveform: torch.Tensor) -> torch.Tensor:
    """(N,) float 16 kHz mono waveform -> (80, 1 + N // 200) float32 mel in [-4, 4]."""
    audio = torch.as_tensor(waveform, dtype=torch.float32)
    audio = torch.cat([audio[:1], audio[1:] - 0.97 * audio[:-1]])  # pre-emphasis (lfilter([1, -0.97], [1]))
    window = torch.hann_window(800, device=audio.device)
    spec = torch.stft(audio, 800, 200, window=window, center=True, pad_mode="constant", return_complex=True).abs()
    mel = _filters(str(audio.device)) @ spec
    db = 20 * torch.log10(mel.clamp(min=1e-5)) - 20.0
    return (8.0 * (db + 100.0) / 100.0 - 4.0).clamp(-4.0, 4.0)


def mel_window_length(num_frames: int) -> int:
    """Mel frames that ``num_frames`` video frames span: 52 for 16."""
    return math.ceil(num_frames * MEL_PER_VIDEO_FRAME)


def mel_start(frame: int) -> int:
    return int(frame * MEL_PER_VIDEO_FRAME)


def mel_window(mel: torch.Tensor, frame: int, num_frames: int) -> torch.Tensor:
    """(80, M) -> (80, mel_window_length(num_frames)) from video frame ``frame``, edge-padded past the end."""
    start, length = mel_start(frame), mel_window_length(num_frames)
    out = mel[:, start:start + length]
    if out.shape[1] < length:
        pad = mel[:, -1:] if mel.shape[1] else mel.new_zeros(mel.shape[0], 1)
        out = torch.cat([out, pad.expand(-1, length - out.shape[1])], dim=1)
    return out
