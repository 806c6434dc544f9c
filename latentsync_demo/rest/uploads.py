"""Uploads saved under server-chosen names: ``<job folder>/<role><suffix>``.

Nothing of the client's file name reaches the file system except its suffix, and only a whitelisted one
(ffmpeg picks its demuxer by content, but a known suffix keeps the files recognisable and the error early).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import UploadFile

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
AUDIO_SUFFIXES = (".wav", ".mp3", ".m4a", ".flac", ".ogg", ".opus", ".aac", *VIDEO_SUFFIXES)
TRANSCRIPT_SUFFIXES = (".json", ".srt")  # an edited dub transcript (voice=translate)
_CHUNK = 1 << 20


class RequestError(Exception):
    """A problem with the request itself; answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


async def save_upload(upload: UploadFile, folder: Path, role: str, suffixes: tuple[str, ...], max_bytes: int) -> Path:
    """Copy ``upload`` to ``folder/<role><suffix>`` in chunks; RequestError for a bad type, size or emptiness."""
    suffix = Path(upload.filename or "").suffix.lower()
    if suffix not in suffixes:
        raise RequestError(415, f"{role}: unsupported file type {suffix or '(no extension)'!r}; "
                                f"send one of {', '.join(suffixes)}")
    target = folder / f"{role}{suffix}"
    size = 0
    with open(target, "wb") as out:
        while chunk := await upload.read(_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise RequestError(413, f"{role} is larger than this server's limit of {max_bytes // 2**20} MB; "
                                        "send a shorter or more compressed file")
            out.write(chunk)
    if size == 0:
        raise RequestError(400, f"{role} is empty (0 bytes); upload the file again")
    return target
