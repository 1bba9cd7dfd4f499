"""The admin's side of the data lifecycle (updates/admin/privacy.py and the update page): forget
a visitor from a form, see the evidence without the identity, and purged values shown as
"purged on <date> …" on the update page, the timeline and in exports."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.conftest import FORGOTTEN_IDENTITY, make_user
from tests.helpers import logged_in
from updates import exporting, retention
from updates.hashing import keyed_hash
from updates.models import PrivacyRequest, ProfileUpdate, UpdateStatus


@pytest.fixture
def dpo(db):
    return make_user("dpo", "Data protection officers")


def forget_on_the_page(client, acme, identity=FORGOTTEN_IDENTITY):
    return client.post(reverse("admin:updates_privacyrequest_forget"), {
        "connection": acme.pk, "identity_type": "mbox3rdPartyId", "identity": identity,
        "regulation": "gdpr", "confirm": "on"}, follow=True)


def test_a_dpo_forgets_a_visitor_on_the_page_and_sees_the_counts(client, acme, visitor_history,
                                                                  dpo):
    page = forget_on_the_page(logged_in(client, dpo), acme)

    request = PrivacyRequest.objects.get()
    assert page.redirect_chain[-1][0] == reverse("admin:updates_privacyrequest_change",
                                                 args=[request.pk])
    html = page.content.decode()
    assert "Cancelled 1 open updates" in html and "2 profile updates" in html
    assert FORGOTTEN_IDENTITY not in html and request.identity_hash not in html
    assert "Local purge done" in html


def test_the_page_asks_for_the_confirmation(client, acme, dpo):
    page = logged_in(client, dpo).post(reverse("admin:updates_privacyrequest_forget"), {
        "connection": acme.pk, "identity_type": "mbox3rdPartyId", "identity": "x",
        "regulation": "gdpr"})
    assert page.status_code == 200 and not PrivacyRequest.objects.exists()


def test_operators_and_supervisors_cannot_open_the_forget_page(client, operator, supervisor):
    for user in (operator, supervisor):
        page = logged_in(client, user).get(reverse("admin:updates_privacyrequest_forget"))
        assert page.status_code == 403


def test_the_report_holds_the_counts_and_no_personal_data(client, acme, visitor_history, dpo,
                                                          admin_user):
    forget_on_the_page(logged_in(client, dpo), acme)
    request = PrivacyRequest.objects.get()
    report = logged_in(client, admin_user).get(
        reverse("admin:updates_privacyrequest_report", args=[request.pk])).content.decode()
    assert f"privacy request #{request.pk}" in report and "profile updates: 2" in report
    assert "Asked by: dpo" in report
    assert FORGOTTEN_IDENTITY not in report and request.identity_hash not in report
    month = timezone.now().strftime("%Y-%m")
    monthly = client.get(reverse("admin:updates_privacyrequest_monthly"),
                         {"connection": acme.pk, "month": month}).content.decode()
    assert "Privacy requests: 1" in monthly and FORGOTTEN_IDENTITY not in monthly


def test_a_forgotten_update_shows_the_purge_note_not_its_values(client, acme, visitor_history,
                                                                dpo, admin_user):
    sent, _ = visitor_history
    forget_on_the_page(logged_in(client, dpo), acme)
    page = logged_in(client, admin_user).get(
        reverse("admin:updates_profileupdate_change", args=[sent.pk])).content.decode()
    today = timezone.now().strftime("%Y-%m-%d")
    assert f"purged on {today}: the visitor was forgotten" in page
    assert "platinum-X9Q" not in page and FORGOTTEN_IDENTITY not in page
    assert keyed_hash("platinum-X9Q") not in page  # the timeline says "(purged)"
    assert "(purged)" in page


def test_retention_says_under_whose_retention_in_pages_and_exports(client, acme, approve,
                                                                   admin_user):
    update = approve(identity="old-visitor", attributes={"loyaltyTier": "bronze-77"})
    ProfileUpdate.objects.filter(pk=update.pk).update(
        status=UpdateStatus.CANCELLED, created_at=timezone.now() - dt.timedelta(days=400),
        last_edited_at=timezone.now() - dt.timedelta(days=400), decided_at=None)
    retention.retention_purge()
    note = f"purged on {timezone.now():%Y-%m-%d} under the retention of {acme.label}"

    page = logged_in(client, admin_user).get(
        reverse("admin:updates_profileupdate_change", args=[update.pk])).content.decode()
    assert note in page and "bronze-77" not in page

    out = io.BytesIO()
    exporting.updates_export(by=admin_user, file_format="csv", out=out)
    exported = out.getvalue().decode("utf-8-sig")
    assert note in exported and "bronze-77" not in exported and "old-visitor" not in exported


def test_the_request_page_files_again_and_lifts_the_suppression(client, acme, dpo, admin_user,
                                                                 stage):
    forget_on_the_page(logged_in(client, dpo), acme, identity="forgotten-on-a-page")
    request = PrivacyRequest.objects.get()
    client.post(reverse("admin:updates_privacyrequest_file", args=[request.pk]),
                {"identity": "someone-else"})
    request.refresh_from_db()
    assert request.state == PrivacyRequest.State.LOCAL_DONE  # a wrong identity files nothing
    logged_in(client, admin_user).post(
        reverse("admin:updates_privacyrequest_lift", args=[request.pk]),
        {"comment": "signed up again"})
    request.refresh_from_db()
    assert not request.suppressing
    stage(identity="forgotten-on-a-page")  # may be staged again
