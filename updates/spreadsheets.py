"""Read CSV and XLSX files safely: bounded, streamed, never a server error.

An uploaded or imported file is untrusted. It is read here, row by row, into the header names
and a stream of (row number, cells) (read_table) — for importing.py, which checks the rows and
turns them into updates. Reading stops with ImportFileError, a refusal of the file naming its row
and column where it can, as soon as the file crosses an upload limit (import_limit: unpacked
size, rows, cells per row, characters per cell) or cannot be read: not UTF-8, not valid CSV,
a damaged or hand-made XLSX file, a zip bomb (_BoundedZip counts what it unpacks), a sheet of
millions of empty rows (XLSX_EMPTY_ROWS_END). Whatever the file, memory stays bounded.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import itertools
import os
import re
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .conf import setting


def import_limit(name: str) -> int:
    """One of the upload limits (README, "Importing updates"): a hostile file is refused as soon
    as it crosses one, with the worker's memory bounded by them."""
    return setting(name)


# An XLSX sheet ends at the first run of this many consecutive empty rows: its rows below are not
# read (openpyxl would otherwise turn every missing or empty row of a hostile file into work,
# 2,000,000 of them in a few KB), but a value below the gap refuses the file, naming its row
# (_refuse_data_below_the_end): nothing in a file is silently left out.
XLSX_EMPTY_ROWS_END = 1000


class ImportFileError(Exception):
    """The file as a whole cannot be read (not CSV/XLSX, not UTF-8, no header, over a limit …).
    `row` and `column` locate the problem when it is in one place."""

    def __init__(self, message: str, *, row: int | None = None, column: str = "") -> None:
        super().__init__(message)
        self.row = row
        self.column = column


# --- reading files -----------------------------------------------------------------------------

def detect_format(file_name: str, data: bytes) -> str:
    name = (file_name or "").lower()
    if name.endswith(".xlsx"):
        return "xlsx"
    if name.endswith(".csv") or name.endswith(".txt"):
        return "csv"
    if name.endswith(".xls") or name.endswith(".ods"):
        raise ImportFileError("Save the spreadsheet as XLSX or as CSV (UTF-8); "
                              f"{name.rsplit('.', 1)[-1].upper()} files are not read.")
    return "xlsx" if data[:4] == b"PK\x03\x04" else "csv"


# What a file is read from: its bytes (an upload, stored on its job), or the path of a CSV file
# that `manage.py import_updates` streams from disk without holding it in memory.
Source = bytes | os.PathLike


def read_table(data: Source, file_format: str, *, digest: Any = None
               ) -> tuple[list[str], Iterator[tuple[int, Sequence]]]:
    """The header names and a stream of (row number, cells) for the data rows. `digest` (a
    hashlib object), when given, is fed every byte of the file as it is read (CSV)."""
    if file_format == "csv":
        rows = _csv_rows(data, digest)
    elif file_format == "xlsx":
        rows = _xlsx_rows(data if isinstance(data, bytes) else Path(data).read_bytes())
    else:
        raise ImportFileError(f"Unknown file format {file_format!r}; use CSV or XLSX.")
    rows = _bounded(rows)
    try:
        header = next(rows)
    except StopIteration:
        raise ImportFileError("The file is empty: the first row must name the columns.") from None
    names = [cell_text(cell).strip() for cell in header]
    while names and names[-1] == "":
        names.pop()  # spreadsheets often carry formatted but empty columns at the right
    if not names:
        raise ImportFileError("The first row is empty: it must name the columns "
                              "(identity_type, identity, then mapping source names).")
    return names, ((number, cells) for number, cells in enumerate(rows, start=2))


