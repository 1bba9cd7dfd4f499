"""Send approved updates to Target: the run loop, which ties the sender's parts together.

One run (`send_due`) repeats, per active connection, until nothing is due, the limit is reached
or the time budget is spent:

1. **Claim** a batch of due updates with this run's lease (claims.py).
2. **Reserve** quota for the batch (quota.py), which counts the requests in the rolling window
   and in the day's usage at once. A connection whose window is full claims nothing (its due
   updates count as deferred by quota); claims another worker's reservation left no room for go
   straight back to ``approved`` without an attempt, also deferred. Either way the connection
   rests for the rest of the run, and sending resumes by itself once the window frees.
3. **Send** concurrently over one pooled session (delivery.py). Requests are no longer started
   once the lease or the run's time budget would be at risk; those claims go back to
   ``approved`` and their reservation is returned.
4. **Record** the answers, the states the retry policy decides (retry_policy.py), audit rows,
   daily usage and the run's totals, in one transaction per batch (bookkeeping.py).

Consecutive batches overlap: the next batch is claimed and handed to the sender threads before
the current one is recorded, so sending never pauses for bookkeeping. The connection is read
again before every batch: deactivating it, or lowering its quota, takes effect for a run that is
already going (within one batch).

Delivery is at least once: an update whose worker died after sending is sent again when its
lease runs out (Target's update is idempotent for the same values).

Never logged: profile values, URLs with their query, bodies, tokens.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable

import requests
from django.core.exceptions import ValidationError
from django.utils import timezone

from . import bookkeeping, claims, credentials, delivery, quota, target, verification, workflow
from .conf import setting
from .models import ProfileUpdate, SendRun, TargetConnection
from .retry_policy import LAST_ERROR_CHARS, RetryPolicy

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[SendRun], None]


def request_for(update: ProfileUpdate, *, token: str | None = None) -> target.ProfileRequest:
    """The exact request for an update. Without `token`, as a preview or dry run shows it: the
    token's place is held (credentials.preview_token), and no token is obtained for it."""
    if token is None:
        token = credentials.preview_token(update.connection)
    return target.request_for(update, token=token)


def retry_policy() -> RetryPolicy:
    return RetryPolicy(
        max_attempts=setting("MAX_ATTEMPTS"),
        max_unexpected_answers=setting("MAX_UNEXPECTED_ANSWERS"),
        backoff_base_seconds=setting("BACKOFF_BASE_SECONDS"),
        backoff_max_seconds=setting("BACKOFF_MAX_SECONDS"),
    )


def backoff(*, attempt: int, retry_after: float | None = None,
            rng: random.Random | None = None) -> dt.timedelta:
    """Delay before attempt `attempt + 1` under the configured retry policy."""
    return retry_policy().backoff(attempt=attempt, retry_after=retry_after, rng=rng)


def make_session(*, concurrency: int | None = None) -> requests.Session:
    """A Session whose connection pool fits the concurrency; no retries, no cookies."""
    return delivery.make_session(pool_size=concurrency or setting("SEND_CONCURRENCY"))


# --- what would be sent ----------------------------------------------------------------------

@dataclass(frozen=True)
class PlannedRequest:
    """The exact request the sender would make for one update and its quota cost, or why no
    single request can carry it: the admin's preview, `send_updates --dry-run` and the
    notebook's preview all show this."""

    update: ProfileUpdate
    request: target.ProfileRequest | None  # None when the update cannot be sent (see problem)
    quota_cost: int
    problem: str = ""

    @property
    def method(self) -> str:
        """GET, POST, or "" when no single request can carry the update."""
        return self.request.method if self.request is not None else ""

    @property
    def size_bytes(self) -> int:
        """What counts against the method's limit: the URL for GET, the body for POST."""
        return self.request.size if self.request is not None else 0

    @property
    def limit_bytes(self) -> int:
        return target.GET_LIMIT_BYTES if self.method == "GET" else target.POST_LIMIT_BYTES


def planned(update: ProfileUpdate, *, token: str | None = None) -> PlannedRequest:
    """The request for `update` as the sender builds it, or the reason it cannot be built.
    Without `token`, as a preview shows it (request_for)."""
    try:
        return PlannedRequest(update, request_for(update, token=token), target.REQUEST_QUOTA_COST)
    except (target.RequestTooLarge, ValueError) as error:
        return PlannedRequest(update, None, 0, str(error))


def plan_due(
    *, connection: TargetConnection | None = None, limit: int | None = None,
    now: dt.datetime | None = None,
) -> list[PlannedRequest]:
    """What `send_due` would send now, in order, without changing anything (for --dry-run)."""
    now = now or timezone.now()
    plan: list[PlannedRequest] = []
    for conn in _active_connections(connection):
        remaining = None if limit is None else limit - len(plan)
        if remaining is not None and remaining <= 0:
            break
        due = claims.due(now=now, connection_id=conn.pk).order_by("id")
        for update in due[:remaining] if remaining is not None else due.iterator():
            update.connection = conn
            plan.append(planned(update))
    return plan


