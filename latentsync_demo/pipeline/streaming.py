"""The streaming job engine: decode -> landmarks -> align | generate | paste back -> encode, concurrently.

* ``FaceAnalysis`` (a thread) decodes the clip and aligns every frame's face while the UNet works. Aligned
  faces go to a file in the job folder (and, when frames will be needed out of order, the frames too), so host
  memory stays flat in the clip length; only a (2, 3) matrix and a flag per frame stay in RAM.
* The caller's thread pulls 16-frame chunks of aligned faces as the pipeline asks for them
  (``LipSyncPipeline.generate_stream``), waiting only for the frames that chunk needs.
* ``PasteBack`` (a thread) pastes finished chunks into the original frames and feeds the encoder, so it
  overlaps the next UNet batch; a bounded queue keeps at most a few chunks in flight.

Output frame ``i`` shows source frame ``plan.source(i)`` (the length rule is one separate mapping, see
``pipeline.length`` and ``pipeline.video``); a source frame without a face borrows the nearest frame's face for generation and is
written unchanged. Same computations in the same order as one pass after another, so the same output.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ..errors import InputError
from ..face import FaceAligner
from ..face.track import track_faces
from ..media import MODEL_FPS, iter_frames

_DONE = object()


class FrameStore:
    """Fixed-shape uint8 arrays appended to a file and read back by index, also while it is being written."""

    def __init__(self, path: Path, shape: tuple[int, ...]):
        self.path, self.shape, self.count = path, tuple(shape), 0
        self._size = int(np.prod(shape))
        self._file = open(path, "wb")
        self._fd = os.open(path, os.O_RDONLY)

    def append(self, array: np.ndarray) -> None:
        self._file.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())
        self._file.flush()
        self.count += 1

    def __getitem__(self, i: int) -> np.ndarray:
        data = os.pread(self._fd, self._size, i * self._size)
        return np.frombuffer(data, dtype=np.uint8).reshape(self.shape)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
            os.close(self._fd)


class FaceAnalysis(threading.Thread):
    """Landmarks and aligned faces of every 25 fps frame, published as they are found."""

    def __init__(self, video_path, resolution: int, face_index: int, make_detector: Callable, workdir: Path,
                 keep_frames: bool, num_out: int):
        super().__init__(name="face-analysis", daemon=True)
        self.video_path, self.resolution, self.face_index = video_path, resolution, face_index
        self.make_detector, self.workdir, self.keep_frames, self.num_out = make_detector, workdir, keep_frames, num_out
        self.faces = FrameStore(workdir / "faces.u8", (resolution, resolution, 3))
        self.frames: FrameStore | None = None  # every source frame, when they are needed out of order
        self.matrices: list[np.ndarray | None] = []
        self.size: tuple[int, int] | None = None  # width, height
        self.count, self.finished, self.error = 0, False, None
        self.stop = threading.Event()
        self._cond = threading.Condition()

    def run(self) -> None:
        detector, close = self.make_detector()
        self.counter = _FaceCounter(detector)
        tracked = track_faces(iter_frames(self.video_path, fps=MODEL_FPS), self.counter,
                              FaceAligner(self.resolution), self.face_index)
        try:
            for frame, aligned, matrix in tracked:
                if self.stop.is_set():
                    return
                self._add(frame, aligned, matrix)
            self._finish()
        except BaseException as exc:  # handed to the threads that wait on this one
            self.error = exc
        finally:
            tracked.close()
            close()
            with self._cond:
                self.finished = True
                self._cond.notify_all()

    def _add(self, frame, aligned, matrix) -> None:
        if self.size is None:
            self.size = (frame.shape[1], frame.shape[0])
            if self.keep_frames:
                self.frames = FrameStore(self.workdir / "frames.u8", frame.shape)
        if self.frames is not None:
            self.frames.append(frame)
        self.faces.append(aligned if aligned is not None else np.zeros(self.faces.shape, np.uint8))
        with self._cond:
            self.matrices.append(matrix)
            self.count += 1
            self._cond.notify_all()

    def _finish(self) -> None:
        if self.count == 0:
            raise InputError(f"could not read any frame from {Path(self.video_path).name}: is the file complete?")
        most = self.counter.most
        if all(m is None for m in self.matrices) and 0 < most <= self.face_index:
            raise InputError(
                f"Face index {self.face_index} asks for the {_ordinal(self.face_index + 1)} largest face, but the "
                f"video shows at most {most} face{'s' if most > 1 else ''}: choose "
                + ("0." if most == 1 else f"0 (the largest) to {most - 1}.")
            )
        if all(m is None for m in self.matrices):
            raise InputError(
                "no face was found in any frame of the video: upload a clip where one face is clearly visible "
                "(frontal, not too small)"
            )
        if self.frames is None and self.num_out > self.count:  # the probe under-counted: keep the frames now
            store = FrameStore(self.workdir / "frames.u8", (self.size[1], self.size[0], 3))
            for frame in iter_frames(self.video_path, fps=MODEL_FPS):
                store.append(frame)
            self.frames = store

    def wait(self, index: int | None = None, timeout: float | None = None) -> bool:
        """Block until frame ``index`` is analysed (None: the whole clip); re-raises the thread's error.
        Returns False on timeout."""
        with self._cond:
            ok = self._cond.wait_for(lambda: self.finished or (index is not None and self.count > index), timeout)
        if self.error is not None:
            raise self.error
        return ok

    @property
    def num_frames(self) -> int:
        self.wait()
        return self.count

    def face_source(self, s: int) -> int:
        """The frame whose face generation uses for source frame ``s``: itself, else the nearest frame with a
        face (the earlier one on a tie), waiting for later frames as far as needed."""
        self.wait(s)
        if self.matrices[s] is not None:
            return s
        before = next((j for j in range(s - 1, -1, -1) if self.matrices[j] is not None), None)
        j = s + 1
        while before is None or j - s < s - before:  # a later face could still be nearer
            self.wait(j)
            if j >= self.count:  # the clip ended
                break
            if self.matrices[j] is not None:
                return j
            j += 1
        return before

    def close(self) -> None:
        self.stop.set()
        self.join(timeout=30)
        self.faces.close()
        if self.frames is not None:
            self.frames.close()


class _FaceCounter:
    """A detector that remembers the most faces it saw in one frame (to explain a face index that is too high)."""

    def __init__(self, detector):
        self.detector, self.most = detector, 0

    def detect(self, frame: np.ndarray):
        faces = self.detector.detect(frame)
        self.most = max(self.most, len(faces))
        return faces

    def detect_many(self, frames: list[np.ndarray]):
        found = self.detector.detect_many(frames)
        self.most = max([self.most, *(len(faces) for faces in found)])
        return found

    def __getattr__(self, name: str):  # everything else (name, close, ...) is the wrapped detector's
        return getattr(self.detector, name)


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def face_chunks(analysis: FaceAnalysis, plan, audio_chunks: Callable[[range], torch.Tensor],
                num_frames: int = 16) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(faces (f, 3, R, R) uint8, audio (f, 50, d)) per chunk of generated output frames, read as the pipeline
    asks. ``plan``: ``source(i)`` (the source frame output frame i shows), ``is_generated(i)``."""
    start = 0
    while plan.is_generated(start):
        end = start + 1
        while end < start + num_frames and plan.is_generated(end):
            end += 1
        frames = range(start, end)
        faces = np.stack([analysis.faces[analysis.face_source(plan.source(i))] for i in frames])
        yield torch.from_numpy(faces).permute(0, 3, 1, 2), audio_chunks(frames)
        start = end


