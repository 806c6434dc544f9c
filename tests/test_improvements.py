"""The three improvements (phoneme-aware audio, lip-region adversarial loss, hierarchical temporal attention):
off = the official model, on = the official outputs at step 0, wired, trainable, resumable (CPU, tiny models)."""

import json
import shutil

import pytest
import torch
from diffusers import AutoencoderKL

from latentsync_demo.models import load_unet
from latentsync_demo.models.hierarchical import hierarchical_mask
from latentsync_demo.models.improvements import Improvements, apply_improvements, load_improved_unet
from latentsync_demo.store import resolve
from latentsync_demo.testing.tiny_lcm import write_random_cache, write_teacher_set
from latentsync_demo.testing.tiny_models import MICRO_UNET_CONFIG, TINY_AUDIO_DIM, tiny_unet
from latentsync_demo.training.adversarial import CROP, MultiScalePatchGAN, adversarial_weight, mouth_box, mouth_crops
from latentsync_demo.training.data import WindowDataset
from latentsync_demo.training.train_unet import Critics, TrainConfig, train
from latentsync_demo.training.unet_objective import UNetLossConfig, UNetObjective

RES, W2V = 32, 24


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("improve")
    base = write_teacher_set(root / "base", MICRO_UNET_CONFIG, RES)
    cache = write_random_cache(root / "cache", clips=1, frames=40, resolution=RES, mel=True, wav2vec_dim=W2V)
    ckpt = resolve("latentsync-1.5", base)
    return {"root": root, "ckpt": ckpt, "cache": cache,
            "vae": AutoencoderKL.from_pretrained(str(ckpt.vae)).requires_grad_(False)}


def _official(setup):
    return load_unet(setup["ckpt"].unet, setup["ckpt"].unet_config)


def _inputs(frames=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, 13, frames, 4, 4, generator=g), torch.tensor([600]),
            torch.randn(1, frames, 50, TINY_AUDIO_DIM, generator=g), torch.randn(1, frames, 10, W2V, generator=g))


def _batch(setup, frames, n=1):
    data = WindowDataset(setup["cache"], frames, seed=3)
    items = [data[i] for i in range(n)]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


# -------------------------------------------------------------------------------------------- switches off
def test_switches_off_leave_the_official_model_untouched(setup):
    unet, reference = _official(setup), _official(setup)
    assert apply_improvements(unet, Improvements()) is None
    assert unet.state_dict().keys() == reference.state_dict().keys()
    x, t, audio, _ = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(unet(x, t, audio).sample, reference(x, t, audio).sample, rtol=0, atol=0)
    assert not UNetObjective(unet, setup["vae"], UNetLossConfig(stage=1)).pixel_space


