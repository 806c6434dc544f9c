"""Temporal ("motion") module: self-attention across the frames of each spatial position.

Key layout (official ``VanillaTemporalModule``): ``temporal_transformer.{norm, proj_in,
transformer_blocks.0.{attention_blocks.{0,1}.{to_q,to_k,to_v,to_out.0,pos_encoder.pe}, norms.{0,1},
ff, ff_norm}, proj_out}``.
"""

from __future__ import annotations

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from torch import nn

from .layers import sinusoid_table, zero_


class PositionalEncoding(nn.Module):
    """Adds a sinusoid table over the frame axis. ``pe`` is a persistent buffer, as in the official model."""

    def __init__(self, dim: int, max_len: int = 24):
        super().__init__()
        self.register_buffer("pe", sinusoid_table(max_len, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (n, f, dim). Past max_len (long clips, ``models.hierarchical``) the same sinusoid continues."""
        f = x.shape[1]
        pe = self.pe if f <= self.pe.shape[1] else sinusoid_table(f, x.shape[2]).to(self.pe.device)
        return x + pe[:, :f].to(x.dtype)


class TemporalSelfAttention(Attention):
    """Attention over frames; the position table is added to the (already normalised) input first."""

    def __init__(self, dim: int, heads: int, use_position_encoding: bool, max_len: int):
        super().__init__(dim, heads=heads, dim_head=dim // heads, bias=False)
        self.pos_encoder = PositionalEncoding(dim, max_len) if use_position_encoding else None

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:  # type: ignore[override]
        """x: (b*f, s, dim) -> (b*f, s, dim); attention runs over f for each of the s positions."""
        bf, s, dim = x.shape
        frames_major = x.reshape(bf // num_frames, num_frames, s, dim).transpose(1, 2).reshape(-1, num_frames, dim)
        if self.pos_encoder is not None:
            frames_major = self.pos_encoder(frames_major)
        out = super().forward(frames_major)
        return out.reshape(bf // num_frames, s, num_frames, dim).transpose(1, 2).reshape(bf, s, dim)


class TemporalTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, num_attention_blocks: int, use_position_encoding: bool, max_len: int):
        super().__init__()
        self.attention_blocks = nn.ModuleList(
            [TemporalSelfAttention(dim, heads, use_position_encoding, max_len) for _ in range(num_attention_blocks)]
        )
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(num_attention_blocks)])
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        for attention, norm in zip(self.attention_blocks, self.norms):
            x = attention(norm(x), num_frames) + x
        return self.ff(self.ff_norm(x)) + x


class TemporalTransformer(nn.Module):
    """GroupNorm -> Linear -> temporal blocks -> Linear, plus residual.

    The GroupNorm always has 32 groups: the official code never passes ``norm_num_groups`` down here.
    """

    def __init__(
        self,
        channels: int,
        heads: int,
        num_layers: int,
        num_attention_blocks: int,
        use_position_encoding: bool,
        max_len: int,
    ):
        super().__init__()
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList(
            [
                TemporalTransformerBlock(channels, heads, num_attention_blocks, use_position_encoding, max_len)
                for _ in range(num_layers)
            ]
        )
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x: (b*f, c, h, w) -> (b*f, c, h, w)."""
        bf, c, h, w = x.shape
        tokens = self.proj_in(self.norm(x).permute(0, 2, 3, 1).reshape(bf, h * w, c))
        for block in self.transformer_blocks:
            tokens = block(tokens, num_frames)
        out = self.proj_out(tokens).reshape(bf, h, w, c).permute(0, 3, 1, 2)
        return out + x


class MotionModule(nn.Module):
    """The official "Vanilla" motion module (a wrapper whose only child is ``temporal_transformer``)."""

    def __init__(
        self,
        in_channels: int,
        num_attention_heads: int = 8,
        num_transformer_block: int = 2,
        attention_block_types: tuple[str, ...] = ("Temporal_Self", "Temporal_Self"),
        temporal_position_encoding: bool = False,
        temporal_position_encoding_max_len: int = 24,
        temporal_attention_dim_div: int = 1,
        zero_initialize: bool = True,
        cross_frame_attention_mode: None = None,
    ):
        super().__init__()
        if any(kind != "Temporal_Self" for kind in attention_block_types):
            raise ValueError(f"only 'Temporal_Self' attention blocks exist in LatentSync, got {attention_block_types}")
        if temporal_attention_dim_div != 1:
            raise ValueError("temporal_attention_dim_div != 1 is not used by any LatentSync config")
        self.temporal_transformer = TemporalTransformer(
            in_channels,
            num_attention_heads,
            num_transformer_block,
            len(attention_block_types),
            temporal_position_encoding,
            temporal_position_encoding_max_len,
        )
        if zero_initialize:
            zero_(self.temporal_transformer.proj_out)
        self.hierarchical = None  # optional local+keyframe attention (models.hierarchical); off = official

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        x = self.temporal_transformer(x, num_frames)
        return x if self.hierarchical is None else self.hierarchical(x, num_frames)
