"""Video in, video out: faces -> audio features -> chunked generation -> paste-back -> encode -> mux.

``lipsync_video`` is a generator of ``JobEvent``s (stage, progress fraction, a preview after every chunk)
ending with a ``done`` event that carries the output path. Closing the generator (a cancelled request)
stops ffmpeg and releases everything; the per-job temporary folder is always removed.

Length rule: ``settings.length_mode`` (see ``pipeline.length``). By default the output follows the audio
exactly (25 fps frames = round(audio seconds * 25)): a video shorter than the audio plays forward and
backward (ping-pong) as in the official code; a longer one is cut at the end of the audio, or, with
``keep_video_tail`` (= length mode keep-tail), continues with its original frames in silence.
Frames where no face is found pass through unchanged.

The stages stream (``pipeline.streaming``): face analysis of later frames overlaps generation of earlier
chunks, and paste-back/encoding of finished chunks overlaps the next UNet batch.
"""

from __future__ import annotations

import queue
import threading
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
from ..media import MODEL_FPS, SAMPLE_RATE, VideoWriter, job_tempdir, load_audio, mux, probe
from ..media.preview import side_by_side
from ..provenance.detect import make_marker
from .batching import OFFICIAL_WINDOW, auto_chunk_batch
from .length import LengthPlan, pingpong_index, plan_length, resolve_length_mode  # noqa: F401 (re-export)
from .lipsync import LipSyncPipeline
from .streaming import FaceAnalysis, PasteBack, face_chunks


@dataclass(frozen=True)
class GenerationSettings:
    sampler: str = "ddim"  # a key of pipeline.samplers.SAMPLERS
    num_inference_steps: int = 20
    guidance_scale: float = 1.5
    seed: int = 1247
    face_index: int = 0  # 0 = the largest face in the frame
    keep_video_tail: bool = False
    landmarks: str = "auto"  # auto: insightface when its files are there, else mediapipe (face.landmarks)
    length_mode: str | None = None  # a pipeline.length.LENGTH_MODES name; None: from keep_video_tail
    deepcache: bool = True  # reuse deep UNet features on 2 of 3 steps (official app/inference.sh default)
    chunk_batch: int = 0  # 16-frame chunks per UNet/VAE batch; 0 = from free device memory (1 on a CPU)
    watermark_job: int | None = 0  # 16-bit job number the invisible watermark carries (provenance); None: off
    window_frames: int = 0  # frames per generated chunk; 0 = 16 (official), the service raises it for hierarchical


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
    frames: int | None = None  # "done"/"stopped": frames in the output
    compare: Path | None = None  # "done"/"stopped": the original | result video, when one was asked for
    manifest: Path | None = None  # provenance sidecar (C2PA-style JSON) of the output, on the done event


# Share of the job's progress bar each stage gets (generation dominates the wall time).
_DETECT, _AUDIO, _GENERATE = 0.15, 0.05, 0.75


def lipsync_video(
    pipeline: LipSyncPipeline,
    audio_encoder,
    resolution: int,
    video_path: str | Path,
    audio_path: str | Path,
    out_path: str | Path,
    settings: GenerationSettings = GenerationSettings(),
    detector: LandmarkDetector | None = None,
    streaming: bool = True,
    paste_device: str | torch.device | None = None,
    stop: threading.Event | None = None,
    compare_path: str | Path | None = None,
) -> Iterator[JobEvent]:
    """Run one lip-sync job; see the module docstring. Raises InputError on unusable input.

    ``stop``: once set, the job ends after the chunk being generated and writes what is done so far (a playable
    video, audio cut to match), ending with a ``stopped`` event instead of ``done``. ``compare_path``: also
    write the original | result video there (one player keeps both halves in sync).

    For benchmarks only: ``streaming=False`` runs the stages one after another as the official code does
    (whole face pass first, each chunk pasted before the next is generated); ``paste_device`` pastes on
    another device than the pipeline's (e.g. "cpu", as the official code). Same output either way.
    """
    out_path = Path(out_path)
    yield JobEvent("reading", 0.0, "reading the video and audio")
    info = probe(video_path)
    if not info.has_video:
        raise InputError(f"{Path(video_path).name} has no video stream: upload a video of a talking face")
    audio = load_audio(audio_path)
    num_out = int(round(len(audio) / SAMPLE_RATE * MODEL_FPS))
    if num_out < 1:
        raise InputError("the audio is shorter than one video frame (40 ms): upload speech audio")

    expected = max(1, info.frames_at(MODEL_FPS))
    with job_tempdir() as workdir:
        # Stage 1 (a thread): decode, landmarks, align. Host memory stays flat: faces live in the job folder.
        analysis = FaceAnalysis(video_path, resolution, settings.face_index, _detector_factory(detector, settings),
                                workdir, keep_frames=num_out > expected, num_out=num_out)
        analysis.start()
        try:
            if not streaming:
                analysis.wait()
            end = yield from _generate(pipeline, audio_encoder, analysis, video_path, audio, audio_path, out_path,
                                       workdir, num_out, expected, settings, streaming, paste_device, stop,
                                       compare_path, getattr(detector, "name", settings.landmarks))
        finally:
            analysis.close()
    yield end


