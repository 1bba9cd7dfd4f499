"""Close the loop with Target: skip what would change nothing, verify what was sent, undo it.

Target's acknowledgment means "accepted for processing": an update for a visitor Target has no
profile for is acknowledged and dropped, and updates apply within an hour, sometimes 24. So:

- **Before sending** (`before_send`, called by sending.py on each claimed batch): the values
  Target held, per the latest read on record, are kept on the update (for a revert). With the
  connection's skip-unchanged option, an update whose every attribute already holds the staged
  value — per a read no older than SKIP_UNCHANGED_MAX_READ_AGE_SECONDS, read now if there is none —
  ends ``unchanged`` without a request, so no quota is used. A read that fails or is throttled
  never holds anything back: the update is simply sent.
- **After sending** (`updates_verify_due`, the "Verify sent updates" schedule every minute and
  the ``verify_updates`` command): each acknowledged update is read back first
  VERIFY_FIRST_CHECK_SECONDS after its acknowledgment (Target's typical apply delay), then at the
  later VERIFY_SCHEDULE_MINUTES, until every sent attribute holds the sent value with a
  ``modifiedAt`` not before the send (``verified``). Reads run concurrently at the connection's
  shared read rate; the bookkeeping stays in the run's main thread. No profile at Target means the update was dropped
  (``not applied``); values still different after the last check are ``not applied`` too; reads
  that kept failing leave it ``unverified``. Every read is kept (ProfileRead) and on the timeline.
- **Revert** (`update_revert`): stages a new update carrying the prior values, through the
  workflow (so four eyes apply); an attribute that did not exist before cannot be removed through
  this API, and the revert says so per attribute.

Never logged: identities and values.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field

import requests
from django.core.exceptions import ValidationError
from django.db import connection as db, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from .conf import setting
from .errors import require_perm
from .permissions import PERM_STAGE, refusal
from . import audit, credentials, mappings, reading, target, validation, workflow
from .models import (
    AuditEvent, ProfileRead, ProfileUpdate, SendAttempt, TargetConnection, UpdateStatus,
    VerificationState,
)

S = UpdateStatus
V = VerificationState
A = AuditEvent.Action
logger = logging.getLogger(__name__)

# Target's stamps have millisecond precision and its clock is not ours: a modifiedAt up to this
# much before our send still counts as "not before the send".
CLOCK_TOLERANCE = dt.timedelta(seconds=1)


def check_delays() -> list[dt.timedelta]:
    """Delays after the acknowledgment at which an update is read back (sorted, at least one):
    VERIFY_FIRST_CHECK_SECONDS first (unless 0), then the VERIFY_SCHEDULE_MINUTES after it."""
    minutes = sorted(int(m) for m in setting("VERIFY_SCHEDULE_MINUTES") if int(m) >= 0)
    delays = [dt.timedelta(minutes=m) for m in minutes] or [dt.timedelta(minutes=5)]
    # Placed after Target's typical apply delay, the first read finds most updates applied.
    first = dt.timedelta(seconds=max(0, setting("VERIFY_FIRST_CHECK_SECONDS")))
    if first:
        delays = [first] + [delay for delay in delays if delay > first]
    return delays


# --- before sending ------------------------------------------------------------------------------

def before_send(*, updates: list[ProfileUpdate], connection: TargetConnection, owner: str,
                now: dt.datetime | None = None, session: requests.Session | None = None,
                until: float | None = None) -> list[ProfileUpdate]:
    """For a batch the sender claimed (status sending, leased to `owner`): keep the values Target
    held, end the ones that would change nothing as ``unchanged`` (skip-unchanged connections
    only), and return the updates still to send, in their order.

    Reading takes at most SKIP_UNCHANGED_READ_BUDGET_SECONDS, and nothing past `until` (the run's
    budget, time.monotonic()): each read's deadline is cut to what is left, and a read that runs
    out is "not read" (the update is sent whole)."""
    if not updates:
        return updates
    now = now or timezone.now()
    latest = _latest_reads([u.pk for u in updates])
    skipped: list[tuple[ProfileUpdate, ProfileRead]] = []
    fresh: dict[int, ProfileRead] = {}  # reads no older than the max age, for leaving attributes out
    if connection.skip_unchanged or connection.drop_unchanged_attributes:
        max_age = dt.timedelta(seconds=setting("SKIP_UNCHANGED_MAX_READ_AGE_SECONDS"))
        own_session = session is None and any(
            u.pk not in latest or latest[u.pk].at < now - max_age for u in updates)
        session = reading.make_session() if own_session else session
        # The claim's lease is running: reading never takes more than this out of it.
        read_until = time.monotonic() + setting("SKIP_UNCHANGED_READ_BUDGET_SECONDS")
        if until is not None:
            read_until = min(read_until, until)
        try:
            for update in updates:
                read = latest.get(update.pk)
                if read is None or read.at < now - max_age:
                    if time.monotonic() >= read_until:
                        continue  # sent without a read
                    read = _read_before_send(update, now, session, read_until)
                    if read is None:
                        continue
                    if read.outcome != ProfileRead.Outcome.ERROR:
                        latest[update.pk] = read
                if read.outcome == ProfileRead.Outcome.ERROR or not _approved_as_is(update):
                    continue
                fresh[update.pk] = read
                if connection.skip_unchanged and reading.changes_nothing(update, read):
                    skipped.append((update, read))
        finally:
            if own_session:
                session.close()
    _keep_prior_values(updates, latest)
    ended = (_end_unchanged(skipped, owner=owner, connection=connection, now=now)
             if skipped else set())
    to_send = [u for u in updates if u.pk not in ended]
    _leave_out_unchanged(to_send, fresh if connection.drop_unchanged_attributes else {},
                         connection=connection, now=now)
    return to_send


def _leave_out_unchanged(updates: list[ProfileUpdate], fresh: dict[int, ProfileRead], *,
                         connection: TargetConnection, now: dt.datetime) -> None:
    """Per update with some attributes already holding the staged value per a fresh read and
    others still changing: the request carries only the changing ones (`send_attributes`, which
    target.request_for uses). The approval still covers all of them, and verification checks all
    of them; which were left out, and why, is kept on the update and the timeline."""
    left_out: list[tuple[ProfileUpdate, list[str], ProfileRead]] = []
    cleared: list[ProfileUpdate] = []
    for update in updates:
        read = fresh.get(update.pk)
        unchanged = ([] if read is None or read.outcome != ProfileRead.Outcome.FOUND else
                     [row.name for row in reading.attribute_diff(update, read) if not row.changes])
        if unchanged and len(unchanged) < len(update.attributes):
            update.send_attributes = {name: value for name, value in update.attributes.items()
                                      if name not in unchanged}
            update.unsent_unchanged = unchanged
            left_out.append((update, unchanged, read))
        else:
            update.send_attributes = None
            if update.unsent_unchanged:  # an earlier send left some out; this one sends them all
                update.unsent_unchanged = []
                cleared.append(update)
    if not left_out and not cleared:
        return
    with transaction.atomic():
        ProfileUpdate.with_pending_imports.bulk_update(  # being sent: live (objects.by_ids)
            [u for u, _, _ in left_out] + cleared, fields=["unsent_unchanged"])
        audit.save([
            audit.unsaved(A.UNCHANGED_ATTRIBUTES_LEFT_OUT, by=None, at=now, update=update.pk,
                          connection=connection.pk, from_status=S.SENDING, to_status=S.SENDING,
                          comment=f"Sent without unchanged attributes: {', '.join(names)} (Target "
                          f"already held the staged value, read at {read.at:%Y-%m-%d %H:%M:%S} "
                          "UTC). Verification still checks them.",
                          changes={"read_id": read.pk, "left_out": names})
            for update, names, read in left_out
        ])


def _read_before_send(update: ProfileUpdate, now: dt.datetime,
                      session: requests.Session, until: float) -> ProfileRead | None:
    try:
        return reading.profile_read(update=update, purpose=ProfileRead.Purpose.BEFORE_SEND,
                                    now=now, session=session, until=until)
    except reading.ReadThrottled:
        return None  # sent without a read: the read rate never holds sending back
    except Exception as error:  # noqa: BLE001 - a read never stops sending: sent whole
        logger.warning("skip-unchanged: reading update %s failed (%s); it is sent whole",
                       update.pk, type(error).__name__)
        return None


def _approved_as_is(update: ProfileUpdate) -> bool:
    # The sender fails an update whose content differs from its approval; leave that to it.
    return update.matches_approval(unapproved=True)


def _latest_reads(update_ids: list[int]) -> dict[int, ProfileRead]:
    latest: dict[int, ProfileRead] = {}
    reads = (ProfileRead.objects.filter(update_id__in=update_ids)
             .exclude(outcome=ProfileRead.Outcome.ERROR).order_by("update_id", "-at", "-id"))
    for read in reads:
        latest.setdefault(read.update_id, read)
    return latest


def _keep_prior_values(updates: list[ProfileUpdate], latest: dict[int, ProfileRead]) -> None:
    changed = []
    for update in updates:
        read = latest.get(update.pk)
        if read is None:
            continue
        update.prior_values = reading.prior_values(update, read)
        update.prior_read_at = read.at
        changed.append(update)
    if changed:
        ProfileUpdate.with_pending_imports.bulk_update(  # being sent: live (objects.by_ids)
            changed, fields=["prior_values", "prior_read_at"])


def _end_unchanged(skipped: list[tuple[ProfileUpdate, ProfileRead]], *, owner: str,
                   connection: TargetConnection, now: dt.datetime) -> set[int]:
    ids = [u.pk for u, _ in skipped]
    with transaction.atomic():
        mine = set(ProfileUpdate.objects.by_ids(ids).select_for_update()
                   .filter(status=S.SENDING, lease_owner=owner).values_list("id", flat=True))
        skip = workflow.sender_transition("skip_unchanged")
        ProfileUpdate.objects.by_ids(mine).update(
            status=skip.target, lease_owner="", lease_expires_at=None, next_attempt_at=None,
            last_error="")
        ended = [(update, read) for update, read in skipped if update.pk in mine]
        audit.record_many(
            [update.pk for update, _ in ended], by=None, action=skip, at=now,
            connection_id=connection.pk,
            comments={update.pk: f"Not sent: Target already held every staged value (read at "
                      f"{read.at:%Y-%m-%d %H:%M:%S} UTC). No request, no quota used."
                      for update, read in ended},
            changes_by_update={update.pk: {"read_id": read.pk,
                                           "at_target": held_summary(update, read)}
                               for update, read in ended},
            returning=False)
    for update, _ in skipped:
        if update.pk in mine:
            update.status = S.UNCHANGED
    return mine


# --- after sending -------------------------------------------------------------------------------

@dataclass
class VerificationRun:
    started: int = 0  # newly acknowledged updates scheduled for their first check
    switched_off: int = 0  # acknowledged on a connection that does not verify
    checked: int = 0
    verified: int = 0
    not_applied: int = 0
    unverified: int = 0
    throttled: int = 0  # due, but the read rate limit left no room this run
    failed: int = 0  # the check itself failed (recorded on the update as a failed read)
    by_connection: dict[int, int] = field(default_factory=dict)


def updates_verify_due(*, now: dt.datetime | None = None, connection: TargetConnection | None = None,
                       limit: int | None = None, session: requests.Session | None = None,
                       time_budget: float | None = None, by=None) -> VerificationRun:
    """Start verifying newly acknowledged updates and read back those whose check is due.
    `by`: the person starting the run, refused unless they may (workflow.require_run_starter);
    None for the schedule.

    Reads run concurrently (VERIFY_CONCURRENCY threads over one pooled session, like the sender),
    each at a slot of the connection's shared read rate limit; the main thread hands out the
    slots, claims the updates and does all the database bookkeeping, one transaction per group of
    finished reads (reader threads never touch the ORM). `now` fixes the clock (tests shift it
    instead of waiting); `time_budget` (seconds) stops handing out reads after it, and no slot
    later than it is taken. The run takes no lock the sender holds and uses no quota."""
    if by is not None:
        workflow.require_run_starter(by, run=workflow.VERIFICATION_RUN)
    fixed_now = now
    now = now or timezone.now()
    run = VerificationRun()
    _schedule_new(run, now=now, connection=connection)
    limit = setting("VERIFY_BATCH_SIZE") if limit is None else limit
    # Sent updates are live; without the live filter only upd_verification_due serves this
    # search. With it upd_status_id did too, and a planner whose statistics predate the send (an
    # import's ANALYZE, autovacuum behind) thought "sent" rare and read every sent update
    # through it: 4.2 s a run at a million (docs/benchmarks.md). Likewise in _schedule_new.
    due = (ProfileUpdate.with_pending_imports.select_related("connection")
           .filter(status=S.SENT, verification_state=V.PENDING, verification_next_at__lte=now,
                   connection__active=True)  # an inactive connection's checks wait for it
           .order_by("verification_next_at"))  # the index's order: no sort of the whole backlog
    if connection is not None:
        due = due.filter(connection=connection)
    deadline = None if time_budget is None else time.monotonic() + time_budget
    concurrency = max(1, setting("VERIFY_CONCURRENCY"))
    own_session = session is None
    session = session or reading.make_session(pool_size=concurrency)
    readers = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="profileops-verify")
    try:
        _read_concurrently(run, list(due[:limit]), readers=readers, session=session,
                           concurrency=concurrency, deadline=deadline, now=now,
                           clock=(lambda: fixed_now) if fixed_now else timezone.now)
    finally:
        readers.shutdown(wait=True, cancel_futures=True)
        if own_session:
            session.close()
    if run.checked or run.started or run.failed:
        logger.info("verification run: started %d, checked %d, verified %d, not applied %d, "
                    "unverified %d, throttled %d, failed %d", run.started, run.checked,
                    run.verified, run.not_applied, run.unverified, run.throttled, run.failed,
                    extra={"connection": connection.client_code if connection else None})
    return run


# A claimed update is not handed to another run for this long; a run that dies leaves its claims
# to be read again after it.
CLAIM = dt.timedelta(minutes=10)


def _read_concurrently(run: VerificationRun, due: list[ProfileUpdate], *,
                       readers: ThreadPoolExecutor, session: requests.Session, concurrency: int,
                       deadline: float | None, now: dt.datetime,
                       clock) -> None:
    """The run's loop: hand out up to 2 × concurrency reads (slot, claim, submit), record the
    finished ones in the main thread, again until nothing is due or the budget is spent."""
    ahead = 2 * concurrency
    queue = collections.deque(due)
    in_flight: collections.deque[tuple[ProfileUpdate, Future]] = collections.deque()
    throttled: set[int] = set()
    active: set[int] = set()
    while queue or in_flight:
        group: list[tuple[ProfileUpdate, float]] = []
        tokens: dict[int, str | None] = {}  # per connection, got in this thread for the readers
        while queue and len(in_flight) + len(group) < ahead:
            if deadline is not None and time.monotonic() >= deadline:
                queue.clear()  # the budget is spent: what is left waits for the next run
                break
            update = queue.popleft()
            if update.connection_id in throttled:
                run.throttled += 1
                continue
            slot = _slot_for(update, active, ahead=ahead, deadline=deadline)
            if slot is None or _token_for(update, tokens) is None:
                throttled.add(update.connection_id)
                run.throttled += 1
                continue
            group.append((update, slot))
        claimed = _claim([u.pk for u, _ in group], now=now)
        for update, slot in group:
            if update.pk in claimed:  # another run took the others
                update.read_token = tokens[update.connection_id]
                future = readers.submit(_read_at, update, slot, time.time(), session)
                in_flight.append((update, future))
        if not in_flight:
            continue
        # Wait for the oldest; record it with whatever else has finished, in one transaction.
        futures_wait([in_flight[0][1]])
        finished = [item for item in in_flight if item[1].done()]
        for item in finished:
            in_flight.remove(item)
        _record_group(run, finished, at=clock(), claimed_at=now)


def _token_for(update: ProfileUpdate, tokens: dict[int, str | None]) -> str | None:
    """The bearer token of the update's connection for the reader threads (None: none can be
    obtained now — its reads wait for the next run, as for a rate limit)."""
    if update.connection_id not in tokens:
        try:
            tokens[update.connection_id] = credentials.profile_token(update.connection)
        except ValidationError:
            tokens[update.connection_id] = None
    return tokens[update.connection_id]


def _slot_for(update: ProfileUpdate, active: set[int], *, ahead: int,
              deadline: float | None) -> float | None:
    """A slot of the connection's shared read rate for this update's read, or None (rate limit,
    or the connection was deactivated: its reads wait). Reads handed out ahead of the threads
    wait for their slot, so the wait allowed covers them; never past the budget."""
    try:
        if update.connection_id not in active:
            reading.require_active(update.connection)
            active.add(update.connection_id)
    except reading.ConnectionInactive:
        return None
    rate = max(0.001, float(setting("READS_PER_SECOND")))
    wait = 1.0 + ahead / rate
    if deadline is not None:
        wait = min(wait, max(0.0, deadline - time.monotonic()))
    return reading.read_limiter.slot(update.connection_id, wait=wait)


def _claim(ids: list[int], *, now: dt.datetime) -> set[int]:
    """Move the updates' next check past CLAIM, so that a run overlapping this one does not read
    them too; the ids still due and not taken by another run."""
    if not ids:
        return set()
    with transaction.atomic():
        locked = ProfileUpdate.objects.by_ids(ids).select_for_update(skip_locked=True,
                                                                     of=("self",))
        mine = {pk for pk, status, state, next_at in locked.values_list(
                    "id", "status", "verification_state", "verification_next_at")
                if status == S.SENT and state == V.PENDING and next_at is not None
                and next_at <= now}
        ProfileUpdate.objects.by_ids(mine).update(verification_next_at=now + CLAIM)
    return mine


def _read_at(update: ProfileUpdate, slot: float, handed_out: float, session: requests.Session
             ) -> tuple[target.ReadAnswer, int | None] | None:
    """In a reader thread: wait for the slot, then read (HTTP only, no database). None, without
    reading, when a thread came to it long after the slot and its hand-out (every reader was
    busy: a slow Target) — reads then would crowd the slots of later reads and other processes."""
    now = time.time()
    if slot > now:
        time.sleep(slot - now)
    elif now - max(slot, handed_out) > reading.read_limiter.lateness_allowed():
        return None
    return reading.fetch(update, session=session, token=update.read_token)


def _again_if_refused(update: ProfileUpdate, answer: target.ReadAnswer, latency_ms: int | None
                      ) -> tuple[target.ReadAnswer, int | None]:
    """Target refused the token (401/403): fetch it once more and read once more with it (here,
    in the main thread), before the read counts as refused."""
    if not credentials.is_refusal(answer.http_status):
        return answer, latency_ms
    again = credentials.token_refused(update.connection, update.read_token)
    if not again:
        return answer, latency_ms
    update.read_token = again
    return reading.fetch(update, token=again)


def _record_group(run: VerificationRun, finished: list[tuple[ProfileUpdate, Future]], *,
                  at: dt.datetime, claimed_at: dt.datetime) -> None:
    """Keep the finished reads and record their checks, in the main thread, one transaction (each
    update in its own savepoint, so one that fails is recorded as a failed check alone)."""
    answered, failed, unread = [], [], []
    for update, future in finished:
        try:
            result = future.result()
        except Exception as error:  # noqa: BLE001 - one update must not stop the run
            failed.append((update, error))
            continue
        if result is None:
            unread.append(update)
        else:
            answered.append((update, *_again_if_refused(update, *result)))
    if unread:  # their slot passed unused: due again, for this run's successor
        ProfileUpdate.objects.by_ids([u.pk for u in unread]).update(
            verification_next_at=claimed_at)
        run.throttled += len(unread)
        finished = [(update, future) for update, future in finished if update not in unread]
    states: dict[int, str] = {}
    with transaction.atomic():
        try:
            reads = reading.store_reads(answered, purpose=ProfileRead.Purpose.VERIFICATION, now=at)
            checked, failing = _record_checks(
                [(update, read) for (update, _, _), read in zip(answered, reads)], now=at)
            states.update(checked)
            failed += failing
        except Exception as error:  # noqa: BLE001 - the group's bookkeeping failed: each alone
            failed += [(update, error) for update, _, _ in answered]
    for update, error in failed:
        states[update.pk] = _record_failed_check(update, error, now=at)
        run.failed += 1
    for update, _ in finished:
        state = states.get(update.pk, "")
        run.checked += 1
        run.by_connection[update.connection_id] = run.by_connection.get(update.connection_id, 0) + 1
        if state == V.VERIFIED:
            run.verified += 1
        elif state == V.NOT_APPLIED:
            run.not_applied += 1
        elif state == V.UNVERIFIED:
            run.unverified += 1


_ID_CHUNK = 20_000  # ids in one statement's IN (SQLite's limit is 250,000 variables)
# New acknowledgments one run schedules at most; the rest are the next run's. Unbounded, the
# first run after a million were sent held all million rows and their audit rows in memory at
# once (1 GB); this bound keeps a run's memory flat, and 12 runs an hour schedule 600,000.
SCHEDULE_AT_MOST = 50_000


def _schedule_new(run: VerificationRun, *, now: dt.datetime,
                  connection: TargetConnection | None) -> None:
    """Acknowledged updates not yet looked at (at most SCHEDULE_AT_MOST, the oldest first on
    PostgreSQL): first check at acknowledgment + first delay, or "off" when their connection
    does not verify. One audit row each, in the same transaction."""
    first = check_delays()[0]
    # Through upd_sent_unscheduled only (see updates_verify_due): 0.85 s a run otherwise.
    new = ProfileUpdate.with_pending_imports.filter(status=S.SENT, verification_state="")
    if connection is not None:
        new = new.filter(connection=connection)
    with transaction.atomic():
        # Lock the updates only: the connection row is the quota lock the sender takes.
        # Locked in id order, so two runs never deadlock; unordered on SQLite (no row locks),
        # whose planner an order by id steers to the status index (every sent update).
        ordered = new.order_by() if db.vendor == "sqlite" else new.order_by("id")
        rows = list(ordered.select_for_update(of=("self",)).values_list(
            "id", "connection_id", "connection__verify_after_send")[:SCHEDULE_AT_MOST])
        verify = [r[0] for r in rows if r[2]]
        off = [r[0] for r in rows if not r[2]]
        # In chunks: a bulk file's acceptance makes hundreds of thousands sent at once, more
        # than SQLite takes variables in one statement.
        for start in range(0, max(len(verify), len(off)), _ID_CHUNK):
            chunk = verify[start:start + _ID_CHUNK]
            ProfileUpdate.objects.by_ids(chunk).update(
                verification_state=V.PENDING, verification_checks=0,
                verification_next_at=F("acknowledged_at") + first)
            # Bulk-sent updates whose file Target has finished are read back now
            # (bulk_polling.py).
            ProfileUpdate.objects.by_ids(chunk).filter(bulk_file__finished_at__isnull=False
                                                      ).update(verification_next_at=now)
            ProfileUpdate.objects.by_ids(off[start:start + _ID_CHUNK]).update(
                verification_state=V.OFF)
        audit.save([
            audit.unsaved(A.VERIFICATION_SCHEDULED if wants else A.VERIFICATION_OFF, by=None,
                          at=now, update=update_id, connection=connection_id,
                          from_status=S.SENT, to_status=S.SENT,
                          comment=(f"Target will be read back {_minutes(first)} after the "
                                   "acknowledgment." if wants else
                                   "Verification is off for this connection."))
            for update_id, connection_id, wants in rows
        ])
    run.started += len(verify)
    run.switched_off += len(off)


def _minutes(delay: dt.timedelta) -> str:
    minutes = int(delay.total_seconds() // 60)
    return f"{minutes // 60} h" if minutes >= 60 and minutes % 60 == 0 else f"{minutes} min"


def sent_at(update: ProfileUpdate) -> dt.datetime | None:
    """When the acknowledged request was started (Target cannot have applied it earlier)."""
    return _sent_at_many([update])[update.pk]


def held_summary(update: ProfileUpdate, read: ProfileRead) -> str:
    """What Target held for the update's attributes per `read`, for the timeline (one line)."""
    if read.outcome == ProfileRead.Outcome.NOT_FOUND:
        return "no profile"
    if read.outcome != ProfileRead.Outcome.FOUND:
        return "read failed"
    parts = []
    held = read.held
    for name in sorted(update.attributes):
        entry = held.get(name)
        parts.append(f"{name}: (not set)" if entry is None else
                     f"{name}: {entry.get('value', '')!r} (modified {target.shown(entry.get('modifiedAt') or '?')})")
    return "; ".join(parts)


