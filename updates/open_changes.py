"""One open change per visitor and attribute.

An update is *open* while it may still reach Target: draft, pending, approved, sending, failed
(OPEN_STATES; a failed update can be re-queued). Two open updates of one visitor — the same
connection, identity type and identity — that set the same attribute are a conflict: which
value Target ends with would depend on the order they are sent in. Every service that creates
an update or moves one with new content or into the queue — staging, import, edit, revert,
submit, re-queue (workflow.py, importing.py, verification.py) — locks the visitor
(`lock_visitors`) and looks for such updates (`conflicts`) in its transaction. It refuses,
naming the open update (`open_conflict`), unless the caller supersedes it: then the older update
is cancelled in the same transaction, audited "superseded" with the new update's id
(workflow.supersede_open), and the new one needs its own approval. A `sending` update is on its
way to Target and cannot be superseded (`in_flight`). Updates of one visitor that set different
attributes do not conflict; the sender sends them one at a time, in approval order (claims.py).

Why a lock and not an index. The attributes are one JSON object per update, so no plain unique
index can say "the same attribute". A child table (update, attribute) with a unique index over
its open rows could, but every move that closes an update — the sender acknowledges thousands
an hour in bulk — would have to keep it in step, and an import of a million rows would write
millions more. Instead each visitor hashes to one of LOCK_STRIPES rows of VisitorLock, and each
of those services locks its visitors' rows (SELECT … FOR UPDATE, in stripe order, so two
callers never deadlock) before it looks: two transactions for one visitor serialize, and the
second sees what the first committed. The rows are fixed in number (migration 0018): the table
never grows, an import locks at most LOCK_STRIPES rows however many visitors it holds, and two
visitors that share a stripe only wait for each other's short transaction. On SQLite every
transaction is IMMEDIATE (settings: writers serialize from BEGIN), so there is nothing to lock.
The sender needs no visitor lock: it never creates or reopens an update, and superseding locks
the older update's row, so a claim in between is seen (and refused as in flight).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.db import connection as db, transaction
from django.db.models import CharField, Exists, F, OuterRef, Value
from django.db.models.functions import Concat

from .errors import OPEN_CONFLICT, Refused
from .models import ProfileUpdate, UpdateStatus, VisitorLock

S = UpdateStatus
OPEN_STATES = (S.DRAFT, S.PENDING, S.APPROVED, S.SENDING, S.FAILED)
LOCK_STRIPES = 1024
LOOKUP_CHUNK = 500

Visitor = tuple[str, str]  # (identity type, identity)
Conflict = tuple[ProfileUpdate, list[str]]  # an open update and the attributes it shares


def stripe(connection_id: int, identity_type: str, identity: str) -> int:
    """The VisitorLock row of a visitor."""
    key = f"{connection_id}\x1f{identity_type}\x1f{identity}"
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % LOCK_STRIPES


def lock_visitors(connection_id: int, visitors: Iterable[Visitor]) -> None:
    """Lock the visitors' rows until the caller's transaction ends (inside one only)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("lock_visitors needs a transaction")
    if not db.features.has_select_for_update:
        return  # SQLite: IMMEDIATE transactions already serialize writers
    stripes = sorted({stripe(connection_id, t, i) for t, i in visitors})
    for start in range(0, len(stripes), LOOKUP_CHUNK):
        chunk = stripes[start:start + LOOKUP_CHUNK]
        locked = set(_lock(chunk))
        if missing := [s for s in chunk if s not in locked]:
            # A database emptied by a test's flush has lost the migration's rows.
            VisitorLock.objects.bulk_create([VisitorLock(stripe=s) for s in missing],
                                            ignore_conflicts=True)
            _lock(missing)


def _lock(stripes: list[int]) -> list[int]:
    return list(VisitorLock.objects.select_for_update().filter(stripe__in=stripes)
                .order_by("stripe").values_list("stripe", flat=True))