def _bounded(rows: Iterator[Sequence]) -> Iterator[Sequence]:
    """The rows, refused as soon as one crosses a limit: rows in the file, cells in a row (blank
    cells at the right end, which spreadsheets often carry, do not count), characters in a cell."""
    max_rows = import_limit("IMPORT_MAX_ROWS")
    max_columns = import_limit("IMPORT_MAX_COLUMNS")
    max_chars = import_limit("IMPORT_MAX_CELL_CHARS")
    for number, cells in enumerate(rows, start=1):
        if number > max_rows:
            raise ImportFileError(f"The file has more than {max_rows:,} rows (empty rows "
                                  "included); split it into several imports.", row=number)
        if len(cells) > max_columns:
            width = len(cells)
            while width > max_columns and cell_blank(cells[width - 1]):
                width -= 1
            if width > max_columns:
                raise ImportFileError(
                    f"Row {number} has more than {max_columns:,} cells; at most {max_columns:,} "
                    "columns are read.", row=number, column=column_letter(max_columns))
            cells = cells[:width]
        for index, cell in enumerate(cells):
            if isinstance(cell, str) and len(cell) > max_chars:
                raise ImportFileError(
                    f"Row {number}, column {column_letter(index)}: the cell has {len(cell):,} "
                    f"characters; a cell holds at most {max_chars:,}.", row=number,
                    column=column_letter(index))
        yield cells


# A quoted CSV field, to tell delimiters inside quotes from those between fields.
_QUOTED_FIELD = re.compile(r'"(?:[^"]|"")*"?')


def _width_guarded(lines: Iterator[str], delimiter: str) -> Iterator[str]:
    """Lines for csv.reader, refusing one with more fields than allowed *before* csv builds a
    list of millions of empty fields from a line of commas (the count is cheap; the quote-aware
    recount runs only for lines that look too wide)."""
    max_columns = import_limit("IMPORT_MAX_COLUMNS")
    for number, line in enumerate(lines, start=1):
        if (line.count(delimiter) >= max_columns and _QUOTED_FIELD.sub(
                "", line.rstrip("\r\n").rstrip(delimiter)).count(delimiter) >= max_columns):
            raise ImportFileError(f"Row {number} has more than {max_columns:,} cells; at most "
                                  f"{max_columns:,} columns are read.", row=number)
        yield line


def _not_utf8(row: int | None) -> ImportFileError:
    return ImportFileError(f"The file is not UTF-8 text (row {row}). "
                           "Save it as 'CSV UTF-8' or XLSX.")


class _HashingReader(io.RawIOBase):
    """A file's bytes as read, fed to a digest on the way (the import checks that it saves the
    very file its preview checked)."""

    def __init__(self, stream, digest) -> None:
        self._stream = stream
        self._digest = digest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self._stream.readinto(buffer)
        if count and self._digest is not None:
            self._digest.update(memoryview(buffer)[:count])
        return count

    def close(self) -> None:
        self._stream.close()
        super().close()


def _csv_rows(data: Source, digest: Any = None) -> Iterator[Sequence]:
    if isinstance(data, bytes):
        if (bad_row := _first_non_utf8_row(_chunks(data))) is not None:
            raise _not_utf8(bad_row)
        if digest is not None:
            digest.update(data)
        binary = io.BytesIO(data)
    else:  # streamed from disk: only a buffer of it is in memory at any time
        binary = io.BufferedReader(_HashingReader(open(data, "rb"), digest), 1 << 16)
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
    number = 0
    try:
        first = text.readline()
        if first == "":
            return  # an empty file: no header
        delimiter = _delimiter(first)
        reader = csv.reader(_width_guarded(itertools.chain([first], text), delimiter),
                            delimiter=delimiter, strict=True)
        for number, row in enumerate(reader, start=1):  # noqa: B007 - read in the handler
            yield row
    except UnicodeDecodeError:  # a streamed file: find the line, reading it once more
        if isinstance(data, bytes):
            raise
        with open(data, "rb") as again:
            raise _not_utf8(_first_non_utf8_row(iter(lambda: again.read(1 << 20), b""))
                            ) from None
    except csv.Error as error:
        if "field larger than field limit" in str(error):
            limit = import_limit("IMPORT_MAX_CELL_CHARS")
            raise ImportFileError(f"Row {number + 1}: a cell is longer than the CSV reader "
                                  f"accepts; a cell holds at most {limit:,} characters.",
                                  row=number + 1) from None
        raise ImportFileError(f"Row {number + 1} is not valid CSV: {error}.") from None
    finally:
        text.close()


