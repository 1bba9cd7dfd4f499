"""A small XLSX that declares a huge sheet cannot hold a web worker (updates/importing.py).

The files are written by hand (the XML inside the zip), as a hostile tool would: rows of empty
cells compress a hundredfold, so 2,000,000 of them fit in about 110 KB — under the 256 KB below
which an upload is checked in the request. Such a file is checked in the background, and reading
any sheet stops at the first run of XLSX_EMPTY_ROWS_END consecutive empty rows.
"""

from __future__ import annotations

import io
import time
import zipfile

import pytest

from updates import importing, spreadsheets
from updates.models import ImportJob, ProfileUpdate

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
_DOC = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def xlsx(sheet_data: str, *, dimension: str | None = None) -> bytes:
    """A minimal workbook whose one sheet holds `sheet_data` (the <sheetData> content)."""
    dim = f'<dimension ref="{dimension}"/>' if dimension else ""
    parts = {
        "[Content_Types].xml": (
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
            'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
            'officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/'
            'sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.'
            'spreadsheetml.worksheet+xml"/></Types>'),
        "_rels/.rels": (
            f'<Relationships xmlns="{_RELS}"><Relationship Id="rId1" Type="{_DOC}/'
            'officeDocument" Target="xl/workbook.xml"/></Relationships>'),
        "xl/workbook.xml": (
            f'<workbook xmlns="{_MAIN}" xmlns:r="{_DOC}"><sheets><sheet name="updates" '
            'sheetId="1" r:id="rId1"/></sheets></workbook>'),
        "xl/_rels/workbook.xml.rels": (
            f'<Relationships xmlns="{_RELS}"><Relationship Id="rId1" Type="{_DOC}/worksheet" '
            'Target="worksheets/sheet1.xml"/></Relationships>'),
        "xl/worksheets/sheet1.xml": (
            f'<worksheet xmlns="{_MAIN}">{dim}<sheetData>{sheet_data}</sheetData></worksheet>'),
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in parts.items():
            archive.writestr(name, '<?xml version="1.0" encoding="UTF-8"?>' + text)
    return out.getvalue()


def row(number: int, *values: str) -> str:
    cells = "".join(f'<c r="{"ABC"[i]}{number}" t="inlineStr"><is><t>{v}</t></is></c>'
                    for i, v in enumerate(values))
    return f'<row r="{number}">{cells}</row>'


HEADER = row(1, "identity_type", "identity", "loan_status")
DATA = "".join(row(n, "mbox3rdPartyId", f"c-{n}", "funded") for n in (2, 3, 4))


@pytest.fixture
def create(connection, operator, django_capture_on_commit_callbacks):
    def _create(data: bytes) -> ImportJob:
        with django_capture_on_commit_callbacks(execute=False):
            return importing.import_job_create(connection=connection, file_name="small.xlsx",
                                               file_data=data, by=operator)
    return _create


def test_a_110_kb_file_of_two_million_empty_rows_is_checked_in_the_background_and_quickly(
        create):
    data = xlsx(HEADER + DATA + "<row><c/><c/><c/></row>" * 2_000_000,
                dimension="A1:C2000004")
    assert len(data) < importing.background_check_bytes() / 2  # about 110 KB

    started = time.monotonic()
    job = create(data)
    assert job.status == ImportJob.Status.CHECKING  # not read in the web request
    importing.import_job_check(job=job)  # what the django-q2 worker runs
    assert time.monotonic() - started < 10  # loose: reading stops after the empty run
    assert (job.status, job.total_rows) == (ImportJob.Status.QUEUED, 3)


def test_a_small_file_whose_sheet_declares_two_million_rows_is_checked_in_the_background(
        create):
    job = create(xlsx(HEADER + DATA, dimension="A1:C2000000"))
    assert job.status == ImportJob.Status.CHECKING
    importing.import_job_check(job=job)
    assert (job.status, job.total_rows) == (ImportJob.Status.QUEUED, 3)


def test_a_sheet_ends_at_the_first_run_of_a_thousand_empty_rows(create):
    """Empty rows below the data end the sheet without being read one by one (README, Import
    and export); a row just inside the run is read as usual."""
    gap = spreadsheets.XLSX_EMPTY_ROWS_END
    just_inside = row(4 + gap - 1, "mbox3rdPartyId", "c-inside", "funded")
    job = create(xlsx(HEADER + DATA + just_inside))
    assert (job.status, job.total_rows) == (ImportJob.Status.QUEUED, 4)

    trailing = "".join(f'<row r="{n}"><c r="A{n}" s="1"/></row>' for n in range(5, 5 + 3 * gap))
    job = create(xlsx(HEADER + DATA + trailing))  # formatted, empty: the sheet's end
    assert (job.status, job.total_rows) == (ImportJob.Status.QUEUED, 3)


@pytest.mark.parametrize("numbered", [True, False], ids=["r-attributes", "counted-rows"])
def test_a_value_below_the_gap_refuses_the_file_naming_its_row(connection, operator,
                                                               numbered):
    """Never silently left out: a row with a value below the empty run is named, and the file is
    refused (nothing is staged); the rest of the sheet is scanned, not parsed row by row."""
    gap = spreadsheets.XLSX_EMPTY_ROWS_END
    below = 5 + gap + 10
    if numbered:
        sheet = HEADER + DATA + row(below, "mbox3rdPartyId", "c-below", "funded")
    else:  # rows without r="N" count one by one, as the reader counts them
        empty = "<row><c/><c/><c/></row>" * (below - 5)
        sheet = HEADER + DATA + empty + ('<row><c t="inlineStr"><is><t>mbox3rdPartyId</t></is>'
                                         '</c></row>')
    job = importing.import_job_create(connection=connection, file_name="gap.xlsx",
                                      file_data=xlsx(sheet), by=operator, background=False)
    assert job.status == ImportJob.Status.INVALID
    assert job.errors == [{"row": below, "column": "", "message": (
        f"Row {below:,} holds data below 1,000 empty rows (from row 5), where the sheet is taken "
        "to end; delete the empty rows and import the file again.")}]
    assert not ProfileUpdate.objects.exists()
