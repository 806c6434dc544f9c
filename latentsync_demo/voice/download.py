"""Download the voice models: XTTS v2 (voice cloning, CPML licence) and a Whisper speech recogniser.

    python -m latentsync_demo.voice.download [--checkpoints DIR] [--agree-cpml] [--asr-repo openai/whisper-small]
                                             [--translation [--translation-repo facebook/m2m100_418M]]

XTTS v2 is under the Coqui Public Model License (non-commercial use only): pass --agree-cpml, or set
COQUI_TOS_AGREED=1, to accept it. Files go to DIR/xtts-v2/ and DIR/asr/ (and DIR/translation/ with
--translation: the model the translate voice mode needs).
"""

from __future__ import annotations

import argparse
import sys

from ..errors import CheckpointError
from ..store import default_root
from .store import DEFAULT_ASR_REPO, DEFAULT_TRANSLATION_REPO, download_voice_models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m latentsync_demo.voice.download",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", default=None, help=f"root folder (default: {default_root()})")
    parser.add_argument("--agree-cpml", action="store_true",
                        help="accept the Coqui Public Model License (non-commercial) of XTTS v2")
    parser.add_argument("--asr-repo", default=None, help=f"Whisper repo in transformers format "
                        f"(default: $LATENTSYNC_ASR_REPO or {DEFAULT_ASR_REPO})")
    parser.add_argument("--no-asr", action="store_true", help="XTTS only (enough for the type-a-script mode)")
    parser.add_argument("--translation", action="store_true",
                        help="also the translation model (the translate voice mode: dubbing into another language)")
    parser.add_argument("--translation-repo", default=None, help="an M2M100 repo in transformers format (default: "
                        f"$LATENTSYNC_TRANSLATION_REPO or {DEFAULT_TRANSLATION_REPO})")
    args = parser.parse_args(argv)
    try:
        paths = download_voice_models(args.checkpoints, args.agree_cpml, args.asr_repo, need_asr=not args.no_asr,
                                      need_translation=args.translation, translation_repo=args.translation_repo)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"voice models are ready in {paths.xtts}" + ("" if args.no_asr else f" and {paths.asr}")
          + (f" and {paths.translation}" if args.translation else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
