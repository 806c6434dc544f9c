"""S3FD face detector (``sfd_face.pth``), the detector the official lip-sync evaluation crops faces with.

Network: VGG16 trunk + L2-normalised conv3_3 / conv4_3 / conv5_3 sources, two extra stages, and one 3x3 box /
score head per source (6 sources, strides 4..128, one square anchor of size 4 x stride each); the first score
head has 4 outputs and keeps the max of the 3 background logits ("max-out"). Key names follow the official
``S3FDNet`` (``vgg.<index>``, ``L2Norm3_3`` ...; see shared/reference ``syncnet_eval_manifests.json``), so the
released plain state dict loads strictly (``load_s3fd``).

Post-processing (``S3FD.detect``) follows ``eval/detectors/s3fd``: RGB minus the BGR means (104, 117, 123) per
channel, softmax, boxes decoded with variances (0.1, 0.2), NMS 0.3, score > threshold, then NMS 0.1.
Difference: the threshold is applied before the first NMS instead of after it (same boxes, since greedy NMS
only lets higher-scored boxes suppress lower ones), without the official 5000/750 box caps.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import load_strict

MEAN_RGB = (123.0, 117.0, 104.0)
STEPS = (4, 8, 16, 32, 64, 128)
ANCHORS = (16, 32, 64, 128, 256, 512)
VARIANCES = (0.1, 0.2)
# VGG16 layer list: channels of each 3x3 conv, "M" a 2x2 max-pool ("C": ceil_mode). Indices of the
# resulting ModuleList (conv, ReLU, pool entries) are the official ``vgg.<i>`` keys.
_VGG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "C", 512, 512, 512, "M", 512, 512, 512, "M"]
_SOURCE_AFTER = (15, 22, 29)  # vgg indices of the ReLUs after conv3_3, conv4_3, conv5_3


class L2Norm(nn.Module):
    """Per-position L2 normalisation over channels, times a learnt per-channel scale (initialised to ``scale``)."""

    def __init__(self, channels: int, scale: float):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10) * self.weight[None, :, None, None]


class S3FDNet(nn.Module):
    """forward(image (N, 3, H, W) mean-subtracted RGB) -> (loc (N, P, 4), face probability (N, P)), P anchors."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in _VGG:
            if item in ("M", "C"):
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=item == "C"))
            else:
                layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU(inplace=True)]
                channels = item
        layers += [nn.Conv2d(512, 1024, 3, padding=6, dilation=6), nn.ReLU(inplace=True),  # fc6
                   nn.Conv2d(1024, 1024, 1), nn.ReLU(inplace=True)]  # fc7
        self.vgg = nn.ModuleList(layers)
        self.L2Norm3_3 = L2Norm(256, 10)
        self.L2Norm4_3 = L2Norm(512, 8)
        self.L2Norm5_3 = L2Norm(512, 5)
        self.extras = nn.ModuleList([nn.Conv2d(1024, 256, 1), nn.Conv2d(256, 512, 3, 2, padding=1),
                                     nn.Conv2d(512, 128, 1), nn.Conv2d(128, 256, 3, 2, padding=1)])
        sources = (256, 512, 512, 1024, 512, 256)
        self.loc = nn.ModuleList([nn.Conv2d(c, 4, 3, padding=1) for c in sources])
        self.conf = nn.ModuleList([nn.Conv2d(c, 4 if i == 0 else 2, 3, padding=1) for i, c in enumerate(sources)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        """-> loc (N, P, 4), face probability (N, P), and the (h, w) of each source (for the anchors)."""
        sources = []
        norms = dict(zip(_SOURCE_AFTER, (self.L2Norm3_3, self.L2Norm4_3, self.L2Norm5_3)))
        for i, layer in enumerate(self.vgg):
            x = layer(x)
            if i in norms:
                sources.append(norms[i](x))
        sources.append(x)
        for k, conv in enumerate(self.extras):
            x = F.relu(conv(x))
            if k % 2 == 1:
                sources.append(x)
        locs, confs = [], []
        for i, source in enumerate(sources):
            conf = self.conf[i](source)
            if i == 0:  # max-out background: the max of 3 background logits against 1 face logit
                conf = torch.cat([conf[:, :3].amax(dim=1, keepdim=True), conf[:, 3:]], dim=1)
            locs.append(self.loc[i](source).permute(0, 2, 3, 1).flatten(1, 2))
            confs.append(conf.permute(0, 2, 3, 1).flatten(1, 2))
        prob = torch.cat(confs, dim=1).softmax(dim=-1)[..., 1]
        return torch.cat(locs, dim=1), prob, [tuple(s.shape[-2:]) for s in sources]


def anchors(image_hw: tuple[int, int], feature_hw: list[tuple[int, int]]) -> torch.Tensor:
    """(P, 4) anchor boxes (cx, cy, w, h), normalised by the image size, in the heads' output order."""
    imh, imw = image_hw
    out = []
    for (fh, fw), step, size in zip(feature_hw, STEPS, ANCHORS):
        cy, cx = torch.meshgrid((torch.arange(fh) + 0.5) * step / imh, (torch.arange(fw) + 0.5) * step / imw,
                                indexing="ij")
        wh = torch.tensor([size / imw, size / imh]).expand(fh * fw, 2)
        out.append(torch.cat([torch.stack([cx.flatten(), cy.flatten()], 1), wh], 1))
    return torch.cat(out)


def decode(loc: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """SSD box decoding: (P, 4) offsets + (P, 4) anchors -> (P, 4) corners (x0, y0, x1, y1), normalised."""
    centre = priors[:, :2] + loc[:, :2] * VARIANCES[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(loc[:, 2:] * VARIANCES[1])
    return torch.cat([centre - size / 2, centre + size / 2], dim=1)


class S3FD:
    """``detect(frame RGB (H, W, 3) uint8) -> (k, 5) float array [x0, y0, x1, y1, score]`` in frame pixels."""

    def __init__(self, net: S3FDNet, device: str | torch.device = "cpu"):
        self.net, self.device = net.to(device).eval(), device

    @torch.no_grad()
    def detect(self, frame: np.ndarray, conf_th: float = 0.9, scale: float = 0.25) -> np.ndarray:
        from torchvision.ops import nms

        h, w = frame.shape[:2]
        image = cv2.resize(frame, dsize=(0, 0), fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        x = torch.from_numpy(image.astype(np.float32) - np.array(MEAN_RGB, np.float32)).permute(2, 0, 1)[None]
        loc, prob, feature_hw = self.net(x.to(self.device))
        loc, prob = loc[0].float().cpu(), prob[0].float().cpu()
        keep = prob > conf_th
        if not keep.any():
            return np.zeros((0, 5))
        boxes = decode(loc[keep], anchors(tuple(x.shape[-2:]), feature_hw)[keep]) * torch.tensor([w, h, w, h])
        scores = prob[keep]
        for threshold in (0.3, 0.1):  # the official per-class NMS, then detect_faces' own
            kept = nms(boxes, scores, threshold)
            boxes, scores = boxes[kept], scores[kept]
        return torch.cat([boxes, scores[:, None]], dim=1).double().numpy()


def load_s3fd(path: str | Path, device: str | torch.device = "cpu") -> S3FD:
    """The released ``sfd_face.pth`` (plain state dict), loaded strictly, wrapped in the detector."""
    net = load_strict(S3FDNet, path, "the S3FD face detector",
                      "Expected auxiliary/sfd_face.pth from https://huggingface.co/ByteDance/LatentSync-1.5.")
    return S3FD(net, device)
