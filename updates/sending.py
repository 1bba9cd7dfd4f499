"""Send approved updates to Target: claim with a lease, reserve quota, send, record the outcome.

One run (`send_due`) repeats, per active connection, until nothing is due, the limit is reached
or the time budget is spent:

1. **Claim** a batch of due updates — approved, earliest send time and next-attempt time reached,
   or `sending` with a lease that ran out (a crashed worker's) — ordered by id. On PostgreSQL the
   rows are picked with ``FOR NO KEY UPDATE SKIP LOCKED``, so workers on several machines take
   disjoint batches; on SQLite the IMMEDIATE transaction mode serializes claims. The batch is
   marked ``sending`` with this run's lease in one UPDATE, with bulk audit rows.
2. **Reserve** quota for the batch (quota.py). A connection whose window is full claims nothing
   (its due updates count as deferred by quota); claims another worker's reservation left no room
   for go straight back to ``approved`` without an attempt, also deferred. Either way the
   connection rests for the rest of the run, and sending resumes by itself once the window frees.
3. **Send** concurrently over one pooled ``requests.Session`` (connect/read timeouts, no
   redirects, no cookies). Requests are no longer started once the lease or the run's time budget
   would be at risk; those claims go back to ``approved`` and their reservation is returned.
4. **Record**, in one transaction and a constant number of queries per batch: the SendAttempt
   rows, the new states (acknowledged → sent; transient → approved with a backed-off next-attempt
   time; unexpected 2xx → retried a bounded number of times; permanent or budget spent → failed),
   audit rows, daily usage (requests made, acknowledgments, updates that ended failed) and the
   run's totals. Only rows still leased to this run are touched: if a lease ran out and another
   worker took the update, that worker owns its state now (this run's attempt is still recorded).

Consecutive batches overlap: the next batch is claimed and queued behind the current one's
requests before the current one is recorded, so sending never pauses for bookkeeping.

Delivery is at least once: an update whose worker died after sending is sent again when its
lease runs out (Target's update is idempotent for the same values).

Never logged: profile values, URLs with their query, bodies, tokens.
"""

from __future__ import annotations

import datetime as dt
import http.cookiejar
import logging
import os
import random
import socket
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import requests
from django.db import connection as db, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from requests.adapters import HTTPAdapter

from . import quota, target, verification
from .conf import setting
from .models import AuditEvent, ProfileUpdate, SendAttempt, SendRun, TargetConnection, UpdateStatus

S = UpdateStatus
Outcome = SendAttempt.Outcome
logger = logging.getLogger(__name__)

USER_AGENT = "ProfileOps (Single Profile Update sender)"
QUOTA_COST_PER_UPDATE = 1  # one update is one request, whichever the method
RESPONSE_READ_LIMIT_BYTES = 64 * 1024  # a misbehaving server must not fill our memory
RETRY_AFTER_CAP = dt.timedelta(hours=24)
LAST_ERROR_CHARS = 1000
# Requests are started only while the lease still covers a full request plus this margin.
LEASE_SAFETY_SECONDS = 5.0

ProgressCallback = Callable[[SendRun], None]


def _conf(name: str):
    return setting(name)


# --- what would be sent ----------------------------------------------------------------------

def request_for(update: ProfileUpdate) -> target.ProfileRequest:
    """The exact request for `update` (raises target.RequestTooLarge if none can carry it)."""
    connection = update.connection
    return target.build_request(
        base_url=connection.effective_base_url,
        client_code=connection.client_code,
        identity_type=update.identity_type,
        identity=update.identity,
        attributes=update.attributes,
        token=connection.bearer_token,
    )


@dataclass(frozen=True)
class RequestSummary:
    """What the approval queue shows for a pending update: method, size, quota cost."""

    method: str  # "GET", "POST" or "" when no request can carry it
    size_bytes: int  # bytes counted against the method's limit (URL for GET, body for POST)
    quota_cost: int
    problem: str = ""


