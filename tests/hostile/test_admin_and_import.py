"""Hostile input through the admin forms and the CSV/XLSX import.

Admin forms (Django test client, raw form bodies, so invalid UTF-8 and NUL reach the server as a
misbehaving client would send them): every POST answers 200 with the form's errors or redirects
after saving — never a server error (the test client re-raises any exception a view lets out) —
and a refused form changes no row, while a saved one stores exactly what Django decoded.

Import (importing.py, and the admin's upload page): a file of hypothesis-generated cells —
formula-looking text, byte-order marks, non-UTF-8 encodings and invalid bytes, huge cells, wrong
headers — is either imported whole, every row stored exactly as the file said, or refused with
each problem located by row and column and nothing saved. The only exception the service may
raise is its documented ValidationError for a file it cannot read at all.
"""

from __future__ import annotations

import csv
import io
import re
from urllib.parse import quote_from_bytes

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.urls import reverse
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from profileops.middleware import INVALID_UTF8
from tests.conftest import make_connection, make_mapping
from updates import importing, mappings, spreadsheets, tasks, workflow
from updates.forms import StagingForm
from updates.models import (AttributeMapping, ImportJob, ProfileUpdate,
                            TargetConnection, UpdateStatus)

from .conftest import rolled_back, row_counts
from .strategies import (HOSTILE, acceptable_third_party_id, encodable_text,
                         hostile_text, long_text)

FORM = "application/x-www-form-urlencoded"
# Each example here is a full request cycle through the admin: fewer of them.
FEWER = settings(HOSTILE, max_examples=25)


# --- raw form bodies -------------------------------------------------------------------------

def raw(text: str) -> bytes:
    """UTF-8 bytes; a lone surrogate becomes the invalid byte sequence a broken client sends."""
    return text.encode("utf-8", "surrogatepass")


def as_django_reads(text: str) -> str:
    """What Django's QueryDict makes of `text` sent as raw(text): invalid bytes replaced."""
    return raw(text).decode("utf-8", "replace")


def form_body(fields: dict[str, str | list[str]]) -> bytes:
    pairs = []
    for name, values in fields.items():
        for value in values if isinstance(values, list) else [values]:
            pairs.append(f"{quote_from_bytes(raw(name))}={quote_from_bytes(raw(value))}")
    return "&".join(pairs).encode("ascii")


def is_utf8(fields: dict) -> bool:
    texts = [name for name in fields] + [v for vs in fields.values()
                                         for v in (vs if isinstance(vs, list) else [vs])]
    return all(raw(text).decode("utf-8", "replace") == text for text in texts)


def post_form(client, url: str, fields: dict) -> object:
    """POST the fields as raw bytes. Not valid UTF-8: refused with a 400 before any form sees it
    (profileops.middleware), so no U+FFFD is ever stored in place of what was sent."""
    response = client.post(url, data=form_body(fields), content_type=FORM)
    if not is_utf8(fields):
        assert response.status_code == 400, response.status_code
        assert response.content.decode() == INVALID_UTF8
        return response
    assert response.status_code in (200, 302), response.status_code
    if response.status_code == 200:
        form = response.context["adminform"].form
        assert form.errors, "a 200 answer to a POST must be the form with its errors"
    return response


def hostile_or(*plausible: str):
    """A plausible value (valid or a near miss) or hostile text."""
    return st.one_of(st.sampled_from(plausible), hostile_text, encodable_text)


def mostly_valid(valid: dict, hostile: dict, most: int = 3):
    """A valid form or row in which up to `most` fields hold hostile values: with every field
    hostile at once, nearly every example would be refused and saving never exercised."""
    def merge(overrides: dict) -> dict:
        return {**valid, **overrides}

    keys = st.lists(st.sampled_from(sorted(hostile)), max_size=most, unique=True)
    return keys.flatmap(
        lambda chosen: st.fixed_dictionaries({k: hostile[k] for k in chosen})).map(merge)


# --- the profile update add and change forms ---------------------------------------------------

@pytest.fixture
def typed_connection(db):
    """A connection with one mapping of every value type."""
    connection = make_connection("typed")
    make_mapping(connection, "note", max_length=60_000, trim=False)
    make_mapping(connection, "visits", value_type="integer")
    make_mapping(connection, "balance", value_type="decimal")
    make_mapping(connection, "member", value_type="boolean")
    make_mapping(connection, "last_call", value_type="date")
    make_mapping(connection, "seen_at", value_type="datetime")
    make_mapping(connection, "tier", value_type="choice", choices="gold\nsilver")
    make_mapping(connection, "code", pattern=r"[A-Z]{2}\d+")
    return connection


def mapping_field(connection, source: str) -> str:
    mapping = AttributeMapping.objects.get(connection=connection, source_name=source, active=True)
    return StagingForm.field_name(mapping)


