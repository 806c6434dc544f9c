"""Tiny LCM fixtures: a "student" for tiny checkpoint sets (the lcm sampler's whole path runs offline), and
teacher sets and random data caches for distillation tests.

The tiny student is not distilled (that is ``latentsync_demo.training.lcm_distill``'s job): the full variant is
a copy of the tiny teacher's weights, the LoRA variant a small random LoRA on it (loading it changes outputs).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..models import save_unet_checkpoint
from ..models.lcm import add_lora, save_lcm_student
from ..store import LCM_DIR, UNET_FILE, VAE_DIR, write_unet_config
from ..training.data import write_clip
from .tiny_models import TINY_AUDIO_DIM, TINY_UNET_CONFIG, tiny_unet, tiny_vae


def write_tiny_lcm(folder: str | Path, seed: int = 0, lora: bool = False) -> Path:
    """Write ``folder/lcm/`` for the tiny set of ``folder`` (same ``seed`` as its teacher); returns that folder."""
    student = tiny_unet(seed)
    if lora:
        student = add_lora(student, rank=4)
        generator = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for name, param in student.named_parameters():
                if "lora_B" in name:  # peft starts B at zero (no change): make the adapter do something
                    param.copy_(0.02 * torch.randn(param.shape, generator=generator))
    return save_lcm_student(student, Path(folder) / LCM_DIR)


def write_teacher_set(folder: str | Path, config: dict = TINY_UNET_CONFIG, resolution: int = 32, seed: int = 0) -> Path:
    """What distillation needs of a checkpoint folder: a random UNet of ``config``, its unet_config.json, a VAE."""
    folder = Path(folder)
    save_unet_checkpoint(tiny_unet(seed, config), folder / UNET_FILE)
    write_unet_config(folder, config, resolution)
    tiny_vae(seed).save_pretrained(folder / VAE_DIR, safe_serialization=True)
    return folder


def write_random_cache(folder: str | Path, clips: int = 2, frames: int = 40, resolution: int = 32,
                       audio_dim: int = TINY_AUDIO_DIM, seed: int = 0, mel: bool = False,
                       wav2vec_dim: int = 0) -> Path:
    """A training cache of random faces (N, 3, R, R) uint8 and random whisper-like chunks (N, 50, d); with
    ``mel`` also a random SyncNet mel (80, ceil(3.2 N)) in [-4, 4], with ``wav2vec_dim`` random (N, 10, d_w)."""
    generator = torch.Generator().manual_seed(seed)
    for k in range(clips):
        faces = torch.randint(0, 256, (frames, 3, resolution, resolution), dtype=torch.uint8, generator=generator)
        audio = torch.randn(frames, 50, audio_dim, generator=generator)
        extra = {}
        if mel:
            extra["mel"] = torch.rand(80, -(-frames * 16 // 5), generator=generator) * 8 - 4
        if wav2vec_dim:
            extra["wav2vec"] = torch.randn(frames, 10, wav2vec_dim, generator=generator)
        write_clip(Path(folder) / f"random_{k:03d}.safetensors", faces, audio, first_frame=0, mel_start=0, **extra)
    return Path(folder)
