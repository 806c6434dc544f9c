"""DeepCache feature reuse, as the official LatentSync inference enables it (interval 3, branch 0).

DeepCache (Ma et al., CVPR 2024) notes that a UNet's deep features change slowly between denoising steps.
With branch 0 only the shallowest skip path is recomputed on "cached" steps:

* full step (step index ``k`` with ``k % interval == 0``, counted from 0 in every chunk): the ordinary forward;
  it keeps ``h*``, the output of the second-to-last layer of the final up block, (b*f, C0, h, w);
* cached step: time embedding, ``conv_in``, then only the final up block's last layer
  (resnet on ``[h*, conv_in(x)]`` -> spatial/audio attention -> motion module) and ``conv_norm_out``/``conv_out``.

This matches ``DeepCacheSDHelper(cache_interval=3, cache_branch_id=0)`` of DeepCache 0.1.1 on the official UNet
(``../shared/reference/README.md`` section 6). The schedule goes by the step index, not the timestep value, and
every chunk starts afresh, so one ``DeepCache`` per chunk (or per batch of chunks that step together).
"""

from __future__ import annotations

import torch


class DeepCache:
    """Per-chunk cache state; pass it to ``UNet3DConditionModel.forward(..., deepcache=cache)``.

    Call ``set_step(k)`` before the UNet call of denoising step ``k`` (0-based within the chunk).
    ``full_steps`` records, per call, whether the full UNet ran (for tests and benchmarks).
    """

    def __init__(self, interval: int = 3):
        if interval < 1:
            raise ValueError(f"DeepCache interval must be >= 1, got {interval}")
        self.interval = interval
        self.features: torch.Tensor | None = None  # h*, (b*f, C0, h, w)
        self.step = 0
        self.full_steps: list[bool] = []

    def reset(self) -> None:
        """Forget the cached features (a new chunk starts)."""
        self.features, self.step = None, 0

    def set_step(self, index: int) -> None:
        self.step = index

    @property
    def is_full_step(self) -> bool:
        """Full on step indices 0, interval, 2*interval, ... (and whenever nothing is cached yet)."""
        return self.features is None or self.step % self.interval == 0

    def store(self, features: torch.Tensor) -> None:
        self.features = features

    def cached(self, like: torch.Tensor) -> torch.Tensor:
        """h* for a cached step whose ``conv_in`` output is ``like`` (b*f, C0, h, w): same frames, same size."""
        h = self.features
        if h is None or h.shape[0] != like.shape[0] or h.shape[2:] != like.shape[2:]:
            got = None if h is None else tuple(h.shape)
            raise RuntimeError(f"DeepCache holds {got} but this step needs {tuple(like.shape)}: reset() per chunk")
        return h
