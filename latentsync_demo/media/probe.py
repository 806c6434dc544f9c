"""Inspect a media file: streams, displayed size, frame rate, duration.

imageio-ffmpeg ships no ffprobe, so this parses the stream summary that `ffmpeg -i FILE` prints to stderr. That
format is stable across ffmpeg 4-9 for the fields used here; rotation is read from both the current side-data
line ("Display Matrix: rotation of -90.00 degrees") and the old "rotate : 90" stream tag.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .ffmpeg import ffmpeg_exe, fs_path, stderr_tail

_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_STREAM = re.compile(r"^\s*Stream #\d+:\d+\S*: (\w+): (.*)$")
_SIZE = re.compile(r"(?:^|[\s,])(\d+)x(\d+)(?=$|[\s,\[])")
_RATE = r"(\d+(?:\.\d+)?)(k?) {}\b"
_DISPLAY_MATRIX = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees", re.IGNORECASE)
_ROTATE_TAG = re.compile(r"^\s*rotate\s*:\s*(-?\d+)", re.MULTILINE)
_PROGRESS = re.compile(rb"^(frame|out_time_us)=(\d+)$", re.MULTILINE)

# Rates above this are container time bases (webm/mkv print "1k tbr"), not real frame rates.
_MAX_PLAUSIBLE_FPS = 240.0


@dataclass(frozen=True)
class MediaInfo:
    """What `probe` found. Sizes are as displayed (rotation applied); rotation is clockwise degrees."""

    path: str
    container: str
    duration: float
    has_video: bool = False
    has_audio: bool = False
    width: int = 0
    height: int = 0
    fps: float = 0.0
    rotation: int = 0
    video_codec: str | None = None
    audio_codec: str | None = None
    audio_sample_rate: int | None = None
    num_frames: int = 0

    def frames_at(self, fps: float) -> int:
        """Estimated frame count after resampling to `fps`."""
        return round(self.duration * fps) if self.has_video else 0


def check_file(path: str | os.PathLike) -> Path:
    """Raise InputError unless `path` is an existing, non-empty file."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"file not found: {p}. Check the path, or upload the file again.")
    if not p.is_file():
        raise InputError(f"not a file: {p} (is it a folder?). Pass the path of a video or audio file.")
    if p.stat().st_size == 0:
        raise InputError(f"the file is empty (0 bytes): {p}. The upload or export probably failed; try again.")
    return p


# How to export a file again, by what it was meant to be (a video must keep its picture: never "as WAV").
EXPORT_ADVICE = {"video": ("Re-export it as MP4 (H.264/AAC) and try again.", "Export it again as MP4 and upload it "
                           "again."),
                 "speech": ("Re-export it as WAV (or MP4 with sound) and try again.", "Export it again as WAV or "
                            "MP3 and upload it again."),
                 None: ("Re-export it as MP4 (H.264/AAC) or WAV and try again.", "Export it again (a video as MP4, "
                        "speech as WAV) and upload it again.")}


