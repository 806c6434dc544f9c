"""LipSyncPipeline: aligned face crops + whisper chunks in, lip-synced face crops out.

Mirrors the official ``LipsyncPipeline`` numerics (mask, 13-channel input, one initial noise for all
frames, classifier-free guidance with all-zero audio first, DDIM, paste-back inside the mask, and the
same order of random draws), without the video I/O: faces come in already aligned, so the caller can
stream a long video through it chunk by chunk.

Sampler-agnostic: with ``make_scheduler("lcm")`` and a distilled LCM student as ``unet`` it runs the
few-step consistency sampler instead: no classifier-free guidance (one UNet call per step, the guidance
scale is ignored) and fresh noise between steps, drawn from the same CPU generator.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from diffusers import AutoencoderKL
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from ..face.mask import latent_mask, load_mask
from ..models import UNet3DConditionModel
from ..models.deepcache import DeepCache
from .inputs import decode_video, encode_video, guided, normalize_faces, unet_condition, with_null_audio
from .samplers import make_scheduler, sampler_spec


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

DEEPCACHE_INTERVAL = 3  # the official setting (with branch 0, the only one implemented)


class LipSyncPipeline:
    """Components are passed in explicitly (diffusers style); ``.to()`` moves them together.

    Args:
        unet: the audio-conditioned UNet (``in_channels`` 13).
        vae: ``AutoencoderKL`` (sd-vae-ft-mse for the official weights).
        scheduler: any diffusers scheduler; default is the official DDIM configuration. ``make_scheduler("lcm")``
            goes with an LCM student UNet (``store.load_lcm_unet``).

    ``unet_calls`` counts UNet evaluations since construction (set it to 0 to restart): per chunk it grows by
    ``steps`` (LCM, or DDIM without guidance) or ``steps`` batch-of-2 calls (DDIM with classifier-free guidance).
    """

    def __init__(self, unet: UNet3DConditionModel, vae: AutoencoderKL, scheduler: SchedulerMixin | None = None):
        self.unet = unet.eval()
        self.vae = vae.eval()
        self.scheduler = scheduler if scheduler is not None else make_scheduler("ddim")
        self.unet_calls = 0
        self._masks: dict[int, torch.Tensor] = {}

    @property
    def sampler(self) -> str:
        """"ddim", "lcm" (or the scheduler's class name for other diffusers schedulers)."""
        return sampler_spec(self.scheduler).name

    def uses_guidance(self, guidance_scale: float, audio: bool = True) -> bool:
        """Whether a run doubles the batch for classifier-free guidance (never for LCM: it is distilled in)."""
        return sampler_spec(self.scheduler).uses_guidance and guidance_scale > 1.0 and audio

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
        output_type: str = "pixels",
        deepcache: bool = False,
    ) -> torch.Tensor:
        """faces (N, 3, R, R) uint8 RGB aligned crops; audio_chunks (N, 50, d) -> (N, 3, R, R) float32 in ~[-1, 1].

        ``output_type="latent"``: the final latents (N, 4, R/8, R/8) float32 instead (no decoding, no paste-back).
        """
        parts = [
            out
            for _, out in self.generate_chunks(
                faces, audio_chunks, num_inference_steps, guidance_scale, seed, generator, num_frames, callback,
                output_type, deepcache,
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
        output_type: str = "pixels",
        deepcache: bool = False,
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(first_frame_index, faces_out (n, 3, R, R) float32 CPU)`` for each chunk of ``num_frames``
        (``output_type="latent"``: latents (n, 4, R/8, R/8)).

        Random draws follow the official order: one (1, 4, 1, R/8, R/8) noise for the whole clip, then per
        chunk one VAE posterior sample for the masked faces and one for the reference faces (then, for LCM,
        one (1, 4, n, R/8, R/8) float32 noise per step but the last). Noise is drawn on the CPU so a seed
        gives the same result on every device.

        ``deepcache``: reuse deep UNet features on 2 of every 3 steps, as the official app and ``inference.sh``
        do (interval 3, branch 0; ignored by samplers whose spec says it does not apply, e.g. LCM).
        """
        if output_type not in ("pixels", "latent"):
            raise ValueError(f"output_type must be 'pixels' or 'latent', got {output_type!r}")
        n, _, res, res_w = faces.shape
        if res != res_w or res % 8:
            raise ValueError(f"faces must be square with a side divisible by 8, got {tuple(faces.shape)}")
        if audio_chunks is not None and len(audio_chunks) != n:
            raise ValueError(f"{n} faces but {len(audio_chunks)} audio chunks: they must match one to one")
        if generator is None:
            generator = torch.Generator("cpu").manual_seed(1247 if seed is None else seed)
        device, dtype = self.device, self.dtype
        spec = sampler_spec(self.scheduler)
        cfg = self.uses_guidance(guidance_scale, audio_chunks is not None)
        # LCM injects noise inside step(): hand it our CPU generator (DDIM with eta 0 draws nothing from it).
        step_kwargs = {"generator": generator} if "generator" in inspect.signature(self.scheduler.step).parameters else {}

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
            pixels, masked = normalize_faces(faces[start : start + f], keep)
            masked = masked.to(device, dtype)
            pixels = pixels.to(device, dtype)

            masked_latents = encode_video(self.vae, masked[None], generator)  # (1, 4, f, r, r)
            ref_latents = encode_video(self.vae, pixels[None], generator)
            condition = unet_condition(keep_latent, masked_latents, ref_latents)  # (1, 9, f, r, r)

            audio = None
            if audio_chunks is not None:
                audio = audio_chunks[start : start + f].to(device, dtype)
                if cfg:
                    audio = with_null_audio(audio)  # unconditional ("null") audio first
                    condition = torch.cat([condition, condition])

            if chunk:  # stateful schedulers (LCM counts its steps) start every chunk afresh
                self.scheduler.set_timesteps(num_inference_steps, device=device)
            latents = noise.expand(-1, -1, f, -1, -1).clone()
            cache = DeepCache(DEEPCACHE_INTERVAL) if deepcache and spec.supports_deepcache else None
            for step, t in enumerate(timesteps):
                model_in = torch.cat([latents, latents]) if cfg else latents
                model_in = self.scheduler.scale_model_input(model_in, t)
                if cache is not None:
                    cache.set_step(step)
                pred = self.unet(
                    torch.cat([model_in, condition], dim=1), t, encoder_hidden_states=audio, deepcache=cache
                ).sample
                self.unet_calls += 1
                if cfg:
                    pred = guided(*pred.chunk(2), guidance_scale)
                if spec.injects_noise:
                    # Step in float32 so the injected noise is one float32 CPU draw in every dtype and on every device.
                    latents = self.scheduler.step(pred.float(), t, latents.float(), **step_kwargs).prev_sample.to(dtype)
                else:
                    latents = self.scheduler.step(pred, t, latents, **step_kwargs).prev_sample
                if callback is not None:
                    callback(StepProgress(chunk, num_chunks, step + 1, len(timesteps)))

            if output_type == "latent":
                yield start, latents[0].transpose(0, 1).float().cpu()
                continue
            decoded = decode_video(self.vae, latents)[0]
            out = decoded * (1 - keep_pixels) + pixels * keep_pixels
            yield start, out.float().cpu()
