"""XTTS v2 voice cloning (Coqui ``coqui-tts``): load once, condition on a speaker, synthesise text.

We call the model's tensor-level methods (``get_gpt_cond_latents``, ``get_speaker_embedding``, ``inference``)
rather than ``TTS.api``: the reference audio is already in memory (cut from the video), Coqui's file loading goes
through torchaudio/torchcodec and needs FFmpeg's shared libraries, and its sentence splitter needs spaCy.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError, InputError
from .reference import REFERENCE_RATE

# XTTS v2's languages (its config.json lists them too); for menus before the model is loaded.
LANGUAGES = ("en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru", "nl", "cs", "ar", "zh-cn", "hu", "ko", "ja", "hi")
SMALL_DECODER_KEY = "small_decoder"  # config.json key of tiny test checkpoints (see testing/tiny_voice.py)
LANGUAGE_EXTRAS = {"ja": "cutlet fugashi[unidic-lite]", "zh-cn": "pypinyin"}  # coqui-tts[ja] / [zh] extras
PAUSE_S = 0.2  # silence between sentences synthesised separately


@dataclass(frozen=True)
class SpeakerLatents:
    """What XTTS needs of a speaker: GPT conditioning latents and the decoder's speaker embedding."""

    gpt_cond_latent: torch.Tensor
    speaker_embedding: torch.Tensor
    key: str  # sha256 of the reference samples


def reference_key(reference: np.ndarray, sample_rate: int) -> str:
    """Content hash of a reference clip: same samples and rate, same latents."""
    samples = np.ascontiguousarray(reference, dtype=np.float32)
    return hashlib.sha256(samples.tobytes() + f"/{sample_rate}".encode()).hexdigest()


def split_text(text: str, limit: int) -> list[str]:
    """Sentences packed into chunks of at most ``limit`` characters (XTTS degrades past ~250).

    Over-long sentences are cut at commas, then at spaces. Our own splitter: Coqui's needs spaCy.
    """
    sentences = [s.strip() for s in re.split(r"(?<=[.!?;。！？])\s+|\n+", text) if s.strip()]
    pieces: list[str] = []
    for sentence in sentences:
        while len(sentence) > limit:
            cut = max(sentence.rfind(", ", 0, limit), sentence.rfind(" ", 0, limit))
            cut = cut if cut > 0 else limit
            pieces.append(sentence[:cut + 1].strip())
            sentence = sentence[cut + 1:].strip()
        if sentence:
            pieces.append(sentence)
    chunks: list[str] = []
    for piece in pieces:
        if chunks and len(chunks[-1]) + 1 + len(piece) <= limit:
            chunks[-1] += " " + piece
        else:
            chunks.append(piece)
    return chunks


def _small_decoder(args, spec: dict):
    """A HiFi-GAN decoder and speaker encoder of the sizes in ``spec`` (XttsArgs does not expose them)."""
    from TTS.encoder.models.resnet import ResNetSpeakerEncoder
    from TTS.tts.layers.xtts.hifigan_decoder import HifiDecoder

    decoder = HifiDecoder(
        input_sample_rate=args.input_sample_rate, output_sample_rate=args.output_sample_rate,
        output_hop_length=args.output_hop_length, ar_mel_length_compression=args.gpt_code_stride_len,
        decoder_input_dim=args.decoder_input_dim, d_vector_dim=args.d_vector_dim,
        cond_d_vector_in_each_upsampling_layer=args.cond_d_vector_in_each_upsampling_layer,
        **{k: v for k, v in spec.items() if k.endswith("_decoder")})
    decoder.speaker_encoder = ResNetSpeakerEncoder(
        input_dim=64, proj_dim=args.d_vector_dim, layers=spec["speaker_layers"],
        num_filters=spec["speaker_filters"], log_input=True, use_torch_spec=True,
        audio_config=decoder.speaker_encoder_audio_config)
    return decoder


def build_xtts(config, small_decoder: dict | None = None):
    """``Xtts(config)``; with ``small_decoder`` (tiny test checkpoints only) its decoder has those sizes."""
    from TTS.tts.models.xtts import Xtts

    if not small_decoder:
        return Xtts(config)

    class SmallDecoderXtts(Xtts):
        def init_models(self):  # load_checkpoint calls this again after reading the vocabulary
            super().init_models()
            self.hifigan_decoder = _small_decoder(self.args, small_decoder)

    return SmallDecoderXtts(config)


