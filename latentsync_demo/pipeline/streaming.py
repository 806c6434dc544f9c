"""The streaming job engine: decode | landmarks + align | generate | restore + mark | encode, concurrently.

* ``FaceAnalysis`` (a thread, fed by a decoder thread through a bounded queue) finds and aligns every frame's face
  while the UNet works. Aligned faces and the decoded frames go to files in the job folder, so host memory stays
  flat in the clip length and the video is decoded exactly once; only a (2, 3) matrix and a flag per frame stay
  in RAM.
* The caller's thread pulls 16-frame chunks of aligned faces as the pipeline asks for them
  (``LipSyncPipeline.generate_stream``), waiting only for the frames that chunk needs.
* ``PasteBack`` (a thread) restores finished chunks into the stored frames on a pool of workers (frames stay in
  order), marks them and feeds the encoder, so it overlaps the next UNet batch; a bounded queue keeps at most a
  few chunks in flight.

Output frame ``i`` shows source frame ``plan.source(i)`` (the length rule is one separate mapping, see
``pipeline.length`` and ``StreamingPlan``); a source frame without a face borrows the nearest frame's face for
generation and is written unchanged. Same computations in the same order as one pass after another, so the same
output.
"""

from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from ..errors import InputError
from ..face import FaceAligner
from ..face.track import track_many_faces
from ..media import MODEL_FPS, MediaInfo, iter_frames
from ..settings import FaceTrack
from .length import LengthPlan, plan_length

_DONE = object()


class FrameStore:
    """Fixed-shape uint8 arrays appended to a file and read back by index, also while it is being written."""

    def __init__(self, path: Path, shape: tuple[int, ...]):
        self.path, self.shape, self.count = path, tuple(shape), 0
        self._size = int(np.prod(shape))
        self._file = open(path, "wb")
        self._fd = os.open(path, os.O_RDONLY)

    def append(self, array: np.ndarray) -> None:
        # A view of the array's own bytes: .tobytes() would copy a 6 MB 1080p frame first (~2 ms).
        self._file.write(memoryview(np.ascontiguousarray(array, dtype=np.uint8)).cast("B"))
        self._file.flush()
        self.count += 1

    def __getitem__(self, i: int) -> np.ndarray:
        data = os.pread(self._fd, self._size, i * self._size)
        return np.frombuffer(data, dtype=np.uint8).reshape(self.shape)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
            os.close(self._fd)


class FollowedFace:
    """One followed person's aligned faces (a ``FrameStore``), alignment matrices and boxes, frame by frame
    (None where the frame does not show that person)."""

    def __init__(self, face_index: int, resolution: int, path: Path):
        self.face_index = face_index
        self.faces = FrameStore(path, (resolution, resolution, 3))
        self.matrices: list[np.ndarray | None] = []
        self.boxes: list[tuple[float, float, float, float] | None] = []


