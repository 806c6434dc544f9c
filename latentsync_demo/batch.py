"""Batch jobs: ``python -m latentsync_demo batch MANIFEST.csv|jsonl --out DIR``.

One manifest row per job. Columns (CSV header or JSON keys; only ``video`` is required):

    id           a name for the job (default: its row number); the output is DIR/<id>.mp4
    video        talking-head video; relative paths are relative to the manifest's folder
    audio        speech; may be left out when ``text`` is given (the speaker says it, voice cloning)
    text         script for voice=script; language: its language code
    voice        off | revoice | script | translate (default: script when text is given, else off)
    to           voice=translate: the language to dub into; transcript: an edited .json/.srt transcript
    subtitles    voice=translate: soft | burn | off; keep_room: 1 mixes the video's own sound under the speech
    speech       a dialogue, instead of audio: a speech track per face, FACE=FILE each; in a CSV cell separated
                 by ";" (``0=alice.wav;1=bob.wav``), in JSONL a list (``["0=alice.wav", "1=bob.wav"]``) or an
                 object (``{"0": "alice.wav", "1": "bob.wav"}``)
    preset, sampler, steps, guidance, seed, face_index, length_mode, audio_windows: as on the command line

The models are loaded once (one LipSyncService) and the rows run one after another under a tqdm bar.
Every attempt appends a row to DIR/results.part-<process>.csv (id, status, output, duration, wall_time,
error); at the end DIR/results.csv holds the latest attempt of every manifest row. A re-run skips the rows
that are done and whose output still exists, so a crashed or partly failed batch resumes where it was.

Several GPUs: ``accelerate launch -m latentsync_demo batch ...`` starts one process per GPU; accelerate's
``PartialState.split_between_processes`` hands each process its share of the pending rows.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .errors import InputError, LatentSyncError
from .media import MODEL_FPS
from .pipeline.length import LENGTH_MODES
from .pipeline.samplers import SAMPLERS
from .request import settings_from, speech_pairs
from .settings import AUDIO_WINDOW_MODES, VoiceRequest
from .store import DEFAULT_PRESET, PRESETS

RESULT_FIELDS = ("id", "status", "output", "duration", "wall_time", "error")
_SETTINGS = {"sampler": str, "steps": int, "guidance": float, "seed": int, "face_index": int, "length_mode": str,
             "audio_windows": str}
_VOICE = ("voice", "to", "transcript", "subtitles", "keep_room")


@dataclass(frozen=True)
class BatchRow:
    id: str
    video: Path | None
    audio: Path | None
    text: str | None
    language: str | None
    preset: str | None
    settings: dict  # the manifest's own setting columns, as strings
    voice: dict = None  # the manifest's voice columns (_VOICE), as strings; transcript as a path
    speech: tuple[tuple[int, Path], ...] = ()  # a dialogue: (face index, speech file) per face


def read_manifest(path: str | Path) -> list[BatchRow]:
    """Rows of a .csv (with a header) or .jsonl manifest; InputError for a malformed file or duplicate ids."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest not found: {path}")
    if path.suffix.lower() == ".jsonl":
        records = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path.name} line {n} is not JSON ({exc.msg}); one object per line") from exc
    elif path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            records = list(csv.DictReader(f))
    else:
        raise InputError(f"manifest must be .csv or .jsonl, not {path.suffix or 'no extension'}: {path.name}")
    rows, seen = [], set()
    for n, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise InputError(f"{path.name} row {n} is not an object with video/audio/text fields")
        speech = _speech_field(record.pop("speech", None), path.parent, f"{path.name} row {n}")
        record = {k.strip(): str(v).strip() for k, v in record.items() if k and v not in (None, "")}
        row_id = record.get("id") or f"row{n:04d}"
        if not _safe_id(row_id) or row_id in seen:
            raise InputError(f"{path.name} row {n}: id {row_id!r} must be unique and use only letters, digits, "
                             "'-', '_' and '.'")
        seen.add(row_id)

        def where(key):
            return (path.parent / record[key]) if key in record else None

        rows.append(BatchRow(row_id, where("video"), where("audio"), record.get("text"), record.get("language"),
                             record.get("preset"), {k: record[k] for k in _SETTINGS if k in record},
                             {k: (where(k) if k == "transcript" else record[k]) for k in _VOICE if k in record},
                             speech))
    return rows