def _open(connection_id: int) -> Any:
    return (ProfileUpdate.objects.filter(connection_id=connection_id, status__in=OPEN_STATES)
            .select_related("created_by").order_by("id"))


def conflicts(*, connection_id: int, identity_type: str, identity: str,
              attributes: Iterable[str], exclude_pk: int | None = None) -> list[Conflict]:
    """The visitor's open updates (live ones) that set any of `attributes`, oldest first."""
    names = set(attributes)
    found = []
    for update in _open(connection_id).filter(identity_type=identity_type, identity=identity):
        shared = sorted(names & set(update.attributes or {}))
        if shared and update.pk != exclude_pk:
            found.append((update, shared))
    return found


def has_open_update(connection_id: int, *, besides_import: int | None = None) -> Exists:
    """For a queryset of updates (an import's rows, before the import ends): whether their
    visitor has an open live update — one statement, looked up by identity (upd_identity; the connection,
    identity type and status compared as expressions no index serves, so a planner without
    statistics does not walk the connection's history, every update of the type or every open
    update for each row). `besides_import`: an import whose rows are live already inside its
    own transaction (importing.py, PostgreSQL) — its rows are not open updates of their own."""
    return Exists(_open_besides(ProfileUpdate.objects, besides_import).annotate(
        connection_plain=F("connection_id") + 0,
        identity_type_plain=Concat("identity_type", Value(""), output_field=CharField()),
        status_plain=Concat("status", Value(""), output_field=CharField()),
    ).filter(connection_plain=connection_id, status_plain__in=OPEN_STATES,
             identity_type_plain=OuterRef("identity_type"), identity=OuterRef("identity")))


def _open_besides(updates: Any, import_job_id: int | None) -> Any:
    return updates if import_job_id is None else updates.exclude(import_job_id=import_job_id)


def conflicts_for_rows(connection_id: int, rows: Sequence[Mapping[str, Any]], *,
                       besides_import: int | None = None) -> dict[int, list[Conflict]]:
    """`conflicts` for many new updates at once (an import's rows: identity_type, identity,
    attributes), one query per few hundred visitors: position in `rows` -> its conflicts.
    `besides_import`: as has_open_update's."""
    found: dict[int, list[Conflict]] = {}
    for start in range(0, len(rows), LOOKUP_CHUNK):
        chunk = rows[start:start + LOOKUP_CHUNK]
        by_visitor: dict[Visitor, list[ProfileUpdate]] = {}
        for update in _open_besides(_open(connection_id), besides_import).filter(
                identity__in={r["identity"] for r in chunk}):
            by_visitor.setdefault((update.identity_type, update.identity), []).append(update)
        for offset, row in enumerate(chunk):
            names = set(row["attributes"])
            hits = [(u, sorted(names & set(u.attributes or {})))
                    for u in by_visitor.get((row["identity_type"], row["identity"]), [])]
            if hits := [(u, shared) for u, shared in hits if shared]:
                found[start + offset] = hits
    return found


def describe(update: ProfileUpdate, shared: Sequence[str]) -> str:
    """'#12 (pending approval, created by alice) sets profile.a' — no value, only names."""
    who = update.created_by.get_username() if update.created_by_id else "nobody"
    return (f"#{update.pk} ({update.get_status_display().lower()}, created by {who}) sets "
            + ", ".join(f"profile.{name}" for name in shared))


def conflict_message(identity_type: str, identity: str, found: Sequence[Conflict]) -> str:
    opens = "; ".join(describe(u, shared) for u, shared in found)
    return (f"{identity_type} {identity} already has an open update for the same attribute: "
            f"{opens}. One open change per visitor and attribute: wait until it is sent, "
            "rejected or cancelled, or supersede it (cancel it and replace it).")


def refuse(identity_type: str, identity: str, found: Sequence[Conflict]) -> Refused:
    return Refused(conflict_message(identity_type, identity, found), code=OPEN_CONFLICT)
