"""Send decided bulk-route updates through Target's Bulk Profile Update API.

One run (`bulk_send_due`, the "Send and poll bulk files" schedule and the ``send_bulk``
command) does, per active connection:

1. **Claim** the due updates of the bulk route (claims.claim with ``route="bulk"``: approved,
   the earliest send time reached, no earlier open update of the same visitor — an update of
   the visitor that is sending, approved earlier, or bulk-sent in a file Target has not finished
   — in approval order), up to BULK_JOB_MAX_ROWS, as the single sender claims.
2. **Check** each once more: content that differs from what was approved fails, unsent (the
   four-eyes guarantee); a row that cannot go bulk — an mboxPC id the connection keeps single,
   an empty value (which the bulk API would ignore instead of clearing) — goes back to
   ``approved`` on the single route, audited.
3. **Build** the files byte-exactly (bulk_files.py: one file per version, id column and
   attribute set, split at BULK_FILE_MAX_ROWS / BULK_FILE_MAX_BYTES) and keep them: a BulkJob
   with its BulkFiles, each update recording its file and line, in one transaction.
4. **Upload** every pending file whose attempt is due, paced at the connection's shared bulk
   call rate (bulk_pacing.py). Target's answer is kept verbatim (BulkCall, BulkFile.answer).
   Accepted (``success=true`` with a batchStatus URL): the file's updates move to ``sent`` —
   as a single update does on its acknowledgment — and verification reads them back
   (verification.py) once Target has processed the file (bulk_polling.py). 503, 429, 5xx or no
   answer: retried with backoff (Retry-After honoured) up to BULK_MAX_ATTEMPTS. Anything else
   (``success=false``, another 4xx): the file is refused and its updates fail with Target's
   message.

The single route's quota is not touched: no QuotaMinute, no DailyUsage, no SendAttempt.
Never logged: identities, values, file contents, tokens.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import zlib
from dataclasses import dataclass

import requests
from django.core.exceptions import ValidationError
from django.db import connection as db, transaction
from django.db.models import F
from django.utils import timezone

from . import audit, bulk_files, bulk_pacing, claims, credentials, delivery, target, workflow
from .conf import setting
from .models import BulkCall, BulkFile, BulkJob, ProfileUpdate, TargetConnection, UpdateStatus
from .retry_policy import LAST_ERROR_CHARS, RetryPolicy

logger = logging.getLogger(__name__)
S = UpdateStatus
F_ = BulkFile.State
# Claimed updates stay the job's while their file waits (retries included): far longer than any
# upload, so a lease never runs out under a pending file and sends a row twice.
UPDATE_LEASE = dt.timedelta(hours=25)
FILE_LEASE = dt.timedelta(minutes=10)  # one worker uploads a file at a time
UPLOAD_READ_TIMEOUT = 300.0  # seconds for Target's answer to a file of up to 50 MB
# An answer (a file's status with its details included) is read up to this much, no further.
ANSWER_READ_LIMIT_BYTES = 8 * 1024 * 1024
SLOT_WAIT_SECONDS = 5.0
_LINE_CHUNK = 5000
CLAIM_CHUNK = 10_000  # updates per claim (claims.claim), several per job


@dataclass
class BulkRun:
    jobs: int = 0
    files_built: int = 0
    rows: int = 0
    to_single: int = 0
    not_approved: int = 0
    uploads: int = 0
    accepted: int = 0
    retried: int = 0
    refused: int = 0
    throttled: int = 0


def call_target(session: requests.Session, method: str, url: str, conn: TargetConnection, *,
                headers: dict[str, str], timeout: tuple[float, float], data: bytes | None = None,
                slot_wait: float = SLOT_WAIT_SECONDS
                ) -> tuple[int | None, str, str, float | None]:
    """One bulk API call with the connection's bearer token, got as the single sender gets it
    (credentials.profile_token); on 401/403 the token is asked for once more and the call made
    once again with it (another paced call). Returns (HTTP status or None, answer text, error,
    Retry-After seconds). The caller has taken the first call's slot.

    Each call ends by its wall-clock deadline (connect and read timeouts together, however
    slowly the answer drips), follows no redirect, reads at most ANSWER_READ_LIMIT_BYTES, and
    its text comes back with the connection's secrets redacted (target.from_outside): whatever
    keeps or shows it — a stored answer, a refusal's message — never holds a secret Target
    echoed."""
    try:
        token = credentials.profile_token(conn)
    except ValidationError as error:  # credentials.py recorded why (connection page, alert)
        return None, "", f"no profile token could be obtained ({error.code})", None
    for again in (False, True):
        sent = dict(headers, **({"Authorization": f"Bearer {token}"} if token else {}))
        try:
            reply = delivery.call_bounded(method, url, session=session, data=data, headers=sent,
                                          timeout=timeout, limit=ANSWER_READ_LIMIT_BYTES)
        except requests.RequestException as error:
            return None, "", f"{type(error).__name__}: no answer", None
        if not again and credentials.is_refusal(reply.status):
            token = credentials.token_refused(conn, token)
            if token and bulk_pacing.take_call(conn.pk, wait=slot_wait):
                continue
        break
    return (reply.status, target.from_outside(reply.text, conn.secrets()), "",
            target.parse_retry_after(reply.retry_after))


def bulk_send_due(*, now: dt.datetime | None = None, connection: TargetConnection | None = None,
                  session: requests.Session | None = None, owner: str | None = None,
                  slot_wait: float = SLOT_WAIT_SECONDS) -> BulkRun:
    """Build jobs for the due bulk-route updates, then upload every due file (see the module)."""
    now = now or timezone.now()
    owner = owner or claims.lease_owner(None)
    run = BulkRun()
    connections = TargetConnection.objects.filter(active=True).order_by("id")
    if connection is not None:
        connections = connections.filter(pk=connection.pk)
    for conn in connections:
        bulk_job_start(connection=conn, owner=owner, now=now, run=run)
    own_session = session is None
    session = session or delivery.make_session(pool_size=1)
    try:
        for file in _due_files(now=now, connection=connection):
            upload_file(file=file, owner=owner, now=now, session=session, run=run,
                        slot_wait=slot_wait)
    finally:
        if own_session:
            session.close()
    return run


# --- 1-3: claim, check, build -----------------------------------------------------------------

def bulk_job_start(*, connection: TargetConnection, owner: str, now: dt.datetime,
                   run: BulkRun | None = None) -> BulkJob | None:
    """Claim the connection's due bulk-route updates and build their job and files; None when
    nothing was due (or every claimed update went elsewhere)."""
    run = run or BulkRun()
    updates = _claim(connection, owner=owner, now=now)
    if not updates:
        return None
    with transaction.atomic():
        mine = _still_mine(connection, owner=owner)
        updates = [u for u in updates if u.pk in mine]
        unapproved = [u for u in updates if not u.matches_approval(unapproved=True)]
        rows = [bulk_files.BulkRow(u.pk, u.identity_type, u.identity, u.attributes)
                for u in updates if u.matches_approval(unapproved=True)]
        single = {row.update_id: problem for row in rows
                  if (problem := bulk_files.route_problem(row, connection.pc_id_bulk))}
        _fail(unapproved, connection=connection, now=now,
              why="The content differs from what was approved; it was not sent.")
        _to_single(single, connection=connection, now=now)
        rows = [row for row in rows if row.update_id not in single]
        run.not_approved += len(unapproved)
        run.to_single += len(single)
        if not rows:
            return None
        job = _store_job(connection, rows, owner=owner, now=now)
    run.jobs += 1
    run.files_built += job.files.count()
    run.rows += job.rows
    logger.info("bulk job %s: %d rows in %d file(s) for connection %s", job.pk, job.rows,
                job.files.count(), connection.client_code)
    return job


def _claim(connection: TargetConnection, *, owner: str, now: dt.datetime) -> list[ProfileUpdate]:
    """Up to BULK_JOB_MAX_ROWS due bulk-route updates, claimed CLAIM_CHUNK at a time (the
    claim looks their visitors up in one query per window: SQLite takes a bounded number of
    variables)."""
    wanted = setting("BULK_JOB_MAX_ROWS")
    updates: list[ProfileUpdate] = []
    while len(updates) < wanted:
        size = min(CLAIM_CHUNK, wanted - len(updates))
        claimed = claims.claim(conn=connection, owner=owner, size=size, now=now,
                               lease_until=now + UPDATE_LEASE, route="bulk")
        updates += claimed
        if len(claimed) < size:
            break
    return updates


def _still_mine(connection: TargetConnection, *, owner: str) -> set[int]:
    """claims.still_mine for a whole job: the rows still leased to this run's unique owner,
    locked, found by the owner rather than by a list of ids (SQLite takes a bounded number)."""
    return set(claims.locking(
        ProfileUpdate.objects.filter(connection=connection, lease_owner=owner,
                                     status=S.SENDING, send_route="bulk"),
        no_key=True).order_by("id").values_list("id", flat=True))


def _by_ids(ids: list[int]):
    """Querysets over `ids`, _LINE_CHUNK at a time."""
    for start in range(0, len(ids), _LINE_CHUNK):
        yield ProfileUpdate.objects.by_ids(ids[start:start + _LINE_CHUNK])


def _store_job(connection: TargetConnection, rows: list[bulk_files.BulkRow], *, owner: str,
               now: dt.datetime) -> BulkJob:
    plans = bulk_files.build_files(rows, pc_id_bulk=connection.pc_id_bulk,
                                   max_rows=setting("BULK_FILE_MAX_ROWS"),
                                   max_bytes=setting("BULK_FILE_MAX_BYTES"))
    job = BulkJob.objects.create(connection=connection, created_at=now, worker=owner[:64],
                                 rows=len(rows))
    for number, plan in enumerate(plans, start=1):
        body = plan.body
        file = BulkFile.objects.create(
            job=job, number=number, version=plan.version, id_column=plan.id_column,
            attribute_names=list(plan.names), rows=len(plan.update_ids), size_bytes=len(body),
            sha256=hashlib.sha256(body).hexdigest(), body=zlib.compress(body))
        _set_lines(file.pk, plan.update_ids)
    audit.record(
        audit.Action.BULK_JOB_CREATED, at=now, by=None, connection=connection,
        comment=f"Bulk job #{job.pk}: {len(rows):,} updates in {len(plans)} file(s).",
        changes={"bulk_job": job.pk, "rows": len(rows), "files": len(plans)})
    return job


def _set_lines(file_id: int, update_ids: list[int]) -> None:
    """Each update's file and line (1 = the first row after the header), in one UPDATE per
    chunk joined to a VALUES list (SQLite ≥ 3.33 and PostgreSQL both take UPDATE … FROM)."""
    table = db.ops.quote_name(ProfileUpdate._meta.db_table)
    for start in range(0, len(update_ids), _LINE_CHUNK):
        chunk = update_ids[start:start + _LINE_CHUNK]
        values = ", ".join(["(%s, %s)"] * len(chunk))
        params: list[int] = [file_id]
        for offset, update_id in enumerate(chunk, start=start + 1):
            params += [update_id, offset]
        with db.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET bulk_file_id = %s, bulk_line = v.column2 "
                f"FROM (VALUES {values}) AS v WHERE {table}.id = v.column1", params)


def _fail(updates: list[ProfileUpdate], *, connection: TargetConnection, now: dt.datetime,
          why: str) -> None:
    if not updates:
        return
    fail = workflow.sender_transition("fail")
    for chunk in _by_ids([u.pk for u in updates]):
        chunk.update(status=fail.target, lease_owner="", lease_expires_at=None, last_error=why)
    audit.record_many([u.pk for u in updates], by=None, action=fail, at=now,
                        connection_id=connection.pk, comment=why, returning=False)


def _to_single(why: dict[int, str], *, connection: TargetConnection, now: dt.datetime) -> None:
    """Claimed updates that cannot go bulk go back to approved on the single route."""
    if not why:
        return
    release = workflow.sender_transition("release")
    for chunk in _by_ids(list(why)):
        chunk.update(status=release.target, lease_owner="", lease_expires_at=None,
                     send_route="")
    audit.record_many(list(why), by=None, action=release, at=now, connection_id=connection.pk,
                        comments={pk: f"Goes on the single route: {problem}."
                                  for pk, problem in why.items()}, returning=False)


# --- 4: upload ---------------------------------------------------------------------------------

def _due_files(*, now: dt.datetime, connection: TargetConnection | None) -> list[BulkFile]:
    files = (BulkFile.objects.select_related("job__connection")
             .filter(state=F_.PENDING, job__connection__active=True)
             .exclude(next_attempt_at__gt=now).order_by("id"))
    if connection is not None:
        files = files.filter(job__connection=connection)
    return list(files.defer("body"))


def _take_file(file: BulkFile, *, owner: str, now: dt.datetime) -> bool:
    free = (BulkFile.objects.filter(pk=file.pk, state=F_.PENDING)
            .exclude(lease_expires_at__gt=now))
    return bool(free.update(lease_owner=owner[:64], lease_expires_at=now + FILE_LEASE))


def upload_file(*, file: BulkFile, owner: str, now: dt.datetime, session: requests.Session,
                run: BulkRun | None = None, slot_wait: float = SLOT_WAIT_SECONDS) -> str:
    """Upload one pending file (paced), record the call and what it means; returns the
    outcome ("accepted", "transient", "refused", or "throttled"/"busy" when not sent)."""
    run = run or BulkRun()
    conn = file.job.connection
    if not _take_file(file, owner=owner, now=now):
        return "busy"
    if not bulk_pacing.take_call(conn.pk, wait=slot_wait):
        BulkFile.objects.filter(pk=file.pk).update(lease_owner="", lease_expires_at=None)
        run.throttled += 1
        return "throttled"
    status, text, error, retry_after = _post(file, conn, session)
    run.uploads += 1
    kept = text[:bulk_files.ANSWER_KEEP_CHARS]  # redacted by call_target
    answer = bulk_files.read_upload_answer(status, text)
    outcome = answer.outcome
    attempts = file.attempts + 1
    if outcome == "transient" and attempts >= setting("BULK_MAX_ATTEMPTS"):
        outcome = "refused"
    with transaction.atomic():
        BulkCall.objects.create(connection=conn, file=file, kind=BulkCall.Kind.UPLOAD, at=now,
                                http_status=status, answer=kept, error=error[:300])
        file.attempts, file.answer, file.lease_owner, file.lease_expires_at = attempts, kept, "", None
        if outcome == "accepted":
            _accepted(file, answer.status_url, now=now)
            run.accepted += 1
        elif outcome == "transient":
            policy = RetryPolicy(max_attempts=setting("BULK_MAX_ATTEMPTS"),
                                 max_unexpected_answers=1,
                                 backoff_base_seconds=setting("BACKOFF_BASE_SECONDS"),
                                 backoff_max_seconds=setting("BACKOFF_MAX_SECONDS"))
            file.next_attempt_at = now + policy.backoff(attempt=attempts, retry_after=retry_after)
            file.save(update_fields=["attempts", "answer", "lease_owner", "lease_expires_at",
                                     "next_attempt_at"])
            run.retried += 1
        else:
            _refused(file, answer.message or error or f"HTTP {status}", now=now)
            run.refused += 1
        settle_job(file.job_id, now=now)
    return outcome


def _post(file: BulkFile, conn: TargetConnection, session: requests.Session
          ) -> tuple[int | None, str, str, float | None]:
    """(HTTP status or None, answer text, error, Retry-After seconds) of one upload."""
    body = zlib.decompress(BulkFile.objects.filter(pk=file.pk).values_list("body", flat=True)
                           .get())
    url = bulk_files.bulk_url(conn.effective_base_url, conn.client_code, file.version)
    return call_target(session, "POST", url, conn, data=body,
                       headers={"Content-Type": bulk_files.CONTENT_TYPE},
                       timeout=(setting("CONNECT_TIMEOUT"), UPLOAD_READ_TIMEOUT))


def _accepted(file: BulkFile, status_url: str, *, now: dt.datetime) -> None:
    """Target took the file: it waits for its status, its updates are sent (acknowledged)."""
    file.state, file.accepted_at, file.status_url = F_.ACCEPTED, now, status_url
    file.batch_id = bulk_files.batch_id_of(status_url)
    file.next_poll_at = now + dt.timedelta(seconds=setting("BULK_POLL_FIRST_SECONDS"))
    file.save(update_fields=["attempts", "answer", "lease_owner", "lease_expires_at", "state",
                             "accepted_at", "status_url", "batch_id", "next_poll_at"])
    acknowledge = workflow.sender_transition("acknowledge")
    carried = list(ProfileUpdate.objects.filter(bulk_file=file, status=S.SENDING)
                   .values_list("id", "bulk_line"))
    ProfileUpdate.objects.filter(bulk_file=file, status=S.SENDING).update(
        status=acknowledge.target, acknowledged_at=now, next_attempt_at=None, last_error="",
        attempt_count=F("attempt_count") + 1, attempts_total=F("attempts_total") + 1,
        lease_owner="", lease_expires_at=None)
    audit.record_many(
        [pk for pk, _ in carried], by=None, action=acknowledge, at=now,
        connection_id=file.job.connection_id,
        comments={pk: f"Bulk job #{file.job_id}, file {file.number}, line {line}: Target "
                      "accepted the file." for pk, line in carried},
        changes={"bulk_job": file.job_id, "bulk_file": file.number}, returning=False)


def _refused(file: BulkFile, message: str, *, now: dt.datetime) -> None:
    why = f"Target refused bulk job #{file.job_id}'s file {file.number}: {message}"[
        :LAST_ERROR_CHARS]
    file.state, file.finished_at = F_.REFUSED, now
    file.save(update_fields=["attempts", "answer", "lease_owner", "lease_expires_at", "state",
                             "finished_at"])
    carried = list(ProfileUpdate.objects.filter(bulk_file=file, status=S.SENDING))
    _fail(carried, connection=file.job.connection, now=now, why=why)


def settle_job(job_id: int, *, now: dt.datetime) -> None:
    """The job's state from its files': sending while one waits to upload, processing while
    Target works on one, else the worst end (refused, stuck, timed out) or complete."""
    states = set(BulkFile.objects.filter(job_id=job_id).values_list("state", flat=True))
    J = BulkJob.State
    if F_.PENDING in states:
        state = J.SENDING
    elif F_.ACCEPTED in states:
        state = J.PROCESSING
    else:
        state = next((end for file_state, end in ((F_.REFUSED, J.FAILED), (F_.STUCK, J.STUCK),
                                                  (F_.TIMED_OUT, J.TIMED_OUT))
                      if file_state in states), J.COMPLETE)
    finished = now if state not in (J.SENDING, J.PROCESSING) else None
    BulkJob.objects.filter(pk=job_id).update(state=state, finished_at=finished)