def request_summary(update: ProfileUpdate) -> RequestSummary:
    try:
        request = request_for(update)
    except (target.RequestTooLarge, ValueError) as error:
        return RequestSummary("", 0, 0, str(error))
    return RequestSummary(request.method, request.size, QUOTA_COST_PER_UPDATE)


@dataclass(frozen=True)
class PlannedRequest:
    update: ProfileUpdate
    request: target.ProfileRequest | None  # None when the update cannot be sent (see problem)
    quota_cost: int
    problem: str = ""


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
        due = _due(now=now, connection_id=conn.pk).order_by("id")
        for update in due[:remaining] if remaining is not None else due.iterator():
            update.connection = conn
            try:
                plan.append(PlannedRequest(update, request_for(update), QUOTA_COST_PER_UPDATE))
            except (target.RequestTooLarge, ValueError) as error:
                plan.append(PlannedRequest(update, None, 0, str(error)))
    return plan


# --- the run -----------------------------------------------------------------------------------

def make_session(*, concurrency: int | None = None) -> requests.Session:
    """A Session whose connection pool fits the concurrency; no retries, no cookies."""
    size = max(1, concurrency or _conf("SEND_CONCURRENCY"))
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    # Target may set visitor cookies; one visitor's cookie must never ride along with the next.
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return session


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
) -> SendRun:
    """Send what is due; returns the SendRun with its totals.

    `now` fixes the clock for the whole run (tests move time with it instead of sleeping).
    `time_budget` (seconds): no new batch is claimed, and no new request started, after it.
    The returned run also carries `requests_sent` (requests made, not stored on the row).
    """
    clock = _Clock(now)
    owner = _lease_owner(worker)
    run = SendRun.objects.create(trigger=trigger, worker=owner, started_at=clock())
    run.requests_sent = 0
    deadline = None if time_budget is None else time.monotonic() + time_budget
    own_session = session is None
    context = _RunContext(
        run=run, owner=owner, clock=clock, deadline=deadline,
        session=session or make_session(), executor=None,
    )
    # Two batches overlap: while one batch's requests are on the wire, the previous batch is
    # recorded and the next one claimed, so the senders neither wait for the database nor idle
    # through a batch's last, slowest requests (bench/send_throughput.py measures it).
    in_flight: _InFlight | None = None
    try:
        quota.prune(now=clock())
        connections = _active_connections(connection)
        resting: set[int] = set()  # nothing due, or quota window full: done for this run
        remaining = limit

        def finish(batch: _InFlight) -> None:
            if not _finish_batch(context, batch):
                resting.add(batch.conn.pk)
            if progress:
                progress(run)

        while True:
            worked = False
            for conn in connections:
                if conn.pk in resting:
                    continue
                if remaining is not None and remaining <= 0:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                claimed, keep_going, started = _start_batch(context, conn, remaining)
                previous, in_flight = in_flight, started
                if previous is not None:
                    finish(previous)
                if remaining is not None:
                    remaining -= claimed
                if not keep_going:
                    resting.add(conn.pk)
                if claimed:
                    worked = True
            if not worked:
                break
        if in_flight is not None:
            last, in_flight = in_flight, None
            finish(last)
    except BaseException as error:
        run.error = f"{type(error).__name__}: {target._redact(str(error))}"[:LAST_ERROR_CHARS]
        if in_flight is not None:
            # Not recorded: its requests not yet started are cancelled below, and its claims are
            # sent again when their lease runs out. It was claimed all the same.
            run.claimed += in_flight.claimed
        raise
    finally:
        run.finished_at = clock()
        run.save()
        if context.executor is not None:
            context.executor.shutdown(wait=True, cancel_futures=True)
        if own_session:
            context.session.close()
        # Every minute on a quiet system: say nothing unless something happened.
        logger.log(
            logging.INFO if run.claimed or run.deferred_by_quota or run.error else logging.DEBUG,
            "send run %s (%s): claimed %d, requests %d, acknowledged %d, retried %d, failed %d, "
            "deferred by quota %d", run.pk, trigger, run.claimed, run.requests_sent,
            run.acknowledged, run.retried, run.failed, run.deferred_by_quota,
        )
    return run


