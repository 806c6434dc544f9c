"""Watermark on real faces: detection per transformation and clip size, false positives, PSNR, marking cost.

    python bench/bench_watermark.py --media ../shared/media --work /tmp/wm_bench   # 28 min on 2 busy cores

(plus ~5 min the first time for the 6 jobs, which are cached in --work; sizes run smallest first and the
tables are printed after each size, so a run cut short still reports what it measured).

The corpus: both demo clips (10 s and 20 s, 1080x1920) at three sizes (1080x1920, 720x1280, 540x960), each
lip-synced ONCE over its whole length by the real job (``LipSyncService`` on tiny random checkpoints, consent
given, 1 step), which marks every output frame; each job has its own key (``$LATENTSYNC_WATERMARK_KEY``) and
its job number comes from the output's tags. Job outputs are kept in ``--work`` and reused by later runs.

Each whole output goes through every transformation of ``testing.watermark_corpus.TRANSFORMS`` (H.264 CRF 28
+ 720p, CRF 35, VP9, 0.9x, 1.1x, a crop that keeps the face, 25 -> 30 fps blended, 25 -> 24 fps dropped);
then every 1 s and every 2 s window (whole seconds) of the transformed output is read on its own, exactly as
``verify`` reads a file that holds only those frames. The "1 s excerpt" row cuts each 1 s window out of the
output and re-encodes it (CRF 23) before reading it. A window counts as detected when the right job number is
read (a wrong job number would count as a miss, and is listed).

False positives: the source clips at the same sizes, unmarked, under the same transformations, every 1 s window
(disjoint) of their first 10 s, read with the key of the job made from them; the marked 1 s windows after
CRF 28 + 720p read with a wrong key; and synthetic clips (``--synthetic``, each through one transformation).

PSNR over the face: the marker applied to one source frame per second, over the face box mediapipe finds
(RGB, all three channels), worst and mean per size. Marking cost: ms per 1080x1920 frame on one core.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from latentsync_demo.face.landmarks import make_detector, select_face  # noqa: E402
from latentsync_demo.media import iter_frames, probe, run_ffmpeg  # noqa: E402
from latentsync_demo.media.ffmpeg import fs_path  # noqa: E402
from latentsync_demo.provenance.detect import make_marker, scan  # noqa: E402
from latentsync_demo.provenance.manifest import read_metadata  # noqa: E402
from latentsync_demo.provenance import watermark  # noqa: E402
from latentsync_demo.provenance.watermark import KEY_ENV, THRESHOLD  # noqa: E402
from latentsync_demo.testing import watermark_corpus as corpus  # noqa: E402

CLIPS = ("demo1", "demo2")
SIZES = ("540x960", "720x1280", "1080x1920")  # smallest first: a run cut short has reported these
EXCERPT = "1 s excerpt, re-encoded"
UNMARKED_SECONDS = 10  # of each source clip, for the false-positive trials (demo2's other 10 s: time)


def job_key(clip: str, size: str) -> int:
    """Each job's own (made-up) host key, fixed per clip and size: the trials then ask independent questions."""
    return 0x5EC0000 + 7919 * (CLIPS.index(clip) * 3 + ("1080x1920", "720x1280", "540x960").index(size))


def prepare(media: Path, work: Path, clip: str, size: str, steps: int, service) -> tuple[Path, Path, int]:
    """(unmarked source at ``size``, the job's marked output, its job number); both cached in ``work``."""
    width, height = map(int, size.split("x"))
    src = work / f"{clip}_{size}.mp4"
    if not src.exists():
        run_ffmpeg(["-y", "-i", fs_path(media / f"{clip}_video.mp4"), "-vf", f"scale={width}:{height}",
                    *corpus.H264, "-crf", "18", fs_path(src)])
    out = work / f"{clip}_{size}_out_{mark_version()}.mp4"
    if not out.exists():
        os.environ[KEY_ENV] = str(job_key(clip, size))
        t0 = time.perf_counter()
        try:
            for event in service().lipsync(src, media / f"{clip}_audio.wav", work / "job.mp4", consent=True,
                                           num_inference_steps=steps):
                pass
        finally:
            del os.environ[KEY_ENV]
        (work / "job.mp4").rename(out)
        print(f"  job {clip} {size}: {event.frames} frames in {time.perf_counter() - t0:.0f} s", flush=True)
    return src, out, int(read_metadata(out)["watermark"], 16)


def mark_version() -> str:
    """The marking parameters, in the cached outputs' names: a changed mark makes new outputs."""
    return (f"a{watermark.AMPLITUDE}t{watermark.TILE}n{watermark.NOMINAL_SHORT}m{watermark.MIN_TILE}"
            f"r{watermark.RINGS[0]}-{watermark.RINGS[1]}s{watermark.SYNC_SHARE}")


