"""Fetching weight files from the Hugging Face hub, and the messages for files that are missing or failed to come.

The bottom layer of the package's weight handling: it imports nothing of ours but ``errors``. The registries that
know *which* files a model needs (``store``, ``voice.store``, ``eval.scorer``, ``audio.wav2vec``) call it, and
so does the ``download`` command. huggingface_hub shows a progress bar per file and resumes interrupted downloads.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import huggingface_hub
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

from .errors import CheckpointError

# What a download raises when the machine is offline, the repo or file is not there, or the disk is full.
NETWORK_ERRORS = (OfflineModeIsEnabled, LocalEntryNotFoundError, HfHubHTTPError, OSError)


def fetch_file(repo_id: str, filename: str, folder: Path, command: str) -> Path:
    """``folder / filename`` from the Hugging Face repo when missing (progress bar; resumes); CheckpointError
    naming ``command`` (the way to retry) when the download fails."""
    target = Path(folder) / filename
    if not target.is_file():
        print(f"downloading {repo_id}/{filename} -> {target}", file=sys.stderr)
        with explain_download_errors(filename, repo_id, command, target):
            huggingface_hub.hf_hub_download(repo_id, filename, local_dir=folder)
    return target


def fetch_file_to(repo_id: str, remote: str, target: Path, command: str) -> Path:
    """The repo's file ``remote`` (a path in the repo) as ``target``, when missing. It is downloaded into a scratch
    folder beside ``target``'s folder and moved into place, so a broken download leaves nothing in that folder."""
    target = Path(target)
    if target.is_file():
        return target
    scratch = target.parent.parent / ".download"
    print(f"downloading {repo_id}/{remote} -> {target}", file=sys.stderr)
    try:
        with explain_download_errors(remote, repo_id, command, target):
            fetched = huggingface_hub.hf_hub_download(repo_id, remote, local_dir=scratch)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(fetched, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


@contextmanager
def explain_download_errors(what: str, repo_id: str, command: str, destination: Path) -> Iterator[None]:
    """Turn a network, offline or disk error inside the block into ``download_error``'s CheckpointError."""
    try:
        yield
    except NETWORK_ERRORS as exc:
        raise download_error(what, repo_id, command, destination, exc) from exc


def download_error(what: str, repo_id: str, command: str, destination: Path, exc: BaseException) -> CheckpointError:
    """The message for a failed Hugging Face download: offline or not, the command, where files go."""
    offline = isinstance(exc, (OfflineModeIsEnabled, LocalEntryNotFoundError))
    why = "this machine is offline (or HF_HUB_OFFLINE=1)" if offline else f"{type(exc).__name__}: {exc}"
    return CheckpointError(
        f"could not download {what} from https://huggingface.co/{repo_id}: {why}.\n"
        f"Run  {command}  on a machine with internet access, or copy the files to {destination}.",
        web=f"Could not download {Path(what).name} from Hugging Face ({'this server is offline' if offline else why}). "
            "Ask the host to add the model files.",
    )


def missing_files_error(what: str, missing: list[Path], command: str, otherwise: str = "", *, note: str = "",
                        web: str | None = None) -> CheckpointError:
    """The message for weight files that are not there: ``what``, every missing path, then ``note`` (why we looked
    there, when that needs saying), the command that fetches them and ``otherwise`` (another way out)."""
    listed = "\n  ".join(str(p) for p in missing)
    return CheckpointError(
        f"{what}:\n  {listed}\n{note}Download them with:  {command}\n{otherwise}".rstrip("\n"),
        web=web or f"Model files this job needs are not on this server yet "
                   f"({', '.join(p.name for p in missing)}): ask the host to add them.",
    )
