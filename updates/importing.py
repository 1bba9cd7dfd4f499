"""Import profile updates from CSV or XLSX files, all or nothing.

A file holds one visitor update per row: a header row with the columns `identity_type`,
`identity`, then source names of the connection's active mappings (any subset, any order; a
required mapping's column must be present). Row numbers are spreadsheet row numbers: the header
is row 1, the first update row 2. Completely empty rows are skipped but still counted, so the
numbers match what a spreadsheet shows.

Every row is checked before anything is saved — the identity, every value through its mapping
(mappings.normalise_value), then the whole update through workflow.check_content, the same checks
as staging one update in the admin. Each problem becomes {"row", "column", "message"}; a file
with any problem saves nothing. A valid file becomes drafts (or pending updates, when asked)
created by the importing user (workflow.updates_stage_many), each referencing its job
(ProfileUpdate.import_job), with ONE audit row for the whole job (import_job_audit), written in
the transaction that makes them all live; an update's timeline rebuilds its "imported" entry
from that row and the update's first state (selectors.update_timeline).

Two rows for the same visitor (same identity type and identity) in one file are refused — the
second row's error names both row numbers. Which of two values "wins" depends on the order rows
were exported in, which nobody checks; merge the rows into one instead.

One open change per visitor and attribute (open_changes.py): a row setting an attribute that an
open update of its visitor sets is refused — by the preview, per row, naming the open update —
unless the import supersedes (`supersede=True`, ImportJob.supersede_open: the uploader may
cancel updates): then each such update is cancelled, audited "superseded" by the row's update,
in the transaction that makes the import live. That transaction locks the import's visitors and
looks again; whatever turned up since the preview refuses the whole import, or is superseded.
A sending update is never superseded: its row is refused either way.

Files: CSV as UTF-8, with or without a byte-order mark, comma-separated (semicolon- or
tab-separated files, as some spreadsheet locales save them, are recognised from the header);
XLSX: the first worksheet. Memory stays bounded: rows are streamed from the stored file — or,
for `manage.py import_updates`, from the file on disk, which is then neither held nor stored
(so the upload's MAX_FILE_BYTES does not bind it; its SHA-256 is kept instead) — once to check
(the preview) and once to save. Only a hash per visitor grows with the file (duplicates), never
a table of every row. Reading (spreadsheets.py) stops with a refusal as soon as a file crosses
an upload limit (import_limit: unpacked size, rows, cells per row, characters per cell).
The stored file is dropped as soon as the import starts (or at once, when the file is invalid):
from then on the updates, or the errors, say what it held.

Nothing is saved that was not checked against the mappings as they are when it is saved: the
preview stores the fingerprint of the mappings it checked against (mappings_fingerprint), and
the confirmed import refuses the file when the connection's mappings no longer have it — at its
start, and again inside the saving transaction with the mappings locked.

The flow (admin, command, background tasks all use it):

    import_job_create   permission check; a small file is read and checked here, a large one
                        is stored as "checking" for import_job_check in django-q2; either way
                        the job ends queued (valid — the preview) or invalid with its errors
    import_job_start    the creator confirms; small files run at once, large ones in django-q2
    import_job_run      refuse if the mappings changed since the preview; turn each row into
                        its update and write them 2,000 at a time (progress on
                        ImportJob.processed_rows), invisible to everyone else until every row
                        is written, then live together — or nothing, on any failure: in one
                        transaction on PostgreSQL, in short ones on SQLite, not yet live and
                        made live by one statement at the end (in_one_transaction)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection as db, connections, transaction
from django.utils import timezone

from . import audit, mappings, open_changes, quota, suppression, target, workflow
from .conf import setting
from .errors import NOT_UPLOADER, WRONG_STATE, Refused, require_perm
from .models import AttributeMapping, AuditEvent, ImportJob, ProfileUpdate, TargetConnection
from .permissions import PERM_IMPORT, PERM_STAGE, PERM_SUBMIT, refusal
from .spreadsheets import (ImportFileError, Source, cell_blank, cell_text, column_letter,
                           detect_format, non_text_kind, read_table)
from .validation import identity_errors

logger = logging.getLogger(__name__)

IDENTITY_COLUMNS = ("identity_type", "identity")
MAX_FILE_BYTES = 50 * 1024 * 1024
# ImportJob.errors keeps this many problems (error_count has them all); enough to fix a file.
MAX_STORED_ERRORS = 1000
SAVE_CHUNK_ROWS = 2000
SAMPLE_ROWS = 5
TASK_FUNCTION = "updates.tasks.run_import_job"
CHECK_TASK_FUNCTION = "updates.tasks.check_import_job"
# A background import must not be cut short by the cluster's default 90 s task timeout.
TASK_TIMEOUT_SECONDS = 3600


# A stored error quotes at most this much of a column name or message (a bad value may be huge).
MAX_ERROR_TEXT = 500


def background_check_bytes() -> int:
    """Files larger than this are checked in django-q2, not in the upload request (about 2,000
    rows of a typical file: checking them takes well under a second)."""
    return setting("IMPORT_BACKGROUND_CHECK_BYTES")


# A small XLSX can still be a large sheet: its XML compresses a hundredfold when it is rows of
# nothing (a 110 KB file declared 2,000,000 rows). Such a file is checked in the background
# too: when its parts unpack (per the zip directory, which bounds what is read) to more than
# this many times the background byte threshold, or its first sheet declares (its <dimension>)
# more rows than background_threshold().
XLSX_UNPACKED_FACTOR = 4

def declares_large(data: bytes, file_format: str) -> bool:
    """Whether an upload below background_check_bytes() says it is larger than it looks: an
    XLSX whose parts unpack to more than XLSX_UNPACKED_FACTOR times that threshold, or whose
    first sheet's dimension declares more rows than background_threshold(). Cheap: the zip
    directory, then (only for a file that unpacks small) the sheet's dimension tag. A file too
    damaged to tell is left to the check, which refuses it."""
    if file_format != "xlsx":
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
        if unpacked > XLSX_UNPACKED_FACTOR * background_check_bytes():
            return True
        from openpyxl import load_workbook

        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        try:
            declared = workbook.worksheets[0].max_row if workbook.worksheets else None
        finally:
            workbook.close()
    except Exception:  # noqa: BLE001 - whatever a hand-made file raises: the check says why
        return False
    return declared is not None and declared > background_threshold()


def background_threshold() -> int:
    """Files with more rows than this run their confirmed import in django-q2, not the request."""
    return setting("IMPORT_BACKGROUND_ROWS")


@dataclass(frozen=True)
class RowError:
    row: int | None  # spreadsheet row number (header = 1); None: the file as a whole
    column: str  # "" when the problem is the whole row or file
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": _excerpt(_storable(self.column)),
                "message": _excerpt(_storable(self.message))}


def _storable(text: str) -> str:
    """PostgreSQL stores no NUL in text or jsonb; a hostile file's header (a column name in an
    error) or name may hold one, which failed the whole job with a DataError. Shown as U+FFFD,
    like any character that cannot be read. (Found by tests/hostile.)"""
    return text.replace("\x00", "\ufffd")


def _excerpt(text: str) -> str:
    """At most MAX_ERROR_TEXT characters: a job's errors never store a huge cell or header."""
    if len(text) <= MAX_ERROR_TEXT:
        return text
    return f"{text[:MAX_ERROR_TEXT - 30]}… ({len(text):,} characters in all)"


