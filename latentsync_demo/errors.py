"""User-facing error types.

Every error raised on purpose for a problem the user can fix derives from `LatentSyncError`; its message says what
is wrong and what to do about it, so the app and CLI can show it as is (no traceback needed).
"""


class LatentSyncError(Exception):
    """Base class for errors whose message is meant for the user (what is wrong + what to do)."""


class CheckpointError(LatentSyncError, ValueError):
    """A checkpoint file is missing, unreadable, truncated, or does not have the expected keys/shapes."""


class InputError(LatentSyncError, ValueError):
    """Bad user input (e.g. empty or too-short audio, unsupported array type or fps)."""