# -------------------------------------------------------------------------------------- phoneme-aware audio
def test_phoneme_audio_equals_the_official_model_at_step_0_and_opens_in_training(setup, tmp_path):
    official, unet = _official(setup), _official(setup)
    imp = Improvements(phoneme_audio=True, wav2vec_dim=W2V, fused_audio_dim=96)
    fusion = apply_improvements(unet, imp)
    attn2 = unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2
    assert attn2.to_k.weight.shape[1] == 96 and unet.config.cross_attention_dim == 96
    x, t, audio, w2v = _inputs()
    fused = fusion(audio, w2v)
    assert fused.shape == (1, 4, 50, 96) and torch.equal(fused[..., :TINY_AUDIO_DIM], audio)
    assert torch.equal(fused[0, 0, 5, TINY_AUDIO_DIM:], fused[0, 0, 9, TINY_AUDIO_DIM:])  # tokens 5..9 = time 1
    with torch.no_grad():
        torch.testing.assert_close(unet(x, t, fused).sample, official(x, t, audio).sample, rtol=0, atol=0)

    # wiring: the simple loss reaches the new key/value columns at once, the fusion after they open
    objective = UNetObjective(unet.train(), setup["vae"], UNetLossConfig(stage=1), fusion=fusion)
    optimizer = torch.optim.Adam(list(unet.parameters()) + list(fusion.parameters()), lr=1e-3)
    batch = _batch(setup, 4, n=2)
    for step in range(2):
        torch.manual_seed(step)
        objective.loss(batch)["loss"].backward()
        if step == 0:
            assert attn2.to_k.weight.grad[:, TINY_AUDIO_DIM:].abs().sum() > 0
            assert fusion.proj.weight.grad is None or fusion.proj.weight.grad.abs().sum() == 0
        else:
            assert fusion.proj.weight.grad.abs().sum() > 0
        optimizer.step()
        optimizer.zero_grad()
    assert attn2.to_k.weight[:, TINY_AUDIO_DIM:].abs().sum() > 0

    # saved with improvements.json + audio_fusion/, reloaded strictly
    from latentsync_demo.models import save_unet_checkpoint
    save_unet_checkpoint(unet, tmp_path / "latentsync_unet.pt")
    imp.save(tmp_path)
    fusion.save_pretrained(str(tmp_path / "audio_fusion"))
    loaded, loaded_fusion = load_improved_unet(tmp_path / "latentsync_unet.pt", setup["ckpt"].unet_config,
                                               Improvements.load(tmp_path))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t, loaded_fusion(audio, w2v)).sample,
                                   unet.eval()(x, t, fusion(audio, w2v)).sample)


# ---------------------------------------------------------------------------- hierarchical temporal attention
def test_hierarchical_mask_is_a_local_window_plus_keyframes():
    mask = hierarchical_mask(20, window=5, keyframe_every=8)
    assert mask[10].nonzero().flatten().tolist() == [0, 8, 9, 10, 11, 12, 16]
    assert mask[:, 0].all() and mask[:, 8].all() and mask[:, 16].all()  # every frame sees every keyframe
    assert not mask[3, 6]


def test_hierarchical_attention_keeps_official_outputs_at_step_0_and_runs_long_clips(setup):
    official, unet = _official(setup), _official(setup)
    apply_improvements(unet, Improvements(hierarchical_temporal=True))
    new = [k for k in unet.state_dict() if ".hierarchical." in k]
    assert new and set(unet.state_dict()) - set(new) == set(official.state_dict())
    for frames in (16, 40):  # 40 > the official 24-frame position table: the sinusoid continues
        x, t, audio, _ = _inputs(frames)
        with torch.no_grad():
            torch.testing.assert_close(unet(x, t, audio).sample, official(x, t, audio).sample, rtol=0, atol=0)
    # wiring: gradients reach the new layers (their zero output projection first)
    objective = UNetObjective(unet.train(), setup["vae"], UNetLossConfig(stage=1, smooth_weight=1.0))
    torch.manual_seed(0)
    losses = objective.loss(_batch(setup, 32))
    assert losses["smooth"] > 0
    losses["loss"].backward()
    to_out = unet.down_blocks[0].motion_modules[0].hierarchical.to_out
    assert to_out.weight.grad.abs().sum() > 0


def test_smoothness_and_hierarchical_training_on_32_frame_clips(setup):
    """train() with --hierarchical-temporal settings: 32-frame clips, the smoothness loss falls."""
    out = setup["root"] / "hier"
    imp = Improvements(hierarchical_temporal=True)
    cfg = TrainConfig(output=out, cache=setup["cache"], checkpoints=setup["ckpt"].folder, num_frames=32,
                      batch_size=1, learning_rate=1.5e-3, max_steps=10, log_every=5, checkpoint_every=0,
                      tensorboard=False, progress=False, trainable="official", improvements=imp,
                      losses=UNetLossConfig(stage=1, smooth_weight=1.0))
    final = train(cfg)
    unet0 = _official(setup)
    apply_improvements(unet0, imp)
    trained, _ = load_improved_unet(final / "latentsync_unet.pt", setup["ckpt"].unet_config, Improvements.load(final))
    batch = _batch(setup, 32)
    figures = {}
    for name, model in (("before", unet0), ("after", trained)):
        objective = UNetObjective(model, setup["vae"], UNetLossConfig(stage=1, smooth_weight=1.0))
        with torch.no_grad():
            rows = []
            for s in range(2):
                torch.manual_seed(s)
                rows.append(objective.loss(batch))
        figures[name] = {k: round(sum(r[k].item() for r in rows) / 2, 4) for k in ("simple", "smooth")}
    print("\nhierarchical, 10 steps on 32-frame clips:", json.dumps(figures))
    assert figures["after"]["smooth"] < figures["before"]["smooth"]  # the same noise draws before and after
    changed = [k for k, v in trained.state_dict().items() if ".hierarchical." in k and "to_out" in k and v.abs().sum() > 0]
    assert changed  # the new layers left zero


