"""The checks behind ``latentsync_demo.request.prepare_request``: each refuses one kind of bad input with a
message that names the problem and what to do, before any work starts.

The media checks probe each file once and return its ``MediaInfo``, which the job then uses (no second probe).
Messages name the setting the way every front end shows it ("Seed", "Steps", "Audio guidance", "Face
index"); file names appear without their folder when the web app shows them (``errors.user_message``).
"""

from __future__ import annotations

import math
import numbers
import os
import tempfile
from pathlib import Path

import torch

from .errors import InputError
from .media import MediaInfo, probe
from .media.audio import check_finite_samples
from .settings import SUBTITLE_MODES, VOICE_MODES, GenerationSettings

SEED_RANGE = (0, 2**32 - 1)  # what torch, numpy and the UI all accept
GUIDANCE_RANGE = (1.0, 3.0)  # 1 = no guidance; the official app offers 1-3
MAX_WINDOW_FRAMES = 256  # frames per generated chunk (0 = automatic); memory grows with the window
# Containers that take the result's H.264 video and AAC audio as they are (the mux copies, never re-encodes).
OUTPUT_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv")
DEVICE_TYPES = ("cpu", "cuda", "mps")


def check_voice(voice, video, audio) -> str:
    """The voice mode of a request after checking it has what it needs (text for "script", speech otherwise)."""
    mode = getattr(voice, "mode", "off") if voice is not None else "off"
    if mode not in VOICE_MODES:
        raise InputError(f"unknown voice mode {mode!r}; choose one of {', '.join(VOICE_MODES)}.")
    if mode == "script" and not (voice.text or "").strip():
        raise InputError("Script voice needs the words the speaker should say: type them in the Script box.")
    if mode == "translate":
        check_translate(voice)
    elif voice is not None and (voice.target_language or voice.transcript is not None):
        raise InputError("a target language and a transcript belong to the translate voice mode (dubbing into "
                         f"another language), not to {mode!r}: choose voice translate, or leave them out.")
    if video is None:
        raise InputError("no video given: upload (or record) a video of a talking face.")
    if audio is None and mode not in ("script", "translate"):
        raise InputError("no speech given: upload (or record) the speech the face should say.")
    return mode


def check_translate(voice) -> None:
    """A translate request: a language to dub into, a subtitle mode, and an edited transcript that parses."""
    from .voice.dubbing import DubScript, check_script, load_script, xtts_language

    if voice.language and voice.transcript is None:
        check_speech_language(voice.language)
    if voice.subtitles not in SUBTITLE_MODES:
        raise InputError(f"unknown subtitles choice {voice.subtitles!r}; choose one of {', '.join(SUBTITLE_MODES)}.")
    if voice.transcript is None:
        target = xtts_language(voice.target_language)
    elif isinstance(voice.transcript, DubScript):
        target = xtts_language(voice.target_language or voice.transcript.target_language)
        check_script(voice.transcript)
    else:
        target = load_script(voice.transcript, voice.target_language).target_language
    if voice.subtitles == "burn":  # a script no local font draws: refuse now, not after the speech is made
        from .media.subtitles import check_burn_font

        check_burn_font(target)


