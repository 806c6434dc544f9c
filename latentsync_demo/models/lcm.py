"""LCM students: LatentSync UNets distilled for 1-8 step sampling (``pipeline.samplers`` "lcm").

A student has exactly its teacher's architecture. An LCM folder (``<checkpoints>/lcm/``) holds either

    latentsync_unet.pt            the full student, official layout (``models.checkpoint``), or
    adapter_config.json           a LoRA on the base (teacher) UNet: peft's ``LoraConfig`` ...
    adapter_model.safetensors     ... and its weights, peft key names (``base_model.model.<module>.lora_A.weight``)

LoRA mechanics use peft's own model-agnostic API (``get_peft_model``, ``get_peft_model_state_dict``,
``set_peft_model_state_dict``), which wraps any ``nn.Module``. diffusers' ``PeftAdapterMixin``
(``unet.load_adapter``) is not used: it is only mixed into diffusers' own model classes, and its loader renames
keys for the diffusers/kohya LoRA formats, which our official-key UNet does not have. The folder is the
standard peft layout, so ``peft.PeftModel.from_pretrained(unet, folder)`` reads it too. peft is imported
lazily: DDIM and full students work without it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError
from .checkpoint import check_keys, check_state_dict, load_unet, read_state_dict, save_unet_checkpoint
from .unet import UNet3DConditionModel

LCM_UNET_FILE = "latentsync_unet.pt"
LORA_CONFIG_FILE = "adapter_config.json"
LORA_WEIGHTS_FILE = "adapter_model.safetensors"

# The LCM-LoRA target set (diffusers' train_lcm_distill_lora_sd_wds.py), which in our UNet also covers the
# motion modules' attention, projections and feed-forwards.
LORA_TARGETS = (
    "to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
    "conv1", "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj",
)


def lcm_format(folder: str | Path) -> str | None:
    """"full" (latentsync_unet.pt), "lora" (adapter_config.json + adapter_model.safetensors) or None (neither)."""
    folder = Path(folder)
    if (folder / LCM_UNET_FILE).is_file():
        return "full"
    if (folder / LORA_CONFIG_FILE).is_file() and (folder / LORA_WEIGHTS_FILE).is_file():
        return "lora"
    return None


def add_lora(unet: torch.nn.Module, rank: int = 64, alpha: float | None = None,
             targets: tuple[str, ...] = LORA_TARGETS, init: bool | str = True):
    """Wrap ``unet`` in a peft ``PeftModel`` with a LoRA of ``rank`` (alpha defaults to rank: scale 1).

    ``init=True`` starts with B = 0 (the wrapped UNet computes exactly the base); "gaussian" etc. as in peft.
    Only the LoRA parameters require grad afterwards. The base module is modified in place.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else rank, target_modules=list(targets),
                        init_lora_weights=init)
    return get_peft_model(unet, config)


def save_lora(model, folder: str | Path) -> Path:
    """Write a peft-wrapped UNet's adapter as ``adapter_config.json`` + ``adapter_model.safetensors``."""
    from peft import get_peft_model_state_dict

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.peft_config["default"].save_pretrained(str(folder))
    weights = {k: v.detach().float().contiguous().cpu() for k, v in get_peft_model_state_dict(model).items()}
    save_file(weights, str(folder / LORA_WEIGHTS_FILE))
    return folder


def load_lora(unet: torch.nn.Module, folder: str | Path, merge: bool = True):
    """Put the LoRA of ``folder`` on ``unet`` (modified in place), strictly: every key and shape must match.

    merge=True: returns the plain UNet with the LoRA merged into its weights (no runtime cost);
    merge=False: returns the ``PeftModel`` with the adapter active (``.disable_adapter()`` gives the base back).
    """
    from peft import LoraConfig, get_peft_model

    folder = Path(folder)
    try:
        config = LoraConfig.from_pretrained(str(folder))
    except (OSError, ValueError, TypeError) as exc:
        raise CheckpointError(f"cannot read the LoRA config in {folder} ({exc.__class__.__name__}: {exc})") from exc
    model = get_peft_model(unet, config)
    _set_lora_weights(model, folder / LORA_WEIGHTS_FILE)
    return model.merge_and_unload() if merge else model


def _set_lora_weights(model, path: Path) -> None:
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    try:
        weights = load_file(str(path), device="cpu")
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"cannot read the LoRA weights {path} ({exc.__class__.__name__}: {exc})") from exc
    expected = {k: tuple(v.shape) for k, v in get_peft_model_state_dict(model).items()}
    check_keys(expected, weights, source=str(path), what="a LoRA of this base UNet",
               hint="The LoRA was made for another base UNet (check the preset/config) or other target modules.")
    set_peft_model_state_dict(model, weights)


def save_lcm_student(model: torch.nn.Module, folder: str | Path, global_step: int = 0) -> Path:
    """Write a student into an LCM folder: a ``PeftModel`` as a LoRA, a plain UNet as ``latentsync_unet.pt``."""
    folder = Path(folder)
    if hasattr(model, "peft_config"):
        return save_lora(model, folder)
    save_unet_checkpoint(model, folder / LCM_UNET_FILE, global_step=global_step)
    return folder


def load_student_weights(model: torch.nn.Module, folder: str | Path) -> None:
    """Load an LCM folder's weights into an existing student of the same kind, strictly (training resume)."""
    folder = Path(folder)
    if hasattr(model, "peft_config"):
        _set_lora_weights(model, folder / LORA_WEIGHTS_FILE)
        return
    state_dict = read_state_dict(folder / LCM_UNET_FILE)
    check_state_dict(model, state_dict, source=str(folder / LCM_UNET_FILE))
    model.load_state_dict(state_dict)


def load_lcm_unet(
    folder: str | Path,
    config: Mapping,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    base_unet: UNet3DConditionModel | None = None,
    base_path: str | Path | None = None,
) -> UNet3DConditionModel:
    """The student UNet of an LCM folder, on ``device`` in ``dtype``, in eval mode.

    Full student: built from ``config`` (the teacher's) and loaded strictly. LoRA: the base UNet (a copy of
    ``base_unet`` — which stays untouched — or else loaded from ``base_path``) with the adapter merged in.
    """
    folder = Path(folder)
    kind = lcm_format(folder)
    if kind == "full":
        return load_unet(folder / LCM_UNET_FILE, config, device=device, dtype=dtype)
    if kind is None:
        raise CheckpointError(
            f"no LCM student in {folder}: expected {LCM_UNET_FILE} or {LORA_CONFIG_FILE} + {LORA_WEIGHTS_FILE}"
        )
    if base_unet is not None:
        base = copy.deepcopy(base_unet)
        if base.device != torch.device(device) or base.dtype != dtype:
            base = base.to(device=device, dtype=dtype)
    elif base_path is not None:
        base = load_unet(base_path, config, device=device, dtype=dtype)
    else:
        raise ValueError("a LoRA student needs its base UNet: pass base_unet or base_path")
    return load_lora(base, folder, merge=True).eval()