def plan_cost(plan: list[PlannedRequest], *, now: dt.datetime | None = None
              ) -> list[tuple[TargetConnection, quota.QuotaCost]]:
    """The plan's quota cost per connection (in the order the plan names them) against what
    each connection's rolling window leaves now (quota.window_picture)."""
    connections: dict[int, TargetConnection] = {}
    costs: dict[int, int] = {}
    for item in plan:
        connections.setdefault(item.update.connection_id, item.update.connection)
        costs[item.update.connection_id] = costs.get(item.update.connection_id, 0) + item.quota_cost
    return [(conn, quota.window_picture(connection=conn, now=now).cost(costs[pk]))
            for pk, conn in connections.items()]


def _active_connections(connection: TargetConnection | None) -> list[TargetConnection]:
    connections = TargetConnection.objects.filter(active=True).order_by("id")
    if connection is not None:
        connections = connections.filter(pk=connection.pk)
    return list(connections)


# --- the run -----------------------------------------------------------------------------------

def send_due(
    *,
    connection: TargetConnection | None = None,
    limit: int | None = None,
    worker: str | None = None,
    trigger: str = SendRun.Trigger.OTHER,
    now: dt.datetime | None = None,
    time_budget: float | None = None,
    progress: ProgressCallback | None = None,
    session: requests.Session | None = None,
    by=None,
) -> SendRun:
    """Send what is due; returns the SendRun with its totals.

    `by`: the person starting the run (the notebook, a command given --user), refused unless
    they may (workflow.require_run_starter); None for the schedule, which acts as nobody.

    `session`: a session to send with instead of the run's own (delivery.make_session). Each
    request is prepared apart from it (delivery.send_one): its headers, adapters, `verify`,
    `cert` and `proxies` count; its cookies, auth, params and hooks do not.

    `now` fixes the clock for the whole run (tests move time with it instead of sleeping).
    `time_budget` (seconds): no new batch is claimed, and no new request started, after it.
    """
    if by is not None:
        workflow.require_run_starter(by, run=workflow.SEND_RUN)
    run = _Run(worker=worker, trigger=trigger, now=now, time_budget=time_budget,
               progress=progress, session=session)
    run.execute(connection=connection, limit=limit)
    return run.run


class _Clock:
    def __init__(self, fixed: dt.datetime | None) -> None:
        self.fixed = fixed

    def __call__(self) -> dt.datetime:
        return self.fixed or timezone.now()


@dataclass
class _InFlight:
    """A claimed batch whose requests were handed to the senders and are not yet recorded."""

    conn: TargetConnection
    claimed: int
    reserved_at: dt.datetime
    token: str  # the bearer token its requests carry (credentials.profile_token)
    sendable: list[tuple[ProfileUpdate, target.ProfileRequest]]
    unsendable: list[tuple[ProfileUpdate, str]]
    futures: list[Future]


