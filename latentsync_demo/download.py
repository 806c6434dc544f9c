"""Download a preset's weights from Hugging Face into the official checkpoint layout.

    python -m latentsync_demo.download --preset latentsync-1.5 [--checkpoints DIR]

huggingface_hub shows a progress bar per file and resumes interrupted downloads. Besides the UNet, whisper and
VAE this fetches the two insightface files of the official face pass (``<root>/auxiliary/models/buffalo_l/``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from huggingface_hub import try_to_load_from_cache

from .audio.wav2vec import download_wav2vec
from .errors import CheckpointError
from .eval.scorer import download_metric_weights
from .hub import fetch_file, fetch_file_to
from .models.improvements import Improvements
from .store import (DEFAULT_PRESET, INSIGHTFACE_FILES, INSIGHTFACE_REPO, PRESETS, UNET_FILE, VAE_FILES, VAE_REPO,
                    WHISPER_FILE, CheckpointSet, default_root, resolve)

# The SyncNet loss of training (``training.syncnet``, ``--syncnet`` of lcm_distill / train_unet).
STABLE_SYNCNET_REPO = "ByteDance/LatentSync-1.6"
STABLE_SYNCNET_FILE = "stable_syncnet.pt"


def download(preset: str = DEFAULT_PRESET, root: str | Path | None = None) -> Path:
    """Fetch whatever of ``preset`` is missing under ``root``; returns the preset's folder."""
    checkpoints = resolve(preset, root)
    for repo_id, filename, folder in _wanted(checkpoints):
        fetch_file(repo_id, filename, folder, checkpoints.download_command)
    wav2vec = checkpoints.wav2vec_config()  # a phoneme-aware trained set: the Wav2Vec2 its improvements.json names
    if wav2vec is not None and not wav2vec.is_file():
        download_wav2vec(Improvements.load(checkpoints.folder).wav2vec_model, wav2vec.parent)
    download_insightface(checkpoints)
    checkpoints.require()
    return checkpoints.folder


def download_insightface(checkpoints: CheckpointSet) -> None:
    """Fetch the missing insightface detector / 106-point files into ``checkpoints.insightface_dir``.

    They sit under ``insightface/models/buffalo_l/`` in their repo; ``fetch_file_to`` moves each into place only
    once it is complete, so a broken download never leaves a partial model there.
    """
    for name, remote in INSIGHTFACE_FILES.items():
        fetch_file_to(INSIGHTFACE_REPO, remote, checkpoints.insightface_dir / name, checkpoints.download_command)


def download_stable_syncnet(checkpoints: str | Path | None = None) -> Path:
    """``<checkpoints>/stable_syncnet.pt`` (1.6 GB), fetched from Hugging Face when missing (progress bar)."""
    root = Path(checkpoints) if checkpoints is not None else default_root()
    return fetch_file(STABLE_SYNCNET_REPO, STABLE_SYNCNET_FILE, root,
                      f"python -m latentsync_demo.download --syncnet --checkpoints {root}")


def _wanted(checkpoints: CheckpointSet) -> list[tuple[str, str, Path]]:
    """(repo id, file name in the repo, local folder) of every file a preset needs."""
    wanted = [(checkpoints.preset.repo_id, name, checkpoints.folder) for name in (UNET_FILE, WHISPER_FILE)]
    return wanted + [(VAE_REPO, name, checkpoints.vae) for name in VAE_FILES]


def link_from_hub_cache(preset: str = DEFAULT_PRESET, root: str | Path | None = None) -> list[Path]:
    """Link files of ``preset`` that are already in the Hugging Face cache into the checkpoint layout.

    A Space's ``preload_from_hub`` (README front matter) downloads the weights into that cache when the Space
    is built; this makes them visible where the store looks, without any download. Returns the linked paths.
    """
    checkpoints = resolve(preset, root)
    linked = []
    for repo_id, filename, folder in _wanted(checkpoints):
        target = folder / filename
        cached = try_to_load_from_cache(repo_id, filename)
        if target.exists() or not isinstance(cached, str):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(Path(cached).resolve())
        linked.append(target)
    return linked


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
            print(f"lip-sync metric weights are in {download_metric_weights(args.checkpoints)}")
        if args.syncnet:
            print(f"training SyncNet: {download_stable_syncnet(args.checkpoints)}")
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{PRESETS[args.preset].label} is ready in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
