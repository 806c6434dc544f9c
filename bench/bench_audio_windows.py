"""Measure the 30-s seam of the Whisper features in both audio windows modes, and what seamless costs.

    python bench/bench_audio_windows.py [--checkpoints DIR] [--device cpu] [--repeats 5]

Encoder: <checkpoints>/whisper/tiny.pt when it exists (the real weights), else the conformance set's
``whisper_tiny_random.pt``: the real Whisper-tiny architecture (4 blocks, 384-d, 6 heads, the real sinusoid
position table) with random weights, so the seam it shows is the windowing's, not what trained weights do to it.

Clips (16 kHz speech, decoded with ffmpeg through ``media.load_audio``):
  * reference 38.4 s: ``long_audio_demo2_demo3.wav`` of the conformance set (one boundary, at 30 s);
  * speech 75 s and 120 s: that clip, then the sound of the real talking-head clips in --media, repeated until
    the length is reached (boundaries at 30 and 60 s, and 90 s; the joins between clips are at other times).

For each clip and mode it prints the row-to-row feature change ||f[r] - f[r-1]|| (all layers) at each 30-s
boundary, divided by the median change over all other rows; the worst such ratio within 1 s of each seamless
hand-over (25, 45, 65, ... s); and the worst row anywhere (with its time). Then the encoder time of each mode
(best of --repeats, cache off, the modes alternating; wall and process CPU time) and their ratios. Figures are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from latentsync_demo.audio import WhisperAudioEncoder
from latentsync_demo.audio.windows import plan_windows
from latentsync_demo.media import load_audio
from latentsync_demo.store import resolve

ROOT = Path(__file__).resolve().parents[1]
ROWS_PER_SECOND = 50


def speech_clip(reference: Path, media: Path, seconds: float) -> np.ndarray:
    """The reference clip, then the talking-head clips' sound, cycled and cut to ``seconds``."""
    parts = [load_audio(reference)] + [load_audio(path) for path in sorted(media.glob("*.mp4"))]
    audio, k = [], 0
    while sum(map(len, audio)) < seconds * 16000:
        audio.append(parts[k % len(parts)])
        k += 1
    return np.concatenate(audio)[: int(seconds * 16000)]


def seam_figures(features: torch.Tensor) -> dict:
    """Row-to-row change at each 30-s boundary and around each seamless hand-over, over the median elsewhere."""
    change = (features[1:] - features[:-1]).flatten(1).norm(dim=1).double().numpy()  # change[r - 1]: r-1 -> r
    rows = len(features)
    boundaries = list(range(1500, rows, 1500))
    others = np.delete(change, [b - 1 for b in boundaries])
    median = float(np.median(others))
    hand_overs = list(range(1250, rows - 50, 1000))
    worst = int(change.argmax()) + 1
    return {
        "median": median,
        "boundaries": {b / ROWS_PER_SECOND: change[b - 1] / median for b in boundaries},
        "hand_overs": {h / ROWS_PER_SECOND: change[h - 51: h + 49].max() / median for h in hand_overs},
        "worst": (worst / ROWS_PER_SECOND, change[worst - 1] / median),
    }


def encode_seconds(encoder: WhisperAudioEncoder, audio: np.ndarray, repeats: int) -> dict[str, tuple[float, float]]:
    """Best (wall, process CPU) seconds per mode. The modes alternate, so a busy moment of a shared machine hits
    both alike; CPU time is the steadier figure where other processes compete for the cores."""
    times = {"official": [], "seamless": []}
    for _ in range(repeats):
        for mode, runs in times.items():
            if encoder.device.type == "cuda":
                torch.cuda.synchronize()
            wall, cpu = time.perf_counter(), time.process_time()
            encoder.encode(audio, windows=mode, use_cache=False)
            if encoder.device.type == "cuda":
                torch.cuda.synchronize()
            runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    return {mode: (min(r[0] for r in runs), min(r[1] for r in runs)) for mode, runs in times.items()}


def report(name: str, encoder: WhisperAudioEncoder, audio: np.ndarray, repeats: int) -> None:
    frames = len(audio) // 160
    windows = {mode: len(plan_windows(frames, mode=mode)) for mode in ("official", "seamless")}
    print(f"\n{name}: {len(audio) / 16000:.1f} s, {frames // 2} rows, windows official {windows['official']}, "
          f"seamless {windows['seamless']}")
    figures = {}
    for mode in ("official", "seamless"):
        figures[mode] = seam_figures(encoder.encode(audio, windows=mode, use_cache=False))
        f = figures[mode]
        bounds = ", ".join(f"{t:.0f} s: {r:.2f}x" for t, r in f["boundaries"].items())
        hands = ", ".join(f"{t:.0f} s: {r:.2f}x" for t, r in f["hand_overs"].items())
        print(f"  {mode:9s} change at 30-s boundaries / median elsewhere: {bounds}   "
              f"(median {f['median']:.2f}; worst within 1 s of each hand-over: {hands}; "
              f"worst row anywhere: {f['worst'][1]:.2f}x at {f['worst'][0]:.2f} s)")
    for t, official in figures["official"]["boundaries"].items():
        print(f"  boundary {t:.0f} s: seamless / official ratio = "
              f"{figures['seamless']['boundaries'][t] / official:.2f}")
    encoder.encode(audio[: 16000 * 35], windows="seamless", use_cache=False)  # warm-up (allocator, kernels)
    (wall, cpu), (wall_s, cpu_s) = encode_seconds(encoder, audio, repeats).values()
    print(f"  encoder time (best of {repeats}, alternating): official {wall:.2f} s wall / {cpu:.2f} s CPU, seamless "
          f"{wall_s:.2f} s / {cpu_s:.2f} s; ratio {wall_s / wall:.2f}x wall, {cpu_s / cpu:.2f}x CPU")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", default=None, help="checkpoint folder with whisper/tiny.pt (real weights)")
    parser.add_argument("--reference", type=Path, default=ROOT.parent / "shared" / "reference")
    parser.add_argument("--media", type=Path, default=ROOT.parent / "shared" / "media")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    real = resolve("latentsync-1.5", args.checkpoints).whisper
    path = real if real.is_file() else args.reference / "whisper_tiny_random.pt"
    encoder = WhisperAudioEncoder.from_openai_checkpoint(path, device=args.device)
    print(f"encoder: {path} ({'real weights' if path == real else 'Whisper-tiny architecture, random weights'}), "
          f"{args.device}, {torch.get_num_threads()} threads")
    reference = args.reference / "long_audio_demo2_demo3.wav"
    report("reference (long_audio_demo2_demo3.wav)", encoder, load_audio(reference), args.repeats)
    for seconds in (75, 120):
        report(f"speech {seconds} s (reference + the clips in {args.media.name}/, cycled)", encoder,
               speech_clip(reference, args.media, seconds), args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