@dataclass
class CheckResult:
    """What checking a file found. `errors` is capped at MAX_STORED_ERRORS; `error_count` is not."""

    total_rows: int = 0
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0

    @property
    def valid(self) -> bool:
        return self.error_count == 0

    def add(self, error: RowError) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_STORED_ERRORS:
            self.errors.append(error)


# --- permissions -------------------------------------------------------------------------------

def require_import_permission(user, *, submit: bool = False) -> None:
    """Importing stages updates (and submits them, when asked): it needs all of those rights."""
    require_perm(user, PERM_IMPORT, refusal(PERM_IMPORT))
    require_perm(user, PERM_STAGE, refusal(PERM_STAGE))
    if submit:
        require_perm(user, PERM_SUBMIT,
                     "You do not have permission to submit profile updates for approval.")


# --- checking rows -----------------------------------------------------------------------------

class RowChecker:
    """Checks one file's rows against one connection's active mappings.

    Stateful: it remembers every visitor seen so far, to refuse a second row for the same one.
    Used by the streaming import below (the admin, the command, the notebook and the tasks).

    compact_duplicates (check_file, for files of a million rows): remember only a hash of each
    visitor — a set of integers, not of strings and row numbers — and, instead of refusing a row
    whose hash was seen, note it in `duplicate_suspects`; the caller then reads the file a second
    time to tell true duplicates from hash collisions and to name both rows (check_file).
    """

    def __init__(self, *, connection: TargetConnection, header: Sequence[str],
                 connection_mappings: list[AttributeMapping] | None = None,
                 compact_duplicates: bool = False) -> None:
        self.connection = connection
        self._compact = compact_duplicates
        self._seen_hashes: set[int] = set()
        self.duplicate_suspects: list[tuple[int, int]] = []  # (row number, visitor hash)
        self.mappings = (connection_mappings if connection_mappings is not None
                         else mappings.active_mappings(connection))
        self.header = list(header)
        self.header_errors: list[RowError] = []
        # Columns no active mapping knows: the file is refused for them, but its rows are still
        # checked against the known columns (rows_checkable), so one preview says everything.
        self.unknown_columns: list[str] = []
        self._seen: dict[tuple[str, str], int] = {}
        by_source = {m.source_name: m for m in self.mappings}
        self._source_by_target = {m.target_name: m.source_name for m in self.mappings}
        self._mapped: list[tuple[int, str]] = []
        self._type_index = self._identity_index = -1
        seen_names: dict[str, int] = {}
        for index, name in enumerate(self.header):
            if name == "":
                self.header_errors.append(RowError(1, column_letter(index), (
                    f"Column {column_letter(index)} has no name; every column needs one "
                    "(identity_type, identity or a mapping's source name).")))
                continue
            if name in seen_names:
                self.header_errors.append(RowError(1, name, (
                    f"The column appears twice (columns {column_letter(seen_names[name])} and "
                    f"{column_letter(index)}).")))
                continue
            seen_names[name] = index
            if name == "identity_type":
                self._type_index = index
            elif name == "identity":
                self._identity_index = index
            elif name in by_source:
                self._mapped.append((index, name))
            else:
                known = ", ".join(sorted(by_source)) or "none yet"
                self.unknown_columns.append(name)
                self.header_errors.append(RowError(1, name, (
                    f"Unknown column: no active mapping of {connection.label} has this source "
                    f"name (active source names: {known}).")))
        for name in IDENTITY_COLUMNS:
            if name not in seen_names:
                self.header_errors.append(RowError(1, name, f"The column {name} is missing."))
        for mapping in self.mappings:
            if mapping.required and mapping.source_name not in seen_names:
                self.header_errors.append(RowError(1, mapping.source_name, (
                    "The column is missing; its mapping requires a value in every row.")))
        if not connection.active:
            self.header_errors.append(RowError(None, "", (
                f"Connection {connection.label} is inactive; nothing can be staged for it.")))
        if not self.mappings:
            self.header_errors.append(RowError(None, "", (
                f"Connection {connection.label} has no active attribute mappings; define them "
                "before importing.")))

    @property
    def rows_checkable(self) -> bool:
        """Whether the rows can be checked despite the header's problems: when those are only
        unknown columns, which the row checks ignore (the file stays refused for them)."""
        return len(self.header_errors) == len(self.unknown_columns)

    def normalise(self, cells: Sequence) -> dict[str, Any]:
        """The update a row stands for: identity and {Target name: value as sent}."""
        values = {name: (cells[i] if i < len(cells) else None) for i, name in self._mapped}
        attributes, _ = mappings.normalise_source_values(self.mappings, values)
        return {"identity_type": cell_text(self._cell(cells, self._type_index)),
                "identity": cell_text(self._cell(cells, self._identity_index)),
                "attributes": attributes}

    @staticmethod
    def _cell(cells: Sequence, index: int) -> Any:
        return cells[index] if 0 <= index < len(cells) else None

    def check(self, number: int, cells: Sequence) -> tuple[list[RowError], dict[str, Any] | None]:
        """(problems, the normalised update or None). Call only when rows_checkable; the values
        of unknown columns are not looked at."""
        problems: list[RowError] = []
        typed = [RowError(number, name, (
            f"Row {number}, column {column_letter(index)} ({name}): a {kind} cell — format "
            "the column as text; an identity is taken exactly as typed, never converted."))
            for name, index in (("identity_type", self._type_index),
                                ("identity", self._identity_index))
            if (kind := non_text_kind(self._cell(cells, index))) is not None]
        if typed:
            return typed, None
        identity_type = cell_text(self._cell(cells, self._type_index))
        identity = cell_text(self._cell(cells, self._identity_index))
        values = {name: (cells[i] if i < len(cells) else None) for i, name in self._mapped}
        attributes, value_errors = mappings.normalise_source_values(self.mappings, values)
        for source, message in value_errors.items():
            problems.append(RowError(number, source, _without_prefix(source, message)))
        for index in range(len(self.header), len(cells)):
            if not cell_blank(cells[index]):
                problems.append(RowError(number, column_letter(index), (
                    f"A value in column {column_letter(index)}, which has no header (in a CSV "
                    "file: does a value with a comma lack its quotes?).")))
        if not problems and not attributes:
            problems.append(RowError(number, "", "The row sets no attribute; an update needs at "
                                                 "least one value."))
        if problems:
            # check_content would stop at the values; name the identity's problems too.
            problems[:0] = [RowError(number, column, m) for column, messages
                            in identity_errors(identity_type, identity).items() for m in messages]
        else:
            try:
                workflow.check_content(connection=self.connection, identity_type=identity_type,
                                       identity=identity, attributes=attributes,
                                       connection_mappings=self.mappings)
            except ValidationError as error:
                for key, messages in error.message_dict.items():
                    problems.extend(RowError(number, *self._locate(key, m)) for m in messages)
        if self._compact:
            if not any(p.column in IDENTITY_COLUMNS for p in problems):
                visitor = hash((identity_type, identity))
                if visitor in self._seen_hashes:
                    self.duplicate_suspects.append((number, visitor))
                else:
                    self._seen_hashes.add(visitor)
        elif not any(p.column in IDENTITY_COLUMNS for p in problems):
            first = self._seen.setdefault((identity_type, identity), number)
            if first != number:
                problems.append(duplicate_error(first, number))
        if problems:
            return problems, None
        return [], {"identity_type": identity_type, "identity": identity, "attributes": attributes}

    def open_conflict_errors(self, numbered: Sequence[tuple[int, dict[str, Any]]], *,
                             supersede: bool = False) -> list[RowError]:
        """One error per checked row (number, update) whose visitor has an open update setting
        one of its attributes (with `supersede`: only a sending one, which cannot be)."""
        found = open_changes.conflicts_for_rows(self.connection.pk, [u for _, u in numbered])
        errors = []
        for position, hits in sorted(found.items()):
            number, update = numbered[position]
            if supersede:
                hits = [(u, shared) for u, shared in hits if u.status == open_changes.S.SENDING]
            if not hits:
                continue
            message = open_changes.conflict_message(update["identity_type"], update["identity"],
                                                    hits)
            if supersede:
                message += " A sending update cannot be superseded."
            errors.append(RowError(number, self._source_by_target.get(hits[0][1][0], ""),
                                   message))
        return errors

    def _locate(self, key: str, message: str) -> tuple[str, str]:
        """(column, message) for a check_content problem: its source column where one is named."""
        if key in IDENTITY_COLUMNS:
            return key, message
        for target, source in self._source_by_target.items():
            if message.startswith(f"{source}: "):
                return source, message[len(source) + 2:]
            if f"{target!r}" in message:
                return source, message
        return "", message

    def visitor(self, cells: Sequence) -> tuple[str, str]:
        return (cell_text(self._cell(cells, self._type_index)),
                cell_text(self._cell(cells, self._identity_index)))