class VoiceCloner:
    """XTTS v2 from a checkpoint folder (``config.json``, ``model.pth``, ``vocab.json``), loaded once."""

    def __init__(self, folder: str | Path, device: str = "cpu", cache_size: int = 8):
        from TTS.tts.configs.xtts_config import XttsConfig

        self.folder, self.device = Path(folder), torch.device(device)
        try:
            raw = json.loads((self.folder / "config.json").read_text())
            self.config = XttsConfig()
            self.config.load_json(str(self.folder / "config.json"))
            self.model = build_xtts(self.config, raw.get(SMALL_DECODER_KEY))
            self.model.load_checkpoint(self.config, checkpoint_dir=str(self.folder), eval=True, strict=True)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"cannot load XTTS from {self.folder}: {exc}") from exc
        self.model.to(self.device)
        self.sample_rate = int(self.config.model_args.output_sample_rate)  # 24 kHz for XTTS v2
        self.languages = list(self.config.languages)
        self._latents: OrderedDict[str, SpeakerLatents] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.RLock()

    def language(self, code: str | None) -> str:
        """XTTS's code for ``code`` (Whisper's "zh" is XTTS's "zh-cn"); InputError listing the choices."""
        code = (code or "en").strip().lower().replace("_", "-")
        for candidate in (code, code.split("-")[0], f"{code.split('-')[0]}-cn"):
            if candidate in self.languages:
                return candidate
        raise InputError(f"XTTS cannot speak language {code!r}; choose one of: {', '.join(self.languages)} "
                         "(--language, or the app's language menu).")

    def speaker_latents(self, reference: np.ndarray, sample_rate: int = REFERENCE_RATE) -> SpeakerLatents:
        """Conditioning of ``reference`` (mono float32), cached by content hash: a repeat costs nothing."""
        key = reference_key(reference, sample_rate)
        with self._lock:
            if key in self._latents:
                self._latents.move_to_end(key)
                return self._latents[key]
            audio = torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float32))[None].to(self.device)
            if self.config.sound_norm_refs:
                audio = audio / audio.abs().max().clamp(min=1e-6) * 0.75
            gpt_cond = self.model.get_gpt_cond_latents(audio, sample_rate, length=self.config.gpt_cond_len,
                                                       chunk_length=self.config.gpt_cond_chunk_len)
            speaker = self.model.get_speaker_embedding(audio[:, : self.config.max_ref_len * sample_rate],
                                                       sample_rate)
            latents = SpeakerLatents(gpt_cond, speaker, key)
            self._latents[key] = latents
            while len(self._latents) > self._cache_size:
                self._latents.popitem(last=False)
            return latents

    def synthesize(self, text: str, language: str, latents: SpeakerLatents, seed: int | None = None) -> np.ndarray:
        """``text`` spoken in the cloned voice: float32 mono at ``self.sample_rate``.

        Long text is synthesised sentence by sentence (XTTS has a ~250-character comfort zone and a 400-token
        limit) with short pauses in between.
        """
        language = self.language(language)
        chunks = split_text(text, self.model.tokenizer.char_limits.get(language.split("-")[0], 250))
        if not chunks:
            raise InputError("there is no text to speak; type what the speaker should say.")
        c = self.config
        settings = dict(temperature=c.temperature, length_penalty=c.length_penalty,
                        repetition_penalty=c.repetition_penalty, top_k=c.top_k, top_p=c.top_p)
        pause = np.zeros(int(PAUSE_S * self.sample_rate), np.float32)
        parts: list[np.ndarray] = []
        with self._lock:
            if seed is not None:
                torch.manual_seed(seed)
            for chunk in chunks:
                try:
                    out = self.model.inference(chunk, language, latents.gpt_cond_latent,
                                               latents.speaker_embedding, **settings)
                except ImportError as exc:  # ja / zh text normalisation lives in optional packages
                    raise InputError(f"speaking {language!r} needs extra packages: pip install "
                                     f"{LANGUAGE_EXTRAS.get(language, '')} ({exc})") from exc
                except NotImplementedError as exc:  # num2words cannot spell numbers in this language (hi)
                    raise InputError(f"numbers cannot be read out in {language!r}: write them in words.") from exc
                parts += [np.asarray(out["wav"], dtype=np.float32).reshape(-1), pause]
        return np.concatenate(parts[:-1])
