"""``latentsync redo --from JOB --start 3.2 --end 4.0 --seed 7``: regenerate one segment of a finished job.

JOB is the job's output MP4 (its record ``<JOB>.job/`` beside it, kept by every job unless ``run --no-record``).
Frames outside the span's whole 1 s GOPs are copied bit for bit from JOB; see ``pipeline.redo``. The consent
given for the job covers its redo (same person, same speech), so it is not asked again.
"""

from __future__ import annotations

import argparse
import sys

from .errors import LatentSyncError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latentsync redo", description="Regenerate seconds START-END of a "
                                     "finished lip-sync job with another seed, step count or sampler.")
    parser.add_argument("--from", dest="job", required=True, help="the job's output MP4 (its .job record beside it)")
    parser.add_argument("--start", type=float, required=True, help="first second to redo")
    parser.add_argument("--end", type=float, required=True, help="second where the redo ends")
    parser.add_argument("--seed", type=int, default=None, help="new seed (default: the job's)")
    parser.add_argument("--steps", type=int, default=None, help="new step count (default: the job's)")
    parser.add_argument("--sampler", default=None, help="new sampler (default: the job's)")
    parser.add_argument("--out", default=None, help="result (default: <job>_redo.mp4 beside the job)")
    parser.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: cuda when available)")
    parser.add_argument("--checkpoints", default=None, help="checkpoint folder (default: ./checkpoints)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    from .logs import quiet_native_logs
    from .service import LipSyncService

    quiet_native_logs()
    try:
        service = LipSyncService(checkpoints=args.checkpoints, device=args.device, max_seconds=None, max_pixels=None)
        events = service.redo(args.job, args.start, args.end, seed=args.seed, steps=args.steps,
                              sampler=args.sampler, out=args.out)  # every check runs here, before any work
        for event in events:
            print(f"{event.stage}: {event.message}", file=sys.stderr)
    except LatentSyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {event.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
