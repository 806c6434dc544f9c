"""Download a preset's weights from Hugging Face into the official checkpoint layout.

    python -m latentsync_demo.download --preset latentsync-1.5 [--checkpoints DIR]

huggingface_hub shows a progress bar per file and resumes interrupted downloads. Besides the UNet, whisper and
VAE this fetches the two insightface files of the official face pass (``<root>/auxiliary/models/buffalo_l/``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from .errors import CheckpointError
from .store import (DEFAULT_PRESET, INSIGHTFACE_FILES, INSIGHTFACE_REPO, PRESETS, UNET_FILE, VAE_FILES, VAE_REPO,
                    WHISPER_FILE, CheckpointSet, default_root, resolve)


def download(preset: str = DEFAULT_PRESET, root: str | Path | None = None) -> Path:
    """Fetch whatever of ``preset`` is missing under ``root``; returns the preset's folder."""
    checkpoints = resolve(preset, root)
    wanted = _wanted(checkpoints)
    command = f"python -m latentsync_demo.download --preset {preset} --checkpoints {checkpoints.folder.parent}"
    for repo_id, filename, folder in wanted:
        fetch_file(repo_id, filename, folder, command)
    wav2vec = checkpoints.wav2vec_config()  # a phoneme-aware trained set: the Wav2Vec2 its improvements.json names
    if wav2vec is not None and not wav2vec.is_file():
        from .audio.wav2vec import download_wav2vec
        from .models.improvements import Improvements

        download_wav2vec(Improvements.load(checkpoints.folder).wav2vec_model, wav2vec.parent)
    download_insightface(checkpoints)
    checkpoints.require()
    return checkpoints.folder


def fetch_file(repo_id: str, filename: str, folder: Path, command: str) -> Path:
    """``folder / filename`` from the Hugging Face repo when missing (progress bar; resumes); CheckpointError
    naming ``command`` (the way to retry) when the download fails."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    target = Path(folder) / filename
    if not target.is_file():
        print(f"downloading {repo_id}/{filename} -> {target}", file=sys.stderr)
        try:
            hf_hub_download(repo_id, filename, local_dir=folder)
        except (OfflineModeIsEnabled, LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
            raise download_error(filename, repo_id, command, target, exc) from exc
    return target


def download_insightface(checkpoints: CheckpointSet) -> None:
    """Fetch the missing insightface detector / 106-point files into ``checkpoints.insightface_dir``.

    They sit under ``insightface/models/buffalo_l/`` in their repo; each is downloaded into a scratch folder
    next to its destination and moved into place, so a broken download never leaves a partial model there.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    target = checkpoints.insightface_dir
    scratch = target.parent / ".download"
    try:
        for name, remote in INSIGHTFACE_FILES.items():
            if (target / name).is_file():
                continue
            print(f"downloading {INSIGHTFACE_REPO}/{remote} -> {target / name}", file=sys.stderr)
            try:
                fetched = hf_hub_download(INSIGHTFACE_REPO, remote, local_dir=scratch)
            except (OfflineModeIsEnabled, LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
                command = (f"python -m latentsync_demo.download --preset {checkpoints.preset.name} "
                           f"--checkpoints {checkpoints.root or checkpoints.folder.parent}")
                raise download_error(remote, INSIGHTFACE_REPO, command, target / name, exc) from exc
            target.mkdir(parents=True, exist_ok=True)
            os.replace(fetched, target / name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _wanted(checkpoints) -> list[tuple[str, str, Path]]:
    """(repo id, file name in the repo, local folder) of every file a preset needs."""
    wanted = [(checkpoints.preset.repo_id, name, checkpoints.folder) for name in (UNET_FILE, WHISPER_FILE)]
    return wanted + [(VAE_REPO, name, checkpoints.vae) for name in VAE_FILES]


def link_from_hub_cache(preset: str = DEFAULT_PRESET, root: str | Path | None = None) -> list[Path]:
    """Link files of ``preset`` that are already in the Hugging Face cache into the checkpoint layout.

    A Space's ``preload_from_hub`` (README front matter) downloads the weights into that cache when the Space
    is built; this makes them visible where the store looks, without any download. Returns the linked paths.
    """
    from huggingface_hub import try_to_load_from_cache

    checkpoints = resolve(preset, root)
    wanted = _wanted(checkpoints)
    linked = []
    for repo_id, filename, folder in wanted:
        target = folder / filename
        cached = try_to_load_from_cache(repo_id, filename)
        if target.exists() or not isinstance(cached, str):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(Path(cached).resolve())
        linked.append(target)
    return linked


def download_error(what: str, repo_id: str, command: str, destination: Path, exc: BaseException) -> CheckpointError:
    """The message for a failed Hugging Face download: offline or not, the command, where files go."""
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    offline = isinstance(exc, (OfflineModeIsEnabled, LocalEntryNotFoundError))
    why = "this machine is offline (or HF_HUB_OFFLINE=1)" if offline else f"{type(exc).__name__}: {exc}"
    return CheckpointError(
        f"could not download {what} from https://huggingface.co/{repo_id}: {why}.\n"
        f"Run  {command}  on a machine with internet access, or copy the files to {destination}.",
        web=f"Could not download {Path(what).name} from Hugging Face ({'this server is offline' if offline else why}). "
            "Ask the host to add the model files.",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m latentsync_demo.download", description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS))
    parser.add_argument("--checkpoints", default=None, help=f"root folder (default: {default_root()})")
    parser.add_argument("--metric", action="store_true",
                        help="also the lip-sync metric's auxiliary/syncnet_v2.model and auxiliary/sfd_face.pth")
    parser.add_argument("--syncnet", action="store_true",
                        help="also stable_syncnet.pt, the SyncNet loss for training (--syncnet of lcm_distill)")
    args = parser.parse_args(argv)
    try:
        folder = download(args.preset, args.checkpoints)
        if args.metric:
            from .eval.scorer import download_metric_weights

            print(f"lip-sync metric weights are in {download_metric_weights(args.checkpoints)}")
        if args.syncnet:
            from .training.syncnet import download_stable_syncnet

            print(f"training SyncNet: {download_stable_syncnet(args.checkpoints)}")
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{PRESETS[args.preset].label} is ready in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
