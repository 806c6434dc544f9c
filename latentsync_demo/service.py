"""LipSyncService: the one object the app and the CLI talk to (like Coqui's ``TTS.api`` facade).

It loads models lazily on first use, keeps them cached per (preset, device, dtype) for the life of the
process, and runs one job at a time on the accelerator (a lock), streaming ``JobEvent``s.

    service = LipSyncService(checkpoints="checkpoints/tiny")
    for event in service.lipsync("in.mp4", "speech.wav", "out.mp4", num_inference_steps=20):
        print(event.stage, event.fraction)
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import threading
import time
import uuid
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import torch

from .errors import InputError
from .face.landmarks import LANDMARK_CHOICES, make_detector
from .loading import LoadedModels, load_lcm_unet, load_models
from .media import job_tempdir, probe
from .pipeline import SAMPLERS, LipSyncPipeline, make_scheduler
from .pipeline.batching import OFFICIAL_WINDOW, auto_window_frames
from .pipeline.length import resolve_length_mode
from .pipeline.video import GenerationSettings, JobEvent, lipsync_video
from .provenance.consent import require_consent
from .provenance.manifest import container_tags, input_hashes, side_by_side_tags, stamp
from .provenance.restrict import JobRequest, RestrictionCheck, checks_from_env, enforce
from .provenance.signing import C2paSigning, resolve_signing
from .provenance.watermark import job_number
from .store import DEFAULT_PRESET, PRESETS, get_preset, resolve
from .validation import check_device, check_duration, validate_request
from .validation import check_settings as check_setting_values

DEFAULT_MAX_SECONDS = 120.0
DEFAULT_MAX_PIXELS = 3840 * 2160  # 4K UHD; an 8K frame is 100 MB of RGB per decoded frame
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VoiceRequest:
    """Whose voice drives the lip sync: "off" (the uploaded audio), "revoice" (its words, in the on-screen
    speaker's voice) or "script" (typed ``text`` in that voice). ``reference``: a clip of the speaker's
    voice to use instead of the video's own audio track."""

    mode: str = "off"
    text: str | None = None
    language: str | None = None
    reference: str | Path | None = None


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str) -> torch.dtype:
    """float16 on GPUs newer than Volta (as the official inference script), float32 elsewhere."""
    if device.startswith("cuda") and torch.cuda.get_device_capability(torch.device(device))[0] > 7:
        return torch.float16
    return torch.float32


