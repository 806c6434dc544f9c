"""Loading the networks of a checkpoint set (``store.CheckpointSet``): UNet, VAE, the audio encoder and the LCM
student. The store only says where the files are; this builds the models from them."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from diffusers import AutoencoderKL

from .audio.phoneme import PhonemeAwareAudioEncoder
from .audio.wav2vec import load_wav2vec
from .audio.whisper import WhisperAudioEncoder
from .errors import CheckpointError
from .models.checkpoint import load_unet
from .models.improvements import Improvements, load_improved_unet
from .models.lcm import load_lcm_unet as load_student
from .store import CheckpointSet


@dataclass
class LoadedModels:
    unet: torch.nn.Module
    vae: torch.nn.Module
    audio_encoder: torch.nn.Module
    resolution: int
    improvements: Improvements = field(default_factory=Improvements)  # all off: an official checkpoint


def load_models(
    checkpoints: CheckpointSet, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> LoadedModels:
    """Load UNet (strict), VAE and whisper of a checkpoint set onto ``device`` in ``dtype``."""
    checkpoints.require()
    improvements = Improvements.load(checkpoints.folder)  # a trained checkpoint's improvements.json, else all off
    fusion = None
    if improvements.any():
        unet, fusion = load_improved_unet(checkpoints.unet, checkpoints.unet_config, improvements, device, dtype)
    else:
        unet = load_unet(checkpoints.unet, checkpoints.unet_config, device=device, dtype=dtype)
    try:
        vae = AutoencoderKL.from_pretrained(str(checkpoints.vae), torch_dtype=dtype).to(device).eval()
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"cannot load the VAE from {checkpoints.vae}: {exc}") from exc
    audio_dim = unet.config.cross_attention_dim if fusion is None else fusion.config.whisper_dim
    whisper = WhisperAudioEncoder.from_openai_checkpoint(checkpoints.whisper, device=device, dtype=dtype)
    if whisper.feature_dim != audio_dim:
        raise CheckpointError(
            f"whisper checkpoint {checkpoints.whisper} gives {whisper.feature_dim}-d features but the UNet expects "
            f"{audio_dim} (cross_attention_dim): whisper tiny goes with 384, small with 768."
        )
    audio_encoder = whisper
    if fusion is not None:  # phoneme-aware audio: Wav2Vec2 beside Whisper, fused on the CPU like whisper chunks
        wav2vec = load_wav2vec(checkpoints.folder, improvements.wav2vec_model, device)
        audio_encoder = PhonemeAwareAudioEncoder(whisper, wav2vec, fusion.to("cpu", torch.float32))
    return LoadedModels(unet, vae, audio_encoder, checkpoints.resolution, improvements)


def load_lcm_unet(
    checkpoints: CheckpointSet,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    base_unet: torch.nn.Module | None = None,
) -> torch.nn.Module:
    """The LCM student of a checkpoint set (see ``models.lcm``); a LoRA goes on a copy of ``base_unet`` (the
    already loaded teacher, left untouched) or else on the set's ``latentsync_unet.pt``, merged."""
    checkpoints.require_lcm()
    return load_student(checkpoints.lcm, checkpoints.unet_config, device=device, dtype=dtype,
                        base_unet=base_unet, base_path=checkpoints.unet)
