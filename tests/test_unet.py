"""UNet3D: official key layout, numeric conformance with the official model, strict loading."""

import json

import pytest
import torch
from safetensors.torch import load_file

from latentsync_demo.errors import CheckpointError
from latentsync_demo.models import UNet3DConditionModel, load_unet, save_unet_checkpoint
from latentsync_demo.testing.tiny_models import TINY_UNET_CONFIG, randomize_

MANIFESTS = ["stage2", "stage2_512", "stage2_efficient", "stage1"]


@pytest.mark.parametrize("name", MANIFESTS)
def test_state_dict_matches_official_manifest(reference_dir, name):
    manifest = json.loads((reference_dir / f"unet_{name}_state_dict_manifest.json").read_text())
    with torch.device("meta"):
        model = UNet3DConditionModel.from_config(manifest["model_config"])
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == {k: list(v) for k, v in manifest["state_dict"].items()}
    assert sum(p.numel() for p in model.parameters()) == manifest["total_parameter_count"]


@pytest.fixture(scope="module")
def tiny_official(reference_dir):
    config = json.loads((reference_dir / "unet_tiny_config.json").read_text())
    model = UNet3DConditionModel.from_config(config).eval()
    state = {k: v.float() for k, v in load_file(str(reference_dir / "unet_tiny_state_dict.safetensors")).items()}
    model.load_state_dict(state, strict=True)
    io = torch.load(reference_dir / "unet_tiny_io.pt", weights_only=True)
    return model, io


@pytest.mark.parametrize(
    "timestep_key, audio, expected_key",
    [
        ("timestep", True, "out"),
        ("timestep_b", True, "out_timestep_b"),
        ("timestep", False, "out_no_audio"),
    ],
)
def test_tiny_unet_reproduces_official_outputs(tiny_official, timestep_key, audio, expected_key):
    model, io = tiny_official
    with torch.no_grad():
        out = model(io["sample"], io[timestep_key], io["encoder_hidden_states"] if audio else None).sample
    assert out.shape == io[expected_key].shape
    # Measured 4.9e-6 / 4.2e-6 / 4.4e-6 max |diff| (float32 CPU, 2 threads: `python bench/bench_conformance.py --only unet`);
    # the bound is about 4x that.
    assert (out - io[expected_key]).abs().max().item() < 2e-5


def test_tiny_unet_float64_matches_official_float64(tiny_official):
    model, io = tiny_official
    model64 = UNet3DConditionModel.from_config(model.config).double().eval()
    model64.load_state_dict(model.state_dict())
    with torch.no_grad():
        out = model64(io["sample"].double(), io["timestep"], io["encoder_hidden_states"].double()).sample
    # Measured 1.1e-14 max |diff| (`python bench/bench_conformance.py --only unet`); the bound is about 5x that.
    assert (out - io["out_fp64"]).abs().max().item() < 5e-14


def test_four_dim_audio_equals_flat_audio(tiny_official):
    model, io = tiny_official
    flat = io["encoder_hidden_states"]
    with torch.no_grad():
        a = model(io["sample"], io["timestep"], flat).sample
        b = model(io["sample"], io["timestep"], flat.reshape(2, 16, 50, 384)).sample
    torch.testing.assert_close(a, b)


def _tiny_model(seed=0):
    model = UNet3DConditionModel.from_config(TINY_UNET_CONFIG)
    return randomize_(model, seed).eval()


def test_frames_interact_only_through_motion_modules_and_groupnorm():
    """Changing frame 0 must change other frames' outputs (temporal modules work), and a single-frame
    clip must run (odd frame counts happen at the end of a video)."""
    model = _tiny_model()
    cfg = model.config
    x = torch.randn(1, cfg.in_channels, 5, 16, 16)
    audio = torch.randn(5, 50, cfg.cross_attention_dim)
    with torch.no_grad():
        base = model(x, 500, audio).sample
        x2 = x.clone()
        x2[:, :, 0] += 1.0
        changed = model(x2, 500, audio).sample
        single = model(x[:, :, :1], 500, audio[:1]).sample
    assert (changed[:, :, 3] - base[:, :, 3]).abs().max() > 1e-4
    assert single.shape == (1, cfg.out_channels, 1, 16, 16)


def test_odd_spatial_size_runs():
    model = _tiny_model()
    with torch.no_grad():
        out = model(torch.randn(1, 13, 2, 12, 20), 10, torch.randn(2, 50, model.config.cross_attention_dim)).sample
    assert out.shape == (1, 4, 2, 12, 20)


def test_unsupported_official_option_is_refused():
    with pytest.raises(ValueError, match="use_linear_projection"):
        UNet3DConditionModel.from_config({**TINY_UNET_CONFIG, "use_linear_projection": True})


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_checkpoint_round_trip_official_layout(tmp_path, suffix):
    model = _tiny_model(seed=3)
    path = tmp_path / f"latentsync_unet{suffix}"
    save_unet_checkpoint(model, path, global_step=7)
    if suffix == ".pt":
        raw = torch.load(path, weights_only=True)
        assert set(raw) == {"global_step", "state_dict"} and raw["global_step"] == 7
    loaded = load_unet(path, TINY_UNET_CONFIG)
    x = torch.randn(1, 13, 3, 16, 16)
    audio = torch.randn(3, 50, model.config.cross_attention_dim)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, 999, audio).sample, model(x, 999, audio).sample)
    assert not any(p.is_meta for p in loaded.parameters())
    assert not any(b.is_meta for b in loaded.buffers())


def test_truncated_checkpoint_gives_clear_error(tmp_path):
    path = tmp_path / "latentsync_unet.pt"
    save_unet_checkpoint(_tiny_model(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_unet(path, TINY_UNET_CONFIG)


def test_missing_and_misshaped_keys_are_all_listed(tmp_path):
    state = _tiny_model().state_dict()
    del state["mid_block.resnets.0.conv1.weight"]
    state["conv_in.weight"] = torch.zeros(32, 9, 3, 3)
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError) as info:
        load_unet(path, TINY_UNET_CONFIG)
    message = str(info.value)
    assert "1 missing" in message and "mid_block.resnets.0.conv1.weight" in message
    assert "1 unexpected" in message and "extra.weight" in message
    assert "wrong shape" in message and "conv_in.weight: checkpoint (32, 9, 3, 3)" in message


def test_missing_file_and_non_state_dict(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_unet(tmp_path / "nope.pt", TINY_UNET_CONFIG)
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="does not hold a UNet state dict"):
        load_unet(path, TINY_UNET_CONFIG)
