"""Streaming video decode (ffmpeg -> rgb24 pipe) and encode (rgb24 pipe -> ffmpeg H.264).

Frames are never all held in memory: decoding yields one frame at a time from ffmpeg's stdout, and the writer
pipes each frame into ffmpeg's stdin as it arrives. ffmpeg's stderr goes to a temporary file rather than a pipe,
so a chatty ffmpeg can never block on a full stderr pipe while we block on stdout/stdin.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from .ffmpeg import BASE_ARGS, ffmpeg_exe, fs_path, stderr_tail, widen_pipe
from .probe import MediaInfo, probe

MODEL_FPS = 25.0


def iter_frames(
    path: str | os.PathLike | MediaInfo, fps: float | None = MODEL_FPS, size: tuple[int, int] | None = None
) -> Iterator[np.ndarray]:
    """Yield the frames of `path` as (H, W, 3) uint8 RGB arrays, as displayed (rotation applied).

    `path` may be the file's `MediaInfo` from an earlier `probe` (then it is not probed again).
    fps: resample to this constant rate with ffmpeg's fps filter (works for variable-rate input); None keeps
    the file's own frames. size: (width, height) to scale to; None keeps the displayed size.
    The file is checked at once (InputError for bad input); ffmpeg starts at the first `next()`, and is
    killed and reaped when the iterator is closed or garbage-collected, so stopping early is cheap.
    """
    info = path if isinstance(path, MediaInfo) else probe(path)
    if not info.has_video:
        raise InputError(f"the file has no video stream: {info.path}. Pass a video (MP4, MOV, MKV, WEBM, AVI).")
    width, height = size or (info.width, info.height)
    filters = ([f"fps={fps}"] if fps else []) + ([f"scale={width}:{height}"] if size else [])
    # passthrough: the fps filter alone decides which frames come out; ffmpeg's default for rawvideo output
    # would otherwise duplicate frames of variable-rate input to a constant rate of its own choosing.
    args = ["-i", fs_path(info.path), "-map", "0:V:0", *(["-vf", ",".join(filters)] if filters else []),
            "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    return _decode(args, int(width), int(height), info.path)


def iter_luma(path: str | os.PathLike, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield the luma (Y) of ``path``'s own frames as (H, W) uint8 arrays (full range, as displayed): a third of
    the bytes of ``iter_frames`` for readers that need no colour (the watermark verifier)."""
    info = probe(path)
    if not info.has_video:
        raise InputError(f"the file has no video stream: {info.path}. Pass a video (MP4, MOV, MKV, WEBM, AVI).")
    limit = [] if max_frames is None else ["-frames:v", str(int(max_frames))]
    args = ["-i", fs_path(info.path), "-map", "0:V:0", *limit, "-fps_mode", "passthrough", "-f", "rawvideo",
            "-pix_fmt", "gray", "pipe:1"]
    return _decode(args, int(info.width), int(info.height), info.path, channels=1)


def _decode(args: list[str], width: int, height: int, name: str, channels: int = 3) -> Iterator[np.ndarray]:
    frame_bytes = width * height * channels
    shape = (height, width, channels) if channels > 1 else (height, width)
    count = 0
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([ffmpeg_exe(), *BASE_ARGS, *args], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=err)
        widen_pipe(proc.stdout)
        try:
            while True:
                frame = np.empty(shape, np.uint8)
                got = _read_into(proc.stdout, memoryview(frame).cast("B"))
                if got < frame_bytes:
                    break
                yield frame
                count += 1
            err.seek(0)
            log = err.read()
            done = f"after {count} frames" if count else "before the first frame"
            if b"partial file" in log:  # the demuxer ran out of data the index promised: a cut-off upload or copy
                # ffmpeg still exits 0 here; the frames so far would pass for a shorter video, so refuse instead.
                raise InputError(f"the video {name} is truncated: its data ends {done}, before the end its index "
                                 "lists. Copy or export it again and try again.",
                                 web=f"{os.path.basename(name)} is incomplete (the file is cut off {done}). "
                                     "Upload the whole file again.")
            if proc.wait() != 0 or got or not count:
                raise InputError(f"could not decode the video {name} ({done}; corrupt or unsupported?): "
                                 f"{stderr_tail(log)}. Re-export it as MP4 (H.264) and try again.",
                                 web=f"{os.path.basename(name)} could not be read to the end ({done}): it may be "
                                     "damaged or in an unusual format. Export it again as MP4 and upload it again.")
        finally:
            if proc.poll() is None:
                proc.kill()  # the consumer stopped early
            proc.stdout.close()
            proc.wait()  # reap, so no zombie remains


def _read_into(stream, buf: memoryview) -> int:
    """Fill `buf` from `stream`; returns the byte count, short only at end of stream."""
    filled = 0
    while filled < len(buf):
        n = stream.readinto(buf[filled:])
        if not n:
            break
        filled += n
    return filled


def iter_batches(
    path: str | os.PathLike, batch_size: int, fps: float | None = MODEL_FPS, size: tuple[int, int] | None = None
) -> Iterator[np.ndarray]:
    """Like `iter_frames`, grouped into (n, H, W, 3) arrays of `batch_size` frames (the last may be shorter)."""
    frames = iter_frames(path, fps, size)
    batch: list[np.ndarray] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


