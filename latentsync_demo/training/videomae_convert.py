"""The official TREPA encoder file -> a transformers VideoMAE model (strict: every unmapped key is reported).

    python -m latentsync_demo.training.videomae_convert checkpoints/auxiliary/vit_g_hybrid_pt_1200e_ssv2_ft.pth \\
        checkpoints/videomae-v2-g       # then: train_unet --trepa checkpoints/videomae-v2-g (or the .pth itself)

The official LatentSync TREPA loss loads ``checkpoints/auxiliary/vit_g_hybrid_pt_1200e_ssv2_ft.pth``: VideoMAE-v2's
ViT-g/14 (1408-d, 40 blocks, 16 heads, MLP 6144, 224 px, 16 frames in tubelets of 2, LayerNorm eps 1e-6, fixed
sinusoid positions, mean pooling + ``fc_norm``, a 174-class SSv2 head) and uses ``forward_features``: the
``fc_norm``-ed mean of the last block's tokens. Its state dict (possibly under "model" or "module") names

    patch_embed.proj.{weight,bias}                 Conv3d (D, 3, tubelet, p, p)
    blocks.<i>.norm1 / norm2.{weight,bias}         pre-attention / pre-MLP LayerNorms
    blocks.<i>.attn.qkv.weight                     (3D, D): query, key, value rows stacked, no bias of its own
    blocks.<i>.attn.q_bias, .v_bias                (D,) each; the key has no bias (zeros in the official forward)
    blocks.<i>.attn.proj.{weight,bias}             attention output
    blocks.<i>.mlp.fc1 / fc2.{weight,bias}         GELU MLP
    fc_norm.{weight,bias}, head.{weight,bias}      pooled-feature norm, classifier

which maps one to one onto ``transformers.VideoMAEForVideoClassification`` (qkv split into query/key/value,
q_bias/v_bias as the query/value biases). Head count, frame count and image size are not in the weights: the
defaults are ViT-g's and the official loader's. Two things transformers does differently are recorded in the
config and applied by ``TREPALoss``: ``fc_norm_eps`` (1e-6; transformers' fc_norm uses 1e-5) and
``latentsync_trepa = "official"`` (the official TREPA preprocessing: bicubic resize, pixels in [0, 1], no
ImageNet normalisation).
"""

from __future__ import annotations

import argparse
import re
import sys
import zipfile
from pathlib import Path
from typing import Mapping

import torch

from ..errors import CheckpointError
from ..models.checkpoint import check_keys

OFFICIAL_TREPA_FILE = "auxiliary/vit_g_hybrid_pt_1200e_ssv2_ft.pth"  # under the checkpoints root, as officially
VIT_G = dict(num_heads=16, image_size=224, num_frames=16, layer_norm_eps=1e-6)  # what the official loader builds

_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)")
_BLOCK_PARTS = {  # official block part -> transformers VideoMAELayer part
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.proj": "attention.output.dense",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}
_TOP = {"patch_embed.proj": "videomae.embeddings.patch_embeddings.projection", "fc_norm": "fc_norm",
        "head": "classifier"}


def read_official_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The VideoMAE-v2 state dict of an official ``.pth`` (weights_only; the "model"/"module" wrapper removed)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"VideoMAE-v2 checkpoint not found: {path} (the official file is "
                              f"checkpoints/{OFFICIAL_TREPA_FILE})")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as exc:  # truncated zip, bad pickle, ...: all mean a broken file
        raise CheckpointError(f"cannot read {path} ({exc.__class__.__name__}: {exc}): the file is probably "
                              "truncated or corrupt; download it again") from exc
    for wrapper in ("model", "module"):
        if isinstance(obj, Mapping) and wrapper in obj:
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a VideoMAE-v2 state dict")
    return dict(obj)


