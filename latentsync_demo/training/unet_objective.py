"""The LatentSync UNet training objective (paper §3), free of accelerate and I/O.

One step, for a batch {"faces", "ref_faces": (b, f, 3, R, R) uint8, "audio": (b, f, 50, d) whisper chunks, and
for stage 2 "mel": (b, 1, 80, 52); with phoneme-aware audio "wav2vec": (b, f, 10, d_w)}:

1. x0 = VAE latents of the faces; the 9 condition channels (mask, masked faces, reference faces) as at inference
2. t ~ U{0..999}; eps = mixed noise (official: eps_shared (one draw per clip, repeated over frames) * sqrt(a^2 /
   (1 + a^2)) + eps_ind * sqrt(1 / (1 + a^2)), alpha = 1); without mixed noise, one draw shared by all frames
3. x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps; eps_hat = UNet(x_t, t, condition, audio)
4. stage 1: loss = simple (MSE(eps_hat, eps))
   stage 2: decode the one-step estimate x0_hat = (x_t - sqrt(1 - a_t) eps_hat) / sqrt(a_t) and add
   0.05 SyncNet + 0.1 LPIPS (lower half) + 10 TREPA, weights (1, 0.05, 0.1, 10) as the official stage2.yaml
5. improvements: + smoothness (frame differences of x0_hat vs x0, weighted by a_t), + adversarial (mouth-crop PatchGAN, stage 2,
   warm-up ramp); the discriminator's own loss comes from ``discriminator_loss`` on the same decoded faces.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, ContextManager

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from torch import nn

from ..pipeline.inputs import decode_video
from ..pipeline.samplers import make_scheduler
from .adversarial import adversarial_weight, discriminator_loss, generator_loss, mouth_box, mouth_crops
from .consistency import encode_batch, mixed_noise, predicted_x0
from .unet_losses import smoothness_loss


@dataclass
class UNetLossConfig:
    stage: int = 2  # 1: simple loss only; 2: + pixel-space SyncNet, LPIPS, TREPA
    use_mixed_noise: bool = True
    mixed_noise_alpha: float = 1.0
    simple_weight: float = 1.0
    sync_weight: float = 0.05
    lpips_weight: float = 0.1
    trepa_weight: float = 10.0
    smooth_weight: float = 0.0  # temporal smoothness (hierarchical attention improvement)
    adv_weight: float = 0.1  # used only with a discriminator (lip-region adversarial improvement)
    adv_start: int = 0
    adv_warmup: int = 1000
    adv_loss: str = "hinge"  # or "lsgan"

    def __post_init__(self):
        if self.stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {self.stage}")


def training_noise(like: torch.Tensor, mixed: bool = True, alpha: float = 1.0) -> torch.Tensor:
    """Noise for (b, c, f, h, w) latents: LatentSync's mixed noise, or one draw shared by all frames."""
    if mixed:
        return mixed_noise(like, alpha)
    return torch.randn_like(like[:, :, :1]).expand_as(like).contiguous()


