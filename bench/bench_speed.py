"""Speed benchmark of the whole lip-sync job: official-equivalent vs each optimisation vs all, and fast samplers.

    python bench/bench_speed.py --device cuda [--seconds 10] [--resolutions 256 512] [--compile]
    python bench/bench_speed.py --device cpu --tiny          # tiny random models; a few minutes on 2 cores
    python bench/bench_speed.py --flops                      # UNet FLOPs per call only (meta device, any machine)

Full size: the LatentSync stage-2 UNet (1.5 = 256 px, 1.6 = 512 px; same architecture) and an sd-vae-ft-mse
shaped VAE with random weights (timing does not need trained weights), a random whisper-tiny, on a generated
1080p talking-head clip (or ``--video`` / ``--audio``). Every configuration runs the real video job
(``pipeline.job.run_lipsync_job``: decode, landmarks, align, generate, paste back, encode, mux).

Columns: end-to-end output frames/s; UNet-only frames/s (frames / time inside UNet calls, synchronised);
time to the first chunk's preview; peak VRAM (CUDA); peak host RSS (sampled); and the UNet's achieved share of
the GPU's dense fp16/bf16 peak (FLOPs counted once per step kind on the meta device). Figures are printed,
never asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from latentsync_demo.face.landmarks import make_detector
from latentsync_demo.media import SAMPLE_RATE, load_audio, probe
from latentsync_demo.models import UNet3DConditionModel
from latentsync_demo.models.configs import STAGE2_UNET_CONFIG
from latentsync_demo.models.deepcache import DeepCache
from latentsync_demo.pipeline import LipSyncPipeline, make_scheduler
from latentsync_demo.pipeline.job import JobPlan, StagePolicy, run_lipsync_job
from latentsync_demo.settings import GenerationSettings
from latentsync_demo.testing.media import make_speech_wav, make_talking_head_clip

# Dense (no sparsity) fp16/bf16 tensor-core peaks, FLOP/s, by a substring of the device name.
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10G": 70e12,
              "4090": 165e12, "T4": 65e12}


@dataclass(frozen=True)
class Config:
    name: str
    sampler: str = "ddim"
    steps: int = 20
    deepcache: bool = True
    chunk_batch: int = 1  # 0 = auto from free memory
    streaming: bool = False
    paste_on_device: bool = False


OFFICIAL = Config("a official-equivalent (seq., DDIM-20, CFG 1.5, DeepCache, CPU paste)")
ALL = replace(OFFICIAL, name="c all together", chunk_batch=0, streaming=True, paste_on_device=True)
CONFIGS = [
    OFFICIAL,
    replace(OFFICIAL, name="b1 + streaming stages", streaming=True),
    replace(OFFICIAL, name="b2 + batched chunks", chunk_batch=0),
    replace(OFFICIAL, name="b3 + paste-back on device", paste_on_device=True),
    ALL,
    replace(ALL, name="d1 all + DPM-Solver++ 8", sampler="dpmpp", steps=8),
    replace(ALL, name="d2 all + UniPC 8", sampler="unipc", steps=8),
]


class PeakRSS(threading.Thread):
    """Samples this process's resident memory every 50 ms."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self._halt = 0, threading.Event()

    def run(self):
        while not self._halt.wait(0.05):
            with open("/proc/self/statm") as f:
                self.peak = max(self.peak, int(f.read().split()[1]) * 4096)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return self.peak


class UNetTimer:
    """Wall time spent inside UNet calls (synchronised on CUDA) and the work done, as full / cached steps
    counted in units of one 2 x 16-frame call."""

    def __init__(self, unet: torch.nn.Module, device: torch.device):
        self.seconds, self.full, self.cached, self.frames = 0.0, 0, 0, 0
        self._device, self._t0 = device, 0.0
        unet.register_forward_pre_hook(self._pre, with_kwargs=True)
        unet.register_forward_hook(self._post, with_kwargs=True)

    def reset(self):
        self.seconds, self.full, self.cached = 0.0, 0, 0

    def _sync(self):
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)

    def _pre(self, module, args, kwargs):
        self._sync()
        self._t0 = time.perf_counter()
        cache = kwargs.get("deepcache")
        self._full = cache is None or cache.is_full_step
        self._shape = args[0].shape

    def _post(self, module, args, kwargs, out):
        self._sync()
        self.seconds += time.perf_counter() - self._t0
        units = self._shape[0] * self._shape[2] / 32  # in (2 x 16 frames) calls, the unit FLOPs are counted for
        if self._full:
            self.full += units
        else:
            self.cached += units