def windows(sums: corpus.SecondSums, lengths=(1, 2)) -> list[tuple[int, int]]:
    return [(start, length) for length in lengths for start in sums.windows(length)]


def face_psnr(src: Path, job: int, key: int, detector) -> tuple[list[float], list[float]]:
    """(PSNR over the face box, face box width) for one source frame per second, marked by the job's marker."""
    marker = make_marker(job, key, 256)
    psnrs, widths = [], []
    for i, frame in enumerate(iter_frames(src)):
        if i % 25:
            continue
        face = select_face(detector.detect(frame))
        if face is None:
            continue
        x0, y0, x1, y1 = (int(round(v)) for v in face.box)
        x0, y0 = max(x0, 0), max(y0, 0)
        change = marker.mark(frame, None)[y0:y1, x0:x1].astype(np.float64) - frame[y0:y1, x0:x1]
        psnrs.append(10 * np.log10(255.0 ** 2 / max(np.mean(change ** 2), 1e-12)))
        widths.append(x1 - x0)
    return psnrs, widths


def marking_cost() -> tuple[float, float]:
    """(first frame ms: builds the tiled change; then median ms per frame), 1080x1920, one core."""
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    frame = np.random.default_rng(0).integers(0, 256, (1920, 1080, 3), dtype=np.uint8)
    marker = make_marker(0x1234, 77, 256)
    t0 = time.perf_counter()
    marker.mark(frame, None)
    first = time.perf_counter() - t0
    times = []
    for _ in range(200):
        t0 = time.perf_counter()
        marker.mark(frame, np.zeros((2, 3)))
        times.append(time.perf_counter() - t0)
    cv2.setNumThreads(-1)
    torch.set_num_threads(os.cpu_count() or 1)
    return 1000 * first, 1000 * float(np.median(times))


class Tally:
    def __init__(self):
        self.marked = defaultdict(list)  # (transform, size) -> [(found right job, score, label)]
        self.unmarked = defaultdict(list)  # source kind -> [(found, score, label)]

    def add_marked(self, transform: str, size: str, detection, job: int, label: str) -> None:
        self.marked[transform, size].append((detection.found and detection.job == job, detection.score, label,
                                             detection.job))

    def add_unmarked(self, kind: str, detection, label: str) -> None:
        self.unmarked[kind].append((detection.found, detection.score, label))


def run_real(args, tally: Tally, after_size: Callable[[list[str], dict], None] = lambda sizes, real: None) -> dict:
    service_box = []

    def service():
        if not service_box:
            from latentsync_demo.service import LipSyncService
            from latentsync_demo.testing.tiny_checkpoints import write_tiny_checkpoints

            tiny = args.work / "tiny"
            if not (tiny / "unet_config.json").exists():
                write_tiny_checkpoints(tiny)
            service_box.append(LipSyncService(checkpoints=tiny, device="cpu", max_seconds=None, max_pixels=None))
        return service_box[0]

    detector = make_detector("mediapipe")
    psnr = defaultdict(list)
    faces = defaultdict(list)
    transforms = [t for t in corpus.TRANSFORMS if not args.only or any(o in t.name for o in args.only)]
    real = {"psnr": psnr, "faces": faces, "transforms": [t.name for t in transforms] + [EXCERPT],
            "crop keeps the face": []}
    for n_size, size in enumerate(args.sizes):
        for clip in CLIPS:
            src, out, job = prepare(args.media, args.work, clip, size, args.steps, service)
            if args.prepare_only:
                continue
            key = job_key(clip, size)
            p, w = face_psnr(src, job, key, detector)
            psnr[size] += p
            faces[size] += w
            t0 = time.perf_counter()
            for n, transform in enumerate(transforms):
                transformed = corpus.apply(transform, out, args.work / "t_marked")
                if "crop" in transform.name:  # the crop must keep the face: check its first frame
                    first = next(iter_frames(transformed))
                    real["crop keeps the face"].append(select_face(detector.detect(first)) is not None)
                marked = corpus.SecondSums(transformed)
                unmarked = corpus.SecondSums(
                    corpus.apply(transform, src, args.work / "t_unmarked", UNMARKED_SECONDS))
                for start, length in windows(marked):
                    label = f"{clip} {size} {start}+{length}s"
                    tally.add_marked(transform.name, size, marked.read(start, length, key), job, label)
                    if n == 0 and length == 1:  # a wrong key is an unmarked question too
                        tally.add_unmarked("marked, read with a wrong key",
                                           marked.read(start, length, key ^ 0x55AA55), label)
                for start, length in windows(unmarked, lengths=(1,)):  # disjoint windows: independent trials
                    tally.add_unmarked(f"source under {transform.name}", unmarked.read(start, length, key),
                                       f"{clip} {size} {start}+{length}s")
            for start in range(int(probe(out).duration)):
                cut = corpus.excerpt(out, args.work / "cut.mp4", start)
                tally.add_marked(EXCERPT, size, scan(cut, key), job, f"{clip} {size} {start}+1s")
            print(f"  {clip} {size}: read in {time.perf_counter() - t0:.0f} s", flush=True)
        if not args.prepare_only:
            after_size(args.sizes[:n_size + 1], real)
    detector.close()
    return real