def _chunks(data: bytes, size: int = 1 << 20) -> Iterator[bytes]:
    return (data[start:start + size] for start in range(0, len(data), size))


def _first_non_utf8_row(chunks: Iterator[bytes]) -> int | None:
    """The line holding the first byte that is not UTF-8, or None — a chunk at a time, without
    decoding it all into memory at once."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    for chunk in chunks:
        held = len(decoder.getstate()[0])  # an unfinished character from the previous chunk
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError as error:
            return line + chunk.count(b"\n", 0, max(0, error.start - held))
        line += chunk.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return line
    return None


def _delimiter(header_line: str) -> str:
    """Comma, unless the header clearly uses ';' or a tab (as some spreadsheet locales save)."""
    for candidate in (",", ";", "\t"):
        names = [n.strip().strip('"') for n in header_line.rstrip("\r\n").split(candidate)]
        if "identity" in names and "identity_type" in names:
            return candidate
    return ","


class _UnpackedTooLarge(Exception):
    pass


class _CountingReader(io.RawIOBase):
    """A zip member's stream that counts what it unpacks against the file's budget."""

    def __init__(self, stream, budget: list[int]) -> None:
        self._stream = stream
        self._budget = budget

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._budget[0] -= len(data)
        if self._budget[0] < 0:
            raise _UnpackedTooLarge
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self._stream.close()
        super().close()


class _BoundedZip(zipfile.ZipFile):
    """An XLSX archive whose members, together, unpack to at most `budget` bytes — counted while
    reading, whatever the zip's directory declares."""

    def __init__(self, file, budget: int) -> None:
        super().__init__(file)
        self._budget = [budget]

    def open(self, name, mode="r", pwd=None, *, force_zip64=False):
        stream = super().open(name, mode, pwd, force_zip64=force_zip64)
        return _CountingReader(stream, self._budget) if mode == "r" else stream


def _too_large_error(limit: int) -> ImportFileError:
    return ImportFileError(f"The XLSX file unpacks to more than {limit // (1024 * 1024):,} MB; "
                           "at most that much is read. Save it again without empty rows and "
                           "columns, or split it.")


def _xlsx_rows(data: bytes) -> Iterator[Sequence]:
    from openpyxl.reader.excel import ExcelReader  # imported here: CSV should not pay for it

    limit = import_limit("IMPORT_MAX_UNCOMPRESSED_BYTES")
    # An uploaded file is untrusted: whatever zipfile, zlib, the XML parser or openpyxl raise
    # on a damaged or hand-made file (BadZipFile, zlib.error, ParseError, EOFError,
    # NotImplementedError for an unknown compression, IndexError …) means "not a readable
    # XLSX file" — a refusal of the file, never a server error. (Found by tests/hostile.)
    try:
        # A zip bomb is refused before anything is unpacked when its directory is honest, and
        # by the counting reader below as soon as it unpacks more than the limit when it is not.
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            declared = sum(member.file_size for member in archive.infolist())
        if declared > limit:
            raise _UnpackedTooLarge
        reader = ExcelReader(io.BytesIO(data), read_only=True, data_only=True)
        reader.archive.close()
        reader.archive = _BoundedZip(io.BytesIO(data), limit)
        reader.read()
        workbook = reader.wb
    except _UnpackedTooLarge:
        raise _too_large_error(limit) from None
    except Exception as error:  # noqa: BLE001 - see above
        raise ImportFileError(f"Not a readable XLSX file ({type(error).__name__}).") from None
    try:
        sheet = workbook.worksheets[0]
        # Stored dimensions are often wrong in files written by other tools; read what is there.
        sheet.reset_dimensions()
        empty_run = 0
        for number, row in enumerate(sheet.iter_rows(values_only=True), start=1):
            empty_run = empty_run + 1 if all(cell_blank(cell) for cell in row) else 0
            if empty_run >= XLSX_EMPTY_ROWS_END:
                _refuse_data_below_the_end(data, sheet, limit, gap_start=number - empty_run + 1)
                return  # the sheet's end: see XLSX_EMPTY_ROWS_END
            yield row
    except _UnpackedTooLarge:
        raise _too_large_error(limit) from None
    except ImportFileError:
        raise
    except Exception as error:  # noqa: BLE001 - the sheet's XML is only parsed here, row by row
        raise ImportFileError(f"Not a readable XLSX file ({type(error).__name__}).") from None
    finally:
        workbook.close()