def unet_flops(unet_config: dict, resolution: int, frames: int = 16, batch: int = 2) -> tuple[float, float]:
    """(full step, DeepCache-cached step) FLOPs of one UNet call on (batch, 13, frames, R/8, R/8), on meta."""
    with torch.device("meta"):
        unet = UNet3DConditionModel.from_config(unet_config).eval()
        r = resolution // 8
        x = torch.zeros(batch, 13, frames, r, r)
        audio = torch.zeros(batch * frames, 50, unet_config["cross_attention_dim"])
        cache, flops = DeepCache(), []
        for step in (0, 1):
            cache.set_step(step)
            with FlopCounterMode(display=False) as counter, torch.no_grad():
                unet(x, torch.tensor(999), audio, deepcache=cache)
            flops.append(counter.get_total_flops())
    return flops[0], flops[1]


def full_size_models(resolution: int, dtype: torch.dtype, device: torch.device, root: Path):
    from latentsync_demo.audio import WhisperAudioEncoder
    from latentsync_demo.testing.whisper import write_random_openai_whisper

    from bench_samplers import full_size  # the stage-2 UNet and an sd-vae-ft-mse shaped VAE (same folder)

    unet, vae = full_size(resolution, dtype, device)
    whisper_tiny = dict(n_mels=80, n_audio_ctx=1500, n_audio_state=384, n_audio_head=6, n_audio_layer=4,
                        n_vocab=64, n_text_ctx=16, n_text_state=384, n_text_head=6, n_text_layer=1)
    write_random_openai_whisper(root / "whisper_tiny.pt", whisper_tiny)
    return unet, vae, WhisperAudioEncoder.from_openai_checkpoint(root / "whisper_tiny.pt", device=device)


def tiny_models(device: torch.device, root: Path):
    from latentsync_demo.loading import load_models
    from latentsync_demo.store import resolve
    from latentsync_demo.testing.tiny_checkpoints import write_tiny_checkpoints

    models = load_models(resolve("latentsync-1.5", write_tiny_checkpoints(root / "tiny")), device, torch.float32)
    return models.unet, models.vae, models.audio_encoder, models.resolution


