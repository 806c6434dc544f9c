"""LipSyncService: the one object the app and the CLI talk to (like Coqui's ``TTS.api`` facade).

It loads models lazily on first use, keeps them cached per (preset, device, dtype) for the life of the
process, and runs one job at a time on the accelerator (a lock around voice cloning and generation; hashing and
signing the result happen after it), streaming ``JobEvent``s. Every front end first turns its input into one
checked ``PreparedRequest`` (``prepare``: bad input fails there, before any model loads), then runs it.

    service = LipSyncService(checkpoints="checkpoints/tiny")
    request = service.prepare("in.mp4", "speech.wav", "out.mp4", num_inference_steps=20, consent=True)
    for event in service.run(request):
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
from collections import OrderedDict
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import torch

from .errors import InputError
from .face.landmarks import make_detector
from .face.listing import LIST_SECONDS, ListedFace, list_faces
from .loading import LoadedModels, load_lcm_unet, load_models
from .media import MODEL_FPS, MediaInfo, iter_frames, job_tempdir, probe
from .media.subtitles import iso639_2
from .pipeline import SAMPLERS, LipSyncPipeline, make_scheduler
from .pipeline.batching import OFFICIAL_WINDOW, auto_window_frames
from .pipeline.job import JobPlan, run_lipsync_job
from .pipeline.record import load_record, seal_record
from .pipeline.redo import check_span, run_redo
from .provenance.detect import make_marker
from .provenance.manifest import container_tags, input_hashes, side_by_side_tags, stamp
from .provenance.restrict import RestrictionCheck, checks_from_env
from .provenance.signing import C2paSigning, resolve_signing
from .request import (Limits, PreparedRequest, SpeechInput, check_choices, check_landmarks, check_preset,
                      check_voice_models, prepare_request)
from .settings import FaceTrack, GenerationSettings, JobEvent, VoiceRequest
from .store import DEFAULT_PRESET, get_preset, resolve
from .validation import (check_audio, check_device, check_output, check_speech_to_translate, check_video,
                         check_voice)
from .webhooks import CallbackPolicy

DEFAULT_MAX_SECONDS = 120.0
DEFAULT_MAX_PIXELS = 3840 * 2160  # 4K UHD; an 8K frame is 100 MB of RGB per decoded frame
log = logging.getLogger(__name__)


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
        keep_records: bool = True,
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
        self._face_tracks: OrderedDict[str, FaceTrack] = OrderedDict()  # output path -> its source's face boxes
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()  # one generation at a time on the device
        # Host policy checks that may refuse a job (provenance/restrict.py); none unless configured.
        self.restrictions = list(restrictions or []) + checks_from_env()
        # Who signs the C2PA manifest embedded in every output (provenance/signing.py): a C2paSigning, "test"
        # (untrusted test certificate), "off", or None = the LATENTSYNC_C2PA* environment (unset: sidecar only).
        self.c2pa_signing = resolve_signing(c2pa)
        # Keep each output's job record beside it (``<out>.job/``, what ``redo`` needs); it goes when the
        # output goes (new_output_path's keep_seconds sweep in output_dir, else when the user deletes it).
        self.keep_records = keep_records

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
                    seed: int | None = None):
        """New speech in the speaker's voice for a voice ``request`` (``voice.service.Speech``): its files moved
        to output_dir and kept after the job, so the app can play the speech and offer the subtitles."""
        from .voice.service import prepare_speech  # coqui-tts is a heavy import: only for voice jobs

        with job_tempdir() as work:
            speech = prepare_speech(request, video, audio, work, self.voice, seed=seed)
            keep = {name: Path(path.replace(self.new_output_path(path.suffix))) if path is not None else None
                    for name, path in (("driving", speech.driving), ("soundtrack", speech.soundtrack),
                                       ("subtitles", speech.subtitles))}
            if request.mode == "off":
                keep["driving"] = speech.driving  # the upload itself: nothing was made
            return replace(speech, **keep)

    def transcribe_translate(self, video: str | Path, target_language: str, audio: str | Path | None = None,
                             language: str | None = None):
        """The editable transcript of a dub (``voice.dubbing.DubScript``): what ``audio`` (default: the video's own
        sound) says, as timed segments, each translated into ``target_language``. Checks first (InputError for a
        bad language or a clip without speech; CheckpointError naming the download for a missing model)."""
        voice = VoiceRequest("translate", language=language, target_language=target_language)
        check_voice(voice, video, audio)
        video_info = check_video(video, self.max_seconds, self.max_pixels)
        audio_info = check_audio(audio, self.max_seconds) if audio is not None else None
        speech = check_speech_to_translate(video_info, audio_info)
        check_voice_models(voice, self.checkpoints)
        with self._run_lock:  # the recogniser and the translator share the accelerator with generation
            return self.voice.transcribe_translate(speech, target_language, language)

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
        unet = models.unet  # ddim and the few-step solvers run the official weights
        if SAMPLERS[sampler].needs_student:
            key = (preset, self.device, self.dtype, sampler)
            with self._load_lock:
                if key not in self._students:
                    checkpoints = resolve(preset, self.checkpoints)
                    self._students[key] = load_lcm_unet(checkpoints, self.device, self.dtype, base_unet=models.unet)
            unet = self._students[key]
        return LipSyncPipeline(unet, models.vae, make_scheduler(sampler), models.audio_encoder, models.resolution)

    def check_settings(self, preset: str, settings: GenerationSettings) -> None:
        """InputError for an unknown preset, sampler, length mode or landmark backend, or steps out of range
        (before any work), and settings no sampler can run (seed, steps, guidance, face index)."""
        check_choices(preset, settings, self.checkpoints)

    def prepare(
        self,
        video: str | Path,
        audio: str | Path | None,
        out: str | Path,
        preset: str = DEFAULT_PRESET,
        settings: GenerationSettings | None = None,
        voice: VoiceRequest | None = None,
        compare: str | Path | None = None,
        consent: bool = False,
        *,
        callback_url: str | None = None,
        callbacks: CallbackPolicy | None = None,
        shown_faces: tuple[int, ...] | None = None,
        soundtrack: str | Path | None = None,
        subtitles: str | Path | None = None,
        subtitle_language: str | None = None,
        burn_subtitles: bool = False,
        speech: SpeechInput | None = None,
        **overrides,
    ) -> PreparedRequest:
        """Check a request completely and probe each input once (``request.prepare_request``, with this
        service's limits and restrictions); InputError before any model loads.

        ``consent=True`` confirms the consent of the person shown (and of the voice's owner when cloning);
        without it the request is refused (ConsentError). ``overrides`` are GenerationSettings fields
        (num_inference_steps, guidance_scale, seed, ...). ``compare``: also write the original | result video.
        ``callback_url``: where a REST job posts its summary, checked against ``callbacks`` (the REST server's
        policy; none = no destination allowed). ``shown_faces``: the indices a face listing (``list_faces``)
        showed the user; the face index must be one of them. ``soundtrack``: what the output plays instead of
        ``audio`` (the lips still follow ``audio``); ``subtitles``: a SubRip file added as a soft track in
        ``subtitle_language`` (or burned into the frames, ``burn_subtitles``) and copied to ``<out stem>.srt``.

        ``speech``: a dialogue, one speech track per face instead of ``audio`` (None): ``{0: "a.wav", 1: "b.wav"}``,
        ``[(0, "a.wav"), ...]`` or ``["0=a.wav", ...]``. Each face is lip-synced to its own track in one job and
        the output's soundtrack is the tracks mixed. Without ``shown_faces`` the video's first seconds are scanned
        (``list_faces``) to check that every face with a track is there.
        """
        settings = replace(settings or GenerationSettings(), **overrides)

        def find_faces(video_info: MediaInfo) -> list[int]:
            return [face.index for face in self._listed_faces(video_info, preset, settings.landmarks)]

        return prepare_request(video, audio, out, preset=preset, settings=settings, voice=voice, compare=compare,
                               consent=consent, checkpoints=self.checkpoints,
                               limits=Limits(self.max_seconds, self.max_pixels), restrictions=self.restrictions,
                               callback_url=callback_url, callbacks=callbacks or CallbackPolicy(),
                               shown_faces=shown_faces, soundtrack=soundtrack, subtitles=subtitles,
                               subtitle_language=subtitle_language, burn_subtitles=burn_subtitles, speech=speech,
                               find_faces=find_faces)

    def lipsync(self, video, audio, out, preset: str = DEFAULT_PRESET, settings: GenerationSettings | None = None,
                voice: VoiceRequest | None = None, stop: threading.Event | None = None, compare=None,
                consent: bool = False, *, speech: SpeechInput | None = None, **overrides) -> Iterator[JobEvent]:
        """``run(prepare(...))``: the checks run at once (this call raises InputError), the job when iterated.
        ``speech``: a speech track per face (a dialogue; ``audio`` None), as ``prepare`` takes it."""
        return self.run(self.prepare(video, audio, out, preset, settings, voice, compare, consent, speech=speech,
                                     **overrides), stop)

    def run(self, request: PreparedRequest, stop: threading.Event | None = None) -> Iterator[JobEvent]:
        """Run a prepared request; yields progress events, the last one ``done`` (or ``stopped``, see
        ``pipeline.job.run_lipsync_job``).

        With a voice request the speech is first re-voiced or synthesised in the speaker's voice; an event with
        ``audio`` set carries that new speech before lip sync starts. Every output carries an invisible
        watermark with the job number, AI-generated container metadata (written by the output's one mux) and a
        ``<out>.c2pa.json`` manifest (the final event's ``manifest``), plus a signed C2PA manifest inside the MP4
        when signing is configured (``c2pa``); the ``compare`` video gets the same provenance.
        """
        with self._run_lock:  # one job at a time on the accelerator: voice cloning and generation
            speech_notes, sidecar = "", None
            if request.voice is not None:
                yield JobEvent("voice", 0.0, "translating the speech and speaking it in the on-screen speaker's "
                               "voice" if request.voice_mode == "translate" else
                               "speaking in the on-screen speaker's voice")
                request, speech_notes, sidecar = self._with_speech(request)  # the speech made for this job
                yield JobEvent("voice", 0.0, "new speech ready", audio=Path(request.audio.path), notes=speech_notes)
            if (request.preset, self.device, self.dtype) not in self._models:
                yield JobEvent("loading models", 0.0, f"loading the models onto {self.device}")
            pipeline = self.pipeline(request.preset, request.settings.sampler)
            plan = self.job_plan(request, pipeline)
            detector = self.landmark_detector(request.preset, request.settings.landmarks)
            marker = make_marker(request.watermark, resolution=pipeline.resolution)
            final = None
            with closing(detector):
                for event in run_lipsync_job(pipeline, plan, detector, marker, stop):
                    if event.stage in ("done", "stopped"):
                        final = event
                    else:
                        yield event
        self._remember_track(request.out, final.face_track)
        if sidecar is not None and final.stage == "done":  # subtitles "off": only the .srt beside the output
            shutil.copyfile(sidecar, request.out.with_suffix(".srt"))
        if speech_notes:  # what did not fit the original timing (translate), before what the length mode did
            final = replace(final, notes="\n".join(n for n in (speech_notes, final.notes) if n))
        yield self._stamp(final, request, plan)  # hashing and signing need no accelerator

    def _remember_track(self, out: Path, track: FaceTrack | None, keep: int = 16) -> None:
        """The face boxes of a finished job's source, for scoring that source after the job (``score_job``)."""
        if track is not None:
            self._face_tracks[str(out)] = track
            while len(self._face_tracks) > keep:
                self._face_tracks.popitem(last=False)

    def _with_speech(self, request: PreparedRequest) -> tuple[PreparedRequest, str, Path | None]:
        """The request with the speech its voice request made (probed and checked like an upload), the
        soundtrack and subtitles that came with it; the notes on its timing; and the .srt to put beside the output
        when the job is done, for subtitles "off" (no track)."""
        audio = Path(request.audio.path) if request.audio is not None else None
        speech = self.voice_audio(request.video.path, audio, request.voice, request.settings.seed)
        voice = request.voice
        changes, sidecar = {"audio": check_audio(speech.driving, self.max_seconds)}, None
        if speech.soundtrack is not None:
            changes["soundtrack"] = check_audio(speech.soundtrack, self.max_seconds)
        if speech.subtitles is not None:
            if voice.subtitles == "off":  # only the file beside the output (once the job is done), no track
                sidecar = speech.subtitles
            else:
                changes.update(subtitles=speech.subtitles, burn_subtitles=voice.subtitles == "burn",
                               subtitle_language=speech.script.target_language)
        if speech.script is not None:  # the languages the provenance names: what was heard, what is spoken
            changes["voice"] = replace(voice, language=speech.script.source_language,
                                       target_language=speech.script.target_language)
        return replace(request, **changes), speech.notes, sidecar

    def job_plan(self, request: PreparedRequest, pipeline: LipSyncPipeline) -> JobPlan:
        """The resolved plan of a request on ``pipeline``: window length, container tags."""
        subtitles = "off" if request.subtitles is None else "burned" if request.burn_subtitles else "soft"
        language = iso639_2(request.subtitle_language) if request.subtitle_language else None
        voice = request.voice
        translation = (voice.language or "", voice.target_language) if request.voice_mode == "translate" else None
        tags = container_tags(request.job_id, request.preset, request.settings, f"{request.watermark:04x}",
                              request.voice_mode, subtitles, language, translation)
        window = self.window_frames(self.models(request.preset), request.settings, pipeline)
        record = {"preset": request.preset, "watermark": request.watermark, "job_id": request.job_id,
                  "device": self.device} if self.keep_records and not request.speech else None  # no dialogue redo yet
        return JobPlan(request.video, request.audio, request.out, request.settings, request.length_mode, window,
                       request.compare, tags, side_by_side_tags(tags) if request.compare else {}, record,
                       soundtrack=request.soundtrack, subtitles=request.subtitles,
                       subtitle_language=request.subtitle_language, burn_subtitles=request.burn_subtitles,
                       speech=request.speech)

    def _stamp(self, final: JobEvent, request: PreparedRequest, plan: JobPlan) -> JobEvent:
        """The final event with the output's provenance: input hashes (once, for the result and the side-by-side
        video), the signed C2PA manifest when configured, and the sidecar."""
        inputs = {"video": Path(request.video.path)}
        if request.speech:  # a dialogue: each face's own track
            inputs.update({f"speech of face {face}": Path(track.path) for face, track in request.speech})
        else:
            inputs["audio"] = Path(request.audio.path)
        if request.soundtrack is not None:
            inputs["soundtrack"] = Path(request.soundtrack.path)
        if final.subtitles is not None:  # the .srt beside the output: what the track or the burned text shows
            inputs["subtitles"] = final.subtitles
        hashes = input_hashes(inputs)
        manifest = stamp(request.out, inputs, dict(plan.tags), self.c2pa_signing, hashes)
        if plan.record_meta is not None and final.stage == "done":
            seal_record(request.out)  # the output's final bytes: a redo refuses an output changed since
        if final.compare is not None:  # also AI-generated output: the result is its right half
            stamp(final.compare, {**inputs, "result": request.out}, dict(plan.compare_tags), self.c2pa_signing,
                  hashes)
        return replace(final, manifest=manifest)

    def redo(self, job: str | Path, start: float, end: float, *, seed: int | None = None, steps: int | None = None,
             sampler: str | None = None, out: str | Path | None = None) -> Iterator[JobEvent]:
        """Regenerate seconds [start, end) of the finished job ``job`` (its output MP4, with its record beside
        it) with another seed, step count or sampler; every other GOP of the output is copied unchanged
        (``pipeline.redo``). ``out``: default ``<job>_redo.mp4`` beside it. Checks at once (InputError for a
        bad span, a missing record, bad settings), generates when iterated; the last event is ``done``."""
        record = load_record(job)
        span = check_span(record, float(start), float(end))
        if steps is None and sampler in SAMPLERS:  # a new sampler without a step count: that sampler's default
            steps = SAMPLERS[sampler].default_steps
        changes = {"seed": seed, "sampler": sampler, "num_inference_steps": steps}
        settings = replace(record.settings, **{k: v for k, v in changes.items() if v is not None})
        self.check_settings(record.meta["preset"], settings)
        out = Path(out) if out is not None else record.output.with_name(f"{record.output.stem}_redo.mp4")
        check_output(out, (record.output, record.video, record.audio))
        return self._redo(record, span, settings, out)

    def _redo(self, record, span, settings: GenerationSettings, out: Path) -> Iterator[JobEvent]:
        with self._run_lock:
            # Checked again once its turn comes: a queued redo (the app's, a REST job's) may have waited while
            # the job's output and record were removed (expired, deleted) or replaced.
            if load_record(record.output).meta.get("output_sha256") != record.meta.get("output_sha256"):
                raise InputError(f"{record.output.name} was replaced by another job while this redo waited: redo a "
                                 "segment of the new result instead")
            pipeline = self.pipeline(record.meta["preset"], settings.sampler)
            marker = make_marker(record.meta["watermark"], resolution=pipeline.resolution)
            final = yield from run_redo(pipeline, record, span, settings, out, marker.mark)
        inputs = {"video": record.video, "audio": record.audio, "first result": record.output}
        known = {"video": record.meta.get("video_sha256"), "audio": record.meta.get("audio_sha256"),
                 "first result": record.meta.get("output_sha256")}  # hashed when recorded; load_record checked the last
        yield replace(final, manifest=stamp(out, inputs, dict(record.meta["tags"]), self.c2pa_signing,
                                            {role: digest for role, digest in known.items() if digest}))

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

    def list_faces(self, video: str | Path, preset: str = DEFAULT_PRESET, landmarks: str = "auto",
                   seconds: float = LIST_SECONDS) -> list[ListedFace]:
        """The distinct faces of the video's first ``seconds`` (every 25 fps frame, as the job reads them), with
        the job's own detector: ``faces[k].index`` is the ``face_index`` that lip-syncs that person
        (``face.listing``). The video is checked like a job's (InputError for a bad one)."""
        check_landmarks(landmarks)
        check_preset(preset)
        if not seconds > 0:
            raise InputError(f"the face listing scans a positive number of seconds, not {seconds}")
        return self._listed_faces(check_video(video, self.max_seconds, self.max_pixels), preset, landmarks, seconds)

    def _listed_faces(self, info: MediaInfo, preset: str, landmarks: str,
                      seconds: float = LIST_SECONDS) -> list[ListedFace]:
        """``list_faces`` of a video already checked and probed (``info``)."""
        frames = iter_frames(info, fps=MODEL_FPS)
        try:
            with closing(self.landmark_detector(preset, landmarks)) as detector:
                return list_faces(frames, detector, max(1, round(seconds * MODEL_FPS)))
        finally:
            frames.close()  # stops the decoder after the scanned seconds

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

    def score(self, video: str | Path, audio: str | Path | None = None, track: FaceTrack | None = None):
        """SyncNet confidence / LSE-D / offset of ``video`` against ``audio`` (default: its own sound); ``track``:
        face boxes a job already found in ``video`` (reused where the scorer would find the same)."""
        scorer = self.scorer()
        with self._run_lock:
            return scorer.score(video, audio, track=track)

    def score_job(self, result: str | Path, original: str | Path | MediaInfo, audio: str | Path | None = None) -> str:
        """The line shown after a job: "Lip sync: confidence X (original clip: Y), offset Z frames".

        The original clip is scored with its own soundtrack (what the paper reports for real videos), or
        against ``audio`` when it has none. When ``result`` came from this service's job on ``original``, the
        job's face boxes stand in for a second detection pass over the original where the scorer would run the
        same detector (without S3FD's weights)."""
        from .eval.scorer import score_line

        scored = self.score(result)
        original = original if isinstance(original, MediaInfo) else probe(original)  # the job's probe, if given
        own_sound = original.has_audio
        track = self._face_tracks.get(str(Path(result)))
        track = track if track is not None and Path(track.video) == Path(original.path) else None
        try:
            before = self.score(original.path, None if own_sound or audio is None else audio, track)
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
    return (f"{frames} frames ({frames / MODEL_FPS:.1f} s of video) in {seconds:.1f} s: {frames / max(seconds, 1e-9):.2f} "
            f"frames/s · {settings.sampler.upper()} {settings.num_inference_steps} steps{guidance}, seed "
            f"{settings.seed} · {get_preset(preset).label} · {device}")
