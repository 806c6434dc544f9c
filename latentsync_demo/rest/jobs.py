"""JobManager: lip-sync jobs queued for one worker thread, next to the app's own requests.

Jobs run through the same ``LipSyncService`` as the Gradio app, so they share its model cache and its
one-generation-at-a-time lock: an app request and a REST job never run on the accelerator together.
Each job owns a folder ``<root>/<job id>/`` (its uploads and its result) that is removed ``retention``
seconds after the job ends, or when it is deleted.

    manager = JobManager(service, root)
    manager.start()
    job_id, folder = manager.new_folder()  # save the uploads there, then
    request = service.prepare(folder / "video.mp4", folder / "audio.wav", folder / Job.OUTPUT_NAME, consent=True)
    job = manager.submit(job_id, folder, request)
    manager.get(job.id).status  # queued | running | done | failed | cancelled
    manager.get(job.id).notes  # e.g. "Looped: the 0.2 s video ..." once done

A request with a checked ``callback`` (``webhooks.CallbackTarget``) gets a signed POST of the job's summary when
the job ends, from a small delivery thread of its own (retries wait there, never in the worker); each attempt
is logged in the job's status under ``callback``.
"""

from __future__ import annotations

import logging
import queue
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..errors import LatentSyncError, as_sentence
from ..pipeline.record import record_dir
from ..request import PreparedRequest
from ..service import LipSyncService
from ..settings import JobEvent
from ..webhooks import CallbackPolicy, deliver

log = logging.getLogger("latentsync_demo.rest")
_JOB_ID = re.compile(r"[0-9a-f]{32}")
FINAL = ("done", "failed", "cancelled")


@dataclass
class Job:
    id: str
    folder: Path
    request: PreparedRequest | None  # checked and probed before it was queued; None for a redo
    status: str = "queued"
    stage: str = "queued"
    progress: float = 0.0  # 0..1
    message: str = "waiting for the worker"
    notes: str = ""  # what the client should know: silent speech (before the work), what was looped/cut/padded
    error: str | None = None
    client_error: bool = True  # a failure caused by the input (vs. the server's own)
    created: float = field(default_factory=time.time)
    finished: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    ended: threading.Event = field(default_factory=threading.Event, repr=False)
    callback_state: str = "waiting for the job to end"  # -> delivering -> delivered | failed
    deliveries: list[dict] = field(default_factory=list)  # one entry per attempt: attempt, time, status or error
    callback_done: threading.Event = field(default_factory=threading.Event, repr=False)
    redo: Iterator[JobEvent] | None = field(default=None, repr=False)  # a checked redo (service.redo), not run yet
    redo_of: str | None = None  # the job whose segment this one redoes

    OUTPUT_NAME = "result.mp4"

    @property
    def output(self) -> Path:
        return self.folder / self.OUTPUT_NAME

    def summary(self) -> dict:
        """The JSON body of ``GET /api/v1/jobs/{id}``."""
        return {"id": self.id, "status": self.status, "stage": self.stage, "progress": round(self.progress, 4),
                "message": as_sentence(self.message), "notes": self.notes,
                "error": as_sentence(self.error) if self.error else None, "created": self.created,
                "finished": self.finished, **({"redo_of": self.redo_of} if self.redo_of else {}),
                **self._callback()}

    @property
    def callback(self):
        return self.request.callback if self.request is not None else None

    def _callback(self) -> dict:
        if self.callback is None:
            return {}
        return {"callback": {"url": self.callback.url, "state": self.callback_state,
                             "attempts": list(self.deliveries)}}

    def links(self, prefix: str, *, queued: bool = False) -> dict:
        """Where the status is, and the result once done (``queued``: where the result will be, for the answer to
        a submission)."""
        return {"status_url": f"{prefix}/jobs/{self.id}",
                "result_url": f"{prefix}/jobs/{self.id}/result" if queued or self.status == "done" else None}

    def webhook_payload(self, prefix: str) -> dict:
        """What the callback receives: the status endpoint's summary (without the delivery log) and its links."""
        summary = {key: value for key, value in self.summary().items() if key != "callback"}
        return {"event": "job.ended", **summary, **self.links(prefix)}


