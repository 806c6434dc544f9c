"""What a user chooses for one lip-sync job, and what the job reports back.

``GenerationSettings`` holds only choices a person makes in the app, the CLI, the REST form or a batch row;
values the service derives for a job (its watermark number, the resolved window and batch sizes) live in the
prepared request (``latentsync_demo.request``) and in the job plan, never here. This module imports nothing
heavy, so front ends can build settings before torch loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

OFFICIAL_SEED = 1247  # the official app's and inference.sh's seed
OFFICIAL_GUIDANCE = 1.5  # the official audio guidance (classifier-free guidance scale)
# How a clip longer than 30 s is cut into Whisper windows (``audio.windows``): seamless = overlapping windows, no
# feature jump every 30 s (the default); official = the official back-to-back windows, exactly. Same for <= 30 s.
AUDIO_WINDOW_MODES = ("seamless", "official")


@dataclass(frozen=True)
class GenerationSettings:
    sampler: str = "ddim"  # a key of pipeline.samplers.SAMPLERS
    num_inference_steps: int = 20
    guidance_scale: float = OFFICIAL_GUIDANCE
    seed: int = OFFICIAL_SEED
    face_index: int = 0  # 0 = the largest face in the frame
    landmarks: str = "auto"  # auto: insightface when its files are there, else mediapipe (face.landmarks)
    length_mode: str | None = None  # a pipeline.length.LENGTH_MODES name; None: the default (pingpong)
    deepcache: bool = True  # reuse deep UNet features on 2 of 3 steps (official app/inference.sh default)
    chunk_batch: int = 0  # 16-frame chunks per UNet/VAE batch; 0 = from free device memory (1 on a CPU)
    window_frames: int = 0  # frames per generated chunk; 0 = automatic (16, longer for hierarchical checkpoints)
    audio_windows: str = "seamless"  # an AUDIO_WINDOW_MODES name: Whisper windows of clips over 30 s


@dataclass(frozen=True)
class VoiceRequest:
    """Whose voice drives the lip sync: "off" (the uploaded audio), "revoice" (its words, in the on-screen
    speaker's voice), "script" (typed ``text`` in that voice) or "translate" (the video's own speech, translated
    into ``target_language`` and spoken in that voice: dubbing). ``reference``: a clip of the speaker's voice to
    use instead of the video's own audio track. ``language``: the language of the speech (default: detected)."""

    mode: str = "off"
    text: str | None = None
    language: str | None = None
    reference: str | Path | None = None
    target_language: str | None = None  # translate: the XTTS language to dub into ("es", "de", "zh-cn", ...)
    # translate: an edited transcript to speak instead of transcribing and translating: a .json/.srt file or a
    # voice.dubbing.DubScript (the app's edited table)
    transcript: object = None
    subtitles: str = "soft"  # translate: a SUBTITLE_MODES name
    keep_room: bool = False  # the output's sound: the new speech over the video's own sound, ducked under it


VOICE_MODES = ("off", "revoice", "script", "translate")
# Subtitles of a dub: soft = a subtitle track in the MP4 (players can switch it off) and an .srt beside it;
# burn = drawn into the picture (and the .srt); off = the .srt beside the output only.
SUBTITLE_MODES = ("soft", "burn", "off")


@dataclass(frozen=True)
class FaceTrack:
    """The faces a job's landmark pass found: per 25 fps source frame, a (k, 5) array of [x0, y0, x1, y1, 1]
    boxes (the landmarks' extent), ``backend`` the detector that found them. The lip-sync score of the original
    clip reuses them when it would run the same detector (``LipSyncService.score_job``)."""

    video: str  # the source video's path
    backend: str
    boxes: tuple = field(repr=False)


@dataclass(frozen=True)
class JobEvent:
    stage: str  # voice | reading | detecting faces | encoding audio | generating | writing | done | stopped
    fraction: float  # of the whole job, 0..1
    message: str
    chunk: int | None = None  # 1-based, for "generating"
    num_chunks: int | None = None
    preview: np.ndarray | None = field(default=None, repr=False)  # original | result, side by side
    output: Path | None = None
    audio: Path | None = None  # speech made for this job (voice cloning), playable before lip sync ends
    frames: int | None = None  # "done"/"stopped": frames in the output
    compare: Path | None = None  # "done"/"stopped": the original | result video, when one was asked for
    manifest: Path | None = None  # provenance sidecar (C2PA-style JSON) of the output, on the done event
    subtitles: Path | None = None  # "done"/"stopped": the .srt written beside the output, when the job had subtitles
    face_track: FaceTrack | None = field(default=None, repr=False)  # "done"/"stopped": the source's face boxes
    notes: str = ""  # what the user should know: a warning before the job, what was looped/cut/padded at the end
