"""How LatentSync builds the UNet's inputs, shared by inference (``LipSyncPipeline``) and training
(``latentsync_demo.training``), so both feed the UNet exactly the same 13 channels and audio.

The 13 input channels are: 4 noisy latents, 1 mask (1 = keep), 4 masked-face latents, 4 reference latents.
Audio is whisper chunks (b, f, 50, d); the "null" audio of classifier-free guidance is all zeros.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL


def normalize_faces(faces: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 faces (..., 3, R, R), keep-mask (3, R, R) float64 -> (pixels, masked pixels), float64 in [-1, 1].

    Official preprocessing, in float64: pixel = (img / 255 - 0.5) / 0.5; masked = pixel * mask.
    """
    pixels = (faces.to(torch.float64) / 255.0 - 0.5) / 0.5
    return pixels, pixels * keep


def vae_shift(vae: AutoencoderKL) -> float:
    # sd-vae-ft-mse has no shift_factor; the official code sets it to 0.
    return getattr(vae.config, "shift_factor", None) or 0.0


def encode_video(vae: AutoencoderKL, pixels: torch.Tensor, generator: torch.Generator | None = None,
                 noise: torch.Tensor | None = None) -> torch.Tensor:
    """(b, f, 3, R, R) pixels -> scaled latents (b, 4, f, R/8, R/8), sampled from the VAE posterior.

    The posterior noise (b*f, 4, r, r) is ``noise`` when given (drawn beforehand, e.g. for batched chunks),
    else drawn in float32 on the CPU from ``generator`` (a seed then gives the same result on every device),
    else from the device's global RNG (training).
    """
    b, f = pixels.shape[:2]
    posterior = vae.encode(pixels.flatten(0, 1)).latent_dist
    mean = posterior.mean
    if noise is not None:
        sample = noise.to(mean.device, mean.dtype)
    elif generator is not None:
        sample = torch.randn(mean.shape, generator=generator, dtype=torch.float32).to(mean.device, mean.dtype)
    else:
        sample = torch.randn_like(mean)
    latents = (mean + posterior.std * sample - vae_shift(vae)) * vae.config.scaling_factor
    return latents.unflatten(0, (b, f)).transpose(1, 2)


def decode_video(vae: AutoencoderKL, latents: torch.Tensor) -> torch.Tensor:
    """(b, 4, f, r, r) scaled latents -> (b, f, 3, R, R) pixels in ~[-1, 1]."""
    b = latents.shape[0]
    flat = latents.transpose(1, 2).flatten(0, 1) / vae.config.scaling_factor + vae_shift(vae)
    return vae.decode(flat).sample.unflatten(0, (b, -1))


def unet_condition(keep_latent: torch.Tensor, masked_latents: torch.Tensor, ref_latents: torch.Tensor) -> torch.Tensor:
    """Mask (1, r, r) + masked and reference latents (b, 4, f, r, r) -> the 9 conditioning channels (b, 9, f, r, r)."""
    b, _, f, r, r_w = masked_latents.shape
    mask = keep_latent.to(masked_latents.dtype).expand(f, 1, r, r_w).transpose(0, 1)[None].expand(b, -1, -1, -1, -1)
    return torch.cat([mask, masked_latents, ref_latents], dim=1)


def with_null_audio(audio: torch.Tensor) -> torch.Tensor:
    """Audio (b, ...) -> (2b, ...): the all-zero ("null") audio first, then the real one (official order)."""
    return torch.cat([torch.zeros_like(audio), audio])


def guided(uncond: torch.Tensor, cond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance as at inference: uncond + scale * (cond - uncond) (scale 1 = no guidance)."""
    return uncond + scale * (cond - uncond)