def duplicate_error(first: int, number: int) -> RowError:
    return RowError(number, "identity", (
        f"Same visitor as row {first} (rows {first} and {number}): a file may hold one update "
        "per visitor; merge the two rows into one."))


def _without_prefix(source: str, message: str) -> str:
    # mappings.py names the source in front of its messages; the column says it already.
    prefix = f"{source}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def check_file(*, connection: TargetConnection, data: Source, file_format: str,
               progress: Callable[[int], None] | None = None, progress_every: int = 1000,
               connection_mappings: list[AttributeMapping] | None = None,
               digest: Any = None, supersede: bool = False) -> CheckResult:
    """Read and check every row; save nothing. `progress(rows_checked)` is called as it goes.
    Held in memory: the stored errors and a hash per visitor, never the rows. A row whose
    visitor hash was seen before is looked at again in a second pass, run only then. Valid rows
    are looked up, a few hundred at a time, for open updates of their visitors setting the same
    attributes (RowChecker.open_conflict_errors; with `supersede` only sending ones refuse)."""
    result = CheckResult()
    valid: list[tuple[int, dict[str, Any]]] = []
    conflicts_found = False

    def look_up_open() -> None:
        nonlocal conflicts_found
        for problem in checker.open_conflict_errors(valid, supersede=supersede):
            conflicts_found = True
            result.add(problem)
        valid.clear()

    try:
        header, rows = read_table(data, file_format, digest=digest)
        checker = RowChecker(connection=connection, header=header,
                             connection_mappings=connection_mappings, compact_duplicates=True)
        for problem in checker.header_errors:
            result.add(problem)
        for number, cells in rows:
            if all(cell_blank(c) for c in cells):
                continue
            result.total_rows += 1
            if checker.rows_checkable:
                problems, update = checker.check(number, cells)
                for problem in problems:
                    result.add(problem)
                if update is not None:
                    valid.append((number, update))
                    if len(valid) == open_changes.LOOKUP_CHUNK:
                        look_up_open()
            if progress and result.total_rows % progress_every == 0:
                progress(result.total_rows)
        look_up_open()
    except ImportFileError as error:
        result.add(RowError(error.row, error.column, str(error)))
    else:
        if checker.duplicate_suspects:
            _add_duplicates(result, checker, data, file_format)
        elif conflicts_found:
            result.errors.sort(key=lambda e: e.row or 0)
    if result.valid and result.total_rows == 0:
        result.add(RowError(None, "", "The file has a header but no rows to import."))
    return result


