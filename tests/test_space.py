"""The Hugging Face Space code path, off a Space: app.py started with SPACE_ID set and a stand-in ``spaces``
module (``latentsync_demo.testing.zerogpu``, which records what ZeroGPU's decorator would see), the weights only
in a Hugging Face cache laid out as ``preload_from_hub`` leaves it, and one real request through gradio_client."""

import json
import os
import shutil
import sys
from pathlib import Path

from gradio_client import Client, handle_file

from latentsync_demo import space
from latentsync_demo.store import PRESETS, UNET_CONFIG_FILE, UNET_FILE, VAE_DIR, VAE_FILES, VAE_REPO, WHISPER_FILE
from latentsync_demo.testing.media import make_speech_wav, make_talking_head_clip
from latentsync_demo.testing.servers import free_port, start_server

REPO = Path(__file__).resolve().parents[1]


def _preload_from_hub(tiny: Path, cache: Path) -> None:
    """A Hugging Face hub cache as the Space's build leaves it: every file the README front matter's
    ``preload_from_hub`` lists, under its repo, with the tiny set's file of that name as its content."""
    front_matter = (REPO / "README.md").read_text().split("---")[1]
    lines = front_matter.split("preload_from_hub:\n", 1)[1].split("\n")
    listed = [line.strip()[2:].split() for line in lines if line.startswith("  - ")]
    assert {repo for repo, _ in listed} == {*(p.repo_id for p in PRESETS.values()), VAE_REPO}
    for repo, names in listed:
        folder = cache / f"models--{repo.replace('/', '--')}"
        commit = "0" * 40
        (folder / "refs").mkdir(parents=True)
        (folder / "refs" / "main").write_text(commit)
        for name in names.split(","):
            target = folder / "snapshots" / commit / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(tiny / VAE_DIR / name if repo == VAE_REPO else tiny / name, target)


def _start_space(tmp: Path, checkpoints: Path, cache: Path, record: Path):
    port = free_port()
    env = {**os.environ, "SPACE_ID": "someone/latentsync-demo", "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
           "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(REPO)}
    return start_server([sys.executable, "-m", "latentsync_demo.testing.zerogpu", str(record), str(REPO / "app.py"),
                         "--checkpoints", str(checkpoints), "--port", str(port), "--device", "cpu"],
                        port, tmp / "space.log", cwd=tmp, env=env, seconds=180)


def test_space_starts_links_preloaded_weights_and_runs_the_job_under_spaces_gpu(tmp_path, tiny_checkpoints):
    cache, checkpoints, record = tmp_path / "hub", tmp_path / "checkpoints", tmp_path / "zerogpu.jsonl"
    _preload_from_hub(tiny_checkpoints, cache)
    for preset in PRESETS:  # the tiny UNet's shape (a real Space has no config: the official one is built in)
        (checkpoints / preset).mkdir(parents=True)
        shutil.copy(tiny_checkpoints / UNET_CONFIG_FILE, checkpoints / preset / UNET_CONFIG_FILE)
    video = make_talking_head_clip(tmp_path / "face.mp4", seconds=1.2, fps=30, size=(256, 256))
    speech = make_speech_wav(tmp_path / "speech.wav", seconds=2.0)

    proc, url = _start_space(tmp_path, checkpoints, cache, record)
    try:
        # Start-up linked every file the store needs from what the build preloaded, without downloading.
        for preset in PRESETS:
            for name in (UNET_FILE, WHISPER_FILE):
                linked = checkpoints / preset / name
                assert linked.is_symlink() and linked.resolve().is_relative_to(cache.resolve()), linked
        for name in VAE_FILES:
            assert (checkpoints / VAE_DIR / name).resolve().is_relative_to(cache.resolve())
        client = Client(url, verbose=False)
        job = client.submit(handle_file(str(video)), handle_file(str(speech)), PRESETS["latentsync-1.6"].label,
                            "DDIM (quality)", 20, consent=True, api_name="/lipsync")
        updates = list(job)
        job.result()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    log = (tmp_path / "space.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    assert updates[-1][0].startswith("**Done** · 50 frames"), updates[-1]
    assert "LatentSync 1.6 · 512 px" in updates[-1][0] and Path(updates[-1][3]).name == "face_lipsync.mp4"

    events = [json.loads(line) for line in record.read_text().splitlines()]
    assert events[0] == {"event": "import", "torch_loaded": False}  # spaces came before torch, as ZeroGPU needs
    decorated = {e["function"]: e["duration"] for e in events if e["event"] == "decorate"}
    assert decorated == {"lipsync": "callable", "score_result": None, "redo": "callable", "transcribe": None}
    calls = [e for e in events if e["event"] in ("call", "return")]
    # One request: ZeroGPU asked for the duration with the request's own arguments, then the handler ran inside
    # the decorator and every update the client got passed through it.
    assert [e["event"] for e in calls] == ["call", "return"] and calls[0]["function"] == "lipsync"
    assert calls[0]["args"][:5] == ["face.mp4", "speech.wav", "LatentSync 1.6 · 512 px", "DDIM (quality)", 20]
    expected = space.gpu_seconds(speech, "latentsync-1.6", "ddim", 20)
    # 15 + 0.05 x 50 frames + 1.5 x (4 chunks x 20 steps x 2) UNet rows x 0.2 s
    assert calls[0]["duration"] == expected == 65
    assert space.GPU_MIN_SECONDS <= expected <= space.GPU_MAX_SECONDS
    assert calls[1] == {"event": "return", "function": "lipsync", "updates": len(updates), "error": None}
