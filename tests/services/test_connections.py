"""Connections are administrators' business, and every change is audited without the token."""

import json

import pytest

from tests.helpers import another_value
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
@pytest.mark.parametrize("field", ["verify_after_send", "skip_unchanged",
                                   "drop_unchanged_attributes"])
def test_what_a_connection_does_with_customer_data_is_audited_when_changed(admin_user, field):
    # These three were once left out of a hand-kept list of audited fields.
    conn = connection_save(connection=TargetConnection(label="Acme", client_code="acme"),
                           by=admin_user)
    before = getattr(conn, field)
    setattr(conn, field, not before)
    connection_save(connection=conn, by=admin_user)

    (event,) = AuditEvent.objects.filter(connection=conn, action="connection_changed")
    assert event.changes == {field: {"before": before, "after": not before}}


def test_every_field_an_administrator_can_change_is_audited():
    # Derived from the model: a field added later is audited without anyone remembering to.
    from updates import connections

    editable = {f.name for f in TargetConnection._meta.concrete_fields
                if f.editable and not f.primary_key}
    secrets = {"bearer_token", "adobe_client_secret"}
    assert set(connections._AUDITED_FIELDS) == editable - secrets
    assert not secrets & set(connections._AUDITED_FIELDS)  # audited as set/cleared, by name


@pytest.mark.django_db
@pytest.mark.parametrize("field", [
    f for f in TargetConnection._meta.concrete_fields
    if f.editable and not f.primary_key and f.name not in ("bearer_token", "adobe_client_secret")],
    ids=lambda f: f.name)
def test_a_change_of_any_field_an_administrator_can_edit_writes_an_audit_row(admin_user, field):
    """Every editable field of the model, one by one — a field added later included: none can
    change what a connection does without an audit row naming it. (The secrets are audited by
    name only, above and below.) With Adobe credentials, so that each of them can change alone
    and the credentials stay complete."""
    conn = connection_save(connection=TargetConnection(
        label="Acme", client_code="acme", adobe_client_id="client-1", target_tenant="acme"),
        by=admin_user, new_client_secret="s3cret-value")
    before = getattr(conn, field.name)
    setattr(conn, field.name, another_value(field, before))
    connection_save(connection=conn, by=admin_user)

    (event,) = AuditEvent.objects.filter(connection=conn, action="connection_changed")
    assert event.changes == {field.name: {"before": before, "after": getattr(conn, field.name)}}


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


# --- rules live in the service: the model's full validation, whoever calls ------------------

from django.core.exceptions import ValidationError  # noqa: E402


@pytest.mark.django_db
@pytest.mark.parametrize("fields, key", [
    ({"client_code": "ac me"}, "client_code"),
    ({"client_code": "acme/../other"}, "client_code"),
    ({"client_code": ""}, "client_code"),
    ({"label": ""}, "label"),
    ({"base_url": "ftp://127.0.0.1/"}, "base_url"),
    ({"base_url": "javascript:alert(1)"}, "base_url"),
    ({"base_url": "file:///etc/passwd"}, "base_url"),
    ({"base_url": "127.0.0.1:8765"}, "base_url"),
    ({"quota_limit": 0}, "quota_limit"),
    ({"quota_limit": -5}, "quota_limit"),
])
def test_the_service_refuses_what_the_model_refuses_on_its_field(admin_user, fields, key):
    values = {"label": "Acme", "client_code": "acme", **fields}
    with pytest.raises(ValidationError) as refused:
        connection_save(connection=TargetConnection(**values), by=admin_user)
    assert key in refused.value.message_dict
    assert not TargetConnection.objects.exists()
    assert not AuditEvent.objects.exists()


@pytest.mark.django_db
def test_an_http_or_https_base_url_is_accepted(admin_user):
    for n, url in enumerate(["http://127.0.0.1:8765", "https://proxy.example.com/target"]):
        connection_save(connection=TargetConnection(label=f"C{n}", client_code=f"c{n}",
                                                    base_url=url), by=admin_user)
    assert TargetConnection.objects.count() == 2


@pytest.mark.django_db
def test_a_second_connection_with_the_same_client_code_is_refused_on_that_field(admin_user):
    connection_save(connection=TargetConnection(label="Acme", client_code="acme"), by=admin_user)
    with pytest.raises(ValidationError) as refused:
        connection_save(connection=TargetConnection(label="Other", client_code="acme"),
                        by=admin_user)
    assert "client_code" in refused.value.message_dict


