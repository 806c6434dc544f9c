"""Score a video (with its own or a separate audio) as the official LatentSync evaluation does.

    scorer = SyncScorer.from_checkpoints("checkpoints")      # auxiliary/syncnet_v2.model (+ sfd_face.pth)
    score = scorer.score("result.mp4", "speech.wav")         # or score("result.mp4") for its own track
    print(score.confidence, score.min_dist, score.offset)    # LSE-C (Sync_conf), LSE-D, AV offset

Per face track: ``sync.evaluate_track`` (its crops streamed: ``faces.stream_crops`` into ``sync.LipWindows``);
the clip's numbers are means over its tracks (offset: ``int`` of the mean, as ``eval_sync_conf.py``). Official weights come from the LatentSync release's ``auxiliary/`` folder
(``ByteDance/LatentSync-1.5`` on Hugging Face), stored as ``<checkpoints>/auxiliary/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Callable

import torch

from ..errors import CheckpointError, InputError
from ..hub import fetch_file
from ..media import MODEL_FPS, iter_frames, load_audio, probe, to_int16
from ..models.s3fd import load_s3fd
from ..models.syncnet_v2 import load_syncnet_v2
from ..settings import FaceTrack
from ..store import default_root
from .faces import BoxDetector, build_tracks, detect_boxes, landmark_boxes, stream_crops
from .sync import SAMPLES_PER_FRAME, LipWindows, SyncResult, check_audio, evaluate_features, num_windows

AUX_REPO = "ByteDance/LatentSync-1.5"
AUX_DIR = "auxiliary"
SYNCNET_FILE = f"{AUX_DIR}/syncnet_v2.model"
S3FD_FILE = f"{AUX_DIR}/sfd_face.pth"
METRIC_FILES = (SYNCNET_FILE, S3FD_FILE)
MIN_TRACK = 50  # frames (2 s): LatentSync's eval_sync_conf.py
FALLBACK_BACKEND = "mediapipe"  # the landmark detector whose face extents stand in for S3FD's boxes


def metric_root(checkpoints: str | Path | None = None) -> Path:
    return Path(checkpoints) if checkpoints is not None else default_root()


def missing_metric_files(checkpoints: str | Path | None = None) -> list[Path]:
    """Metric weights not yet under ``<checkpoints>/auxiliary/`` (sfd_face.pth is optional but listed)."""
    root = metric_root(checkpoints)
    return [root / name for name in METRIC_FILES if not (root / name).is_file()]


def download_metric_weights(checkpoints: str | Path | None = None) -> Path:
    """Fetch the missing metric weights (huggingface_hub progress bars); CheckpointError when that fails."""
    root = metric_root(checkpoints)
    for name in METRIC_FILES:
        fetch_file(AUX_REPO, name, root, f"python -m latentsync_demo.eval --download --checkpoints {root}")
    return root / AUX_DIR


def how_to_get(checkpoints: str | Path | None = None) -> str:
    root = metric_root(checkpoints)
    return (f"Lip-sync scoring needs {root / SYNCNET_FILE} (and, for the official face crops, {root / S3FD_FILE}) "
            f"from https://huggingface.co/{AUX_REPO}: run  python -m latentsync_demo.eval --download"
            f" --checkpoints {root}")


@dataclass
class SyncScore:
    confidence: float  # LSE-C / Sync_conf: higher is better synced (official real videos score ~7-9)
    min_dist: float  # LSE-D: lower is better
    offset: int  # frames; 0 = in sync
    tracks: list[SyncResult] = field(repr=False)
    face_detector: str  # which boxes the crops came from ("s3fd" = the official protocol)

    def __str__(self) -> str:
        return f"confidence {self.confidence:.2f}, offset {self.offset} frames"


class SyncScorer:
    """SyncNet v2 + a face box detector; ``score(video, audio=None) -> SyncScore``."""

    def __init__(self, syncnet: torch.nn.Module, detect: BoxDetector | None = None, face_detector: str = "s3fd",
                 device: str | torch.device = "cpu", min_track: int = MIN_TRACK, min_face_size: float = 100,
                 detect_every: int = 1):
        self.syncnet = syncnet.to(device).eval()
        self.detect, self.face_detector = detect, face_detector
        self.device, self.detect_every = device, detect_every
        self.min_track, self.min_face_size = min_track, min_face_size

    @classmethod
    def from_checkpoints(cls, checkpoints: str | Path | None = None, device: str | torch.device = "cpu",
                         **kwargs) -> SyncScorer:
        """Load ``auxiliary/syncnet_v2.model`` (required) and ``auxiliary/sfd_face.pth`` (optional: without it
        faces come from the landmark detector, reported in ``SyncScore.face_detector``)."""
        root = metric_root(checkpoints)
        if not (root / SYNCNET_FILE).is_file():
            raise CheckpointError(how_to_get(checkpoints))
        syncnet = load_syncnet_v2(root / SYNCNET_FILE, device)
        if (root / S3FD_FILE).is_file():
            return cls(syncnet, load_s3fd(root / S3FD_FILE, device).detect, "s3fd", device, **kwargs)
        return cls(syncnet, None, "mediapipe landmarks (sfd_face.pth missing)", device, **kwargs)

    def reuses(self, track: FaceTrack | None) -> bool:
        """Whether ``score`` would find exactly ``track``'s boxes itself: no S3FD here, so its boxes come from the
        same landmark detector, run on every frame of the same 25 fps decode."""
        return track is not None and self.detect is None and track.backend == FALLBACK_BACKEND

    def score(self, video: str | Path, audio: str | Path | None = None,
              progress: Callable[[float], None] | None = None, track: FaceTrack | None = None) -> SyncScore:
        """Score ``video`` against ``audio`` (default: the video's own audio track). InputError (with what to do)
        for a clip without a usable face, silent or too short audio. ``track``: the face boxes a job already
        found in ``video``, used instead of detecting again when ``reuses(track)``."""
        info = probe(video)
        if not info.has_video:
            raise InputError(f"{Path(video).name} has no video stream: lip sync can only be scored on a video")
        samples = to_int16(load_audio(audio if audio is not None else video))
        check_audio(samples)
        num_frames = info.frames_at(MODEL_FPS)
        if self.reuses(track):
            detections, every = list(track.boxes), 1
        else:
            detections, every = self._detect(video, num_frames, progress), self.detect_every
        # Clips shorter than the official 2 s minimum are scored on their whole length rather than refused
        # (a track spans first to last detection: up to detect_every - 1 frames short of the clip's end).
        min_track = min(self.min_track, max(len(detections) - every - 1, 5))
        tracks = build_tracks(detections, min_track=min_track, min_face_size=self.min_face_size)
        if not tracks:
            raise InputError(f"no face was found in {Path(video).name} for long enough to measure lip sync "
                             f"(a face of over {self.min_face_size:.0f} px for {min_track + 1}+ frames is needed)")
        results = self._score_tracks(video, tracks, samples)
        if progress:
            progress(1.0)
        return SyncScore(confidence=fmean(r.confidence for r in results), min_dist=fmean(r.min_dist for r in results),
                         offset=int(fmean(r.offset for r in results)), tracks=results, face_detector=self.face_detector)

    def _score_tracks(self, video, tracks: list, samples) -> list[SyncResult]:
        """``sync.evaluate_track`` of each track, with the crops streamed from one decode pass into each track's
        ``LipWindows`` (a batch of windows held at a time, not the whole track)."""
        spans, windows = [], []
        for track in tracks:
            span = samples[track.frames[0] * SAMPLES_PER_FRAME:(track.frames[-1] + 1) * SAMPLES_PER_FRAME]
            check_audio(span)
            spans.append(span)
            windows.append(LipWindows(self.syncnet, num_windows(len(track.frames), len(span)), device=self.device))
        stream_crops(video, tracks, [w.push for w in windows])
        return [evaluate_features(self.syncnet, w.features(), span, device=self.device)
                for w, span in zip(windows, spans)]

    def _detect(self, video, num_frames: int, progress) -> list:
        detect, close = (self.detect, None) if self.detect is not None else landmark_boxes(FALLBACK_BACKEND)
        try:
            step = (lambda i: progress(0.8 * (i + 1) / max(num_frames, 1))) if progress else None
            frames = iter_frames(video, fps=MODEL_FPS)
            try:
                return detect_boxes(frames, detect, self.detect_every, step)
            finally:
                frames.close()
        finally:
            if close is not None:
                close()


def score_line(result: SyncScore, original: SyncScore | str | None = None) -> str:
    """"Lip sync: confidence X (original clip: Y), offset Z frames" (what the app and the CLI show);
    ``original`` may be a reason why the original clip has no score."""
    if isinstance(original, SyncScore):
        before = f" (original clip: {original.confidence:.2f})"
    else:
        before = f" (original clip: {original})" if original else ""
    return f"Lip sync: confidence {result.confidence:.2f}{before}, offset {result.offset} frames"

