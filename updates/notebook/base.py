"""A notebook session: one named person, read afresh on every call, and what the calls name."""

from __future__ import annotations

from typing import Any

import numpy as np

from .results import StageResult
from .selection import ids_of, refuse_permission

DEFAULT_REASON = "staged from a notebook"
DEFAULT_LIMIT = 10_000


class SessionBase:
    """Who acts (`username`, read afresh on every call: a permission withdrawn meanwhile counts
    at once) and the lookups every call of the session shares. Runs on the ORM thread."""

    def __init__(self, username: str) -> None:
        self.username = username

    # -- lookups (run on the ORM thread) --

    def _user(self):
        from updates import selectors

        user = selectors.person_named(self.username)
        if user is None:
            raise LookupError(f"No user named {self.username!r}.")
        if not user.is_active:
            refuse_permission(f"User {self.username!r} is inactive.")
        return user  # fresh every call: no stale permission cache

    @staticmethod
    def _connection(ref: Any):
        from updates import selectors

        return selectors.connection_named(int(ref) if isinstance(ref, np.integer) else ref)

    def _need(self, user, perm: str, doing: str) -> None:
        if not user.has_perm(perm):
            refuse_permission(f"{self.username} does not have permission to {doing}.")

    def _selection(self, *, ids, connection, status, created_by, reason,
                   default_status: str | None = None, required: bool = True,
                   import_job: Any = None):
        """(the ids asked for, a queryset): `ids`, narrowed by the filters; without ids,
        `default_status` applies (drafts to submit, pending updates to decide). `import_job`
        (an id, or a StageResult) selects the updates that import created — never the ones
        that merely carry its reason text."""
        from updates import selectors

        wanted = ids_of(ids)
        if required and wanted is None and connection is None and created_by is None \
                and reason is None and status is None and import_job is None:
            raise ValueError("Say which updates: ids=…, or a filter (connection, status, "
                             "created_by, reason, import_job).")
        status = status if status is not None else (None if wanted is not None else default_status)
        job = import_job.import_job if isinstance(import_job, StageResult) else import_job
        qs = selectors.updates_selected(
            ids=wanted, connection=None if connection is None else self._connection(connection),
            statuses=None if status is None else [status] if isinstance(status, str) else list(status),
            created_by=created_by, reason=reason, import_job_id=None if job is None else int(job))
        if import_job is not None and job is None:
            qs = qs.none()  # a StageResult that saved nothing selects nothing
        return wanted, qs
