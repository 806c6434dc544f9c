"""Write a small demo clip and a speech-like audio file: ``python -m latentsync_demo.testing.media_demo DIR``.

The clip is a moving photo of a real face (skimage's astronaut), 3 s at 30 fps; the audio is 4 s, so the
result also shows the ping-pong extension of a video shorter than its audio.
"""

import argparse
from pathlib import Path

from .media import make_speech_wav, make_talking_head_clip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m latentsync_demo.testing.media_demo", description=__doc__)
    parser.add_argument("folder")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    video = make_talking_head_clip(folder / "demo.mp4", seconds=3.0, fps=30, size=(480, 360))
    audio = make_speech_wav(folder / "speech.wav", seconds=4.0, seed=1)
    print(f"wrote {video} and {audio}")


if __name__ == "__main__":
    main()
