"""Sending: the exact requests and their quota cost, the send run and the verification run."""

from __future__ import annotations

from typing import Any

import pandas as pd

from updates import permissions

from .base import DEFAULT_LIMIT, SessionBase
from .results import Preview, Result, SendReport, int_columns, utc_columns
from .thread import orm


class Sending(SessionBase):
    """Session.preview / send / verify."""

    # -- what would be sent --

    def preview(self, *, ids: Any = None, connection: Any = None, status: Any = None,
                created_by: str | None = None, reason: str | None = None, due: bool = False,
                limit: int = DEFAULT_LIMIT, import_job: Any = None) -> Preview:
        """The exact requests for the selected updates — method, URL (with the query for GET),
        form body (POST), headers with the token shown as ``Bearer [redacted]``, size — and
        their quota cost against each connection's rolling-24 h headroom. ``due=True``
        previews what ``send()`` would send now (the command's ``--dry-run``).

        Example::

            nb.preview(ids=result.ids).table[["method", "url", "size_bytes"]]
            nb.preview(due=True, connection="acme").quota_cost
        """
        return orm.run(self._preview, ids=ids, connection=connection, status=status,
                        created_by=created_by, reason=reason, due=due, limit=limit,
                        import_job=import_job)

    def _preview(self, *, ids, connection, status, created_by, reason, due, limit,
                 import_job=None) -> Preview:
        from updates import sending

        user = self._user()
        self._need(user, permissions.PERM_VIEW, permissions.DOING[permissions.PERM_VIEW])
        if due:
            conn = None if connection is None else self._connection(connection)
            plan = sending.plan_due(connection=conn, limit=limit)
        else:
            _, qs = self._selection(ids=ids, connection=connection, status=status,
                                    created_by=created_by, reason=reason, import_job=import_job)
            plan = [sending.planned(update) for update in qs.select_related("connection")[:limit]]
        table = _requests_table(plan)
        return Preview(table, _cost_table(sending.plan_cost(plan)),
                       requests=int((table["method"] != "").sum()),
                       quota_cost=int(table["quota_cost"].sum()),
                       unsendable=int((table["method"] == "").sum()))

    # -- the runs --

    def send(self, *, connection: Any = None, limit: int | None = None,
             time_budget: float | None = None) -> SendReport:
        """Send what is due now with the sending service (sending.send_due), as the schedule and
        ``send_updates`` do: leases, the quota reservation, retries and the records are theirs.
        Only approved updates are sent; starting a run needs a part in the workflow (the
        submit or the approve permission), and the run's worker name says who started it
        (``notebook:<user>``).

        Example::

            nb.send(connection="demo").table
        """
        return orm.run(self._send, connection=connection, limit=limit, time_budget=time_budget)

    def _send(self, *, connection, limit, time_budget) -> SendReport:
        from updates import sending

        user = self._user()
        conn = None if connection is None else self._connection(connection)
        run = sending.send_due(connection=conn, limit=limit, worker=f"notebook:{self.username}",
                               time_budget=time_budget, by=user)
        totals = {"claimed": run.claimed, "requests": run.requests_sent,
                  "acknowledged": run.acknowledged, "retried": run.retried,
                  "failed": run.failed, "deferred_by_quota": run.deferred_by_quota}
        table = pd.DataFrame([{"run_id": run.pk, **totals, "started_at": run.started_at,
                               "finished_at": run.finished_at, "error": run.error}])
        utc_columns(table, "started_at", "finished_at")
        int_columns(table, "run_id", *totals)
        return SendReport(table, **totals)

    def verify(self, *, connection: Any = None, time_budget: float | None = 30.0) -> Result:
        """Run the verification job now (verification.updates_verify_due, as the "Verify sent
        updates" schedule and ``verify_updates`` do): newly acknowledged updates get their first
        check scheduled, and those whose check is due are read back. Needs a part in the
        workflow, as ``send`` does.

        Example::

            supervisor.verify(connection="demo")
        """
        return orm.run(self._verify, connection=connection, time_budget=time_budget)

    def _verify(self, *, connection, time_budget) -> Result:
        from updates import verification

        user = self._user()
        conn = None if connection is None else self._connection(connection)
        run = verification.updates_verify_due(connection=conn, time_budget=time_budget, by=user)
        totals = {"scheduled": run.started, "switched_off": run.switched_off,
                  "checked": run.checked, "verified": run.verified,
                  "not_applied": run.not_applied, "unverified": run.unverified,
                  "throttled": run.throttled}
        table = pd.DataFrame([totals])
        int_columns(table, *totals)
        result = Result(table, **totals)
        result.title = "Verification run"
        return result


def _requests_table(plan) -> pd.DataFrame:
    """One row per planned request (sending.PlannedRequest), the token shown redacted."""
    from updates import target

    rows = []
    for item in plan:
        request = item.request
        headers = {} if request is None else target.shown_headers(request.headers)
        rows.append({
            "update_id": item.update.pk, "connection": item.update.connection.label,
            "status": item.update.status, "method": item.method,
            "url": request.url if request else "",
            "body": (request.body or b"").decode("ascii") if request else "",
            "headers": "; ".join(f"{k}: {v}" for k, v in headers.items()),
            "size_bytes": item.size_bytes, "limit_bytes": item.limit_bytes,
            "quota_cost": item.quota_cost, "problem": item.problem,
            "fingerprint": item.update.content_hash})
    table = pd.DataFrame(rows, columns=[
        "update_id", "connection", "status", "method", "url", "body", "headers",
        "size_bytes", "limit_bytes", "quota_cost", "problem", "fingerprint"])
    int_columns(table, "update_id", "size_bytes", "limit_bytes", "quota_cost")
    return table


def _cost_table(costs) -> pd.DataFrame:
    """The plan's cost per connection against its window (sending.plan_cost)."""
    return pd.DataFrame(
        [{"connection": conn.label, "quota_cost": cost.cost, "window_requests": cost.used,
          "limit": cost.limit, "headroom": cost.remaining, "fits": cost.fits}
         for conn, cost in costs],
        columns=["connection", "quota_cost", "window_requests", "limit", "headroom", "fits"])
