"""The research improvements as switches on the official UNet (all off by default: the official model as is).

``Improvements`` names them; ``apply_improvements`` turns them on in an already loaded UNet, with every new weight
starting where the official model's outputs do not change (zero key/value columns, zero output projections).
An improved checkpoint folder holds ``latentsync_unet.pt`` (official layout, extra keys/columns included),
``improvements.json`` and, for phoneme-aware audio, ``audio_fusion/`` (``PhonemeAudioFusion``) and, once
fetched, ``wav2vec2/`` (the transformers Wav2Vec2 named by ``wav2vec_model``); ``load_improved_unet`` rebuilds
and loads the UNet strictly, ``loading.load_models`` the whole set for the app, CLI and service.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Mapping

import torch

from ..errors import CheckpointError
from .checkpoint import check_state_dict, read_state_dict
from .hierarchical import add_hierarchical_temporal
from .phoneme_audio import PhonemeAudioFusion, widen_cross_attention
from .unet import UNet3DConditionModel

IMPROVEMENTS_FILE = "improvements.json"
FUSION_DIR = "audio_fusion"
WAV2VEC_DIR = "wav2vec2"  # the phoneme-aware set's transformers Wav2Vec2, once fetched (``audio.wav2vec``)


@dataclass
class Improvements:
    phoneme_audio: bool = False  # Wav2Vec2 beside Whisper, fused to fused_audio_dim-d tokens
    wav2vec_dim: int = 768  # wav2vec2-base; 1024 for large
    fused_audio_dim: int = 512
    hierarchical_temporal: bool = False  # local window + keyframe attention after every motion module
    local_window: int = 5
    keyframe_every: int = 8
    # Written by the trainer, read at inference (pipeline windows, the Wav2Vec2 model to load):
    num_frames: int = 16  # clip length trained on; the inference window of hierarchical checkpoints
    wav2vec_model: str = "facebook/wav2vec2-base-960h"  # transformers Wav2Vec2 the cached features came from

    def any(self) -> bool:
        return self.phoneme_audio or self.hierarchical_temporal

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / IMPROVEMENTS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1))
        return path

    @classmethod
    def load(cls, folder: str | Path) -> Improvements:
        """The folder's improvements.json, or all off when it has none (an official checkpoint)."""
        path = Path(folder) / IMPROVEMENTS_FILE
        if not path.is_file():
            return cls()
        data = json.loads(path.read_text())
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(f"{path}: unknown improvements {unknown}; known: {sorted(known)}")
        return cls(**data)


def wav2vec_folder(checkpoint_folder: str | Path) -> Path:
    """Where a phoneme-aware checkpoint folder keeps its Wav2Vec2 model."""
    return Path(checkpoint_folder) / WAV2VEC_DIR


def apply_improvements(unet: UNet3DConditionModel, improvements: Improvements) -> PhonemeAudioFusion | None:
    """Switch the improvements on in ``unet`` (in place); returns the audio fusion module (phoneme audio) or None.

    Applied to official weights, the UNet's outputs are unchanged until training moves the new weights.
    """
    fusion = None
    if improvements.phoneme_audio:
        whisper_dim = unet.config.cross_attention_dim
        widen_cross_attention(unet, improvements.fused_audio_dim)
        fusion = PhonemeAudioFusion(whisper_dim, improvements.wav2vec_dim, improvements.fused_audio_dim)
    if improvements.hierarchical_temporal:
        add_hierarchical_temporal(unet, improvements.local_window, improvements.keyframe_every)
    return fusion


def load_improved_unet(path: str | Path, config: Mapping, improvements: Improvements,
                       device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """Build the official UNet from ``config``, switch ``improvements`` on, load ``path`` strictly.

    ``config`` is the official (pre-improvement) model section; for phoneme audio its cross_attention_dim is the
    Whisper width (384) and the checkpoint's is ``fused_audio_dim``. Returns (unet, fusion or None); the fusion
    weights are read from ``<path's folder>/audio_fusion`` when present.
    """
    config = dict(config)
    if improvements.phoneme_audio and config.get("cross_attention_dim") == improvements.fused_audio_dim:
        raise CheckpointError("pass the official model config (cross_attention_dim = the Whisper width), "
                              "not the widened one")
    state_dict = read_state_dict(path)
    with torch.device("meta"):
        unet = UNet3DConditionModel.from_config(config)
        fusion = apply_improvements(unet, improvements)
    check_state_dict(unet, state_dict, source=str(path))
    state_dict = {k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype)
                  for k, v in state_dict.items()}
    unet.load_state_dict(state_dict, strict=True, assign=True)
    if fusion is not None:
        folder = Path(path).parent / FUSION_DIR
        if not folder.is_dir():
            raise CheckpointError(f"phoneme-aware audio is on but {folder} is missing (the Wav2Vec2 fusion weights)")
        fusion = PhonemeAudioFusion.from_pretrained(str(folder)).to(device, dtype)
    return unet.eval(), fusion
