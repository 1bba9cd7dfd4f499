"""Adobe's part of forgetting a visitor: file a Privacy Service delete, follow it to the end.

A PrivacyRequest (models.py) moves:

    local_done ──file──▶ filed ──poll──▶ processing ──poll──▶ complete | not_found | error
        │                  └──────────────poll──────────────▶ complete | not_found | error
        └── no Adobe credentials, or the filing failed: stays local_done (or error) with a note
            saying Target's part must be filed by hand; a person files it again with the
            identity (`privacy_request_file`, checked against the kept hash). Nothing here is
            retried blindly.

A filing claims the request (`filing_started_at`) while its calls are on their way: a second
filing meanwhile is refused, since each one opens a job at Adobe. A filing whose answer never
came (a timeout after the call went out, a process that died and left its claim) may have opened
a job all the same: the request says so, and the next filing's audit row names it
(`unanswered_filing_at`). A status read claims it the same way (`poll_started_at`): the
schedule and an event reading the same job at once read it once.

Polling (`privacy_requests_poll`, django-q2 every hour; `manage.py poll_privacy_requests`) reads
a job after PROFILEOPS_PRIVACY_POLL_HOURS hours in turn (1, 4, 12, 24, then every 24 by
default) and never more than PROFILEOPS_PRIVACY_POLLS_PER_DAY reads a UTC day in all: Adobe's
job endpoints are "not meant for regular polling". Adobe's I/O Events notifications can replace
it: the hook `/privacy/adobe-events/<PROFILEOPS_PRIVACY_EVENTS_TOKEN>/` (privacy_events.py)
takes a notification, finds the job ids in it and reads those jobs now — it never trusts the
notification's own words for the state.

An answer of "error" (or one that cannot be read) puts the request in `error`: the
privacy-error alert rule of the connection fires (alerts.py) and a log line names the request,
never the identity. Adobe's answers are kept on the request, capped in length, as evidence.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, NamedTuple

import requests
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from urllib3.exceptions import NewConnectionError

from . import audit, credentials, delivery, privacy_service, target
from .conf import setting
from .errors import IN_FLIGHT, NO_CREDENTIALS, Refused, WRONG_STATE, require_perm
from .hashing import keyed_hash
from .models import PrivacyRequest
from .permissions import PERM_FORGET, refusal

logger = logging.getLogger(__name__)

State = PrivacyRequest.State
FILABLE = (State.LOCAL_DONE, State.ERROR)
FINAL = (State.COMPLETE, State.NOT_FOUND, State.ERROR)
BY_HAND = ("Local purge done; Target's part must be filed by hand: {why} File it from this "
           "request's page (with the identity) once that is fixed, or in Adobe's Privacy "
           "Service UI.")
# At most this much of an answer is read: Adobe's job answers are a few hundred bytes.
ANSWER_BODY_LIMIT = 64 * 1024
UNANSWERED = ("Local purge done; the filing got no answer ({why}), and Adobe may have opened a job "
              "all the same: look for the job key profileops-{pk} in Adobe's Privacy Service UI "
              "before filing it again from this request's page.")
# A filing's claim lasts at least this long, and longer than its two calls (IMS token, filing)
# can take; an older claim was left by a process that died mid-filing.
FILING_CLAIM_AT_LEAST = dt.timedelta(minutes=10)
FILED_FIELDS = ["adobe_answers", "state", "adobe_job_id", "filed_at", "filed_by", "finished_at",
                "next_poll_at", "note", "filing_started_at"]
POLLED_FIELDS = ["adobe_answers", "polls", "state", "finished_at", "next_poll_at", "note",
                 "poll_started_at"]


def _audit(request: PrivacyRequest, *, action: str, by=None, **changes: Any) -> None:
    audit.record(action, by=by, connection=request.connection_id,
                 comment=f"privacy request #{request.pk}",
                 changes={"privacy_request": request.pk, **changes})


def _adobe_headers(connection) -> dict[str, str]:
    """The headers of a Privacy Service call, with an IMS token of the connection's Adobe
    credentials (credentials.py); Refused (`no_credentials`) without credentials or org."""
    if not connection.adobe_org_id:
        raise Refused(f"{connection.label} has no IMS org ID.", code=NO_CREDENTIALS)
    token = credentials.ims_access_token(connection)
    return {"Authorization": f"Bearer {token}", "x-api-key": connection.adobe_client_id,
            "x-gw-ims-org-id": connection.adobe_org_id}


def filing_claim() -> dt.timedelta:
    """How long a claim of a call to Adobe (a filing, a status read) holds off another one: past
    it, the claim was left by a process that died."""
    call = dt.timedelta(seconds=setting("CONNECT_TIMEOUT") + setting("READ_TIMEOUT"))
    return max(FILING_CLAIM_AT_LEAST, 2 * call + dt.timedelta(minutes=1))


def _jobs_url() -> str:
    return setting("PRIVACY_SERVICE_URL").rstrip("/") + privacy_service.JOBS_PATH


def _record(request: PrivacyRequest, *, kind: str, http_status: int | None,
            status: str = "", message: str = "", code: str = "", job_id: str = "",
            **flags: bool) -> None:
    request.adobe_answers = [*request.adobe_answers, {
        "at": timezone.now().isoformat(), "kind": kind, "http_status": http_status,
        "status": status[:100], "message": message[:300], "code": code[:64],
        **({"job_id": job_id} if job_id else {}), **flags}]


def _fail(request: PrivacyRequest, why: str) -> None:
    request.state = State.ERROR
    request.note = why
    request.finished_at = timezone.now()
    request.next_poll_at = None
    logger.error("privacy request #%s: %s", request.pk, why)


def privacy_request_file(*, request: PrivacyRequest, identity: str, by) -> PrivacyRequest:
    """File the delete at Adobe for a request whose local purge is done (or whose filing
    failed). `identity` must be the forgotten one: it is checked against the kept hash, and is
    sent to Adobe only — never stored. One filing at a time: a second one while the first is on
    its way is refused (it would open a second job at Adobe)."""
    require_perm(by, PERM_FORGET, refusal(PERM_FORGET))
    if keyed_hash(identity) != request.identity_hash:
        raise ValidationError({"identity": ["This is not the identity this request forgot."]})
    request, left_claim = _claim_filing(request)
    earlier = left_claim or _unanswered_filing(request)
    try:
        headers = _adobe_headers(request.connection)
        body = privacy_service.job_body(
            org_id=headers["x-gw-ims-org-id"], key=f"profileops-{request.pk}",
            identity_type=request.identity_type, identity=identity, regulation=request.regulation)
    except Refused as refused:
        return _not_filed(request, left_claim, note=BY_HAND.format(why=refused.message))
    except BaseException:
        _not_filed(request, left_claim)
        raise
    # From here on the claim stays if this process dies: the filing may have reached Adobe.
    posted = _call("POST", _jobs_url(), headers, body, secrets=_secrets(request, headers))
    return _filed(request, posted, by=by, earlier=earlier)


def _claim_filing(request: PrivacyRequest) -> tuple[PrivacyRequest, dt.datetime | None]:
    """The request, claimed for this filing in a short transaction of its own, and the claim a
    dead process left on it (None if there was none)."""
    now = timezone.now()
    with transaction.atomic():
        request = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
        if request.state not in FILABLE:
            raise Refused(f"The request is {request.get_state_display().lower()}; it is filed "
                          "already.", code=WRONG_STATE)
        left_claim = request.filing_started_at
        if left_claim is not None and left_claim > now - filing_claim():
            raise Refused("This request is being filed with Adobe right now; its answer will "
                          "show on the request in a moment.", code=IN_FLIGHT)
        request.filing_started_at = now
        request.save(update_fields=["filing_started_at"])
    return request, left_claim


def _unanswered_filing(request: PrivacyRequest) -> dt.datetime | None:
    """When the request's last filing went out without an answer (it may have opened a job)."""
    filings = [answer for answer in request.adobe_answers if answer.get("kind") == "file"]
    if filings and filings[-1].get("unanswered"):
        return dt.datetime.fromisoformat(filings[-1]["at"])
    return None