@dataclass(frozen=True)
class CheckResult:
    applied: bool
    no_profile: bool
    matching: list[str]
    differing: list[str]  # value differs, attribute missing, or modified before the send


def compare_with_sent(update: ProfileUpdate, read: ProfileRead, sent: dt.datetime | None
                      ) -> CheckResult:
    from .target import parse_modified_at

    if read.outcome != ProfileRead.Outcome.FOUND:
        return CheckResult(False, read.outcome == ProfileRead.Outcome.NOT_FOUND, [], [])
    matching, differing = [], []
    # Left out of the request because Target already held the value: it must still hold it, but
    # its modifiedAt is from before the send.
    not_sent = set(update.unsent_unchanged or ())
    held = read.held  # the values Target returned, escaped ones given back
    for name in sorted(update.attributes):
        entry = held.get(name)
        ok = entry is not None and entry.get("value") == update.attributes[name]
        if ok and sent is not None and name not in not_sent:
            modified = parse_modified_at(entry.get("modifiedAt", ""))
            ok = modified is not None and modified >= sent - CLOCK_TOLERANCE
        (matching if ok else differing).append(name)
    return CheckResult(not differing, False, matching, differing)


def _record_failed_check(update: ProfileUpdate, error: Exception, *, now: dt.datetime) -> str:
    """A check that failed in our code (not in Target's answer) counts as a failed read: kept as
    one, on the timeline, and the update is checked again later like after any failed read.
    Only the error's type is kept and logged: its message may quote the values."""
    logger.warning("verification: the check of update %s failed (%s); going on", update.pk,
                   type(error).__name__)
    try:
        read = ProfileRead.objects.create(
            update=update, connection_id=update.connection_id, at=now,
            purpose=ProfileRead.Purpose.VERIFICATION, outcome=ProfileRead.Outcome.ERROR,
            error=f"the check failed ({type(error).__name__})")
        return _record_check(update, read, now=now)
    except Exception as again:  # noqa: BLE001
        logger.error("verification: update %s could not be marked (%s)", update.pk,
                     type(again).__name__)
        return ""


