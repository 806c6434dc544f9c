"""LCM sampling and latent consistency distillation, on tiny random models (CPU, offline).

The evidence test distils a student from a random two-level teacher on random data and prints its figures
(run ``pytest -s tests/test_lcm.py``). With a random teacher, DDIM at 4 steps is far off its 50-step
result, so the LCM sampler beats it even on the undistilled teacher; what shows the distillation working is
that the student's own 4- and 1-step LCM outputs move measurably closer to the teacher's 50-step DDIM (CFG 1.5).
"""

import json
import shutil

import pytest
import torch
from diffusers import AutoencoderKL
from safetensors.torch import load_file, save_file

from latentsync_demo.audio import WhisperAudioEncoder
from latentsync_demo.errors import CheckpointError
from latentsync_demo.media import load_audio
from latentsync_demo.models import load_unet
from latentsync_demo.models.lcm import LORA_WEIGHTS_FILE, add_lora, load_lcm_unet, load_lora, save_lora
from latentsync_demo.pipeline import SAMPLERS, LipSyncPipeline, make_scheduler
from latentsync_demo.loading import load_lcm_unet as load_set_lcm_unet
from latentsync_demo.store import resolve
from latentsync_demo.testing.tiny_checkpoints import write_tiny_checkpoints
from latentsync_demo.testing.media import make_talking_head_clip
from latentsync_demo.testing.tiny_lcm import write_random_cache, write_teacher_set, write_tiny_lcm
from latentsync_demo.testing.tiny_models import MICRO_UNET_CONFIG, TINY_AUDIO_DIM, tiny_unet
from latentsync_demo.training.consistency import EMA, LCDConfig, LCMDistiller, boundary_scalings
from latentsync_demo.training.data import WindowDataset
from latentsync_demo.training.data import main as data_main
from latentsync_demo.training.lcm_distill import TrainConfig, parse_args, train
from latentsync_demo.training.syncnet import load_syncnet

RES = 32  # faces; latents are 4x4


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The micro models' ops are too small to split across threads: with 2 OpenMP threads on a busy 2-core
    machine the distillation ran ~10x slower (threads spin waiting for each other), with 1 it is as fast
    as on an idle one. Same computation, same assertions."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("lcm")
    teacher_dir = write_teacher_set(root / "teacher", MICRO_UNET_CONFIG, RES)
    cache = write_random_cache(root / "cache", clips=2, frames=40, resolution=RES)
    ckpt = resolve("latentsync-1.5", teacher_dir)
    return {"root": root, "ckpt": ckpt, "cache": cache, "teacher": load_unet(ckpt.unet, ckpt.unet_config),
            "vae": AutoencoderKL.from_pretrained(str(ckpt.vae))}


def _config(setup, output, **overrides) -> TrainConfig:
    base = dict(cache=setup["cache"], output=output, checkpoints=setup["ckpt"].folder, num_frames=4, batch_size=4,
                learning_rate=3e-4, log_every=1, checkpoint_every=0)
    return TrainConfig(**{**base, **overrides})


def _faces_audio(n=20, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, 3, RES, RES), dtype=torch.uint8, generator=gen),
            torch.randn(n, 50, TINY_AUDIO_DIM, generator=gen))


# ------------------------------------------------------------------------------------------------------- sampler
def test_lcm_scheduler_matches_the_distillation_schedule():
    scheduler = make_scheduler("lcm")
    assert SAMPLERS["lcm"].default_steps == 4 and not SAMPLERS["lcm"].uses_guidance
    assert (SAMPLERS["lcm"].min_steps, SAMPLERS["lcm"].max_steps) == (1, 8)
    torch.testing.assert_close(scheduler.alphas_cumprod, make_scheduler("ddim").alphas_cumprod, rtol=0, atol=0)
    scheduler.set_timesteps(4)
    assert scheduler.timesteps.tolist() == [999, 759, 499, 259]  # all on the solver's 19, 39, ..., 999 grid
    c_skip, c_out = boundary_scalings(torch.tensor([259]))
    assert (c_skip.item(), c_out.item()) == pytest.approx(scheduler.get_scalings_for_boundary_condition_discrete(259))