class UNetObjective:
    """Computes the losses of one batch. Critics are optional modules (None or weight 0: term skipped).

    Args:
        unet: the trainable UNet (maybe wrapped by accelerate/peft: only its forward is used).
        vae: frozen ``AutoencoderKL``.
        sync_loss: ``SyncNetLoss``-like, (faces (b, f, 3, R, R), mel (b, 1, 80, 52)) -> scalar.
        lpips, trepa: (pred faces, real faces) -> scalar.
        discriminator: ``MultiScalePatchGAN`` (lip-region adversarial loss, stage 2 only).
        fusion: ``PhonemeAudioFusion`` (phoneme-aware audio): the UNet then hears fuse(whisper, wav2vec).
        autocast: a factory of autocast contexts (``accelerator.autocast``).
    """

    def __init__(self, unet, vae: AutoencoderKL, config: UNetLossConfig = UNetLossConfig(), *,
                 sync_loss: nn.Module | None = None, lpips: nn.Module | None = None, trepa: nn.Module | None = None,
                 discriminator: nn.Module | None = None, fusion: nn.Module | None = None,
                 autocast: Callable[[], ContextManager] = nullcontext):
        self.unet, self.vae, self.config = unet, vae, config
        self.sync_loss, self.lpips, self.trepa = sync_loss, lpips, trepa
        self.discriminator, self.fusion, self.autocast = discriminator, fusion, autocast
        self.alphas_cumprod = make_scheduler("ddim").alphas_cumprod.float()  # the official noise schedule
        self._masks: dict[int, torch.Tensor] = {}

    @property
    def pixel_space(self) -> bool:
        c = self.config
        return c.stage == 2 and any(w > 0 and m is not None for w, m in (
            (c.sync_weight, self.sync_loss), (c.lpips_weight, self.lpips), (c.trepa_weight, self.trepa),
            (c.adv_weight, self.discriminator)))

    def inputs(self, batch: dict) -> dict[str, torch.Tensor]:
        """-> x0 (b, 4, f, r, r) float32, condition (b, 9, f, r, r), pixels (b, f, 3, R, R) float32 in [-1, 1]."""
        x0, condition, pixels = encode_batch(self.vae, batch, self._masks)
        return {"x0": x0, "condition": condition, "pixels": pixels}

    def audio(self, batch: dict, device) -> torch.Tensor:
        """The UNet's audio tokens (b, f, 50, d); fused with Wav2Vec2 (with grad into the fusion) if enabled."""
        audio = batch["audio"].to(device, torch.float32)
        if self.fusion is None:
            return audio
        if "wav2vec" not in batch:
            raise ValueError("phoneme-aware audio needs wav2vec chunks in the cache (write_clip(..., wav2vec=...))")
        return self.fusion(audio, batch["wav2vec"].to(device, torch.float32))

    def loss(self, batch: dict, step: int = 0) -> dict[str, torch.Tensor]:
        """{"loss": weighted total (with grad), and each term detached: simple, sync, lpips, trepa, smooth, adv};
        "fake_crops"/"real_crops" (detached mouth crops) for ``discriminator_loss`` when adversarial."""
        cfg = self.config
        data = self.inputs(batch)
        x0, condition = data["x0"], data["condition"]
        b, device = x0.shape[0], x0.device
        alphas = self.alphas_cumprod.to(device)
        t = torch.randint(0, len(alphas), (b,), device=device)
        noise = training_noise(x0, cfg.use_mixed_noise, cfg.mixed_noise_alpha)
        a = alphas[t].view(-1, 1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        audio = self.audio(batch, device)
        with self.autocast():
            eps = self.unet(torch.cat([x_t, condition], dim=1), t, encoder_hidden_states=audio).sample.float()
        zero = torch.zeros((), device=device)
        terms = {"simple": F.mse_loss(eps, noise)}
        total = cfg.simple_weight * terms["simple"]
        x0_hat = predicted_x0(eps, x_t, alphas[t]) if cfg.smooth_weight > 0 or self.pixel_space else None
        if cfg.smooth_weight > 0:
            terms["smooth"] = smoothness_loss(x0_hat, x0, alphas[t])
            total = total + cfg.smooth_weight * terms["smooth"]
        out = {}
        if self.pixel_space:
            faces = decode_video(self.vae, x0_hat.to(self.vae.dtype)).float()  # (b, f, 3, R, R), with grad
            real = data["pixels"]
            if self.sync_loss is not None and cfg.sync_weight > 0:
                if "mel" not in batch:
                    raise ValueError("the SyncNet loss needs mel windows in the cache (rebuild it with training.data)")
                terms["sync"] = self.sync_loss(faces, batch["mel"].to(device, torch.float32))
                total = total + cfg.sync_weight * terms["sync"]
            if self.lpips is not None and cfg.lpips_weight > 0:
                terms["lpips"] = self.lpips(faces, real)
                total = total + cfg.lpips_weight * terms["lpips"]
            if self.trepa is not None and cfg.trepa_weight > 0:
                terms["trepa"] = self.trepa(faces, real)
                total = total + cfg.trepa_weight * terms["trepa"]
            if self.discriminator is not None and cfg.adv_weight > 0:
                box = mouth_box(faces.shape[-1])
                fake_crops, real_crops = mouth_crops(faces, box), mouth_crops(real, box)
                weight = adversarial_weight(step, cfg.adv_weight, cfg.adv_start, cfg.adv_warmup)
                self.discriminator.requires_grad_(False)  # the generator's term trains the UNet only
                try:
                    terms["adv"] = generator_loss(self.discriminator(fake_crops), cfg.adv_loss)
                finally:
                    self.discriminator.requires_grad_(True)
                total = total + weight * terms["adv"]
                out = {"fake_crops": fake_crops.detach(), "real_crops": real_crops.detach()}
        for name in ("sync", "lpips", "trepa", "smooth", "adv"):
            terms.setdefault(name, zero)
        return {"loss": total, **{k: v.detach().float() for k, v in terms.items()}, **out}

    def discriminator_loss(self, losses: dict) -> torch.Tensor:
        """The discriminator's loss on the crops of a ``loss`` result (real vs generated mouths)."""
        d = self.discriminator
        return discriminator_loss(d(losses["real_crops"]), d(losses["fake_crops"]), self.config.adv_loss)