def _record_check(update: ProfileUpdate, read: ProfileRead, *, now: dt.datetime) -> str:
    return _record_checks([(update, read)], now=now)[0].get(update.pk, "")


def _record_checks(checks: list[tuple[ProfileUpdate, ProfileRead]], *, now: dt.datetime
                   ) -> tuple[dict[int, str], list[tuple[ProfileUpdate, Exception]]]:
    """Record a group of checks in one transaction: the updates locked, changed and their audit
    rows written in bulk. Returns the state each update is left in ("" when another run got there
    first) and the checks that failed in our code (recorded by the caller as failed checks)."""
    delays = check_delays()
    sent = _sent_at_many([update for update, _ in checks])
    states: dict[int, str] = {}
    failed: list[tuple[ProfileUpdate, Exception]] = []
    fields = ["verification_state", "verification_checks", "verification_next_at", "verified_at"]
    with transaction.atomic():
        current = {row.pk: row for row in ProfileUpdate.objects.by_ids(
                       [update.pk for update, _ in checks]).select_for_update(of=("self",))
                   if row.status == S.SENT and row.verification_state == V.PENDING}
        changed, events = [], []
        for update, read in checks:
            row = current.pop(update.pk, None)
            if row is None:  # another run got there first
                states[update.pk] = ""
                continue
            try:
                events.append(_check_change(row, update, read, sent=sent.get(update.pk),
                                            now=now, delays=delays))
            except Exception as error:  # noqa: BLE001 - recorded as a failed check by the caller
                failed.append((update, error))
                continue
            changed.append(row)
            states[update.pk] = row.verification_state
            update.verification_state = row.verification_state
            update.verification_checks = row.verification_checks
            update.verification_next_at = row.verification_next_at
            update.verified_at = row.verified_at
        if changed:
            # Sent, so live; by id alone (ProfileUpdate.objects.by_ids says why).
            ProfileUpdate.with_pending_imports.bulk_update(changed, fields=fields)
            audit.save(events)
    return states, failed


