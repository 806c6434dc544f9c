"""Tiny random voice models (XTTS v2 and a Whisper recogniser) in the real folder layouts, for tests and smoke runs.

    python -m latentsync_demo.testing.tiny_voice DIR      -> DIR/xtts-v2/ and DIR/asr/  (about 2 MB, 2-3 s)

Nothing is downloaded. The XTTS folder is what Coqui saves (``config.json``, ``model.pth``, ``vocab.json``): a
200-token BPE vocabulary trained with ``tokenizers``, a one-layer 32-wide GPT, and a small HiFi-GAN decoder and
speaker encoder whose sizes sit under the ``small_decoder`` key of config.json (XttsArgs has no fields for them;
``latentsync_demo.voice.xtts.build_xtts`` reads it). The GPT never emits its stop token, so every sentence
comes out at the maximum length: 37 audio tokens, about 1.7 s at 24 kHz.

The Whisper folder is a ``save_pretrained`` one: a 16-wide, one-layer model, a byte-level tokenizer with
Whisper's special, language and timestamp tokens, and a generation config that lets only lowercase letters,
spaces and timestamps through and only English be detected, so the random model writes "words" and timed
segments (whose times are random; the recogniser clips them to the clip).
"""

from __future__ import annotations

import argparse
import json
import string
from pathlib import Path

import numpy as np
import torch

from ..voice.store import VoiceModelPaths, resolve_voice_models
from ..voice.xtts import LANGUAGES, SMALL_DECODER_KEY

TINY_XTTS_ARGS = dict(
    gpt_layers=1, gpt_n_model_channels=32, gpt_n_heads=2, gpt_max_audio_tokens=40, gpt_max_text_tokens=402,
    gpt_max_prompt_tokens=70, gpt_num_audio_tokens=66, gpt_start_audio_token=64, gpt_stop_audio_token=65,
    gpt_use_perceiver_resampler=True, decoder_input_dim=32, d_vector_dim=16)
# HiFi-GAN upsampling must multiply to output_hop_length (256) so the output stays at 24 kHz.
TINY_DECODER = dict(
    upsample_initial_channel_decoder=16, upsample_rates_decoder=[8, 8, 4], upsample_kernel_sizes_decoder=[16, 16, 8],
    resblock_kernel_sizes_decoder=[3], resblock_dilation_sizes_decoder=[[1, 3, 5]],
    speaker_layers=[1, 1, 1, 1], speaker_filters=[4, 8, 8, 16])


def _xtts_vocab(path: Path, seed: int) -> None:
    """A 200-token BPE vocabulary with XTTS's special tokens ([STOP]=0, [UNK], [SPACE], [START], [en], ...)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    rng = np.random.default_rng(seed)
    letters = list(string.ascii_lowercase)
    words = ["".join(rng.choice(letters, rng.integers(2, 8))) for _ in range(3000)]
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    special = ["[STOP]", "[UNK]", "[SPACE]", "[START]"] + [f"[{lang}]" for lang in LANGUAGES]
    trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=special, show_progress=False,
                                  initial_alphabet=letters + list(string.digits + ".,!?'-:;"))
    tokenizer.train_from_iterator([" ".join(words[i: i + 20]) for i in range(0, len(words), 20)], trainer)
    tokenizer.save(str(path))


def write_tiny_xtts(folder: str | Path, seed: int = 0) -> Path:
    """A tiny random XTTS v2 checkpoint folder that ``VoiceCloner`` loads; returns the folder."""
    from TTS.tts.configs.xtts_config import XttsArgs, XttsConfig
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

    from ..voice.xtts import build_xtts

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _xtts_vocab(folder / "vocab.json", seed)
    config = XttsConfig(model_args=XttsArgs(**TINY_XTTS_ARGS), gpt_cond_len=30, gpt_cond_chunk_len=4, max_ref_len=30)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_xtts(config, TINY_DECODER)
        model.tokenizer = VoiceBpeTokenizer(vocab_file=str(folder / "vocab.json"))
        model.init_models()  # now with the vocabulary: builds the GPT and fills in the text-token ids
    with torch.no_grad():  # never stop: a fixed, predictable output length
        model.gpt.mel_head.bias[config.model_args.gpt_stop_audio_token] = -30.0
    torch.save({"model": model.state_dict()}, folder / "model.pth")
    data = config.to_dict()
    data[SMALL_DECODER_KEY] = TINY_DECODER
    (folder / "config.json").write_text(json.dumps(data, indent=1))
    return folder


def write_tiny_asr(folder: str | Path, seed: int = 0) -> Path:
    """A tiny random Whisper (transformers ``save_pretrained`` layout) that ``Transcriber`` loads."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, WhisperProcessor, WhisperTokenizer)
    from transformers.models.whisper.tokenization_whisper import LANGUAGES as WHISPER_LANGUAGES

    folder = Path(folder)
    # Byte-level BPE without merges: the 256 byte symbols, then <|endoftext|>, then Whisper's special tokens in
    # the order its tokenizer assumes (language ids follow <|startoftranscript|>), then the 1501 timestamps.
    alphabet = sorted(ByteLevel.alphabet())
    vocab = {symbol: i for i, symbol in enumerate(alphabet)}
    eot = vocab["<|endoftext|>"] = len(vocab)
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[])
    special = ["<|startoftranscript|>", *(f"<|{code}|>" for code in WHISPER_LANGUAGES), "<|translate|>",
               "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]
    tokenizer.add_special_tokens({"additional_special_tokens": special})
    tokenizer.add_tokens([f"<|{i * 0.02:.2f}|>" for i in range(1501)])
    ids = tokenizer.convert_tokens_to_ids
    sot, no_ts = ids("<|startoftranscript|>"), ids("<|notimestamps|>")
    text_ok = {vocab[c] for c in string.ascii_lowercase} | {vocab["Ġ"]}  # "Ġ" is the byte-level space
    suppress = [i for i in range(eot) if i not in text_ok] + list(range(sot, no_ts))  # no languages as text
    config = WhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=80, d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        max_source_positions=1500, max_target_positions=448, pad_token_id=eot, bos_token_id=eot,
        eos_token_id=eot, decoder_start_token_id=sot, begin_suppress_tokens=None, suppress_tokens=None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=eot, eos_token_id=eot, pad_token_id=eot, decoder_start_token_id=sot, max_length=64,
        is_multilingual=True, lang_to_id={"<|en|>": ids("<|en|>")},
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        no_timestamps_token_id=no_ts, prev_sot_token_id=ids("<|startofprev|>"), max_initial_timestamp_index=50,
        begin_suppress_tokens=[vocab["Ġ"], eot], suppress_tokens=suppress)
    model.save_pretrained(folder)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer).save_pretrained(
        folder)
    return folder


def write_tiny_voice_models(root: str | Path, seed: int = 0) -> VoiceModelPaths:
    """Write ``root/xtts-v2`` and ``root/asr`` (the layout ``VoiceService(root)`` reads); returns their paths."""
    paths = resolve_voice_models(root)
    write_tiny_xtts(paths.xtts, seed)
    write_tiny_asr(paths.asr, seed)
    paths.require()
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m latentsync_demo.testing.tiny_voice", description=__doc__)
    parser.add_argument("folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    paths = write_tiny_voice_models(args.folder, args.seed)
    print(f"tiny random voice models written to {paths.xtts} and {paths.asr}")


if __name__ == "__main__":
    main()
