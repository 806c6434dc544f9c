"""A tiny random M2M100 translation model in the real folder layout, for tests and smoke runs.

    python -m latentsync_demo.testing.tiny_translation DIR      -> DIR/translation/  (about 100 kB, 1-2 s)

Nothing is downloaded. The folder is what ``save_pretrained`` writes for facebook/m2m100_418M: config.json,
generation_config.json, model.safetensors, and the tokenizer's vocab.json, sentencepiece.bpe.model and
tokenizer_config.json. The SentencePiece model is trained here on random lowercase "words" (120 pieces); the
model is one 16-wide layer each way. Its generation config bans the language and special tokens as text and asks
for 4 to 10 new tokens, so every "translation" is a short nonempty string of letters: gibberish, deterministic.
"""

from __future__ import annotations

import argparse
import io
import json
import string
from pathlib import Path

import numpy as np
import torch

from ..voice.store import resolve_voice_models

PIECES = 120


def _sentencepiece_model(seed: int) -> bytes:
    import sentencepiece

    rng = np.random.default_rng(seed)
    words = ["".join(rng.choice(list(string.ascii_lowercase), rng.integers(2, 8))) for _ in range(2000)]
    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(" ".join(words[i: i + 20]) for i in range(0, len(words), 20)), model_writer=proto,
        vocab_size=PIECES, model_type="bpe", character_coverage=1.0, bos_id=0, pad_id=1, eos_id=2, unk_id=3,
        minloglevel=2)
    return proto.getvalue()


def write_tiny_translation(folder: str | Path, seed: int = 0) -> Path:
    """A tiny random M2M100 checkpoint folder that ``voice.translate.Translator`` loads; returns the folder."""
    import sentencepiece
    from transformers import GenerationConfig, M2M100Config, M2M100ForConditionalGeneration, M2M100Tokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    proto = _sentencepiece_model(seed)
    (folder / "sentencepiece.bpe.model").write_bytes(proto)
    pieces = sentencepiece.SentencePieceProcessor(model_proto=proto)
    (folder / "vocab.json").write_text(json.dumps({pieces.id_to_piece(i): i for i in range(pieces.get_piece_size())}))
    tokenizer = M2M100Tokenizer(str(folder / "vocab.json"), str(folder / "sentencepiece.bpe.model"))
    language_ids = [tokenizer.get_lang_id(code) for code in tokenizer.lang_code_to_token]
    # The language tokens follow the pieces, then M2M100's 8 "made-up words": the embedding covers them all.
    vocab_size = max(language_ids) + 1 + 8
    config = M2M100Config(
        vocab_size=vocab_size, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=256,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, scale_embedding=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = M2M100ForConditionalGeneration(config).eval()
    not_text = [0, 1, 3, *language_ids, *range(max(language_ids) + 1, vocab_size)]
    model.generation_config = GenerationConfig(
        bos_token_id=0, eos_token_id=2, pad_token_id=1, decoder_start_token_id=2, num_beams=1, min_new_tokens=5,
        max_new_tokens=12, no_repeat_ngram_size=1, bad_words_ids=[[i] for i in not_text])
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_tiny_translation_model(root: str | Path, seed: int = 0) -> Path:
    """``root/translation`` (where ``VoiceService(root)`` looks); returns that folder."""
    return write_tiny_translation(resolve_voice_models(root).translation, seed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m latentsync_demo.testing.tiny_translation", description=__doc__)
    parser.add_argument("folder", help="checkpoints root: the model goes to FOLDER/translation")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"tiny random translation model written to {write_tiny_translation_model(args.folder, args.seed)}")


if __name__ == "__main__":
    main()
