"""Where one CLI job spends its CPU outside the model, and which files its ffmpeg processes touch.

    .venv/bin/python bench/bench_job.py [--video ../shared/media/demo1_video.mp4] [--audio ../shared/media/demo1_audio.wav]
                                        [--seconds 3] [--steps 2] [--workers N]

Runs the real CLI job (``python -m latentsync_demo run``'s code, in this process) with tiny random checkpoints on
the first ``--seconds`` of the clip at its own size (1080x1920 for the shared clips) and again downscaled to
270x480 (same faces, same model work), and prints for each:
  * every ffmpeg process the job started: what it read (-i) and what it wrote;
  * CPU ms per output frame of each stage (per-thread CPU time: decode, faces, generation, restore, mark +
    write, and all ffmpeg processes together);
  * end-to-end frames per second;
and the CPU per frame the larger size costs beyond the smaller one (the work that grows with the frame, which is
all outside the model). The tiny model makes generation cheap, so the stage rows are what a real job pays on top
of its model. Figures depend on the machine; README quotes the ones from a 2-core CPU run.
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = ROOT.parent / "shared" / "media"


class ThreadCpu:
    """CPU seconds of every thread, by name, recorded as each thread ends. Wraps CPython's
    ``Thread._bootstrap_inner``, which every thread runs (also subclasses that override ``run``)."""

    def __init__(self):
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self._lock = threading.Lock()
        self._original = threading.Thread._bootstrap_inner

    def __enter__(self):
        record, original = self._record, self._original

        def bootstrap(thread):
            try:
                original(thread)
            finally:
                record(thread.name, time.thread_time())

        threading.Thread._bootstrap_inner = bootstrap
        return self

    def _record(self, name: str, seconds: float) -> None:
        stage = name.split("_")[0] if name.startswith("restore") else name
        with self._lock:
            self.seconds[stage] += seconds

    def __exit__(self, *exc):
        threading.Thread._bootstrap_inner = self._original


class FfmpegLog:
    """Every ffmpeg process started, with its inputs and output (subprocess.Popen wrapped)."""

    def __init__(self):
        self.calls: list[tuple[list[str], str]] = []
        self._original = subprocess.Popen.__init__

    def __enter__(self):
        calls, original = self.calls, self._original

        def init(popen, args, *a, **k):
            if isinstance(args, (list, tuple)) and "ffmpeg" in Path(str(args[0])).name:
                inputs = [str(args[i + 1]) for i, x in enumerate(args[:-1]) if x == "-i"]
                calls.append((inputs, str(args[-1])))
            return original(popen, args, *a, **k)

        subprocess.Popen.__init__ = init
        return self

    def __exit__(self, *exc):
        subprocess.Popen.__init__ = self._original


def cut_inputs(video: Path, audio: Path, seconds: float, folder: Path, height: int | None) -> tuple[Path, Path]:
    """The first ``seconds`` of the clip (H.264, optionally scaled to ``height``) and of the speech."""
    from latentsync_demo.media import run_ffmpeg

    out_video = folder / f"clip_{height or 'full'}.mp4"
    scale = ["-vf", f"scale=-2:{height}"] if height else []
    run_ffmpeg(["-y", "-i", str(video), "-t", str(seconds), "-an", *scale, "-c:v", "libx264", "-crf", "18",
                "-preset", "veryfast", str(out_video)])
    out_audio = folder / "speech.wav"
    run_ffmpeg(["-y", "-i", str(audio), "-t", str(seconds), "-ac", "1", str(out_audio)])
    return out_video, out_audio


def run_job(checkpoints: Path, video: Path, audio: Path, out: Path, steps: int) -> dict:
    from latentsync_demo.cli import main as cli_main

    args = ["--checkpoints", str(checkpoints), "--video", str(video), "--audio", str(audio), "--out", str(out),
            "--steps", str(steps), "--landmarks", "mediapipe", "--device", "cpu", "--consent"]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started, main_cpu = time.perf_counter(), time.thread_time()
    with ThreadCpu() as threads, FfmpegLog() as ffmpeg:
        rc = cli_main(args)
    wall, main_cpu = time.perf_counter() - started, time.thread_time() - main_cpu
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0:
        raise SystemExit(f"the job failed (exit {rc})")
    from latentsync_demo.media import count_frames

    return {"frames": count_frames(out), "wall": wall, "threads": dict(threads.seconds), "main": main_cpu,
            "ffmpeg_cpu": (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime),
            "ffmpeg": ffmpeg.calls}


STAGES = [("decode (pipe reader)", ("decode",)), ("faces: landmarks + align", ("face-analysis",)),
          ("generation (tiny model) + job thread", ("main",)), ("restore", ("restore",)),
          ("mark + write", ("paste-back",))]


def report(label: str, result: dict, names: dict[str, str]) -> float:
    frames = result["frames"]
    print(f"\n## {label}: {frames} frames, {result['wall']:.1f} s wall, {frames / result['wall']:.2f} frames/s end to end")
    print(f"ffmpeg processes: {len(result['ffmpeg'])}")
    for inputs, output in result["ffmpeg"]:
        shown = [names.get(i, Path(i).name) for i in inputs]
        written = "nothing (probe)" if output in inputs else names.get(output, Path(output).name)
        print(f"  reads {', '.join(shown) or '-'}  ->  writes {written}")
    seconds = dict(result["threads"], main=result["main"])
    total = 0.0
    print("CPU ms per frame:")
    for stage, keys in STAGES:
        ms = sum(seconds.get(k, 0.0) for k in keys) * 1000 / frames
        total += ms
        print(f"  {stage:<40} {ms:8.1f}")
    other = sum(v for k, v in seconds.items() if not any(k in keys for _, keys in STAGES)) * 1000 / frames
    ffmpeg_ms = result["ffmpeg_cpu"] * 1000 / frames
    print(f"  {'other threads':<40} {other:8.1f}")
    print(f"  {'ffmpeg processes (decode, encode, mux)':<40} {ffmpeg_ms:8.1f}")
    total += other + ffmpeg_ms
    print(f"  {'total':<40} {total:8.1f}")
    return total - ffmpeg_ms, ffmpeg_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=SHARED / "demo1_video.mp4")
    parser.add_argument("--audio", type=Path, default=SHARED / "demo1_audio.wav")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--small-height", type=int, default=480)
    args = parser.parse_args()
    if not args.video.is_file():
        raise SystemExit(f"{args.video} not found: pass --video/--audio (the shared clips live in ../shared/media)")
    import torch

    from latentsync_demo.logs import quiet_native_logs
    from latentsync_demo.testing.tiny_checkpoints import write_tiny_checkpoints

    quiet_native_logs()
    print(f"torch threads {torch.get_num_threads()}, cores {os.cpu_count()}")
    with tempfile.TemporaryDirectory(prefix="bench_job_") as tmp:
        tmp = Path(tmp)
        checkpoints = write_tiny_checkpoints(tmp / "ckpt")
        totals = {}
        for height in (None, args.small_height):
            video, audio = cut_inputs(args.video, args.audio, args.seconds, tmp, height)
            out = tmp / f"out_{height or 'full'}.mp4"
            names = {str(video): f"input video ({video.name})", str(audio): "input speech", str(out): "OUTPUT"}
            run_job(checkpoints, video, audio, tmp / "warmup.mp4", args.steps) if not totals else None
            result = run_job(checkpoints, video, audio, out, args.steps)
            from latentsync_demo.media import probe

            info = probe(video)
            totals[height] = report(f"{info.width}x{info.height}", result, names)
            reads = sum(str(video) in inputs for inputs, _ in result["ffmpeg"])
            writes = sum(output == str(out) for _, output in result["ffmpeg"])
            print(f"processes that read the input video: {reads}; that write the output: {writes}")
        (big, big_ffmpeg), (small, small_ffmpeg) = totals[None], totals[args.small_height]
        print(f"\nCPU per frame at full size beyond the same frame at {args.small_height} px high: "
              f"{big - small:.1f} ms in this process (decode reading, faces, restore, mark, job), "
              f"{big_ffmpeg - small_ffmpeg:.1f} ms in the ffmpeg processes (decoding and encoding more pixels)")


if __name__ == "__main__":
    main()