def check_speech_language(code: str) -> None:
    """The spoken language a recogniser is told (``--language``): one Whisper knows, by code or English name."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    text = str(code).strip().lower()
    if text.split("-")[0] not in LANGUAGES and text not in TO_LANGUAGE_CODE:
        raise InputError(f"the speech recogniser does not know the language {code!r}: give a code such as en, de, "
                         "es or zh (or leave it empty to detect it).")


def check_speech_to_translate(video: MediaInfo, audio: MediaInfo | None):
    """Translate mode transcribes the uploaded speech, else the video's own: it must have sound with speech.
    Returns that speech, 16 kHz mono float32 (what the recogniser takes: it need not be decoded again)."""
    from .media.audio import load_audio
    from .voice.reference import voiced_regions

    source = audio or video
    if not source.has_audio:
        raise InputError(f"{Path(source.path).name} has no sound to translate: upload a video in which someone "
                         "speaks, or the speech as an audio file, or an edited transcript.")
    samples = load_audio(source, 16000)
    if not voiced_regions(samples, 16000):
        raise InputError(f"no speech was found in {Path(source.path).name}, so there is nothing to translate: "
                         "upload a clip in which someone speaks, or use the type-a-script voice mode.")
    return samples


def check_voice_reference(reference) -> MediaInfo:
    info = probe(reference, "speech")
    if not info.has_audio:
        raise InputError(f"the voice sample {Path(reference).name} has no sound: upload a recording of the "
                         "speaker, or leave it empty to use the video's own audio.")
    check_finite_samples(info)
    return info


def check_settings(settings: GenerationSettings) -> None:
    """Refuse settings no sampler can run: seed, steps, guidance, face index, window length."""
    seed = settings.seed
    if not _is_int(seed) or not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise InputError(f"Seed must be a whole number from {SEED_RANGE[0]} to {SEED_RANGE[1]}, not {_show(seed)}.")
    steps = settings.num_inference_steps
    if not _is_int(steps) or steps < 1:
        raise InputError(f"Steps must be a whole number of at least 1, not {_show(steps)}.")
    guidance = settings.guidance_scale
    low, high = GUIDANCE_RANGE
    if (isinstance(guidance, bool) or not isinstance(guidance, numbers.Real) or not math.isfinite(guidance)
            or not low <= guidance <= high):
        raise InputError(f"Audio guidance must be a number from {low:g} to {high:g} (1 = no guidance), "
                         f"not {_show(guidance)}.")
    face = settings.face_index
    if not _is_int(face) or face < 0:
        raise InputError(f"Face index must be a whole number, 0 for the largest face, 1 for the next, ...; "
                         f"not {_show(face)}.")
    window = settings.window_frames
    if not _is_int(window) or not 0 <= window <= MAX_WINDOW_FRAMES:
        raise InputError(f"Window frames must be a whole number from 1 to {MAX_WINDOW_FRAMES} (0 = automatic: 16, "
                         f"longer for checkpoints trained with hierarchical attention), not {_show(window)}.")


def check_device(device: str) -> str:
    """``device`` as torch spells it, after checking this machine has it ("cuda" without a GPU is refused)."""
    try:
        parsed = torch.device(str(device))
    except (RuntimeError, ValueError):
        parsed = None
    if parsed is None or parsed.type not in DEVICE_TYPES:
        raise InputError(f"unknown device {device!r}: use cpu, cuda (or cuda:0, cuda:1, ...) or mps.")
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(f"device {device!r} was asked for, but this machine has no usable CUDA GPU "
                             "(or this torch build has no CUDA support): use cpu.")
        if (parsed.index or 0) >= count:
            raise InputError(f"device {device!r} does not exist: this machine has {count} CUDA GPU(s), "
                             f"cuda:0 to cuda:{count - 1}.")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {device!r} was asked for, but Apple's MPS is not available here: use cpu.")
    return str(parsed)


def check_output(out: str | os.PathLike, inputs: tuple[str | os.PathLike | None, ...] = ()) -> Path:
    """Refuse an output path the job could not write at its end: a folder, a missing or read-only folder,
    a container that cannot hold H.264 + AAC, or one of the inputs itself."""
    path = Path(out)
    if path.is_dir():
        raise InputError(f"the output {path} is a folder: give a file name such as {path / 'result.mp4'}.")
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise InputError(f"cannot write a video named {path.name}: the output must end in "
                         f"{', '.join(OUTPUT_SUFFIXES)} (e.g. {path.with_suffix('.mp4').name}).")
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"the output folder {folder} does not exist: create it first, or choose another folder.")
    for source in inputs:
        if source is not None and Path(source).exists() and _same_file(path, Path(source)):
            raise InputError(f"the output {path.name} is also an input: choose a new file name for the result.")
    try:  # os.access is always True for root; only really creating a file tells (read-only mounts, ACLs)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".latentsync_write_test_"):
            pass
    except OSError as exc:
        raise InputError(f"cannot write into the output folder {folder} ({exc.strerror or exc}): "
                         "choose a folder you can write to.") from exc
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"the output {path} exists and is read-only: choose another name or remove it.")
    return path


def check_video(video: str | os.PathLike, max_seconds: float | None = None,
                max_pixels: int | None = None) -> MediaInfo:
    """Probe the input video once: readable, has a picture, not too long or too large."""
    info = probe(video, "video")
    if not info.has_video:
        raise InputError(f"{Path(video).name} has no video stream: upload a video of a talking face.")
    if max_pixels is not None and info.width * info.height > max_pixels:
        raise InputError(
            f"{Path(video).name} is {info.width}x{info.height} ({info.width * info.height / 1e6:.1f} megapixels); "
            f"this server accepts up to {max_pixels / 1e6:.1f} megapixels (e.g. {_example_size(max_pixels)}). "
            "Export it at a lower resolution (1080p is plenty) and try again."
        )
    check_duration(info, max_seconds)
    return info


def check_audio(audio: str | os.PathLike, max_seconds: float | None = None) -> MediaInfo:
    """Probe the speech once: readable, has sound, not too long, float samples finite."""
    info = probe(audio, "speech")
    check_duration(info, max_seconds)
    if not info.has_audio:
        raise InputError(f"{Path(audio).name} has no sound: upload the speech as WAV, MP3, M4A, FLAC or OGG, "
                         "or a video that has sound.")
    check_finite_samples(info)
    return info


def check_duration(info: MediaInfo, max_seconds: float | None) -> None:
    if max_seconds is not None and info.duration > max_seconds:
        raise InputError(f"{Path(info.path).name} lasts {info.duration:.0f} s; this server accepts up to "
                         f"{max_seconds:.0f} s. Trim it, or run the command line locally for long clips.")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _show(value) -> str:
    """A value as the user typed it, shortened (2**70 prints 22 digits)."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 24 else text[:20] + "…"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _example_size(max_pixels: int) -> str:
    for w, h in ((7680, 4320), (3840, 2160), (2560, 1440), (1920, 1080), (1280, 720), (854, 480)):
        if w * h <= max_pixels:
            return f"{w}x{h}"
    return "a smaller size"
