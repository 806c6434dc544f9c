"""How many 16-frame chunks to denoise at once: from free device memory (the pipeline halves it on OOM); and how
long a chunk may be for a checkpoint trained on longer clips (hierarchical temporal attention)."""

from __future__ import annotations

import os

import torch

MAX_CHUNK_BATCH = 4  # beyond this a GPU is already saturated at 256 px; more only costs memory and latency


def chunk_memory_bytes(resolution: int, dtype: torch.dtype, guidance: bool = True, frames: int = 16) -> int:
    """Rough peak device memory of one chunk (UNet + VAE activations) for the LatentSync stage-2 architecture.

    UNet: about 48 live (frames, 320, R/8, R/8) maps at the peak, doubled by classifier-free guidance.
    VAE decoder: about 6 live (frames, 128, R, R) maps. An estimate, not a measurement: the pipeline
    halves the batch when a batch still runs out of memory.
    """
    item = torch.finfo(dtype).bits // 8
    unet = (2 if guidance else 1) * frames * 320 * (resolution // 8) ** 2 * item * 48
    vae = frames * 128 * resolution**2 * item * 6
    return unet + vae


def auto_chunk_batch(device: torch.device, resolution: int, dtype: torch.dtype, guidance: bool = True,
                     max_batch: int = MAX_CHUNK_BATCH, headroom: float = 0.7, frames: int = 16) -> int:
    """Chunks per batch that fit in ``headroom`` of the free memory of a CUDA device; 1 elsewhere (on a CPU
    batching gains nothing and one-by-one generation is bit-identical to the official loop)."""
    device = torch.device(device)
    if device.type != "cuda":
        return 1
    free, _ = torch.cuda.mem_get_info(device)
    fits = int(free * headroom // chunk_memory_bytes(resolution, dtype, guidance, frames))
    return max(1, min(max_batch, fits))


OFFICIAL_WINDOW = 16  # frames per chunk of the official pipeline (and of every checkpoint trained on 16)


def free_memory_bytes(device: torch.device | str) -> int | None:
    """Free memory of a CUDA device, or the host's available memory for a CPU (Linux); None if unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None


def auto_window_frames(device: torch.device | str, resolution: int, dtype: torch.dtype, wanted: int,
                       guidance: bool = True, headroom: float = 0.7) -> int:
    """Frames per chunk for a checkpoint trained on ``wanted``-frame clips: ``wanted`` if one such chunk fits in
    ``headroom`` of the free memory, else halved until it fits, never below the official 16 (nor above
    ``wanted``). Unknown free memory (e.g. MPS): 16."""
    window = max(OFFICIAL_WINDOW, int(wanted))
    if window == OFFICIAL_WINDOW:
        return window
    free = free_memory_bytes(device)
    if free is None:
        return OFFICIAL_WINDOW
    while window > OFFICIAL_WINDOW and chunk_memory_bytes(resolution, dtype, guidance, window) > free * headroom:
        window = max(OFFICIAL_WINDOW, window // 2)
    return window
