"""Deciding: submit, approve and reject (set-wise, covering the content shown), and reverts."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .base import SessionBase
from .results import Decisions, Frame, Reverts, int_columns
from .selection import ids_of, shown_of
from .thread import orm


class Deciding(SessionBase):
    """Session.submit / approve / reject / revert: refusals per update, never raised."""

    def submit(self, *, ids: Any = None, connection: Any = None, created_by: str | None = None,
               reason: str | None = None, comment: str = "",
               import_job: Any = None) -> Decisions:
        """Submit drafts for approval (workflow.update_submit, one transaction each). Without
        ids, the filter selects drafts. Refusals come back per update, never raised.

        Example::

            nb.submit(ids=result.ids)
            nb.submit(import_job=result)   # the updates that stage() saved, as one import
        """
        from updates import workflow

        return self._decide(workflow.update_submit, "draft", ids=ids, connection=connection,
                            created_by=created_by, reason=reason, import_job=import_job,
                            comment=comment)

    def approve(self, *, ids: Any = None, connection: Any = None, created_by: str | None = None,
                reason: str | None = None, comment: str = "",
                import_job: Any = None, route: str = "auto") -> Decisions:
        """Approve pending updates (workflow.update_approve). Four eyes: an update this user
        created or last edited is refused — superusers included — and named in the result.

        A decision covers the content you looked at: pass what ``preview()`` or ``updates()``
        returned (the Preview, its table, or the DataFrame — anything with an id and a
        ``fingerprint`` column, or records with those keys) and each row whose update is no
        longer pending with exactly that content is refused (code ``stale``, its message
        says so) and left as it is. Bare ids (or a filter) decide whatever is there now.

        Example::

            looked_at = supervisor.preview(ids=result.ids)
            decisions = supervisor.approve(ids=looked_at, comment="checked against CRM")
            decisions.refused   # one row per refusal, with the reason

        ``route`` ("auto", "single" or "bulk") is the route the approved updates take, as on the
        batch page: ``routes()`` shows which one "auto" gives, why, and the time either way.
        """
        from updates import workflow

        return self._decide(workflow.update_approve, "pending", ids=ids, connection=connection,
                            created_by=created_by, reason=reason, import_job=import_job,
                            comment=comment, route=route)

    def routes(self, *, ids: Any = None, connection: Any = None, created_by: str | None = None,
               reason: str | None = None, import_job: Any = None,
               route: str = "auto") -> pd.DataFrame:
        """Which route approving these pending updates sends them by (routing.py), per
        connection: how many, the route, why, and roughly how long single requests and the
        bulk API would each take (bulk: none where the connection sends single only).

        Example::

            supervisor.routes(import_job=result)       # before approve(import_job=result)
        """
        return orm.run(self._routes, selection=dict(
            ids=ids, connection=connection, created_by=created_by, reason=reason,
            import_job=import_job), route=route)

    def _routes(self, *, selection, route) -> pd.DataFrame:
        from django.db.models import Count

        from updates import permissions, routing
        from updates.models import TargetConnection

        self._need(self._user(), permissions.PERM_VIEW, "view profile updates")
        _, qs = self._selection(status=None, default_status="pending", **selection)
        counts = dict(qs.order_by().values("connection_id").annotate(n=Count("id"))
                      .values_list("connection_id", "n"))
        rows = []
        for conn in TargetConnection.objects.filter(pk__in=list(counts)).order_by("label"):
            plan = routing.plan_route(connection=conn, rows=counts[conn.pk], choice=route)
            rows.append({"connection": conn.client_code, "updates": plan.rows,
                         "route": plan.route, "why": plan.why, "single": plan.single_time,
                         "bulk": plan.bulk_time if plan.bulk_minutes is not None else None})
        return Frame(pd.DataFrame(rows, columns=["connection", "updates", "route", "why",
                                                 "single", "bulk"]))

    def reject(self, *, ids: Any = None, connection: Any = None, created_by: str | None = None,
               reason: str | None = None, comment: str,
               import_job: Any = None) -> Decisions:
        """Reject pending updates (workflow.update_reject); a comment saying why is required.
        Like approve(), given what preview()/updates() returned it refuses (``stale``) rows
        whose content changed since; bare ids reject whatever is there now.

        Example::

            supervisor.reject(ids=[42], comment="customer withdrew consent")
        """
        from updates import workflow

        return self._decide(workflow.update_reject, "pending", ids=ids, connection=connection,
                            created_by=created_by, reason=reason, import_job=import_job,
                            comment=comment)

    def _decide(self, service, default_status: str, **selection: Any) -> Decisions:
        comment = selection.pop("comment")
        return orm.run(self._decide_on_thread, service, default_status, comment, selection)

    def _decide_on_thread(self, service, default_status, comment, selection) -> Decisions:
        from updates import decisions, workflow

        route = selection.pop("route", "auto")

        user = self._user()
        shown = shown_of(selection["ids"]) if service in (workflow.update_approve,
                                                         workflow.update_reject) else None
        wanted, qs = self._selection(status=None, default_status=default_status, **selection)
        updates = list(qs)
        if service in (workflow.update_approve, workflow.update_reject):
            outcome = decisions.updates_decide_each(
                updates=updates, decision="approve" if service is workflow.update_approve
                else "reject", by=user, comment=comment, shown=shown, route=route)
        else:
            outcome = workflow.apply_to_each(service, updates, by=user, comment=comment)
        rows = [{"update_id": u.pk, "outcome": "done", "status": u.status, "message": ""}
                for u in outcome.done]
        rows += [{"update_id": u.pk, "outcome": "refused", "status": u.status, "message": m}
                 for u, m in outcome.refused]
        found = {u.pk for u in updates}
        rows += [{"update_id": pk, "outcome": "refused", "status": "",
                  "message": f"Update #{pk} does not exist."}
                 for pk in dict.fromkeys(wanted or []) if pk not in found]
        table = pd.DataFrame(rows, columns=["update_id", "outcome", "status", "message"])
        table = table.sort_values("update_id", kind="stable").reset_index(drop=True)
        int_columns(table, "update_id")
        table["outcome"] = pd.Categorical(table["outcome"], categories=["done", "refused"])
        return Decisions(table, done=len(outcome.done), refused=len(rows) - len(outcome.done))

    def revert(self, *, ids: Any, comment: str = "", supersede: bool = False) -> Reverts:
        """Stage, per sent update, a revert carrying the values Target held before it was sent
        (verification.update_revert): a draft by this user, which goes through submit and
        approval like any other — so whoever stages a revert cannot approve it. An attribute
        that did not exist before cannot be removed through Target's API; the result says so per
        attribute. Refusals (not sent, no read from before the send, no permission) come back
        per update, never raised — as is a visitor's open update setting one of the attributes
        (`open_conflict`, naming it), unless ``supersede=True`` cancels it (as ``stage``).

        Example::

            reverts = nb.revert(ids=[41, 42], comment="wrong list")
            nb.submit(ids=reverts.ids)
        """
        return orm.run(self._revert, ids=ids, comment=comment, supersede=supersede)

    def _revert(self, *, ids, comment, supersede=False) -> Reverts:
        from django.core.exceptions import ValidationError

        from updates import selectors, verification

        user = self._user()
        wanted = ids_of(ids)
        if not wanted:
            raise ValueError("Say which updates to revert: ids=….")
        found = {u.pk: u for u in selectors.updates_selected(ids=wanted)
                 .select_related("connection")}
        rows = []
        for pk in dict.fromkeys(wanted):
            update = found.get(pk)
            row = {"update_id": pk, "outcome": "refused", "revert_update_id": None,
                   "reverted": {}, "not_revertible": {}, "message": ""}
            if update is None:
                row["message"] = f"Update #{pk} does not exist."
            else:
                try:
                    revert, plan = verification.update_revert(update=update, by=user,
                                                              comment=comment,
                                                              supersede=supersede)
                except ValidationError as error:
                    row["message"] = " ".join(error.messages)
                else:
                    row.update(outcome="done", revert_update_id=revert.pk,
                               reverted=plan.attributes, not_revertible=plan.not_revertible)
            rows.append(row)
        table = pd.DataFrame(rows, columns=["update_id", "outcome", "revert_update_id",
                                            "reverted", "not_revertible", "message"])
        int_columns(table, "update_id", "revert_update_id")
        table["outcome"] = pd.Categorical(table["outcome"], categories=["done", "refused"])
        done = int((table["outcome"] == "done").sum())
        return Reverts(table, done=done, refused=len(table) - done)

