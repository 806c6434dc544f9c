"""Video in, video out: faces -> audio features -> chunked generation -> paste-back -> encode -> mux.

``lipsync_video`` is a generator of ``JobEvent``s (stage, progress fraction, a preview after every chunk)
ending with a ``done`` event that carries the output path. Closing the generator (a cancelled request)
stops ffmpeg and releases everything; the per-job temporary folder is always removed.

Length rule: the output follows the audio exactly (25 fps frames = round(audio seconds * 25)). A video
shorter than the audio plays forward and backward (ping-pong) as in the official code; a longer one is
cut at the end of the audio, or, with ``keep_video_tail``, continues with its original frames in silence.
Frames where no face is found pass through unchanged.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import torch

from ..errors import InputError
from ..face import FaceAligner
from ..face.landmarks import LandmarkDetector, make_detector
from ..face.track import track_faces
from ..media import MODEL_FPS, SAMPLE_RATE, VideoWriter, iter_frames, job_tempdir, load_audio, mux, probe
from .lipsync import LipSyncPipeline


@dataclass(frozen=True)
class GenerationSettings:
    sampler: str = "ddim"  # a key of pipeline.samplers.SAMPLERS
    num_inference_steps: int = 20
    guidance_scale: float = 1.5
    seed: int = 1247
    face_index: int = 0  # 0 = the largest face in the frame
    keep_video_tail: bool = False
    landmarks: str = "mediapipe"
    deepcache: bool = True  # reuse deep UNet features on 2 of 3 steps (official app/inference.sh default)


@dataclass(frozen=True)
class JobEvent:
    stage: str  # voice | reading | detecting faces | encoding audio | generating | writing | done
    fraction: float  # of the whole job, 0..1
    message: str
    chunk: int | None = None  # 1-based, for "generating"
    num_chunks: int | None = None
    preview: np.ndarray | None = field(default=None, repr=False)  # original | result, side by side
    output: Path | None = None
    audio: Path | None = None  # speech made for this job (voice cloning), playable before lip sync ends


# Share of the job's progress bar each stage gets (generation dominates the wall time).
_DETECT, _AUDIO, _GENERATE = 0.15, 0.05, 0.75


def pingpong_index(i: int, n: int) -> int:
    """Source frame for output frame ``i``: 0..n-1, n-1..0, 0..n-1, ... (the official loop)."""
    k = i % (2 * n)
    return k if k < n else 2 * n - 1 - k


@dataclass
class _Analysis:
    faces: list[np.ndarray | None]  # aligned (R, R, 3) uint8 per source frame, None where no face
    matrices: list[np.ndarray | None]
    frames: np.ndarray | None  # every source frame, only kept (on disk) when frames are needed out of order
    size: tuple[int, int]  # width, height


def lipsync_video(
    pipeline: LipSyncPipeline,
    audio_encoder,
    resolution: int,
    video_path: str | Path,
    audio_path: str | Path,
    out_path: str | Path,
    settings: GenerationSettings = GenerationSettings(),
    detector: LandmarkDetector | None = None,
) -> Iterator[JobEvent]:
    """Run one lip-sync job; see the module docstring. Raises InputError on unusable input."""
    out_path = Path(out_path)
    yield JobEvent("reading", 0.0, "reading the video and audio")
    info = probe(video_path)
    if not info.has_video:
        raise InputError(f"{Path(video_path).name} has no video stream: upload a video of a talking face")
    audio = load_audio(audio_path)
    num_out = int(round(len(audio) / SAMPLE_RATE * MODEL_FPS))
    if num_out < 1:
        raise InputError("the audio is shorter than one video frame (40 ms): upload speech audio")

    own_detector = detector is None
    detector = detector or make_detector(settings.landmarks)
    with job_tempdir() as workdir:
        try:
            analysis = yield from _analyse(video_path, info, resolution, settings, detector, num_out, workdir)
        finally:
            if own_detector:
                detector.close()

        yield JobEvent("encoding audio", _DETECT, "computing whisper audio features")
        features = audio_encoder.encode(audio)
        audio_chunks = audio_encoder.frame_chunks(features, fps=MODEL_FPS, frame_indices=range(num_out))

        num_src = len(analysis.faces)
        sources = [pingpong_index(i, num_src) for i in range(num_out)]
        stand_in = _nearest_face_index(analysis.faces)
        faces = torch.from_numpy(np.stack([analysis.faces[stand_in[s]] for s in sources])).permute(0, 3, 1, 2)

        silent_video = workdir / "video.mp4"
        width, height = analysis.size
        aligner = FaceAligner(resolution, device=pipeline.device)
        num_chunks = -(-num_out // 16)
        originals = _source_frames(video_path, analysis, sources)
        with closing(originals), VideoWriter(silent_video, width, height, MODEL_FPS) as writer:
            chunks = pipeline.generate_chunks(
                faces, audio_chunks, settings.num_inference_steps, settings.guidance_scale, settings.seed,
                deepcache=settings.deepcache,
            )
            for k, (start, generated) in enumerate(chunks):
                for j, face in enumerate(generated):
                    src = sources[start + j]
                    frame = next(originals)
                    matrix = analysis.matrices[src]
                    result = frame if matrix is None else aligner.restore_generated(frame, face, matrix)
                    writer.write(result)
                done = _DETECT + _AUDIO + _GENERATE * (k + 1) / num_chunks
                yield JobEvent("generating", done, f"generated chunk {k + 1} of {num_chunks}", k + 1, num_chunks,
                               preview=_side_by_side(frame, result))
            tail = 0
            if settings.keep_video_tail and num_src > num_out:
                yield JobEvent("writing", 0.96, "copying the rest of the video")
                for frame in originals:  # the file stream continues right after the last generated frame
                    writer.write(frame)
                    tail += 1

        yield JobEvent("writing", 0.97, "adding the audio track")
        mux(silent_video, audio_path, out_path, num_frames=num_out + tail)
    yield JobEvent("done", 1.0, f"wrote {out_path.name}", output=out_path)


def _analyse(video_path, info, resolution, settings, detector, num_out, workdir) -> Iterator[JobEvent]:
    """Pass 1: landmarks and aligned faces for every 25 fps source frame (a generator returning _Analysis)."""
    aligner = FaceAligner(resolution)
    expected = max(1, info.frames_at(MODEL_FPS))
    faces, matrices, store = [], [], None
    keep_frames = num_out > expected  # ping-pong will revisit frames backwards: keep them on disk
    tracked = track_faces(iter_frames(video_path, fps=MODEL_FPS), detector, aligner, settings.face_index)
    for i, (frame, aligned, matrix) in enumerate(tracked):
        if store is None and keep_frames:
            store = _FrameStore(workdir / "frames.u8", frame.shape)
        if store is not None:
            store.append(frame)
        faces.append(aligned)
        matrices.append(matrix)
        if i % 10 == 0:
            yield JobEvent("detecting faces", _DETECT * min(1.0, (i + 1) / expected),
                           f"finding the face: frame {i + 1} of {expected}")
    if not faces:
        raise InputError(f"could not read any frame from {Path(video_path).name}: is the file complete?")
    if all(f is None for f in faces):
        raise InputError(
            "no face was found in any frame of the video: upload a clip where one face is clearly visible "
            "(frontal, not too small)"
        )
    frame_h, frame_w = (store.shape[1:3] if store is not None else (info.height, info.width))
    if store is None and num_out > len(faces):  # the probe under-counted: read the frames again, keep them
        store = _FrameStore(workdir / "frames.u8", (frame_h, frame_w, 3))
        for frame in iter_frames(video_path, fps=MODEL_FPS):
            store.append(frame)
    return _Analysis(faces, matrices, store.frames() if store is not None else None, (frame_w, frame_h))


def _source_frames(video_path, analysis: _Analysis, sources: list[int]) -> Iterator[np.ndarray]:
    """Source frames in output order: straight from the file when that order is the file's own."""
    if analysis.frames is not None:
        return (analysis.frames[s] for s in sources)
    return iter_frames(video_path, fps=MODEL_FPS)


