"""Optional ``torch.compile`` of the UNet, with a warm-up so the first job does not pay the compile time.

Off by default; never on Hugging Face ZeroGPU (it does not support compiled models). On a CPU it works but
gains little; the point is CUDA, where it fuses the many small norm/activation kernels of the UNet.
"""

from __future__ import annotations

import logging
import os

import torch

from .deepcache import DeepCache
from .unet import UNet3DConditionModel

log = logging.getLogger(__name__)


def on_zero_gpu() -> bool:
    return bool(os.environ.get("SPACES_ZERO_GPU"))


@torch.inference_mode()
def compile_unet(unet: UNet3DConditionModel, resolution: int, frames: int = 16, batch: int = 2) -> bool:
    """Compile ``unet`` in place and run one full and one DeepCache-cached step at (batch, 13, frames, R/8, R/8).
    Returns False (and leaves the model eager) on ZeroGPU."""
    if on_zero_gpu():
        log.warning("torch.compile is not supported on ZeroGPU: the UNet stays eager")
        return False
    unet.compile()
    r = resolution // 8
    sample = torch.zeros(batch, unet.config.in_channels, frames, r, r, device=unet.device, dtype=unet.dtype)
    audio = torch.zeros(batch * frames, 50, unet.config.cross_attention_dim, device=unet.device, dtype=unet.dtype)
    cache = DeepCache()
    for step in range(2):  # step 0: full (fills the cache), step 1: the cached shallow path
        cache.set_step(step)
        unet(sample, torch.tensor(999 - step, device=unet.device), audio, deepcache=cache)
    return True
