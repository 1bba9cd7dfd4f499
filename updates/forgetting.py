"""Forgetting a visitor: erase one person here, and file the erasure at Target.

`visitor_forget` (the admin's "Forget a visitor" page, `manage.py forget_visitor`, the notebook)
does, for one connection and identity, in one transaction:

1. checks the right (PERM_FORGET — administrators and data protection officers, not every
   operator) and the input; refuses (`in_flight`) while an update of the visitor is being sent;
2. cancels the visitor's open updates (draft, pending, approved), each with its audit row;
3. purges every stored value and identity of the visitor (purging.py): its updates, their
   reads, attempts' answer bodies, audit values, the admin's log names, and the import jobs
   whose file holds the identity (or whose file is gone but row errors remain) — the identity is replaced by its keyed hash everywhere;
   an update edited from this visitor to another keeps its values but loses the audit rows
   naming the visitor and what was read or answered while it named it; and the visitor's
   lines in every kept bulk file (bulk_purging.py; refused while the visitor is in a bulk
   file Target has not accepted yet);
4. writes a PrivacyRequest (state "local purge done") with the counts per table, which keeps
   the hash on the suppression list (suppression.py) until an administrator lifts it, and a
   connection-level audit row;

and then, after the commit, files the delete with Adobe's Privacy Service (privacy.py). Without
Adobe credentials, or when the filing fails, the local purge stands and the request says what is
left to do by hand.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from collections import Counter
from xml.sax.saxutils import escape

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from . import audit, bulk_purging, open_changes, privacy, purging
from .errors import IN_FLIGHT, Refused, WRONG_STATE, require_perm
from .hashing import keyed_hash
from .models import (AuditEvent, IdentityType, ImportJob, PrivacyRequest, ProfileRead,
                     ProfileUpdate, PurgeReason, SendAttempt, TargetConnection, UpdateStatus)
from .permissions import PERM_FORGET, PERM_LIFT_SUPPRESSION, refusal

S = UpdateStatus
OPEN_STATUSES = (S.DRAFT, S.PENDING, S.APPROVED)
Action = AuditEvent.Action


def _check_input(identity_type: str, identity: str, regulation: str) -> None:
    errors: dict[str, list[str]] = {}
    if identity_type not in IdentityType.values:
        errors["identity_type"] = [f"Choose one of {', '.join(IdentityType.values)}."]
    if not isinstance(identity, str) or not identity.strip():
        errors["identity"] = ["Enter the visitor's identity."]
    if regulation not in PrivacyRequest.Regulation.values:
        errors["regulation"] = [f"Choose one of {', '.join(PrivacyRequest.Regulation.values)}."]
    if errors:
        raise ValidationError(errors)


def visitor_forget(*, connection: TargetConnection, identity_type: str, identity: str,
                   regulation: str, by, file_at_target: bool = True) -> PrivacyRequest:
    """Forget one visitor of `connection`; returns its PrivacyRequest (see the module's
    docstring). `file_at_target=False` leaves Adobe's part to be filed later."""
    require_perm(by, PERM_FORGET, refusal(PERM_FORGET))
    _check_input(identity_type, identity, regulation)
    now = timezone.now()
    with transaction.atomic():
        open_changes.lock_visitors(connection.pk, [(identity_type, identity)])
        updates = list(ProfileUpdate.with_pending_imports.select_for_update()
                       .filter(connection=connection, identity_type=identity_type,
                               identity=identity).order_by("pk"))
        if any(u.status == S.SENDING for u in updates):
            raise Refused("An update of this visitor is being sent right now; forget it again "
                          "in a minute, when the send has ended.", code=IN_FLIGHT)
        if bulk_purging.unaccepted_files(updates).exists():
            raise Refused("An update of this visitor is in a bulk file Target has not accepted "
                          "yet; forget it again when the file is sent.", code=IN_FLIGHT)
        request = PrivacyRequest.objects.create(
            connection=connection, identity_type=identity_type, regulation=regulation,
            identity_hash=keyed_hash(identity), requested_by=by, requested_at=now)
        cancelled = _cancel_open(updates, by=by, request=request, now=now)
        counts = purging.purge_updates([u.pk for u in updates], now=now,
                                       reason=PurgeReason.FORGOTTEN)
        counts[purging.IMPORTS] = _purge_import_jobs(connection, identity, now=now)
        counts.update(_purge_former_naming(connection, identity, skip=updates, now=now))
        counts.update(bulk_purging.forget_in_files(updates, identity, request_id=request.pk,
                                                   now=now))
        request.purge_counts = {k: counts[k] for k in sorted(counts)}
        request.cancelled_updates = cancelled
        request.note = "Local purge done; Adobe's part not filed yet."
        request.save(update_fields=["purge_counts", "cancelled_updates", "note"])
        audit.record(Action.VISITOR_FORGOTTEN, by=by, connection=connection, at=now,
                     comment=f"privacy request #{request.pk} ({regulation})",
                     changes={"privacy_request": request.pk, "purged": request.purge_counts,
                              "cancelled": cancelled})
    if file_at_target:
        request = privacy.privacy_request_file(request=request, identity=identity, by=by)
    return request


