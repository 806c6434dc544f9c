"""StableSyncNet: LatentSync's training critic (``stable_syncnet.pt``, config ``syncnet_16_pixel_attn``).

Two convolutional towers embed 16 frames of the lower half of the 256 px face and the matching 80 x 52 mel
window; training pulls the two L2-normalised embeddings together (cosine similarity, BCE against 1).
Spec: shared/reference/README.md section 5. The state-dict layout is the official one, so the released
checkpoint loads strictly (``load_stable_syncnet``).

Parts taken from diffusers where they match the spec exactly: ``ResnetBlock2D`` (GroupNorm -> SiLU -> conv,
twice, 1x1 shortcut), ``Attention`` (8 heads, biased q/k/v, SDPA) and the GEGLU ``FeedForward``. Two are own
code because no diffusers block has their layout: the asymmetric zero-pad + strided ``downsample_conv`` that
sits *inside* each resnet (diffusers keeps its downsampler in a separate module), and the attention block
(GroupNorm -> 1x1 conv -> tokens -> attention / feed-forward -> 1x1 conv), whose keys differ from
``Transformer2DModel``'s.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

from .checkpoint import load_strict

# The released critic (configs/syncnet/syncnet_16_pixel_attn.yaml, "model:" section).
SYNCNET_16_PIXEL_ATTN = {
    "audio_encoder": {"in_channels": 1, "block_out_channels": [32, 64, 128, 256, 512, 1024, 2048],
                      "downsample_factors": [[2, 1], 2, 2, 1, 2, 2, [2, 3]], "attn_blocks": [0, 0, 0, 1, 1, 0, 0],
                      "dropout": 0.0},
    "visual_encoder": {"in_channels": 48, "block_out_channels": [64, 128, 256, 256, 512, 1024, 2048, 2048],
                       "downsample_factors": [[1, 2], 2, 2, 2, 2, 2, 2, 2], "attn_blocks": [0, 0, 0, 0, 1, 1, 0, 0],
                       "dropout": 0.0},
}
NUM_FRAMES = 16  # data.num_frames of the released config
RESOLUTION = 256  # faces are resized to this before the lower half is taken
MEL_WINDOW = math.ceil(NUM_FRAMES / 5 * 16)  # 52 mel frames (80 per second) for 16 video frames at 25 fps


def _pair(factor: int | Sequence[int]) -> tuple[int, int]:
    return (factor, factor) if isinstance(factor, int) else (int(factor[0]), int(factor[1]))


class DownsampleResnetBlock2D(ResnetBlock2D):
    """diffusers' ResnetBlock2D (no time embedding) followed by the official zero-pad + strided 3x3 conv.

    Keys: ``norm1, conv1, norm2, conv2, [conv_shortcut], [downsample_conv]`` (no downsample_conv for factor 1).
    The pad is (left, right, top, bottom) = (0, 1, 0, 1), except 1 on both sides of an axis of stride 1.
    """

    def __init__(self, in_channels: int, out_channels: int, factor: int | Sequence[int] = 1, dropout: float = 0.0):
        super().__init__(in_channels=in_channels, out_channels=out_channels, temb_channels=None, groups=32, eps=1e-6,
                         dropout=dropout)
        self.factor = _pair(factor)
        if self.factor != (1, 1):
            self.downsample_conv = nn.Conv2d(out_channels, out_channels, 3, stride=self.factor, padding=0)
            fh, fw = self.factor
            self.pad = (1 if fw == 1 else 0, 1, 1 if fh == 1 else 0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """(b, c_in, h, w) -> (b, c_out, h', w'), h' = (h + pad_h - 3) // s_h + 1."""
        x = super().forward(x, None)
        if self.factor == (1, 1):
            return x
        return self.downsample_conv(F.pad(x, self.pad))