def _add_duplicates(result: CheckResult, checker: RowChecker, data: Source,
                    file_format: str) -> None:
    """The second pass, for files where a visitor's hash came back: for each such row, the
    first row with the very same visitor (none: a mere hash collision, not a duplicate). The
    errors are then kept in row order, the first MAX_STORED_ERRORS of them, as in one pass."""
    suspects = {number for number, _ in checker.duplicate_suspects}
    hashes = {visitor for _, visitor in checker.duplicate_suspects}
    first_rows: dict[tuple[str, str], int] = {}  # only visitors whose hash came back
    found: list[RowError] = []
    _header, rows = read_table(data, file_format)
    for number, cells in rows:
        if all(cell_blank(c) for c in cells):
            continue
        visitor = checker.visitor(cells)
        if hash(visitor) not in hashes:
            continue
        first = first_rows.setdefault(visitor, number)
        if number in suspects and first != number:
            found.append(duplicate_error(first, number))
    kept = result.errors
    result.errors = []
    dropped = result.error_count - len(kept)
    result.error_count = dropped
    for error in sorted(kept + found, key=lambda e: (e.row or 0)):
        result.add(error)


def _valid_updates(connection: TargetConnection, data: Source, file_format: str,
                   connection_mappings: list[AttributeMapping] | None = None,
                   digest: Any = None) -> Iterator[dict[str, Any]]:
    """The second pass over an already checked file: each row's update as it will be saved."""
    header, rows = read_table(data, file_format, digest=digest)
    checker = RowChecker(connection=connection, header=header,
                         connection_mappings=connection_mappings)
    for _number, cells in rows:
        if not all(cell_blank(c) for c in cells):
            yield checker.normalise(cells)


# --- jobs --------------------------------------------------------------------------------------

def import_job_create(*, connection: TargetConnection, file_name: str,
                      file_data: bytes | None = None, file_path: os.PathLike | None = None, by,
                      submit: bool = False, progress: Callable[[int], None] | None = None,
                      background: bool | None = None, supersede: bool = False) -> ImportJob:
    """Check a file and keep it as an ImportJob: queued (awaiting confirmation) if every row is
    valid, invalid with its errors otherwise. No update is created here — this is the preview.

    A file of more than background_check_bytes() (or background=True) is not checked here: the
    job is stored as "checking" and django-q2 checks it (import_job_check), so an upload
    request never spends minutes reading a large file.

    `file_path` instead of `file_data` (`manage.py import_updates`): a CSV file is streamed
    from disk, never held in memory nor stored on the job, so MAX_FILE_BYTES (an upload's
    limit: it is stored in the database) does not apply — the row and cell limits do. The job
    keeps the file's SHA-256, and import_job_run(file_path=...) saves only that same file. An
    XLSX file is read whole, as an upload.

    `supersede`: rows for a visitor and attribute with an open update cancel it when the import
    saves (needs the cancel permission); without it such rows are errors of the preview.
    """
    require_import_permission(by, submit=submit)
    if supersede:
        workflow.require_supersede(by)
    import_jobs_interrupted_discard()  # cheap; keeps dead imports from lingering unseen
    if (file_data is None) == (file_path is None):
        raise TypeError("give either file_data or file_path")
    if file_path is not None:
        with open(file_path, "rb") as opened:
            start = opened.read(4)
        if _readable_format(file_name, start) == "xlsx" or background:
            file_data = Path(file_path).read_bytes()
        else:
            return _create_streamed(connection=connection, file_name=file_name,
                                    file_path=file_path, by=by, submit=submit,
                                    progress=progress, supersede=supersede)
    if len(file_data) > MAX_FILE_BYTES:
        raise ValidationError(f"The file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB; "
                              "split it into several imports.", code="too_large")
    file_format = _readable_format(file_name, file_data)
    if background is None:
        background = (len(file_data) > background_check_bytes()
                      or declares_large(file_data, file_format))
    fields = dict(connection=connection, created_by=by,
                  file_name=_storable(file_name or "upload")[:255], file_format=file_format,
                  submit_after_import=submit, supersede_open=supersede)
    if background:
        return _create_for_background_check(fields, file_data)
    return _create_checked(fields, file_data, progress=progress)


def _readable_format(file_name: str, start: bytes) -> str:
    """The file's format ("csv" or "xlsx") from its name and first bytes; refused (code
    `unreadable`) when it is neither."""
    try:
        return detect_format(file_name, start)
    except ImportFileError as error:
        raise ValidationError(str(error), code="unreadable") from None


def _create_for_background_check(fields: dict, file_data: bytes) -> ImportJob:
    """A "checking" job that django-q2 checks (import_job_check) once the caller commits."""
    job = ImportJob.objects.create(**fields, file_data=file_data,
                                   status=ImportJob.Status.CHECKING)
    from django_q.tasks import async_task

    transaction.on_commit(lambda: async_task(
        CHECK_TASK_FUNCTION, job.pk, task_name=f"import-check-{job.pk}",
        timeout=TASK_TIMEOUT_SECONDS))
    return job


def _create_checked(fields: dict, file_data: bytes, *,
                    progress: Callable[[int], None] | None) -> ImportJob:
    """The file checked here and now, kept as a queued or invalid job."""
    connection = fields["connection"]
    connection_mappings = mappings.active_mappings(connection)
    digest = hashlib.sha256()
    result = check_file(connection=connection, data=file_data, file_format=fields["file_format"],
                        progress=progress, progress_every=10_000,
                        connection_mappings=connection_mappings, digest=digest,
                        supersede=fields["supersede_open"])
    job = ImportJob.objects.create(**fields, **_checked_state(result, file_data,
                                                              connection_mappings, digest))
    logger.info("import job %s checked: %s rows, %s problems", job.pk, result.total_rows,
                result.error_count, extra={"import_job_id": job.pk,
                                           "connection": connection.client_code})
    return job


