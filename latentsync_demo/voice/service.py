"""VoiceService: the small facade the app and CLI use to keep the speaker's own voice.

    voice = VoiceService("checkpoints", device="cpu")
    audio, sr = voice.revoice("speech.wav", speaker_reference("in.mp4"), out_path="revoiced.wav")
    audio, sr = voice.script("Hello there.", "en", speaker_reference("in.mp4"), out_path="spoken.wav")
    script = voice.transcribe_translate("in.mp4", "es")          # an editable DubScript
    audio, sr, placements = voice.dub(script, speaker_reference("in.mp4"), total_seconds=12.0)

or, for a lip-sync job, one call that returns the audio file to drive it with (see ``prepare_driving_audio``).
Models load lazily, once per process (shared by all VoiceService objects), and a lock serialises their use.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..media import load_audio, write_wav
from ..settings import VOICE_MODES, VoiceRequest
from .asr import ASR_RATE, Transcriber
from .dubbing import DubScript, DubSegment, Placement, check_script, place_dub, xtts_language
from .reference import REFERENCE_RATE, speaker_reference
from .store import VoiceModelPaths, download_voice_models, models_needed, resolve_voice_models
from .timing import place_segments, trim_silence
from .xtts import VoiceCloner

_MODELS: dict[tuple, object] = {}  # (kind, folder, device) -> VoiceCloner | Transcriber | Translator, per process
_LOCK = threading.RLock()
SEGMENT_CACHE_SIZE = 512  # a few long videos' worth of phrases (each a few seconds of 24 kHz float32)
SEGMENT_MAX_AGE = 3600.0  # seconds a spoken segment stays on disk: as long as the service keeps results


class SegmentCache:
    """Spoken dub segments by (voice model, speaker, language, text, seed), so re-dubbing an edited transcript
    speaks only what changed. In memory, and on disk too: ZeroGPU runs each GPU call in a forked process, and only
    the disk copy outlives the call that made it. At most ``size`` entries each (the oldest go first)."""

    def __init__(self, folder: Path, size: int = SEGMENT_CACHE_SIZE, max_age: float = SEGMENT_MAX_AGE):
        self.folder, self.size, self.max_age = Path(folder), size, max_age
        self.memory: OrderedDict[str, np.ndarray] = OrderedDict()

    @staticmethod
    def key(*parts) -> str:
        return hashlib.sha256(repr(parts).encode()).hexdigest()

    def get(self, key: str) -> np.ndarray | None:
        if key in self.memory:
            self.memory.move_to_end(key)
            return self.memory[key]
        path = self.folder / f"{key}.npy"
        try:
            if time.time() - path.stat().st_mtime > self.max_age:
                return None  # expired: someone's voice is not kept longer than their results
            audio = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None
        self._remember(key, audio)
        return audio

    def put(self, key: str, audio: np.ndarray) -> None:
        self._remember(key, audio)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            staged = self.folder / f".{key}.{os.getpid()}.npy"
            np.save(staged, np.asarray(audio, np.float32), allow_pickle=False)
            os.replace(staged, self.folder / f"{key}.npy")  # whole or absent: a reader never sees half a file
            files = sorted(self.folder.glob("*.npy"), key=lambda p: p.stat().st_mtime)
            now = time.time()
            for n, old in enumerate(files):
                if n < len(files) - self.size or now - old.stat().st_mtime > self.max_age:
                    old.unlink(missing_ok=True)
        except OSError:  # a full or read-only disk only costs speaking the segment again later
            pass

    def _remember(self, key: str, audio: np.ndarray) -> None:
        self.memory[key] = audio
        while len(self.memory) > self.size:
            self.memory.popitem(last=False)


_SEGMENTS = SegmentCache(Path(tempfile.gettempdir()) / "latentsync_dub_segments")


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class VoiceService:
    def __init__(self, checkpoints_root: str | Path | None = None, device: str | None = None):
        self.paths: VoiceModelPaths = resolve_voice_models(checkpoints_root)
        self.device = device or _default_device()

    # --- models -----------------------------------------------------------------------------------------
    def missing_files(self, mode: str = "revoice") -> list[Path]:
        return self.paths.missing(**models_needed(mode))

    def download(self, agree_to_cpml: bool = False, mode: str = "revoice") -> VoiceModelPaths:
        """Fetch missing voice models; XTTS needs CPML agreement (or COQUI_TOS_AGREED=1)."""
        return download_voice_models(self.paths.root, agree_to_cpml, **models_needed(mode))

    def _model(self, kind: str, factory):
        folder = {"xtts": self.paths.xtts, "asr": self.paths.asr, "translation": self.paths.translation}[kind]
        key = (kind, str(folder.resolve()), self.device)
        with _LOCK:
            if key not in _MODELS:
                self.paths.require(need_asr=kind == "asr", need_xtts=kind == "xtts",
                                   need_translation=kind == "translation")
                _MODELS[key] = factory(folder, self.device)
            return _MODELS[key]

    def cloner(self) -> VoiceCloner:
        return self._model("xtts", VoiceCloner)

    def transcriber(self) -> Transcriber:
        return self._model("asr", Transcriber)

    def translator(self):
        from .translate import Translator

        return self._model("translation", Translator)

    # --- jobs ---------------------------------------------------------------------------------------------
    def _latents(self, speaker_reference_audio: np.ndarray | str | os.PathLike):
        if not isinstance(speaker_reference_audio, np.ndarray):  # a file the user chose: cut its speech
            speaker_reference_audio = speaker_reference(speaker_reference_audio, user_supplied=True)
        return self.cloner().speaker_latents(speaker_reference_audio, REFERENCE_RATE)

    def revoice(self, driving_audio_path: str | os.PathLike, speaker_reference: np.ndarray | str | os.PathLike,
                out_path: str | os.PathLike | None = None, language: str | None = None,
                seed: int | None = None) -> tuple[np.ndarray, int]:
        """Say what ``driving_audio_path`` says, in the reference speaker's voice, with the same timing.

        Whisper transcribes it into timed segments; XTTS speaks each one, which is then time-stretched (pitch
        kept) into the segment's original slot. The track has the driving audio's duration.
        """
        self.paths.require(need_asr=True)
        driving = load_audio(driving_audio_path, ASR_RATE)
        with _LOCK:
            cloner = self.cloner()
            latents = self._latents(speaker_reference)
            transcript = self.transcriber().transcribe(driving, language)
            if not transcript.segments:
                raise InputError("no speech was recognised in the driving audio, so there is nothing to re-voice. "
                                 "Use the type-a-script mode and type what should be said.")
            xtts_language = cloner.language(language or transcript.language)
            sr = cloner.sample_rate
            pieces = [(seg.start, seg.end, trim_silence(cloner.synthesize(seg.text, xtts_language, latents, seed),
                                                        sr)) for seg in transcript.segments]
        audio = place_segments(pieces, int(round(driving.size * sr / ASR_RATE)), sr)
        if out_path is not None:
            write_wav(out_path, audio, sr)
        return audio, sr

    def script(self, text: str, language: str | None, speaker_reference: np.ndarray | str | os.PathLike,
               out_path: str | os.PathLike | None = None, seed: int | None = None) -> tuple[np.ndarray, int]:
        """``text`` spoken in the reference speaker's voice (``language`` defaults to English)."""
        if not text or not text.strip():
            raise InputError("there is no text to speak; type what the speaker should say.")
        self.paths.require(need_asr=False)
        with _LOCK:
            cloner = self.cloner()
            audio = cloner.synthesize(text, cloner.language(language), self._latents(speaker_reference), seed)
        if out_path is not None:
            write_wav(out_path, audio, cloner.sample_rate)
        return audio, cloner.sample_rate

    def transcribe_translate(self, speech: np.ndarray | str | os.PathLike, target_language: str,
                             source_language: str | None = None) -> DubScript:
        """What ``speech`` (a video with sound, an audio file, or its samples: 16 kHz mono float32) says, as timed
        segments, each translated into ``target_language`` (an XTTS code): the transcript a user reviews and edits
        before dubbing."""
        target = xtts_language(target_language)
        self.paths.require(need_asr=True, need_xtts=False, need_translation=True)
        audio = speech if isinstance(speech, np.ndarray) else load_audio(speech, ASR_RATE)
        with _LOCK:
            transcript = self.transcriber().transcribe(audio, source_language)
            translator = self.translator()
            texts = translator.translate([s.text for s in transcript.segments], transcript.language, target)
        segments = tuple(DubSegment(s.start, s.end, s.text, t) for s, t in zip(transcript.segments, texts))
        return check_script(DubScript(transcript.language, target, segments), "the transcript of the speech")

    def speak_segment(self, text: str, language: str, latents, seed: int | None) -> np.ndarray:
        """One dub segment in the cloned voice, silence trimmed; cached, so only edited segments are re-spoken.
        Each segment is seeded on its own (XTTS samples), so its audio never depends on the other segments."""
        key = SegmentCache.key(str(self.paths.xtts.resolve()), latents.key, language, text, seed)
        with _LOCK:
            audio = _SEGMENTS.get(key)
            if audio is None:
                cloner = self.cloner()
                audio = trim_silence(cloner.synthesize(text, language, latents, seed), cloner.sample_rate)
                _SEGMENTS.put(key, audio)
            return audio

    def dub(self, script: DubScript, speaker_reference: np.ndarray | str | os.PathLike, total_seconds: float,
            seed: int | None = None) -> tuple[np.ndarray, int, list[Placement]]:
        """The transcript's ``text``s spoken in the reference speaker's voice, each starting at its segment's
        start and stretched towards its length (``dubbing.place_dub``): (track, sample rate, placements)."""
        self.paths.require(need_asr=False)
        with _LOCK:
            cloner = self.cloner()
            latents = self._latents(speaker_reference)
            language = cloner.language(script.target_language)
            pieces = [(s.start, s.end, self.speak_segment(s.text, language, latents, seed)) for s in script.segments]
        sr = cloner.sample_rate
        track, placements = place_dub(pieces, int(round(total_seconds * sr)), sr)
        return track, sr, placements


