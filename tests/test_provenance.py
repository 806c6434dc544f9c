"""Every output is marked: AI-generated container metadata, a C2PA-style sidecar manifest, and the invisible
watermark that ``python -m latentsync_demo.verify`` finds, also after a CRF 28 re-encode and a downscale."""

import json
import os
import subprocess
import sys

import pytest

from latentsync_demo import verify
from latentsync_demo.provenance.manifest import DIGITAL_SOURCE_TYPE, read_metadata, sha256, sidecar_path
from latentsync_demo.provenance.watermark import job_number
from latentsync_demo.testing.media import make_speech_wav, make_talking_head_clip
from latentsync_demo.testing.watermark_corpus import attack


@pytest.fixture(scope="module")
def job(tmp_path_factory, tiny_checkpoints):
    """One lip-sync run through the CLI (consent from LATENTSYNC_CONSENT=1, no terminal): 2 s, 50 frames."""
    root = tmp_path_factory.mktemp("provenance")
    video = make_talking_head_clip(root / "face.mp4", seconds=2.0, fps=25, size=(640, 480))
    audio = make_speech_wav(root / "speech.wav", seconds=2.0)
    out = root / "out.mp4"
    result = subprocess.run(
        [sys.executable, "-m", "latentsync_demo", "--checkpoints", str(tiny_checkpoints),
         "--device", "cpu", "--steps", "1", "--video", str(video), "--audio", str(audio), "--out", str(out)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600,
        env={**os.environ, "LATENTSYNC_CONSENT": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "marked as AI-generated" in result.stdout
    return {"video": video, "audio": audio, "out": out, "root": root,
            "manifest": json.loads(sidecar_path(out).read_text())}


def test_container_metadata_says_ai_generated_with_tool_preset_sampler_settings(job):
    tags = read_metadata(job["out"])
    assert tags["ai_generated"] == "true" and tags["digital_source_type"] == DIGITAL_SOURCE_TYPE
    assert tags["generator"].startswith("latentsync_demo ") and "AI-generated" in tags["comment"]
    assert tags["model_preset"] == "latentsync-1.5" and tags["sampler"] == "ddim"
    settings = json.loads(tags["settings"])
    assert settings["num_inference_steps"] == 1 and settings["guidance_scale"] == 1.5 and settings["seed"] == 1247
    assert tags["job_id"] and job["manifest"]["instance_id"].endswith(tags["job_id"])
    # The watermark's job number in one form, hex, as verify prints it (issue 21: it was also in the settings,
    # in decimal).
    assert tags["watermark"] == f"{job_number(tags['job_id']):04x}" and tags["job_id"].startswith(tags["watermark"])
    assert not any("watermark" in key for key in settings) and [k for k in tags if "watermark" in k] == ["watermark"]
    assert read_metadata(job["video"]).get("ai_generated") is None  # the input is not tagged


def test_sidecar_manifest_is_c2pa_style_with_input_and_output_hashes(job):
    m = job["manifest"]
    assert m["claim_generator"].startswith("latentsync_demo")
    actions = next(a for a in m["assertions"] if a["label"] == "c2pa.actions")["data"]["actions"]
    assert actions[0]["action"] == "c2pa.edited" and actions[0]["digitalSourceType"] == DIGITAL_SOURCE_TYPE
    assert actions[0]["parameters"]["model_preset"] == "latentsync-1.5"
    assert m["output"]["hash"] == {"alg": "sha256", "value": sha256(job["out"])}  # the final bytes
    hashes = {i["role"]: i["hash"]["value"] for i in m["ingredients"]}
    assert hashes == {"video": sha256(job["video"]), "audio": sha256(job["audio"])}


def test_verify_finds_the_watermark_and_its_job_number(job, capsys):
    expected = next(a for a in job["manifest"]["assertions"] if a["label"] == "c2pa.ai_generated")["data"]
    assert verify.main([str(job["out"])]) == 0
    text = capsys.readouterr().out
    assert "WATERMARK FOUND" in text and f"job number {expected['watermark']}" in text
    assert "container metadata: AI-generated" in text


def test_watermark_survives_crf28_reencode(job, capsys):
    """The tiny random model paints noise into the mouth, a harsher host than real faces; the downscale to
    720p on natural faces is covered by tests/test_watermark.py and bench/bench_watermark.py."""
    attacked = attack(job["out"], job["root"] / "attacked.mp4", height=480, crf=28)
    assert read_metadata(attacked).get("ai_generated") is None  # re-encoding dropped the tags, not the mark
    assert verify.main([str(attacked), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    expected = next(a for a in job["manifest"]["assertions"] if a["label"] == "c2pa.ai_generated")["data"]
    assert report["watermark"] is True and report["job"] == expected["watermark"]


def test_verify_exit_codes_for_unmarked_and_unreadable_files(job, tmp_path):
    assert verify.main([str(job["video"])]) == 1  # the original: a face, no mark
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    assert verify.main([str(text)]) == 2
    assert verify.main([str(job["audio"])]) == 2  # no video stream