def _create_streamed(*, connection: TargetConnection, file_name: str, file_path: os.PathLike,
                     by, submit: bool, progress: Callable[[int], None] | None,
                     supersede: bool = False) -> ImportJob:
    """import_job_create for a CSV file read from disk: checked here, in one streamed pass."""
    connection_mappings = mappings.active_mappings(connection)
    digest = hashlib.sha256()
    result = check_file(connection=connection, data=Path(file_path), file_format="csv",
                        progress=progress, progress_every=10_000,
                        connection_mappings=connection_mappings, digest=digest,
                        supersede=supersede)
    job = ImportJob.objects.create(
        connection=connection, created_by=by, file_name=_storable(file_name or "upload")[:255],
        file_format="csv", submit_after_import=submit, supersede_open=supersede,
        **_checked_state(result, b"", connection_mappings, digest))
    logger.info("import job %s checked: %s rows, %s problems", job.pk, result.total_rows,
                result.error_count, extra={"import_job_id": job.pk,
                                           "connection": connection.client_code})
    return job


def _checked_state(result: CheckResult, file_data: bytes,
                   connection_mappings: list[AttributeMapping], digest: Any) -> dict[str, Any]:
    """An ImportJob's fields once its file has been checked."""
    return dict(
        file_sha256=digest.hexdigest() if result.valid else "",
        # The rules the rows passed: the import saves them only while the mappings still have
        # exactly these (a mapping changed between preview and save refuses the file).
        mappings_fingerprint=mappings.mappings_fingerprint(connection_mappings),
        # An invalid file is not kept: the errors say what to fix, and it holds customer data.
        file_data=file_data if result.valid else b"",
        status=ImportJob.Status.QUEUED if result.valid else ImportJob.Status.INVALID,
        total_rows=result.total_rows, processed_rows=0,
        errors=[e.as_dict() for e in result.errors], error_count=result.error_count,
        finished_at=None if result.valid else timezone.now())


def import_job_check(*, job: ImportJob) -> ImportJob:
    """The background preview of a job stored as "checking": read and check every row (progress
    on processed_rows), then leave it queued or invalid exactly as import_job_create would.
    A job no longer checking (a re-delivered task) is returned untouched."""
    stored = (ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.CHECKING)
              .values_list("file_data", flat=True).first())
    if stored is None:
        _reload(job)
        return job
    data = bytes(stored)
    try:
        # Fresh rows: rights and the connection may have changed since the upload.
        by = get_user_model().objects.get(pk=job.created_by_id)
        connection = TargetConnection.objects.get(pk=job.connection_id)
        require_import_permission(by, submit=job.submit_after_import)
        connection_mappings = mappings.active_mappings(connection)
        digest = hashlib.sha256()
        result = check_file(
            connection=connection, data=data, file_format=job.file_format,
            progress=lambda n: ImportJob.objects.filter(pk=job.pk).update(processed_rows=n),
            progress_every=10_000, connection_mappings=connection_mappings, digest=digest,
            supersede=job.supersede_open)
        ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.CHECKING).update(
            **_checked_state(result, data, connection_mappings, digest))
    except ValidationError as error:  # refused: rights withdrawn since the upload
        _fail(job, [f"{m} Nothing was saved." for m in error.messages])
        return job
    except Exception as error:
        logger.error("import job %s check failed: %s", job.pk, type(error).__name__,
                     extra={"import_job_id": job.pk})
        _fail(job, [f"Checking the file stopped with an unexpected error "
                    f"({type(error).__name__}); nothing was saved."])
        raise
    _reload(job)
    logger.info("import job %s checked: %s rows, %s problems", job.pk, job.total_rows,
                job.error_count, extra={"import_job_id": job.pk,
                                        "connection": connection.client_code})
    return job


def import_job_start(*, job: ImportJob, by, background: bool | None = None) -> bool:
    """The creator confirms a checked import. Returns True when it was queued for django-q2
    (large files, or background=True), False when it ran here and has finished."""
    require_import_permission(by, submit=job.submit_after_import)
    if by.pk != job.created_by_id:
        raise Refused("Only the person who uploaded this file can confirm its import.",
                      code=NOT_UPLOADER)
    if job.status != ImportJob.Status.QUEUED:
        raise Refused(f"Import #{job.pk} is {job.get_status_display().lower()}; only a "
                      "checked import awaiting confirmation can start.", code=WRONG_STATE)
    if background is None:
        background = job.total_rows > background_threshold()
    if not background:
        import_job_run(job=job)
        return False
    from django_q.tasks import async_task

    # Enqueued after commit: a worker must never look for a job this transaction has not saved.
    transaction.on_commit(lambda: async_task(
        TASK_FUNCTION, job.pk, task_name=f"import-{job.pk}", timeout=TASK_TIMEOUT_SECONDS))
    return True