# In a sheet's XML: a row's start tag (its attributes, for r="N"), or the end of a cell's value
# (<v>) or inline text (<t>); any namespace prefix.
_ROW_OR_VALUE = re.compile(rb'<(?:[\w.-]+:)?row\b([^>]*)>|</(?:[\w.-]+:)?[vt]>')
_ROW_NUMBER = re.compile(rb'\br="(\d+)"')


def _refuse_data_below_the_end(data: bytes, sheet, limit: int, *, gap_start: int) -> None:
    """A sheet ends at XLSX_EMPTY_ROWS_END empty rows, but a row with a value below them is
    never silently left out: the file is refused, naming the row. The rest of the sheet is not
    parsed row by row (that is what a hostile file of millions of empty rows makes slow): its XML
    is scanned once, streamed, for the last row holding a value."""
    last = 0
    row = 0
    tail = b""
    with _BoundedZip(io.BytesIO(data), limit) as archive, \
            archive.open(sheet._worksheet_path) as part:
        while chunk := part.read(1 << 20):
            buffer = tail + chunk
            cut = buffer.rfind(b"<")  # a tag may continue in the next chunk
            cut = len(buffer) if cut == -1 else cut
            for match in _ROW_OR_VALUE.finditer(buffer, 0, cut):
                if match.group(1) is None:
                    last = row
                elif numbered := _ROW_NUMBER.search(match.group(1)):
                    row = int(numbered.group(1))
                else:
                    row += 1
            tail = buffer[cut:]
    if last >= gap_start + XLSX_EMPTY_ROWS_END:
        raise ImportFileError(
            f"Row {last:,} holds data below {XLSX_EMPTY_ROWS_END:,} empty rows (from row "
            f"{gap_start:,}), where the sheet is taken to end; delete the empty rows and import "
            "the file again.", row=last)


def cell_text(cell: Any) -> str:
    """A cell as text: numbers a spreadsheet stored as floats become their integer text."""
    if cell is None:
        return ""
    if isinstance(cell, str):
        return cell
    if isinstance(cell, bool):
        return "true" if cell else "false"
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    if isinstance(cell, (dt.datetime, dt.date)):
        return cell.isoformat()
    return str(cell)


def non_text_kind(cell: Any) -> str | None:
    """What a spreadsheet cell holds when it is not text (None for text or an empty cell): an
    identity typed into a number cell has lost leading zeros or digits before we see it."""
    if cell is None or isinstance(cell, str):
        return None
    if isinstance(cell, bool):
        return "true/false"
    if isinstance(cell, (dt.datetime, dt.date, dt.time, dt.timedelta)):
        return "date or time"
    if isinstance(cell, (int, float)):
        return "number"
    return type(cell).__name__


def cell_blank(cell: Any) -> bool:
    return cell is None or (isinstance(cell, str) and cell.strip() == "")


def column_letter(index: int) -> str:
    """The spreadsheet letters (A … Z, AA …) of the 0-based column `index`."""
    from openpyxl.utils import get_column_letter

    return get_column_letter(index + 1)
