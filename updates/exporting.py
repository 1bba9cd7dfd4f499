"""Export profile updates as CSV or XLSX, safe to open in a spreadsheet.

Columns are those of resources.ProfileUpdateExportResource: content, status, who and when,
attempts, the last attempt's outcome, the acknowledgment — never a connection's token.

Formula injection: a spreadsheet runs a cell starting with '=', '+', '-' or '@' as a formula, and
some also after a leading tab or carriage return. Every such text cell is written with a single
quote in front (OWASP's advice); django-import-export's own setting covers only '='. CSV files
are UTF-8 with a byte-order mark, so spreadsheets detect the encoding; the import reads them back.

Rows are streamed from the database (iterator) into the writer, so memory does not grow with the
number of updates.
"""

from __future__ import annotations

import csv
import io
from typing import Any, BinaryIO

from django.core.exceptions import ValidationError
from django.db.models import OuterRef, QuerySet, Subquery

from .errors import require_perm
from .models import ProfileUpdate, SendAttempt, TargetConnection, UpdateStatus

PERM_EXPORT = "updates.export_profileupdate"
FORMATS = {"csv": "text/csv; charset=utf-8",
           "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class _CommandLine:
    """The acting party of `manage.py export_updates` run without --user: whoever can run
    commands on the server can read the database anyway. Only the command passes it."""

    def __repr__(self) -> str:
        return "COMMAND_LINE"


COMMAND_LINE = _CommandLine()


def escape_formula(value: Any) -> Any:
    """Text a spreadsheet would evaluate gets a leading single quote; everything else as is."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def require_export_permission(user) -> None:
    if user is COMMAND_LINE:
        return
    require_perm(user, PERM_EXPORT, "You do not have permission to export profile updates.")


def export_queryset(*, queryset: QuerySet | None = None, connection: TargetConnection | None = None,
                    status: str | None = None) -> QuerySet:
    """The updates to export, oldest first, with what the export resource reads in one query."""
    if status and status not in UpdateStatus.values:
        raise ValidationError(f"Unknown status {status!r}; use one of "
                              f"{', '.join(UpdateStatus.values)}.", code="invalid_status")
    qs = ProfileUpdate.objects.all() if queryset is None else queryset
    if connection is not None:
        qs = qs.filter(connection=connection)
    if status:
        qs = qs.filter(status=status)
    last = SendAttempt.objects.filter(update=OuterRef("pk")).order_by("-number")
    return (qs.select_related("connection", "created_by", "last_edited_by", "decided_by")
              .annotate(last_attempt_at=Subquery(last.values("started_at")[:1]),
                        last_attempt_outcome=Subquery(last.values("outcome")[:1]),
                        last_http_status=Subquery(last.values("http_status")[:1]))
              .order_by("id"))


def updates_export(*, by, file_format: str, out: BinaryIO, queryset: QuerySet | None = None,
                   connection: TargetConnection | None = None, status: str | None = None) -> int:
    """Write the chosen updates to `out` (a binary file) as CSV or XLSX; returns the row count."""
    require_export_permission(by)
    if file_format not in FORMATS:
        raise ValidationError(f"Unknown export format {file_format!r}; use csv or xlsx.",
                              code="invalid_format")
    from .resources import ProfileUpdateExportResource  # resources imports escape_formula

    resource = ProfileUpdateExportResource()
    headers = resource.get_export_headers()
    updates = export_queryset(queryset=queryset, connection=connection, status=status)
    rows = (resource.export_resource(u) for u in updates.iterator(chunk_size=2000))
    writer = _write_csv if file_format == "csv" else _write_xlsx
    return writer(out, headers, rows)


def _write_csv(out: BinaryIO, headers: list[str], rows) -> int:
    text = io.TextIOWrapper(out, encoding="utf-8-sig", newline="", write_through=True)
    try:
        writer = csv.writer(text, lineterminator="\r\n")
        writer.writerow(headers)
        count = 0
        for count, row in enumerate(rows, start=1):  # noqa: B007 - the count is returned
            writer.writerow(row)
        text.flush()
        return count
    finally:
        text.detach()  # leave `out` open for the caller


def _write_xlsx(out: BinaryIO, headers: list[str], rows) -> int:
    from openpyxl import Workbook
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    workbook = Workbook(write_only=True)  # streams rows to disk instead of holding cells
    sheet = workbook.create_sheet("updates")
    sheet.append(headers)
    count = 0
    for count, row in enumerate(rows, start=1):  # noqa: B007 - the count is returned
        # XLSX cannot hold most control characters; they can only come from free text fields.
        sheet.append([ILLEGAL_CHARACTERS_RE.sub("\ufffd", v) if isinstance(v, str) else v
                      for v in row])
    workbook.save(out)
    return count
