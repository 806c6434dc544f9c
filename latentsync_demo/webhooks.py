"""Webhooks: a signed JSON POST to a job's ``callback_url`` when it ends, to destinations the host allows.

Who may be called is the host's choice (``CallbackPolicy.allow``), never the request's: by default nothing is
allowed, and an allow-list entry opens only what it names.

* ``hooks.example.com``, ``*.example.com``, ``hooks.example.com:8443``, ``*``: a host name (any port, or that
  one; ``*`` is any name).
  It allows the public addresses the name resolves to; an internal address it resolves to (private, loopback,
  link-local, shared, reserved, multicast) is refused unless that address is on the list too.
* ``203.0.113.7``, ``127.0.0.1:8123``, ``[::1]:9000``, ``10.1.0.0/16``: addresses and networks, which
  allow a URL whose host is such an address, and allow a listed name to resolve into them.

Every address a name resolves to must pass, at submit time (a bad URL is refused before the job is queued) and
again at each delivery (a name that re-resolves into the host's own network between the two, DNS rebinding,
is refused then); the connection goes to the address just checked, not to a fresh lookup. Only http and https;
a redirect is never followed (it counts as a failed delivery).

Signature: with the host's secret, ``X-LatentSync-Signature: sha256=<hex>`` is the HMAC-SHA256 of
``<timestamp>.<body>`` (the exact body bytes), where ``X-LatentSync-Timestamp`` is the Unix time of the attempt.
A receiver recomputes it, compares in constant time, and refuses old timestamps (a replayed POST keeps its old
timestamp, and changing it breaks the signature). Without a secret no callback is accepted: an unsigned POST
could be forged by anyone who learns the URL, and a receiver could not tell.
"""

from __future__ import annotations

import argparse
import hashlib

import hmac
import http.client
import ipaddress
import json
import os
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from .errors import InputError

SIGNATURE_HEADER = "X-LatentSync-Signature"
TIMESTAMP_HEADER = "X-LatentSync-Timestamp"
_NAME_PATTERN = re.compile(r"\*|(\*\.)?([a-z0-9_-]+\.)*[a-z0-9_-]+")  # "*" = any name (public addresses only)
_RETRY_STATUSES = (408, 425, 429)  # besides 5xx: the receiver may answer later; other answers will not change
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class RefusedAddress(InputError):
    """The destination resolves to an address this server does not call (final: a retry would not help)."""


@dataclass(frozen=True)
class AllowEntry:
    """One allow-list entry: a host name pattern or a network, and a port (None = any)."""

    name: str | None
    network: Network | None
    port: int | None

    @classmethod
    def parse(cls, text: str) -> AllowEntry:
        """``host``, ``*.domain``, ``host:port``, ``1.2.3.4[:port]``, ``[v6][:port]``, ``cidr``; ValueError if
        malformed."""
        text = text.strip().lower()
        host, port = text, None
        if text.startswith("["):  # [v6] or [v6]:port
            host, _, rest = text[1:].partition("]")
            port = _port(rest[1:], text) if rest.startswith(":") else None
        elif text.count(":") == 1:  # host:port or v4:port (a bare v6 address has several colons)
            host, port_text = text.split(":")
            port = _port(port_text, text)
        try:
            return cls(None, ipaddress.ip_network(host, strict=False), port)
        except ValueError:
            pass
        if not _NAME_PATTERN.fullmatch(host):
            raise ValueError(f"callback allow entry {text!r} is not a host name, host:port, address or network")
        return cls(host, None, port)

    def allows_port(self, port: int) -> bool:
        return self.port is None or self.port == port


def _port(text: str, entry: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"callback allow entry {entry!r} has no valid port after ':'")
    return int(text)


