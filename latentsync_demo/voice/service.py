"""VoiceService: the small facade the app and CLI use to keep the speaker's own voice.

    voice = VoiceService("checkpoints", device="cpu")
    audio, sr = voice.revoice("speech.wav", speaker_reference("in.mp4"), out_path="revoiced.wav")
    audio, sr = voice.script("Hello there.", "en", speaker_reference("in.mp4"), out_path="spoken.wav")

or, for a lip-sync job, one call that returns the audio file to drive it with (see ``prepare_driving_audio``).
Models load lazily, once per process (shared by all VoiceService objects), and a lock serialises their use.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..media import load_audio, write_wav
from ..settings import VOICE_MODES
from .asr import ASR_RATE, Transcriber
from .reference import REFERENCE_RATE, speaker_reference
from .store import VoiceModelPaths, download_voice_models, resolve_voice_models
from .timing import place_segments, trim_silence
from .xtts import VoiceCloner

_MODELS: dict[tuple, object] = {}  # (kind, folder, device) -> VoiceCloner | Transcriber, for the whole process
_LOCK = threading.RLock()


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class VoiceService:
    def __init__(self, checkpoints_root: str | Path | None = None, device: str | None = None):
        self.paths: VoiceModelPaths = resolve_voice_models(checkpoints_root)
        self.device = device or _default_device()

    # --- models -----------------------------------------------------------------------------------------
    def missing_files(self, mode: str = "revoice") -> list[Path]:
        return self.paths.missing(need_asr=mode == "revoice")

    def download(self, agree_to_cpml: bool = False, mode: str = "revoice") -> VoiceModelPaths:
        """Fetch missing voice models; XTTS needs CPML agreement (or COQUI_TOS_AGREED=1)."""
        return download_voice_models(self.paths.root, agree_to_cpml, need_asr=mode == "revoice")

    def _model(self, kind: str, factory):
        folder = self.paths.xtts if kind == "xtts" else self.paths.asr
        key = (kind, str(folder.resolve()), self.device)
        with _LOCK:
            if key not in _MODELS:
                self.paths.require(need_asr=kind == "asr", need_xtts=kind == "xtts")
                _MODELS[key] = factory(folder, self.device)
            return _MODELS[key]

    def cloner(self) -> VoiceCloner:
        return self._model("xtts", VoiceCloner)

    def transcriber(self) -> Transcriber:
        return self._model("asr", Transcriber)

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


def prepare_driving_audio(mode: str, video_path: str | os.PathLike, audio_path: str | os.PathLike | None,
                          text: str | None, language: str | None, reference: str | os.PathLike | None,
                          workdir: str | os.PathLike, voice_service: VoiceService | None,
                          seed: int | None = None) -> Path:
    """The audio file that should drive the lip sync for voice ``mode`` ("off" | "revoice" | "script").

    off: ``audio_path`` as is. revoice: ``audio_path``'s words in the speaker's voice, same timing. script:
    ``text`` in the speaker's voice. The speaker's voice comes from ``reference`` when given, else from the
    video's own audio track. New audio is written as WAV into ``workdir``; ``seed`` makes XTTS repeatable.
    """
    if mode not in VOICE_MODES:
        raise InputError(f"unknown voice mode {mode!r}; choose one of {', '.join(VOICE_MODES)}.")
    if mode in ("off", "revoice") and audio_path is None:
        raise InputError("upload the speech audio that the video should lip-sync to.")
    if mode == "off":
        return Path(audio_path)
    if mode == "script" and not (text and text.strip()):
        raise InputError("type the script the speaker should say (or switch voice mode off and upload audio).")
    voice_service = voice_service or VoiceService()
    voice_service.paths.require(need_asr=mode == "revoice")  # before any work: say what to download
    ref = speaker_reference(reference, user_supplied=True) if reference else speaker_reference(video_path)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / f"voice_{mode}.wav"
    if mode == "revoice":
        voice_service.revoice(audio_path, ref, out_path=out, language=language, seed=seed)
    else:
        voice_service.script(text, language, ref, out_path=out, seed=seed)
    return out
