"""Whisper encoder features for LatentSync (the official `Audio2Feature`), built on transformers' `WhisperEncoder`.

Spec: shared/reference/README.md section 3. The official code never runs the text decoder; it cuts the log-mel of
the whole clip into fixed 30-s windows (mel padded with 0.0), runs the encoder on each, and keeps the
n_layer + 1 hidden states (conv stem + positions, then every block's output; `ln_post` unused) for the first
floor(frames / 2) positions. That gives `features` (L, n_layer + 1, d) at 50 rows per second, from which each
video frame takes a chunk of 10 neighbouring rows.

That back-to-back cutting makes the features jump every 30 s; ``encode(..., windows="seamless")`` reads clips over
30 s from overlapping windows instead, ``windows="official"`` reproduces the official features exactly
(``audio.windows`` explains both; clips of 30 s or less are the same, bit for bit, in both). The encoder itself
defaults to "official", since it is the official component and code written against it before the modes existed
expects its features; every job chooses explicitly from ``GenerationSettings.audio_windows``, which defaults to
"seamless".

Shapes: whisper tiny -> features (L, 5, 384), chunks (n_frames, 50, 384); small -> (L, 13, 768), (n_frames, 130, 768).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from ..errors import CheckpointError, InputError
from .cache import FeatureCache
from .mel import HOP_LENGTH, SAMPLE_RATE, log_mel_spectrogram
from .windows import check_audio_windows, plan_windows

FEATURES_PER_SECOND = 50  # one encoder position per 2 mel frames (conv2 has stride 2)
MIN_SAMPLES = 2 * HOP_LENGTH  # shortest audio giving one feature row (20 ms)

_DIM_KEYS = ("n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer")
_BLOCK_PARTS = {
    "attn.query": "self_attn.q_proj",
    "attn.key": "self_attn.k_proj",
    "attn.value": "self_attn.v_proj",
    "attn.out": "self_attn.out_proj",
    "attn_ln": "self_attn_layer_norm",
    "mlp.0": "fc1",
    "mlp.2": "fc2",
    "mlp_ln": "final_layer_norm",
}
_BLOCK_RE = re.compile(r"encoder\.blocks\.(\d+)\.(" + "|".join(map(re.escape, _BLOCK_PARTS)) + r")\.(\w+)")


def _to_transformers_name(name: str) -> str | None:
    """OpenAI encoder parameter name -> WhisperEncoder name (None when it has no counterpart)."""
    if name == "encoder.positional_embedding":
        return "embed_positions.weight"  # use the stored (fp16-rounded) table, as the official loader does
    if m := re.fullmatch(r"encoder\.(conv[12])\.(\w+)", name):
        return f"{m[1]}.{m[2]}"
    if m := _BLOCK_RE.fullmatch(name):
        return f"layers.{m[1]}.{_BLOCK_PARTS[m[2]]}.{m[3]}"
    return None


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    return memoryview(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())


class WhisperAudioEncoder(nn.Module):
    """Whisper encoder -> LatentSync audio features and per-video-frame chunks.

    `encode()` always returns float32 CPU features, whatever device/dtype the encoder runs in (`.to("cuda",
    torch.float16)` is fine; fp16 then differs from the float32 reference by fp16 rounding, like the official GPU
    run). Results are cached in `self.cache` (a `FeatureCache`, in-memory by default; pass one with a `directory`
    to persist, or set `self.cache = None` to disable), keyed by the audio samples, the weights, the dtype and
    the windows mode.
    """

    def __init__(self, encoder: WhisperEncoder, *, fingerprint: str | None = None,
                 cache: FeatureCache | None = None, batch_size: int = 8):
        super().__init__()
        # transformers applies the final `layer_norm` (= OpenAI's ln_post) to the last hidden state it returns;
        # LatentSync uses the raw block output, so the norm must be a no-op here.
        encoder.layer_norm = nn.Identity()
        self.encoder = encoder.eval().requires_grad_(False)
        self._fingerprint = fingerprint
        self.cache = cache if cache is not None else FeatureCache()
        self.batch_size = batch_size  # 30-s windows per forward (either mode); bounds memory for long clips

    # ----------------------------------------------------------------------------------------------- loading
    @classmethod
    def from_openai_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu",
                               dtype: torch.dtype = torch.float32, *, cache: FeatureCache | None = None,
                               batch_size: int = 8) -> WhisperAudioEncoder:
        """Load an OpenAI-format checkpoint ({"dims", "model_state_dict"}, e.g. `whisper/tiny.pt`) strictly.

        decoder.* and encoder.ln_post.* are skipped (never used); any other missing, unexpected or mis-shaped
        encoder tensor raises `CheckpointError`.
        """
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"whisper checkpoint not found: {path}. Download it (see checkpoints/README.md).")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated zip, bad pickle, ... all mean the same thing to the user
            reason = (str(exc).strip().splitlines() or [""])[0][:200]
            raise CheckpointError(f"could not read whisper checkpoint {path}: {type(exc).__name__}: {reason}. "
                                  "The file is probably truncated or corrupt; download it again.") from exc
        if not (isinstance(ckpt, Mapping) and isinstance(ckpt.get("dims"), Mapping)
                and isinstance(ckpt.get("model_state_dict"), Mapping)):
            raise CheckpointError(f"{path} is not an OpenAI whisper checkpoint "
                                  "(expected a dict with 'dims' and 'model_state_dict').")
        dims = ckpt["dims"]
        if missing := [k for k in _DIM_KEYS if not isinstance(dims.get(k), int)]:
            raise CheckpointError(f"{path}: 'dims' lacks integer entries {missing}.")

        config = WhisperConfig(
            num_mel_bins=dims["n_mels"], max_source_positions=dims["n_audio_ctx"], d_model=dims["n_audio_state"],
            encoder_attention_heads=dims["n_audio_head"], encoder_layers=dims["n_audio_layer"],
            encoder_ffn_dim=4 * dims["n_audio_state"], dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        )
        config._attn_implementation = "sdpa" if hasattr(nn.functional, "scaled_dot_product_attention") else "eager"
        try:
            with torch.device("meta"):  # no random init: every parameter comes from the checkpoint
                encoder = WhisperEncoder(config)
        except ValueError as exc:  # e.g. n_audio_state not divisible by n_audio_head
            raise CheckpointError(f"{path}: inconsistent dims {dict(dims)}: {exc}") from exc
        encoder.layer_norm = nn.Identity()
        expected = {k: tuple(v.shape) for k, v in encoder.state_dict().items()}

        state, source_name, unexpected = {}, {}, []
        for name, tensor in ckpt["model_state_dict"].items():
            if name.startswith("decoder.") or name.startswith("encoder.ln_post."):
                continue  # known unused: the official code never runs the decoder or ln_post
            target = _to_transformers_name(name)
            if target is None or target not in expected or not isinstance(tensor, torch.Tensor):
                unexpected.append(name)
            else:
                state[target], source_name[target] = tensor, name
        reverse = {v: k for k, v in source_name.items()}
        missing = [_openai_name(k, reverse) for k in expected if k not in state]
        bad_shape = [f"{source_name[k]}: checkpoint {tuple(t.shape)}, expected {expected[k]}"
                     for k, t in state.items() if tuple(t.shape) != expected[k]]
        if missing or unexpected or bad_shape:
            problems = [f"missing: {', '.join(missing)}" if missing else "",
                        f"unexpected: {', '.join(unexpected)}" if unexpected else "",
                        f"wrong shape: {'; '.join(bad_shape)}" if bad_shape else ""]
            raise CheckpointError(f"{path} does not match the whisper encoder described by its dims {dict(dims)} ("
                                  + " | ".join(p for p in problems if p) + "). Use an unmodified OpenAI checkpoint.")

        fingerprint = hashlib.sha256()
        for k in sorted(state):  # content hash of the weights as stored, for the feature cache key
            fingerprint.update(f"{k}|{state[k].dtype}|{tuple(state[k].shape)}|".encode())
            fingerprint.update(_tensor_bytes(state[k]))
        state = {k: t.to(device=device, dtype=dtype).contiguous() for k, t in state.items()}
        encoder.load_state_dict(state, strict=True, assign=True)
        return cls(encoder, fingerprint=fingerprint.hexdigest(), cache=cache, batch_size=batch_size)

    # ---------------------------------------------------------------------------------------------- properties
    @property
    def feature_dim(self) -> int:
        return self.encoder.config.d_model

    @property
    def num_layers(self) -> int:
        """Encoder blocks; features hold num_layers + 1 hidden states."""
        return self.encoder.config.encoder_layers

    @property
    def n_mels(self) -> int:
        return self.encoder.config.num_mel_bins

    @property
    def window_frames(self) -> int:
        """Mel frames per encoder window (3000 = 30 s for every released whisper)."""
        return 2 * self.encoder.config.max_source_positions

    @property
    def device(self) -> torch.device:
        return self.encoder.conv1.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.encoder.conv1.weight.dtype

    @property
    def fingerprint(self) -> str:
        """Hash of the encoder weights (computed from the module if it was not built from a checkpoint)."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for k, t in sorted(self.encoder.state_dict().items()):
                h.update(f"{k}|{tuple(t.shape)}|".encode())
                h.update(_tensor_bytes(t.float()))
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    # ------------------------------------------------------------------------------------------------ features
    def forward(self, mel_windows: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, window_frames) -> all hidden states (B, window_frames // 2, num_layers + 1, d)."""
        out = self.encoder(mel_windows.to(self.device, self.dtype), output_hidden_states=True)
        return torch.stack(out.hidden_states, dim=2)  # [h0 = stem + positions, block 1 .. block n]

    def encode(self, waveform: np.ndarray | torch.Tensor, *, windows: str = "official",
               use_cache: bool = True) -> torch.Tensor:
        """(N,) float mono 16 kHz waveform in [-1, 1] -> features (L, num_layers + 1, d) float32 CPU.

        L = floor(N / 320) rows (50 per second) in either ``windows`` mode: "official" (default here:
        back-to-back 30-s windows, the official features) or "seamless" (overlapping windows past 30 s; the
        default of a job's settings); see ``audio.windows``.
        """
        check_audio_windows(windows)
        audio = _as_waveform(waveform)
        key = None
        if use_cache and self.cache is not None:
            key = FeatureCache.key(audio, self.cache_fingerprint(windows))
            if (hit := self.cache.get(key)) is not None:
                return hit
        features = self._compute(audio, windows)
        if key is not None:
            self.cache.put(key, features)
        return features

    def cache_fingerprint(self, windows: str) -> str:
        """What besides the samples decides the features: weights, dtype and windows mode. The official key
        is the one used before the modes existed, so features cached then stay valid."""
        official = f"{self.fingerprint}|{self.dtype}"
        return official if windows == "official" else f"{official}|windows={windows}"

    def _compute(self, audio: np.ndarray, windows: str) -> torch.Tensor:
        mel = log_mel_spectrogram(torch.from_numpy(audio), self.n_mels)  # whole clip: global max normalisation
        n_frames, win = mel.shape[1], self.window_frames
        plan = plan_windows(n_frames, win, windows)
        # Windows running past the clip are padded with 0.0 in the normalised log-mel domain (not silent audio).
        batch = mel.new_zeros(len(plan), self.n_mels, win)
        for w, part in enumerate(plan):
            batch[w, :, : min(win, n_frames - part.start)] = mel[:, part.start: part.start + win]
        # Made outside inference mode, so the result is an ordinary tensor (filled in place below).
        features = torch.zeros(plan[-1].end_row, self.num_layers + 1, self.feature_dim)
        with torch.inference_mode():
            for b in range(0, len(plan), self.batch_size):
                states = self(batch[b: b + self.batch_size])
                for j, part in enumerate(plan[b: b + self.batch_size]):
                    offset = part.start // 2  # clip row -> position in its window
                    rows = states[j, part.first_row - offset: part.end_row - offset].to("cpu", torch.float32)
                    if part.fade_in or part.fade_out:  # crossfades: weights sum to 1 with the neighbour's
                        weights = torch.from_numpy(part.weights()).float()[:, None, None]
                        features[part.first_row: part.end_row] += rows * weights
                    else:  # every row its own, unscaled: the official features exactly
                        features[part.first_row: part.end_row] = rows
        return features

    # -------------------------------------------------------------------------------------------------- chunks
    @staticmethod
    def chunk_indices(num_features: int, fps: float = 25, audio_feat_length: Sequence[int] = (2, 2)) -> torch.Tensor:
        """Feature-row indices of every video frame's chunk, (n_chunks, 2 * (left + right + 1)) int64.

        Mirrors the official loop: append chunk i, stop once int(i * (50 / fps)) > L (at 25 fps: floor(L/2) + 2
        chunks); chunk i uses rows int(i * 50 / fps) - 2*left ... + 2*(right + 1) - 1, clamped to [0, L - 1].
        """
        if num_features < 1:
            raise InputError("no audio features: the audio is too short to drive any video frame.")
        if not (isinstance(fps, (int, float)) and np.isfinite(fps) and fps > 0):
            raise InputError(f"invalid video frame rate {fps!r}; it must be a positive number.")
        left, right = (int(v) for v in audio_feat_length)
        step = FEATURES_PER_SECOND / fps  # float, as in the official `whisper_idx_multiplier`
        i = np.arange(int((num_features + 1) / step) + 4)  # surely past the first i with int(i * step) > L
        stop = int(np.argmax((i * step).astype(np.int64) > num_features))
        centre = ((i[: stop + 1] * FEATURES_PER_SECOND).astype(np.float64) / fps).astype(np.int64)
        offsets = np.arange(-2 * left, 2 * (right + 1))
        return torch.from_numpy(np.clip(centre[:, None] + offsets, 0, num_features - 1))

    @staticmethod
    def frame_chunks(features: torch.Tensor, fps: float = 25, audio_feat_length: Sequence[int] = (2, 2),
                     frame_indices: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """features (L, n_layer + 1, d) -> chunks (n_chunks, 10 * (n_layer + 1), d); row 5k + layer for tiny.

        `frame_indices` selects only some chunks (all chunks of a long clip take n_chunks * 77 KB for tiny).
        """
        if features.ndim != 3:
            raise InputError(f"features must be (L, layers, dim), got shape {tuple(features.shape)}")
        idx = WhisperAudioEncoder.chunk_indices(features.shape[0], fps, audio_feat_length)
        if frame_indices is not None:
            idx = idx[torch.as_tensor(frame_indices, dtype=torch.long)]
        chunks = features[idx.to(features.device)]  # (n, 10, n_layer + 1, d)
        return chunks.reshape(chunks.shape[0], -1, features.shape[-1])


def _openai_name(target: str, reverse: dict[str, str]) -> str:
    """Best-effort OpenAI name of a transformers parameter, for error messages."""
    if target in reverse:
        return reverse[target]
    if target == "embed_positions.weight":
        return "encoder.positional_embedding"
    if m := re.fullmatch(r"(conv[12])\.(\w+)", target):
        return f"encoder.{m[1]}.{m[2]}"
    if m := re.fullmatch(r"layers\.(\d+)\.(.+)\.(\w+)", target):
        part = {v: k for k, v in _BLOCK_PARTS.items()}.get(m[2], m[2])
        return f"encoder.blocks.{m[1]}.{part}.{m[3]}"
    return target


def _as_waveform(waveform: np.ndarray | torch.Tensor) -> np.ndarray:
    """Validate user audio -> contiguous (N,) float32 numpy array."""
    arr = waveform.detach().cpu().numpy() if isinstance(waveform, torch.Tensor) else np.asarray(waveform)
    if arr.ndim != 1:
        raise InputError(f"audio must be a mono 1-D waveform, got shape {arr.shape}; mix the channels down first.")
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"audio must be float samples in [-1, 1], got {arr.dtype}; convert int16 with x / 32768.")
    if arr.shape[0] < MIN_SAMPLES:
        raise InputError(f"audio is too short: {arr.shape[0]} samples ({arr.shape[0] / SAMPLE_RATE:.3f} s at 16 kHz);"
                         f" at least {MIN_SAMPLES} samples ({MIN_SAMPLES * 1000 // SAMPLE_RATE} ms) are needed.")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise InputError("audio contains NaN or infinite samples; the file is probably damaged.")
    return arr
