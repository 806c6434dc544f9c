"""Redo a segment of a finished job (tiny random models, a generated clip): frames outside the re-encoded GOPs
decode bit-identically, the span changes, bad spans and missing records are refused before any work."""

import shutil

import numpy as np
import pytest

from latentsync_demo.errors import InputError
import latentsync_demo.pipeline.job as job_module
import latentsync_demo.pipeline.redo as redo_module
from latentsync_demo.media import VideoWriter, read_frames
from latentsync_demo.pipeline.record import REDO_GOP, load_record, record_dir
from latentsync_demo.testing.media import make_speech_wav, make_talking_head_clip

W, H = 160, 128


class CapturingWriter(VideoWriter):
    """The job's encoder, keeping a copy of every frame it is given (the pre-encode frames)."""

    frames: list = []

    def write(self, frame):
        CapturingWriter.frames.append(frame.copy())
        super().write(frame)


@pytest.fixture(scope="module")
def job(tiny_service, tmp_path_factory):
    """One finished 3 s job with its record (75 frames: three 1 s GOPs); its pre-encode frames in ``encoded``."""
    root = tmp_path_factory.mktemp("redo")
    clip = make_talking_head_clip(root / "clip.mp4", seconds=3.0, fps=25, size=(W, H))
    speech = make_speech_wav(root / "speech.wav", seconds=3.0)
    out = root / "first.mp4"
    CapturingWriter.frames = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(job_module, "VideoWriter", CapturingWriter)
        events = list(tiny_service.lipsync(clip, speech, out, num_inference_steps=1, consent=True))
    assert events[-1].stage == "done"
    encoded[out] = CapturingWriter.frames
    return out


encoded: dict = {}


def test_the_rebuilt_frames_outside_the_span_are_the_jobs_own(tiny_service, job, tmp_path, monkeypatch):
    """The re-encoded second's frames outside the span are rebuilt from the record into exactly the pixels the
    job encoded (so only the new H.264 encode touches them); the span's are new."""
    CapturingWriter.frames = []
    monkeypatch.setattr(redo_module, "VideoWriter", CapturingWriter)
    list(tiny_service.redo(job, 0.4, 0.8, seed=3, out=tmp_path / "r.mp4"))  # frames 10-19, GOP 0-24
    rebuilt, first = CapturingWriter.frames, encoded[job]
    assert len(rebuilt) == 25
    assert all(np.array_equal(rebuilt[i], first[i]) for i in [*range(10), *range(20, 25)])
    assert not any(np.array_equal(rebuilt[i], first[i]) for i in range(10, 20))


def test_redo_keeps_frames_outside_the_span_bit_identical(tiny_service, job, tmp_path):
    out = tmp_path / "redo.mp4"
    events = list(tiny_service.redo(job, 1.2, 1.6, seed=7, out=out))
    assert events[-1].stage == "done" and events[-1].output == out
    first, second = read_frames(job, fps=None), read_frames(out, fps=None)
    assert first.shape == second.shape == (75, H, W, 3)
    start, end = 30, 40  # 1.2-1.6 s
    region = range(start // REDO_GOP * REDO_GOP, -(-end // REDO_GOP) * REDO_GOP)  # GOP 25-49
    same = [bool(np.array_equal(first[i], second[i])) for i in range(75)]
    assert all(same[i] for i in range(75) if i not in region)
    # The face region of every frame inside the span differs (a new seed), beyond what a re-encode alone does.
    changed = [np.abs(first[i].astype(int) - second[i]).max() for i in range(start, end)]
    assert min(changed) > 0
    redo_rows = np.abs(first[start + 3:end - 3].astype(float) - second[start + 3:end - 3]).mean()
    encode_only = np.abs(first[region.start:start].astype(float) - second[region.start:start]).mean()
    assert redo_rows > 2 * encode_only  # the span changed more than the re-encode of unchanged frames


@pytest.mark.parametrize("start, end, words", [
    (2.0, 1.0, "reversed"), (1.0, 1.0, "empty"), (-0.5, 1.0, "outside the clip"), (2.5, 9.0, "outside the clip"),
    (1.0, 1.01, "shorter than one frame"),
])
def test_bad_span_is_refused_before_any_work(tiny_service, job, tmp_path, start, end, words):
    with pytest.raises(InputError, match=words):
        tiny_service.redo(job, start, end, seed=7, out=tmp_path / "x.mp4")
    assert not (tmp_path / "x.mp4").exists()


def test_redo_without_record_is_refused(tiny_service, job, tmp_path):
    copy = tmp_path / "lonely.mp4"
    shutil.copyfile(job, copy)
    with pytest.raises(InputError, match="record .* is gone"):
        tiny_service.redo(copy, 0.2, 0.6, seed=7)
    shutil.copytree(record_dir(job), record_dir(copy))
    assert load_record(copy).num_frames == 75  # a copied output with its record is redoable
    copy.write_bytes(copy.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(InputError, match="not the output its record describes"):
        tiny_service.redo(copy, 0.2, 0.6, seed=7)


def test_cli_redo(job, tiny_checkpoints, tmp_path, capsys):
    from latentsync_demo.commands import main

    out = tmp_path / "cli.mp4"
    argv = ["redo", "--from", str(job), "--start", "0.4", "--end", "0.8", "--seed", "7", "--out", str(out),
            "--checkpoints", str(tiny_checkpoints), "--device", "cpu"]
    assert main(argv) == 0 and out.is_file()
    assert f"wrote {out}" in capsys.readouterr().out
    first, second = read_frames(job, fps=None), read_frames(out, fps=None)
    assert all(np.array_equal(first[i], second[i]) for i in range(25, 75))  # GOPs 2 and 3 copied
    assert main(argv[:5] + ["--end", "0.2"] + argv[7:]) == 2  # reversed: a message, no traceback
    assert "reversed" in capsys.readouterr().err
