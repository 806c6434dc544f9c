"""Audio features: whisper log-mel, the whisper encoder (LatentSync's Audio2Feature) and the feature cache."""

from .cache import FeatureCache
from .mel import log_mel_spectrogram
from .whisper import WhisperAudioEncoder

__all__ = ["FeatureCache", "WhisperAudioEncoder", "log_mel_spectrogram"]
