"""HTTP to Target: one pooled session, sender threads, one request read into one answer.

Connect/read timeouts, no redirects, no cookies, no retries at this level (the retry policy
decides), and at most RESPONSE_READ_LIMIT_BYTES of any answer is read.
Never logged: profile values, URLs with their query, bodies, tokens.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import http.cookiejar
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import requests

from . import deadlines, target
from .conf import setting
from .models import ProfileUpdate

USER_AGENT = "ProfileOps (Single Profile Update sender)"
RESPONSE_READ_LIMIT_BYTES = 64 * 1024  # a misbehaving server must not fill our memory


@dataclass
class Sent:
    """One request that left (or may have left) this machine, and its answer."""

    update: ProfileUpdate
    method: str
    size: int
    started_at: dt.datetime
    answer: target.Answer
    latency_ms: int | None


def make_session(*, pool_size: int) -> requests.Session:
    """A Session whose connection pool fits the concurrency; no retries, no cookies, nothing
    from the environment but a CA bundle."""
    session = requests.Session()
    apart_from_the_environment(session)
    # Connections a wall-clock deadline can end (deadlines.py; send_one bounds each request).
    deadlines.mount(session, pool_connections=4, pool_maxsize=max(1, pool_size), max_retries=0)
    session.headers["User-Agent"] = USER_AGENT
    # Target may set visitor cookies; one visitor's cookie must never ride along with the next.
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return session


def apart_from_the_environment(session: requests.Session) -> None:
    """Nothing from the environment reaches Target's requests but the CA bundle, read once.

    With `trust_env` on, requests reads the proxy variables and ~/.netrc again for every request
    (a fifth of a request's CPU, bench/send_throughput.py), sends identities and profile values
    through whatever proxy the process's environment names, and lets a ~/.netrc entry for the
    host replace the connection's bearer token with Basic auth. A deployment that reaches Target
    through a forward proxy names it in PROFILEOPS_TARGET_PROXY (checked at start, E015).
    REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (a TLS-inspecting proxy's CA) are honoured as requests
    honours them, read when the session is made.
    """
    session.trust_env = False
    proxy = setting("TARGET_PROXY")
    if proxy:
        session.proxies = {"http": proxy, "https": proxy}
    ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if ca_bundle:
        session.verify = ca_bundle


class Senders:
    """The sender threads of one run, sharing one session."""

    def __init__(self, *, session: requests.Session, concurrency: int,
                 timeout: tuple[float, float], clock: Callable[[], dt.datetime]) -> None:
        self.session = session
        self.concurrency = max(1, concurrency)
        self.timeout = timeout
        self.clock = clock
        self._executor: ThreadPoolExecutor | None = None  # started with the first request

    def submit(self, batch: list[tuple[ProfileUpdate, target.ProfileRequest]],
               dispatch_deadline: float) -> list[Future]:
        """Hand the batch to the threads; each future gives a Sent, or None if not started
        (the deadline had passed when its turn came)."""
        if not batch:
            return []
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self.concurrency,
                                                thread_name_prefix="profileops-send")

        def send(item: tuple[ProfileUpdate, target.ProfileRequest]) -> Sent | None:
            if time.monotonic() >= dispatch_deadline:
                return None
            return send_one(self.session, *item, timeout=self.timeout, clock=self.clock)

        return [self._executor.submit(send, item) for item in batch]

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)


def send_one(session: requests.Session, update: ProfileUpdate, request: target.ProfileRequest,
             *, timeout: tuple[float, float], clock: Callable[[], dt.datetime]) -> Sent:
    """One request, ended by its wall-clock deadline — connect and read timeouts together — however
    slowly the answer drips (an overrun is a timeout: transient). The answer's body and error are
    kept only as target.from_outside gives them (the connection's secrets redacted)."""
    started_at = clock()
    began = time.perf_counter()
    try:
        # Prepared here and sent with Session.send (requests' "prepared requests"): the session
        # adds nothing to a request but its headers — no cookies, auth, hooks, params or
        # environment (apart_from_the_environment) — so merging them per request (Session.request)
        # would only cost CPU.
        prepared = requests.PreparedRequest()
        prepared.prepare(method=request.method, url=request.url, data=request.body,
                         headers={**session.headers, **request.headers})
        with deadlines.bounded(time.monotonic() + timeout[0] + timeout[1]), session.send(
            prepared, timeout=timeout, allow_redirects=False, stream=True,
            verify=session.verify, proxies=session.proxies, cert=session.cert,
        ) as response:
            body = read_limited(response)
            status, retry_after = response.status_code, response.headers.get("Retry-After")
        answer = target.read_answer(status, body, retry_after)
    except requests.exceptions.InvalidHeader:
        # requests quotes the offending header's value in this message — for Authorization, the
        # bearer token, which would then sit in the attempt, the update page and exports. Keep
        # the type, with a message of our own. (The admin refuses such tokens; one stored another
        # way must still not leak.)
        # Nothing left this machine and a retry would fail the same way: permanent.
        answer = target.Answer(
            target.Outcome.PERMANENT, None, "",
            "InvalidHeader: a request header holds characters no HTTP header may carry (a "
            "space or line break in the connection's bearer token?)")
    except Exception as error:  # anything before a full answer: it may have reached Target
        answer = target.transport_failure(error)
    if answer.body or answer.error:
        secrets = update.connection.secrets()
        body = target.from_outside(answer.body, secrets)
        error_text = target.from_outside(answer.error, secrets)
        if body is not answer.body or error_text is not answer.error:  # the same text if clean
            answer = dataclasses.replace(answer, body=body, error=error_text)
    latency_ms = int((time.perf_counter() - began) * 1000)
    return Sent(update, request.method, request.size, started_at, answer, latency_ms)


def read_limited(response: requests.Response, limit: int = RESPONSE_READ_LIMIT_BYTES) -> str:
    """A streamed answer's text, at most `limit` bytes of it."""
    chunks, size = [], 0
    for chunk in response.iter_content(16 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    raw = b"".join(chunks)
    content_type = response.headers.get("Content-Type", "")
    charset = requests.utils.get_encoding_from_headers({"content-type": content_type})
    if "charset" not in content_type.lower():
        charset = "utf-8"  # requests would guess ISO-8859-1 for text/*; Target answers in UTF-8
    try:
        return raw.decode(charset or "utf-8", errors="replace")
    except LookupError:
        return raw.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Reply:
    """What one bounded call got back: the status, Retry-After, and the answer's first bytes as
    text — not yet redacted (the caller knows the secrets: target.from_outside)."""

    status: int
    text: str
    retry_after: str | None


def call_bounded(method: str, url: str, *, timeout: tuple[float, float], limit: int,
                 session: requests.Session | None = None, **request) -> Reply:
    """One call to Adobe beside the sender's hot path (bulk API, IMS and Admin API, Privacy
    Service): ended by one wall-clock deadline — connect and read timeouts together, however
    slowly the answer drips — no redirect followed, at most `limit` bytes of the answer read.
    Raises requests.RequestException (deadlines.DeadlineExceeded for an overrun) when no whole
    answer came; its message may quote the URL, so callers keep only its type. Without a
    `session`, one of its own (make_session) is made and closed."""
    own = session is None
    session = session or make_session(pool_size=1)
    try:
        with deadlines.bounded(time.monotonic() + timeout[0] + timeout[1]), session.request(
                method, url, timeout=timeout, allow_redirects=False, stream=True,
                **request) as response:
            return Reply(response.status_code, read_limited(response, limit),
                         response.headers.get("Retry-After"))
    finally:
        if own:
            session.close()