def import_job_run(*, job: ImportJob, progress: Callable[[int, int], None] | None = None,
                   progress_every: int | None = None,
                   file_path: os.PathLike | None = None) -> ImportJob:
    """Save every row of a checked file — or nothing — without holding anyone else back.

    On SQLite the rows are written in short transactions (SAVE_CHUNK_ROWS each) as not yet live
    (ProfileUpdate.import_pending: invisible to every list, count, queue and the sender), then
    made live together in one statement at the end; when anything fails on the way, the rows
    written so far are deleted again. Between two chunks other requests, the scheduler and the
    sender write as usual, where a single import transaction would hold the only write lock for
    minutes. On PostgreSQL the same chunks are one transaction, live at once and invisible to
    every other session until it commits (in_one_transaction).

    Runs once per job: it claims the job (queued → running) first, so a second worker, a
    double-click or a re-delivered task returns the job untouched. The claim also empties the
    stored file — a claimed job never runs again, and without megabytes in the row every
    progress update stays cheap (SQLite rewrites a whole row on each update).

    `file_path`: the file of a job created with import_job_create(file_path=...), streamed
    again; refused at the end (nothing saved) unless it is byte for byte the checked file.
    """
    stored = (ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.QUEUED)
              .values_list("file_data", flat=True).first())
    claimed = stored is not None and ImportJob.objects.filter(
        pk=job.pk, status=ImportJob.Status.QUEUED).update(
        status=ImportJob.Status.RUNNING, processed_rows=0, file_data=b"",
        started_at=timezone.now())
    if not claimed:
        _reload(job)
        return job
    _reload(job)
    try:
        _run_claimed(job, Path(file_path) if file_path is not None else bytes(stored),
                     progress=progress, progress_every=progress_every)
    except ValidationError as error:
        # Refusals of the services (rights withdrawn, connection made inactive): say which.
        _discard_pending(job)
        _fail(job, [f"{m} Nothing was saved." for m in error.messages])
    except BaseException as error:  # KeyboardInterrupt / a worker's timeout too: clean up
        # The type only: messages of database errors can quote the values being written.
        logger.error("import job %s failed: %s", job.pk, type(error).__name__,
                     extra={"import_job_id": job.pk})
        _discard_pending(job)
        _fail(job, [f"The import stopped with an unexpected error ({type(error).__name__}); "
                    "nothing was saved."])
        raise
    _refresh_statistics(job)
    return job


# An import of at least this many rows refreshes PostgreSQL's statistics of the updates itself.
ANALYZE_AFTER_ROWS = 10_000


def _refresh_statistics(job: ImportJob) -> None:
    """ANALYZE the updates (and their content authors) after a large import on PostgreSQL — its
    own advice after a bulk load. Until autovacuum gets to it (a minute at best; never where it
    is off) the planner has no statistics of the new rows and guesses: the sender's lookup of
    the visitors of a claim of 500 (claims._one_per_visitor) read all million rows in parallel,
    0.5 s per claim (docs/benchmarks.md, the million-update day). ANALYZE samples: about a
    second at a million. The import is committed already; a failure here is only logged."""
    if db.vendor != "postgresql" or job.total_rows < ANALYZE_AFTER_ROWS:
        return
    tables = (ProfileUpdate._meta.db_table,
              ProfileUpdate.content_authors.through._meta.db_table)
    try:
        with db.cursor() as cursor:
            for table in tables:
                cursor.execute(f"ANALYZE {db.ops.quote_name(table)}")
    except DatabaseError as error:  # e.g. not the tables' owner: autovacuum does it later
        logger.warning("import job %s: the statistics were not refreshed (%s)", job.pk,
                       type(error).__name__, extra={"import_job_id": job.pk})


INTERRUPTED = ("The import was interrupted (its worker stopped before it finished); nothing "
               "was saved. Upload the file again.")


def import_jobs_interrupted_discard(*, now: dt.datetime | None = None) -> int:
    """End imports whose worker died (killed at the task timeout, the machine restarted): a job
    running for more than twice the task timeout cannot still be running. Their not-yet-live
    rows are deleted and the job says so. Returns how many jobs were ended."""
    cutoff = (now or timezone.now()) - dt.timedelta(seconds=2 * TASK_TIMEOUT_SECONDS)
    ended = 0
    for job in ImportJob.objects.filter(status=ImportJob.Status.RUNNING,
                                        started_at__lt=cutoff).defer("file_data"):
        _discard_pending(job)
        _fail(job, [INTERRUPTED])
        ended += 1
    return ended


def _discard_pending(job: ImportJob) -> None:
    """Delete the rows an unfinished import wrote (never live), in short transactions."""
    pending = ProfileUpdate.with_pending_imports.filter(import_pending_id=job.pk)
    while ids := list(pending.values_list("pk", flat=True)[:SAVE_CHUNK_ROWS]):
        with transaction.atomic():
            ProfileUpdate.with_pending_imports.filter(pk__in=ids).delete()  # audit rows cascade


def _fail(job: ImportJob, messages: list[str]) -> None:
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.Status.ERROR, file_data=b"", finished_at=timezone.now(), error_count=len(messages),
        errors=[RowError(None, "", m).as_dict() for m in messages])
    _reload(job)


def _reload(job: ImportJob) -> None:
    """Fresh state without loading the stored file (megabytes) once more."""
    job.refresh_from_db(fields=_STATE_FIELDS)


_STATE_FIELDS = ("status", "file_format", "submit_after_import", "total_rows", "processed_rows", "created_updates", "errors",
                 "error_count", "finished_at", "mappings_fingerprint", "file_sha256",
                 "supersede_open")


MAPPINGS_CHANGED = ("The attribute mappings of {label} changed after this file was checked, so "
                    "its rows were checked against rules that no longer apply. Upload the file "
                    "again to check it against the mappings as they are now.")


FILE_CHANGED = ("The file changed after it was checked, so what would be saved is not what was "
                "checked; nothing was saved. Run the import again.")