def _not_filed(request: PrivacyRequest, left_claim: dt.datetime | None, *,
               note: str | None = None) -> PrivacyRequest:
    """End a filing that never called Adobe: its claim given back, and a claim a dead process
    left put back (it names a filing that may have reached Adobe; it holds nobody off)."""
    request.filing_started_at = left_claim
    fields = ["filing_started_at"]
    if note is not None:
        request.note = note
        fields.append("note")
    request.save(update_fields=fields)
    return request


def _secrets(request: PrivacyRequest, headers: dict) -> tuple[str, ...]:
    """What Adobe's answers must not carry back into storage: the connection's secrets and this
    call's IMS token."""
    return (*request.connection.secrets(), headers["Authorization"].removeprefix("Bearer "))


class _Answer(NamedTuple):
    status: int | None  # None: no answer
    payload: Any  # the JSON answer, None if it was not JSON
    error: str  # why no answer came
    maybe_received: bool  # False only when Adobe cannot have read the call (no connection)


def _call(method: str, url: str, headers: dict, body: dict | None = None, *,
          secrets: tuple[str, ...] = ()) -> _Answer:
    """One call to the Privacy Service, within one wall-clock deadline, at most
    ANSWER_BODY_LIMIT of the answer read, no redirect: nothing Adobe's side sends back can hold
    a web request or the poll (deadlines.py). The answer comes back with `secrets` redacted."""
    try:
        reply = delivery.call_bounded(
            method, url, json=body, headers=headers, limit=ANSWER_BODY_LIMIT,
            timeout=(setting("CONNECT_TIMEOUT"), setting("READ_TIMEOUT")))
    except requests.RequestException as error:
        return _Answer(None, None, f"Adobe could not be reached ({type(error).__name__}).",
                       maybe_received=not _never_connected(error))
    payload = target.json_from_outside(target.from_outside(reply.text, secrets))
    return _Answer(reply.status, payload, "", True)


