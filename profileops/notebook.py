"""ProfileOps from Jupyter: stage from a DataFrame, review, approve, send and look at the results.

One line sets it up and names the person acting::

    from profileops import notebook
    nb = notebook.connect(as_user="alice")          # or: notebook.setup(); nb = notebook.as_user("alice")
    result = nb.stage(frame, connection="acme")     # one row per input row: the update id or the errors
    nb.submit(ids=result.ids)
    notebook.as_user("bob").approve(ids=result.ids)

**The same rules as the admin, no bypass.** Every call runs the services the admin, the import and
the commands run — ``importing.RowChecker`` and ``workflow.updates_stage_many`` to stage,
``workflow.update_submit`` through ``workflow.apply_to_each`` and, to approve or reject, the
same decision set-wise (``setwise.decide_set``: the services' checks, messages and rows, a
chunk of updates per transaction),
``sending.send_due`` to send — as the named user, so permissions, the four-eyes rule, the model's
validation and the audit rows are exactly theirs. The user is read afresh from the database on
every call, so a permission withdrawn meanwhile counts at once. (Whoever holds the database
credentials could write rows directly; this module is a way to act accountably, not a sandbox.)

**Configuration** is the app's: ``DJANGO_SETTINGS_MODULE`` (default ``profileops.settings``) and
``DATABASE_URL`` from the environment, so a notebook opened from ``notebooks/`` uses the same
embedded database as ``./dev start``. The repository root is put on ``sys.path`` when the module
runs from a source checkout, so the demo app and the emulator package import from any working
directory.

**Why the ORM runs on a worker thread.** A Jupyter kernel runs every cell synchronously in its
main thread, but that thread also *runs* an asyncio event loop (the kernel's own). Django refuses
database calls from a thread with a running loop (``SynchronousOnlyOperation``): it cannot tell a
cell from a coroutine that would block the loop. Setting ``DJANGO_ALLOW_ASYNC_UNSAFE`` would
silence the check for the whole process, including real ``async`` code a user might ``await`` in
a cell, where the warning is right. Instead every ORM call of this module runs on one dedicated
thread (a single-worker ``ThreadPoolExecutor``) that has no event loop: the check holds honestly,
nothing is switched off, and the thread keeps one database connection for the session. The cell
waits for the result, so the notebook still reads top to bottom. Use ``notebook.run(fn)`` for
your own ORM code.

Results are pandas DataFrames (listings; ``Frame``, which only displays timestamps to the second
and text in full) or small result objects with a ``.table`` DataFrame (also ``.rows``) and an
escaped ``_repr_html_`` — the counts per outcome and the first few problem rows, not every row;
their ``repr()`` shows counts only — never a profile value, an identity or a token. Nothing here
logs values, and ``setup()`` keeps the app's INFO log lines out of the cells.

Needs the ``[notebook]`` extra: ``pip install -e .[notebook]``.
"""

from __future__ import annotations

import atexit
import datetime as dt
import html
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

INSTALL_HINT = "pip install -e .[notebook]"

try:
    import numpy as np
    import pandas as pd
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"profileops.notebook needs pandas (missing: {error.name}); install the notebook extra: "
        f"{INSTALL_HINT}") from error

from updates import permissions  # codenames only: needs no Django set-up

if TYPE_CHECKING:  # imported for annotations only: Django may not be set up yet
    from matplotlib.figure import Figure

__all__ = ["INSTALL_HINT", "Decisions", "Frame", "LiveDiff", "Preview", "Result", "Reverts",
           "SendReport", "Session", "StageResult", "as_user", "close", "connect", "run", "setup"]

T = TypeVar("T")
DEFAULT_REASON = "staged from a notebook"
DEFAULT_LIMIT = 10_000
SYSTEM_ACTOR = "system"  # audit(): the actor of events no person caused (the sender, the jobs)
NOT_STARTED = "not_started"  # verification(): no check made or scheduled yet (blank in the model)
SHOWN_PROBLEMS = 10  # result objects display at most this many problem rows; the rest on request
REPO_ROOT = Path(__file__).resolve().parent.parent


# --- setup and the ORM thread ------------------------------------------------------------------

