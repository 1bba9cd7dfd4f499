"""The life of a staged update: who may move it from which state to which.

The moves are declared once, in TRANSITIONS below (the README's workflow table is checked against
it by tests/services/test_workflow.py). From that table come what each service here allows, what
the admin offers a user (`available_transitions`), and the sender's moves (sending.py checks them
with `sender_transition`). Every state change writes its audit rows with `audit.record_many`.

Every function here checks the acting user's permissions itself (the admin hiding a button is not
a control), changes the row and writes its AuditEvent in one transaction, and raises `Refused`
(updates/errors.py) — changing nothing — when the move is not allowed.

Four eyes: nobody approves or rejects an update whose content they wrote — its creator and
everyone who ever changed its identity type, identity or attributes (`ProfileUpdate.
content_authors`), superusers included. Editing only the reason or the earliest send time is not
writing the content.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from . import audit, mappings, open_changes, permissions, rows, suppression
from .errors import (COMMENT_REQUIRED, IMMUTABLE, IN_FLIGHT, OWN_UPDATE, PERMISSION_DENIED, PURGED,
                     STALE, WRONG_STATE, Refused, require_perm)
from .models import AuditEvent, ProfileUpdate, TargetConnection, UpdateStatus
from .permissions import (PERM_APPROVE, PERM_CANCEL, PERM_EDIT, PERM_IMPORT, PERM_REQUEUE,
                          PERM_STAGE, PERM_SUBMIT)
from .validation import comment_errors, reason_errors, validate_update_content

S = UpdateStatus
A = AuditEvent.Action
SENDER = "sender"  # the sending service (sending.py), acting as nobody

CONTENT_FIELDS = ("identity_type", "identity", "attributes")
EDITABLE_FIELDS = CONTENT_FIELDS + ("reason", "not_before")


# --- the declared workflow -------------------------------------------------------------------

@dataclass(frozen=True)
class Transition:
    """One move of an update: from which states, to which, who may make it, how it is audited."""

    name: str
    sources: tuple[str, ...]  # () for the moves that create an update
    target: str
    who: tuple[str, ...]  # permissions the actor needs, all of them; (SENDER,) for the sender
    action: AuditEvent.Action  # the audit row written for it
    label: str = ""  # the admin's button, for the moves people make one update at a time
    four_eyes: bool = False  # refused to the update's content authors

    @property
    def by_sender(self) -> bool:
        return self.who == (SENDER,)

    def allows(self, status: str) -> bool:
        return status in self.sources


_EDITABLE = (S.PENDING, S.APPROVED, S.REJECTED, S.FAILED)

TRANSITIONS: tuple[Transition, ...] = (
    Transition("stage", (), S.DRAFT, (PERM_STAGE,), A.STAGED),
    Transition("import", (), S.DRAFT, (PERM_IMPORT, PERM_STAGE), A.IMPORTED),
    Transition("import_and_submit", (), S.PENDING, (PERM_IMPORT, PERM_STAGE, PERM_SUBMIT),
               A.IMPORTED),
    Transition("submit", (S.DRAFT,), S.PENDING, (PERM_SUBMIT,), A.SUBMITTED,
               "Submit for approval"),
    Transition("approve", (S.PENDING,), S.APPROVED, (PERM_APPROVE,), A.APPROVED, "Approve",
               four_eyes=True),
    Transition("reject", (S.PENDING,), S.REJECTED, (PERM_APPROVE,), A.REJECTED, "Reject",
               four_eyes=True),
    Transition("edit_content", _EDITABLE, S.DRAFT, (PERM_EDIT,), A.EDITED),
    Transition("requeue", (S.FAILED,), S.APPROVED, (PERM_REQUEUE,), A.REQUEUED, "Re-queue"),
    Transition("requeue_for_approval", (S.FAILED,), S.PENDING, (PERM_REQUEUE,), A.REQUEUED,
               "Re-queue for approval"),
    # A sent update that verification found not applied (a bulk file's silently lost row), back
    # to approved on the single route with its approval (bulk_reconcile.py), one action a job.
    Transition("requeue_single", (S.SENT,), S.APPROVED, (PERM_REQUEUE,), A.REQUEUED_SINGLE),
    Transition("cancel", (S.DRAFT, S.PENDING, S.APPROVED), S.CANCELLED, (PERM_CANCEL,),
               A.CANCELLED, "Cancel update"),
    # One open change per visitor and attribute (open_changes.py): a new update that sets an
    # attribute an open one sets cancels it when its author supersedes it. Not a sending one.
    Transition("supersede", (S.DRAFT, S.PENDING, S.APPROVED, S.FAILED), S.CANCELLED,
               (PERM_CANCEL,), A.SUPERSEDED),
    Transition("claim", (S.APPROVED,), S.SENDING, (SENDER,), A.CLAIMED),
    Transition("reclaim", (S.SENDING,), S.SENDING, (SENDER,), A.RECLAIMED),
    Transition("release", (S.SENDING,), S.APPROVED, (SENDER,), A.RELEASED),
    Transition("acknowledge", (S.SENDING,), S.SENT, (SENDER,), A.ACKNOWLEDGED),
    Transition("retry", (S.SENDING,), S.APPROVED, (SENDER,), A.RETRY_SCHEDULED),
    Transition("fail", (S.SENDING,), S.FAILED, (SENDER,), A.FAILED),
    # Skip-unchanged connections (verification.before_send): Target already holds every value.
    Transition("skip_unchanged", (S.SENDING,), S.UNCHANGED, (SENDER,), A.UNCHANGED),
)
T: Mapping[str, Transition] = {t.name: t for t in TRANSITIONS}

# Editing keeps the state when only the reason or the send time changes; content edits of a
# submitted update send it back to draft ("edit_content"). These states never change.
EDITABLE_STATES = {S.DRAFT, *T["edit_content"].sources}
# The rest are read-only (sending, sent, cancelled, unchanged): the admin shows them, edits none.
READ_ONLY_STATES = set(S) - EDITABLE_STATES
CANCELLABLE_STATES = set(T["cancel"].sources)
_REQUEUES = (T["requeue"], T["requeue_for_approval"])  # one service, two outcomes


def sender_transition(name: str, *, from_status: str | None = None) -> Transition:
    """The sender's move `name`, checked against the table (and against `from_status`, when
    given). A programming error, not a refusal, when the table does not allow it."""
    transition = T[name]
    if not transition.by_sender:
        raise ValueError(f"{name} is not a move of the sender")
    if from_status is not None and not transition.allows(from_status):
        raise ValueError(f"the sender's {name} does not start from {from_status}")
    return transition


def transition_table_rows() -> list[tuple[str, str, str, str, str]]:
    """The table as text rows (move, from, to, who may, audited as) — the README shows these."""
    def who(t: Transition) -> str:
        if t.by_sender:
            return "the sender"
        names = " + ".join(p.removeprefix("updates.") for p in t.who)
        return names + (", not a content author" if t.four_eyes else "")

    return [(t.name, ", ".join(t.sources) or "—", t.target, who(t), str(t.action))
            for t in TRANSITIONS]


# --- four eyes -------------------------------------------------------------------------------

def authored_by(user, updates: Iterable[ProfileUpdate]) -> set[int]:
    """The ids of `updates` whose content `user` wrote (one query for all of them)."""
    updates = list(updates)
    if user is None or user.pk is None or not updates:
        return set()
    authored = {u.pk for u in updates if u.created_by_id == user.pk}
    authored |= set(ProfileUpdate.content_authors.through.objects.filter(
        profileupdate_id__in=[u.pk for u in updates], user_id=user.pk,
    ).values_list("profileupdate_id", flat=True))
    return authored


def is_content_author(user, update: ProfileUpdate) -> bool:
    return update.pk in authored_by(user, [update])


def _may(user, transition: Transition) -> bool:
    return (user is not None and user.is_active and not transition.by_sender
            and all(user.has_perm(p) for p in transition.who))


def available_transitions(update: ProfileUpdate, user, *,
                          authored: Collection[int] | None = None) -> list[Transition]:
    """The moves `user` may make on `update` now, one button each: the table's people's moves
    from its state that the user's permissions allow, without approve/reject for a content
    author, and the one re-queue that applies. `authored`: the result of `authored_by` for a
    page of updates, to save the query per update."""
    if authored is None:
        authored = authored_by(user, [update])
    options = []
    for transition in TRANSITIONS:
        if not transition.label or not transition.allows(update.status):
            continue
        if not _may(user, transition):
            continue
        if transition.four_eyes and update.pk in authored:
            continue
        if transition in _REQUEUES and transition is not _requeue_transition(update):
            continue  # the one re-queue the service will make for this update
        options.append(transition)
    return options


def may_decide(update: ProfileUpdate, user, *, authored: Collection[int] | None = None) -> bool:
    """Whether `user` may approve or reject `update` now (the queue's and the admin's question)."""
    return any(t.four_eyes for t in available_transitions(update, user, authored=authored))


def decision_blocker(update: ProfileUpdate, user, *,
                     authored: Collection[int] | None = None) -> str:
    """Why `user` may not approve or reject `update` now, in the words the service would refuse
    with ("" when they may) — for a disabled button's reason."""
    if may_decide(update, user, authored=authored):
        return ""
    own = update.pk in authored if authored is not None else is_content_author(user, update)
    if own:
        return _own_update_message(update)
    if not all(_may(user, T[name]) for name in ("approve", "reject")):
        return permissions.refusal(PERM_APPROVE)
    return (f"Update #{update.pk} is {update.get_status_display().lower()}; only pending "
            "updates are decided.")