def _detector_factory(detector: LandmarkDetector | None, settings: GenerationSettings):
    """() -> (detector, close): the caller's detector (kept open), or a fresh one closed after the pass."""
    if detector is not None:
        return lambda: (detector, lambda: None)

    def make():
        own = make_detector(settings.landmarks)
        return own, own.close

    return make


def _generate(pipeline, audio_encoder, analysis, video_path, audio, audio_path, out_path, workdir, num_out, expected,
              settings, streaming=True, paste_device=None, stop=None, compare_path=None,
              backend: str = "landmarks") -> Iterator[JobEvent]:
    """Stages 2-3: chunked generation in this thread, paste-back and encoding in another, then the mux.
    Returns the final ("done" or "stopped") event."""
    yield JobEvent("detecting faces", 0.0, f"finding the face ({backend})")
    while not analysis.wait(0, timeout=0.5):  # the first frame fixes the output size
        yield JobEvent("detecting faces", 0.0, f"finding the face ({backend})")
    mode = resolve_length_mode(settings.length_mode, settings.keep_video_tail)
    plan = _StreamingPlan(analysis, num_out, mode)
    yield JobEvent("encoding audio", _DETECT * min(1.0, analysis.count / expected), "computing whisper audio features")
    features = audio_encoder.encode(plan.driving_audio(audio, round(SAMPLE_RATE / MODEL_FPS)))

    def audio_chunks(frames: range) -> torch.Tensor:
        return audio_encoder.frame_chunks(features, fps=MODEL_FPS, frame_indices=frames)

    resolution = analysis.resolution
    silent_video = workdir / "video.mp4"
    width, height = analysis.size
    aligner = FaceAligner(resolution, device=paste_device or pipeline.device)
    window = settings.window_frames or OFFICIAL_WINDOW  # frames per chunk (longer for hierarchical checkpoints)
    num_chunks = -(-plan_length(expected, num_out, mode).num_generated // window)  # for progress; may still change
    finished: queue.Queue = queue.Queue()

    mark = make_marker(settings.watermark_job, None, resolution)  # invisible provenance watermark

    def paste(frame: np.ndarray, face: torch.Tensor, matrix: np.ndarray | None) -> np.ndarray:
        """One output frame: the generated face pasted into its original frame (unchanged without a face),
        then watermarked."""
        result = frame if matrix is None else aligner.restore_generated(frame, face, matrix)
        return mark.mark(result, matrix)

    def on_chunk(k, source, face, frame, result, has_face) -> None:
        face_in = torch.from_numpy(np.array(analysis.faces[analysis.face_source(source)])).permute(2, 0, 1)
        finished.put((k, _chunk_preview(face_in, face, frame, result, has_face, resolution)))

    compare = _Compare(compare_path, workdir, (width, height))
    stopped = False
    with closing(mark), compare, VideoWriter(silent_video, width, height, MODEL_FPS) as writer:
        paster = PasteBack(analysis, video_path, plan, writer, paste, on_chunk=on_chunk, also=compare.write)
        paster.start()
        reported = total = 0
        try:
            chunk_batch = settings.chunk_batch or auto_chunk_batch(pipeline.device, resolution, pipeline.dtype,
                                                                   pipeline.uses_guidance(settings.guidance_scale),
                                                                   frames=window)
            chunks = pipeline.generate_stream(
                face_chunks(analysis, plan, audio_chunks, window), resolution, num_chunks, settings.num_inference_steps,
                settings.guidance_scale, settings.seed, deepcache=settings.deepcache, chunk_batch=chunk_batch,
                output_device=None,
            )
            yield JobEvent("starting generation", _DETECT + _AUDIO, f"generating chunk 1 of {num_chunks}",
                           num_chunks=num_chunks)
            for k, (start, generated) in enumerate(chunks):
                paster.put((k, start, generated))
                total = k + 1
                num_chunks = max(num_chunks, total)
                while reported < num_chunks and (reported <= (k if not streaming else 0) or not finished.empty()):
                    if reported <= (k if not streaming else 0):  # the first preview as soon as it exists
                        try:
                            item = finished.get(timeout=0.5)
                        except queue.Empty:
                            if paster.error is not None or not paster.is_alive():
                                break
                            continue
                    else:
                        item = finished.get_nowait()
                    reported += 1
                    yield _chunk_event(item, num_chunks)
                if stop is not None and stop.is_set() and total < num_chunks:  # before the next chunk starts
                    stopped = paster.skip_tail = True
                    chunks.close()
                    break
            paster.put(None)
            paster.join()
            if paster.error is not None:
                raise paster.error
            while not finished.empty():
                reported += 1
                yield _chunk_event(finished.get_nowait(), total)
            if paster.tail:
                yield JobEvent("writing", 0.96, "copied the rest of the video")
        except BaseException:
            paster.abort()
            raise
        frames = writer.frames_written

    yield JobEvent("writing", 0.97, "adding the audio track")
    mux(silent_video, audio_path, out_path, num_frames=frames)
    compared = compare.finish(audio_path, frames)
    if stopped:
        done = _DETECT + _AUDIO + _GENERATE * total / num_chunks
        return JobEvent("stopped", done, f"stopped after chunk {total} of {num_chunks}: wrote {out_path.name} "
                        f"({frames / MODEL_FPS:.1f} s)", total, num_chunks, output=out_path, frames=frames,
                        compare=compared)
    return JobEvent("done", 1.0, f"wrote {out_path.name}", output=out_path, frames=frames, compare=compared)


def _chunk_event(item, num_chunks: int) -> JobEvent:
    k, preview = item
    done = _DETECT + _AUDIO + _GENERATE * (k + 1) / num_chunks
    return JobEvent("generating", done, f"generated chunk {k + 1} of {num_chunks}", k + 1, num_chunks, preview=preview)


class _StreamingPlan:
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


def _side_by_side(original: np.ndarray, result: np.ndarray, height: int = 256) -> np.ndarray:
    scale = height / original.shape[0]
    size = (max(1, int(round(original.shape[1] * scale))), height)
    return side_by_side(original, result, size)


def _chunk_preview(face_in: torch.Tensor, face_out: torch.Tensor, frame: np.ndarray, result: np.ndarray,
                   has_face: bool, resolution: int) -> np.ndarray:
    """The face crop the model saw | the crop it made, at least 256 px high, so the mouth is visible.

    face_in (3, R, R) uint8, face_out (3, R, R) float in ~[-1, 1]; a chunk without any face shows whole frames.
    """
    if not has_face:
        return _side_by_side(frame, result)
    made = ((face_out.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    pair = np.hstack([face_in.permute(1, 2, 0).numpy(), made.permute(1, 2, 0).numpy()])
    height = max(256, resolution)
    if pair.shape[0] != height:
        scale = height / pair.shape[0]
        pair = cv2.resize(pair, (round(pair.shape[1] * scale), height), interpolation=cv2.INTER_CUBIC)
    return pair


class _Compare:
    """The optional original | result video of a job (``compare_path`` None: does nothing)."""

    def __init__(self, path: str | Path | None, workdir: Path, frame_size: tuple[int, int]):
        from ..media.preview import SideBySideWriter

        self.path = Path(path) if path is not None else None
        self.silent = workdir / "compare.mp4"
        self.writer = SideBySideWriter(self.silent, frame_size, MODEL_FPS) if self.path is not None else None

    def write(self, original: np.ndarray, result: np.ndarray) -> None:
        if self.writer is not None:
            self.writer.write(original, result)

    def finish(self, audio_path, frames: int) -> Path | None:
        if self.writer is None:
            return None
        return mux(self.silent, audio_path, self.path, num_frames=frames)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.writer is not None:
            self.writer.__exit__(*exc)
