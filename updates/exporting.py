"""Export profile updates as CSV or XLSX, safe to open in a spreadsheet — and back.

Two layouts:
- "all": the columns of ProfileUpdateExportResource below (django-import-export: status, who and
  when, attempts, the last attempt's outcome, the acknowledgment — never a connection's token), with the attributes as one column per
  mapping source name instead of one JSON cell, and
  `unmapped_attributes` (JSON) for stored values whose mapping is no longer active.
- "import": only `identity_type`, `identity` and the source-name columns of one connection —
  exactly what the import reads, so the file can be edited and imported again (new updates).
Either way the source-name columns hold the values as they are sent (each mapping's normal
form), which the import accepts unchanged. `connection_template` writes an empty file with the
import's headers for a connection, `import_errors_file` the problems of a refused import.

XLSX files have a frozen header row with a filter button on each header cell, column widths
fitted to the header and the first 1,000 rows (capped at 50 characters), and timestamps (UTC; the spreadsheet has no zone) and date
or date-and-time attribute values as real date cells; whole numbers as numbers.

Formula injection: a spreadsheet runs a cell starting with '=', '+', '-' or '@' as a formula, and
some also after a leading tab or carriage return. Every such text cell is written with a single
quote in front (OWASP's advice; escaping only '=' is not enough). Attribute values are judged
by their text, never by today's mapping (a value stored under a text mapping that is now an
integer mapping may be "=HYPERLINK(…)"): only a plain number is written unquoted, and only a value
in its mapping's exact normal form becomes a number or date cell — anything else is escaped
text. CSV files
are UTF-8 with a byte-order mark, so spreadsheets detect the encoding; the import reads them back.

Rows are streamed from the database (iterator) into the writer, so memory does not grow with the
number of updates.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import itertools
import re
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

from django.core.exceptions import ValidationError
from django.db.models import OuterRef, QuerySet, Subquery
from import_export import resources, widgets
from import_export.fields import Field

from .errors import PERMISSION_DENIED, Refused, require_perm
from .permissions import PERM_EXPORT, PERM_IMPORT, PERM_VIEW_IMPORT_JOB, refusal
from .models import (AttributeMapping, ImportJob, ProfileUpdate, SendAttempt, TargetConnection,
                     UpdateStatus)

FORMATS = {"csv": "text/csv; charset=utf-8",
           "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
LAYOUTS = ("all", "import")
IDENTITY_COLUMNS = ("identity_type", "identity")
TIMESTAMP_COLUMNS = ("not_before", "created_at", "last_edited_at", "submitted_at", "decided_at",
                     "next_attempt_at", "last_attempt_at", "acknowledged_at")
UNMAPPED_COLUMN = "unmapped_attributes"
# A number as the integer and decimal normal forms write it: the only text written unquoted
# (whatever the column's mapping says today), since no spreadsheet runs it as a formula.
_PLAIN_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?\Z")
_INTEGER_NORMAL = re.compile(r"(0|-?[1-9][0-9]*)\Z")


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


def _utc(value: dt.datetime | None) -> str:
    """A timestamp as ISO-8601 in UTC with a Z, the form the rest of ProfileOps uses."""
    return "" if value is None else value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Utc(widgets.Widget):
    def render(self, value, obj=None, **kwargs):
        return _utc(value)


class _Native(widgets.Widget):
    """Numbers stay numbers (a spreadsheet can sum them); None becomes an empty cell."""

    def render(self, value, obj=None, **kwargs):
        return "" if value is None else value


# The columns a purged update (retention, a forgotten visitor) shows its purge note in.
PURGED_COLUMNS = frozenset({"identity", "attributes", "reason", "decision_comment"})


class ProfileUpdateExportResource(resources.ModelResource):
    """The "all" layout's report columns (django-import-export): content, state, timestamps,
    attempts, acknowledgment, verification — no secrets. Every text cell is formula-escaped.

    Expects the queryset from export_queryset (it annotates the last attempt).
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
        fields = ("id", "connection", "identity_type", "identity", "attributes", "status",
                  "reason", "not_before", "created_by", "created_at", "last_edited_by",
                  "last_edited_at", "submitted_at", "decided_by", "decided_at",
                  "decision_comment", "attempts", "attempts_since_queued", "next_attempt_at",
                  "last_attempt_at", "last_attempt_outcome", "last_http_status", "acknowledged",
                  "acknowledged_at", "last_error", "verification_state", "verified_at")
        export_order = fields

    def dehydrate_attributes(self, update: ProfileUpdate) -> str:
        # Sorted and unescaped: the cell shows exactly the names and values that are sent.
        return json.dumps(update.attributes, ensure_ascii=False, sort_keys=True)

    def dehydrate_acknowledged(self, update: ProfileUpdate) -> str:
        return "yes" if update.acknowledged_at else "no"

    def export_field(self, field, instance, **kwargs):
        if instance.purged_at is not None and field.column_name in PURGED_COLUMNS:
            return escape_formula(instance.purge_note)
        return escape_formula(super().export_field(field, instance, **kwargs))


