"""`manage.py send_bulk`: the "Send and poll bulk files" schedule's job, run by hand."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command


def test_with_nothing_due_it_says_so(db, connection):
    out = StringIO()
    call_command("send_bulk", stdout=out)
    assert out.getvalue().startswith("Bulk: 0 job(s) built with 0 row(s) in 0 file(s);")


def test_an_unknown_connection_is_refused(db):
    with pytest.raises(CommandError, match="No connection with client code 'nope'"):
        call_command("send_bulk", "--connection", "nope")
