"""Wav2Vec2 features beside Whisper (the phoneme-aware audio improvement, ``models.phoneme_audio``).

Wav2Vec2's convolutional front end has a total stride of 320 samples: at 16 kHz it emits 50 frames per second,
the rate of the Whisper encoder's output. ``encode`` returns one row per Whisper feature row (padded with the
last frame or cut to that count), so ``WhisperAudioEncoder.frame_chunks(w2v[:, None])`` picks, for every video
frame, the Wav2Vec2 rows at exactly the 10 times of its Whisper chunk: (n, 10, d_w).

At inference a phoneme-aware checkpoint folder keeps its Wav2Vec2 in ``<folder>/wav2vec2/`` (a transformers
folder); ``load_wav2vec`` reads it there or fetches the model its ``improvements.json`` names:

    python -m latentsync_demo.audio.wav2vec CHECKPOINT_FOLDER      # once, online
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import huggingface_hub
import numpy as np
import torch
from huggingface_hub.errors import EntryNotFoundError
from torch import nn

from ..errors import CheckpointError
from ..hub import explain_download_errors
from ..models.improvements import Improvements, wav2vec_folder

WAV2VEC_WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # either is enough (transformers reads both)


class Wav2Vec2AudioEncoder(nn.Module):
    """A frozen ``transformers.Wav2Vec2Model``; ``encode(waveform) -> (L, d_w)`` at 50 Hz, float32 CPU."""

    def __init__(self, model):
        super().__init__()
        self.model = model.eval().requires_grad_(False)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> Wav2Vec2AudioEncoder:
        from transformers import Wav2Vec2Model

        try:
            model = Wav2Vec2Model.from_pretrained(str(path))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot load a Wav2Vec2 model from {path} ({exc.__class__.__name__}: {exc}); "
                                  "pass a transformers Wav2Vec2 folder, e.g. facebook/wav2vec2-base-960h") from exc
        return cls(model.to(device))

    @property
    def feature_dim(self) -> int:
        return self.model.config.hidden_size

    @torch.no_grad()
    def encode(self, waveform: np.ndarray | torch.Tensor, num_features: int | None = None) -> torch.Tensor:
        """(N,) 16 kHz mono in [-1, 1] -> (num_features or ~N/320, d_w) last hidden states."""
        audio = torch.as_tensor(np.asarray(waveform, dtype=np.float32)).flatten()
        audio = (audio - audio.mean()) / (audio.std() + 1e-7)  # Wav2Vec2FeatureExtractor's zero-mean unit-var
        device = next(self.model.parameters()).device
        hidden = self.model(audio[None].to(device)).last_hidden_state[0].float().cpu()  # (L_w, d_w)
        if num_features is None:
            return hidden
        if len(hidden) >= num_features:
            return hidden[:num_features]
        return torch.cat([hidden, hidden[-1:].expand(num_features - len(hidden), -1)])


def download_wav2vec(model: str, target: str | Path) -> Path:
    """The Hugging Face repo ``model`` (config + weights only) into ``target``; CheckpointError when offline."""
    target = Path(target)
    command = f"python -m latentsync_demo.audio.wav2vec {target.parent}"
    scratch = target.parent / f".{target.name}.download"  # moved into place whole: no half model in target
    try:
        with explain_download_errors(f"the Wav2Vec2 model {model}", model, command, target):
            huggingface_hub.hf_hub_download(model, "config.json", local_dir=scratch)
            for name in WAV2VEC_WEIGHTS:
                try:
                    huggingface_hub.hf_hub_download(model, name, local_dir=scratch)
                    break
                except EntryNotFoundError:  # not every repo has both formats
                    continue
            else:
                raise CheckpointError(f"{model} has none of {WAV2VEC_WEIGHTS}: not a transformers Wav2Vec2 repo")
            if target.is_dir() and not any(target.iterdir()):
                target.rmdir()
            os.replace(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def load_wav2vec(checkpoint_folder: str | Path, model: str, device: str | torch.device = "cpu",
                 download: bool = True) -> Wav2Vec2AudioEncoder:
    """The Wav2Vec2 of a phoneme-aware checkpoint: ``<folder>/wav2vec2/``, else ``model`` as a local folder,
    else ``model`` fetched from the Hugging Face hub into ``<folder>/wav2vec2/`` (clear error offline)."""
    local = wav2vec_folder(checkpoint_folder)
    if not (local / "config.json").is_file():
        if Path(model).is_dir():
            local = Path(model)
        elif download:
            download_wav2vec(model, local)
        else:
            raise CheckpointError(f"the Wav2Vec2 model of this phoneme-aware checkpoint is missing: {local} "
                                  f"(fetch {model} with: python -m latentsync_demo.audio.wav2vec {checkpoint_folder})")
    return Wav2Vec2AudioEncoder.from_pretrained(local, device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m latentsync_demo.audio.wav2vec",
                                     description="Fetch the Wav2Vec2 model a phoneme-aware checkpoint folder needs.")
    parser.add_argument("folder", type=Path, help="checkpoint folder with improvements.json")
    args = parser.parse_args(argv)
    try:
        improvements = Improvements.load(args.folder)
        if not improvements.phoneme_audio:
            print(f"{args.folder} is not a phoneme-aware checkpoint (no phoneme_audio in improvements.json): "
                  "it needs no Wav2Vec2", file=sys.stderr)
            return 1
        encoder = load_wav2vec(args.folder, improvements.wav2vec_model)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Wav2Vec2 ({encoder.feature_dim}-d) ready in {wav2vec_folder(args.folder)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
