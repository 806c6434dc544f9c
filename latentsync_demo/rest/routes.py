"""The REST API: a FastAPI sub-application mounted at ``/api/v1`` on the server Gradio runs.

    POST   /api/v1/jobs               multipart video + audio (or voice=script + text), settings as fields -> id
    GET    /api/v1/jobs/{id}          status (queued|running|done|failed|cancelled), stage, progress, notes, error
    GET    /api/v1/jobs/{id}/result   the mp4 once the job is done
    POST   /api/v1/jobs/{id}/redo     start, end (seconds), seed / steps / sampler -> a new job redoing that span
                                      (409 while the job is not done, or when its record is gone)
    DELETE /api/v1/jobs/{id}          cancel a queued or running job; remove an ended one
    POST   /api/v1/sync               the same fields; waits and answers with the mp4 (short clips only)
    POST   /api/v1/transcripts        video (+ audio), to -> the dub's transcript (JSON) to edit and send back
                                      with voice=translate as the job's ``transcript`` file
    GET    /api/v1/jobs/{id}/subtitles  the .srt of a finished translate job

Docs at ``/api/v1/docs`` (``/docs`` redirects there), with their assets served from this server (``docs``: they
work offline). Every error is JSON ``{"error": "..."}``: 4xx names the problem with the request, 5xx is the
server's. With a token set, every call needs ``Authorization: Bearer``.

A job may name a ``callback_url``: when it ends, the server POSTs its summary there, signed (``webhooks``), to
destinations the host allows (``callbacks``; by default none).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import shutil
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException

from ..errors import CheckpointError, LatentSyncError, as_sentence
from ..pipeline.length import DEFAULT_LENGTH_MODE, LENGTH_MODES
from ..pipeline.samplers import SAMPLERS
from ..provenance.consent import require_consent
from ..request import PreparedRequest, settings_from
from ..service import LipSyncService
from ..settings import AUDIO_WINDOW_MODES, SUBTITLE_MODES, VOICE_MODES, GenerationSettings, VoiceRequest
from ..store import DEFAULT_PRESET, PRESETS, resolve
from ..webhooks import CallbackPolicy
from .docs import add_offline_docs
from .jobs import Job, JobManager, hide_folder
from .uploads import AUDIO_SUFFIXES, TRANSCRIPT_SUFFIXES, VIDEO_SUFFIXES, RequestError, save_upload

log = logging.getLogger("latentsync_demo.rest")

PREFIX = "/api/v1"
RETRY_AFTER_SECONDS = 60  # told to a client whose job found the queue full (429)
_DEFAULTS = GenerationSettings()


class RestAPI:
    """The REST API of one ``LipSyncService``: its job manager, limits and token.

    ``lifespan`` plugs it into Gradio's own server (``launch(app_kwargs={"lifespan": rest.lifespan})``): at
    start-up it mounts the API and starts the job worker, at shutdown it cancels jobs and removes their files.
    """

    def __init__(self, service: LipSyncService, token: str | None = None, max_upload_mb: float = 200,
                 retention: float = 3600.0, sync_max_seconds: float = 20.0, root: str | Path | None = None,
                 max_pending: int = 16, callbacks: CallbackPolicy | None = None):
        self.service, self.token = service, token or None
        self.callbacks = callbacks or CallbackPolicy()  # webhook destinations, secret, retries (default: none)
        self.max_upload_bytes = int(max_upload_mb * 2**20)
        self.sync_max_seconds, self.max_pending = sync_max_seconds, max_pending
        self._own_root = root is None
        root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="latentsync_api_"))
        self.manager = JobManager(service, root, retention, self.callbacks, PREFIX)
        self.app = self._build()

    def attach(self, parent: FastAPI) -> None:
        parent.mount(PREFIX, self.app)
        parent.add_api_route("/docs", lambda: RedirectResponse(f"{PREFIX}/docs"), include_in_schema=False)

    @asynccontextmanager
    async def lifespan(self, parent: FastAPI):
        self.attach(parent)
        self.manager.start()
        try:
            yield
        finally:
            self.manager.stop()
            if self._own_root:
                shutil.rmtree(self.manager.root, ignore_errors=True)

    # --- the application ----------------------------------------------------------------------------

    def _build(self) -> FastAPI:
        app = FastAPI(title="LatentSync REST API", version="1",
                      description="Lip-sync a talking-head video to speech. Jobs share the web app's GPU queue.",
                      dependencies=[Depends(self._authorize)], docs_url=None, redoc_url=None)
        add_offline_docs(app)  # Swagger UI and ReDoc from this server, not a CDN: the docs work offline
        app.add_exception_handler(RequestError, _request_error)
        app.add_exception_handler(LatentSyncError, _user_error)
        app.add_exception_handler(RequestValidationError, _validation_error)
        app.add_exception_handler(HTTPException, _http_error)
        app.add_exception_handler(Exception, _server_error)
        app.middleware("http")(self._limit_body)
        form = Depends(self._job_form)

        @app.post("/jobs", status_code=202, summary="Queue a lip-sync job")
        async def create_job(job: Job = form) -> dict:
            return {**job.summary(), **job.links(PREFIX, queued=True)}

        @app.get("/jobs/{job_id}", summary="A job's status, stage, progress and notes",
                 description="notes: a warning about silent speech, then what the length mode looped, cut or padded")
        def job_status(job_id: str) -> dict:
            return self._job(job_id).summary()

        @app.get("/jobs/{job_id}/result", summary="The lip-synced mp4 of a finished job",
                 response_class=FileResponse)
        def job_result(job_id: str):
            job = self._job(job_id)
            if job.status != "done":
                reason = f": {job.error}" if job.error else ""
                raise RequestError(409, f"job {job_id} is {job.status}{reason}; the result exists once its status "
                                        "is done (poll GET /api/v1/jobs/{id})")
            return FileResponse(job.output, media_type="video/mp4", filename=f"lipsync_{job_id[:12]}.mp4")

        @app.post("/jobs/{job_id}/redo", status_code=202, summary="Redo seconds start-end of a finished job",
                  description="A new job: the span regenerated with another seed, steps or sampler; every 1 s "
                              "GOP of the result outside the span is copied unchanged from this job's result. "
                              "409 when the job has not finished or its job record is gone (a redo's own result "
                              "keeps none: redo the original job).")
        def redo_job(job_id: str, start: float = Form(...), end: float = Form(...), seed: int | None = Form(None),
                     steps: int | None = Form(None), sampler: str | None = Form(None)) -> dict:
            source = self._job(job_id)
            conflict = self.manager.redo_conflict(source)
            if conflict is not None:  # 409: the job is there (404 is for an unknown id), its state refuses a redo
                raise RequestError(409, conflict)
            self._check_queue()
            try:
                job = self.manager.submit_redo(source, start, end, seed=seed, steps=steps, sampler=sampler)
            except LatentSyncError as exc:
                raise RequestError(400, hide_folder(str(exc), source.folder)) from exc
            return {**job.summary(), **job.links(PREFIX, queued=True)}

        @app.get("/jobs/{job_id}/subtitles", summary="The .srt subtitles of a finished translate job",
                 response_class=FileResponse)
        def job_subtitles(job_id: str):
            job = self._job(job_id)
            srt = job.output.with_suffix(".srt")
            if job.status != "done" or not srt.is_file():
                raise RequestError(409 if job.status != "done" else 404,
                                   f"job {job_id} is {job.status}; subtitles exist once a voice=translate job is done"
                                   if job.status != "done" else f"job {job_id} made no subtitles (voice=translate "
                                   "jobs do)")
            return FileResponse(srt, media_type="application/x-subrip", filename=f"lipsync_{job_id[:12]}.srt")

        @app.post("/transcripts", summary="Transcribe a clip's speech and translate it: the transcript to edit",
                  description="Answers with the segments (start, end, source, text). Edit the texts, save the JSON "
                              "as a .json file and send it as transcript= with voice=translate.")
        async def transcripts(video: UploadFile = File(...), audio: UploadFile | None = File(None),
                              to: str = Form(..., description="the language to dub into (XTTS codes)"),
                              language: str | None = Form(None, description="the speech's language (default: "
                                                          "detected)")) -> dict:
            return await self._transcript(video, audio, to, language)

        @app.delete("/jobs/{job_id}", summary="Cancel a queued or running job, or delete an ended one")
        def delete_job(job_id: str) -> dict:
            job = self.manager.cancel(job_id)
            if job is None:
                raise self._unknown(job_id)
            return {"id": job_id, "status": "cancelling" if job.status not in ("done", "failed", "cancelled")
                    else "deleted"}

        @app.post("/sync", summary="Lip-sync a short clip and answer with the mp4", response_class=FileResponse)
        async def sync(job: Job = form):
            await asyncio.to_thread(job.ended.wait)
            if job.status != "done":
                self.manager.cancel(job.id)
                raise RequestError(400 if job.client_error else 500, job.error or f"the job was {job.status}")
            return FileResponse(job.output, media_type="video/mp4", filename=f"lipsync_{job.id[:12]}.mp4",
                                background=BackgroundTask(self.manager.cancel, job.id))

        return app

    async def _job_form(
        self,
        request: Request,
        video: UploadFile = File(..., description="talking-head video: " + ", ".join(VIDEO_SUFFIXES)),
        audio: UploadFile | None = File(None, description="speech (or a video with sound); "
                                        "optional with voice=script"),
        voice_reference: UploadFile | None = File(None, description="a clip of the speaker's voice (voice modes)"),
        speech: list[UploadFile] | None = File(None, description="a dialogue, instead of audio: one speech file per "
                                               "speaker (repeat the field), each with its speech_face"),
        speech_face: list[int] | None = Form(None, description="the face index of each speech file, in the same "
                                             "order (repeat the field; latentsync --list-faces lists faces)"),
        preset: str = Form(DEFAULT_PRESET),
        sampler: str = Form("ddim", description=" | ".join(SAMPLERS)),
        steps: int | None = Form(None, description="default: the sampler's (ddim 20, lcm 4)"),
        guidance: float = Form(_DEFAULTS.guidance_scale),
        seed: int = Form(_DEFAULTS.seed),
        face_index: int = Form(0, description="0 = the largest face where faces first appear, then followed "
                                               "by position (latentsync --list-faces lists them)"),
        length_mode: str = Form(DEFAULT_LENGTH_MODE, description=" | ".join(LENGTH_MODES)),
        window_frames: int = Form(0, description="frames per generated window; 0 = automatic (16, or longer for "
                                  "checkpoints trained with hierarchical attention where memory allows)"),
        audio_windows: str = Form(_DEFAULTS.audio_windows, description=" | ".join(AUDIO_WINDOW_MODES) + ": "
                                  "Whisper windows of speech over 30 s (seamless: overlapping, no glitch every 30 s; "
                                  "official: the official features)"),
        voice: str = Form("off", description=" | ".join(VOICE_MODES) + " (XTTS v2, non-commercial CPML)"),
        to: str | None = Form(None, description="voice=translate: the language to dub into (en, es, de, zh-cn, ...)"),
        transcript: UploadFile | None = File(None, description="voice=translate: an edited transcript (.json from "
                                             "POST /transcripts, or .srt) to speak instead of translating anew"),
        subtitles: str = Form("soft", description=" | ".join(SUBTITLE_MODES) + ": voice=translate's subtitles (a "
                              "track in the mp4, drawn into the picture, or only the .srt)"),
        keep_room: bool = Form(False, description="voice modes: the video's own sound, ducked, under the new speech"),
        text: str | None = Form(None, description="what the speaker says (voice=script)"),
        language: str | None = Form(None),
        consent: bool = Form(False, description="required: true confirms the consent of the person shown (and "
                             "of the voice's owner when cloning a voice)"),
        callback_url: str | None = Form(None, description="POST /jobs only: an http(s) URL that receives the job's "
                                        "summary, signed, when it ends (hosts the server allows; see the README)"),
    ) -> Job:
        """Save the uploads in a new job folder, prepare the request (every check the job would make, each file
        probed once: the same messages as the app and the CLI) and queue it."""
        require_consent(consent)  # ConsentError -> 400 before anything is saved
        if callback_url and request.url.path.endswith("/sync"):
            raise RequestError(400, "/sync answers with the video itself and takes no callback_url; queue the job "
                                    f"with POST {PREFIX}/jobs to be called back")
        settings = settings_from(sampler, steps, guidance_scale=guidance, seed=seed, face_index=face_index,
                                 length_mode=length_mode, window_frames=window_frames, audio_windows=audio_windows)
        if preset in PRESETS and self.service.missing_files(preset):
            raise RequestError(503, f"the model weights for {preset} are not installed on this server; its admin "
                                    f"can run: {resolve(preset, self.service.checkpoints).download_command}")
        self._check_queue()
        if voice == "off" and (to or transcript is not None or keep_room):
            raise RequestError(400, "to, transcript and keep_room belong to a voice mode (voice=translate dubs into "
                                    "another language); with voice=off the uploaded speech is used as it is")
        job_id, folder = self.manager.new_folder()
        try:
            video_path = await save_upload(video, folder, "video", VIDEO_SUFFIXES, self.max_upload_bytes)
            audio_path = reference = None
            if audio is not None:
                audio_path = await save_upload(audio, folder, "audio", AUDIO_SUFFIXES, self.max_upload_bytes)
            if voice_reference is not None:
                reference = await save_upload(voice_reference, folder, "voice_reference", AUDIO_SUFFIXES,
                                              self.max_upload_bytes)
            tracks = await self._save_speech(speech or [], speech_face or [], folder)
            script = None
            if transcript is not None:
                script = await save_upload(transcript, folder, "transcript", TRANSCRIPT_SUFFIXES,
                                           self.max_upload_bytes)
            voice_request = VoiceRequest(voice, text, language or None, reference, to or None, script, subtitles,
                                         keep_room) if voice != "off" else None
            prepared = await asyncio.to_thread(self._prepare, folder, video_path, audio_path, preset, settings,
                                               voice_request, callback_url, tracks)
            if request.url.path.endswith("/sync"):
                self._check_sync_length(prepared)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return self.manager.submit(job_id, folder, prepared)

    async def _save_speech(self, files: list[UploadFile], faces: list[int], folder: Path) -> list[tuple[int, Path]]:
        """A dialogue's speech files (``speech``), saved, with their face indices (``speech_face``, same order)."""
        if len(files) != len(faces):
            raise RequestError(400, f"give one speech_face (the face index) per speech file: got {len(files)} speech "
                                    f"file{'s' if len(files) != 1 else ''} and {len(faces)} speech_face "
                                    f"value{'s' if len(faces) != 1 else ''}")
        return [(face, await save_upload(upload, folder, f"speech{n}", AUDIO_SUFFIXES, self.max_upload_bytes))
                for n, (face, upload) in enumerate(zip(faces, files))]

    def _prepare(self, folder: Path, video: Path, audio: Path | None, preset: str, settings: GenerationSettings,
                 voice: VoiceRequest | None, callback_url: str | None, speech: list) -> PreparedRequest:
        try:  # consent=True: require_consent passed above; the callback is resolved here (DNS: off the event loop)
            return self.service.prepare(video, audio, folder / Job.OUTPUT_NAME, preset, settings, voice,
                                        consent=True, callback_url=callback_url, callbacks=self.callbacks,
                                        speech=speech)
        except LatentSyncError as exc:
            raise RequestError(_status(exc), hide_folder(str(exc), folder)) from exc

    async def _transcript(self, video: UploadFile, audio: UploadFile | None, to: str, language: str | None) -> dict:
        """POST /transcripts: the uploads in a scratch folder, transcribed and translated, then removed."""
        self._check_queue()  # it waits for the accelerator like a job does
        self.manager.root.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="transcript_", dir=self.manager.root))
        try:
            video_path = await save_upload(video, folder, "video", VIDEO_SUFFIXES, self.max_upload_bytes)
            audio_path = None
            if audio is not None:
                audio_path = await save_upload(audio, folder, "audio", AUDIO_SUFFIXES, self.max_upload_bytes)
            try:
                script = await asyncio.to_thread(self.service.transcribe_translate, video_path, to, audio_path,
                                                 language or None)
            except LatentSyncError as exc:
                raise RequestError(_status(exc), hide_folder(str(exc), folder)) from exc
            return json.loads(script.to_json())
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _check_queue(self) -> None:
        """429 when the queue is full: a new job (a redo, a transcript) would only wait."""
        if self.manager.pending() >= self.max_pending:
            raise RequestError(429, f"{self.max_pending} jobs are already waiting; try again in a few minutes "
                                    f"(Retry-After: {RETRY_AFTER_SECONDS} s)")

    def _check_sync_length(self, prepared: PreparedRequest) -> None:
        inputs = (prepared.video, prepared.audio, *(track for _, track in prepared.speech))
        longest = max(info.duration for info in inputs if info is not None)
        if longest > self.sync_max_seconds:
            raise RequestError(400, f"/sync takes clips up to {self.sync_max_seconds:g} s (this one lasts "
                                    f"{longest:.1f} s); queue it with POST {PREFIX}/jobs instead")

    def _job(self, job_id: str) -> Job:
        job = self.manager.get(job_id)
        if job is None:
            raise self._unknown(job_id)
        return job

    @staticmethod
    def _unknown(job_id: str) -> RequestError:
        shown = job_id if len(job_id) <= 40 else job_id[:40] + "…"
        return RequestError(404, f"no job {shown!r}: unknown, expired or deleted (ids are 32 hex digits)")

    def _authorize(self, credentials: HTTPAuthorizationCredentials | None = Depends(HTTPBearer(auto_error=False))):
        if self.token is None:
            return
        if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), self.token.encode()):
            raise RequestError(401, "missing or wrong API token: send the header 'Authorization: Bearer <token>'")

    async def _limit_body(self, request: Request, call_next):
        """Refuse oversized bodies from their Content-Length, before anything is read."""
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > 3 * self.max_upload_bytes + 2**20:
            return _json(413, f"the request is larger than this server's limit of {self.max_upload_bytes // 2**20} "
                              "MB per file")
        return await call_next(request)


