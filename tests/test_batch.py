"""Batch jobs from a manifest with tiny models: bad rows, resume, and a 2-process accelerate split."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from latentsync_demo.batch import main as batch_main
from latentsync_demo.batch import read_manifest
from latentsync_demo.errors import InputError
from latentsync_demo.media import count_frames
from latentsync_demo.testing.media import make_speech_wav, make_talking_head_clip

REPO = Path(__file__).resolve().parents[1]
SIZE = (128, 112)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    make_talking_head_clip(root / "face.mp4", seconds=0.4, fps=25, size=SIZE)  # 10 frames
    make_talking_head_clip(root / "shapes.mp4", seconds=0.4, fps=25, size=SIZE, face=False)
    make_speech_wav(root / "speech.wav", seconds=0.6)  # 15 frames
    return root


def _results(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_bad_row_is_recorded_and_a_rerun_does_only_that_row(folder, tiny_checkpoints, tmp_path):
    manifest = tmp_path / "jobs.csv"
    video = tmp_path / "video_b.mp4"
    shutil.copy(folder / "shapes.mp4", video)  # no face: this row fails
    manifest.write_text("id,video,audio,length_mode\n"
                        f"a,{folder / 'face.mp4'},{folder / 'speech.wav'},cut\n"
                        f"b,{video},{folder / 'speech.wav'},\n"
                        f"c,{folder / 'face.mp4'},{folder / 'speech.wav'},loop\n")
    out = tmp_path / "out"
    args = [str(manifest), "--out", str(out), "--checkpoints", str(tiny_checkpoints), "--steps", "1", "--device", "cpu"]
    assert batch_main(args) == 2  # no consent: nothing runs
    assert not out.exists()
    args.append("--consent")
    assert batch_main(args) == 1  # not every row is done
    first = {r["id"]: r for r in _results(out / "results.csv")}
    assert [first[i]["status"] for i in "abc"] == ["done", "failed", "done"]
    assert "no face was found" in first["b"]["error"] and first["b"]["output"] == ""
    assert count_frames(out / "a.mp4") == 10 and count_frames(out / "c.mp4") == 15  # cut vs loop
    assert float(first["a"]["duration"]) == pytest.approx(0.4, abs=0.04) and float(first["a"]["wall_time"]) > 0
    stamp = (out / "a.mp4").stat().st_mtime_ns

    shutil.copy(folder / "face.mp4", video)  # the user fixes the bad input and runs the same command again
    assert batch_main(args) == 0
    attempts = _results(out / "results.part-0.csv")
    assert [r["id"] for r in attempts] == ["a", "b", "c", "b"]  # only the failed row ran again
    assert [r["status"] for r in _results(out / "results.csv")] == ["done"] * 3
    assert (out / "a.mp4").stat().st_mtime_ns == stamp


def test_manifest_errors_name_the_row(tmp_path):
    bad = tmp_path / "m.jsonl"
    bad.write_text('{"id": "x", "video": "v.mp4", "audio": "a.wav"}\n{"id": "x", "video": "w.mp4"}\n')
    with pytest.raises(InputError, match="row 2: id 'x' must be unique"):
        read_manifest(bad)
    bad.write_text('{"video": "v.mp4"}\nnot json\n')
    with pytest.raises(InputError, match="line 2 is not JSON"):
        read_manifest(bad)
    rows = read_manifest(_write(tmp_path / "ok.jsonl", '{"video": "v.mp4", "text": "hello", "steps": 4}\n'))
    assert rows[0].id == "row0001" and rows[0].video == tmp_path / "v.mp4" and rows[0].settings == {"steps": "4"}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_accelerate_launch_splits_the_manifest_between_two_processes(folder, tiny_checkpoints, tmp_path):
    manifest = tmp_path / "four.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"j{i}", "video": str(folder / "face.mp4"),
                                            "audio": str(folder / "speech.wav"), "steps": 1}) + "\n"
                                for i in range(4)))
    out = tmp_path / "out"
    # On a machine without GPUs, --multi_gpu still starts torchrun's processes; they join a gloo group
    # (accelerate's --cpu multi-process mode needs MPI instead).
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
              "0", "-m", "latentsync_demo", "batch", str(manifest), "--out", str(out),
              "--checkpoints", str(tiny_checkpoints), "--consent"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(launch, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    parts = [[r["id"] for r in _results(out / f"results.part-{k}.csv")] for k in (0, 1)]
    assert len(parts[0]) == len(parts[1]) == 2 and sorted(parts[0] + parts[1]) == ["j0", "j1", "j2", "j3"]
    assert [r["status"] for r in _results(out / "results.csv")] == ["done"] * 4
    assert all(count_frames(out / f"j{i}.mp4") == 15 for i in range(4))
