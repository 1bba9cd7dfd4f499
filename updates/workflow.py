"""The life of a staged update: who may move it from which state to which.

    draft ──submit──▶ pending ──approve──▶ approved ──(sender)──▶ sending ──▶ sent
      ▲                  │  └──reject──▶ rejected                    │   └──▶ failed ──requeue──▶ approved
      └──── edit of identity/values (pending, approved, rejected, failed) ◀─┘        (or pending)
    cancel: from draft, pending or approved.

Every function here checks the acting user's permissions itself (the admin hiding a button is not
a control), changes the row and writes its AuditEvent in one transaction, and raises
TransitionRefused — changing nothing — when the move is not allowed. The sender's own moves
(approved → sending → sent/failed/approved) live in sending.py and follow the same rules.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from . import mappings
from .models import AuditEvent, ProfileUpdate, TargetConnection, UpdateStatus
from .validation import reason_errors, validate_update_content

S = UpdateStatus
PERM_STAGE = "updates.add_profileupdate"
PERM_EDIT = "updates.change_profileupdate"
PERM_SUBMIT = "updates.submit_profileupdate"
PERM_APPROVE = "updates.approve_profileupdate"
PERM_CANCEL = "updates.cancel_profileupdate"
PERM_REQUEUE = "updates.requeue_profileupdate"

CONTENT_FIELDS = ("identity_type", "identity", "attributes")
EDITABLE_FIELDS = CONTENT_FIELDS + ("reason", "not_before")
EDITABLE_STATES = {S.DRAFT, S.PENDING, S.APPROVED, S.REJECTED, S.FAILED}
CANCELLABLE_STATES = {S.DRAFT, S.PENDING, S.APPROVED}


class TransitionRefused(ValidationError):
    """A workflow move that is not allowed; `code` tells which rule refused it."""


def _refuse(message: str, code: str) -> TransitionRefused:
    return TransitionRefused(message, code=code)


def _require(user, perm: str, doing: str) -> None:
    if user is None or not user.is_active or not user.has_perm(perm):
        raise _refuse(f"You do not have permission to {doing}.", "permission_denied")


def _json(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def _audit(update: ProfileUpdate, *, by, action: str, from_status: str, comment: str = "",
           changes: dict | None = None, at: dt.datetime | None = None) -> AuditEvent:
    return AuditEvent.objects.create(
        at=at or timezone.now(),
        actor=by,
        action=action,
        update=update,
        connection_id=update.connection_id,
        from_status=from_status,
        to_status=update.status,
        comment=comment,
        changes=changes or {},
    )


def _locked(update: ProfileUpdate) -> ProfileUpdate:
    """The current row, locked for this transaction: decisions are made on fresh state."""
    return ProfileUpdate.objects.select_for_update().get(pk=update.pk)


def _refresh_active(connection: TargetConnection) -> None:
    """The connection's `active` as stored now (the caller's copy may be minutes old)."""
    connection.active = TargetConnection.objects.filter(pk=connection.pk, active=True).exists()


def _refresh_caller_copy(caller: ProfileUpdate, fresh: ProfileUpdate) -> None:
    for f in fresh._meta.concrete_fields:
        setattr(caller, f.attname, getattr(fresh, f.attname))


def check_content(*, connection: TargetConnection, identity_type: str, identity: str,
                  attributes: dict[str, str], connection_mappings=None,
                  reason: str | None = None) -> None:
    """All staging checks: Target's limits, then the connection's mappings (and the reason,
    when one is given)."""
    if connection_mappings is None:
        connection_mappings = mappings.active_mappings(connection)
    rules = {m.target_name: (m.max_length, m.send_empty) for m in connection_mappings}
    errors: dict[str, list[str]] = {}
    try:
        validate_update_content(identity_type=identity_type, identity=identity,
                                attributes=attributes, value_rules=rules)
    except ValidationError as error:
        errors = {k: list(v) for k, v in error.message_dict.items()}
    if "attributes" not in errors and isinstance(attributes, dict):
        if problems := mappings.attribute_errors(connection_mappings, attributes):
            errors["attributes"] = problems
    if not connection.active:
        errors.setdefault("connection", []).append(
            f"Connection {connection.label} is inactive; nothing can be staged for it.")
    if reason is not None and (problems := reason_errors(reason)):
        errors["reason"] = problems
    if errors:
        raise ValidationError(errors)


# --- staging and editing ---------------------------------------------------------------------

def update_stage(*, connection: TargetConnection, identity_type: str, identity: str,
                 attributes: dict[str, str], by, reason: str = "",
                 not_before: dt.datetime | None = None) -> ProfileUpdate:
    """Create a draft. Raises ValidationError (per field) and saves nothing if anything is wrong."""
    _require(by, PERM_STAGE, "stage profile updates")
    now = timezone.now()
    with transaction.atomic():
        # Checked inside the saving transaction against locked mappings: what is saved is what
        # passed the rules as they are when it is saved, not as they were when the form loaded.
        _refresh_active(connection)
        check_content(connection=connection, identity_type=identity_type, identity=identity,
                      attributes=attributes, reason=reason,
                      connection_mappings=mappings.active_mappings(connection, lock=True))
        update = ProfileUpdate.objects.create(
            connection=connection, identity_type=identity_type, identity=identity,
            attributes=dict(attributes), reason=reason, not_before=not_before,
            status=S.DRAFT, created_by=by, created_at=now, last_edited_by=by, last_edited_at=now,
        )
        _audit(update, by=by, action="staged", from_status="", at=now, changes={
            f: {"before": None, "after": _json(getattr(update, f))} for f in EDITABLE_FIELDS})
    return update


def update_edit(*, update: ProfileUpdate, by, **new_values: Any) -> ProfileUpdate:
    """Change fields of an update. Changing its identity or attributes after submission sends it
    back to draft and clears its approval; sent, sending and cancelled updates never change."""
    _require(by, PERM_EDIT, "edit profile updates")
    unknown = set(new_values) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        current = _locked(update)
        if current.status not in EDITABLE_STATES:
            raise _refuse(f"Update #{current.pk} is {current.get_status_display().lower()} and can no "
                          "longer be changed.", "immutable")
        changes = {f: {"before": _json(getattr(current, f)), "after": _json(v)}
                   for f, v in new_values.items() if getattr(current, f) != v}
        if not changes:
            _refresh_caller_copy(update, current)
            return update
        merged = {f: new_values.get(f, getattr(current, f)) for f in CONTENT_FIELDS}
        if any(f in changes for f in CONTENT_FIELDS):
            check_content(connection=current.connection, **merged,
                          reason=new_values["reason"] if "reason" in changes else None,
                          connection_mappings=mappings.active_mappings(current.connection,
                                                                       lock=True))
        elif "reason" in changes and (problems := reason_errors(new_values["reason"])):
            # A reason-only edit is not blocked by content that later became invalid.
            raise ValidationError({"reason": problems})
        from_status = current.status
        for f, v in new_values.items():
            setattr(current, f, v)
        current.last_edited_by = by
        current.last_edited_at = timezone.now()
        fields = list(new_values) + ["last_edited_by", "last_edited_at"]
        if any(f in changes for f in CONTENT_FIELDS) and current.status != S.DRAFT:
            current.status = S.DRAFT
            _clear_decision(current)
            fields += ["status", "decided_by", "decided_at", "decision_comment", "approved_hash",
                       "submitted_at"]
        current.save(update_fields=fields)
        _audit(current, by=by, action="edited", from_status=from_status, changes=changes,
               at=current.last_edited_at)
    _refresh_caller_copy(update, current)
    return update


def _clear_decision(update: ProfileUpdate) -> None:
    update.decided_by = None
    update.decided_at = None
    update.decision_comment = ""
    update.approved_hash = ""
    update.submitted_at = None


# --- transitions -----------------------------------------------------------------------------

def _transition(update: ProfileUpdate, *, by, action: str, allowed_from: set[str], to: str,
                comment: str = "", mutate: Callable[[ProfileUpdate], list[str]] | None = None
                ) -> ProfileUpdate:
    with transaction.atomic():
        current = _locked(update)
        if current.status not in allowed_from:
            raise _refuse(
                f"Update #{current.pk} is {current.get_status_display().lower()}; it cannot be "
                f"{action} from that state.", "wrong_state")
        from_status = current.status
        fields = mutate(current) if mutate else []
        current.status = to
        current.save(update_fields=["status", *fields])
        _audit(current, by=by, action=action, from_status=from_status, comment=comment)
    _refresh_caller_copy(update, current)
    return update


def _four_eyes(update: ProfileUpdate, by) -> None:
    """Nobody decides on an update they created or last edited — superusers included."""
    if by.pk in (update.created_by_id, update.last_edited_by_id):
        raise _refuse(
            f"Update #{update.pk}: you created or last edited it, so someone else must decide "
            "on it (four-eyes rule).", "own_update")


def update_submit(*, update: ProfileUpdate, by, comment: str = "") -> ProfileUpdate:
    _require(by, PERM_SUBMIT, "submit profile updates")

    def mutate(u: ProfileUpdate) -> list[str]:
        u.submitted_at = timezone.now()
        return ["submitted_at"]

    return _transition(update, by=by, action="submitted", allowed_from={S.DRAFT}, to=S.PENDING,
                       comment=comment, mutate=mutate)


def _decide(update: ProfileUpdate, *, by, action: str, to: str, comment: str) -> ProfileUpdate:
    _require(by, PERM_APPROVE, "approve or reject profile updates")

    def mutate(u: ProfileUpdate) -> list[str]:
        _four_eyes(u, by)
        u.decided_by = by
        u.decided_at = timezone.now()
        u.decision_comment = comment
        u.approved_hash = u.content_hash if to == S.APPROVED else ""
        u.attempt_count = 0
        u.next_attempt_at = None
        return ["decided_by", "decided_at", "decision_comment", "approved_hash", "attempt_count",
                "next_attempt_at"]

    return _transition(update, by=by, action=action, allowed_from={S.PENDING}, to=to,
                       comment=comment, mutate=mutate)


def update_approve(*, update: ProfileUpdate, by, comment: str = "") -> ProfileUpdate:
    return _decide(update, by=by, action="approved", to=S.APPROVED, comment=comment)


def update_reject(*, update: ProfileUpdate, by, comment: str) -> ProfileUpdate:
    # Permission first: someone who may not decide learns that, not that a comment is missing.
    _require(by, PERM_APPROVE, "approve or reject profile updates")
    if not (comment or "").strip():
        raise _refuse("A rejection needs a comment saying why.", "comment_required")
    return _decide(update, by=by, action="rejected", to=S.REJECTED, comment=comment.strip())


def update_cancel(*, update: ProfileUpdate, by, comment: str = "") -> ProfileUpdate:
    _require(by, PERM_CANCEL, "cancel profile updates")
    return _transition(update, by=by, action="cancelled", allowed_from=CANCELLABLE_STATES,
                       to=S.CANCELLED, comment=comment)


def update_requeue(*, update: ProfileUpdate, by, comment: str = "") -> ProfileUpdate:
    """Failed → approved with a fresh attempt budget if the approved content is unchanged;
    otherwise back to pending approval, because what would be sent is not what was approved."""
    _require(by, PERM_REQUEUE, "re-queue failed profile updates")
    with transaction.atomic():
        current = _locked(update)
        keeps_approval = bool(current.approved_hash) and current.approved_hash == current.content_hash
        to = S.APPROVED if keeps_approval else S.PENDING

        def mutate(u: ProfileUpdate) -> list[str]:
            u.attempt_count = 0
            u.next_attempt_at = None
            u.last_error = ""
            fields = ["attempt_count", "next_attempt_at", "last_error"]
            if not keeps_approval:
                _clear_decision(u)
                u.submitted_at = timezone.now()
                fields += ["decided_by", "decided_at", "decision_comment", "approved_hash",
                           "submitted_at"]
            return fields

        return _transition(update, by=by, action="requeued", allowed_from={S.FAILED}, to=to,
                           comment=comment, mutate=mutate)


# --- many at once (admin actions, queue, commands) -------------------------------------------

@dataclass
class BulkOutcome:
    done: list[ProfileUpdate] = field(default_factory=list)
    refused: list[tuple[ProfileUpdate, str]] = field(default_factory=list)


def apply_to_each(service: Callable[..., ProfileUpdate], updates: Iterable[ProfileUpdate], *,
                  by, **kwargs: Any) -> BulkOutcome:
    """Run one transition per update, each in its own transaction, collecting refusals."""
    outcome = BulkOutcome()
    for update in updates:
        try:
            outcome.done.append(service(update=update, by=by, **kwargs))
        except ValidationError as error:
            outcome.refused.append((update, " ".join(error.messages)))
    return outcome


def updates_stage_many(*, connection: TargetConnection, rows: list[dict[str, Any]], by,
                       submit: bool = False, reason: str = "",
                       checked_against: str | None = None, import_job=None) -> int:
    """Create many drafts (optionally submitted) in one transaction, with their audit rows.

    Nothing is saved that was not checked against the mappings as they are when it is saved:
    inside the transaction the connection's active mappings are locked and re-read. A caller
    that checked every row with check_content passes the mappings' fingerprint it checked
    against (`checked_against`, mappings.mappings_fingerprint); if the mappings changed since,
    the whole call is refused (code "mappings_changed"). Without it, every row is checked here.
    With `import_job`, the rows are written not yet live (ProfileUpdate.import_pending): the
    import makes them live together when it ends (importing.py).
    """
    _require(by, PERM_STAGE, "stage profile updates")
    if submit:
        _require(by, PERM_SUBMIT, "submit profile updates")
    # Cheap, and the one column check_content does not cover; PostgreSQL would otherwise fail
    # the whole batch on an over-long reason that SQLite silently stores.
    if problems := reason_errors(reason):
        raise ValidationError({"reason": problems})
    for number, r in enumerate(rows, start=1):
        if "reason" in r and (problems := reason_errors(r["reason"])):
            raise ValidationError({"reason": [f"Row {number}: {p}" for p in problems]})
    now = timezone.now()
    status = S.PENDING if submit else S.DRAFT
    created = 0
    with transaction.atomic():
        _refresh_active(connection)
        if not connection.active:
            raise ValidationError({"connection": [f"Connection {connection.label} is inactive."]})
        locked = mappings.active_mappings(connection, lock=True)
        if checked_against is None:
            for number, r in enumerate(rows, start=1):
                try:
                    check_content(connection=connection, identity_type=r["identity_type"],
                                  identity=r["identity"], attributes=r["attributes"],
                                  connection_mappings=locked)
                except ValidationError as error:
                    raise ValidationError([f"Row {number}: {m}" for m in error.messages]) from None
        elif mappings.mappings_fingerprint(locked) != checked_against:
            raise ValidationError(
                f"The attribute mappings of {connection.label} changed after these rows were "
                "checked; check them again against the mappings as they are now.",
                code="mappings_changed")
        for start in range(0, len(rows), 2000):
            chunk = rows[start:start + 2000]
            objs = ProfileUpdate.objects.bulk_create([
                ProfileUpdate(
                    connection=connection, identity_type=r["identity_type"], identity=r["identity"],
                    attributes=r["attributes"], reason=r.get("reason", reason),
                    not_before=r.get("not_before"), status=status, created_by=by, created_at=now,
                    last_edited_by=by, last_edited_at=now, submitted_at=now if submit else None,
                    import_pending=import_job)
                for r in chunk
            ])
            AuditEvent.objects.bulk_create([
                AuditEvent(at=now, actor=by, action="imported", update=u, connection=connection,
                           from_status="", to_status=status,
                           changes={"identity_type": {"before": None, "after": u.identity_type},
                                    "identity": {"before": None, "after": u.identity},
                                    "attributes": {"before": None, "after": u.attributes}})
                for u in objs
            ])
            created += len(objs)
    return created
