"""Export of profile updates: the columns, formula escaping, no secrets, and who may export."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from openpyxl import load_workbook

from tests.conftest import make_connection, make_mapping, make_user
from updates import exporting, workflow
from updates.admin.exports import export_selected_csv
from updates.errors import Refused
from updates.models import ProfileUpdate, SendAttempt
from updates.exporting import EXPORT_COLUMNS


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
    # One column per mapping source name, escaped like every other text cell.
    assert (rows[3]["note"], rows[3]["loan_status"]) == ("'@SUM(A1)", "funded")


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
    report_columns = [c for c in EXPORT_COLUMNS if c != "attributes"]
    assert list(rows[0]) == [*report_columns, "loan_status", "note", "tier",
                             "unmapped_attributes"]
    first, second = rows
    assert first["id"] == str(update.pk) and first["connection"] == "acme"
    assert first["status"] == "sent" and first["attempts"] == "2"
    assert first["acknowledged"] == "yes" and first["acknowledged_at"] == "2024-05-01T10:30:05Z"
    assert (first["last_attempt_outcome"], first["last_http_status"]) == ("acknowledged", "200")
    assert first["last_attempt_at"] == "2024-05-01T10:29:05Z"
    assert first["created_by"] == "operator" and first["created_at"].endswith("Z")
    assert (first["loan_status"], first["tier"], first["note"]) == ("funded", "gold", "")
    assert first["unmapped_attributes"] == ""
    assert (second["status"], second["acknowledged"], second["attempts"]) == ("draft", "no", "0")
    assert second["last_attempt_outcome"] == "" and second["submitted_at"] == ""

    xlsx_first = export_xlsx(supervisor)[0]
    assert xlsx_first["attempts"] == 2 and xlsx_first["last_http_status"] == 200  # numbers
    # Timestamps are date cells (UTC, as a spreadsheet has no zone), not text.
    assert xlsx_first["acknowledged_at"] == dt.datetime(2024, 5, 1, 10, 30, 5)
    assert xlsx_first["submitted_at"] is None


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


# --- a file that goes back into the import ---------------------------------------------------

def export_bytes(by, file_format, **kwargs) -> bytes:
    out = io.BytesIO()
    exporting.updates_export(by=by, file_format=file_format, out=out, **kwargs)
    return out.getvalue()


def test_an_import_layout_export_edited_and_imported_again_makes_a_new_update(
        connection, stage, operator, supervisor):
    from updates import importing

    old = stage(identity="c-77", attributes={"loanStatus": "funded", "loyaltyTier": "gold"})
    raw = export_bytes(supervisor, "csv", connection=connection, layout="import")
    text = raw.decode("utf-8-sig")
    assert text.splitlines()[0] == "identity_type,identity,loan_status,note,tier"
    assert text.splitlines()[1] == "mbox3rdPartyId,c-77,funded,,gold"
    workflow.update_cancel(update=old, by=operator)  # one open update per visitor
    edited = text.replace(",gold", ",platinum").encode("utf-8-sig")

    job = importing.import_job_create(connection=connection, file_name="edited.csv",
                                      file_data=edited, by=operator)
    assert job.errors == [] and job.status == "queued"
    importing.import_job_start(job=job, by=operator)
    new = ProfileUpdate.objects.exclude(pk=old.pk).get()
    assert (new.identity, new.attributes) == ("c-77", {"loanStatus": "funded",
                                                       "loyaltyTier": "platinum"})


def test_an_xlsx_export_round_trips_typed_dates_and_numbers(db, operator, supervisor):
    from updates import importing

    conn = make_connection("typed")
    make_mapping(conn, "funded_on", "fundedOn", value_type="date")
    make_mapping(conn, "seen_at", "seenAt", value_type="datetime")
    make_mapping(conn, "balance", "balance", value_type="integer")
    make_mapping(conn, "rate", "rate", value_type="decimal")
    values = {"fundedOn": "2024-05-01", "seenAt": "2024-05-01T10:30:05Z", "balance": "-42",
              "rate": "-1.25"}
    workflow.update_stage(connection=conn, identity_type="mbox3rdPartyId", identity="c-1",
                          attributes=values, by=operator)
    raw = export_bytes(supervisor, "xlsx", connection=conn, layout="import")
    sheet = load_workbook(io.BytesIO(raw)).active
    assert sheet.freeze_panes == "A2"
    header, row = [[c for c in r] for r in sheet.iter_rows()]
    by_name = dict(zip([c.value for c in header], row))
    assert by_name["funded_on"].is_date and by_name["funded_on"].value == dt.datetime(2024, 5, 1)
    assert by_name["seen_at"].is_date
    assert by_name["seen_at"].value == dt.datetime(2024, 5, 1, 10, 30, 5)
    assert by_name["balance"].value == -42  # a number, not "'-42"
    assert by_name["rate"].value == "-1.25"  # exact, unquoted: a number cannot run

    ProfileUpdate.objects.update(status="cancelled")
    job = importing.import_job_create(connection=conn, file_name="again.xlsx", file_data=raw,
                                      by=operator)
    assert job.errors == []
    importing.import_job_start(job=job, by=operator)
    assert ProfileUpdate.objects.exclude(status="cancelled").get().attributes == values


def test_the_import_layout_needs_one_connection(connection, stage, supervisor):
    other = make_connection("other")
    make_mapping(other, "tier", "loyaltyTier")
    stage()
    stage(connection=other, attributes={"loyaltyTier": "x"})
    with pytest.raises(ValidationError, match="holds the updates of one connection"):
        export_bytes(supervisor, "csv", layout="import")
    assert export_bytes(supervisor, "csv", layout="import", connection=other)


def test_values_whose_mapping_is_gone_are_kept_in_unmapped_attributes(connection, stage,
                                                                      supervisor):
    stage(identity="c-1", attributes={"loanStatus": "funded", "callNote": "=1+1"})
    connection.mappings.filter(source_name="note").update(active=False)
    [row] = export_csv(supervisor)
    assert "note" not in row
    assert row["unmapped_attributes"] == '{"callNote": "=1+1"}'  # starts with '{': safe


def test_an_export_can_be_limited_to_a_creator_and_a_date_range(connection, stage, operator,
                                                                other_operator, supervisor):
    first = stage(identity="old")
    ProfileUpdate.objects.filter(pk=first.pk).update(
        created_at=dt.datetime(2024, 4, 30, 23, 59, tzinfo=dt.timezone.utc))
    second = stage(identity="may")
    ProfileUpdate.objects.filter(pk=second.pk).update(
        created_at=dt.datetime(2024, 5, 1, 0, 0, tzinfo=dt.timezone.utc))
    stage(identity="theirs", by=other_operator)

    may = export_csv(supervisor, created_from=dt.date(2024, 5, 1),
                     created_to=dt.date(2024, 5, 31))
    assert [r["identity"] for r in may] == ["may"]
    assert [r["identity"] for r in export_csv(supervisor, created_by=other_operator)] == ["theirs"]
    assert [r["identity"] for r in export_csv(supervisor, created_to=dt.date(2024, 4, 30))] == [
        "old"]
    with pytest.raises(ValidationError, match="ends .* before it starts"):
        export_csv(supervisor, created_from=dt.date(2024, 5, 2), created_to=dt.date(2024, 5, 1))


# --- template and error files ------------------------------------------------------------------

@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
def test_a_connection_template_has_the_import_headers_of_its_active_mappings(connection,
                                                                            file_format):
    make_mapping(connection, "=evil", "evil")
    connection.mappings.filter(source_name="note").update(active=False)
    out = io.BytesIO()
    exporting.connection_template(by=exporting.COMMAND_LINE, connection=connection,
                                  file_format=file_format, out=out)
    if file_format == "csv":
        rows = list(csv.reader(io.StringIO(out.getvalue().decode("utf-8-sig"))))
    else:
        rows = [list(r) for r in load_workbook(io.BytesIO(out.getvalue())).active.values]
    assert rows == [["identity_type", "identity", "'=evil", "loan_status", "tier"]]


@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
def test_an_error_file_lists_each_problem_by_row_and_column(file_format, connection, operator):
    from updates.models import ImportJob

    job = ImportJob.objects.create(connection=connection, created_by=operator, file_name="x.csv",
                                   file_format="csv", status="invalid", errors=[
                                       {"row": 3, "column": "tier", "message": "=bad value"},
                                       {"row": None, "column": "", "message": "The file has no rows."},
                                       {"row": 2, "column": "identity", "message": "Missing."}])
    out = io.BytesIO()
    assert exporting.import_errors_file(by=operator, job=job, file_format=file_format,
                                        out=out) == 3
    if file_format == "csv":
        rows = list(csv.reader(io.StringIO(out.getvalue().decode("utf-8-sig"))))
    else:
        rows = [[("" if v is None else str(v)) for v in r]
                for r in load_workbook(io.BytesIO(out.getvalue())).active.values]
    assert rows == [["row", "column", "what_is_wrong"], ["file", "", "The file has no rows."],
                    ["2", "identity", "Missing."], ["3", "tier", "'=bad value"]]


# --- the export page: the list's filters, dates, templates, error files -------------------------

def test_the_export_page_applies_the_lists_own_filters_and_search(client, connection, stage,
                                                                  operator, supervisor):
    from urllib.parse import quote

    stage(identity="alpha-1")
    workflow.update_submit(update=stage(identity="alpha-2"), by=operator)
    stage(identity="beta-1")
    client.force_login(supervisor)
    list_page = client.get("/admin/updates/profileupdate/", {"q": "alpha*",
                                                             "status__exact": "draft"})
    filters = "q=alpha%2A&status__exact=draft"
    assert (f'href="/admin/updates/importjob/export/?_changelist_filters={quote(filters)}"'
            in list_page.content.decode())
    page = client.get("/admin/updates/importjob/export/", {"_changelist_filters": filters})
    assert "status__exact=draft" in page.content.decode()
    response = client.get("/admin/updates/importjob/export/", {
        "format": "csv", "layout": "all", "_changelist_filters": filters})
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [r["identity"] for r in rows] == ["alpha-1"]


def test_the_export_page_takes_a_date_range_and_refuses_a_backwards_one(client, stage,
                                                                        supervisor):
    update = stage(identity="in-may")
    ProfileUpdate.objects.filter(pk=update.pk).update(
        created_at=dt.datetime(2024, 5, 10, 12, 0, tzinfo=dt.timezone.utc))
    stage(identity="today")
    client.force_login(supervisor)
    response = client.get("/admin/updates/importjob/export/", {
        "format": "csv", "layout": "all", "created_from": "2024-05-01", "created_to": "2024-05-31"})
    rows = list(csv.DictReader(io.StringIO(
        b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert [r["identity"] for r in rows] == ["in-may"]
    page = client.get("/admin/updates/importjob/export/", {
        "format": "csv", "layout": "all", "created_from": "2024-05-31", "created_to": "2024-05-01"})
    assert page.status_code == 200 and "The last day is before the first day." in \
        page.content.decode()


def test_the_export_page_offers_an_import_template_per_active_connection(client, connection,
                                                                         operator):
    client.force_login(operator)
    page = client.get("/admin/updates/importjob/export/").content.decode()
    url = f"/admin/updates/importjob/template/?connection={connection.pk}&format=csv"
    assert f'href="{url.replace("&", "&amp;")}"' in page
    body = b"".join(client.get(url).streaming_content).decode("utf-8-sig")
    assert body == "identity_type,identity,loan_status,note,tier\r\n"
    assert client.get(url.replace("csv", "pdf")).status_code == 404


def test_a_refused_import_offers_its_problems_as_a_file(client, connection, operator):
    from updates import importing

    job = importing.import_job_create(
        connection=connection, file_name="bad.csv", by=operator,
        file_data=b"identity_type,identity,tier\nmbox3rdPartyId,,gold\n")
    assert job.status == "invalid"
    client.force_login(operator)
    page = client.get(f"/admin/updates/importjob/{job.pk}/status/").content.decode()
    assert f'href="/admin/updates/importjob/{job.pk}/errors/?format=csv"' in page
    body = b"".join(client.get(f"/admin/updates/importjob/{job.pk}/errors/?format=csv")
                    .streaming_content).decode("utf-8-sig")
    lines = body.splitlines()
    assert lines[0] == "row,column,what_is_wrong" and lines[1].startswith("2,identity,")


def test_templates_and_error_files_check_who_asks(connection, operator):
    from updates.models import ImportJob

    plain = make_user("plain")
    with pytest.raises(Refused):
        exporting.connection_template(by=plain, connection=connection, file_format="csv",
                                      out=io.BytesIO())
    job = ImportJob.objects.create(connection=connection, created_by=operator, file_name="x.csv",
                                   file_format="csv", status="invalid", errors=[])
    with pytest.raises(Refused):
        exporting.import_errors_file(by=plain, job=job, file_format="csv", out=io.BytesIO())
    exporting.connection_template(by=operator, connection=connection, file_format="csv",
                                  out=io.BytesIO())
    exporting.import_errors_file(by=operator, job=job, file_format="csv", out=io.BytesIO())


# --- values checked under yesterday's mapping ------------------------------------------------------

STORED_UNDER_TEXT = {"=HYPERLINK(\"http://evil\",\"x\")": "'=HYPERLINK(\"http://evil\",\"x\")",
                     "+1": "'+1", "-2+3": "'-2+3", "@me": "'@me", "007": "007", "1.5": "1.5",
                     "-42": "-42", "12 cats": "12 cats"}


@pytest.mark.parametrize("kind", ["integer", "decimal", "date", "datetime"])
@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
def test_an_export_escapes_by_the_stored_text_never_by_todays_mapping(db, operator, supervisor,
                                                                     kind, file_format):
    """A text mapping changed to another type keeps the values staged under it: the export
    neither writes a stored formula unquoted nor fails on a value the new type cannot parse."""
    conn = make_connection("changed")
    mapping = make_mapping(conn, "code", "code", max_length=100)
    for number, value in enumerate(STORED_UNDER_TEXT):
        workflow.update_stage(connection=conn, identity_type="mbox3rdPartyId",
                              identity=f"c-{number}", attributes={"code": value}, by=operator)
    type(mapping).objects.filter(pk=mapping.pk).update(value_type=kind)

    for layout in ("all", "import"):
        raw = export_bytes(supervisor, file_format, connection=conn, layout=layout)
        if file_format == "csv":
            rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
            cells = [row["code"] for row in rows]
        else:
            sheet = load_workbook(io.BytesIO(raw)).active
            header, *rows = list(sheet.iter_rows())
            at = [c.value for c in header].index("code")
            assert all(c.data_type != "f" for row in rows for c in row)
            cells = [row[at].value for row in rows]
        expected = list(STORED_UNDER_TEXT.values())
        if file_format == "xlsx" and kind == "integer":
            expected[expected.index("-42")] = -42  # its normal form: a number cell
        assert cells == expected, (layout, cells)


# --- exports open well (issue 24, item 9) --------------------------------------------------------

def test_xlsx_columns_fit_their_dates_and_values_and_the_header_has_a_filter(connection, stage,
                                                                            supervisor):
    # Before: every column at the default width (dates showed as "########"), no filter.
    update = stage(identity="a-rather-long-customer-identity-0001",
                   attributes={"loanStatus": "funded", "callNote": "x" * 200})
    ProfileUpdate.objects.filter(pk=update.pk).update(
        status="sent", acknowledged_at=dt.datetime(2024, 5, 1, 10, 30, 5, tzinfo=dt.timezone.utc))
    stage(identity="c-2")
    out = io.BytesIO()
    exporting.updates_export(by=supervisor, file_format="xlsx", out=out)
    sheet = load_workbook(io.BytesIO(out.getvalue())).active
    header = [c.value for c in sheet[1]]
    letter = {name: sheet.cell(row=1, column=i + 1).column_letter for i, name in enumerate(header)}

    def width(name: str) -> float:
        return sheet.column_dimensions[letter[name]].width

    assert width("acknowledged_at") >= len("2024-05-01 10:30:05")
    assert width("identity") >= len("a-rather-long-customer-identity-0001")
    assert width("note") == exporting.MAX_COLUMN_WIDTH  # capped; the cell keeps all 200
    assert width("id") >= len("id") + 2 and width("id") < 12
    assert sheet.auto_filter.ref == f"A1:{letter[header[-1]]}3"  # the header, over every row
    assert sheet.freeze_panes == "A2"


def test_an_empty_xlsx_template_still_has_widths_and_a_filter(connection, operator):
    out = io.BytesIO()
    exporting.connection_template(by=operator, connection=connection, file_format="xlsx",
                                  out=out)
    sheet = load_workbook(io.BytesIO(out.getvalue())).active
    assert sheet.auto_filter.ref == "A1:E1"
    assert sheet.column_dimensions["B"].width >= len("identity") + 2


def test_the_export_page_says_the_kept_filters_in_words(client, connection, stage, supervisor):
    from urllib.parse import urlencode

    client.force_login(supervisor)
    filters = urlencode({"status__exact": "approved", "connection__id__exact": connection.pk,
                         "waiting": "retrying", "q": "<b>alpha*</b>", "o": "2"})
    page = client.get("/admin/updates/importjob/export/",
                      {"_changelist_filters": filters}).content.decode()
    note = page[page.index('id="po-export-list-filters"'):]
    note = note[:note.index("</div>")]
    assert "<strong>status: Approved</strong>" in note
    assert f"<strong>connection: {connection}</strong>" in note
    assert "<strong>waiting: Retrying</strong>" in note
    assert "search: &quot;&lt;b&gt;alpha*&lt;/b&gt;&quot;" in note  # escaped, never markup
    assert "<b>alpha" not in page
    words = note.split(">", 1)[1].split("<a ")[0]  # before the links back
    assert "status__exact" not in words and "=" not in words


def test_the_export_page_says_a_date_filter_with_its_days(client, stage, supervisor):
    import datetime as _dt

    today = _dt.date.today()
    since, until = today - _dt.timedelta(days=7), today + _dt.timedelta(days=1)
    from urllib.parse import urlencode
    filters = urlencode({"acknowledged_at__gte": f"{since} 00:00:00+00:00",
                         "acknowledged_at__lt": f"{until} 00:00:00+00:00"})
    client.force_login(supervisor)
    page = client.get("/admin/updates/importjob/export/",
                      {"_changelist_filters": filters}).content.decode()
    assert f"Past 7 days ({since} to before {until})" in page


def test_the_export_page_uses_the_admins_date_widget(client, supervisor):
    client.force_login(supervisor)
    page = client.get("/admin/updates/importjob/export/").content.decode()
    assert 'type="date"' not in page  # the browser's mm/dd/yyyy input is gone
    assert 'name="created_from" class="vDateField"' in page or (
        'class="vDateField"' in page and 'name="created_from"' in page)
    assert "admin/js/calendar.js" in page and "admin/js/admin/DateTimeShortcuts.js" in page
    assert "/admin/jsi18n/" in page