def _sent_at_many(updates: list[ProfileUpdate]) -> dict[int, dt.datetime | None]:
    """sent_at for many updates in one query. Their attempts (a few each) are found by update
    alone and the acknowledged one picked here: with `outcome` in the query, PostgreSQL with
    statistics older than the day's attempts ANDed in the partial index of every acknowledged
    attempt (att_acked_recent) — 32 ms for a few dozen updates among a million attempts, in
    every group of checks (docs/benchmarks.md, the million-update day)."""
    started: dict[int, dt.datetime] = {}
    for update_id, outcome, at in (
            SendAttempt.objects.filter(update_id__in=[u.pk for u in updates])
            .order_by("update_id", "-number").values_list("update_id", "outcome", "started_at")):
        if outcome == SendAttempt.Outcome.ACKNOWLEDGED:
            started.setdefault(update_id, at)
    return {u.pk: started.get(u.pk) or u.acknowledged_at for u in updates}


def _check_change(current: ProfileUpdate, update: ProfileUpdate, read: ProfileRead, *,
                  sent: dt.datetime | None, now: dt.datetime,
                  delays: list[dt.timedelta]) -> AuditEvent:
    """What one check does to its (locked) update: its verification fields changed in place, and
    the audit row saying so (unsaved)."""
    result = compare_with_sent(update, read, sent)
    check = current.verification_checks + 1
    last = check >= len(delays)
    total = len(delays)
    current.verification_checks = check
    current.verification_next_at = None
    if result.applied:
        current.verification_state = V.VERIFIED
        current.verified_at = now
        action = A.VERIFIED
        comment = (f"Check {check} of {total}: Target shows every sent value "
                   f"({len(result.matching)} attribute(s)), modified after the send.")
    elif result.no_profile:
        current.verification_state = V.NOT_APPLIED
        action = A.NOT_APPLIED
        comment = (f"Check {check} of {total}: Target has no profile for this visitor — the "
                   "update was acknowledged but not applied.")
    elif read.outcome == ProfileRead.Outcome.ERROR:
        current.verification_state = V.UNVERIFIED if last else V.PENDING
        action = A.UNVERIFIED if last else A.VERIFICATION_READ
        comment = f"Check {check} of {total}: the read failed ({read.error})."
        if last:
            comment += " No more checks: whether Target applied the update is unknown."
    else:
        current.verification_state = V.NOT_APPLIED if last else V.PENDING
        action = A.NOT_APPLIED if last else A.VERIFICATION_READ
        comment = (f"Check {check} of {total}: {len(result.differing)} of "
                   f"{len(update.attributes)} attribute(s) do not show the sent value yet: "
                   f"{', '.join(result.differing)}.")
        if last:
            comment += " No more checks: not applied."
    if current.verification_state == V.PENDING:
        current.verification_next_at = max(
            now, (current.acknowledged_at or now) + delays[check])
        comment += f" Next check at {current.verification_next_at:%Y-%m-%d %H:%M} UTC."
    return audit.unsaved(
        action, by=None, at=now, update=current, connection=current.connection_id,
        from_status=S.SENT, to_status=S.SENT, comment=comment,
        changes={"read_id": read.pk, "check": check, "read_outcome": read.outcome,
                 "matching": result.matching, "differing": result.differing,
                 "at_target": held_summary(update, read)})


