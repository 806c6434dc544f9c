"""Where the voice models live, what is missing, and how to fetch them.

Both sit next to the lip-sync weights, under the same checkpoints root (``--checkpoints`` or
``$LATENTSYNC_CHECKPOINTS``, default ``checkpoints/``)::

    <root>/xtts-v2/config.json, model.pth, vocab.json      Coqui XTTS v2 (CPML: non-commercial only)
    <root>/asr/                                             Whisper in transformers' save_pretrained layout
    <root>/translation/                                     M2M100 (translation dubbing; MIT), same layout

``speakers_xtts.pth`` (XTTS's built-in studio voices) is not fetched: we always clone the speaker, and Coqui's
loader only reads that file when it exists. ``dvae.pth`` and ``mel_stats.pth`` are for training; the mel
statistics used at inference are a buffer inside ``model.pth``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub

from ..errors import CheckpointError
from ..hub import explain_download_errors, fetch_file, missing_files_error
from ..store import default_root

XTTS_DIR = "xtts-v2"
ASR_DIR = "asr"
XTTS_REPO = "coqui/XTTS-v2"
XTTS_FILES = ("config.json", "model.pth", "vocab.json")
# whisper-small: multilingual, ~1 GB, good timestamps; override with $LATENTSYNC_ASR_REPO (e.g. openai/whisper-tiny).
DEFAULT_ASR_REPO = "openai/whisper-small"
ASR_PATTERNS = ["*.json", "*.txt", "model.safetensors"]  # safetensors only: skip the .bin/.h5/.msgpack copies
# M2M100 418M: one MIT-licensed model translating between 100 languages, all 17 of XTTS's among them (Marian
# opus-mt would need one model per language pair). Override with $LATENTSYNC_TRANSLATION_REPO (e.g. m2m100_1.2B).
TRANSLATION_DIR = "translation"
DEFAULT_TRANSLATION_REPO = "facebook/m2m100_418M"
TRANSLATION_PATTERNS = ["*.json", "*.model", "*.safetensors"]  # config, tokenizer, SentencePiece, weights
TRANSLATION_FALLBACK = "pytorch_model.bin"  # only when the repo has no safetensors (loaded with weights_only)
CPML_URL = "https://coqui.ai/cpml"
DOWNLOAD_COMMAND = "python -m latentsync_demo.voice.download --agree-cpml"


class LicenceNotAgreedError(CheckpointError):
    """XTTS weights were requested without agreeing to the Coqui Public Model License."""


def cpml_agreed(agree_to_cpml: bool = False) -> bool:
    """True when the caller agreed, or ``COQUI_TOS_AGREED=1`` is set (Coqui's own switch for the same question)."""
    return agree_to_cpml or os.environ.get("COQUI_TOS_AGREED", "").strip() == "1"


@dataclass(frozen=True)
class VoiceModelPaths:
    """Resolved folders of the voice models (files may still be missing: see ``missing()``)."""

    root: Path
    xtts: Path
    asr: Path
    translation: Path

    def missing_xtts(self) -> list[Path]:
        return [self.xtts / name for name in XTTS_FILES if not (self.xtts / name).is_file()]

    def missing_asr(self) -> list[Path]:
        wanted = [self.asr / "config.json", self.asr / "generation_config.json"]
        missing = [p for p in wanted if not p.is_file()]
        # transformers writes either file name, depending on version and on how the folder was made.
        for alternatives in (("model.safetensors", "pytorch_model.bin"), ("tokenizer.json", "vocab.json"),
                             ("preprocessor_config.json", "processor_config.json")):
            if not any((self.asr / name).is_file() for name in alternatives):
                missing.append(self.asr / alternatives[0])
        return missing

    def missing_translation(self) -> list[Path]:
        folder = self.translation
        missing = [folder / name for name in ("config.json", "tokenizer_config.json") if not (folder / name).is_file()]
        if not any((folder / name).is_file() for name in ("model.safetensors", TRANSLATION_FALLBACK)):
            missing.append(folder / "model.safetensors")
        if not list(folder.glob("*.model")) and not (folder / "tokenizer.json").is_file():
            missing.append(folder / "sentencepiece.bpe.model")
        return missing

    def missing(self, need_asr: bool = True, need_xtts: bool = True, need_translation: bool = False) -> list[Path]:
        return ((self.missing_xtts() if need_xtts else []) + (self.missing_asr() if need_asr else [])
                + (self.missing_translation() if need_translation else []))

    def require(self, need_asr: bool = True, need_xtts: bool = True, need_translation: bool = False) -> None:
        """Raise a CheckpointError naming every missing file, where we looked, and the download command."""
        missing = self.missing(need_asr, need_xtts, need_translation)
        if missing:
            command = download_command(self.root, need_translation)
            raise missing_files_error(
                "voice model files are missing", missing, command,
                f"(XTTS v2 is under the non-commercial Coqui Public Model License, {CPML_URL}; "
                "--agree-cpml says you accept it.)",
                web="The voice-cloning models are not on this server yet: tick the licence box and press "
                    "“Download voice models”, or ask the host to add them.",
            )


def models_needed(mode: str, transcript_given: bool = False) -> dict[str, bool]:
    """Which optional voice models a voice ``mode`` needs (XTTS it always does), as ``require``/``missing``
    keywords: the recogniser to re-voice or to transcribe, the translation model to translate; a translate
    request that brings its own (edited) transcript needs neither."""
    transcribes = mode == "revoice" or (mode == "translate" and not transcript_given)
    return {"need_asr": transcribes, "need_translation": mode == "translate" and not transcript_given}


def resolve_voice_models(root: str | Path | None = None) -> VoiceModelPaths:
    """Where the voice models are (or will be, once downloaded) under the checkpoints ``root``."""
    root = Path(root) if root is not None else default_root()
    return VoiceModelPaths(root, root / XTTS_DIR, root / ASR_DIR, root / TRANSLATION_DIR)


def download_command(root: Path, translation: bool = False) -> str:
    """The command that fetches what is missing (``--translation`` adds the translation model)."""
    return f"{DOWNLOAD_COMMAND}{' --translation' if translation else ''} --checkpoints {root}"


def _cpml_refusal(root: Path) -> LicenceNotAgreedError:
    return LicenceNotAgreedError(
        "XTTS v2 (the voice-cloning model) is released under the Coqui Public Model License (CPML, "
        f"{CPML_URL}): non-commercial use only, and you must accept it before downloading the weights.\n"
        f"To accept and download, run:  {DOWNLOAD_COMMAND} --checkpoints {root}\n"
        "or set the environment variable COQUI_TOS_AGREED=1 (Coqui's own switch for the same agreement).",
        web="Voice cloning uses XTTS v2 under the non-commercial Coqui Public Model License: tick the box to "
            "accept it, then download the voice models.",
    )


def download_voice_models(root: str | Path | None = None, agree_to_cpml: bool = False,
                          asr_repo: str | None = None, need_asr: bool = True, need_translation: bool = False,
                          translation_repo: str | None = None) -> VoiceModelPaths:
    """Fetch whatever voice model files are missing under ``root`` (progress bars, resumable).

    XTTS files are only fetched with CPML agreement (``agree_to_cpml`` or ``COQUI_TOS_AGREED=1``); without it a
    ``LicenceNotAgreedError`` explains the licence and how to agree. Offline, the error names the command.
    """
    paths = resolve_voice_models(root)
    command = download_command(paths.root, need_translation)
    missing_xtts = paths.missing_xtts()
    if missing_xtts and not cpml_agreed(agree_to_cpml):
        raise _cpml_refusal(paths.root)
    for path in missing_xtts:
        fetch_file(XTTS_REPO, path.name, paths.xtts, command)
    if need_asr and paths.missing_asr():
        repo = asr_repo or os.environ.get("LATENTSYNC_ASR_REPO", DEFAULT_ASR_REPO)
        print(f"downloading {repo} -> {paths.asr}", file=sys.stderr)
        with explain_download_errors("the speech recogniser", repo, command, paths.root):
            huggingface_hub.snapshot_download(repo, allow_patterns=ASR_PATTERNS, local_dir=paths.asr)
    if need_translation and paths.missing_translation():
        _download_translation(paths, translation_repo, command)
    paths.require(need_asr, need_translation=need_translation)
    return paths


def _download_translation(paths: VoiceModelPaths, repo: str | None, command: str) -> None:
    """The translation model's config, tokenizer and safetensors weights (the .bin only when there are none)."""
    repo = repo or os.environ.get("LATENTSYNC_TRANSLATION_REPO", DEFAULT_TRANSLATION_REPO)
    print(f"downloading {repo} -> {paths.translation}", file=sys.stderr)
    with explain_download_errors("the translation model", repo, command, paths.root):
        huggingface_hub.snapshot_download(repo, allow_patterns=TRANSLATION_PATTERNS, local_dir=paths.translation)
        if not list(paths.translation.glob("*.safetensors")):
            huggingface_hub.snapshot_download(repo, allow_patterns=[TRANSLATION_FALLBACK],
                                              local_dir=paths.translation)
