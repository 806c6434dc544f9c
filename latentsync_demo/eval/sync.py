"""The SyncNet sync measure of one face track: AV offset, LSE-D (min distance) and LSE-C / Sync_conf.

This is ``SyncNetEval.evaluate`` of the official evaluation (joonson/syncnet_python), step for step
(shared/reference/README.md section 5):

1. face crops: 224 x 224 BGR, 0-255 (cv2.resize INTER_LINEAR of whatever crop the caller made);
2. MFCC = ``python_speech_features.mfcc(int16 audio, 16000)`` -> (13, M), 100 columns per second;
3. n = min(frames, samples // 640) - 5 windows; window i = frames i..i+4 and MFCC columns 4i..4i+19;
4. dists[i, k] = || lip[i] - aud_padded[i + k] + 1e-6 ||  for k in 0..2*vshift (vshift zero rows each side);
5. mean over i; LSE-D = min, offset = vshift - argmin, LSE-C = median - min.

Differences from the official code, on purpose: frames never pass through JPEG files (the official code
extracts them with ``ffmpeg -f image2``, quality ~2); they come straight from the decoder, and the audio from our
ffmpeg decode to 16 kHz s16 (the same conversion). Features are computed in batches of ``batch_size`` as there.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..errors import InputError
from ..models.syncnet_v2 import LIP_FRAMES, MFCC_STEPS

SAMPLE_RATE = 16000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
MFCC_PER_FRAME = 4  # 10 ms hop
CROP_SIZE = 224
VSHIFT = 15
# Below this peak (int16 units, ~-50 dBFS) the audio is treated as silence: the MFCCs of digital silence are
# constant, so any "confidence" would only measure the video.
SILENCE_PEAK = 100


@dataclass(frozen=True)
class SyncResult:
    """One track: ``offset`` in frames (positive: the audio leads), ``min_dist`` = LSE-D, ``confidence`` = LSE-C."""

    offset: int
    min_dist: float
    confidence: float
    mean_dists: np.ndarray  # (2 * vshift + 1,) mean distance per offset
    num_windows: int


def mfcc(audio: np.ndarray) -> np.ndarray:
    """(N,) int16 16 kHz mono -> (13, M) float64 MFCC, ``python_speech_features.mfcc`` defaults as the official
    code (25 ms window, 10 ms hop, 26 filters, appendEnergy: coefficient 0 is the log frame energy)."""
    import python_speech_features

    return np.asarray(python_speech_features.mfcc(np.asarray(audio), SAMPLE_RATE)).T


def check_audio(audio: np.ndarray) -> None:
    """InputError for audio the metric cannot score (silent)."""
    if audio.size == 0 or int(np.abs(audio.astype(np.int32)).max()) < SILENCE_PEAK:
        raise InputError("the audio is silent, so lip sync cannot be measured: score a clip with speech in it.")


def prepare_crops(crops: np.ndarray) -> torch.Tensor:
    """(T, h, w, 3) uint8 BGR face crops -> (1, 3, T, 224, 224) float32 0-255, as the official ``imtv``."""
    if crops.shape[1:3] != (CROP_SIZE, CROP_SIZE):
        crops = np.stack([cv2.resize(c, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_LINEAR) for c in crops])
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(3, 0, 1, 2).unsqueeze(0).float()


@torch.no_grad()
def embed_windows(model, crops: np.ndarray, audio: np.ndarray, batch_size: int = 20,
                  device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Lip and audio embeddings of every 5-frame window: crops (T, h, w, 3) uint8 BGR, audio (N,) int16 ->
    (im_feat, cc_feat), each (n, D) float32 on the CPU, n = min(T, N // 640) - 5."""
    n = min(len(crops), len(audio) // SAMPLES_PER_FRAME) - LIP_FRAMES
    if n < 1:
        raise InputError(f"the clip is too short to measure lip sync: {len(crops)} frames and "
                         f"{len(audio) / SAMPLE_RATE:.2f} s of audio; at least {LIP_FRAMES + 1} frames (0.24 s) "
                         "of both are needed.")
    video = prepare_crops(crops)
    cc = torch.from_numpy(mfcc(audio)).float()[None, None]  # (1, 1, 13, M)
    model = model.eval()
    im_feat, cc_feat = [], []
    for start in range(0, n, batch_size):
        idx = range(start, min(n, start + batch_size))
        lips = torch.cat([video[:, :, i:i + LIP_FRAMES] for i in idx])
        mfccs = torch.cat([cc[..., MFCC_PER_FRAME * i:MFCC_PER_FRAME * i + MFCC_STEPS] for i in idx])
        im_feat.append(model.forward_lip(lips.to(device)).float().cpu())
        cc_feat.append(model.forward_aud(mfccs.to(device)).float().cpu())
    return torch.cat(im_feat), torch.cat(cc_feat)


def offset_distances(im_feat: torch.Tensor, cc_feat: torch.Tensor, vshift: int = VSHIFT) -> torch.Tensor:
    """(n, D), (n, D) -> dists (n, 2 * vshift + 1): the official ``calc_pdist`` (torch pairwise_distance)."""
    padded = torch.nn.functional.pad(cc_feat, (0, 0, vshift, vshift))
    n = len(im_feat)
    return torch.stack([torch.nn.functional.pairwise_distance(im_feat, padded[k:k + n])
                        for k in range(2 * vshift + 1)], dim=1)


def summarize(dists: torch.Tensor, vshift: int = VSHIFT) -> SyncResult:
    """dists (n, 2 * vshift + 1) -> offset, LSE-D and LSE-C as the official ``evaluate``."""
    mean_dists = dists.mean(dim=0)
    min_idx = int(np.argmin(mean_dists.numpy()))  # first index on ties, as torch.min
    min_dist = mean_dists[min_idx]
    return SyncResult(offset=vshift - min_idx, min_dist=float(min_dist),
                      confidence=float(torch.median(mean_dists) - min_dist),
                      mean_dists=mean_dists.numpy(), num_windows=len(dists))


def evaluate_track(model, crops: np.ndarray, audio: np.ndarray, vshift: int = VSHIFT, batch_size: int = 20,
                   device: str | torch.device = "cpu") -> SyncResult:
    """Score one face track: crops (T, h, w, 3) uint8 BGR at 25 fps, audio (N,) int16 16 kHz of the same span."""
    check_audio(audio)
    im_feat, cc_feat = embed_windows(model, crops, audio, batch_size, device)
    return summarize(offset_distances(im_feat, cc_feat, vshift), vshift)