def test_lcm_calls_the_unet_steps_times_per_chunk_without_guidance(setup):
    faces, audio = _faces_audio(20)  # two chunks: 16 + 4 frames
    unet = setup["teacher"]
    batches = []
    hook = unet.register_forward_hook(lambda m, args, out: batches.append(args[0].shape[0]))
    try:
        lcm = LipSyncPipeline(unet, setup["vae"], make_scheduler("lcm"))
        a = lcm(faces, audio, num_inference_steps=4, guidance_scale=1.5, seed=3)
        assert batches == [1] * 8 and lcm.unet_calls == 8  # 4 per chunk, never doubled for guidance
        b = lcm(faces, audio, num_inference_steps=4, guidance_scale=3.0, seed=3)  # the scale is ignored
        batches.clear()
        ddim = LipSyncPipeline(unet, setup["vae"], make_scheduler("ddim"))
        ddim(faces, audio, num_inference_steps=4, guidance_scale=1.5, seed=3)
        assert batches == [2] * 8 and ddim.unet_calls == 8  # 4 per chunk, each a batch of 2 (CFG)
    finally:
        hook.remove()
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    c = lcm(faces, audio, num_inference_steps=4, seed=4)
    assert not torch.equal(a, c)  # the seed drives the initial and the injected noise


# -------------------------------------------------------------------------------------------- the evidence
def _distance_to_ddim50(teacher, student, vae, windows):
    """Mean latent MSE to the teacher's 50-step DDIM (CFG 1.5) per sampler, averaged over the windows/seeds."""
    rows = []
    for seed, window in enumerate(windows):
        faces, audio = window["faces"], window["audio"]

        def run(unet, sampler, steps):
            pipe = LipSyncPipeline(unet, vae, make_scheduler(sampler))
            return pipe(faces, audio, steps, guidance_scale=1.5, seed=seed, output_type="latent")

        ref = run(teacher, "ddim", 50)
        rows.append([(run(*args) - ref).square().mean().item() for args in (
            (teacher, "ddim", 4), (teacher, "lcm", 4), (teacher, "lcm", 1), (student, "lcm", 4), (student, "lcm", 1))])
    return dict(zip(("ddim4", "lcm4_undistilled", "lcm1_undistilled", "lcm4_student", "lcm1_student"),
                    torch.tensor(rows).mean(0).tolist()))


def test_distilled_student_approaches_50_step_ddim_in_4_steps(setup):
    steps = 200
    folder = train(_config(setup, setup["root"] / "evidence", max_steps=steps, log_every=50))
    student = load_lcm_unet(folder, setup["ckpt"].unet_config)
    dataset = WindowDataset(setup["cache"], num_frames=8, seed=123)
    d = _distance_to_ddim50(setup["teacher"], student, setup["vae"], [dataset[i] for i in range(4)])
    print("\nLCD evidence (latent MSE to teacher DDIM-50+CFG, 4 seeds, "
          f"{steps} steps, batch 4x4 frames): " + json.dumps({k: round(v, 3) for k, v in d.items()}))
    assert d["lcm4_student"] < d["ddim4"]  # the brief's criterion
    assert d["lcm4_student"] < 0.95 * d["lcm4_undistilled"]  # ... and it is the distillation's doing
    assert d["lcm1_student"] < 0.75 * d["lcm1_undistilled"]  # the consistency function itself, no injected noise