# --- revert --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RevertPlan:
    attributes: dict[str, str]  # what a revert stages: the prior values that existed
    not_revertible: dict[str, str]  # name -> why it cannot be reverted


def revert_plan(update: ProfileUpdate) -> RevertPlan:
    """What reverting `update` would stage, and what it cannot undo (per attribute)."""
    if update.status != S.SENT:
        raise ValidationError(f"Update #{update.pk} was not sent; there is nothing to revert.",
                              code="not_sent")
    if not update.prior_values:
        raise ValidationError(
            f"Update #{update.pk}: no read of Target's profile from before the send is on record, "
            "so the values it replaced are unknown.", code="no_prior_read")
    attributes, not_revertible = {}, {}
    by_target = {m.target_name: m for m in mappings.active_mappings(update.connection)}
    for name in sorted(update.attributes):
        prior = update.prior_values.get(name)
        if prior is None:
            not_revertible[name] = ("did not exist before the update; Target's API cannot remove "
                                    "an attribute (only Adobe's Privacy Service deletes data)")
        elif prior.get("escaped"):
            not_revertible[name] = ("held characters that cannot be staged (NUL or a lone "
                                    "surrogate); it is shown escaped")
        elif prior.get("value") == update.attributes[name]:
            not_revertible[name] = "already held this value before the update; nothing to undo"
        elif (why := _not_restorable(prior, by_target.get(name))) is not None:
            not_revertible[name] = why
        else:
            attributes[name] = prior.get("value", "")
    return RevertPlan(attributes, not_revertible)