class _Clock:
    def __init__(self, fixed: dt.datetime | None) -> None:
        self.fixed = fixed

    def __call__(self) -> dt.datetime:
        return self.fixed or timezone.now()


@dataclass
class _RunContext:
    run: SendRun
    owner: str
    clock: _Clock
    deadline: float | None
    session: requests.Session
    executor: ThreadPoolExecutor | None


def _lease_owner(worker: str | None) -> str:
    """Unique per run, so two runs in one process (threads) never share a lease."""
    base = worker or f"{socket.gethostname()}:{os.getpid()}"
    return f"{base[:55]}/{uuid.uuid4().hex[:8]}"


def _active_connections(connection: TargetConnection | None) -> list[TargetConnection]:
    connections = TargetConnection.objects.filter(active=True).order_by("id")
    if connection is not None:
        connections = connections.filter(pk=connection.pk)
    return list(connections)


def _due_conditions(now: dt.datetime) -> tuple[Q, Q]:
    approved_and_due = (
        Q(status=S.APPROVED)
        & (Q(not_before__isnull=True) | Q(not_before__lte=now))
        & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
    )
    lease_ran_out = Q(status=S.SENDING, lease_expires_at__lt=now)
    return approved_and_due, lease_ran_out


def _due(*, now: dt.datetime, connection_id: int) -> QuerySet[ProfileUpdate]:
    approved_and_due, lease_ran_out = _due_conditions(now)
    return ProfileUpdate.objects.filter(approved_and_due | lease_ran_out,
                                        connection_id=connection_id)


def _due_parts(*, now: dt.datetime, connection_id: int) -> list[QuerySet[ProfileUpdate]]:
    """`_due` as two queries, each served in id order by the (connection, status, -id) index.
    The claim uses these: with the OR of `_due`, SQLite walks every row of the connection —
    0.5–1.5 s per claim with a million sent updates in the history (bench/quota_check.py)."""
    return [ProfileUpdate.objects.filter(condition, connection_id=connection_id)
            for condition in _due_conditions(now)]


def _locking(qs: QuerySet, **options) -> QuerySet:
    """Row locks where the database has them (PostgreSQL); SQLite's IMMEDIATE mode serializes."""
    if not db.features.has_select_for_update:
        return qs
    if options.get("skip_locked") and not db.features.has_select_for_update_skip_locked:
        options.pop("skip_locked")
    if not db.features.has_select_for_no_key_update:
        options.pop("no_key", None)
    return qs.select_for_update(**options)


# --- one batch -------------------------------------------------------------------------------

@dataclass
class _Sent:
    update: ProfileUpdate
    method: str
    size: int
    started_at: dt.datetime
    answer: target.Answer
    latency_ms: int | None


@dataclass
class _Decision:
    update: ProfileUpdate
    to_status: str
    action: str
    comment: str = ""
    changes: dict = field(default_factory=dict)


@dataclass
class _InFlight:
    """A claimed batch whose requests were handed to the senders and are not yet recorded."""

    conn: TargetConnection
    claimed: int
    reserved_at: dt.datetime
    sendable: list[tuple[ProfileUpdate, target.ProfileRequest]]
    unsendable: list[tuple[ProfileUpdate, str]]
    futures: list[Future]


