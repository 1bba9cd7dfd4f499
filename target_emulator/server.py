"""A local stand-in for Adobe Target's Single Profile Update and profile read APIs (and, in
``bulk.py``, its Bulk Profile Update API with batchStatus on a second listener).

Used by the embedded demo, by every test that sends, and by benchmarks. It speaks the protocol
described in shared/reference/target-profile-api.md and can inject the faults a real network and a
real Target produce (latency, 503, hangs, dropped connections, maintenance pages, a quota).

Two modes:
- **faithful** (``faithful=True``, ``--faithful``; the demo and the read-back tests use it):
  behaves as Adobe documents. An update for a visitor without a profile is acknowledged and
  dropped (no profile is created); updates apply after ``apply_delay`` seconds (Target: usually
  within an hour, up to 24 h); reads serve ``modifiedAt`` per attribute and a 404 JSON for
  unknown visitors. Profiles are seeded with ``seed_profile``, ``POST /_emulator/profiles`` or
  ``--profiles FILE.json``. ``advance(seconds)`` moves the emulator's clock (tests never sleep).
- **lenient** (the default, kept for the sending tests and benchmarks): where it knowingly differs
  from Target — an update for an unknown visitor creates a profile, so the read API can show what
  arrived, and updates apply at once.
In both, ``token="..."`` makes the update and read endpoints answer 401 without
``Authorization: Bearer <token>`` (Target's "Require Authentication"); ``adobe=AdobeAdmin()``
adds Adobe IMS and Target's Admin API (adobe_admin.py), whose current profile token the update
and read endpoints then require.

Also (documented so nobody relies on it):
- Profiles are keyed by (identity type, identity); one client code per emulator is the intended
  use. ``visitorId`` in the read API is the identity the profile was updated with.
- Errors Target does not document (400/413/414/415, 429 and its counting) are our decisions:
  an oversized request is refused before the quota is touched; every other update request counts
  against the quota except those answered 429; an attribute given twice is refused like a doubled
  identity.

Hostile modes (for the tests that show a hostile Target cannot stall, crash or leak):
``drip_seconds`` sends every update and read answer one byte at a time, and ``echo_headers`` puts
the request's headers (the bearer token included) into update answers and into an
``echoedHeaders`` attribute of read answers. A seeded value may hold NUL or a lone surrogate
(JSON ``"\u0000"``, ``"\ud800"``); a read answers it as JSON escapes.

Privacy: query strings and bodies carry customer data, so nothing here logs a URL, a parameter
or an exception text — only route names and exception types.
"""

from __future__ import annotations

import collections
import http.client
import ipaddress
import json
import logging
import math
import random
import re
import socket
import socketserver
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote

from . import privacy as privacy_jobs
from . import bulk as bulk_api
from .adobe_admin import AdobeAdmin

logger = logging.getLogger(__name__)

ACKNOWLEDGMENT = "trueRequest successfully submitted"
GET_URL_LIMIT_BYTES = 8 * 1024  # whole URL as the client wrote it
POST_BODY_LIMIT_BYTES = 60 * 1024
IDENTITY_PARAMETERS = ("mboxPC", "mbox3rdPartyId")
ATTRIBUTE_PREFIX = "profile."
WRONG_BODY = b"<html><body>maintenance</body></html>"
# A refused oversized body is read and thrown away (so the client sees the 413 instead of a reset)
# up to this much; beyond it the connection is closed.
_DRAIN_LIMIT_BYTES = 4 * 1024 * 1024
_MAX_REQUEST_LINE = 65536
_IDLE_CONNECTION_SECONDS = 120
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")

# Outcomes recorded for each update request (the "what was done" of a record).
ACKNOWLEDGED = "acknowledged"
REFUSED = "refused"  # 4xx for a malformed or oversized request
OVER_QUOTA = "over_quota"  # 429
ERROR = "error"  # injected 503
TIMEOUT = "timeout"  # injected hang; the update WAS applied first
DROPPED = "dropped"  # injected close without answer; NOT applied
WRONG_BODY_OUTCOME = "wrong_body"  # 200 without the acknowledgment; NOT applied


