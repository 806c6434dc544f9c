"""ResnetBlock3D: the LatentSync residual block (per-frame convolutions, clip-wide GroupNorm)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import VideoGroupNorm


class ResnetBlock3D(nn.Module):
    """GroupNorm -> SiLU -> conv -> + Linear(SiLU(temb)) -> GroupNorm -> SiLU -> conv, plus shortcut.

    Keys: ``norm1, conv1, time_emb_proj, norm2, conv2`` and ``conv_shortcut`` (1x1) when the channel
    count changes. Only the "default" time-embedding mode exists in the LatentSync configs.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temb_channels: int,
        groups: int = 32,
        eps: float = 1e-6,
        output_scale_factor: float = 1.0,
    ):
        super().__init__()
        self.norm1 = VideoGroupNorm(groups, in_channels, eps=eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = VideoGroupNorm(groups, out_channels, eps=eps)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        self.output_scale_factor = output_scale_factor

    def forward(self, x: torch.Tensor, temb: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x: (b*f, c_in, h, w); temb: (b, temb_channels) -> (b*f, c_out, h, w)."""
        h = self.conv1(F.silu(self.norm1(x, num_frames)))
        t = self.time_emb_proj(F.silu(temb))  # (b, c_out): the same shift for every frame of a clip
        h = h + t.repeat_interleave(num_frames, dim=0)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h, num_frames)))
        shortcut = self.conv_shortcut(x) if self.conv_shortcut is not None else x
        out = shortcut + h
        return out if self.output_scale_factor == 1.0 else out / self.output_scale_factor
