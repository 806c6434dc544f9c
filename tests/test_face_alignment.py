"""Face alignment / paste-back / mask: conformance with the official AlignRestore fixture + self-checks."""

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from latentsync_demo.face import FaceAligner, estimate_matrix, latent_mask, load_mask
from latentsync_demo.face.aligner import face_geometry


@pytest.fixture(scope="module")
def affine_fixture(reference_dir):
    with np.load(reference_dir / "affine_fixture.npz") as data:
        return {k: data[k] for k in data.files}


def _assert_identical(ours: np.ndarray, ref: np.ndarray, what: str) -> None:
    diff = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
    assert diff.max() == 0, f"{what}: max |diff| {diff.max()}, {np.count_nonzero(diff)} values differ"


def _to_unit(face_u8: np.ndarray) -> torch.Tensor:
    """(h, w, 3) uint8 -> (3, h, w) float32 in [-1, 1], as the fixture feeds restore_img."""
    return (torch.from_numpy(face_u8).permute(2, 0, 1).float() / 255 - 0.5) / 0.5


# Bounds: every output below equals the official fixture exactly (measured: max |diff| 0 for the matrices,
# p_bias, aligned, resized and restored faces of all 5 frames at 256 and 512 px, by this test and by
# `python bench/bench_conformance.py --only align`). The fixture is the official float32 CPU run; the fp16 GPU
# run differs from it by more (reference README section 4, "fp16 note"), which these tests do not cover.
@pytest.mark.parametrize("resolution", [256, 512])
def test_align_restore_matches_official(affine_fixture, resolution):
    fx, pre = affine_fixture, f"r{resolution}_fp32_"
    aligner = FaceAligner(resolution)
    assert aligner.face_size == {256: (280, 210), 512: (560, 420)}[resolution]
    for i in range(len(fx["frames"])):
        frame = fx["frames"][i]
        face, matrix = aligner.align_unresized(frame, fx["landmarks"][i])
        np.testing.assert_array_equal(matrix, fx[pre + "affine_matrix_fp32"][i])
        np.testing.assert_array_equal(aligner.p_bias.numpy(), fx[pre + "p_bias"][i])

        _assert_identical(face, fx[pre + "aligned_face"][i], f"aligned frame {i}")
        resized = cv2.resize(face, (resolution, resolution), interpolation=cv2.INTER_LANCZOS4)  # as align()
        _assert_identical(resized, fx[pre + "aligned_face_resized"][i], f"resized frame {i}")

        generated = _to_unit(fx[pre + "generated_face_u8"][i])
        restored = aligner.restore(frame, generated, fx[pre + "affine_matrix_fp32"][i])
        _assert_identical(restored, fx[pre + "restored"][i], f"restored frame {i}")
        # The bounding-box shortcut must be exact (the fixture face runs off the bottom of the frame).
        full = aligner.restore(frame, generated, fx[pre + "affine_matrix_fp32"][i], crop=False)
        np.testing.assert_array_equal(restored, full)


def test_align_resized_matches_official(affine_fixture):
    fx = affine_fixture
    for resolution in (256, 512):
        aligner = FaceAligner(resolution)
        for i in range(len(fx["frames"])):
            face, _ = aligner.align(fx["frames"][i], fx["landmarks"][i])
            assert face.shape == (resolution, resolution, 3) and face.dtype == np.uint8
            _assert_identical(face, fx[f"r{resolution}_fp32_aligned_face_resized"][i], f"R={resolution} frame {i}")


