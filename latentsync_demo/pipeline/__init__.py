"""Generation: the chunked diffusion pipeline, its samplers and progress reports."""

from .lipsync import LipSyncPipeline, StepProgress
from .samplers import SAMPLERS, make_scheduler

__all__ = ["LipSyncPipeline", "StepProgress", "SAMPLERS", "make_scheduler"]