def run_config(cfg: Config, unet, vae, audio_encoder, resolution, video, audio, out, device, timer) -> dict:
    pipe = LipSyncPipeline(unet, vae, make_scheduler(cfg.sampler), audio_encoder, resolution)
    settings = GenerationSettings(sampler=cfg.sampler, num_inference_steps=cfg.steps, deepcache=cfg.deepcache,
                                  chunk_batch=cfg.chunk_batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    timer.reset()
    rss = PeakRSS()
    rss.start()
    start = time.perf_counter()
    first_preview = None
    plan = JobPlan(probe(video), probe(audio), Path(out), settings, "pingpong")
    # The official order (whole face pass first, each chunk pasted before the next) or the streaming stages.
    stages = StagePolicy(face_pass_first=not cfg.streaming, paste_each_chunk=not cfg.streaming,
                         restore_device=None if cfg.paste_on_device else "cpu")
    detector = make_detector("mediapipe")
    try:
        for event in run_lipsync_job(pipe, plan, detector, stages=stages):
            if event.stage == "generating" and first_preview is None:
                first_preview = time.perf_counter() - start
    finally:
        detector.close()
    wall = time.perf_counter() - start
    frames = round(len(load_audio(audio)) / SAMPLE_RATE * 25)
    return {
        "wall": wall, "frames": frames, "first_preview": first_preview, "unet_s": timer.seconds,
        "full": timer.full, "cached": timer.cached, "rss": rss.stop(),
        "vram": torch.cuda.max_memory_allocated() if device.type == "cuda" else None,
    }


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


def report(title: str, rows: list[tuple[Config, dict]], flops: tuple[float, float] | None, peak: float | None):
    print(f"\n{title}")
    header = f"{'configuration':<62} {'e2e fps':>8} {'UNet fps':>9} {'1st prev s':>10} {'VRAM GB':>8} {'RSS GB':>7} {'UNet MFU':>9}"
    print(header)
    print("-" * len(header))
    base = rows[0][1]["wall"]
    for cfg, r in rows:
        # UNet calls carry batch (2 with CFG) x chunk_batch x 16 frames; flops are per 2 x 16 frames.
        mfu = "n/a"
        if flops and peak and r["unet_s"] > 0:
            done = r["full"] * flops[0] + r["cached"] * flops[1]
            mfu = f"{done / r['unet_s'] / peak:.1%}"
        vram = f"{r['vram'] / 1e9:.2f}" if r["vram"] is not None else "n/a"
        print(f"{cfg.name:<62} {r['frames'] / r['wall']:8.2f} {r['frames'] / r['unet_s']:9.2f} "
              f"{r['first_preview']:10.2f} {vram:>8} {r['rss'] / 1e9:7.2f} {mfu:>9}   (x{base / r['wall']:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny random models (CPU smoke run)")
    parser.add_argument("--seconds", type=float, default=None, help="clip length (default 10; 2 with --tiny)")
    parser.add_argument("--size", default=None, help="clip size WxH (default 1920x1080; 480x270 with --tiny)")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet (warm-up not timed)")
    parser.add_argument("--video", help="use this clip instead of a generated one")
    parser.add_argument("--audio", help="and this speech")
    parser.add_argument("--configs", nargs="*", help="only configurations whose name starts with these")
    parser.add_argument("--flops", action="store_true", help="only print the UNet FLOPs per call (meta device, no GPU)")
    args = parser.parse_args()
    if args.flops:
        for resolution in args.resolutions:
            full, cached = unet_flops(STAGE2_UNET_CONFIG, resolution)
            print(f"UNet FLOPs per call (2 x 16 frames, {resolution} px): full {full / 1e12:.2f} T, "
                  f"DeepCache-cached {cached / 1e12:.2f} T ({cached / full:.1%} of full)")
        return
    device = torch.device(args.device)
    seconds = args.seconds or (2.0 if args.tiny else 10.0)
    width, height = map(int, (args.size or ("480x270" if args.tiny else "1920x1080")).split("x"))
    configs = [c for c in CONFIGS if not args.configs or any(c.name.startswith(p) for p in args.configs)]
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    with tempfile.TemporaryDirectory(prefix="bench_speed_") as tmp:
        root = Path(tmp)
        video = Path(args.video) if args.video else make_talking_head_clip(root / "clip.mp4", seconds, 25, (width, height))
        audio = Path(args.audio) if args.audio else make_speech_wav(root / "speech.wav", seconds)
        setups = []
        if args.tiny:
            setups.append(("tiny models", None))
        else:
            setups += [(f"LatentSync {'1.5' if r == 256 else '1.6'} architecture, {r} px, random weights", r)
                       for r in args.resolutions]
        for title, resolution in setups:
            if resolution is None:
                unet, vae, audio_encoder, resolution = tiny_models(device, root)
                flops = None
            else:
                dtype = getattr(torch, args.dtype)
                unet, vae, audio_encoder = full_size_models(resolution, dtype, device, root)
                flops = unet_flops(STAGE2_UNET_CONFIG, resolution)
                print(f"UNet FLOPs per call (2 x 16 frames, {resolution} px): full {flops[0] / 1e12:.2f} T, "
                      f"DeepCache-cached {flops[1] / 1e12:.2f} T")
            if args.compile:
                from latentsync_demo.models.compile import compile_unet

                t = time.perf_counter()
                compile_unet(unet, resolution)
                print(f"torch.compile + warm-up: {time.perf_counter() - t:.1f} s")
            timer = UNetTimer(unet, device)
            # Warm-up (CUDA context, cuDNN autotune, kernels), not timed.
            run_config(replace(OFFICIAL, steps=2), unet, vae, audio_encoder, resolution, video, audio,
                       root / "warm.mp4", device, timer)
            rows = [(c, run_config(c, unet, vae, audio_encoder, resolution, video, audio, root / "out.mp4", device,
                                   timer)) for c in configs]
            where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
            dtype_name = str(unet.dtype).removeprefix("torch.")
            report(f"{title} on {where}, {seconds:g} s {width}x{height} clip, {dtype_name}",
                   rows, flops, peak_flops(device))
            del unet, vae
            if device.type == "cuda":
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
