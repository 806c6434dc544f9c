"""Running as a Hugging Face Space: the ZeroGPU time estimate, the ``spaces.GPU`` wrapper and the start-up bootstrap.

Import this module before anything imports torch (app.py does): ZeroGPU's ``spaces`` package must be imported
first. Off a Space nothing here changes what a function does.
"""

from __future__ import annotations

try:  # ZeroGPU: `spaces` must be imported before torch
    import spaces
except ImportError:
    spaces = None

import math  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

from .download import link_from_hub_cache  # noqa: E402
from .media import MODEL_FPS, probe  # noqa: E402
from .pipeline import SAMPLERS  # noqa: E402
from .pipeline.batching import OFFICIAL_WINDOW  # noqa: E402
from .store import PRESETS  # noqa: E402

# ZeroGPU time per request: seconds per UNet batch row (one chunk of OFFICIAL_WINDOW frames) by preset, plus fixed
# and per-frame costs. Rough figures for an H200 slice; the quota is only charged for the time actually used.
GPU_SECONDS_PER_ROW = {"latentsync-1.5": 0.06, "latentsync-1.6": 0.2}
GPU_MIN_SECONDS, GPU_MAX_SECONDS = 40, int(os.environ.get("LATENTSYNC_GPU_MAX_SECONDS", 240))


def on_space() -> bool:
    """True on a Hugging Face Space (it sets SPACE_ID)."""
    return bool(os.environ.get("SPACE_ID"))


def gpu_seconds(media: str | Path | None, preset: str, sampler: str, steps: float | None, faces: int = 1) -> int:
    """How long to borrow a ZeroGPU for one job on ``media`` (the speech, else the video): UNet rows = chunks x
    steps (x2 with guidance) x ``faces`` (a dialogue generates each speaker's face), plus face detection,
    encoding and voice cloning. Unknown names count as DDIM on the slower preset."""
    try:
        seconds = probe(media).duration
    except Exception:  # the job reports bad input itself; borrow little for it
        return GPU_MIN_SECONDS
    return frames_gpu_seconds(seconds * MODEL_FPS, preset, sampler, steps, faces)


def frames_gpu_seconds(frames: float, preset: str, sampler: str, steps: float | None, faces: int = 1) -> int:
    """``gpu_seconds`` for ``frames`` generated frames (a job's, or a redone segment's), for ``faces`` faces."""
    spec = SAMPLERS.get(sampler, SAMPLERS["ddim"])
    rows = math.ceil(frames / OFFICIAL_WINDOW) * max(1, int(steps or spec.default_steps)) * max(1, faces)
    rows *= 2 if spec.uses_guidance else 1
    per_row = GPU_SECONDS_PER_ROW.get(preset, 0.2)
    estimate = 15 + 0.05 * frames + 1.5 * rows * per_row
    return int(min(GPU_MAX_SECONDS, max(GPU_MIN_SECONDS, estimate)))


def on_gpu(fn, duration=None):
    """``spaces.GPU`` on ZeroGPU, ``fn`` itself everywhere else. ``duration``: a callable that gets ``fn``'s own
    arguments and returns seconds (None: the ``spaces`` default, 60 s)."""
    if spaces is None:
        return fn
    return spaces.GPU(duration=duration)(fn) if duration is not None else spaces.GPU(fn)


def bootstrap(service, checkpoints: str | Path | None) -> None:
    """Space start-up: link the weights that ``preload_from_hub`` put in the Hugging Face cache at build time into
    the checkpoint folder, then load them, as ZeroGPU wants them on the device before any request."""
    for name in PRESETS:
        link_from_hub_cache(name, checkpoints)
    if not service.missing_files():
        service.models()
