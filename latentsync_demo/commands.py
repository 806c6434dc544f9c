"""One command line for everything: ``latentsync <command> [options]`` (or ``python -m latentsync_demo <command>``).

Each command is the ``main(argv)`` of one module, imported only when that command runs: ``latentsync --help``
lists the commands without loading torch. Without a command the arguments go to ``run``, so
``python -m latentsync_demo --video in.mp4 --audio speech.wav --out out.mp4`` works as it always did, and so
does every module's own entry point (``python -m latentsync_demo.download ...``).
"""

from __future__ import annotations

import importlib
import sys

# command -> (module whose main(argv) runs it, what it does)
COMMANDS = {
    "run": ("latentsync_demo.cli", "lip-sync one video to speech (the default when no command is given)"),
    "redo": ("latentsync_demo.redo_cli", "regenerate seconds START-END of a finished job (another seed, steps)"),
    "batch": ("latentsync_demo.batch", "run a CSV / JSONL manifest of lip-sync jobs"),
    "verify": ("latentsync_demo.verify", "does a video carry this tool's watermark? (and its C2PA manifest)"),
    "eval": ("latentsync_demo.eval.batch", "score the lip sync (LSE-C / LSE-D) of many clips, write a CSV"),
    "download": ("latentsync_demo.download", "fetch a preset's weights from Hugging Face"),
    "download-voice": ("latentsync_demo.voice.download", "fetch the voice models (XTTS v2, CPML licence; Whisper ASR)"),
    "download-wav2vec": ("latentsync_demo.audio.wav2vec", "fetch the Wav2Vec2 a phoneme-aware checkpoint needs"),
    "data": ("latentsync_demo.training.data", "talking-head videos -> the training cache (faces + audio)"),
    "train": ("latentsync_demo.training.train_unet", "train or fine-tune the UNet (under accelerate launch)"),
    "distill": ("latentsync_demo.training.lcm_distill", "distil a 1-8 step LCM student (under accelerate launch)"),
    "convert-videomae": ("latentsync_demo.training.videomae_convert",
                         "the official TREPA encoder file -> a transformers VideoMAE folder"),
    "tiny-checkpoints": ("latentsync_demo.testing.tiny_checkpoints", "write a tiny random checkpoint set (smoke runs)"),
    "tiny-voice": ("latentsync_demo.testing.tiny_voice", "write tiny random voice models (smoke runs)"),
    "tiny-translation": ("latentsync_demo.testing.tiny_translation",
                         "write a tiny random translation model (smoke runs)"),
    "demo-media": ("latentsync_demo.testing.media_demo", "write a small demo clip and speech-like audio"),
}
DEFAULT_COMMAND = "run"


def usage() -> str:
    width = max(map(len, COMMANDS))
    listed = "\n".join(f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items())
    return (
        "usage: latentsync <command> [options]      (or: python -m latentsync_demo <command> [options])\n\n"
        f"LatentSync lip sync and its tools.\n\ncommands:\n{listed}\n\n"
        "latentsync <command> --help shows a command's options. Without a command the options are run's:\n"
        "  latentsync --video in.mp4 --audio speech.wav --out out.mp4\n"
        "Training commands run on several GPUs with: accelerate launch -m latentsync_demo train|distill ..."
    )


def resolve_command(argv: list[str]) -> tuple[str, list[str]] | None:
    """(module, its arguments) for a command line; None when it asks for this overview (nothing, -h, --help)."""
    if not argv or argv[0] in ("-h", "--help"):
        return None
    if argv[0] in COMMANDS:
        return COMMANDS[argv[0]][0], argv[1:]
    if argv[0].startswith("-"):  # the old form: python -m latentsync_demo --video ... --audio ... --out ...
        return COMMANDS[DEFAULT_COMMAND][0], argv
    raise KeyError(argv[0])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        command = resolve_command(argv)
    except KeyError as exc:
        print(f"error: unknown command {exc.args[0]!r}; choose one of: {', '.join(COMMANDS)} "
              "(latentsync --help says what each does)", file=sys.stderr)
        return 2
    if command is None:
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    module, args = command
    return importlib.import_module(module).main(args) or 0  # the testing writers return None
