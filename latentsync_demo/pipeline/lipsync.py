"""LipSyncPipeline: aligned face crops + whisper chunks in, lip-synced face crops out.

Mirrors the official ``LipsyncPipeline`` numerics (mask, 13-channel input, one initial noise for all
frames, classifier-free guidance with all-zero audio first, DDIM, paste-back inside the mask, and the
same order of random draws), without the video I/O: faces come in already aligned, so the caller can
stream a long video through it chunk by chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from diffusers import AutoencoderKL
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from ..face.mask import latent_mask, load_mask
from ..models import UNet3DConditionModel
from .samplers import make_scheduler


@dataclass(frozen=True)
class StepProgress:
    """Reported after every denoising step of every chunk."""

    chunk: int  # 0-based chunk index
    num_chunks: int
    step: int  # 1-based step within the chunk
    num_steps: int

    @property
    def fraction(self) -> float:
        return (self.chunk * self.num_steps + self.step) / (self.num_chunks * self.num_steps)


ProgressCallback = Callable[[StepProgress], None]


class LipSyncPipeline:
    """Components are passed in explicitly (diffusers style); ``.to()`` moves them together.

    Args:
        unet: the audio-conditioned UNet (``in_channels`` 13).
        vae: ``AutoencoderKL`` (sd-vae-ft-mse for the official weights).
        scheduler: any diffusers scheduler; default is the official DDIM configuration.
    """

    def __init__(self, unet: UNet3DConditionModel, vae: AutoencoderKL, scheduler: SchedulerMixin | None = None):
        self.unet = unet.eval()
        self.vae = vae.eval()
        self.scheduler = scheduler if scheduler is not None else make_scheduler("ddim")
        self._masks: dict[int, torch.Tensor] = {}

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> LipSyncPipeline:
        self.unet.to(device=device, dtype=dtype)
        self.vae.to(device=device, dtype=dtype)
        return self

    def mask(self, resolution: int) -> torch.Tensor:
        """(3, R, R) float64 keep-mask (1 = keep original pixels), cached per resolution."""
        if resolution not in self._masks:
            self._masks[resolution] = load_mask(resolution)
        return self._masks[resolution]

    @torch.inference_mode()
    def __call__(
        self,
        faces: torch.Tensor,
        audio_chunks: torch.Tensor | None,
        num_inference_steps: int = 20,
        guidance_scale: float = 1.5,
        seed: int | None = 1247,
        generator: torch.Generator | None = None,
        num_frames: int = 16,
        callback: ProgressCallback | None = None,
    ) -> torch.Tensor:
        """faces (N, 3, R, R) uint8 RGB aligned crops; audio_chunks (N, 50, d) -> (N, 3, R, R) float32 in ~[-1, 1]."""
        parts = [
            out
            for _, out in self.generate_chunks(
                faces, audio_chunks, num_inference_steps, guidance_scale, seed, generator, num_frames, callback
            )
        ]
        return torch.cat(parts)

    @torch.inference_mode()
    def generate_chunks(
        self,
        faces: torch.Tensor,
        audio_chunks: torch.Tensor | None,
        num_inference_steps: int = 20,
        guidance_scale: float = 1.5,
        seed: int | None = 1247,
        generator: torch.Generator | None = None,
        num_frames: int = 16,
        callback: ProgressCallback | None = None,
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(first_frame_index, faces_out (n, 3, R, R) float32 CPU)`` for each chunk of ``num_frames``.

        Random draws follow the official order: one (1, 4, 1, R/8, R/8) noise for the whole clip, then per
        chunk one VAE posterior sample for the masked faces and one for the reference faces. Noise is drawn
        on the CPU so a seed gives the same result on every device.
        """
        n, _, res, res_w = faces.shape
        if res != res_w or res % 8:
            raise ValueError(f"faces must be square with a side divisible by 8, got {tuple(faces.shape)}")
        if audio_chunks is not None and len(audio_chunks) != n:
            raise ValueError(f"{n} faces but {len(audio_chunks)} audio chunks: they must match one to one")
        if generator is None:
            generator = torch.Generator("cpu").manual_seed(1247 if seed is None else seed)
        device, dtype = self.device, self.dtype
        cfg = guidance_scale > 1.0 and audio_chunks is not None

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        latent_res = res // 8
        noise = torch.randn((1, 4, 1, latent_res, latent_res), generator=generator, dtype=torch.float32)
        noise = noise.to(device, dtype) * self.scheduler.init_noise_sigma

        keep = self.mask(res)  # (3, R, R) float64
        keep_latent = latent_mask(keep).to(device, dtype)  # (1, R/8, R/8)
        keep_pixels = keep[0:1].to(device, dtype)
        num_chunks = -(-n // num_frames)

        for chunk in range(num_chunks):
            start = chunk * num_frames
            f = min(num_frames, n - start)
            # Official preprocessing: pixel = (img/255 - 0.5)/0.5; masked = pixel * mask (in float64).
            pixels = (faces[start : start + f].to(torch.float64) / 255.0 - 0.5) / 0.5
            masked = (pixels * keep).to(device, dtype)
            pixels = pixels.to(device, dtype)

            masked_latents = self._encode(masked, generator)  # (1, 4, f, r, r)
            ref_latents = self._encode(pixels, generator)
            mask_in = keep_latent.expand(f, 1, latent_res, latent_res).transpose(0, 1)[None]  # (1, 1, f, r, r)
            condition = torch.cat([mask_in, masked_latents, ref_latents], dim=1)

            audio = None
            if audio_chunks is not None:
                audio = audio_chunks[start : start + f].to(device, dtype)
                if cfg:
                    audio = torch.cat([torch.zeros_like(audio), audio])  # unconditional ("null" audio) first
                    condition = torch.cat([condition, condition])

            latents = noise.expand(-1, -1, f, -1, -1).clone()
            for step, t in enumerate(timesteps):
                model_in = torch.cat([latents, latents]) if cfg else latents
                model_in = self.scheduler.scale_model_input(model_in, t)
                pred = self.unet(torch.cat([model_in, condition], dim=1), t, encoder_hidden_states=audio).sample
                if cfg:
                    uncond, cond = pred.chunk(2)
                    pred = uncond + guidance_scale * (cond - uncond)
                latents = self.scheduler.step(pred, t, latents).prev_sample
                if callback is not None:
                    callback(StepProgress(chunk, num_chunks, step + 1, len(timesteps)))

            decoded = self._decode(latents)
            out = decoded * (1 - keep_pixels) + pixels * keep_pixels
            yield start, out.float().cpu()

    def _encode(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(f, 3, R, R) -> scaled latents (1, 4, f, R/8, R/8), sampled from the VAE posterior."""
        posterior = self.vae.encode(pixels).latent_dist
        sample = torch.randn(posterior.mean.shape, generator=generator, dtype=torch.float32)
        latents = posterior.mean + posterior.std * sample.to(pixels.device, posterior.mean.dtype)
        latents = (latents - self._shift) * self.vae.config.scaling_factor
        return latents.transpose(0, 1)[None]

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(1, 4, f, r, r) -> (f, 3, R, R)."""
        flat = latents[0].transpose(0, 1) / self.vae.config.scaling_factor + self._shift
        return self.vae.decode(flat).sample

    @property
    def _shift(self) -> float:
        # sd-vae-ft-mse has no shift_factor; the official code sets it to 0.
        return getattr(self.vae.config, "shift_factor", None) or 0.0
