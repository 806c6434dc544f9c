"""The fixed lower-face mask of LatentSync (official `load_fixed_mask` + the UNet mask downsample).

Convention: white (1) = keep the original pixels, black (0) = the region the model generates (lower face).
"""

from __future__ import annotations

from importlib import resources

import cv2
import numpy as np
import torch


def _read_mask_png(name: str = "mask.png") -> np.ndarray:
    """The shipped mask as cv2 would read it from disk: (256, 256, 3) uint8 BGR."""
    data = resources.files("latentsync_demo").joinpath("assets", name).read_bytes()
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # same decoder as cv2.imread
    if img is None:
        raise FileNotFoundError(f"could not decode latentsync_demo/assets/{name}")
    return img


def load_mask(resolution: int = 256, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Fixed mask at R x R: (3, R, R) in [0, 1], float64 by default like the official code.

    1 = keep the original pixels, 0 = region to generate. BGR->RGB, cv2 INTER_LANCZOS4 resize to R x R
    (identity at 256, grey edge levels at 512), then /255.
    """
    img = cv2.cvtColor(_read_mask_png(), cv2.COLOR_BGR2RGB)
    img = cv2.resize(img, (resolution, resolution), interpolation=cv2.INTER_LANCZOS4) / 255.0
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).to(dtype)


def latent_mask(mask: torch.Tensor, latent_size: int | None = None) -> torch.Tensor:
    """Nearest downsample of a (3|1, R, R) or (R, R) mask to (1, L, L), L = R/8 by default.

    Matches F.interpolate(mode="nearest") used by the pipeline: element (i, j) = mask[0, i*R/L, j*R/L].
    """
    m = mask if mask.dim() == 2 else mask[0]
    size = latent_size or m.shape[-1] // 8
    step_y, step_x = m.shape[0] // size, m.shape[1] // size
    if step_y * size != m.shape[0] or step_x * size != m.shape[1]:  # non-integer ratio: use torch's rule
        return torch.nn.functional.interpolate(m[None, None], size=(size, size), mode="nearest")[0]
    return m[::step_y, ::step_x][None].clone()