def probe(path: str | os.PathLike, kind: str | None = None) -> MediaInfo:
    """Read the stream layout of `path`; raises InputError for missing, empty or non-media files. ``kind``
    ("video" or "speech"): what the file is meant to be, so that the advice for an unreadable one fits it."""
    p = check_file(path)
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", fs_path(p)]
    # Without an output ffmpeg always exits non-zero; success is recognised by the "Input #0" summary.
    text = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False).stderr
    text = text.decode("utf-8", "replace")
    if "Input #0" not in text:
        # Keep the demuxer's reason ("moov atom not found"), not the generic "Error opening input file" lines.
        reason = stderr_tail("\n".join(x for x in text.splitlines() if "Error opening input file" not in x), 2)
        advice, web_advice = EXPORT_ADVICE.get(kind, EXPORT_ADVICE[None])
        raise InputError(
            f"not a video or audio file, or unreadable (corrupt or truncated?): {p.name} [{reason}]. {advice}",
            web=f"{p.name} is not a video or audio file this app can read (it may be incomplete or damaged). "
                f"{web_advice}",
        )
    container = text.split("Input #0, ", 1)[1].split(",", 1)[0] if "Input #0, " in text else "unknown"
    video, audio = _first_streams(text)

    fields: dict = {"path": str(p), "container": container}
    m = _DURATION.search(text)
    duration = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3]) if m else None
    if audio:
        fields["has_audio"] = True
        fields["audio_codec"] = audio[0].split()[0].strip(",")
        rate = re.search(r"(\d+) Hz", audio[0])
        fields["audio_sample_rate"] = int(rate[1]) if rate else None
    if video:
        size = _SIZE.search(video[0])
        if not size:
            raise InputError(f"could not read the frame size of the video stream in {p.name}; re-export the video.")
        rotation = _rotation(video[1])
        w, h = int(size[1]), int(size[2])
        # ffmpeg autorotates while decoding, so a quarter turn swaps the displayed width and height.
        if rotation in (90, 270):
            w, h = h, w
        fps = _rate(video[0], "fps") or _rate(video[0], "tbr")
        fps = fps if fps and fps <= _MAX_PLAUSIBLE_FPS else None
        if duration is None or fps is None:
            # Live-recorded webm/mkv often lack a duration or an average rate: count packets instead.
            frames, end_time = _scan_packets(p, "0:V:0")
            fps = fps or (frames / end_time if end_time > 0 else 25.0)
            duration = duration or frames / fps
        fields.update(has_video=True, width=w, height=h, fps=fps, rotation=rotation,
                      video_codec=video[0].split()[0].strip(","), num_frames=round(duration * fps))
    elif audio and duration is None:
        duration = _scan_packets(p, "0:a:0")[1]
    return MediaInfo(duration=duration or 0.0, **fields)


def _first_streams(text: str) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
    """(stream line, following detail lines) of the first real video stream and of the first audio stream."""
    blocks: list[tuple[str, str, list[str]]] = []
    for line in text.splitlines():
        m = _STREAM.match(line)
        if m:
            blocks.append((m[1], m[2], []))
        elif blocks and line.startswith(" "):
            blocks[-1][2].append(line)
        elif blocks:
            break  # an unindented line ends the per-stream section
    # Cover art in mp3/m4a files shows up as a video stream flagged "(attached pic)"; it is not a video.
    video = next(((d, "\n".join(x)) for k, d, x in blocks if k == "Video" and "attached pic" not in d), None)
    audio = next(((d, "\n".join(x)) for k, d, x in blocks if k == "Audio"), None)
    return video, audio


def _rotation(details: str) -> int:
    """Clockwise rotation (0/90/180/270) the player applies, from the display matrix or the legacy tag."""
    m = _DISPLAY_MATRIX.search(details)
    if m:  # the display matrix angle is counter-clockwise
        return round(-float(m[1]) / 90) % 4 * 90
    m = _ROTATE_TAG.search(details)
    return round(int(m[1]) / 90) % 4 * 90 if m else 0


def _rate(stream_line: str, unit: str) -> float | None:
    m = re.search(_RATE.format(unit), stream_line)
    return float(m[1]) * (1000 if m[2] else 1) if m else None


def _scan_packets(path: Path, stream: str) -> tuple[int, float]:
    """(packet count, time reached in s) of one stream, by a fast stream copy into the null muxer."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-nostats", "-i", fs_path(path),
           "-map", stream, "-c", "copy", "-f", "null", "-progress", "pipe:1", "-"]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False).stdout
    values = dict(_PROGRESS.findall(out))  # the last report wins
    return int(values.get(b"frame", 0)), int(values.get(b"out_time_us", 0)) / 1e6


def count_frames(path: str | os.PathLike) -> int:
    """Exact number of frames in the first video stream (reads packets, decodes nothing)."""
    return _scan_packets(check_file(path), "0:V:0")[0]
