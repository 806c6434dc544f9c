"""DeepCache in our UNet: the cached step's arithmetic, its schedule, and the official end-to-end outputs."""


import pytest
import torch
import torch.nn.functional as F

from latentsync_demo.models.deepcache import DeepCache
from latentsync_demo.testing.official_e2e import load_official_e2e, pool, step_latents
from latentsync_demo.testing.tiny_models import tiny_unet


def _inputs(unet, b=2, f=3, size=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 13, f, size, size, generator=gen)
    audio = torch.randn(b * f, 50, unet.config.cross_attention_dim, generator=gen)
    return x, audio


@torch.no_grad()
def test_cached_step_recomputes_only_the_shallow_branch():
    """Full steps equal the plain UNet; a cached step equals the README section-6 hand computation."""
    unet = tiny_unet()
    last = unet.up_blocks[-1]
    kept = []
    hook = last.motion_modules[-2].register_forward_hook(lambda m, a, out: kept.append(out))
    cache = DeepCache(interval=3)
    x0, audio = _inputs(unet, seed=1)
    cache.set_step(0)
    full = unet(x0, 801, audio, deepcache=cache).sample
    hook.remove()
    torch.testing.assert_close(full, unet(x0, 801, audio).sample, rtol=0, atol=0)
    h_star = kept[-1]  # output of up_blocks[-1] layer 1 (resnets[1] -> attentions[1] -> motion_modules[1])
    torch.testing.assert_close(cache.features, h_star, rtol=0, atol=0)

    x1, _ = _inputs(unet, seed=2)
    cache.set_step(1)
    cached = unet(x1, 601, audio, deepcache=cache).sample
    b, _, f, h, w = x1.shape
    flat = x1.permute(0, 2, 1, 3, 4).reshape(b * f, -1, h, w)
    temb = unet.time_embedding(unet.time_proj(torch.tensor([601, 601])))
    y = last.resnets[-1](torch.cat([h_star, unet.conv_in(flat)], dim=1), temb, f)
    y = last.motion_modules[-1](last.attentions[-1](y, audio), f)
    y = unet.conv_out(F.silu(unet.conv_norm_out(y, f)))
    expected = y.reshape(b, f, -1, h, w).permute(0, 2, 1, 3, 4)
    torch.testing.assert_close(cached, expected, rtol=0, atol=0)
    assert (cached - unet(x1, 601, audio).sample).abs().max() > 1e-2  # it really skipped the deep path


@torch.no_grad()
def test_schedule_is_every_third_step_and_reset_per_chunk():
    unet = tiny_unet()
    ran_mid = []
    hook = unet.mid_block.register_forward_hook(lambda *_: ran_mid.append(True))
    cache = DeepCache(3)
    x, audio = _inputs(unet, b=1, f=2, size=8)
    for step in range(7):
        cache.set_step(step)
        unet(x, 999 - 100 * step, audio, deepcache=cache)
    hook.remove()
    assert cache.full_steps == [True, False, False, True, False, False, True]
    assert len(ran_mid) == 3
    # A new chunk with another frame count: without reset() the stale cache is refused, not misused.
    x_short, audio_short = _inputs(unet, b=1, f=1, size=8)
    cache.set_step(1)
    with pytest.raises(RuntimeError, match="reset"):
        unet(x_short, 500, audio_short, deepcache=cache)
    cache.reset()
    assert cache.is_full_step


# ---- conformance: the official pipeline with and without DeepCache (reference README section 6) ----


@pytest.fixture(scope="module")
def official_case(reference_dir):
    return load_official_e2e(reference_dir)


# Max |diff| bounds at 3-5x what was measured (float32 CPU, 2 threads, `python bench/bench_conformance.py --only e2e`):
#   on:  step latents (pooled 4) 1.1e-5, final latents 3.6e-5, faces (pooled 8) 3.0e-6, faces 0 and 22 5.3e-6,
#        per-face mean |value| 6.0e-8;
#   off: 7.8e-6, 2.8e-5, 2.2e-6, 4.7e-6 and 8.9e-8.
# (The reference README's own float32-vs-float64 spread for such cases is up to 3.3e-5; a wrong DeepCache schedule
# or branch moves the faces by >= 0.1.)
E2E_BOUNDS = {
    "on": {"step_latents_pool4": 5e-5, "final_latents": 1.5e-4, "out_pool8": 1.4e-5, "out_full": 2.5e-5,
           "out_mean_abs": 2.9e-7},
    "off": {"step_latents_pool4": 3.8e-5, "final_latents": 1.3e-4, "out_pool8": 1.1e-5, "out_full": 2.3e-5,
            "out_mean_abs": 4e-7},
}


@pytest.mark.parametrize("mode", ["on", "off"])
def test_reproduces_official_e2e_with_and_without_deepcache(official_case, reference_dir, mode):
    pipeline, faces, inputs = official_case
    expected = torch.load(reference_dir / f"e2e_deepcache_{mode}.pt", weights_only=True)
    full_steps = []
    hooks = [pipeline.unet.register_forward_pre_hook(lambda *_: full_steps.append(False)),
             pipeline.unet.mid_block.register_forward_hook(lambda *_: full_steps.__setitem__(-1, True))]
    pipeline.scheduler.recorded = []
    try:
        out = pipeline(faces, inputs["whisper_chunks"], num_inference_steps=5, guidance_scale=1.5,
                       generator=torch.Generator().manual_seed(int(inputs["seed"])), deepcache=mode == "on")
    finally:
        for hook in hooks:
            hook.remove()

    assert torch.tensor(full_steps).reshape(2, 5).tolist() == expected["unet_full_step"].tolist()
    recorded = pipeline.scheduler.recorded  # chunk 0 steps 0..4, then chunk 1 steps 0..4
    steps = step_latents(recorded)  # (5, 4, 23, 32, 32)
    bound = E2E_BOUNDS[mode]
    torch.testing.assert_close(pool(steps, 4), expected["step_latents_pool4"], rtol=0, atol=bound["step_latents_pool4"])
    torch.testing.assert_close(steps[-1][None], expected["final_latents"], rtol=0, atol=bound["final_latents"])
    torch.testing.assert_close(pool(out, 8), expected["out_pool8"], rtol=0, atol=bound["out_pool8"])
    torch.testing.assert_close(out[expected["out_full_index"]], expected["out_full"], rtol=0, atol=bound["out_full"])
    torch.testing.assert_close(out.abs().mean(dim=(1, 2, 3)), expected["out_mean_abs"], rtol=0,
                               atol=bound["out_mean_abs"])
