"""Strict checkpoint loading for the UNet.

The official loader calls ``load_state_dict(strict=False)`` and silently drops mismatched entries, so a
wrong file yields a model that runs and produces garbage. Here every missing, unexpected or mis-shaped
key is reported, and nothing is loaded unless everything fits.

Memory: the model is built on the meta device and the checkpoint tensors are *assigned* (not copied)
into it; ``.pt`` files are memory-mapped. Loading the 1.3 B-parameter UNet never holds two full copies.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError
from .unet import UNet3DConditionModel

_MAX_LISTED = 20


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a UNet state dict from an official ``latentsync_unet.pt`` ({"state_dict", "global_step"}),
    a flat ``.pt`` state dict, or a ``.safetensors`` file. Tensors stay on CPU (mmap where possible)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path), device="cpu")
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except (SafetensorError, RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(
            f"cannot read checkpoint {path} ({exc.__class__.__name__}: {exc}). The file is probably truncated "
            "or corrupt: delete it and download it again."
        ) from exc
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a UNet state dict (expected a dict with 'state_dict')")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def check_state_dict(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint"):
    """Raise CheckpointError listing every missing, unexpected and mis-shaped key."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_keys(expected, state_dict, source)


def check_keys(
    expected: Mapping[str, tuple[int, ...]],
    state_dict: Mapping[str, torch.Tensor],
    source: str = "checkpoint",
    what: str = "the UNet config",
    hint: str = "Check that the preset/config matches the checkpoint (e.g. 1.5 vs 1.6, stage1 vs stage2).",
):
    """Raise CheckpointError unless ``state_dict`` has exactly the ``expected`` keys and shapes (all listed)."""
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    misshaped = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k])}"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k])
    ]
    problems = []
    for title, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshaped)):
        if keys:
            listed = "\n    ".join(keys[:_MAX_LISTED])
            more = f"\n    ... and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else ""
            problems.append(f"  {len(keys)} {title}:\n    {listed}{more}")
    if problems:
        raise CheckpointError(
            f"{source} does not match {what} ({len(expected)} keys expected, {len(state_dict)} found):\n"
            + "\n".join(problems)
            + f"\n{hint}"
        )


def load_strict(build, path: str | Path, what: str, hint: str, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """``build()`` on the meta device, then ``path``'s tensors assigned strictly (every bad key reported; float
    tensors cast to ``dtype``, integer buffers such as BatchNorm counters kept). Returns the model in eval mode."""
    state_dict = read_state_dict(path)
    with torch.device("meta"):
        model = build()
    check_keys({k: tuple(v.shape) for k, v in model.state_dict().items()}, state_dict, str(path), what, hint)
    model.load_state_dict({k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype)
                           for k, v in state_dict.items()}, strict=True, assign=True)
    return model.eval()


def load_unet(
    path: str | Path,
    config: Mapping,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> UNet3DConditionModel:
    """Build the UNet from ``config`` (the official ``model:`` section) and load ``path`` strictly."""
    state_dict = read_state_dict(path)
    with torch.device("meta"):
        model = UNet3DConditionModel.from_config(dict(config))
    try:
        check_state_dict(model, state_dict, source=str(path))
    except CheckpointError as exc:
        if any(".hierarchical." in k for k in state_dict) or _wider_audio_attention(model, state_dict):
            # a trainer's improved UNet whose folder lost its sidecar: say so, not only "keys do not match"
            raise CheckpointError(f"{exc}\nThese weights look trained with the improvements (hierarchical "
                                  "attention or phoneme-aware audio): keep the trainer's improvements.json "
                                  "(and audio_fusion/) beside latentsync_unet.pt.") from None
        raise
    # Cast tensor by tensor while assigning: peak memory stays one model (plus the mmap'd file pages).
    state_dict = {k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype) for k, v in state_dict.items()}
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model.eval()


def _wider_audio_attention(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether an audio cross-attention key projection in ``state_dict`` takes wider tokens than ``model``'s."""
    expected = model.state_dict()
    return any(k.endswith("attn2.to_k.weight") and k in expected and v.ndim == 2
               and v.shape[1] > expected[k].shape[1] for k, v in state_dict.items())


def save_unet_checkpoint(model: torch.nn.Module, path: str | Path, global_step: int = 0) -> None:
    """Write the official ``.pt`` layout ({"global_step", "state_dict"}) or ``.safetensors``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state_dict = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state_dict, str(path))
    else:
        torch.save({"global_step": global_step, "state_dict": state_dict}, path)