def _run_claimed(job: ImportJob, data: Source, *, progress: Callable[[int, int], None] | None,
                 progress_every: int | None) -> None:
    if isinstance(data, bytes) and not data:
        raise ValidationError("This import's file was read from disk by `manage.py "
                              "import_updates` and not stored; run the import from there.",
                              code="no_file")
    # Fresh rows: rights and the connection may have changed since the preview, and a cached
    # user would answer has_perm from its old permission cache.
    by = get_user_model().objects.get(pk=job.created_by_id)
    connection = TargetConnection.objects.get(pk=job.connection_id)
    require_import_permission(by, submit=job.submit_after_import)
    connection_mappings = mappings.active_mappings(connection)
    fingerprint = mappings.mappings_fingerprint(connection_mappings)
    if fingerprint != job.mappings_fingerprint:
        raise ValidationError(MAPPINGS_CHANGED.format(label=connection.label),
                              code="mappings_changed")
    total = job.total_rows
    digest = hashlib.sha256()

    def the_checked_file(rows: int, created: int) -> None:
        if job.file_sha256 and digest.hexdigest() != job.file_sha256:
            raise ValidationError(FILE_CHANGED, code="file_changed")
        if rows != total or created != total:  # the file is the checked one; be sure
            raise RuntimeError("the second pass over the file saw a different number of rows")

    # Every row passed the preview's checks under these very mappings (same fingerprint, same
    # stored bytes), so each row is only turned into its update here — not checked a second
    # time; the mappings are compared again as the rows are saved and when they go live.
    _save_all(job, _valid_updates(connection, data, job.file_format, connection_mappings,
                                  digest=digest),
              by=by, connection=connection, fingerprint=fingerprint, reason=import_reason(job),
              progress=progress, every=progress_every or max(500, min(5000, total // 50 or 500)),
              before_the_end=the_checked_file)


def in_one_transaction() -> bool:
    """Whether an import writes its rows live, in one transaction (PostgreSQL), or not yet live,
    in short transactions, made live by one statement at its end (SQLite).

    PostgreSQL shows no other session a transaction's rows before it commits and makes nobody
    wait for them (MVCC): one transaction keeps a half-written import invisible for free, where
    the statement making a million rows live wrote each row and all its index entries a second
    time (67 s of a million-row import; issue 25). SQLite has one write lock for the whole
    database: a transaction of minutes would hold every login, request and the sender back."""
    return db.vendor == "postgresql"


@dataclass(frozen=True)
class _Written:
    """How an import's rows were written, for _make_live."""
    live: bool  # live already, in the transaction _make_live runs in (in_one_transaction)
    after_id: int  # every row of the import has a greater id
    # The standing suppressions (privacy requests) every row was checked against as written.
    checked_against: set[int]


def _save_all(job: ImportJob, updates: Iterable[dict[str, Any]], *, by,
              connection: TargetConnection, fingerprint: str, reason: str,
              progress: Callable[[int, int], None] | None = None, every: int = SAVE_CHUNK_ROWS,
              before_the_end: Callable[[int, int], None] | None = None) -> None:
    """Write every update of the job, SAVE_CHUNK_ROWS at a time, and end the import
    (_make_live) — or raise, leaving nothing live. Progress goes to ImportJob.processed_rows
    every `every` rows, and to `progress(done, total)`."""
    live = in_one_transaction()
    with transaction.atomic() if live else nullcontext(), _progress_saver(job, live) as saved:
        written = _Written(live, _id_taken_now() if live else 0,
                           suppression.standing_request_ids(connection.pk))
        rows = created = 0
        chunk: list[dict[str, Any]] = []

        def save(chunk: list[dict[str, Any]]) -> int:
            # Its own transaction, or part of the one (no savepoint: see updates_stage_many).
            with transaction.atomic(savepoint=not live):
                return workflow.updates_stage_many(
                    connection=connection, rows=chunk, by=by, submit=job.submit_after_import,
                    reason=reason, checked_against=fingerprint, import_job=job,
                    import_live=live)

        def report(done: int) -> None:
            saved(done)
            if progress:
                progress(done, job.total_rows)

        with _keys_checked_as_written(live):
            for update in updates:
                chunk.append(update)
                rows += 1
                if len(chunk) == SAVE_CHUNK_ROWS:
                    created, chunk = created + save(chunk), []
                if rows % every == 0:
                    report(rows)
            if chunk:
                created += save(chunk)
        if before_the_end:
            before_the_end(rows, created)
        report(rows)
        _make_live(job, by=by, connection=connection, fingerprint=fingerprint, created=created,
                   written=written)


def _id_taken_now() -> int:
    """A value of the updates' id sequence, taken now: every id this session is given later is
    greater, however the sequence caches values — the import's rows are the job's rows above it
    (an index on import_job would cost every row of every import a second index write)."""
    with db.cursor() as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id'))",
                       [ProfileUpdate._meta.db_table])
        return cursor.fetchone()[0]


@contextmanager
def _keys_checked_as_written(live: bool) -> Iterator[None]:
    """In the one transaction: foreign keys checked as each chunk is written, as in short
    transactions. PostgreSQL checks Django's (deferred) foreign keys at commit: a million rows'
    six million checks would wait in the server's memory and run at the end, with every visitor
    of the import locked. Deferred again for the end step."""
    if not live:
        yield
        return
    with db.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    yield
    with db.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


@contextmanager
def _progress_saver(job: ImportJob, live: bool) -> Iterator[Callable[[int], None]]:
    """save(done): the job's processed_rows, for the page that follows the import. Written live
    (one transaction), the import's own session would show it to nobody before the end, so it
    goes through a second connection of its own, in autocommit, waiting at most a second for a
    lock; a figure it cannot save is skipped (the import goes on)."""
    if not live:
        yield lambda done: ImportJob.objects.filter(pk=job.pk).update(processed_rows=done)
        return
    side = connections.create_connection(DEFAULT_DB_ALIAS)
    table = side.ops.quote_name(ImportJob._meta.db_table)

    def save(done: int) -> None:
        try:
            with side.cursor() as cursor:
                cursor.execute("SET lock_timeout = '1s'")
                cursor.execute(f"UPDATE {table} SET processed_rows = %s WHERE id = %s",
                               [done, job.pk])
        except DatabaseError as error:
            logger.warning("import job %s: progress not saved (%s)", job.pk,
                           type(error).__name__, extra={"import_job_id": job.pk})

    try:
        yield save
    finally:
        side.close()


def _make_live(job: ImportJob, *, by, connection: TargetConnection, fingerprint: str,
               created: int, written: _Written) -> None:
    """End an import whose rows are all written: with the import's visitors locked, refuse if
    the mappings changed meanwhile or a row's visitor was forgotten since it was checked, refuse
    (or supersede) open updates that set an attribute a row sets (_resolve_open), make the rows
    live — one statement, however many rows, unless they were written live in this very
    transaction — and write the import's one audit row (each update references the job:
    import_job), all in one transaction."""
    rows = (ProfileUpdate.with_pending_imports.filter(pk__gt=written.after_id,
                                                      import_job_id=job.pk)
            if written.live else
            ProfileUpdate.with_pending_imports.filter(import_pending_id=job.pk))
    with transaction.atomic():
        open_changes.lock_visitors(connection.pk, rows.values_list(
            "identity_type", "identity").iterator(chunk_size=SAVE_CHUNK_ROWS))
        locked = mappings.active_mappings(connection, lock=True)
        if mappings.mappings_fingerprint(locked) != fingerprint:
            raise ValidationError(MAPPINGS_CHANGED.format(label=connection.label),
                                  code="mappings_changed")
        # A visitor forgotten while the rows were written: forgetting (which locks the visitor
        # too) may not have seen this import's rows, or only some of them.
        suppression.refuse_forgotten_rows(
            connection, rows.order_by("pk").values("identity_type", "identity").iterator(
                chunk_size=SAVE_CHUNK_ROWS), besides=written.checked_against,
            counted_as="Imported update")
        _resolve_open(job, by=by, connection=connection, rows=rows,
                      besides_import=job.pk if written.live else None)
        now = timezone.now()
        if not written.live:
            rows.update(import_pending=None)
        import_job_audit(job=job, by=by, at=now, updates=created, fingerprint=fingerprint)
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportJob.Status.DONE, total_rows=created, processed_rows=created,
            created_updates=created, errors=[], error_count=0, finished_at=now)
    _reload(job)
    logger.info("import job %s done: %s updates created", job.pk, created,
                extra={"import_job_id": job.pk, "connection": connection.client_code})


