"""Listings as DataFrames: updates, send attempts, audit events."""

from __future__ import annotations

from typing import Any

import pandas as pd

from updates import permissions

from .base import DEFAULT_LIMIT, SessionBase
from .results import Frame, int_columns, utc_columns
from .selection import ids_of
from .thread import orm

SYSTEM_ACTOR = "system"  # audit(): the actor of events no person caused (the sender, the jobs)


class Listings(SessionBase):
    """Session.updates / attempts / audit."""

    def updates(self, *, ids: Any = None, connection: Any = None, status: Any = None,
                created_by: str | None = None, reason: str | None = None,
                limit: int = DEFAULT_LIMIT, import_job: Any = None) -> pd.DataFrame:
        """Updates as a DataFrame (newest first, at most `limit`): ids as Int64, `status` and
        `identity_type` categorical, timestamps timezone-aware (UTC), `attributes` as dicts
        exactly as they will be sent. `at_target` (categorical, next to `status`) says what
        happened at Target: verified, not_applied, checking, unverified, unchanged, off, or ""
        (nothing sent).

        Example::

            nb.updates(status="pending", connection="acme")["status"].value_counts()
        """
        return orm.run(self._updates, ids=ids, connection=connection, status=status,
                        created_by=created_by, reason=reason, limit=limit,
                        import_job=import_job)

    def _updates(self, *, ids, connection, status, created_by, reason, limit,
                 import_job=None) -> pd.DataFrame:
        from updates import verification
        from updates.models import IdentityType, UpdateStatus, content_hash

        user = self._user()
        self._need(user, permissions.PERM_VIEW, permissions.DOING[permissions.PERM_VIEW])
        _, qs = self._selection(ids=ids, connection=connection, status=status,
                                created_by=created_by, reason=reason, required=False,
                                import_job=import_job)
        fields = {"id": "id", "connection": "connection__label", "identity_type": "identity_type",
                  "identity": "identity", "attributes": "attributes", "reason": "reason",
                  "status": "status", "created_by": "created_by__username",
                  "created_at": "created_at", "last_edited_by": "last_edited_by__username",
                  "submitted_at": "submitted_at", "decided_by": "decided_by__username",
                  "decided_at": "decided_at", "decision_comment": "decision_comment",
                  "attempts_total": "attempts_total", "next_attempt_at": "next_attempt_at",
                  "acknowledged_at": "acknowledged_at", "last_error": "last_error",
                  "verification_state": "verification_state"}
        rows = list(qs.order_by("-id").values_list(*fields.values())[:limit])
        frame = pd.DataFrame(rows, columns=list(fields))
        # What happened at Target, next to the status (verification.AT_TARGET; "" not sent).
        frame.insert(list(fields).index("status") + 1, "at_target", pd.Categorical(
            [verification.at_target(status, state)
             for status, state in zip(frame["status"], frame.pop("verification_state"))],
            categories=["", *verification.AT_TARGET]))
        int_columns(frame, "id", "attempts_total")
        utc_columns(frame, "created_at", "submitted_at", "decided_at", "next_attempt_at",
             "acknowledged_at")
        frame["status"] = pd.Categorical(frame["status"], categories=UpdateStatus.values)
        frame["identity_type"] = pd.Categorical(frame["identity_type"],
                                                categories=IdentityType.values)
        frame["connection"] = frame["connection"].astype("category")
        # What approve()/reject() compare with when given this table (decisions.py).
        frame["fingerprint"] = [content_hash(t, i, a) for t, i, a in zip(
            frame["identity_type"].astype(str), frame["identity"], frame["attributes"])]
        return Frame(frame)

    def attempts(self, *, ids: Any = None, connection: Any = None, outcome: str | None = None,
                 limit: int = DEFAULT_LIMIT) -> pd.DataFrame:
        """Send attempts (newest first): Target's status and answer, latency, outcome
        (categorical), `started_at` timezone-aware. `ids` are update ids.

        Example::

            nb.attempts(connection="demo")["latency_ms"].describe()
        """
        return orm.run(self._attempts, ids=ids, connection=connection, outcome=outcome,
                        limit=limit)

    def _attempts(self, *, ids, connection, outcome, limit) -> pd.DataFrame:
        from updates import selectors
        from updates.models import SendAttempt

        user = self._user()
        self._need(user, permissions.PERM_VIEW, permissions.DOING[permissions.PERM_VIEW])
        qs = selectors.attempts_selected(
            update_ids=ids_of(ids), outcome=outcome,
            connection=None if connection is None else self._connection(connection))
        fields = {"id": "id", "update_id": "update_id", "connection": "connection__label",
                  "number": "number", "started_at": "started_at", "method": "method",
                  "request_bytes": "request_bytes", "http_status": "http_status",
                  "response_body": "response_body", "latency_ms": "latency_ms",
                  "outcome": "outcome", "error": "error", "worker": "worker"}
        rows = list(qs.values_list(*fields.values())[:limit])
        frame = pd.DataFrame(rows, columns=list(fields))
        int_columns(frame, "id", "update_id", "number", "request_bytes", "http_status", "latency_ms")
        utc_columns(frame, "started_at")
        frame["outcome"] = pd.Categorical(frame["outcome"], categories=[o.value for o in SendAttempt.Outcome])
        frame["connection"] = frame["connection"].astype("category")
        return Frame(frame)

    def audit(self, *, ids: Any = None, connection: Any = None, actor: str | None = None,
              action: str | None = None, limit: int = DEFAULT_LIMIT) -> pd.DataFrame:
        """Audit events (newest first): who (`actor`), when (`at`, UTC), what (`action`,
        categorical), from/to status, comment and the before/after of changed fields. `ids`
        are update ids.

        Example::

            nb.audit(ids=result.ids[:3])[["at", "actor", "action", "to_status"]]
        """
        return orm.run(self._audit, ids=ids, connection=connection, actor=actor, action=action,
                        limit=limit)

    def _audit(self, *, ids, connection, actor, action, limit) -> pd.DataFrame:
        from updates import selectors

        user = self._user()
        self._need(user, permissions.PERM_VIEW, permissions.DOING[permissions.PERM_VIEW])
        # An imported update's creation is its import's one event (selectors.audit_selected).
        qs = selectors.audit_selected(
            update_ids=ids_of(ids), actor=actor, action=action,
            connection=None if connection is None else self._connection(connection))
        fields = {"id": "id", "at": "at", "actor": "actor__username", "action": "action",
                  "update_id": "update_id", "mapping_id": "mapping_id",
                  "connection": "connection__label", "from_status": "from_status",
                  "to_status": "to_status", "comment": "comment", "changes": "changes"}
        rows = list(qs.values_list(*fields.values())[:limit])
        frame = pd.DataFrame(rows, columns=list(fields))
        int_columns(frame, "id", "update_id", "mapping_id")
        utc_columns(frame, "at")
        # No person: the sender, the verification job, the schedules. Said, not NaN.
        frame["actor"] = frame["actor"].fillna(SYSTEM_ACTOR).astype(object)
        for column in ("action", "connection"):
            frame[column] = frame[column].astype("category")
        return Frame(frame)

