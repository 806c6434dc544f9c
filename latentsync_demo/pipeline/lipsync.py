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
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import torch
from diffusers import AutoencoderKL
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from ..face.mask import latent_mask, load_mask
from ..loading import load_lcm_unet, load_models
from ..models import UNet3DConditionModel
from ..models.deepcache import DeepCache
from .inputs import decode_video, encode_video, guided, normalize_faces, unet_condition, with_null_audio
from .samplers import SAMPLERS, make_scheduler, sampler_spec

if TYPE_CHECKING:
    from ..store import CheckpointSet


@dataclass(frozen=True)
class StepProgress:
    """Reported after every denoising step of every chunk."""

    chunk: int  # 0-based chunk index (the first of a batch)
    num_chunks: int
    step: int  # 1-based step within the chunk
    num_steps: int
    batch: int = 1  # chunks denoised together (chunk .. chunk + batch - 1)

    @property
    def fraction(self) -> float:
        return (self.chunk * self.num_steps + self.batch * self.step) / (self.num_chunks * self.num_steps)


ProgressCallback = Callable[[StepProgress], None]

DEEPCACHE_INTERVAL = 3  # the official setting (with branch 0, the only one implemented)


class LipSyncPipeline:
    """Components are passed in explicitly (diffusers style); ``.to()`` moves them together.

    Args:
        unet: the audio-conditioned UNet (``in_channels`` 13).
        vae: ``AutoencoderKL`` (sd-vae-ft-mse for the official weights).
        scheduler: any diffusers scheduler; default is the official DDIM configuration. ``make_scheduler("lcm")``
            goes with an LCM student UNet (``loading.load_lcm_unet``).
        audio_encoder: turns speech into the per-frame features the UNet attends to (whisper, or whisper fused
            with Wav2Vec2); needed by the video job, not by ``__call__`` on precomputed features.
        resolution: the face crop size the UNet was trained on (256 for 1.5, 512 for 1.6).

    ``unet_calls`` counts UNet evaluations since construction (set it to 0 to restart): per chunk it grows by
    ``steps`` (LCM, or DDIM without guidance) or ``steps`` batch-of-2 calls (DDIM with classifier-free guidance).
    """

    def __init__(self, unet: UNet3DConditionModel, vae: AutoencoderKL, scheduler: SchedulerMixin | None = None,
                 audio_encoder=None, resolution: int = 256):
        self.unet = unet.eval()
        self.vae = vae.eval()
        self.scheduler = scheduler if scheduler is not None else make_scheduler("ddim")
        self.audio_encoder, self.resolution = audio_encoder, resolution
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

    @classmethod
    def from_checkpoints(cls, checkpoints: CheckpointSet, device: str | torch.device = "cpu",
                         dtype: torch.dtype = torch.float32, sampler: str = "ddim") -> LipSyncPipeline:
        """The pipeline of a checkpoint set (``store.resolve(preset, root)``): UNet (strict), VAE, the audio encoder
        and the resolution it was trained at, with ``sampler``'s scheduler (LCM: the set's distilled student)."""
        models = load_models(checkpoints, device, dtype)
        unet = models.unet
        if SAMPLERS[sampler].needs_student:
            unet = load_lcm_unet(checkpoints, device, dtype, base_unet=models.unet)
        return cls(unet, models.vae, make_scheduler(sampler), models.audio_encoder, models.resolution)

    @torch.inference_mode()
    def __call__(self, faces: torch.Tensor, audio_chunks: torch.Tensor | None, num_inference_steps: int = 20,
                 **options) -> torch.Tensor:
        """faces (N, 3, R, R) uint8 RGB aligned crops; audio_chunks (N, 50, d) -> (N, 3, R, R) float32 in ~[-1, 1]
        (``output_type="latent"``: the final latents (N, 4, R/8, R/8)). ``options``: those of ``generate_chunks``
        (guidance_scale, seed, generator, num_frames, callback, output_type, deepcache, chunk_batch)."""
        return torch.cat([out for _, out in self.generate_chunks(faces, audio_chunks, num_inference_steps, **options)])

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
        chunk_batch: int = 1,
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(first_frame_index, faces_out (n, 3, R, R) float32 CPU)`` for each chunk of ``num_frames``
        (``output_type="latent"``: latents (n, 4, R/8, R/8)).

        Random draws follow the official order: one (1, 4, 1, R/8, R/8) noise for the whole clip, then per
        chunk one VAE posterior sample for the masked faces and one for the reference faces (then, for LCM,
        one (1, 4, n, R/8, R/8) float32 noise per step but the last). Noise is drawn on the CPU so a seed
        gives the same result on every device.

        ``deepcache``: reuse deep UNet features on 2 of every 3 steps, as the official app and ``inference.sh``
        do (interval 3, branch 0; ignored by samplers whose spec says it does not apply, e.g. LCM).
        ``chunk_batch``: full chunks denoised together (see ``generate_stream``); results equal batch 1.
        """
        n, _, res, res_w = faces.shape
        if res != res_w or res % 8:
            raise ValueError(f"faces must be square with a side divisible by 8, got {tuple(faces.shape)}")
        if audio_chunks is not None and len(audio_chunks) != n:
            raise ValueError(f"{n} faces but {len(audio_chunks)} audio chunks: they must match one to one")
        chunks = (
            (faces[s : s + num_frames], None if audio_chunks is None else audio_chunks[s : s + num_frames])
            for s in range(0, n, num_frames)
        )
        yield from self.generate_stream(
            chunks, res, -(-n // num_frames), num_inference_steps, guidance_scale, seed, generator, callback,
            output_type, deepcache, chunk_batch,
        )

    @torch.inference_mode()
    def generate_stream(
        self,
        chunks: Iterable[tuple[torch.Tensor, torch.Tensor | None]],
        resolution: int,
        num_chunks: int,
        num_inference_steps: int = 20,
        guidance_scale: float = 1.5,
        seed: int | None = 1247,
        generator: torch.Generator | None = None,
        callback: ProgressCallback | None = None,
        output_type: str = "pixels",
        deepcache: bool = False,
        chunk_batch: int = 1,
        output_device: str | torch.device | None = "cpu",
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Like ``generate_chunks`` for chunks that arrive one by one: ``(faces (f, 3, R, R) uint8, audio
        (f, 50, d) or None)``, every chunk as long as the first except possibly the last. A chunk is read
        from ``chunks`` only when it is about to be used, so a producer can still be aligning later faces.

        Batching: up to ``chunk_batch`` consecutive equal-length chunks go through the VAE and the UNet as
        one batch (every norm and attention in both is per sample, so results equal one-by-one generation;
        the first batch holds one chunk, for an early preview). A batch that runs out of device memory is
        split in half and retried with the random draws already made. Samplers that draw noise inside their
        steps (LCM) always run one chunk at a time, to keep the draw order. ``output_device=None`` keeps
        the results on the pipeline's device.
        """
        if output_type not in ("pixels", "latent"):
            raise ValueError(f"output_type must be 'pixels' or 'latent', got {output_type!r}")
        if generator is None:
            generator = torch.Generator("cpu").manual_seed(1247 if seed is None else seed)
        spec = sampler_spec(self.scheduler)
        max_batch = 1 if spec.injects_noise else max(1, int(chunk_batch))
        job = _Job(self, resolution, num_chunks, num_inference_steps, guidance_scale, generator, callback,
                   output_type, deepcache and spec.supports_deepcache, output_device)

        source, pending, size = iter(chunks), deque(), 1
        while True:
            while len(pending) < size and (not pending or pending[-1].frames == pending[0].frames):
                item = next(source, None)
                if item is None:
                    break
                pending.append(job.prepare(*item))  # draws this chunk's posterior noise, in chunk order
            if not pending:
                return
            batch = [pending.popleft()]
            while pending and len(batch) < size and pending[0].frames == batch[0].frames:
                batch.append(pending.popleft())
            try:
                outs = job.run(batch)
            except torch.OutOfMemoryError:
                if len(batch) == 1:
                    raise
                pending.extendleft(reversed(batch))
                size = max_batch = len(batch) // 2
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            for chunk, out in zip(batch, outs):
                yield chunk.start, out
            size = max_batch


