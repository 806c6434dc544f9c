"""One lip-sync job, in one pass over the media: decode once -> faces -> generation -> restore + mark -> encode
once -> mux once (with the container tags).

``run_lipsync_job`` is a generator of ``JobEvent``s (stage, progress fraction, a preview after every chunk) ending
with a ``done`` (or ``stopped``) event that carries the output path. Closing the generator (a cancelled request)
stops ffmpeg and releases everything; the per-job temporary folder is always removed.

Length rule: ``plan.length_mode`` (see ``pipeline.length``). By default the output follows the audio exactly (25
fps frames = round(audio seconds * 25)): a video shorter than the audio plays forward and backward (ping-pong) as
in the official code; a longer one is cut at the end of the audio. Frames where no face is found pass through
unchanged.

The stages stream (``pipeline.streaming``): face analysis of later frames overlaps generation of earlier chunks,
and restoring/encoding finished chunks overlaps the next UNet batch. The inputs arrive probed and checked
(``latentsync_demo.request``); nothing here probes them again.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..errors import InputError, LatentSyncError
from ..face import FaceAligner
from ..media import MODEL_FPS, SAMPLE_RATE, MediaInfo, VideoWriter, job_tempdir, load_audio, mux, probe
from ..media.audio import silence_note, write_wav
from ..media.preview import CompareVideo, chunk_preview
from ..media.subtitles import burn_filter, read_srt
from ..provenance.detect import NoMarker
from ..settings import GenerationSettings, JobEvent
from .batching import OFFICIAL_WINDOW, auto_chunk_batch
from .dialogue import mix_speech, per_window, presence_notes, tracks_note
from .length import length_note, plan_length
from .lipsync import LipSyncPipeline
from .record import REDO_GOP, JobRecorder
from .streaming import FaceAnalysis, PasteBack, StreamingPlan, dialogue_chunks, face_chunks

# Share of the job's progress bar each stage gets (generation dominates the wall time).
_DETECT, _AUDIO, _GENERATE = 0.15, 0.05, 0.75
_TAIL_WRITTEN, _MUXING = 0.96, 0.97


def default_restore_workers() -> int:
    """Threads that restore frames: the cores left after generation and the face pass, at most 4 (restoring a
    frame costs a few ms; more threads only contend)."""
    return max(1, min(4, (os.cpu_count() or 1) - 2))


@dataclass(frozen=True)
class JobPlan:
    """What one run needs, resolved: the probed inputs, where to write, and what the user chose."""

    video: MediaInfo
    audio: MediaInfo
    out: Path
    settings: GenerationSettings
    length_mode: str
    window_frames: int = OFFICIAL_WINDOW  # frames per generated chunk
    compare: Path | None = None  # also write the original | result video here
    tags: Mapping[str, str] = field(default_factory=dict)  # container tags of the output, written by its mux
    compare_tags: Mapping[str, str] = field(default_factory=dict)
    # Keep a job record beside the output (``pipeline.record``; what a redo of a segment needs) with these
    # fields (preset, watermark, device, ...); None: no record, and the output is encoded as before.
    record_meta: Mapping | None = None
    # A dialogue: (face index, speech track) per person, each face lip-synced to its own track in this one job
    # (``pipeline.dialogue``); empty: one face (settings.face_index) and ``audio``. A dialogue keeps no record.
    speech: tuple[tuple[int, MediaInfo], ...] = ()
    # What the output plays: None = ``audio``, the speech the lips follow; else another track (e.g. the speech
    # mixed over the original room sound, or a dialogue's tracks mixed). Lip sync always follows ``audio`` (a
    # dialogue: each face its own track in ``speech``).
    soundtrack: MediaInfo | None = None
    subtitles: Path | None = None  # a SubRip file: muxed as a soft track (or burned in) and copied beside the output
    subtitle_language: str | None = None  # its language (XTTS code or ISO 639-2 tag); None: undetermined
    burn_subtitles: bool = False  # draw the subtitles into the frames instead of adding a soft track

    @property
    def played_audio(self) -> MediaInfo:
        """The track the output (and the side-by-side video) plays."""
        return self.soundtrack if self.soundtrack is not None else self.audio

    @property
    def subtitles_out(self) -> Path | None:
        """Where the job writes its subtitles beside the output: ``<out stem>.srt``."""
        return self.out.with_suffix(".srt") if self.subtitles is not None else None


@dataclass(frozen=True)
class StagePolicy:
    """How the CPU stages are scheduled. Every policy writes the same output; benchmarks compare them.

    ``restore_workers``: threads restoring frames. ``face_pass_first``: finish the face pass before generating
    (the official order). ``paste_each_chunk``: restore and write each chunk before generating the next (the
    official order). ``restore_device``: where frames are restored (None: the pipeline's device)."""

    restore_workers: int = field(default_factory=default_restore_workers)
    face_pass_first: bool = False
    paste_each_chunk: bool = False
    restore_device: str | None = None


def run_lipsync_job(pipeline: LipSyncPipeline, plan: JobPlan, detector, marker=None,
                    stop: threading.Event | None = None, stages: StagePolicy = StagePolicy()) -> Iterator[JobEvent]:
    """Run one job; see the module docstring. Raises InputError on unusable input.

    ``detector``: the landmark backend (kept open; the caller closes it). ``marker``: ``mark(frame, matrix)``
    for each finished frame (the invisible watermark, ``provenance.detect.make_marker``; None: unmarked). ``stop``: once set, the job
    ends after the chunk being generated and writes what is done so far (a playable video, audio cut to match),
    ending with a ``stopped`` event instead of ``done``.
    """
    yield JobEvent("reading", 0.0, "reading the speech")
    # Checked when the request was prepared. A dialogue's tracks drive one face each; their mix is what is heard.
    tracks = [load_audio(info, check_finite=False) for _, info in plan.speech] or [
        load_audio(plan.audio, check_finite=False)]
    audio = mix_speech(tracks) if plan.speech else tracks[0]
    num_out = int(round(len(audio) / SAMPLE_RATE * MODEL_FPS))
    if num_out < 1:
        raise InputError("the audio is shorter than one video frame (40 ms): upload speech audio")
    expected = max(1, plan.video.frames_at(MODEL_FPS))
    quiet = silence_note(audio)
    if quiet:  # told before the work starts; the job still runs (silence is a valid, if odd, request)
        yield JobEvent("reading", 0.0, "the speech is silent or nearly silent", notes=quiet)
    faces = [index for index, _ in plan.speech] or plan.settings.face_index
    with job_tempdir() as workdir:
        _check_scratch_space(workdir, plan.video, expected, pipeline.resolution, len(tracks))
        if plan.speech and plan.soundtrack is None:  # lives in the job folder until the mux
            write_wav(workdir / "soundtrack.wav", audio)
            plan = replace(plan, soundtrack=probe(workdir / "soundtrack.wav", "soundtrack"))
        # Burned subtitles: the cues and a font go into the job folder now, so a missing font fails before work.
        burn = burn_filter(read_srt(plan.subtitles), workdir) if plan.burn_subtitles and plan.subtitles else None
        # Stage 1 (threads): decode, landmarks, align. Host memory stays flat: frames and faces live in the job
        # folder, and the paste-back reads the frames from there (the one decode of the input video).
        analysis = FaceAnalysis(plan.video, pipeline.resolution, faces, detector, workdir)
        analysis.start()
        try:
            if stages.face_pass_first:
                analysis.wait()
            end = yield from _run_stages(pipeline, plan, analysis, tracks, workdir, num_out, expected,
                                         marker or NoMarker(), stop, stages, getattr(detector, "name", "landmarks"),
                                         burn)
        finally:
            analysis.close()
    notes = [quiet, tracks_note(faces, tracks) if plan.speech else "",
             length_note(expected, num_out, plan.length_mode) if end.stage == "done" else "", end.notes]
    yield replace(end, notes=" ".join(note for note in notes if note))


def _check_scratch_space(workdir: Path, video: MediaInfo, frames: int, resolution: int, people: int = 1) -> None:
    """Refuse a job whose decoded frames and faces (``people`` faces a frame) would not fit in the scratch folder,
    before it starts."""
    needed = frames * (video.width * video.height * 3 + people * resolution * resolution * 3)
    free = shutil.disk_usage(workdir).free
    if needed * 1.05 > free:
        raise LatentSyncError(
            f"this {video.width}x{video.height} clip needs about {needed / 1e9:.1f} GB of scratch space for its "
            f"decoded frames, but {workdir.parent} has {free / 1e9:.1f} GB free: free some space, point TMPDIR at a "
            "larger disk, or use a shorter or smaller clip.")


def _run_stages(pipeline, plan: JobPlan, analysis: FaceAnalysis, tracks, workdir: Path, num_out: int,
                expected: int, marker, stop, stages: StagePolicy, backend: str, burn: str | None = None
                ) -> Iterator[JobEvent]:
    """Stages 2-4: chunked generation in this thread, restore + mark + encode in others, then the one mux.
    ``tracks``: the speech samples, one track per followed face. ``burn``: the filter that draws the subtitles
    into the encoded frames. Returns the final ("done" or "stopped") event."""
    yield JobEvent("detecting faces", 0.0, f"finding the face ({backend})")
    while not analysis.wait(0, timeout=0.5):  # the first frame fixes the output size
        yield JobEvent("detecting faces", 0.0, f"finding the face ({backend})")
    settings, window = plan.settings, plan.window_frames
    length = StreamingPlan(analysis, num_out, plan.length_mode)
    yield JobEvent("encoding audio", _DETECT * min(1.0, analysis.count / expected), "computing whisper audio features")
    audio_chunks = [_audio_chunks(pipeline.audio_encoder, length, track, settings.audio_windows) for track in tracks]
    num_chunks = -(-plan_length(expected, num_out, plan.length_mode).num_generated // window)  # may still change
    aligner = FaceAligner(pipeline.resolution, device=stages.restore_device or pipeline.device)
    previews: queue.Queue = queue.Queue()

    def restore(frame: np.ndarray, face: torch.Tensor, matrix: np.ndarray | None) -> np.ndarray:
        return frame if matrix is None else aligner.restore_generated(frame, face, matrix)

    def on_chunk(k, source, face, frame, result, has_face) -> None:
        face = face[0] if isinstance(face, tuple) else face  # a dialogue's preview shows the first person
        face_in = np.array(analysis.faces[analysis.face_source(source)])
        previews.put((k, chunk_preview(face_in, face, frame, result, has_face, pipeline.resolution)))

    silent = workdir / "video.mp4"
    width, height = analysis.size
    recorder = JobRecorder(workdir) if plan.record_meta is not None and not plan.speech else None
    keyint = REDO_GOP if recorder is not None else None  # closed 1 s GOPs: a redo re-encodes only its own
    with CompareVideo(plan.compare, workdir, (width, height), MODEL_FPS) as compare, \
            VideoWriter(silent, width, height, MODEL_FPS, keyint=keyint, video_filter=burn) as writer:
        paster = PasteBack(analysis, length, writer, restore, marker.mark, on_chunk, compare.write,
                           workers=stages.restore_workers)
        paster.start()
        try:
            chunk_batch = settings.chunk_batch or auto_chunk_batch(
                pipeline.device, pipeline.resolution, pipeline.dtype, pipeline.uses_guidance(settings.guidance_scale),
                frames=window)
            chunks = _generated_windows(pipeline, analysis, length, audio_chunks, window, recorder, num_chunks,
                                        settings, chunk_batch)
            yield JobEvent("starting generation", _DETECT + _AUDIO, f"generating chunk 1 of {num_chunks}",
                           num_chunks=num_chunks)
            progress = _ChunkProgress(previews, paster, num_chunks, wait_each=stages.paste_each_chunk)
            for k, (start, generated) in enumerate(chunks):
                if recorder is not None:
                    recorder.add_generated(generated)
                paster.put((k, start, generated))
                yield from progress.after_chunk(k)
                if stop is not None and stop.is_set() and progress.generated < progress.num_chunks:
                    paster.skip_tail = True  # before the next chunk starts
                    chunks.close()
                    break
            paster.put(None)
            paster.join()
            if paster.error is not None:
                raise paster.error
            yield from progress.rest()
            if paster.tail:
                yield JobEvent("writing", _TAIL_WRITTEN, "copied the rest of the video")
        except BaseException:
            paster.abort()
            raise
        frames = writer.frames_written

    yield JobEvent("writing", _MUXING, "adding the audio track")
    soft = plan.subtitles if not plan.burn_subtitles else None
    mux(silent, plan.played_audio, plan.out, num_frames=frames, fps=MODEL_FPS, metadata=dict(plan.tags),
        subtitles=soft, subtitle_language=plan.subtitle_language if soft else None)
    subtitles = _copy_subtitles(plan)
    compared = compare.finish(plan.played_audio, frames, dict(plan.compare_tags))
    track = analysis.face_track() if analysis.finished and analysis.error is None else None  # the whole clip's
    if recorder is not None and not paster.skip_tail:  # a stopped job keeps no record: it has no whole result
        meta = {**plan.record_meta, **record_meta(plan, pipeline.resolution, frames)}
        recorder.write(plan.out, meta, Path(plan.video.path), Path(plan.audio.path), length.final().sources,
                       analysis.matrices, plan.subtitles if plan.burn_subtitles else None)
    elif recorder is not None:
        recorder.discard()
    lip_synced = length.final().sources[:min(frames, length.final().num_generated)]
    notes = presence_notes(analysis.followed, len(lip_synced), lip_synced) if plan.speech else ""
    if paster.skip_tail:
        done = _DETECT + _AUDIO + _GENERATE * progress.generated / progress.num_chunks
        return JobEvent("stopped", done, f"stopped after chunk {progress.generated} of {progress.num_chunks}: wrote "
                        f"{plan.out.name} ({frames / MODEL_FPS:.1f} s)", progress.generated, progress.num_chunks,
                        output=plan.out, frames=frames, compare=compared, face_track=track, subtitles=subtitles,
                        notes=notes)
    return JobEvent("done", 1.0, f"wrote {plan.out.name}", output=plan.out, frames=frames, compare=compared,
                    face_track=track, subtitles=subtitles, notes=notes)


def _copy_subtitles(plan: JobPlan) -> Path | None:
    """The job's subtitles copied to ``<out stem>.srt`` beside the output (for players and editors that read a
    sidecar, and for burned subtitles, which the MP4 holds only as pixels)."""
    target = plan.subtitles_out
    if target is None:
        return None
    if not (target.exists() and target.samefile(plan.subtitles)):
        shutil.copyfile(plan.subtitles, target)
    return target


def _audio_chunks(encoder, length: StreamingPlan, track: np.ndarray, windows: str):
    """``chunks(frames)``: the whisper features of output ``frames`` for one speech track (computed once)."""
    features = encoder.encode(length.driving_audio(track, round(SAMPLE_RATE / MODEL_FPS)), windows=windows)

    def audio_chunks(frames: range) -> torch.Tensor:
        return encoder.frame_chunks(features, fps=MODEL_FPS, frame_indices=frames)

    return audio_chunks


def _generated_windows(pipeline, analysis: FaceAnalysis, length: StreamingPlan, audio_chunks: list, window: int,
                       recorder: JobRecorder | None, num_chunks: int, settings: GenerationSettings, chunk_batch: int):
    """``(first output frame, generated faces)`` per window of output frames. One face: the pipeline's stream
    as is. A dialogue (one ``audio_chunks`` per person): every window is generated once per person, with that
    person's faces and speech, and handed on as one tuple of faces per window."""
    def stream(chunks, count: int):
        return pipeline.generate_stream(chunks, pipeline.resolution, count, settings.num_inference_steps,
                                        settings.guidance_scale, settings.seed, deepcache=settings.deepcache,
                                        chunk_batch=chunk_batch, output_device=None)

    if len(audio_chunks) == 1:
        return stream(_recorded(face_chunks(analysis, length, audio_chunks[0], window), recorder), num_chunks)
    windows: list[range] = []  # the output frames of every chunk handed to the pipeline, in order

    def chunks():
        for _, frames, faces, audio in dialogue_chunks(analysis, length, audio_chunks, window):
            windows.append(frames)
            yield faces, audio

    people = len(audio_chunks)
    return per_window(stream(chunks(), num_chunks * people), people, windows)


def _recorded(chunks, recorder: JobRecorder | None):
    """The face chunks on their way to the UNet, the input faces copied into the job record."""
    for faces, audio in chunks:
        if recorder is not None:
            recorder.add_inputs(faces)
        yield faces, audio


def record_meta(plan: JobPlan, resolution: int, frames: int) -> dict:
    """The job's own fields of its record (the service adds preset, watermark and device)."""
    return {"settings": asdict(plan.settings), "length_mode": plan.length_mode, "window_frames": plan.window_frames,
            "resolution": resolution, "tags": dict(plan.tags), "num_frames": frames}


class _ChunkProgress:
    """Turns finished chunks (previews from the paste-back thread) into "generating" events, in order."""

    def __init__(self, previews: queue.Queue, paster: PasteBack, num_chunks: int, wait_each: bool):
        self.previews, self.paster, self.num_chunks, self.wait_each = previews, paster, num_chunks, wait_each
        self.generated = self.reported = 0

    def after_chunk(self, k: int) -> Iterator[JobEvent]:
        """Events after chunk ``k`` was handed to the paste-back: the first preview as soon as it exists (with
        ``wait_each``: every chunk's), then whatever else is already finished."""
        self.generated = k + 1
        self.num_chunks = max(self.num_chunks, self.generated)
        must_wait = k if self.wait_each else 0
        while self.reported < self.num_chunks and (self.reported <= must_wait or not self.previews.empty()):
            if self.reported <= must_wait:
                try:
                    item = self.previews.get(timeout=0.5)
                except queue.Empty:
                    if self.paster.error is not None or not self.paster.is_alive():
                        return
                    continue
            else:
                item = self.previews.get_nowait()
            yield self._event(item)

    def rest(self) -> Iterator[JobEvent]:
        while not self.previews.empty():
            yield self._event(self.previews.get_nowait(), self.generated)

    def _event(self, item, num_chunks: int | None = None) -> JobEvent:
        k, preview = item
        self.reported += 1
        total = num_chunks or self.num_chunks
        return JobEvent("generating", _DETECT + _AUDIO + _GENERATE * (k + 1) / total,
                        f"generated chunk {k + 1} of {total}", k + 1, total, preview=preview)