VALID_UPDATE_FORM = {
    "identity_type": "mbox3rdPartyId", "identity": "cust-1", "reason": "", "not_before_0": "",
    "not_before_1": "", "note": "a note", "visits": "", "balance": "", "member": "",
    "last_call": "", "seen_at": "", "tier": "", "code": "",
}
update_form_values = mostly_valid(VALID_UPDATE_FORM, {
    "identity_type": hostile_or("mbox3rdPartyId", "mboxPC"),
    "identity": st.one_of(acceptable_third_party_id, hostile_text, long_text),
    "reason": hostile_or("", "loan funded"),
    "not_before_0": hostile_or("", "2031-02-03", "9999-12-31"),
    "not_before_1": hostile_or("", "10:11:12", "25:61:61"),
    "note": st.one_of(encodable_text, hostile_text, long_text),
    "visits": hostile_or("", "42", "-0", "007", "1e3", "99999999999999999999999"),
    "balance": hostile_or("", "12.50", "1E+999999", "NaN", "-0.000"),
    "member": hostile_or("", "yes", "off"),
    "last_call": hostile_or("", "2026-02-29", "2024-02-29", "0000-01-01"),
    "seen_at": hostile_or("", "2026-01-01T10:00:00+14:00", "2026-01-01 25:00"),
    "tier": hostile_or("", "gold", "GOLD"),
    "code": hostile_or("", "AB12", "ab12"),
}, most=4)


def update_post(connection, values: dict) -> dict:
    fields = {k: v for k, v in values.items()
              if k in ("identity_type", "identity", "reason", "not_before_0", "not_before_1")}
    for source in ("note", "visits", "balance", "member", "last_call", "seen_at", "tier", "code"):
        fields[mapping_field(connection, source)] = values[source]
    return fields


def snapshot(update: ProfileUpdate) -> tuple:
    fresh = ProfileUpdate.objects.get(pk=update.pk)
    return (fresh.identity_type, fresh.identity, fresh.attributes, fresh.reason, fresh.not_before,
            fresh.status, fresh.last_edited_at)


@FEWER
@given(values=update_form_values)
@example(values={"identity_type": "mbox3rdPartyId", "identity": "a&b=c%d#e?f g",
                 "reason": " padded ", "not_before_0": "", "not_before_1": "",
                 "note": "=cmd|' /C calc'!A0\r\n😀", "visits": "007", "balance": "12.50",
                 "member": "yes", "last_call": "2024-02-29", "seen_at": "", "tier": " gold ",
                 "code": "AB12"})
@example(values={"identity_type": "mbox3rdPartyId", "identity": "bad\ud800byte",
                 "reason": "nul\x00", "not_before_0": "\x00", "not_before_1": "\ud800",
                 "note": "\x00", "visits": "\ud800", "balance": "1E+999999", "member": "\x00",
                 "last_call": "\x00", "seen_at": "\x00", "tier": "\x00", "code": "\x00"})
def test_the_staging_form_saves_exactly_what_was_posted_or_shows_errors_never_a_500(
        client, typed_connection, operator, values):
    client.force_login(operator)
    url = reverse("admin:updates_profileupdate_add") + f"?connection={typed_connection.pk}"
    with rolled_back():
        before = row_counts()
        response = post_form(client, url, update_post(typed_connection, values))
        after = row_counts()
        if response.status_code != 302:
            event("refused")
            assert after == before
            return
        event("saved")
        assert after["ProfileUpdate"] == before["ProfileUpdate"] + 1
        assert after["AuditEvent"] == before["AuditEvent"] + 1
        update = ProfileUpdate.objects.latest("id")
        assert update.status == UpdateStatus.DRAFT and update.created_by == operator
        assert update.identity == as_django_reads(values["identity"])  # never trimmed
        assert update.reason == as_django_reads(values["reason"]).strip()
        note = as_django_reads(values["note"])
        if note.strip():
            assert update.attributes["note"] == note  # a trim=False text mapping: verbatim


@FEWER
@given(values=update_form_values)
def test_the_change_form_saves_exactly_what_was_posted_or_leaves_the_update_untouched(
        client, typed_connection, operator, values):
    client.force_login(operator)
    with rolled_back():
        update = workflow.update_stage(connection=typed_connection, by=operator,
                                       identity_type="mbox3rdPartyId", identity="cust-1",
                                       attributes={"note": "before", "tier": "gold"})
        update = workflow.update_submit(update=update, by=operator)
        before, counts = snapshot(update), row_counts()
        url = reverse("admin:updates_profileupdate_change", args=[update.pk])
        response = post_form(client, url, update_post(typed_connection, values))
        if response.status_code != 302:
            event("refused")
            assert snapshot(update) == before
            assert row_counts() == counts
            return
        event("saved")
        fresh = ProfileUpdate.objects.get(pk=update.pk)
        assert fresh.identity == as_django_reads(values["identity"])
        if (fresh.identity, fresh.attributes) != ("cust-1", {"note": "before", "tier": "gold"}):
            assert fresh.status == UpdateStatus.DRAFT  # content changed: approval path restarts


# --- the connection and mapping admin forms ----------------------------------------------------

VALID_CONNECTION_FORM = {"label": "Acme EU", "client_code": "acme-eu", "base_url": "",
                         "quota_limit": "1000000", "active": "on", "new_token": "",
                         "clear_token": ""}
connection_form_values = mostly_valid(VALID_CONNECTION_FORM, {
    "label": hostile_or("Acme EU", "x" * 100, "x" * 101),
    "client_code": hostile_or("acme", "acme-eu_2", "-acme", "acme eu", "ac/me"),
    "base_url": hostile_or("", "http://127.0.0.1:8765", "javascript:alert(1)",
                           "http://[::1", "ftp://x", "http://exa mple.com", "//x"),
    "quota_limit": hostile_or("1000000", "0", "-1", "1.5", "2147483648",
                              "99999999999999999999999"),
    "active": st.sampled_from(["on", ""]),
    "new_token": hostile_or("", "tok-abc", "tok with space", "tok\nnewline"),
    "clear_token": st.sampled_from(["", "on"]),
})


