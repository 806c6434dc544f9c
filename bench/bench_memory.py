"""Host memory against clip length: peak RSS of a 1080p job on a 10 s and a 60 s clip, per front end.

    nice .venv/bin/python bench/bench_memory.py [--video ../shared/media/demo2_video.mp4]
        [--audio ../shared/media/demo2_audio.wav] [--seconds 10,60] [--frontends cli,app,score,scorer]
        [--steps 1] [--work /tmp/latentsync_bench_memory]

Makes the clips by looping the real clip (``ffmpeg -stream_loop -1 ... -c copy``: the shared clips' own HEVC
1080x1920 stream, not re-encoded) and its speech to each length, in ``--work`` (never in the repo), writes tiny
random checkpoints there (plus a random full-size SyncNet v2 as ``auxiliary/syncnet_v2.model`` for scoring) and
runs each job in a fresh child process:

  * ``cli``:   ``python -m latentsync_demo`` (the CLI's ``main``) with ``--consent``;
  * ``app``:   the web app's generate handler (``DemoHandlers.lipsync``, what the Gradio endpoint runs),
               streamed to its end;
  * ``score``: the CLI with ``--score`` (the job, then the lip-sync score of the result and of the original);
               also prints the Python process's peak during the job and during the scoring;
  * ``scorer``: the lip-sync score alone (``SyncScorer.score`` of the clip against the speech, as ``--score``
               scores a result on CPU: landmark boxes on every 5th frame), no job before it.

Measured, for each run: ``tree``, the peak of the summed RSS of the child and all its descendants (the ffmpeg
decoders and encoder), sampled every 0.1 s from /proc (a peak shorter than that can be missed; pages shared
between processes count once per process); and ``python``, the child's own exact peak RSS (``ru_maxrss`` from
``wait4``). Then, per front end, the ratio longest/shortest clip (flat memory: <= 1.15). Tiny weights: the
model's own memory is small, so the figures are what the pipeline around it holds (frames, crops, buffers).
Linux only (/proc).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "media"
FRONTENDS = ("cli", "app", "score", "scorer")
FLAT_RATIO = 1.15


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def make_clips(video: Path, audio: Path, seconds: float, work: Path) -> tuple[Path, Path]:
    """``seconds`` of ``video`` (stream copy, looped) and of ``audio`` (looped, 16-bit WAV) in ``work``."""
    clip, speech = work / f"clip_{seconds:g}s.mp4", work / f"speech_{seconds:g}s.wav"
    ffmpeg = ffmpeg_exe()
    if not clip.is_file():
        subprocess.run([ffmpeg, "-v", "error", "-y", "-stream_loop", "-1", "-i", str(video), "-t", f"{seconds:g}",
                        "-c", "copy", str(clip)], check=True)
    if not speech.is_file():
        subprocess.run([ffmpeg, "-v", "error", "-y", "-stream_loop", "-1", "-i", str(audio), "-t", f"{seconds:g}",
                        "-c:a", "pcm_s16le", str(speech)], check=True)
    return clip, speech


def make_checkpoints(work: Path) -> Path:
    """Tiny random checkpoints (once) plus a random full-size SyncNet v2 for scoring."""
    import torch

    from latentsync_demo.models.syncnet_v2 import SyncNetV2
    from latentsync_demo.testing.tiny_checkpoints import write_tiny_checkpoints

    folder = work / "tiny"
    syncnet = folder / "auxiliary" / "syncnet_v2.model"
    if not syncnet.is_file():
        write_tiny_checkpoints(folder)
        syncnet.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        torch.save(SyncNetV2().state_dict(), syncnet)
    return folder


# --- the child: one job, in this process ------------------------------------------------------------------------
def own_rss_kb() -> int:
    return rss_kb(os.getpid())


def run_job(frontend: str, checkpoints: str, video: str, audio: str, out: str, steps: int) -> None:
    if frontend in ("cli", "score"):
        from latentsync_demo.cli import main as cli

        argv = ["--checkpoints", checkpoints, "--video", video, "--audio", audio, "--out", out,
                "--steps", str(steps), "--device", "cpu", "--consent"] + (["--score"] if frontend == "score" else [])
        parts = split_peaks() if frontend == "score" else None
        if cli(argv) != 0:
            raise SystemExit("the CLI job failed")
        if parts is not None:
            print(f"score: python peak during the job {parts['job']:,} KB, during scoring {parts['score']:,} KB "
                  f"(RSS when scoring began {parts['start']:,} KB)", flush=True)
        return
    if frontend == "scorer":
        from latentsync_demo.eval.scorer import SyncScorer

        print(SyncScorer.from_checkpoints(checkpoints, "cpu", detect_every=5).score(video, audio), flush=True)
        return
    from latentsync_demo.app_handlers import PRESET_BY_LABEL, LABEL_OF_SAMPLER, DemoHandlers
    from latentsync_demo.service import LipSyncService
    from latentsync_demo.store import DEFAULT_PRESET, PRESETS

    service = LipSyncService(checkpoints, device="cpu")
    assert PRESET_BY_LABEL[PRESETS[DEFAULT_PRESET].label] == DEFAULT_PRESET
    updates = list(DemoHandlers(service).lipsync(video, audio, PRESETS[DEFAULT_PRESET].label, LABEL_OF_SAMPLER["ddim"],
                                                 steps, 1.5, 1247, 0, "pingpong", consent=True))
    status, result = updates[-1][0], updates[-1][3]
    if not isinstance(result, str) or not Path(result).is_file():
        raise SystemExit(f"the app handler made no video: {status}")
    print(f"app handler: {len(updates)} updates, last status: {status.splitlines()[0]}")


def split_peaks() -> dict:
    """Sample this process's RSS from now on, and split its peak at ``LipSyncService.score_job``: what the job
    held and what scoring held (same process, as the CLI runs them)."""
    from latentsync_demo.service import LipSyncService

    parts = {"job": 0, "score": 0, "start": 0}
    current = ["job"]

    def sample():
        while True:
            parts[current[0]] = max(parts[current[0]], own_rss_kb())
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    score_job = LipSyncService.score_job

    def scored(service, *args, **kwargs):
        parts["start"] = own_rss_kb()
        current[0] = "score"
        return score_job(service, *args, **kwargs)

    LipSyncService.score_job = scored
    return parts


# --- the parent: start the child, follow its process tree ----------------------------------------------------
def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc/*/stat's parent ids)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(parents.get(p, []))
    return tree


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(argv: list[str]) -> tuple[int, int, float]:
    """Run ``argv``; (tree peak KB, child's own peak KB, wall seconds)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], sum(rss_kb(p) for p in descendants(proc.pid)))
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[-12:])} exited with {proc.returncode}")
    return peak[0], usage.ru_maxrss, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--video", type=Path, default=SHARED / "demo2_video.mp4")
    parser.add_argument("--audio", type=Path, default=SHARED / "demo2_audio.wav")
    parser.add_argument("--seconds", default="10,60", help="clip lengths, comma-separated")
    parser.add_argument("--frontends", default="cli,app,score", help="of " + ",".join(FRONTENDS))
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/latentsync_bench_memory"),
                        help="clips, checkpoints and outputs (kept for reruns)")
    parser.add_argument("--child", nargs=5, metavar=("FRONTEND", "CHECKPOINTS", "VIDEO", "AUDIO", "OUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.child:
        run_job(*args.child, steps=args.steps)
        return
    lengths = [float(s) for s in args.seconds.split(",")]
    frontends = args.frontends.split(",")
    unknown = set(frontends) - set(FRONTENDS)
    if unknown:
        parser.error(f"unknown front end(s) {', '.join(sorted(unknown))}: choose from {', '.join(FRONTENDS)}")
    args.work.mkdir(parents=True, exist_ok=True)
    checkpoints = make_checkpoints(args.work)
    clips = {s: make_clips(args.video, args.audio, s, args.work) for s in lengths}
    print(f"{args.video.name} looped to {', '.join(f'{s:g} s' for s in lengths)}; tiny checkpoints, "
          f"{args.steps} step(s), CPU; RSS in KB (tree: the job's process and its ffmpeg children, sampled)")
    for frontend in frontends:
        peaks = {}
        for s in lengths:
            out = args.work / f"out_{frontend}_{s:g}s.mp4"
            argv = [sys.executable, __file__, "--steps", str(args.steps), "--child", frontend, str(checkpoints),
                    str(clips[s][0]), str(clips[s][1]), str(out)]
            tree, own, wall = measure(argv)
            peaks[s] = tree, own
            print(f"{frontend:>5} {s:4g} s: tree peak {tree:>10,} KB   python peak {own:>10,} KB   ({wall:.0f} s wall)",
                  flush=True)
        if len(lengths) > 1:
            short, long = min(lengths), max(lengths)
            ratios = [peaks[long][i] / peaks[short][i] for i in (0, 1)]
            verdict = "flat" if max(ratios) <= FLAT_RATIO else f"NOT flat (> {FLAT_RATIO})"
            print(f"{frontend:>5} ratio {long:g} s / {short:g} s: tree {ratios[0]:.3f}, python {ratios[1]:.3f} "
                  f"-> {verdict}", flush=True)


if __name__ == "__main__":
    main()
