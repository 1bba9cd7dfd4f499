"""updates/rows.py: the sender's plain INSERTs store exactly what bulk_create stores."""

from __future__ import annotations

import datetime as dt

import pytest

from updates import rows
from updates.models import AuditEvent, SendAttempt

pytestmark = pytest.mark.django_db

AT = dt.datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=dt.timezone.utc)


@pytest.fixture
def approved_update(stage):
    return stage()  # any update: the rows only reference it


def stored(model, pk) -> dict:
    values = model.objects.filter(pk=pk).values().get()
    values.pop("id")
    return values


def test_an_audit_row_reads_back_as_bulk_create_writes_it(approved_update):
    fields = {"at": AT, "update_id": approved_update.pk,
              "connection_id": approved_update.connection_id, "action": "acknowledged",
              "from_status": "sending", "to_status": "sent", "comment": "Ünïcode — \"quoted\"",
              "changes": {"attempt": 1, "http_status": 200, "nested": {"a": [1, None]}}}
    [reference] = AuditEvent.objects.bulk_create([AuditEvent(actor=None, **fields)])
    assert rows.insert_rows(AuditEvent, [{"actor_id": None, **fields}]) == 1
    written = AuditEvent.objects.filter(action="acknowledged").exclude(pk=reference.pk).get()
    assert stored(AuditEvent, written.pk) == stored(AuditEvent, reference.pk)
    assert written.at == AT and written.changes["nested"] == {"a": [1, None]}


def test_fields_not_given_take_their_defaults(approved_update):
    rows.insert_rows(AuditEvent, [{"at": AT, "update_id": approved_update.pk, "action": "claimed"}])
    event = AuditEvent.objects.filter(action="claimed").get()
    assert (event.changes, event.comment, event.actor_id, event.mapping_id) == ({}, "", None, None)


def test_an_attempt_reads_back_as_bulk_create_writes_it(approved_update):
    fields = {"update_id": approved_update.pk, "connection_id": approved_update.connection_id,
              "number": 3, "started_at": AT, "method": "GET", "request_bytes": 245,
              "http_status": None, "response_body": "", "latency_ms": None,
              "outcome": "transport", "error": "ConnectTimeout", "worker": "host:1/abcd"}
    [reference] = SendAttempt.objects.bulk_create([SendAttempt(**fields)])
    rows.insert_rows(SendAttempt, [fields])
    written = SendAttempt.objects.exclude(pk=reference.pk).get()
    assert stored(SendAttempt, written.pk) == stored(SendAttempt, reference.pk)


def test_nothing_to_insert_runs_no_statement(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert rows.insert_rows(AuditEvent, []) == 0


def test_an_imported_update_reads_back_as_bulk_create_writes_it(approved_update):
    """The import's path (workflow._insert_import_rows): the same row as bulk_create's, and the
    new row's id back."""
    from updates.models import ProfileUpdate

    fields = {"connection_id": approved_update.connection_id, "identity_type": "mboxPC",
              "identity": "1234567890123-000001.17_0", "reason": "import #1: a.csv",
              "attributes": {"loanStatus": "funded", "callNote": "Ünïcode — \"quoted\", 'x'"},
              "not_before": None, "status": "pending", "created_by_id": approved_update.created_by_id,
              "created_at": AT, "last_edited_by_id": approved_update.created_by_id,
              "last_edited_at": AT, "submitted_at": AT}
    [reference] = ProfileUpdate.objects.bulk_create([ProfileUpdate(**fields)])
    [pk] = rows.insert_rows_returning_pks(ProfileUpdate, [fields])
    assert pk not in (reference.pk, approved_update.pk)
    assert stored(ProfileUpdate, pk) == stored(ProfileUpdate, reference.pk)


def test_every_new_id_comes_back_when_the_rows_take_several_statements(approved_update,
                                                                        monkeypatch):
    columns = len(rows._columns(AuditEvent)[0])
    monkeypatch.setattr(rows, "_max_parameters", lambda connection: 3 * columns)  # 3 rows each
    values = [{"at": AT, "update_id": approved_update.pk, "action": f"row {i}"} for i in range(7)]
    pks = rows.insert_rows_returning_pks(AuditEvent, values)
    assert len(set(pks)) == 7
    assert sorted(AuditEvent.objects.filter(pk__in=pks).values_list("action", flat=True)) == [
        f"row {i}" for i in range(7)]


def test_rows_sent_as_arrays_read_back_as_bulk_create_writes_them(approved_update):
    """insert_rows(as_arrays=True): one INSERT … FROM UNNEST on PostgreSQL (an import's content
    authors), executemany elsewhere — the same rows either way."""
    fields = [{"at": AT, "update_id": approved_update.pk, "action": f"arrays {i}",
               "comment": "Ünïcode", "changes": {"n": i, "none": None}} for i in range(3)]
    references = AuditEvent.objects.bulk_create([AuditEvent(**f) for f in fields])
    assert rows.insert_rows(AuditEvent, fields, as_arrays=True) == 3
    written = AuditEvent.objects.filter(action__startswith="arrays").exclude(
        pk__in=[r.pk for r in references]).order_by("action")
    assert [stored(AuditEvent, w.pk) for w in written] == [
        stored(AuditEvent, r.pk) for r in sorted(references, key=lambda r: r.action)]
