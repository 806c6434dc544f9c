"""Redo a segment of a finished job: regenerate output frames [start, end) with other settings, keep the rest.

What stays bit-identical, and why: a recorded job's output is H.264 in closed GOPs of ``REDO_GOP`` frames (an
IDR every second, nothing referencing across it). The redo re-encodes only the GOPs that hold a redone frame
(the "region": the span rounded out to whole GOPs) and copies every other GOP's packets from the first output
unchanged, so every frame outside the region decodes to exactly the same pixels. The region's frames outside
the span are rebuilt from the record (the same source frames, the same generated faces, the same paste-back
and watermark), so only the new encode of their GOP touches them (lossy, as any H.264 encode; measured in
``bench/redo_record.py``). Inside the span the first and last ``CROSSFADE_FRAMES`` frames blend the old and
the new face, so the mouth does not jump at the span's edges. Subtitles burned into the first output are burned
into the region again (the record keeps them: the same cues at the same frame times, with the same font), and a
soft subtitle track is copied with the soundtrack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ..errors import InputError, LatentSyncError
from ..face import FaceAligner
from ..media import MODEL_FPS, SAMPLE_RATE, VideoWriter, iter_frames, job_tempdir, load_audio
from ..media.ffmpeg import fs_path, run_ffmpeg
from ..media.subtitles import burn_filter, find_subtitle_font, read_srt, shift_cues
from ..settings import GenerationSettings, JobEvent
from .length import plan_length
from .lipsync import LipSyncPipeline
from .record import JobRecord
from .streaming import FrameStore

CROSSFADE_FRAMES = 3  # frames at each edge of the span that blend the first result's face into the new one


@dataclass(frozen=True)
class RedoSpan:
    """Output frames [start, end) are regenerated; GOP frames [region_start, region_end) are re-encoded."""

    start: int
    end: int
    region_start: int
    region_end: int


def check_span(record: JobRecord, start: float, end: float) -> RedoSpan:
    """The span of seconds [start, end) as output frames; InputError for a span that is reversed, empty,
    outside the clip, or over frames the job did not lip-sync; and a missing font for burned-in subtitles."""
    if record.burned_subtitles is not None:
        find_subtitle_font("".join(cue.text for cue in read_srt(record.burned_subtitles)))
    seconds = record.num_frames / MODEL_FPS
    if not (math.isfinite(start) and math.isfinite(end)):
        raise InputError(f"the span {start}-{end} s is not a pair of numbers: give --start and --end in seconds")
    if end <= start:
        raise InputError(f"the span {start:g}-{end:g} s is {'empty' if end == start else 'reversed'}: the end "
                         f"must come after the start (the clip is 0-{seconds:.2f} s)")
    if start < 0 or end > seconds + 0.5 / MODEL_FPS:
        raise InputError(f"the span {start:g}-{end:g} s is outside the clip, which lasts {seconds:.2f} s: choose "
                         f"a span within 0-{seconds:.2f} s")
    first, stop = round(start * MODEL_FPS), min(round(end * MODEL_FPS), record.num_frames)
    if stop <= first:
        raise InputError(f"the span {start:g}-{end:g} s is shorter than one frame ({1 / MODEL_FPS:.2f} s): "
                         "choose a longer span")
    if stop > record.num_generated:
        raise InputError(f"frames after {record.num_generated / MODEL_FPS:.2f} s were not lip-synced (they pass "
                         f"through unchanged), so there is nothing to redo there: end the span by then")
    gop = int(record.meta["gop"])
    return RedoSpan(first, stop, first // gop * gop, min(-(-stop // gop) * gop, record.num_frames))


def run_redo(pipeline: LipSyncPipeline, record: JobRecord, span: RedoSpan, settings: GenerationSettings,
             out: Path, mark: Callable, restore_device: str | None = None) -> Iterator[JobEvent]:
    """Regenerate ``span`` with ``settings`` and write ``out``; yields progress, returns the done event."""
    yield JobEvent("encoding audio", 0.05, "computing whisper audio features")
    faces = yield from _generate_span(pipeline, record, span, settings)
    aligner = FaceAligner(pipeline.resolution, device=restore_device or pipeline.device)
    with job_tempdir() as work:
        yield JobEvent("writing", 0.8, f"re-encoding frames {span.region_start}-{span.region_end - 1}")
        region = work / "region.mp4"
        _write_region(record, span, faces, aligner, mark, region, work)
        yield JobEvent("writing", 0.9, "copying the unchanged frames")
        splice(record.output, region, span, record.num_frames, int(record.meta["gop"]), out, work)
    return JobEvent("done", 1.0, f"wrote {out.name}: frames {span.start}-{span.end - 1} redone", output=out,
                    frames=record.num_frames)


def _generate_span(pipeline: LipSyncPipeline, record: JobRecord, span: RedoSpan,
                   settings: GenerationSettings) -> Iterator[JobEvent]:
    """The span's new faces (with the cross-fade), generated from the recorded input faces and the speech."""
    audio = load_audio(record.audio, check_finite=False)
    num_audio = int(round(len(audio) / SAMPLE_RATE * MODEL_FPS))
    mode = record.meta["length_mode"]
    num_source = len(record.matrices()) if mode in ("cut", "pad-silence") else num_audio  # as the job's plan
    driving = plan_length(num_source, num_audio, mode).driving_audio(audio, round(SAMPLE_RATE / MODEL_FPS))
    encoder = pipeline.audio_encoder
    features = encoder.encode(driving, windows=settings.audio_windows)
    window = int(record.meta["window_frames"])
    faces_in = record.faces_in()

    def chunks():
        for first in range(span.start, span.end, window):
            frames = range(first, min(first + window, span.end))
            yield (torch.from_numpy(np.array(faces_in[frames.start:frames.stop])),
                   encoder.frame_chunks(features, fps=MODEL_FPS, frame_indices=frames))

    num_chunks = -(-(span.end - span.start) // window)
    stream = pipeline.generate_stream(chunks(), pipeline.resolution, num_chunks, settings.num_inference_steps,
                                      settings.guidance_scale, settings.seed, deepcache=settings.deepcache,
                                      chunk_batch=settings.chunk_batch or 1, output_device="cpu")
    new = []
    for k, (_, generated) in enumerate(stream):
        new.append(generated)
        yield JobEvent("generating", 0.1 + 0.7 * (k + 1) / num_chunks, f"generated chunk {k + 1} of {num_chunks}",
                       k + 1, num_chunks)
    new = torch.cat(new)
    old = torch.from_numpy(np.array(record.faces_out()[span.start:span.end]))
    return crossfade(old, new.to(old.dtype))


def crossfade(old: torch.Tensor, new: torch.Tensor, frames: int = CROSSFADE_FRAMES) -> torch.Tensor:
    """``new`` with its first and last ``frames`` frames blended from ``old`` (weights 1/(n+1) .. n/(n+1))."""
    out = new.clone()
    n = len(new)
    for j in range(min(frames, n // 2)):
        w = (j + 1) / (frames + 1)  # share of the new face
        for i in (j, n - 1 - j):
            out[i] = (old[i].float() * (1 - w) + new[i].float() * w).to(new.dtype)
    return out


def _write_region(record: JobRecord, span: RedoSpan, faces: torch.Tensor, aligner, mark: Callable, path: Path,
                  work: Path) -> None:
    """Encode the region's output frames exactly as the job built them (new faces inside the span)."""
    sources, matrices, old = record.sources(), record.matrices(), record.faces_out()
    region = range(span.region_start, span.region_end)
    frames, stored = _decode_sources(record.video, {int(sources[i]) for i in region}, work)
    try:
        first = frames[0]
        height, width = first.shape[:2]
        with VideoWriter(path, width, height, MODEL_FPS, keyint=int(record.meta["gop"]),
                         video_filter=_burn_region(record, span, work)) as writer:
            for i in region:
                s = int(sources[i])
                frame, matrix = frames[stored[s]], matrices[s]
                result = frame
                if i < record.num_generated and matrix is not None:
                    face = faces[i - span.start] if span.start <= i < span.end else torch.from_numpy(np.array(old[i]))
                    result = aligner.restore_generated(frame, face, matrix)
                writer.write(mark(result, matrix))
    finally:
        frames.close()


def _burn_region(record: JobRecord, span: RedoSpan, work: Path) -> str | None:
    """The filter that burns the job's subtitles into the region as the job did: the region's first frame is
    encoded at time 0, so the cues move back by its start (None: nothing burned, or no cue in the region)."""
    if record.burned_subtitles is None:
        return None
    start, end = span.region_start / MODEL_FPS, span.region_end / MODEL_FPS
    cues = [cue for cue in shift_cues(read_srt(record.burned_subtitles), start) if cue.start < end - start]
    return burn_filter(cues, work) if cues else None


def _decode_sources(video: Path, needed: set[int], work: Path) -> tuple[FrameStore, dict[int, int]]:
    """The ``needed`` source frames at 25 fps (as the job decoded them), kept on disk, not in memory, and where
    each one sits in that store: only the region's frames are stored, however far into the clip it lies."""
    store, stored, last = None, {}, max(needed)
    for s, frame in enumerate(iter_frames(video, fps=MODEL_FPS)):
        if s in needed:
            if store is None:
                store = FrameStore(work / "frames.u8", frame.shape)
            stored[s] = store.count
            store.append(frame)
        if s >= last:
            break
    if len(stored) < len(needed):
        raise LatentSyncError("the record's copy of the video has fewer frames than the job used: run the job again")
    return store, stored


def splice(old: Path, region: Path, span: RedoSpan, num_frames: int, gop: int, out: Path, work: Path) -> None:
    """``out``: ``old``'s GOPs outside the region copied packet for packet, the re-encoded region between them,
    and ``old``'s soundtrack, soft subtitle track (if any) and container tags."""
    failure = f"ffmpeg could not splice {old.name}"  # our own parts: what can fail is the job's output
    cuts = ",".join(str(k) for k in range(gop, num_frames, gop))
    segment = ["-f", "segment", "-segment_frames", cuts] if cuts else ["-f", "segment", "-segment_time", "1000000000"]
    run_ffmpeg(["-y", "-i", fs_path(old), "-map", "0:V:0", "-c", "copy", *segment, "-reset_timestamps", "1",
                "-segment_format", "mp4", str(work / "gop%06d.mp4")], input_error=failure)
    gops = sorted(work.glob("gop*.mp4"))
    if len(gops) != -(-num_frames // gop):
        raise LatentSyncError(f"{old.name} does not have a keyframe every {gop} frames as its record says: "
                              "it was re-encoded after the job; run the job again")
    parts = gops[: span.region_start // gop] + [region] + gops[-(-span.region_end // gop):]
    listing = work / "parts.txt"
    listing.write_text("".join(f"file '{p}'\n" for p in parts))  # our own temp names: nothing to escape
    run_ffmpeg(["-y", "-f", "concat", "-safe", "0", "-i", str(listing), "-i", fs_path(old), "-map", "0:v:0",
                "-map", "1:a:0?", "-map", "1:s?", "-c", "copy", "-map_metadata", "1", "-movflags", "+faststart",
                fs_path(out)],
               input_error=failure)