# ------------------------------------------------------------------------------------ lip-region adversarial
def test_mouth_crops_come_from_the_fixed_mask_region():
    top, bottom, left, right = mouth_box(256)
    assert (top, bottom) == (95, 243) and bottom - top == right - left and abs((left + right) / 2 - 128) <= 1
    faces = torch.rand(2, 3, 3, 64, 64)
    assert mouth_crops(faces, mouth_box(64)).shape == (6, 3, CROP, CROP)
    logits = MultiScalePatchGAN(channels=8)(torch.rand(2, 3, CROP, CROP))
    assert len(logits) == 3 and logits[0].shape[-1] > logits[1].shape[-1] > logits[2].shape[-1]
    assert adversarial_weight(0, 0.1, start=10, warmup=100) == 0
    assert adversarial_weight(59, 0.1, start=10, warmup=100) == pytest.approx(0.05)
    assert adversarial_weight(500, 0.1, start=10, warmup=100) == pytest.approx(0.1)


def test_adversarial_loss_is_wired_and_each_side_learns(setup):
    unet = _official(setup).train()
    disc = MultiScalePatchGAN(channels=8)
    cfg = UNetLossConfig(stage=2, simple_weight=0.0, adv_weight=1.0, adv_warmup=1)
    objective = UNetObjective(unet, setup["vae"], cfg, discriminator=disc)
    batch = _batch(setup, 4, n=2)
    torch.manual_seed(0)
    losses = objective.loss(batch, step=5)
    losses["loss"].backward()
    assert unet.conv_out.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in disc.parameters())  # the generator's term trains the UNet only
    unet.zero_grad()
    objective.discriminator_loss(losses).backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in unet.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in disc.parameters())

    def evaluate():
        torch.manual_seed(7)
        with torch.no_grad():
            out = objective.loss(batch, step=5)
            return out["adv"].item(), objective.discriminator_loss(out).item()

    g0, d0 = evaluate()
    d_opt = torch.optim.Adam(disc.parameters(), lr=2e-3, betas=(0.5, 0.999))
    for step in range(15):  # the discriminator alone, the UNet fixed
        torch.manual_seed(7)
        d_opt.zero_grad()
        objective.discriminator_loss(objective.loss(batch, step=5)).backward()
        d_opt.step()
    g1, d1 = evaluate()
    g_opt = torch.optim.Adam(unet.parameters(), lr=1e-3)
    for step in range(15):  # the UNet alone against the now fixed discriminator
        torch.manual_seed(7)
        g_opt.zero_grad()
        objective.loss(batch, step=5)["loss"].backward()
        g_opt.step()
    g2, _ = evaluate()
    print(f"\nadversarial (hinge): D loss {d0:.4f} -> {d1:.4f} (15 D steps); "
          f"G loss {g1:.4f} -> {g2:.4f} (15 G steps)")
    assert d1 < 0.9 * d0 and g2 < g1 - 0.05


