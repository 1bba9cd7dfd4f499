"""Connections are administrators' business, and every change is audited without the token."""

import json

import pytest

from updates.connections import connection_save
from updates.errors import Refused
from updates.models import AuditEvent, TargetConnection

TOKEN = "tok-SECRET-9f8e7d"


@pytest.mark.django_db
def test_an_administrator_creates_a_connection_and_the_audit_says_a_token_was_set(admin_user):
    conn = connection_save(connection=TargetConnection(label="Acme", client_code="acme"),
                           by=admin_user, new_token=TOKEN)

    assert TargetConnection.objects.get(pk=conn.pk).bearer_token == TOKEN
    event = AuditEvent.objects.get(connection=conn)
    assert event.action == "connection_created" and event.actor == admin_user
    assert event.changes["bearer_token"] == {"before": "not set", "after": "set"}
    assert event.changes["client_code"] == {"before": None, "after": "acme"}
    assert TOKEN not in json.dumps(event.changes)


@pytest.mark.django_db
def test_replacing_and_clearing_the_token_are_audited_by_name_only(admin_user):
    conn = connection_save(connection=TargetConnection(label="Acme", client_code="acme"),
                           by=admin_user, new_token=TOKEN)
    connection_save(connection=conn, by=admin_user, new_token=TOKEN + "-2")
    connection_save(connection=conn, by=admin_user, clear_token=True)

    changes = [e.changes["bearer_token"] for e in AuditEvent.objects.filter(connection=conn)]
    assert changes == [{"before": "not set", "after": "set"},
                       {"before": "set", "after": "replaced"},
                       {"before": "set", "after": "cleared"}]
    assert TargetConnection.objects.get(pk=conn.pk).bearer_token == ""


@pytest.mark.django_db
def test_a_change_records_before_and_after_and_no_change_writes_nothing(admin_user):
    conn = connection_save(connection=TargetConnection(label="Acme", client_code="acme"),
                           by=admin_user)
    conn.quota_limit = 5000
    connection_save(connection=conn, by=admin_user)
    connection_save(connection=conn, by=admin_user)

    events = list(AuditEvent.objects.filter(connection=conn, action="connection_changed"))
    assert len(events) == 1
    assert events[0].changes == {"quota_limit": {"before": 1_000_000, "after": 5000}}


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["operator", "supervisor"])
def test_operators_and_supervisors_may_not_manage_connections(request, role):
    user = request.getfixturevalue(role)
    with pytest.raises(Refused) as refused:
        connection_save(connection=TargetConnection(label="Acme", client_code="acme"), by=user)
    assert refused.value.code == "permission_denied"
    assert not TargetConnection.objects.exists()
    assert not AuditEvent.objects.exists()


@pytest.mark.django_db
def test_a_token_with_a_line_break_is_refused_without_repeating_it(admin_user):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as refused:
        connection_save(connection=TargetConnection(label="Acme", client_code="acme"),
                        by=admin_user, new_token="SECRET\nVALUE")
    assert "SECRET" not in str(refused.value)
    assert not TargetConnection.objects.exists()