class FaceAnalysis(threading.Thread):
    """Landmarks and aligned faces of every 25 fps frame, published as they are found; the frames themselves are
    kept in ``frames`` for the paste-back (the one decode of the job).

    ``face_index``: the person to follow, or a sequence of indices (a dialogue: ``followed[t]`` is the t-th
    person's faces and matrices, from one detection pass). ``faces`` and ``matrices`` are the first person's."""

    def __init__(self, video: MediaInfo, resolution: int, face_index: int | Sequence[int], detector, workdir: Path):
        super().__init__(name="face-analysis", daemon=True)
        indices = (face_index,) if isinstance(face_index, int) else tuple(face_index)
        self.video, self.resolution, self.face_index = video, resolution, indices[0]
        self.detector, self.workdir = detector, workdir
        self.followed = [FollowedFace(index, resolution, workdir / ("faces.u8" if t == 0 else f"faces-{t}.u8"))
                         for t, index in enumerate(indices)]
        self.faces, self.matrices = self.followed[0].faces, self.followed[0].matrices
        self.frames: FrameStore | None = None  # every decoded frame, created with the first one
        self.size: tuple[int, int] | None = None  # width, height
        self.count, self.finished, self.error = 0, False, None
        self.stop = threading.Event()
        self._cond = threading.Condition()

    def run(self) -> None:
        self.counter = _FaceCounter(self.detector)
        decoded = prefetch(iter_frames(self.video, fps=MODEL_FPS), maxsize=8, stop=self.stop)
        aligners = [FaceAligner(self.resolution) for _ in self.followed]  # each person's own smoothing
        tracked = track_many_faces(decoded, self.counter, aligners, [person.face_index for person in self.followed])
        try:
            for frame, found in tracked:
                if self.stop.is_set():
                    return
                self._add(frame, found)
            self._finish()
        except BaseException as exc:  # handed to the threads that wait on this one
            self.error = exc
        finally:
            tracked.close()
            decoded.close()
            with self._cond:
                self.finished = True
                self._cond.notify_all()

    def _add(self, frame, found) -> None:
        if self.frames is None:
            self.size = (frame.shape[1], frame.shape[0])
            self.frames = FrameStore(self.workdir / "frames.u8", frame.shape)
        self.frames.append(frame)
        for person, (aligned, _, _) in zip(self.followed, found):
            person.faces.append(aligned if aligned is not None else np.zeros(person.faces.shape, np.uint8))
        with self._cond:
            for person, (_, matrix, detection) in zip(self.followed, found):
                person.matrices.append(matrix)
                person.boxes.append(detection.box if detection is not None else None)
            self.count += 1
            self._cond.notify_all()

    def _finish(self) -> None:
        if self.count == 0:
            raise InputError(f"could not read any frame from {Path(self.video.path).name}: is the file complete?")
        if len(self.followed) > 1:  # a dialogue: every person given a speech track must be there
            for person in self.followed:
                if all(m is None for m in person.matrices):
                    raise InputError(f"face {person.face_index} was not found in any frame of the video: give speech "
                                     "tracks only to the faces the face listing shows")
            return
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

    def face_track(self) -> FaceTrack:
        """Every analysed frame's face boxes (the whole clip once the pass has finished)."""
        return FaceTrack(str(self.video.path), getattr(self.detector, "name", "landmarks"),
                         tuple(self.counter.boxes[:self.count]))

    def face_source(self, s: int, person: int = 0) -> int:
        """The frame whose face generation uses for source frame ``s``: itself, else the nearest frame with a
        face (the earlier one on a tie), waiting for later frames as far as needed. ``person``: which followed
        person's face (a dialogue; 0 otherwise)."""
        self.wait(s)
        matrices = self.followed[person].matrices
        if matrices[s] is not None:
            return s
        before = next((j for j in range(s - 1, -1, -1) if matrices[j] is not None), None)
        j = s + 1
        while before is None or j - s < s - before:  # a later face could still be nearer
            self.wait(j)
            if j >= self.count:  # the clip ended
                break
            if matrices[j] is not None:
                return j
            j += 1
        return before

    def close(self) -> None:
        self.stop.set()
        self.join(timeout=30)
        for person in self.followed:
            person.faces.close()
        if self.frames is not None:
            self.frames.close()


class _FaceCounter:
    """A detector that remembers the most faces it saw in one frame (to explain a face index that is too high)."""

    def __init__(self, detector):
        self.detector, self.most = detector, 0
        self.boxes: list[np.ndarray] = []  # per frame, (k, 5) [x0, y0, x1, y1, 1]: what the lip-sync score reuses

    def detect(self, frame: np.ndarray):
        faces = self.detector.detect(frame)
        self._saw(faces)
        return faces

    def detect_many(self, frames: list[np.ndarray]):
        found = self.detector.detect_many(frames)
        for faces in found:
            self._saw(faces)
        return found

    def _saw(self, faces) -> None:
        self.most = max(self.most, len(faces))
        self.boxes.append(np.array([[*face.box, 1.0] for face in faces], np.float64).reshape(-1, 5))

    def __getattr__(self, name: str):  # everything else (name, close, ...) is the wrapped detector's
        return getattr(self.detector, name)


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def generated_windows(plan, num_frames: int = 16) -> Iterator[range]:
    """The output frames of each generated chunk, in order (``plan.is_generated(i)``, asked as late as possible)."""
    start = 0
    while plan.is_generated(start):
        end = start + 1
        while end < start + num_frames and plan.is_generated(end):
            end += 1
        yield range(start, end)
        start = end


