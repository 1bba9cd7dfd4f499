"""After a visitor is forgotten, the database holds neither its identity nor any of its values —
not in a dump, not in any column of any table (ours, Django's, django-q2's). Runs on SQLite and,
with DATABASE_URL, on PostgreSQL.

The guarantee in docs/reference/security.md ("Forgetting a visitor leaves no trace of it").
"""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection as db

from tests.conftest import (FORGOTTEN_IDENTITY, FORGOTTEN_VALUES, KEPT_IDENTITY, KEPT_VALUE,
                            make_user)
from updates import forgetting

NEEDLES = (FORGOTTEN_IDENTITY, *FORGOTTEN_VALUES)


def _text(value) -> str:
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else str(value)


def raw_scan() -> str:
    """Every value of every column of every table, as text (binary columns decoded)."""
    found = []
    with db.cursor() as cursor:
        for table in db.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {db.ops.quote_name(table)}")
            found.extend(_text(value) for row in cursor.fetchall() for value in row)
    return "\n".join(found)


def dump() -> str:
    out = StringIO()
    call_command("dumpdata", stdout=out)
    return out.getvalue()


def test_the_history_really_holds_the_visitor_before_it_is_forgotten(visitor_history):
    # Without this, the test below could pass on a database that never held anything.
    scanned, dumped = raw_scan(), dump()
    for needle in NEEDLES[:3]:  # the import's value lives in its kept file only
        assert needle in scanned and needle in dumped, needle
    assert NEEDLES[3] in scanned


def test_after_forgetting_neither_the_identity_nor_a_value_is_anywhere(acme, visitor_history):
    dpo = make_user("dpo", "Data protection officers")
    forgetting.visitor_forget(connection=acme, identity_type="mbox3rdPartyId",
                              identity=FORGOTTEN_IDENTITY, regulation="gdpr", by=dpo)

    scanned, dumped = raw_scan(), dump()
    for needle in NEEDLES:
        assert needle not in scanned, needle
        assert needle not in dumped, needle
    assert KEPT_IDENTITY in scanned and KEPT_VALUE in dumped  # the others are all there