def read_frames(
    path: str | os.PathLike, fps: float | None = MODEL_FPS, size: tuple[int, int] | None = None
) -> np.ndarray:
    """All frames as one (n, H, W, 3) uint8 array. For short clips only; stream long ones with `iter_frames`."""
    return np.stack(list(iter_frames(path, fps, size)))


def h264_args(width: int, height: int, crf: int = 18, preset: str = "veryfast", keyint: int | None = None,
              video_filter: str | None = None) -> list[str]:
    """ffmpeg output options for a silent, widely playable H.264 yuv420p MP4 of an RGB input.

    ``keyint``: an IDR frame exactly every ``keyint`` frames and nowhere else (closed GOPs, no scene cuts), so
    whole GOPs can be replaced by re-encoded ones and the others copied (a redo); None: x264's own choice.
    ``video_filter``: an ffmpeg filter applied to the RGB frames first (burned-in subtitles,
    ``media.subtitles.burn_filter``); it sees each frame at its own timestamp, frame index / fps."""
    first = f"{video_filter}," if video_filter else ""
    gop = ["-g", str(keyint), "-keyint_min", str(keyint), "-sc_threshold", "0"] if keyint else []
    # yuv420p needs even dimensions: drop the odd last row/column rather than add a black line.
    even = f"crop={width - width % 2}:{height - height % 2}:0:0," if width % 2 or height % 2 else ""
    # Convert with and tag BT.709 so players show the same colours as the RGB frames.
    color = ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv"]
    return ["-an", "-vf", f"{first}{even}scale=out_color_matrix=bt709:out_range=tv,format=yuv420p",
            "-c:v", "libx264", "-preset", preset, "-crf", str(crf), *gop, *color, "-movflags", "+faststart"]


class VideoWriter:
    """Encode RGB frames into a video file through a pipe to ffmpeg, frame by frame.

    Default output: silent H.264 yuv420p MP4 (crf 18, faststart); add sound afterwards with `mux`.
    `input_args` / `output_args` let callers add inputs or replace the codec options (tests use this);
    `video_filter` draws on the frames as they are encoded (burned-in subtitles).
    Use as a context manager: on an exception inside the block the partial file is deleted.
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float = MODEL_FPS, *,
                 crf: int = 18, preset: str = "veryfast", input_args: Sequence[str] = (),
                 output_args: Sequence[str] | None = None, keyint: int | None = None,
                 video_filter: str | None = None):
        self.path, self.width, self.height, self.fps = Path(path), int(width), int(height), fps
        self.frames_written = 0
        if output_args is None:
            output_args = h264_args(self.width, self.height, crf, preset, keyint, video_filter)
        elif video_filter:
            raise ValueError("video_filter applies to the default H.264 options; put it in output_args instead")
        cmd = [ffmpeg_exe(), *BASE_ARGS, "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{self.width}x{self.height}", "-framerate", str(fps), "-i", "pipe:0",
               *input_args, *output_args, fs_path(self.path)]
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr)
        widen_pipe(self._proc.stdin)

    def write(self, frame: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 RGB frame."""
        self._check(frame)
        self._send(frame)
        self.frames_written += 1

    def write_batch(self, frames: np.ndarray | Iterable[np.ndarray]) -> None:
        """Append an (n, H, W, 3) uint8 array (one pipe write), or any iterable of frames."""
        if not (isinstance(frames, np.ndarray) and frames.ndim == 4):
            for frame in frames:
                self.write(frame)
        elif len(frames):
            self._check(frames[0])
            self._send(frames)
            self.frames_written += len(frames)

    def _check(self, frame: np.ndarray) -> None:
        shape, dtype = np.shape(frame), getattr(frame, "dtype", None)
        if shape != (self.height, self.width, 3) or dtype != np.uint8:
            raise ValueError(f"expected uint8 frames of shape {(self.height, self.width, 3)}, got {dtype} {shape}")

    def _send(self, data: np.ndarray) -> None:
        try:
            self._proc.stdin.write(np.ascontiguousarray(data).data)
        except (BrokenPipeError, OSError):
            self.abort()
            raise RuntimeError(f"ffmpeg stopped while encoding {self.path}: {self._error()}") from None

    def _error(self) -> str:
        self._stderr.seek(0)
        return stderr_tail(self._stderr.read())

    def close(self) -> None:
        """Finish the file; raises RuntimeError if ffmpeg failed (e.g. no frames were written)."""
        if self._stderr.closed:
            return
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg already exited; its exit code below tells why
        rc = self._proc.wait()
        message = self._error()
        self._stderr.close()
        if not self.frames_written:  # recent ffmpeg exits 0 here, leaving an unplayable file
            self.path.unlink(missing_ok=True)
            raise RuntimeError(f"no frames were written to {self.path}")
        if rc != 0:
            self.path.unlink(missing_ok=True)
            raise RuntimeError(f"ffmpeg could not write {self.path}: {message}")

    def abort(self) -> None:
        """Stop ffmpeg and delete the partial output."""
        if self._proc.poll() is None:
            self._proc.kill()
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        self._proc.wait()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
            self._stderr.close()