# ------------------------------------------------------------------------------------------ checkpoints, LoRA
def test_resume_continues_at_the_saved_step_with_identical_state(setup):
    root = setup["root"]
    straight = train(_config(setup, root / "straight", max_steps=4, checkpoint_every=2, warmup_steps=3))
    shutil.copytree(root / "straight" / "checkpoint-2", root / "resumed" / "checkpoint-2")
    resumed = train(_config(setup, root / "resumed", max_steps=4, checkpoint_every=2, warmup_steps=3, resume="latest"))
    a = torch.load(straight / "latentsync_unet.pt", weights_only=True)
    b = torch.load(resumed / "latentsync_unet.pt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 4
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    ema_a, ema_b = (torch.load(r / "checkpoint-4" / "custom_checkpoint_0.pkl", weights_only=False)
                    for r in (root / "straight", root / "resumed"))
    assert all(torch.equal(x, y) for x, y in zip(ema_a["shadow"], ema_b["shadow"], strict=True))
    logs = [(root / r / "log.jsonl").read_text().splitlines() for r in ("straight", "resumed")]
    strip = [[{k: v for k, v in json.loads(line).items() if k != "sec_per_step"} for line in log] for log in logs]
    assert strip[1] == strip[0][2:]  # steps 3 and 4: same losses and learning rates


def test_lora_distillation_saves_and_loads_with_the_same_outputs(setup):
    folder = train(_config(setup, setup["root"] / "lora", max_steps=3, lora_rank=4, checkpoint_every=2))
    assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    assert (setup["root"] / "lora" / "checkpoint-2" / "lcm" / LORA_WEIGHTS_FILE).is_file()
    teacher = setup["teacher"]
    merged = load_lcm_unet(folder, setup["ckpt"].unet_config, base_unet=teacher)  # teacher stays untouched
    active = load_lora(load_unet(setup["ckpt"].unet, setup["ckpt"].unet_config), folder, merge=False)
    faces, audio = _faces_audio(8)
    outs = [LipSyncPipeline(u, setup["vae"], make_scheduler("lcm"))(faces, audio, 4, seed=1, output_type="latent")
            for u in (merged, active, teacher)]
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-4)
    assert (outs[0] - outs[2]).abs().max() > 1e-4  # three steps of training did change something
    resaved = save_lora(active, setup["root"] / "lora_resaved")
    a, b = load_file(folder / LORA_WEIGHTS_FILE), load_file(resaved / LORA_WEIGHTS_FILE)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_lora_round_trip_on_the_tiny_unet_and_strict_keys(tmp_path):
    model = add_lora(tiny_unet(), rank=4, init="gaussian")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    x, t, audio = torch.randn(1, 13, 3, 8, 8), torch.tensor([500]), torch.randn(1, 3, 50, TINY_AUDIO_DIM)
    with torch.no_grad():
        expected = model(x, t, audio).sample
    folder = save_lora(model, tmp_path / "lcm")
    loaded = load_lcm_unet(folder, {}, base_unet=tiny_unet())
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t, audio).sample, expected, rtol=1e-5, atol=1e-5)
    weights = load_file(folder / LORA_WEIGHTS_FILE)
    dropped = sorted(weights)[0]
    weights["base_model.model.conv_in.lora_A.weight"] = weights.pop(dropped)
    save_file(weights, str(folder / LORA_WEIGHTS_FILE))
    with pytest.raises(CheckpointError) as info:
        load_lcm_unet(folder, {}, base_unet=tiny_unet())
    assert "1 missing" in str(info.value) and dropped in str(info.value) and "1 unexpected" in str(info.value)


def test_tiny_lcm_students_load_through_the_store(tmp_path, monkeypatch):
    tiny = write_tiny_checkpoints(tmp_path / "tiny")  # now includes lcm/ (a full copy of the tiny UNet)
    ckpt = resolve("latentsync-1.5", tiny)
    assert ckpt.lcm == tiny / "lcm" and ckpt.has_lcm()
    reference = tiny_unet().state_dict()
    full = load_set_lcm_unet(ckpt)
    assert all(torch.equal(v, reference[k]) for k, v in full.state_dict().items())

    write_tiny_lcm(tmp_path / "lora_set", lora=True)
    shutil.rmtree(tiny / "lcm")
    shutil.copytree(tmp_path / "lora_set" / "lcm", tiny / "lcm")
    base = tiny_unet()
    student = load_set_lcm_unet(ckpt, base_unet=base).state_dict()
    assert student.keys() == reference.keys()
    assert any(not torch.equal(v, reference[k]) for k, v in student.items())  # the LoRA is merged in
    assert all(torch.equal(v, reference[k]) for k, v in base.state_dict().items())  # the given base is untouched
    from_file = load_set_lcm_unet(ckpt).state_dict()  # base read from latentsync_unet.pt instead
    assert all(torch.equal(v, student[k]) for k, v in from_file.items())

    shutil.rmtree(tiny / "lcm")
    assert not ckpt.has_lcm()
    monkeypatch.delenv("LATENTSYNC_LCM_REPO", raising=False)
    with pytest.raises(CheckpointError, match="No public LatentSync LCM student") as info:
        load_set_lcm_unet(ckpt)
    assert str(tiny / "lcm" / "latentsync_unet.pt") in str(info.value) and "adapter_config.json" in str(info.value)
    monkeypatch.setenv("LATENTSYNC_LCM_REPO", "someone/latentsync-lcm")
    with pytest.raises(CheckpointError, match="someone/latentsync-lcm"):
        load_set_lcm_unet(ckpt)


