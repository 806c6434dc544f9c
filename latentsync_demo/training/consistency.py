"""Latent consistency distillation (LCD) for LatentSync: the math of one step, free of accelerate and I/O.

One step (Luo et al. 2023, "Latent Consistency Models", Alg. 1, as diffusers' ``train_lcm_distill_*`` scripts):

1. x0: VAE latents of the target faces; n ~ U{0..49}, t = solver.timesteps[n] (19, 39, ..., 999), s = t - 20
2. x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps, with LatentSync's mixed (shared + per-frame) noise
3. teacher (frozen): eps_w = guided(eps(x_t, null audio), eps(x_t, audio), w) -> one DDIM step x_t -> x_s
4. target (EMA of the student, no grad): F(x_s, s) = c_skip(s) x_s + c_out(s) x0_hat(eps_target(x_s, s))
5. student (online): F(x_t, t), same parameterisation; loss = huber(F(x_t, t) - F(x_s, s))
6. EMA(target) <- student

The UNet always sees the 13 LatentSync channels (noisy latents, mask, masked-face and reference latents) and
the whisper chunks, built by ``pipeline.inputs`` exactly as at inference. The guidance scale uses the
inference convention (uncond + w (cond - uncond), w = 1.5 official); the LCM paper's w is this w - 1.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, ContextManager

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from ..face.mask import latent_mask, load_mask
from ..pipeline.inputs import decode_video, encode_video, guided, normalize_faces, unet_condition, with_null_audio
from ..pipeline.samplers import LCM_ORIGINAL_STEPS, LCM_TIMESTEP_SCALING, make_scheduler

# (faces (b, f, 3, H, W) in [-1, 1], audio (b, f, 50, d)) -> scalar loss; a loss with ``input_key = "mel"``
# gets the batch's mel window (b, 1, 80, 52) instead. See training/syncnet.py.
SyncLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class LCDConfig:
    guidance_scale: float = 1.5  # teacher's audio CFG, inference convention
    ddim_steps: int = LCM_ORIGINAL_STEPS  # teacher solver's skipping schedule: k = 1000 / ddim_steps
    ema_decay: float = 0.95
    loss: str = "huber"  # or "l2"
    huber_c: float = 0.001
    sigma_data: float = 0.5
    timestep_scaling: float = LCM_TIMESTEP_SCALING
    mixed_noise_alpha: float = 1.0  # LatentSync stage 2: shared:independent noise variance 1:1 (0 = independent)
    sync_weight: float = 0.05  # weight of the optional SyncNet loss


class DDIMSolver:
    """DDIM on the skipping schedule (k = 1000 / steps): timesteps 19, 39, ..., 999 as LCMScheduler samples them."""

    def __init__(self, alphas_cumprod: torch.Tensor, steps: int = LCM_ORIGINAL_STEPS):
        self.k = len(alphas_cumprod) // steps
        self.timesteps = torch.arange(1, steps + 1) * self.k - 1  # (steps,) long
        self.alphas_cumprod = alphas_cumprod.float()
        # alpha at t_n = t - k; the first step ends at t = 0 (alphas_cumprod[0]), as in the official script.
        self.alphas_prev = torch.cat([self.alphas_cumprod[:1], self.alphas_cumprod[self.timesteps[:-1]]])

    def to(self, device: torch.device | str) -> DDIMSolver:
        for name in ("timesteps", "alphas_cumprod", "alphas_prev"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def step(self, x0: torch.Tensor, eps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Deterministic DDIM from t = timesteps[index] to t - k; x0, eps (b, ...), index (b,)."""
        a_prev = _per_sample(self.alphas_prev[index], x0)
        return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps


def boundary_scalings(t: torch.Tensor, sigma_data: float = 0.5, scaling: float = LCM_TIMESTEP_SCALING):
    """LCM's c_skip(t), c_out(t) (identical to ``LCMScheduler``): c_skip(0) = 1, c_out(0) = 0."""
    st = t.float() * scaling
    return sigma_data**2 / (st**2 + sigma_data**2), st / (st**2 + sigma_data**2) ** 0.5


