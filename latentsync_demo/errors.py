"""User-facing error types.

Every error raised on purpose for a problem the user can fix derives from `LatentSyncError`; its message says what
is wrong and what to do about it, so the app and CLI can show it as is (no traceback needed).

The message is written for the command line and the Python API (paths, commands). Where the web app's user needs
other words (a button instead of a command, no ffmpeg internals), the error carries them in ``web``;
``user_message`` turns any error into what a web page may show: server paths become file names as uploaded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping


class LatentSyncError(Exception):
    """Base class for errors whose message is meant for the user (what is wrong + what to do).

    ``web``: the same advice in the web app's terms, when the message names commands, flags or internals.
    """

    def __init__(self, message: str = "", *, web: str | None = None):
        super().__init__(message)
        self.web = web


class CheckpointError(LatentSyncError, ValueError):
    """A checkpoint file is missing, unreadable, truncated, or does not have the expected keys/shapes."""


class InputError(LatentSyncError, ValueError):
    """Bad user input (e.g. empty or too-short audio, unsupported array type or fps)."""


# An absolute path that is not part of a URL: "/tmp/gradio/3f2a/clip.mp4" -> group 1 "clip.mp4".
_SERVER_PATH = re.compile(r"(?<![\w:/.~-])/(?:[^\s/'\"`]+/)+([^\s/'\"`]+)")


def user_message(exc: BaseException, names: Mapping[str, str] | None = None) -> str:
    """What a web page shows for ``exc``: its ``web`` text (else its message), with every server path replaced
    by a file name: the name the user uploaded (``names``: server path -> that name), else the path's last part.
    """
    text = getattr(exc, "web", None) or str(exc)
    for path, name in sorted((names or {}).items(), key=lambda item: -len(item[0])):
        if path:
            text = text.replace(str(path), name)
    return _SERVER_PATH.sub(r"\1", text)


def as_sentence(text: str) -> str:
    """A message as a page or an API answer shows it on its own: starting with a capital letter, unless it starts
    with a file name ("clip.MOV is ..." keeps the name as uploaded). The messages themselves stay lower-case
    where they follow "error: " on the command line."""
    first_word = text.split(" ", 1)[0].rstrip(":,;")
    return text[:1].upper() + text[1:] if first_word.isalpha() else text
