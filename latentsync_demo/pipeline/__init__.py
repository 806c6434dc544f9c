"""Generation: the chunked diffusion pipeline, its samplers and progress reports."""

from .lipsync import LipSyncPipeline, StepProgress
from .samplers import SAMPLERS, SamplerSpec, make_scheduler, sampler_spec

__all__ = ["LipSyncPipeline", "StepProgress", "SAMPLERS", "SamplerSpec", "make_scheduler", "sampler_spec"]