def _never_connected(error: requests.RequestException) -> bool:
    """The call failed before a connection to Adobe existed: nothing of it was sent."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(error, requests.ConnectionError) and isinstance(reason, NewConnectionError)


def _filed(request: PrivacyRequest, posted: _Answer, *, by,
           earlier: dt.datetime | None = None) -> PrivacyRequest:
    http_status, answer, error, maybe_received = posted
    job_id = privacy_service.created_job_id(answer) if http_status in (200, 201, 202) else ""
    unanswered = http_status is None and maybe_received
    with transaction.atomic():
        # Only this filing's fields are written: a suppression lifted meanwhile stays lifted.
        request = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
        _record(request, kind="file", http_status=http_status, job_id=job_id,
                message=error or ("" if job_id else "No job id in Adobe's answer."),
                **({"unanswered": True} if unanswered else {}))
        if job_id:
            now = timezone.now()
            request.state, request.adobe_job_id = State.FILED, job_id
            request.filed_at, request.filed_by = now, by
            request.finished_at = None  # filed again after an error
            request.next_poll_at = now + _poll_delay(0)
            request.note = "Filed with Adobe; waiting for Target's answer."
        elif unanswered:
            _fail(request, UNANSWERED.format(why=error.removesuffix("."), pk=request.pk))
        else:
            _fail(request, BY_HAND.format(why=error or f"Adobe answered HTTP {http_status} "
                                          "without a job id."))
        request.filing_started_at = None
        request.save(update_fields=FILED_FIELDS)
        _audit(request, action="privacy_filed" if job_id else "privacy_error", by=by,
               state=request.state, job_id=job_id, http_status=http_status,
               **({"unanswered_filing_at": earlier.isoformat()} if earlier else {}))
    return request


def _poll_delay(polls: int) -> dt.timedelta:
    hours = setting("PRIVACY_POLL_HOURS")
    return dt.timedelta(hours=hours[min(polls, len(hours) - 1)])


def _polls_today(now: dt.datetime) -> int:
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0).isoformat()
    recent = PrivacyRequest.objects.filter(polls__gt=0).exclude(
        state__in=FINAL, finished_at__lt=now - dt.timedelta(days=1))
    return sum(1 for request in recent.only("adobe_answers") for answer in request.adobe_answers
               if answer.get("kind") == "status" and answer.get("at", "") >= midnight)


def privacy_requests_poll(*, now: dt.datetime | None = None, job_ids: list[str] | None = None,
                          due_only: bool = True) -> int:
    """Read the status of the filed jobs that are due (every open one with `due_only=False`;
    those of `job_ids`, from a notification, due or not), within the daily cap; returns how
    many were read."""
    now = now or timezone.now()
    room = setting("PRIVACY_POLLS_PER_DAY") - _polls_today(now)
    due = PrivacyRequest.objects.filter(state__in=PrivacyRequest.OPEN_STATES)
    if job_ids is not None:
        due = due.filter(adobe_job_id__in=job_ids)
    elif due_only:
        due = due.filter(next_poll_at__lte=now)
    read = 0
    for request in due.order_by("next_poll_at", "pk")[:max(room, 0)]:
        if not _poll_claimed(request):
            continue  # another poll (the schedule, an event) is reading this job right now
        try:
            headers = _adobe_headers(request.connection)
        except Refused as refused:
            # Only while the job is still open: an event's read may have ended it meanwhile.
            PrivacyRequest.objects.filter(
                pk=request.pk, state__in=PrivacyRequest.OPEN_STATES,
                adobe_job_id=request.adobe_job_id).update(
                note=f"Cannot read Adobe's answer: {refused.message}",
                next_poll_at=now + _poll_delay(request.polls))
            PrivacyRequest.objects.filter(pk=request.pk).update(poll_started_at=None)
            continue
        job_url = f"{_jobs_url()}/{requests.utils.quote(request.adobe_job_id, safe='')}"
        _polled(request, _call("GET", job_url, headers, secrets=_secrets(request, headers)),
                now=now)
        read += 1
    if room <= 0 and due.exists():
        logger.warning("privacy requests: the daily cap of %s status reads is reached; the rest "
                       "waits for tomorrow", setting("PRIVACY_POLLS_PER_DAY"))
    return read


def _poll_claimed(request: PrivacyRequest) -> bool:
    """Take the job's status read for this poll, unless another poll holds it — one left by a
    process that died holds it for the filing claim's time (filing_claim())."""
    now = timezone.now()
    return bool(PrivacyRequest.objects.filter(
        Q(poll_started_at__isnull=True) | Q(poll_started_at__lt=now - filing_claim()),
        pk=request.pk, state__in=PrivacyRequest.OPEN_STATES,
        adobe_job_id=request.adobe_job_id).update(poll_started_at=now))


