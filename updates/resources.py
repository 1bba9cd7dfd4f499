"""django-import-export resources for profile updates.

ProfileUpdateImportResource runs a tablib Dataset through the same row checks as
importing.py (RowChecker: identity, every mapping, workflow.check_content, one row per visitor),
so django-import-export's own preview lists each bad row with its column and reason; it saves
all rows through workflow.updates_stage_many or none. Row numbers are spreadsheet row numbers
(header = row 1), as everywhere in ProfileOps — not django-import-export's data-row count.
The admin's own import page (admin/imports.py) streams files instead of loading a Dataset, for
files of 100,000 rows; both paths share the checks.

ProfileUpdateExportResource names the exported columns and how each is written. It never
touches the connection's bearer token, and escapes every text cell a spreadsheet would run as a
formula (exporting.escape_formula).
"""

from __future__ import annotations

import datetime as dt
import json

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from import_export import exceptions, resources, widgets
from import_export.fields import Field
from import_export.results import RowResult

from . import importing, workflow
from .exporting import escape_formula
from .models import ProfileUpdate, TargetConnection

EXPORT_COLUMNS = (
    "id", "connection", "identity_type", "identity", "attributes", "status", "reason",
    "not_before", "created_by", "created_at", "last_edited_by", "last_edited_at", "submitted_at",
    "decided_by", "decided_at", "decision_comment", "attempts", "attempts_since_queued",
    "next_attempt_at", "last_attempt_at", "last_attempt_outcome", "last_http_status",
    "acknowledged", "acknowledged_at", "last_error", "verification_state", "verified_at",
)


