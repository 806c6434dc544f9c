"""Synthetic in-sync "talking mouths" and a quickly trained narrow SyncNet v2, for metric tests (CPU, seconds).

A clip is speech-like audio (``testing.media.speech_like``) and 224 x 224 BGR "face crops" whose dark mouth
ellipse opens with the audio's loudness in that frame. A SyncNet v2 of the official structure with narrow
channels learns, in a few hundred contrastive steps, to tell in-sync windows from shifted ones; so a metric
bug (wrong window alignment, offset sign, distance or summary) shows up as a wrong score.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..eval.sync import MFCC_PER_FRAME, SAMPLES_PER_FRAME, mfcc
from ..media.audio import to_int16
from ..models.syncnet_v2 import LIP_FRAMES, MFCC_STEPS, SyncNetV2
from .media import speech_like

NARROW = dict(audio_channels=(8, 16, 16, 16, 16, 32), lip_channels=(4, 8, 8, 8, 8, 32), fc_channels=32, embed_dim=32)


def mouth_frames(audio: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N,) int16 audio -> (N // 640, 224, 224, 3) uint8 BGR crops; mouth height follows the frame's RMS."""
    rng = np.random.default_rng(seed)
    n = len(audio) // SAMPLES_PER_FRAME
    rms = np.sqrt((audio[:n * SAMPLES_PER_FRAME].astype(np.float64).reshape(n, -1) ** 2).mean(1))
    opening = rms / max(rms.max(), 1e-9)
    yy, xx = np.mgrid[:224, :224]
    frames = np.empty((n, 224, 224, 3), np.uint8)
    for i in range(n):
        face = np.full((224, 224, 3), (120, 150, 200), np.float32)  # skin-ish, BGR
        half_h = 3 + 40 * opening[i]
        inside = ((xx - 112) / 45.0) ** 2 + ((yy - 150) / half_h) ** 2 <= 1
        face[inside] = (40, 30, 90)
        face += rng.normal(0, 6, face.shape)
        frames[i] = np.clip(face, 0, 255).astype(np.uint8)
    return frames


def synthetic_clip(seconds: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(crops (T, 224, 224, 3) uint8 BGR, audio (T * 640,) int16) in sync, 25 fps."""
    audio = to_int16(speech_like(seconds, seed=seed))
    frames = mouth_frames(audio, seed)
    return frames, audio[:len(frames) * SAMPLES_PER_FRAME]


def train_syncnet(steps: int = 300, batch: int = 32, seed: int = 0, seconds: float = 8.0,
                  margin: float = 2.0) -> SyncNetV2:
    """A narrow SyncNet v2 trained with the original SyncNet's contrastive loss on a synthetic clip: in-sync
    windows are pulled together, windows of audio at least 3 frames away are pushed ``margin`` apart.

    For CPU speed the lip tower's first stage (the 5 x 7 x 7 Conv3d over 224 x 224 frames, its BatchNorm, ReLU
    and pool: nearly all of the cost) keeps its random weights, with BatchNorm statistics calibrated on the clip;
    its outputs are computed once, and everything after it trains (a random-feature first layer).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    frames, audio = synthetic_clip(seconds, seed=seed + 100)
    video = torch.from_numpy(frames).permute(3, 0, 1, 2).float()  # (3, T, 224, 224)
    cc = torch.from_numpy(mfcc(audio)).float()  # (13, M)
    n = len(frames) - LIP_FRAMES
    model = SyncNetV2(**NARROW)
    stem, rest = model.netcnnlip[:4], model.netcnnlip[4:]
    stem[1].momentum = None  # cumulative average: running stats = statistics of the whole clip
    with torch.no_grad():
        windows = [video[:, k:k + LIP_FRAMES] for k in range(n)]
        stem.train()
        stem(torch.stack(windows[::2]))  # BatchNorm statistics from every other window
        stem.eval()
        stem_out = torch.cat([stem(torch.stack(windows[k:k + 64])) for k in range(0, n, 64)])
    model.requires_grad_(True)
    stem.requires_grad_(False)
    model.train()
    stem.eval()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(steps):
        i = rng.integers(0, n, batch)
        shift = rng.integers(3, n // 2, batch) * rng.choice([-1, 1], batch)
        positive = rng.random(batch) < 0.5
        j = np.where(positive, i, (i + shift) % n)
        lips = model.netfclip(rest(stem_out[i]).flatten(1))
        mfccs = torch.stack([cc[None, :, MFCC_PER_FRAME * k:MFCC_PER_FRAME * k + MFCC_STEPS] for k in j])
        dist = F.pairwise_distance(lips, model.forward_aud(mfccs))
        label = torch.from_numpy(positive).float()
        loss = (label * dist**2 + (1 - label) * F.relu(margin - dist) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()
