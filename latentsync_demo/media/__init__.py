"""Video and audio I/O on top of ffmpeg: probing, streaming decode/encode, audio loading, muxing.

Any container and codec ffmpeg reads works as input. Frames are streamed, never loaded all at once, and bad
input raises `latentsync_demo.errors.InputError` with a message meant for the user.
"""

from ..errors import InputError
from .audio import SAMPLE_RATE, load_audio, to_int16, write_wav
from .ffmpeg import ffmpeg_exe, run_ffmpeg
from .mux import mux
from .probe import MediaInfo, count_frames, probe
from .temp import job_tempdir
from .video import MODEL_FPS, VideoWriter, iter_batches, iter_frames, iter_luma, read_frames

__all__ = [
    "InputError",
    "MODEL_FPS",
    "MediaInfo",
    "SAMPLE_RATE",
    "VideoWriter",
    "count_frames",
    "ffmpeg_exe",
    "iter_batches",
    "iter_frames",
    "iter_luma",
    "job_tempdir",
    "load_audio",
    "mux",
    "probe",
    "read_frames",
    "run_ffmpeg",
    "to_int16",
    "write_wav",
]