def _start_batch(ctx: _RunContext, conn: TargetConnection, remaining: int | None
                 ) -> tuple[int, bool, _InFlight | None]:
    """Claim and reserve one batch and start sending it; returns (claimed, worth another batch,
    the batch in flight). `_finish_batch` waits for its answers and records them."""
    run, clock = ctx.run, ctx.clock
    size = _conf("SEND_BATCH_SIZE")
    if remaining is not None:
        size = min(size, remaining)
    room = quota.headroom(connection=conn, now=clock())
    if room <= 0:
        # Counted without claiming: a full window must not churn claims and audit rows.
        waiting = min(size, sum(part[:size].count()
                                for part in _due_parts(now=clock(), connection_id=conn.pk)))
        run.deferred_by_quota += waiting
        if waiting:
            run.save(update_fields=["deferred_by_quota"])
        return 0, False, None

    lease_seconds = _conf("LEASE_SECONDS")
    claimed_at = time.monotonic()
    updates = _claim(conn=conn, owner=ctx.owner, size=min(size, room), now=clock(),
                     lease_until=clock() + dt.timedelta(seconds=lease_seconds))
    if not updates:
        return 0, False, None
    claimed = len(updates)  # added to run.claimed with the batch's outcomes, in _finish_batch
    # Keeps Target's prior values; skip-unchanged ends some as "unchanged" before quota is taken.
    updates = verification.before_send(updates=updates, connection=conn, owner=ctx.owner,
                                       now=clock())

    reserved_at = clock()
    granted = quota.reserve(connection=conn, wanted=len(updates), now=reserved_at)
    keep_going = True
    if granted < len(updates):  # another worker took the rest of the window meanwhile
        surplus = updates[granted:]
        updates = updates[:granted]
        _release(surplus, owner=ctx.owner, now=clock(), reason="quota window full")
        run.deferred_by_quota += len(surplus)
        keep_going = False

    sendable: list[tuple[ProfileUpdate, target.ProfileRequest]] = []
    unsendable: list[tuple[ProfileUpdate, str]] = []
    for update in updates:
        problem = _why_not_sendable(update)
        request = None
        if not problem:
            try:
                request = request_for(update)
            except (target.RequestTooLarge, ValueError) as error:
                problem = str(error)
        if problem:
            unsendable.append((update, problem))
        else:
            sendable.append((update, request))

    dispatch_deadline = _dispatch_deadline(claimed_at, lease_seconds, ctx.deadline)
    futures = _send_all(ctx, sendable, dispatch_deadline)
    return claimed, keep_going, _InFlight(conn, claimed, reserved_at, sendable, unsendable,
                                           futures)


def _finish_batch(ctx: _RunContext, batch: _InFlight) -> bool:
    """Wait for a batch's answers, hand back what was not sent, record the rest; returns
    whether its connection is worth another batch."""
    conn, keep_going = batch.conn, True
    ctx.run.claimed += batch.claimed  # the run's totals move together, one recorded batch at a time
    results = [future.result() for future in batch.futures]
    sent = [r for r in results if r is not None]
    not_started = [u for (u, _), r in zip(batch.sendable, results) if r is None]
    if not_started:
        _release(not_started, owner=ctx.owner, now=ctx.clock(),
                 reason="time ran out (run budget or lease) before it was sent")
        keep_going = False
    unused = len(not_started) + len(batch.unsendable)
    if unused:
        quota.release(connection=conn, count=unused, now=batch.reserved_at)

    _record(ctx, conn, sent, batch.unsendable)
    ctx.run.requests_sent += len(sent)
    return keep_going


def _why_not_sendable(update: ProfileUpdate) -> str:
    # The four-eyes guarantee, checked once more at the last moment: what goes out is what was
    # approved. (Updates written straight into the database without an approval carry no hash.)
    if update.approved_hash and update.approved_hash != update.content_hash:
        return "The content differs from what was approved; it was not sent."
    return ""


def _dispatch_deadline(claimed_at: float, lease_seconds: float, run_deadline: float | None
                       ) -> float:
    """Start no request that could still be running when the lease ends (or the run's budget)."""
    worst_request = _conf("CONNECT_TIMEOUT") + _conf("READ_TIMEOUT") + LEASE_SAFETY_SECONDS
    lease_bound = claimed_at + max(lease_seconds - worst_request, lease_seconds / 2)
    return lease_bound if run_deadline is None else min(lease_bound, run_deadline)


