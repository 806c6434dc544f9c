"""Neural network modules: the LatentSync UNet3D and its blocks, and strict checkpoint loading."""

from .checkpoint import check_keys, check_state_dict, load_unet, read_state_dict, save_unet_checkpoint
from .unet import UNet3DConditionModel, UNet3DConditionOutput

__all__ = [
    "UNet3DConditionModel",
    "UNet3DConditionOutput",
    "check_keys",
    "check_state_dict",
    "load_unet",
    "read_state_dict",
    "save_unet_checkpoint",
]
