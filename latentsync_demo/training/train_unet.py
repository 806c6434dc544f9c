"""Train the LatentSync UNet: stage 1, stage 2, a one-speaker fine-tune, and the three improvements.

    python -m latentsync_demo.training.data VIDEOS/ cache/             # once: faces, whisper chunks, SyncNet mel
    accelerate launch -m latentsync_demo.training.train_unet --cache cache/ --output runs/s2 --stage 2 \\
        --syncnet checkpoints/stable_syncnet.pt --trepa checkpoints/auxiliary/vit_g_hybrid_pt_1200e_ssv2_ft.pth ...
    accelerate launch -m latentsync_demo.training.train_unet --finetune MY_CLIPS/ --output runs/me   # LoRA recipe

Stage 1 trains every UNet weight with the simple loss; stage 2 trains the motion modules and attentions
(official ``trainable_modules``) with simple + SyncNet + LPIPS + TREPA, weights (1, 0.05, 0.1, 10). The VAE, the
audio features (cached) and the critics are frozen. The maths is in ``unet_objective.py``. Multi-GPU / multi-node
and mixed precision come from accelerate (``accelerate config`` or launch flags, or ``--mixed-precision``).

Outputs in ``--output``:

    checkpoint-<step>/  accelerate state: UNet (+ fusion, discriminator), optimizers, LR schedule, RNG, step
    final/              latentsync_unet.pt ({"state_dict", "global_step"}, LoRA merged) + unet_config.json: a
                        checkpoint folder for --checkpoints (whisper/ and sd-vae-ft-mse/ linked from the base set);
                        improvements.json (+ the clip length, the Wav2Vec2 model) + audio_fusion/ (+ wav2vec2/
                        linked when --wav2vec is a folder) when improvements are on: the app/CLI/service load and
                        run it like an official set; discriminator/ (adversarial, not needed at inference); lora/
                        (the adapter alone, LoRA runs); training_data.json: the cache's Whisper windows mode
                        ({"audio_windows": "seamless" | "official"}; run inference with the same --audio-windows)
    log.jsonl, tensorboard/, validation/step-<n>.mp4 (faces | DDIM result, every --validation-every steps)

``--resume latest`` (or a checkpoint folder) continues at the saved step with the same weights, optimizer, RNG and
data position: the losses continue exactly as in an uninterrupted run.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers import AutoencoderKL
from diffusers.optimization import get_scheduler
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from ..audio.wav2vec import Wav2Vec2AudioEncoder
from ..audio.whisper import WhisperAudioEncoder
from ..errors import CheckpointError, InputError
from ..models import UNet3DConditionModel, load_unet, save_unet_checkpoint
from ..models.improvements import FUSION_DIR, Improvements, apply_improvements, wav2vec_folder
from ..models.lcm import add_lora, save_lora
from ..models.stable_syncnet import load_stable_syncnet
from ..settings import AUDIO_WINDOW_MODES
from ..store import DEFAULT_PRESET, UNET_FILE, VAE_DIR, WHISPER_FILE, resolve, write_unet_config
from .adversarial import MultiScalePatchGAN
from .data import WindowDataset, preprocess_folder
from .lcm_distill import TrainState, _Logger, _resume_folder, cli_main, optimizer_step, validate
from .unet_losses import LPIPS, SyncNetLoss, TREPALoss
from .unet_objective import UNetLossConfig, UNetObjective
from .videomae_convert import OFFICIAL_TREPA_FILE

MARKER = "unet_training.json"  # written into every checkpoint-<step>/ of this script
TRAINING_DATA_FILE = "training_data.json"  # in final/: what the training data was made with
OFFICIAL_STAGE2_MODULES = ("motion_modules.", "attentions.")  # the official stage2.yaml trainable_modules


@dataclass
class Critics:
    """The frozen critics of stage 2 (None: that loss is off). Built from paths by ``load_critics``."""

    sync_loss: nn.Module | None = None
    lpips: nn.Module | None = None
    trepa: nn.Module | None = None


@dataclass
class TrainConfig:
    output: Path
    cache: Path | None = None  # cache folder from training.data (or --finetune)
    finetune: Path | None = None  # one speaker's videos: cached into <output>/cache, LoRA recipe
    checkpoints: Path | None = None  # base set (root or folder, as --checkpoints at inference)
    preset: str = DEFAULT_PRESET
    init_unet: Path | None = None  # start from this .pt instead of the set's latentsync_unet.pt
    unet_config: Path | None = None  # JSON model section (e.g. the official stage1.yaml's) instead of the set's
    from_scratch: bool = False
    trainable: str = "auto"  # auto (stage 1: all, stage 2: official), all, official
    lora_rank: int = 0  # > 0: a peft LoRA of this rank (improvement layers stay fully trainable)
    lora_alpha: float | None = None
    losses: UNetLossConfig = field(default_factory=UNetLossConfig)
    improvements: Improvements = field(default_factory=Improvements)
    adversarial: bool = False  # lip-region PatchGAN (stage 2)
    disc_learning_rate: float = 1e-4
    syncnet: Path | None = None  # stable_syncnet.pt
    syncnet_size: int = 256
    trepa: Path | None = None  # a transformers VideoMAE folder, or the official VideoMAE-v2 .pth (videomae_convert)
    wav2vec: str | None = None  # phoneme audio: the Wav2Vec2 (hub id or folder) the cache's wav2vec chunks came from
    audio_windows: str = "seamless"  # --finetune: the Whisper windows mode its videos are cached with
    lpips: bool = True  # stage 2: LPIPS-VGG (needs the lpips package and torchvision's VGG16 weights)
    num_frames: int = 16  # 32-64 with hierarchical temporal attention
    batch_size: int = 1
    grad_accum: int = 1
    learning_rate: float | None = None  # default 1e-5 (official), 1e-4 with LoRA
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    max_steps: int = 1000
    checkpoint_every: int = 500
    resume: str | None = None
    validation_every: int = 0
    validation_steps: int = 20
    log_every: int = 10
    mixed_precision: str | None = None
    gradient_checkpointing: bool = False
    tensorboard: bool = True
    progress: bool = True
    seed: int = 0
    num_workers: int = 0


def load_critics(cfg: TrainConfig, device) -> Critics:
    """The stage-2 critics the config asks for, from their files; clear errors when one is missing."""
    critics, w = Critics(), cfg.losses
    if w.stage != 2:
        return critics
    if w.sync_weight > 0:
        if cfg.syncnet is None:
            raise CheckpointError("stage 2 needs the training SyncNet: --syncnet checkpoints/stable_syncnet.pt "
                                  "(or --sync-weight 0)")
        critics.sync_loss = SyncNetLoss(load_stable_syncnet(cfg.syncnet), cfg.syncnet_size).to(device)
    if w.lpips_weight > 0 and cfg.lpips:
        critics.lpips = LPIPS.vgg().to(device)
    if w.trepa_weight > 0:
        if cfg.trepa is None:
            raise CheckpointError("stage 2 needs a VideoMAE encoder for TREPA: --trepa checkpoints/"
                                  f"{OFFICIAL_TREPA_FILE} (the official file) or a transformers VideoMAE folder "
                                  "(or --trepa-weight 0)")
        critics.trepa = TREPALoss.from_pretrained(cfg.trepa).to(device)
    return critics


def build_unet(cfg: TrainConfig, ckpt) -> tuple[UNet3DConditionModel, dict]:
    """The starting UNet (official weights strictly loaded, or fresh) and its model config (pre-improvements)."""
    config = dict(ckpt.unet_config)
    if cfg.unet_config is not None:
        data = json.loads(Path(cfg.unet_config).read_text())
        config = dict(data.get("model", data))
    if cfg.from_scratch:
        return UNet3DConditionModel.from_config(config), config
    path = Path(cfg.init_unet or ckpt.unet)
    if not path.is_file():
        raise CheckpointError(f"no UNet to start from at {path}: download the official weights "
                              "(python -m latentsync_demo.download), pass --init-unet, or --from-scratch")
    return load_unet(path, config), config


def select_trainable(unet: nn.Module, cfg: TrainConfig) -> None:
    """requires_grad: stage 1 all weights, stage 2 the official modules; improvement layers always."""
    mode = cfg.trainable if cfg.trainable != "auto" else ("all" if cfg.losses.stage == 1 else "official")
    if mode not in ("all", "official"):
        raise ValueError(f"--trainable must be auto, all or official, got {cfg.trainable!r}")
    for name, p in unet.named_parameters():
        official = any(m in name for m in OFFICIAL_STAGE2_MODULES)
        p.requires_grad_(mode == "all" or official or _improvement_param(name, cfg.improvements))


def _improvement_param(name: str, improvements: Improvements) -> bool:
    return (improvements.hierarchical_temporal and ".hierarchical." in name) or (
        improvements.phoneme_audio and ".attn2.to_" in name and name.rsplit(".", 2)[-2] in ("to_k", "to_v", "base_layer"))


def prepare_cache(cfg: TrainConfig, ckpt) -> Path:
    """--finetune: cache the speaker's videos once into <output>/cache (with mel and, if needed, wav2vec)."""
    if cfg.finetune is None:
        if cfg.cache is None:
            raise InputError("pass --cache (from python -m latentsync_demo.training.data) or --finetune VIDEOS")
        return Path(cfg.cache)
    cache = Path(cfg.output) / "cache"
    if any(cache.glob("*.safetensors")):
        return cache
    wav2vec = None
    if cfg.improvements.phoneme_audio:  # the model inference will load (improvements.json names it)
        wav2vec = Wav2Vec2AudioEncoder.from_pretrained(cfg.wav2vec or Improvements.wav2vec_model)
    encoder = WhisperAudioEncoder.from_openai_checkpoint(ckpt.whisper)
    preprocess_folder(cfg.finetune, cache, encoder, ckpt.resolution, min_frames=cfg.num_frames, wav2vec=wav2vec,
                      audio_windows=cfg.audio_windows)
    return cache