def _claim(*, conn: TargetConnection, owner: str, size: int, now: dt.datetime,
           lease_until: dt.datetime) -> list[ProfileUpdate]:
    with transaction.atomic():
        # The first `size` due rows by id: the first `size` of each part, merged.
        picked = sorted(
            row
            for part in _due_parts(now=now, connection_id=conn.pk)
            for row in _locking(part, skip_locked=True, no_key=True)
            .order_by("id").values_list("id", "status", "lease_owner")[:size]
        )[:size]
        if not picked:
            return []
        ids = [row[0] for row in picked]
        ProfileUpdate.objects.filter(id__in=ids).update(
            status=S.SENDING, lease_owner=owner, lease_expires_at=lease_until)
        AuditEvent.objects.bulk_create([
            AuditEvent(
                at=now, actor=None, update_id=update_id, connection_id=conn.pk,
                action="claimed" if status == S.APPROVED else "reclaimed",
                from_status=status, to_status=S.SENDING,
                comment=(f"Lease of {previous_owner or 'a worker'} ran out; claimed again."
                         if status != S.APPROVED else ""),
            )
            for update_id, status, previous_owner in picked
        ])
        updates = list(ProfileUpdate.objects.filter(id__in=ids).order_by("id"))
    for update in updates:
        update.connection = conn
    return updates


def _release(updates: list[ProfileUpdate], *, owner: str, now: dt.datetime, reason: str) -> None:
    """Claims that were not sent go back to approved, without an attempt."""
    ids = [u.pk for u in updates]
    with transaction.atomic():
        mine = list(
            _locking(ProfileUpdate.objects.filter(id__in=ids, lease_owner=owner, status=S.SENDING),
                     no_key=True).order_by("id").values_list("id", flat=True)
        )
        ProfileUpdate.objects.filter(id__in=mine).update(
            status=S.APPROVED, lease_owner="", lease_expires_at=None)
        AuditEvent.objects.bulk_create([
            AuditEvent(at=now, actor=None, update_id=update_id,
                       connection_id=updates[0].connection_id, action="released",
                       from_status=S.SENDING, to_status=S.APPROVED,
                       comment=f"Not sent: {reason}.")
            for update_id in mine
        ])


# --- sending -----------------------------------------------------------------------------------

def _send_all(ctx: _RunContext, batch: list[tuple[ProfileUpdate, target.ProfileRequest]],
              dispatch_deadline: float) -> list[Future]:
    """Hand the batch to the sender threads; each future gives a _Sent, or None if not started."""
    if not batch:
        return []
    if ctx.executor is None:
        ctx.executor = ThreadPoolExecutor(
            max_workers=max(1, _conf("SEND_CONCURRENCY")), thread_name_prefix="profileops-send")
    timeout = (_conf("CONNECT_TIMEOUT"), _conf("READ_TIMEOUT"))

    def send(item: tuple[ProfileUpdate, target.ProfileRequest]) -> _Sent | None:
        update, request = item
        if time.monotonic() >= dispatch_deadline:
            return None
        return _send_one(ctx.session, update, request, timeout, ctx.clock)

    return [ctx.executor.submit(send, item) for item in batch]


def _send_one(session: requests.Session, update: ProfileUpdate, request: target.ProfileRequest,
              timeout: tuple[float, float], clock: _Clock) -> _Sent:
    started_at = clock()
    began = time.perf_counter()
    try:
        with session.request(
            request.method, request.url, data=request.body, headers=request.headers,
            timeout=timeout, allow_redirects=False, stream=True,
        ) as response:
            body = _read_limited(response)
            answer = target.read_answer(
                response.status_code, body, response.headers.get("Retry-After"))
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
    latency_ms = int((time.perf_counter() - began) * 1000)
    return _Sent(update, request.method, request.size, started_at, answer, latency_ms)


