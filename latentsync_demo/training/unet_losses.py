"""Stage-2 pixel-space losses of LatentSync (paper §3.3-3.4) on the decoded one-step estimate, and the temporal
smoothness loss of the hierarchical-attention improvement.

All take faces as (b, f, 3, H, W) in [-1, 1]. The critics (SyncNet, LPIPS's backbone, VideoMAE) are frozen:
gradients flow through them to the UNet only.

* ``SyncNetLoss``: StableSyncNet on the lower half of the 16 frames stacked into channels, (b, 48, H/2, W) at
  256 px (bicubic from 512 as the official trainer), against the mel window (b, 1, 80, 52); loss = BCE(cos, 1).
  Any module ``syncnet(visual, audio) -> (vision_embeds, audio_embeds)`` fits (``models`` StableSyncNet).
* ``LPIPS``: the LPIPS distance (Zhang et al. 2018) on the lower half of each frame, as the official trainer:
  unit-normalised backbone features, squared differences, learned non-negative 1x1 weights, spatial mean, sum
  over layers. ``LPIPS.vgg()`` builds the standard VGG16 variant (torchvision VGG16 + the ``lpips`` package's
  linear weights); tests pass a tiny backbone.
* ``TREPALoss``: TREPA, MSE between l2-normalised video embeddings of generated and real clips, from a frozen
  transformers VideoMAE (VideoMAE-v2 in the paper), in windows of the encoder's frame count. The official encoder
  file (``auxiliary/vit_g_hybrid_pt_1200e_ssv2_ft.pth``) is converted on load (``videomae_convert``) and then
  gets the official preprocessing: bicubic resize, pixels in [0, 1], no ImageNet normalisation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError


def _frozen(module: nn.Module) -> nn.Module:
    return module.eval().requires_grad_(False)


class SyncNetLoss(nn.Module):
    """BCE(cosine(vision, audio), 1) of a frozen SyncNet; ``size`` = face side it expects (None: as given)."""

    def __init__(self, syncnet: nn.Module, size: int | None = 256):
        super().__init__()
        self.syncnet, self.size = _frozen(syncnet), size

    def visual_input(self, faces: torch.Tensor) -> torch.Tensor:
        """(b, f, 3, H, W) -> (b, 3f, S/2, S): frames stacked as channel 3*frame + rgb, lower half."""
        from ..models.stable_syncnet import stack_frames

        b, f = faces.shape[:2]
        if self.size is not None and faces.shape[-1] != self.size:
            flat = F.interpolate(faces.flatten(0, 1), size=(self.size, self.size), mode="bicubic", align_corners=False)
            faces = flat.unflatten(0, (b, f))
        return stack_frames(faces)

    def forward(self, faces: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        from ..models.stable_syncnet import sync_loss

        vision, audio = self.syncnet(self.visual_input(faces), mel.to(faces.dtype))
        return sync_loss(vision.float(), audio.float()).mean()


class LPIPS(nn.Module):
    """LPIPS distance; ``backbone(x) -> list of feature maps``, one 1x1 weight per map (``lins``)."""

    # The input scaling of the lpips package (an ImageNet-like per-channel shift and scale for [-1, 1] input).
    SHIFT = (-0.030, -0.088, -0.188)
    SCALE = (0.458, 0.448, 0.450)

    def __init__(self, backbone: nn.Module, channels: Sequence[int], lower_half: bool = True):
        super().__init__()
        self.backbone = _frozen(backbone)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in channels)
        for lin in self.lins:
            nn.init.constant_(lin.weight, 1.0 / lin.in_channels)
        _frozen(self.lins)
        self.register_buffer("shift", torch.tensor(self.SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(self.SCALE).view(1, 3, 1, 1), persistent=False)
        self.lower_half = lower_half

    @classmethod
    def vgg(cls) -> LPIPS:
        """The standard LPIPS-VGG. Needs torchvision's ImageNet VGG16 (downloaded once to the torch hub cache)
        and the ``lpips`` package's linear weights (pinned in requirements.txt): clear errors when either is missing."""
        try:
            import lpips as lpips_package
            from torchvision.models import VGG16_Weights, vgg16
        except ImportError as exc:
            raise CheckpointError(f"the LPIPS loss needs the lpips package ({exc}): pip install lpips==0.1.4, "
                                  "or train with --lpips-weight 0") from exc
        try:
            features = vgg16(weights=VGG16_Weights.IMAGENET1K_V1).features
        except Exception as exc:  # URLError, HTTPError, OSError...: all mean "not downloadable here"
            raise CheckpointError(f"cannot get torchvision's VGG16 ImageNet weights for LPIPS ({exc.__class__.__name__}"
                                  f": {exc}). Download them once online (they go to ~/.cache/torch/hub), or train "
                                  "with --lpips-weight 0.") from exc
        model = cls(_VGGSlices(features), (64, 128, 256, 512, 512))
        path = Path(lpips_package.__file__).parent / "weights" / "v0.1" / "vgg.pth"
        state = torch.load(path, map_location="cpu", weights_only=True)  # keys lin{k}.model.1.weight
        for k, lin in enumerate(model.lins):
            lin.weight.data.copy_(state[f"lin{k}.model.1.weight"])
        return model

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean LPIPS over all frames; pred, target (b, f, 3, H, W) or (n, 3, H, W)."""
        x, y = pred.flatten(0, -4).float(), target.flatten(0, -4).float()
        if self.lower_half:
            x, y = x[:, :, x.shape[2] // 2:], y[:, :, y.shape[2] // 2:]
        fx, fy = self.backbone((x - self.shift) / self.scale), self.backbone((y - self.shift) / self.scale)
        total = 0.0
        for lin, a, b in zip(self.lins, fx, fy, strict=True):
            diff = (_unit(a) - _unit(b)) ** 2
            total = total + lin(diff).mean((1, 2, 3))
        return total.mean()


def _unit(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return x / (x.square().sum(1, keepdim=True).sqrt() + eps)


class _VGGSlices(nn.Module):
    """torchvision VGG16 ``features`` cut after relu1_2, 2_2, 3_3, 4_3, 5_3 (LPIPS's five taps)."""

    CUTS = (4, 9, 16, 23, 30)

    def __init__(self, features: nn.Sequential):
        super().__init__()
        starts = (0,) + self.CUTS[:-1]
        self.slices = nn.ModuleList(features[a:b] for a, b in zip(starts, self.CUTS))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for part in self.slices:
            x = part(x)
            outs.append(x)
        return outs


class TREPALoss(nn.Module):
    """TREPA with a transformers VideoMAE encoder (``VideoMAEModel`` or ``...ForVideoClassification``).

    ``official``: the official TREPA preprocessing (bicubic, [0, 1] pixels) instead of the transformers VideoMAE
    one (bilinear, ImageNet mean/std); None = what the encoder's config says (``latentsync_trepa``, set by
    ``videomae_convert``)."""

    MEAN = (0.485, 0.456, 0.406)  # VideoMAEImageProcessor's ImageNet normalisation
    STD = (0.229, 0.224, 0.225)

    def __init__(self, encoder: nn.Module, official: bool | None = None):
        super().__init__()
        self.encoder = _frozen(encoder)
        cfg = encoder.config
        self.size, self.frames = cfg.image_size, cfg.num_frames
        self.official = getattr(cfg, "latentsync_trepa", None) == "official" if official is None else official
        fc_norm = getattr(encoder, "fc_norm", None)
        if fc_norm is not None and getattr(cfg, "fc_norm_eps", None):  # VideoMAE-v2's 1e-6 (transformers: 1e-5)
            fc_norm.eps = cfg.fc_norm_eps
        mean, std = ((0.0,) * 3, (1.0,) * 3) if self.official else (self.MEAN, self.STD)
        self.register_buffer("mean", torch.tensor(mean).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 1, 3, 1, 1), persistent=False)

    @classmethod
    def from_pretrained(cls, path: str | Path, **official_config) -> TREPALoss:
        """A transformers VideoMAE folder, or the official VideoMAE-v2 ``.pth`` file (converted strictly;
        ``official_config``: num_heads, image_size, num_frames when it is not ViT-g's)."""
        from transformers import AutoConfig, VideoMAEForVideoClassification, VideoMAEModel

        if Path(path).is_file():
            from .videomae_convert import convert_official_videomae

            return cls(convert_official_videomae(path, **official_config))
        try:
            config = AutoConfig.from_pretrained(str(path))
            kind = VideoMAEForVideoClassification if config.architectures and any(
                "Classification" in a for a in config.architectures) else VideoMAEModel
            return cls(kind.from_pretrained(str(path)))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot load a VideoMAE encoder for TREPA from {path} ({exc}); pass a "
                                  "transformers VideoMAE folder, or train with --trepa-weight 0") from exc

    def embed(self, video: torch.Tensor) -> torch.Tensor:
        """(b, F, 3, H, W) in [-1, 1], F a multiple of the encoder's frames -> (b * F / frames, d) unit vectors."""
        b, f = video.shape[:2]
        x = F.interpolate(video.flatten(0, 1).float(), size=(self.size, self.size),
                          mode="bicubic" if self.official else "bilinear", align_corners=False).unflatten(0, (b, f))
        x = ((x / 2 + 0.5).clamp(0, 1) - self.mean) / self.std
        x = x.reshape(b * f // self.frames, self.frames, *x.shape[2:])
        model = getattr(self.encoder, "videomae", self.encoder)
        pooled = model(pixel_values=x).last_hidden_state.mean(1)
        fc_norm = getattr(self.encoder, "fc_norm", None)
        if fc_norm is not None:  # VideoMAE(-v2) "forward_features": mean pooling, then fc_norm
            pooled = fc_norm(pooled)
        return F.normalize(pooled, p=2, dim=1)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        f = pred.shape[1]
        if f % self.frames:  # cover the clip with windows of the encoder's length (the last one overlaps)
            starts = list(range(0, f - self.frames + 1, self.frames)) + [f - self.frames]
            pred = torch.cat([pred[:, s:s + self.frames] for s in starts], dim=1)
            target = torch.cat([target[:, s:s + self.frames] for s in starts], dim=1)
        return F.mse_loss(self.embed(pred), self.embed(target))


def smoothness_loss(pred: torch.Tensor, target: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
    """Temporal smoothness: the frame-to-frame change of the one-step estimate should match the ground truth's.

    pred, target: (b, c, f, h, w) latents. ``alpha`` (b,) = alphas_cumprod[t] weights each clip: the estimate's
    error is sqrt((1 - a) / a) times the noise error, which would explode at high noise levels; weighted by a,
    the term stays as well-conditioned as the simple loss.
    """
    per_clip = (pred.diff(dim=2).float() - target.diff(dim=2).float()).square().flatten(1).mean(1)
    if alpha is not None:
        per_clip = per_clip * alpha.float()
    return per_clip.mean()