def predicted_x0(eps: torch.Tensor, x_t: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """x0 from an epsilon prediction; alpha (b,) = alphas_cumprod[t]."""
    alpha = _per_sample(alpha, x_t)
    return (x_t - (1 - alpha).sqrt() * eps) / alpha.sqrt()


def consistency_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "huber", huber_c: float = 0.001):
    if kind == "l2":
        return F.mse_loss(pred.float(), target.float())
    if kind == "huber":  # pseudo-Huber, as the LCM scripts
        return (torch.sqrt((pred.float() - target.float()) ** 2 + huber_c**2) - huber_c).mean()
    raise ValueError(f"unknown loss {kind!r}: huber or l2")


def mixed_noise(like: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """N(0, 1) noise for (b, c, f, h, w) latents, part shared by all frames (variance a^2/(1+a^2)), as in
    LatentSync training (the teacher's own training noise; inference uses fully shared noise)."""
    shared_std = (alpha**2 / (1 + alpha**2)) ** 0.5
    shared = torch.randn_like(like[:, :, :1]) * shared_std
    return shared + torch.randn_like(like) * (1 - shared_std**2) ** 0.5


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))


class EMA:
    """The LCD target network as EMA shadows of the trainable parameters, swapped into the student for the
    target's no-grad forward (no second model; for a LoRA only the adapter is shadowed).

    Run each forward in its own autocast region: autocast caches casts of parameters per region, and a region
    spanning both the target and the student forward would reuse one's weights for the other.
    """

    def __init__(self, params, decay: float):
        self.params = list(params)
        self.decay = decay
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        for s, p in zip(self.shadow, self.params):
            s.mul_(self.decay).add_(p.detach(), alpha=1 - self.decay)

    @contextmanager
    def swapped_in(self):
        """Within the block the parameters hold the EMA values (data pointers swapped, nothing copied)."""
        self._swap()
        try:
            yield
        finally:
            self._swap()

    def _swap(self) -> None:
        for s, p in zip(self.shadow, self.params):
            p.data, s.data = s.data, p.data

    def state_dict(self) -> dict:
        return {"decay": self.decay, "shadow": [s.cpu() for s in self.shadow]}

    def load_state_dict(self, state: dict) -> None:
        self.decay = state["decay"]
        for s, saved in zip(self.shadow, state["shadow"], strict=True):
            s.copy_(saved)


