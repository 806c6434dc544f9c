"""JobManager on its own: retention, cancellation of a running job, error messages, shutdown.

The service here is a scripted stand-in for LipSyncService.run (a generator of JobEvents), so these
checks of the manager's bookkeeping take milliseconds; the real service runs in tests/test_rest_api.py.
"""

import threading
import time
from types import SimpleNamespace

import pytest

from latentsync_demo.errors import InputError
from latentsync_demo.rest.jobs import JobManager, is_job_id
from latentsync_demo.settings import JobEvent


class ScriptedService:
    def __init__(self):
        self.release = threading.Event()
        self.closed = threading.Event()
        self.fail: Exception | None = None

    def run(self, request):
        out = request.out
        try:
            yield JobEvent("reading", 0.0, "reading")
            if self.fail is not None:
                raise self.fail
            self.release.wait(10)
            out.write_bytes(b"mp4")
            yield JobEvent("generating", 0.5, "generated chunk 1 of 2", 1, 2)
            yield JobEvent("done", 1.0, "wrote it", output=out)
        finally:
            self.closed.set()


@pytest.fixture
def service():
    return ScriptedService()


@pytest.fixture
def manager(service, tmp_path):
    manager = JobManager(service, tmp_path)
    manager.start()
    yield manager
    manager.stop()


def _submit(manager: JobManager):
    job_id, folder = manager.new_folder()
    (folder / "video.mp4").write_bytes(b"v")
    return manager.submit(job_id, folder, SimpleNamespace(out=folder / "result.mp4", callback=None))


def _wait_for(condition, timeout=10.0):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.01)


def test_done_job_is_kept_for_the_retention_time_then_removed(service, manager):
    service.release.set()
    manager.retention = 0.3
    job = _submit(manager)
    assert job.ended.wait(10) and job.status == "done" and job.progress == 1.0
    assert job.output.read_bytes() == b"mp4" and manager.get(job.id) is job
    time.sleep(0.4)
    assert manager.get(job.id) is None and not job.folder.exists()


def test_cancel_a_running_job_closes_the_generation_and_drops_the_output(service, manager):
    job = _submit(manager)
    _wait_for(lambda: job.stage == "reading")
    assert manager.pending() == 1  # running jobs count against the API's queue limit
    manager.cancel(job.id)
    service.release.set()
    assert job.ended.wait(10) and job.status == "cancelled" and service.closed.is_set()
    assert manager.pending() == 0
    assert not job.output.exists() and job.folder.exists()  # uploads stay until deleted or expired
    manager.cancel(job.id)  # an ended job: deleted with its folder
    assert manager.get(job.id) is None and not job.folder.exists()


def test_errors_name_the_file_not_the_server_folder(service, manager, tmp_path):
    job = _submit(manager)
    service.fail = InputError(f"no face was found in {job.folder}/video.mp4")
    assert job.ended.wait(10) and job.status == "failed" and job.client_error
    assert job.error == "no face was found in video.mp4"
    service.fail = RuntimeError(f"CUDA exploded near {tmp_path}")
    second = _submit(manager)
    assert second.ended.wait(10) and not second.client_error
    assert second.error == "internal error (RuntimeError); please try again"  # no internals to the client
    manager.stop()
    assert list(tmp_path.iterdir()) == []  # shutdown removes every job folder


def test_ids_are_checked_before_any_lookup(tmp_path):
    manager = JobManager(ScriptedService(), tmp_path)
    assert not is_job_id("../../etc/passwd") and not is_job_id("A" * 32) and is_job_id("0" * 32)
    assert manager.get("../" + "0" * 29) is None and manager.cancel("..") is None
