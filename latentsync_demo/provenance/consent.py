"""The consent gate: no lip sync unless the requester confirms the consent of the people shown (and heard).

Whoever hosts the app sets the statement users must tick with ``LATENTSYNC_CONSENT_TEXT`` (or ``app.py
--consent-text``). Scripts and servers that collected consent themselves set ``LATENTSYNC_CONSENT=1`` (CLI) or
pass ``consent=True`` to ``LipSyncService.lipsync``.
"""

from __future__ import annotations

import os

from ..errors import InputError

CONSENT_ENV = "LATENTSYNC_CONSENT"
STATEMENT_ENV = "LATENTSYNC_CONSENT_TEXT"
DEFAULT_STATEMENT = (
    "I confirm that the person shown in the video (and, when cloning a voice, the owner of that voice) has "
    "consented to this lip-synced video being made, and I will not use it to deceive or harm anyone. "
    "The result is marked as AI-generated."
)
_TRUE = {"1", "true", "yes", "y", "on"}


class ConsentError(InputError):
    """Generation was requested without confirming the consent of the people shown."""


def consent_statement() -> str:
    """The statement a user agrees to: $LATENTSYNC_CONSENT_TEXT, else the default."""
    return os.environ.get(STATEMENT_ENV, "").strip() or DEFAULT_STATEMENT


def consent_from_env() -> bool:
    """Whether $LATENTSYNC_CONSENT says consent was collected outside this program (1/true/yes)."""
    return os.environ.get(CONSENT_ENV, "").strip().lower() in _TRUE


def require_consent(consent: bool) -> None:
    """Raise ConsentError unless ``consent`` is exactly True (a truthy string such as "no" does not count)."""
    if consent is not True:
        raise ConsentError(
            "lip sync needs the consent of the person shown (and of the voice's owner when cloning a voice): "
            "confirm it first (app: tick the consent box; CLI: --consent or LATENTSYNC_CONSENT=1; "
            "Python / API: consent=True).",
            web="Tick the consent box first: lip sync needs the consent of the person shown (and of the voice's "
                "owner when cloning a voice). API clients: pass consent=True.",
        )
