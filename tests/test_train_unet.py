"""The UNet trainer (stage 1, stage 2, fine-tune) on tiny random models (CPU, offline).

Figures are printed (``pytest -s tests/test_train_unet.py``): loss before/after each short run.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL

from latentsync_demo.errors import CheckpointError
from latentsync_demo.models import load_unet
from latentsync_demo.store import resolve
from latentsync_demo.testing.tiny_critics import tiny_lpips, tiny_sync_loss, tiny_trepa
from latentsync_demo.testing.tiny_lcm import write_random_cache, write_teacher_set
from latentsync_demo.testing.tiny_models import MICRO_UNET_CONFIG
from latentsync_demo.training.data import WindowDataset
from latentsync_demo.audio.syncnet_mel import mel_window_length, syncnet_mel
from latentsync_demo.training.train_unet import Critics, TrainConfig, parse_args, train
from latentsync_demo.training.unet_objective import UNetLossConfig, UNetObjective, training_noise

RES, FRAMES = 32, 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("unet")
    base = write_teacher_set(root / "base", MICRO_UNET_CONFIG, RES)
    cache = write_random_cache(root / "cache", clips=2, frames=24, resolution=RES, mel=True)
    ckpt = resolve("latentsync-1.5", base)
    return {"root": root, "ckpt": ckpt, "cache": cache, "vae": AutoencoderKL.from_pretrained(str(ckpt.vae)).requires_grad_(False)}


def _config(setup, output, stage=2, **overrides) -> TrainConfig:
    losses = overrides.pop("losses", UNetLossConfig(stage=stage))
    base = dict(cache=setup["cache"], output=output, checkpoints=setup["ckpt"].folder, num_frames=FRAMES,
                batch_size=2, learning_rate=1e-3, log_every=1, checkpoint_every=0, tensorboard=False,
                progress=False, losses=losses)
    return TrainConfig(**{**base, **overrides})


def _critics():
    return Critics(sync_loss=tiny_sync_loss(FRAMES), lpips=tiny_lpips(), trepa=tiny_trepa(frames=FRAMES))


def _batch(setup, n=2, start=0):
    data = WindowDataset(setup["cache"], FRAMES, seed=5)
    items = [data[start + i] for i in range(n)]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def _eval(objective, batch, seeds=(0, 1)):
    """Each loss term averaged over fixed noise/timestep draws (same draws before and after training)."""
    rows = []
    with torch.no_grad():
        for s in seeds:
            torch.manual_seed(s)
            rows.append({k: v.item() for k, v in objective.loss(batch).items() if v.ndim == 0})
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}


# ------------------------------------------------------------------------------------------------ noise, data
def test_mixed_noise_has_the_official_shared_and_independent_parts():
    torch.manual_seed(0)
    like = torch.zeros(4000, 1, 8, 1, 1)
    noise = training_noise(like, mixed=True, alpha=1.0)[:, 0, :, 0, 0]  # (n, f)
    corr = torch.corrcoef(noise.T)
    off_diagonal = corr[~torch.eye(8, dtype=torch.bool)]
    # eps = eps_shared * sqrt(a^2/(1+a^2)) + eps_ind * sqrt(1/(1+a^2)): unit variance, frame correlation 1/2 (a=1)
    assert noise.var().item() == pytest.approx(1.0, abs=0.05)
    assert off_diagonal.mean().item() == pytest.approx(0.5, abs=0.03)
    shared = training_noise(like, mixed=False)[:, 0, :, 0, 0]
    assert torch.equal(shared, shared[:, :1].expand_as(shared))  # one draw for every frame


def test_syncnet_mel_and_mel_windows_in_the_cache(setup):
    mel = syncnet_mel(torch.sin(torch.arange(16000) / 7.0).numpy())
    assert mel.shape[0] == 80 and mel.min() >= -4 and mel.max() <= 4
    assert mel_window_length(16) == 52
    item = WindowDataset(setup["cache"], 16, seed=1)[3]
    assert item["mel"].shape == (1, 80, 52) and item["faces"].shape == (16, 3, RES, RES)


# ------------------------------------------------------------------------------------ wiring of each loss
@pytest.mark.parametrize("term", ["simple", "sync", "lpips", "trepa"])
def test_each_loss_reaches_the_unet_and_nothing_frozen(setup, term):
    unet = load_unet(setup["ckpt"].unet, setup["ckpt"].unet_config).train()
    weights = {"simple_weight": 0.0, "sync_weight": 0.0, "lpips_weight": 0.0, "trepa_weight": 0.0}
    weights[f"{term}_weight"] = 1.0
    critics = _critics()
    objective = UNetObjective(unet, setup["vae"], UNetLossConfig(stage=2, **weights), sync_loss=critics.sync_loss,
                              lpips=critics.lpips, trepa=critics.trepa)
    torch.manual_seed(0)
    losses = objective.loss(_batch(setup))
    assert losses[term] > 0 and torch.isclose(losses["loss"], losses[term])
    losses["loss"].backward()
    assert unet.conv_out.weight.grad.abs().sum() > 0
    assert unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_k.weight.grad.abs().sum() > 0
    frozen = [setup["vae"], critics.sync_loss, critics.lpips, critics.trepa]
    assert all(p.grad is None for m in frozen for p in m.parameters())


def test_stage2_terms_fall_in_a_short_run(setup):
    """Each pixel-space term alone, 15 Adam steps on a fixed clip, evaluated on fixed noise draws."""
    figures = {}
    batch = _batch(setup, n=1)
    for term in ("sync", "lpips", "trepa"):
        unet = load_unet(setup["ckpt"].unet, setup["ckpt"].unet_config).train()
        critics = _critics()
        weights = {"simple_weight": 0.0, "sync_weight": 0.0, "lpips_weight": 0.0, "trepa_weight": 0.0,
                   f"{term}_weight": 1.0}
        objective = UNetObjective(unet, setup["vae"], UNetLossConfig(stage=2, **weights),
                                  sync_loss=critics.sync_loss, lpips=critics.lpips, trepa=critics.trepa)
        before = _eval(objective, batch)[term]
        optimizer = torch.optim.Adam(unet.parameters(), lr=2e-3)
        for step in range(15):
            torch.manual_seed(100 + step)
            objective.loss(batch)["loss"].backward()
            optimizer.step()
            optimizer.zero_grad()
        after = _eval(objective, batch)[term]
        figures[term] = (round(before, 5), round(after, 5))
        print(f"\nstage-2 {term} alone, 15 steps: {before:.5f} -> {after:.5f}")
        assert after < before, (term, before, after)  # the same noise draws before and after
    print("\nstage-2 terms alone, 15 steps (before, after):", json.dumps(figures))


# -------------------------------------------------------------------------------------------- the trainer
def test_stage1_lowers_the_simple_loss_and_saves_the_official_format(setup):
    out = setup["root"] / "stage1"
    final = train(_config(setup, out, stage=1, max_steps=30, log_every=10))
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    unet0 = load_unet(setup["ckpt"].unet, setup["ckpt"].unet_config)
    saved = torch.load(final / "latentsync_unet.pt", weights_only=True)
    assert saved["global_step"] == 30 and saved["state_dict"].keys() == unet0.state_dict().keys()
    trained = load_unet(final / "latentsync_unet.pt", resolve("latentsync-1.5", final).unet_config)  # strict
    batch = _batch(setup, start=50)
    objective = UNetObjective(unet0, setup["vae"], UNetLossConfig(stage=1))
    before = _eval(objective, batch)["simple"]
    objective.unet = trained
    after = _eval(objective, batch)["simple"]
    print(f"\nstage 1, 30 steps: simple loss {before:.4f} -> {after:.4f} (held-out windows); "
          f"logged {log[0]['simple']:.4f} (step 10) -> {log[-1]['simple']:.4f} (step 30)")
    assert after < 0.9 * before
    assert all(torch.equal(p, q) for p, q in zip(trained.state_dict().values(), saved["state_dict"].values()))
    assert (final / "sd-vae-ft-mse").is_symlink()  # the folder works as --checkpoints
    # The set records the Whisper windows of its training data (a cache written without the record: official).
    assert json.loads((final / "training_data.json").read_text()) == {"audio_windows": "official"}


def test_stage2_trains_only_the_official_modules_and_resumes_exactly(setup):
    root = setup["root"]
    kwargs = dict(max_steps=4, checkpoint_every=2, warmup_steps=3)
    straight = train(_config(setup, root / "s2", **kwargs), critics=_critics())
    shutil.copytree(root / "s2" / "checkpoint-2", root / "s2r" / "checkpoint-2")
    resumed = train(_config(setup, root / "s2r", resume="latest", **kwargs), critics=_critics())
    a, b = (torch.load(f / "latentsync_unet.pt", weights_only=True)["state_dict"] for f in (straight, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)
    logs = [[{k: v for k, v in json.loads(line).items() if k != "sec_per_step"}
             for line in (root / r / "log.jsonl").read_text().splitlines()] for r in ("s2", "s2r")]
    assert logs[1] == logs[0][2:]  # steps 3 and 4: identical losses (every term) and learning rates
    assert all(logs[0][0][k] > 0 for k in ("simple", "sync", "lpips", "trepa"))
    base = load_unet(setup["ckpt"].unet, setup["ckpt"].unet_config).state_dict()
    changed = {k for k in a if not torch.equal(a[k], base[k])}
    assert changed and all("motion_modules." in k or "attentions." in k for k in changed)  # official stage 2
    assert any("motion_modules." in k for k in changed) and any("attentions." in k for k in changed)


def test_lora_finetune_recipe_merges_into_an_official_checkpoint(setup):
    out = setup["root"] / "ft"
    cfg = _config(setup, out, max_steps=2, lora_rank=4, losses=UNetLossConfig(stage=2, lpips_weight=0.0))
    cfg.finetune, cfg.cache = None, setup["cache"]  # the recipe on an existing cache (videos: see README)
    final = train(cfg, critics=Critics(sync_loss=tiny_sync_loss(FRAMES), trepa=tiny_trepa(frames=FRAMES)))
    assert (final / "lora" / "adapter_model.safetensors").is_file()
    merged = load_unet(final / "latentsync_unet.pt", setup["ckpt"].unet_config)
    base = load_unet(setup["ckpt"].unet, setup["ckpt"].unet_config)
    assert any(not torch.equal(p, q) for p, q in zip(merged.state_dict().values(), base.state_dict().values()))


def test_missing_critics_and_bad_options_get_clear_errors(setup, tmp_path):
    with pytest.raises(CheckpointError, match="--syncnet"):
        train(_config(setup, tmp_path / "a", max_steps=1))
    with pytest.raises(CheckpointError, match="--trepa"):
        train(_config(setup, tmp_path / "b", max_steps=1, lpips=False,
                      losses=UNetLossConfig(stage=2, sync_weight=0.0)))
    with pytest.raises(CheckpointError, match="no UNet to start from"):
        train(_config(setup, tmp_path / "c", stage=1, max_steps=1, init_unet=tmp_path / "none.pt"))
    with pytest.raises(CheckpointError, match="not a checkpoint of train_unet"):
        (tmp_path / "d" / "checkpoint-1").mkdir(parents=True)
        train(_config(setup, tmp_path / "d", stage=1, max_steps=1, resume="latest"))


def test_cli_arguments_map_onto_the_config():
    cfg = parse_args(["--output", "o", "--cache", "c", "--stage", "1", "--lora-rank", "8", "--mixed-precision",
                      "bf16", "--gradient-checkpointing", "--hierarchical-temporal", "--adversarial"])
    assert (cfg.losses.stage, cfg.lora_rank, cfg.mixed_precision, cfg.gradient_checkpointing) == (1, 8, "bf16", True)
    assert cfg.improvements.hierarchical_temporal and cfg.num_frames == 32 and cfg.losses.smooth_weight == 1.0
    assert cfg.adversarial and not cfg.improvements.phoneme_audio
    d = parse_args(["--output", "o", "--cache", "c"])
    assert (d.losses.simple_weight, d.losses.sync_weight, d.losses.lpips_weight, d.losses.trepa_weight) == (
        1.0, 0.05, 0.1, 10.0)
    assert d.losses.use_mixed_noise and d.losses.mixed_noise_alpha == 1.0 and d.num_frames == 16


def test_stage2_lpips_offline_says_what_to_do(monkeypatch):
    """The default stage-2 LPIPS: the pinned lpips package supplies its layer weights (no download); torchvision's
    VGG16 weights come from the torch hub cache, and offline without them the trainer says what to do instead
    of a traceback. The download is stubbed to fail, so the test never touches the network."""
    import urllib.error

    import lpips
    import torchvision.models._api as tv_weights

    from latentsync_demo.training.unet_losses import LPIPS

    weights = Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth"  # what LPIPS.vgg() reads
    state = torch.load(weights, map_location="cpu", weights_only=True)
    assert [tuple(state[f"lin{k}.model.1.weight"].shape[:2]) for k in range(5)] == [
        (1, 64), (1, 128), (1, 256), (1, 512), (1, 512)]

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError(f"no network for {url}")

    monkeypatch.setattr(tv_weights, "load_state_dict_from_url", offline)
    with pytest.raises(CheckpointError, match=r"VGG16 ImageNet weights for LPIPS .* --lpips-weight 0"):
        LPIPS.vgg()
