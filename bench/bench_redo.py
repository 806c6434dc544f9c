"""What a job record costs and what a redo keeps: record size per second, frames bit-identical after a redo.

    python bench/bench_redo.py [--video /work/shared/media/demo1_video.mp4] [--audio ...demo1_audio.wav]
                               [--seconds 4] [--start 1.2] [--end 2.0] [--resolution 256] [--device cpu]

Runs one job (tiny random models written at ``--resolution``, 1 step: the record's size depends on the face
crop size R and the generated faces' dtype, not on the weights) on the first ``--seconds`` of the clip, then
redoes ``--start``-``--end`` with another seed, and prints:
  * the record's size, per file and per second of output (the video copy scales with the source's bitrate, the
    faces with R^2: R*R*3 bytes per input face, R*R*3*itemsize per generated face);
  * per output frame class: frames outside the re-encoded GOPs (bit-identical count), frames in those GOPs
    but outside the span (PSNR against the first result: the re-encode only), frames in the span (changed);
  * the job's and the redo's wall time;
  * what the 1 s GOPs of a recorded job cost: the clip's frames encoded (crf 18) with keyint 25 and with x264's
    own keyframes, in MB per second.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from latentsync_demo.media import VideoWriter, iter_frames, read_frames, run_ffmpeg
from latentsync_demo.pipeline.record import load_record
from latentsync_demo.service import LipSyncService
from latentsync_demo.testing.tiny_checkpoints import write_tiny_checkpoints


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def gop_cost(video: Path, tmp: Path) -> None:
    """The clip's 25 fps frames encoded as a job's output is, with 1 s GOPs and with x264's own keyframes."""
    for keyint in (None, 25):
        path, frames = tmp / f"gop_{keyint}.mp4", 0
        writer = None
        for frame in iter_frames(video):
            if writer is None:
                writer = VideoWriter(path, frame.shape[1], frame.shape[0], 25, keyint=keyint)
            writer.write(frame)
            frames += 1
        writer.close()
        print(f"GOPs {'every 25 frames' if keyint else 'x264 default'}: {frames} frames encoded at "
              f"{path.stat().st_size / 1e6 * 25 / frames:.2f} MB per second")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--video", default="/work/shared/media/demo1_video.mp4")
    parser.add_argument("--audio", default="/work/shared/media/demo1_audio.wav")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--start", type=float, default=1.2)
    parser.add_argument("--end", type=float, default=2.0)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_redo_") as tmp:
        tmp = Path(tmp)
        video, audio = tmp / "clip.mp4", tmp / "speech.wav"
        run_ffmpeg(["-y", "-i", args.video, "-t", f"{args.seconds}", "-c", "copy", str(video)])
        run_ffmpeg(["-y", "-i", args.audio, "-t", f"{args.seconds}", str(audio)])
        service = LipSyncService(write_tiny_checkpoints(tmp / "ckpt", args.resolution), device=args.device)
        first = tmp / "first.mp4"
        began = time.perf_counter()
        list(service.lipsync(video, audio, first, num_inference_steps=1, consent=True))
        job_s = time.perf_counter() - began
        record = load_record(first)
        seconds = record.num_frames / 25
        print(f"job: {record.num_frames} frames ({seconds:.2f} s) of {args.video} in {job_s:.1f} s; face crop "
              f"{record.resolution}px, generated faces {record.meta['faces_out_dtype']}")
        for path in sorted(record.folder.iterdir()):
            size = path.stat().st_size
            print(f"  record {path.name:<14} {size / 1e6:8.2f} MB  {size / 1e6 / seconds:7.2f} MB per second")
        total = record.size_bytes()
        print(f"record total {total / 1e6:.2f} MB = {total / 1e6 / seconds:.2f} MB per second of output "
              f"(output MP4 {first.stat().st_size / 1e6 / seconds:.2f} MB per second)")
        out = tmp / "redo.mp4"
        began = time.perf_counter()
        list(service.redo(first, args.start, args.end, seed=7, out=out))
        redo_s = time.perf_counter() - began
        before, after = read_frames(first, fps=None), read_frames(out, fps=None)
        start, end = round(args.start * 25), round(args.end * 25)
        gop = int(record.meta["gop"])
        region = range(start // gop * gop, min(-(-end // gop) * gop, len(before)))
        outside = [i for i in range(len(before)) if i not in region]
        same = sum(np.array_equal(before[i], after[i]) for i in outside)
        margin = [i for i in region if not start <= i < end]
        print(f"redo {args.start}-{args.end} s (frames {start}-{end - 1}) in {redo_s:.1f} s: re-encoded GOP frames "
              f"{region.start}-{region.stop - 1}")
        print(f"  outside the re-encoded GOPs: {same} of {len(outside)} frames bit-identical")
        if margin:
            print(f"  re-encoded but not redone ({len(margin)} frames): PSNR vs the first result min "
                  f"{min(psnr(before[i], after[i]) for i in margin):.1f} dB, "
                  f"{sum(np.array_equal(before[i], after[i]) for i in margin)} bit-identical")
        print(f"  redone span ({end - start} frames): PSNR vs the first result mean "
              f"{np.mean([psnr(before[i], after[i]) for i in range(start, end)]):.1f} dB")
        gop_cost(video, tmp)


if __name__ == "__main__":
    main()