def _cancel_open(updates: list[ProfileUpdate], *, by, request: PrivacyRequest,
                 now: dt.datetime) -> int:
    opened = [u for u in updates if u.status in OPEN_STATUSES]
    for update in opened:
        audit.record(Action.CANCELLED_FORGOTTEN, by=by, update=update,
                     connection=update.connection_id, from_status=update.status,
                     to_status=S.CANCELLED, at=now,
                     comment=f"visitor forgotten (privacy request #{request.pk})")
        update.status = S.CANCELLED
        update.next_attempt_at = None
    ProfileUpdate.with_pending_imports.bulk_update(opened, ["status", "next_attempt_at"])
    return len(opened)


def _purge_former_naming(connection: TargetConnection, identity: str, *,
                         skip: list[ProfileUpdate], now: dt.datetime) -> Counter:
    """Updates that named the visitor once and were edited to another identity: their audit
    rows and admin log entries naming it, and what was read or answered while they named it. The
    updates themselves belong to another visitor now and keep their values."""
    named = (AuditEvent.objects.filter(update__connection=connection)
             .exclude(update__in=[u.pk for u in skip])
             .filter(Q(changes__identity__before=identity) | Q(changes__identity__after=identity)))
    last_named: dict[int, dt.datetime] = {}
    for update_id, at in named.values_list("update_id", "at"):
        last_named[update_id] = max(at, last_named.get(update_id, at))
    counts: Counter = Counter()
    counts[purging.AUDIT] = purging.purge_audit(named)
    counts[purging.ADMIN_LOG] = purging.purge_admin_log_naming(list(last_named), identity)
    for update_id, until in last_named.items():
        counts[purging.READS] += purging.purge_reads(
            ProfileRead.objects.filter(update_id=update_id, at__lte=until), now=now)
        counts[purging.ATTEMPTS] += purging.purge_attempts(
            SendAttempt.objects.filter(update_id=update_id, started_at__lte=until), now=now)
    return counts


def _holds(job: ImportJob, identity: str) -> bool:
    """Whether the job's file or its error texts name the identity (an XLSX is unzipped), or
    whose they are cannot be told: the file is gone (an invalid one is not kept) while row
    errors, which may quote a cell of the visitor's row, remain."""
    data = bytes(job.file_data or b"")
    if not data and any(isinstance(e, dict) and e.get("row") is not None for e in job.errors):
        return True
    needles = [identity.encode("utf-8")]
    if job.file_format == "xlsx" and data:
        needles.append(escape(identity).encode("utf-8"))
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                data = b"".join(archive.read(name) for name in archive.namelist()
                                if name.endswith(".xml"))
        except (zipfile.BadZipFile, OSError, RuntimeError):
            return True  # unreadable: purge it rather than keep what we cannot look into
    errors = json.dumps(job.errors, ensure_ascii=False).encode("utf-8")
    return any(needle in data or needle in errors for needle in needles)


def _purge_import_jobs(connection: TargetConnection, identity: str, *, now: dt.datetime) -> int:
    jobs = ImportJob.objects.filter(connection=connection, purged_at__isnull=True)
    holding = [job.pk for job in jobs.only("pk", "file_data", "file_format", "errors").iterator()
               if _holds(job, identity)]
    return purging.purge_import_jobs(ImportJob.objects.filter(pk__in=holding), now=now)


def suppression_lift(*, request: PrivacyRequest, by, comment: str) -> PrivacyRequest:
    """Let the forgotten identity be staged and imported again (the person came back and asked
    to be a customer again). Administrators only, with a reason; audited."""
    require_perm(by, PERM_LIFT_SUPPRESSION, refusal(PERM_LIFT_SUPPRESSION))
    if not isinstance(comment, str) or not comment.strip():
        raise ValidationError({"comment": ["Say why the suppression is lifted."]})
    with transaction.atomic():
        locked = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
        if locked.suppression_lifted_at is not None:
            raise Refused("The suppression was lifted already.", code=WRONG_STATE)
        locked.suppression_lifted_at, locked.suppression_lifted_by = timezone.now(), by
        locked.save(update_fields=["suppression_lifted_at", "suppression_lifted_by"])
        audit.record(Action.SUPPRESSION_LIFTED, by=by, connection=locked.connection_id,
                     comment=comment.strip()[:500], changes={"privacy_request": locked.pk})
    return locked


def purge_totals(requests) -> Counter:
    """The local purge counts of several requests, added up (reports)."""
    totals: Counter = Counter()
    for request in requests:
        totals.update(request.purge_counts or {})
    return totals
