"""Videos for people to look at in a browser: playable previews of uploads, and original | result comparisons.

Phones record HEVC, which Chromium does not play, so an upload in any codec other than H.264/VP8/VP9/AV1 gets an
H.264 copy for display (the job itself still reads the original). The comparison video holds the frames the
result was made from next to the result, so both halves always show the same moment (one player, one timeline).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .ffmpeg import fs_path, run_ffmpeg
from .mux import mux
from .probe import probe
from .video import VideoWriter, h264_args

BROWSER_CODECS = ("h264", "vp8", "vp9", "av1")
BROWSER_CONTAINERS = ("mov", "webm", "matroska", "ogg")  # ffmpeg's names; "mov" covers mp4/m4v/mov


def needs_preview(path: str | os.PathLike) -> bool:
    """Whether a browser cannot play ``path`` as it is (HEVC, ProRes, MPEG-4 part 2, AVI, ...)."""
    info = probe(path, "video")
    return info.has_video and (info.video_codec not in BROWSER_CODECS
                               or not info.container.startswith(BROWSER_CONTAINERS)
                               or Path(path).suffix.lower() in (".avi", ".flv", ".wmv", ".ts"))


def browser_preview(path: str | os.PathLike, out: str | os.PathLike, max_height: int = 720) -> Path:
    """An H.264/AAC MP4 copy of ``path`` at most ``max_height`` pixels high (phones' portrait clips stay light)."""
    info = probe(path)
    height = min(max_height, info.height - info.height % 2)
    audio = ["-c:a", "aac", "-b:a", "128k"] if info.has_audio else ["-an"]
    args = ["-y", "-i", fs_path(path), "-map", "0:V:0", *(["-map", "0:a:0"] if info.has_audio else []),
            "-vf", f"scale=-2:{height},format=yuv420p", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
            *audio, "-movflags", "+faststart", fs_path(out)]
    run_ffmpeg(args, input_error=f"could not make a browser preview of {Path(path).name}")
    return Path(out)


def side_by_side(original: np.ndarray, result: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(original | result), each resized to ``size`` (width, height) with area averaging."""
    return np.hstack([cv2.resize(np.asarray(original), size, interpolation=cv2.INTER_AREA),
                      cv2.resize(np.asarray(result), size, interpolation=cv2.INTER_AREA)])


class SideBySideWriter:
    """Writes (original | result) frame pairs, scaled to ``height`` pixels, as one silent H.264 video."""

    def __init__(self, path: str | os.PathLike, frame_size: tuple[int, int], fps: float, height: int = 480):
        width, frame_h = frame_size
        self.height = min(height, frame_h) // 2 * 2
        self.half = max(2, round(width * self.height / frame_h) // 2 * 2)
        self.writer = VideoWriter(path, 2 * self.half, self.height, fps,
                                  output_args=h264_args(2 * self.half, self.height, crf=23))

    def write(self, original: np.ndarray, result: np.ndarray) -> None:
        self.writer.write(side_by_side(original, result, (self.half, self.height)))

    @property
    def frames_written(self) -> int:
        return self.writer.frames_written

    def __enter__(self) -> SideBySideWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.writer.__exit__(*exc)


def scaled_side_by_side(original: np.ndarray, result: np.ndarray, height: int = 256) -> np.ndarray:
    """(original | result) at ``height`` pixels, each half keeping the frame's aspect ratio."""
    scale = height / original.shape[0]
    return side_by_side(original, result, (max(1, int(round(original.shape[1] * scale))), height))


def chunk_preview(face_in: np.ndarray, face_out, frame: np.ndarray, result: np.ndarray, has_face: bool,
                  resolution: int) -> np.ndarray:
    """The face crop the model saw | the crop it made, at least 256 px high, so the mouth is visible.

    face_in (R, R, 3) uint8, face_out (3, R, R) torch float in ~[-1, 1]; a chunk without any face shows whole
    frames instead.
    """
    if not has_face:
        return scaled_side_by_side(frame, result)
    made = ((face_out.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    pair = np.hstack([face_in, made])
    height = max(256, resolution)
    if pair.shape[0] != height:
        scale = height / pair.shape[0]
        pair = cv2.resize(pair, (round(pair.shape[1] * scale), height), interpolation=cv2.INTER_CUBIC)
    return pair


class CompareVideo:
    """The optional original | result video of a job (``path`` None: does nothing), written once: frames go to a
    silent file in the job folder, then ``finish`` muxes it with the speech and its tags into ``path``."""

    def __init__(self, path: str | os.PathLike | None, workdir: Path, frame_size: tuple[int, int], fps: float):
        self.path, self.fps = (Path(path) if path is not None else None), fps
        self.silent = workdir / "compare.mp4"
        self.writer = SideBySideWriter(self.silent, frame_size, fps) if self.path is not None else None

    def write(self, original: np.ndarray, result: np.ndarray) -> None:
        if self.writer is not None:
            self.writer.write(original, result)

    def finish(self, audio, frames: int, metadata: dict[str, str] | None = None) -> Path | None:
        if self.writer is None:
            return None
        return mux(self.silent, audio, self.path, num_frames=frames, fps=self.fps, metadata=metadata)

    def __enter__(self) -> CompareVideo:
        return self

    def __exit__(self, *exc) -> None:
        if self.writer is not None:
            self.writer.__exit__(*exc)