def test_all_improvements_train_resume_exactly_and_save_apart(setup):
    root = setup["root"]
    imp = Improvements(phoneme_audio=True, wav2vec_dim=W2V, fused_audio_dim=96, hierarchical_temporal=True)

    def cfg(out, **kw):
        return TrainConfig(output=out, cache=setup["cache"], checkpoints=setup["ckpt"].folder, num_frames=4,
                           batch_size=1, learning_rate=1e-3, max_steps=4, log_every=1, checkpoint_every=2,
                           tensorboard=False, progress=False, improvements=imp, adversarial=True,
                           losses=UNetLossConfig(stage=2, sync_weight=0.0, lpips_weight=0.0, trepa_weight=0.0,
                                                 smooth_weight=1.0, adv_warmup=2), **kw)

    straight = train(cfg(root / "all"), critics=Critics())
    shutil.copytree(root / "all" / "checkpoint-2", root / "allr" / "checkpoint-2")
    resumed = train(cfg(root / "allr", resume="latest"), critics=Critics())
    logs = [[{k: v for k, v in json.loads(line).items() if k != "sec_per_step"}
             for line in (root / r / "log.jsonl").read_text().splitlines()] for r in ("all", "allr")]
    assert logs[1] == logs[0][2:] and logs[0][-1]["adv"] != 0 and logs[0][-1]["disc"] > 0
    for name in ("audio_fusion/diffusion_pytorch_model.safetensors", "discriminator/diffusion_pytorch_model.safetensors"):
        assert (straight / name).read_bytes() == (resumed / name).read_bytes(), name
    # The UNet file is a torch pickle (its bytes need not repeat): compare what it holds.
    ua, ub = (torch.load(f / "latentsync_unet.pt", weights_only=True) for f in (straight, resumed))
    assert ua["global_step"] == ub["global_step"] == 4
    sa, sb = ua["state_dict"], ub["state_dict"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not any("discriminator" in k for k in sa)  # never part of the UNet
    unet, fusion = load_improved_unet(straight / "latentsync_unet.pt", setup["ckpt"].unet_config,
                                      Improvements.load(straight))
    assert fusion is not None and unet.config.cross_attention_dim == 96


@pytest.mark.parametrize("which", ["hierarchical", "phoneme"])
def test_improved_weights_without_their_sidecar_say_what_is_missing(setup, tmp_path, which):
    from latentsync_demo.errors import CheckpointError
    from latentsync_demo.models import save_unet_checkpoint

    unet = _official(setup)
    imp = (Improvements(hierarchical_temporal=True) if which == "hierarchical"
           else Improvements(phoneme_audio=True, wav2vec_dim=W2V, fused_audio_dim=96))
    apply_improvements(unet, imp)
    save_unet_checkpoint(unet, tmp_path / "latentsync_unet.pt")  # improvements.json deliberately not written
    with pytest.raises(CheckpointError, match="improvements.json") as err:
        load_unet(tmp_path / "latentsync_unet.pt", setup["ckpt"].unet_config)
    assert "unexpected" in str(err.value) or "wrong shape" in str(err.value)  # the keys are still listed
    official = tmp_path / "official.pt"
    save_unet_checkpoint(_official(setup), official)
    load_unet(official, setup["ckpt"].unet_config)  # plain official weights load as before


def test_phoneme_audio_training_writes_its_validation_video(setup):
    """The validation video hears the fused whisper + Wav2Vec2 chunks (it was skipped for phoneme audio)."""
    from latentsync_demo.media import probe

    out = setup["root"] / "phoneme_val"
    imp = Improvements(phoneme_audio=True, wav2vec_dim=W2V, fused_audio_dim=96)
    train(TrainConfig(output=out, cache=setup["cache"], checkpoints=setup["ckpt"].folder, num_frames=4,
                      batch_size=1, learning_rate=1e-3, max_steps=1, log_every=1, checkpoint_every=0,
                      validation_every=1, validation_steps=2, tensorboard=False, progress=False, improvements=imp,
                      losses=UNetLossConfig(stage=1)))
    video = out / "validation" / "step-000001.mp4"
    info = probe(video)
    assert (info.width, info.height) == (2 * RES, RES) and info.duration > 0