class _OrmThread:
    """One long-lived thread without an event loop on which every ORM call runs (see above)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._thread_id: int | None = None

    def _started(self) -> None:
        self._thread_id = threading.get_ident()

    def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        if threading.get_ident() == self._thread_id:
            return fn(*args, **kwargs)  # already on it (a service calling back into us)
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="profileops-orm", initializer=self._started)
            executor = self._executor
        return executor.submit(fn, *args, **kwargs).result()

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is None:
            return
        from django.db import connections

        try:
            executor.submit(connections.close_all).result()
        except RuntimeError:
            pass  # at interpreter exit the executor may already be shut down; so is the thread
        executor.shutdown(wait=True)
        self._thread_id = None


_orm = _OrmThread()
atexit.register(_orm.close)


def setup(*, settings_module: str | None = None, log_level: int | str = logging.WARNING) -> None:
    """Configure Django from the environment, as the app does. Safe to call more than once.

    The app's logging writes INFO lines (sends, claims, verification) to the process's stderr,
    which in Jupyter is the cell's output. For a notebook session the console handlers the
    settings attach (stream handlers on the root logger) are raised to `log_level` (WARNING by
    default), so cells show results, not log noise; warnings and errors still print. The loggers
    themselves are left as configured, so other handlers (and the test suite's) see every record.
    ``notebook.setup(log_level="INFO")`` brings the lines back.

    Example::

        notebook.setup()                      # DJANGO_SETTINGS_MODULE, DATABASE_URL from the env
    """
    if (REPO_ROOT / "manage.py").exists() and str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))  # a source checkout: demo/ and target_emulator/ too
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings_module or "profileops.settings")
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()  # loads settings and apps; no database query
    _quiet_console(log_level)


def _quiet_console(level: int | str) -> None:
    """Set the level of the root logger's console handlers (settings.LOGGING "console")."""
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:  # not FileHandler, not pytest's capture
            handler.setLevel(level)


def run(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run your own ORM code on the module's database thread (where Django allows it).

    Example::

        from updates.models import ProfileUpdate
        notebook.run(lambda: ProfileUpdate.objects.filter(status="sent").count())
    """
    setup()
    return _orm.run(fn, *args, **kwargs)


def close() -> None:
    """Close the database connection and stop the worker thread (also done at exit)."""
    _orm.close()


def as_user(username: str) -> Session:
    """A session acting as `username` (who must exist and be active). Call setup() first.

    Example::

        supervisor = notebook.as_user("bob")
    """
    setup()
    return _session_for(username)


def _session_for(username: str) -> Session:
    session = Session(username)
    _orm.run(session._user)  # fail now, not at the first action, if the name is wrong
    return session


def connect(*, as_user: str, log_level: int | str = logging.WARNING) -> Session:
    """setup() and as_user() in one line.

    Example::

        nb = notebook.connect(as_user="alice")
    """
    setup(log_level=log_level)
    return _session_for(as_user)


# --- result objects ------------------------------------------------------------------------------

class Frame(pd.DataFrame):
    """A pandas DataFrame (every listing and result table of this module) that *displays* for
    people: timestamps to the second (floored: ``01:53:16`` for ``01:53:16.912345``) and text in
    full (no ``...`` cutting a message before its tail, e.g. the permitted choices). Only the
    display changes: the values are exact (``frame["at"]`` keeps its microseconds) and every
    DataFrame operation works as usual; ``pd.DataFrame(frame)`` gives a plain one."""

    @property
    def _constructor(self):
        return Frame

    def shown(self) -> pd.DataFrame:
        """A plain copy as displayed: timestamp columns floored to the second."""
        plain = pd.DataFrame(self, copy=True)
        for column in plain.columns[[pd.api.types.is_datetime64_any_dtype(t)
                                     for t in plain.dtypes]]:
            plain[column] = plain[column].dt.floor("s")
        return plain

    def __repr__(self) -> str:
        # Every column (wrapped at display.width rather than elided as "...").
        with pd.option_context("display.max_colwidth", None, "display.max_columns", None):
            return repr(self.shown())

    def _repr_html_(self) -> str | None:
        with pd.option_context("display.max_colwidth", None):
            return self.shown()._repr_html_()

    def to_html(self, *args: Any, **kwargs: Any) -> str:
        with pd.option_context("display.max_colwidth", None):
            return pd.DataFrame.to_html(self.shown(), *args, **kwargs)


def _frame(table: pd.DataFrame) -> Frame:
    return table if isinstance(table, Frame) else Frame(table)


class Result:
    """A table with a one-line summary. `repr()` gives counts only; Jupyter shows the table,
    escaped (DataFrame.to_html escapes cell text)."""

    title = "Result"

    def __init__(self, table: pd.DataFrame, **counts: int) -> None:
        self.table = _frame(table)
        self.counts = counts

    @property
    def rows(self) -> Frame:
        """Every row (the same as `.table`)."""
        return self.table

    def summary(self) -> str:
        return ", ".join(f"{count:,} {name.replace('_', ' ')}" for name, count in self.counts.items())

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.summary()}>"

    def _extra_html(self) -> str:
        return ""

    def _repr_html_(self) -> str:
        max_rows = pd.get_option("display.max_rows") or 60
        return (f"<p><strong>{html.escape(self.title)}</strong>: {html.escape(self.summary())}</p>"
                + self._extra_html()
                + self.table.to_html(max_rows=max_rows, escape=True, notebook=True))


class _SummaryFirst(Result):
    """A result of one row per update (or input row): Jupyter shows the counts per outcome and
    the first few problem rows, never the whole table; `.rows` (or `.table`) has every row."""

    problem_label = "refused"

    def _problems(self) -> pd.DataFrame:
        return self.table[self.table["outcome"] == "refused"]

    def _repr_html_(self) -> str:
        problems = self._problems()
        parts = [f"<p><strong>{html.escape(self.title)}</strong>: "
                 f"{html.escape(self.summary())}</p>"]
        if not problems.empty:
            shown = min(len(problems), SHOWN_PROBLEMS)
            parts.append(f"<p>{html.escape(self.problem_label.capitalize())}: the first "
                         f"{shown:,} of {len(problems):,}</p>"
                         + _frame(problems.head(SHOWN_PROBLEMS)).to_html(
                             escape=True, notebook=True, index=False))
        parts.append(f"<p>All {len(self.table):,} rows: <code>.rows</code></p>")
        return "".join(parts)


class StageResult(_SummaryFirst):
    """What `Session.stage` did, one row per input row (same index): `update_id` (when saved),
    `status` (draft, pending, invalid, or not saved because another row is invalid) and
    `errors`. `errors_table` has one row per problem: row (the input's index label), column,
    message."""

    title = "Staged"

    def __init__(self, table: pd.DataFrame, errors_table: pd.DataFrame, *,
                 import_job: int | None = None, **counts: int) -> None:
        super().__init__(table, **counts)
        self.errors_table = _frame(errors_table)
        # The import that saved the rows (None when nothing was saved): select its updates
        # with ``import_job=result`` (or this id), never by their reason text.
        self.import_job = import_job

    @property
    def ok(self) -> bool:
        return self.counts["invalid"] == 0

    @property
    def ids(self) -> list[int]:
        return [int(i) for i in self.table["update_id"].dropna()]

    problem_label = "problems, by row (the DataFrame's index label) and column"

    def _problems(self) -> pd.DataFrame:
        return self.errors_table


class Decisions(_SummaryFirst):
    """Per update: `outcome` (done or refused), its `status` after, and the refusal `message`."""

    title = "Decisions"

    @property
    def ids(self) -> list[int]:
        return [int(i) for i in self.table.loc[self.table["outcome"] == "done", "update_id"]]

    @property
    def refused(self) -> pd.DataFrame:
        return self.table[self.table["outcome"] == "refused"]


class Preview(Result):
    """The exact requests the sender would make (token redacted) and their quota cost."""

    title = "Preview"

    def __init__(self, table: pd.DataFrame, quota_table: pd.DataFrame, **counts: int) -> None:
        super().__init__(table, **counts)
        self.quota_table = _frame(quota_table)

    @property
    def quota_cost(self) -> int:
        return self.counts["quota_cost"]

    def _extra_html(self) -> str:
        return self.quota_table.to_html(escape=True, index=False, notebook=True)


class SendReport(Result):
    """The totals of one send run (the same SendRun row the dashboard shows)."""

    title = "Send run"


class LiveDiff(Result):
    """Per (update, attribute): the value Target holds (`at_target`, missing when it has no such
    attribute or no profile), when it was read, the value to send and whether it `changes`
    anything; `left_out` marks attributes the connection's drop_unchanged_attributes would leave
    out of the request. `notes` has one row per update: the read's `state` (found, not_found,
    error, throttled) and a `message` — e.g. that Target has no profile for the visitor."""

    title = "Live diff"

    def __init__(self, table: pd.DataFrame, notes: pd.DataFrame, **counts: int) -> None:
        super().__init__(table, **counts)
        self.notes = _frame(notes)

    def _extra_html(self) -> str:
        noted = self.notes[self.notes["message"] != ""]
        if noted.empty:
            return ""
        return noted.to_html(escape=True, index=False, notebook=True)


class Reverts(_SummaryFirst):
    """Per update asked for: `outcome` (done or refused), the staged `revert_update_id` (a draft
    to submit and have approved like any other), what it puts back, what it cannot undo and
    why (`not_revertible`), and the refusal `message`. `ids` are the revert updates' ids."""

    title = "Reverts"

    @property
    def ids(self) -> list[int]:
        return [int(i) for i in self.table["revert_update_id"].dropna()]


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


def _table(data: Any) -> tuple[list[Any], list[str], list[tuple]]:
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


def _checked_rows(checker, header, labels, rows, *, supersede: bool):
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


def _stage_frames(labels, problems, row_errors, update_ids, statuses):
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


def _utc(frame: pd.DataFrame, *columns: str) -> None:
    for column in columns:
        frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[us, UTC]")


def _ints(frame: pd.DataFrame, *columns: str) -> None:
    for column in columns:
        frame[column] = frame[column].astype("Int64")


def _ids(ids: Any) -> list[int] | None:
    if ids is None:
        return None
    if isinstance(ids, (StageResult, Decisions, Reverts)):
        return ids.ids
    if isinstance(ids, (int, np.integer)):
        return [int(ids)]
    if (shown := _shown(ids)) is not None:
        return list(shown)
    if isinstance(ids, Preview):
        ids = ids.table
    if isinstance(ids, pd.DataFrame):
        return [int(i) for i in ids["update_id" if "update_id" in ids.columns else "id"]]
    return [int(i) for i in ids]


def _shown(ids: Any) -> dict[int, str] | None:
    """{update id: content fingerprint} when `ids` is what preview() or updates() returned (a
    table, or records, with an id and a `fingerprint`); None for bare ids."""
    table = ids.table if isinstance(ids, Preview) else ids
    if isinstance(table, pd.DataFrame):
        if "fingerprint" not in table.columns:
            return None
        column = "update_id" if "update_id" in table.columns else "id"
        return {int(pk): str(fp) for pk, fp in zip(table[column], table["fingerprint"])}
    if isinstance(table, (list, tuple)) and table \
            and all(isinstance(r, Mapping) and "fingerprint" in r for r in table):
        return {int(r["update_id"] if "update_id" in r else r["id"]): str(r["fingerprint"])
                for r in table}
    return None


def _refuse_permission(message: str) -> None:
    """Refuse as the services do: updates.errors.Refused (a ValidationError) whose code is
    ``permission_denied``, so one ``except ValidationError`` catches every refusal."""
    from updates.errors import PERMISSION_DENIED, Refused

    raise Refused(message, code=PERMISSION_DENIED)


# --- the session -------------------------------------------------------------------------------------

class Session:
    """Acting as one named user. Create with `notebook.as_user(name)` or `notebook.connect`."""

    def __init__(self, username: str) -> None:
        self.username = username

    def __repr__(self) -> str:
        return f"<ProfileOps notebook session as {self.username!r}>"

    def as_user(self, username: str) -> Session:
        """Another person, same database. Example: ``supervisor = nb.as_user("bob")``."""
        return as_user(username)

    # -- lookups (run on the ORM thread) --

    def _user(self):
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.filter(username=self.username).first()
        if user is None:
            raise LookupError(f"No user named {self.username!r}.")
        if not user.is_active:
            _refuse_permission(f"User {self.username!r} is inactive.")
        return user  # fresh every call: no stale permission cache

    @staticmethod
    def _connection(ref: Any):
        from updates.models import TargetConnection

        if isinstance(ref, TargetConnection):
            return TargetConnection.objects.get(pk=ref.pk)
        if ref is None:
            active = list(TargetConnection.objects.filter(active=True)[:2])
            if len(active) == 1:
                return active[0]
            raise ValueError("Name the connection (label or client code): "
                             f"{len(active)} active connections could be meant.")
        if isinstance(ref, (int, np.integer)):
            found = TargetConnection.objects.filter(pk=int(ref)).first()
        else:
            found = (TargetConnection.objects.filter(label=ref).first()
                     or TargetConnection.objects.filter(client_code=ref).first())
        if found is None:
            labels = ", ".join(TargetConnection.objects.values_list("label", flat=True)) or "none"
            raise LookupError(f"No connection {ref!r} (connections: {labels}).")
        return found

    def _need(self, user, perm: str, doing: str) -> None:
        if not user.has_perm(perm):
            _refuse_permission(f"{self.username} does not have permission to {doing}.")

    def _selection(self, *, ids, connection, status, created_by, reason,
                   default_status: str | None = None, required: bool = True,
                   import_job: Any = None):
        """(the ids asked for, a queryset): `ids`, narrowed by the filters; without ids,
        `default_status` applies (drafts to submit, pending updates to decide). `import_job`
        (an id, or a StageResult) selects the updates that import created — never the ones
        that merely carry its reason text."""
        from updates.models import ProfileUpdate

        wanted = _ids(ids)
        if required and wanted is None and connection is None and created_by is None \
                and reason is None and status is None and import_job is None:
            raise ValueError("Say which updates: ids=…, or a filter (connection, status, "
                             "created_by, reason, import_job).")
        qs = ProfileUpdate.objects.all()
        if wanted is not None:
            qs = qs.filter(pk__in=wanted)
        if connection is not None:
            qs = qs.filter(connection=self._connection(connection))
        status = status if status is not None else (None if wanted is not None else default_status)
        if status is not None:
            qs = qs.filter(status__in=[status] if isinstance(status, str) else list(status))
        if created_by is not None:
            qs = qs.filter(created_by__username=created_by)
        if reason is not None:
            qs = qs.filter(reason=reason)
        if import_job is not None:
            job = import_job.import_job if isinstance(import_job, StageResult) else import_job
            qs = qs.filter(import_job_id=int(job)) if job is not None else qs.none()
        return wanted, qs.order_by("id")

    # -- staging --

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
        labels, header, rows = _table(data)
        return _orm.run(self._stage, labels, header, rows, connection=connection,
                        submit=submit, keep_good=keep_good, reason=reason, supersede=supersede)

    def _stage(self, labels, header, rows, *, connection, submit, keep_good, reason,
               supersede=False) -> StageResult:
        from django.core.exceptions import ValidationError

        from updates import importing, mappings, workflow
        from updates.models import ProfileUpdate, UpdateStatus

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
        good, problems, row_errors = _checked_rows(checker, header, labels, rows,
                                                   supersede=supersede)
        save = bool(good) and (keep_good or not problems)
        update_ids: list[Any] = [pd.NA] * len(rows)
        if save:
            status = UpdateStatus.PENDING if submit else UpdateStatus.DRAFT
            # One import, as a file's: written invisibly in short transactions, live together
            # with one audit row, all or nothing (importing.rows_import).
            job = importing.rows_import(
                connection=conn, rows=[u for _, u in good], by=user, fingerprint=fingerprint,
                name=f"DataFrame staged from a notebook by {user.get_username()}",
                submit=submit, reason=reason, supersede=supersede)
            created = (ProfileUpdate.objects.filter(import_job=job)
                       .values_list("identity_type", "identity", "id"))
            by_visitor = {(t, i): pk for t, i, pk in created.iterator(chunk_size=5000)}
            for position, update in good:
                update_ids[position] = by_visitor[(update["identity_type"], update["identity"])]
            saved_status = str(status)
        else:
            saved_status = ""
        bad = {p for p, _, _ in problems}
        statuses = ["invalid" if p in bad else (saved_status if save else "not saved")
                    for p in range(len(rows))]
        table, errors_table = _stage_frames(labels, problems, row_errors, update_ids, statuses)
        return StageResult(table, errors_table, import_job=job.pk if save else None,
                           rows=len(rows),
                           saved=len(good) if save else 0, invalid=len(bad))

    # -- review and decisions --

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
        return _orm.run(self._preview, ids=ids, connection=connection, status=status,
                        created_by=created_by, reason=reason, due=due, limit=limit,
                        import_job=import_job)

    def _preview(self, *, ids, connection, status, created_by, reason, due, limit,
                 import_job=None) -> Preview:
        from updates import quota, sending, target
        from updates.models import TargetConnection

        user = self._user()
        self._need(user, permissions.PERM_VIEW, permissions.DOING[permissions.PERM_VIEW])
        if due:
            conn = None if connection is None else self._connection(connection)
            plan = sending.plan_due(connection=conn, limit=limit)
        else:
            _, qs = self._selection(ids=ids, connection=connection, status=status,
                                    created_by=created_by, reason=reason, import_job=import_job)
            plan = []
            for update in qs.select_related("connection")[:limit]:
                try:
                    plan.append(sending.PlannedRequest(update, sending.request_for(update),
                                                       target.REQUEST_QUOTA_COST))
                except (target.RequestTooLarge, ValueError) as error:
                    plan.append(sending.PlannedRequest(update, None, 0, str(error)))
        rows = []
        for item in plan:
            request = item.request
            headers = {} if request is None else target.shown_headers(request.headers)
            rows.append({
                "update_id": item.update.pk, "connection": item.update.connection.label,
                "status": item.update.status,
                "method": request.method if request else "",
                "url": request.url if request else "",
                "body": (request.body or b"").decode("ascii") if request else "",
                "headers": "; ".join(f"{k}: {v}" for k, v in headers.items()),
                "size_bytes": request.size if request else 0,
                "limit_bytes": (target.GET_LIMIT_BYTES if request and request.method == "GET"
                                else target.POST_LIMIT_BYTES),
                "quota_cost": item.quota_cost, "problem": item.problem,
                "fingerprint": item.update.content_hash})
        table = pd.DataFrame(rows, columns=[
            "update_id", "connection", "status", "method", "url", "body", "headers",
            "size_bytes", "limit_bytes", "quota_cost", "problem", "fingerprint"])
        _ints(table, "update_id", "size_bytes", "limit_bytes", "quota_cost")
        cost_by_connection = table.groupby("connection")["quota_cost"].sum().to_dict()
        quota_rows = []
        for conn in TargetConnection.objects.filter(label__in=list(cost_by_connection)):
            used = quota.window_usage(connection=conn)
            cost = int(cost_by_connection[conn.label])
            quota_rows.append({"connection": conn.label, "quota_cost": cost,
                               "window_requests": used, "limit": conn.quota_limit,
                               "headroom": max(0, conn.quota_limit - used),
                               "fits": cost <= max(0, conn.quota_limit - used)})
        quota_table = pd.DataFrame(quota_rows, columns=[
            "connection", "quota_cost", "window_requests", "limit", "headroom", "fits"])
        return Preview(table, quota_table, requests=int((table["method"] != "").sum()),
                       quota_cost=int(table["quota_cost"].sum()),
                       unsendable=int((table["method"] == "").sum()))

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
                import_job: Any = None) -> Decisions:
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
        """
        from updates import workflow

        return self._decide(workflow.update_approve, "pending", ids=ids, connection=connection,
                            created_by=created_by, reason=reason, import_job=import_job,
                            comment=comment)

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
        return _orm.run(self._decide_on_thread, service, default_status, comment, selection)

    def _decide_on_thread(self, service, default_status, comment, selection) -> Decisions:
        from updates import workflow

        user = self._user()
        shown = _shown(selection["ids"]) if service in (workflow.update_approve,
                                                         workflow.update_reject) else None
        wanted, qs = self._selection(status=None, default_status=default_status, **selection)
        updates = list(qs)
        if service in (workflow.update_approve, workflow.update_reject):
            outcome = self._decide_set_wise(user, "approve" if service is workflow.update_approve
                                            else "reject", updates, shown, comment)
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
        _ints(table, "update_id")
        table["outcome"] = pd.Categorical(table["outcome"], categories=["done", "refused"])
        return Decisions(table, done=len(outcome.done), refused=len(rows) - len(outcome.done))

    @staticmethod
    def _decide_set_wise(user, decision: str, updates: list, shown: dict[int, str] | None,
                         comment: str):
        """Approve or reject set-wise (updates/setwise.py), setwise.CHUNK updates a transaction:
        the single services' checks, messages and rows, refusals per row (never raised). With
        `shown` (what preview()/updates() returned) a row whose update changed since, or left,
        is refused (``stale``) and the rest are decided; without, whatever is there now."""
        from django.core.exceptions import ValidationError
        from django.db import transaction

        from updates import decisions, setwise, workflow

        outcome = workflow.BulkOutcome()
        try:
            transition, comment = decisions._check_decision(decision, user, comment)
        except ValidationError as error:  # the permission, the comment: every row, as before
            outcome.refused = [(u, " ".join(error.messages)) for u in updates]
            return outcome
        by_id = {u.pk: u for u in updates}
        ids = sorted(by_id)
        for start in range(0, len(ids), setwise.CHUNK):
            chunk = ids[start:start + setwise.CHUNK]
            with transaction.atomic():
                result = setwise.decide_set(
                    shown=None if shown is None else {pk: shown.get(pk, "") for pk in chunk},
                    ids=chunk, transition=transition, by=user, comment=comment, strict=False)
            for pk in result.done:
                by_id[pk].status = transition.target
                outcome.done.append(by_id[pk])
            outcome.refused += [(by_id[pk], message) for pk, message in result.refused]
        return outcome

    # -- sending --

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
        return _orm.run(self._send, connection=connection, limit=limit, time_budget=time_budget)

    def _send(self, *, connection, limit, time_budget) -> SendReport:
        from updates import sending

        user = self._user()
        if not (user.has_perm(permissions.PERM_SUBMIT) or user.has_perm(permissions.PERM_APPROVE)):
            _refuse_permission(f"{self.username} has no part in the workflow (neither submit nor "
                               "approve permission), so may not start a send run.")
        conn = None if connection is None else self._connection(connection)
        run = sending.send_due(connection=conn, limit=limit, worker=f"notebook:{self.username}",
                               time_budget=time_budget)
        totals = {"claimed": run.claimed, "requests": run.requests_sent,
                  "acknowledged": run.acknowledged, "retried": run.retried,
                  "failed": run.failed, "deferred_by_quota": run.deferred_by_quota}
        table = pd.DataFrame([{"run_id": run.pk, **totals, "started_at": run.started_at,
                               "finished_at": run.finished_at, "error": run.error}])
        _utc(table, "started_at", "finished_at")
        _ints(table, "run_id", *totals)
        return SendReport(table, **totals)

    # -- closing the loop with Target: live diff, verification, revert --

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
        return _orm.run(self._live_diff, ids=ids, connection=connection, status=status,
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
        _ints(table, "update_id")
        _ints(notes_table, "update_id", "changes")
        _utc(table, "read_at")
        _utc(notes_table, "read_at")
        table["changes"] = table["changes"].astype(bool)
        table["left_out"] = table["left_out"].astype(bool)
        return LiveDiff(table, notes_table, updates=len(notes_table),
                        attributes_changing=int(table["changes"].sum()),
                        unchanged=int((~table["changes"]).sum()),
                        without_profile=int((notes_table["state"] == "not_found").sum()))

    def verify(self, *, connection: Any = None, time_budget: float | None = 30.0) -> Result:
        """Run the verification job now (verification.updates_verify_due, as the "Verify sent
        updates" schedule and ``verify_updates`` do): newly acknowledged updates get their first
        check scheduled, and those whose check is due are read back. Needs a part in the
        workflow, as ``send`` does.

        Example::

            supervisor.verify(connection="demo")
        """
        return _orm.run(self._verify, connection=connection, time_budget=time_budget)

    def _verify(self, *, connection, time_budget) -> Result:
        from updates import verification

        user = self._user()
        if not (user.has_perm(permissions.PERM_SUBMIT) or user.has_perm(permissions.PERM_APPROVE)):
            _refuse_permission(f"{self.username} has no part in the workflow (neither submit nor "
                               "approve permission), so may not run verification.")
        conn = None if connection is None else self._connection(connection)
        run = verification.updates_verify_due(connection=conn, time_budget=time_budget)
        totals = {"scheduled": run.started, "switched_off": run.switched_off,
                  "checked": run.checked, "verified": run.verified,
                  "not_applied": run.not_applied, "unverified": run.unverified,
                  "throttled": run.throttled}
        table = pd.DataFrame([totals])
        _ints(table, *totals)
        result = Result(table, **totals)
        result.title = "Verification run"
        return result

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
        return _orm.run(self._verification, ids=ids, connection=connection, status=status,
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
        _ints(frame, "update_id", "checks_made", "checks_planned")
        _utc(frame, "acknowledged_at", "next_check_at", "verified_at", "prior_read_at")
        # Blank in the model (not sent, or the first check not yet scheduled) is named here, so
        # value_counts() has no blank-named row.
        frame["verification_state"] = pd.Categorical(
            frame["verification_state"].replace("", NOT_STARTED),
            categories=[NOT_STARTED, *VerificationState.values])
        frame["connection"] = frame["connection"].astype("category")
        return Frame(frame)

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
        return _orm.run(self._revert, ids=ids, comment=comment, supersede=supersede)

    def _revert(self, *, ids, comment, supersede=False) -> Reverts:
        from django.core.exceptions import ValidationError

        from updates import verification
        from updates.models import ProfileUpdate

        user = self._user()
        wanted = _ids(ids)
        if not wanted:
            raise ValueError("Say which updates to revert: ids=….")
        found = {u.pk: u for u in ProfileUpdate.objects.filter(pk__in=wanted)
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
        _ints(table, "update_id", "revert_update_id")
        table["outcome"] = pd.Categorical(table["outcome"], categories=["done", "refused"])
        done = int((table["outcome"] == "done").sum())
        return Reverts(table, done=done, refused=len(table) - done)

    # -- listings --

    def updates(self, *, ids: Any = None, connection: Any = None, status: Any = None,
                created_by: str | None = None, reason: str | None = None,
                limit: int = DEFAULT_LIMIT, import_job: Any = None) -> pd.DataFrame:
        """Updates as a DataFrame (newest first, at most `limit`): ids as Int64, `status` and
        `identity_type` categorical, timestamps timezone-aware (UTC), `attributes` as dicts
        exactly as they will be sent. `at_target` (categorical, next to `status`) says what
        happened at Target: verified, not_applied, checking, unverified, unchanged, off, or ""
        (nothing sent).

        Example::

            nb.updates(status="pending", connection="acme")["status"].value_counts()
        """
        return _orm.run(self._updates, ids=ids, connection=connection, status=status,
                        created_by=created_by, reason=reason, limit=limit,
                        import_job=import_job)

    def _updates(self, *, ids, connection, status, created_by, reason, limit,
                 import_job=None) -> pd.DataFrame:
        from updates import verification
        from updates.models import IdentityType, UpdateStatus, content_hash

        user = self._user()
        self._need(user, permissions.PERM_VIEW, permissions.DOING[permissions.PERM_VIEW])
        _, qs = self._selection(ids=ids, connection=connection, status=status,
                                created_by=created_by, reason=reason, required=False,
                                import_job=import_job)
        fields = {"id": "id", "connection": "connection__label", "identity_type": "identity_type",
                  "identity": "identity", "attributes": "attributes", "reason": "reason",
                  "status": "status", "created_by": "created_by__username",
                  "created_at": "created_at", "last_edited_by": "last_edited_by__username",
                  "submitted_at": "submitted_at", "decided_by": "decided_by__username",
                  "decided_at": "decided_at", "decision_comment": "decision_comment",
                  "attempts_total": "attempts_total", "next_attempt_at": "next_attempt_at",
                  "acknowledged_at": "acknowledged_at", "last_error": "last_error",
                  "verification_state": "verification_state"}
        rows = list(qs.order_by("-id").values_list(*fields.values())[:limit])
        frame = pd.DataFrame(rows, columns=list(fields))
        # What happened at Target, next to the status (verification.AT_TARGET; "" not sent).
        frame.insert(list(fields).index("status") + 1, "at_target", pd.Categorical(
            [verification.at_target(status, state)
             for status, state in zip(frame["status"], frame.pop("verification_state"))],
            categories=["", *verification.AT_TARGET]))
        _ints(frame, "id", "attempts_total")
        _utc(frame, "created_at", "submitted_at", "decided_at", "next_attempt_at",
             "acknowledged_at")
        frame["status"] = pd.Categorical(frame["status"], categories=UpdateStatus.values)
        frame["identity_type"] = pd.Categorical(frame["identity_type"],
                                                categories=IdentityType.values)
        frame["connection"] = frame["connection"].astype("category")
        # What approve()/reject() compare with when given this table (decisions.py).
        frame["fingerprint"] = [content_hash(t, i, a) for t, i, a in zip(
            frame["identity_type"].astype(str), frame["identity"], frame["attributes"])]
        return Frame(frame)

    def attempts(self, *, ids: Any = None, connection: Any = None, outcome: str | None = None,
                 limit: int = DEFAULT_LIMIT) -> pd.DataFrame:
        """Send attempts (newest first): Target's status and answer, latency, outcome
        (categorical), `started_at` timezone-aware. `ids` are update ids.

        Example::

            nb.attempts(connection="demo")["latency_ms"].describe()
        """
        return _orm.run(self._attempts, ids=ids, connection=connection, outcome=outcome,
                        limit=limit)

    def _attempts(self, *, ids, connection, outcome, limit) -> pd.DataFrame:
        from updates.models import SendAttempt

        user = self._user()
        self._need(user, permissions.PERM_VIEW, permissions.DOING[permissions.PERM_VIEW])
        qs = SendAttempt.objects.all()
        if (wanted := _ids(ids)) is not None:
            qs = qs.filter(update_id__in=wanted)
        if connection is not None:
            qs = qs.filter(connection=self._connection(connection))
        if outcome is not None:
            qs = qs.filter(outcome=outcome)
        fields = {"id": "id", "update_id": "update_id", "connection": "connection__label",
                  "number": "number", "started_at": "started_at", "method": "method",
                  "request_bytes": "request_bytes", "http_status": "http_status",
                  "response_body": "response_body", "latency_ms": "latency_ms",
                  "outcome": "outcome", "error": "error", "worker": "worker"}
        rows = list(qs.order_by("-id").values_list(*fields.values())[:limit])
        frame = pd.DataFrame(rows, columns=list(fields))
        _ints(frame, "id", "update_id", "number", "request_bytes", "http_status", "latency_ms")
        _utc(frame, "started_at")
        frame["outcome"] = pd.Categorical(frame["outcome"], categories=[o.value for o in SendAttempt.Outcome])
        frame["connection"] = frame["connection"].astype("category")
        return Frame(frame)

    def audit(self, *, ids: Any = None, connection: Any = None, actor: str | None = None,
              action: str | None = None, limit: int = DEFAULT_LIMIT) -> pd.DataFrame:
        """Audit events (newest first): who (`actor`), when (`at`, UTC), what (`action`,
        categorical), from/to status, comment and the before/after of changed fields. `ids`
        are update ids.

        Example::

            nb.audit(ids=result.ids[:3])[["at", "actor", "action", "to_status"]]
        """
        return _orm.run(self._audit, ids=ids, connection=connection, actor=actor, action=action,
                        limit=limit)

    def _audit(self, *, ids, connection, actor, action, limit) -> pd.DataFrame:
        from django.db.models import Q

        from updates.models import AuditEvent, ProfileUpdate

        user = self._user()
        self._need(user, permissions.PERM_VIEW, permissions.DOING[permissions.PERM_VIEW])
        qs = AuditEvent.objects.all()
        if (wanted := _ids(ids)) is not None:
            # An imported update's creation is its import's one event (update_id empty).
            jobs = set(ProfileUpdate.objects.filter(pk__in=wanted, import_job__isnull=False)
                       .values_list("import_job_id", flat=True))
            qs = qs.filter(Q(update_id__in=wanted)
                           | Q(update__isnull=True, changes__import_job__in=jobs))
        if connection is not None:
            qs = qs.filter(connection=self._connection(connection))
        if actor is not None:
            qs = qs.filter(actor__username=actor)
        if action is not None:
            qs = qs.filter(action=action)
        fields = {"id": "id", "at": "at", "actor": "actor__username", "action": "action",
                  "update_id": "update_id", "mapping_id": "mapping_id",
                  "connection": "connection__label", "from_status": "from_status",
                  "to_status": "to_status", "comment": "comment", "changes": "changes"}
        rows = list(qs.order_by("-id").values_list(*fields.values())[:limit])
        frame = pd.DataFrame(rows, columns=list(fields))
        _ints(frame, "id", "update_id", "mapping_id")
        _utc(frame, "at")
        # No person: the sender, the verification job, the schedules. Said, not NaN.
        frame["actor"] = frame["actor"].fillna(SYSTEM_ACTOR).astype(object)
        for column in ("action", "connection"):
            frame[column] = frame[column].astype("category")
        return Frame(frame)

    # -- quota --

    def quota(self, *, connection: Any = None) -> pd.DataFrame:
        """Per active connection: requests in the rolling 24 hours, the limit, what remains,
        percent used and when the oldest counted request leaves the window (quota.py).

        Example::

            nb.quota()
        """
        return _orm.run(self._quota, connection=connection)

    def _quota(self, *, connection) -> pd.DataFrame:
        from django.utils import timezone

        from updates import quota
        from updates.models import TargetConnection

        user = self._user()
        self._need(user, permissions.PERM_VIEW, "view the quota")
        now = timezone.now()
        connections = ([self._connection(connection)] if connection is not None
                       else list(TargetConnection.objects.filter(active=True)))
        rows = []
        for conn in connections:
            used = quota.window_usage(connection=conn, now=now)
            rows.append({"connection": conn.label, "client_code": conn.client_code,
                         "window_requests": used, "limit": conn.quota_limit,
                         "remaining": max(0, conn.quota_limit - used),
                         "percent_used": 100.0 * used / conn.quota_limit if conn.quota_limit else 0.0,
                         "oldest_leaves_at": quota.oldest_counted_at(connection=conn, now=now),
                         "as_of": now})
        frame = pd.DataFrame(rows, columns=["connection", "client_code", "window_requests",
                                            "limit", "remaining", "percent_used",
                                            "oldest_leaves_at", "as_of"])
        _ints(frame, "window_requests", "limit", "remaining")
        _utc(frame, "oldest_leaves_at", "as_of")
        return Frame(frame)

    def daily_usage(self, *, connection: Any = None, days: int = 30) -> pd.DataFrame:
        """Requests, acknowledged and failed per connection and UTC day for the last `days` days
        (zeros filled), as the dashboard's chart (selectors.daily_usage).

        Example::

            nb.daily_usage(connection="demo", days=7)
        """
        return _orm.run(self._daily_usage, connection=connection, days=days)

    def _daily_usage(self, *, connection, days) -> pd.DataFrame:
        from django.utils import timezone

        from updates import selectors
        from updates.models import TargetConnection

        user = self._user()
        self._need(user, permissions.PERM_VIEW, "view the quota")
        connections = ([self._connection(connection)] if connection is not None
                       else list(TargetConnection.objects.filter(active=True)))
        labels = {c.pk: c.label for c in connections}
        found = selectors.daily_usage(connection_ids=list(labels), today=timezone.now().date(),
                                      days=days)
        rows = [{"connection": labels[cid], "day": d.day, "requests": d.requests,
                 "acknowledged": d.acknowledged, "failed": d.failed}
                for cid, day_rows in found.items() for d in day_rows]
        frame = pd.DataFrame(rows, columns=["connection", "day", "requests", "acknowledged",
                                            "failed"])
        frame["day"] = pd.to_datetime(frame["day"]).dt.date
        _ints(frame, "requests", "acknowledged", "failed")
        frame["connection"] = frame["connection"].astype("category")
        return Frame(frame)

    def _window_minutes(self, conn) -> tuple[pd.DataFrame, dt.datetime]:
        from django.utils import timezone

        from updates import quota
        from updates.models import QuotaMinute

        now = timezone.now()
        rows = list(QuotaMinute.objects.filter(
            connection=conn, minute__gt=now - quota.WINDOW - quota.MINUTE
        ).order_by("minute").values_list("minute", "requests"))
        frame = pd.DataFrame(rows, columns=["minute", "requests"])
        _utc(frame, "minute")
        return frame, now

    def plot_usage(self, *, connection: Any = None, days: int = 14) -> Figure:
        """Two panels, as the dashboard: requests per UTC day (acknowledged, failed) and the
        rolling-24 h window filling up minute by minute, with the connection's limit as a line.
        Returns a matplotlib Figure (no pyplot state: works under Agg and in Jupyter).

        Example::

            nb.plot_usage(connection="demo")
        """
        try:
            from matplotlib.figure import Figure
        except ImportError as error:
            raise ImportError(f"plot_usage needs matplotlib; install the notebook extra: "
                              f"{INSTALL_HINT}") from error

        def gather():
            user = self._user()
            self._need(user, permissions.PERM_VIEW, "view the quota")
            conn = self._connection(connection)
            return conn.label, conn.quota_limit, *self._window_minutes(conn)

        label, limit, minutes, now = _orm.run(gather)
        daily = self.daily_usage(connection=label, days=days)
        figure = Figure(figsize=(11, 4), layout="constrained")
        by_day, window = figure.subplots(1, 2)
        positions = np.arange(len(daily))
        ok = daily["acknowledged"].astype(int).to_numpy()
        failed = daily["failed"].astype(int).to_numpy()
        other = np.maximum(daily["requests"].astype(int).to_numpy() - ok - failed, 0)
        by_day.bar(positions, ok, label="acknowledged", color="#2e7d32")
        by_day.bar(positions, failed, bottom=ok, label="failed", color="#c62828")
        by_day.bar(positions, other, bottom=ok + failed, label="retried / other", color="#9e9e9e")
        by_day.set_xticks(positions, [d.strftime("%m-%d") for d in daily["day"]], rotation=60,
                          fontsize=8)
        by_day.set_title(f"Requests per UTC day — {label}")
        by_day.set_ylabel("requests")
        by_day.legend(loc="upper left", fontsize=8)
        start = pd.Timestamp(now) - pd.Timedelta(hours=24)
        times = [start] + list(minutes["minute"]) + [pd.Timestamp(now)]
        counts = np.concatenate([[0], minutes["requests"].astype(int).cumsum().to_numpy()])
        counts = np.append(counts, counts[-1])
        window.step(times, counts, where="post", label="requests counted in the window")
        window.axhline(limit, color="#c62828", linestyle="--", label=f"limit {limit:,}")
        window.set_xlim(start, pd.Timestamp(now))
        used = int(counts[-1])
        window.set_title(f"Rolling 24 h: {used:,} of {limit:,} used ({100 * used / limit:.1f} %)")
        if limit > 20 * max(used, 1):
            # A linear axis would flatten the day's use to the floor under a far-away limit.
            window.set_yscale("symlog", linthresh=10)
            window.set_ylim(0, limit * 2)
            window.set_ylabel("requests (cumulative, log scale)")
        else:
            window.set_ylim(0, max(limit, used) * 1.05)
            window.set_ylabel("requests (cumulative)")
        window.tick_params(axis="x", labelrotation=30, labelsize=8)
        window.legend(loc="center left", fontsize=8)
        return figure
