"""Staging from a DataFrame: the import's checks and save, one row per input row."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from .base import DEFAULT_REASON, SessionBase
from .cells import checked_rows, table_of
from .results import StageResult
from .thread import orm


class Staging(SessionBase):
    """Session.stage: one update per row, checked and saved as an import."""

    def stage(self, data: pd.DataFrame | Iterable[Mapping[str, Any]], *,
              connection: Any, submit: bool = False, keep_good: bool = False,
              reason: str = DEFAULT_REASON, supersede: bool = False) -> StageResult:
        """Stage one update per row, with the import's columns and checks.

        Columns: ``identity_type`` (mboxPC or mbox3rdPartyId), ``identity``, then source names
        of the connection's active mappings. Every row is checked first (importing.RowChecker:
        the same checks as a CSV import or staging one update). If any row is bad nothing is
        saved — unless ``keep_good=True``, which saves the good rows. Needs the import
        permission (and submit, with ``submit=True``); refused as a whole otherwise
        (a ValidationError with code ``permission_denied``, as the services refuse).

        One open change per visitor and attribute: a row setting an attribute that an open
        update of its visitor sets (draft, pending, approved, sending, failed) is a bad row,
        its error naming that update — unless ``supersede=True`` (needs the cancel permission):
        then that update is cancelled, audited as superseded by the row's update, when the rows
        are saved. A sending update is never superseded.

        Example::

            frame = pd.DataFrame({"identity_type": ["mbox3rdPartyId"] * 2,
                                  "identity": ["CUST-1", "CUST-2"],
                                  "loan_status": ["funded", "nope"]})
            result = nb.stage(frame, connection="acme")
            result.table        # update_id / status / errors per row, indexed like `frame`
            result.errors_table # row (index label), column, message
        """
        labels, header, rows = table_of(data)
        return orm.run(self._stage, labels, header, rows, connection=connection,
                        submit=submit, keep_good=keep_good, reason=reason, supersede=supersede)

    def _stage(self, labels, header, rows, *, connection, submit, keep_good, reason,
               supersede=False) -> StageResult:
        from django.core.exceptions import ValidationError

        from updates import importing, mappings, selectors, workflow
        from updates.models import UpdateStatus

        user = self._user()
        conn = self._connection(connection)
        importing.require_import_permission(user, submit=submit)
        if supersede:
            workflow.require_supersede(user)
        # Checked once, against these mappings; the save refuses the lot if they change before it
        # commits (updates_stage_many compares their fingerprint under lock), as the import does.
        connection_mappings = mappings.active_mappings(conn)
        fingerprint = mappings.mappings_fingerprint(connection_mappings)
        checker = importing.RowChecker(connection=conn, header=header,
                                       connection_mappings=connection_mappings)
        if checker.header_errors:
            raise ValidationError([
                f"column {e.column}: {e.message}" if e.column else e.message
                for e in checker.header_errors])
        good, problems, row_errors = checked_rows(checker, header, labels, rows,
                                                   supersede=supersede)
        save = bool(good) and (keep_good or not problems)
        update_ids: list[Any] = [pd.NA] * len(rows)
        if save:
            status = UpdateStatus.PENDING if submit else UpdateStatus.DRAFT
            # One import, as a file's: written invisibly, live together with one audit row, all
            # or nothing (importing.rows_import).
            job = importing.rows_import(
                connection=conn, rows=[u for _, u in good], by=user, fingerprint=fingerprint,
                name=f"DataFrame staged from a notebook by {user.get_username()}",
                submit=submit, reason=reason, supersede=supersede)
            by_visitor = selectors.import_job_update_ids(job)
            for position, update in good:
                update_ids[position] = by_visitor[(update["identity_type"], update["identity"])]
            saved_status = str(status)
        else:
            saved_status = ""
        bad = {p for p, _, _ in problems}
        statuses = ["invalid" if p in bad else (saved_status if save else "not saved")
                    for p in range(len(rows))]
        table, errors_table = stage_frames(labels, problems, row_errors, update_ids, statuses)
        return StageResult(table, errors_table, import_job=job.pk if save else None,
                           rows=len(rows),
                           saved=len(good) if save else 0, invalid=len(bad))

def stage_frames(labels, problems, row_errors, update_ids, statuses):
    """StageResult's two tables: one row per staged row (its update id, status and errors),
    and one per problem."""
    index = pd.Index(labels) if labels else pd.RangeIndex(0)
    table = pd.DataFrame({
        "update_id": pd.array(update_ids, dtype="Int64"),
        "status": pd.Categorical(statuses, categories=["draft", "pending", "invalid",
                                                       "not saved"]),
        "errors": row_errors,
    }, index=index)
    errors_table = pd.DataFrame(
        {"row": [labels[p] for p, _, _ in problems],
         "column": [c for _, c, _ in problems],
         "message": [m for _, _, m in problems]})
    return table, errors_table