# --- who may start a send or verification run -------------------------------------------------
# A run acts only on approved updates, yet it sets requests to Target going: a person starts one
# only with a part in the workflow. The schedule acts as nobody and is not asked.

RUN_STARTERS = (PERM_SUBMIT, PERM_APPROVE)  # either suffices
SEND_RUN = "start a send run"
VERIFICATION_RUN = "run verification"


def may_start_runs(user) -> bool:
    """Whether `user` may start a send or verification run (submit or approve permission)."""
    return user.is_active and any(user.has_perm(perm) for perm in RUN_STARTERS)


def require_run_starter(user, *, run: str) -> None:
    """Refuse (code ``permission_denied``) a person without a part in the workflow; `run` says
    what they asked for (SEND_RUN, VERIFICATION_RUN)."""
    if not may_start_runs(user):
        raise _refuse(f"{user.get_username()} has no part in the workflow (neither submit nor "
                      f"approve permission), so may not {run}.", PERMISSION_DENIED)


# --- helpers ---------------------------------------------------------------------------------

def _refuse(message: str, code: str) -> Refused:
    return Refused(message, code=code)


def _json(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def _audit(update: ProfileUpdate, *, by, action: str | Transition, from_status: str,
           comment: str = "", changes: dict | None = None,
           at: dt.datetime | None = None) -> AuditEvent:
    return audit.record_many([update], by=by, action=action, from_status=from_status,
                      to_status=None if isinstance(action, Transition) else update.status,
                      comment=comment, changes=changes, at=at)[0]


def _locked(update: ProfileUpdate) -> ProfileUpdate:
    """The current row, locked for this transaction: decisions are made on fresh state. An
    update whose values were purged (retention, a forgotten visitor) never moves again."""
    current = ProfileUpdate.objects.select_for_update().get(pk=update.pk)
    if current.purged_at is not None:
        raise _refuse(f"Update #{current.pk}'s values were purged on "
                      f"{current.purged_at:%Y-%m-%d}; it can no longer change.", PURGED)
    return current


def _refresh_active(connection: TargetConnection) -> None:
    """The connection's `active` — and its suppression list — as stored now (the caller's copy
    may be minutes old)."""
    connection.active = TargetConnection.objects.filter(pk=connection.pk, active=True).exists()
    suppression.forget_cached(connection)


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
    if problem := suppression.forgotten_problem(connection, identity_type, identity):
        errors.setdefault("identity", []).append(problem)
    if errors:
        raise ValidationError(errors)


# --- staging and editing ---------------------------------------------------------------------



def _require_for(user, transition: Transition) -> None:
    """The permissions the table names for `transition`, in its order."""
    for perm in transition.who:
        require_perm(user, perm, permissions.refusal(perm))


def _add_author(update: ProfileUpdate, user) -> None:
    update.content_authors.add(user)


# --- one open change per visitor and attribute (open_changes.py) -----------------------------

def _lock_visitor_of(update: ProfileUpdate, *also: tuple[str, str]) -> None:
    """Lock the visitor `update` is stored with (and `also`), before its row: every service
    takes the visitor lock first, then update rows, then mappings — one order, no deadlock."""
    stored = (ProfileUpdate.objects.filter(pk=update.pk)
              .values_list("connection_id", "identity_type", "identity").first())
    if stored is not None:
        open_changes.lock_visitors(stored[0], [stored[1:], *also])


def _open_conflicts(*, connection_id: int, identity_type: str, identity: str,
                    attributes: Iterable[str], by, supersede: bool,
                    exclude_pk: int | None = None) -> list[ProfileUpdate]:
    """Under the visitor's lock: refuse (`open_conflict`) when another open update of the
    visitor sets one of `attributes`, unless `supersede`; then return those updates, for
    supersede_open once the new one is saved (refused, `in_flight`, if one is sending)."""
    found = open_changes.conflicts(connection_id=connection_id, identity_type=identity_type,
                                   identity=identity, attributes=attributes,
                                   exclude_pk=exclude_pk)
    if not found:
        return []
    if not supersede:
        raise open_changes.refuse(identity_type, identity, found)
    require_supersede(by)
    for update, _shared in found:
        if update.status == S.SENDING:
            raise _in_flight(update)
    return [update for update, _shared in found]


def require_supersede(by) -> None:
    """Superseding cancels other updates: it needs the right to (T["supersede"])."""
    _require_for(by, T["supersede"])


def _in_flight(update: ProfileUpdate) -> Refused:
    return _refuse(f"Update #{update.pk} is being sent to Target now and cannot be superseded; "
                   "wait until it is sent or fails.", IN_FLIGHT)


def supersede_open(older: Iterable[ProfileUpdate], *, by, new: ProfileUpdate) -> None:
    """Cancel each of `older` as superseded by `new`, audited with its id, in the caller's
    transaction (which holds the visitor's lock). A claim may have taken one meanwhile: its
    row is locked here, so that is seen and refused (`in_flight`)."""
    transition = T["supersede"]
    for update in older:
        current = _locked(update)
        if current.status == S.SENDING:
            raise _in_flight(current)
        if not transition.allows(current.status):
            continue  # no longer open: nothing to supersede
        from_status = current.status
        current.status = transition.target
        current.save(update_fields=["status"])
        _audit(current, by=by, action=transition, from_status=from_status,
               comment=f"Superseded by update #{new.pk}.", changes={"superseded_by": new.pk})


def update_stage(*, connection: TargetConnection, identity_type: str, identity: str,
                 attributes: dict[str, str], by, reason: str = "",
                 not_before: dt.datetime | None = None,
                 supersede: bool = False) -> ProfileUpdate:
    """Create a draft. Raises ValidationError (per field) and saves nothing if anything is wrong.
    Refused (`open_conflict`) when the visitor has an open update setting one of the same
    attributes, unless `supersede`: then that update is cancelled, superseded by this one."""
    transition = T["stage"]
    _require_for(by, transition)
    now = timezone.now()
    with transaction.atomic():
        open_changes.lock_visitors(connection.pk, [(identity_type, identity)])
        # Checked inside the saving transaction against locked mappings: what is saved is what
        # passed the rules as they are when it is saved, not as they were when the form loaded.
        _refresh_active(connection)
        check_content(connection=connection, identity_type=identity_type, identity=identity,
                      attributes=attributes, reason=reason,
                      connection_mappings=mappings.active_mappings(connection, lock=True))
        older = _open_conflicts(connection_id=connection.pk, identity_type=identity_type,
                                identity=identity, attributes=attributes, by=by,
                                supersede=supersede)
        update = ProfileUpdate.objects.create(
            connection=connection, identity_type=identity_type, identity=identity,
            attributes=dict(attributes), reason=reason, not_before=not_before,
            status=transition.target, created_by=by, created_at=now, last_edited_by=by,
            last_edited_at=now,
        )
        _add_author(update, by)
        _audit(update, by=by, action=transition, from_status="", at=now, changes={
            f: {"before": None, "after": _json(getattr(update, f))} for f in EDITABLE_FIELDS})
        supersede_open(older, by=by, new=update)
    return update


def update_edit(*, update: ProfileUpdate, by, supersede: bool = False,
                **new_values: Any) -> ProfileUpdate:
    """Change fields of an update. Changing its identity or attributes makes `by` one of its
    content authors and, after submission, sends it back to draft and clears its approval;
    sent, sending and cancelled updates never change. New content that sets an attribute
    another open update of the visitor sets is refused (`open_conflict`) unless `supersede`."""
    _require_for(by, T["edit_content"])
    unknown = set(new_values) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        current = _locked_for_edit(update, new_values)
        if current.status not in EDITABLE_STATES:
            raise _refuse(f"Update #{current.pk} is {current.get_status_display().lower()} and can no "
                          "longer be changed.", IMMUTABLE)
        changes = {f: {"before": _json(getattr(current, f)), "after": _json(v)}
                   for f, v in new_values.items() if getattr(current, f) != v}
        if not changes:
            _refresh_caller_copy(update, current)
            return update
        content_changed = any(f in changes for f in CONTENT_FIELDS)
        merged = {f: new_values.get(f, getattr(current, f)) for f in CONTENT_FIELDS}
        if content_changed:
            check_content(connection=current.connection, **merged,
                          reason=new_values["reason"] if "reason" in changes else None,
                          connection_mappings=mappings.active_mappings(current.connection,
                                                                       lock=True))
        elif "reason" in changes and (problems := reason_errors(new_values["reason"])):
            # A reason-only edit is not blocked by content that later became invalid.
            raise ValidationError({"reason": problems})
        older = _open_conflicts(
            connection_id=current.connection_id, identity_type=merged["identity_type"],
            identity=merged["identity"], attributes=merged["attributes"], by=by,
            supersede=supersede, exclude_pk=current.pk) if content_changed else []
        from_status = current.status
        for f, v in new_values.items():
            setattr(current, f, v)
        current.last_edited_by = by
        current.last_edited_at = timezone.now()
        fields = list(new_values) + ["last_edited_by", "last_edited_at"]
        back_to_draft = content_changed and T["edit_content"].allows(current.status)
        if back_to_draft:
            current.status = T["edit_content"].target
            _clear_decision(current)
            fields += ["status", "decided_by", "decided_at", "decision_comment", "approved_hash",
                       "submitted_at"]
        current.save(update_fields=fields)
        if content_changed:
            _add_author(current, by)
        _audit(current, by=by, action=T["edit_content"] if back_to_draft else A.EDITED,
               from_status=from_status, changes=changes, at=current.last_edited_at)
        supersede_open(older, by=by, new=current)
    _refresh_caller_copy(update, current)
    return update


def _locked_for_edit(update: ProfileUpdate, new_values: dict[str, Any]) -> ProfileUpdate:
    """The update's row, locked; for a content edit, after the visitor locks of what it is and
    what it becomes (open_changes.py)."""
    stored = None
    if any(f in new_values for f in CONTENT_FIELDS):
        stored = ProfileUpdate.objects.filter(pk=update.pk).values_list(
            "identity_type", "identity").first() or ("", "")
        _lock_visitor_of(update, (new_values.get("identity_type", stored[0]),
                                  new_values.get("identity", stored[1])))
    current = _locked(update)
    if stored is not None and (current.identity_type, current.identity) != stored:
        # Another edit moved it between the read and the row lock: lock what it is now.
        open_changes.lock_visitors(current.connection_id, [
            (current.identity_type, current.identity),
            (new_values.get("identity_type", current.identity_type),
             new_values.get("identity", current.identity))])
    return current


def _clear_decision(update: ProfileUpdate) -> None:
    update.decided_by = None
    update.decided_at = None
    update.decision_comment = ""
    update.approved_hash = ""
    update.submitted_at = None


# --- transitions -----------------------------------------------------------------------------

def _check_comment(comment: Any) -> None:
    # Every transition records its comment; refuse here what the database cannot hold (a NUL
    # fails PostgreSQL, a lone surrogate both) rather than fail mid-save, whoever calls.
    if problems := comment_errors(comment):
        raise ValidationError({"comment": problems})


def _transition(update: ProfileUpdate, *, by, transition: Transition, comment: str = "",
                mutate: Callable[[ProfileUpdate], list[str]] | None = None,
                shown: str | None = None, supersede: bool | None = None) -> ProfileUpdate:
    """`shown`: the content fingerprint the person saw (decisions), refused as `stale` when it
    differs. `supersede`: None for moves that need no look at the visitor's other open updates;
    True/False for those that queue an update (submit, re-queue): see _open_conflicts."""
    _check_comment(comment)
    with transaction.atomic():
        if supersede is not None:
            _lock_visitor_of(update)
        current = _locked(update)
        if shown is not None:
            if transition.four_eyes:
                _four_eyes(current, by)  # your own content is refused as such, whatever was shown
            check_shown(current, transition, shown)
        if not transition.allows(current.status):
            raise _refuse(
                f"Update #{current.pk} is {current.get_status_display().lower()}; it cannot be "
                f"{transition.action} from that state.", WRONG_STATE)
        if transition.four_eyes:
            _four_eyes(current, by)
        older = [] if supersede is None else _open_conflicts(
            connection_id=current.connection_id, identity_type=current.identity_type,
            identity=current.identity, attributes=current.attributes, by=by,
            supersede=supersede, exclude_pk=current.pk)
        from_status = current.status
        fields = mutate(current) if mutate else []
        current.status = transition.target
        current.save(update_fields=["status", *fields])
        _audit(current, by=by, action=transition, from_status=from_status, comment=comment)
        supersede_open(older, by=by, new=current)
    _refresh_caller_copy(update, current)
    return update


def check_shown(update: ProfileUpdate, transition: Transition, shown: str) -> None:
    """Refuse (`stale`) unless `update` is still what the person was shown: in a state
    `transition` starts from, with the content fingerprint `shown` (ProfileUpdate.content_hash;
    "" when the page named none — it did not show the update as decidable, so a wrong state is
    refused as such). `update` is the current row (locked, for a decision)."""
    if not shown and not transition.allows(update.status):
        raise _refuse(
            f"Update #{update.pk} is {update.get_status_display().lower()}; it cannot be "
            f"{transition.action} from that state.", WRONG_STATE)
    if not transition.allows(update.status):
        raise _refuse(f"Update #{update.pk} is {update.get_status_display().lower()} now, not "
                      f"what you were shown: nothing was {transition.action}. Look at it again.",
                      STALE)
    if not shown:
        raise _refuse(f"Update #{update.pk}: the page you decided from did not show its content: "
                      f"nothing was {transition.action}. Look at it again.", STALE)
    if update.content_hash != shown:
        raise _refuse(f"Update #{update.pk}: its identity or attributes are not the ones you were "
                      f"shown (changed since the page was loaded): nothing was "
                      f"{transition.action}. Look at it again.", STALE)


def _four_eyes(update: ProfileUpdate, by) -> None:
    """Nobody decides on an update whose content they wrote — superusers included."""
    if is_content_author(by, update):
        raise _refuse(_own_update_message(update), OWN_UPDATE)


def _own_update_message(update: ProfileUpdate) -> str:
    return (f"Update #{update.pk}: you created it or changed its identity or attributes, so "
            "someone else must decide on it (four-eyes rule).")


def update_submit(*, update: ProfileUpdate, by, comment: str = "",
                  supersede: bool = False) -> ProfileUpdate:
    """Draft → pending; refused (`open_conflict`) while another open update of the visitor sets
    one of its attributes (one staged before the rule), unless `supersede`."""
    transition = T["submit"]
    _require_for(by, transition)

    def mutate(u: ProfileUpdate) -> list[str]:
        u.submitted_at = timezone.now()
        return ["submitted_at"]

    return _transition(update, by=by, transition=transition, comment=comment, mutate=mutate,
                       supersede=supersede)


def _decide(update: ProfileUpdate, *, by, transition: Transition, comment: str,
            shown: str | None = None) -> ProfileUpdate:
    _require_for(by, transition)

    def mutate(u: ProfileUpdate) -> list[str]:
        u.decided_by = by
        u.decided_at = timezone.now()
        u.decision_comment = comment
        u.approved_hash = u.content_hash if transition.target == S.APPROVED else ""
        u.attempt_count = 0
        u.next_attempt_at = None
        return ["decided_by", "decided_at", "decision_comment", "approved_hash", "attempt_count",
                "next_attempt_at"]

    return _transition(update, by=by, transition=transition, comment=comment, mutate=mutate,
                       shown=shown)


def update_approve(*, update: ProfileUpdate, by, comment: str = "",
                   shown: str | None = None) -> ProfileUpdate:
    """Approve a pending update. `shown`: the content fingerprint (ProfileUpdate.content_hash)
    the supervisor saw; the approval is then refused (`stale`) unless the update is still
    pending with exactly that content. Without it the decision is on whatever is there now."""
    return _decide(update, by=by, transition=T["approve"], comment=comment, shown=shown)


def update_reject(*, update: ProfileUpdate, by, comment: str,
                  shown: str | None = None) -> ProfileUpdate:
    # Permission first: someone who may not decide learns that, not that a comment is missing.
    _require_for(by, T["reject"])
    comment = "" if comment is None else comment
    _check_comment(comment)
    if not comment.strip():
        raise _refuse("A rejection needs a comment saying why.", COMMENT_REQUIRED)
    return _decide(update, by=by, transition=T["reject"], comment=comment.strip(), shown=shown)


def update_cancel(*, update: ProfileUpdate, by, comment: str = "") -> ProfileUpdate:
    transition = T["cancel"]
    _require_for(by, transition)
    return _transition(update, by=by, transition=transition, comment=comment)


def _requeue_transition(update: ProfileUpdate) -> Transition:
    """Failed → approved if the approved content is unchanged; otherwise back to pending
    approval, because what would be sent is not what was approved."""
    return T["requeue"] if update.matches_approval() else T["requeue_for_approval"]


def update_requeue(*, update: ProfileUpdate, by, comment: str = "",
                   supersede: bool = False) -> ProfileUpdate:
    """A failed update gets a fresh attempt budget, keeping its approval when its content is
    what was approved (see _requeue_transition); its content authors stay its authors.
    Refused (`open_conflict`) while another open update of the visitor sets one of its
    attributes, unless `supersede`."""
    _require_for(by, T["requeue"])
    with transaction.atomic():
        _lock_visitor_of(update)
        transition = _requeue_transition(_locked(update))

        def mutate(u: ProfileUpdate) -> list[str]:
            u.attempt_count = 0
            u.next_attempt_at = None
            u.last_error = ""
            fields = ["attempt_count", "next_attempt_at", "last_error"]
            if transition.target == S.PENDING:
                _clear_decision(u)
                u.submitted_at = timezone.now()
                fields += ["decided_by", "decided_at", "decision_comment", "approved_hash",
                           "submitted_at"]
            return fields

        return _transition(update, by=by, transition=transition, comment=comment, mutate=mutate,
                           supersede=supersede)


# --- many at once (admin actions, queue, commands) -------------------------------------------

def _refuse_open_rows(connection: TargetConnection, rows: list[dict[str, Any]]) -> None:
    """Refuse (`open_conflict`) rows setting an attribute of a visitor that an open update or
    an earlier row sets."""
    problems = []
    first: dict[tuple[str, str, str], int] = {}
    for number, r in enumerate(rows, start=1):
        for name in r["attributes"]:
            seen = first.setdefault((r["identity_type"], r["identity"], name), number)
            if seen != number:
                problems.append(f"Row {number}: sets profile.{name} of the same visitor as row "
                                f"{seen}; one open change per visitor and attribute.")
    for position, found in open_changes.conflicts_for_rows(connection.pk, rows).items():
        r = rows[position]
        problems.append(f"Row {position + 1}: "
                        + open_changes.conflict_message(r["identity_type"], r["identity"], found))
    if problems:
        raise Refused(" ".join(problems), code=open_changes.OPEN_CONFLICT)


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
                       checked_against: str | None = None, import_job=None,
                       import_live: bool = False) -> int:
    """Create many drafts (optionally submitted) in one transaction, with their audit rows and
    their creator as content author.

    Nothing is saved that was not checked against the mappings as they are when it is saved:
    inside the transaction the connection's active mappings are locked and re-read. A caller
    that checked every row with check_content passes the mappings' fingerprint it checked
    against (`checked_against`, mappings.mappings_fingerprint); if the mappings changed since,
    the whole call is refused (code "mappings_changed"). Without it, every row is checked here.
    With `import_job`, the rows are written not yet live (ProfileUpdate.import_pending) and
    for good referencing their job (ProfileUpdate.import_job), without an audit row each: the
    import writes the job's one "imported" AuditEvent in the transaction that makes them all
    live (importing.py), and the timeline shows it for each of them with the update's first
    state (selectors.update_timeline). With `import_live` too (PostgreSQL, importing.py), the
    rows are written live inside the import's one transaction, which nobody else sees before it
    commits, and the mappings are compared without a lock: the import locks and compares them
    when it ends, and a lock taken here would hold every mapping edit back for the whole import.
    Content authors are written either way (four eyes).
    Rows written live (no `import_job`) are refused (`open_conflict`) when a visitor has an open
    update setting one of the same attributes, or two rows set one visitor's attribute; an
    import looks when it makes its rows live (importing.py), where it may supersede.
    """
    transition = T["import_and_submit"] if submit else T["import"]
    _require_for(by, transition)
    _check_reasons(reason, rows)
    now = timezone.now()
    created = 0
    # No savepoint inside an import's one transaction: a chunk that fails fails the import, and
    # past 64 subtransactions PostgreSQL's snapshots overflow and every other session pays.
    with transaction.atomic(savepoint=not import_live):
        _check_many(connection, rows, checked_against, imported=import_job is not None,
                    lock_mappings=not import_live)
        for start in range(0, len(rows), 2000):
            if import_job is not None:  # audited once for the whole job, when its rows go live
                created += _insert_import_rows(
                    connection, rows[start:start + 2000], by=by, reason=reason,
                    status=transition.target, submit=submit, now=now, import_job=import_job,
                    live=import_live)
                continue
            objs = _create_rows(connection, rows[start:start + 2000], by=by, reason=reason,
                                status=transition.target, submit=submit, now=now,
                                import_job=import_job)
            created += len(objs)
            audit.record_many(objs, by=by, action=transition, at=now, changes_by_update={
                u.pk: {"identity_type": {"before": None, "after": u.identity_type},
                       "identity": {"before": None, "after": u.identity},
                       "attributes": {"before": None, "after": u.attributes}}
                for u in objs})
    return created


