"""Latent consistency distillation of a LatentSync UNet into a 1-8 step LCM student (``--sampler lcm``).

    python -m latentsync_demo.training.data VIDEOS/ cache/            # once: faces + whisper chunks
    accelerate launch -m latentsync_demo.training.lcm_distill --cache cache/ --output runs/lcm \\
        [--checkpoints checkpoints] [--preset latentsync-1.5] [--lora-rank 64] [--max-steps 4000] ...

Multi-GPU / multi-node, mixed precision defaults etc. come from accelerate (``accelerate config`` or launch
flags); this script is single-process code around ``Accelerator``. The maths is in ``consistency.py``.
Outputs in ``--output``:

    checkpoint-<step>/  accelerate state (optimizer, LR schedule, RNG, EMA target, step) + lcm/ student weights
    lcm/                the final student: copy it to <checkpoint folder>/lcm/ to sample with "lcm"
    log.jsonl           one JSON object per logged step (also printed)
    validation/         step-<n>.mp4: reference faces | 4-step LCM result, every --validation-every steps

``--resume latest`` (or a checkpoint folder) continues at the saved step with the same weights, EMA,
optimizer, RNG and data position. The student is the online network (the official LCM scripts' choice).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from ..errors import CheckpointError, LatentSyncError
from ..models import load_unet
from ..models.lcm import add_lora, load_student_weights, save_lcm_student
from ..store import DEFAULT_PRESET, LCM_DIR, resolve
from .consistency import EMA, LCDConfig, LCMDistiller
from .data import WindowDataset


@dataclass
class TrainConfig:
    cache: Path
    output: Path
    checkpoints: Path | None = None  # teacher set (root or folder, as --checkpoints at inference)
    preset: str = DEFAULT_PRESET
    lora_rank: int = 0  # 0: full fine-tune of a copy of the teacher; > 0: a peft LoRA of that rank
    lora_alpha: float | None = None
    lcd: LCDConfig = field(default_factory=LCDConfig)
    num_frames: int = 16
    batch_size: int = 1  # clips per device and micro-step
    grad_accum: int = 1
    learning_rate: float | None = None  # default 1e-5 (full) / 1e-4 (LoRA)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    max_steps: int = 1000
    checkpoint_every: int = 500  # 0: only at the end
    resume: str | None = None  # "latest" or a checkpoint-<step> folder
    validation_every: int = 0  # 0: no validation videos
    validation_steps: int = 4
    log_every: int = 10
    mixed_precision: str | None = None  # no | fp16 | bf16 (None: accelerate's config)
    gradient_checkpointing: bool = False
    seed: int = 0
    num_workers: int = 0
    syncnet: Path | None = None


class TrainState:
    """Optimizer-step counter, saved with the accelerate state."""

    def __init__(self):
        self.step = 0

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) a distillation; returns the folder of the final student (``<output>/lcm``)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers import AutoencoderKL
    from diffusers.optimization import get_scheduler

    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum)
    set_seed(cfg.seed, device_specific=True)
    device, output = accelerator.device, Path(cfg.output)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)

    ckpt = resolve(cfg.preset, cfg.checkpoints)
    missing = [p for p in (ckpt.unet, ckpt.vae / "config.json") if not p.is_file()]
    if missing:
        raise CheckpointError(f"the teacher needs {', '.join(map(str, missing))}; see python -m latentsync_demo.download")
    sync_loss = None
    if cfg.syncnet is not None:
        from .syncnet import load_syncnet

        sync_loss = load_syncnet(cfg.syncnet, device)
    dataset = WindowDataset(cfg.cache, cfg.num_frames, seed=cfg.seed)
    if getattr(sync_loss, "input_key", "audio") == "mel" and not dataset.has_mel:
        raise LatentSyncError(f"--syncnet: the cache {cfg.cache} has no SyncNet mel windows (it predates them); run "
                              "python -m latentsync_demo.training.data VIDEOS CACHE again to rebuild it")
    vae = AutoencoderKL.from_pretrained(str(ckpt.vae), torch_dtype=weight_dtype).to(device).eval().requires_grad_(False)

    teacher = load_unet(ckpt.unet, ckpt.unet_config, device=device, dtype=weight_dtype).requires_grad_(False)
    if cfg.lora_rank:
        # The teacher is the student's base with the adapter disabled: one copy of the frozen weights, in the
        # compute dtype; peft keeps the adapter itself in float32.
        student, teacher = add_lora(teacher, cfg.lora_rank, cfg.lora_alpha), None
    else:
        student = load_unet(ckpt.unet, ckpt.unet_config, device=device)  # float32 master weights
    if cfg.gradient_checkpointing:
        (student.get_base_model() if cfg.lora_rank else student).enable_gradient_checkpointing()
    student.train()
    params = [p for p in student.parameters() if p.requires_grad]
    ema = EMA(params, cfg.lcd.ema_decay)
    lr = cfg.learning_rate or (1e-4 if cfg.lora_rank else 1e-5)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    lr_scheduler = get_scheduler("constant_with_warmup", optimizer,
                                 num_warmup_steps=cfg.warmup_steps * accelerator.num_processes)
    state = TrainState()
    student, optimizer, lr_scheduler = accelerator.prepare(student, optimizer, lr_scheduler)
    raw_student = accelerator.unwrap_model(student)
    accelerator.register_for_checkpointing(ema, state)

    def save_hook(models, weights, folder):  # the student in our own format (official .pt or LoRA folder)
        if accelerator.is_main_process:
            save_lcm_student(accelerator.unwrap_model(models[0]), Path(folder) / LCM_DIR, state.step)
        if weights:
            weights.pop()

    def load_hook(models, folder):
        load_student_weights(accelerator.unwrap_model(models.pop()), Path(folder) / LCM_DIR)

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)
    if cfg.resume:
        accelerator.load_state(str(_resume_folder(output, cfg.resume)))
        accelerator.print(f"resumed from step {state.step}")

    # Item i of the dataset is fixed by (seed, i): the loader just starts where the last optimizer step ended.
    # Its own generator keeps it from drawing from the global RNG, which must continue exactly where saved.
    per_step = cfg.batch_size * cfg.grad_accum * accelerator.num_processes
    indices = range(state.step * per_step, cfg.max_steps * per_step)
    loader = accelerator.prepare(DataLoader(Subset(dataset, indices), batch_size=cfg.batch_size,
                                            num_workers=cfg.num_workers, generator=torch.Generator().manual_seed(0)))
    distiller = LCMDistiller(student, teacher, raw_student, vae, ema, cfg.lcd, accelerator.autocast, sync_loss)
    accelerator.print(f"distilling {'a LoRA of rank ' + str(cfg.lora_rank) if cfg.lora_rank else 'the full UNet'} "
                      f"from step {state.step} to {cfg.max_steps} on {accelerator.num_processes} process(es), "
                      f"{per_step} clips of {cfg.num_frames} frames per step, {accelerator.mixed_precision} precision")
    log = _Logger(output / "log.jsonl", accelerator.is_main_process)
    tick = time.perf_counter()
    for batch in loader:
        if state.step >= cfg.max_steps:
            break
        with accelerator.accumulate(student):
            losses = distiller.loss(batch)
            optimizer_step(accelerator, losses["loss"], params, optimizer, lr_scheduler, cfg.max_grad_norm)
        if not accelerator.sync_gradients:
            continue
        ema.update()
        state.step += 1
        if state.step % cfg.log_every == 0 or state.step == cfg.max_steps:
            now = time.perf_counter()
            values = {k: accelerator.reduce(v.detach(), "mean").item() for k, v in losses.items()}
            log.write(step=state.step, **values, lr=lr_scheduler.get_last_lr()[0],
                      sec_per_step=(now - tick) / cfg.log_every)
            tick = now
        if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 and state.step < cfg.max_steps:
            accelerator.save_state(str(output / f"checkpoint-{state.step}"))
        if cfg.validation_every and state.step % cfg.validation_every == 0 and accelerator.is_main_process:
            validate(raw_student, vae, dataset, output / "validation" / f"step-{state.step:06d}.mp4",
                     cfg.validation_steps, accelerator.autocast)

    accelerator.wait_for_everyone()
    accelerator.save_state(str(output / f"checkpoint-{state.step}"))
    final = output / LCM_DIR
    if accelerator.is_main_process:
        save_lcm_student(raw_student, final, state.step)
    accelerator.print(f"LCM student written to {final}; copy it to <checkpoint folder>/{LCM_DIR}/ to sample with lcm")
    accelerator.end_training()
    return final


def optimizer_step(accelerator, loss, params, optimizer, lr_scheduler, max_grad_norm: float) -> None:
    """backward, clip (on synchronising micro-steps), step, schedule, zero: one micro-step under accumulate()."""
    accelerator.backward(loss)
    if accelerator.sync_gradients:
        accelerator.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    lr_scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def validate(student, vae, dataset: WindowDataset, path: Path, steps: int = 4, autocast=None,
             sampler: str = "lcm", fusion=None) -> Path:
    """Write ``path``: the first window of the first cache clip, its faces | the ``steps``-step result of
    ``sampler`` (4-step LCM: cheap; the UNet trainer uses DDIM). With ``fusion`` (phoneme-aware audio) the
    UNet hears the cached whisper and Wav2Vec2 chunks fused, as at inference."""
    from contextlib import nullcontext

    from ..media import VideoWriter
    from ..pipeline import LipSyncPipeline, make_scheduler

    sample = _first_window(dataset)
    audio = sample["audio"]
    if fusion is not None:
        device = next(fusion.parameters()).device
        with torch.no_grad():
            audio = fusion(audio[None].to(device), sample["wav2vec"][None].to(device))[0]
    was_training = student.training
    with (autocast or nullcontext)():
        out = LipSyncPipeline(student, vae, make_scheduler(sampler))(sample["faces"], audio, steps, seed=0)
    student.train(was_training)
    generated = ((out.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    frames = torch.cat([sample["faces"], generated], dim=-1).permute(0, 2, 3, 1).numpy()  # (f, R, 2R, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(path, frames.shape[2], frames.shape[1]) as writer:
        writer.write_batch(np.ascontiguousarray(frames))
    return path


def _first_window(dataset: WindowDataset) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    with safe_open(str(dataset.files[0]), framework="pt") as data:
        f = dataset.num_frames
        window = {"faces": data.get_slice("faces")[:f], "audio": data.get_slice("audio")[:f].float()}
        if "wav2vec" in data.keys():
            window["wav2vec"] = data.get_slice("wav2vec")[:f].float()
        return window


def _resume_folder(output: Path, resume: str, marker: str = LCM_DIR, script: str = "this script") -> Path:
    """The checkpoint folder of ``--resume`` ('latest' or a path); it must hold ``marker`` (written by the script)."""
    if resume != "latest":
        folder = Path(resume)
    else:
        found = sorted(output.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
        if not found:
            raise CheckpointError(f"--resume latest: no checkpoint-<step> folder in {output}")
        folder = found[-1]
    if not (folder / marker).exists():
        raise CheckpointError(f"--resume: {folder} is not a checkpoint of {script} (no {marker} inside)")
    return folder


class _Logger:
    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, **values) -> None:
        if not self.enabled:
            return
        line = json.dumps({k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v)
                           for k, v in values.items()})
        print(line, flush=True)
        with self.path.open("a") as f:
            f.write(line + "\n")


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    p = argparse.ArgumentParser(prog="accelerate launch -m latentsync_demo.training.lcm_distill", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", type=Path, required=True, help="cache folder from latentsync_demo.training.data")
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--checkpoints", type=Path, help="teacher checkpoint root or folder")
    p.add_argument("--preset", default=DEFAULT_PRESET)
    p.add_argument("--lora-rank", type=int, default=0, help="0 = full fine-tune (default); e.g. 64 = LoRA")
    p.add_argument("--lora-alpha", type=float)
    p.add_argument("--guidance-scale", type=float, default=1.5, help="teacher audio CFG (inference convention)")
    p.add_argument("--ddim-steps", type=int, default=50, help="teacher solver schedule (skipping step 1000/N)")
    p.add_argument("--ema-decay", type=float, default=0.95)
    p.add_argument("--loss", choices=("huber", "l2"), default="huber")
    p.add_argument("--huber-c", type=float, default=0.001)
    p.add_argument("--mixed-noise-alpha", type=float, default=1.0)
    p.add_argument("--syncnet", type=Path, help="optional SyncNet loss: the official stable_syncnet.pt (or a .pt2 "
                   "torch.export program; see training/syncnet.py)")
    p.add_argument("--syncnet-weight", type=float, default=0.05)
    for name, kind, default in (("num-frames", int, 16), ("batch-size", int, 1), ("grad-accum", int, 1),
                                ("learning-rate", float, None), ("weight-decay", float, 0.0), ("warmup-steps", int, 0),
                                ("max-grad-norm", float, 1.0), ("max-steps", int, 1000), ("checkpoint-every", int, 500),
                                ("validation-every", int, 0), ("validation-steps", int, 4), ("log-every", int, 10),
                                ("seed", int, 0), ("num-workers", int, 0)):
        p.add_argument(f"--{name}", type=kind, default=default)
    p.add_argument("--resume", help="'latest' or a checkpoint-<step> folder")
    p.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"))
    p.add_argument("--gradient-checkpointing", action="store_true")
    args = vars(p.parse_args(argv))
    lcd = LCDConfig(guidance_scale=args.pop("guidance_scale"), ddim_steps=args.pop("ddim_steps"),
                    ema_decay=args.pop("ema_decay"), loss=args.pop("loss"), huber_c=args.pop("huber_c"),
                    mixed_noise_alpha=args.pop("mixed_noise_alpha"), sync_weight=args.pop("syncnet_weight"))
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(lcd=lcd, **{k: v for k, v in args.items() if k in known})


def cli_main(train_fn, parse_fn, argv: list[str] | None) -> int:
    """Run a training script's ``train_fn(parse_fn(argv))``; our errors become one line and exit status 2."""
    try:
        train_fn(parse_fn(argv))
    except LatentSyncError as exc:
        print(f"error: {exc}", flush=True)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli_main(train, parse_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
