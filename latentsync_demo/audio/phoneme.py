"""The audio encoder of a phoneme-aware checkpoint at inference: Whisper + Wav2Vec2, fused per video frame.

It has the interface the job engine uses of ``WhisperAudioEncoder`` (``encode`` the whole driving audio once,
then ``frame_chunks`` for the frames of each chunk), so ``pipeline.job`` runs it unchanged:

    features = encoder.encode(waveform, windows="seamless")  # PhonemeFeatures: whisper (L, layers, d), wav2vec (L, d_w)
    tokens = encoder.frame_chunks(features, fps=25, frame_indices=range(16))   # (16, 50, fused_dim)

The Wav2Vec2 rows are cut/padded to the Whisper row count L (both 50 Hz), so frame i reads both encoders at the
same 10 times, exactly as the training cache pairs them (``training.data``, ``models.phoneme_audio``). The
fusion runs where its weights are (CPU float32 by default, like the Whisper chunks it extends).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError
from .wav2vec import Wav2Vec2AudioEncoder
from .whisper import WhisperAudioEncoder


@dataclass(frozen=True)
class PhonemeFeatures:
    whisper: torch.Tensor  # (L, n_layer + 1, d) float32 CPU
    wav2vec: torch.Tensor  # (L, d_w) float32 CPU, row k = the same 20 ms as whisper row k


class PhonemeAwareAudioEncoder(nn.Module):
    """Whisper chunks (n, 50, d) + Wav2Vec2 chunks (n, 10, d_w) -> ``PhonemeAudioFusion`` tokens (n, 50, fused)."""

    def __init__(self, whisper: WhisperAudioEncoder, wav2vec: Wav2Vec2AudioEncoder, fusion: nn.Module):
        super().__init__()
        self.whisper, self.wav2vec, self.fusion = whisper, wav2vec, fusion.eval().requires_grad_(False)
        expected = (fusion.config.whisper_dim, fusion.config.wav2vec_dim)
        if (whisper.feature_dim, wav2vec.feature_dim) != expected:
            raise CheckpointError(f"the audio fusion expects {expected[0]}-d Whisper and {expected[1]}-d Wav2Vec2 "
                                  f"features, got {whisper.feature_dim} and {wav2vec.feature_dim}: use the Whisper "
                                  "and Wav2Vec2 models the checkpoint was trained with")

    @property
    def feature_dim(self) -> int:
        """Width of the tokens the UNet hears (its cross_attention_dim)."""
        return self.fusion.config.fused_dim

    def encode(self, waveform: np.ndarray | torch.Tensor, *, windows: str = "official") -> PhonemeFeatures:
        """(N,) 16 kHz mono in [-1, 1] -> both encoders' 50 Hz features, time-aligned row for row.

        ``windows`` is the Whisper windows mode (``audio.windows``); it changes which window a Whisper row is
        read from, never the row count, so the Wav2Vec2 rows (one pass over the whole clip) pair up the same."""
        whisper = self.whisper.encode(waveform, windows=windows)
        return PhonemeFeatures(whisper, self.wav2vec.encode(waveform, num_features=len(whisper)))

    @torch.no_grad()
    def frame_chunks(self, features: PhonemeFeatures, fps: float = 25, audio_feat_length: Sequence[int] = (2, 2),
                     frame_indices: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """-> (n_chunks, 50, fused_dim) float32: frame i's Whisper chunk with its Wav2Vec2 rows fused in."""
        whisper = WhisperAudioEncoder.frame_chunks(features.whisper, fps, audio_feat_length, frame_indices)
        wav2vec = WhisperAudioEncoder.frame_chunks(features.wav2vec[:, None], fps, audio_feat_length, frame_indices)
        param = next(self.fusion.parameters())
        fused = self.fusion(whisper.to(param.device, param.dtype), wav2vec.to(param.device, param.dtype))
        return fused.float().cpu()