def _not_restorable(prior: dict, mapping) -> str | None:
    """Why the value Target held cannot be staged back as it was, or None. What Target returned
    is outside data: it is staged only if a person could have typed it into the staging form —
    text, no control or invisible characters, no U+FFFD, and already the mapping's normal form
    (a revert never rewrites a value into something Target did not hold)."""
    if prior.get("json_type"):
        return (f"held a JSON {prior['json_type']}, not text; a mapping accepts only text, so it "
                "cannot be put back as it was")
    value = prior.get("value", "")
    if not isinstance(value, str):
        return f"held a {type(value).__name__}, not text"
    if mapping is None:
        return "has no active mapping on this connection now; an operator must define one first"
    if (why := validation.person_typed_problem(value)) is not None:
        return f"held a value that {why}; it is not staged back"
    try:
        normal = mappings.normalise_value(mapping, value)
    except ValidationError as error:
        return f"held a value its mapping refuses ({error.messages[0]})"
    if normal != value:
        return (f"held {value[:50]!r}, which its mapping would send as {normal[:50]!r}; a revert "
                "puts back exactly what Target held, never a rewritten value")
    if problems := validation.attribute_value_errors(
            mapping.target_name, value, max_length=mapping.max_length,
            allow_empty=mapping.send_empty):
        return f"held a value that cannot be staged ({problems[0]})"
    return None


