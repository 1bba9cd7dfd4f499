"""What the notebook API shows an analyst in a cell (issue 24, item 8): summaries first and the
rows on request, whole messages, people's words for the system and for "not checked yet",
timestamps to the second on screen (exact in the data), and no log lines in the cells.

Transactional tests: the module's ORM thread must see committed rows.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from profileops import notebook
from tests.notebook.test_loop_with_target import live, people, quick, staged  # noqa: F401
from updates.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]
MICROSECONDS = re.compile(r"\d\d:\d\d:\d\d\.\d")


def test_errors_table_shows_the_whole_message_with_the_permitted_choices(people, live):
    result = notebook.as_user("operator").stage(
        [{"identity_type": "mbox3rdPartyId", "identity": "x", "loan_status": "maybe"}],
        connection="live")
    [message] = result.errors_table["message"]
    assert len(message) > 50 and "funded" in message.split("maybe", 1)[1]  # the tail matters
    # Whole, wherever it is looked at: the table's repr and HTML, and the result's HTML.
    for shown in (repr(result.errors_table), result.errors_table._repr_html_(),
                  result._repr_html_()):
        assert "..." not in shown and "funded" in shown
    assert message in repr(result.errors_table)


def test_verification_counts_name_every_category(people, live):
    ids = staged(people, [{"identity": "a", "loan_status": "funded"}], approve=False)
    state = notebook.as_user("supervisor").verification(ids=ids)
    assert list(state["verification_state"]) == [notebook.NOT_STARTED]
    counts = state["verification_state"].value_counts()
    assert "" not in counts.index and all(str(name).strip() for name in counts.index)
    assert counts[notebook.NOT_STARTED] == 1


def test_the_audit_says_system_where_no_person_acted(people, live):
    ids = staged(people, [{"identity": "a", "loan_status": "funded"}])
    supervisor = notebook.as_user("supervisor")
    assert supervisor.send(connection="live").counts["acknowledged"] == 1
    audit = supervisor.audit(ids=ids)
    assert audit["actor"].notna().all()
    assert "system" in set(audit["actor"])  # the acknowledgment: the sender, not a person
    assert {"operator", "supervisor"} <= set(audit["actor"])
    # Filtering by a person's name still works.
    assert set(supervisor.audit(ids=ids, actor="supervisor")["actor"]) == {"supervisor"}


def test_timestamps_display_to_the_second_and_stay_exact_in_the_data(people, live):
    ids = staged(people, [{"identity": f"t{i}", "loan_status": "funded"} for i in range(3)])
    supervisor = notebook.as_user("supervisor")
    audit = supervisor.audit(ids=ids)
    stored = dict(AuditEvent.objects.filter(pk__in=[int(i) for i in audit["id"]])
                  .values_list("pk", "at"))
    assert any(at.microsecond for at in stored.values())  # else this test proves nothing
    # Exact in the data, whatever the display.
    assert {int(i): at.to_pydatetime() for i, at in zip(audit["id"], audit["at"])} == stored
    for frame in (audit, audit[["at", "actor"]].head(2), supervisor.updates(ids=ids)):
        assert isinstance(frame, pd.DataFrame)
        assert not MICROSECONDS.search(repr(frame)), repr(frame)
        assert not MICROSECONDS.search(frame._repr_html_())
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00:00", repr(frame))
    assert not MICROSECONDS.search(repr(pd.DataFrame(audit).pipe(notebook.Frame)))


def test_approve_shows_counts_first_and_the_rows_on_request(people, live):
    ids = staged(people, [{"identity": f"n{i}", "loan_status": "funded"} for i in range(25)],
                 approve=False)
    refused = notebook.as_user("operator").approve(ids=ids)  # operators may not approve
    shown = refused._repr_html_()
    assert "0 done, 25 refused" in shown
    assert "the first 10 of 25" in shown and shown.count("<tr") == 11  # header + 10 problems
    assert len(refused.rows) == 25 and refused.rows is refused.table
    assert refused.summary() == "0 done, 25 refused"

    approved = notebook.as_user("supervisor").approve(ids=ids)
    shown = approved._repr_html_()
    assert "25 done, 0 refused" in shown and "<tr" not in shown  # no 25 "done" rows
    assert "All 25 rows" in shown and approved.rows["outcome"].eq("done").all()
    assert list(approved.ids) == sorted(ids)


def test_setting_up_a_notebook_prints_no_info_lines(tmp_path):
    code = ("from profileops import notebook; notebook.setup()\n"
            "import logging; log = logging.getLogger('updates.sending')\n"
            "log.info('INFO-LINE'); log.warning('WARNING-LINE')\n"
            "logging.getLogger('axes.watch_login').info('AXES-INFO')\n")
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
           "LOG_LEVEL": "INFO"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "notebooks", env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "WARNING-LINE" in output  # warnings still reach the cell
    assert "INFO-LINE" not in output and "AXES-INFO" not in output

    again = code.replace("notebook.setup()", "notebook.setup(log_level='INFO')")
    done = subprocess.run([sys.executable, "-c", again], cwd=ROOT / "notebooks", env=env,
                          capture_output=True, text=True, timeout=60)
    assert "INFO-LINE" in done.stderr, done.stderr