def _polled(request: PrivacyRequest, got: _Answer, *, now: dt.datetime) -> None:
    http_status, answer, error, _ = got
    with transaction.atomic():
        job_id = request.adobe_job_id
        request = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
        request.poll_started_at = None
        if request.state not in PrivacyRequest.OPEN_STATES or request.adobe_job_id != job_id:
            request.save(update_fields=["poll_started_at"])
            return  # the job ended meanwhile (a claim that outlived its time, a filing)
        request.polls += 1
        if http_status in (400, 404):
            _record(request, kind="status", http_status=http_status, message=f"HTTP {http_status}")
            _fail(request, f"Adobe does not know job {request.adobe_job_id} (HTTP {http_status}).")
            request.save(update_fields=POLLED_FIELDS)
            _audit(request, action="privacy_error", state=request.state, http_status=http_status)
            return
        if http_status != 200:
            # Not an answer about the job (unreachable, 5xx, 401): read again later, as planned.
            _record(request, kind="status", http_status=http_status,
                    message=error or f"HTTP {http_status}")
            request.next_poll_at = now + _poll_delay(request.polls)
            request.save(update_fields=POLLED_FIELDS)
            return
        status = privacy_service.job_status(answer)
        _record(request, kind="status", http_status=http_status, status=status.status,
                message=status.message, code=status.code)
        before = request.state
        request.state = status.state
        if status.state in FINAL:
            request.finished_at, request.next_poll_at = now, None
            request.note = {State.COMPLETE: "Complete: Target deleted the visitor.",
                            State.NOT_FOUND: "Target held nothing for this visitor.",
                            }.get(status.state, "")
            if status.state == State.ERROR:
                _fail(request, f"Adobe answered error: {status.message or status.status}")
        else:
            request.next_poll_at = now + _poll_delay(request.polls)
        request.save(update_fields=POLLED_FIELDS)
        if request.state != before:
            _audit(request, action="privacy_" + request.state, state=request.state)
