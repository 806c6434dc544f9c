"""The job record: what a finished job keeps beside its output so that a segment can be redone exactly.

A record is the folder ``<output>.job/`` next to the output MP4:

* ``job.json``: the settings, preset, length mode, window, resolution, watermark number, container tags, the
  encoder settings, the frame counts, and the sha256 of the inputs and of the output it describes;
* ``video<ext>`` / ``audio<ext>``: copies of the two inputs (the redo decodes the same frames again; an upload
  folder may be cleaned up long before the user asks for a redo);
* ``faces_in.u8``: the aligned input face of every generated output frame (what the UNet saw), uint8;
* ``faces_out.raw``: every generated face exactly as the paste-back received it (the VAE's output, in the
  pipeline's dtype: float32 on a CPU, float16 on most GPUs), so the frames outside a redone span are restored
  into the same pixels as the first time;
* ``matrices.npy`` (per source frame, NaN where no face) and ``sources.npy`` (the source frame of each output
  frame);
* ``subtitles.srt``: only for an output with subtitles burned into its frames (the redo burns the same cues into
  the frames it re-encodes).

The MP4 is never decoded for a redo (its frames are lossy H.264): the redo rebuilds only the frames of the
GOPs it re-encodes from the record and copies every other GOP's packets unchanged (``pipeline.redo``).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..provenance.manifest import sha256
from ..settings import GenerationSettings

RECORD_SUFFIX = ".job"
RECORD_VERSION = 1
# Every output of a recorded job is encoded in closed 1 s GOPs (an IDR every 25 frames, no scene cuts), so a
# redo re-encodes whole GOPs and copies the others' packets.
REDO_GOP = 25
BURNED_SUBTITLES = "subtitles.srt"


def record_dir(output: str | Path) -> Path:
    return Path(str(output) + RECORD_SUFFIX)


class JobRecorder:
    """Collects a running job's faces (called from the job's generation thread), then writes the record."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self._inputs = open(workdir / "record_faces_in.u8", "wb")
        self._outputs = open(workdir / "record_faces_out.raw", "wb")
        self.out_dtype: str | None = None
        self.generated = 0

    def add_inputs(self, faces: torch.Tensor) -> None:
        """A chunk of aligned input faces, (f, 3, R, R) uint8, in generation order."""
        self._inputs.write(memoryview(np.ascontiguousarray(faces.numpy())).cast("B"))

    def add_generated(self, faces: torch.Tensor) -> None:
        """A chunk of generated faces (f, 3, R, R), in output order, bit for bit."""
        array = faces.detach().cpu().contiguous().numpy()
        self.out_dtype = str(array.dtype)
        self._outputs.write(memoryview(array).cast("B"))
        self.generated += len(array)

    def write(self, out: Path, meta: dict, video: Path, audio: Path, sources, matrices,
              burned_subtitles: Path | None = None) -> Path:
        """Write the record of the finished output ``out`` (replacing an older one). ``burned_subtitles``: the
        SubRip file the job burned into the frames."""
        self._inputs.close()
        self._outputs.close()
        folder = record_dir(out)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        video_copy = folder / f"video{Path(video).suffix.lower()}"
        audio_copy = folder / f"audio{Path(audio).suffix.lower()}"
        shutil.copyfile(video, video_copy)
        shutil.copyfile(audio, audio_copy)
        shutil.move(self.workdir / "record_faces_in.u8", folder / "faces_in.u8")
        shutil.move(self.workdir / "record_faces_out.raw", folder / "faces_out.raw")
        np.save(folder / "sources.npy", np.asarray(sources, np.int64))
        np.save(folder / "matrices.npy", np.stack([np.full((2, 3), np.nan) if m is None else np.asarray(m, np.float64)
                                                   for m in matrices]))
        if burned_subtitles is not None:
            shutil.copyfile(burned_subtitles, folder / BURNED_SUBTITLES)
            meta = {**meta, "burned_subtitles": BURNED_SUBTITLES}
        meta = {**meta, "version": RECORD_VERSION, "video": video_copy.name, "audio": audio_copy.name,
                "video_sha256": sha256(video_copy), "audio_sha256": sha256(audio_copy), "num_generated": self.generated,
                "faces_out_dtype": self.out_dtype, "gop": REDO_GOP}
        (folder / "job.json").write_text(json.dumps(meta, indent=1))
        return folder

    def discard(self) -> None:
        self._inputs.close()
        self._outputs.close()