def _status(exc: LatentSyncError) -> int:
    """400 for a problem with the request; 503 for a model this server lacks (its admin's download to run)."""
    return 503 if isinstance(exc, CheckpointError) else 400


def _json(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": as_sentence(message)}, status_code=status, headers=headers)


async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
    if exc.status < 500:  # the client's mistake: one line in the log (tracebacks are for the server's faults)
        log.warning("%s %s refused (%d): %s", request.method, request.url.path, exc.status, exc.message)
    headers = {401: {"WWW-Authenticate": "Bearer"}, 429: {"Retry-After": str(RETRY_AFTER_SECONDS)}}
    return _json(exc.status, exc.message, headers.get(exc.status))


async def _user_error(request: Request, exc: LatentSyncError) -> JSONResponse:
    log.warning("%s %s refused (400): %s", request.method, request.url.path, exc)
    return _json(400, str(exc))


def _field(loc) -> str:
    """A form field's name from a validation error's location ("speech_face (item 2)" for a repeated field)."""
    names = [part for part in loc if isinstance(part, str) and part not in ("body", "query", "path")]
    items = [part for part in loc if isinstance(part, int)]
    name = names[-1] if names else str(loc[-1])
    return f"{name} (item {items[-1] + 1})" if items else name


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = "; ".join(f"{_field(e['loc'])}: {e['msg']}" for e in exc.errors())
    log.warning("%s %s refused (422): %s", request.method, request.url.path, problems)
    return _json(422, f"invalid request fields: {problems}")


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    if exc.status_code in (404, 405):  # no route matched: say what was asked and where the API is described
        return _json(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}; "
                                      f"see {PREFIX}/docs for the endpoints")
    return _json(exc.status_code, str(exc.detail))


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    return _json(500, f"internal error ({type(exc).__name__}); the server keeps running, please try again")