@FEWER
@given(values=connection_form_values)
def test_the_connection_form_saves_or_shows_errors_never_a_500(client, admin_user, values):
    client.force_login(admin_user)
    with rolled_back():
        before = row_counts()
        response = post_form(client, reverse("admin:updates_targetconnection_add"), values)
        after = row_counts()
        if response.status_code != 302:
            event("refused")
            assert after == before
            return
        event("saved")
        assert after["TargetConnection"] == before["TargetConnection"] + 1
        saved = TargetConnection.objects.latest("id")
        assert saved.client_code == as_django_reads(values["client_code"]).strip()
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", saved.client_code)


# Regular expressions an operator might paste: valid, invalid, and ones that break re.compile
# in ways other than re.error (a repeat count too large for the engine).
PATTERNS = ("", r"[A-Z]{2}\d+", "(", "[", "a{2,1}", "(?P<x>a)(?P<x>b)", "a{99999999999999999999}",
            "a{4294967296}", r"\\", "(?<=a+)b", "\x00", "*")

VALID_MAPPING_FORM = {
    "source_name": "visits", "target_name": "storeVisits", "value_type": "text", "trim": "on",
    "case_transform": "none", "required": "", "max_length": "256", "choices": "", "pattern": "",
    "send_empty": "", "help_text": "", "active": "on",
}
mapping_form_values = mostly_valid(VALID_MAPPING_FORM, {
    "source_name": hostile_or("loan_status", "identity", "identity_type", " padded"),
    "target_name": hostile_or("loanStatus", "profile.x", "user.agent", "sessionCount",
                              "a" * 128, "a" * 129),
    "value_type": hostile_or("text", "integer", "choice", "date"),
    "trim": st.sampled_from(["on", ""]),
    "case_transform": hostile_or("none", "lower", "upper"),
    "required": st.sampled_from(["on", ""]),
    "max_length": hostile_or("256", "0", "60000", "60001", "-5", "99999999999999999999999"),
    "choices": hostile_or("", "gold\nsilver", "\n\n"),
    "pattern": st.one_of(st.sampled_from(PATTERNS), hostile_text),
    "send_empty": st.sampled_from(["on", ""]),
    "help_text": hostile_or("", "x" * 301),
    "active": st.sampled_from(["on", ""]),
})


@FEWER
@given(values=mapping_form_values)
@example(values={**VALID_MAPPING_FORM, "pattern": "a{99999999999999999999}"})
def test_the_mapping_form_saves_or_shows_errors_never_a_500(client, operator, connection,
                                                            values):
    client.force_login(operator)
    with rolled_back():
        before = row_counts()
        response = post_form(client, reverse("admin:updates_attributemapping_add"),
                             {"connection": str(connection.pk), **values})
        after = row_counts()
        if response.status_code != 302:
            event("refused")
            assert after == before
            return
        event("saved")
        assert after["AttributeMapping"] == before["AttributeMapping"] + 1
        assert after["AuditEvent"] == before["AuditEvent"] + 1  # mapping_created
        saved = AttributeMapping.objects.latest("id")
        assert saved.target_name == as_django_reads(values["target_name"]).strip()
        if saved.pattern:
            assert mappings.pattern_error(saved.pattern) is None  # it always compiles (RE2)


# --- the CSV/XLSX import -----------------------------------------------------------------------

HEADER = ["identity_type", "identity", "note", "tier"]
FORMULAS = ("=1+1", "=cmd|' /C calc'!A0", "+SUM(A1:A2)", "-2+3", "@SUM(A1)", "=HYPERLINK(\"x\")",
            "\t=1", "\r=1")


@pytest.fixture
def import_connection(db):
    connection = make_connection("imports")
    make_mapping(connection, "note", max_length=60_000, trim=False)
    make_mapping(connection, "tier", value_type="choice", choices="gold\nsilver")
    return connection


XLSX_CELL_MAX = 32_767  # Excel's limit; openpyxl cuts longer text when it writes the file


def _xlsx_safe(text: str) -> str:
    # What a spreadsheet can hold at all: XLSX (XML) cannot hold most control characters or lone
    # surrogates, XML parsing turns a stored carriage return into a line feed, and a cell holds
    # at most 32,767 characters. (U+FFFF and U+FFFE stay in: openpyxl writes them into XML that
    # no parser accepts, which the import must refuse as an unreadable file.)
    return re.sub("[\ud800-\udfff\r]", "", ILLEGAL_CHARACTERS_RE.sub("", text))[:XLSX_CELL_MAX]


