"""Generation on tiny random models: faces + audio chunks in, faces out."""

import pytest
import torch

from latentsync_demo.face import load_mask
from latentsync_demo.pipeline import LipSyncPipeline
from latentsync_demo.testing.tiny_models import TINY_AUDIO_DIM, tiny_unet, tiny_vae

RES = 64


@pytest.fixture(scope="module")
def pipeline():
    return LipSyncPipeline(tiny_unet(), tiny_vae())


@pytest.fixture(scope="module")
def inputs():
    gen = torch.Generator().manual_seed(0)
    faces = torch.randint(0, 256, (20, 3, RES, RES), dtype=torch.uint8, generator=gen)
    audio = torch.randn(20, 50, TINY_AUDIO_DIM, generator=gen)
    return faces, audio


def _as_pixels(faces):
    return ((faces.double() / 255 - 0.5) / 0.5).float()


def test_shapes_progress_and_paste_back(pipeline, inputs):
    faces, audio = inputs
    events = []
    out = pipeline(faces, audio, num_inference_steps=3, guidance_scale=1.5, seed=1, callback=events.append)
    assert out.shape == (20, 3, RES, RES) and out.dtype == torch.float32
    # 20 frames = one full 16-frame chunk + one of 4; 3 steps each.
    assert [(e.chunk, e.step) for e in events] == [(c, s) for c in range(2) for s in (1, 2, 3)]
    assert events[-1].fraction == 1.0 and events[0].num_chunks == 2
    keep = load_mask(RES)[0] == 1
    diff = (out - _as_pixels(faces)).abs()
    assert diff[:, :, keep].max() == 0  # outside the mouth region the input is returned untouched
    assert diff[:, :, ~keep].mean() > 0.05  # inside it the model generated something


def test_same_seed_same_result_other_seed_differs(pipeline, inputs):
    faces, audio = inputs
    a = pipeline(faces[:8], audio[:8], num_inference_steps=2, seed=5)
    b = pipeline(faces[:8], audio[:8], num_inference_steps=2, seed=5)
    c = pipeline(faces[:8], audio[:8], num_inference_steps=2, seed=6)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_audio_changes_the_mouth(pipeline, inputs):
    faces, audio = inputs
    a = pipeline(faces[:4], audio[:4], num_inference_steps=2, seed=5)
    b = pipeline(faces[:4], -audio[:4], num_inference_steps=2, seed=5)
    assert (a - b).abs().max() > 1e-3


def test_guidance_one_runs_single_batch(pipeline, inputs):
    faces, audio = inputs
    batches = []
    hook = pipeline.unet.register_forward_hook(lambda m, args, out: batches.append(args[0].shape[0]))
    try:
        pipeline(faces[:4], audio[:4], num_inference_steps=2, guidance_scale=1.0)
        pipeline(faces[:4], audio[:4], num_inference_steps=2, guidance_scale=2.0)
    finally:
        hook.remove()
    assert batches == [1, 1, 2, 2]  # classifier-free guidance doubles the batch only when scale > 1


def test_streaming_chunks_equal_whole_call(pipeline, inputs):
    faces, audio = inputs
    whole = pipeline(faces, audio, num_inference_steps=2, seed=3)
    chunks = list(pipeline.generate_chunks(faces, audio, num_inference_steps=2, seed=3))
    assert [start for start, _ in chunks] == [0, 16]
    torch.testing.assert_close(torch.cat([c for _, c in chunks]), whole, rtol=0, atol=0)


def test_mismatched_lengths_and_bad_size_are_refused(pipeline, inputs):
    faces, audio = inputs
    with pytest.raises(ValueError, match="must match"):
        pipeline(faces[:5], audio[:4], num_inference_steps=1)
    with pytest.raises(ValueError, match="square"):
        pipeline(faces[:, :, :60], audio, num_inference_steps=1)
