"""Download the voice models: XTTS v2 (voice cloning, CPML licence) and a Whisper speech recogniser.

    python -m latentsync_demo.voice.download [--checkpoints DIR] [--agree-cpml] [--asr-repo openai/whisper-small]

XTTS v2 is under the Coqui Public Model License (non-commercial use only): pass --agree-cpml, or set
COQUI_TOS_AGREED=1, to accept it. Files go to DIR/xtts-v2/ and DIR/asr/.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import CheckpointError
from ..store import default_root
from .store import DEFAULT_ASR_REPO, download_voice_models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m latentsync_demo.voice.download",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", default=None, help=f"root folder (default: {default_root()})")
    parser.add_argument("--agree-cpml", action="store_true",
                        help="accept the Coqui Public Model License (non-commercial) of XTTS v2")
    parser.add_argument("--asr-repo", default=None, help=f"Whisper repo in transformers format "
                        f"(default: $LATENTSYNC_ASR_REPO or {DEFAULT_ASR_REPO})")
    parser.add_argument("--no-asr", action="store_true", help="XTTS only (enough for the type-a-script mode)")
    args = parser.parse_args(argv)
    try:
        paths = download_voice_models(args.checkpoints, args.agree_cpml, args.asr_repo, need_asr=not args.no_asr)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"voice models are ready in {paths.xtts}" + ("" if args.no_asr else f" and {paths.asr}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