def _read_limited(response: requests.Response) -> str:
    chunks, size = [], 0
    for chunk in response.iter_content(16 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size >= RESPONSE_READ_LIMIT_BYTES:
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


# --- bookkeeping -------------------------------------------------------------------------------

def backoff(*, attempt: int, retry_after: float | None = None,
            rng: random.Random | None = None) -> dt.timedelta:
    """Delay before attempt `attempt + 1`: exponential with jitter, or Retry-After if larger."""
    base, ceiling = _conf("BACKOFF_BASE_SECONDS"), _conf("BACKOFF_MAX_SECONDS")
    step = min(ceiling, base * (2 ** max(0, attempt - 1)))
    # "Equal jitter": at least half the step, so retries never bunch up at zero.
    delay = step / 2 + (rng or random).uniform(0, step / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, RETRY_AFTER_CAP.total_seconds()))
    return dt.timedelta(seconds=delay)


def _record(ctx: _RunContext, conn: TargetConnection, sent: list[_Sent],
            unsendable: list[tuple[ProfileUpdate, str]]) -> None:
    run, now = ctx.run, ctx.clock()
    max_attempts = _conf("MAX_ATTEMPTS")
    max_unexpected = _conf("MAX_UNEXPECTED_ANSWERS")
    ids = sorted({s.update.pk for s in sent} | {u.pk for u, _ in unsendable})
    if not ids:
        run.save(update_fields=["claimed", "deferred_by_quota"])
        return
    with transaction.atomic():
        # Lock before inserting attempts (which reference the rows), in id order: no deadlocks.
        mine = set(
            _locking(ProfileUpdate.objects.filter(id__in=ids, lease_owner=ctx.owner,
                                                  status=S.SENDING), no_key=True)
            .order_by("id").values_list("id", flat=True)
        )
        SendAttempt.objects.bulk_create([
            SendAttempt(
                update_id=s.update.pk, connection_id=conn.pk, number=s.update.attempts_total + 1,
                started_at=s.started_at, method=s.method, request_bytes=s.size,
                http_status=s.answer.http_status, response_body=s.answer.body,
                latency_ms=s.latency_ms, outcome=s.answer.outcome.value,
                error=s.answer.error[:LAST_ERROR_CHARS], worker=ctx.owner,
            )
            for s in sent
        ])
        unexpected_so_far = _unexpected_answers_since_requeue(
            [s.update for s in sent if s.update.pk in mine
             and s.answer.outcome == target.Outcome.UNEXPECTED])

        decisions: list[_Decision] = []
        for s in sent:
            if s.update.pk in mine:
                decisions.append(_decide(s, now, max_attempts, max_unexpected, unexpected_so_far))
        for update, problem in unsendable:
            if update.pk in mine:
                update.status = S.FAILED
                update.last_error = problem[:LAST_ERROR_CHARS]
                decisions.append(_Decision(update, S.FAILED, "failed", problem))
        lost = len(ids) - len(mine)
        if lost:
            logger.warning("send run %s: %d update(s) were claimed again by another worker after "
                           "their lease ran out; their outcome is left to that worker", run.pk, lost)

        # The common case, acknowledgments, share every new value: one plain UPDATE. Retries and
        # failures differ per row (next-attempt time, reason): one bulk UPDATE … CASE.
        acknowledged_ids = [d.update.pk for d in decisions if d.to_status == S.SENT]
        if acknowledged_ids:
            ProfileUpdate.objects.filter(id__in=acknowledged_ids).update(
                status=S.SENT, acknowledged_at=now, next_attempt_at=None, last_error="",
                attempt_count=F("attempt_count") + 1, attempts_total=F("attempts_total") + 1,
                lease_owner="", lease_expires_at=None)
        others = [d.update for d in decisions if d.to_status != S.SENT]
        for update in others:
            update.lease_owner = ""
            update.lease_expires_at = None
        ProfileUpdate.objects.bulk_update(others, fields=[
            "status", "attempt_count", "attempts_total", "next_attempt_at", "lease_owner",
            "lease_expires_at", "last_error",
        ])
        AuditEvent.objects.bulk_create([
            AuditEvent(at=now, actor=None, update_id=d.update.pk, connection_id=conn.pk,
                       action=d.action, from_status=S.SENDING, to_status=d.to_status,
                       comment=d.comment[:LAST_ERROR_CHARS], changes=d.changes)
            for d in decisions
        ])

        acknowledged = sum(1 for d in decisions if d.to_status == S.SENT)
        retried = sum(1 for d in decisions if d.to_status == S.APPROVED)
        failed = sum(1 for d in decisions if d.to_status == S.FAILED)
        quota.record_daily(rows=[quota.DailyRow(
            connection_id=conn.pk, day=now.date(), requests=len(sent),
            acknowledged=sum(1 for s in sent if s.answer.outcome == target.Outcome.ACKNOWLEDGED),
            failed=failed,
        )])
        run.acknowledged += acknowledged
        run.retried += retried
        run.failed += failed
        run.save(update_fields=["claimed", "acknowledged", "retried", "failed", "deferred_by_quota"])


