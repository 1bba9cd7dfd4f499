"""Adobe's part of forgetting a visitor (updates/privacy.py, privacy_service.py,
privacy_events.py) against the emulator's Privacy Service over real HTTP: filed, polled with
backoff within a daily cap, complete / not found / error, the event hook, alerts.

The connection holds Adobe credentials (issue 26): the IMS token comes from the emulator's IMS,
which the emulator's Privacy Service checks."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings
from django.utils import timezone

from target_emulator.adobe_admin import AdobeAdmin
from tests.conftest import FORGOTTEN_IDENTITY, make_user, use_adobe_credentials
from updates import alerts, forgetting, privacy, privacy_service
from updates.models import AlertRule, AuditEvent, PrivacyRequest

State = PrivacyRequest.State
HOUR = dt.timedelta(hours=1)


@pytest.fixture
def dpo(db):
    return make_user("dpo", "Data protection officers")


@pytest.fixture
def adobe(settings, acme, emulator_factory):
    """Adobe: IMS, Target's Admin API and the Privacy Service, at a faithful emulator that
    `acme` now points at with its Adobe credentials."""
    emulator = emulator_factory(faithful=True, apply_delay=60.0, adobe=AdobeAdmin())
    use_adobe_credentials(acme, emulator)
    settings.PROFILEOPS = {**settings.PROFILEOPS, "PRIVACY_SERVICE_URL":
                           emulator.base_url + "/data/core/privacy"}
    return emulator


def forget(acme, by, identity=FORGOTTEN_IDENTITY):
    return forgetting.visitor_forget(connection=acme, identity_type="mbox3rdPartyId",
                                     identity=identity, regulation="gdpr", by=by)


def test_a_forgotten_visitor_is_deleted_at_target_and_the_request_completes(acme, adobe, dpo):
    adobe.seed_profile(identity=FORGOTTEN_IDENTITY, attributes={"tier": "gold"})

    request = forget(acme, dpo)
    assert request.state == State.FILED and request.adobe_job_id.startswith("emulator-job-")
    [job] = adobe.privacy.jobs()
    assert job["userKey"] == f"profileops-{request.pk}"  # our key names no person

    assert privacy.privacy_requests_poll(now=timezone.now() + HOUR) == 1
    request.refresh_from_db()
    assert request.state == State.COMPLETE and request.finished_at
    assert [a["kind"] for a in request.adobe_answers] == ["file", "status"]
    assert ("mbox3rdPartyId", FORGOTTEN_IDENTITY) not in adobe.profiles  # a read is now 404
    assert AuditEvent.objects.filter(action="privacy_complete").count() == 1


def test_polls_back_off_in_hours_and_stop_at_the_daily_cap(acme, adobe, dpo, settings):
    adobe.privacy.configure(processing_seconds=10 * 3600)
    first = forget(acme, dpo, identity="first-1")
    now = timezone.now()
    assert first.next_poll_at - first.filed_at == HOUR
    assert privacy.privacy_requests_poll(now=now) == 0  # not due yet
    assert privacy.privacy_requests_poll(now=now + HOUR) == 1
    first.refresh_from_db()
    assert first.state == State.PROCESSING
    assert first.next_poll_at == now + HOUR + 4 * HOUR  # then 12, then every 24

    settings.PROFILEOPS = {**settings.PROFILEOPS, "PRIVACY_POLLS_PER_DAY": 2}
    forget(acme, dpo, identity="second-2")
    assert privacy.privacy_requests_poll(now=now + 6 * HOUR) == 1  # one left today
    assert privacy.privacy_requests_poll(now=now + 7 * HOUR) == 0  # the cap holds


def test_an_id_target_does_not_hold_ends_as_not_found(acme, adobe, dpo):
    request = forget(acme, dpo, identity="never-at-target")
    privacy.privacy_requests_poll(now=timezone.now() + HOUR)
    request.refresh_from_db()
    assert request.state == State.NOT_FOUND
    assert privacy_service.NOT_FOUND_WORDS in request.adobe_answers[-1]["message"].lower()


def test_an_error_raises_the_alert_and_is_never_polled_again(acme, adobe, dpo):
    rule = AlertRule.objects.create(connection=acme, kind=AlertRule.Kind.PRIVACY_ERROR)
    adobe.privacy.configure(fail=True)
    request = forget(acme, dpo)
    privacy.privacy_requests_poll(now=timezone.now() + HOUR)
    request.refresh_from_db()
    assert request.state == State.ERROR and "by hand" not in request.note
    assert privacy.privacy_requests_poll(now=timezone.now() + 48 * HOUR) == 0  # no blind retry

    [event] = alerts.alerts_check()
    assert event.rule == rule and f"#{request.pk}" in event.text
    assert FORGOTTEN_IDENTITY not in event.text


def test_a_failed_filing_is_filed_again_by_hand_with_the_identity(acme, adobe, dpo, settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS,
                           "PRIVACY_SERVICE_URL": "http://127.0.0.1:9/data/core/privacy"}
    request = forget(acme, dpo)
    assert request.state == State.ERROR and "must be filed by hand" in request.note

    settings.PROFILEOPS = {**settings.PROFILEOPS, "PRIVACY_SERVICE_URL":
                           adobe.base_url + "/data/core/privacy"}
    with pytest.raises(ValidationError):
        privacy.privacy_request_file(request=request, identity="someone-else", by=dpo)
    request = privacy.privacy_request_file(request=request, identity=FORGOTTEN_IDENTITY, by=dpo)
    assert request.state == State.FILED


def test_the_event_hook_reads_the_named_job_now(acme, adobe, dpo, client, settings):
    adobe.seed_profile(identity=FORGOTTEN_IDENTITY, attributes={"tier": "gold"})
    request = forget(acme, dpo)
    url = "/privacy/adobe-events/s3cret-token-for-adobe/"
    assert client.post(url, b"{}", content_type="application/json").status_code == 404  # unset
    settings.PROFILEOPS = {**settings.PROFILEOPS, "PRIVACY_EVENTS_TOKEN": "s3cret-token-for-adobe"}
    assert client.get(url, {"challenge": "abc"}).content == b"abc"
    assert client.post("/privacy/adobe-events/wrong/", b"{}",
                       content_type="application/json").status_code == 404
    event = {"event": {"com.adobe.platform.gdpr.productcomplete": {
        "jobId": request.adobe_job_id, "status": "complete (not trusted)"}}}

    answer = client.post(url, event, content_type="application/json")

    assert answer.json() == {"job_ids": 1, "read": 1}
    request.refresh_from_db()
    assert request.state == State.COMPLETE  # from Adobe's own answer, read just now