def _check_many(connection: TargetConnection, rows: list[dict[str, Any]],
                checked_against: str | None, *, imported: bool, lock_mappings: bool) -> None:
    """updates_stage_many's checks, in its transaction: the connection active, the rows checked
    against the mappings, no visitor forgotten — and, for rows written live at once (not
    `imported`), the visitors locked and no open update setting the same attribute."""
    if not imported:
        open_changes.lock_visitors(connection.pk,
                                   ((r["identity_type"], r["identity"]) for r in rows))
    _refresh_active(connection)
    if not connection.active:
        raise ValidationError({"connection": [f"Connection {connection.label} is inactive."]})
    _check_rows_against_locked_mappings(connection, rows, checked_against, lock=lock_mappings)
    if not imported:
        _refuse_open_rows(connection, rows)
    suppression.refuse_forgotten_rows(connection, rows)


def _check_reasons(reason: str, rows: list[dict[str, Any]]) -> None:
    # Cheap, and the one column check_content does not cover; PostgreSQL would otherwise fail
    # the whole batch on an over-long reason that SQLite silently stores.
    if problems := reason_errors(reason):
        raise ValidationError({"reason": problems})
    for number, r in enumerate(rows, start=1):
        if "reason" in r and (problems := reason_errors(r["reason"])):
            raise ValidationError({"reason": [f"Row {number}: {p}" for p in problems]})