def _speech_field(value, folder: Path, where: str) -> tuple[tuple[int, Path], ...]:
    """A row's ``speech`` (see the module docstring) as (face index, file) pairs, files relative to ``folder``."""
    if value is None or value == "" or value == []:
        return ()
    if isinstance(value, str):
        value = [item.strip() for item in value.split(";") if item.strip()]
    elif isinstance(value, list):
        value = [tuple(item) if isinstance(item, list) else item for item in value]
    elif not isinstance(value, dict):
        raise InputError(f"{where}: speech must be FACE=FILE entries (a list, or ';'-separated), not {value!r}")
    try:
        return tuple((face, folder / file) for face, file in speech_pairs(value))
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from exc


def _safe_id(text: str) -> bool:
    return bool(text) and len(text) <= 100 and text[0] != "." and all(c.isalnum() or c in "-_." for c in text)


def read_results(out_dir: Path) -> dict[str, dict]:
    """The latest recorded attempt per id, from every process's part file."""
    latest: dict[str, dict] = {}
    for part in sorted(out_dir.glob("results.part-*.csv")):
        with open(part, newline="", encoding="utf-8") as f:
            for record in csv.DictReader(f):
                if record["id"] not in latest or float(record["finished"]) >= float(latest[record["id"]]["finished"]):
                    latest[record["id"]] = record
    return latest


def pending_rows(rows: list[BatchRow], out_dir: Path) -> list[BatchRow]:
    """Rows without a finished result (status done and the output file still there)."""
    done = {i for i, r in read_results(out_dir).items() if r["status"] == "done" and (out_dir / r["output"]).is_file()}
    return [row for row in rows if row.id not in done]