def _person_faces(analysis: FaceAnalysis, plan, frames: range, person: int = 0) -> torch.Tensor:
    store = analysis.followed[person].faces
    faces = np.stack([store[analysis.face_source(plan.source(i), person)] for i in frames])
    return torch.from_numpy(faces).permute(0, 3, 1, 2)


def face_chunks(analysis: FaceAnalysis, plan, audio_chunks: Callable[[range], torch.Tensor],
                num_frames: int = 16) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(faces (f, 3, R, R) uint8, audio (f, 50, d)) per chunk of generated output frames, read as the pipeline
    asks. ``plan``: ``source(i)`` (the source frame output frame i shows), ``is_generated(i)``."""
    for frames in generated_windows(plan, num_frames):
        yield _person_faces(analysis, plan, frames), audio_chunks(frames)


def dialogue_chunks(analysis: FaceAnalysis, plan, audio_chunks: Sequence[Callable[[range], torch.Tensor]],
                    num_frames: int = 16) -> Iterator[tuple[int, range, torch.Tensor, torch.Tensor]]:
    """``(person, output frames, faces, audio)`` per chunk of a dialogue: each window of output frames once per
    followed person, in ``analysis.followed`` order, with that person's faces and that person's own speech
    features (``audio_chunks[person]``), so no face is ever driven by another's speech."""
    for frames in generated_windows(plan, num_frames):
        for person, person_audio in enumerate(audio_chunks):
            yield person, frames, _person_faces(analysis, plan, frames, person), person_audio(frames)


