"""Spatial transformer with audio cross-attention (the official ``Transformer3DModel``).

Each frame's h*w tokens attend to themselves (``attn1``) and then to that frame's 50 audio tokens
(``attn2``); frames never see each other here (temporal mixing is the motion module's job).
"""

from __future__ import annotations

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from torch import nn


class AudioTransformerBlock(nn.Module):
    """LayerNorm -> self-attn, LayerNorm -> audio cross-attn (if enabled), LayerNorm -> GEGLU FF.

    Keys: ``norm1, attn1, norm2, attn2, ff, norm3`` (``norm2/attn2`` only with ``add_audio_layer``).
    """

    def __init__(self, dim: int, heads: int, cross_attention_dim: int, add_audio_layer: bool):
        super().__init__()
        head_dim = dim // heads
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads=heads, dim_head=head_dim, bias=False)
        if add_audio_layer:
            self.norm2 = nn.LayerNorm(dim)
            self.attn2 = Attention(dim, cross_attention_dim=cross_attention_dim, heads=heads, dim_head=head_dim)
        else:
            self.norm2 = self.attn2 = None
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, audio: torch.Tensor | None) -> torch.Tensor:
        """x: (b*f, h*w, dim); audio: (b*f, 50, cross_attention_dim) or None."""
        x = self.attn1(self.norm1(x)) + x
        if self.attn2 is not None and audio is not None:
            x = self.attn2(self.norm2(x), encoder_hidden_states=audio) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    """Per-frame GroupNorm(eps 1e-6) -> 1x1 conv -> transformer block -> 1x1 conv, plus residual.

    Keys: ``norm, proj_in, transformer_blocks.0.*, proj_out``.
    """

    def __init__(self, channels: int, heads: int, groups: int, cross_attention_dim: int, add_audio_layer: bool):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList(
            [AudioTransformerBlock(channels, heads, cross_attention_dim, add_audio_layer)]
        )
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, audio: torch.Tensor | None) -> torch.Tensor:
        """x: (b*f, c, h, w) -> (b*f, c, h, w)."""
        bf, c, h, w = x.shape
        tokens = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(bf, h * w, c)
        for block in self.transformer_blocks:
            tokens = block(tokens, audio)
        out = tokens.reshape(bf, h, w, c).permute(0, 3, 1, 2)
        return self.proj_out(out) + x
