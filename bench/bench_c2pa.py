"""What signing a C2PA manifest into an output costs, on top of the container tags and the sidecar.

    python bench/bench_c2pa.py VIDEO [VIDEO ...] [--audio speech.wav] [--repeats 3]

For each video (used as both the input and the output to stamp, on copies), times ``provenance.manifest.stamp``
without signing (ffmpeg re-tag + SHA-256 hashes + sidecar) and with a run-time test certificate (the same plus
c2pa's BMFF hashing, signing and writing the signed copy), and ``c2pa_embed.read`` (what verify adds).
Prints the median seconds of each and the signed file's growth in bytes.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from latentsync_demo.settings import GenerationSettings  # noqa: E402
from latentsync_demo.provenance import c2pa_embed  # noqa: E402
from latentsync_demo.provenance.manifest import container_tags, stamp  # noqa: E402
from latentsync_demo.provenance.signing import C2paSigning  # noqa: E402


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="+", type=Path)
    parser.add_argument("--audio", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    start = time.perf_counter()
    signing = C2paSigning.test_certificate()
    print(f"test certificate chain made in {time.perf_counter() - start:.3f} s (once per service)")
    tags = container_tags("bench", "latentsync-1.5", GenerationSettings(), "0000")
    with tempfile.TemporaryDirectory() as tmp:
        for video in args.videos:
            out = Path(tmp) / "out.mp4"
            inputs = {"video": video, "audio": args.audio}

            def run(with_signing):
                shutil.copy(video, out)
                return stamp(out, inputs, tags, signing if with_signing else None)

            plain, _ = timed(lambda: run(False), args.repeats)
            plain_size = out.stat().st_size
            signed, _ = timed(lambda: run(True), args.repeats)
            read, found = timed(lambda: c2pa_embed.read(out), args.repeats)
            size = video.stat().st_size / 1e6
            print(f"{video.name} ({size:.1f} MB): stamp {plain:.3f} s unsigned, {signed:.3f} s signed "
                  f"(+{signed - plain:.3f} s, +{out.stat().st_size - plain_size} bytes); read+validate "
                  f"{read:.3f} s ({found.state})")


if __name__ == "__main__":
    main()
