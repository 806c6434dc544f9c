"""Samplers: diffusers schedulers behind one name: "ddim" (the official one), "dpmpp" (DPM-Solver++ 2M) and
"unipc" (UniPC, 2nd order): few-step solvers for the official weights, and "lcm" (the distilled student).

DPM-Solver++ and UniPC use the official DDIM noise schedule (same betas, so the same model, no retraining) and
classifier-free guidance exactly as DDIM. Their multistep history is reset by ``set_timesteps`` (the pipeline
calls it for every chunk). "trailing" timestep spacing starts them at t = 999, where the pipeline's pure-noise
latents belong; at 6-12 steps that is what makes them closer to DDIM-50 than DDIM at the same step count.

The DDIM configuration is the official ``configs/scheduler_config.json`` of LatentSync. The LCM one shares its
noise schedule (scaled_linear betas 0.00085-0.012 over 1000 training steps), so the student sees exactly the
noise levels its teacher was trained on, plus the distillation's own settings: the 50-step skipping schedule
(timesteps 19, 39, ..., 999; k = 20) and the boundary-condition time scaling of 10. Both must match what
``latentsync_demo.training.lcm_distill`` trained with.
"""

from __future__ import annotations

from dataclasses import dataclass

from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, LCMScheduler, UniPCMultistepScheduler
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

# Few-step solvers on the official schedule. lower_order_final: first-order last steps (stable below 15 steps).
DPMPP_CONFIG = {
    **OFFICIAL_DDIM_CONFIG,
    "algorithm_type": "dpmsolver++",
    "solver_order": 2,
    "timestep_spacing": "trailing",
    "lower_order_final": True,
}
UNIPC_CONFIG = {
    **OFFICIAL_DDIM_CONFIG,
    "solver_order": 2,
    "solver_type": "bh2",
    "predict_x0": True,
    "timestep_spacing": "trailing",
    "lower_order_final": True,
}

LCM_ORIGINAL_STEPS = 50  # the teacher's DDIM schedule the student was distilled on (skipping step k = 1000 / 50)
LCM_TIMESTEP_SCALING = 10.0  # c_skip/c_out are computed at t * 10 (sigma_data 0.5), as in the LCM paper

LCM_CONFIG = {
    **OFFICIAL_DDIM_CONFIG,
    "original_inference_steps": LCM_ORIGINAL_STEPS,
    "timestep_scaling": LCM_TIMESTEP_SCALING,
    "prediction_type": "epsilon",
}


@dataclass(frozen=True)
class SamplerSpec:
    """What the UI, the CLI and the pipeline need to know about a sampler."""

    name: str
    default_steps: int
    min_steps: int
    max_steps: int
    uses_guidance: bool  # False: guidance is baked into the model, no classifier-free doubling
    injects_noise: bool = False  # True: fresh noise between steps (drawn from the job's generator)
    supports_deepcache: bool = True  # False: DeepCache requests are ignored (too few steps to reuse features)
    needs_student: bool = False  # True: runs a distilled UNet (LCM), not the official weights


SAMPLERS = {
    "ddim": SamplerSpec("ddim", default_steps=20, min_steps=1, max_steps=100, uses_guidance=True),
    "dpmpp": SamplerSpec("dpmpp", default_steps=8, min_steps=4, max_steps=25, uses_guidance=True),
    "unipc": SamplerSpec("unipc", default_steps=8, min_steps=4, max_steps=25, uses_guidance=True),
    "lcm": SamplerSpec("lcm", default_steps=4, min_steps=1, max_steps=8, uses_guidance=False, injects_noise=True,
                       supports_deepcache=False, needs_student=True),
}


def make_scheduler(name: str = "ddim") -> SchedulerMixin:
    """A fresh scheduler for ``name`` (schedulers keep per-run state: one per pipeline)."""
    if name == "ddim":
        return DDIMScheduler.from_config(OFFICIAL_DDIM_CONFIG)
    if name == "dpmpp":
        return DPMSolverMultistepScheduler.from_config(DPMPP_CONFIG)
    if name == "unipc":
        return UniPCMultistepScheduler.from_config(UNIPC_CONFIG)
    if name == "lcm":
        return LCMScheduler.from_config(LCM_CONFIG)
    raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}")


def sampler_spec(scheduler: SchedulerMixin) -> SamplerSpec:
    """The spec of a scheduler instance; any other diffusers scheduler is treated like DDIM (guided, no noise)."""
    if isinstance(scheduler, LCMScheduler):
        return SAMPLERS["lcm"]
    if isinstance(scheduler, DDIMScheduler):
        return SAMPLERS["ddim"]
    if isinstance(scheduler, DPMSolverMultistepScheduler):
        return SAMPLERS["dpmpp"]
    if isinstance(scheduler, UniPCMultistepScheduler):
        return SAMPLERS["unipc"]
    return SamplerSpec(type(scheduler).__name__, 20, 1, 1000, uses_guidance=True)
