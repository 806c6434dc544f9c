"""One checked, immutable lip-sync request: what the app, the CLI, the Python API, REST and batch hand to a job.

``prepare_request`` runs every check that can be made before work starts, in one place and in one order, so the
same bad input gets the same message from every front end before a model loads or a frame is decoded:
consent, settings, a callback URL (REST jobs: a destination the host allows, resolved and checked), the output
path, the media (each file probed exactly once; its ``MediaInfo`` travels with the request, so the job never
probes it again) and the host's restrictions. ``LipSyncService.prepare`` calls it
with the service's limits; ``LipSyncService.run`` runs the result.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .audio.windows import check_audio_windows
from .errors import InputError
from .face.landmarks import LANDMARK_CHOICES
from .media import MediaInfo
from .media.subtitles import find_subtitle_font, iso639_2, read_srt
from .pipeline.length import resolve_length_mode
from .pipeline.samplers import SAMPLERS
from .provenance.consent import require_consent
from .provenance.restrict import JobRequest, RestrictionCheck, enforce
from .provenance.watermark import job_number
from .settings import GenerationSettings, VoiceRequest
from .store import PRESETS, resolve
from .validation import (check_audio, check_output, check_settings, check_speech_to_translate, check_video,
                         check_voice, check_voice_reference)
from .webhooks import CallbackPolicy, CallbackTarget


@dataclass(frozen=True)
class Limits:
    """What a host accepts: the longest clip (seconds) and the largest frame (pixels); None = no limit."""

    max_seconds: float | None = None
    max_pixels: int | None = None


@dataclass(frozen=True)
class PreparedRequest:
    """A request that passed every check. ``audio`` is None only for a "script" voice request (the speech is
    made when the job runs); ``job_id`` names the job in the provenance, ``watermark`` is the number the
    invisible mark carries."""

    video: MediaInfo
    audio: MediaInfo | None
    out: Path
    preset: str
    settings: GenerationSettings
    length_mode: str
    job_id: str
    watermark: int
    voice: VoiceRequest | None = None  # None unless the speech is re-voiced or scripted
    compare: Path | None = None  # also write the original | result video here
    callback: CallbackTarget | None = None  # POST a signed summary here when the job ends (REST jobs)
    # What the output plays instead of ``audio`` (e.g. new speech over the ducked original sound); the lips
    # follow ``audio``. Subtitles: a SubRip file muxed as a soft track (or burned in), copied beside the output.
    soundtrack: MediaInfo | None = None
    subtitles: Path | None = None
    subtitle_language: str | None = None  # an XTTS code ("es") or ISO 639-2 tag; None: undetermined
    burn_subtitles: bool = False
    # A dialogue: (face index, speech track) per face, by face index, each face lip-synced to its own track in
    # one job (``audio`` is then the first face's track; the output's soundtrack is the tracks mixed).
    speech: tuple[tuple[int, MediaInfo], ...] = ()

    @property
    def voice_mode(self) -> str:
        return self.voice.mode if self.voice is not None else "off"


def settings_from(sampler: str = "ddim", steps: int | None = None, **values) -> GenerationSettings:
    """GenerationSettings from a front end's values; ``steps`` None = the sampler's default step count.

    The one place front ends get their defaults (an unknown sampler keeps 20 steps and is refused by
    ``prepare_request`` with the list of samplers)."""
    spec = SAMPLERS.get(sampler)
    default_steps = spec.default_steps if spec is not None else GenerationSettings.num_inference_steps
    values = {k: v for k, v in values.items() if v is not None}
    return GenerationSettings(sampler=sampler, num_inference_steps=default_steps if steps is None else steps,
                              **values)


def check_preset(preset: str) -> None:
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")


def check_landmarks(landmarks: str) -> None:
    if landmarks not in LANDMARK_CHOICES:
        raise InputError(f"unknown landmark backend {landmarks!r}; choose one of {', '.join(LANDMARK_CHOICES)}")


def check_choices(preset: str, settings: GenerationSettings, checkpoints=None) -> str:
    """Refuse settings no sampler can run, an unknown preset, sampler, landmark backend or audio windows mode,
    steps out of the sampler's range, LCM without its student; returns the resolved length mode."""
    check_settings(settings)
    check_preset(preset)
    check_landmarks(settings.landmarks)
    check_audio_windows(settings.audio_windows)
    spec = SAMPLERS.get(settings.sampler)
    if spec is None:
        raise InputError(f"unknown sampler {settings.sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if not spec.min_steps <= settings.num_inference_steps <= spec.max_steps:
        raise InputError(f"the {spec.name.upper()} sampler takes {spec.min_steps} to {spec.max_steps} steps, "
                         f"not {settings.num_inference_steps}")
    if spec.name == "lcm":
        resolve(preset, checkpoints).require_lcm()
    return resolve_length_mode(settings.length_mode)


def _one_of(indices) -> str:
    shown = sorted(indices)
    return f"{shown[0]}" if len(shown) == 1 else f"{', '.join(map(str, shown[:-1]))} or {shown[-1]}"


def check_face_shown(face_index: int, shown_faces: tuple[int, ...] | None) -> None:
    """InputError when a face listing was shown and ``face_index`` is not among its faces."""
    if shown_faces is None or face_index in shown_faces:
        return
    raise InputError(f"Face index {face_index} is not one of the faces found in the video's first seconds: "
                     f"choose {_one_of(shown_faces)} (click a face's thumbnail to pick it).")


SpeechInput = Mapping[int, "str | Path"] | Iterable["str | tuple[int, str | Path]"]


def speech_pairs(speech: SpeechInput) -> tuple[tuple[int, Path], ...]:
    """(face index, speech file) pairs, by face index, from a ``{face: file}`` mapping, ``(face, file)`` pairs or
    ``"FACE=FILE"`` strings (the command line's ``--speech``). InputError for a bad FACE=FILE, a face index that
    is not a whole number from 0, or two tracks for one face."""
    items = list(speech.items()) if isinstance(speech, Mapping) else list(speech)
    pairs = []
    syntax = ("a speech track is given as FACE=FILE, e.g. 0=alice.wav (the face's index, as the face listing "
              "numbers it, then its speech file), not {!r}.")
    for item in items:
        if isinstance(item, str):
            face, sep, path = item.partition("=")
            if not sep or not _is_index(face) or not path.strip():
                raise InputError(syntax.format(item))
            item = (int(face), path.strip())
        if not isinstance(item, (tuple, list)) or len(item) != 2 or not isinstance(item[1], (str, os.PathLike)):
            raise InputError(syntax.format(item))  # e.g. a JSON manifest's [0] or {"0": 5}
        face, path = item
        if isinstance(face, str) and _is_index(face):
            face = int(face)
        if isinstance(face, bool) or not isinstance(face, int) or face < 0:
            raise InputError(f"a speech track's face index must be a whole number from 0, not {face!r}.")
        if path is None or not str(path).strip():
            raise InputError(f"the speech track for face {face} has no file: give one file per face.")
        pairs.append((face, Path(path)))
    for n, (face, path) in enumerate(pairs):
        twice = [other.name for f, other in pairs[n + 1:] if f == face]
        if twice:
            raise InputError(f"face {face} has two speech tracks ({path.name} and {twice[0]}): give each face one "
                             "track (put all of one person's speech in one file).")
    return tuple(sorted(pairs, key=lambda pair: pair[0]))


def _is_index(text: str) -> bool:
    """ASCII digits only: "²" is a digit to str.isdigit, not to int()."""
    text = text.strip()
    return text.isascii() and text.isdecimal()


def check_dialogue(pairs: Sequence[tuple[int, Path]], audio, voice: VoiceRequest | None) -> None:
    """Speech tracks per face stand in for the one audio and for voice cloning: refuse either beside them."""
    if audio is not None:
        raise InputError("give either one speech audio (with a face index) or a speech track per face, not both: "
                         "the speech tracks are mixed into the soundtrack, so leave out the single audio.")
    if voice is not None and voice.mode != "off":
        raise InputError(f"speech tracks per face cannot be combined with a voice mode ({voice.mode}): make each "
                         "speaker's track first (e.g. one voice job each), then give them as speech tracks; or use "
                         "one audio with the voice mode.")


def check_speech_faces(faces: Sequence[int], found: Sequence[int] | None) -> None:
    """InputError when a speech track goes to a face that the listing (shown, or scanned for this check) did not
    find in the video's first seconds. ``found`` None: nothing to check against."""
    if found is None:
        return
    for face in faces:
        if face in found:
            continue
        if not found:
            raise InputError(f"there is a speech track for face {face}, but no face was found in the video's first "
                             "seconds: upload a clip where each speaker's face is clearly visible.")
        raise InputError(f"there is a speech track for face {face}, but the video's first seconds show no such "
                         f"face: give speech tracks to face {_one_of(found)} (the face listing shows them).")


def check_voice_outputs(voice: VoiceRequest, video: MediaInfo, out, inputs: tuple) -> None:
    """What a voice request writes must have what it needs and overwrite nothing it reads: keeping the room needs
    the video's own sound; a dub's subtitles go to ``<out>.srt``, which must not be the transcript or an input."""
    if voice.keep_room and not video.has_audio:
        raise InputError(f"{Path(video.path).name} has no sound of its own, so there is no room sound to keep: "
                         "leave keep-room off.")
    if voice.mode == "translate":
        transcript = voice.transcript if isinstance(voice.transcript, (str, Path)) else None
        check_srt_beside(out, (*inputs, voice.reference, transcript))


def check_srt_beside(out, sources: tuple) -> None:
    """InputError when ``<out>.srt``, where a job writes its subtitles beside the output, is one of ``sources``
    (an input, a voice sample, the transcript): writing it would overwrite that file."""
    beside = Path(out).with_suffix(".srt").resolve()
    for source in sources:
        if source is not None and Path(source).resolve() == beside:
            raise InputError(f"the subtitles are written to {beside.name}, beside the output, which would overwrite "
                             f"{Path(source).name}: choose another output name (or rename the file).")


def check_voice_models(voice: VoiceRequest, checkpoints=None) -> None:
    """CheckpointError naming the download command when a voice model this request needs is missing: XTTS always,
    the recogniser to re-voice or to transcribe, the translation model to translate."""
    from .voice.store import models_needed, resolve_voice_models

    resolve_voice_models(checkpoints).require(**models_needed(voice.mode, voice.transcript is not None))


def prepare_request(
    video, audio, out, *, preset: str, settings: GenerationSettings, voice: VoiceRequest | None = None,
    compare=None, consent: bool = False, checkpoints=None, limits: Limits = Limits(),
    restrictions: list[RestrictionCheck] = (), callback_url: str | None = None,
    callbacks: CallbackPolicy = CallbackPolicy(), shown_faces: tuple[int, ...] | None = None,
    soundtrack=None, subtitles=None, subtitle_language: str | None = None, burn_subtitles: bool = False,
    speech: SpeechInput | None = None, find_faces: Callable[[MediaInfo], Sequence[int]] | None = None,
) -> PreparedRequest:
    """Check one request completely (InputError with the first problem) and probe each input once.

    ``callback_url`` is checked against the host's ``callbacks`` policy (by default no destination is allowed).
    ``shown_faces``: the face indices a face listing showed the user for this video (the app's thumbnails); the
    face index must be one of them. None: no listing was shown (the job says if the index finds no face).
    ``soundtrack``, ``subtitles``, ``subtitle_language``, ``burn_subtitles``: see ``PreparedRequest``
    (``check_subtitles``).
    ``speech``: a speech track per face (``speech_pairs``; ``audio`` then None): a dialogue. Their faces must be
    among ``shown_faces``, or, with no listing shown, among the faces ``find_faces(video)`` finds in the video's
    first seconds. One track is the same as that face's index with that audio."""
    require_consent(consent)
    length_mode = check_choices(preset, settings, checkpoints)
    callback = callbacks.check(callback_url) if callback_url else None  # before the media: a cheap refusal first
    pairs = speech_pairs(speech) if speech else ()
    if pairs:
        check_dialogue(pairs, audio, voice)
    if len(pairs) == 1:  # one speaker: a plain job on that face, byte for byte
        (face, audio), pairs = pairs[0], ()
        settings = replace(settings, face_index=face)
    mode = check_voice(voice, video, pairs[0][1] if pairs else audio)
    check_output(out, (video, audio, *(path for _, path in pairs)))
    if compare is not None:
        check_output(compare, (video, audio, out, *(path for _, path in pairs)))
    video_info = check_video(video, limits.max_seconds, limits.max_pixels)
    if not pairs:
        check_face_shown(settings.face_index, shown_faces)
    tracks = tuple((face, check_audio(path, limits.max_seconds)) for face, path in pairs)
    audio_info = tracks[0][1] if tracks else check_audio(audio, limits.max_seconds) if audio is not None else None
    check_subtitles(subtitles, subtitle_language, burn_subtitles, out, (video, audio, *(path for _, path in pairs)))
    soundtrack_info = check_audio(soundtrack, limits.max_seconds) if soundtrack is not None else None
    if speech:  # the speakers' faces must be there, whether a listing was shown or not (scanned last: the dearest)
        found = shown_faces if shown_faces is not None or find_faces is None else tuple(find_faces(video_info))
        check_speech_faces([face for face, _ in pairs] or [settings.face_index], found)
    reference = voice.reference if mode != "off" else None
    if reference is not None:
        check_voice_reference(reference)
    if mode == "translate" and voice.transcript is None:
        check_speech_to_translate(video_info, audio_info)
    if mode != "off":
        check_voice_outputs(voice, video_info, out, (video, audio))
        check_voice_models(voice, checkpoints)
    job_id = uuid.uuid4().hex[:12]
    voice = voice if mode != "off" else None
    speech_file = pairs[0][1] if pairs else audio  # a dialogue's restrictions see its first track
    enforce(restrictions, JobRequest(Path(video), Path(speech_file) if speech_file is not None else None, preset,
                                     job_id, settings, voice))
    return PreparedRequest(video_info, audio_info, Path(out), preset, settings, length_mode, job_id,
                           job_number(job_id), voice, Path(compare) if compare else None, callback, soundtrack_info,
                           Path(subtitles) if subtitles is not None else None, subtitle_language, bool(burn_subtitles),
                           tracks)


def check_subtitles(subtitles, language: str | None, burn: bool, out, inputs: tuple) -> None:
    """InputError for subtitles a job could not use: a malformed or empty SubRip file (naming the line), a
    language XTTS lacks, burning without subtitles or without a font for their characters, or a ``<out>.srt``
    beside the output that would overwrite an input."""
    if subtitles is None:
        if burn:
            raise InputError("burning subtitles in needs subtitles: pass a SubRip (.srt) file")
        return
    cues = read_srt(subtitles)
    if not cues:
        raise InputError(f"the subtitle file {Path(subtitles).name} has no cues: nothing to show")
    if language is not None:
        iso639_2(language)
    if burn:
        find_subtitle_font("".join(cue.text for cue in cues))
    check_srt_beside(out, inputs)

