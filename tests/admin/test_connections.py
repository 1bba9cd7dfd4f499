"""The Target connection admin: administrators only, and a bearer token that is write-only."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from tests.conftest import make_connection, use_adobe_credentials
from updates import credentials, reading, sending
from updates.models import ProfileRead, TargetConnection

TOKEN = "tok-3f9a1c0d-very-secret-value"
NEW_TOKEN = "tok-88e1-the-replacement-secret"


@pytest.fixture
def secured(db):
    return make_connection("secured", bearer_token=TOKEN)


def change_url(connection) -> str:
    return reverse("admin:updates_targetconnection_change", args=[connection.pk])


def form_data(connection, **overrides) -> dict:
    data = {"label": connection.label, "client_code": connection.client_code,
            "base_url": connection.base_url, "quota_limit": connection.quota_limit,
            "active": "on" if connection.active else "", "new_token": ""}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def token_of(connection) -> str:
    return TargetConnection.objects.get(pk=connection.pk).bearer_token


def test_the_token_never_appears_in_the_list_the_change_page_or_the_add_page(
        client, admin_user, secured):
    client.force_login(admin_user)
    pages = [reverse("admin:updates_targetconnection_changelist"),
             reverse("admin:updates_targetconnection_changelist") + "?q=secured",
             change_url(secured),
             reverse("admin:updates_targetconnection_add"),
             reverse("admin:updates_targetconnection_history", args=[secured.pk])]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        assert TOKEN not in response.content.decode(), url
    change = client.get(change_url(secured)).content.decode()
    assert 'type="password"' in change and "Leave empty to keep the current token" in change
    assert '<div class="readonly">set</div>' in change  # stored, and said so — not shown


def test_an_empty_token_field_keeps_the_stored_token(client, admin_user, secured):
    client.force_login(admin_user)
    response = client.post(change_url(secured), form_data(secured, quota_limit=500))
    assert response.status_code == 302
    assert token_of(secured) == TOKEN
    assert TargetConnection.objects.get(pk=secured.pk).quota_limit == 500


def test_a_new_token_replaces_the_stored_one_and_is_never_echoed(client, admin_user, secured):
    client.force_login(admin_user)
    response = client.post(change_url(secured), form_data(secured, new_token=NEW_TOKEN),
                           follow=True)
    assert token_of(secured) == NEW_TOKEN
    assert NEW_TOKEN not in response.content.decode()
    assert not LogEntry.objects.filter(change_message__contains=NEW_TOKEN).exists()


def test_the_clear_token_checkbox_removes_the_token(client, admin_user, secured):
    client.force_login(admin_user)
    client.post(change_url(secured), form_data(secured, clear_token="on"))
    assert token_of(secured) == ""


def test_a_form_with_errors_does_not_echo_the_token_typed(client, admin_user, secured):
    client.force_login(admin_user)
    response = client.post(change_url(secured),
                           form_data(secured, quota_limit=0, new_token=NEW_TOKEN))
    assert response.status_code == 200
    assert NEW_TOKEN not in response.content.decode()
    assert token_of(secured) == TOKEN


def test_setting_and_clearing_the_token_at_once_is_refused(client, admin_user, secured):
    client.force_login(admin_user)
    response = client.post(change_url(secured),
                           form_data(secured, new_token=NEW_TOKEN, clear_token="on"))
    assert response.status_code == 200
    assert "Either enter a new token or clear the current one" in response.content.decode()
    assert token_of(secured) == TOKEN


def test_a_token_with_a_line_break_inside_is_refused_without_repeating_it(client, admin_user,
                                                                          secured):
    client.force_login(admin_user)
    bad = "abc\r\nX-Injected: 1"
    response = client.post(change_url(secured), form_data(secured, new_token=bad))
    content = response.content.decode()
    assert response.status_code == 200
    assert "contains no spaces, line breaks or control characters" in content
    assert "X-Injected" not in content
    assert token_of(secured) == TOKEN


def test_adding_a_connection_with_a_token(client, admin_user):
    client.force_login(admin_user)
    response = client.post(reverse("admin:updates_targetconnection_add"), {
        "label": "New", "client_code": "newco", "base_url": "", "quota_limit": 1000000,
        "active": "on", "new_token": NEW_TOKEN})
    assert response.status_code == 302
    assert TargetConnection.objects.get(client_code="newco").bearer_token == NEW_TOKEN


def test_every_connection_form_field_has_a_label_and_help_text(client, admin_user, secured):
    client.force_login(admin_user)
    form = client.get(change_url(secured)).context["adminform"].form
    for name, field in form.fields.items():
        assert field.label, name
        assert field.help_text, name


def test_connections_are_for_administrators_only(client, operator, supervisor, secured):
    for user in (operator, supervisor):
        client.force_login(user)
        for url in (reverse("admin:updates_targetconnection_changelist"), change_url(secured),
                    reverse("admin:updates_targetconnection_add")):
            assert client.get(url).status_code == 403, (user, url)


def test_connections_cannot_be_deleted_only_deactivated(client, admin_user, secured):
    client.force_login(admin_user)
    response = client.get(reverse("admin:updates_targetconnection_delete", args=[secured.pk]))
    assert response.status_code == 403
    assert TargetConnection.objects.filter(pk=secured.pk).exists()


# --- Adobe credentials ----------------------------------------------------------------------

SECRET = "p8e-the-client-secret-never-shown"


def test_an_administrator_enters_credentials_and_the_secret_is_never_shown_again(
        client, admin_user, secured, adobe_emulator):
    client.force_login(admin_user)
    base = adobe_emulator.base_url
    response = client.post(change_url(secured), form_data(
        secured, adobe_client_id="profileops-client", new_client_secret=SECRET,
        adobe_org_id="1234ABCD5678@AdobeOrg", target_tenant="acme",
        ims_token_url=base + "/ims/token/v3", admin_api_url=base), follow=True)
    assert SECRET not in response.content.decode()
    stored = TargetConnection.objects.get(pk=secured.pk)
    assert stored.adobe_client_secret == SECRET and stored.has_adobe_credentials
    page = client.get(change_url(secured)).content.decode()
    assert SECRET not in page
    assert "no token obtained yet" in page and "Rotate the profile token" in page


def test_credentials_without_a_secret_or_tenant_are_refused_on_the_form(client, admin_user,
                                                                         secured):
    client.force_login(admin_user)
    response = client.post(change_url(secured), form_data(secured, adobe_client_id="c-1"))
    assert response.status_code == 200
    assert "need the client ID, the client secret and the tenant together" in \
        response.content.decode()


def test_a_rotation_is_confirmed_first_and_says_what_it_breaks(client, admin_user, connection,
                                                               adobe_emulator, supervisor):
    use_adobe_credentials(connection, adobe_emulator)
    old = credentials.profile_token(connection)
    rotate = reverse("admin:updates_targetconnection_rotate_token", args=[connection.pk])
    client.force_login(supervisor)
    assert client.post(rotate).status_code == 403
    client.force_login(admin_user)
    confirmation = client.get(rotate).content.decode()
    assert "stops working at once" in confirmation and "refused (HTTP 401)" in confirmation
    assert adobe_emulator.adobe.current_profile_token() == old  # looking changes nothing
    response = client.post(rotate, follow=True)
    assert "Target minted a new profile token" in response.content.decode()
    new = adobe_emulator.adobe.current_profile_token()
    assert new != old and credentials.profile_token(connection) == new
    page = client.get(change_url(connection)).content.decode()
    assert "rotated by an administrator" in page.lower()
    assert old not in page and new not in page


def test_as_the_docs_say_credentials_entered_once_and_nobody_touches_a_token_again(
        client, admin_user, supervisor, connection, adobe_emulator, approve):
    """docs/user-guide/connecting-to-target.md, end to end: the administrator enters the
    credentials on the form; sending and the live diff then work across token expiries."""
    client.force_login(admin_user)
    base = adobe_emulator.base_url
    client.post(change_url(connection), form_data(
        connection, base_url=base, adobe_client_id="profileops-client",
        new_client_secret="profileops-secret", target_tenant="acme",
        ims_token_url=base + "/ims/token/v3", admin_api_url=base))
    client.force_login(supervisor)
    for _ in range(3):  # three tokens, each expired at Target before the next round
        update = approve()
        assert sending.send_due().acknowledged == 1
        reading.read_limiter.reset()
        assert client.get(reverse("updates_live_diff", args=[update.pk])).status_code == 200
        assert ProfileRead.objects.filter(update=update).latest("at").outcome == \
            ProfileRead.Outcome.FOUND
        adobe_emulator.adobe.expire_profile_token()
    assert TargetConnection.objects.get(pk=connection.pk).bearer_token == ""  # never pasted
    assert adobe_emulator.adobe.counts.posts_while_valid == 0


def test_the_connection_page_shows_when_the_shared_token_expires_and_was_renewed(
        client, admin_user, secured):
    import datetime as dt

    from django.utils import formats, timezone

    from updates.models import CredentialState

    client.force_login(admin_user)
    assert "Token expires" in client.get(change_url(secured)).content.decode()
    expires = timezone.now() + dt.timedelta(hours=20)
    renewed = timezone.now() - dt.timedelta(hours=4)
    CredentialState.objects.update_or_create(
        connection=secured, defaults={"profile_expires_at": expires, "renewed_at": renewed})
    page = client.get(change_url(secured)).content.decode()
    for at in (expires, renewed):
        shown = formats.date_format(timezone.localtime(at), "DATETIME_FORMAT")
        assert shown in page, shown
