"""Wav2Vec2 features beside Whisper (the phoneme-aware audio improvement, ``models.phoneme_audio``).

Wav2Vec2's convolutional front end has a total stride of 320 samples: at 16 kHz it emits 50 frames per second,
the rate of the Whisper encoder's output. ``encode`` returns one row per Whisper feature row (padded with the
last frame or cut to that count), so ``WhisperAudioEncoder.frame_chunks(w2v[:, None])`` picks, for every video
frame, the Wav2Vec2 rows at exactly the 10 times of its Whisper chunk: (n, 10, d_w).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError


class Wav2Vec2AudioEncoder(nn.Module):
    """A frozen ``transformers.Wav2Vec2Model``; ``encode(waveform) -> (L, d_w)`` at 50 Hz, float32 CPU."""

    def __init__(self, model):
        super().__init__()
        self.model = model.eval().requires_grad_(False)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> Wav2Vec2AudioEncoder:
        from transformers import Wav2Vec2Model

        try:
            model = Wav2Vec2Model.from_pretrained(str(path))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot load a Wav2Vec2 model from {path} ({exc.__class__.__name__}: {exc}); "
                                  "pass a transformers Wav2Vec2 folder, e.g. facebook/wav2vec2-base-960h") from exc
        return cls(model.to(device))

    @property
    def feature_dim(self) -> int:
        return self.model.config.hidden_size

    @torch.no_grad()
    def encode(self, waveform: np.ndarray | torch.Tensor, num_features: int | None = None) -> torch.Tensor:
        """(N,) 16 kHz mono in [-1, 1] -> (num_features or ~N/320, d_w) last hidden states."""
        audio = torch.as_tensor(np.asarray(waveform, dtype=np.float32)).flatten()
        audio = (audio - audio.mean()) / (audio.std() + 1e-7)  # Wav2Vec2FeatureExtractor's zero-mean unit-var
        device = next(self.model.parameters()).device
        hidden = self.model(audio[None].to(device)).last_hidden_state[0].float().cpu()  # (L_w, d_w)
        if num_features is None:
            return hidden
        if len(hidden) >= num_features:
            return hidden[:num_features]
        return torch.cat([hidden, hidden[-1:].expand(num_features - len(hidden), -1)])
