"""Optional SyncNet loss for the distillation (LatentSync stage 2 adds one on the decoded one-step estimate).

There is no SyncNet model code in this package yet, so the loss is an interface: any callable

    sync_loss(faces, audio) -> scalar tensor
        faces: (b, f, 3, H, W) decoded one-step estimates in [-1, 1] (the whole aligned face: crop the lower
               half yourself, as LatentSync's StableSyncNet does)
        audio: (b, f, 50, d) the whisper chunks of those frames (what the UNet saw)

must be differentiable in ``faces``. From the command line (``--syncnet PATH``) it comes as a ``torch.export``
program (``torch.export.save``, a ``.pt2`` file) of a module with that forward. The official
``stable_syncnet.pt`` is a state dict of an architecture not implemented here and is refused with that reason.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from ..errors import CheckpointError
from .consistency import SyncLoss

EXPECTED = ("a torch.export program (.pt2, made with torch.export.save) of a module whose forward(faces (b, f, 3, H, W) "
            "in [-1, 1], audio (b, f, 50, d)) returns the scalar sync loss")


def load_syncnet(path: str | Path, device: str | torch.device = "cpu") -> SyncLoss:
    """Load ``path`` as a sync loss on ``device``; CheckpointError saying why and what is expected otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"--syncnet: {path} does not exist; expected {EXPECTED}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"--syncnet: {path} is not a PyTorch archive; expected {EXPECTED}")
    if _is_plain_checkpoint(path):
        raise CheckpointError(
            f"--syncnet: {path} is a plain checkpoint (a state dict, like the official stable_syncnet.pt): this "
            f"package has no SyncNet architecture to load it into yet. Wrap your SyncNet and its loss in a module "
            f"and export it: expected {EXPECTED}."
        )
    try:
        module = torch.export.load(str(path)).module()
    except Exception as exc:  # torch raises many types for a wrong archive; all mean "not an exported program"
        raise CheckpointError(
            f"--syncnet: cannot load {path} as an exported program ({exc.__class__.__name__}: {_first_line(exc)}). "
            f"Expected {EXPECTED}."
        ) from exc
    module.to(device)
    for param in module.parameters():
        param.requires_grad_(False)  # a fixed critic: gradients flow through it to the student only
    return module


def _is_plain_checkpoint(path: Path) -> bool:
    """A ``torch.save`` file of a dict (exported programs are archives torch.load cannot read)."""
    try:
        return isinstance(torch.load(path, map_location="cpu", weights_only=True, mmap=True), dict)
    except Exception:  # not a torch.save file
        return False


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "no details"