class _FrameStore:
    """Raw frames appended to a file in the job folder, read back as a memory map (keeps RAM flat)."""

    def __init__(self, path: Path, frame_shape: tuple[int, ...]):
        self.path, self.shape, self._file = path, (0, *frame_shape), open(path, "wb")

    def append(self, frame: np.ndarray) -> None:
        self._file.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
        self.shape = (self.shape[0] + 1, *self.shape[1:])

    def frames(self) -> np.ndarray:
        self._file.close()
        return np.memmap(self.path, dtype=np.uint8, mode="r", shape=self.shape)


def _nearest_face_index(faces: list[np.ndarray | None]) -> list[int]:
    """For each frame, the nearest frame that has a face (itself if it has one).

    Faceless frames still need some face in their 16-frame chunk; their output is discarded.
    """
    have = np.array([i for i, f in enumerate(faces) if f is not None])
    return [int(have[np.abs(have - i).argmin()]) for i in range(len(faces))]


def _side_by_side(original: np.ndarray, result: np.ndarray, height: int = 256) -> np.ndarray:
    scale = height / original.shape[0]
    size = (max(1, int(round(original.shape[1] * scale))), height)
    return np.hstack([cv2.resize(np.asarray(original), size, interpolation=cv2.INTER_AREA),
                      cv2.resize(result, size, interpolation=cv2.INTER_AREA)])