class AttentionBlock2D(nn.Module):
    """Self-attention over the h*w positions (official ``AttentionBlock2D``); keeps the shape (b, c, h, w).

    GroupNorm(32) -> 1x1 conv_in -> tokens; x += attn(LN(x)); x += ff(LN(x)); -> 1x1 conv_out -> + input.
    """

    def __init__(self, channels: int, heads: int = 8, dropout: float = 0.0):
        super().__init__()
        # Registered in the official order, so state_dict() lists keys exactly as stable_syncnet.pt does.
        self.norm1 = nn.GroupNorm(32, channels, eps=1e-6)
        self.norm2 = nn.LayerNorm(channels)
        self.norm3 = nn.LayerNorm(channels)
        self.ff = FeedForward(channels, mult=4, dropout=dropout, activation_fn="geglu")
        self.conv_in = nn.Conv2d(channels, channels, 1)
        self.conv_out = nn.Conv2d(channels, channels, 1)
        self.attn = Attention(channels, heads=heads, dim_head=channels // heads, dropout=dropout, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.conv_in(self.norm1(x)).flatten(2).transpose(1, 2)  # (b, h*w, c)
        tokens = self.attn(self.norm2(tokens)) + tokens
        tokens = self.ff(self.norm3(tokens)) + tokens
        return self.conv_out(tokens.transpose(1, 2).reshape(b, c, h, w)) + x


class DownEncoder2D(nn.Module):
    """conv_in -> one resnet per level (plus an attention block after it where ``attn_blocks[i]``) -> GroupNorm
    -> ReLU. ``down_blocks`` is one flat list, so indices shift after each attention block (official layout).

    (b, in_channels, H, W) -> (b, block_out_channels[-1], 1, 1) for the configured input size.
    """

    def __init__(self, in_channels: int, block_out_channels: Sequence[int], downsample_factors: Sequence,
                 attn_blocks: Sequence[int], dropout: float = 0.0):
        super().__init__()
        if not len(block_out_channels) == len(downsample_factors) == len(attn_blocks):
            raise ValueError("block_out_channels, downsample_factors and attn_blocks need one entry per level")
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], 3, padding=1)
        blocks: list[nn.Module] = []
        channels = block_out_channels[0]
        for out, factor, attn in zip(block_out_channels, downsample_factors, attn_blocks):
            blocks.append(DownsampleResnetBlock2D(channels, out, factor, dropout))
            channels = out
            if attn:
                blocks.append(AttentionBlock2D(channels, dropout=dropout))
        self.down_blocks = nn.ModuleList(blocks)
        self.norm_out = nn.GroupNorm(32, channels, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        return F.relu(self.norm_out(x))


class StableSyncNet(ModelMixin, ConfigMixin):
    """forward(visual (b, 3*f, H/2, W), audio (b, 1, 80, 4*f*16/20)) -> (vision_embeds, audio_embeds), each
    (b, D) L2-normalised and >= 0 (final ReLU), so their cosine similarity lies in [0, 1].

    For the released config: visual (b, 48, 128, 256), channel = 3 * frame + rgb, values in [-1, 1];
    audio (b, 1, 80, 52) Wav2Lip-style mel (``audio.syncnet_mel``); D = 2048.
    """

    @register_to_config
    def __init__(self, audio_config: dict | None = None, visual_config: dict | None = None):
        # Not named audio_encoder/visual_encoder like the yaml: ModelMixin resolves config names before modules.
        super().__init__()
        self.audio_encoder = DownEncoder2D(**(audio_config or SYNCNET_16_PIXEL_ATTN["audio_encoder"]))
        self.visual_encoder = DownEncoder2D(**(visual_config or SYNCNET_16_PIXEL_ATTN["visual_encoder"]))

    @classmethod
    def from_model_config(cls, model_config: dict) -> "StableSyncNet":
        """From the official yaml's ``model:`` section ({"audio_encoder": ..., "visual_encoder": ...})."""
        return cls(audio_config=dict(model_config["audio_encoder"]), visual_config=dict(model_config["visual_encoder"]))

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        vision_embeds = F.normalize(self.visual_encoder(visual).flatten(1), p=2, dim=1)
        audio_embeds = F.normalize(self.audio_encoder(audio).flatten(1), p=2, dim=1)
        return vision_embeds, audio_embeds


def stack_frames(frames: torch.Tensor, lower_half: bool = True) -> torch.Tensor:
    """(b, f, 3, H, W) -> (b, 3*f, H/2 or H, W): "(b f) c h w -> b (f c) h w", then rows H//2: (lower half)."""
    b, f, c, h, w = frames.shape
    stacked = frames.reshape(b, f * c, h, w)
    return stacked[:, :, h // 2:] if lower_half else stacked


def sync_loss(vision_embeds: torch.Tensor, audio_embeds: torch.Tensor) -> torch.Tensor:
    """Per-sample BCE of the cosine similarity against "in sync" (1): (b, D), (b, D) -> (b,)."""
    similarity = F.cosine_similarity(vision_embeds, audio_embeds).clamp(0.0, 1.0)  # >= 0 already (ReLU)
    return F.binary_cross_entropy(similarity, torch.ones_like(similarity), reduction="none")


def load_stable_syncnet(path: str | Path, config: dict | None = None, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32) -> StableSyncNet:
    """Build ``config`` (default: the released syncnet_16_pixel_attn) and load ``path`` strictly: the official
    ``stable_syncnet.pt`` ({"state_dict": ...}), a flat state dict or a .safetensors file."""
    return load_strict(lambda: StableSyncNet.from_model_config(config or SYNCNET_16_PIXEL_ATTN), path,
                       "the StableSyncNet state dict (syncnet_16_pixel_attn unless a config is given)",
                       "Expected the official stable_syncnet.pt (https://huggingface.co/ByteDance/LatentSync-1.6).",
                       device, dtype)