# ------------------------------------------------------------------------------------- training odds and ends
def test_gradient_checkpointing_gives_the_same_training(setup):
    plain = train(_config(setup, setup["root"] / "plain", max_steps=2))
    checkpointed = train(_config(setup, setup["root"] / "gc", max_steps=2, gradient_checkpointing=True))
    a, b = (torch.load(f / "latentsync_unet.pt", weights_only=True)["state_dict"] for f in (plain, checkpointed))
    assert all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6) for k in a)


def test_sync_loss_interface_and_syncnet_flag(setup, tmp_path):
    class ToySync(torch.nn.Module):  # "mouth brightness should follow the audio energy"
        def forward(self, faces, audio):
            return (faces[:, :, :, faces.shape[3] // 2:].mean((2, 3, 4)) - audio.abs().mean((2, 3))).square().mean()

    student = load_unet(setup["ckpt"].unet, setup["ckpt"].unet_config)
    params = list(student.parameters())
    distiller = LCMDistiller(student, setup["teacher"], student, setup["vae"], EMA(params, 0.95),
                             LCDConfig(sync_weight=0.5), sync_loss=ToySync())
    batch = WindowDataset(setup["cache"], num_frames=4)[0]
    torch.manual_seed(0)
    losses = distiller.loss({k: v[None] for k, v in batch.items()})
    assert losses["sync"] > 0 and torch.isclose(losses["loss"], losses["lcd"] + 0.5 * losses["sync"])
    losses["loss"].backward()
    assert student.conv_out.weight.grad.abs().sum() > 0

    exported = torch.export.export(ToySync(), (torch.randn(1, 4, 3, RES, RES), torch.randn(1, 4, 50, TINY_AUDIO_DIM)))
    torch.export.save(exported, str(tmp_path / "toy.pt2"))
    faces, audio = torch.rand(1, 4, 3, RES, RES) * 2 - 1, torch.randn(1, 4, 50, TINY_AUDIO_DIM)
    torch.testing.assert_close(load_syncnet(tmp_path / "toy.pt2")(faces, audio), ToySync()(faces, audio))
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "stable_syncnet.pt")
    for name, message in (("missing.pt", "does not exist"), ("junk.pt", "not a PyTorch archive"),
                          ("stable_syncnet.pt", "state dict")):
        with pytest.raises(CheckpointError, match=message):
            train(_config(setup, tmp_path / "run", max_steps=1, syncnet=tmp_path / name))


def test_videos_are_cached_as_aligned_faces_and_whisper_chunks(tiny_checkpoints, tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    make_talking_head_clip(videos / "talk.mp4", seconds=1.2, fps=25, size=(200, 200))
    tiny = tiny_checkpoints
    assert data_main([str(videos), str(tmp_path / "cache"), "--checkpoints", str(tiny), "--resolution", "32",
                      "--min-frames", "8"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["clips"] == 1
    clip = load_file(tmp_path / "cache" / "talk_000.safetensors")
    n = len(clip["faces"])
    assert n == 30 and clip["faces"].dtype == torch.uint8 and clip["faces"].shape[1:] == (3, 32, 32)
    encoder = WhisperAudioEncoder.from_openai_checkpoint(resolve("latentsync-1.5", tiny).whisper)
    chunks = encoder.frame_chunks(encoder.encode(load_audio(videos / "talk.mp4")), frame_indices=range(n))
    torch.testing.assert_close(clip["audio"], chunks, rtol=0, atol=0)  # exactly the inference chunks

    dataset = WindowDataset(tmp_path / "cache", num_frames=8, seed=1)
    item = dataset[5]
    assert item["faces"].shape == (8, 3, 32, 32) and item["audio"].shape == (8, 50, TINY_AUDIO_DIM)
    _, start, ref = dataset.window(5)
    assert abs(start - ref) >= 8 and torch.equal(item["faces"], clip["faces"][start:start + 8])
    assert dataset.window(5) == WindowDataset(tmp_path / "cache", num_frames=8, seed=1).window(5)  # resumable


def test_cli_arguments_map_onto_the_config():
    cfg = parse_args(["--cache", "c", "--output", "o", "--lora-rank", "64", "--guidance-scale", "2", "--loss", "l2",
                      "--max-steps", "7", "--mixed-precision", "bf16", "--gradient-checkpointing"])
    assert (cfg.lora_rank, cfg.max_steps, cfg.mixed_precision, cfg.gradient_checkpointing) == (64, 7, "bf16", True)
    assert (cfg.lcd.guidance_scale, cfg.lcd.loss, cfg.lcd.ddim_steps, cfg.lcd.ema_decay) == (2.0, "l2", 50, 0.95)
