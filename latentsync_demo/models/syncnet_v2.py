"""SyncNet v2: the evaluation network behind "sync confidence" / LSE-C / LSE-D (``syncnet_v2.model``).

The joonson/syncnet_python network (class ``S`` in LatentSync's ``eval/syncnet``): an audio tower over 13 x 20
MFCC windows (0.2 s) and a lip tower over 5 frames of 224 x 224 BGR face crops (0.2 s at 25 fps), each ending in
a 1024-d embedding; the distance between them measures sync. Spec: shared/reference/README.md section 5.
Key names are the official ``netcnnaud / netfcaud / netcnnlip / netfclip`` Sequential indices, so the released
file (a plain state dict, with BatchNorm running statistics) loads strictly with ``load_syncnet_v2``.

The channel widths are config values only so that tests can train a narrow copy of the same structure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .checkpoint import load_strict

LIP_FRAMES = 5  # frames per lip window
MFCC_STEPS = 20  # MFCC columns per window (4 per video frame: 10 ms hop at 25 fps)


def _conv_bn_relu(conv: nn.Module, channels: int, bn: type) -> list[nn.Module]:
    return [conv, bn(channels), nn.ReLU(inplace=True)]


class SyncNetV2(ModelMixin, ConfigMixin):
    """``forward_aud``: MFCC (N, 1, 13, 20) -> (N, embed_dim); ``forward_lip``: BGR 0-255 (N, 3, 5, 224, 224)
    -> (N, embed_dim). No normalisation of either embedding (the official metric uses raw L2 distances)."""

    @register_to_config
    def __init__(self, audio_channels: Sequence[int] = (64, 192, 384, 256, 256, 512),
                 lip_channels: Sequence[int] = (96, 256, 256, 256, 256, 512), fc_channels: int = 512,
                 embed_dim: int = 1024):
        super().__init__()
        a, v = list(audio_channels), list(lip_channels)
        self.netcnnaud = nn.Sequential(  # (N, 1, 13, 20) -> (N, a5, 1, 1)
            *_conv_bn_relu(nn.Conv2d(1, a[0], 3, padding=1), a[0], nn.BatchNorm2d),
            nn.MaxPool2d(1, 1),
            *_conv_bn_relu(nn.Conv2d(a[0], a[1], 3, padding=1), a[1], nn.BatchNorm2d),
            nn.MaxPool2d(3, stride=(1, 2)),
            *_conv_bn_relu(nn.Conv2d(a[1], a[2], 3, padding=1), a[2], nn.BatchNorm2d),
            *_conv_bn_relu(nn.Conv2d(a[2], a[3], 3, padding=1), a[3], nn.BatchNorm2d),
            *_conv_bn_relu(nn.Conv2d(a[3], a[4], 3, padding=1), a[4], nn.BatchNorm2d),
            nn.MaxPool2d(3, stride=2),
            *_conv_bn_relu(nn.Conv2d(a[4], a[5], (5, 4)), a[5], nn.BatchNorm2d),
        )
        self.netfcaud = nn.Sequential(nn.Linear(a[5], fc_channels), nn.BatchNorm1d(fc_channels), nn.ReLU(),
                                      nn.Linear(fc_channels, embed_dim))
        self.netfclip = nn.Sequential(nn.Linear(v[5], fc_channels), nn.BatchNorm1d(fc_channels), nn.ReLU(),
                                      nn.Linear(fc_channels, embed_dim))
        self.netcnnlip = nn.Sequential(  # (N, 3, 5, 224, 224) -> (N, v5, 1, 1, 1)
            *_conv_bn_relu(nn.Conv3d(3, v[0], (5, 7, 7), stride=(1, 2, 2)), v[0], nn.BatchNorm3d),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),
            *_conv_bn_relu(nn.Conv3d(v[0], v[1], (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), v[1], nn.BatchNorm3d),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            *_conv_bn_relu(nn.Conv3d(v[1], v[2], (1, 3, 3), padding=(0, 1, 1)), v[2], nn.BatchNorm3d),
            *_conv_bn_relu(nn.Conv3d(v[2], v[3], (1, 3, 3), padding=(0, 1, 1)), v[3], nn.BatchNorm3d),
            *_conv_bn_relu(nn.Conv3d(v[3], v[4], (1, 3, 3), padding=(0, 1, 1)), v[4], nn.BatchNorm3d),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),
            *_conv_bn_relu(nn.Conv3d(v[4], v[5], (1, 6, 6)), v[5], nn.BatchNorm3d),
        )

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def forward_lip(self, frames: torch.Tensor) -> torch.Tensor:
        return self.netfclip(self.netcnnlip(frames).flatten(1))

    def forward(self, frames: torch.Tensor, mfcc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(lip embeddings, audio embeddings) of matching windows."""
        return self.forward_lip(frames), self.forward_aud(mfcc)


def load_syncnet_v2(path: str | Path, device: str | torch.device = "cpu") -> SyncNetV2:
    """The released ``syncnet_v2.model`` (a plain state dict), loaded strictly, in eval mode (running stats).

    The official ``loadParameters`` copies tensors by name and never checks for missing ones; here every
    missing, unexpected or mis-shaped key is an error naming them all.
    """
    return load_strict(SyncNetV2, path, "SyncNet v2 (eval/syncnet S)",
                       "Expected auxiliary/syncnet_v2.model from https://huggingface.co/ByteDance/LatentSync-1.5.",
                       device)
