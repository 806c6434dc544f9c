"""Machine translation of transcript segments with M2M100 (transformers), between any two of its 100 languages.

M2M100 covers every language XTTS speaks, under the MIT licence, in one model (Marian opus-mt needs a model per
language pair). Language codes are the model's (``en``, ``es``, ``zh``); ``model_language`` maps XTTS's and
Whisper's codes onto them. Each segment is translated on its own, so its timing stays its own and an edit to one
segment's text never changes another's.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CheckpointError, InputError


def _token_budget(source_tokens: int) -> int:
    """New tokens a segment's translation may take: room for wordier languages, a bound on a runaway generation."""
    return 3 * source_tokens + 10


def model_language(code: str) -> str:
    """The translation model's code for an XTTS or Whisper language code ("zh-cn" -> "zh", "pt-BR" -> "pt")."""
    return (code or "").strip().lower().replace("_", "-").split("-")[0]


class Translator:
    """An M2M100 checkpoint folder (``save_pretrained`` layout: config, SentencePiece tokenizer, weights)."""

    def __init__(self, folder: str | Path, device: str = "cpu"):
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        self.folder, self.device = Path(folder), torch.device(device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
            self.model = AutoModelForSeq2SeqLM.from_pretrained(self.folder).to(self.device).eval()
        except (OSError, ValueError, ImportError) as exc:
            raise CheckpointError(f"cannot load the translation model from {self.folder}: {exc}") from exc
        codes = getattr(self.tokenizer, "lang_code_to_token", None)
        if not codes:
            raise CheckpointError(f"{self.folder} is not a many-to-many translation model (its tokenizer has no "
                                  "language codes); download facebook/m2m100_418M with "
                                  "python -m latentsync_demo.voice.download --translation")
        self.languages = frozenset(codes)

    def check_language(self, code: str, role: str) -> str:
        """The model's code for ``code``; InputError naming the language and the ``role`` it plays."""
        language = model_language(code)
        if language not in self.languages:
            raise InputError(f"the translation model cannot translate {role} {code!r}; it knows "
                             f"{len(self.languages)} languages, e.g. {', '.join(sorted(self.languages)[:12])}.")
        return language

    @torch.inference_mode()
    def translate(self, texts: list[str], source: str, target: str) -> list[str]:
        """Each of ``texts`` (in language ``source``) in language ``target``; the same list when they match."""
        source, target = self.check_language(source, "from"), self.check_language(target, "into")
        if source == target:
            return list(texts)
        self.tokenizer.src_lang = source
        target_id = self.tokenizer.get_lang_id(target)
        out = []
        budget = self.model.generation_config.max_new_tokens  # a checkpoint's own bound wins (the tiny test model)
        for text in texts:  # one at a time: no padding, so a segment's translation never depends on another's
            inputs = self.tokenizer(text, return_tensors="pt").to(self.device)
            tokens = self.model.generate(**inputs, forced_bos_token_id=target_id,
                                         max_new_tokens=budget or _token_budget(inputs.input_ids.shape[1]))
            # The decoder starts with </s> and the forced language token; neither is text.
            out.append(self.tokenizer.decode(tokens[0, 2:], skip_special_tokens=True).strip())
        return out
