"""Hierarchical temporal attention (improvement 3): local windows + global keyframes, for 32-64-frame clips.

The official motion module attends over all frames of a 16-frame window. For longer clips this adds, after
each motion module, one more temporal attention whose mask lets frame i see

    * its local window, |i - j| <= window // 2 (5 frames by default), and
    * every keyframe j (j % keyframe_every == 0, every 8th frame): global anchors the whole clip shares,

with a sinusoidal temporal position encoding of any length on queries and keys. Its output projection starts
at zero, so at step 0 the UNet computes exactly what the official weights compute (for clips of up to 24 frames,
the official position table's length; beyond that the official table is continued by the same sinusoid formula).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import sinusoid_table, zero_
from .motion import MotionModule


def hierarchical_mask(num_frames: int, window: int = 5, keyframe_every: int = 8,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """(f, f) bool: True where frame i (row) may attend frame j (column)."""
    i = torch.arange(num_frames, device=device)
    local = (i[:, None] - i[None, :]).abs() <= window // 2
    return local | (i[None, :] % keyframe_every == 0)


class HierarchicalTemporalAttention(nn.Module):
    """GroupNorm -> +position -> masked multi-head attention over frames -> zero-initialised projection, residual."""

    def __init__(self, channels: int, heads: int = 8, window: int = 5, keyframe_every: int = 8):
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels cannot be split into {heads} heads")
        self.heads, self.window, self.keyframe_every = heads, window, keyframe_every
        self.norm = nn.GroupNorm(32 if channels % 32 == 0 else 1, channels, eps=1e-6)
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_k = nn.Linear(channels, channels, bias=False)
        self.to_v = nn.Linear(channels, channels, bias=False)
        self.to_out = zero_(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x: (b*f, c, h, w) -> (b*f, c, h, w)."""
        bf, c, h, w = x.shape
        b, f = bf // num_frames, num_frames
        tokens = self.norm(x).reshape(b, f, c, h * w).permute(0, 3, 1, 2).reshape(b * h * w, f, c)
        pos = sinusoid_table(f, c).to(tokens.device, tokens.dtype)
        q, k, v = self.to_q(tokens + pos), self.to_k(tokens + pos), self.to_v(tokens)
        q, k, v = (t.unflatten(-1, (self.heads, c // self.heads)).transpose(1, 2) for t in (q, k, v))
        mask = hierarchical_mask(f, self.window, self.keyframe_every, tokens.device)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(b * h * w, f, c)
        out = self.to_out(out).reshape(b, h * w, f, c).permute(0, 2, 3, 1).reshape(bf, c, h, w)
        return x + out


def add_hierarchical_temporal(unet: nn.Module, window: int = 5, keyframe_every: int = 8) -> int:
    """Put a zero-initialised ``HierarchicalTemporalAttention`` after every motion module (in place); returns how
    many. New keys: ``<motion module>.hierarchical.*``."""
    count = 0
    for module in unet.modules():
        if isinstance(module, MotionModule) and module.hierarchical is None:
            channels = module.temporal_transformer.proj_in.in_features
            heads = module.temporal_transformer.transformer_blocks[0].attention_blocks[0].heads
            ref = module.temporal_transformer.proj_in.weight
            module.hierarchical = HierarchicalTemporalAttention(channels, heads, window, keyframe_every).to(
                ref.device, ref.dtype)
            count += 1
    if not count:
        raise ValueError("the UNet has no motion modules (use_motion_module is off): nothing to extend")
    return count
