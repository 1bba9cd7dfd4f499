"""Export of profile updates: the columns, formula escaping, no secrets, and who may export."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from openpyxl import load_workbook

from tests.conftest import make_connection, make_mapping, make_user
from updates import exporting, workflow
from updates.admin.imports import export_selected_csv
from updates.errors import Refused
from updates.models import ProfileUpdate, SendAttempt
from updates.resources import EXPORT_COLUMNS


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


DANGEROUS = ["=HYPERLINK(\"http://evil\")", "+cmd", "-2+3", "@SUM(A1)", "\tindent", "\rreturn"]


def export_csv(by, **kwargs) -> list[dict[str, str]]:
    out = io.BytesIO()
    exporting.updates_export(by=by, file_format="csv", out=out, **kwargs)
    raw = out.getvalue()
    assert raw.startswith(b"\xef\xbb\xbf")  # a BOM, so spreadsheets read UTF-8
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))


def export_xlsx(by, **kwargs) -> list[dict]:
    out = io.BytesIO()
    exporting.updates_export(by=by, file_format="xlsx", out=out, **kwargs)
    sheet = load_workbook(io.BytesIO(out.getvalue())).active
    rows = list(sheet.iter_rows())
    header = [c.value for c in rows[0]]
    for row in rows[1:]:
        assert all(c.data_type != "f" for c in row)  # no cell is stored as a formula
    return [dict(zip(header, [c.value for c in row])) for row in rows[1:]]


@pytest.mark.parametrize("value", DANGEROUS)
def test_every_cell_a_spreadsheet_would_run_is_escaped_with_a_quote(value):
    assert exporting.escape_formula(value) == "'" + value


@pytest.mark.parametrize("value", ["plain", "12", "a=b", " =x", "", "'quoted", 5, -5, None])
def test_other_values_are_written_as_they_are(value):
    assert exporting.escape_formula(value) == value


# Identities may hold '=', '-' and '@' ('+', '/', tabs and line breaks are refused at staging).
IDENTITIES = ["=HYPERLINK(1)", "c-2", "-42", "@me", "c-5", "c-6"]


@pytest.fixture
def dangerous_updates(connection, stage):
    connection.mappings.filter(source_name="note").update(trim=False)  # keep leading tab / CR
    return [stage(identity=identity, reason=value,
                  attributes={"loanStatus": "funded", "callNote": value})
            for identity, value in zip(IDENTITIES, DANGEROUS)]


@pytest.mark.parametrize("export", [export_csv, export_xlsx], ids=["csv", "xlsx"])
def test_exports_escape_formulas_in_identities_reasons_and_values(export, dangerous_updates,
                                                                  supervisor):
    rows = export(supervisor)
    assert len(rows) == len(DANGEROUS)
    expected = ["'" + v for v in DANGEROUS]
    if export is export_xlsx:
        expected = [e.replace("\r", "\n") for e in expected]  # XML reads back a CR as LF
    assert [r["reason"] for r in rows] == expected
    assert [r["identity"] for r in rows] == ["'=HYPERLINK(1)", "c-2", "'-42", "'@me", "c-5", "c-6"]
    # Attributes are one JSON object per cell: it starts with '{', and keeps the exact values.
    assert json.loads(rows[3]["attributes"]) == {"callNote": "@SUM(A1)", "loanStatus": "funded"}


def test_an_export_carries_status_timestamps_attempts_and_acknowledgment(connection, stage,
                                                                         supervisor):
    update = stage(identity="c-1", attributes={"loanStatus": "funded", "loyaltyTier": "gold"})
    acked = dt.datetime(2024, 5, 1, 10, 30, 5, tzinfo=dt.timezone.utc)
    ProfileUpdate.objects.filter(pk=update.pk).update(status="sent", attempts_total=2,
                                                      attempt_count=2, acknowledged_at=acked)
    for number, (outcome, status) in enumerate([("transient", 503), ("acknowledged", 200)], 1):
        SendAttempt.objects.create(update=update, connection=connection, number=number,
                                   started_at=acked - dt.timedelta(minutes=3 - number),
                                   method="GET", request_bytes=100, http_status=status,
                                   outcome=outcome)
    stage(identity="c-2")

    rows = export_csv(supervisor)
    assert list(rows[0]) == list(EXPORT_COLUMNS)
    first, second = rows
    assert first["id"] == str(update.pk) and first["connection"] == "acme"
    assert first["status"] == "sent" and first["attempts"] == "2"
    assert first["acknowledged"] == "yes" and first["acknowledged_at"] == "2024-05-01T10:30:05Z"
    assert (first["last_attempt_outcome"], first["last_http_status"]) == ("acknowledged", "200")
    assert first["last_attempt_at"] == "2024-05-01T10:29:05Z"
    assert first["created_by"] == "operator" and first["created_at"].endswith("Z")
    assert first["attributes"] == '{"loanStatus": "funded", "loyaltyTier": "gold"}'
    assert (second["status"], second["acknowledged"], second["attempts"]) == ("draft", "no", "0")
    assert second["last_attempt_outcome"] == "" and second["submitted_at"] == ""

    xlsx_first = export_xlsx(supervisor)[0]
    assert xlsx_first["attempts"] == 2 and xlsx_first["last_http_status"] == 200  # numbers


def test_an_export_never_contains_the_connection_token(stage, connection, supervisor):
    connection.bearer_token = "tok-SECRET-4711"
    connection.save()
    stage()
    for file_format in exporting.FORMATS:
        out = io.BytesIO()
        exporting.updates_export(by=supervisor, file_format=file_format, out=out)
        if file_format == "csv":
            assert b"tok-SECRET-4711" not in out.getvalue()
        else:
            workbook = load_workbook(io.BytesIO(out.getvalue()))
            cells = [c.value for row in workbook.active.iter_rows() for c in row]
            assert all("SECRET" not in str(v) for v in cells)


def test_an_export_can_be_limited_to_one_connection_and_one_status(stage, operator, supervisor):
    other = make_connection("other")
    make_mapping(other, "loan_status", "loanStatus", value_type="choice", choices="funded")
    stage(identity="acme-draft")
    stage(identity="other-draft", connection=other)
    workflow.update_submit(update=stage(identity="acme-pending"), by=operator)

    assert [r["identity"] for r in export_csv(supervisor, connection=other)] == ["other-draft"]
    assert [r["identity"] for r in export_csv(supervisor, status="pending")] == ["acme-pending"]
    with pytest.raises(ValidationError, match="Unknown status 'lost'"):
        export_csv(supervisor, status="lost")


# --- permissions -----------------------------------------------------------------------------

@pytest.mark.parametrize("who", ["user without the export right", "anonymous", "inactive"])
def test_only_holders_of_the_export_right_may_export(db, who):
    by = {"user without the export right": lambda: make_user("plain"),
          "anonymous": AnonymousUser,
          "inactive": lambda: _inactive_supervisor()}[who]()
    with pytest.raises(Refused) as refused:
        exporting.updates_export(by=by, file_format="csv", out=io.BytesIO())
    assert refused.value.code == "permission_denied"


def _inactive_supervisor():
    user = make_user("retired", "Supervisors")
    user.is_active = False
    user.save()
    return user


def test_operators_supervisors_and_the_command_line_may_export(stage, operator, supervisor):
    stage()
    for by in (operator, supervisor, exporting.COMMAND_LINE):
        assert len(export_csv(by)) == 1


# --- the admin -------------------------------------------------------------------------------

def test_the_admin_export_page_downloads_csv_and_xlsx_for_those_allowed(client, stage, supervisor):
    stage(identity="=cmd")
    client.force_login(supervisor)
    page = client.get("/admin/updates/importjob/export/")
    assert page.status_code == 200 and b"Download" in page.content

    response = client.get("/admin/updates/importjob/export/", {"format": "csv", "status": "draft"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert 'attachment; filename="profile-updates-' in response["Content-Disposition"]
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    assert "'=cmd" in body

    response = client.get("/admin/updates/importjob/export/", {"format": "xlsx"})
    assert response.status_code == 200
    rows = list(load_workbook(io.BytesIO(b"".join(response.streaming_content))).active.values)
    assert rows[1][3] == "'=cmd"


def test_the_admin_export_page_is_refused_without_the_export_right(client, db):
    client.force_login(make_user("staffonly"))
    assert client.get("/admin/updates/importjob/export/", {"format": "csv"}).status_code == 403


def test_the_export_action_writes_the_selected_updates(rf, stage, supervisor, operator):
    keep, _skip = stage(identity="picked"), stage(identity="not-picked")
    request = rf.post("/")
    request.user = supervisor
    response = export_selected_csv(None, request, ProfileUpdate.objects.filter(pk=keep.pk))
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    assert "picked" in body and "not-picked" not in body
