"""The reference set's end-to-end case (shared/reference README section 6), loaded once for the DeepCache
conformance test and ``bench/bench_conformance.py``: the official tiny UNet, VAE and DDIM, its inputs and faces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler
from safetensors.torch import load_file

from ..models import UNet3DConditionModel
from ..pipeline import LipSyncPipeline


class RecordingDDIM(DDIMScheduler):
    """The official DDIM that also keeps the latents after every step (in ``recorded``; reset it per run)."""

    def step(self, *args, **kwargs):
        out = super().step(*args, **kwargs)
        self.recorded.append(out.prev_sample.clone())
        return out


def load_official_e2e(reference: Path) -> tuple[LipSyncPipeline, torch.Tensor, dict]:
    """-> (pipeline with a RecordingDDIM, faces (n, 3, h, w), the case's inputs: whisper_chunks, seed, ...)."""
    def config(name: str) -> dict:
        return json.loads((reference / name).read_text())

    def weights(name: str) -> dict:
        return {k: v.float() for k, v in load_file(reference / name).items()}

    unet = UNet3DConditionModel.from_config(config("unet_tiny_config.json"))
    unet.load_state_dict(weights("unet_tiny_state_dict.safetensors"))
    vae = AutoencoderKL.from_config(config("e2e_deepcache_vae_config.json"))
    vae.load_state_dict(weights("e2e_deepcache_vae.safetensors"))
    scheduler = RecordingDDIM.from_config(config("e2e_deepcache_scheduler_config.json"))
    inputs = torch.load(reference / "e2e_deepcache_inputs.pt", weights_only=True)
    faces = torch.from_numpy(np.load(reference / "e2e_deepcache_faces.npz")["faces"]).permute(0, 3, 1, 2)
    return LipSyncPipeline(unet, vae, scheduler), faces.contiguous(), inputs


def step_latents(recorded: list[torch.Tensor], steps: int = 5) -> torch.Tensor:
    """The recorded latents of the case's two chunks (chunk 0's steps, then chunk 1's) joined along frames:
    (steps, 4, frames, h, w), as the reference stores them."""
    return torch.stack([torch.cat([recorded[j], recorded[steps + j]], dim=2)[0] for j in range(steps)])


def pool(x: torch.Tensor, k: int) -> torch.Tensor:
    """(..., h, w) -> (..., h/k, w/k) average pooling over the last two dims (the reference's pooled tensors)."""
    return F.avg_pool2d(x.reshape(-1, 1, *x.shape[-2:]), k).reshape(*x.shape[:-2], x.shape[-2] // k, -1)
