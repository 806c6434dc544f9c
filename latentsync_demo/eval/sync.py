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


def num_windows(num_frames: int, num_samples: int) -> int:
    """Windows the official code scores: min(frames, samples // 640) - 5; InputError when there are none."""
    n = min(num_frames, num_samples // SAMPLES_PER_FRAME) - LIP_FRAMES
    if n < 1:
        raise InputError(f"the clip is too short to measure lip sync: {num_frames} frames and "
                         f"{num_samples / SAMPLE_RATE:.2f} s of audio; at least {LIP_FRAMES + 1} frames (0.24 s) "
                         "of both are needed.")
    return n


class LipWindows:
    """Lip embeddings of the official 5-frame windows 0..n-1, computed as the face crops arrive: crops go in one
    at a time (``push``), each batch of ``batch_size`` windows is embedded as soon as its last frame is there, and
    at most ``batch_size + 4`` crops are held, whatever the track's length. The batches are the official ones
    (windows 20k..20k+19, in order), so the features equal those of the whole track's crops at once."""

    def __init__(self, model, n: int, batch_size: int = 20, device: str | torch.device = "cpu"):
        self.model, self.n, self.batch_size, self.device = model.eval(), n, batch_size, device
        self.pending: list[np.ndarray] = []  # the crops of frames self.start, self.start + 1, ...
        self.start = 0  # first window not yet embedded
        self.received = 0
        self.feats: list[torch.Tensor] = []

    def push(self, crop: np.ndarray) -> None:
        """One (h, w, 3) uint8 BGR crop, the track's next frame."""
        self.received += 1
        if self.start >= self.n:
            return  # past the last window's frames
        self.pending.append(crop)
        count = min(self.batch_size, self.n - self.start)
        if len(self.pending) == count + LIP_FRAMES - 1:
            self._embed(count)

    @torch.no_grad()
    def _embed(self, count: int) -> None:
        video = prepare_crops(np.stack(self.pending))
        lips = torch.cat([video[:, :, i:i + LIP_FRAMES] for i in range(count)])
        self.feats.append(self.model.forward_lip(lips.to(self.device)).float().cpu())
        del self.pending[:count]
        self.start += count

    def features(self) -> torch.Tensor:
        """(n, D) float32 CPU embeddings. When fewer crops came than ``n`` windows need (a decode shorter than the
        track), the windows the official code would score on what came: min(n, crops - 5)."""
        n = min(self.n, self.received - LIP_FRAMES)
        if n < 1:
            raise InputError(f"the face track is too short to measure lip sync: {self.received} frames; at least "
                             f"{LIP_FRAMES + 1} frames (0.24 s) are needed.")
        if self.start < n:
            self._embed(n - self.start)
        return torch.cat(self.feats)[:n]


def lip_features(model, crops, n: int, batch_size: int = 20, device: str | torch.device = "cpu") -> torch.Tensor:
    """(n, D) float32 CPU embeddings of the 5-frame windows starting at frames 0..n-1 of (T, h, w, 3) BGR crops
    (an array or any iterable of crops: they are consumed as they come, see ``LipWindows``)."""
    windows = LipWindows(model, n, batch_size, device)
    for crop in crops:
        windows.push(crop)
    return windows.features()


@torch.no_grad()
def audio_features(model, audio: np.ndarray, n: int, batch_size: int = 20,
                   device: str | torch.device = "cpu") -> torch.Tensor:
    """(n, D) float32 CPU embeddings of the MFCC windows 4i..4i+19, i < n, of (N,) int16 audio."""
    cc = torch.from_numpy(mfcc(audio)).float()[None, None]  # (1, 1, 13, M)
    feats = []
    for start in range(0, n, batch_size):
        mfccs = torch.cat([cc[..., MFCC_PER_FRAME * i:MFCC_PER_FRAME * i + MFCC_STEPS]
                           for i in range(start, min(n, start + batch_size))])
        feats.append(model.eval().forward_aud(mfccs.to(device)).float().cpu())
    return torch.cat(feats)


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
    n = num_windows(len(crops), len(audio))
    return evaluate_features(model, lip_features(model, crops, n, batch_size, device), audio, vshift, batch_size,
                             device)


def evaluate_features(model, im_feat: torch.Tensor, audio: np.ndarray, vshift: int = VSHIFT, batch_size: int = 20,
                      device: str | torch.device = "cpu") -> SyncResult:
    """Score one face track from its lip features (n, D) (``LipWindows``) and its audio (N,) int16 16 kHz."""
    cc_feat = audio_features(model, audio, len(im_feat), batch_size, device)
    return summarize(offset_distances(im_feat, cc_feat, vshift), vshift)