def write_summary(rows: list[BatchRow], out_dir: Path) -> dict[str, int]:
    """DIR/results.csv in manifest order; returns counts per status."""
    latest = read_results(out_dir)
    counts: dict[str, int] = {}
    with open(out_dir / "results.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, RESULT_FIELDS)
        writer.writeheader()
        for row in rows:
            record = latest.get(row.id, {"id": row.id, "status": "not run"})
            writer.writerow({k: record.get(k, "") for k in RESULT_FIELDS})
            counts[record["status"]] = counts.get(record["status"], 0) + 1
    return counts


def run_row(service, row: BatchRow, out_dir: Path, defaults: argparse.Namespace) -> dict:
    """Run one row; never raises for a problem of the row itself (it is recorded as failed)."""
    started = time.time()
    out = out_dir / f"{row.id}.mp4"
    record = {"id": row.id, "status": "failed", "output": "", "duration": "", "error": ""}
    try:
        if row.video is None:
            raise InputError("the row has no video")
        voice = row_voice(row)
        if row.audio is None and not row.speech and (voice is None or voice.mode == "revoice"):
            raise InputError("the row needs audio, speech tracks per face (speech), or text for the speaker to say "
                             "(or voice=translate and to=LANG)")
        try:
            values = {k: cast(row.settings.get(k, getattr(defaults, k))) for k, cast in _SETTINGS.items()
                      if row.settings.get(k, getattr(defaults, k)) is not None}
        except ValueError as exc:
            raise InputError(f"a setting is not a number: {exc}") from exc
        settings = settings_from(values.get("sampler", "ddim"), values.get("steps"),
                                 guidance_scale=values.get("guidance"), seed=values.get("seed"),
                                 face_index=values.get("face_index"), length_mode=values.get("length_mode"),
                                 audio_windows=values.get("audio_windows"))
        request = service.prepare(row.video, row.audio, out, row.preset or defaults.preset, settings, voice,
                                  consent=True, speech=row.speech or None)  # main() refused without consent
        for event in service.run(request):
            pass
        record.update(status="done", output=out.name, duration=f"{event.frames / MODEL_FPS:.3f}")
    except LatentSyncError as exc:
        record["error"] = str(exc)
    except Exception as exc:  # one broken row must not stop the batch
        record["error"] = f"{type(exc).__name__}: {exc}"
    record.update(wall_time=f"{time.time() - started:.2f}", finished=f"{time.time():.6f}")
    return record


def row_voice(row: BatchRow) -> VoiceRequest | None:
    """The row's voice request: its ``voice`` column, else "script" when it has text; None for plain audio."""
    columns = row.voice or {}
    mode = columns.get("voice") or ("script" if row.text else "off")
    if mode == "off":
        stray = [k for k in ("to", "transcript", "keep_room", "subtitles") if k in columns]
        if stray:
            raise InputError(f"{', '.join(stray)} belong to a voice mode (voice=translate dubs into another "
                             "language): add a voice column, or leave them out")
        return None
    keep_room = columns.get("keep_room", "0").lower()
    if keep_room not in ("0", "1", "true", "false", "yes", "no"):
        raise InputError(f"keep_room is {keep_room!r}: write 1 or 0")
    return VoiceRequest(mode, row.text, row.language, None, columns.get("to"), columns.get("transcript"),
                        columns.get("subtitles", "soft"), keep_room in ("1", "true", "yes"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m latentsync_demo batch",
                                     description="Lip-sync every row of a manifest (resumable; multi-GPU with "
                                                 "accelerate launch).")
    parser.add_argument("manifest", help=".csv with a header, or .jsonl: id, video, audio or text, settings")
    parser.add_argument("--out", required=True, help="folder for the videos and results.csv")
    parser.add_argument("--checkpoints", default=None, help="checkpoint folder (default: ./checkpoints)")
    parser.add_argument("--device", default=None, help="default: this process's accelerate device")
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS))
    parser.add_argument("--sampler", default=None, choices=sorted(SAMPLERS), help="rows may set their own")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--face-index", type=int, default=None)
    parser.add_argument("--length-mode", choices=LENGTH_MODES, default=None)
    parser.add_argument("--audio-windows", choices=AUDIO_WINDOW_MODES, default=None,
                        help="Whisper windows of speech over 30 s (default seamless; official: the official features)")
    parser.add_argument("--consent", action="store_true", help="confirm the consent of every person shown "
                        "(and of the voices' owners); also LATENTSYNC_CONSENT=1. Required")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .provenance.consent import consent_from_env

    if not (args.consent or consent_from_env()):
        print("error: no consent given. Lip sync needs the consent of every person shown (and of the voices' "
              "owners): pass --consent or set LATENTSYNC_CONSENT=1.", file=sys.stderr)
        return 2
    try:
        rows = read_manifest(args.manifest)
    except LatentSyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from accelerate import PartialState

    from .service import LipSyncService

    import torch

    # cpu=True on machines without CUDA: torchrun's processes then form a gloo group instead of none at all.
    state = PartialState(cpu=args.device == "cpu" or not torch.cuda.is_available())
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = pending_rows(rows, out_dir)
    state.wait_for_everyone()  # every process decided from the same results before any writes more
    service = LipSyncService(checkpoints=args.checkpoints, device=args.device or str(state.device), max_seconds=None,
                             max_pixels=None)
    part = out_dir / f"results.part-{state.process_index}.csv"
    with state.split_between_processes(todo) as mine:
        new_file = not part.exists()
        with open(part, "a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, (*RESULT_FIELDS, "finished"))
            if new_file:
                writer.writeheader()
            bar = tqdm(mine, desc=f"batch [{state.process_index}]", unit="job", position=state.process_index)
            for row in bar:
                record = run_row(service, row, out_dir, args)
                writer.writerow(record)
                f.flush()  # a crash keeps every finished row
                bar.set_postfix_str(f"{row.id}: {record['status']}")
    state.wait_for_everyone()
    if state.is_main_process:
        counts = write_summary(rows, out_dir)
        skipped = len(rows) - len(todo)
        print(f"{len(rows)} rows: " + ", ".join(f"{n} {s}" for s, n in counts.items())
              + (f" ({skipped} already done, skipped)" if skipped else "") + f"; see {out_dir / 'results.csv'}")
        return 0 if counts.get("done", 0) == len(rows) else 1
    return 0