@pytest.mark.django_db
def test_a_change_the_model_refuses_leaves_the_stored_connection_as_it_was(admin_user):
    conn = connection_save(connection=TargetConnection(label="Acme", client_code="acme"),
                           by=admin_user)
    conn.quota_limit = 0
    with pytest.raises(ValidationError):
        connection_save(connection=conn, by=admin_user, new_token=TOKEN)
    stored = TargetConnection.objects.get(pk=conn.pk)
    assert (stored.quota_limit, stored.bearer_token) == (1_000_000, "")
    assert AuditEvent.objects.filter(connection=conn).count() == 1


BAD_TOKENS = [
    "SECRET\nVALUE", "SECRET\r\nX-Injected: 1", "SECRET VALUE", "SECRET\tVALUE",
    "SECRET\x00VALUE", "SECRET\x7fVALUE", "SECRET\x85VALUE", "SECRET\u00a0VALUE",
    "SECRETéVALUE", "SECRET€VALUE", "SECRET\u202eVALUE", "SECRET\u200bVALUE",
]


@pytest.mark.django_db
@pytest.mark.parametrize("token", BAD_TOKENS, ids=[repr(t[6:-5]) for t in BAD_TOKENS])
def test_a_token_no_http_header_can_carry_is_refused_without_quoting_it(admin_user, token):
    with pytest.raises(ValidationError) as refused:
        connection_save(connection=TargetConnection(label="Acme", client_code="acme"),
                        by=admin_user, new_token=token)
    assert list(refused.value.message_dict) == ["bearer_token"]
    text = str(refused.value) + repr(refused.value.message_dict)
    assert "SECRET" not in text and "VALUE" not in text
    assert not TargetConnection.objects.exists()


@pytest.mark.django_db
def test_a_token_of_visible_ascii_is_stored_as_given(admin_user):
    jwt_like = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl-_~+/=="
    conn = connection_save(connection=TargetConnection(label="Acme", client_code="acme"),
                           by=admin_user, new_token=jwt_like)
    assert TargetConnection.objects.get(pk=conn.pk).bearer_token == jwt_like


@pytest.mark.django_db
def test_a_connection_with_an_unusable_stored_token_can_still_be_deactivated(admin_user):
    # Stored before this rule existed (or through the ORM): deactivating it must still work.
    conn = TargetConnection.objects.create(label="Acme", client_code="acme",
                                           bearer_token="old\ntoken")
    conn.active = False
    connection_save(connection=conn, by=admin_user)
    assert TargetConnection.objects.get(pk=conn.pk).active is False
    connection_save(connection=conn, by=admin_user, new_token=TOKEN)
    assert TargetConnection.objects.get(pk=conn.pk).bearer_token == TOKEN


@pytest.mark.django_db
@pytest.mark.parametrize("overrides, says", [
    ({"base_url": "ftp://127.0.0.1/"}, "Enter an http:// or https:// URL."),
    ({"quota_limit": "0"}, "greater than or equal to 1"),
    ({"client_code": "ac/me"}, "letters, digits"),
    ({"new_token": "tök€n-SECRET"}, "only visible ASCII"),
])
def test_the_admin_form_shows_the_models_refusals_on_the_field(client, admin_user, overrides,
                                                                says):
    client.force_login(admin_user)
    data = {"label": "Acme", "client_code": "acme", "base_url": "", "quota_limit": "1000",
            "active": "on", "new_token": "", **overrides}
    response = client.post("/admin/updates/targetconnection/add/", data)
    assert response.status_code == 200
    html = response.content.decode()
    assert says in html and "SECRET" not in html
    assert not TargetConnection.objects.exists()


@pytest.mark.django_db
def test_adobe_credentials_are_saved_complete_and_the_secret_is_audited_by_name_only(admin_user):
    conn = TargetConnection(label="Adobe", client_code="adobe", adobe_client_id="client-1",
                            target_tenant="acme")
    connection_save(connection=conn, by=admin_user, new_client_secret="s3cret-value")
    event = AuditEvent.objects.get(connection=conn)
    assert event.changes["adobe_client_secret"] == {"before": "not set", "after": "set"}
    assert "s3cret-value" not in str(event.changes)
    assert TargetConnection.objects.get(pk=conn.pk).has_adobe_credentials
    conn.target_tenant = ""
    with pytest.raises(ValidationError) as refused:
        connection_save(connection=conn, by=admin_user)
    assert refused.value.error_dict["__all__"][0].code == "incomplete_credentials"
    conn.refresh_from_db()
    connection_save(connection=conn, by=admin_user, clear_credentials=True)
    stored = TargetConnection.objects.get(pk=conn.pk)
    assert (stored.adobe_client_id, stored.adobe_client_secret, stored.target_tenant) == ("", "", "")
    assert AuditEvent.objects.filter(connection=conn).last().changes["adobe_client_secret"] == {
        "before": "set", "after": "cleared"}