VALID_ROW = {"identity_type": "mbox3rdPartyId", "identity": "cust", "note": "a note", "tier": ""}
HOSTILE_CELLS = {
    "identity_type": hostile_or("mbox3rdPartyId", "mboxPC", "MBOXPC", ""),
    "identity": st.one_of(hostile_text, st.sampled_from(FORMULAS), st.just("\ufeffcust")),
    "note": st.one_of(hostile_text, st.sampled_from(FORMULAS),
                      st.builds(lambda n: "n" * n, st.integers(60_000, 140_000))),
    "tier": hostile_or("", "gold", " silver ", "GOLD", "=gold"),
}
# Rows with distinct plausible identities (a repeated visitor is refused, rightly, and would
# hide everything else), a text note full of trouble, and now and then a hostile cell.
_row = st.builds(
    lambda identity, note, tier, extra: {**VALID_ROW, "identity": identity, "note": note,
                                         "tier": tier, **extra},
    acceptable_third_party_id,
    st.one_of(encodable_text, st.sampled_from(FORMULAS)),
    st.sampled_from(["", "gold", " silver "]),
    st.one_of(st.just({}), st.just({}), mostly_valid({}, HOSTILE_CELLS, most=1)),
)
rows_strategy = st.lists(_row, min_size=1, max_size=4)
xlsx_rows_strategy = rows_strategy.map(
    lambda rows: [{k: _xlsx_safe(v) for k, v in row.items()} for row in rows])
headers_strategy = st.one_of(
    st.just(HEADER), st.just(HEADER), st.just(HEADER), st.permutations(HEADER),
    st.lists(st.one_of(st.sampled_from(HEADER), hostile_text), min_size=1, max_size=5),
    st.sampled_from([["identity", "note"], HEADER + ["unknown"], HEADER + ["note"],
                     ["identity_type", "identity", "", "tier"], ["\ufeffidentity_type"] + HEADER[1:],
                     ["IDENTITY_TYPE"] + HEADER[1:], HEADER[:2] + ["=note"],
                     HEADER[:2] + ["no\x00te"]]),
)
xlsx_headers_strategy = headers_strategy.map(lambda names: [_xlsx_safe(n) for n in names])
csv_encodings = st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-8-sig", "utf-16",
                                 "latin-1", "cp1252", "invalid-byte"])


def table(header: list[str], rows: list[dict]) -> list[list[str]]:
    return [header] + [[row.get(name, "") for name in header] for row in rows]


def csv_file(header, rows, encoding: str) -> bytes:
    text = io.StringIO(newline="")
    csv.writer(text, lineterminator="\r\n").writerows(table(header, rows))
    content = text.getvalue()
    if encoding == "invalid-byte":
        data = raw(content)
        return data[: len(data) // 2] + b"\xff" + data[len(data) // 2:]
    try:
        return content.encode(encoding)
    except UnicodeEncodeError:  # not representable in a legacy encoding: send it broken
        return raw(content)


def xlsx_file(header, rows) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    for r, values in enumerate(table(header, rows), start=1):
        for c, value in enumerate(values, start=1):
            cell = sheet.cell(row=r, column=c)
            cell.value = value
            cell.data_type = "s"  # text as typed, '=…' included: never a formula to evaluate
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def expected_update(header: list[str], row: dict) -> tuple[str, str, dict[str, str]] | None:
    """What a row of a valid file must become — from the cells as written under `header`:
    identity as is, note verbatim (trim off), tier trimmed; None for a row the import skips
    because every cell is blank."""
    cells = {name: row.get(name, "") for name in header}
    if not any(v.strip() for v in cells.values()):
        return None
    attributes = {}
    if cells.get("note", "").strip():
        attributes["note"] = cells["note"]
    if cells.get("tier", "").strip():
        attributes["tier"] = cells["tier"].strip()
    return cells.get("identity_type", ""), cells.get("identity", ""), attributes


def assert_refusal_is_located(job: ImportJob, rows: int) -> None:
    assert job.errors and job.error_count >= len(job.errors)
    for error in job.errors:
        assert error["row"] is None or 1 <= error["row"] <= rows + 1, error
        assert isinstance(error["column"], str), error
        assert isinstance(error["message"], str) and error["message"].strip(), error


def import_or_refusal(connection, by, name: str, data: bytes, header, rows) -> None:
    """Run the whole import; assert all-or-nothing and a located reason for every refusal."""
    before = row_counts()
    try:
        job = importing.import_job_create(connection=connection, file_name=name, file_data=data,
                                          by=by, background=False)
    except ValidationError as refusal:  # the file as a whole is unreadable
        event("file refused")
        assert refusal.messages and row_counts() == before
        return
    if job.status == ImportJob.Status.INVALID:
        event("rows refused")
        assert_refusal_is_located(job, len(rows))
        assert row_counts()["ProfileUpdate"] == before["ProfileUpdate"]
        return
    assert job.status == ImportJob.Status.QUEUED, (job.status, job.errors)
    assert importing.import_job_start(job=job, by=by) is False
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE, job.errors
    event("imported")
    saved = {(u.identity_type, u.identity, tuple(sorted(u.attributes.items())))
             for u in ProfileUpdate.objects.filter(reason=importing.import_reason(job))}
    expected = set()
    for row in rows:
        if (update := expected_update(header, row)) is not None:
            kind, identity, attributes = update
            expected.add((kind, identity, tuple(sorted(attributes.items()))))
    assert saved == expected
    assert job.created_updates == len(expected)
    # One audit row for the import job; each update references the job.
    assert row_counts()["AuditEvent"] == before["AuditEvent"] + 1
    assert ProfileUpdate.objects.filter(import_job=job).count() == len(expected)


@HOSTILE
@given(header=headers_strategy, rows=rows_strategy, encoding=csv_encodings)
@example(header=HEADER, rows=[{"identity_type": "mbox3rdPartyId", "identity": "=cmd|' /C calc'!A0",
                               "note": "=1+1", "tier": "gold"}], encoding="utf-8-sig")
@example(header=HEADER, rows=[{"identity_type": "mbox3rdPartyId", "identity": "cust",
                               "note": "n" * 140_000, "tier": ""}], encoding="utf-8")
@example(header=HEADER, rows=[{"identity_type": "mbox3rdPartyId", "identity": "Zürich",
                               "note": "café", "tier": ""}], encoding="latin-1")
def test_a_csv_file_imports_whole_and_exactly_or_is_refused_with_rows_and_columns_named(
        import_connection, operator, header, rows, encoding):
    with rolled_back():
        data = csv_file(header, rows, encoding)
        import_or_refusal(import_connection, operator, "updates.csv", data, header, rows)


@HOSTILE
@given(header=xlsx_headers_strategy, rows=xlsx_rows_strategy)
@example(header=HEADER, rows=[{"identity_type": "mbox3rdPartyId", "identity": "@SUM(A1)",
                               "note": "=HYPERLINK(\"http://x\")", "tier": "=gold"}])
@example(header=HEADER, rows=[{"identity_type": "mbox3rdPartyId", "identity": "\ufeffcust",
                               "note": "\ufeff", "tier": "silver"}])
def test_an_xlsx_file_imports_whole_and_exactly_or_is_refused_with_rows_and_columns_named(
        import_connection, operator, header, rows):
    with rolled_back():
        data = xlsx_file(header, rows)
        import_or_refusal(import_connection, operator, "updates.xlsx", data, header, rows)


@pytest.mark.parametrize("name, data", [
    ("updates.xlsx", b"PK\x03\x04 not really a zip"),
    ("updates.csv", b"\xff\xfei\x00d\x00"),
    ("updates.csv", b""),
    ("updates.csv", b"\x00" * 100),
    ("updates.xls", b"\xd0\xcf\x11\xe0"),
    ("updates", b"PK\x03\x04"),
    ("updates.csv", b'identity_type,identity,note\r\nmbox3rdPartyId,"unterminated'),
])
def test_files_that_are_not_readable_tables_are_refused_without_saving(
        import_connection, operator, name, data):
    before = row_counts()
    try:
        job = importing.import_job_create(connection=import_connection, file_name=name,
                                          file_data=data, by=operator)
    except ValidationError as refusal:
        assert refusal.messages
    else:
        assert job.status == ImportJob.Status.INVALID
        assert_refusal_is_located(job, 1)
    assert row_counts()["ProfileUpdate"] == before["ProfileUpdate"]


def _damaged(data: bytes, cut: int | None, flips: list[tuple[int, int]]) -> bytes:
    damaged = bytearray(data[:cut] if cut is not None else data)
    for position, byte in flips:
        if damaged:
            damaged[position % len(damaged)] = byte
    return bytes(damaged)


@HOSTILE
@given(cut=st.one_of(st.none(), st.integers(0, 6_000)),
       flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6))
