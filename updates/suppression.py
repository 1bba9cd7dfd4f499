"""The suppression list: a forgotten visitor cannot be staged or imported again by mistake.

Forgetting a visitor (forgetting.py) keeps, on its PrivacyRequest, only the keyed hash of the
identity (hashing.py). Until an administrator lifts the suppression, every way an update is
created or changed — the staging form, an edit, an import's row checks and its saving
transaction (workflow.check_content, workflow.updates_stage_many) — asks here and is refused
with a message that names the request but never the identity.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError

from .errors import FORGOTTEN
from .hashing import keyed_hash
from .models import PrivacyRequest, TargetConnection

# How long a connection object trusts the list it read (an import checks many rows in a row);
# the saving transaction always reads it afresh.
CACHE_SECONDS = 10.0


def _suppressed(connection_id: int) -> dict[tuple[str, str], PrivacyRequest]:
    requests = (PrivacyRequest.objects
                .filter(connection_id=connection_id, suppression_lifted_at__isnull=True)
                .only("pk", "identity_type", "identity_hash", "requested_at"))
    return {(r.identity_type, r.identity_hash): r for r in requests}


def _cached(connection: TargetConnection) -> dict[tuple[str, str], PrivacyRequest]:
    read_at, found = connection.__dict__.get("_suppressed", (0.0, None))
    if found is None or time.monotonic() - read_at > CACHE_SECONDS:
        found = _suppressed(connection.pk)
        connection.__dict__["_suppressed"] = (time.monotonic(), found)
    return found


def forget_cached(connection: TargetConnection) -> None:
    """Read the list afresh at the next check (a saving transaction's own check)."""
    connection.__dict__.pop("_suppressed", None)


def _message(request: PrivacyRequest) -> str:
    return (f"This visitor was forgotten on {request.requested_at:%Y-%m-%d} (privacy request "
            f"#{request.pk}); nothing can be staged for it unless an administrator lifts the "
            "suppression.")


def forgotten_problem(connection: TargetConnection, identity_type: str, identity: Any) -> str:
    """The refusal for staging `identity` on `connection`, or "" when it is not suppressed."""
    if not isinstance(identity, str) or not identity or connection.pk is None:
        return ""
    found = _cached(connection)
    if not found:
        return ""
    request = found.get((identity_type, keyed_hash(identity)))
    return _message(request) if request is not None else ""


def standing_request_ids(connection_id: int) -> set[int]:
    """The privacy requests whose suppression stands now (read afresh)."""
    return {request.pk for request in _suppressed(connection_id).values()}


def refuse_forgotten_rows(connection: TargetConnection, rows: Iterable[dict[str, Any]], *,
                          besides: set[int] | None = None, counted_as: str = "Row") -> None:
    """Refuse (code `forgotten`) the whole set when a row names a suppressed visitor; read
    afresh, inside the caller's transaction. `besides`: requests the rows were checked against
    already (standing_request_ids), left out — with none left, the rows are not read at all.
    `counted_as`: what the messages call the n-th of `rows` ("Row 3, identity: …")."""
    found = _suppressed(connection.pk)
    if besides:
        found = {key: r for key, r in found.items() if r.pk not in besides}
    if not found:
        return
    problems = []
    for number, row in enumerate(rows, start=1):
        request = found.get((row["identity_type"], keyed_hash(row["identity"])))
        if request is not None:
            problems.append(f"{counted_as} {number}, identity: {_message(request)}")
    if problems:
        raise ValidationError([ValidationError(p, code=FORGOTTEN) for p in problems])
