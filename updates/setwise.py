"""Decisions as set operations: approve or reject many pending updates with a few statements.

`decide_set` makes, for up to CHUNK updates at once, exactly the decision workflow.update_approve
/ update_reject make one at a time — the same checks and the same rows:

1. The caller has checked the decision, the permission and the comment (decisions.
   _check_decision), as the single services do before they look at an update.
2. One SELECT ... FOR UPDATE reads the chunk's rows (state, content, creator, connection), in id
   order; on SQLite the transaction already holds the write lock (transaction_mode IMMEDIATE).
   From here until the commit nobody changes them.
3. One query finds the viewer's own updates (workflow.authored_by's query, for the chunk):
   refused as such (code `own_update`, the single service's message) whatever was shown, and
   left pending — they do not stop the rest.
4. Every other update must be what was shown: pending still (or it `left`), with the content
   fingerprint shown (or it `changed`; ProfileUpdate.content_hash, computed from the locked
   row). With a `scope`, a pending update of the scope in the chunk's id range that was not
   shown has `joined`. `strict` (the pages): any of those refuses the whole chunk (StaleBatch,
   nothing written). Not strict (the notebook): each such update is refused with the single
   service's message and the rest are decided. Without `shown` (the notebook's bare ids) the
   decision is on whatever content is there now; a wrong state is refused (`wrong_state`).
5. One UPDATE writes the decision's fields — status, decided_by, decided_at, decision_comment,
   approved_hash (the fingerprint checked in step 4, for an approval), attempt_count 0,
   next_attempt_at NULL — for the chunk's decided ids, guarded by `status = 'pending'`; a row
   count that differs rolls everything back.
6. One INSERT (rows.insert_rows through audit.record_many) writes one audit row per decided
   update, with the content a single decision writes (action, from and to state, actor, comment,
   connection, no changes).

All in the caller's transaction: a chunk is all or nothing. tests/services/test_setwise.py
compares the rows field by field with update_approve's and update_reject's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from django.db import connections, router
from django.db.models import QuerySet
from django.utils import timezone

from . import audit, workflow
from .errors import OWN_UPDATE, STALE, WRONG_STATE, StaleBatch
from .models import ProfileUpdate, content_hash

CHUNK = 5_000  # updates decided in one transaction (a few hundred milliseconds)

# VALUES names its columns column1, column2 on both databases (a leading WITH would hide the
# row count from Python's sqlite3).
_UPDATE_SQL = (
    "UPDATE {table} SET status = %s, decided_by_id = %s, decided_at = %s, "
    "decision_comment = %s, approved_hash = decided.column2, attempt_count = 0, "
    "next_attempt_at = NULL FROM (VALUES {values}) AS decided "
    "WHERE {table}.id = decided.column1 AND {table}.status = %s")


@dataclass
class SetResult:
    """What one set-wise decision did: the ids decided, the updates refused one by one (id,
    the single service's message, its code) and — refused as a chunk (strict) — nothing else."""

    done: list[int] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    codes: dict[int, str] = field(default_factory=dict)

    @property
    def own(self) -> int:
        return sum(1 for code in self.codes.values() if code == OWN_UPDATE)


def decide_set(*, shown: Mapping[int, str] | None, transition: workflow.Transition, by,
               comment: str, ids: list[int] | None = None,
               scope: QuerySet[ProfileUpdate] | None = None, after: int | None = None,
               strict: bool = True) -> SetResult:
    """Decide the updates `shown` ({id: fingerprint}), or `ids` as they are now (shown=None),
    in the caller's transaction (see the module's steps). `after`: with `scope`, the newest id
    of the previous chunk (an update joins only in this chunk's id range). Raises
    errors.StaleBatch (strict) before writing anything."""
    wanted = sorted(shown) if shown is not None else sorted(set(ids or []))
    result = SetResult()
    if not wanted:
        return result
    if len(wanted) > CHUNK:
        raise ValueError(f"at most {CHUNK} updates at once, not {len(wanted)}")
    rows = _locked_rows(wanted)
    authored = _authored(rows, wanted, by)
    # 4. What was shown, still there?
    left: list[int] = []
    changed: list[int] = []
    details: list[str] = []
    decided: dict[int, tuple[str, int]] = {}  # id -> (fingerprint, connection id)

    def refuse(pk: int, message: str, code: str) -> None:
        result.refused.append((pk, message))
        result.codes[pk] = code

    for pk in wanted:
        if pk not in rows and shown is None:
            continue  # not an update (the caller reports ids that do not exist)
        said = None if shown is None else shown[pk]
        found, text = _check(pk, rows.get(pk), said, transition, authored)
        if found == "decide":
            decided[pk] = (text, rows[pk][5])
        elif found in (WRONG_STATE, OWN_UPDATE):
            refuse(pk, text, found)
        else:
            (left if found == "left" else changed).append(pk)
            details.append(text)
            if not strict:
                refuse(pk, text, STALE)
    joined: list[int] = []
    if scope is not None and shown is not None:
        in_range = scope.filter(id__lte=wanted[-1])
        if after is not None:
            in_range = in_range.filter(id__gt=after)
        in_scope = set(in_range.values_list("id", flat=True))
        joined = sorted(in_scope - set(wanted))
        left = sorted(set(left) | {pk for pk in wanted if pk not in in_scope
                                   and pk not in changed})
    if strict and (left or joined or changed):
        raise StaleBatch(left=sorted(left), joined=joined, changed=changed, details=details)
    if decided:
        _write(decided, transition=transition, by=by, comment=comment)
    result.done = sorted(decided)
    return result


def _locked_rows(wanted: list[int]) -> dict[int, tuple]:
    """Step 2: the rows, locked, in id order: id -> (status, identity type, identity,
    attributes, creator id, connection id). Found by primary key alone (ProfileUpdate.objects.
    by_ids says why); a row an unfinished import is still writing is left out here."""
    return {pk: (status, identity_type, identity, attributes, creator, connection_id)
            for pk, status, identity_type, identity, attributes, creator, connection_id, pending
            in ProfileUpdate.objects.by_ids(wanted).select_for_update().order_by("id")
            .values_list("id", "status", "identity_type", "identity", "attributes",
                         "created_by_id", "connection_id", "import_pending_id")
            if pending is None}


def _authored(rows: dict[int, tuple], wanted: list[int], by) -> set[int]:
    """Step 3, four eyes: the viewer's own updates, one query."""
    authored = {pk for pk, row in rows.items() if by is not None and row[4] == by.pk}
    if by is not None and by.pk is not None:
        # By id range (the viewer's few authored rows), not a list of thousands of ids.
        authored |= set(ProfileUpdate.content_authors.through.objects.filter(
            profileupdate_id__gte=wanted[0], profileupdate_id__lte=wanted[-1], user_id=by.pk)
            .values_list("profileupdate_id", flat=True)) & set(rows)
    return authored


def _check(pk: int, row: tuple | None, said: str | None, transition: workflow.Transition,
           authored: set[int]) -> tuple[str, str]:
    """Step 4 for one update: ("decide", its fingerprint); (WRONG_STATE or OWN_UPDATE, the
    message) for a refusal of this update alone; ("left" or "changed", the detail) where it
    differs from what was shown."""
    action = transition.action
    if row is None:
        return "left", f"Update #{pk} no longer exists: nothing was {action}."
    status, identity_type, identity, attributes, _, _ = row
    state = workflow.S(status).label.lower()
    wrong_state = (f"Update #{pk} is {state}; it cannot be {action} from that state.")
    # The single service's order: with content shown, four eyes first; without, the state.
    if said is None and not transition.allows(status):
        return WRONG_STATE, wrong_state
    if pk in authored:
        return OWN_UPDATE, workflow._own_update_message(ProfileUpdate(pk=pk))
    if not transition.allows(status):
        if not said:  # a page that did not show it as decidable
            return WRONG_STATE, wrong_state
        return "left", (f"Update #{pk} is {state} now, not what you were shown: nothing was "
                        f"{action}. Look at it again.")
    fingerprint = content_hash(identity_type, identity, attributes)
    if said is not None and said != fingerprint:
        return "changed", (
            f"Update #{pk}: the page you decided from did not show its content: nothing was "
            f"{action}. Look at it again." if not said else
            f"Update #{pk}: its identity or attributes are not the ones you were shown "
            f"(changed since the page was loaded): nothing was {action}. Look at it again.")
    return "decide", fingerprint


def _write(decided: dict[int, tuple[str, int]], *, transition: workflow.Transition, by,
           comment: str) -> None:
    """Steps 5 and 6: one UPDATE, one INSERT of the audit rows."""
    now = timezone.now()
    approving = transition.target == workflow.S.APPROVED
    connection = connections[router.db_for_write(ProfileUpdate)]
    table = connection.ops.quote_name(ProfileUpdate._meta.db_table)
    # The first row's casts give the VALUES list its column types (PostgreSQL).
    values = ", ".join(["(CAST(%s AS BIGINT), CAST(%s AS VARCHAR(64)))"]
                       + ["(%s, %s)"] * (len(decided) - 1))
    decided_at = ProfileUpdate._meta.get_field("decided_at").get_db_prep_save(now, connection)
    params: list = [transition.target, by.pk, decided_at, comment]
    for pk, (fingerprint, _) in decided.items():
        params += [pk, fingerprint if approving else ""]
    params.append(workflow.S.PENDING)
    with connection.cursor() as cursor:
        cursor.execute(_UPDATE_SQL.format(values=values, table=table), params)
        written = cursor.rowcount
    if written != len(decided):  # cannot happen under the lock; never write half a chunk
        raise StaleBatch(left=[], joined=[], changed=sorted(decided),
                         details=[f"{len(decided) - written} of the updates changed while they "
                                  "were being decided."])
    # Ids per connection (no model instances: a batch is mostly one connection).
    by_connection: dict[int, list[int]] = {}
    for pk, (_, connection_id) in decided.items():
        by_connection.setdefault(connection_id, []).append(pk)
    for connection_id, ids in by_connection.items():
        audit.record_many(ids, by=by, action=transition, from_status=workflow.S.PENDING,
                          at=now, comment=comment, connection_id=connection_id,
                          returning=False)