def _check_rows_against_locked_mappings(connection: TargetConnection, rows: list[dict[str, Any]],
                                        checked_against: str | None, *, lock: bool = True
                                        ) -> None:
    """Re-read the connection's active mappings, locked unless `lock=False`; check every row
    against them, or refuse (`mappings_changed`) if they are not the ones the caller checked
    against."""
    locked = mappings.active_mappings(connection, lock=lock)
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


def _insert_import_rows(connection: TargetConnection, chunk: list[dict[str, Any]], *, by,
                        reason: str, status: str, submit: bool, now: dt.datetime,
                        import_job, live: bool) -> int:
    """_create_rows for an import (not yet live unless `live`, no audit row each): the same
    rows as plain multi-row INSERTs (rows.py) — a model instance and the SQL compiler's
    per-value work for each of a million rows were most of an import's time over a raw
    bulk_create."""
    pks = rows.insert_rows_returning_pks(ProfileUpdate, (
        {"connection_id": connection.pk, "identity_type": r["identity_type"],
         "identity": r["identity"], "attributes": r["attributes"],
         "reason": r.get("reason", reason), "not_before": r.get("not_before"), "status": status,
         "created_by_id": by.pk, "created_at": now, "last_edited_by_id": by.pk,
         "last_edited_at": now, "submitted_at": now if submit else None,
         "import_pending_id": None if live else import_job.pk, "import_job_id": import_job.pk}
        for r in chunk))
    rows.insert_rows(ProfileUpdate.content_authors.through,
                     ({"profileupdate_id": pk, "user_id": by.pk} for pk in pks), as_arrays=True)
    return len(pks)


def _create_rows(connection: TargetConnection, chunk: list[dict[str, Any]], *, by, reason: str,
                 status: str, submit: bool, now: dt.datetime, import_job) -> list[ProfileUpdate]:
    """One chunk of the rows as updates, with their creator as content author."""
    objs = ProfileUpdate.objects.bulk_create([
        ProfileUpdate(
            connection=connection, identity_type=r["identity_type"], identity=r["identity"],
            attributes=r["attributes"], reason=r.get("reason", reason),
            not_before=r.get("not_before"), status=status, created_by=by, created_at=now,
            last_edited_by=by, last_edited_at=now, submitted_at=now if submit else None,
            import_pending=import_job, import_job=import_job)
        for r in chunk
    ])
    Author = ProfileUpdate.content_authors.through
    Author.objects.bulk_create([Author(profileupdate_id=u.pk, user_id=by.pk) for u in objs])
    return objs
