"""Webhooks: who may be called back (checked at submit time, again at delivery), the signed POST, retries.

Deliveries go to a real HTTP receiver on 127.0.0.1 (loopback allowed explicitly in these policies) from the
JobManager with the scripted service of test_rest_jobs (milliseconds); submit-time refusals go through the REST
app in-process with the session's tiny service (nothing runs: every request here is refused or never started).
The end-to-end job with a callback, on the real app, is in test_rest_api.
"""

import hashlib
import hmac
import json
import re
import argparse
import datetime
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from test_rest_jobs import ScriptedService

from latentsync_demo.errors import InputError
from latentsync_demo.rest import JobManager, RestAPI
from latentsync_demo.testing.media import make_speech_wav, make_talking_head_clip
from latentsync_demo.webhooks import (SIGNATURE_HEADER, TIMESTAMP_HEADER, CallbackPolicy, add_callback_options,
                                      callback_policy, verify)

SECRET = "hook-secret"


class Receiver:
    """An HTTP server on 127.0.0.1 that records each POST and answers with the next of ``answers``."""

    def __init__(self, *answers: int, location: str = "/elsewhere", tls: ssl.SSLContext | None = None):
        self.answers, self.location, self.posts = list(answers) or [200], location, []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.posts.append(SimpleNamespace(path=self.path, headers=dict(self.headers), body=body))
                status = owner.answers.pop(0) if len(owner.answers) > 1 else owner.answers[0]
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", owner.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/latentsync?from=test"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    receivers = []

    def start(*answers, **kwargs):
        receivers.append(Receiver(*answers, **kwargs))
        return receivers[-1]

    yield start
    for r in receivers:
        r.close()


def _manager(tmp_path, policy):
    service = ScriptedService()
    service.release.set()
    manager = JobManager(service, tmp_path, callbacks=policy)
    manager.start()
    return manager


def _submit(manager, url):
    job_id, folder = manager.new_folder()
    request = SimpleNamespace(out=folder / "result.mp4", callback=manager.callbacks.check(url))
    return manager.submit(job_id, folder, request)


def test_a_finished_job_posts_its_summary_signed_with_the_hosts_secret(tmp_path, receiver):
    hook = receiver(204)
    manager = _manager(tmp_path, CallbackPolicy((f"127.0.0.1:{hook.port}",), SECRET))
    try:
        job = _submit(manager, hook.url)
        assert job.ended.wait(10) and job.callback_done.wait(10)
    finally:
        manager.stop()
    [post] = hook.posts
    assert post.path == "/hooks/latentsync?from=test" and post.headers["Content-Type"] == "application/json"
    timestamp, signature = post.headers[TIMESTAMP_HEADER], post.headers[SIGNATURE_HEADER]
    # What a receiver does (README): HMAC-SHA256 of "<timestamp>.<body>" with the shared secret.
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + post.body, hashlib.sha256).hexdigest()
    assert signature == f"sha256={expected}" and verify(SECRET, timestamp, post.body, signature)
    assert not verify("other-secret", timestamp, post.body, signature)
    assert not verify(SECRET, timestamp, post.body.replace(b'"done"', b'"failed"'), signature)
    assert not verify(SECRET, str(int(timestamp) - 3600), post.body, signature)  # an old (replayed) timestamp
    body = json.loads(post.body)
    assert body["event"] == "job.ended" and body["id"] == job.id and body["status"] == "done"
    assert body["result_url"] == f"/api/v1/jobs/{job.id}/result" and body["status_url"] == f"/api/v1/jobs/{job.id}"
    assert body["error"] is None and body["created"] <= body["finished"] and "callback" not in body
    status = job.summary()["callback"]
    assert status["state"] == "delivered" and status["url"] == hook.url
    assert [(a["attempt"], a["status"]) for a in status["attempts"]] == [(1, 204)]
    # The README's receiver code, as written, accepts this POST and refuses it changed or with another secret.
    readme_verify = _readme_verifier()
    assert readme_verify(SECRET, post.headers, post.body)
    assert not readme_verify("other-secret", post.headers, post.body)
    assert not readme_verify(SECRET, post.headers, post.body + b" ")
    assert not readme_verify(SECRET, {**post.headers, TIMESTAMP_HEADER: str(int(timestamp) + 1)}, post.body)