class LCMDistiller:
    """Computes the LCD loss for a batch {"faces", "ref_faces": (b, f, 3, R, R) uint8, "audio": (b, f, 50, d)}.

    Args:
        student: the trainable UNet (maybe wrapped by accelerate/DDP: only its forward is used).
        teacher: the frozen UNet, or None for a peft LoRA student (the teacher is then the student with the
            adapter disabled: no second copy of the base weights).
        raw_student: the unwrapped student (a ``PeftModel`` for LoRA), for the no-grad teacher/target passes.
        ema: EMA over the student's trainable parameters (the target network).
        autocast: a factory of autocast contexts (``accelerator.autocast``), entered once per UNet call.
        sync_loss: optional pixel-space sync loss on the VAE-decoded one-step estimate (LatentSync stage 2).
    """

    def __init__(self, student, teacher, raw_student, vae: AutoencoderKL, ema: EMA, config: LCDConfig = LCDConfig(),
                 autocast: Callable[[], ContextManager] = nullcontext, sync_loss: SyncLoss | None = None):
        self.student, self.teacher, self.raw_student = student, teacher, raw_student
        self.vae, self.ema, self.config, self.autocast, self.sync_loss = vae, ema, config, autocast, sync_loss
        scheduler = make_scheduler("ddim")  # the official noise schedule (alphas_cumprod)
        self.alphas_cumprod = scheduler.alphas_cumprod.float()
        self.solver = DDIMSolver(self.alphas_cumprod, config.ddim_steps)
        self._masks: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def inputs(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (clean latents x0 (b, 4, f, r, r) float32, condition (b, 9, f, r, r), audio (b, f, 50, d))."""
        faces, refs = batch["faces"], batch["ref_faces"]
        res = faces.shape[-1]
        if res not in self._masks:
            self._masks[res] = load_mask(res)
        keep = self._masks[res]
        device, dtype = self.vae.device, self.vae.dtype
        pixels, masked = (p.to(device, dtype) for p in normalize_faces(faces, keep))
        ref_pixels = normalize_faces(refs, keep)[0].to(device, dtype)
        x0 = encode_video(self.vae, pixels).float()
        condition = unet_condition(latent_mask(keep).to(device), encode_video(self.vae, masked),
                                   encode_video(self.vae, ref_pixels)).float()
        return x0, condition, batch["audio"].to(device, torch.float32)

    def loss(self, batch: dict) -> dict[str, torch.Tensor]:
        """{"loss": total (with grad), "lcd": consistency term, "sync": SyncNet term (0 without one)}."""
        cfg = self.config
        x0, condition, audio = self.inputs(batch)
        b, device = x0.shape[0], x0.device
        solver, alphas = self.solver.to(device), self.alphas_cumprod.to(device)
        index = torch.randint(0, len(solver.timesteps), (b,), device=device)
        t = solver.timesteps[index]
        s = (t - solver.k).clamp(min=0)
        x_t = alphas[t].sqrt().view(-1, 1, 1, 1, 1) * x0 + (1 - alphas[t]).sqrt().view(-1, 1, 1, 1, 1) * mixed_noise(
            x0, cfg.mixed_noise_alpha)

        with torch.no_grad():
            eps_u, eps_c = self._teacher(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([condition, condition]),
                                         with_null_audio(audio)).chunk(2)
            eps_w = guided(eps_u, eps_c, cfg.guidance_scale)
            x_s = solver.step(predicted_x0(eps_w, x_t, alphas[t]), eps_w, index)
            with self.ema.swapped_in(), self.autocast():
                eps_target = self._eps(self.raw_student, x_s, s, condition, audio)
            target = self._consistency(x_s, s, eps_target, alphas)

        with self.autocast():
            eps = self._eps(self.student, x_t, t, condition, audio)
        pred = self._consistency(x_t, t, eps, alphas)
        lcd = consistency_loss(pred, target, cfg.loss, cfg.huber_c)
        sync = torch.zeros((), device=device)
        if self.sync_loss is not None and cfg.sync_weight > 0:
            faces = decode_video(self.vae, pred.to(self.vae.dtype)).float()  # one-step estimate (b, f, 3, R, R)
            key = getattr(self.sync_loss, "input_key", "audio")  # StableSyncNet scores the mel window
            sync_audio = audio if key == "audio" else batch[key].to(device)
            sync = self.sync_loss(faces, sync_audio).float()
        return {"loss": lcd + cfg.sync_weight * sync, "lcd": lcd.detach(), "sync": sync.detach()}

    def _teacher(self, x, t, condition, audio) -> torch.Tensor:
        if self.teacher is not None:
            dtype = self.teacher.dtype
            return self._eps(self.teacher, x.to(dtype), t, condition.to(dtype), audio.to(dtype)).float()
        with self.raw_student.disable_adapter(), self.autocast():
            return self._eps(self.raw_student, x, t, condition, audio).float()

    @staticmethod
    def _eps(unet, x, t, condition, audio) -> torch.Tensor:
        return unet(torch.cat([x, condition], dim=1), t, encoder_hidden_states=audio).sample.float()

    def _consistency(self, x, t, eps, alphas) -> torch.Tensor:
        c_skip, c_out = boundary_scalings(t, self.config.sigma_data, self.config.timestep_scaling)
        return _per_sample(c_skip, x) * x + _per_sample(c_out, x) * predicted_x0(eps, x, alphas[t])