def test_a_damaged_xlsx_file_is_refused_as_unreadable_never_an_exception(
        import_connection, operator, cut, flips):
    rows = [{**VALID_ROW, "identity": f"cust-{n}"} for n in range(20)]
    data = _damaged(xlsx_file(HEADER, rows), cut, flips)
    with rolled_back():
        import_or_refusal(import_connection, operator, "updates.xlsx", data, HEADER, rows)


@FEWER
@given(header=headers_strategy, rows=rows_strategy,
       file_format=st.sampled_from(["csv", "xlsx"]))
def test_the_admin_upload_page_answers_every_file_with_a_page_never_a_500(
        client, import_connection, operator, header, rows, file_format):
    from django.core.files.uploadedfile import SimpleUploadedFile

    if file_format == "xlsx":
        header = [_xlsx_safe(name) for name in header]
        rows = [{k: _xlsx_safe(v) for k, v in row.items()} for row in rows]
        data = xlsx_file(header, rows)
    else:
        data = csv_file(header, rows, "utf-8")
    client.force_login(operator)
    with rolled_back():
        before = row_counts()
        upload = SimpleUploadedFile(f"hostile.{file_format}", data)
        response = client.post(reverse("admin:updates_importjob_import"),
                               {"connection": import_connection.pk, "file": upload})
        assert response.status_code in (200, 302)
        if response.status_code == 200:
            assert response.context["form"].errors
            assert row_counts()["ProfileUpdate"] == before["ProfileUpdate"]
            return
        status_page = client.get(response["Location"])
        assert status_page.status_code == 200
        job = ImportJob.objects.latest("id")
        if job.status == ImportJob.Status.CHECKING:  # a large file: checked by the worker
            tasks.check_import_job(job.pk)
            job.refresh_from_db()
            assert client.get(response["Location"]).status_code == 200
        if job.status == ImportJob.Status.QUEUED:
            started = client.post(reverse("admin:updates_importjob_start", args=[job.pk]))
            assert started.status_code == 302
            job.refresh_from_db()
            assert job.status == ImportJob.Status.DONE, job.errors
            assert client.get(started["Location"]).status_code == 200
            assert ProfileUpdate.objects.count() == before["ProfileUpdate"] + job.total_rows
        else:
            assert job.status == ImportJob.Status.INVALID
            assert_refusal_is_located(job, len(rows))
            assert row_counts()["ProfileUpdate"] == before["ProfileUpdate"]


