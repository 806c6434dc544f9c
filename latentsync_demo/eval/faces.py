"""Face tracks for the sync metric: per-frame face boxes -> IoU tracks -> 224 x 224 BGR crops (official recipe).

Follows LatentSync's ``eval/syncnet_detect.py`` (from joonson's ``run_pipeline.py``): boxes from S3FD on the
frame scaled by 0.25 (score > 0.9); tracks link boxes of IoU > 0.5 with at most 25 frames of missed detections,
must be longer than ``min_track`` frames (50) with a mean box side over 100 px, and are linearly interpolated over
missed frames; crops are centred on the median-filtered (kernel 13) box centre, 1.8 box-half-sizes tall
(0.4 crop scale), on a frame padded with grey 110, resized to 224 x 224.

Differences from the official protocol, and why:
  * no scene-cut detection (PySceneDetect is one more dependency): a cut still ends a track when the face jumps
    (IoU < 0.5); a cut that keeps the face in place is scored as one track;
  * crops go straight from the decoder to SyncNet, a window batch at a time (the official code writes mp4v
    videos and re-extracts JPEG frames: two lossy steps), and each track's audio is cut from the 16 kHz s16
    decode directly (officially: muxed to AAC and decoded again);
  * without ``sfd_face.pth`` the boxes come from our landmark detector (mediapipe FaceMesh extent), whose boxes
    are a little tighter than S3FD's: scores are then close to, not equal to, the official ones;
  * ``detect_every`` > 1 (used on CPU for speed) detects on every n-th frame and interpolates in between.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np
from scipy.interpolate import interp1d
from scipy.signal import medfilt

from ..face.landmarks import make_detector
from ..face.track import box_iou
from ..media import MODEL_FPS, iter_frames
from .sync import CROP_SIZE

# frame (H, W, 3) uint8 RGB -> (k, 5) [x0, y0, x1, y1, score] boxes in pixels
BoxDetector = Callable[[np.ndarray], np.ndarray]

CROP_SCALE = 0.4
PAD_VALUE = 110


@dataclass
class Track:
    frames: np.ndarray  # (T,) consecutive frame indices
    boxes: np.ndarray  # (T, 4) x0, y0, x1, y1 (interpolated where the detector missed)


def landmark_boxes(name: str = "mediapipe") -> tuple[BoxDetector, Callable[[], None]]:
    """The fallback box detector: the extent of our landmark detector's faces; returns (detect, close)."""
    detector = make_detector(name)

    def detect(frame: np.ndarray) -> np.ndarray:
        return np.array([[*face.box, 1.0] for face in detector.detect(frame)]).reshape(-1, 5)

    return detect, detector.close


def detect_boxes(frames: Iterable[np.ndarray], detect: BoxDetector, detect_every: int = 1,
                 on_frame: Callable[[int], None] | None = None) -> list[np.ndarray | None]:
    """Boxes of every frame (None for frames skipped by ``detect_every``)."""
    found: list[np.ndarray | None] = []
    for i, frame in enumerate(frames):
        found.append(detect(frame) if i % detect_every == 0 else None)
        if on_frame is not None:
            on_frame(i)
    return found


def build_tracks(detections: list[np.ndarray | None], min_track: int = 50, num_failed_det: int = 25,
                 min_face_size: float = 100, iou_threshold: float = 0.5) -> list[Track]:
    """Greedy IoU tracking as the official ``track_face``: each pass takes the earliest unused box and follows
    it frame by frame; a track ends after ``num_failed_det`` frames without a matching box."""
    remaining = [[] if d is None else [box[:4] for box in d] for d in detections]
    tracks = []
    while True:
        frames, boxes = [], []
        for f, candidates in enumerate(remaining):
            if frames and f - frames[-1] > num_failed_det:
                break
            for k, box in enumerate(candidates):
                if not frames or box_iou(box, boxes[-1]) > iou_threshold:
                    frames.append(f)
                    boxes.append(box)
                    del candidates[k]
                    break
        if not frames:
            return tracks
        span = np.arange(frames[0], frames[-1] + 1)
        if len(span) <= min_track:
            continue
        boxes_arr = np.array(boxes, dtype=np.float64)
        if len(frames) > 1:
            boxes_arr = interp1d(np.array(frames), boxes_arr, axis=0)(span)
        if max(np.mean(boxes_arr[:, 2] - boxes_arr[:, 0]), np.mean(boxes_arr[:, 3] - boxes_arr[:, 1])) > min_face_size:
            tracks.append(Track(span, boxes_arr))


def crop_geometry(track: Track) -> np.ndarray:
    """(T, 3) smoothed (half size, centre x, centre y) of each box: median filter of kernel 13, as the official."""
    b = track.boxes
    s = np.maximum(b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]) / 2
    x, y = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    return np.stack([medfilt(v, kernel_size=13) for v in (s, x, y)], axis=1)


def crop_face(frame_rgb: np.ndarray, half_size: float, cx: float, cy: float) -> np.ndarray:
    """The official crop of one frame: (224, 224, 3) uint8 **BGR** (SyncNet v2 was trained on BGR)."""
    bs = half_size
    pad = int(bs * (1 + 2 * CROP_SCALE))
    frame = np.pad(frame_rgb[..., ::-1], ((pad, pad), (pad, pad), (0, 0)), constant_values=PAD_VALUE)
    my, mx = cy + pad, cx + pad
    rows = slice(int(my - bs), int(my + bs * (1 + 2 * CROP_SCALE)))  # 1 half-size above the centre, 1.8 below
    cols = slice(int(mx - bs * (1 + CROP_SCALE)), int(mx + bs * (1 + CROP_SCALE)))
    face = frame[rows, cols]
    return cv2.resize(face, (CROP_SIZE, CROP_SIZE))


def stream_crops(video: str | Path, tracks: list[Track], consumers: list[Callable[[np.ndarray], None]]) -> None:
    """Second decode pass: each track's 224 x 224 BGR crops, frame by frame, handed to its consumer as they are
    cut (nothing is kept here: memory stays flat in the clip length; the scorer's consumers are ``LipWindows``)."""
    geometry = [crop_geometry(t) for t in tracks]
    last = max(t.frames[-1] for t in tracks)
    with closing(iter_frames(video, fps=MODEL_FPS)) as frames:
        for f, frame in enumerate(frames):
            if f > last:
                break
            for k, track in enumerate(tracks):
                if track.frames[0] <= f <= track.frames[-1]:
                    consumers[k](crop_face(frame, *geometry[k][f - track.frames[0]]))


def crop_tracks(video: str | Path, tracks: list[Track]) -> Iterator[np.ndarray]:
    """The (T, 224, 224, 3) BGR crops of each track, in track order, all in memory (for tests and benchmarks;
    the scorer streams them with ``stream_crops``)."""
    crops: list[list[np.ndarray]] = [[] for _ in tracks]
    stream_crops(video, tracks, [found.append for found in crops])
    for found in crops:
        yield np.stack(found) if found else np.zeros((0, CROP_SIZE, CROP_SIZE, 3), np.uint8)