@dataclass(frozen=True)
class Speech:
    """What a voice request made for a job: the speech the lip sync follows, and what else the output carries."""

    driving: Path
    soundtrack: Path | None = None  # the output's audio instead of ``driving``: speech over the ducked room
    script: DubScript | None = None  # translate: the transcript that was spoken
    subtitles: Path | None = None  # translate: .srt of the spoken text at the times it is heard
    notes: str = ""  # what did not fit (translate), for the job's result


def prepare_driving_audio(mode: str, video_path: str | os.PathLike, audio_path: str | os.PathLike | None,
                          text: str | None, language: str | None, reference: str | os.PathLike | None,
                          workdir: str | os.PathLike, voice_service: VoiceService | None,
                          seed: int | None = None) -> Path:
    """The audio file that should drive the lip sync for voice ``mode`` ("off" | "revoice" | "script"); see
    ``prepare_speech`` for every mode and what else a voice request makes."""
    request = VoiceRequest(mode, text, language, reference)
    return prepare_speech(request, video_path, audio_path, workdir, voice_service, seed).driving


def prepare_speech(request: VoiceRequest, video_path: str | os.PathLike, audio_path: str | os.PathLike | None,
                   workdir: str | os.PathLike, voice_service: VoiceService | None = None,
                   seed: int | None = None) -> Speech:
    """The speech a job should lip-sync to, for ``request.mode``:

    off: ``audio_path`` as is. revoice: ``audio_path``'s words in the speaker's voice, same timing. script:
    ``request.text`` in the speaker's voice. translate: the speech of ``audio_path`` (default: the video's own)
    transcribed, translated into ``request.target_language`` (or ``request.transcript``, an edited one) and
    spoken in the speaker's voice on the original timing, with subtitles. The speaker's voice comes from
    ``request.reference`` when given, else from the video's own audio track. ``request.keep_room``: the output's
    soundtrack is the new speech over the video's own sound, ducked. New audio is written as WAV into
    ``workdir``; ``seed`` makes XTTS repeatable.
    """
    mode = request.mode
    if mode not in VOICE_MODES:
        raise InputError(f"unknown voice mode {mode!r}; choose one of {', '.join(VOICE_MODES)}.")
    if mode in ("off", "revoice") and audio_path is None:
        raise InputError("upload the speech audio that the video should lip-sync to.")
    if mode == "off":
        return Speech(Path(audio_path))
    if mode == "script" and not (request.text and request.text.strip()):
        raise InputError("type the script the speaker should say (or switch voice mode off and upload audio).")
    voice_service = voice_service or VoiceService()
    # before any work: say what to download
    voice_service.paths.require(**models_needed(mode, request.transcript is not None))
    ref = (speaker_reference(request.reference, user_supplied=True) if request.reference
           else speaker_reference(video_path))
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / f"voice_{mode}.wav"
    if mode == "translate":
        return _dub(request, audio_path or video_path, video_path, ref, out, voice_service, seed)
    if mode == "revoice":
        audio, sr = voice_service.revoice(audio_path, ref, out_path=out, language=request.language, seed=seed)
    else:
        audio, sr = voice_service.script(request.text, request.language, ref, out_path=out, seed=seed)
    return Speech(out, _room_soundtrack(request, video_path, audio, sr, workdir))


