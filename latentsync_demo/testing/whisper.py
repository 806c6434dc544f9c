"""Tiny random whisper checkpoints in OpenAI's format, for tests and smoke runs (no download needed)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch

TINY_TEST_DIMS = {
    "n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 64, "n_audio_head": 2, "n_audio_layer": 2,
    "n_vocab": 64, "n_text_ctx": 16, "n_text_state": 64, "n_text_head": 2, "n_text_layer": 1,
}


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's sinusoidal position table, (length, channels) float32."""
    inc = math.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-inc * torch.arange(channels // 2, dtype=torch.float32))
    t = torch.arange(length, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1)


def _block(prefix: str, d: int, cross: bool, gen: torch.Generator, zero: bool) -> dict[str, tuple | torch.Tensor]:
    """One residual attention block's tensors (or just their shapes when `zero`)."""
    out: dict = {}

    def lin(name, n_out, n_in, bias=True):
        out[f"{name}.weight"] = (n_out, n_in) if zero else torch.randn(n_out, n_in, generator=gen) / math.sqrt(n_in)
        if bias:
            out[f"{name}.bias"] = (n_out,) if zero else 0.05 * torch.randn(n_out, generator=gen)

    def ln(name):
        out[f"{name}.weight"] = (d,) if zero else 1 + 0.1 * torch.randn(d, generator=gen)
        out[f"{name}.bias"] = (d,) if zero else 0.05 * torch.randn(d, generator=gen)

    for attn in ("attn", "cross_attn") if cross else ("attn",):
        lin(f"{prefix}.{attn}.query", d, d)
        lin(f"{prefix}.{attn}.key", d, d, bias=False)  # whisper keys have no bias
        lin(f"{prefix}.{attn}.value", d, d)
        lin(f"{prefix}.{attn}.out", d, d)
        ln(f"{prefix}.{attn}_ln")
    lin(f"{prefix}.mlp.0", 4 * d, d)
    lin(f"{prefix}.mlp.2", d, 4 * d)
    ln(f"{prefix}.mlp_ln")
    return out


def random_openai_whisper_state(dims: Mapping[str, int] | None = None, seed: int = 0,
                                dtype: torch.dtype = torch.float16) -> dict:
    """{"dims", "model_state_dict"} like OpenAI's files: random encoder, all-zero decoder (stride-0 views).

    Init matches the reference fixture: Linear/conv N(0,1)/sqrt(fan_in), LayerNorm weight 1 + 0.1 N, bias 0.05 N.
    """
    dims = dict(TINY_TEST_DIMS if dims is None else dims)
    gen = torch.Generator().manual_seed(seed)
    d, n_mels = dims["n_audio_state"], dims["n_mels"]
    enc: dict = {"encoder.positional_embedding": sinusoids(dims["n_audio_ctx"], d)}
    for name, n_in in (("conv1", n_mels), ("conv2", d)):
        enc[f"encoder.{name}.weight"] = torch.randn(d, n_in, 3, generator=gen) / math.sqrt(3 * n_in)
        enc[f"encoder.{name}.bias"] = 0.05 * torch.randn(d, generator=gen)
    for i in range(dims["n_audio_layer"]):
        enc.update(_block(f"encoder.blocks.{i}", d, False, gen, zero=False))
    enc["encoder.ln_post.weight"] = 1 + 0.1 * torch.randn(d, generator=gen)
    enc["encoder.ln_post.bias"] = 0.05 * torch.randn(d, generator=gen)

    td = dims["n_text_state"]
    dec: dict = {"decoder.token_embedding.weight": (dims["n_vocab"], td), "decoder.positional_embedding":
                 (dims["n_text_ctx"], td)}
    for i in range(dims["n_text_layer"]):
        dec.update(_block(f"decoder.blocks.{i}", td, True, gen, zero=True))
    dec["decoder.ln.weight"], dec["decoder.ln.bias"] = (td,), (td,)
    zero = torch.zeros((), dtype=dtype)
    state = {k: v.to(dtype) for k, v in enc.items()}
    state.update({k: zero.expand(shape) for k, shape in dec.items()})  # unused by LatentSync; keeps files small
    return {"dims": dims, "model_state_dict": state}


def write_random_openai_whisper(path: str | Path, dims: Mapping[str, int] | None = None, seed: int = 0,
                                dtype: torch.dtype = torch.float16) -> dict:
    """Write a random OpenAI-format whisper checkpoint to `path` (~0.7 MB with TINY_TEST_DIMS); returns its dims."""
    ckpt = random_openai_whisper_state(dims, seed, dtype)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return ckpt["dims"]
