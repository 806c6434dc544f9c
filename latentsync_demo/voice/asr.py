"""Speech recognition with Whisper (transformers): timed segments and the spoken language.

Whisper predicts timestamp tokens between phrases; ``generate(return_timestamps=True, return_segments=True)``
turns them into ``(start, end, tokens)`` segments, for short clips and (sequentially, 30 s at a time) for long
ones. When no timestamps come out (it happens with tiny/random test models, and now and then on odd audio) the
whole transcript becomes one segment spanning the clip's speech, from the first to the last voiced sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError, InputError
from .reference import voiced_regions

ASR_RATE = 16000  # Whisper's input rate
WINDOW_FRAMES = 3000  # 30 s of log-mel frames: Whisper's window


@dataclass(frozen=True)
class Segment:
    start: float  # seconds
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    segments: list[Segment]
    language: str  # Whisper's code: "en", "de", "zh", ...

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments)


class Transcriber:
    """A Whisper checkpoint folder (``save_pretrained`` layout) loaded once; ``transcribe`` 16 kHz audio."""

    def __init__(self, folder: str | Path, device: str = "cpu"):
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.folder, self.device = Path(folder), torch.device(device)
        try:
            self.processor = WhisperProcessor.from_pretrained(self.folder)
            self.model = WhisperForConditionalGeneration.from_pretrained(self.folder).to(self.device).eval()
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot load the speech recogniser from {self.folder}: {exc}") from exc
        self.id_to_language = {i: tok.strip("<|>") for tok, i in
                               (self.model.generation_config.lang_to_id or {}).items()}

    @torch.inference_mode()
    def detect_language(self, features: torch.Tensor) -> str:
        """Whisper's language guess on the first 30 s."""
        ids = self.model.detect_language(features[..., :WINDOW_FRAMES].to(self.device))
        return self.id_to_language.get(int(ids[0]), "en")

    @torch.inference_mode()
    def transcribe(self, audio: np.ndarray, language: str | None = None) -> Transcript:
        """Segments of ``audio`` (16 kHz mono float32) with text; ``language`` (Whisper code) skips detection."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        duration = audio.size / ASR_RATE
        if duration <= 0:
            raise InputError("the audio to transcribe is empty.")
        long_form = audio.size > WINDOW_FRAMES * 160  # more than 30 s: keep all frames (sequential decoding)
        inputs = self.processor.feature_extractor(
            audio, sampling_rate=ASR_RATE, return_tensors="pt", return_attention_mask=True,
            **({"truncation": False, "padding": "longest"} if long_form else {}))
        features = inputs.input_features.to(self.device, self.model.dtype)
        language = (language or self.detect_language(features)).split("-")[0].lower()
        try:
            out = self.model.generate(features, attention_mask=inputs.attention_mask.to(self.device),
                                      return_timestamps=True, return_segments=True, task="transcribe",
                                      language=language)
        except ValueError as exc:  # transformers' "Unsupported language": the user's --language
            if "language" not in str(exc).lower():
                raise
            raise InputError(f"the speech recogniser does not know the language {language!r}: give a code such "
                             "as en, de, es or zh (or leave it empty to detect it).") from exc
        tokenizer = self.processor.tokenizer
        segments = []
        for seg in out.get("segments", [[]])[0] if isinstance(out, dict) else []:
            start, end = float(seg["start"]), min(float(seg["end"]), duration)
            text = tokenizer.decode(seg["tokens"], skip_special_tokens=True).strip()
            if start < duration and end - start >= 0.05 and any(ch.isalnum() for ch in text):
                segments.append(Segment(start, end, text))
        if not segments:  # no timestamps: one segment over the clip's speech
            sequences = out["sequences"] if isinstance(out, dict) else out
            text = tokenizer.decode(sequences[0], skip_special_tokens=True).strip()
            regions = voiced_regions(audio, ASR_RATE)
            if any(ch.isalnum() for ch in text):
                span = (regions[0][0] / ASR_RATE, regions[-1][1] / ASR_RATE) if regions else (0.0, duration)
                segments.append(Segment(span[0], span[1], text))
        return Transcript(segments, language)
