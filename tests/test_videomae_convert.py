"""The official TREPA encoder file (VideoMAE-v2 ViT, official key layout) -> transformers VideoMAE, checked against
a forward pass written here from the official architecture's maths (tiny random weights, CPU)."""

import math

import pytest
import torch
import torch.nn.functional as F

from latentsync_demo.errors import CheckpointError
from latentsync_demo.training.unet_losses import TREPALoss
from latentsync_demo.training.videomae_convert import convert_official_videomae, main

DIM, HEADS, DEPTH, MLP, PATCH, TUBELET, SIZE, FRAMES, CLASSES = 32, 4, 2, 44, 8, 2, 16, 4, 5
EPS = 1e-6


def official_state_dict(seed=0):
    """Random weights under the official names: fused qkv without bias, separate q_bias / v_bias (VideoMAE-v2)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    sd = {"patch_embed.proj.weight": r(DIM, 3, TUBELET, PATCH, PATCH), "patch_embed.proj.bias": r(DIM)}
    for i in range(DEPTH):
        b = f"blocks.{i}."
        sd |= {b + "norm1.weight": 1 + r(DIM), b + "norm1.bias": r(DIM), b + "attn.qkv.weight": r(3 * DIM, DIM),
               b + "attn.q_bias": r(DIM), b + "attn.v_bias": r(DIM), b + "attn.proj.weight": r(DIM, DIM),
               b + "attn.proj.bias": r(DIM), b + "norm2.weight": 1 + r(DIM), b + "norm2.bias": r(DIM),
               b + "mlp.fc1.weight": r(MLP, DIM), b + "mlp.fc1.bias": r(MLP), b + "mlp.fc2.weight": r(DIM, MLP),
               b + "mlp.fc2.bias": r(DIM)}
    return sd | {"fc_norm.weight": 1 + r(DIM), "fc_norm.bias": r(DIM), "head.weight": r(CLASSES, DIM),
                 "head.bias": r(CLASSES)}


def sinusoid_positions(n, d):
    """The fixed table of VideoMAE-v2: angle pos / 10000^(2 (j // 2) / d), sin on even j, cos on odd j."""
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    j = torch.arange(d)
    angle = pos / torch.pow(10000.0, 2 * (j // 2) / d).to(torch.float64)
    return torch.where(j % 2 == 0, angle.sin(), angle.cos()).float()


def official_forward_features(sd, video):
    """VideoMAE-v2 ``forward_features``: video (b, 3, T, H, W) in [0, 1] -> fc_norm(mean of tokens) (b, D)."""
    x = F.conv3d(video, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=(TUBELET, PATCH, PATCH))
    x = x.flatten(2).transpose(1, 2)  # (b, N, D)
    x = x + sinusoid_positions(x.shape[1], DIM)
    b, n, _ = x.shape
    for i in range(DEPTH):
        p = lambda name: sd[f"blocks.{i}.{name}"]  # noqa: E731
        h = F.layer_norm(x, (DIM,), p("norm1.weight"), p("norm1.bias"), EPS)
        bias = torch.cat([p("attn.q_bias"), torch.zeros(DIM), p("attn.v_bias")])
        qkv = F.linear(h, p("attn.qkv.weight"), bias)  # (b, n, 3D): query, key, value
        q, k, v = (t.reshape(b, n, HEADS, -1).transpose(1, 2) for t in qkv.chunk(3, -1))
        attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(DIM // HEADS), dim=-1)
        x = x + F.linear((attn @ v).transpose(1, 2).reshape(b, n, DIM), p("attn.proj.weight"), p("attn.proj.bias"))
        h = F.layer_norm(x, (DIM,), p("norm2.weight"), p("norm2.bias"), EPS)
        x = x + F.linear(F.gelu(F.linear(h, p("mlp.fc1.weight"), p("mlp.fc1.bias"))), p("mlp.fc2.weight"),
                         p("mlp.fc2.bias"))
    return F.layer_norm(x.mean(1), (DIM,), sd["fc_norm.weight"], sd["fc_norm.bias"], EPS)


def official_trepa(sd, fake, real):
    """The official TREPA loss on (b, f, 3, h, w) clips in [-1, 1]: bicubic to the model size, [0, 1], features,
    l2-normalised, MSE."""
    def feats(v):
        b, f = v.shape[:2]
        v = F.interpolate(v.flatten(0, 1), size=(SIZE, SIZE), mode="bicubic").unflatten(0, (b, f))
        return F.normalize(official_forward_features(sd, (v / 2 + 0.5).clamp(0, 1).transpose(1, 2)), p=2, dim=1)
    return F.mse_loss(feats(fake), feats(real))


@pytest.fixture
def official_file(tmp_path):
    path = tmp_path / "vit_tiny_official.pth"
    torch.save({"model": official_state_dict()}, path)  # the official release wraps the weights in "model"
    return path


def test_converted_model_gives_the_official_features_and_trepa(official_file, tmp_path):
    sd = official_state_dict()
    model = convert_official_videomae(official_file, num_heads=HEADS, image_size=SIZE, num_frames=FRAMES)
    assert model.config.num_hidden_layers == DEPTH and model.config.intermediate_size == MLP
    video = torch.rand(2, FRAMES, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model.fc_norm(model.videomae(pixel_values=video).last_hidden_state.mean(1))
        torch.testing.assert_close(ours, official_forward_features(sd, video.transpose(1, 2)), rtol=1e-5, atol=1e-5)
        assert torch.allclose(model(pixel_values=video).logits, F.linear(ours, sd["head.weight"], sd["head.bias"]),
                              atol=1e-5)

        # the trainer's TREPA takes the .pth directly, and a folder written by the converter's command line
        fake, real = (torch.rand(1, FRAMES, 3, 32, 32, generator=torch.Generator().manual_seed(s)) * 2 - 1
                      for s in (2, 3))
        expected = official_trepa(sd, fake, real)
        direct = TREPALoss.from_pretrained(official_file, num_heads=HEADS, image_size=SIZE, num_frames=FRAMES)
        assert direct.official and expected > 0
        torch.testing.assert_close(direct(fake, real), expected, rtol=1e-4, atol=1e-7)
        out = tmp_path / "converted"
        assert main([str(official_file), str(out), "--num-heads", str(HEADS), "--image-size", str(SIZE),
                     "--num-frames", str(FRAMES)]) == 0
        torch.testing.assert_close(TREPALoss.from_pretrained(out)(fake, real), expected, rtol=1e-4, atol=1e-7)


def test_conversion_is_strict_and_names_every_bad_key(tmp_path):
    sd = official_state_dict()
    sd["blocks.1.gamma_1"] = torch.ones(DIM)  # layer scale: no transformers counterpart
    del sd["fc_norm.bias"]
    sd["blocks.0.mlp.fc2.weight"] = sd["blocks.0.mlp.fc2.weight"][:, :-1]
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as err:
        convert_official_videomae(path, num_heads=HEADS, image_size=SIZE, num_frames=FRAMES)
    message = str(err.value)
    assert "blocks.1.gamma_1" in message and "fc_norm.bias" in message and "output.dense.weight" in message
    assert main([str(path), str(tmp_path / "out"), "--num-heads", str(HEADS)]) == 1  # an error line, no traceback
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        convert_official_videomae(tmp_path / "broken.pth")
