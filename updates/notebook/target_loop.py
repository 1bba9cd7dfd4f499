"""Closing the loop with Target: the live diff and where verification stands."""

from __future__ import annotations

from typing import Any

import pandas as pd

from updates import permissions

from .base import DEFAULT_LIMIT, SessionBase
from .results import Frame, LiveDiff, int_columns, utc_columns
from .thread import orm

NOT_STARTED = "not_started"  # verification(): no check made or scheduled yet (blank in the model)


class TargetLoop(SessionBase):
    """Session.live_diff / verification."""

    def live_diff(self, *, ids: Any = None, connection: Any = None, status: Any = None,
                  created_by: str | None = None, reason: str | None = None,
                  limit: int = 1_000) -> LiveDiff:
        """What the selected updates would change on the live profile, from Target's profile read
        API (reading.update_live_diff, as the approval queue shows it): a read no older than
        DIFF_MAX_READ_AGE_SECONDS is reused, otherwise Target is read now (reads have their own
        rate limit and never use the update quota; a throttled or failed read says so in
        `notes`). Needs the view permission.

        Example::

            diff = supervisor.live_diff(ids=result.ids)
            diff.table[~diff.table["changes"]]       # attributes Target already holds
            diff.notes[diff.notes["state"] == "not_found"]
        """
        return orm.run(self._live_diff, ids=ids, connection=connection, status=status,
                        created_by=created_by, reason=reason, limit=limit)

    def _live_diff(self, *, ids, connection, status, created_by, reason, limit) -> LiveDiff:
        from updates import reading

        user = self._user()
        self._need(user, permissions.PERM_VIEW, permissions.DOING[permissions.PERM_VIEW])
        _, qs = self._selection(ids=ids, connection=connection, status=status,
                                created_by=created_by, reason=reason)
        rows, notes = [], []
        for update in qs.select_related("connection")[:limit]:
            diff = reading.update_live_diff(update=update, by=user)
            drops = update.connection.drop_unchanged_attributes and diff.changes_count > 0
            notes.append({"update_id": update.pk, "state": diff.state, "read_at": diff.read_at,
                          "changes": diff.changes_count, "message": diff.message})
            rows += [{"update_id": update.pk, "attribute": row.name,
                      "at_target": row.current_value, "modified_at": row.current_modified_at,
                      "read_at": diff.read_at, "to_send": row.new_value, "changes": row.changes,
                      "left_out": bool(drops and not row.changes), "note": diff.message}
                     for row in diff.rows]
        table = pd.DataFrame(rows, columns=["update_id", "attribute", "at_target", "modified_at",
                                            "read_at", "to_send", "changes", "left_out", "note"])
        notes_table = pd.DataFrame(notes, columns=["update_id", "state", "read_at", "changes",
                                                   "message"])
        int_columns(table, "update_id")
        int_columns(notes_table, "update_id", "changes")
        utc_columns(table, "read_at")
        utc_columns(notes_table, "read_at")
        table["changes"] = table["changes"].astype(bool)
        table["left_out"] = table["left_out"].astype(bool)
        return LiveDiff(table, notes_table, updates=len(notes_table),
                        attributes_changing=int(table["changes"].sum()),
                        unchanged=int((~table["changes"]).sum()),
                        without_profile=int((notes_table["state"] == "not_found").sum()))

    def verification(self, *, ids: Any = None, connection: Any = None, status: Any = "sent",
                     created_by: str | None = None, reason: str | None = None,
                     limit: int = DEFAULT_LIMIT) -> pd.DataFrame:
        """Where verification stands per update (newest first): `verification_state` (not_started:
        no check made or scheduled yet — blank in the model; pending, verified, not_applied, unverified, off), `checks_made` of
        `checks_planned`, `next_check_at`, `verified_at` (UTC), the values Target held before
        the send (`prior_values`, read at `prior_read_at`; None for an attribute that did not
        exist) and the attributes the send left out as unchanged (`left_out`). Needs the view
        permission. Without ids, sent updates are listed.

        Example::

            nb.verification(ids=result.ids)["verification_state"].value_counts()
        """
        return orm.run(self._verification, ids=ids, connection=connection, status=status,
                        created_by=created_by, reason=reason, limit=limit)

    def _verification(self, *, ids, connection, status, created_by, reason, limit
                      ) -> pd.DataFrame:
        from updates import verification
        from updates.models import VerificationState

        user = self._user()
        self._need(user, permissions.PERM_VIEW, permissions.DOING[permissions.PERM_VIEW])
        status = None if ids is not None and status == "sent" else status
        _, qs = self._selection(ids=ids, connection=connection, status=status,
                                created_by=created_by, reason=reason, required=False)
        fields = {"update_id": "id", "connection": "connection__label", "status": "status",
                  "acknowledged_at": "acknowledged_at", "verification_state": "verification_state",
                  "checks_made": "verification_checks", "next_check_at": "verification_next_at",
                  "verified_at": "verified_at", "prior_read_at": "prior_read_at",
                  "prior_values": "prior_values", "left_out": "unsent_unchanged"}
        rows = list(qs.order_by("-id").values_list(*fields.values())[:limit])
        frame = pd.DataFrame(rows, columns=list(fields))
        frame.insert(frame.columns.get_loc("checks_made") + 1, "checks_planned",
                     len(verification.check_delays()))
        int_columns(frame, "update_id", "checks_made", "checks_planned")
        utc_columns(frame, "acknowledged_at", "next_check_at", "verified_at", "prior_read_at")
        # Blank in the model (not sent, or the first check not yet scheduled) is named here, so
        # value_counts() has no blank-named row.
        frame["verification_state"] = pd.Categorical(
            frame["verification_state"].replace("", NOT_STARTED),
            categories=[NOT_STARTED, *VerificationState.values])
        frame["connection"] = frame["connection"].astype("category")
        return Frame(frame)