def finetune_recipe(cfg: TrainConfig) -> TrainConfig:
    """One speaker: LoRA rank 32 unless --lora-rank/--trainable all, LR 1e-4; critics that were not given are
    switched off (with a note) rather than refused: a few minutes of footage rarely come with them."""
    if cfg.finetune is None:
        return cfg
    if cfg.lora_rank == 0 and cfg.trainable != "all":
        cfg.lora_rank = 32
    w = cfg.losses
    for attr, given, flag in (("sync_weight", cfg.syncnet, "--syncnet"), ("trepa_weight", cfg.trepa, "--trepa")):
        if getattr(w, attr) > 0 and given is None:
            print(f"finetune: no {flag} given, that loss is off", flush=True)
            setattr(w, attr, 0.0)
    return cfg


def train(cfg: TrainConfig, critics: Critics | None = None) -> Path:
    """Run (or resume) a training; returns ``<output>/final``. ``critics`` overrides ``load_critics`` (tests)."""
    cfg = finetune_recipe(cfg)
    output = Path(cfg.output)
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum,
                              log_with="tensorboard" if cfg.tensorboard else None, project_dir=str(output))
    set_seed(cfg.seed, device_specific=True)
    device = accelerator.device
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    ckpt = resolve(cfg.preset, cfg.checkpoints)
    if not (ckpt.vae / "config.json").is_file():
        raise CheckpointError(f"the VAE is missing at {ckpt.vae}; see python -m latentsync_demo.download")
    dataset = WindowDataset(prepare_cache(cfg, ckpt), cfg.num_frames, seed=cfg.seed)
    if critics is None:
        critics = load_critics(cfg, device)
    vae = AutoencoderKL.from_pretrained(str(ckpt.vae), torch_dtype=weight_dtype).to(device).eval().requires_grad_(False)

    unet, base_config, fusion, params = build_trainable(cfg, ckpt, device)
    lr = cfg.learning_rate or (1e-4 if cfg.lora_rank else 1e-5)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    lr_scheduler = get_scheduler("constant_with_warmup", optimizer,
                                 num_warmup_steps=cfg.warmup_steps * accelerator.num_processes)
    discriminator, d_optimizer = build_discriminator(cfg, device)

    state = TrainState()
    unet, optimizer, lr_scheduler = accelerator.prepare(unet, optimizer, lr_scheduler)
    if fusion is not None:
        fusion = accelerator.prepare(fusion)
    if discriminator is not None:
        discriminator, d_optimizer = accelerator.prepare(discriminator, d_optimizer)
    accelerator.register_for_checkpointing(state)
    if cfg.resume:
        accelerator.load_state(str(_resume_folder(output, cfg.resume, MARKER, "train_unet")))
        accelerator.print(f"resumed from step {state.step}")

    per_step = cfg.batch_size * cfg.grad_accum * accelerator.num_processes
    indices = range(state.step * per_step, cfg.max_steps * per_step)
    loader = accelerator.prepare(DataLoader(Subset(dataset, indices), batch_size=cfg.batch_size,
                                            num_workers=cfg.num_workers, generator=torch.Generator().manual_seed(0)))
    objective = UNetObjective(unet, vae, cfg.losses, sync_loss=critics.sync_loss, lpips=critics.lpips,
                              trepa=critics.trepa, discriminator=discriminator, fusion=fusion,
                              autocast=accelerator.autocast)
    kind = f"a LoRA of rank {cfg.lora_rank}" if cfg.lora_rank else f"{sum(p.numel() for p in params) / 1e6:.2f} M weights"
    accelerator.print(f"stage {cfg.losses.stage}: training {kind} from step {state.step} to {cfg.max_steps} on "
                      f"{accelerator.num_processes} process(es), {per_step} clips of {cfg.num_frames} frames per "
                      f"step, {accelerator.mixed_precision} precision")
    if cfg.tensorboard:
        accelerator.init_trackers("tensorboard", config={"stage": cfg.losses.stage, "lr": lr,
                                                         "num_frames": cfg.num_frames, "lora_rank": cfg.lora_rank})
    log = _Logger(output / "log.jsonl", accelerator.is_main_process)
    bar = tqdm(total=cfg.max_steps, initial=state.step, desc="steps",
               disable=not (cfg.progress and accelerator.is_main_process))
    tick = time.perf_counter()
    trained = [m for m in (unet, fusion, discriminator) if m is not None]
    for batch in loader:
        if state.step >= cfg.max_steps:
            break
        with accelerator.accumulate(*trained):
            losses = objective.loss(batch, state.step)
            optimizer_step(accelerator, losses["loss"], params, optimizer, lr_scheduler, cfg.max_grad_norm)
            if discriminator is not None:
                losses["disc"] = _discriminator_step(accelerator, objective, losses, d_optimizer)
        if not accelerator.sync_gradients:
            continue
        state.step += 1
        bar.update(1)
        if state.step % cfg.log_every == 0 or state.step == cfg.max_steps:
            now = time.perf_counter()
            _log_losses(accelerator, log, bar, losses, lr_scheduler.get_last_lr()[0], state.step,
                        (now - tick) / cfg.log_every, cfg.tensorboard)
            tick = now
        if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 and state.step < cfg.max_steps:
            _save_state(accelerator, output / f"checkpoint-{state.step}")
        if cfg.validation_every and state.step % cfg.validation_every == 0 and accelerator.is_main_process:
            _validate(accelerator.unwrap_model(unet), fusion, vae, dataset, output, state.step, cfg, accelerator)
    bar.close()
    accelerator.wait_for_everyone()
    _save_state(accelerator, output / f"checkpoint-{state.step}")
    final = output / "final"
    if accelerator.is_main_process:
        save_final(final, accelerator.unwrap_model(unet), base_config, ckpt, state.step, cfg,
                   accelerator.unwrap_model(fusion) if fusion is not None else None,
                   accelerator.unwrap_model(discriminator) if discriminator is not None else None,
                   audio_windows=dataset.audio_windows)
    accelerator.print(f"trained UNet written to {final} (use it with --checkpoints {final})")
    accelerator.end_training()
    return final