EXPORT_COLUMNS = ProfileUpdateExportResource.Meta.fields
_REPORT = ProfileUpdateExportResource()


def report_cells(update: ProfileUpdate) -> list[Any]:
    """The report columns of one update (EXPORT_COLUMNS), every text cell escaped."""
    return list(_REPORT.export_resource(update))


def require_export_permission(user) -> None:
    if user is COMMAND_LINE:
        return
    require_perm(user, PERM_EXPORT, refusal(PERM_EXPORT))


def export_queryset(*, queryset: QuerySet | None = None, connection: TargetConnection | None = None,
                    status: str | None = None, created_by=None,
                    created_from: dt.date | None = None,
                    created_to: dt.date | None = None) -> QuerySet:
    """The updates to export, oldest first, with what the export resource reads in one query.
    `created_from` / `created_to` are inclusive days in UTC."""
    if status and status not in UpdateStatus.values:
        raise ValidationError(f"Unknown status {status!r}; use one of "
                              f"{', '.join(UpdateStatus.values)}.", code="invalid_status")
    if created_from and created_to and created_from > created_to:
        raise ValidationError(f"The date range ends ({created_to}) before it starts "
                              f"({created_from}).", code="invalid_range")
    qs = ProfileUpdate.objects.all() if queryset is None else queryset
    if connection is not None:
        qs = qs.filter(connection=connection)
    if status:
        qs = qs.filter(status=status)
    if created_by is not None:
        qs = qs.filter(created_by=created_by)
    if created_from:
        qs = qs.filter(created_at__gte=_utc_midnight(created_from))
    if created_to:
        qs = qs.filter(created_at__lt=_utc_midnight(created_to + dt.timedelta(days=1)))
    last = SendAttempt.objects.filter(update=OuterRef("pk")).order_by("-number")
    return (qs.select_related("connection", "created_by", "last_edited_by", "decided_by")
              .annotate(last_attempt_at=Subquery(last.values("started_at")[:1]),
                        last_attempt_outcome=Subquery(last.values("outcome")[:1]),
                        last_http_status=Subquery(last.values("http_status")[:1]))
              .order_by("id"))


def _utc_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0, 0), tzinfo=dt.timezone.utc)


def updates_export(*, by, file_format: str, out: BinaryIO, queryset: QuerySet | None = None,
                   connection: TargetConnection | None = None, status: str | None = None,
                   created_by=None, created_from: dt.date | None = None,
                   created_to: dt.date | None = None, layout: str = "all") -> int:
    """Write the chosen updates to `out` (a binary file) as CSV or XLSX; returns the row count.

    layout="import" needs the updates of exactly one connection (`connection`, or a queryset
    holding one connection's updates only): the import reads a file for one connection."""
    require_export_permission(by)
    _check_format(file_format)
    if layout not in LAYOUTS:
        raise ValidationError(f"Unknown layout {layout!r}; use all or import.",
                              code="invalid_layout")
    updates = export_queryset(queryset=queryset, connection=connection, status=status,
                              created_by=created_by, created_from=created_from,
                              created_to=created_to)
    connections = ([connection] if connection is not None else list(
        TargetConnection.objects.filter(pk__in=updates.order_by().values("connection_id"))
        .order_by("label", "pk")))
    if layout == "import" and len(connections) > 1:
        raise ValidationError(
            "A file to re-import holds the updates of one connection (the import reads a file "
            f"for one connection); these are for {len(connections)}. Choose a connection.",
            code="several_connections")
    table = _Table(connections, layout=layout, typed=file_format == "xlsx")
    rows = (table.row(u) for u in updates.iterator(chunk_size=2000))
    writer = _write_csv if file_format == "csv" else _write_xlsx
    return writer(out, table.headers, rows)