def update_revert(*, update: ProfileUpdate, by, comment: str = "",
                  supersede: bool = False) -> tuple[ProfileUpdate, RevertPlan]:
    """Stage (as a draft by `by`) an update that puts back the values Target held before `update`
    was sent. It goes through submit and approval like any other — so whoever stages a revert
    cannot approve it. Raises ValidationError, staging nothing, when nothing can be reverted —
    or (`open_conflict`) when the visitor has an open update setting one of those attributes,
    unless `supersede` (workflow.update_stage)."""
    require_perm(by, PERM_STAGE, refusal(PERM_STAGE))
    plan = revert_plan(ProfileUpdate.objects.get(pk=update.pk))
    if not plan.attributes:
        reasons = "; ".join(f"{name}: {why}" for name, why in plan.not_revertible.items())
        raise ValidationError(f"Update #{update.pk}: nothing can be reverted ({reasons}).",
                              code="nothing_to_revert")
    with transaction.atomic():
        revert = workflow.update_stage(
            connection=update.connection, identity_type=update.identity_type,
            identity=update.identity, attributes=plan.attributes, by=by,
            # Not cut to fit: a comment longer than a reason holds is refused, not trimmed.
            reason=comment.strip() or f"Revert of update #{update.pk}", supersede=supersede)
        note = f"Revert staged as update #{revert.pk}."
        if plan.not_revertible:
            note += " Not revertible: " + "; ".join(
                f"{name} ({why})" for name, why in plan.not_revertible.items()) + "."
        audit.record(
            A.REVERT_STAGED, by=by, update=update, connection=update.connection_id,
            from_status=update.status, to_status=update.status, comment=note,
            changes={"revert_update": revert.pk, "not_revertible": plan.not_revertible})
    return revert, plan


