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
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.filter(username=self.username).first()
        if user is None:
            raise LookupError(f"No user named {self.username!r}.")
        if not user.is_active:
            refuse_permission(f"User {self.username!r} is inactive.")
        return user  # fresh every call: no stale permission cache

    @staticmethod
    def _connection(ref: Any):
        from updates.models import TargetConnection

        if isinstance(ref, TargetConnection):
            return TargetConnection.objects.get(pk=ref.pk)
        if ref is None:
            active = list(TargetConnection.objects.filter(active=True)[:2])
            if len(active) == 1:
                return active[0]
            raise ValueError("Name the connection (label or client code): "
                             f"{len(active)} active connections could be meant.")
        if isinstance(ref, (int, np.integer)):
            found = TargetConnection.objects.filter(pk=int(ref)).first()
        else:
            found = (TargetConnection.objects.filter(label=ref).first()
                     or TargetConnection.objects.filter(client_code=ref).first())
        if found is None:
            labels = ", ".join(TargetConnection.objects.values_list("label", flat=True)) or "none"
            raise LookupError(f"No connection {ref!r} (connections: {labels}).")
        return found

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
        from updates.models import ProfileUpdate

        wanted = ids_of(ids)
        if required and wanted is None and connection is None and created_by is None \
                and reason is None and status is None and import_job is None:
            raise ValueError("Say which updates: ids=…, or a filter (connection, status, "
                             "created_by, reason, import_job).")
        qs = ProfileUpdate.objects.all()
        if wanted is not None:
            qs = qs.filter(pk__in=wanted)
        if connection is not None:
            qs = qs.filter(connection=self._connection(connection))
        status = status if status is not None else (None if wanted is not None else default_status)
        if status is not None:
            qs = qs.filter(status__in=[status] if isinstance(status, str) else list(status))
        if created_by is not None:
            qs = qs.filter(created_by__username=created_by)
        if reason is not None:
            qs = qs.filter(reason=reason)
        if import_job is not None:
            job = import_job.import_job if isinstance(import_job, StageResult) else import_job
            qs = qs.filter(import_job_id=int(job)) if job is not None else qs.none()
        return wanted, qs.order_by("id")

