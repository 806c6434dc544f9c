"""Sanity metric: PSNR / SSIM of a lip-synced result against its source video *outside* the mouth region.

Lip sync should change the mouth and nothing else, so outside it the result must stay close to the source
(a paste-back, colour or alignment bug shows up here at once). The excluded region per frame is the lower half
of every detected face box, widened by 10 % and extended 10 % below the chin, the area LatentSync's mask lets
the model repaint. Frame i of the result is compared with source frame i (25 fps, the first
min(lengths) frames: a result longer than its source, which loops the source back and forth, is compared on
the first pass only). SSIM is computed on frames scaled to at most 512 px (speed), PSNR at full size.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..media import MODEL_FPS, iter_frames, probe
from .faces import BoxDetector

SSIM_SIDE = 512


@dataclass(frozen=True)
class Fidelity:
    psnr: float  # dB, mean over frames (inf frames, i.e. identical, count as 100 dB)
    ssim: float  # mean SSIM over the kept pixels, mean over frames
    frames: int


def keep_mask(shape: tuple[int, int], boxes: np.ndarray) -> np.ndarray:
    """(H, W) bool: False on the lower half (+ margins) of each (x0, y0, x1, y1) face box."""
    h, w = shape
    keep = np.ones((h, w), bool)
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        bw, bh = x1 - x0, y1 - y0
        top, bottom = int((y0 + y1) / 2), int(np.ceil(y1 + 0.1 * bh))
        left, right = int(x0 - 0.1 * bw), int(np.ceil(x1 + 0.1 * bw))
        keep[max(top, 0):max(bottom, 0), max(left, 0):max(right, 0)] = False
    return keep


def frame_fidelity(result: np.ndarray, source: np.ndarray, keep: np.ndarray) -> tuple[float, float]:
    """(PSNR dB, SSIM) of two (H, W, 3) uint8 frames over the pixels where ``keep``."""
    from skimage.metrics import structural_similarity

    diff = result.astype(np.float64) - source.astype(np.float64)
    mse = float((diff[keep] ** 2).mean()) if keep.any() else 0.0
    psnr = 100.0 if mse == 0 else min(100.0, 10 * np.log10(255.0**2 / mse))
    scale = min(1.0, SSIM_SIDE / max(result.shape[:2]))
    if scale < 1.0:
        size = (round(result.shape[1] * scale), round(result.shape[0] * scale))
        result, source = (cv2.resize(x, size, interpolation=cv2.INTER_AREA) for x in (result, source))
        keep = cv2.resize(keep.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    _, ssim_map = structural_similarity(result, source, channel_axis=2, data_range=255, full=True)
    ssim_map = ssim_map.mean(axis=2)
    return psnr, float(ssim_map[keep].mean()) if keep.any() else 1.0


def fidelity_outside_mouth(result: str | Path, source: str | Path, detect: BoxDetector,
                           detect_every: int = 5) -> Fidelity:
    """Compare ``result`` with ``source`` outside the mouth (faces found on the result every n frames)."""
    info = probe(result)
    size = (info.width, info.height)
    psnrs, ssims, boxes = [], [], np.zeros((0, 4))
    out, src = iter_frames(result, fps=MODEL_FPS), iter_frames(source, fps=MODEL_FPS, size=size)
    with closing(out), closing(src):
        for i, (a, b) in enumerate(zip(out, src)):
            if i % detect_every == 0:
                found = detect(a)
                boxes = found[:, :4] if len(found) else boxes  # keep the last boxes through missed frames
            psnr, ssim = frame_fidelity(a, b, keep_mask(a.shape[:2], boxes))
            psnrs.append(psnr)
            ssims.append(ssim)
    if not psnrs:
        return Fidelity(float("nan"), float("nan"), 0)
    return Fidelity(float(np.mean(psnrs)), float(np.mean(ssims)), len(psnrs))
