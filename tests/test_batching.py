"""Batched chunks: several 16-frame chunks through the VAE and the UNet at once equal one-by-one generation."""

import pytest
import torch

from latentsync_demo.pipeline import LipSyncPipeline, make_scheduler
from latentsync_demo.pipeline.batching import auto_chunk_batch
from latentsync_demo.testing.tiny_models import TINY_AUDIO_DIM, tiny_unet, tiny_vae

RES = 32


@pytest.fixture(scope="module")
def models():
    # float64: the tiny random UNet amplifies float32 rounding to ~3e-4 (float32 vs float64, batched or not), so
    # the batch-size-dependent kernel choice alone would exceed 1e-5; in float64 only a real coupling would.
    return tiny_unet().double(), tiny_vae().double()


@pytest.fixture(scope="module")
def clip():
    gen = torch.Generator().manual_seed(7)
    faces = torch.randint(0, 256, (53, 3, RES, RES), dtype=torch.uint8, generator=gen)  # 3 full chunks + 5 frames
    return faces, torch.randn(53, 50, TINY_AUDIO_DIM, generator=gen, dtype=torch.float64)


def _run(models, clip, sampler="ddim", deepcache=False, chunk_batch=1, **kwargs):
    unet, vae = models
    pipe = LipSyncPipeline(unet, vae, make_scheduler(sampler))
    batches = []
    hook = unet.register_forward_hook(lambda m, args, out: batches.append(args[0].shape[0]))
    try:
        chunks = list(pipe.generate_chunks(*clip, num_inference_steps=4, guidance_scale=1.5, seed=11,
                                           deepcache=deepcache, chunk_batch=chunk_batch, **kwargs))
    finally:
        hook.remove()
    return chunks, batches


_SEQUENTIAL = {}


def _sequential(models, clip, sampler="ddim", deepcache=False):
    """One-by-one generation, computed once per (sampler, deepcache) for the module's tests."""
    if (sampler, deepcache) not in _SEQUENTIAL:
        _SEQUENTIAL[sampler, deepcache] = _run(models, clip, sampler, deepcache, chunk_batch=1)
    return _SEQUENTIAL[sampler, deepcache]


@pytest.mark.parametrize("sampler, deepcache", [("ddim", False), ("ddim", True), ("dpmpp", True)])
def test_batched_equals_sequential(models, clip, sampler, deepcache):
    seq, seq_batches = _sequential(models, clip, sampler, deepcache)
    bat, bat_batches = _run(models, clip, sampler, deepcache, chunk_batch=4)
    assert seq_batches == [2] * 16  # 4 chunks x 4 steps, CFG doubles the batch
    # The first chunk alone (early preview), then the two remaining full chunks together, then the short one.
    assert bat_batches == [2] * 4 + [4] * 4 + [2] * 4
    assert [s for s, _ in bat] == [s for s, _ in seq] == [0, 16, 32, 48]
    for (_, a), (_, b) in zip(seq, bat):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5)


def test_out_of_memory_halves_the_batch_and_keeps_the_draws(models, clip, monkeypatch):
    """A batch that runs out of memory is retried in halves; the result still equals sequential generation."""
    seq, _ = _sequential(models, clip)
    unet = models[0]
    real_forward = unet.forward
    failures = []

    def forward_failing_on_big_batches(sample, *args, **kwargs):
        if sample.shape[0] > 2:  # more than one chunk (with CFG) "does not fit"
            failures.append(sample.shape[0])
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_forward(sample, *args, **kwargs)

    monkeypatch.setattr(unet, "forward", forward_failing_on_big_batches)
    bat, batches = _run(models, clip, chunk_batch=4)
    assert failures == [4]  # one failed try with two chunks, then one chunk at a time
    assert [s for s, _ in bat] == [0, 16, 32, 48]
    for (_, a), (_, b) in zip(seq, bat):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5)


def test_lcm_stays_sequential(models, clip):
    """LCM draws noise inside its steps: batching would change the draw order, so it runs chunk by chunk."""
    _, batches = _run(models, clip, "lcm", chunk_batch=4)
    assert batches == [1] * 16


@torch.no_grad()
def test_unet_samples_are_independent_in_float32(models):
    """float32 as in production: changing one chunk of a batch leaves the other chunk's output bit-identical."""
    unet = tiny_unet()
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 13, 16, 4, 4, generator=gen)
    audio = torch.randn(32, 50, TINY_AUDIO_DIM, generator=gen)
    a = unet(x, 500, audio).sample
    x[1] *= 3
    audio[16:] = 0
    b = unet(x, 500, audio).sample
    assert torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])


def test_every_attention_uses_sdpa(models):
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    processors = [m.processor for m in models[0].modules() if isinstance(m, Attention)]
    assert len(processors) > 20 and all(isinstance(p, AttnProcessor2_0) for p in processors)  # spatial, audio, temporal


def test_auto_batch_on_cpu_is_one():
    assert auto_chunk_batch(torch.device("cpu"), 256, torch.float32) == 1