@dataclass(frozen=True)
class FaultConfig:
    latency: float = 0.0
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    hang_seconds: float = 30.0
    drop_rate: float = 0.0
    wrong_body_rate: float = 0.0
    quota: int | None = None
    quota_window_seconds: float = 86400
    keep_received: bool = True
    read_error_rate: float = 0.0  # share of profile reads answered 503
    # Hostile Targets: every update and read answer sent one byte per `drip_seconds` (status line
    # and headers included), and answers that echo the request's headers (a proxy's error page).
    drip_seconds: float = 0.0
    echo_headers: bool = False

    def validated(self) -> FaultConfig:
        for name in ("latency", "hang_seconds", "drip_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        rates = ("error_rate", "timeout_rate", "drop_rate", "wrong_body_rate")
        for name in rates:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if not 0.0 <= self.read_error_rate <= 1.0:
            raise ValueError("read_error_rate must be between 0 and 1")
        # One random draw decides the fault, so the shares must fit into one.
        if sum(getattr(self, name) for name in rates) > 1.0 + 1e-9:
            raise ValueError("error, timeout, drop and wrong-body rates together exceed 1")
        if self.quota is not None and self.quota < 0:
            raise ValueError("quota must not be negative")
        if self.quota_window_seconds <= 0:
            raise ValueError("quota_window_seconds must be positive")
        return self


_OPTION_NAMES = {f.name for f in fields(FaultConfig)} | {"seed"}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def _loopback_ipv4(host: str) -> str:
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError("The emulator listens on an IPv4 loopback address only.") from None
    if address.version != 4 or not address.is_loopback:
        raise ValueError("The emulator listens on an IPv4 loopback address only.")
    return host


class _RollingQuota:
    """Requests in a rolling window, counted in small time buckets (memory stays bounded).

    A bucket expires only once its *end* has left the window, so the count is never lower than an
    exact count would be (at most one bucket width stricter).
    """

    BUCKETS_PER_WINDOW = 10_000

    def __init__(self) -> None:
        self._buckets: collections.deque[list[float]] = collections.deque()  # [end, count]
        self._used = 0

    def _expire(self, now: float, window: float) -> None:
        while self._buckets and self._buckets[0][0] + window <= now:
            self._used -= int(self._buckets.popleft()[1])

    def used(self, now: float, window: float) -> int:
        self._expire(now, window)
        return self._used

    def try_take(self, now: float, window: float, limit: int) -> float | None:
        """Take one unit; if the window is full, return the seconds until one frees up."""
        self._expire(now, window)
        if self._used >= limit:
            if not self._buckets:  # a quota of zero never frees up
                return window
            return min(window, max(0.0, self._buckets[0][0] + window - now))
        if self._buckets and now < self._buckets[-1][0]:
            self._buckets[-1][1] += 1
        else:
            self._buckets.append([now + window / self.BUCKETS_PER_WINDOW, 1])
        self._used += 1
        return None

    def clear(self) -> None:
        self._buckets.clear()
        self._used = 0


class TargetEmulator:
    """In-process Target emulator; ``start()`` serves in a daemon thread on 127.0.0.1."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency: float = 0.0,
        error_rate: float = 0.0,
        timeout_rate: float = 0.0,
        hang_seconds: float = 30.0,
        drop_rate: float = 0.0,
        wrong_body_rate: float = 0.0,
        quota: int | None = None,
        quota_window_seconds: float = 86400,
        seed: int | None = None,
        keep_received: bool = True,
        faithful: bool = False,
        apply_delay: float = 0.0,
        token: str | None = None,
        profiles: list[dict[str, Any]] | None = None,
        drip_seconds: float = 0.0,
        echo_headers: bool = False,
        adobe: AdobeAdmin | None = None,
        bulk: dict[str, Any] | None = None,
        edge_host: str | None = None,
    ) -> None:
        self.host = _loopback_ipv4(host)
        self.adobe = adobe  # IMS and the Admin API (adobe_admin.py); its tokens guard the APIs
        # The Bulk Profile Update twin (bulk.py); its batchStatus is served by a second listener,
        # "the edge", on `edge_host` (default: the same loopback address, another port).
        self.bulk = bulk_api.BulkTwin(self, bulk)
        self.edge_host = _loopback_ipv4(edge_host or host)
        self._edge_server: _Server | None = None
        if apply_delay < 0:
            raise ValueError("apply_delay must not be negative")
        self.faithful = faithful
        self.apply_delay = float(apply_delay)
        self._token = token or None
        self._clock_offset = 0.0
        self._pending: list[tuple[float, dict[str, Any]]] = []  # (apply at, record), faithful
        self._requested_port = port
        self._config = FaultConfig(
            latency=latency, error_rate=error_rate, timeout_rate=timeout_rate,
            hang_seconds=hang_seconds, drop_rate=drop_rate, wrong_body_rate=wrong_body_rate,
            quota=quota, quota_window_seconds=quota_window_seconds, keep_received=keep_received,
            drip_seconds=drip_seconds, echo_headers=echo_headers,
        ).validated()
        self._random = random.Random(seed)
        self._random_lock = threading.Lock()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._received: list[dict[str, Any]] = []
        # When each profile read arrived (time.time()), the latest 100,000.
        self._read_times: collections.deque[float] = collections.deque(maxlen=100_000)
        self._profiles: dict[tuple[str, str], dict[str, Any]] = {}
        self._acknowledged: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()
        self._status_counts: Counter[str] = Counter()
        self._outcome_counts: Counter[str] = Counter()
        self._quota = _RollingQuota()
        self._server: _Server | None = None
        self._bound_port = 0
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.privacy = privacy_jobs.PrivacyJobs(self)  # Adobe Privacy Service's jobs (privacy.py)
        for number, spec in enumerate(profiles or (), start=1):
            try:
                self.seed_profile(**spec)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"seed profile {number}: {exc}") from None

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> TargetEmulator:
        if self._server is not None:
            raise RuntimeError("emulator already started")
        self._stopping.clear()
        server = _Server((self.host, self._requested_port), _Handler)
        server.emulator = self
        self._server = server
        self._bound_port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05},  # stop() waits for one poll
            name=f"target-emulator-{self.port}", daemon=True)
        self._thread.start()
        edge = _Server((self.edge_host, 0), _Handler)
        edge.emulator, edge.edge = self, True
        self._edge_server = edge
        threading.Thread(target=edge.serve_forever, kwargs={"poll_interval": 0.05},
                         name=f"target-emulator-edge-{self.port}", daemon=True).start()
        return self

    def stop(self) -> None:
        edge, self._edge_server = self._edge_server, None
        if edge is not None:
            edge.shutdown()
            edge.close_connections()
            edge.server_close()
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes injected hangs and latencies
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> TargetEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port once started (still known after stop), else the one asked for."""
        return self._bound_port or self._requested_port

    @property
    def edge_port(self) -> int:
        """The port of the listener that serves batchStatus (the bulk API's edge host)."""
        if self._edge_server is None:
            raise RuntimeError("start the emulator first")
        return self._edge_server.server_address[1]

    @property
    def base_url(self) -> str:
        if not self.port:
            raise RuntimeError("start the emulator first: the port is chosen when it binds")
        return f"http://{self.host}:{self.port}"

    # --- configuration and state ------------------------------------------------------------

    def configure(self, **options: Any) -> dict[str, Any]:
        """Change fault options while running; returns the options now in force."""
        unknown = set(options) - _OPTION_NAMES
        if unknown:
            raise ValueError(f"unknown emulator option(s): {', '.join(sorted(unknown))}")
        seed = options.pop("seed", None)
        new = replace(self._config, **options).validated()
        with self._random_lock:
            if seed is not None:
                self._random.seed(seed)
            self._config = new
        return self.config

    @property
    def config(self) -> dict[str, Any]:
        return asdict(self._config)

    def reset(self) -> None:
        """Forget received requests, profiles, counters and quota usage (fault options stay)."""
        with self._lock:
            self._received.clear()
            self._read_times.clear()
            self._profiles.clear()
            self._acknowledged.clear()
            self._counts.clear()
            self._status_counts.clear()
            self._outcome_counts.clear()
            self._quota.clear()
            self._pending.clear()
        self.privacy.reset()
        self.bulk.reset()

    def read_times(self) -> list[float]:
        """When each profile read arrived (time.time(), before the latency), oldest first: the
        read rate Target saw (tests of the shared read limit)."""
        with self._lock:
            return list(self._read_times)

    @property
    def received(self) -> list[dict[str, Any]]:
        """Snapshot of the update requests received, oldest first (empty if keep_received=False)."""
        with self._lock:
            return [dict(record) for record in self._received]

    def received_since(self, index: int) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(record) for record in self._received[max(0, index):]]

    @property
    def profiles(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Snapshot: (identity_type, identity) -> {"client", "modifiedAt", "attributes"}."""
        with self._lock:
            self._apply_due()
            return {key: _copy_profile(profile) for key, profile in self._profiles.items()}

    def acknowledged_count_by_identity(self) -> Counter[str]:
        """identity -> how many requests for it got the acknowledgment (kept in every mode)."""
        with self._lock:
            return Counter(self._acknowledged)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least `count` update requests have been handled; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while self._counts["requests"] < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._arrived.wait(remaining)
            return True

    def stats(self) -> dict[str, Any]:
        with self._lock:
            per_identity = self._acknowledged.values()
            quota_used = self._quota.used(time.time(), self._config.quota_window_seconds)
            return {
                "connections_accepted": self._counts["connections"],
                "requests": self._counts["requests"],
                "acknowledged": self._counts["acknowledged"],
                "applied": self._counts["applied"],
                "by_status": dict(self._status_counts),
                "by_outcome": dict(self._outcome_counts),
                "identities_acknowledged": len(self._acknowledged),
                "identities_acknowledged_more_than_once": sum(1 for n in per_identity if n > 1),
                "max_acknowledgments_per_identity": max(per_identity, default=0),
                "profiles": len(self._profiles),
                "quota": self._config.quota,
                "quota_used": quota_used,
                "received_kept": len(self._received),
            }

    # --- used by the handler ----------------------------------------------------------------

    def _draw_fault(self, config: FaultConfig) -> str | None:
        with self._random_lock:
            draw = self._random.random()
        for outcome, rate in ((ERROR, config.error_rate), (TIMEOUT, config.timeout_rate),
                              (DROPPED, config.drop_rate), (WRONG_BODY_OUTCOME, config.wrong_body_rate)):
            if draw < rate:
                return outcome
            draw -= rate
        return None

    def _count_connection(self) -> None:
        with self._lock:
            self._counts["connections"] += 1

    def _take_quota(self, config: FaultConfig, now: float) -> float | None:
        if config.quota is None:
            return None
        with self._lock:
            return self._quota.try_take(now, config.quota_window_seconds, config.quota)

    def _record(self, record: dict[str, Any], *, apply: bool, keep: bool) -> None:
        with self._lock:
            if apply:
                self._apply(record)
            self._counts["requests"] += 1
            if record["applied"]:
                self._counts["applied"] += 1
            if record["outcome"] == ACKNOWLEDGED:
                self._counts["acknowledged"] += 1
                self._acknowledged[record["identity"]] += 1
            self._status_counts[str(record["status"])] += 1
            self._outcome_counts[record["outcome"]] += 1
            if keep:
                self._received.append(record)
            self._arrived.notify_all()

    def _apply(self, record: dict[str, Any]) -> None:
        if not self._config.keep_received:
            return  # counters only: long benchmarks must not grow a profile store
        if self.faithful:
            self._pending.append((self._now() + self.apply_delay, record))
            self._apply_due()
            return
        self._apply_now(record, record["at"])

    def _apply_now(self, record: dict[str, Any], at: float, *, create: bool = False) -> None:
        key = (record["identity_type"], record["identity"])
        if self.faithful and not create and key not in self._profiles:
            return  # Target: no profile found, none created — yet the update was acknowledged
        stamp = _iso(at)
        profile = self._profiles.setdefault(
            key, {"client": record["client_code"], "modifiedAt": stamp, "attributes": {}})
        profile["client"] = record["client_code"]
        profile["modifiedAt"] = stamp
        for name, value in record["attributes"].items():
            profile["attributes"][name] = {"value": value, "modifiedAt": stamp}

    def _apply_due(self) -> None:
        """Faithful mode: apply the updates whose delay has passed (caller holds the lock); and
        process the bulk batches whose delay has passed (every mode)."""
        self.bulk.apply_due(self._now())
        if not self._pending:
            return
        now = self._now()
        due = [(at, record) for at, record in self._pending if at <= now]
        if due:
            self._pending = [(at, record) for at, record in self._pending if at > now]
            for at, record in sorted(due, key=lambda item: item[0]):
                self._apply_now(record, at)

    def _now(self) -> float:
        return time.time() + self._clock_offset

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock forward (pending updates fall due; tests never sleep)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._clock_offset += seconds
            self._apply_due()

    def seed_profile(self, *, identity: str, attributes: dict[str, str],
                     identity_type: str = "mbox3rdPartyId", client: str | None = None,
                     modified_at: str | None = None, any_json: bool = False) -> None:
        """Create (or replace) a visitor's profile, as if the visitor had been on the site.

        `client`: the client code the profile belongs to (None: any — the first read or update
        claims it); `modified_at`: ISO-8601 stamp for every attribute (default: now). Values are
        text, as updates write them; `any_json=True` plays a Target that holds something else:
        a value may then be any JSON value (an object, a list, a number, true/false), answered
        as it is."""
        if identity_type not in IDENTITY_PARAMETERS:
            raise ValueError(f"identity_type must be one of {', '.join(IDENTITY_PARAMETERS)}")
        if not isinstance(identity, str) or not identity:
            raise ValueError("identity must be a non-empty string")
        if not isinstance(attributes, dict) or not all(
                isinstance(k, str) and k
                and isinstance(v, (str, dict, list, int, float) if any_json else str)
                for k, v in attributes.items()):
            raise ValueError("attributes must map names to string values (or, with any_json, "
                             "JSON values)")
        stamp = modified_at or _iso(self._now())
        with self._lock:
            self._profiles[(identity_type, identity)] = {
                "client": client, "modifiedAt": stamp,
                "attributes": {name: {"value": value, "modifiedAt": stamp}
                               for name, value in attributes.items()},
            }

    def pending_count(self) -> int:
        """Acknowledged updates not applied yet (faithful mode)."""
        with self._lock:
            return len(self._pending)

    def _authorized(self, header: str | None) -> bool:
        if self._token is None and self.adobe is not None and self.adobe.require_auth:
            return self.adobe.profile_token_accepted(header)
        return self._token is None or header == f"Bearer {self._token}"

    def _profile(self, identity_type: str, identity: str) -> dict[str, Any] | None:
        with self._lock:
            self._apply_due()
            profile = self._profiles.get((identity_type, identity))
            return _copy_profile(profile) if profile else None

    def _profiles_json(self) -> list[dict[str, Any]]:
        with self._lock:
            self._apply_due()
            return [{"identity_type": key[0], "identity": key[1], **_copy_profile(profile)}
                    for key, profile in self._profiles.items()]


def _copy_profile(profile: dict[str, Any]) -> dict[str, Any]:
    return {**profile, "attributes": {name: dict(v) for name, v in profile["attributes"].items()}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # benchmarks open many connections at once
    emulator: TargetEmulator
    edge = False  # the listener serving batchStatus, as Target's edge host does

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn), which can stall; not needed.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def track(self, sock: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            (self._connections.add if open_ else self._connections.discard)(sock)

    def close_connections(self) -> None:
        """Stopping must also end idle keep-alive connections, not just the listening socket."""
        with self._connections_lock:
            sockets = list(self._connections)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback whose message may quote request data.
        logger.warning("emulator: error while handling a request (%s)", sys.exc_info()[0].__name__)


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TargetEmulator/1"
    sys_version = ""
    disable_nagle_algorithm = True  # small keep-alive answers must not wait for delayed ACKs
    timeout = _IDLE_CONNECTION_SECONDS
    server: _Server

    # --- plumbing ---------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)
        self.server.emulator._count_connection()

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.track(self.connection, False)

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError, OSError):
            pass  # client went away mid-request or mid-answer; nothing to tell anyone

    def handle_one_request(self) -> None:
        # As BaseHTTPRequestHandler's, but an over-long request line is recorded too.
        try:
            self.raw_requestline = self.rfile.readline(_MAX_REQUEST_LINE + 1)
            if len(self.raw_requestline) > _MAX_REQUEST_LINE:
                self.close_connection = True
                self._record_refused_line()
                self._send(414, b"Request-URI Too Long")
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            method = getattr(self, "do_" + self.command, None)
            if method is None:
                self._send(501, b"Not Implemented")
                return
            method()
            self.wfile.flush()
        except TimeoutError:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request line carries customer data; see the module docstring

    def log_error(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8",
              headers: tuple[tuple[str, str], ...] = ()) -> None:
        # Status line, headers and body in one write: one segment per small answer.
        reason = http.client.responses.get(status, "")
        head = [f"HTTP/1.1 {status} {reason}", f"Server: {self.server_version}",
                f"Date: {self.date_time_string()}", f"Content-Type: {content_type}",
                f"Content-Length: {len(body)}"]
        head.extend(f"{name}: {value}" for name, value in headers)
        if self.close_connection:
            head.append("Connection: close")
        answer = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        drip = self.server.emulator._config.drip_seconds if self._hostile else 0.0
        if not drip:
            self.wfile.write(answer)
            return
        for at in range(len(answer)):  # a Target that drips: one byte, then a pause
            self.wfile.write(answer[at:at + 1])
            self.wfile.flush()
            if self.server.emulator._stopping.wait(drip):
                return

    def _send_json(self, status: int, payload: Any) -> None:
        try:
            text = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (seeded as "\ud800"): sent as JSON escapes
            text = json.dumps(payload).encode("ascii")
        self._send(status, text, "application/json; charset=utf-8")

    def _echoed_headers(self) -> str:
        return "\n".join(f"{name}: {value}" for name, value in self.headers.items())

    def _read_body(self, limit: int) -> tuple[bytes | None, int]:
        """(body, declared length); body is None if over `limit` (then drained or closed)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            raise _Refused(411, "send a Content-Length; chunked bodies are not accepted")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise _Refused(400, "invalid Content-Length") from None
        if length < 0:
            self.close_connection = True
            raise _Refused(400, "invalid Content-Length")
        if length <= limit:
            return (self.rfile.read(length) if length else b""), length
        if length > _DRAIN_LIMIT_BYTES:
            self.close_connection = True
            return None, length
        remaining = length
        while remaining:
            chunk = self.rfile.read(min(65536, remaining))
            if not chunk:
                self.close_connection = True
                break
            remaining -= len(chunk)
        return None, length

    def _split_target(self) -> tuple[str, str]:
        path, _, query = self.path.partition("?")
        if path.startswith(("http://", "https://")):  # absolute-form request target
            path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
        return path, query

    def _client_url_length(self) -> int:
        """Length of the URL as the client wrote it: scheme + Host + request target."""
        if self.path.startswith(("http://", "https://")):
            return len(self.path.encode("latin-1"))
        host = self.headers.get("Host") or f"{self.server.emulator.host}:{self.server.emulator.port}"
        return len("http://") + len(host.encode("latin-1")) + len(self.path.encode("latin-1"))

    # --- routing ----------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    _hostile = False  # drip applies to the protocol's answers, not to /_emulator/ inspection

    def _route(self, method: str) -> None:
        path, query = self._split_target()
        parts = path.split("/")
        self._hostile = not path.startswith("/_emulator/") and path != "/"
        try:
            if self._bulk_route(method, parts, query):
                return
            if len(parts) == 5 and parts[1] == "m2" and parts[3:] == ["profile", "update"]:
                self._profile_update(method, parts[2], query)
            elif path.startswith("/rest/v1/profiles/"):
                self._drain_small_body()
                if method != "GET":
                    raise _Refused(405, "use GET")
                self._profile_read(parts[4:], query)
            elif path.startswith(privacy_jobs.JOBS_PATH):
                privacy_jobs.handle(self, method, path)
            elif path.startswith("/_emulator/privacy/"):
                self._privacy_inspection(method, path)
            elif path.startswith("/_emulator/") or path == "/":
                self._inspection(method, path, query)
            elif self.server.emulator.adobe is not None and self.server.emulator.adobe.handles(path):
                body = self._read_body(POST_BODY_LIMIT_BYTES)[0]
                if "/target/" in path and not self.server.emulator.bulk.take_call():
                    # Target's Admin APIs share the bulk API's 50 calls a minute (bulk.py).
                    self._send(503, b"Service Unavailable", headers=(("Retry-After", "2"),))
                    return
                self._send_json(*self.server.emulator.adobe.answer(
                    method, path, query, self.headers, body or b""))
            else:
                self._drain_small_body()
                self._send(404, b"Not Found")
        except _Refused as refusal:
            self._send(refusal.status, refusal.message.encode("utf-8"))
        except (ConnectionError, TimeoutError):
            raise
        except Exception as exc:  # never let a bug print request data; answer 500 and go on
            logger.warning("emulator: internal error (%s)", type(exc).__name__)
            self.close_connection = True
            self._send(500, b"emulator internal error")

    def _bulk_route(self, method: str, parts: list[str], query: str) -> bool:
        """The bulk API (bulk.py): uploads on the main listener, batchStatus on the edge only;
        the edge serves nothing else. Returns whether the request was answered."""
        if len(parts) in (5, 6) and parts[1] == "m2" and parts[-2:] == ["profile", "batchUpdate"]:
            version = "v2" if len(parts) == 6 and parts[3] == "v2" else "v1"
            if len(parts) == 6 and parts[3] != "v2" or self.server.edge or method != "POST":
                self._drain_small_body()
                self._send(404, b"Not Found")
                return True
            bulk_api.handle_upload(self, version=version, client_code=_unquote_lenient(parts[2]))
            return True
        if self.server.edge:
            if len(parts) == 5 and parts[1] == "m2" and parts[3:] == ["profile", "batchStatus"] \
                    and method == "GET":
                bulk_api.handle_status(self, query=query)
            else:
                self._drain_small_body()
                self._send(404, b"Not Found")
            return True
        return False

    def _drain_small_body(self) -> None:
        if self._read_body(POST_BODY_LIMIT_BYTES)[0] is None:
            raise _Refused(413, "body too large")

    # --- the Single Profile Update endpoint -------------------------------------------------

    def _profile_update(self, method: str, raw_client_code: str, query: str) -> None:
        emulator = self.server.emulator
        config = emulator._config  # one consistent set of options for this request
        now = time.time()
        record: dict[str, Any] = {
            "method": method, "client_code": _unquote_lenient(raw_client_code),
            "identity_type": None, "identity": None, "attributes": {},
            "status": None, "outcome": REFUSED, "applied": False, "at": now,
            "bytes": 0, "authorization": self.headers.get("Authorization"), "error": "",
        }
        keep = config.keep_received

        def refuse(status: int, message: str, headers: tuple[tuple[str, str], ...] = (),
                   outcome: str = REFUSED) -> None:
            record.update(status=status, error=message, outcome=outcome)
            emulator._record(record, apply=False, keep=keep)
            self._wait(config.latency)
            self._send(status, message.encode("utf-8"), headers=headers)

        url_length = self._client_url_length()
        if method == "GET":
            record["bytes"] = url_length
        try:
            if url_length > GET_URL_LIMIT_BYTES:
                self._read_body(_DRAIN_LIMIT_BYTES)  # keep the connection in step
                return refuse(414, f"URL over {GET_URL_LIMIT_BYTES} bytes")
            body: bytes | None = b""
            if method == "POST":
                body, record["bytes"] = self._read_body(POST_BODY_LIMIT_BYTES)
                if body is None:
                    return refuse(413, f"body over {POST_BODY_LIMIT_BYTES} bytes")
                content_type = (self.headers.get("Content-Type") or "").split(";")[0]
                if content_type.strip().lower() != "application/x-www-form-urlencoded":
                    return refuse(415, "POST body must be application/x-www-form-urlencoded")
            else:
                self._drain_small_body()
        except _Refused as refusal:
            return refuse(refusal.status, refusal.message)

        if not emulator._authorized(self.headers.get("Authorization")):
            return refuse(401, "authentication required")

        wait = emulator._take_quota(config, now)
        if wait is not None:
            retry_after = str(max(1, math.ceil(wait)))
            return refuse(429, "over quota", (("Retry-After", retry_after),), OVER_QUOTA)

        try:
            # http.server hands the request line over as Latin-1; raw bytes must be UTF-8.
            params = _decode_body(query.encode("latin-1")) + (
                _decode_body(body) if method == "POST" else [])
            identity_type, identity, attributes = _interpret(params)
        except _Refused as refusal:
            return refuse(refusal.status, refusal.message)
        record.update(identity_type=identity_type, identity=identity, attributes=attributes)

        fault = emulator._draw_fault(config)
        if fault == ERROR:
            return refuse(503, "Service Unavailable", (("Retry-After", "1"),), ERROR)
        if fault == DROPPED:
            record.update(outcome=DROPPED)
            emulator._record(record, apply=False, keep=keep)
            self._wait(config.latency)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)  # no answer at all
            return
        if fault == WRONG_BODY_OUTCOME:
            record.update(status=200, outcome=WRONG_BODY_OUTCOME)
            emulator._record(record, apply=False, keep=keep)
            self._wait(config.latency)
            self._send(200, WRONG_BODY, "text/html; charset=utf-8")
            return
        # Acknowledged, or a timeout: a slow server that did process the update before hanging.
        record.update(status=200, applied=True, outcome=TIMEOUT if fault == TIMEOUT else ACKNOWLEDGED)
        emulator._record(record, apply=True, keep=keep)
        self._wait(config.latency + (config.hang_seconds if fault == TIMEOUT else 0.0))
        if config.echo_headers:  # what a proxy's debugging page does: the headers, token included
            self._send(200, (ACKNOWLEDGMENT + "\n" + self._echoed_headers()).encode("utf-8"))
            return
        self._send(200, ACKNOWLEDGMENT.encode("ascii"))

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self.server.emulator._stopping.wait(seconds)

    def _record_refused_line(self) -> None:
        emulator = self.server.emulator
        record = {
            "method": self.raw_requestline[:8].split(b" ")[0].decode("latin-1"),
            "client_code": None, "identity_type": None, "identity": None, "attributes": {},
            "status": 414, "outcome": REFUSED, "applied": False, "at": time.time(),
            "bytes": len(self.raw_requestline), "authorization": None,
            "error": "request line too long",
        }
        emulator._record(record, apply=False, keep=emulator._config.keep_received)

    # --- the profile read API ---------------------------------------------------------------

    def _profile_read(self, rest: list[str], query: str) -> None:
        emulator = self.server.emulator
        with emulator._lock:
            emulator._read_times.append(time.time())
        self._wait(emulator._config.latency)
        if not emulator._authorized(self.headers.get("Authorization")):
            self._send_json(401, {"status": 401, "message": "Authentication required"})
            return
        if emulator._config.read_error_rate:
            with emulator._random_lock:
                failing = emulator._random.random() < emulator._config.read_error_rate
            if failing:
                self._send_json(503, {"status": 503, "message": "Service Unavailable"})
                return
        client = dict(_decode(query)).get("client")
        if not client:
            self._send_json(400, {"status": 400, "message": "The client parameter is required"})
            return
        if len(rest) == 1 and rest[0]:
            identity_type, identity, label = "mboxPC", _unquote_strict(rest[0]), "mboxPC="
        elif len(rest) == 2 and rest[0] == "thirdPartyId" and rest[1]:
            identity_type, identity, label = "mbox3rdPartyId", _unquote_strict(rest[1]), "third party id="
        else:
            self._send_json(404, {"status": 404, "message": "Unknown profile lookup"})
            return
        profile = emulator._profile(identity_type, identity)
        if profile is None or profile["client"] not in (client, None):
            self._send_json(404, {"status": 404, "message":
                                  f"No profile found for client {client} with {label}{identity}"})
            return
        answer = {
            "client": client, "visitorId": identity, "modifiedAt": profile["modifiedAt"],
            "profileAttributes": profile["attributes"],
        }
        if emulator._config.echo_headers:
            answer["profileAttributes"]["echoedHeaders"] = {
                "value": self._echoed_headers(), "modifiedAt": profile["modifiedAt"]}
        self._send_json(200, answer)

    # --- inspection for tests, demos and subprocess use -------------------------------------

    def _privacy_inspection(self, method: str, path: str) -> None:
        jobs = self.server.emulator.privacy
        body = self._read_body(POST_BODY_LIMIT_BYTES)[0]
        if (method, path.rstrip("/")) == ("GET", "/_emulator/privacy/jobs"):
            self._send_json(200, jobs.jobs())
        elif (method, path.rstrip("/")) == ("POST", "/_emulator/privacy/config"):
            try:
                self._send_json(200, jobs.configure(**json.loads(body or b"{}")))
            except (ValueError, TypeError) as exc:
                self._send_json(400, {"status": 400, "message": str(exc)})
        else:
            self._send(404, b"Not Found")

    def _inspection(self, method: str, path: str, query: str) -> None:
        emulator = self.server.emulator
        body = self._read_body(POST_BODY_LIMIT_BYTES)[0]
        if body is None:
            raise _Refused(413, "body too large")
        route = (method, path.rstrip("/") or "/")
        if route == ("GET", "/_emulator/received"):
            since = dict(_decode(query)).get("since", "0")
            if not since.isdigit():
                raise _Refused(400, "since must be a non-negative integer")
            self._send_json(200, emulator.received_since(int(since)))
        elif route == ("GET", "/_emulator/received.html"):
            self._send(200, _received_html(emulator.received).encode("utf-8"),
                       "text/html; charset=utf-8")
        elif route == ("GET", "/_emulator/profiles"):
            self._send_json(200, emulator._profiles_json())
        elif route == ("POST", "/_emulator/profiles"):
            try:
                specs = json.loads(body or b"[]")
                specs = [specs] if isinstance(specs, dict) else specs
                if not isinstance(specs, list) or not all(isinstance(x, dict) for x in specs):
                    raise ValueError("send a JSON object or a list of objects")
                for spec in specs:
                    emulator.seed_profile(**spec)
                self._send_json(200, {"seeded": len(specs)})
            except (ValueError, TypeError) as exc:
                self._send_json(400, {"status": 400, "message": str(exc)})
        elif route == ("POST", "/_emulator/advance"):
            try:
                emulator.advance(float(json.loads(body or b"{}").get("seconds", 0)))
                self._send_json(200, {"advanced": True})
            except (ValueError, TypeError, AttributeError) as exc:
                self._send_json(400, {"status": 400, "message": str(exc)})
        elif route == ("GET", "/_emulator/bulk"):
            self._send_json(200, {"options": emulator.bulk.configure(),
                                  "batches": emulator.bulk.summary()})
        elif route == ("POST", "/_emulator/bulk/config"):
            try:
                options = json.loads(body or b"{}")
                if not isinstance(options, dict):
                    raise ValueError("send a JSON object of options")
                self._send_json(200, emulator.bulk.configure(**options))
            except (ValueError, TypeError) as exc:
                self._send_json(400, {"status": 400, "message": str(exc)})
        elif route == ("GET", "/_emulator/stats"):
            self._send_json(200, emulator.stats())
        elif route == ("GET", "/_emulator/config"):
            self._send_json(200, emulator.config)
        elif route == ("POST", "/_emulator/reset"):
            emulator.reset()
            self._send_json(200, {"reset": True})
        elif route == ("POST", "/_emulator/config"):
            try:
                options = json.loads(body or b"{}")
                if not isinstance(options, dict):
                    raise ValueError("send a JSON object of options")
                self._send_json(200, emulator.configure(**options))
            except (ValueError, TypeError) as exc:
                self._send_json(400, {"status": 400, "message": str(exc)})
        elif route == ("GET", "/"):
            self._send(200, _summary_html(emulator).encode("utf-8"), "text/html; charset=utf-8")
        else:
            self._send(404, b"Not Found")