def build_trainable(cfg: TrainConfig, ckpt, device) -> tuple[nn.Module, dict, nn.Module | None, list[nn.Parameter]]:
    """The UNet to train on ``device`` (improvements on, trainable weights chosen, LoRA-wrapped with
    --lora-rank), its model config (pre-improvements), the audio fusion (phoneme audio, else None) and every
    parameter the optimizer updates."""
    unet, base_config = build_unet(cfg, ckpt)
    fusion = apply_improvements(unet, cfg.improvements)
    unet.to(device)
    select_trainable(unet, cfg)
    if cfg.lora_rank:
        unet = add_lora(unet, cfg.lora_rank, cfg.lora_alpha)
        for name, p in unet.get_base_model().named_parameters():  # peft froze them: improvements train fully
            if _improvement_param(name, cfg.improvements):
                p.requires_grad_(True)
    base = unet.get_base_model() if cfg.lora_rank else unet
    if cfg.gradient_checkpointing:
        base.enable_gradient_checkpointing()
    unet.train()
    params = [p for p in unet.parameters() if p.requires_grad]
    if fusion is not None:
        fusion.to(device).train()
        params += list(fusion.parameters())
    return unet, base_config, fusion, params


def build_discriminator(cfg: TrainConfig, device) -> tuple[nn.Module | None, torch.optim.Optimizer | None]:
    """The lip-region PatchGAN and its optimizer with --adversarial (a stage-2 loss), else (None, None)."""
    if not cfg.adversarial:
        return None, None
    if cfg.losses.stage != 2:
        raise InputError("the lip-region adversarial loss is a stage-2 loss: use --stage 2")
    discriminator = MultiScalePatchGAN().to(device).train()
    return discriminator, torch.optim.AdamW(discriminator.parameters(), lr=cfg.disc_learning_rate, betas=(0.5, 0.999))