@dataclass(frozen=True)
class CallbackTarget:
    """A checked callback URL: where it goes and the addresses it resolved to when checked."""

    url: str
    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class CallbackPolicy:
    """The host's webhook settings: allowed destinations, the signing secret, retries and their backoff.

    Attempts are ``1 + retries``; the wait before retry k is ``backoff * 2**(k-1)`` seconds."""

    allow: tuple[str, ...] = ()
    secret: str | None = None
    retries: int = 3
    backoff: float = 1.0
    timeout: float = 10.0
    tls: ssl.SSLContext | None = field(default=None, repr=False)  # None: the system's CAs (a private CA: its own)
    entries: tuple[AllowEntry, ...] = field(init=False, repr=False)

    def __post_init__(self):
        entries = tuple(AllowEntry.parse(text) for text in self.allow if text.strip())
        object.__setattr__(self, "entries", entries)
        if self.retries < 0 or self.backoff < 0 or self.timeout <= 0:
            raise ValueError("callback retries and backoff must be 0 or more, the timeout more than 0")

    def check(self, url: str) -> CallbackTarget:
        """The checked target of ``url``, or InputError saying what is wrong and what the host allows."""
        if not self.entries:
            raise InputError("this server allows no callbacks (callback_url): poll the job's status instead, or "
                             "ask its admin to allow your host with --callback-allow")
        if not self.secret:
            raise InputError("this server sends no callbacks: it has no signing secret (its admin sets "
                             "LATENTSYNC_CALLBACK_SECRET); poll the job's status instead")
        scheme, host, port, path = _split(url)
        allowed_name = any(e.name and fnmatchcase(host, e.name) and e.allows_port(port) for e in self.entries)
        literal = _address(host)
        if not allowed_name and (literal is None or not self._listed(literal, port)):
            raise InputError(f"the callback_url's host {_shown(host, port)} is not among the hosts this server may "
                             "call back; ask its admin to allow it (--callback-allow)")
        return CallbackTarget(url, scheme, host, port, path, self.resolve(host, port))

    def resolve(self, host: str, port: int) -> tuple[str, ...]:
        """Every address ``host`` resolves to, each public or on the allow list; InputError otherwise."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise InputError(f"the callback_url's host {host!r} does not resolve ({exc}); check its spelling") from exc
        addresses = tuple(dict.fromkeys(info[4][0] for info in infos))
        for text in addresses:
            address = _address(text)
            if not _public(address) and not self._listed(address, port):
                where = "is" if host == text else f"resolves to {text},"
                raise RefusedAddress(f"the callback_url's host {host} {where} a private, loopback, link-local or "
                                 "reserved address, which this server does not call back unless its admin allows "
                                 "that address; use a public host")
        return addresses

    def _listed(self, address: Address, port: int) -> bool:
        return any(e.network is not None and address in e.network and e.allows_port(port) for e in self.entries)


def _split(url: str) -> tuple[str, str, int, str]:
    if not isinstance(url, str) or len(url) > 2048:
        raise InputError("the callback_url must be an http or https URL of at most 2048 characters")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise InputError(f"the callback_url is not a valid URL ({exc})") from exc
    if parts.scheme not in ("http", "https"):
        raise InputError(f"the callback_url must start with http:// or https://, not "
                         f"{parts.scheme + ':' if parts.scheme else 'nothing'!r}")
    if not parts.hostname:
        raise InputError("the callback_url names no host; send e.g. https://hooks.example.com/latentsync")
    if parts.username is not None or parts.password is not None:
        raise InputError("the callback_url must not carry a user name or password; the POST is signed instead")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80), path


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) is link-local anyway
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is 127.0.0.1 (Python 3.11 says global)
    return mapped or address


def _public(address: Address | None) -> bool:
    return address is not None and address.is_global and not (address.is_multicast or address.is_reserved)


def _shown(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- delivery -----------------------------------------------------------------------------------------------


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp`` (Unix seconds, as sent)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, max_age: float = 300.0) -> bool:
    """What a receiver does (README): the signature matches and the timestamp is recent."""
    try:
        fresh = abs(time.time() - int(timestamp)) <= max_age
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


class _PinnedHTTP(http.client.HTTPConnection):
    """HTTP to an address checked beforehand, with the URL's host in the Host header."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self):
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to an address checked beforehand; the certificate is still verified for the URL's host name."""

    def __init__(self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext | None):
        super().__init__(host, port, timeout=timeout, context=context or ssl.create_default_context())
        self.address = address

    def connect(self):
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post_once(policy: CallbackPolicy, target: CallbackTarget, body: bytes) -> int:
    """One signed POST; its HTTP status (redirects are not followed). RefusedAddress when the host now resolves
    somewhere refused, InputError when it does not resolve, OSError / HTTPException when the connection fails."""
    address = policy.resolve(target.host, target.port)[0]  # checked again: the name may point elsewhere now
    if target.scheme == "https":
        connection = _PinnedHTTPS(target.host, target.port, address, policy.timeout, policy.tls)
    else:
        connection = _PinnedHTTP(target.host, target.port, address, policy.timeout)
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "User-Agent": "latentsync-demo-webhook/1",
               TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(policy.secret or "", timestamp, body)}
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(65536)  # a little of the answer, so the receiver is not cut off mid-reply
        return response.status
    finally:
        connection.close()