def _resolve_open(job: ImportJob, *, by, connection: TargetConnection, rows: Any,
                  besides_import: int | None) -> None:
    """In _make_live's transaction, the visitors locked: the open (live) updates that set an
    attribute one of the job's rows sets are superseded by that row's update when the job
    supersedes, and refuse the whole import (`open_conflict`, each one named) otherwise.
    `besides_import`: the job itself, when its rows are live already (not open updates of
    their own visitors)."""
    if job.supersede_open:
        workflow.require_supersede(by)
    problems: list[str] = []
    last = 0
    # Only the rows whose visitor has an open update come back (usually none): one statement
    # over the rows, not the rows read here, while the transaction holds the lock.
    candidates = rows.filter(open_changes.has_open_update(connection.pk,
                                                         besides_import=besides_import))
    while chunk := list(candidates.filter(pk__gt=last).order_by("pk").values(
            "pk", "identity_type", "identity", "attributes")[:SAVE_CHUNK_ROWS]):
        last = chunk[-1]["pk"]
        for position, found in open_changes.conflicts_for_rows(
                connection.pk, chunk, besides_import=besides_import).items():
            row = chunk[position]
            if job.supersede_open:
                workflow.supersede_open([u for u, _ in found], by=by,
                                        new=ProfileUpdate(pk=row["pk"]))
            else:
                problems.append(open_changes.conflict_message(row["identity_type"],
                                                              row["identity"], found))
    if problems:
        raise ValidationError([ValidationError(p, code=open_changes.OPEN_CONFLICT)
                               for p in problems[:MAX_STORED_ERRORS]])


def rows_import(*, connection: TargetConnection, rows: Sequence[dict[str, Any]], by,
                fingerprint: str, name: str, submit: bool = False, reason: str = "",
                supersede: bool = False) -> ImportJob:
    """Save rows already checked against the mappings with `fingerprint` (RowChecker) as one
    import — the notebook's DataFrames: an ImportJob named `name`, written invisible until the
    end, then live together with one audit row, exactly as a file's import (import_job_run).
    All or nothing: on any failure nothing written is left and the error raised.
    `supersede`: as import_job_create's."""
    require_import_permission(by, submit=submit)
    if supersede:
        workflow.require_supersede(by)
    job = ImportJob.objects.create(
        connection=connection, created_by=by, file_name=name[:255], file_format="rows",
        file_data=b"", submit_after_import=submit, supersede_open=supersede,
        status=ImportJob.Status.RUNNING,
        total_rows=len(rows), mappings_fingerprint=fingerprint, started_at=timezone.now())
    try:
        _save_all(job, rows, by=by, connection=connection, fingerprint=fingerprint,
                  reason=reason or import_reason(job))
    except BaseException as error:
        _discard_pending(job)
        messages = error.messages if isinstance(error, ValidationError) else [
            f"The import stopped with an unexpected error ({type(error).__name__})."]
        _fail(job, [f"{m} Nothing was saved." for m in messages])
        raise
    return job


def import_job_audit(*, job: ImportJob, by, at: dt.datetime, updates: int,
                     fingerprint: str) -> AuditEvent:
    """The one "imported" AuditEvent of a finished import (not one per update): who, when, the
    file, how many updates and the mapping rules they were checked against. Its `at` is the
    job's finished_at, by which an update's timeline finds it (selectors.update_timeline)."""
    transition = workflow.T["import_and_submit" if job.submit_after_import else "import"]
    return audit.record(
        transition.action, by=by, at=at, connection=job.connection_id,
        to_status=transition.target, comment=f"Imported from file {job.file_name}",
        changes={"import_job": job.pk, "file_name": job.file_name, "updates": updates,
                 "mappings_fingerprint": fingerprint})


def import_reason(job: ImportJob) -> str:
    """The `reason` every update of this job carries, to find them again."""
    return f"import #{job.pk}: {job.file_name}"[:200]


def job_sample(job: ImportJob, *, rows: int = SAMPLE_ROWS) -> list[dict[str, Any]]:
    """The first rows of a checked job's file as they will be stored and sent (for the preview)."""
    if job.status not in (ImportJob.Status.QUEUED, ImportJob.Status.RUNNING):
        return []
    sample = []
    try:
        for update in _valid_updates(job.connection, bytes(job.file_data), job.file_format):
            sample.append(update)
            if len(sample) == rows:
                break
    except ImportFileError:
        return []
    return sample


def job_quota_cost(job: ImportJob, *, now: dt.datetime | None = None) -> quota.QuotaCost:
    """The preview's quota line: the job's rows, one request each (target.REQUEST_QUOTA_COST),
    against the connection's window now (quota.window_picture)."""
    return quota.window_picture(connection=job.connection, now=now).cost(
        job.total_rows * target.REQUEST_QUOTA_COST)
