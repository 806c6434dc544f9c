"""Tiny random stage-2 critics for tests: a SyncNet double, an LPIPS with a two-layer backbone, a VideoMAE TREPA.

They have the real interfaces (``training.unet_losses``) and meaningless weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..training.unet_losses import LPIPS, SyncNetLoss, TREPALoss


class TinySyncNet(nn.Module):
    """StableSyncNet's interface: forward(visual (b, 3f, H/2, W), audio (b, 1, 80, M)) -> two (b, 16) unit
    vectors >= 0 (ReLU before the normalisation, as the real one)."""

    def __init__(self, frames: int = 4, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.visual = nn.Sequential(nn.Conv2d(3 * frames, 16, 3, stride=2, padding=1), nn.SiLU(),
                                    nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.AdaptiveAvgPool2d(1))
        self.audio = nn.Sequential(nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.SiLU(),
                                   nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.AdaptiveAvgPool2d(1))

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = F.normalize(F.relu(self.visual(visual).flatten(1)), dim=1)
        a = F.normalize(F.relu(self.audio(audio).flatten(1)), dim=1)
        return v, a


class _TinyBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())

    def forward(self, x):
        a = self.a(x)
        return [a, self.b(a)]


def tiny_sync_loss(frames: int = 4, seed: int = 0) -> SyncNetLoss:
    return SyncNetLoss(TinySyncNet(frames, seed), size=None)


def tiny_lpips(seed: int = 0) -> LPIPS:
    torch.manual_seed(seed)
    return LPIPS(_TinyBackbone(), (8, 16))


def tiny_trepa(seed: int = 0, frames: int = 4) -> TREPALoss:
    from transformers import VideoMAEConfig, VideoMAEModel

    torch.manual_seed(seed)
    config = VideoMAEConfig(image_size=16, patch_size=8, num_channels=3, num_frames=frames, tubelet_size=2,
                            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    return TREPALoss(VideoMAEModel(config))
