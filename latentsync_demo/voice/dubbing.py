"""Translation dubbing's data: the editable transcript (``DubScript``) and the placement of each spoken segment.

A ``DubScript`` is what a user reviews between "transcribe & translate" and "generate": per segment its source
times, the words said and their translation (the ``text`` that will be spoken, editable). It is saved as JSON
(everything, the round trip the CLI's ``--transcript-out`` / ``--transcript`` uses) or as SRT (only times and
the translation, for subtitle editors).

``place_dub`` puts each segment's synthesised speech on the original timing: it starts exactly where its source
segment started and is time-stretched towards the source segment's length, but never faster than 1.25x or slower
than 0.8x (beyond that speech sounds rushed or dragged). What still does not fit is reported, never cut.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import InputError
from .timing import stretched_piece
from .xtts import LANGUAGES

STRETCH_RANGE = (0.8, 1.25)  # playback rates a segment may be stretched to (speed-up factor: > 1 is faster)
SCRIPT_SUFFIXES = (".json", ".srt")
FADE_S = 0.005  # ramps at both ends of each placed segment: no clicks


def xtts_language(code: str | None) -> str:
    """XTTS's code for a target language ("zh" and "zh-CN" are "zh-cn"); InputError listing the choices."""
    code = (code or "").strip().lower().replace("_", "-")
    if not code:
        raise InputError(f"choose the language to dub into (--to): one of {', '.join(LANGUAGES)}.",
                         web="Choose the language to dub into in the “Dub into” menu first.")
    for candidate in (code, code.split("-")[0], f"{code.split('-')[0]}-cn"):
        if candidate in LANGUAGES:
            return candidate
    raise InputError(f"cannot dub into {code!r}: the voice model speaks {', '.join(LANGUAGES)}; choose one of "
                     "those (--to, or the app's target language menu).")


@dataclass(frozen=True)
class DubSegment:
    start: float  # seconds in the source speech
    end: float
    source: str  # what was said (empty when the transcript came from an SRT file)
    text: str  # what will be said: the translation, as edited


@dataclass(frozen=True)
class DubScript:
    source_language: str  # Whisper's code of the speech ("" when unknown: an SRT transcript)
    target_language: str  # XTTS's code
    segments: tuple[DubSegment, ...]

    def with_texts(self, texts: Sequence[str]) -> "DubScript":
        """The same segments with new spoken texts (the app's edited table column)."""
        if len(texts) != len(self.segments):
            raise InputError(f"the edited transcript has {len(texts)} rows but the video has "
                             f"{len(self.segments)} segments: edit the translations, do not add or remove rows.")
        return replace(self, segments=tuple(replace(s, text=str(t).strip()) for s, t in zip(self.segments, texts)))

    def cues(self):
        """The subtitles of the dub: one cue per segment, at the source times, with the spoken text."""
        from ..media.subtitles import Cue

        return [Cue(s.start, s.end, s.text) for s in self.segments]

    def to_json(self) -> str:
        return json.dumps({"source_language": self.source_language, "target_language": self.target_language,
                           "segments": [{"start": round(s.start, 3), "end": round(s.end, 3), "source": s.source,
                                         "text": s.text} for s in self.segments]}, ensure_ascii=False, indent=1)

    def save(self, path: str | Path) -> Path:
        """Write JSON or SRT, by the file's suffix."""
        from ..media.subtitles import write_srt

        path = Path(path)
        if path.suffix.lower() not in SCRIPT_SUFFIXES:
            raise InputError(f"a transcript file ends in .json or .srt, not {path.name!r}.")
        if path.suffix.lower() == ".srt":
            write_srt(self.cues(), path)
        else:
            path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path


def script_from_json(text: str, name: str = "the transcript") -> DubScript:
    """A DubScript from ``to_json``'s text; InputError naming what is wrong (and where) otherwise."""
    try:
        data = json.loads(text)
        rows = data["segments"]
        segments = tuple(DubSegment(float(r["start"]), float(r["end"]), str(r.get("source", "")), str(r["text"]))
                         for r in rows)
        return DubScript(str(data.get("source_language", "")), str(data.get("target_language", "")), segments)
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{name} is not a transcript file this app wrote ({type(exc).__name__}: {exc}); write one "
                         "with --transcript-out t.json and edit only the \"text\" fields.") from exc