def official_config(state_dict: Mapping[str, torch.Tensor], num_heads: int = VIT_G["num_heads"],
                    image_size: int = VIT_G["image_size"], num_frames: int = VIT_G["num_frames"],
                    layer_norm_eps: float = VIT_G["layer_norm_eps"]):
    """The ``VideoMAEConfig`` of an official state dict: widths, depth, patch/tubelet from the tensors' shapes."""
    from transformers import VideoMAEConfig

    patch = state_dict.get("patch_embed.proj.weight")
    fc1 = state_dict.get("blocks.0.mlp.fc1.weight")
    if patch is None or patch.ndim != 5 or fc1 is None:
        raise CheckpointError("not a VideoMAE-v2 ViT state dict: patch_embed.proj.weight (D, 3, t, p, p) and "
                              "blocks.0.mlp.fc1.weight are required")
    hidden, channels, tubelet, patch_size = patch.shape[0], patch.shape[1], patch.shape[2], patch.shape[3]
    depth = 1 + max(int(m[1]) for k in state_dict if (m := _BLOCK.fullmatch(k)))
    head = state_dict.get("head.weight")
    config = VideoMAEConfig(
        image_size=image_size, patch_size=patch_size, num_channels=channels, num_frames=num_frames,
        tubelet_size=tubelet, hidden_size=hidden, num_hidden_layers=depth, num_attention_heads=num_heads,
        intermediate_size=fc1.shape[0], hidden_act="gelu", layer_norm_eps=layer_norm_eps,
        qv_bias="blocks.0.attn.q_bias" in state_dict, use_mean_pooling=True,
        num_labels=head.shape[0] if head is not None else 0,
    )
    config.fc_norm_eps = layer_norm_eps  # the official fc_norm shares the blocks' eps
    config.latentsync_trepa = "official"  # TREPALoss: the official preprocessing
    return config


def convert_state_dict(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Official names -> transformers names. Returns (converted, official keys with no counterpart)."""
    out, unmapped = {}, []
    for key, value in state_dict.items():
        name, _, leaf = key.rpartition(".")
        if m := _BLOCK.fullmatch(key):
            i, part = m[1], m[2]
            prefix = f"videomae.encoder.layer.{i}"
            base, _, leaf = part.rpartition(".")
            if part == "attn.qkv.weight":
                for which, chunk in zip(("query", "key", "value"), value.chunk(3, dim=0)):
                    out[f"{prefix}.attention.attention.{which}.weight"] = chunk
            elif part in ("attn.q_bias", "attn.v_bias"):
                which = "query" if part == "attn.q_bias" else "value"
                out[f"{prefix}.attention.attention.{which}.bias"] = value
            elif base in _BLOCK_PARTS and leaf in ("weight", "bias"):
                out[f"{prefix}.{_BLOCK_PARTS[base]}.{leaf}"] = value
            else:
                unmapped.append(key)
        elif name in _TOP and leaf in ("weight", "bias"):
            out[f"{_TOP[name]}.{leaf}"] = value
        else:
            unmapped.append(key)
    return out, unmapped


def convert_official_videomae(path_or_state_dict: str | Path | Mapping[str, torch.Tensor], **config_kwargs):
    """A ``VideoMAEForVideoClassification`` with the official file's weights, strictly: every official key with no
    counterpart and every model key the file lacks (or with another shape) raises one CheckpointError listing all.

    ``config_kwargs``: num_heads, image_size, num_frames, layer_norm_eps (ViT-g's by default).
    """
    from transformers import VideoMAEForVideoClassification

    source = "state dict"
    state_dict = path_or_state_dict
    if isinstance(path_or_state_dict, (str, Path)):
        source, state_dict = str(path_or_state_dict), read_official_state_dict(path_or_state_dict)
    config = official_config(state_dict, **config_kwargs)
    converted, unmapped = convert_state_dict(state_dict)
    model = VideoMAEForVideoClassification(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_keys(expected, {**converted, **{k: state_dict[k] for k in unmapped}}, source,
               what="a VideoMAE-v2 ViT (official layout)",
               hint="Expected the official TREPA encoder (VideoMAE-v2 ViT with q/v biases, mean pooling, fc_norm); "
                    "layer-scale (gamma_*), cosine attention or learnable position embeddings have no transformers "
                    "VideoMAE counterpart.")
    model.load_state_dict(converted, strict=True)
    model.fc_norm.eps = config.fc_norm_eps
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m latentsync_demo.training.videomae_convert",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help=f"the official .pth (checkpoints/{OFFICIAL_TREPA_FILE})")
    parser.add_argument("output", type=Path, help="folder for the transformers model (config.json + safetensors)")
    parser.add_argument("--num-heads", type=int, default=VIT_G["num_heads"])
    parser.add_argument("--image-size", type=int, default=VIT_G["image_size"])
    parser.add_argument("--num-frames", type=int, default=VIT_G["num_frames"])
    parser.add_argument("--layer-norm-eps", type=float, default=VIT_G["layer_norm_eps"])
    args = parser.parse_args(argv)
    try:
        model = convert_official_videomae(args.checkpoint, num_heads=args.num_heads, image_size=args.image_size,
                                          num_frames=args.num_frames, layer_norm_eps=args.layer_norm_eps)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    model.save_pretrained(str(args.output), safe_serialization=True)
    c = model.config
    print(f"converted {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M weights ({c.num_hidden_layers} blocks, "
          f"{c.hidden_size}-d, {c.num_attention_heads} heads) to {args.output}; use it with --trepa {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
