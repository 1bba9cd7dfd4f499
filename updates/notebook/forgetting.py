"""Forgetting a visitor from a notebook: the same service as the admin's page and
`manage.py forget_visitor` (updates/forgetting.py), as this session's person, and the privacy
requests with their evidence. No table here holds an identity: only its type."""

from __future__ import annotations

from typing import Any

import pandas as pd

from updates import permissions

from .base import SessionBase
from .results import Result, int_columns, utc_columns
from .thread import orm

REQUEST_COLUMNS = ("id", "connection", "identity_type", "regulation", "state", "requested_by",
                   "requested_at", "cancelled_updates", "purged", "adobe_job_id", "note",
                   "suppressed")


class PrivacyResult(Result):
    """Privacy requests, one row each: state, counts purged per table, Adobe's job id."""

    title = "Privacy requests"


class Forgetting(SessionBase):
    """Session.forget_visitor / privacy_requests."""

    def forget_visitor(self, *, connection: Any, identity_type: str, identity: str,
                       regulation: str = "gdpr", file_at_target: bool = True) -> PrivacyResult:
        """Forget one visitor here and at Target: cancel its open updates, purge every stored
        value and identity (keyed hashes instead), keep it off future staging and imports, and
        file Adobe's Privacy Service delete (unless `file_at_target=False`). Needs the right to
        forget visitors (administrators, data protection officers).

        Example::

            nb.forget_visitor(connection="acme", identity_type="mbox3rdPartyId",
                              identity="customer-42", regulation="gdpr").table
        """
        return orm.run(self._forget, connection=connection, identity_type=identity_type,
                       identity=identity, regulation=regulation, file_at_target=file_at_target)

    def _forget(self, *, connection, identity_type, identity, regulation,
                file_at_target) -> PrivacyResult:
        from updates import forgetting

        request = forgetting.visitor_forget(
            connection=self._connection(connection), identity_type=identity_type,
            identity=identity, regulation=regulation, by=self._user(),
            file_at_target=file_at_target)
        return PrivacyResult(_requests_frame([request]), requests=1,
                             cancelled_updates=request.cancelled_updates,
                             purged_rows=sum(request.purge_counts.values()))

    def privacy_requests(self, *, connection: Any = None, limit: int = 1000) -> PrivacyResult:
        """The privacy requests (newest first) with their evidence, as a table."""
        return orm.run(self._privacy_requests, connection=connection, limit=limit)

    def _privacy_requests(self, *, connection, limit) -> PrivacyResult:
        from updates.models import PrivacyRequest

        user = self._user()
        self._need(user, permissions.PERM_VIEW_PRIVACY,
                   permissions.DOING[permissions.PERM_VIEW_PRIVACY])
        qs = PrivacyRequest.objects.select_related("connection", "requested_by")
        if connection is not None:
            qs = qs.filter(connection=self._connection(connection))
        requests = list(qs[:limit])
        return PrivacyResult(_requests_frame(requests), requests=len(requests))


def _requests_frame(requests: list) -> pd.DataFrame:
    frame = pd.DataFrame([(
        r.pk, r.connection.label, r.identity_type, r.regulation, r.state,
        r.requested_by.get_username(), r.requested_at, r.cancelled_updates,
        dict(r.purge_counts), r.adobe_job_id, r.note, r.suppressing) for r in requests],
        columns=list(REQUEST_COLUMNS))
    int_columns(frame, "id", "cancelled_updates")
    utc_columns(frame, "requested_at")
    return frame