def deliver(policy: CallbackPolicy, target: CallbackTarget, payload: dict, log: list[dict],
            stop: threading.Event | None = None) -> bool:
    """POST ``payload`` until a 2xx answer or the attempts run out (or ``stop`` is set), appending one entry
    per attempt to ``log`` ({"attempt", "time", "status"} or {..., "error"}); True once delivered."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    stop = stop or threading.Event()
    for attempt in range(1, policy.retries + 2):
        entry: dict = {"attempt": attempt, "time": round(time.time(), 3)}
        retry = True
        try:
            entry["status"] = status = post_once(policy, target, body)
            if 200 <= status < 300:
                log.append(entry)
                return True
            retry = status >= 500 or status in _RETRY_STATUSES
            if 300 <= status < 400:
                entry["error"] = "redirects are not followed; give the final URL"
        except RefusedAddress as exc:
            entry["error"], retry = str(exc), False
        except InputError as exc:  # the name does not resolve just now: worth another try
            entry["error"] = str(exc)
        except (OSError, http.client.HTTPException) as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"
        log.append(entry)
        if not retry or attempt > policy.retries or stop.wait(policy.backoff * 2 ** (attempt - 1)):
            return False
    return False


# --- the server's options -----------------------------------------------------------------------------------


def add_callback_options(group) -> None:
    """The webhook options of a server's argument parser (or one of its groups)."""
    group.add_argument("--callback-allow", action="append", metavar="HOST[:PORT]|ADDRESS|CIDR",
                       default=os.environ.get("LATENTSYNC_CALLBACK_ALLOW", "").replace(",", " ").split(),
                       help="a destination jobs may call back (repeat it; *.domain and * match names; private, "
                            "loopback and link-local addresses only when listed themselves). Default: none "
                            "(env LATENTSYNC_CALLBACK_ALLOW, comma-separated)")
    group.add_argument("--callback-secret", default=os.environ.get("LATENTSYNC_CALLBACK_SECRET"),
                       help="the HMAC-SHA256 key that signs every callback; required with --callback-allow. Prefer "
                            "the env LATENTSYNC_CALLBACK_SECRET (a command line is visible to other users)")
    group.add_argument("--callback-retries", type=int, default=3, help="retries after a failed delivery")
    group.add_argument("--callback-backoff", type=float, default=1.0,
                       help="seconds before the first retry, doubled for each next one")


def callback_policy(args: argparse.Namespace) -> CallbackPolicy:
    """The policy the options ask for; ValueError (a start-up error) for a malformed entry, or an allow list
    without a secret: the server would accept callbacks it could only send unsigned."""
    if args.callback_allow and not args.callback_secret:
        raise ValueError("--callback-allow needs a signing secret: set LATENTSYNC_CALLBACK_SECRET (or "
                         "--callback-secret); unsigned callbacks could be forged by anyone who learns a callback URL")
    return CallbackPolicy(tuple(args.callback_allow), args.callback_secret, args.callback_retries,
                          args.callback_backoff)
