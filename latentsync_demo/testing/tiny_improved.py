"""Tiny fixtures for improved checkpoints: a random Wav2Vec2 in the transformers folder format, and improved
checkpoint folders written by the real trainer (``training.train_unet``) from a tiny checkpoint set.

Nothing is downloaded; outputs are meaningless, but the app/CLI/service path of a trained checkpoint runs.
"""

from __future__ import annotations

from pathlib import Path

from ..models.improvements import Improvements
from ..store import resolve
from .tiny_lcm import write_random_cache
from .tiny_models import TINY_AUDIO_DIM

TINY_WAV2VEC_DIM = 24


def write_tiny_wav2vec2(folder: str | Path, seed: int = 0) -> Path:
    """A random ``transformers.Wav2Vec2Model`` with the real front end (total stride 320: 50 Hz at 16 kHz) and
    one 24-d transformer layer, saved with ``save_pretrained``."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(seed)
    config = Wav2Vec2Config(
        hidden_size=TINY_WAV2VEC_DIM, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        conv_dim=(16,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, vocab_size=8,
    )
    Wav2Vec2Model(config).eval().save_pretrained(str(folder))
    return Path(folder)


def train_improved_set(output: str | Path, base: str | Path, cache: str | Path, improvements: Improvements,
                       num_frames: int = 16, steps: int = 0, wav2vec: str | Path | None = None) -> Path:
    """Run the trainer (stage 1, ``steps`` steps; 0 = save the improved initialisation) from the tiny set
    ``base`` and return its ``final/`` checkpoint folder."""
    from ..training.train_unet import Critics, TrainConfig, train
    from ..training.unet_objective import UNetLossConfig

    cfg = TrainConfig(output=Path(output), cache=Path(cache), checkpoints=resolve("latentsync-1.5", base).folder,
                      num_frames=num_frames, batch_size=1, learning_rate=1e-3, max_steps=steps, log_every=1,
                      checkpoint_every=0, tensorboard=False, progress=False, improvements=improvements,
                      wav2vec=str(wav2vec) if wav2vec is not None else None, losses=UNetLossConfig(stage=1))
    return train(cfg, critics=Critics())


def write_improved_cache(folder: str | Path, resolution: int, frames: int = 40) -> Path:
    """A random training cache with Whisper-tiny-like chunks and tiny Wav2Vec2 chunks (phoneme-aware audio)."""
    return write_random_cache(folder, clips=1, frames=frames, resolution=resolution, audio_dim=TINY_AUDIO_DIM,
                              wav2vec_dim=TINY_WAV2VEC_DIM)
