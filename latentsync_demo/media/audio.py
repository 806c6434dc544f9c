"""Audio decoding to the model's format (16 kHz mono float32) and WAV writing."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np

from ..errors import InputError
from .ffmpeg import fs_path, run_ffmpeg
from .probe import MediaInfo, probe

SAMPLE_RATE = 16000


def load_audio(path: str | os.PathLike | MediaInfo, sample_rate: int = SAMPLE_RATE, *,
               check_finite: bool = True) -> np.ndarray:
    """Decode the audio of `path` (an audio file, or a video's audio track) to mono float32 in [-1, 1).

    `path` may be the file's `MediaInfo` from an earlier `probe` (then it is not probed again).
    check_finite=False skips `check_finite_samples` (a second decode of float PCM) for audio already checked.
    This is the official LatentSync conversion: ffmpeg resamples and downmixes to signed 16-bit PCM, and the
    samples are divided by 32768. For a 16 kHz mono 16-bit WAV the result is exactly int16 / 32768.
    """
    info = path if isinstance(path, MediaInfo) else probe(path)
    if not info.has_audio:
        if info.has_video:
            raise InputError(f"no audio track in this video: {info.path}. Upload a separate audio file, "
                             "or a video that has sound.")
        raise InputError(f"no audio stream in {info.path}; pass a WAV, MP3, M4A, FLAC or OGG file.")
    # Stream choice is left to ffmpeg (as in the official code) so multi-track files pick the same track.
    args = ["-i", fs_path(info.path), "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(sample_rate),
            "-acodec", "pcm_s16le", "-f", "s16le", "pipe:1"]
    raw = run_ffmpeg(args, input_error=f"could not decode the audio of {info.path} (corrupt?)").stdout
    samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / np.float32(32768.0)
    if samples.size == 0:
        raise InputError(f"the audio track is empty (length 0) in {info.path}; record or export it again.")
    if check_finite:
        check_finite_samples(info)
    return samples


def check_finite_samples(info: MediaInfo) -> None:
    """Refuse float PCM audio (32/64-bit float WAV, CAF, ...) holding NaN or infinite samples.

    The conversion to 16-bit above would silently turn them into noise or silence, and the AAC encoder
    of the final mux fails on them; so they are caught here, where the audio is first read.
    """
    if not (info.audio_codec or "").startswith("pcm_f"):
        return  # integer PCM and compressed codecs cannot carry NaN/inf
    args = ["-i", fs_path(info.path), "-vn", "-sn", "-dn", "-acodec", "pcm_f32le", "-f", "f32le", "pipe:1"]
    raw = run_ffmpeg(args, input_error=f"could not decode the audio of {info.path} (corrupt?)").stdout
    samples = np.frombuffer(raw, dtype="<f4")
    bad = np.count_nonzero(~np.isfinite(samples))
    if bad:
        raise InputError(f"the audio of {Path(info.path).name} contains {bad} invalid samples (NaN or infinite "
                         "values, a broken float WAV export); export it again, e.g. as 16-bit WAV.")


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] to int16 (x * 32768, rounded and clipped); int16 input passes through.

    This inverts `load_audio` exactly, so a decode -> write -> decode round trip is lossless.
    """
    samples = np.asarray(samples)
    if samples.dtype == np.int16:
        return samples
    return np.clip(np.round(samples.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def write_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write 16-bit PCM WAV; `samples` is (n,) mono or (n, channels), float in [-1, 1] or int16."""
    pcm = to_int16(samples)
    if pcm.ndim not in (1, 2):
        raise ValueError(f"audio must be shaped (n,) or (n, channels), got {pcm.shape}")
    with wave.open(os.fspath(path), "wb") as f:
        f.setnchannels(1 if pcm.ndim == 1 else pcm.shape[1])
        f.setsampwidth(2)
        f.setframerate(int(sample_rate))
        f.writeframes(np.ascontiguousarray(pcm, dtype="<i2").tobytes())


QUIET_DBFS = -45.0  # speech sits around -30 to -15 dBFS; below this the model sees (nearly) no voice


def silence_note(samples: np.ndarray) -> str:
    """A warning when ``samples`` (float, -1..1) are silent or nearly so (RMS level below QUIET_DBFS), else "":
    the job still runs, but the mouth will barely move, which looks like a failure unless the user is told."""
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
    level = 20 * np.log10(max(rms, 1e-10))
    if level >= QUIET_DBFS:
        return ""
    loudness = "silent" if level < -80 else f"nearly silent ({level:.0f} dBFS)"
    return f"The speech is {loudness}: the mouth will barely move. Check that the right audio was uploaded."