# --- invalid UTF-8 in a request ----------------------------------------------------------------

def test_a_form_post_with_invalid_utf8_is_refused_not_stored_with_replacement_characters(
        client, typed_connection, operator):
    client.force_login(operator)
    url = reverse("admin:updates_profileupdate_add") + f"?connection={typed_connection.pk}"
    fields = update_post(typed_connection, VALID_UPDATE_FORM)
    body = form_body(fields).replace(b"identity=cust-1", b"identity=cust-%FF%FE1")
    before = row_counts()
    response = client.post(url, data=body, content_type=FORM)
    assert response.status_code == 400
    assert response.content.decode() == INVALID_UTF8
    assert row_counts() == before
    # The same form, valid UTF-8, is saved: the refusal is about the bytes, nothing else.
    assert client.post(url, data=form_body(fields), content_type=FORM).status_code == 302
    assert ProfileUpdate.objects.get().identity == "cust-1"


@pytest.mark.parametrize("where", ["update page", "queue"])
def test_a_decision_comment_with_a_nul_is_refused_with_a_message_not_a_500(
        client, connection, operator, supervisor, where):
    """Valid UTF-8, so the middleware lets it in; the approve comment is no form field, so only
    the service stands between it and PostgreSQL, which cannot store a NUL."""
    update = workflow.update_stage(connection=connection, identity_type="mbox3rdPartyId",
                                   identity="cust-nul", attributes={"loanStatus": "funded"},
                                   by=operator)
    workflow.update_submit(update=update, by=operator)
    client.force_login(supervisor)
    if where == "queue":
        url, data = reverse("updates_queue"), {"decision": "approve", "update": [update.pk]}
    else:
        url = reverse("admin:updates_profileupdate_workflow", args=[update.pk])
        data = {"transition": "approve"}
    response = client.post(url, {**data, "comment": "looks fine\x00"}, follow=True)
    assert response.status_code == 200
    assert any("NUL" in str(m) for m in response.context["messages"])
    assert ProfileUpdate.objects.get(pk=update.pk).status == "pending"


def test_a_multipart_post_with_invalid_utf8_is_refused_too(client, import_connection, operator):
    client.force_login(operator)
    boundary = "BoUnDaRy"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"connection\"\r\n\r\n"
            f"{import_connection.pk}\r\n--{boundary}\r\nContent-Disposition: form-data; "
            "name=\"submit\"\r\n\r\n").encode() + b"o\xffn" + (
        f"\r\n--{boundary}--\r\n").encode()
    response = client.post(reverse("admin:updates_importjob_import"), data=body,
                           content_type=f"multipart/form-data; boundary={boundary}")
    assert response.status_code == 400
    assert response.content.decode() == INVALID_UTF8


def test_a_query_string_with_invalid_utf8_is_refused(client, operator):
    client.force_login(operator)
    response = client.get(reverse("admin:updates_profileupdate_changelist") + "?q=%C3%28")
    assert response.status_code == 400
    assert client.get(reverse("admin:updates_profileupdate_changelist") + "?q=%C3%A9"
                      ).status_code == 200


# --- bounded uploads: zip bombs, endless rows, giant cells -------------------------------------
# The limits are lowered with override_settings so each hostile file stays small and fast to
# build; what is proven is that reading stops at the limit with a clear refusal, saving nothing.

import zipfile  # noqa: E402

from django.test import override_settings  # noqa: E402

SHEET_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
SHARED_STRINGS_TYPE = ("application/vnd.openxmlformats-officedocument.spreadsheetml."
                       "sharedStrings+xml")
HEADER_ROW = ('<row r="1"><c r="A1" t="inlineStr"><is><t>identity_type</t></is></c>'
              '<c r="B1" t="inlineStr"><is><t>identity</t></is></c>'
              '<c r="C1" t="inlineStr"><is><t>note</t></is></c></row>')


def limits(**values: int):
    return override_settings(PROFILEOPS={**django_settings.PROFILEOPS, **{
        f"IMPORT_MAX_{name.upper()}": value for name, value in values.items()}})


def handmade_xlsx(rows_xml: str | bytes, shared_strings: bytes | None = None,
                  declared_sizes: dict[str, int] | None = None) -> bytes:
    """A real workbook (written by openpyxl) whose first sheet holds `rows_xml`, and optionally
    a shared-strings part — the parts an attacker controls, written as raw XML."""
    workbook = Workbook()
    base = io.BytesIO()
    workbook.save(base)
    rows = rows_xml.encode() if isinstance(rows_xml, str) else rows_xml
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(base.getvalue())) as source, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                data = (f'<worksheet xmlns="{SHEET_NS}"><sheetData>'.encode() + rows
                        + b"</sheetData></worksheet>")
            elif info.filename == "[Content_Types].xml" and shared_strings is not None:
                data = data.replace(b"</Types>", (
                    '<Override PartName="/xl/sharedStrings.xml" '
                    f'ContentType="{SHARED_STRINGS_TYPE}"/></Types>').encode())
            target.writestr(info.filename, data)
        if shared_strings is not None:
            target.writestr("xl/sharedStrings.xml", shared_strings)
    data = out.getvalue()
    for name, size in (declared_sizes or {}).items():
        data = _declare_size(data, name, size)
    return data


