"""UNet stages. Each layer runs resnet -> spatial/audio transformer -> motion module, in that order.

One class serves both ``CrossAttn*Block3D`` and plain ``*Block3D`` config names: the plain variants are
the same stage without transformers. Module names (``resnets``, ``attentions``, ``motion_modules``,
``downsamplers.0``/``upsamplers.0``) are the official checkpoint's.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .layers import Downsample2D, Upsample2D
from .motion import MotionModule
from .resnet import ResnetBlock3D
from .transformer import SpatialTransformer

DOWN_BLOCK_TYPES = {"CrossAttnDownBlock3D": True, "DownBlock3D": False}
UP_BLOCK_TYPES = {"CrossAttnUpBlock3D": True, "UpBlock3D": False}


class _Stage(nn.Module):
    """Shared plumbing: optional transformers and motion modules beside the resnets."""

    gradient_checkpointing = False

    def _init_layers(self, resnets, channels, num_layers, heads, groups, cross_attention, audio_dim, add_audio,
                     motion_kwargs):
        self.resnets = nn.ModuleList(resnets)
        self.attentions = (
            nn.ModuleList(
                [SpatialTransformer(channels, heads, groups, audio_dim, add_audio) for _ in range(num_layers)]
            )
            if cross_attention
            else None
        )
        self.motion_modules = (
            nn.ModuleList([MotionModule(channels, **motion_kwargs) for _ in range(num_layers)])
            if motion_kwargs is not None
            else None
        )

    def _layer(self, i: int, x, temb, audio, num_frames: int):
        def run(x, temb, audio):
            x = self.resnets[i](x, temb, num_frames)
            if self.attentions is not None:
                x = self.attentions[i](x, audio)
            if self.motion_modules is not None:
                x = self.motion_modules[i](x, num_frames)
            return x

        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(run, x, temb, audio, use_reentrant=False)
        return run(x, temb, audio)


class DownBlock3D(_Stage):
    def __init__(self, in_channels, out_channels, temb_channels, num_layers, groups, eps, heads, cross_attention,
                 audio_dim, add_audio, motion_kwargs, add_downsample, downsample_padding=1):
        super().__init__()
        resnets = [
            ResnetBlock3D(in_channels if i == 0 else out_channels, out_channels, temb_channels, groups, eps)
            for i in range(num_layers)
        ]
        self._init_layers(resnets, out_channels, num_layers, heads, groups, cross_attention, audio_dim, add_audio,
                          motion_kwargs)
        self.downsamplers = (
            nn.ModuleList([Downsample2D(out_channels, downsample_padding)]) if add_downsample else None
        )

    def forward(self, x, temb, audio, num_frames: int):
        """Returns the output and the skip tensors handed to the decoder."""
        skips = []
        for i in range(len(self.resnets)):
            x = self._layer(i, x, temb, audio, num_frames)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class UpBlock3D(_Stage):
    def __init__(self, in_channels, prev_output_channels, out_channels, temb_channels, num_layers, groups, eps, heads,
                 cross_attention, audio_dim, add_audio, motion_kwargs, add_upsample):
        super().__init__()
        resnets = []
        for i in range(num_layers):
            skip_channels = in_channels if i == num_layers - 1 else out_channels
            resnet_in = prev_output_channels if i == 0 else out_channels
            resnets.append(ResnetBlock3D(resnet_in + skip_channels, out_channels, temb_channels, groups, eps))
        self._init_layers(resnets, out_channels, num_layers, heads, groups, cross_attention, audio_dim, add_audio,
                          motion_kwargs)
        self.upsamplers = nn.ModuleList([Upsample2D(out_channels)]) if add_upsample else None

    def forward(self, x, skips: list, temb, audio, num_frames: int, upsample_size=None):
        """Consumes ``skips`` from the end (the most recent encoder tensor first)."""
        x = self.run_layers(x, skips, temb, audio, num_frames, range(len(self.resnets)))
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, upsample_size)
        return x


    def run_layers(self, x, skips: list, temb, audio, num_frames: int, layers: range):
        """Layers ``layers`` only, each taking ``skips.pop()`` (DeepCache splits the last up block here)."""
        for i in layers:
            x = torch.cat([x, skips.pop()], dim=1)
            x = self._layer(i, x, temb, audio, num_frames)
        return x


class MidBlock3D(_Stage):
    """``UNetMidBlock3DCrossAttn``: resnet -> transformer -> resnet (motion module only if configured)."""

    def __init__(self, channels, temb_channels, groups, eps, heads, audio_dim, add_audio, motion_kwargs,
                 output_scale_factor=1.0):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResnetBlock3D(channels, channels, temb_channels, groups, eps, output_scale_factor) for _ in range(2)]
        )
        self.attentions = nn.ModuleList([SpatialTransformer(channels, heads, groups, audio_dim, add_audio)])
        self.motion_modules = (
            nn.ModuleList([MotionModule(channels, **motion_kwargs)]) if motion_kwargs is not None else None
        )

    def forward(self, x, temb, audio, num_frames: int):
        x = self.resnets[0](x, temb, num_frames)
        x = self.attentions[0](x, audio)
        if self.motion_modules is not None:
            x = self.motion_modules[0](x, num_frames)
        return self.resnets[1](x, temb, num_frames)