def connection_template(*, by, connection: TargetConnection, file_format: str,
                        out: BinaryIO) -> None:
    """An empty import file for `connection`: the header row the import expects (identity
    columns, then one column per active mapping's source name), nothing else. For those who may
    import or export."""
    if by is not COMMAND_LINE and not (
            getattr(by, "is_active", False)
            and (by.has_perm(PERM_EXPORT) or by.has_perm(PERM_IMPORT))):
        raise Refused("You may neither import nor export profile updates.", code=PERMISSION_DENIED)
    _check_format(file_format)
    headers = [*IDENTITY_COLUMNS, *(m.source_name for m in _active_mappings([connection]))]
    writer = _write_csv if file_format == "csv" else _write_xlsx
    writer(out, [escape_formula(h) for h in headers], iter(()))


ERROR_COLUMNS = ("row", "column", "what_is_wrong")


def import_errors_file(*, by, job: ImportJob, file_format: str, out: BinaryIO) -> int:
    """A refused import's problems (ImportJob.errors: row, column, message) as a file, one line
    per problem in row order, for its uploader or those who may view import jobs. The refused
    file itself is not kept (it holds customer data), so the rows are named by their
    spreadsheet row number, as in the preview."""
    if by is not COMMAND_LINE and not (
            getattr(by, "is_active", False)
            and (job.created_by_id == by.pk or by.has_perm(PERM_VIEW_IMPORT_JOB))):
        raise Refused("Only the uploader, or those who may view import jobs, may download its "
                      "problems.", code=PERMISSION_DENIED)
    _check_format(file_format)
    errors = job.errors
    ordered = sorted(errors, key=lambda e: (e.get("row") is not None, e.get("row") or 0))
    rows = ([e.get("row") if e.get("row") is not None else "file",
             escape_formula(e.get("column") or ""), escape_formula(e.get("message") or "")]
            for e in ordered)
    writer = _write_csv if file_format == "csv" else _write_xlsx
    return writer(out, list(ERROR_COLUMNS), rows)


def _check_format(file_format: str) -> None:
    if file_format not in FORMATS:
        raise ValidationError(f"Unknown export format {file_format!r}; use csv or xlsx.",
                              code="invalid_format")


def _active_mappings(connections: Sequence[TargetConnection]) -> list[AttributeMapping]:
    return list(AttributeMapping.objects.filter(connection__in=connections, active=True)
                .order_by("connection__label", "connection_id", "source_name"))


class _Table:
    """The headers of one export and how each update becomes a row under them."""

    def __init__(self, connections: Sequence[TargetConnection], *, layout: str,
                 typed: bool) -> None:
        self.layout, self.typed = layout, typed
        report = list(EXPORT_COLUMNS)
        self._attributes_at = report.index("attributes")
        mappings = _active_mappings(connections)
        # One column per source name; two connections may use the same one for the same column.
        self.sources = list(dict.fromkeys(m.source_name for m in mappings))
        self._by_target = {}  # connection id -> {Target name: mapping}
        for m in mappings:
            self._by_target.setdefault(m.connection_id, {})[m.target_name] = m
        if layout == "import":
            self.headers = [*IDENTITY_COLUMNS, *self.sources]
        else:
            self._report = report[:self._attributes_at] + report[self._attributes_at + 1:]
            self.headers = [*self._report, *self.sources, UNMAPPED_COLUMN]
        self.headers = [escape_formula(h) for h in self.headers]

    def row(self, update: ProfileUpdate) -> list[Any]:
        by_target = self._by_target.get(update.connection_id, {})
        values: dict[str, Any] = {}
        unmapped: dict[str, Any] = {}
        for name, value in (update.attributes or {}).items():
            value = update.purge_note or value  # purged: say when and why, never the hash
            mapping = by_target.get(name)
            if mapping is None:
                unmapped[name] = value
            else:
                values[mapping.source_name] = self._attribute_cell(mapping, value)
        attributes = [values.get(source, "") for source in self.sources]
        if self.layout == "import":
            return [escape_formula(update.identity_type),
                    escape_formula(update.purge_note or update.identity), *attributes]
        report = report_cells(update)
        del report[self._attributes_at]
        if self.typed:
            for column in TIMESTAMP_COLUMNS:
                index = self._report.index(column)
                report[index] = _naive_utc(getattr(update, column, None))
        extra = json.dumps(unmapped, ensure_ascii=False, sort_keys=True) if unmapped else ""
        return [*report, *attributes, escape_formula(extra)]

    def _attribute_cell(self, mapping: AttributeMapping, value: Any) -> Any:
        """The cell for a stored value. What is stored was checked against the mapping as it
        was then, not as it is now (a text mapping changed to integer keeps its old values):
        so the cell never trusts today's type. Only a plain number goes out unquoted, and only
        a value in the type's exact normal form becomes a typed cell; anything else is text,
        formula-escaped."""
        if not isinstance(value, str) or value == "":
            return escape_formula(value)
        typed = self._typed_cell(mapping.value_type, value) if self.typed else None
        if typed is not None:
            return typed
        # A plain number cannot run as a formula; writing it unquoted keeps "-42" a number the
        # import accepts again.
        return value if _PLAIN_NUMBER.match(value) else escape_formula(value)

    @staticmethod
    def _typed_cell(kind: str, value: str) -> Any:
        """An XLSX number or date cell for `value` when it is exactly the normal form of `kind`
        (so the cell reads back as the same value), else None."""
        Type = AttributeMapping.ValueType
        if kind == Type.INTEGER and _INTEGER_NORMAL.match(value):
            return int(value)
        if kind == Type.DATE:
            try:
                day = dt.date.fromisoformat(value)
            except ValueError:
                return None
            return day if day.isoformat() == value else None
        if kind == Type.DATETIME:
            try:
                moment = dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
            except ValueError:
                return None
            return moment if moment.strftime("%Y-%m-%dT%H:%M:%SZ") == value else None
        return None