def reverted_update_id(update: ProfileUpdate) -> int | None:
    """The id of the update that `update` was staged to revert (update_revert's audit row on the
    original names the draft), or None when `update` is no revert."""
    return (AuditEvent.objects.filter(action=A.REVERT_STAGED, changes__revert_update=update.pk)
            .values_list("update_id", flat=True).first())


# --- the dashboard's picture -----------------------------------------------------------------------

@dataclass
class VerificationDay:
    day: dt.date
    sent: int = 0
    verified: int = 0
    not_applied: int = 0
    verifying: int = 0
    unverified: int = 0
    unchanged: int = 0  # skipped by skip-unchanged: one request of quota saved each
    off: int = 0  # sent on a connection that does not verify


def daily_summary(*, now: dt.datetime | None = None, days: int = 7) -> list[VerificationDay]:
    """Per UTC day, newest first: updates acknowledged that day and where their verification
    stands now, and updates skipped as unchanged that day (the quota saved)."""
    from django.db.models import Count, Q
    from django.db.models.functions import TruncDate

    now = now or timezone.now()
    first = now.date() - dt.timedelta(days=days - 1)
    since = dt.datetime.combine(first, dt.time.min, tzinfo=dt.timezone.utc)
    table = {first + dt.timedelta(days=n): VerificationDay(first + dt.timedelta(days=n))
             for n in range(days)}
    # The sent ones are counted with a filter, not selected by a status condition, so that the
    # query reads the range of the upd_acknowledged index alone (see its comment); updates
    # acknowledged and then re-queued fall in a group with n = 0.
    sent = (ProfileUpdate.objects.filter(acknowledged_at__gte=since)
            .annotate(day=TruncDate("acknowledged_at", tzinfo=dt.timezone.utc))
            .values("day", "verification_state")
            .annotate(n=Count("id", filter=Q(status=S.SENT))))
    column = {V.VERIFIED: "verified", V.NOT_APPLIED: "not_applied", V.PENDING: "verifying",
              "": "verifying", V.UNVERIFIED: "unverified", V.OFF: "off"}
    for row in sent:
        entry = table.get(row["day"])
        if entry is None:
            continue
        entry.sent += row["n"]
        if row["verification_state"] in column:
            name = column[row["verification_state"]]
            setattr(entry, name, getattr(entry, name) + row["n"])
    skipped = (AuditEvent.objects.filter(action=A.UNCHANGED, update__status=S.UNCHANGED,
                                         at__gte=since)
               .annotate(day=TruncDate("at", tzinfo=dt.timezone.utc))
               .values("day").annotate(n=Count("id")))
    for row in skipped:
        if row["day"] in table:
            table[row["day"]].unchanged += row["n"]
    return sorted(table.values(), key=lambda d: d.day, reverse=True)


# --- what happened at Target, in one word per update (lists, the notebook, the dashboard) --------

# key -> label, in the order the lists and the dashboard show them. "" (not shown): not sent.
AT_TARGET = {
    "verified": "verified",
    "not_applied": "not applied",
    "checking": "checking",
    "unverified": "could not verify",
    "unchanged": "unchanged",
    "off": "not verified (off)",
}


def at_target(status: str, verification_state: str) -> str:
    """The AT_TARGET key of an update with this status and verification state: what its
    verification found (sent updates), ``unchanged`` (skip-unchanged ended it without a request),
    or "" (nothing was sent)."""
    if status == S.UNCHANGED:
        return "unchanged"
    if status != S.SENT:
        return ""
    return {V.VERIFIED: "verified", V.NOT_APPLIED: "not_applied", V.UNVERIFIED: "unverified",
            V.OFF: "off"}.get(verification_state, "checking")  # pending, or not yet scheduled
