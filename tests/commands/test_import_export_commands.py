"""`manage.py import_updates` and `manage.py export_updates`: the admin's services from a shell."""

from __future__ import annotations

import csv
import io
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from openpyxl import load_workbook

from tests.conftest import make_user
from updates import workflow
from updates.models import ImportJob, ProfileUpdate

HEADER = "identity_type,identity,loan_status,tier,note"


def write_csv(path, *rows: str):
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return str(path)


def run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# --- import_updates --------------------------------------------------------------------------

def test_import_updates_imports_a_file_as_the_users_drafts_with_progress_and_summary(
        tmp_path, connection, operator):
    path = write_csv(tmp_path / "u.csv", *[f"mbox3rdPartyId,c-{i},funded,gold," for i in range(2500)])
    out, err = run("import_updates", path, "--connection", "acme", "--user", "operator")
    assert "Checked 2,500 rows: all valid." in out
    assert "  checked 1,000 of 2,500 rows" in out and "  checked 2,500 of 2,500 rows" in out
    assert "Imported 2,500 updates as drafts for Connection acme (import #" in out
    assert err == ""
    assert ProfileUpdate.objects.filter(status="draft", created_by=operator).count() == 2500
    assert ImportJob.objects.get().status == "done"


def test_import_updates_says_one_row_and_one_update_in_the_singular(tmp_path, connection,
                                                                    operator):
    path = write_csv(tmp_path / "one.csv", "mbox3rdPartyId,c-1,funded,gold,")
    out, _ = run("import_updates", path, "--connection", "acme", "--user", "operator")
    assert "Checked 1 row: all valid." in out
    assert "Imported 1 update as drafts" in out


def test_import_updates_submit_sends_them_for_approval(tmp_path, connection, operator):
    path = write_csv(tmp_path / "u.csv", "mbox3rdPartyId,c-1,funded,,")
    out, _ = run("import_updates", path, "--connection", "acme", "--user", "operator", "--submit")
    assert "as pending approval" in out
    assert ProfileUpdate.objects.get().status == "pending"


def test_a_bad_file_exits_non_zero_printing_every_row_error_and_saves_nothing(
        tmp_path, connection, operator):
    path = write_csv(tmp_path / "bad.csv", "mbox3rdPartyId,c-1,funded,,",
                     "mbox3rdPartyId,c/2,paid,,", "mbox3rdPartyId,c-1,applied,,")
    err = StringIO()
    with pytest.raises(CommandError, match=r"Nothing was imported: 3 problems in bad.csv"):
        call_command("import_updates", path, "--connection", "acme", "--user", "operator",
                     stdout=StringIO(), stderr=err)
    assert err.getvalue().splitlines() == [
        "row 3, column identity: An mbox3rdPartyId may not contain '/'.",
        "row 3, column loan_status: 'paid' is not one of the permitted choices: applied, "
        "funded, declined.",
        "row 4, column identity: Same visitor as row 2 (rows 2 and 4): a file may hold one "
        "update per visitor; merge the two rows into one.",
    ]
    assert not ProfileUpdate.objects.exists()


@pytest.mark.parametrize("args, message", [
    (["--connection", "nope", "--user", "operator"], "No connection with client code 'nope'."),
    (["--connection", "acme", "--user", "ghost"], "No user 'ghost'."),
    (["--connection", "acme", "--user", "supervisor"],
     "You do not have permission to import profile updates."),
])
def test_import_updates_refuses_unknown_names_and_users_without_the_right(
        tmp_path, connection, operator, supervisor, args, message):
    path = write_csv(tmp_path / "u.csv", "mbox3rdPartyId,c-1,funded,,")
    with pytest.raises(CommandError, match=message):
        run("import_updates", path, *args)
    assert not ProfileUpdate.objects.exists()


def test_import_updates_reports_an_unreadable_path(tmp_path, connection, operator):
    with pytest.raises(CommandError, match="Cannot read"):
        run("import_updates", str(tmp_path / "missing.csv"), "--connection", "acme",
            "--user", "operator")


# --- export_updates --------------------------------------------------------------------------

def test_export_updates_writes_csv_and_xlsx_with_filters(tmp_path, stage, operator):
    stage(identity="=draft")
    workflow.update_submit(update=stage(identity="pending-1"), by=operator)

    out, _ = run("export_updates", "--format", "csv", "--output", str(tmp_path / "all.csv"))
    assert "Exported 2 updates to" in out
    rows = list(csv.DictReader(io.StringIO((tmp_path / "all.csv").read_text("utf-8-sig"))))
    assert [r["identity"] for r in rows] == ["'=draft", "pending-1"]

    run("export_updates", "--format", "xlsx", "--output", str(tmp_path / "p.xlsx"),
        "--connection", "acme", "--status", "pending")
    values = list(load_workbook(tmp_path / "p.xlsx").active.values)
    assert [v[3] for v in values] == ["identity", "pending-1"]
    assert not list(tmp_path.glob("*.partial"))


def test_export_updates_as_a_user_needs_the_export_right(tmp_path, stage, supervisor):
    stage()
    make_user("nobody")
    run("export_updates", "--format", "csv", "--output", str(tmp_path / "ok.csv"),
        "--user", "supervisor")
    with pytest.raises(CommandError, match="You do not have permission to export"):
        run("export_updates", "--format", "csv", "--output", str(tmp_path / "no.csv"),
            "--user", "nobody")
    assert not (tmp_path / "no.csv").exists() and not list(tmp_path.glob("*.partial"))


def test_export_updates_refuses_an_unknown_connection(tmp_path, db):
    with pytest.raises(CommandError, match="No connection with client code 'nope'."):
        run("export_updates", "--format", "csv", "--output", str(tmp_path / "x.csv"),
            "--connection", "nope")


def test_export_updates_writes_to_standard_output_with_the_summary_on_standard_error(stage):
    stage(identity="c-1")
    raw, err = io.BytesIO(), StringIO()
    stdout = io.TextIOWrapper(raw, encoding="utf-8")
    call_command("export_updates", "--format", "csv", "--output", "-", "--layout", "import",
                 "--connection", "acme", stdout=stdout, stderr=err)
    stdout.flush()
    assert raw.getvalue().decode("utf-8-sig").splitlines() == [
        "identity_type,identity,loan_status,note,tier", "mbox3rdPartyId,c-1,funded,,"]
    assert "Exported 1 update to standard output." in err.getvalue()  # not "1 updates"


def test_export_updates_filters_by_creator_and_dates_and_as_user_is_not_a_filter(
        tmp_path, stage, operator, other_operator, supervisor):
    stage(identity="mine")
    stage(identity="theirs", by=other_operator)
    path = tmp_path / "x.csv"
    run("export_updates", "--format", "csv", "--output", str(path), "--created-by",
        "operator2", "--created-from", "2000-01-01")
    assert [r["identity"] for r in csv.DictReader(io.StringIO(path.read_text("utf-8-sig")))] == [
        "theirs"]
    run("export_updates", "--format", "csv", "--output", str(path), "--as-user", "supervisor")
    assert len(list(csv.DictReader(io.StringIO(path.read_text("utf-8-sig"))))) == 2
    with pytest.raises(CommandError, match="'2024-13-01' is not a date"):
        run("export_updates", "--format", "csv", "--output", str(path), "--created-to",
            "2024-13-01")