def _dub(request: VoiceRequest, speech_path, video_path, reference, out: Path, voice_service: VoiceService,
         seed: int | None) -> Speech:
    """Translate mode: the transcript (given or made), spoken and placed; subtitles at the heard times."""
    from ..media.subtitles import Cue, write_srt
    from .dubbing import load_script, timing_notes

    source = load_audio(speech_path, ASR_RATE)  # decoded once: its length, and what is transcribed
    duration = source.size / ASR_RATE
    script = request.transcript
    if script is None:
        script = voice_service.transcribe_translate(source, request.target_language, request.language)
    elif not isinstance(script, DubScript):
        script = load_script(script, request.target_language)
    elif request.target_language:  # as for a transcript file: the request's language wins
        script = replace(script, target_language=xtts_language(request.target_language))
    script = check_script(script, duration=duration)
    audio, sr, placements = voice_service.dub(script, reference, duration, seed)
    write_wav(out, audio, sr)
    subtitles = out.with_suffix(".srt")
    write_srt([Cue(p.start, p.end, s.text) for p, s in zip(placements, script.segments)], subtitles)
    return Speech(out, _room_soundtrack(request, video_path, audio, sr, out.parent), script, subtitles,
                  timing_notes(placements, script))


def _room_soundtrack(request: VoiceRequest, video_path, speech: np.ndarray, sample_rate: int,
                     workdir: Path) -> Path | None:
    """With ``keep_room``: the new speech over the video's own sound, ducked while the speech plays."""
    if not request.keep_room:
        return None
    from ..media.mix import duck_under

    room = load_audio(video_path, sample_rate)
    path = workdir / "soundtrack.wav"
    write_wav(path, duck_under(room, speech, sample_rate), sample_rate)
    return path
