"""Lip-region adversarial loss (improvement 2, stage 2 only): a multi-scale PatchGAN on 96x96 mouth crops.

The crop is the square over the fixed mask's generated region (the lower face, ``face.mask``) of the aligned
face, resized to 96x96. Three PatchGANs see it at 96, 48 and 24 px. Hinge (default) or LSGAN losses;
the generator's term is weighted 0.1 times a linear warm-up ramp. The discriminator never runs at inference and
is saved apart from the UNet (``discriminator/``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..face.mask import load_mask

CROP = 96


def mouth_box(resolution: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right): the square over the fixed mask's generated (0) region at ``resolution``.

    That region is the lower face (at 256 px rows 95-242, nearly full width); the square spans its full height,
    centred on it, so it holds mouth, lips and jaw without the cheeks' edges: a 96x96 crop keeps the aspect.
    """
    generated = load_mask(resolution)[0] < 0.5
    rows, cols = generated.any(1).nonzero().flatten(), generated.any(0).nonzero().flatten()
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    side = min(bottom - top, int(cols[-1]) + 1 - int(cols[0]))
    left = (int(cols[0]) + int(cols[-1]) + 1 - side) // 2
    return top, top + side, left, left + side


def mouth_crops(faces: torch.Tensor, box: tuple[int, int, int, int], size: int = CROP) -> torch.Tensor:
    """(b, f, 3, R, R) -> (b*f, 3, size, size) bilinear crops of ``box``."""
    top, bottom, left, right = box
    crops = faces.flatten(0, 1)[:, :, top:bottom, left:right]
    return F.interpolate(crops.float(), size=(size, size), mode="bilinear", align_corners=False)


class PatchDiscriminator(nn.Module):
    """Pix2pix PatchGAN: 4x4 stride-2 convolutions, LeakyReLU(0.2), spectral norm; (n, 3, S, S) -> logits map."""

    def __init__(self, channels: int = 64, layers: int = 3):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        blocks, c_in = [], 3
        for i in range(layers):
            c_out = channels * 2**i
            blocks += [sn(nn.Conv2d(c_in, c_out, 4, stride=2 if i < layers - 1 else 1, padding=1)), nn.LeakyReLU(0.2)]
            c_in = c_out
        blocks.append(sn(nn.Conv2d(c_in, 1, 3, padding=1)))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MultiScalePatchGAN(ModelMixin, ConfigMixin):
    """``num_scales`` PatchGANs on the crop downsampled by 1, 2, 4: forward -> list of logit maps."""

    @register_to_config
    def __init__(self, channels: int = 64, layers: int = 3, num_scales: int = 3):
        super().__init__()
        self.discriminators = nn.ModuleList(PatchDiscriminator(channels, layers) for _ in range(num_scales))

    def forward(self, crops: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for k, disc in enumerate(self.discriminators):
            x = crops if k == 0 else F.avg_pool2d(crops, 2**k)
            outs.append(disc(x))
        return outs


def discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor], kind: str = "hinge") -> torch.Tensor:
    """Mean over scales: hinge relu(1 - D(real)) + relu(1 + D(fake)), or LSGAN (D(real) - 1)^2 + D(fake)^2."""
    terms = []
    for r, f in zip(real, fake, strict=True):
        if kind == "hinge":
            terms.append(F.relu(1 - r).mean() + F.relu(1 + f).mean())
        elif kind == "lsgan":
            terms.append((r - 1).square().mean() + f.square().mean())
        else:
            raise ValueError(f"unknown adversarial loss {kind!r}: hinge or lsgan")
    return torch.stack(terms).mean()


def generator_loss(fake: list[torch.Tensor], kind: str = "hinge") -> torch.Tensor:
    """Mean over scales: hinge -D(fake), or LSGAN (D(fake) - 1)^2."""
    if kind not in ("hinge", "lsgan"):
        raise ValueError(f"unknown adversarial loss {kind!r}: hinge or lsgan")
    return torch.stack([(-f).mean() if kind == "hinge" else (f - 1).square().mean() for f in fake]).mean()


def adversarial_weight(step: int, weight: float = 0.1, start: int = 0, warmup: int = 1000) -> float:
    """0 before ``start``, then a linear ramp to ``weight`` over ``warmup`` steps."""
    if step < start:
        return 0.0
    return weight * min(1.0, (step - start + 1) / max(warmup, 1))
