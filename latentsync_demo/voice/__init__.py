"""Keep the speaker's own voice: XTTS v2 voice cloning from the video's audio, re-voicing and typed scripts.

Modes for a lip-sync job (``prepare_driving_audio``):

* ``off``     — the uploaded audio drives the lip sync as is;
* ``revoice`` — the uploaded audio is transcribed (Whisper) and spoken again in the video speaker's voice
  (XTTS), each phrase time-stretched into its original slot, so the timing is kept;
* ``script``  — typed text is spoken in the video speaker's voice.

Heavy imports (coqui-tts, transformers) happen only when a model is first loaded.
"""

from .reference import speaker_reference
from .service import VOICE_MODES, VoiceService, prepare_driving_audio
from .store import LicenceNotAgreedError, VoiceModelPaths, download_voice_models, resolve_voice_models
from .xtts import LANGUAGES

__all__ = [
    "LANGUAGES",
    "LicenceNotAgreedError",
    "VOICE_MODES",
    "VoiceModelPaths",
    "VoiceService",
    "download_voice_models",
    "prepare_driving_audio",
    "resolve_voice_models",
    "speaker_reference",
]
