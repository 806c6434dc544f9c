"""Small synthetic media generators for tests, benchmarks and app examples (no downloads).

`make_talking_head_clip` moves and zooms a tight crop of skimage's astronaut photo (a real, frontal face that
face detectors find) so every frame differs; `face=False` gives moving shapes instead. The audio is a
speech-like signal: a voiced harmonic tone with a wandering pitch, gated into syllables at about 4 per second.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..media.audio import write_wav
from ..media.temp import job_tempdir
from ..media.video import VideoWriter

# Face box of skimage.data.astronaut() (x, y, w, h), as found by OpenCV's frontal-face Haar cascade.
_FACE_BOX = (177, 66, 95, 95)

# Codec options by output extension; H.264 + AAC otherwise. x264 needs 4:4:4 for odd frame sizes.
_CODECS = {
    ".webm": (["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "0", "-crf", "40",
               "-pix_fmt", "yuv420p"], ["-c:a", "libopus", "-ar", "48000"]),
    ".avi": (["-c:v", "mpeg4", "-q:v", "4"], ["-c:a", "libmp3lame"]),
}


def speech_like(seconds: float, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Mono float32 speech-like audio in [-0.5, 0.5]: harmonics of a 100-200 Hz pitch, syllable-gated."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    f0 = 150 + 40 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6.3)) + 10 * np.sin(2 * np.pi * 5.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    # Harmonic amplitudes with two broad "formant" bumps, around 500 Hz and 1500 Hz.
    voiced = sum((np.exp(-((k * 150 - 500) / 300) ** 2) + 0.5 * np.exp(-((k * 150 - 1500) / 400) ** 2) + 0.2 / k)
                 * np.sin(k * phase) for k in range(1, 16))
    # Syllables: raised-cosine bumps of 120-280 ms with short pauses in between.
    envelope = np.zeros(n)
    start = rng.uniform(0.0, 0.1)
    while start < seconds:
        length = rng.uniform(0.12, 0.28)
        i0, i1 = int(start * sample_rate), min(n, int((start + length) * sample_rate))
        if i1 > i0:
            envelope[i0:i1] = rng.uniform(0.5, 1.0) * np.sin(np.linspace(0, np.pi, i1 - i0))
        start += length + rng.uniform(0.03, 0.15)
    signal = voiced * envelope + 0.01 * rng.standard_normal(n)
    return (0.5 * signal / max(np.abs(signal).max(), 1e-9)).astype(np.float32)


def make_speech_wav(path: str | os.PathLike, seconds: float = 2.0, sample_rate: int = 16000, seed: int = 0) -> Path:
    """Write `speech_like` audio as 16-bit mono WAV."""
    write_wav(path, speech_like(seconds, sample_rate, seed), sample_rate)
    return Path(path)


def _face_frame(image: np.ndarray, t: float, width: int, height: int) -> np.ndarray:
    # Face about half the frame's short side, drifting and zooming a little over time.
    x, y, w, h = _FACE_BOX
    scale = 0.5 * min(width, height) / w * (1 + 0.04 * np.sin(2 * np.pi * 0.6 * t))
    cx = width / 2 + 0.04 * width * np.sin(2 * np.pi * 0.5 * t)
    cy = height / 2 + 0.03 * height * np.cos(2 * np.pi * 0.4 * t)
    m = np.array([[scale, 0, cx - scale * (x + w / 2)], [0, scale, cy - scale * (y + h / 2)]])
    return cv2.warpAffine(image, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _shapes_frame(t: float, width: int, height: int) -> np.ndarray:
    frame = np.empty((height, width, 3), np.uint8)
    frame[:] = np.linspace(40, 200, width, dtype=np.uint8)[None, :, None]
    r = max(2, min(width, height) // 8)
    cx = int(width / 2 + width / 3 * np.sin(2 * np.pi * 0.5 * t))
    cy = int(height / 2 + height / 3 * np.cos(2 * np.pi * 0.3 * t))
    cv2.circle(frame, (cx, cy), r, (230, 40, 40), -1)
    cv2.rectangle(frame, (width - cx - r, cy - r), (width - cx + r, cy + r), (40, 200, 60), -1)
    return frame


def make_talking_head_clip(
    path: str | os.PathLike,
    seconds: float = 2.0,
    fps: float = 30,
    size: tuple[int, int] = (256, 256),
    with_audio: bool = True,
    seed: int = 0,
    face: bool = True,
    audio_rate: int = 44100,
    video_codec: str | None = None,
) -> Path:
    """Write a short synthetic clip at `fps`, size (width, height); the codec follows the extension.

    mp4/mov/mkv: H.264 + AAC; webm: VP9 + Opus; avi: MPEG-4 + MP3. `video_codec` (e.g. "libx265") overrides
    the video codec. Frames are streamed into ffmpeg, so long or large clips (benchmarks) are fine too.
    """
    from skimage.data import astronaut

    path = Path(path)
    width, height = size
    video_args, audio_args = _CODECS.get(path.suffix.lower(), (
        ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "20",
         "-pix_fmt", "yuv444p" if width % 2 or height % 2 else "yuv420p"], ["-c:a", "aac"]))
    if video_codec:
        video_args = ["-c:v", video_codec, "-pix_fmt", "yuv420p"]
    image = astronaut() if face else None
    n_frames = int(round(seconds * fps))
    with job_tempdir() as tmp:
        input_args: list[str] = []
        if with_audio:
            make_speech_wav(tmp / "speech.wav", seconds, audio_rate, seed)
            input_args = ["-i", str(tmp / "speech.wav")]
            audio_args = ["-map", "0:v", "-map", "1:a", *audio_args, "-shortest"]
        else:
            audio_args = ["-an"]
        with VideoWriter(path, width, height, fps, input_args=input_args,
                         output_args=[*video_args, *audio_args]) as writer:
            for i in range(n_frames):
                t = i / fps + 0.37 * seed
                writer.write(_face_frame(image, t, width, height) if face else _shapes_frame(t, width, height))
    return path
