"""Length modes: what to do when the speech and the video do not last the same time.

A pure function, ``plan_length(num_source, num_audio, mode)``, decides the whole output: for each output
frame the source frame it shows and whether its mouth is generated (lip-synced) or the original frame passes
through, the output frame count, and how much of the speech is kept or padded with silence. Frames are
counted at the model's 25 fps; ``num_audio = round(audio seconds * 25)``. The speech always starts at output
frame 0; the muxer pads it with silence or cuts it to ``num_frames / 25`` seconds.

=============  ========================================  ===========================================
mode           speech longer than the video (A > S)       video longer than the speech (S > A)
=============  ========================================  ===========================================
pingpong       A frames, video plays 0..S-1, S-1..0, ...  A frames, video cut after the speech
loop           A frames, video plays 0..S-1, 0..S-1, ...  A frames, video cut after the speech
cut            S frames, speech cut at the video's end    A frames, video cut after the speech
keep-tail      as pingpong                                S frames: A lip-synced, then the rest of the
                                                          video as it was (original mouth), silence
pad-silence    as pingpong                                S frames, all lip-synced: past the speech the
                                                          model is driven by silence (closed mouth)
=============  ========================================  ===========================================

``cut`` keeps the shorter of the two (sync.so's "cut off"); when the video is the longer one it equals
pingpong. ``pad-silence`` differs from ``keep-tail`` in the tail: the
original frames would keep the speaker's mouth moving in silence, so those frames are generated from
silent audio (zeros appended to the speech before whisper), which the model renders as a resting, closed
mouth over the original frames. Generated frames always come first (``num_generated``), pass-through
frames after them, so a streaming writer needs no reordering.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

LENGTH_MODES = ("pingpong", "loop", "cut", "keep-tail", "pad-silence")
DEFAULT_LENGTH_MODE = "pingpong"


@dataclass(frozen=True)
class LengthPlan:
    """The output of ``plan_length``; all counts are 25 fps frames.

    sources: (num_frames,) source frame index shown at each output frame.
    num_generated: output frames 0..num_generated-1 are lip-synced, the rest pass through unchanged.
    speech_frames: output frames covered by the input speech; frames after it are silent.
    """

    mode: str
    sources: tuple[int, ...]
    num_generated: int
    speech_frames: int

    @property
    def num_frames(self) -> int:
        return len(self.sources)

    @property
    def generated(self) -> tuple[bool, ...]:
        """(num_frames,) True where the mouth is generated, False where the original frame passes through."""
        return tuple(i < self.num_generated for i in range(self.num_frames))

    @property
    def silent_frames(self) -> int:
        """Frames of silence appended to the speech (keep-tail, pad-silence)."""
        return self.num_frames - self.speech_frames

    def in_file_order(self) -> bool:
        """Whether ``sources`` is 0, 1, 2, ... (the frames can then be streamed straight from the file)."""
        return all(s == i for i, s in enumerate(self.sources))

    def driving_audio(self, samples: np.ndarray, samples_per_frame: int = 640) -> np.ndarray:
        """The speech that drives generation: ``samples`` (N,) padded with zeros (silence) to cover every
        generated frame; never cut (whisper sees the whole speech, as without a length mode)."""
        need = self.num_generated * samples_per_frame
        if len(samples) >= need:
            return samples
        return np.concatenate([samples, np.zeros(need - len(samples), dtype=samples.dtype)])


def pingpong_index(i: int, n: int) -> int:
    """Source frame for output frame ``i``: 0..n-1, n-1..0, 0..n-1, ... (the official loop)."""
    k = i % (2 * n)
    return k if k < n else 2 * n - 1 - k


def check_length_mode(mode: str) -> str:
    if mode not in LENGTH_MODES:
        raise InputError(f"unknown length mode {mode!r}; choose one of {', '.join(LENGTH_MODES)}")
    return mode


def resolve_length_mode(length_mode: str | None) -> str:
    """The mode to use: ``length_mode`` when given, else the default (pingpong)."""
    return check_length_mode(length_mode) if length_mode else DEFAULT_LENGTH_MODE


def plan_length(num_source: int, num_audio: int, mode: str = DEFAULT_LENGTH_MODE) -> LengthPlan:
    """Plan the output of ``num_source`` video frames lip-synced to ``num_audio`` frames of speech."""
    check_length_mode(mode)
    if num_source < 1 or num_audio < 1:
        raise InputError(f"need at least one video frame and one speech frame, got {num_source} and {num_audio}")
    if mode == "loop":
        sources = [i % num_source for i in range(num_audio)]
    elif mode == "cut":
        sources = list(range(min(num_source, num_audio)))
    else:  # pingpong, keep-tail and pad-silence follow the speech with the official ping-pong first
        sources = [pingpong_index(i, num_source) for i in range(num_audio)]
        if mode in ("keep-tail", "pad-silence") and num_source > num_audio:
            sources += range(num_audio, num_source)
    num_generated = num_audio if mode == "keep-tail" else len(sources)
    return LengthPlan(mode, tuple(sources), min(num_generated, len(sources)), min(num_audio, len(sources)))


def _seconds(frames: int) -> str:
    return f"{frames / 25:.1f} s"


def length_note(num_source: int, num_audio: int, mode: str = DEFAULT_LENGTH_MODE) -> str:
    """What the length mode did to make video and speech match, in words and seconds ("" when they match to
    within 0.1 s): a job's end summary says it, so that a looped 0.2 s clip or a cut speech is never silent."""
    if abs(num_source - num_audio) < 3:
        return ""
    video, speech, gap = _seconds(num_source), _seconds(num_audio), _seconds(abs(num_source - num_audio))
    if num_audio > num_source:  # the speech is longer
        if mode == "cut":
            return f"Cut: the speech ({speech}) was cut to the video's {video} (the last {gap} dropped)."
        if mode == "loop":
            return f"Looped: the {video} video was repeated {num_audio / num_source:.1f} times to cover {speech} " \
                   "of speech."
        return f"Looped: the {video} video played back and forth to cover {speech} of speech."
    if mode == "keep-tail":
        return f"Kept: the video's last {gap} after the {speech} of speech pass through unchanged, silent."
    if mode == "pad-silence":
        return f"Padded: {gap} of silence after the {speech} of speech (closed mouth to the video's end)."
    return f"Cut: the video ({video}) was cut to the speech's {speech} (the last {gap} dropped)."
