"""Small helpers the test modules share (fixtures live in tests/conftest.py)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from django.contrib.messages import get_messages
from django.db import connections
from django.utils import timezone

from updates import deadlines
from updates.models import (AuditEvent, ProfileRead, ProfileUpdate, SendAttempt, UpdateStatus,
                            VerificationState)


def logged_in(client, user):
    """The test client, signed in as `user` (no password check: force_login)."""
    client.force_login(user)
    return client


def texts(response) -> list[str]:
    """The admin messages (success, warning, error) the request left for the user."""
    return [str(m) for m in get_messages(response.wsgi_request)]


def status_of(update) -> str:
    """The update's state as the database has it now."""
    return ProfileUpdate.objects.get(pk=update.pk).status


def shown(*updates, scope: str = "") -> str:
    """The `shown` field a page posts with a decision: these updates' ids and content as the
    database has them now (decisions.shown_token), as if the page had just been loaded."""
    from updates import decisions

    return decisions.shown_token(ProfileUpdate.objects.filter(pk__in=[u.pk for u in updates]),
                                 scope=scope)


def another_value(field, value):
    """A valid value of a model `field` other than `value`, for tests that change every field of
    a row one by one. A field of a kind not handled here fails the test: say what to change it
    to."""
    from django.db import models
    if field.choices:
        return next(choice for choice, _ in field.choices if choice != value)
    if isinstance(field, models.BooleanField):
        return not value
    if isinstance(field, models.IntegerField):
        return value + 1
    if isinstance(field, models.URLField):
        return "https://another.example.com" if value != "https://another.example.com" else \
            "https://yet-another.example.com"
    if isinstance(field, (models.CharField, models.TextField)):
        return (value or "") + "x"
    raise AssertionError(f"another_value does not know how to change {field.name} ({field})")


def http(method: str, url: str, *, seconds: float = 10.0, **kwargs) -> requests.Response:
    """One HTTP call from a test to a local server (the emulator): a whole-call wall-clock
    deadline (updates/deadlines.py, as the app's own calls have), no redirect followed."""
    kwargs.setdefault("timeout", 5)
    with requests.Session() as session:
        deadlines.mount(session, max_retries=0)
        with deadlines.bounded(time.monotonic() + seconds):
            return session.request(method, url, allow_redirects=False, **kwargs)


class RawAnswers:
    """A server on 127.0.0.1 that answers every request with one status and these exact bytes:
    what no twin in the emulator sends (its answers are well-formed JSON), standing in for an
    Adobe endpoint gone wrong. Used as `with RawAnswers(200, body) as server: ... server.url`;
    stops when the block ends."""

    def __init__(self, status: int, body: bytes) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                outer.requests.append(f"{self.command} {self.path}")
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer  # noqa: N815 - the http.server API

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> "RawAnswers":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def at_once(call, *, count: int = 2, seconds: float = 30.0) -> list[object]:
    """Run `call()` in `count` threads released at the same moment, each on its own database
    connection (closed after): what each returned, or the exception it raised, in the order
    they ended. A test needs django_db(transaction=True) for the threads to see its rows."""
    barrier = threading.Barrier(count)
    outcomes: list[object] = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            outcomes.append(call())
        except Exception as error:  # noqa: BLE001 - judged by the test
            outcomes.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds)
    return outcomes


def seed_history(connection, user, *, count: int, age_days: int, status=UpdateStatus.SENT,
                 verification_state=VerificationState.VERIFIED) -> list[ProfileUpdate]:
    """`count` updates that ended `age_days` ago, each with an attempt, a read and an audit row
    holding its values (straight into the tables: a history, not a workflow)."""
    at = timezone.now() - dt.timedelta(days=age_days)
    updates = ProfileUpdate.objects.bulk_create([ProfileUpdate(
        connection=connection, identity_type="mbox3rdPartyId", identity=f"old-{age_days}-{n}",
        attributes={"loyaltyTier": f"tier-{n % 3}"}, status=status, created_by=user,
        created_at=at, last_edited_by=user, last_edited_at=at, decided_at=at, acknowledged_at=at,
        verification_state=verification_state, verified_at=at) for n in range(count)])
    SendAttempt.objects.bulk_create([SendAttempt(
        update=u, connection=connection, number=1, started_at=at, method="GET", request_bytes=10,
        http_status=200, response_body=f'{{"id": "{u.identity}"}}', outcome="acknowledged")
        for u in updates])
    ProfileRead.objects.bulk_create([ProfileRead(
        update=u, connection=connection, at=at, purpose="verification", outcome="found",
        attributes={"loyaltyTier": {"value": u.attributes["loyaltyTier"], "modifiedAt": "x"}})
        for u in updates])
    AuditEvent.objects.bulk_create([AuditEvent(
        at=at, actor=user, action="staged", update=u, connection=connection,
        changes={"identity": {"before": None, "after": u.identity}}) for u in updates])
    return updates
