"""Every audit row is written here: who changed what, when, in the caller's transaction.

The names of what can happen are `AuditEvent.Action` (models.py), each with the words the
update's timeline shows; a name that is not one of them is refused here (ValueError), so no
code path can write an action the timeline cannot say. Three forms, one set of checks:

- `record` — one row, through the ORM (its errors surface as usual);
- `record_many` — one row per update, one INSERT for many (rows.insert_rows: the sender writes
  thousands a minute), for a workflow Transition or a plain action;
- `unsaved` and `save` — rows built one at a time while their updates are changed, then written
  together (a verification run), or shown without being written (the timeline's "imported").

tests/test_architecture.py checks that no other module of updates/ or profileops/ constructs an
AuditEvent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol

from django.db import models
from django.utils import timezone

from . import rows
from .models import AuditEvent

Action = AuditEvent.Action


class TransitionLike(Protocol):
    """What the audit needs of a workflow.Transition (workflow imports this module)."""

    name: str
    sources: tuple[str, ...]
    target: str
    action: str


def check_action(action: str) -> str:
    """The action, if it is one of AuditEvent.Action; otherwise ValueError."""
    if action not in Action.values:
        raise ValueError(f"{action!r} is not an AuditEvent.Action; add it there, with its words")
    return action


def _related(name: str, value: models.Model | int | None) -> dict[str, Any]:
    """A foreign key given as a row or as its id, as AuditEvent's keyword."""
    if value is None:
        return {}
    return {name: value} if isinstance(value, models.Model) else {f"{name}_id": value}


def _fields(action: str, *, by, update, connection, mapping, from_status: str, to_status: str,
            comment: str, changes: dict | None, at: dt.datetime | None) -> dict[str, Any]:
    return {"at": at or timezone.now(), "actor": by, "action": check_action(action),
            "from_status": from_status, "to_status": to_status, "comment": comment,
            "changes": changes or {}, **_related("update", update),
            **_related("connection", connection), **_related("mapping", mapping)}


def unsaved(action: str, *, by, update: models.Model | int | None = None,
            connection: models.Model | int | None = None,
            mapping: models.Model | int | None = None, from_status: str = "",
            to_status: str = "", comment: str = "", changes: dict | None = None,
            at: dt.datetime | None = None) -> AuditEvent:
    """One audit row, checked but not written (see `save`). `update`, `connection` and `mapping`
    may be rows or ids; `by` is the user, None for the system."""
    return AuditEvent(**_fields(action, by=by, update=update, connection=connection,
                                mapping=mapping, from_status=from_status, to_status=to_status,
                                comment=comment, changes=changes, at=at))


def record(action: str, *, by, update: models.Model | int | None = None,
           connection: models.Model | int | None = None, mapping: models.Model | int | None = None,
           from_status: str = "", to_status: str = "", comment: str = "",
           changes: dict | None = None, at: dt.datetime | None = None) -> AuditEvent:
    """Write one audit row (the arguments as for `unsaved`) and return it."""
    return AuditEvent.objects.create(**_fields(
        action, by=by, update=update, connection=connection, mapping=mapping,
        from_status=from_status, to_status=to_status, comment=comment, changes=changes, at=at))


def save(events: Sequence[AuditEvent]) -> None:
    """Write rows built with `unsaved`, in one INSERT."""
    for event in events:
        check_action(event.action)
    AuditEvent.objects.bulk_create(events)


def audited_fields(model: type[models.Model], *, leaving_out: Collection[str] = ()
                   ) -> tuple[str, ...]:
    """Every field of `model` a person can change (editable, not the key), but `leaving_out`:
    derived from the model, so that a field added later is audited without anyone remembering
    to add it to a list (three of a connection's once were not)."""
    return tuple(field.name for field in model._meta.concrete_fields
                 if field.editable and not field.primary_key and field.name not in leaving_out)


def field_changes(old: models.Model | None, new: models.Model,
                  fields: Sequence[str]) -> dict[str, dict[str, Any]]:
    """A configuration row's audit `changes`: {field: {"before", "after"}} for each of `fields`
    whose value differs between `old` (None for a new row: every "before" is None) and `new`."""
    changes = {}
    for name in fields:
        before, after = (None if old is None else getattr(old, name)), getattr(new, name)
        if before != after:
            changes[name] = {"before": before, "after": after}
    return changes


def record_many(updates: Sequence[models.Model | int], *, by, action: str | TransitionLike,
                from_status: str | Mapping[int, str] | None = None, to_status: str | None = None,
                at: dt.datetime | None = None, comment: str = "",
                comments: Mapping[int, str] | None = None, changes: dict | None = None,
                changes_by_update: Mapping[int, dict] | None = None,
                connection_id: int | None = None, returning: bool = True) -> list[AuditEvent]:
    """Write one audit row per update — one INSERT for many — in the caller's transaction.

    `action` is a workflow Transition (its audit action and target state are used, and
    `from_status` — one value, or per update id — is checked against it; it defaults to the
    transition's only source state) or a plain action name with `to_status` (default: each
    update's status). `updates` may be ids when `connection_id` is given (the sender's bulk
    moves). `comments` and `changes_by_update` give per-update values over `comment` and
    `changes`. The events are returned unsaved-looking (no ids), or not at all with
    `returning=False`.
    """
    if not isinstance(action, str):
        transition = action
        if from_status is None and len(transition.sources) <= 1:
            from_status = transition.sources[0] if transition.sources else ""
        froms = from_status.values() if isinstance(from_status, Mapping) else [from_status]
        if transition.sources and any(f not in transition.sources for f in froms):
            raise ValueError(f"{transition.name} does not start from {sorted(set(froms))}")
        action, to_status = transition.action, transition.target
    check_action(action)
    at = at or timezone.now()
    actor_id = None if by is None else by.pk
    values = []
    for update in updates:
        pk = update if isinstance(update, int) else update.pk
        values.append({
            "at": at, "actor_id": actor_id, "action": action, "update_id": pk,
            "connection_id": connection_id if isinstance(update, int) else update.connection_id,
            "from_status": (from_status.get(pk, "") if isinstance(from_status, Mapping)
                            else from_status or ""),
            "to_status": to_status if to_status is not None else update.status,
            "comment": (comments or {}).get(pk, comment),
            "changes": (changes_by_update or {}).get(pk, changes or {}),
        })
    if len(values) == 1:
        # One row through the ORM: its errors (and a test's injected failure) surface as usual.
        return [AuditEvent.objects.create(**values[0])]
    rows.insert_rows(AuditEvent, values)
    return [AuditEvent(**v) for v in values] if returning else []