@pytest.mark.parametrize("resolution", [256, 512])
def test_mask_matches_official(affine_fixture, resolution):
    mask = load_mask(resolution)
    assert mask.shape == (3, resolution, resolution) and mask.dtype == torch.float64
    mask_u8 = np.round(mask[0].numpy() * 255).astype(np.uint8)
    np.testing.assert_array_equal(mask_u8, affine_fixture[f"mask_r{resolution}_u8"])
    lat = latent_mask(mask)
    assert lat.shape == (1, resolution // 8, resolution // 8)
    # measured 0 at 256 px and 2.7e-8 at 512 px (`python bench/bench_conformance.py --only align`)
    np.testing.assert_allclose(lat[0].numpy(), affine_fixture[f"mask_r{resolution}_latent"], atol=1e-7, rtol=0)


def test_latent_mask_is_torch_nearest():
    mask = torch.rand(3, 512, 512)
    ref = F.interpolate(mask[None, :1], size=(64, 64), mode="nearest")[0]
    torch.testing.assert_close(latent_mask(mask, 64), ref, rtol=0, atol=0)
    assert latent_mask(mask)[0, 3, 5] == mask[0, 24, 40]


def test_mask_convention():
    mask = load_mask(256)[0]
    assert mask[10, 128] == 1.0 and mask[200, 128] == 0.0  # forehead kept, mouth generated


@pytest.mark.parametrize("resolution", [256, 512])
def test_estimate_matrix_identity_on_template(resolution):
    template, _ = face_geometry(resolution)
    m = estimate_matrix(template, resolution)
    assert m.dtype == np.float32 and m.shape == (2, 3)
    np.testing.assert_allclose(m, [[1, 0, 0], [0, 1, 0]], atol=1e-4)
    mapped = template @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(mapped, template, atol=1e-3)


def _smooth_frame(h=480, w=640) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = [128 + 60 * np.sin(x / 23 + c) + 50 * np.cos(y / 31 - c) for c in range(3)]
    return np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8)


LANDMARKS = np.array([[280.0, 200.0], [372.0, 208.0], [322.0, 262.0]])  # mild rotation, centre of 640x480


@pytest.mark.parametrize("resolution", [256, 512])
def test_align_then_restore_roundtrip(resolution):
    frame = _smooth_frame()
    aligner = FaceAligner(resolution)
    face, matrix = aligner.align_unresized(frame, LANDMARKS)
    out = aligner.restore(frame, _to_unit(face), matrix)
    np.testing.assert_array_equal(out, aligner.restore(frame, _to_unit(face), matrix, crop=False))

    # Where each frame pixel lands in the aligned face: deep inside -> round trip, far outside -> untouched.
    h, w = aligner.face_size
    y, x = np.mgrid[0 : frame.shape[0], 0 : frame.shape[1]].astype(np.float64)
    u = matrix[0, 0] * x + matrix[0, 1] * y + matrix[0, 2]
    v = matrix[1, 0] * x + matrix[1, 1] * y + matrix[1, 2]
    margin = 0.15 * w  # well beyond erosion + blur width
    inside = (u > margin) & (u < w - 1 - margin) & (v > margin) & (v < h - 1 - margin)
    outside = (u < -margin) | (u > w + margin) | (v < -margin) | (v > h + margin)
    assert inside.sum() > 10_000 and outside.sum() > 10_000
    diff = np.abs(out.astype(int) - frame.astype(int))[inside]
    assert diff.max() <= 4 and diff.mean() < 1.5, (diff.max(), diff.mean())
    np.testing.assert_array_equal(out[outside], frame[outside])


def test_restore_generated_resizes_like_torchvision():
    tvf = pytest.importorskip("torchvision.transforms.functional")
    from torchvision.transforms import InterpolationMode

    frame = _smooth_frame()
    aligner = FaceAligner(256)
    _, matrix = aligner.align(frame, LANDMARKS)
    gen = torch.rand(3, 256, 256) * 2 - 1
    resized = tvf.resize(gen, list(aligner.face_size), interpolation=InterpolationMode.BICUBIC, antialias=True)
    expected = aligner.restore(frame, resized, matrix)
    np.testing.assert_array_equal(aligner.restore_generated(frame, gen, matrix), expected)


def test_reset_restarts_smoothing():
    frame = _smooth_frame()
    other = LANDMARKS + np.array([[3.0, -2.0], [1.0, 2.0], [-4.0, 3.0]])
    fresh = FaceAligner(256)
    first_face, first_m = fresh.align(frame, other)

    aligner = FaceAligner(256)
    aligner.align(frame, LANDMARKS)
    _, smoothed_m = aligner.align(frame, other)
    assert not np.allclose(smoothed_m, first_m)  # state carried over
    aligner.reset()
    assert aligner.p_bias is None
    face, m = aligner.align(frame, other)
    np.testing.assert_array_equal(m, first_m)
    np.testing.assert_array_equal(face, first_face)
