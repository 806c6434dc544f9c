"""Dialogue: several people in one clip, each lip-synced to a speech track of their own, in one job.

The job (``pipeline.job``) decodes the clip once, follows every chosen face in one face pass
(``streaming.FaceAnalysis`` with several indices), generates each window of frames once per person with that
person's own whisper features (``streaming.dialogue_chunks``), pastes every person's face into the same frame and
encodes once. This module holds the parts only a dialogue has: the mixed soundtrack, the regrouping of the
generated chunks per window, and the notes on where faces overlap or leave the frame.

Length: the output follows the longest track (length modes apply to it as to a single track); a shorter track is
followed by silence, so its face rests with a closed mouth while the other one speaks.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from ..face.track import box_iou
from ..media import MODEL_FPS, SAMPLE_RATE
from ..media.mix import mix_tracks

# The mix is scaled down to this peak when the summed tracks would clip (two voices at once).
MIX_PEAK = 0.98


def mix_speech(tracks: Sequence[np.ndarray]) -> np.ndarray:
    """The tracks (mono float32, -1..1, one sample rate) summed into one, as long as the longest; scaled to
    ``MIX_PEAK`` only where the sum would otherwise clip (an untouched sum when the speakers take turns)."""
    return mix_tracks(tracks, MIX_PEAK)


def tracks_note(face_indices: Sequence[int], tracks: Sequence[np.ndarray]) -> str:
    """What the output's length follows, in words: the longest track, and which shorter tracks end early."""
    seconds = [len(track) / SAMPLE_RATE for track in tracks]
    longest = int(np.argmax(seconds))
    note = (f"Dialogue: {len(tracks)} speech tracks mixed into the soundtrack; the output follows the longest, "
            f"face {face_indices[longest]}'s ({seconds[longest]:.1f} s).")
    shorter = [f"face {index}'s ends at {length:.1f} s" for index, length in zip(face_indices, seconds)
               if seconds[longest] - length >= 3 / MODEL_FPS]
    if shorter:
        note += f" Then silence, closed mouth: {', '.join(shorter)}."
    return note


def per_window(results: Iterator[tuple[int, torch.Tensor]], people: int, windows: list[range]
               ) -> Iterator[tuple[int, tuple[torch.Tensor, ...]]]:
    """The generated chunks of a dialogue (each window once per person, in order: ``dialogue_chunks``) as one
    ``(first output frame, (faces of person 0, faces of person 1, ...))`` per window. ``windows``: the output
    frames of every chunk handed to the pipeline so far, in order."""
    try:
        done: list[torch.Tensor] = []
        for n, (_, generated) in enumerate(results):
            done.append(generated)
            if len(done) == people:
                yield windows[n].start, tuple(done)
                done = []
    finally:
        results.close()  # a stopped job closes this generator: stop the pipeline's too


def presence_notes(followed, num_frames: int, sources: Sequence[int] | None = None) -> str:
    """Where the followed faces overlap (their boxes intersect) or one of them is not found (it left the frame,
    or another face covered it), in output seconds: those frames keep that face's original mouth. ``followed``:
    ``FaceAnalysis.followed``; ``sources``: the source frame each output frame shows (None: frame i shows i)."""
    shown = list(sources) if sources is not None else list(range(num_frames))
    notes = []
    for a in range(len(followed)):
        for b in range(a + 1, len(followed)):
            boxes_a, boxes_b = followed[a].boxes, followed[b].boxes
            meet = [boxes_a[s] is not None and boxes_b[s] is not None and box_iou(boxes_a[s], boxes_b[s]) > 0
                    for s in shown]
            if any(meet):
                notes.append(f"Faces {followed[a].face_index} and {followed[b].face_index} overlap at "
                             f"{spans(meet)}: where their boxes meet, the later face's paste covers the earlier.")
    for person in followed:
        missing = [person.matrices[s] is None for s in shown]
        if any(missing):
            notes.append(f"Face {person.face_index} is not found at {spans(missing)} (out of the frame, covered "
                         "or turned away): those frames keep its original mouth.")
    return " ".join(notes)


def spans(flags: Sequence[bool], fps: float = MODEL_FPS) -> str:
    """The runs of True in per-frame ``flags`` as seconds: "0.40-1.20 s, 3.00-3.08 s" (a run ends after its last
    frame)."""
    runs, start = [], None
    for i, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append(f"{start / fps:.2f}-{i / fps:.2f} s")
            start = None
    return ", ".join(runs)