def _discriminator_step(accelerator, objective: UNetObjective, losses: dict, d_optimizer) -> torch.Tensor:
    """One update of the discriminator on the crops of this step's UNet loss; returns its loss (detached)."""
    d_loss = objective.discriminator_loss(losses)
    accelerator.backward(d_loss)
    d_optimizer.step()
    d_optimizer.zero_grad(set_to_none=True)
    return d_loss.detach()


def _log_losses(accelerator, log: _Logger, bar, losses: dict, lr: float, step: int, sec_per_step: float,
                tensorboard: bool) -> None:
    """The step's losses, averaged over processes, to log.jsonl, tensorboard and the progress bar."""
    values = {k: accelerator.reduce(v.detach(), "mean").item() for k, v in losses.items()
              if k not in ("fake_crops", "real_crops")}
    values["lr"] = lr
    log.write(step=step, **values, sec_per_step=sec_per_step)
    if tensorboard:
        accelerator.log(values, step=step)
    bar.set_postfix(loss=f"{values['loss']:.4f}")


def save_final(folder: Path, unet, base_config: dict, ckpt, step: int, cfg: TrainConfig, fusion=None,
               discriminator=None, audio_windows: str | None = None) -> Path:
    """Write the result as a checkpoint folder the app and CLI load (see the module docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    if audio_windows is not None:  # which Whisper features the UNet was trained on (audio.windows)
        (folder / TRAINING_DATA_FILE).write_text(json.dumps({"audio_windows": audio_windows}, indent=1))
    if hasattr(unet, "peft_config"):
        save_lora(unet, folder / "lora")
        unet = unet.merge_and_unload()
    save_unet_checkpoint(unet, folder / UNET_FILE, global_step=step)
    write_unet_config(folder, base_config, ckpt.resolution)
    if cfg.improvements.any():  # + what inference needs: the window trained on, the Wav2Vec2 to load
        improvements = replace(cfg.improvements, num_frames=cfg.num_frames)
        if cfg.wav2vec:
            improvements = replace(improvements, wav2vec_model=str(cfg.wav2vec))
        improvements.save(folder)
        if improvements.phoneme_audio and cfg.wav2vec and Path(cfg.wav2vec).is_dir():
            link = wav2vec_folder(folder)
            if not link.exists():
                os.symlink(Path(cfg.wav2vec).resolve(), link)
    if fusion is not None:
        fusion.save_pretrained(str(folder / FUSION_DIR))
    if discriminator is not None:
        discriminator.save_pretrained(str(folder / "discriminator"))
    for name in (WHISPER_FILE.split("/")[0], VAE_DIR):  # so that --checkpoints <folder> finds them
        source, link = ckpt.folder / name if name != VAE_DIR else ckpt.vae, folder / name
        if source.exists() and not link.exists():
            os.symlink(source.resolve(), link)
    return folder


def _save_state(accelerator, folder: Path) -> None:
    accelerator.save_state(str(folder))
    if accelerator.is_main_process:
        (folder / MARKER).write_text(json.dumps({"script": "train_unet"}))


def _validate(unet, fusion, vae, dataset, output: Path, step: int, cfg: TrainConfig, accelerator) -> None:
    base = unet.get_base_model() if hasattr(unet, "peft_config") else unet
    fusion = accelerator.unwrap_model(fusion) if fusion is not None else None
    validate(base, vae, dataset, output / "validation" / f"step-{step:06d}.mp4", cfg.validation_steps,
             accelerator.autocast, sampler="ddim", fusion=fusion)


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    p = argparse.ArgumentParser(prog="accelerate launch -m latentsync_demo.training.train_unet", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--cache", type=Path, help="cache folder from latentsync_demo.training.data")
    p.add_argument("--finetune", type=Path, help="fine-tune on this folder of one speaker's videos (LoRA recipe)")
    p.add_argument("--checkpoints", type=Path, help="base checkpoint root or folder")
    p.add_argument("--preset", default=DEFAULT_PRESET)
    p.add_argument("--init-unet", type=Path, help="start from this UNet .pt instead of the set's")
    p.add_argument("--unet-config", type=Path, help="JSON model config (e.g. the official stage1 model section)")
    p.add_argument("--from-scratch", action="store_true")
    p.add_argument("--stage", type=int, choices=(1, 2), default=2)
    p.add_argument("--trainable", choices=("auto", "all", "official"), default="auto")
    p.add_argument("--lora-rank", type=int, default=0)
    p.add_argument("--lora-alpha", type=float)
    p.add_argument("--syncnet", type=Path, help="the training SyncNet, stable_syncnet.pt")
    p.add_argument("--trepa", type=Path, help="TREPA's encoder: the official VideoMAE-v2 .pth (checkpoints/"
                   f"{OFFICIAL_TREPA_FILE}, converted on load) or a transformers VideoMAE folder")
    p.add_argument("--no-lpips", dest="lpips", action="store_false")
    p.add_argument("--no-mixed-noise", dest="use_mixed_noise", action="store_false")
    p.add_argument("--adversarial", action="store_true", help="lip-region PatchGAN loss (stage 2)")
    p.add_argument("--adv-loss", choices=("hinge", "lsgan"), default="hinge")
    p.add_argument("--phoneme-audio", action="store_true", help="Wav2Vec2 beside Whisper (cache wav2vec chunks: "
                   "training.data --wav2vec MODEL; --finetune does it)")
    p.add_argument("--wav2vec-dim", type=int, default=768)
    p.add_argument("--wav2vec", help="the Wav2Vec2 (hub id or folder) of the cached wav2vec chunks; inference loads "
                   "it (default facebook/wav2vec2-base-960h)")
    p.add_argument("--hierarchical-temporal", action="store_true", help="local + keyframe temporal attention")
    p.add_argument("--audio-windows", choices=AUDIO_WINDOW_MODES, default="seamless",
                   help="--finetune: Whisper windows of videos over 30 s (default seamless; official: the official "
                   "features); a --cache keeps the mode it was made with")
    p.add_argument("--resume", help="'latest' or a checkpoint-<step> folder")
    p.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"))
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--no-tensorboard", dest="tensorboard", action="store_false")
    for name, kind, default in (
            ("mixed-noise-alpha", float, 1.0), ("simple-weight", float, 1.0), ("sync-weight", float, 0.05),
            ("lpips-weight", float, 0.1), ("trepa-weight", float, 10.0), ("smooth-weight", float, None),
            ("adv-weight", float, 0.1), ("adv-start", int, 0), ("adv-warmup", int, 1000),
            ("disc-learning-rate", float, 1e-4), ("syncnet-size", int, 256), ("num-frames", int, None),
            ("batch-size", int, 1), ("grad-accum", int, 1), ("learning-rate", float, None),
            ("weight-decay", float, 0.0), ("warmup-steps", int, 0), ("max-grad-norm", float, 1.0),
            ("max-steps", int, 1000), ("checkpoint-every", int, 500), ("validation-every", int, 0),
            ("validation-steps", int, 20), ("log-every", int, 10), ("seed", int, 0), ("num-workers", int, 0)):
        p.add_argument(f"--{name}", type=kind, default=default)
    args = vars(p.parse_args(argv))
    hierarchical = args.pop("hierarchical_temporal")
    smooth = args.pop("smooth_weight")
    losses = UNetLossConfig(
        stage=args.pop("stage"), use_mixed_noise=args.pop("use_mixed_noise"),
        mixed_noise_alpha=args.pop("mixed_noise_alpha"), simple_weight=args.pop("simple_weight"),
        sync_weight=args.pop("sync_weight"), lpips_weight=args.pop("lpips_weight"),
        trepa_weight=args.pop("trepa_weight"), smooth_weight=smooth if smooth is not None else (
            1.0 if hierarchical else 0.0),
        adv_weight=args.pop("adv_weight"), adv_start=args.pop("adv_start"), adv_warmup=args.pop("adv_warmup"),
        adv_loss=args.pop("adv_loss"))
    improvements = Improvements(phoneme_audio=args.pop("phoneme_audio"), wav2vec_dim=args.pop("wav2vec_dim"),
                                hierarchical_temporal=hierarchical)
    if args["num_frames"] is None:
        args["num_frames"] = 32 if hierarchical else 16
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(losses=losses, improvements=improvements, **{k: v for k, v in args.items() if k in known})


def main(argv: list[str] | None = None) -> int:
    return cli_main(train, parse_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
