"""Write a complete tiny set of random weights in the official file layout and formats.

    python -m latentsync_demo.testing.tiny_checkpoints DIR [--resolution 64] [--seed 0] [--no-voice]

DIR then works anywhere a checkpoint folder is accepted (``--checkpoints DIR``): the UNet as an official
``latentsync_unet.pt`` dict, whisper in OpenAI's format, the VAE as a diffusers folder, and the UNet's
config in ``unet_config.json``, an LCM "student" (a copy of the UNet) in ``lcm/`` for the lcm sampler, and
a tiny XTTS (``xtts-v2/``) and Whisper ASR (``asr/``) for the voice modes.
Nothing is downloaded; outputs are meaningless but every code path runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..models import save_unet_checkpoint
from ..store import UNET_FILE, VAE_DIR, WHISPER_FILE, write_unet_config
from .tiny_lcm import write_tiny_lcm
from .tiny_models import TINY_UNET_CONFIG, TINY_WHISPER_DIMS, tiny_unet, tiny_vae
from .whisper import write_random_openai_whisper

TINY_RESOLUTION = 64


def write_tiny_checkpoints(
    folder: str | Path, resolution: int = TINY_RESOLUTION, seed: int = 0, voice: bool = False
) -> Path:
    """Write the tiny set into ``folder`` (created if needed) and return it.

    ``voice`` also writes a tiny XTTS, a tiny Whisper ASR and a tiny M2M100 translation model (``xtts-v2/``,
    ``asr/``, ``translation/``: every voice mode, translation dubbing included); off by default here
    because importing coqui-tts costs seconds, on by default on the command line.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_unet_checkpoint(tiny_unet(seed), folder / UNET_FILE)
    write_unet_config(folder, TINY_UNET_CONFIG, resolution)
    write_random_openai_whisper(folder / WHISPER_FILE, TINY_WHISPER_DIMS, seed=seed)
    tiny_vae(seed).save_pretrained(folder / VAE_DIR, safe_serialization=True)
    write_tiny_lcm(folder, seed)
    if voice:
        from .tiny_translation import write_tiny_translation_model
        from .tiny_voice import write_tiny_voice_models

        write_tiny_voice_models(folder)
        write_tiny_translation_model(folder)
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m latentsync_demo.testing.tiny_checkpoints", description=__doc__)
    parser.add_argument("folder")
    parser.add_argument("--resolution", type=int, default=TINY_RESOLUTION, help="face crop size (multiple of 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-voice", action="store_true", help="skip the tiny XTTS and ASR models")
    args = parser.parse_args(argv)
    folder = write_tiny_checkpoints(args.folder, args.resolution, args.seed, voice=not args.no_voice)
    print(f"tiny random checkpoints written to {folder}")


if __name__ == "__main__":
    main()