@dataclass
class _Chunk:
    index: int
    start: int
    faces: torch.Tensor  # (f, 3, R, R) uint8
    audio: torch.Tensor | None  # (f, 50, d)
    posterior_noise: tuple[torch.Tensor, torch.Tensor]  # masked-face and reference-face draws, (f, 4, r, r)

    @property
    def frames(self) -> int:
        return len(self.faces)


class _Job:
    """One generation run: the clip-wide noise and mask, and the denoising of batches of chunks."""

    def __init__(self, pipe: LipSyncPipeline, res: int, num_chunks: int, steps: int, guidance_scale: float,
                 generator: torch.Generator, callback, output_type: str, deepcache: bool, output_device):
        self.pipe, self.res, self.num_chunks, self.steps = pipe, res, num_chunks, steps
        self.guidance_scale, self.generator, self.callback = guidance_scale, generator, callback
        self.output_type, self.deepcache, self.output_device = output_type, deepcache, output_device
        scheduler, device = pipe.scheduler, pipe.device
        # LCM injects noise inside step(): hand it our CPU generator (DDIM with eta 0 draws nothing from it).
        self.step_kwargs = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
        scheduler.set_timesteps(steps, device=device)
        self.latent_res = res // 8
        noise = torch.randn((1, 4, 1, self.latent_res, self.latent_res), generator=generator, dtype=torch.float32)
        # Latents stay in at least float32 between steps (the scheduler's arithmetic; LCM's injected noise is a
        # float32 draw); only the UNet input takes a half-precision model dtype.
        low = pipe.dtype in (torch.float16, torch.bfloat16) or sampler_spec(scheduler).injects_noise
        self.latent_dtype = torch.float32 if low else pipe.dtype
        self.noise = noise.to(device, self.latent_dtype) * scheduler.init_noise_sigma
        self.keep = pipe.mask(res)  # (3, R, R) float64
        self.keep_latent = latent_mask(self.keep).to(device, pipe.dtype)  # (1, R/8, R/8)
        self.keep_pixels = self.keep[0:1].to(device, pipe.dtype)
        self.next_index, self.next_start = 0, 0

    def prepare(self, faces: torch.Tensor, audio: torch.Tensor | None) -> _Chunk:
        f, shape = len(faces), (len(faces), 4, self.latent_res, self.latent_res)
        if tuple(faces.shape[1:]) != (3, self.res, self.res):
            raise ValueError(f"chunk faces must be (f, 3, {self.res}, {self.res}), got {tuple(faces.shape)}")
        if audio is not None and len(audio) != f:
            raise ValueError(f"{f} faces but {len(audio)} audio chunks: they must match one to one")
        draws = tuple(torch.randn(shape, generator=self.generator, dtype=torch.float32) for _ in range(2))
        chunk = _Chunk(self.next_index, self.next_start, faces, audio, draws)
        self.next_index, self.next_start = self.next_index + 1, self.next_start + f
        return chunk

    def run(self, batch: list[_Chunk]) -> list[torch.Tensor]:
        """Denoise and decode ``batch`` (equal-length chunks) together -> one output per chunk."""
        pipe, scheduler, device, dtype = self.pipe, self.pipe.scheduler, self.pipe.device, self.pipe.dtype
        b, f = len(batch), batch[0].frames
        pixels, masked = normalize_faces(torch.stack([c.faces for c in batch]).to(device), self.keep.to(device))
        pixels, masked = pixels.to(dtype), masked.to(dtype)  # (b, f, 3, R, R)
        masked_noise = torch.cat([c.posterior_noise[0] for c in batch])
        ref_noise = torch.cat([c.posterior_noise[1] for c in batch])
        masked_latents = encode_video(pipe.vae, masked, noise=masked_noise)  # (b, 4, f, r, r)
        ref_latents = encode_video(pipe.vae, pixels, noise=ref_noise)
        condition = unet_condition(self.keep_latent, masked_latents, ref_latents)  # (b, 9, f, r, r)

        has_audio = batch[0].audio is not None
        cfg = pipe.uses_guidance(self.guidance_scale, has_audio)
        audio = None
        if has_audio:
            audio = torch.cat([c.audio for c in batch]).to(device, dtype)  # (b*f, 50, d), batch-major
            if cfg:
                audio = with_null_audio(audio)  # unconditional ("null") audio first
                condition = torch.cat([condition, condition])

        scheduler.set_timesteps(self.steps, device=device)  # multistep/LCM state starts afresh for every chunk
        latents = self.noise.expand(b, -1, f, -1, -1).clone()
        cache = DeepCache(DEEPCACHE_INTERVAL) if self.deepcache else None
        for step, t in enumerate(scheduler.timesteps):
            model_in = torch.cat([latents, latents]) if cfg else latents
            model_in = scheduler.scale_model_input(model_in, t).to(dtype)
            if cache is not None:
                cache.set_step(step)
            pred = pipe.unet(torch.cat([model_in, condition], dim=1), t, encoder_hidden_states=audio,
                             deepcache=cache).sample
            pipe.unet_calls += 1
            if cfg:
                pred = guided(*pred.chunk(2), self.guidance_scale)
            # float32 step: stable few-step solvers in fp16 runs, and LCM's injected noise is one float32 CPU draw.
            latents = scheduler.step(pred.to(self.latent_dtype), t, latents, **self.step_kwargs).prev_sample
            latents = latents.to(self.latent_dtype)
            if self.callback is not None:
                self.callback(StepProgress(batch[0].index, self.num_chunks, step + 1, len(scheduler.timesteps), b))

        if self.output_type == "latent":
            outs = [lat.transpose(0, 1) for lat in latents]  # (f, 4, r, r) each
        else:
            decoded = decode_video(pipe.vae, latents.to(dtype))  # (b, f, 3, R, R)
            outs = list(decoded * (1 - self.keep_pixels) + pixels * self.keep_pixels)
        if self.output_device is None:
            return [out.float() for out in outs]
        return [out.float().to(self.output_device) for out in outs]
