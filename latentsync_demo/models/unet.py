"""UNet3DConditionModel: the LatentSync denoiser, key-for-key compatible with the official checkpoints.

``UNet3DConditionModel.from_config(cfg)`` takes the ``model:`` section of the official configs
(stage1, stage2, stage2_512, stage2_efficient) and its ``state_dict()`` has exactly the official keys
and shapes, including the ``pos_encoder.pe`` buffers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from .deepcache import DeepCache
from .layers import VideoGroupNorm, zero_
from .unet_blocks import DOWN_BLOCK_TYPES, UP_BLOCK_TYPES, DownBlock3D, MidBlock3D, UpBlock3D


@dataclass
class UNet3DConditionOutput(BaseOutput):
    sample: torch.Tensor


# Official config options that only ever take one value in LatentSync: we accept that value and refuse
# any other rather than silently computing something else.
_FIXED_OPTIONS = {
    "center_input_sample": False,
    "only_cross_attention": False,
    "dual_cross_attention": False,
    "use_linear_projection": False,
    "class_embed_type": None,
    "num_class_embeds": None,
    "upcast_attention": False,
    "resnet_time_scale_shift": "default",
    "use_inflated_groupnorm": False,
    "act_fn": "silu",
    "mid_block_type": "UNetMidBlock3DCrossAttn",
}


class UNet3DConditionModel(ModelMixin, ConfigMixin):
    """Audio-conditioned video UNet.

    Input ``sample`` (b, in_channels, f, h, w): for LatentSync 13 channels = 4 noisy latents, 1 mask,
    4 masked-image latents, 4 reference latents. ``encoder_hidden_states``: whisper chunks, (b*f, 50, d)
    batch-major, or (b, f, 50, d), or None (audio attention skipped). Output (b, out_channels, f, h, w).
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        sample_size: int | None = None,
        in_channels: int = 13,
        out_channels: int = 4,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        down_block_types: tuple[str, ...] = (
            "CrossAttnDownBlock3D",
            "CrossAttnDownBlock3D",
            "CrossAttnDownBlock3D",
            "DownBlock3D",
        ),
        up_block_types: tuple[str, ...] = ("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        downsample_padding: int = 1,
        mid_block_scale_factor: float = 1.0,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        cross_attention_dim: int = 384,
        attention_head_dim: int | tuple[int, ...] = 8,
        add_audio_layer: bool = True,
        use_motion_module: bool = True,
        motion_module_resolutions: tuple[int, ...] = (1, 2, 4, 8),
        motion_module_mid_block: bool = False,
        motion_module_decoder_only: bool = False,
        motion_module_type: str | None = "Vanilla",
        motion_module_kwargs: dict | None = None,
        # Options of the official config that LatentSync never changes (see _FIXED_OPTIONS).
        center_input_sample: bool = False,
        only_cross_attention: bool = False,
        dual_cross_attention: bool = False,
        use_linear_projection: bool = False,
        class_embed_type: str | None = None,
        num_class_embeds: int | None = None,
        upcast_attention: bool = False,
        resnet_time_scale_shift: str = "default",
        use_inflated_groupnorm: bool = False,
        act_fn: str = "silu",
        mid_block_type: str = "UNetMidBlock3DCrossAttn",
    ):
        super().__init__()
        given = locals()
        for name in _FIXED_OPTIONS:
            value = given[name]
            if value != _FIXED_OPTIONS[name]:
                raise ValueError(f"UNet option {name}={value!r} is not supported (LatentSync uses {_FIXED_OPTIONS[name]!r})")
        if use_motion_module and motion_module_type != "Vanilla":
            raise ValueError(f"unknown motion_module_type {motion_module_type!r} (only 'Vanilla' exists)")

        n = len(block_out_channels)
        heads = (attention_head_dim,) * n if isinstance(attention_head_dim, int) else tuple(attention_head_dim)
        time_dim = block_out_channels[0] * 4
        motion = dict(motion_module_kwargs or {})
        common = dict(groups=norm_num_groups, eps=norm_eps, audio_dim=cross_attention_dim, add_audio=add_audio_layer)

        def motion_for(resolution: int, encoder: bool):
            wanted = use_motion_module and resolution in motion_module_resolutions
            return motion if wanted and not (encoder and motion_module_decoder_only) else None

        self.conv_in = zero_(nn.Conv2d(in_channels, block_out_channels[0], 3, padding=1))
        self.time_proj = Timesteps(block_out_channels[0], flip_sin_to_cos, freq_shift)
        self.time_embedding = TimestepEmbedding(block_out_channels[0], time_dim)

        self.down_blocks = nn.ModuleList()
        out_ch = block_out_channels[0]
        for i, block_type in enumerate(down_block_types):
            in_ch, out_ch = out_ch, block_out_channels[i]
            self.down_blocks.append(
                DownBlock3D(
                    in_ch, out_ch, time_dim, layers_per_block, heads=heads[i],
                    cross_attention=_block_kind(block_type, DOWN_BLOCK_TYPES), motion_kwargs=motion_for(2**i, True),
                    add_downsample=i < n - 1, downsample_padding=downsample_padding, **common,
                )
            )

        self.mid_block = MidBlock3D(
            block_out_channels[-1], time_dim, heads=heads[-1],
            motion_kwargs=motion if use_motion_module and motion_module_mid_block else None,
            output_scale_factor=mid_block_scale_factor, **common,
        )

        self.up_blocks = nn.ModuleList()
        rev_channels, rev_heads = list(reversed(block_out_channels)), list(reversed(heads))
        out_ch = rev_channels[0]
        for i, block_type in enumerate(up_block_types):
            prev_ch, out_ch = out_ch, rev_channels[i]
            in_ch = rev_channels[min(i + 1, n - 1)]
            self.up_blocks.append(
                UpBlock3D(
                    in_ch, prev_ch, out_ch, time_dim, layers_per_block + 1, heads=rev_heads[i],
                    cross_attention=_block_kind(block_type, UP_BLOCK_TYPES), motion_kwargs=motion_for(2 ** (n - 1 - i), False),
                    add_upsample=i < n - 1, **common,
                )
            )

        self.conv_norm_out = VideoGroupNorm(norm_num_groups, block_out_channels[0], eps=norm_eps)
        self.conv_out = zero_(nn.Conv2d(block_out_channels[0], out_channels, 3, padding=1))

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor | None = None,
        return_dict: bool = True,
        deepcache: DeepCache | None = None,
    ) -> UNet3DConditionOutput | tuple[torch.Tensor]:
        """``deepcache``: on its cached steps only the shallow branch runs (see ``models.deepcache``)."""
        b, _, f, h, w = sample.shape
        x = sample.permute(0, 2, 1, 3, 4).reshape(b * f, -1, h, w)
        audio = encoder_hidden_states
        if audio is not None:
            audio = audio.reshape(b * f, *audio.shape[-2:]).to(x.dtype)

        temb = self.time_embedding(self.time_proj(self._timesteps(timestep, b, sample.device)).to(self.dtype))

        x = self.conv_in(x)
        full = deepcache is None or deepcache.is_full_step
        if deepcache is not None:
            deepcache.full_steps.append(full)
        if full:
            x = self._deep_path(x, temb, audio, f, h, w, deepcache)
        else:  # cached step: h* from the chunk's latest full step + this step's conv_in output
            last = self.up_blocks[-1]
            n = len(last.resnets)
            x = last.run_layers(deepcache.cached(x), [x], temb, audio, f, range(n - 1, n))

        x = self.conv_out(F.silu(self.conv_norm_out(x, f)))
        out = x.reshape(b, f, -1, h, w).permute(0, 2, 1, 3, 4)
        return UNet3DConditionOutput(sample=out) if return_dict else (out,)

    def _deep_path(self, x, temb, audio, f: int, h: int, w: int, deepcache: DeepCache | None) -> torch.Tensor:
        """conv_in output (b*f, C0, h, w) -> output of the last up block (b*f, C0, h, w); keeps h* for DeepCache."""
        skips = [x]
        for block in self.down_blocks:
            x, block_skips = block(x, temb, audio, f)
            skips += block_skips
        x = self.mid_block(x, temb, audio, f)

        up_factor = 2 ** (len(self.up_blocks) - 1)
        odd_size = h % up_factor != 0 or w % up_factor != 0
        for i, block in enumerate(self.up_blocks):
            block_skips = skips[-len(block.resnets):]
            del skips[-len(block.resnets):]
            upsample_size = skips[-1].shape[2:] if odd_size and i < len(self.up_blocks) - 1 else None
            if deepcache is not None and i == len(self.up_blocks) - 1:
                n = len(block.resnets)  # the last up block has no upsampler
                x = block.run_layers(x, block_skips, temb, audio, f, range(n - 1))
                deepcache.store(x)
                x = block.run_layers(x, block_skips, temb, audio, f, range(n - 1, n))
            else:
                x = block(x, block_skips, temb, audio, f, upsample_size)
        return x

    @staticmethod
    def _timesteps(timestep, batch: int, device: torch.device) -> torch.Tensor:
        """A scalar or (b,) timestep -> (b,) tensor (0-d tensors come from the DDIM loop)."""
        if not torch.is_tensor(timestep):
            dtype = torch.float64 if isinstance(timestep, float) else torch.int64
            timestep = torch.tensor([timestep], dtype=dtype, device=device)
        elif timestep.ndim == 0:
            timestep = timestep[None].to(device)
        return timestep.expand(batch)


def _block_kind(block_type: str, known: dict[str, bool]) -> bool:
    if block_type not in known:
        raise ValueError(f"unknown block type {block_type!r}; expected one of {sorted(known)}")
    return known[block_type]