@dataclass(frozen=True)
class JobRecord:
    """A record read back (``load_record``); the face arrays are memory-mapped, not loaded."""

    folder: Path
    output: Path
    meta: dict

    @property
    def settings(self) -> GenerationSettings:
        return GenerationSettings(**self.meta["settings"])

    @property
    def num_frames(self) -> int:
        return int(self.meta["num_frames"])

    @property
    def num_generated(self) -> int:
        return int(self.meta["num_generated"])

    @property
    def resolution(self) -> int:
        return int(self.meta["resolution"])

    def faces_in(self) -> np.ndarray:
        r = self.resolution
        return np.memmap(self.folder / "faces_in.u8", np.uint8, "r", shape=(self.num_generated, 3, r, r))

    def faces_out(self) -> np.ndarray:
        r = self.resolution
        return np.memmap(self.folder / "faces_out.raw", np.dtype(self.meta["faces_out_dtype"]), "r",
                         shape=(self.num_generated, 3, r, r))

    def sources(self) -> np.ndarray:
        return np.load(self.folder / "sources.npy")

    def matrices(self) -> list[np.ndarray | None]:
        return [None if np.isnan(m).any() else m for m in np.load(self.folder / "matrices.npy")]

    @property
    def video(self) -> Path:
        return self.folder / self.meta["video"]

    @property
    def audio(self) -> Path:
        return self.folder / self.meta["audio"]

    @property
    def burned_subtitles(self) -> Path | None:
        """The SubRip file the job burned into its frames (None: nothing burned)."""
        name = self.meta.get("burned_subtitles")
        return self.folder / name if name else None

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())


def seal_record(output: str | Path) -> None:
    """Bind the record to the finished output's bytes (after its provenance stamp, the last write to it)."""
    path = record_dir(output) / "job.json"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "output_sha256": sha256(Path(output))}, indent=1))


def load_record(job: str | Path) -> JobRecord:
    """The record of the output ``job`` (or the record folder itself); InputError, saying what to do, when it
    is gone, incomplete, or no longer matches the output beside it."""
    job = Path(job)
    if job.name.endswith(RECORD_SUFFIX):
        folder, output = job, Path(str(job)[: -len(RECORD_SUFFIX)])
    else:
        folder, output = record_dir(job), job
    if not output.is_file():
        raise InputError(f"there is no finished job at {output}: pass the output MP4 of a lip-sync job")
    if not (folder / "job.json").is_file():
        raise InputError(f"the job record of {output.name} is gone ({folder.name} beside it was deleted, or the job "
                         "ran with --no-record; a dialogue, with --speech per face, keeps none yet): a segment can "
                         "only be redone while its record is kept; run the job again without --no-record (Python: "
                         "LipSyncService(keep_records=True), the default), then redo a segment of the new output",
                         web=f"the job record of {output.name} is gone: a segment can only be redone while its record "
                             "is kept; run the lip-sync again, then redo a segment of the new result")
    try:
        meta = json.loads((folder / "job.json").read_text())
    except (OSError, ValueError):
        raise InputError(f"the job record {folder} is damaged (job.json unreadable): run the job again") from None
    if meta.get("version") != RECORD_VERSION:
        raise InputError(f"the job record {folder} was written by another version: run the job again")
    missing = [name for name in ("faces_in.u8", "faces_out.raw", "sources.npy", "matrices.npy", meta["video"],
                                 meta["audio"], meta.get("burned_subtitles")) if name and not (folder / name).is_file()]
    if missing:
        raise InputError(f"the job record {folder} is incomplete (missing {', '.join(missing)}): run the job again")
    if sha256(output) != meta.get("output_sha256"):
        raise InputError(f"{output.name} is not the output its record describes (it was changed or replaced): "
                         "a redo needs the job's own output")
    return JobRecord(folder, output, meta)