def load_script(path: str | Path, target_language: str | None = None) -> DubScript:
    """An edited transcript file (JSON from ``--transcript-out``, or SRT); ``target_language`` is the dub's
    language when the file does not say (SRT) or to override it."""
    from ..media.subtitles import read_srt

    path = Path(path)
    if path.suffix.lower() not in SCRIPT_SUFFIXES:
        raise InputError(f"the transcript {path.name} is neither .json nor .srt: write one with "
                         "--transcript-out t.json (or t.srt) and edit it.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the transcript {path.name}: {exc}") from exc
    if path.suffix.lower() == ".srt":
        script = DubScript("", "", tuple(DubSegment(c.start, c.end, "", c.text) for c in read_srt(text)))
    else:
        script = script_from_json(text, f"the transcript {path.name}")
    language = target_language or script.target_language
    return check_script(replace(script, target_language=xtts_language(language)), path.name)


def check_script(script: DubScript, name: str = "the transcript", duration: float | None = None) -> DubScript:
    """InputError for a transcript with nothing to say, a segment without text, or times that make no sense."""
    if not script.segments:
        raise InputError(f"{name} has no segments: no speech was found to translate. Upload a video in which "
                         "someone speaks, or use the type-a-script voice mode.")
    previous = 0.0
    for number, seg in enumerate(script.segments, 1):
        if not (math.isfinite(seg.start) and math.isfinite(seg.end)):
            raise InputError(f"segment {number} of {name} has no finite time ({seg.start} to {seg.end} s): give its "
                             "start and end in seconds.")
        if seg.start < previous:
            raise InputError(f"segment {number} of {name} starts at {seg.start:g} s, before segment {number - 1} "
                             "does: keep the segments in the order they are spoken.")
        previous = seg.start
        if not (0 <= seg.start < seg.end):
            raise InputError(f"segment {number} of {name} runs from {seg.start:g} s to {seg.end:g} s: a segment "
                             "needs a start before its end, from 0 s on.")
        if duration is not None and seg.start >= duration:
            raise InputError(f"segment {number} of {name} starts at {seg.start:g} s, after the {duration:.1f} s "
                             "video ends.")
        if not any(ch.isalnum() for ch in seg.text):
            raise InputError(f"segment {number} of {name} ({seg.start:.2f}-{seg.end:.2f} s) has no words to say: "
                             "type its translation (or delete the segment from the file).")
    return script


@dataclass(frozen=True)
class Placement:
    """Where segment ``index`` (0-based) was put: ``start``/``end`` in seconds, at ``rate`` (natural length /
    placed length; > 1 is faster), and ``overrun`` seconds past the room it had (0 when it fit)."""

    index: int
    start: float
    end: float
    rate: float
    overrun: float = 0.0


def place_dub(pieces: Sequence[tuple[float, float, np.ndarray]], total_len: int, sample_rate: int,
              rates: tuple[float, float] = STRETCH_RANGE) -> tuple[np.ndarray, list[Placement]]:
    """A track with each ``(start_s, end_s, audio)`` starting at ``start_s``, stretched towards the slot's length
    within ``rates``. A segment may use the gap after its slot, up to the next segment's start; what overruns that
    room (or the track) is kept and reported in its ``Placement``. The track grows to fit the last segment."""
    slow, fast = rates
    starts = [int(round(p[0] * sample_rate)) for p in pieces]
    lengths = []
    for (start_s, end_s, audio), i0 in zip(pieces, starts):
        natural = max(1, np.asarray(audio).size)
        slot = max(1, int(round(end_s * sample_rate)) - i0)
        lengths.append(int(round(min(max(slot, natural / fast), natural / slow))))
    track = np.zeros(max([int(total_len)] + [i0 + n for i0, n in zip(starts, lengths)]), np.float32)
    placements = []
    for index, ((_, _, audio), i0, n) in enumerate(zip(pieces, starts, lengths)):
        room = (starts[index + 1] if index + 1 < len(starts) else max(int(total_len), i0)) - i0
        track[i0: i0 + n] += stretched_piece(audio, n, sample_rate, FADE_S)
        placements.append(Placement(index, i0 / sample_rate, (i0 + n) / sample_rate,
                                    max(1, np.asarray(audio).size) / n, max(0, n - room) / sample_rate))
    return np.clip(track, -1.0, 1.0), placements


def timing_notes(placements: Sequence[Placement], script: DubScript, rates: tuple[float, float] = STRETCH_RANGE,
                 tolerance_s: float = 0.04) -> str:
    """What the user should know about the timing: each segment that runs past its room even at the fastest rate
    (overlapping the next, or past the video's end), with what to do. Empty when everything fit."""
    lines = []
    for p in placements:
        if p.overrun <= tolerance_s:
            continue
        seg = script.segments[p.index]
        where = (f"into segment {p.index + 2}" if p.index + 1 < len(script.segments) else "past the end of the video")
        lines.append(f"Segment {p.index + 1} ({seg.start:.2f}-{seg.end:.2f} s) is too long for its slot even at "
                     f"{rates[1]:g}x speed: it runs {p.overrun:.2f} s {where}. Shorten its translation.")
    return "\n".join(lines)
