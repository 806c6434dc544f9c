"""What a shared clip goes through, and reading the watermark back from windows of it.

Shared by tests/test_watermark.py (a few windows) and bench/bench_watermark.py (the real-face corpus).
``TRANSFORMS`` are the issue's re-encodes, rescales, crop and frame-rate changes, each one ffmpeg run on a whole
clip; ``excerpt`` cuts (and re-encodes) a window. ``SecondSums`` decodes a clip once and keeps its luma summed
per second, so that every window of it is read without decoding again: a window's reading is exactly what
``provenance.detect.scan`` would compute on a file holding only that window's frames.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..media import VideoWriter, iter_frames, iter_luma, probe, run_ffmpeg
from ..media.ffmpeg import fs_path
from ..provenance.detect import make_marker
from ..provenance.watermark import Detection, detect

H264 = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-an"]


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def _short_side_720(width: int, height: int) -> list[str]:
    """720p: the short side to 720 (a portrait 1080x1920 clip becomes 720x1280), aspect kept."""
    scale = 720 / min(width, height)
    return ["-vf", f"scale={_even(width * scale)}:{_even(height * scale)}"]


def _scaled(factor: float) -> Callable[[int, int], list[str]]:
    return lambda width, height: ["-vf", f"scale={_even(width * factor)}:{_even(height * factor)}"]


def _face_crop(width: int, height: int) -> list[str]:
    """70 % of the width and 50 % of the height, from 15 % / 8 %: the head and shoulders of a portrait talking
    head (both demo faces sit inside it), the rest cut away. The picture's size changes, the tile's does not."""
    return ["-vf", f"crop={_even(width * 0.7)}:{_even(height * 0.5)}:{_even(width * 0.15)}:{_even(height * 0.08)}"]


@dataclass(frozen=True)
class Transform:
    name: str
    args: Callable[[int, int], list[str]]  # (width, height) -> ffmpeg output options before the codec
    codec: tuple[str, ...] = (*H264, "-crf", "23")  # x264's default quality unless the transform is a codec
    suffix: str = ".mp4"


TRANSFORMS = (
    Transform("H.264 CRF 28, 720p", _short_side_720, (*H264, "-crf", "28")),
    Transform("H.264 CRF 35", lambda w, h: [], (*H264, "-crf", "35")),
    Transform("VP9 CRF 36 (web)", lambda w, h: [],
              ("-c:v", "libvpx-vp9", "-crf", "36", "-b:v", "0", "-deadline", "realtime", "-cpu-used", "8",
               "-row-mt", "1", "-pix_fmt", "yuv420p", "-an"), ".webm"),
    Transform("scale 0.9x", _scaled(0.9)),
    Transform("scale 1.1x", _scaled(1.1)),
    Transform("crop, face kept", _face_crop),
    Transform("25 -> 30 fps (blended)", lambda w, h: ["-vf", "framerate=fps=30"]),
    Transform("25 -> 24 fps (dropped)", lambda w, h: ["-vf", "fps=24"]),
)


def apply(transform: Transform, src: str | os.PathLike, out: str | os.PathLike, seconds: float | None = None
          ) -> Path:
    """``src`` (its first ``seconds``; all: None) through ``transform`` into ``out`` (the transform's suffix)."""
    info = probe(src)
    out = Path(out).with_suffix(transform.suffix)
    limit = [] if seconds is None else ["-t", f"{seconds:.3f}"]
    run_ffmpeg(["-y", "-i", fs_path(src), *limit, *transform.args(info.width, info.height), *transform.codec,
                fs_path(out)])
    return out


def excerpt(src: str | os.PathLike, out: str | os.PathLike, start: float, seconds: float = 1.0) -> Path:
    """``seconds`` of ``src`` from ``start``, cut frame-accurately and re-encoded (H.264 CRF 23), as an editor
    or a platform's clip tool makes one."""
    run_ffmpeg(["-y", "-ss", f"{start:.3f}", "-i", fs_path(src), "-t", f"{seconds:.3f}", *H264, "-crf", "23",
                fs_path(out)])
    return Path(out)


class SecondSums:
    """A clip's luma summed per second of its own frame rate (one decode), to read any whole-second window."""

    def __init__(self, path: str | os.PathLike):
        self.fps = probe(path).fps or 25.0
        self.sums: list[np.ndarray] = []
        self.counts: list[int] = []
        per_second = max(1, int(round(self.fps)))
        for i, luma in enumerate(iter_luma(path)):
            if i % per_second == 0:
                self.sums.append(np.zeros(luma.shape, np.float32))
                self.counts.append(0)
            self.sums[-1] += luma
            self.counts[-1] += 1

    @property
    def seconds(self) -> int:
        """Whole seconds held (a short last second is dropped from windows)."""
        return sum(1 for c in self.counts if c >= 0.9 * self.fps)

    def windows(self, length: int) -> list[int]:
        """Start seconds of every ``length``-second window."""
        return list(range(0, self.seconds - length + 1))

    def read(self, start: int, length: int, key: int) -> Detection:
        total = np.sum(self.sums[start:start + length], axis=0)
        frames = int(sum(self.counts[start:start + length]))
        return detect(total / frames, frames, key)


def mark_clip(src: str | os.PathLike, out: str | os.PathLike, job: int, key: int) -> Path:
    """Mark every frame of ``src`` (25 fps) as the job's paste-back stage does and write it as the job writes
    its output (H.264 CRF 18)."""
    info = probe(src)
    marker = make_marker(job, key, 256)
    with VideoWriter(out, info.width, info.height, 25) as writer:
        for frame in iter_frames(src):
            writer.write(marker.mark(frame, None))
    return Path(out)


def attack(src: str | os.PathLike, out: str | os.PathLike, height: int, crf: int = 28,
           frames: int | None = None) -> Path:
    """Re-encode the first ``frames`` frames (all: None) with H.264 at ``crf``, scaled to ``height`` (aspect kept)."""
    limit = [] if frames is None else ["-frames:v", str(frames)]
    run_ffmpeg(["-y", "-i", fs_path(src), "-vf", f"scale=-2:{height}", *limit, "-c:v", "libx264", "-crf", str(crf),
                "-pix_fmt", "yuv420p", "-an", fs_path(out)])
    return Path(out)