def _readme_verifier():
    section = (Path(__file__).resolve().parents[1] / "README.md").read_text().split("#### Webhooks", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace = {}
    exec(code, namespace)  # the README's own snippet, so it cannot drift from what the server sends
    return namespace["verify_latentsync"]


def test_a_failed_job_says_why_and_retries_stop_after_the_limit(tmp_path, receiver):
    hook = receiver(500)
    manager = _manager(tmp_path, CallbackPolicy(("127.0.0.1",), SECRET, retries=2, backoff=0.05))
    manager.service.fail = InputError("no face was found in video.mp4")
    try:
        job = _submit(manager, hook.url)
        assert job.callback_done.wait(10)
    finally:
        manager.stop()
    assert len(hook.posts) == 3  # the first attempt and two retries, then no more
    assert {json.loads(p.body)["error"] for p in hook.posts} == {"No face was found in video.mp4"}
    assert json.loads(hook.posts[0].body)["result_url"] is None
    status = job.summary()["callback"]
    assert status["state"] == "failed"
    attempts = status["attempts"]
    assert [(a["attempt"], a["status"]) for a in attempts] == [(1, 500), (2, 500), (3, 500)]
    gaps = [later["time"] - earlier["time"] for earlier, later in zip(attempts, attempts[1:])]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1, gaps  # exponential backoff: 0.05 s, then 0.1 s


def test_redirects_are_not_followed_and_an_unreachable_receiver_is_logged(tmp_path, receiver):
    hook, target = receiver(302), receiver(200)
    hook.location = target.url
    manager = _manager(tmp_path, CallbackPolicy(("127.0.0.1",), SECRET, retries=1, backoff=0.0))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{closed.getsockname()[1]}/"  # bound, not listening: connection refused
    try:
        moved, unreachable = _submit(manager, hook.url), _submit(manager, nobody)
        assert moved.callback_done.wait(10) and unreachable.callback_done.wait(10)
    finally:
        manager.stop()
    assert len(hook.posts) == 1 and target.posts == []  # a 3xx is final: no retry, no redirect
    [attempt] = moved.deliveries
    assert attempt["status"] == 302 and "redirects are not followed" in attempt["error"]
    assert [a["attempt"] for a in unreachable.deliveries] == [1, 2]
    assert all("ConnectionRefusedError" in a["error"] for a in unreachable.deliveries)
    assert unreachable.callback_state == "failed"


def test_the_address_is_checked_again_at_delivery(tmp_path, receiver, monkeypatch):
    """DNS rebinding: a name that resolved to an allowed address at submit time points into the host's own
    network when the job ends. The delivery is refused then (no connection, no retry)."""
    hook = receiver(200)
    policy = CallbackPolicy(("hooks.example.org", f"127.0.0.1:{hook.port}"), SECRET, retries=3, backoff=0.0)
    answers = {"hooks.example.org": "127.0.0.1"}
    _fake_dns(monkeypatch, answers)
    manager = _manager(tmp_path, policy)
    manager.service.release.clear()  # the job waits until the name has moved
    try:
        job = _submit(manager, f"http://hooks.example.org:{hook.port}/hook")
        assert job.request.callback.addresses == ("127.0.0.1",)
        answers["hooks.example.org"] = "10.0.0.7"
        manager.service.release.set()
        assert job.callback_done.wait(10)
    finally:
        manager.stop()
    assert hook.posts == []
    [attempt] = job.deliveries
    assert "resolves to 10.0.0.7" in attempt["error"] and job.callback_state == "failed"


def _fake_dns(monkeypatch, answers: dict):
    """Names in ``answers`` resolve to the given address (others as usual), for webhooks' lookups."""
    real_dns = socket.getaddrinfo

    def fake_dns(host, port, *args, **kwargs):
        if host not in answers:
            return real_dns(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]

    monkeypatch.setattr("latentsync_demo.webhooks.socket.getaddrinfo", fake_dns)


def _certificate(folder, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for ``name``: (the server's context, a client context trusting only it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return server, ssl.create_default_context(cafile=str(folder / "cert.pem"))


def test_https_goes_to_the_checked_address_and_verifies_the_urls_name(tmp_path, receiver, monkeypatch):
    server_tls, client_tls = _certificate(tmp_path, "hooks.example.org")
    hook = receiver(200, tls=server_tls)
    _fake_dns(monkeypatch, {"hooks.example.org": "127.0.0.1"})
    policy = CallbackPolicy(("hooks.example.org", "127.0.0.1"), SECRET, retries=0, tls=client_tls)
    manager = _manager(tmp_path / "jobs", policy)
    try:
        by_name = _submit(manager, f"https://hooks.example.org:{hook.port}/hook")
        by_address = _submit(manager, f"https://127.0.0.1:{hook.port}/hook")  # the certificate does not name it
        assert by_name.callback_done.wait(10) and by_address.callback_done.wait(10)
    finally:
        manager.stop()
    assert [(a["attempt"], a["status"]) for a in by_name.deliveries] == [(1, 200)]
    assert len(hook.posts) == 1 and hook.posts[0].headers["Host"] == f"hooks.example.org:{hook.port}"
    [refused] = by_address.deliveries
    assert "SSLCertVerificationError" in refused["error"] and by_address.callback_state == "failed"


@pytest.mark.parametrize("url, words", [
    ("http://127.0.0.1:8080/", "is a private, loopback, link-local or reserved address"),
    ("http://10.0.0.1/hook", "10.0.0.1 is a private"),
    ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is a private"),  # a cloud's metadata service
    ("http://[::1]/", "::1 is a private"),
    ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1 is a private"),
    ("http://0.0.0.0/", "0.0.0.0 is a private"),
    ("http://localhost:8080/", "localhost resolves to "),
    ("ftp://127.0.0.1/", "must start with http:// or https://, not 'ftp:'"),
    ("file:///etc/passwd", "must start with http:// or https://"),
    ("https://user:pw@hooks.example.org/", "must not carry a user name or password"),
    ("http:///nohost", "names no host"),
    ("http://127.0.0.1:99999/", "not a valid URL"),
])
def test_internal_or_malformed_destinations_are_refused_even_with_every_name_allowed(url, words):
    policy = CallbackPolicy(("*", "127.0.0.1:9"), SECRET)
    with pytest.raises(InputError, match="callback_url") as refused:
        policy.check(url)
    assert words in str(refused.value)


def test_only_what_the_host_lists_is_allowed():
    policy = CallbackPolicy(("127.0.0.1:9", "*.example.org", "10.9.0.0/16"), SECRET)
    assert policy.check("http://127.0.0.1:9/a").addresses == ("127.0.0.1",)
    assert policy.check("https://10.9.3.4/").port == 443  # a listed private network
    for url in ("http://127.0.0.1:10/", "http://10.10.0.1/", "http://example.com/", "http://example.org.evil.net/"):
        with pytest.raises(InputError, match="is not among the hosts this server may call back"):
            policy.check(url)
    with pytest.raises(InputError, match="allows no callbacks"):
        CallbackPolicy().check("https://hooks.example.org/")
    with pytest.raises(InputError, match="no signing secret"):
        CallbackPolicy(("*",)).check("https://hooks.example.org/")
    for entry in ("a b", "host:port", "host:0", "exa*mple.org", "http://x"):
        with pytest.raises(ValueError, match=re.escape(f"callback allow entry '{entry}'")):
            CallbackPolicy((entry,), SECRET)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("webhook_media")
    video = make_talking_head_clip(root / "face.mp4", seconds=0.4, fps=25, size=(96, 96), with_audio=False)
    return {"video": ("face.mp4", video.read_bytes()),
            "audio": ("speech.wav", make_speech_wav(root / "speech.wav", seconds=0.4).read_bytes())}


@pytest.mark.parametrize("policy, url, status, words", [
    (CallbackPolicy(), "https://hooks.example.org/", 400, "This server allows no callbacks"),
    (CallbackPolicy(("127.0.0.1:9",), SECRET), "http://127.0.0.1:8080/", 400, "is not among the hosts"),
    (CallbackPolicy(("*",), SECRET), "http://127.0.0.1:8080/", 400, "127.0.0.1 is a private, loopback"),
    (CallbackPolicy(("*",), SECRET), "http://10.0.0.1/", 400, "10.0.0.1 is a private, loopback"),
    (CallbackPolicy(("*",), SECRET), "gopher://hooks.example.org/", 400, "must start with http:// or https://"),
])
def test_rest_refuses_a_callback_at_submit_time_and_queues_nothing(tiny_service, tmp_path, clip, policy, url,
                                                                  status, words):
    api = RestAPI(tiny_service, root=tmp_path, callbacks=policy)
    with TestClient(api.app) as client:
        answer = client.post("/jobs", files=clip, data={"consent": "true", "steps": "1", "callback_url": url})
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"] and "Traceback" not in answer.text
    assert api.manager.pending() == 0 and list(tmp_path.iterdir()) == []  # no job, no folder left


def test_sync_takes_no_callback(tiny_service, tmp_path, clip):
    api = RestAPI(tiny_service, root=tmp_path, callbacks=CallbackPolicy(("*",), SECRET))
    with TestClient(api.app) as client:
        answer = client.post("/sync", files=clip, data={"consent": "true", "callback_url": "https://example.org/"})
    assert answer.status_code == 400 and "POST /api/v1/jobs" in answer.json()["error"]
    assert list(tmp_path.iterdir()) == []


def test_server_options_refuse_an_allow_list_without_a_secret(monkeypatch):
    monkeypatch.delenv("LATENTSYNC_CALLBACK_SECRET", raising=False)
    monkeypatch.setenv("LATENTSYNC_CALLBACK_ALLOW", "hooks.example.org, 10.1.0.0/16")
    parser = argparse.ArgumentParser()
    add_callback_options(parser)
    with pytest.raises(ValueError, match="--callback-allow needs a signing secret: set LATENTSYNC_CALLBACK_SECRET"):
        callback_policy(parser.parse_args([]))
    with pytest.raises(ValueError, match="callback allow entry 'a b'"):
        callback_policy(parser.parse_args(["--callback-secret", "s", "--callback-allow", "a b"]))
    policy = callback_policy(parser.parse_args(["--callback-secret", "s", "--callback-allow", "127.0.0.1:9",
                                                "--callback-retries", "5", "--callback-backoff", "0.5"]))
    assert policy.allow == ("hooks.example.org", "10.1.0.0/16", "127.0.0.1:9") and policy.secret == "s"
    assert (policy.retries, policy.backoff) == (5, 0.5)
    monkeypatch.delenv("LATENTSYNC_CALLBACK_ALLOW")
    parser = argparse.ArgumentParser()
    add_callback_options(parser)
    assert callback_policy(parser.parse_args([])).entries == ()  # the default: no destination allowed
