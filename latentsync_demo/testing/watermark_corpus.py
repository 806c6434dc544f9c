"""Watermark robustness on one clip: mark as the pipeline does, attack (downscale + CRF 28), verify.

Shared by tests/test_watermark.py (50 synthetic clips) and bench/bench_watermark.py (any corpus, real faces).
"""

from __future__ import annotations

import os
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..face import FaceAligner
from ..media import VideoWriter, read_frames, run_ffmpeg
from ..media.ffmpeg import fs_path
from ..provenance.detect import OutputMarker, scan
from ..provenance.watermark import DEFAULT_KEY, Detection, bit_errors, crop_window


@dataclass(frozen=True)
class ClipResult:
    job: int
    psnr_face: float  # dB over the pasted face region (aligned crop mapped into the frame), worst frame
    psnr_marked: float  # dB over the pixels the mark changed (stricter), worst frame
    marked: Detection  # verification of the marked clip after the attack
    unmarked: Detection  # verification of the same clip, unmarked, after the same attack

    @property
    def bit_errors(self) -> int:
        return bit_errors(self.marked, self.job)


def attack(src: str | os.PathLike, out: str | os.PathLike, height: int, crf: int = 28,
           frames: int | None = None) -> Path:
    """Re-encode the first ``frames`` frames (all: None) with H.264 at ``crf``, scaled to ``height`` (aspect kept)."""
    limit = [] if frames is None else ["-frames:v", str(frames)]
    run_ffmpeg(["-y", "-i", fs_path(src), "-vf", f"scale=-2:{height}", *limit, "-c:v", "libx264", "-crf", str(crf),
                "-pix_fmt", "yuv420p", "-an", fs_path(out)])
    return Path(out)


def evaluate_clip(src: str | os.PathLike, job: int, workdir: Path, height: int, crf: int = 28,
                  max_frames: int | None = None, key: int = DEFAULT_KEY) -> ClipResult:
    """Mark ``src``'s frames (25 fps) with ``job``, write them as the pipeline does (H.264 CRF 18), attack,
    verify; attack and verify ``src`` itself the same way (the unmarked clip).

    ``key``: the watermark key; a corpus that reuses one face gives each clip its own key, so that the unmarked
    clips are independent trials of the false-positive rate (with one key they would all ask the same question).
    """
    frames = read_frames(src)[:max_frames]
    with closing(OutputMarker(job, key)) as mark:  # exactly as the pipeline marks its output frames
        marked, matrices = [], []
        for frame in frames:
            marked.append(mark(frame))
            matrices.append(mark.last_matrix)
    marked = np.stack(marked)
    psnr_face, psnr_marked = _psnr(frames, marked, matrices, FaceAligner(256).face_size)
    h, w = frames.shape[1:3]
    with VideoWriter(workdir / "marked.mp4", w, h, 25) as writer:
        writer.write_batch(marked)
    marked_path = attack(workdir / "marked.mp4", workdir / "marked_attacked.mp4", height, crf)
    unmarked_path = attack(src, workdir / "unmarked_attacked.mp4", height, crf, frames=len(frames))
    return ClipResult(job, psnr_face, psnr_marked, scan(marked_path, key), scan(unmarked_path, key))


def _psnr(frames, marked, matrices, face_size) -> tuple[float, float]:
    face_h, face_w = face_size
    worst_face, worst_marked = np.inf, np.inf
    for frame, out, matrix in zip(frames, marked, matrices):
        if matrix is None:
            continue
        window, local = crop_window(frame.shape, matrix, (0, face_h, 0, face_w))  # the face's bounding box
        region = cv2.warpAffine(np.ones((face_h, face_w), np.float32), local,
                                (window[1].stop - window[1].start, window[0].stop - window[0].start),
                                flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) > 0
        squared = np.square(out[window].astype(np.int32) - frame[window])  # (h, w, 3)
        changed = squared.max(axis=-1) > 0
        worst_face = min(worst_face, _db(squared[region].mean()))
        if changed.any():
            worst_marked = min(worst_marked, _db(squared[changed].mean()))
    return worst_face, worst_marked


def _db(mse: float) -> float:
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)
