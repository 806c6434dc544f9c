"""Benchmark: UNet evaluations and wall time per generated second of video, DDIM-20 (+CFG) vs LCM-4.

    python bench/bench_samplers.py [--seconds 2] [--device cpu] [--full]
    python bench/bench_samplers.py --closeness

``--closeness`` prints instead how close each few-step solver's latents come to DDIM-50's (mean squared
difference of the final latents, tiny random models, 8 frames at 32 px, guidance 1.5, seeds 0-2: the case
``tests/test_fast_samplers.py`` asserts DPM++-8 and UniPC-8 beat DDIM-8 on), the figures README quotes.

Default: the tiny random models at 64 px on the chosen device (runs anywhere). ``--full`` adds the full-size
stage-2 architecture (random weights, ``models.configs.STAGE2_UNET_CONFIG``, an sd-vae-ft-mse-shaped VAE) at
256 and 512 px in fp16 and bf16 on CUDA, one 16-frame chunk each; without CUDA it prints "no CUDA".
Figures are printed, never asserted. Random weights time exactly like trained ones.
"""

from __future__ import annotations

import argparse
import time

import torch
from diffusers import AutoencoderKL

from latentsync_demo.models import UNet3DConditionModel
from latentsync_demo.models.configs import STAGE2_UNET_CONFIG
from latentsync_demo.pipeline import LipSyncPipeline, make_scheduler
from latentsync_demo.testing.tiny_models import TINY_AUDIO_DIM, tiny_unet, tiny_vae

FPS = 25
SAMPLERS = (("ddim", 20, 1.5), ("lcm", 4, 1.5))  # (sampler, steps, guidance): LCM ignores the guidance


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(unet, vae, resolution: int, frames: int, audio_dim: int, device: torch.device) -> dict[str, tuple]:
    """{sampler: (UNet calls, UNet batch-rows, seconds)} for ``frames`` frames; a warm-up run first."""
    gen = torch.Generator().manual_seed(0)
    faces = torch.randint(0, 256, (frames, 3, resolution, resolution), dtype=torch.uint8, generator=gen)
    audio = torch.randn(frames, 50, audio_dim, generator=gen)
    results = {}
    for name, steps, guidance in SAMPLERS:
        pipe = LipSyncPipeline(unet, vae, make_scheduler(name))
        pipe(faces[:16], audio[:16], num_inference_steps=min(steps, 2), guidance_scale=guidance)  # warm-up
        pipe.unet_calls = 0
        _sync(device)
        start = time.perf_counter()
        pipe(faces, audio, num_inference_steps=steps, guidance_scale=guidance)
        _sync(device)
        rows = pipe.unet_calls * (2 if pipe.uses_guidance(guidance) else 1)
        results[name] = (pipe.unet_calls, rows, time.perf_counter() - start)
    return results


def report(title: str, results: dict[str, tuple], frames: int) -> None:
    seconds = frames / FPS
    print(f"{title}  ({frames} frames = {seconds:.2f} s of video)")
    for (name, steps, _), (calls, rows, wall) in zip(SAMPLERS, results.values()):
        label = f"{name.upper()}-{steps}" + (" +CFG" if name == "ddim" else "")
        print(f"  {label:<12} UNet calls/s-of-video {calls / seconds:7.1f}  (batch rows {rows / seconds:7.1f})"
              f"   wall {wall / seconds:8.3f} s per s-of-video")
    ddim, lcm = results["ddim"][2], results["lcm"][2]
    print(f"  LCM-4 speed-up over DDIM-20+CFG: x{ddim / lcm:.1f}")


CLOSENESS = {"DDIM-8": ("ddim", 8, False), "DPM++-8": ("dpmpp", 8, False), "UniPC-8": ("unipc", 8, False),
             "DPM++-8 + DeepCache": ("dpmpp", 8, True), "DDIM-20": ("ddim", 20, False),
             "DDIM-20 + DeepCache": ("ddim", 20, True)}


def closeness(seeds: int = 3) -> None:
    """Latent MSE to DDIM-50 per solver, on the windows of tests/test_fast_samplers.py (tiny models, CPU)."""
    unet, vae = tiny_unet(), tiny_vae()
    rows = {name: [] for name in CLOSENESS}
    for seed in range(seeds):
        gen = torch.Generator().manual_seed(100 + seed)  # as the test's _window(seed)
        faces = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=gen)
        audio = torch.randn(8, 50, TINY_AUDIO_DIM, generator=gen)

        def run(sampler, steps, deepcache):
            pipe = LipSyncPipeline(unet, vae, make_scheduler(sampler))
            return pipe(faces, audio, steps, guidance_scale=1.5, seed=seed, output_type="latent", deepcache=deepcache)

        ref = run("ddim", 50, False)
        for name, args in CLOSENESS.items():
            rows[name].append((run(*args) - ref).square().mean().item())
    print(f"latent MSE to DDIM-50 (tiny random models, CPU, 8 frames at 32 px, guidance 1.5, "
          f"mean of seeds 0-{seeds - 1}):")
    for name, values in rows.items():
        print(f"  {name:<22} {sum(values) / len(values):6.1f}   (per seed: {', '.join(f'{v:.1f}' for v in values)})")


def full_size(resolution: int, dtype: torch.dtype, device: torch.device):
    with torch.device(device):
        unet = UNet3DConditionModel.from_config(STAGE2_UNET_CONFIG).to(dtype).eval()
        vae = AutoencoderKL(  # the sd-vae-ft-mse architecture
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
            sample_size=resolution, scaling_factor=0.18215,
        ).to(dtype).eval()
    return unet, vae


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="video length for the tiny models")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--full", action="store_true", help="also the full-size UNet at 256/512 px on CUDA")
    parser.add_argument("--closeness", action="store_true", help="latent distance of each solver to DDIM-50 instead")
    args = parser.parse_args()
    if args.closeness:
        closeness()
        return

    device = torch.device(args.device)
    frames = max(1, int(round(args.seconds * FPS)))
    unet, vae = tiny_unet().to(device), tiny_vae().to(device)
    report(f"tiny models, 64 px, {device.type}", measure(unet, vae, 64, frames, TINY_AUDIO_DIM, device), frames)

    if not args.full:
        return
    if not torch.cuda.is_available():
        print("full-size: no CUDA")
        return
    cuda = torch.device("cuda")
    for resolution in (256, 512):
        for dtype in (torch.float16, torch.bfloat16):
            unet, vae = full_size(resolution, dtype, cuda)
            torch.cuda.reset_peak_memory_stats()
            results = measure(unet, vae, resolution, 16, STAGE2_UNET_CONFIG["cross_attention_dim"], cuda)
            peak = torch.cuda.max_memory_allocated() / 2**30
            report(f"full stage2 UNet, {resolution} px, {str(dtype).removeprefix('torch.')}, "
                   f"{torch.cuda.get_device_name()} (peak {peak:.1f} GiB)", results, 16)
            del unet, vae
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
