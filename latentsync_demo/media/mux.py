"""Put an audio track on an encoded video, with frame-accurate lengths."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import InputError
from .audio import SAMPLE_RATE, write_wav
from .ffmpeg import fs_path, run_ffmpeg
from .probe import MediaInfo, count_frames, probe
from .subtitles import iso639_2, read_srt, write_srt
from .temp import job_tempdir


def mux(
    video_path: str | os.PathLike,
    audio: np.ndarray | str | os.PathLike | MediaInfo,
    out_path: str | os.PathLike,
    *,
    sample_rate: int = SAMPLE_RATE,
    num_frames: int | None = None,
    fps: float | None = None,
    metadata: Mapping[str, str] | None = None,
    audio_bitrate: str = "192k",
    subtitles: str | os.PathLike | None = None,
    subtitle_language: str | None = None,
) -> Path:
    """Write `out_path` (MP4): the video stream of `video_path` copied as is, plus `audio` encoded as AAC.

    audio: mono float32 samples at `sample_rate` (e.g. from `load_audio`), or a file (or its `MediaInfo`) whose
    first audio track is used (e.g. the user's original upload, which keeps its full quality).
    The audio is padded with silence or cut so that it lasts exactly num_frames / fps (`-shortest` only cuts
    to whole audio packets); num_frames is counted from the file when not given, fps probed when not given.
    metadata: container tags written in this same pass (see `set_metadata` for the key rules), so a finished
    output is written once.
    subtitles: a SubRip (.srt) file added as a soft ``mov_text`` track in this same pass, tagged with
    ``subtitle_language`` (an XTTS code such as "es", or an ISO 639-2 tag; None: "und", undetermined).
    """
    cues, tag = _subtitle_cues(subtitles, subtitle_language)  # checked before any work
    if fps is None:
        info = probe(video_path)
        if not info.has_video:
            raise InputError(f"the file has no video stream: {info.path}")
        fps = info.fps
    frames = count_frames(video_path) if num_frames is None else num_frames
    duration = frames / fps
    out = Path(out_path)
    with job_tempdir() as tmp:
        if isinstance(audio, np.ndarray):
            source = tmp / "audio.wav"
            write_wav(source, audio, sample_rate)
        else:
            audio_info = audio if isinstance(audio, MediaInfo) else probe(audio)
            if not audio_info.has_audio:
                raise InputError(f"no audio track in {audio_info.path}; pass a file with sound.")
            source = audio_info.path
        subtitle_args = _subtitle_args(cues, tag, tmp)
        # apad makes the audio at least as long as the video; -t (sample-accurate on filtered audio) cuts both.
        args = ["-y", "-i", fs_path(video_path), "-i", fs_path(source), *subtitle_args[0], "-map", "0:V:0",
                "-map", "1:a:0", *subtitle_args[1], "-c:v", "copy", "-af", "apad", "-c:a", "aac", "-b:a", audio_bitrate,
                *subtitle_args[2], "-t", f"{duration:.6f}", *_metadata_args(metadata or {}),
                "-movflags", "+faststart" + ("+use_metadata_tags" if metadata else ""), fs_path(out)]
        try:
            run_ffmpeg(args)
        except BaseException:
            out.unlink(missing_ok=True)
            raise
    return out


def _subtitle_cues(subtitles, language: str | None) -> tuple[list | None, str]:
    """The cues of the soft track's SubRip file (None: no track) and its language tag; InputError for a malformed
    or empty file, or a language XTTS lacks."""
    if subtitles is None:
        return None, ""
    cues = read_srt(subtitles)  # InputError naming the line of a malformed file
    if not cues:
        raise InputError(f"the subtitle file {Path(subtitles).name} has no cues: nothing to add as subtitles")
    return cues, iso639_2(language) if language else "und"


def _subtitle_args(cues, tag: str, tmp: Path) -> tuple[list[str], list[str], list[str]]:
    """The input, map and codec options of a soft subtitle track (three empty lists without one). The cues go to
    ffmpeg rewritten as plain SubRip: what ``read_srt`` tolerates (a BOM, "." before the milliseconds, no index)
    ffmpeg's own parser may read differently."""
    if cues is None:
        return [], [], []
    srt = write_srt(cues, tmp / "subtitles.srt")
    # The SubRip input is always input 2 (video 0, audio 1).
    return (["-f", "srt", "-i", fs_path(srt)], ["-map", "2:s:0"],
            ["-c:s", "mov_text", "-metadata:s:s:0", f"language={tag}"])


def _metadata_args(metadata: Mapping[str, str]) -> list[str]:
    args = []
    for key, value in metadata.items():
        if not key.replace("_", "").isalnum():
            raise ValueError(f"metadata key must be a plain word: {key!r}")
        args += ["-metadata", f"{key}={value}"]
    return args


def set_metadata(path: str | os.PathLike, metadata: dict[str, str]) -> Path:
    """Rewrite the MP4 at `path` in place with container metadata tags (streams copied, nothing re-encoded).

    `use_metadata_tags` stores arbitrary keys (as MP4 'mdta' keys that ffmpeg, exiftool and mediainfo read);
    keys must be plain words, values any text.
    """
    path = Path(path)
    args = ["-y", "-i", fs_path(path), "-map", "0", "-c", "copy", "-map_metadata", "0", *_metadata_args(metadata)]
    with job_tempdir() as tmp:
        staged = tmp / path.name
        run_ffmpeg([*args, "-movflags", "+faststart+use_metadata_tags", "-f", "mp4", fs_path(staged)])
        os.replace(staged, path) if staged.stat().st_dev == path.stat().st_dev else path.write_bytes(
            staged.read_bytes())
    return path
