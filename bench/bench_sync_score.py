"""Benchmark: how long the lip-sync score takes per second of video, by stage (random full-size weights).

    PYTHONPATH=. python bench/bench_sync_score.py [VIDEO] [--seconds 4] [--size 1920x1080] [--device cpu] [--detect-every 1]

Without VIDEO a talking-head clip is generated. Stages: S3FD face detection (official: every frame, at 0.25
scale), the mediapipe fallback, and SyncNet v2 on the crops of one track. Random weights time the real
architectures; the scores themselves mean nothing here. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import closing
from pathlib import Path

import torch

from latentsync_demo.eval.faces import Track, crop_tracks, detect_boxes, landmark_boxes
from latentsync_demo.eval.sync import evaluate_track
from latentsync_demo.media import MODEL_FPS, iter_frames, load_audio, probe, to_int16
from latentsync_demo.models.s3fd import S3FD, S3FDNet
from latentsync_demo.models.syncnet_v2 import SyncNetV2
from latentsync_demo.testing.media import make_talking_head_clip


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", nargs="?")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--detect-every", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(args.video) if args.video else make_talking_head_clip(
            Path(tmp) / "clip.mp4", args.seconds, fps=25, size=tuple(int(v) for v in args.size.split("x")))
        info = probe(video)
        frames = info.frames_at(MODEL_FPS)
        seconds = frames / MODEL_FPS
        print(f"{video.name}: {info.width}x{info.height}, {frames} frames at 25 fps, device {args.device}, "
              f"{torch.get_num_threads()} threads")
        torch.manual_seed(0)
        s3fd = S3FD(S3FDNet(), args.device)
        with closing(iter_frames(video, fps=MODEL_FPS)) as it:
            _, t = timed(lambda: detect_boxes(it, s3fd.detect, args.detect_every))
        print(f"S3FD detection (every {args.detect_every}): {t / seconds:.2f} s per second of video")
        detect, close = landmark_boxes()
        with closing(iter_frames(video, fps=MODEL_FPS)) as it:
            _, t = timed(lambda: detect_boxes(it, detect, args.detect_every))
        close()
        print(f"mediapipe fallback detection: {t / seconds:.2f} s per second of video")
        h, w = info.height, info.width
        box = [[w / 4, h / 4, 3 * w / 4, 3 * h / 4]]
        track = Track(torch.arange(frames).numpy(), torch.tensor(box).repeat(frames, 1).numpy())
        crops, t_crop = timed(lambda: next(crop_tracks(video, [track])))
        audio = to_int16(load_audio(video))
        syncnet = SyncNetV2().to(args.device).eval()
        _, t_sync = timed(lambda: evaluate_track(syncnet, crops, audio, device=args.device))
        print(f"crops: {t_crop / seconds:.2f} s, SyncNet v2 + distances: {t_sync / seconds:.2f} s per second of video")


if __name__ == "__main__":
    main()
