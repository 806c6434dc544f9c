"""Small layers shared by the UNet blocks.

Layout convention: inside the UNet, video tensors travel as ``(b*f, c, h, w)`` ("frames flattened
into the batch"), so every per-frame 2-D convolution runs without a permute/copy. The official code
keeps ``(b, c, f, h, w)`` and rearranges around each convolution; the numbers are the same.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class VideoGroupNorm(nn.GroupNorm):
    """GroupNorm whose statistics span all frames of a clip.

    The official ResnetBlock3D applies ``nn.GroupNorm`` to the 5-D ``(b, c, f, h, w)`` tensor, so each
    group's mean/variance is taken over (channels in group, frames, height, width). Normalising each
    frame on its own would give different numbers. Parameter names match ``nn.GroupNorm``.
    """

    def forward(self, x: torch.Tensor, num_frames: int = 1) -> torch.Tensor:  # type: ignore[override]
        """x: (b*f, c, h, w) -> (b*f, c, h, w)."""
        if num_frames == 1:
            return super().forward(x)
        bf, c, h, w = x.shape
        b, g = bf // num_frames, self.num_groups
        # (b, f, g, c/g, h*w): reduce over everything but batch and group; stats in float32 for fp16 runs.
        grouped = x.reshape(b, num_frames, g, c // g, h * w)
        stats_input = grouped.float() if grouped.dtype in (torch.float16, torch.bfloat16) else grouped
        var, mean = torch.var_mean(stats_input, dim=(1, 3, 4), unbiased=False, keepdim=True)
        normed = ((grouped - mean) * torch.rsqrt(var + self.eps)).to(x.dtype).reshape(bf, c, h, w)
        return normed * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)


class Downsample2D(nn.Module):
    """Stride-2 3x3 convolution applied to every frame (key: ``conv``)."""

    def __init__(self, channels: int, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample2D(nn.Module):
    """Nearest x2 upsampling of every frame, then a 3x3 convolution (key: ``conv``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, output_size: tuple[int, int] | None = None) -> torch.Tensor:
        dtype = x.dtype
        if dtype == torch.bfloat16:  # nearest upsampling lacks bf16 kernels on some builds
            x = x.float()
        if output_size is None:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        else:
            x = F.interpolate(x, size=output_size, mode="nearest")
        return self.conv(x.to(dtype))


def zero_(module: nn.Module) -> nn.Module:
    """Zero a module's parameters in place (the official init of conv_in/conv_out/motion proj_out)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def sinusoid_table(max_len: int, dim: int) -> torch.Tensor:
    """(1, max_len, dim) table: pe[p, 2i] = sin(p*10000^(-2i/dim)), pe[p, 2i+1] = cos(...)."""
    position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(1, max_len, dim)
    pe[0, :, 0::2] = torch.sin(position * div_term)
    pe[0, :, 1::2] = torch.cos(position * div_term)
    return pe