def _declare_size(data: bytes, name: str, size: int) -> bytes:
    """The zip with `name`'s uncompressed size rewritten in its local header and directory: a
    file that lies about what it unpacks to."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(name)
    patched = bytearray(data)
    encoded = name.encode()
    local = info.header_offset
    patched[local + 22:local + 26] = size.to_bytes(4, "little")
    position = data.find(b"PK\x01\x02")  # central directory entries
    while position != -1:
        name_length = int.from_bytes(data[position + 28:position + 30], "little")
        if data[position + 46:position + 46 + name_length] == encoded:
            patched[position + 24:position + 28] = size.to_bytes(4, "little")
        position = data.find(b"PK\x01\x02", position + 4)
    return bytes(patched)


def refused(connection, by, data: bytes, name: str = "hostile.xlsx") -> list[dict]:
    before = row_counts()
    job = importing.import_job_create(connection=connection, file_name=name, file_data=data,
                                      by=by, background=False)
    assert job.status == ImportJob.Status.INVALID
    assert row_counts()["ProfileUpdate"] == before["ProfileUpdate"]
    assert bytes(ImportJob.objects.get(pk=job.pk).file_data) == b""  # a refused file is not kept
    return job.errors


UNPACKS_TOO_LARGE = ("The XLSX file unpacks to more than 1 MB; at most that much is read. Save "
                     "it again without empty rows and columns, or split it.")


def test_an_xlsx_whose_shared_strings_unpack_past_the_limit_is_refused_before_reading(
        import_connection, operator):
    strings = (f'<sst xmlns="{SHEET_NS}">'.encode() + b"<si><t>" + b"A" * (8 * 1024 * 1024)
               + b"</t></si></sst>")
    data = handmade_xlsx(HEADER_ROW, shared_strings=strings)
    assert len(data) < 100 * 1024  # a small upload …
    with limits(uncompressed_bytes=1024 * 1024):  # … that unpacks to 8 MB
        assert refused(import_connection, operator, data) == [
            {"row": None, "column": "", "message": UNPACKS_TOO_LARGE}]


def test_an_xlsx_whose_sheet_unpacks_past_the_limit_is_refused(import_connection, operator):
    row = ('<row r="{n}"><c r="A{n}" t="inlineStr"><is><t>mbox3rdPartyId</t></is></c>'
           '<c r="B{n}" t="inlineStr"><is><t>c-{n}</t></is></c></row>')
    data = handmade_xlsx(HEADER_ROW + "".join(row.format(n=n) for n in range(2, 30_000)))
    with limits(uncompressed_bytes=1024 * 1024):
        assert refused(import_connection, operator, data) == [
            {"row": None, "column": "", "message": UNPACKS_TOO_LARGE}]


def test_an_xlsx_that_lies_about_its_unpacked_size_is_refused_as_unreadable(
        import_connection, operator):
    # The directory claims 1 KB; zipfile stops at the declared size, the checksum then fails.
    strings = (f'<sst xmlns="{SHEET_NS}">'.encode() + b"<si><t>" + b"A" * (4 * 1024 * 1024)
               + b"</t></si></sst>")
    data = handmade_xlsx(HEADER_ROW, shared_strings=strings,
                         declared_sizes={"xl/sharedStrings.xml": 1024})
    with limits(uncompressed_bytes=1024 * 1024):
        (error,) = refused(import_connection, operator, data)
    assert error["row"] is None
    assert error["message"] in (UNPACKS_TOO_LARGE, "Not a readable XLSX file (BadZipFile).")


def test_the_unpacked_bytes_are_counted_while_reading_whatever_the_directory_says():
    # Defence in depth: the budget is shared by every member opened, however often.
    payload = b"x" * 10_000
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("part.xml", payload)
    bounded = spreadsheets._BoundedZip(io.BytesIO(out.getvalue()), 15_000)
    assert bounded.read("part.xml") == payload
    with pytest.raises(spreadsheets._UnpackedTooLarge):
        bounded.read("part.xml")  # 20,000 bytes unpacked in all


def test_a_row_numbered_a_million_below_empty_rows_is_named_not_dropped(import_connection,
                                                                        operator):
    # One real row, then a row numbered 1,000,000: the reader would pad every empty row between.
    # The sheet ends at the first run of XLSX_EMPTY_ROWS_END empty rows, and the value below it
    # refuses the file, named — never silently left out (docs, Import and export).
    data = handmade_xlsx(HEADER_ROW + '<row r="1000000"><c r="A1000000" t="inlineStr"><is><t>'
                         'mbox3rdPartyId</t></is></c></row>')
    with limits(rows=5000):
        (error,) = refused(import_connection, operator, data)
    assert error["row"] == 1_000_000
    assert error["message"].startswith("Row 1,000,000 holds data below 1,000 empty rows (from "
                                       "row 2)")


def test_a_csv_of_a_million_empty_lines_is_refused_at_the_row_limit(import_connection,
                                                                    operator):
    data = b"identity_type,identity,note\r\n" + b"\r\n" * 1_000_000
    with limits(rows=5000):
        (error,) = refused(import_connection, operator, data, name="hostile.csv")
    assert error["row"] == 5001 and "more than 5,000 rows" in error["message"]


def test_a_giant_xlsx_cell_is_refused_with_its_cell_named_and_only_an_excerpt_stored(
        import_connection, operator):
    giant = "=" + "g" * 200_000
    data = handmade_xlsx(HEADER_ROW + '<row r="2"><c r="A2" t="inlineStr"><is><t>mbox3rdPartyId'
                         f'</t></is></c><c r="C2" t="inlineStr"><is><t>{giant}</t></is></c></row>')
    with limits(cell_chars=1000):
        (error,) = refused(import_connection, operator, data)
    assert error == {"row": 2, "column": "C", "message": "Row 2, column C: the cell has 200,001 "
                                                         "characters; a cell holds at most 1,000."}


def test_a_giant_header_cell_is_refused_too(import_connection, operator):
    data = f"identity_type,identity,{'h' * 50_000}\r\nmbox3rdPartyId,c-1,x\r\n".encode()
    with limits(cell_chars=1000):
        (error,) = refused(import_connection, operator, data, name="hostile.csv")
    assert (error["row"], error["column"]) == (1, "C") and "50,000 characters" in error["message"]


def test_a_giant_csv_cell_past_the_csv_readers_own_limit_is_refused(import_connection, operator):
    data = ("identity_type,identity,note\r\nmbox3rdPartyId,c-1,\"" + "n" * 300_000
            + "\"\r\n").encode()
    (error,) = refused(import_connection, operator, data, name="hostile.csv")
    assert error["row"] == 2 and "a cell holds at most 65,536 characters" in error["message"]


def test_a_row_wider_than_the_column_limit_is_refused(import_connection, operator):
    # Excel's last column, XFD: the reader pads the row to 16,384 cells.
    data = handmade_xlsx(HEADER_ROW + '<row r="2"><c r="XFD2" t="inlineStr"><is><t>x</t></is>'
                         '</c></row>')
    (error,) = refused(import_connection, operator, data)
    assert error == {"row": 2, "column": "ALM", "message": "Row 2 has more than 1,000 cells; at "
                                                           "most 1,000 columns are read."}


def test_a_csv_line_of_a_million_commas_is_refused_before_it_is_split(import_connection,
                                                                      operator):
    data = b"identity_type,identity,note\r\nmbox3rdPartyId,c-1," + b"," * 1_000_000 + b"x\r\n"
    (error,) = refused(import_connection, operator, data, name="hostile.csv")
    assert error["row"] == 2 and "more than 1,000 cells" in error["message"]


def test_quoted_commas_do_not_count_as_columns(import_connection, operator):
    note = "," * 5000
    data = f'identity_type,identity,note\r\nmbox3rdPartyId,c-1,"{note}"\r\n'.encode()
    job = importing.import_job_create(connection=import_connection, file_name="ok.csv",
                                      file_data=data, by=operator)
    assert job.status == ImportJob.Status.QUEUED, job.errors


def test_trailing_empty_columns_do_not_count_against_the_column_limit(import_connection,
                                                                      operator):
    data = ("identity_type,identity,note" + "," * 3000 + "\r\nmbox3rdPartyId,c-1,x"
            + "," * 3000 + "\r\n").encode()
    job = importing.import_job_create(connection=import_connection, file_name="ok.csv",
                                      file_data=data, by=operator)
    assert job.status == ImportJob.Status.QUEUED, job.errors


def test_a_job_stores_a_bounded_number_of_errors_each_a_bounded_excerpt(import_connection,
                                                                        operator):
    # Every row bad, each quoting a long value: the count is whole, the stored list is capped.
    bad_type = "t" * 5000
    lines = ["identity_type,identity,note"] + [f"{bad_type}{n},c-{n},x" for n in range(3000)]
    data = ("\r\n".join(lines) + "\r\n").encode()
    job = importing.import_job_create(connection=import_connection, file_name="bad.csv",
                                      file_data=data, by=operator, background=False)
    assert job.status == ImportJob.Status.INVALID
    assert job.error_count == 3000 and len(job.errors) == importing.MAX_STORED_ERRORS
    assert max(len(e["message"]) for e in job.errors) <= importing.MAX_ERROR_TEXT
    assert job.errors[0]["message"].endswith("characters in all)")


def test_a_large_upload_answers_at_once_and_its_page_follows_the_background_check(
        client, import_connection, operator, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.PROFILEOPS = {**settings.PROFILEOPS, "IMPORT_BACKGROUND_CHECK_BYTES": 1000}
    rows = "".join(f"mbox3rdPartyId,c-{i},note {i},gold\r\n" for i in range(200))
    upload = SimpleUploadedFile("big.csv", f"identity_type,identity,note,tier\r\n{rows}".encode())
    client.force_login(operator)
    response = client.post(reverse("admin:updates_importjob_import"),
                           {"connection": import_connection.pk, "file": upload})
    assert response.status_code == 302
    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.CHECKING  # not read in the request
    page = client.get(response["Location"])
    assert b"Checking the file" in page.content and page.context["refresh"]
    tasks.check_import_job(job.pk)
    page = client.get(response["Location"])
    assert b"Every row is valid" in page.content and b"Import 200 updates" in page.content
