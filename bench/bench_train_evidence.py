"""Each training loss and each improvement, a few hundred steps on synthetic data: does its loss fall?

    python bench/bench_train_evidence.py --steps 300            # every case, tiny models, CPU
    python bench/bench_train_evidence.py --steps 300 --only trepa hierarchical

The tests (tests/test_train_unet.py, tests/test_improvements.py) check the same things with 10-30 steps so
that CI stays short; this script is the longer run whose figures go into the closing notes and README.

Every case starts from the same random micro UNet (official layout) on a random-face cache, trains its own
term alone with Adam, and evaluates that term on fixed noise/timestep draws (the same draws before and after),
on the training windows and on held-out windows of another clip. Prints one line per case and a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from latentsync_demo.models import load_unet  # noqa: E402
from latentsync_demo.models.improvements import Improvements, apply_improvements  # noqa: E402
from latentsync_demo.store import resolve  # noqa: E402
from latentsync_demo.testing.tiny_critics import tiny_lpips, tiny_sync_loss, tiny_trepa  # noqa: E402
from latentsync_demo.testing.tiny_lcm import write_random_cache, write_teacher_set  # noqa: E402
from latentsync_demo.testing.tiny_models import MICRO_UNET_CONFIG  # noqa: E402
from latentsync_demo.training.adversarial import MultiScalePatchGAN  # noqa: E402
from latentsync_demo.training.data import WindowDataset  # noqa: E402
from latentsync_demo.training.unet_objective import UNetLossConfig, UNetObjective  # noqa: E402

RES, W2V = 32, 24
OFF = {"simple_weight": 0.0, "sync_weight": 0.0, "lpips_weight": 0.0, "trepa_weight": 0.0}
CASES = ("simple", "sync", "lpips", "trepa", "phoneme", "hierarchical", "adversarial")


def batches(cache: Path, frames: int, n: int) -> tuple[dict, dict]:
    """(train, held-out) batches of n windows: the first clip's windows, and the last clip's."""
    data = WindowDataset(cache, frames, seed=3)
    per_clip = len(data) // 2

    def stack(items):
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}

    return stack([data[i] for i in range(n)]), stack([data[per_clip + i] for i in range(n)])


def evaluate(objective: UNetObjective, batch: dict, term: str, step: int = 0, draws: int = 4) -> float:
    values = []
    with torch.no_grad():
        for seed in range(draws):
            torch.manual_seed(10_000 + seed)
            values.append(objective.loss(batch, step=step)[term].item())
    return sum(values) / len(values)


def run_case(case: str, env: dict, steps: int, lr: float) -> dict:
    torch.manual_seed(0)
    unet = load_unet(env["ckpt"].unet, env["ckpt"].unet_config).train()
    frames, fusion, disc, critics = 4, None, None, {}
    config, term = UNetLossConfig(stage=1), "simple"
    params = list(unet.parameters())
    if case in ("sync", "lpips", "trepa"):
        config, term = UNetLossConfig(stage=2, **{**OFF, f"{case}_weight": 1.0}), case
        critics = {"sync_loss": tiny_sync_loss(frames), "lpips": tiny_lpips(), "trepa": tiny_trepa(frames=frames)}
    elif case == "phoneme":
        fusion = apply_improvements(unet, Improvements(phoneme_audio=True, wav2vec_dim=W2V, fused_audio_dim=96))
        params += list(fusion.parameters())
    elif case == "hierarchical":
        frames = 32
        apply_improvements(unet, Improvements(hierarchical_temporal=True))
        config, term = UNetLossConfig(stage=1, simple_weight=0.0, smooth_weight=1.0), "smooth"
    elif case == "adversarial":
        disc = MultiScalePatchGAN(channels=8)
        config, term = UNetLossConfig(stage=2, **OFF, adv_weight=1.0, adv_warmup=1), "adv"
    objective = UNetObjective(unet, env["vae"], config, fusion=fusion, discriminator=disc, **critics)
    train, held = batches(env["cache"], frames, n=1 if frames > 4 else 2)
    before = {"train": evaluate(objective, train, term, step=steps), "held_out": evaluate(objective, held, term, steps)}
    optimizer = torch.optim.Adam(params, lr=lr)
    extra = {}
    if disc is not None:
        # a GAN's two losses do not fall together: train D alone against the fixed UNet, then the UNet alone
        # against the now fixed D, and report each side's own loss (as tests/test_improvements.py does, longer)
        d_opt = torch.optim.Adam(disc.parameters(), lr=2e-3, betas=(0.5, 0.999))

        def d_eval():
            with torch.no_grad():
                torch.manual_seed(10_000)
                return objective.discriminator_loss(objective.loss(train, step=steps)).item()

        d0 = d_eval()
        for step in range(steps // 2):
            torch.manual_seed(step)
            d_opt.zero_grad()
            objective.discriminator_loss(objective.loss(train, step=steps)).backward()
            d_opt.step()
        extra = {"disc_before": round(d0, 5), "disc_after": round(d_eval(), 5)}
        before = {"train": evaluate(objective, train, term, steps), "held_out": evaluate(objective, held, term, steps)}
    t0 = time.perf_counter()
    for step in range(steps if disc is None else steps // 2):
        torch.manual_seed(step)
        optimizer.zero_grad()
        objective.loss(train, step=steps)["loss"].backward()
        optimizer.step()
    seconds = time.perf_counter() - t0
    after = {"train": evaluate(objective, train, term, steps), "held_out": evaluate(objective, held, term, steps)}
    return {"case": case, "term": term, "steps": steps, "frames": frames, **extra,
            **{f"{k}_before": round(v, 5) for k, v in before.items()},
            **{f"{k}_after": round(v, 5) for k, v in after.items()},
            "sec_per_step": round(seconds / max(1, steps if disc is None else steps // 2), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--only", nargs="*", choices=CASES, default=list(CASES))
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (these models are tiny: more threads only spin, 16x slower under load)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = write_teacher_set(root / "base", MICRO_UNET_CONFIG, RES)
        cache = write_random_cache(root / "cache", clips=2, frames=40, resolution=RES, mel=True, wav2vec_dim=W2V)
        ckpt = resolve("latentsync-1.5", base)
        env = {"ckpt": ckpt, "cache": cache,
               "vae": AutoencoderKL.from_pretrained(str(ckpt.vae)).requires_grad_(False)}
        for case in args.only:
            row = run_case(case, env, args.steps, args.lr)
            rows.append(row)
            fell = row["train_after"] < row["train_before"] and row["held_out_after"] < row["held_out_before"]
            gan = (f"  discriminator {row['disc_before']:.4f} -> {row['disc_after']:.4f}"
                   if "disc_before" in row else "")
            print(f"{case:13s} {row['term']:7s} {row['steps']} steps x {row['frames']} frames: "
                  f"train {row['train_before']:.5f} -> {row['train_after']:.5f}, held-out "
                  f"{row['held_out_before']:.5f} -> {row['held_out_after']:.5f} "
                  f"({'falls' if fell else 'DOES NOT FALL on both'}){gan}, {row['sec_per_step']} s/step", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
