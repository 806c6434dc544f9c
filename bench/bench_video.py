"""Benchmark: face stage speed and the whole CLI's wall time / peak memory on a generated 1080p clip.

    python bench/bench_video.py [--seconds 10] [--size 1920x1080] [--steps 2] [--device cpu]

Uses tiny random checkpoints (written to a temporary folder), so it runs anywhere; figures are printed,
not asserted. The face stage = decode at 25 fps + FaceMesh landmarks + alignment.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from latentsync_demo.face import FaceAligner
from latentsync_demo.face.landmarks import make_detector
from latentsync_demo.face.types import select_face
from latentsync_demo.media import iter_frames
from latentsync_demo.testing.media import make_speech_wav, make_talking_head_clip
from latentsync_demo.testing.tiny_checkpoints import write_tiny_checkpoints


def face_stage_fps(video: Path, resolution: int) -> tuple[float, float]:
    """(decode-only fps, decode + landmarks + align fps)."""
    start = time.perf_counter()
    count = sum(1 for _ in iter_frames(video))
    decode_fps = count / (time.perf_counter() - start)
    detector, aligner = make_detector("mediapipe"), FaceAligner(resolution)
    start = time.perf_counter()
    for frame in iter_frames(video):
        face = select_face(detector.detect(frame))
        if face is not None:
            aligner.align(frame, face.anchors)
    detector.close()
    return decode_fps, count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))

    with tempfile.TemporaryDirectory(prefix="latentsync_bench_") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        video = make_talking_head_clip(tmp / "clip.mp4", seconds=args.seconds, fps=30, size=(width, height))
        audio = make_speech_wav(tmp / "speech.wav", seconds=args.seconds)
        print(f"generated {args.seconds:.0f} s {width}x{height} clip in {time.perf_counter() - t:.1f} s")
        checkpoints = write_tiny_checkpoints(tmp / "tiny")

        for resolution in (256, 512):
            decode_fps, face_fps = face_stage_fps(video, resolution)
            print(f"face stage @{resolution}: decode {decode_fps:.1f} fps, decode+landmarks+align {face_fps:.1f} fps")

        command = [sys.executable, "-m", "latentsync_demo", "--video", str(video), "--audio", str(audio),
                   "--out", str(tmp / "out.mp4"), "--checkpoints", str(checkpoints), "--steps", str(args.steps),
                   "--device", args.device, "--consent"]
        t = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"CLI (tiny models, {args.steps} steps, {args.device}): wall {wall:.1f} s, "
              f"{args.seconds * 25 / wall:.1f} output frames/s, peak RSS {peak_mb:.0f} MB "
              f"(all frames of the clip would be {args.seconds * 25 * width * height * 3 / 2**20:.0f} MB)")


if __name__ == "__main__":
    main()
