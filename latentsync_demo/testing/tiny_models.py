"""Tiny randomly initialised models with the real architectures, for tests, benchmarks and demos.

They use the same block types as the official LatentSync 1.5 UNet and sd-vae-ft-mse VAE, only with
few channels, so every code path runs in seconds on a CPU. Their outputs are meaningless pictures.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL
from torch import nn

from ..models import UNet3DConditionModel
from ..models.configs import STAGE2_UNET_CONFIG

# Whisper-tiny-like audio width (64 instead of 384) and 4 encoder layers, so chunks are (50, 64)
# exactly like the real (50, 384).
TINY_AUDIO_DIM = 64
TINY_WHISPER_DIMS = dict(
    n_mels=80, n_audio_ctx=1500, n_audio_state=TINY_AUDIO_DIM, n_audio_head=2, n_audio_layer=4,
    n_vocab=64, n_text_ctx=8, n_text_state=TINY_AUDIO_DIM, n_text_head=2, n_text_layer=1,
)

TINY_UNET_CONFIG = {
    "sample_size": 8,
    "in_channels": 13,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"],
    "up_block_types": ["UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"],
    "block_out_channels": [32, 64, 64, 64],
    "layers_per_block": 1,
    "norm_num_groups": 16,
    "cross_attention_dim": TINY_AUDIO_DIM,
    "attention_head_dim": 4,
    "add_audio_layer": True,
    "use_motion_module": True,
    "motion_module_resolutions": [1, 2, 4, 8],
    # The official motion modules, with 4 heads for the narrow channels.
    "motion_module_kwargs": {**STAGE2_UNET_CONFIG["motion_module_kwargs"], "num_attention_heads": 4},
}

# Two levels instead of four (0.5 M parameters): what distillation/training tests can afford to run for
# hundreds of steps on a CPU. The motion modules' GroupNorm always has 32 groups, hence 32 channels.
MICRO_UNET_CONFIG = {
    **TINY_UNET_CONFIG,
    "down_block_types": ["CrossAttnDownBlock3D", "DownBlock3D"],
    "up_block_types": ["UpBlock3D", "CrossAttnUpBlock3D"],
    "block_out_channels": [32, 32],
    "norm_num_groups": 8,
    "motion_module_resolutions": [1, 2],
}

TINY_VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [16, 16, 32, 32],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": 64,
    "scaling_factor": 0.18215,
}


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Overwrite every parameter with well-scaled random values (as the reference fixtures do).

    Plain init leaves conv_in, conv_out and the motion modules' proj_out at zero, which would make the
    UNet output constant and hide bugs. Norm weights ~1 + 0.1 N, other matrices N(0,1)/sqrt(fan_in),
    vectors 0.05 N.
    """
    generator = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        noise = torch.randn(param.shape, generator=generator, dtype=torch.float32)
        is_norm = "norm" in name.split(".")[-2] if "." in name else False
        if is_norm and name.endswith("weight"):
            value = 1 + 0.1 * noise
        elif param.ndim >= 2:
            value = noise / param[0].numel() ** 0.5
        else:
            value = 0.05 * noise
        param.copy_(value.to(param.dtype))
    return model


def tiny_unet(seed: int = 0, config: dict = TINY_UNET_CONFIG) -> UNet3DConditionModel:
    return randomize_(UNet3DConditionModel.from_config(config), seed).eval()


def tiny_vae(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(**TINY_VAE_CONFIG).eval()