class PasteBack(threading.Thread):
    """Restores generated chunks into the stored original frames, marks and writes them, in output order.

    ``restore(frame, face, matrix)`` is the per-frame paste (None matrix: the frame passes unchanged); it runs on
    ``workers`` threads (OpenCV and torch release the GIL), the results are taken back in order. ``mark(frame,
    matrix)`` (the watermark, on every output frame) then runs here, in output order, and ``writer.write`` gets
    the frame. After each chunk
    ``on_chunk(chunk_index, source, face, original, result, has_face)`` is called from this thread with the
    chunk's last frame that has a face (else its last frame). ``compare(original, result)`` sees every written
    frame (the side-by-side video). ``skip_tail``: set before the last ``put(None)`` to end without the plan's
    pass-through frames (a stopped job).
    """

    def __init__(self, analysis: FaceAnalysis, plan, writer, restore: Callable, mark: Callable, on_chunk: Callable,
                 compare: Callable, workers: int = 1, max_chunks_in_flight: int = 2):
        super().__init__(name="paste-back", daemon=True)
        self.analysis, self.plan, self.writer, self.on_chunk = analysis, plan, writer, on_chunk
        self.restore, self.mark, self.compare, self.workers = restore, mark, compare, max(1, int(workers))
        self.chunks: queue.Queue = queue.Queue(maxsize=max_chunks_in_flight)
        self.error: BaseException | None = None
        self.tail = 0  # pass-through frames written after the generated ones (length plan)
        self.skip_tail = False

    def original(self, s: int) -> np.ndarray:
        """Source frame ``s`` from the face pass's frame store (waiting for it to be decoded if need be)."""
        self.analysis.wait(s)
        return self.analysis.frames[s]

    def put(self, item) -> None:
        """Hand over ``(chunk_index, start, faces (n, 3, R, R))`` or None (no more chunks); blocks when full.
        A dialogue's ``faces`` is a tuple with one such tensor per followed person."""
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.chunks.put(_DONE if item is None else item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _restore(self, s: int, face) -> tuple[np.ndarray, np.ndarray]:
        frame = self.original(s)
        if not isinstance(face, tuple):
            return frame, self.restore(frame, face, self.analysis.matrices[s])
        result = frame  # a dialogue: each person's face pasted in turn, where that person is in this frame
        for person, person_face in zip(self.analysis.followed, face):
            result = self.restore(result, person_face, person.matrices[s])
        return frame, result

    def _has_face(self, s: int) -> bool:
        return any(person.matrices[s] is not None for person in self.analysis.followed)

    def _write(self, s: int, frame: np.ndarray, result: np.ndarray) -> np.ndarray:
        result = self.mark(result, self.analysis.matrices[s])  # every output frame, face or not
        self.writer.write(result)
        self.compare(frame, result)
        return result

    def run(self) -> None:
        try:
            with ThreadPoolExecutor(self.workers, thread_name_prefix="restore") as pool:
                while (item := self.chunks.get()) is not _DONE:
                    k, start, faces = item
                    faces = list(zip(*faces)) if isinstance(faces, tuple) else faces  # a dialogue: per frame
                    sources = [self.plan.source(start + j) for j in range(len(faces))]
                    shown = None
                    for s, face, (frame, result) in zip(sources, faces, pool.map(self._restore, sources, faces)):
                        result = self._write(s, frame, result)
                        if self._has_face(s) or shown is None:
                            shown = (s, face, frame, result, self._has_face(s))
                    self.on_chunk(k, *shown)
            if self.skip_tail:
                return
            plan = self.plan.final()
            for s in plan.sources[plan.num_generated:]:  # pass-through frames always come last
                frame = self.original(s)
                self._write(s, frame, frame)  # marked too: an excerpt of any part of the output carries the mark
                self.tail += 1
        except BaseException as exc:
            self.error = exc

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


class StreamingPlan:
    """The length plan (``pipeline.length.plan_length``) of a clip whose frames are still being analysed.

    Every length mode shows source frame i at output frame i, lip-synced, while i is below both the speech
    length and the source frame count; only past that does the plan need the final count, so only then
    does it wait for the face pass to finish.
    """

    def __init__(self, analysis: FaceAnalysis, num_audio: int, mode: str):
        self.analysis, self.num_audio, self.mode = analysis, num_audio, mode
        self._final: LengthPlan | None = None

    def final(self) -> LengthPlan:
        if self._final is None:
            self._final = plan_length(self.analysis.num_frames, self.num_audio, self.mode)
        return self._final

    def _in_order(self, i: int) -> bool:
        if i >= self.num_audio:
            return False
        self.analysis.wait(i)  # until frame i is analysed or the clip has ended
        return i < self.analysis.count

    def source(self, i: int) -> int:
        return i if self._in_order(i) else self.final().sources[i]

    def is_generated(self, i: int) -> bool:
        return self._in_order(i) or i < self.final().num_generated

    def driving_audio(self, samples: np.ndarray, samples_per_frame: int) -> np.ndarray:
        """The speech padded with silence to cover the generated frames. Their count depends on the source
        frame count only for "cut" and "pad-silence" (which therefore wait for the face pass here)."""
        if self.mode in ("cut", "pad-silence"):
            return self.final().driving_audio(samples, samples_per_frame)
        return plan_length(self.num_audio, self.num_audio, self.mode).driving_audio(samples, samples_per_frame)


def prefetch(items: Iterable, maxsize: int, stop: threading.Event | None = None) -> Iterator:
    """Iterate ``items`` on a thread of its own, at most ``maxsize`` ahead of the consumer (a bounded queue
    between two stages). Errors reach the consumer; closing the returned generator stops the producer."""
    buffer: queue.Queue = queue.Queue(maxsize=maxsize)
    done = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not _offer(buffer, (True, item), done):
                    if done.is_set() or (stop is not None and stop.is_set()):
                        return
        except BaseException as exc:
            _offer(buffer, (False, exc), done, wait=True)
            return
        finally:
            if hasattr(items, "close"):
                items.close()
        _offer(buffer, (False, None), done, wait=True)

    thread = threading.Thread(target=produce, name="decode", daemon=True)
    thread.start()

    def consume() -> Iterator:
        try:
            while True:
                ok, item = buffer.get()
                if not ok:
                    if item is not None:
                        raise item
                    return
                yield item
        finally:
            done.set()
            thread.join(timeout=30)

    return consume()


def _offer(buffer: queue.Queue, entry, done: threading.Event, wait: bool = False) -> bool:
    """Put ``entry`` unless the consumer is gone; a short timeout so the producer notices ``done``."""
    while True:
        try:
            buffer.put(entry, timeout=0.2)
            return True
        except queue.Full:
            if done.is_set() or not wait:
                return False
