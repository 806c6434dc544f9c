"""``python -m latentsync_demo.eval PAIRS``: score many clips, write a CSV, print mean / median.

PAIRS is
  * a folder: every video in it (recursively) is scored against its own soundtrack (finished results);
  * a CSV with a header: ``video`` (required), ``audio`` (optional: score against this instead of the video's own
    sound), ``source`` (optional: the original video, for PSNR / SSIM outside the mouth). Relative paths are
    relative to the CSV's folder.

Columns written: video, audio, source, confidence (LSE-C / Sync_conf), lse_d, offset, tracks, faces (which face
detector ran), psnr, ssim, error (why a row has no score: no face, silent audio ...).
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..errors import LatentSyncError

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
COLUMNS = ("video", "audio", "source", "confidence", "lse_d", "offset", "tracks", "faces", "psnr", "ssim", "error")
SUMMARY = (("confidence", "LSE-C (confidence) ↑"), ("lse_d", "LSE-D ↓"), ("offset", "AV offset (frames)"),
           ("psnr", "PSNR outside mouth (dB) ↑"), ("ssim", "SSIM outside mouth ↑"))


@dataclass(frozen=True)
class Pair:
    video: Path
    audio: Path | None = None
    source: Path | None = None


def read_pairs(spec: str | Path) -> list[Pair]:
    """The clips to score from a folder or a CSV (see the module docstring); LatentSyncError when unusable."""
    from ..errors import InputError

    spec = Path(spec)
    if spec.is_dir():
        videos = sorted(p for p in spec.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
        if not videos:
            raise InputError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) in {spec}")
        return [Pair(v) for v in videos]
    if spec.suffix.lower() != ".csv" or not spec.is_file():
        raise InputError(f"{spec} is neither a folder of videos nor a .csv file of (video, audio, source) rows")
    with spec.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "video" not in rows[0]:
        raise InputError(f"{spec} needs a header row with a 'video' column (optional: 'audio', 'source')")

    def path(value: str | None) -> Path | None:
        value = (value or "").strip()
        return None if not value else (Path(value) if Path(value).is_absolute() else spec.parent / value)

    return [Pair(path(r["video"]), path(r.get("audio")), path(r.get("source"))) for r in rows if r["video"].strip()]


def score_pairs(pairs: list[Pair], scorer, out_csv: str | Path, fidelity: bool = True) -> list[dict]:
    """Score every pair (a progress bar on stderr), writing rows to ``out_csv`` as they finish."""
    from .quality import fidelity_outside_mouth

    rows = []
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with out_csv.open("w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        for pair in tqdm(pairs, unit="clip", desc="scoring"):
            row = {"video": pair.video, "audio": pair.audio or "", "source": pair.source or ""}
            try:
                score = scorer.score(pair.video, pair.audio)
                row.update(confidence=round(score.confidence, 4), lse_d=round(score.min_dist, 4), offset=score.offset,
                           tracks=len(score.tracks), faces=score.face_detector)
                if fidelity and pair.source is not None:
                    detect = scorer.detect or _landmark_detect()
                    quality = fidelity_outside_mouth(pair.video, pair.source, detect)
                    row.update(psnr=round(quality.psnr, 3), ssim=round(quality.ssim, 4))
            except LatentSyncError as exc:
                row["error"] = str(exc).replace("\n", " ")
            writer.writerow(row)
            f.flush()
            rows.append(row)
    return rows


def _landmark_detect():
    from .faces import landmark_boxes

    return landmark_boxes()[0]


def summary_table(rows: list[dict]) -> str:
    """Mean and median of each metric over the rows that have it."""
    lines = [f"{'metric':<28}{'mean':>10}{'median':>10}{'clips':>7}"]
    for key, label in SUMMARY:
        values = [float(r[key]) for r in rows if r.get(key) not in (None, "")]
        values = [v for v in values if math.isfinite(v)]
        if values:
            lines.append(f"{label:<28}{statistics.fmean(values):>10.3f}{statistics.median(values):>10.3f}"
                         f"{len(values):>7}")
    failed = sum(1 for r in rows if r.get("error"))
    tail = f"; {failed} failed (see 'error')" if failed else ""
    lines.append(f"{len(rows) - failed} of {len(rows)} clips scored{tail}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m latentsync_demo.eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pairs", nargs="?", help="folder of videos, or a CSV with video[,audio][,source] columns")
    parser.add_argument("--out", default="sync_scores.csv", help="CSV to write (default: sync_scores.csv)")
    parser.add_argument("--checkpoints", default=None,
                        help="checkpoint root holding auxiliary/ (default ./checkpoints)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--detect-every", type=int, default=1,
                        help="run the face detector on every n-th frame (1 = official; more is faster on a CPU)")
    parser.add_argument("--no-fidelity", action="store_true", help="skip PSNR / SSIM against the source videos")
    parser.add_argument("--download", action="store_true", help="download the metric weights first")
    args = parser.parse_args(argv)
    if args.pairs is None and not args.download:
        parser.error("give PAIRS (a folder or a CSV), or --download")
    from ..service import default_device
    from .scorer import SyncScorer, download_metric_weights

    try:
        if args.download:
            print(f"metric weights are in {download_metric_weights(args.checkpoints)}")
            if args.pairs is None:
                return 0
        pairs = read_pairs(args.pairs)
        scorer = SyncScorer.from_checkpoints(args.checkpoints, args.device or default_device(),
                                             detect_every=args.detect_every)
    except LatentSyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"faces: {scorer.face_detector}", file=sys.stderr)
    rows = score_pairs(pairs, scorer, args.out, fidelity=not args.no_fidelity)
    print(summary_table(rows))
    print(f"wrote {args.out}")
    return 0
