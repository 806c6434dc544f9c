"""Phoneme-aware audio (improvement 1): Wav2Vec2 features fused beside Whisper into wider audio tokens.

Whisper tiny's chunk of a video frame is 50 tokens of 384-d: token 5k + l is encoder layer l at time k (10 times,
50 Hz). Wav2Vec2 (``audio.wav2vec``) gives one vector per time at the same 50 Hz, (10, d_w) per frame. The fused
token 5k + l is ``[whisper token, proj(wav2vec at time k)]``: (50, 512) for the default 384 + 128.

The UNet's audio cross-attention (every ``attn2``) then reads 512-d tokens: ``widen_cross_attention`` gives its
``to_k`` / ``to_v`` 128 extra input columns, all zero. At step 0 keys and values, hence outputs, are those of the
official 384-d model whatever Wav2Vec2 says; training opens the new columns. The widened UNet is an ordinary
``UNet3DConditionModel`` with ``cross_attention_dim`` = 512, so its checkpoint has the official key names.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class PhonemeAudioFusion(ModelMixin, ConfigMixin):
    """(…, 50, whisper_dim) Whisper chunks + (…, 10, wav2vec_dim) Wav2Vec2 chunks -> (…, 50, fused_dim) tokens."""

    @register_to_config
    def __init__(self, whisper_dim: int = 384, wav2vec_dim: int = 768, fused_dim: int = 512):
        super().__init__()
        if fused_dim <= whisper_dim:
            raise ValueError(f"fused_dim ({fused_dim}) must exceed whisper_dim ({whisper_dim})")
        self.norm = nn.LayerNorm(wav2vec_dim)
        self.proj = nn.Linear(wav2vec_dim, fused_dim - whisper_dim)

    def forward(self, whisper: torch.Tensor, wav2vec: torch.Tensor) -> torch.Tensor:
        tokens, times = whisper.shape[-2], wav2vec.shape[-2]
        if tokens % times or whisper.shape[:-2] != wav2vec.shape[:-2]:
            raise ValueError(f"whisper chunks {tuple(whisper.shape)} and wav2vec chunks {tuple(wav2vec.shape)} "
                             "are not time-aligned (expected (..., 50, d) and (..., 10, d_w))")
        extra = self.proj(self.norm(wav2vec.to(self.proj.weight.dtype)))  # (..., 10, e)
        extra = extra.repeat_interleave(tokens // times, dim=-2)  # token 5k + l -> time k
        return torch.cat([whisper.to(extra.dtype), extra], dim=-1)


@torch.no_grad()
def widen_cross_attention(unet: nn.Module, fused_dim: int) -> nn.Module:
    """Give every audio cross-attention (``attn2``) ``fused_dim`` inputs: zero extra key/value columns (in place).

    Updates ``unet.config.cross_attention_dim`` so the saved model rebuilds with ``from_config``.
    """
    widened = 0
    for name, module in unet.named_modules():
        if not name.endswith("attn2"):
            continue
        for proj_name in ("to_k", "to_v"):
            old: nn.Linear = getattr(module, proj_name)
            if old.in_features > fused_dim:
                raise ValueError(f"{name}.{proj_name} already has {old.in_features} > {fused_dim} inputs")
            new = nn.Linear(fused_dim, old.out_features, bias=old.bias is not None,
                            device=old.weight.device, dtype=old.weight.dtype)
            new.weight.zero_()
            new.weight[:, :old.in_features] = old.weight
            if old.bias is not None:
                new.bias.copy_(old.bias)
            setattr(module, proj_name, new)
        module.cross_attention_dim = fused_dim
        widened += 1
    if not widened:
        raise ValueError("the UNet has no audio cross-attention (add_audio_layer is off): nothing to widen")
    if hasattr(unet, "register_to_config"):
        unet.register_to_config(cross_attention_dim=fused_dim)
    return unet
