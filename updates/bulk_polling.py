"""Follow accepted bulk files at Target until they are complete or stuck.

`bulk_poll_due` (the "Send and poll bulk files" schedule) calls each accepted file's batchStatus
URL — exactly as Target gave it, with ``showDetails=true``, only to a Target edge host
(bulk_files.status_url_problem) — at the shared bulk call rate (bulk_pacing.py), first
BULK_POLL_FIRST_SECONDS after the upload, then with a delay doubling up to BULK_POLL_MAX_SECONDS.
Every poll is kept (BulkCall) with its status and counts; the file keeps the latest.

- ``complete``: the file is done; its updates' first read-back is brought forward to now, so
  verification (verification.py) tells each row verified or not applied without waiting for the
  single route's first-check delay.
- ``stuck``: Target could not complete it; the file ends ``stuck`` (an alert rule of kind
  "bulk_job" tells people; the rows are still read back and can be re-queued single).
- still ``incomplete`` BULK_TIMEOUT_HOURS after Target accepted it: ``timed_out``, likewise.
"""

from __future__ import annotations

import datetime as dt
import logging

import requests
from django.db import transaction
from django.utils import timezone

from . import bulk_files, bulk_pacing, delivery
from .bulk_sending import SLOT_WAIT_SECONDS, call_target, settle_job
from .conf import setting
from .models import BulkCall, BulkFile, ProfileUpdate, UpdateStatus, VerificationState

logger = logging.getLogger(__name__)
F_ = BulkFile.State


def bulk_poll_due(*, now: dt.datetime | None = None, session: requests.Session | None = None,
                  slot_wait: float = SLOT_WAIT_SECONDS) -> int:
    """Poll every accepted file whose poll is due; returns the polls made."""
    now = now or timezone.now()
    due = list(BulkFile.objects.select_related("job__connection").defer("body")
               .filter(state=F_.ACCEPTED, next_poll_at__lte=now, job__connection__active=True)
               .order_by("next_poll_at", "id"))
    own_session = session is None
    session = session or delivery.make_session(pool_size=1)
    polls = 0
    try:
        for file in due:
            outcome = poll_file(file=file, now=now, session=session, slot_wait=slot_wait)
            polls += outcome != "throttled"
    finally:
        if own_session:
            session.close()
    return polls


def poll_file(*, file: BulkFile, now: dt.datetime, session: requests.Session,
              slot_wait: float = SLOT_WAIT_SECONDS) -> str:
    """One poll of one accepted file; returns Target's status ("" when none could be read),
    or "throttled" when no call was free."""
    conn = file.job.connection
    problem = bulk_files.status_url_problem(file.status_url, conn.effective_base_url)
    status_code, text, error = None, "", ""
    if problem:
        error = f"batchStatus URL not called: {problem}"
    elif not bulk_pacing.take_call(conn.pk, wait=slot_wait):
        return "throttled"
    else:
        status_code, text, error = _get(bulk_files.with_details(file.status_url), conn, session)
    status, counts = bulk_files.read_status_answer(text) if status_code == 200 else ("", {})
    with transaction.atomic():
        BulkCall.objects.create(
            connection=conn, file=file, kind=BulkCall.Kind.STATUS, at=now,
            http_status=status_code, error=error[:300], target_status=status[:20], counts=counts,
            answer=text[:bulk_files.ANSWER_KEEP_CHARS])  # redacted by call_target
        _apply_status(file, status, counts, now=now)
        settle_job(file.job_id, now=now)
    return status


def _get(url: str, conn, session: requests.Session) -> tuple[int | None, str, str]:
    status, text, error, _ = call_target(
        session, "GET", url, conn, headers={},
        timeout=(setting("CONNECT_TIMEOUT"), setting("READ_TIMEOUT")))
    return status, text, error


def _apply_status(file: BulkFile, status: str, counts: dict, *, now: dt.datetime) -> None:
    file.polls += 1
    if status:
        file.target_status = status[:20]
    if counts:
        file.counts = counts
    timeout = dt.timedelta(hours=setting("BULK_TIMEOUT_HOURS"))
    if status == "complete":
        file.state, file.finished_at, file.next_poll_at = F_.COMPLETE, now, None
        _verify_now(file, now=now)
    elif status == "stuck":
        file.state, file.finished_at, file.next_poll_at = F_.STUCK, now, None
        _verify_now(file, now=now)
    elif file.accepted_at is not None and now - file.accepted_at >= timeout:
        file.state, file.finished_at, file.next_poll_at = F_.TIMED_OUT, now, None
        _verify_now(file, now=now)
    else:
        delay = min(setting("BULK_POLL_MAX_SECONDS"),
                    setting("BULK_POLL_FIRST_SECONDS") * 2 ** file.polls)
        file.next_poll_at = now + dt.timedelta(seconds=delay)
    file.save(update_fields=["polls", "target_status", "counts", "state", "finished_at",
                             "next_poll_at"])
    if file.state in (F_.STUCK, F_.TIMED_OUT):
        logger.warning("bulk job %s file %s ended %s at Target", file.job_id, file.number,
                       file.state)


def _verify_now(file: BulkFile, *, now: dt.datetime) -> None:
    """Target is done with the file: read its rows back now rather than at the single route's
    first-check delay (the checks after it keep the usual schedule)."""
    ProfileUpdate.objects.filter(
        bulk_file=file, status=UpdateStatus.SENT, verification_state=VerificationState.PENDING,
        verification_checks=0).update(verification_next_at=now)