# --- decoding -------------------------------------------------------------------------------


def _decode(text: str) -> list[tuple[str, str]]:
    """Form-decode a query string or body: '+' and %20 are spaces; UTF-8 strictly."""
    if not text:
        return []
    if _BAD_PERCENT.search(text):
        raise _Refused(400, "malformed percent-encoding")
    try:
        return parse_qsl(text, keep_blank_values=True, strict_parsing=False,
                         encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise _Refused(400, "malformed encoding (parameters must be UTF-8)") from None


def _decode_body(body: bytes) -> list[tuple[str, str]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused(400, "malformed encoding (parameters must be UTF-8)") from None
    return _decode(text)


def _unquote_strict(segment: str) -> str:
    if _BAD_PERCENT.search(segment):
        raise _Refused(400, "malformed percent-encoding")
    try:
        return unquote(segment, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise _Refused(400, "malformed encoding") from None


def _unquote_lenient(segment: str) -> str:
    return unquote(segment, encoding="utf-8", errors="replace")


def _interpret(params: list[tuple[str, str]]) -> tuple[str, str, dict[str, str]]:
    identities = [(name, value) for name, value in params if name in IDENTITY_PARAMETERS]
    if not identities:
        raise _Refused(400, "no identity: send mboxPC or mbox3rdPartyId")
    if len({name for name, _ in identities}) > 1:
        raise _Refused(400, "send either mboxPC or mbox3rdPartyId, not both")
    if len(identities) > 1:
        raise _Refused(400, "identity given more than once")
    identity_type, identity = identities[0]
    if not identity:
        raise _Refused(400, "empty identity")
    attributes: dict[str, str] = {}
    for name, value in params:
        if not name.startswith(ATTRIBUTE_PREFIX):
            continue  # other parameters are ignored, as Target ignores what it does not know
        bare = name[len(ATTRIBUTE_PREFIX):]
        if not bare:
            raise _Refused(400, "empty profile attribute name")
        if bare in attributes:
            raise _Refused(400, "profile attribute given more than once")
        attributes[bare] = value
    return identity_type, identity, attributes


def _summary_html(emulator: TargetEmulator) -> str:
    from html import escape

    stats = json.dumps(emulator.stats(), indent=2)
    config = json.dumps(emulator.config, indent=2)
    return (
        "<!doctype html><meta charset='utf-8'><title>Target emulator</title>"
        "<h1>Local Adobe Target emulator</h1>"
        "<p>Single Profile Update: <code>/m2/&lt;clientCode&gt;/profile/update</code> · read API: "
        "<code>/rest/v1/profiles/…?client=…</code></p>"
        "<p><a href='/_emulator/received.html'>received (table)</a> · "
        "<a href='/_emulator/received'>received (JSON)</a> · <a href='/_emulator/profiles'>profiles</a>"
        " · <a href='/_emulator/stats'>stats</a> · <a href='/_emulator/config'>config</a></p>"
        f"<h2>Stats</h2><pre>{escape(stats)}</pre><h2>Fault options</h2><pre>{escape(config)}</pre>"
    )


RECEIVED_HTML_ROWS = 500  # the newest; the JSON endpoint has them all


def _received_html(records: list[dict[str, Any]]) -> str:
    """The received update requests as a table, newest first, for people watching a demo.

    Every value arrived over the network (identities and attributes are whatever a client
    sent), so each one is HTML-escaped before it is written out.
    """
    from html import escape

    shown = records[-RECEIVED_HTML_ROWS:][::-1]
    rows = []
    for record in shown:
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record["at"]))
        attributes = "".join(
            f"<li><code>{escape(str(name))}</code> = {escape(str(value))}</li>"
            for name, value in sorted(record["attributes"].items()))
        outcome = str(record["outcome"])
        if record["status"] is not None:
            outcome += f" (HTTP {record['status']})"
        if record["error"]:
            outcome += f": {record['error']}"
        rows.append(
            "<tr>"
            f"<td>{escape(str(record['method']))}</td>"
            f"<td>{escape(str(record['identity_type'] or '—'))}</td>"
            f"<td>{escape(str(record['identity'] or '—'))}</td>"
            f"<td><ul>{attributes}</ul></td>"
            f"<td>{escape(outcome)}</td>"
            f"<td>{at} UTC</td>"
            "</tr>")
    more = len(records) - len(shown)
    plural = "" if len(records) == 1 else "s"
    note = (f"<p>{len(records):,} update request{plural} received"
            + (f"; the newest {len(shown):,} are shown" if more else "")
            + ", newest first. <a href='/_emulator/received'>JSON</a> · <a href='/'>emulator</a>"
            "</p>")
    empty = "<tr><td colspan='6'>Nothing received yet.</td></tr>"
    return (
        "<!doctype html><meta charset='utf-8'><link rel='icon' href='data:,'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<title>Received — Target emulator</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top;"
        "overflow-wrap:anywhere}"
        "ul{margin:0;padding-left:1em}</style>"
        "<h1>Update requests received</h1>" + note +
        "<table><thead><tr><th>Method</th><th>Identity type</th><th>Identity</th>"
        "<th>Attributes</th><th>Outcome</th><th>Time</th></tr></thead><tbody>"
        + ("".join(rows) or empty) + "</tbody></table>")
