"""Model store: presets, layouts, tiny checkpoint sets, and downloads (offline, or with a fake hub)."""

import json
import subprocess
import sys

import pytest
import torch

from latentsync_demo import download as download_module
from latentsync_demo.errors import CheckpointError
from latentsync_demo.models.configs import STAGE2_UNET_CONFIG
from latentsync_demo.pipeline import LipSyncPipeline
from latentsync_demo.loading import load_models
from latentsync_demo.store import PRESETS, resolve
from latentsync_demo.testing.tiny_checkpoints import write_tiny_checkpoints


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_tiny_checkpoints(tmp_path_factory.mktemp("ckpt") / "tiny")


def test_presets_follow_the_official_configs(reference_dir):
    for name, manifest in (("latentsync-1.5", "stage2"), ("latentsync-1.6", "stage2_512")):
        official = json.loads((reference_dir / f"unet_{manifest}_state_dict_manifest.json").read_text())
        assert resolve(name, "/nonexistent").unet_config == official["model_config"]
    assert PRESETS["latentsync-1.5"].resolution == 256 and PRESETS["latentsync-1.6"].resolution == 512


def test_default_layout_keeps_one_folder_per_preset(tmp_path):
    ckpt = resolve("latentsync-1.6", tmp_path)
    assert ckpt.unet == tmp_path / "latentsync-1.6" / "latentsync_unet.pt"
    assert ckpt.whisper == tmp_path / "latentsync-1.6" / "whisper" / "tiny.pt"
    assert ckpt.vae == tmp_path / "sd-vae-ft-mse"  # shared by both presets
    assert ckpt.resolution == 512 and ckpt.unet_config == STAGE2_UNET_CONFIG


def test_missing_files_error_names_files_and_command(tmp_path):
    with pytest.raises(CheckpointError) as info:
        resolve("latentsync-1.5", tmp_path).require()
    message = str(info.value)
    assert str(tmp_path / "latentsync-1.5" / "latentsync_unet.pt") in message
    assert "whisper/tiny.pt" in message and "sd-vae-ft-mse" in message
    assert f"python -m latentsync_demo.download --preset latentsync-1.5 --checkpoints {tmp_path}" in message


def test_tiny_set_has_official_layout_and_runs(tiny_dir):
    raw = torch.load(tiny_dir / "latentsync_unet.pt", weights_only=True)
    assert set(raw) == {"global_step", "state_dict"}
    whisper = torch.load(tiny_dir / "whisper" / "tiny.pt", weights_only=True)
    assert set(whisper) == {"dims", "model_state_dict"}
    assert (tiny_dir / "sd-vae-ft-mse" / "config.json").is_file()

    ckpt = resolve("latentsync-1.6", tiny_dir)  # a flat folder wins over the preset's layout
    assert ckpt.folder == tiny_dir and ckpt.resolution == 64 and ckpt.missing() == []
    models = load_models(ckpt)
    features = models.audio_encoder.encode(torch.randn(16000).numpy() * 0.1)
    chunks = models.audio_encoder.frame_chunks(features)[:4]
    faces = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    out = LipSyncPipeline(models.unet, models.vae)(faces, chunks, num_inference_steps=1)
    assert out.shape == (4, 3, 64, 64) and torch.isfinite(out).all()


def test_tiny_checkpoints_command_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "latentsync_demo.testing.tiny_checkpoints", str(tmp_path / "t"), "--resolution", "32"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert resolve("latentsync-1.5", tmp_path / "t").resolution == 32


def test_download_offline_says_so_and_names_the_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert download_module.main(["--preset", "latentsync-1.5", "--checkpoints", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "offline" in err and "latentsync_unet.pt" in err
    assert "python -m latentsync_demo.download --preset latentsync-1.5" in err


def test_download_places_files_in_the_layout(tmp_path, monkeypatch, tiny_dir):
    """With a stand-in for hf_hub_download, check what is fetched from where and where it lands."""
    import huggingface_hub

    calls = []
    sources = {
        ("ByteDance/LatentSync-1.6", "latentsync_unet.pt"): tiny_dir / "latentsync_unet.pt",
        ("ByteDance/LatentSync-1.6", "whisper/tiny.pt"): tiny_dir / "whisper" / "tiny.pt",
        ("stabilityai/sd-vae-ft-mse", "config.json"): tiny_dir / "sd-vae-ft-mse" / "config.json",
        ("stabilityai/sd-vae-ft-mse", "diffusion_pytorch_model.safetensors"):
            tiny_dir / "sd-vae-ft-mse" / "diffusion_pytorch_model.safetensors",
        # the insightface face pass (any bytes will do here; tests/test_insightface.py checks the files)
        ("KwaiVGI/LivePortrait", "insightface/models/buffalo_l/det_10g.onnx"): tiny_dir / "sd-vae-ft-mse" / "config.json",
        ("KwaiVGI/LivePortrait", "insightface/models/buffalo_l/2d106det.onnx"): tiny_dir / "sd-vae-ft-mse" / "config.json",
    }

    def fake_download(repo_id, filename, local_dir):
        calls.append((repo_id, filename))
        target = local_dir / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(sources[(repo_id, filename)].read_bytes())
        return str(target)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    folder = download_module.download("latentsync-1.6", tmp_path)
    assert folder == tmp_path / "latentsync-1.6"
    assert sorted(calls) == sorted(sources)
    assert resolve("latentsync-1.6", tmp_path).missing() == []
    calls.clear()
    download_module.download("latentsync-1.6", tmp_path)  # everything present: nothing fetched again
    assert calls == []
