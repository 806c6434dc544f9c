"""Per-frame CPU cost of the face ops outside the model, at full size and at a quarter size.

    python bench/bench_face_ops.py [VIDEO] [--frames 6] [--repeats 5] [--small 270x480]

VIDEO defaults to demo1_video.mp4 in ../shared/media (or $LATENTSYNC_MEDIA_DIR). On the first ``--frames``
25 fps frames, decoded at the clip's size and scaled by ffmpeg to ``--small``, it prints milliseconds per frame
(the fastest of ``--repeats`` passes: the least disturbed by other processes) of:
  * detect: the mediapipe FaceMesh landmarks (the face thread's other per-frame cost; not changed here),
  * align:  ``FaceAligner.align`` (window warp, crop=True) and the full-frame reference (crop=False),
  * restore: ``FaceAligner.restore_generated`` of a perturbed face, window (crop=True) and full frame,
with torch on 1 thread and on its default thread count, and the extra cost of the large size over the small.
Times are CPU time of the whole process by default (all threads, so a second thread shows as more CPU, not
less), ``--clock wall`` for elapsed time.
Run it with PYTHONPATH pointing at another checkout to measure that code (an aligner without ``crop`` on
``align`` is timed as full-frame only). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import os
import time
from pathlib import Path

import torch

from latentsync_demo.face import FaceAligner
from latentsync_demo.face.landmarks import make_detector
from latentsync_demo.face.types import select_face
from latentsync_demo.media import MODEL_FPS, iter_frames

MEDIA_DIR = Path(os.environ.get("LATENTSYNC_MEDIA_DIR", Path(__file__).resolve().parents[2] / "shared" / "media"))
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}  # cpu: all of this process's threads


def _per_frame_ms(fn, items, repeats: int, clock) -> float:
    """Fastest over `repeats` passes of the mean milliseconds per item (one untimed warm-up pass first)."""
    fn(*items[0])
    passes = []
    for _ in range(repeats):
        start = clock()
        for item in items:
            fn(*item)
        passes.append((clock() - start) * 1e3 / len(items))
    return min(passes)


def _clip(video: Path, size, frames: int, repeats: int, clock):
    """(frames with anchors, (frame, generated face, matrix) triples, detect ms) of the largest face in the
    first `frames` frames."""
    decoded = list(itertools.islice(iter_frames(video, fps=MODEL_FPS, size=size), frames))
    detector = make_detector("mediapipe")
    found = []
    detect_ms = _per_frame_ms(lambda frame: found.append(select_face(detector.detect(frame))),
                              [(frame,) for frame in decoded], repeats, clock)
    detector.close()
    faces = found[-len(decoded):]  # the last pass
    kept = [(frame, face.anchors) for frame, face in zip(decoded, faces) if face is not None]
    if not kept:
        raise SystemExit(f"no face found in the first {frames} frames of {video} at {size or 'full size'}")
    aligner = FaceAligner(256)
    rng = torch.Generator().manual_seed(0)
    generated = []
    for frame, anchors in kept:
        face, matrix = aligner.align(frame, anchors)
        unit = torch.from_numpy(face).permute(2, 0, 1).float() / 127.5 - 1  # as the VAE would hand it back
        generated.append((frame, (unit + 0.1 * torch.randn(unit.shape, generator=rng)).clamp(-1, 1), matrix))
    return kept, generated, detect_ms


def _time_ops(kept, generated, repeats: int, slow_frames: int, clock) -> dict[str, float]:
    has_crop = "crop" in inspect.signature(FaceAligner.align).parameters
    aligner = FaceAligner(256)  # the smoothing state only shifts the matrix a little: reuse across passes
    times = {}
    variants = [("window", {"crop": True}), ("full", {"crop": False})] if has_crop else [("full", {})]
    for name, kwargs in variants:
        times[f"align {name}"] = _per_frame_ms(lambda f, a: aligner.align(f, a, **kwargs), kept, repeats, clock)
    for name, crop in (("window", True), ("full", False)):
        items = generated if crop else generated[:slow_frames]  # the full-frame restore is slow: fewer frames
        times[f"restore {name}"] = _per_frame_ms(lambda f, g, m: aligner.restore_generated(f, g, m, crop=crop),
                                                 items, repeats if crop else 1, clock)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", nargs="?", type=Path, default=MEDIA_DIR / "demo1_video.mp4")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--slow-frames", type=int, default=2, help="frames for the full-frame restore")
    parser.add_argument("--small", default="270x480", help="width x height of the small size")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="cpu",
                        help="cpu: CPU time of the process (steadier on a shared machine); wall: elapsed time")
    args = parser.parse_args()
    clock = CLOCKS[args.clock]
    small = tuple(int(v) for v in args.small.lower().split("x"))
    default_threads = torch.get_num_threads()

    clips = {}
    for size in (None, small):
        kept, generated, detect_ms = _clip(args.video, size, args.frames, args.repeats, clock)
        h, w = kept[0][0].shape[:2]
        clips[f"{w}x{h}"] = (kept, generated, detect_ms)
    names = list(clips)
    print(f"{args.video.name}: {args.frames} frames, fastest of {args.repeats} passes, {args.clock} ms per frame")
    for name in names:
        print(f"  detect (mediapipe, {name}): {clips[name][2]:.1f}")
    for threads in (1, default_threads):
        torch.set_num_threads(threads)
        results = {name: _time_ops(kept, generated, args.repeats, args.slow_frames, clock)
                   for name, (kept, generated, _) in clips.items()}
        print(f"torch threads {threads}:")
        print(f"  {'op':<16}" + "".join(f"{name:>12}" for name in names) + f"{'extra':>10}")
        for op in results[names[0]]:
            row = [results[name][op] for name in names]
            print(f"  {op:<16}" + "".join(f"{v:12.2f}" for v in row) + f"{row[0] - row[1]:10.2f}")
    torch.set_num_threads(default_threads)


if __name__ == "__main__":
    main()
