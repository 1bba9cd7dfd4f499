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
