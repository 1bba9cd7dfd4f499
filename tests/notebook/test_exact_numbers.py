"""Numbers and times from a DataFrame are staged exactly or refused (updates/notebook/cells.py,
`_exact`): a cell whose type cannot carry its value exactly is refused for its row and column,
with the reason and the fix, and — as for any bad row — nothing is saved."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from profileops import notebook
from tests.conftest import make_connection, make_mapping, make_user
from updates.models import AuditEvent, ProfileUpdate

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def typed(db):
    make_user("operator", "Operators")
    connection = make_connection("typed")
    make_mapping(connection, "text", "aText")
    make_mapping(connection, "count", "aCount", value_type="integer")
    make_mapping(connection, "amount", "anAmount", value_type="decimal")
    make_mapping(connection, "moment", "aMoment", value_type="datetime")
    return connection


def frame(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    return pd.DataFrame({"identity_type": "mbox3rdPartyId",
                         "identity": [f"v-{i}" for i in range(n)], **columns})


def refusals(result) -> list[tuple]:
    return [(e["row"], e["column"], e["message"]) for e in result.errors_table.to_dict("records")]


CASES = {
    # column values (row 0 is refused, row 1 is fine), column, what the refusal says
    "integer beyond 2**53 in a float64 column": (
        "count", [9007199254740993, None], "Int64"),
    "float32 under a decimal mapping": (
        "amount", np.array([0.1, 0.5], dtype="float32"), "float32 cannot carry"),
    "pandas Float32 under a decimal mapping": (
        "amount", pd.array([0.1, 0.5], dtype="Float32"), "float32 cannot carry"),
    "infinity under a text mapping": (
        "text", [float("inf"), 1.5], "not a finite number"),
    "minus infinity under a decimal mapping": (
        "amount", [float("-inf"), 2.5], "not a finite number"),
    "a Timedelta under a text mapping": (
        "text", pd.to_timedelta(["1h", None]), "duration"),
    "a nanosecond timestamp under a datetime mapping": (
        "moment", [pd.Timestamp("2026-01-01T10:00:00.000000001"), pd.Timestamp("2026-01-01")],
        "nanoseconds"),
}


@pytest.mark.parametrize("column,values,says", CASES.values(), ids=CASES.keys())
def test_a_cell_whose_type_cannot_carry_its_value_is_refused_by_row_and_column(
        typed, column, values, says):
    other = {"text": ["a", "b"]} if column != "text" else {"count": [1, 2]}
    data = frame(**{column: values}, **other)  # every row sets something besides `column`
    data.index = ["first", "second"]
    result = notebook.as_user("operator").stage(data, connection="typed")

    [(row, refused_column, message)] = refusals(result)
    assert (row, refused_column) == ("first", column) and says in message
    assert result.table["status"].astype(str).tolist() == ["invalid", "not saved"]
    assert not ProfileUpdate.objects.exists() and not AuditEvent.objects.exists()


def test_keep_good_saves_the_exact_rows_only(typed):
    data = frame(count=[9007199254740993, 7, None])  # float64, because of the missing value
    result = notebook.as_user("operator").stage(data, connection="typed", keep_good=True)
    assert result.table["status"].astype(str).tolist() == ["invalid", "draft", "invalid"]
    assert {u.attributes["aCount"] for u in ProfileUpdate.objects.all()} == {"7"}


def test_the_suggested_dtypes_stage_the_exact_values(typed):
    data = frame(count=pd.array([9007199254740993, -5], dtype="Int64"),
                 amount=pd.array(["0.1", "12.50"], dtype="string"),
                 text=[Decimal("1E+2"), "plain"],
                 moment=[pd.Timestamp("2026-01-01T10:00:00.5Z"), None])
    result = notebook.as_user("operator").stage(data, connection="typed")
    assert result.ok, refusals(result)
    stored = {u.identity: u.attributes for u in ProfileUpdate.objects.all()}
    assert stored["v-0"]["aCount"] == "9007199254740993"
    assert stored["v-0"]["anAmount"] == "0.1" and stored["v-1"]["anAmount"] == "12.5"


def test_values_from_a_list_of_dicts_are_held_to_the_same_rule(typed):
    rows = [{"identity_type": "mbox3rdPartyId", "identity": "d-0", "amount": np.float32(0.1)},
            {"identity_type": "mbox3rdPartyId", "identity": "d-1", "text": dt.timedelta(hours=1)},
            {"identity_type": "mbox3rdPartyId", "identity": "d-2", "count": 2.0 ** 53},
            {"identity_type": "mbox3rdPartyId", "identity": "d-3", "count": 12.0,
             "amount": np.float32(0.5)}]  # exact: accepted
    result = notebook.as_user("operator").stage(rows, connection="typed")
    assert [(r, c) for r, c, _ in refusals(result)] == [(0, "amount"), (1, "text"), (2, "count")]
    assert result.table["status"].astype(str).tolist() == ["invalid"] * 3 + ["not saved"]