class ProfileUpdateImportResource(resources.ModelResource):
    """Imports a Dataset for one connection, all or nothing, with importing.py's checks.

    resource = ProfileUpdateImportResource(connection=conn, submit=False)
    result = resource.import_data(dataset, dry_run=True, user=request.user)
    result.invalid_rows → [InvalidRow(number=<sheet row>, error_dict={column: [reason]})]
    """

    class Meta:
        model = ProfileUpdate
        fields = ("identity_type", "identity")
        import_id_fields = ()
        use_transactions = True

    def __init__(self, *, connection: TargetConnection | None = None, submit: bool = False,
                 reason: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.connection = connection
        self.submit = submit
        self.reason = reason

    def import_data(self, dataset, dry_run=False, raise_errors=False, use_transactions=None,
                    collect_failed_rows=False, rollback_on_validation_errors=False, **kwargs):
        user = kwargs.get("user")
        result = self.get_result_class()()
        headers = [importing.cell_text(h).strip() for h in (dataset.headers or [])]
        result.diff_headers = headers
        result.total_rows = len(dataset)
        try:
            importing.require_import_permission(user, submit=self.submit)
            if self.connection is None:
                raise ValidationError("Choose the connection the updates are for.")
        except ValidationError as error:
            if raise_errors:
                raise
            result.append_base_error(self.get_error_result_class()(error))
            return result

        checker = importing.RowChecker(connection=self.connection, header=headers)
        if checker.header_errors:
            self._add_invalid(result, 1, dict(zip(headers, headers)), checker.header_errors)
        rows = []
        for number, values in enumerate(dataset, start=2):
            if checker.header_errors:
                break
            if all(importing.cell_blank(v) for v in values):
                continue
            problems, update = checker.check(number, values)
            if problems:
                self._add_invalid(result, number, dict(zip(headers, values)), problems)
                continue
            rows.append(update)
            row_result = self.get_row_result_class()()
            row_result.import_type = RowResult.IMPORT_TYPE_NEW
            row_result.diff = [importing.cell_text(v) for v in values]
            row_result.row_values = dict(zip(headers, values))
            result.increment_row_result_total(row_result)
            result.append_row_result(row_result)

        if result.invalid_rows and raise_errors:
            first = result.invalid_rows[0]
            raise exceptions.ImportError(first.error, number=first.number)
        if not dry_run and not result.invalid_rows and rows:
            workflow.updates_stage_many(connection=self.connection, rows=rows, by=user,
                                        submit=self.submit, reason=self.reason)
        return result

    def _add_invalid(self, result, number: int, values: dict, problems) -> None:
        by_column: dict[str, list[str]] = {}
        for problem in problems:
            by_column.setdefault(problem.column or NON_FIELD_ERRORS, []).append(problem.message)
        row_result = self.get_row_result_class()()
        row_result.import_type = RowResult.IMPORT_TYPE_INVALID
        result.increment_row_result_total(row_result)
        result.append_invalid_row(number, values, ValidationError(by_column))


class _Utc(widgets.Widget):
    """A timestamp as ISO-8601 in UTC with a Z, the form the rest of ProfileOps uses."""

    def render(self, value, obj=None, **kwargs):
        if value is None:
            return ""
        return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Native(widgets.Widget):
    """Numbers stay numbers (a spreadsheet can sum them); None becomes an empty cell."""

    def render(self, value, obj=None, **kwargs):
        return "" if value is None else value


class ProfileUpdateExportResource(resources.ModelResource):
    """One row per update: content, state, timestamps, attempts, acknowledgment — no secrets.

    Expects the queryset from exporting.export_queryset (it annotates the last attempt).
    """

    id = Field(attribute="id", column_name="id", widget=_Native())
    connection = Field(attribute="connection__client_code", column_name="connection")
    identity_type = Field(attribute="identity_type", column_name="identity_type")
    identity = Field(attribute="identity", column_name="identity")
    attributes = Field(column_name="attributes")
    status = Field(attribute="status", column_name="status")
    reason = Field(attribute="reason", column_name="reason")
    not_before = Field(attribute="not_before", column_name="not_before", widget=_Utc())
    created_by = Field(attribute="created_by__username", column_name="created_by")
    created_at = Field(attribute="created_at", column_name="created_at", widget=_Utc())
    last_edited_by = Field(attribute="last_edited_by__username", column_name="last_edited_by")
    last_edited_at = Field(attribute="last_edited_at", column_name="last_edited_at", widget=_Utc())
    submitted_at = Field(attribute="submitted_at", column_name="submitted_at", widget=_Utc())
    decided_by = Field(attribute="decided_by__username", column_name="decided_by")
    decided_at = Field(attribute="decided_at", column_name="decided_at", widget=_Utc())
    decision_comment = Field(attribute="decision_comment", column_name="decision_comment")
    attempts = Field(attribute="attempts_total", column_name="attempts", widget=_Native())
    attempts_since_queued = Field(attribute="attempt_count", column_name="attempts_since_queued",
                                  widget=_Native())
    next_attempt_at = Field(attribute="next_attempt_at", column_name="next_attempt_at",
                            widget=_Utc())
    last_attempt_at = Field(attribute="last_attempt_at", column_name="last_attempt_at",
                            widget=_Utc())
    last_attempt_outcome = Field(attribute="last_attempt_outcome",
                                 column_name="last_attempt_outcome")
    last_http_status = Field(attribute="last_http_status", column_name="last_http_status",
                             widget=_Native())
    acknowledged = Field(column_name="acknowledged")
    acknowledged_at = Field(attribute="acknowledged_at", column_name="acknowledged_at",
                            widget=_Utc())
    last_error = Field(attribute="last_error", column_name="last_error")
    verification_state = Field(attribute="verification_state", column_name="verification_state")
    verified_at = Field(attribute="verified_at", column_name="verified_at", widget=_Utc())

    class Meta:
        model = ProfileUpdate
        fields = EXPORT_COLUMNS
        export_order = EXPORT_COLUMNS

    def dehydrate_attributes(self, update: ProfileUpdate) -> str:
        # Sorted and unescaped: the cell shows exactly the names and values that are sent.
        return json.dumps(update.attributes, ensure_ascii=False, sort_keys=True)

    def dehydrate_acknowledged(self, update: ProfileUpdate) -> str:
        return "yes" if update.acknowledged_at else "no"

    def export_field(self, field, instance, **kwargs):
        return escape_formula(super().export_field(field, instance, **kwargs))