class _Run:
    """One run: its SendRun row, lease owner, clock, deadline and sender threads."""

    def __init__(self, *, worker: str | None, trigger: str, now: dt.datetime | None,
                 time_budget: float | None, progress: ProgressCallback | None,
                 session: requests.Session | None) -> None:
        self.clock = _Clock(now)
        self.owner = claims.lease_owner(worker)
        self.trigger = trigger
        self.run = SendRun.objects.create(trigger=trigger, worker=self.owner,
                                          started_at=self.clock())
        self.deadline = None if time_budget is None else time.monotonic() + time_budget
        self.progress = progress
        self.policy = retry_policy()
        self.own_session = session is None
        self.senders = delivery.Senders(
            session=session or make_session(), concurrency=setting("SEND_CONCURRENCY"),
            timeout=(setting("CONNECT_TIMEOUT"), setting("READ_TIMEOUT")), clock=self.clock)
        self.in_flight: _InFlight | None = None
        self.connections: list[TargetConnection] = []  # their secrets are redacted from run.error

    def execute(self, *, connection: TargetConnection | None, limit: int | None) -> None:
        try:
            quota.prune(now=self.clock())
            self.connection_code = connection.client_code if connection is not None else None
            self.connections = _active_connections(connection)
            self._loop(self.connections, limit)
        except BaseException as error:
            self.run.error = target.error_text(
                error,
                # No query here: the database may be what failed.
                [secret for conn in self.connections for secret in conn.secrets()]
            )[:LAST_ERROR_CHARS]
            if self.in_flight is not None:
                # Not recorded: its requests not yet started are cancelled below, and its claims
                # are sent again when their lease runs out. It was claimed all the same.
                self.run.claimed += self.in_flight.claimed
            raise
        finally:
            self._close()

    def _loop(self, connections: list[TargetConnection], remaining: int | None) -> None:
        # Two batches overlap: while one batch's requests are on the wire, the previous batch is
        # recorded and the next one claimed, so the senders neither wait for the database nor
        # idle through a batch's last, slowest requests (bench/send_throughput.py measures it).
        resting: set[int] = set()  # nothing due, quota window full, or deactivated
        worked = True
        while worked:
            worked = False
            for conn in connections:
                if conn.pk in resting:
                    continue
                if remaining is not None and remaining <= 0 or self._out_of_time():
                    break
                claimed, keep_going, started = self._start_batch(conn, remaining)
                previous, self.in_flight = self.in_flight, started
                if previous is not None:
                    self._finish(previous, resting)
                if remaining is not None:
                    remaining -= claimed
                if not keep_going:
                    resting.add(conn.pk)
                worked = worked or claimed > 0
        if self.in_flight is not None:
            last, self.in_flight = self.in_flight, None
            self._finish(last, resting)

    def _out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _finish(self, batch: _InFlight, resting: set[int]) -> None:
        if not self._finish_batch(batch):
            resting.add(batch.conn.pk)
        if self.progress:
            self.progress(self.run)

    def _start_batch(self, conn: TargetConnection, remaining: int | None
                     ) -> tuple[int, bool, _InFlight | None]:
        """Claim and reserve one batch and start sending it; returns (claimed, worth another
        batch, the batch in flight). `_finish_batch` waits for its answers and records them."""
        conn = _current(conn)
        if conn is None:  # deactivated meanwhile: nothing more is claimed for it
            return 0, False, None
        token = self._token(conn)
        if token is None:  # no token to be had now: nothing is claimed, the connection rests
            return 0, False, None
        size = setting("SEND_BATCH_SIZE") if remaining is None else min(setting("SEND_BATCH_SIZE"),
                                                                     remaining)
        room = quota.headroom(connection=conn, now=self.clock())
        if room <= 0:
            # Counted without claiming: a full window must not churn claims and audit rows.
            waiting = claims.count_due(now=self.clock(), connection_id=conn.pk, at_most=size)
            self.run.deferred_by_quota += waiting
            if waiting:
                self.run.save(update_fields=["deferred_by_quota"])
            return 0, False, None
        lease_seconds = setting("LEASE_SECONDS")
        claimed_at = time.monotonic()
        updates = claims.claim(conn=conn, owner=self.owner, size=min(size, room),
                               now=self.clock(),
                               lease_until=self.clock() + dt.timedelta(seconds=lease_seconds))
        if not updates:
            return 0, False, None
        claimed = len(updates)  # added to run.claimed with the batch's outcomes, in _finish_batch
        # Keeps Target's prior values; skip-unchanged ends some as "unchanged" before quota is taken.
        updates = self._before_send(conn, updates)
        reserved_at = self.clock()
        updates, keep_going = self._reserve(conn, updates, reserved_at)
        sendable, unsendable = _prepare(updates, token)
        futures = self.senders.submit(sendable, claims.dispatch_deadline(
            claimed_at=claimed_at, lease_seconds=lease_seconds, run_deadline=self.deadline,
            worst_request_seconds=setting("CONNECT_TIMEOUT") + setting("READ_TIMEOUT")))
        return claimed, keep_going, _InFlight(conn, claimed, reserved_at, token, sendable,
                                               unsendable, futures)

    def _token(self, conn: TargetConnection) -> str | None:
        """The connection's bearer token for one batch, renewed first when due; None when it
        cannot be obtained (credentials.py recorded why, for the connection page and the alert)."""
        try:
            return credentials.profile_token(conn)
        except ValidationError as error:
            logger.warning("send run %s: no token for connection %s (%s); it sends nothing "
                           "this run", self.run.pk, conn.client_code, error.code)
            return None

    def _before_send(self, conn: TargetConnection, updates: list[ProfileUpdate]
                     ) -> list[ProfileUpdate]:
        """verification.before_send, isolated: if it fails (what Target returned, or our own
        bug), the batch is sent whole — never left in ``sending`` — and each update's timeline
        says so. Only the error's type is kept: its message may quote values."""
        try:
            return verification.before_send(updates=updates, connection=conn, owner=self.owner,
                                            now=self.clock(), until=self.deadline)
        except Exception as error:  # noqa: BLE001 - one bad read must not stop the run
            logger.warning("send run %s: reading before sending failed (%s); the batch is sent "
                           "whole", self.run.pk, type(error).__name__)
            return bookkeeping.record_before_send_failure(
                updates, owner=self.owner, conn=conn, error=error, now=self.clock())

    def _reserve(self, conn: TargetConnection, updates: list[ProfileUpdate],
                 reserved_at: dt.datetime) -> tuple[list[ProfileUpdate], bool]:
        """Reserve quota for the claimed updates; those it gives no room for are released."""
        granted = quota.reserve(connection=conn, wanted=len(updates), now=reserved_at)
        if granted >= len(updates):
            return updates, True
        # Another worker took the rest of the window meanwhile (or the quota was lowered).
        surplus = updates[granted:]
        claims.release(surplus, owner=self.owner, now=self.clock(), reason="quota window full")
        self.run.deferred_by_quota += len(surplus)
        return updates[:granted], False

    def _finish_batch(self, batch: _InFlight) -> bool:
        """Wait for a batch's answers, hand back what was not sent, record the rest; returns
        whether its connection is worth another batch."""
        conn, keep_going = batch.conn, True
        self.run.claimed += batch.claimed  # the run's totals move together, one batch at a time
        results = self._retry_refused(batch, [future.result() for future in batch.futures])
        sent = [r for r in results if r is not None]
        not_started = [u for (u, _), r in zip(batch.sendable, results) if r is None]
        if not_started:
            claims.release(not_started, owner=self.owner, now=self.clock(),
                           reason="time ran out (run budget or lease) before it was sent")
            keep_going = False
        unused = len(not_started) + len(batch.unsendable)
        if unused:
            quota.release(connection=conn, count=unused, now=batch.reserved_at)
        bookkeeping.record_batch(run=self.run, owner=self.owner, conn=conn, sent=sent,
                                 unsendable=batch.unsendable, policy=self.policy,
                                 now=self.clock())
        return keep_going

    def _retry_refused(self, batch: _InFlight, results: list[delivery.Sent | None]
                       ) -> list[delivery.Sent | None]:
        """Target refused the token (401/403): fetch it once more and, if there is another, send
        those requests once more with it (quota reserved for them) before they count as refused."""
        refused = [i for i, sent in enumerate(results)
                   if sent is not None and credentials.is_refusal(sent.answer.http_status)]
        if not refused:
            return results
        token = credentials.token_refused(batch.conn, batch.token)
        if not token:
            return results
        reserved_at = self.clock()
        granted = quota.reserve(connection=batch.conn, wanted=len(refused), now=reserved_at)
        again = [(batch.sendable[i][0], request_for(batch.sendable[i][0], token=token))
                 for i in refused[:granted]]
        futures = self.senders.submit(again, math.inf if self.deadline is None else self.deadline)
        retried = [future.result() for future in futures]
        unused = sum(1 for sent in retried if sent is None)
        if unused:
            quota.release(connection=batch.conn, count=unused, now=reserved_at)
        results = list(results)
        for i, sent in zip(refused, retried):
            if sent is not None:  # not started (out of time): the refused answer stands
                results[i] = sent
        return results

    def _close(self) -> None:
        run = self.run
        run.finished_at = self.clock()
        run.save()
        self.senders.shutdown()
        if self.own_session:
            self.senders.session.close()
        # Every minute on a quiet system: say nothing unless something happened.
        logger.log(
            logging.INFO if run.claimed or run.deferred_by_quota or run.error else logging.DEBUG,
            "send run %s (%s): claimed %d, requests %d, acknowledged %d, retried %d, failed %d, "
            "deferred by quota %d", run.pk, self.trigger, run.claimed, run.requests_sent,
            run.acknowledged, run.retried, run.failed, run.deferred_by_quota,
            extra={"run_id": run.pk, "connection": getattr(self, "connection_code", None)},
        )


def _current(conn: TargetConnection) -> TargetConnection | None:
    """The connection as it is now (active, quota, URL, token), or None if deactivated."""
    return TargetConnection.objects.filter(pk=conn.pk, active=True).first()


def _prepare(updates: list[ProfileUpdate], token: str
             ) -> tuple[list[tuple[ProfileUpdate, target.ProfileRequest]],
                        list[tuple[ProfileUpdate, str]]]:
    """Split claimed updates into (update, request) to send and (update, problem) to fail."""
    sendable, unsendable = [], []
    for update in updates:
        problem = _why_not_sendable(update)
        if not problem:
            plan = planned(update, token=token)
            if plan.request is not None:
                sendable.append((update, plan.request))
                continue
            problem = plan.problem
        unsendable.append((update, problem))
    return sendable, unsendable


def _why_not_sendable(update: ProfileUpdate) -> str:
    # The four-eyes guarantee, checked once more at the last moment: what goes out is what was
    # approved. (Updates written straight into the database without an approval carry no hash.)
    if not update.matches_approval(unapproved=True):
        return "The content differs from what was approved; it was not sent."
    return ""