def run_synthetic(args, tally: Tally) -> None:
    from latentsync_demo.testing.media import make_talking_head_clip

    sizes = ((640, 360), (1280, 720), (720, 1280), (540, 960))
    for i in range(args.synthetic):
        src = make_talking_head_clip(args.work / "syn.mp4", seconds=1.0 + i % 2, fps=25, size=sizes[i % len(sizes)],
                                     with_audio=False, seed=500 + i)
        transform = corpus.TRANSFORMS[i % len(corpus.TRANSFORMS)]
        detection = scan(corpus.apply(transform, src, args.work / "syn_t"), 0x5EC0000 + 104729 * i)
        tally.add_unmarked("synthetic clips (each one transformation)", detection, f"synthetic {i}")


def report(tally: Tally, real: dict, sizes, cost) -> None:
    print(f"\nDetection (right job number read) per transformation and clip size; windows of 1 s and 2 s "
          f"(excerpts: 1 s); threshold {THRESHOLD}; 'min' is the lowest score:")
    print("| transformation | " + " | ".join(sizes) + " | all |")
    print("|---|" + "---|" * (len(sizes) + 1))
    for name in real["transforms"]:
        cells, total, hits = [], 0, 0
        for size in sizes:
            rows = tally.marked[name, size]
            ok = sum(r[0] for r in rows)
            total, hits = total + len(rows), hits + ok
            low = min((r[1] for r in rows), default=float("nan"))
            cells.append(f"{ok}/{len(rows)} (min {low:.1f})")
        cells.append(f"{hits}/{total} ({100 * hits / max(total, 1):.1f} %)")
        print(f"| {name} | " + " | ".join(cells) + " |")
    misses = [(k, r) for k, rows in tally.marked.items() for r in rows if not r[0]]
    for (name, size), (_, score, label, read) in misses[:20]:
        print(f"  missed: {name}, {label}: score {score:.2f}, read job {read}")
    print("\nFalse positives (unmarked trials reported as marked):")
    total = found = 0
    for kind, rows in tally.unmarked.items():
        hits = sum(r[0] for r in rows)
        total, found = total + len(rows), found + hits
        print(f"  {kind}: {hits}/{len(rows)} (max score {max(r[1] for r in rows):.2f})")
    print(f"  all: {found}/{total} ({100 * found / max(total, 1):.2f} %)")
    print("\nPSNR over the face box (one frame per second), face box width:")
    for size in sizes:
        p, w = real["psnr"][size], real["faces"][size]
        if p:
            print(f"  {size}: min {min(p):.1f} dB, mean {np.mean(p):.1f} dB over {len(p)} faces "
                  f"{min(w)}-{max(w)} px wide")
    kept = real["crop keeps the face"]
    print(f"\nA face is found in the first frame of the cropped outputs: {sum(kept)}/{len(kept)}")
    print(f"\nMarking cost, 1080x1920 frame, one core: {cost[1]:.2f} ms per frame (median of 200; the first frame "
          f"of a size builds the tiled change: {cost[0]:.0f} ms); no landmark pass")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "media")
    parser.add_argument("--work", type=Path, default=Path("/tmp/wm_bench"), help="job outputs are cached here")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=SIZES)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--synthetic", type=int, default=40, help="unmarked synthetic clips")
    parser.add_argument("--only", nargs="*", help="transformations whose name contains one of these")
    parser.add_argument("--prepare-only", action="store_true", help="only make (and cache) the job outputs")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cost = marking_cost()
    tally = Tally()
    if not args.prepare_only:
        run_synthetic(args, tally)

    def after_size(sizes: list[str], real: dict) -> None:  # the tables so far: a run cut short still reports
        print(f"\n==== sizes done: {', '.join(sizes)}; wall {time.perf_counter() - t0:.0f} s")
        report(tally, real, sizes, cost)

    run_real(args, tally, after_size)


if __name__ == "__main__":
    main()
