"""Samplers: diffusers schedulers behind one name ("ddim" today; the LCM student adds "lcm").

The DDIM configuration is the official ``configs/scheduler_config.json`` of LatentSync.
"""

from __future__ import annotations

from dataclasses import dataclass

from diffusers import DDIMScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

OFFICIAL_DDIM_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "trained_betas": None,
}


@dataclass(frozen=True)
class SamplerSpec:
    """What the UI and CLI need to know about a sampler."""

    name: str
    default_steps: int
    min_steps: int
    max_steps: int
    uses_guidance: bool  # False: guidance is baked into the model, no classifier-free doubling


SAMPLERS = {
    "ddim": SamplerSpec("ddim", default_steps=20, min_steps=1, max_steps=100, uses_guidance=True),
}


def make_scheduler(name: str = "ddim") -> SchedulerMixin:
    if name == "ddim":
        return DDIMScheduler.from_config(OFFICIAL_DDIM_CONFIG)
    raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}")
