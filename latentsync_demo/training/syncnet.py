"""Optional SyncNet loss for the distillation (LatentSync stage 2 adds one on the decoded one-step estimate).

``--syncnet PATH`` takes
  * the official ``stable_syncnet.pt`` (StableSyncNet, config syncnet_16_pixel_attn; loaded strictly): the loss is
    LatentSync's: faces resized to 256 px (bicubic), lower half, 16 frames stacked on channels, against the
    80 x 52 Wav2Lip-style mel window of the same frames (``audio.syncnet_mel``, cached by
    ``training.data``); loss = BCE(cosine similarity, 1), averaged over the batch;
  * or a ``torch.export`` program (``.pt2``) of any module ``forward(faces, audio) -> scalar`` (the whisper chunks).

A loss is a callable ``sync_loss(faces, audio) -> scalar``, differentiable in ``faces`` (b, f, 3, H, W) in
[-1, 1]; its ``input_key`` attribute names the batch entry it wants as ``audio`` ("mel" for StableSyncNet,
"audio" = whisper chunks (b, f, 50, d) by default).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError
from ..models.stable_syncnet import NUM_FRAMES, RESOLUTION, StableSyncNet, load_stable_syncnet, stack_frames, sync_loss
from .consistency import SyncLoss

EXPECTED = ("the official stable_syncnet.pt (python -m latentsync_demo.download --syncnet), or a torch.export "
            "program (.pt2) of a module whose forward(faces (b, f, 3, H, W) in [-1, 1], audio (b, f, 50, d)) "
            "returns the scalar sync loss")


class StableSyncLoss(nn.Module):
    """LatentSync's SyncNet loss: forward(faces (b, 16, 3, H, W) in [-1, 1], mel (b, 1, 80, 52)) -> scalar."""

    input_key = "mel"

    def __init__(self, syncnet: StableSyncNet):
        super().__init__()
        self.syncnet = syncnet.eval().requires_grad_(False)  # a fixed critic: gradients flow to the faces only

    def forward(self, faces: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        b, f = faces.shape[:2]
        if f != NUM_FRAMES:
            raise ValueError(f"StableSyncNet scores {NUM_FRAMES}-frame windows; train with --num-frames {NUM_FRAMES}")
        if faces.shape[-1] != RESOLUTION:  # official stage 2 at 512 px: bicubic to 256 before the critic
            faces = F.interpolate(faces.flatten(0, 1), size=(RESOLUTION, RESOLUTION), mode="bicubic",
                                  align_corners=False).unflatten(0, (b, f))
        dtype = next(self.syncnet.parameters()).dtype
        vision, audio = self.syncnet(stack_frames(faces.to(dtype)), mel.to(faces.device, dtype))
        return sync_loss(vision.float(), audio.float()).mean()


def load_syncnet(path: str | Path, device: str | torch.device = "cpu", config: dict | None = None) -> SyncLoss:
    """Load ``path`` as a sync loss on ``device``; CheckpointError saying why and what is expected otherwise.
    ``config``: a StableSyncNet model config other than the released one (tests, own critics)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"--syncnet: {path} does not exist; expected {EXPECTED}")
    if not zipfile.is_zipfile(path) and path.suffix != ".safetensors":
        raise CheckpointError(f"--syncnet: {path} is not a PyTorch archive; expected {EXPECTED}")
    if path.suffix == ".safetensors" or _is_plain_checkpoint(path):
        return StableSyncLoss(load_stable_syncnet(path, config, device=device))
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