def _unexpected_answers_since_requeue(updates: list[ProfileUpdate]) -> dict[int, int]:
    """Unexpected answers per update since its last (re-)queue, this batch's included."""
    if not updates:
        return {}
    first_counted = {u.pk: u.attempts_total - u.attempt_count for u in updates}
    counts = dict.fromkeys(first_counted, 0)
    for update_id, number in SendAttempt.objects.filter(
        update_id__in=list(first_counted), outcome=Outcome.UNEXPECTED
    ).values_list("update_id", "number"):
        if number > first_counted[update_id]:
            counts[update_id] += 1
    return counts


def _decide(s: _Sent, now: dt.datetime, max_attempts: int, max_unexpected: int,
            unexpected_so_far: dict[int, int]) -> _Decision:
    update, answer = s.update, s.answer
    update.attempt_count += 1
    update.attempts_total += 1
    attempt = update.attempt_count
    changes = {"attempt": attempt}
    if answer.http_status is not None:
        changes["http_status"] = answer.http_status

    if answer.outcome == target.Outcome.ACKNOWLEDGED:
        update.status = S.SENT
        update.acknowledged_at = now
        update.next_attempt_at = None
        update.last_error = ""
        return _Decision(update, S.SENT, "acknowledged", "Target acknowledged the update.", changes)

    if answer.outcome == target.Outcome.PERMANENT:
        reason = f"Target refused the request ({answer.error})"
        if answer.body.strip():
            reason += f": {answer.body.strip()[:300]}"
        return _fail(update, reason, changes)

    if answer.outcome == target.Outcome.UNEXPECTED:
        seen = unexpected_so_far.get(update.pk, 1)
        if seen >= max_unexpected:
            reason = (f"{seen} unexpected answers (HTTP {answer.http_status} without the "
                      f"acknowledgment); last: {answer.body.strip()[:200]!r}")
            return _fail(update, reason, changes)

    if attempt >= max_attempts:
        return _fail(update, f"Gave up after {attempt} attempts; last: {answer.error}", changes)

    delay = backoff(attempt=attempt, retry_after=answer.retry_after_seconds)
    update.status = S.APPROVED
    update.next_attempt_at = now + delay
    update.last_error = answer.error[:LAST_ERROR_CHARS]
    changes["next_attempt_at"] = update.next_attempt_at.isoformat()
    return _Decision(update, S.APPROVED, "retry_scheduled",
                     f"{answer.error}; attempt {attempt} of {max_attempts}, next try in "
                     f"{int(delay.total_seconds())} s.", changes)


def _fail(update: ProfileUpdate, reason: str, changes: dict) -> _Decision:
    update.status = S.FAILED
    update.next_attempt_at = None
    update.last_error = reason[:LAST_ERROR_CHARS]
    return _Decision(update, S.FAILED, "failed", update.last_error, changes)