def is_job_id(text: str) -> bool:
    return bool(_JOB_ID.fullmatch(text))


class JobManager:
    """A FIFO of jobs and the one worker thread that runs them (the accelerator runs one job at a time)."""

    def __init__(self, service: LipSyncService, root: str | Path, retention: float = 3600.0,
                 callbacks: CallbackPolicy = CallbackPolicy(), prefix: str = "/api/v1"):
        self.service, self.root, self.retention = service, Path(root), retention
        self.callbacks, self.prefix = callbacks, prefix  # the host's webhook policy; the API's path (for links)
        self._closing = threading.Event()  # shutdown: deliveries stop waiting to retry
        self._jobs: dict[str, Job] = {}
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def new_folder(self) -> tuple[str, Path]:
        """A fresh job id and its (created) folder; uploads are saved there before ``submit``."""
        job_id = uuid.uuid4().hex
        folder = self.root / job_id
        folder.mkdir(parents=True)
        return job_id, folder

    def submit(self, job_id: str, folder: Path, request: PreparedRequest) -> Job:
        job = Job(job_id, folder, request)
        with self._lock:
            self._jobs[job_id] = job
        self._queue.put(job)
        return job

    def redo_conflict(self, source: Job) -> str | None:
        """Why the job ``source`` cannot have a segment redone now (None: it can): it has not finished, or its job
        record is gone. Said in the API's terms, naming the job and how to get a record."""
        if source.status != "done":
            return f"job {source.id} is {source.status}: only a finished job's segment can be redone"
        if self.has_record(source.id):
            return None
        if source.request is not None and source.request.speech:
            return (f"job {source.id} is a dialogue (a speech track per face), and dialogues keep no job record yet, "
                    "so none of their segments can be redone: submit the dialogue again to change it")
        if source.redo_of:
            return (f"job {source.id} is itself a redo (of job {source.redo_of}), and a redo's result keeps no job "
                    f"record: redo another segment of job {source.redo_of} instead (each redo starts from that "
                    "job's result)")
        return self._record_gone(source.id)

    def _record_gone(self, job_id: str, why: str = "its files were removed from the server") -> str:
        """The job's record is gone: why, and how to get one."""
        if not self.service.keep_records:
            return (f"job {job_id} has no job record: this server keeps none (its host turned records off), so its "
                    "jobs cannot be redone")
        return (f"the job record of job {job_id} is gone ({why}): submit the job again (POST {self.prefix}/jobs; "
                "every job keeps its record until it expires or is deleted), then redo a segment of the new job")

    def has_record(self, job_id: str) -> bool:
        """Whether the job's result and its record (what a redo reads) are still on disk."""
        output = self.root / job_id / Job.OUTPUT_NAME
        return output.is_file() and (record_dir(output) / "job.json").is_file()

    def submit_redo(self, source: Job, start: float, end: float, **changes) -> Job:
        """Queue a redo of seconds [start, end) of the finished job ``source`` (``redo_conflict`` first;
        ``LipSyncService.redo``: a bad span or settings raise InputError here, before anything is queued)."""
        conflict = self.redo_conflict(source)
        if conflict is not None:
            raise LatentSyncError(conflict)
        job_id, folder = self.new_folder()
        try:
            events = self.service.redo(source.output, start, end, out=folder / Job.OUTPUT_NAME, **changes)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        job = Job(job_id, folder, None, redo=events, redo_of=source.id)
        with self._lock:
            self._jobs[job_id] = job
        self._queue.put(job)
        return job

    def pending(self) -> int:
        """Jobs queued or running."""
        with self._lock:
            return sum(job.status not in FINAL for job in self._jobs.values())

    def get(self, job_id: str) -> Job | None:
        """The job, or None for an unknown, expired or malformed id (never touches the file system)."""
        self.prune()
        if not is_job_id(job_id):
            return None
        with self._lock:
            return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        """Stop a queued or running job (it ends as "cancelled" at its next progress event);
        an ended job is removed with its files."""
        job = self.get(job_id)
        if job is None:
            return None
        if job.status in FINAL:
            self._remove(job)
        else:
            job.cancel.set()
        return job

    def prune(self) -> None:
        """Remove jobs (and folders) that ended more than ``retention`` seconds ago."""
        now = time.time()
        with self._lock:
            old = [j for j in self._jobs.values() if j.finished is not None and now - j.finished > self.retention]
        for job in old:
            self._remove(job)

    def _remove(self, job: Job) -> None:
        with self._lock:
            self._jobs.pop(job.id, None)
        shutil.rmtree(job.folder, ignore_errors=True)

    # --- the worker ---------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="latentsync-jobs", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel what is queued or running and end the worker; remove every job folder."""
        with self._lock:
            jobs = list(self._jobs.values())
        self._closing.set()
        for job in jobs:
            job.cancel.set()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None
        for job in jobs:
            self._remove(job)

    def _work(self) -> None:
        while True:
            try:
                job = self._queue.get(timeout=60)
            except queue.Empty:
                self.prune()
                continue
            if job is None:
                return
            self._run(job)
            self.prune()

    def _run(self, job: Job) -> None:
        try:
            if job.cancel.is_set():
                return self._end(job, "cancelled", "cancelled before it started")
            job.status, job.stage, job.message = "running", "waiting", "waiting for the GPU"
            events = job.redo if job.redo is not None else self.service.run(job.request)
            cancelled_while = None
            try:
                for event in events:
                    if job.cancel.is_set():
                        cancelled_while = event.stage
                        break
                    job.stage, job.progress, job.message = event.stage, event.fraction, event.message
                    job.notes = event.notes or job.notes  # the end event repeats the warning with what it did
            finally:
                events.close()  # a cancelled job: stops ffmpeg, releases the lock, removes temp folders
            if cancelled_while is not None:
                self._end(job, "cancelled", f"cancelled while {cancelled_while}")
            else:
                self._end(job, "done", "finished")
        except LatentSyncError as exc:  # the input's fault: one line in the log, no traceback
            log.warning("REST job %s refused: %s", job.id, " ".join(str(exc).split()))
            error = hide_folder(str(exc), job.folder)
            if job.redo_of and not self.has_record(job.redo_of):  # removed while the redo waited for its turn
                error = self._record_gone(job.redo_of, "the job was deleted or expired before this redo ran")
            self._end(job, "failed", "failed", error=error)
        except Exception as exc:  # keep serving; the client sees what broke, the log has the trace
            log.exception("REST job %s failed", job.id)
            job.client_error = False
            self._end(job, "failed", "failed", error=f"internal error ({type(exc).__name__}); please try again")

    def _end(self, job: Job, status: str, message: str, error: str | None = None) -> None:
        job.status, job.message, job.error = status, message, error
        if status == "done":
            job.stage, job.progress = "done", 1.0
        else:
            job.output.unlink(missing_ok=True)
        job.finished = time.time()
        job.ended.set()
        if job.callback is not None:  # its own thread: the worker moves on to the next job at once
            threading.Thread(target=self._call_back, args=(job,), name=f"latentsync-callback-{job.id[:8]}",
                             daemon=True).start()

    def _call_back(self, job: Job) -> None:
        job.callback_state = "delivering"
        try:
            delivered = deliver(self.callbacks, job.callback, job.webhook_payload(self.prefix),
                                job.deliveries, self._closing)
            job.callback_state = "delivered" if delivered else "failed"
            if not delivered:
                last = job.deliveries[-1] if job.deliveries else {}
                log.warning("REST job %s: callback not delivered after %d attempt(s), last: %s", job.id,
                            len(job.deliveries), last.get("error") or f"HTTP {last.get('status')}")
        except Exception:  # a bug here must not go unseen, nor leave the state "delivering" for ever
            log.exception("REST job %s: callback delivery broke", job.id)
            job.callback_state = "failed"
        finally:
            job.callback_done.set()


def hide_folder(message: str, folder: Path) -> str:
    """Error messages name files by their place on the server; a client only needs the file name."""
    return message.replace(f"{folder}/", "").replace(str(folder), "the job folder")
