"""What the notebook gives back: DataFrames that display for people and small result objects.

Listings are ``Frame``s (timestamps displayed to the second, text in full); actions return a
result object with a ``.table`` DataFrame (also ``.rows``) and an escaped ``_repr_html_`` — the
counts per outcome and the first few problem rows, not every row; ``repr()`` shows counts only,
never a profile value, an identity or a token.
"""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

SHOWN_PROBLEMS = 10  # result objects display at most this many problem rows; the rest on request


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


def as_frame(table: pd.DataFrame) -> Frame:
    return table if isinstance(table, Frame) else Frame(table)


class Result:
    """A table with a one-line summary. `repr()` gives counts only; Jupyter shows the table,
    escaped (DataFrame.to_html escapes cell text)."""

    title = "Result"

    def __init__(self, table: pd.DataFrame, **counts: int) -> None:
        self.table = as_frame(table)
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
                         + as_frame(problems.head(SHOWN_PROBLEMS)).to_html(
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
        self.errors_table = as_frame(errors_table)
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
        self.quota_table = as_frame(quota_table)

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
        self.notes = as_frame(notes)

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

def utc_columns(frame: pd.DataFrame, *columns: str) -> None:
    for column in columns:
        frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[us, UTC]")


def int_columns(frame: pd.DataFrame, *columns: str) -> None:
    for column in columns:
        frame[column] = frame[column].astype("Int64")

