"""DataFrame cells in: a table's rows as the import's row checks take them, exactly or refused.

A DataFrame (or a list of dicts) becomes (index labels, header, rows of Python values), each row
checked by ``importing.RowChecker`` as a file's row is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

# --- tables in, cells out --------------------------------------------------------------------------

_PLAIN = (str, int, float, bool, Decimal, dt.date, dt.datetime, type(None))


def _plain(value: Any) -> Any:
    """A cell as the Python value the import's checks expect (None for every kind of missing)."""
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.to_pydatetime()
    if isinstance(value, np.generic):
        value = value.item()
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and value != value:  # NaN
        return None
    return value


def _column_cells(series: pd.Series) -> list[Any]:
    missing = series.isna().tolist()
    values = series.tolist()  # Python scalars for numeric columns, Timestamps for datetimes
    narrow = _narrow_float(series.dtype)
    return [None if gone else _exact(v, narrow=narrow) for v, gone in zip(values, missing)]


# --- numbers and times exactly, or refused -----------------------------------------------------
# A DataFrame cell is staged only when its type carries the value exactly; otherwise the row is
# refused for that column with the reason and the fix (nothing is rounded, widened or turned
# into text that was never in the data).

_FLOAT64_EXACT = 2 ** 53  # every whole number below this, and no longer every one from it, is a float64
_FLOAT32_EXACT = 2 ** 24


class Inexact:
    """A cell whose type cannot carry its value exactly: staging refuses its row, naming the
    column and `reason` (which says how to fix the column)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return "Inexact(...)"  # never the value


def _narrow_float(dtype: Any) -> bool:
    """A float column narrower than float64 (float32, float16, pandas' Float32)."""
    numpy_dtype = getattr(dtype, "numpy_dtype", dtype)
    return getattr(numpy_dtype, "kind", "") == "f" and numpy_dtype.itemsize < 8


def _exact(value: Any, *, narrow: bool = False) -> Any:
    """`value` as _plain gives it, or an Inexact saying why its type cannot carry it exactly."""
    if isinstance(value, np.floating) and value.dtype.itemsize < 8:
        narrow, value = True, float(value)
    if isinstance(value, (pd.Timedelta, dt.timedelta, np.timedelta64)):
        return Inexact("a duration (timedelta) is not a value a mapping takes; convert the column "
                       "to what the mapping expects first, e.g. .dt.total_seconds() or "
                       ".astype('string')")
    if isinstance(value, pd.Timestamp) and not pd.isna(value) and value.nanosecond:
        return Inexact("the timestamp has nanoseconds, which a datetime cannot carry; round the "
                       "column first, e.g. .dt.floor('s')")
    if isinstance(value, (float, np.floating)) and not isinstance(value, bool):
        number = float(value)
        if number != number:
            return None  # NaN: missing
        if number in (float("inf"), float("-inf")):
            return Inexact(f"{number} is not a finite number; use a missing value (None / NA) "
                           "or a string column")
        if narrow:
            shown = str(np.float32(number))
            if abs(number) >= _FLOAT32_EXACT or shown != repr(number):
                return Inexact(f"a float32 cell holds {number!r}, not {shown}: float32 cannot "
                               "carry most decimals (nor whole numbers from 2**24) exactly; use "
                               "a float64, Int64 or string column, or Decimal values")
        elif abs(number) >= _FLOAT64_EXACT:
            return Inexact(f"{number!r} in a float column: a float carries whole numbers exactly "
                           "only below 2**53, so the number in your data may have been another "
                           "(pandas makes an integer column with a missing value float64); read "
                           "the column as Int64 or string instead, e.g. "
                           "read_csv(..., dtype={'column': 'Int64'})")
        return number
    return value if type(value) in _PLAIN else _plain(value)


def table_of(data: Any) -> tuple[list[Any], list[str], list[tuple]]:
    """(index labels, header, rows of cells) from a DataFrame or a list of dicts."""
    if isinstance(data, pd.DataFrame):
        header = [str(c) for c in data.columns]
        columns = [_column_cells(data.iloc[:, i]) for i in range(data.shape[1])]
        rows = list(zip(*columns)) if columns else [() for _ in range(len(data))]
        return list(data.index), header, rows
    if isinstance(data, Mapping) or isinstance(data, (str, bytes)):
        raise TypeError("stage() takes a DataFrame or a list of dicts (one dict per update).")
    records = list(data)
    header: list[str] = []
    seen: set[str] = set()
    for position, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise TypeError(f"Row {position} is a {type(record).__name__}, not a dict.")
        for key in record:
            if key not in seen:
                seen.add(key)
                header.append(str(key))
    rows = [tuple(_exact(_missing_as_none(record.get(name))) for name in header)
            for record in records]
    return list(range(len(records))), header, rows


def checked_rows(checker, header, labels, rows, *, supersede: bool):
    """Each row checked as the import checks a file's: (the good rows as (position, update),
    the problems as (position, column, message), each row's errors in one text). Then the open
    updates of the good rows' visitors (the save looks again, with the visitors locked)."""
    numbers = _row_numbers(labels)
    good: list[tuple[int, dict[str, Any]]] = []
    problems: list[tuple[int, str, str]] = []
    row_errors: list[str] = [""] * len(rows)
    for position, (number, cells) in enumerate(zip(numbers, rows)):
        found, update = _check_exact(checker, header, number, cells)
        if found:
            problems.extend((position, p.column, p.message) for p in found)
            row_errors[position] = "; ".join(
                f"{p.column}: {p.message}" if p.column else p.message for p in found)
        else:
            good.append((position, update))
    conflicting = {problem.row: problem for problem in checker.open_conflict_errors(
        [(numbers[p], u) for p, u in good], supersede=supersede)}
    if conflicting:
        for position, _update in good:
            if (problem := conflicting.get(numbers[position])) is not None:
                problems.append((position, problem.column, problem.message))
                row_errors[position] = f"{problem.column}: {problem.message}"
        good = [(p, u) for p, u in good if numbers[p] not in conflicting]
    return good, problems, row_errors


def _check_exact(checker, header: list[str], number: int, cells: tuple):
    """checker.check(number, cells), with a cell whose type cannot carry its value exactly
    refused for its column (the row's other columns are still checked and named)."""
    from updates.importing import RowError

    inexact = {index: cell.reason for index, cell in enumerate(cells) if isinstance(cell, Inexact)}
    if not inexact:
        return checker.check(number, cells)
    columns = {header[index] for index in inexact}
    found, _ = checker.check(number, tuple(None if i in inexact else c
                                           for i, c in enumerate(cells)))
    refused = [RowError(number, header[index], reason) for index, reason in inexact.items()]
    # Without the refused cells the row may set nothing; that is not a problem of its own.
    return refused + [p for p in found if p.column not in columns
                      and not p.message.startswith("The row sets no attribute")], None


def _missing_as_none(value: Any) -> Any:
    return None if value is pd.NA or value is pd.NaT else value


def _row_numbers(labels: list[Any]) -> list[int]:
    """The numbers the row checks use in their messages ("same visitor as row N"): the index
    labels when they are distinct integers (a default RangeIndex), else positions from 0."""
    if all(isinstance(label, (int, np.integer)) and not isinstance(label, bool) for label in labels):
        numbers = [int(label) for label in labels]
        if len(set(numbers)) == len(numbers):
            return numbers
    return list(range(len(labels)))