def _naive_utc(moment: dt.datetime | None) -> dt.datetime | str:
    # A spreadsheet cell has no time zone; the README says export times are UTC.
    if moment is None:
        return ""
    return moment.astimezone(dt.timezone.utc).replace(tzinfo=None)


def _write_csv(out: BinaryIO, headers: list[str], rows: Iterator[list[Any]]) -> int:
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


def _write_xlsx(out: BinaryIO, headers: list[str], rows: Iterator[list[Any]]) -> int:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    workbook = Workbook(write_only=True)  # streams rows to disk instead of holding cells
    sheet = workbook.create_sheet("updates")
    sheet.freeze_panes = "A2"  # the header stays in view while scrolling
    # Column widths must be written before the first row (the sheet is streamed): they are
    # measured on the header and the first WIDTH_SAMPLE_ROWS rows, held back for that.
    rows = iter(rows)
    sample = list(itertools.islice(rows, WIDTH_SAMPLE_ROWS))
    for letter, width in _column_widths(headers, sample).items():
        sheet.column_dimensions[letter].width = width
    bold = Font(bold=True)
    header_cells = []
    for header in headers:
        cell = WriteOnlyCell(sheet, value=header)
        cell.font = bold
        header_cells.append(cell)
    sheet.append(header_cells)

    def cell(value: Any) -> Any:
        if isinstance(value, dt.datetime):
            typed = WriteOnlyCell(sheet, value=value)
            typed.number_format = "yyyy-mm-dd hh:mm:ss"
            return typed
        if isinstance(value, dt.date):
            typed = WriteOnlyCell(sheet, value=value)
            typed.number_format = "yyyy-mm-dd"
            return typed
        if isinstance(value, str):
            # XLSX cannot hold most control characters; they can only come from free text.
            return ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
        return value

    count = 0
    for count, row in enumerate(itertools.chain(sample, rows), start=1):  # noqa: B007
        sheet.append([cell(v) for v in row])
    if headers:  # a filter button on every header cell, over all the rows written
        sheet.auto_filter.ref = f"A1:{get_column_letter(len(headers))}{count + 1}"
    workbook.save(out)
    return count


# XLSX column widths (in characters): fitted to the longest text of the header and the first
# rows, so dates never show as "########", but capped so one long text does not push the other
# columns off the screen (the cell keeps all of it).
WIDTH_SAMPLE_ROWS = 1000
MIN_COLUMN_WIDTH = 6
MAX_COLUMN_WIDTH = 50


def _shown_length(value: Any) -> int:
    if isinstance(value, dt.datetime):
        return len("2026-12-07 01:53:16")  # the number format "yyyy-mm-dd hh:mm:ss"
    if isinstance(value, dt.date):
        return len("2026-12-07")
    if value is None:
        return 0
    return max((len(line) for line in str(value).splitlines()), default=0)


def _column_widths(headers: list[str], rows: list[list[Any]]) -> dict[str, float]:
    from openpyxl.utils import get_column_letter

    widths = {}
    for index, header in enumerate(headers):
        longest = max([_shown_length(header) + 2]  # bold, and the filter button
                      + [_shown_length(row[index]) for row in rows if index < len(row)])
        widths[get_column_letter(index + 1)] = float(
            min(MAX_COLUMN_WIDTH, max(MIN_COLUMN_WIDTH, longest + 2)))
    return widths