class LipSyncService:
    def __init__(
        self,
        checkpoints: str | Path | None = None,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        max_seconds: float | None = DEFAULT_MAX_SECONDS,
        output_dir: str | Path | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        restrictions: list[RestrictionCheck] | None = None,
        compile_unet: bool = False,
        c2pa: C2paSigning | str | None = None,
    ):
        self.checkpoints = checkpoints
        self.max_seconds = max_seconds  # longest video or audio accepted; None = no limit
        self.max_pixels = max_pixels  # largest video frame (width * height) accepted; None = no limit
        self.output_dir = Path(output_dir or Path(tempfile.gettempdir()) / "latentsync_outputs")
        self.device = check_device(device) if device else default_device()  # InputError for "foo", GPU-less "cuda"
        self.dtype = dtype or default_dtype(self.device)
        self.compile_unet = compile_unet  # torch.compile the UNet once per process, with a warm-up (not ZeroGPU)
        self._models: dict[tuple, LoadedModels] = {}
        self._students: dict[tuple, torch.nn.Module] = {}  # LCM students, like _models
        self._voice = None  # VoiceService, created on first use (coqui-tts is a heavy import)
        self._scorer = None  # SyncScorer (lip-sync metric), loaded on first use
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()  # one generation at a time on the device
        # Host policy checks that may refuse a job (provenance/restrict.py); none unless configured.
        self.restrictions = list(restrictions or []) + checks_from_env()
        # Who signs the C2PA manifest embedded in every output (provenance/signing.py): a C2paSigning, "test"
        # (untrusted test certificate), "off", or None = the LATENTSYNC_C2PA* environment (unset: sidecar only).
        self.c2pa_signing = resolve_signing(c2pa)

    def missing_files(self, preset: str = DEFAULT_PRESET) -> list[Path]:
        return resolve(preset, self.checkpoints).missing()

    def download(self, preset: str = DEFAULT_PRESET) -> Path:
        """Fetch the preset's missing files (huggingface_hub progress bars); CheckpointError when offline."""
        from .download import download

        return download(preset, self.checkpoints)

    def new_output_path(self, suffix: str = ".mp4", keep_seconds: float = 3600.0, name: str | None = None) -> Path:
        """A fresh path in ``output_dir``; results older than ``keep_seconds`` are removed.

        ``name``: the file's name without suffix (e.g. "talk_lipsync", what a download is saved as); it goes in a
        folder of its own so that equal names never collide.
        """
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for old in self.output_dir.iterdir():
            if time.time() - old.stat().st_mtime > keep_seconds:
                if old.is_dir():
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    old.unlink(missing_ok=True)
        if name is None:
            return self.output_dir / f"lipsync_{uuid.uuid4().hex[:12]}{suffix}"
        folder = self.output_dir / uuid.uuid4().hex[:12]
        folder.mkdir()
        safe = re.sub(r"[^\w.-]+", "_", name).strip("._")[:80] or "lipsync"
        return folder / f"{safe}{suffix}"

    @property
    def voice(self):
        """The voice-cloning facade (XTTS + ASR), sharing this service's checkpoints and device."""
        if self._voice is None:
            from .voice import VoiceService

            self._voice = VoiceService(self.checkpoints, self.device)
        return self._voice

    def voice_audio(self, video: str | Path, audio: str | Path | None, request: VoiceRequest,
                    seed: int | None = None) -> Path:
        """New speech in the speaker's voice for a "revoice" or "script" ``request``: a .wav in output_dir,
        kept after the job so the app can play it."""
        from .voice import prepare_driving_audio

        with job_tempdir() as work:
            made = prepare_driving_audio(request.mode, video, audio, request.text, request.language,
                                         request.reference, work, self.voice, seed=seed)
            return Path(made.replace(self.new_output_path(".wav")))

    def check_length(self, *paths: str | Path) -> None:
        """Refuse inputs longer than ``max_seconds`` before any work starts."""
        for path in paths:
            check_duration(probe(path), self.max_seconds)

    def models(self, preset: str = DEFAULT_PRESET) -> LoadedModels:
        """The preset's models, loaded once per process."""
        key = (preset, self.device, self.dtype)
        with self._load_lock:
            if key not in self._models:
                models = load_models(resolve(preset, self.checkpoints), self.device, self.dtype)
                if self.compile_unet:
                    from .models.compile import compile_unet

                    compile_unet(models.unet, models.resolution,  # warm up at the window jobs will use
                                 frames=self.window_frames(models, GenerationSettings()))
                self._models[key] = models
            return self._models[key]

    def has_lcm(self, preset: str = DEFAULT_PRESET) -> bool:
        """Whether the preset's folder has a distilled LCM student (``<folder>/lcm/``)."""
        return resolve(preset, self.checkpoints).has_lcm()

    def pipeline(self, preset: str = DEFAULT_PRESET, sampler: str = "ddim") -> LipSyncPipeline:
        """A pipeline for ``sampler`` on the cached models (LCM: the distilled student, loaded once)."""
        models = self.models(preset)
        if not SAMPLERS[sampler].needs_student:  # ddim and the few-step solvers run the official weights
            return LipSyncPipeline(models.unet, models.vae, make_scheduler(sampler))
        key = (preset, self.device, self.dtype, sampler)
        with self._load_lock:
            if key not in self._students:
                checkpoints = resolve(preset, self.checkpoints)
                self._students[key] = load_lcm_unet(checkpoints, self.device, self.dtype, base_unet=models.unet)
        return LipSyncPipeline(self._students[key], models.vae, make_scheduler(sampler))

    def _check_sampler(self, preset: str, settings: GenerationSettings) -> None:
        spec = SAMPLERS.get(settings.sampler)
        if spec is None:
            raise InputError(f"unknown sampler {settings.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if not spec.min_steps <= settings.num_inference_steps <= spec.max_steps:
            raise InputError(f"{spec.name} takes {spec.min_steps} to {spec.max_steps} steps, "
                             f"not {settings.num_inference_steps}")
        if spec.name == "lcm":
            resolve(preset, self.checkpoints).require_lcm()

    def check_settings(self, preset: str, settings: GenerationSettings) -> None:
        """InputError for an unknown preset, sampler, length mode or landmark backend, or steps out of range
        (before any work), and settings no sampler can run (seed, steps, guidance, face index)."""
        check_setting_values(settings)
        if preset not in PRESETS:
            raise InputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        if settings.landmarks not in LANDMARK_CHOICES:
            raise InputError(f"unknown landmark backend {settings.landmarks!r}; "
                             f"choose one of {', '.join(LANDMARK_CHOICES)}")
        self._check_sampler(preset, settings)
        resolve_length_mode(settings.length_mode, settings.keep_video_tail)

    def lipsync(
        self,
        video: str | Path,
        audio: str | Path | None,
        out: str | Path,
        preset: str = DEFAULT_PRESET,
        settings: GenerationSettings | None = None,
        voice: VoiceRequest | None = None,
        stop: threading.Event | None = None,
        compare: str | Path | None = None,
        consent: bool = False,
        **overrides,
    ) -> Iterator[JobEvent]:
        """Lip-sync ``video`` to ``audio`` into ``out``; yields progress events, the last one ``done``.

        ``consent=True`` confirms the consent of the person shown (and of the voice's owner when cloning);
        without it the job is refused (ConsentError). ``overrides`` are GenerationSettings fields
        (num_inference_steps, guidance_scale, seed, ...).
        With a ``voice`` request the speech is first re-voiced or synthesised in the speaker's voice; an
        event with ``audio`` set carries that new speech before lip sync starts.
        Every input and setting is checked first (``validation.validate_request``): bad input raises InputError
        before any model loads. ``stop`` and ``compare``: see ``pipeline.video.lipsync_video``.
        Every output carries an invisible watermark with the job number, AI-generated container metadata
        and a ``<out>.c2pa.json`` manifest (the done event's ``manifest``), plus a signed C2PA manifest inside
        the MP4 when signing is configured (``c2pa``); the ``compare`` video gets the same provenance.
        """
        require_consent(consent)
        job_id = uuid.uuid4().hex[:12]
        settings = replace(settings or GenerationSettings(), **overrides)
        settings = replace(settings, watermark_job=job_number(job_id))  # every output is marked
        self.check_settings(preset, settings)
        validate_request(video, audio, out, settings, voice, self.max_seconds, self.max_pixels)
        enforce(self.restrictions, JobRequest(Path(video), Path(audio) if audio else None, preset, job_id,
                                              settings, voice))
        if voice is not None and voice.mode != "off":
            yield JobEvent("voice", 0.0, "speaking in the on-screen speaker's voice")
            audio = self.voice_audio(video, audio, voice, settings.seed)
            self.check_length(audio)  # the new speech; the uploads were checked by validate_request
            yield JobEvent("voice", 0.0, "new speech ready", audio=audio)
        if (preset, self.device, self.dtype) not in self._models:
            yield JobEvent("loading models", 0.0, f"loading the models onto {self.device}")
        pipeline = self.pipeline(preset, settings.sampler)
        models = self.models(preset)
        settings = replace(settings, window_frames=self.window_frames(models, settings, pipeline))
        detector = self.landmark_detector(preset, settings.landmarks)
        with self._run_lock, closing(detector):
            for event in lipsync_video(pipeline, models.audio_encoder, models.resolution, video, audio, out,
                                       settings, detector=detector, stop=stop, compare_path=compare):
                if event.stage in ("done", "stopped"):
                    tags = container_tags(job_id, preset, settings, f"{settings.watermark_job:04x}",
                                          voice.mode if voice is not None else "off")
                    inputs = {"video": Path(video), "audio": Path(audio)}
                    hashes = input_hashes(inputs)  # once, for the result and the side-by-side video
                    event = replace(event, manifest=stamp(out, inputs, tags, self.c2pa_signing, hashes))
                    if event.compare is not None:  # also AI-generated output: the result is its right half
                        stamp(event.compare, {**inputs, "result": Path(out)}, side_by_side_tags(tags),
                              self.c2pa_signing, hashes)
                yield event

    def window_frames(self, models: LoadedModels, settings: GenerationSettings,
                      pipeline: LipSyncPipeline | None = None) -> int:
        """Frames per generated chunk: the setting when given; else the official 16, or, for a checkpoint trained
        with hierarchical temporal attention, the clip length it was trained on (32-64) when one such chunk fits
        in free memory (``pipeline.batching.auto_window_frames``; halved down to 16 where it does not)."""
        if settings.window_frames:
            return settings.window_frames
        if not models.improvements.hierarchical_temporal:
            return OFFICIAL_WINDOW
        guidance = pipeline.uses_guidance(settings.guidance_scale) if pipeline is not None else True
        return auto_window_frames(self.device, models.resolution, self.dtype, models.improvements.num_frames,
                                  guidance)

    def landmark_detector(self, preset: str = DEFAULT_PRESET, name: str = "auto"):
        """The face landmark backend ``name`` ("auto": insightface when its files are in this service's
        checkpoints, mediapipe otherwise), on this service's device."""
        detector = make_detector(name, self.device, resolve(preset, self.checkpoints).insightface_files())
        log.info("face landmarks: %s", detector.name)
        return detector

    # --- lip-sync metric (SyncNet confidence, as the paper's Table 1); see latentsync_demo/eval ---------------

    def metric_files_missing(self) -> list[Path]:
        """SyncNet v2 / S3FD weights not yet in ``<checkpoints>/auxiliary/``."""
        from .eval.scorer import missing_metric_files

        return missing_metric_files(self.checkpoints)

    def download_metric_weights(self) -> Path:
        """Fetch the metric's weights (huggingface_hub progress bars); CheckpointError when offline."""
        from .eval.scorer import download_metric_weights

        return download_metric_weights(self.checkpoints)

    def scorer(self):
        """The SyncScorer, loaded once (CheckpointError saying how to get the weights when they are missing)."""
        from .eval.scorer import SyncScorer

        with self._load_lock:
            if self._scorer is None:
                # S3FD on every frame is the official recipe; on a CPU every 5th frame (tracks interpolate).
                every = 1 if str(self.device).startswith("cuda") else 5
                self._scorer = SyncScorer.from_checkpoints(self.checkpoints, self.device, detect_every=every)
            return self._scorer

    def score(self, video: str | Path, audio: str | Path | None = None):
        """SyncNet confidence / LSE-D / offset of ``video`` against ``audio`` (default: its own sound)."""
        scorer = self.scorer()
        with self._run_lock:
            return scorer.score(video, audio)

    def score_job(self, result: str | Path, original: str | Path, audio: str | Path | None = None) -> str:
        """The line shown after a job: "Lip sync: confidence X (original clip: Y), offset Z frames".

        The original clip is scored with its own soundtrack (what the paper reports for real videos), or
        against ``audio`` when it has none."""
        from .eval.scorer import score_line

        scored = self.score(result)
        own_sound = probe(original).has_audio
        try:
            before = self.score(original, None if own_sound or audio is None else audio)
        except InputError as exc:  # e.g. a silent original soundtrack: still report the result's score
            before = str(exc).split(":")[0]
        line = score_line(scored, before)
        if not scored.face_detector.startswith("s3fd"):
            line += f" (faces from {scored.face_detector}: close to, not exactly, the official protocol)"
        return line


def run_summary(frames: int, seconds: float, settings: GenerationSettings, preset: str, device: str) -> str:
    """One line for the end of a job: wall time, speed, and the settings that produced it."""
    spec = SAMPLERS.get(settings.sampler)
    guidance = f", guidance {settings.guidance_scale:g}" if spec is None or spec.uses_guidance else ""
    return (f"{frames} frames ({frames / 25:.1f} s of video) in {seconds:.1f} s: {frames / max(seconds, 1e-9):.2f} "
            f"frames/s · {settings.sampler.upper()} {settings.num_inference_steps} steps{guidance}, seed "
            f"{settings.seed} · {get_preset(preset).label} · {device}")
