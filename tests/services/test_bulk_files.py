"""The Bulk Profile Update protocol (updates/bulk_files.py): pure, no database."""

from __future__ import annotations

import pytest

from updates import bulk_files
from updates.bulk_files import BulkRow


def _row(pk: int, identity: str = "c-1", kind: str = "mbox3rdPartyId", **attributes: str):
    return BulkRow(pk, kind, identity, attributes)


def test_files_group_rows_by_version_id_column_and_attribute_set_and_split_at_the_limits():
    rows = [_row(1, a="x"), _row(2, b="y"), _row(3, a="z", b="w"), _row(4, a="q"),
            _row(5, "p-1", "mboxPC", a="1"), _row(6, a="r")]
    plans = bulk_files.build_files(rows, pc_id_bulk="v1", max_rows=2, max_bytes=10_000)
    shapes = [(p.version, p.id_column, p.names, p.update_ids) for p in plans]
    assert shapes == [("v2", "thirdPartyId", ("a",), [1, 4]), ("v2", "thirdPartyId", ("b",), [2]),
                      ("v2", "thirdPartyId", ("a", "b"), [3]), ("v1", "pcId", ("a",), [5]),
                      ("v2", "thirdPartyId", ("a",), [6])]
    assert plans[2].body == b"batch=thirdPartyId,a,b\nc-1,z,w\n"


def test_the_byte_limit_is_kept_below_and_one_row_too_large_is_refused():
    rows = [_row(n, a="v" * 20) for n in range(1, 6)]
    header = len(b"batch=thirdPartyId,a\n")
    line = len(b"c-1," + b"v" * 20 + b"\n")
    plans = bulk_files.build_files(rows, pc_id_bulk="", max_rows=100,
                                   max_bytes=header + 2 * line + 1)
    assert [len(p.update_ids) for p in plans] == [2, 2, 1]
    assert all(len(p.body) < header + 2 * line + 1 for p in plans)
    with pytest.raises(ValueError):
        bulk_files.build_files(rows[:1], pc_id_bulk="", max_rows=10, max_bytes=10)


@pytest.mark.parametrize("row, pc_id_bulk, problem", [
    (_row(1, a=""), "v1", "empty value"),
    (_row(1, "p-1", "mboxPC", a="x"), "single", "mboxPC"),
    (_row(1), "v1", "without attributes"),
    (_row(1, "p-1", "mboxPC", a="x"), "v2", ""),
])
def test_what_cannot_go_bulk(row, pc_id_bulk, problem):
    found = bulk_files.route_problem(row, pc_id_bulk)
    assert (problem in found) if problem else found == ""


def test_answers_are_read_without_an_xml_parser():
    accepted = bulk_files.read_upload_answer(200, (
        "<response><success>true</success><batchStatus>http://mboxedge45.tt.omtrdc.net/m2/demo/"
        "profile/batchStatus?batchId=demo-1&amp;x=1</batchStatus><message>Batch submitted for "
        "processing</message></response>"))
    assert accepted.outcome == "accepted"
    assert accepted.status_url.endswith("batchId=demo-1&x=1")
    assert bulk_files.read_upload_answer(200, "<response><success>false</success><message>bad"
                                         "</message></response>").outcome == "refused"
    assert bulk_files.read_upload_answer(503, "").outcome == "transient"
    assert bulk_files.read_upload_answer(None, "").outcome == "transient"
    assert bulk_files.read_upload_answer(400, "nope").outcome == "refused"
    status, counts = bulk_files.read_status_answer(
        "<response><batchId>b</batchId><status>complete</status><batchSize>3</batchSize>"
        "<consumedCount>3</consumedCount><successfulUpdates>2</successfulUpdates>"
        "<profilesNotFound>1</profilesNotFound><failedUpdates>0</failedUpdates></response>")
    assert status == "complete"
    assert counts == {"consumedCount": 3, "successfulUpdates": 2, "profilesNotFound": 1,
                      "failedUpdates": 0, "batchSize": 3}
    assert bulk_files.batch_id_of("http://e.tt.omtrdc.net/x?batchId=abc&y=1") == "abc"
    assert bulk_files.with_details("http://e/x?batchId=1") == "http://e/x?batchId=1&showDetails=true"


@pytest.mark.parametrize("url, base, allowed", [
    ("http://mboxedge45.tt.omtrdc.net/m2/demo/profile/batchStatus?batchId=1",
     "https://demo.tt.omtrdc.net", True),
    ("http://127.0.0.1:9999/m2/demo/profile/batchStatus", "http://127.0.0.1:8765", True),
    ("http://127.0.0.1:9999/m2/demo/profile/batchStatus", "https://demo.tt.omtrdc.net", False),
    ("http://169.254.169.254/latest/meta-data", "https://demo.tt.omtrdc.net", False),
    ("http://evil.example/tt.omtrdc.net", "https://demo.tt.omtrdc.net", False),
    ("http://u:p@edge.tt.omtrdc.net/x", "https://demo.tt.omtrdc.net", False),
    ("file:///etc/passwd", "http://127.0.0.1:8765", False),
])
def test_the_batch_status_url_is_called_only_on_a_target_edge_host(url, base, allowed):
    assert (bulk_files.status_url_problem(url, base) == "") is allowed
