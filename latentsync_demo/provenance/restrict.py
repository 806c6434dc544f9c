"""The restriction hook: host-supplied checks that may refuse a job before any work starts. Off by default.

A check is any callable ``check(job: JobRequest) -> str | None``: it returns a reason to refuse (shown to the
user) or None to allow. Plug checks in either way:

- ``LipSyncService(..., restrictions=[my_check])`` (Python), or
- ``LATENTSYNC_RESTRICTIONS="mypkg.policy:check,othermod:check2"`` (env var naming ``module:function`` entries,
  read when the service is created; the app, CLI and any server built on the service pick it up).

``protected_names`` below is a working example: it refuses jobs whose file names or script mention a name
listed in ``LATENTSYNC_PROTECTED_NAMES`` (comma-separated). A face-embedding check would compare an embedding
of ``job.video``'s face with a list of protected embeddings in the same way.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError

RESTRICTIONS_ENV = "LATENTSYNC_RESTRICTIONS"
PROTECTED_NAMES_ENV = "LATENTSYNC_PROTECTED_NAMES"


@dataclass(frozen=True)
class JobRequest:
    """What a check sees about a job. ``settings``: the GenerationSettings; ``voice``: the VoiceRequest."""

    video: Path
    audio: Path | None
    preset: str
    job_id: str
    settings: Any = None
    voice: Any = None
    extra: dict = field(default_factory=dict)

    @property
    def script(self) -> str | None:
        return getattr(self.voice, "text", None)


RestrictionCheck = Callable[[JobRequest], "str | None"]


class RestrictedError(InputError):
    """A host's restriction check refused the job."""


def load_checks(spec: str | None) -> list[RestrictionCheck]:
    """Callables named by a comma-separated ``module:function`` list (e.g. the env var's value)."""
    checks = []
    for entry in filter(None, (part.strip() for part in (spec or "").split(","))):
        module_name, _, attr = entry.partition(":")
        if not module_name or not attr:
            raise ValueError(f"{RESTRICTIONS_ENV}: {entry!r} is not of the form module:function")
        check = getattr(importlib.import_module(module_name), attr, None)
        if not callable(check):
            raise ValueError(f"{RESTRICTIONS_ENV}: {entry!r} does not name a callable")
        checks.append(check)
    return checks


def checks_from_env() -> list[RestrictionCheck]:
    return load_checks(os.environ.get(RESTRICTIONS_ENV))


def enforce(checks: Iterable[RestrictionCheck], job: JobRequest) -> None:
    """Run every check; RestrictedError with the first refusal's reason."""
    for check in checks:
        reason = check(job)
        if reason:
            raise RestrictedError(f"this job was refused by the host's policy: {reason}")


def protected_names(job: JobRequest) -> str | None:
    """Example check: refuse when a file name or the script mentions a name in $LATENTSYNC_PROTECTED_NAMES."""
    names = [n.strip().lower() for n in os.environ.get(PROTECTED_NAMES_ENV, "").split(",") if n.strip()]
    text = " ".join(str(x) for x in (job.video.name, job.audio.name if job.audio else "", job.script or ""))
    text = text.lower().replace("_", " ").replace("-", " ")
    hit = next((n for n in names if n in text), None)
    return None if hit is None else f"{hit!r} is a protected person on this server"