class PasteBack(threading.Thread):
    """Pastes generated chunks into the original frames and writes them, in output order.

    ``paste(frame, face, matrix)`` is the per-frame function (None matrix: the frame passes unchanged).
    After each chunk ``on_chunk(chunk_index, source, face, original, result, has_face)`` is called from this
    thread with the chunk's last frame that has a face (else its last frame). ``also(original, result)`` sees
    every written frame (e.g. the side-by-side video). ``skip_tail``: set before the last ``put(None)`` to end
    without the plan's pass-through frames (a stopped job).
    """

    def __init__(self, analysis: FaceAnalysis, video_path, plan, writer, paste: Callable,
                 on_chunk: Callable, max_chunks_in_flight: int = 2, also: Callable | None = None):
        super().__init__(name="paste-back", daemon=True)
        self.analysis, self.plan, self.writer, self.paste, self.on_chunk = analysis, plan, writer, paste, on_chunk
        self.video_path = video_path
        self.chunks: queue.Queue = queue.Queue(maxsize=max_chunks_in_flight)
        self.error: BaseException | None = None
        self.tail = 0  # pass-through frames written after the generated ones (length plan)
        self.also = also or (lambda original, result: None)
        self.skip_tail = False
        self._decoder, self._next = None, 0

    def original(self, s: int) -> np.ndarray:
        """Source frame ``s``: from the frame store when there is one, else from a second sequential decode."""
        frames = self.analysis.frames
        if frames is not None and frames.count > s:
            return frames[s]
        if s == self._next:
            if self._decoder is None:
                self._decoder = iter_frames(self.video_path, fps=MODEL_FPS)
            self._next += 1
            return next(self._decoder)
        self.analysis.wait()  # out of order: only the finished analysis has every frame stored
        if self.analysis.frames is None:
            raise RuntimeError(f"source frame {s} requested out of order but the frames were not kept")
        return self.analysis.frames[s]

    def put(self, item) -> None:
        """Hand over ``(chunk_index, start, faces (n, 3, R, R))`` or None (no more chunks); blocks when full."""
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.chunks.put(_DONE if item is None else item, timeout=0.5)
                return
            except queue.Full:
                continue

    def run(self) -> None:
        try:
            while (item := self.chunks.get()) is not _DONE:
                k, start, faces = item
                shown = None
                for j, face in enumerate(faces):
                    s = self.plan.source(start + j)
                    frame = self.original(s)
                    matrix = self.analysis.matrices[s]
                    result = self.paste(frame, face, matrix)
                    self.writer.write(result)
                    self.also(frame, result)
                    if matrix is not None or shown is None:
                        shown = (s, face, frame, result, matrix is not None)
                self.on_chunk(k, *shown)
            if self.skip_tail:
                return
            plan = self.plan.final()
            for s in plan.sources[plan.num_generated:]:  # pass-through frames always come last
                frame = self.original(s)
                self.writer.write(frame)
                self.also(frame, frame)
                self.tail += 1
        except BaseException as exc:
            self.error = exc
        finally:
            if self._decoder is not None:
                self._decoder.close()

    def abort(self) -> None:
        """Stop after the current frame (cancelled job): drop queued chunks and end the loop."""
        while True:
            try:
                self.chunks.get_nowait()
            except queue.Empty:
                break
        try:
            self.chunks.put_nowait(_DONE)
        except queue.Full:
            pass
        self.join(timeout=30)
