"""Adobe's part of forgetting a visitor (updates/privacy.py, privacy_service.py,
privacy_events.py) against the emulator's Privacy Service over real HTTP: filed, polled with
backoff within a daily cap, complete / not found / error, the event hook, alerts.

The connection holds Adobe credentials (issue 26): the IMS token comes from the emulator's IMS,
which the emulator's Privacy Service checks."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from target_emulator.adobe_admin import AdobeAdmin
from tests.conftest import FORGOTTEN_IDENTITY, make_user, use_adobe_credentials
from tests.helpers import RawAnswers, at_once
from updates import alerts, forgetting, privacy, privacy_service
from updates.errors import Refused
from updates.models import AlertRule, AuditEvent, CredentialState, PrivacyRequest

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
    now = within_todays_utc_day(seven_hours_from=timezone.now())
    assert first.next_poll_at - first.filed_at == HOUR
    due_an_hour_after(now, first)
    assert privacy.privacy_requests_poll(now=now) == 0  # not due yet
    assert privacy.privacy_requests_poll(now=now + HOUR) == 1
    first.refresh_from_db()
    assert first.state == State.PROCESSING
    assert first.next_poll_at == now + HOUR + 4 * HOUR  # then 12, then every 24

    settings.PROFILEOPS = {**settings.PROFILEOPS, "PRIVACY_POLLS_PER_DAY": 2}
    due_an_hour_after(now, forget(acme, dpo, identity="second-2"))
    assert privacy.privacy_requests_poll(now=now + 6 * HOUR) == 1  # one left today
    assert privacy.privacy_requests_poll(now=now + 7 * HOUR) == 0  # the cap holds


def within_todays_utc_day(*, seven_hours_from: dt.datetime) -> dt.datetime:
    """A poll clock whose next seven hours stay in the UTC day the reads are recorded in (they
    are stamped with the real time; the cap counts a UTC day): run at 18:00 UTC, "seven hours
    later" would be tomorrow, with a fresh cap."""
    real = seven_hours_from
    return real - 8 * HOUR if real.hour >= 8 else real


def due_an_hour_after(now: dt.datetime, request: PrivacyRequest) -> None:
    PrivacyRequest.objects.filter(pk=request.pk).update(next_poll_at=now + HOUR)


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


def test_the_event_hook_refuses_json_nested_past_the_parser(client, settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "PRIVACY_EVENTS_TOKEN": "s3cret-token-for-adobe"}
    answer = client.post("/privacy/adobe-events/s3cret-token-for-adobe/", b"[" * 100_000,
                         content_type="application/json")
    assert answer.status_code == 400  # RecursionError in the parser: refused, not a 500


def test_a_filing_answered_with_json_nested_past_the_parser_is_an_error_to_file_by_hand(
        acme, adobe, dpo, settings):
    # The Privacy Service cannot be made to answer so; a local server stands in for it (the IMS
    # token still comes from the emulator's IMS).
    with RawAnswers(201, b'{"jobs": ' + b"[" * 100_000) as service:
        settings.PROFILEOPS = {**settings.PROFILEOPS, "PRIVACY_SERVICE_URL": service.url}
        request = forget(acme, dpo)
    assert service.requests == ["POST " + privacy_service.JOBS_PATH]
    assert request.state == State.ERROR and "without a job id" in request.note


# --- one status read at a time ------------------------------------------------------------------

@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_polls_at_once_read_the_job_once(acme, adobe, dpo):
    # The schedule and an event (or two workers) polling the same job at the same moment.
    adobe.privacy.configure(processing_seconds=10 * 3600)
    request = forget(acme, dpo)
    adobe.configure(latency=0.5)  # the first read is still at Adobe when the second starts

    reads = at_once(lambda: privacy.privacy_requests_poll(job_ids=[request.adobe_job_id]))

    assert sorted(reads, key=str) == [0, 1]
    request.refresh_from_db()
    assert request.polls == 1 and request.state == State.PROCESSING
    assert [a["kind"] for a in request.adobe_answers] == ["file", "status"]
    assert request.poll_started_at is None
    assert request.next_poll_at - timezone.now() > 0.9 * HOUR  # the backoff's first step, once


def test_a_read_under_way_is_left_alone_and_one_left_by_a_dead_process_is_taken(acme, adobe,
                                                                                 dpo):
    request = forget(acme, dpo)
    PrivacyRequest.objects.filter(pk=request.pk).update(
        poll_started_at=timezone.now() - dt.timedelta(minutes=1))
    assert privacy.privacy_requests_poll(job_ids=[request.adobe_job_id]) == 0

    died_at = timezone.now() - privacy.filing_claim() - dt.timedelta(minutes=1)
    PrivacyRequest.objects.filter(pk=request.pk).update(poll_started_at=died_at)
    assert privacy.privacy_requests_poll(job_ids=[request.adobe_job_id]) == 1
    request.refresh_from_db()
    assert request.polls == 1 and request.poll_started_at is None


# --- one filing at a time; nothing written meanwhile is overwritten ----------------------------

def file_again(request, dpo):
    return privacy.privacy_request_file(request=request, identity=FORGOTTEN_IDENTITY, by=dpo)


def unfiled(acme, dpo):
    return forgetting.visitor_forget(connection=acme, identity_type="mbox3rdPartyId",
                                     identity=FORGOTTEN_IDENTITY, regulation="gdpr", by=dpo,
                                     file_at_target=False)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_filings_at_once_open_one_job_at_adobe_and_refuse_the_second(acme, adobe, dpo):
    request = unfiled(acme, dpo)
    adobe.configure(latency=0.5)  # the first filing is still at Adobe when the second starts

    outcomes = at_once(lambda: file_again(PrivacyRequest.objects.get(pk=request.pk), dpo))

    [filed] = [o for o in outcomes if isinstance(o, PrivacyRequest)]
    [refused] = [o for o in outcomes if isinstance(o, Exception)]
    assert isinstance(refused, Refused) and refused.code in ("in_flight", "wrong_state")
    assert filed.state == State.FILED and len(adobe.privacy.jobs()) == 1
    request.refresh_from_db()
    assert request.filing_started_at is None
    assert AuditEvent.objects.filter(action="privacy_filed").count() == 1


def test_a_filing_under_way_is_refused_and_one_left_by_a_dead_process_is_filed_again(
        acme, adobe, dpo):
    request = unfiled(acme, dpo)
    PrivacyRequest.objects.filter(pk=request.pk).update(
        filing_started_at=timezone.now() - dt.timedelta(minutes=1))
    with pytest.raises(Refused, match="being filed with Adobe right now"):
        file_again(request, dpo)
    assert adobe.privacy.jobs() == []

    died_at = timezone.now() - privacy.filing_claim() - dt.timedelta(minutes=1)
    PrivacyRequest.objects.filter(pk=request.pk).update(filing_started_at=died_at)
    request = file_again(request, dpo)

    assert request.state == State.FILED and request.filing_started_at is None
    event = AuditEvent.objects.get(action="privacy_filed")
    assert event.changes["unanswered_filing_at"] == died_at.isoformat()  # Adobe may hold two


def test_a_second_filing_while_the_first_waits_for_adobe_is_refused_as_in_flight(
        acme, adobe, dpo, monkeypatch):
    request = unfiled(acme, dpo)
    real, refusals = privacy._call, []

    def call_and_file_again(*args, **kwargs):
        with pytest.raises(Refused) as refused:  # a colleague's click, while this one waits
            file_again(PrivacyRequest.objects.get(pk=request.pk), dpo)
        refusals.append(refused.value.code)
        return real(*args, **kwargs)

    monkeypatch.setattr(privacy, "_call", call_and_file_again)
    assert file_again(request, dpo).state == State.FILED
    assert refusals == ["in_flight"] and len(adobe.privacy.jobs()) == 1


def test_a_filing_that_cannot_reach_adobe_releases_its_claim(acme, adobe, dpo, settings):
    request = unfiled(acme, dpo)
    settings.PROFILEOPS = {**settings.PROFILEOPS,
                           "PRIVACY_SERVICE_URL": "http://127.0.0.1:9/data/core/privacy"}
    request = file_again(request, dpo)
    assert request.state == State.ERROR and "must be filed by hand" in request.note
    request.refresh_from_db()
    assert request.filing_started_at is None


def test_a_filing_without_credentials_releases_its_claim(acme, adobe, dpo):
    request = unfiled(acme, dpo)
    acme.adobe_org_id = ""
    acme.save(update_fields=["adobe_org_id"])
    request = file_again(PrivacyRequest.objects.get(pk=request.pk), dpo)
    assert "has no IMS org ID" in request.note and request.state == State.LOCAL_DONE
    request.refresh_from_db()
    assert request.filing_started_at is None


def test_a_filing_whose_answer_never_came_may_have_opened_a_job_and_says_so(
        acme, adobe, dpo, settings):
    request = unfiled(acme, dpo)
    adobe.privacy.configure(processing_seconds=3600)
    settings.PROFILEOPS = {**settings.PROFILEOPS, "READ_TIMEOUT": 0.5}
    adobe.configure(latency=1.5)  # Adobe takes the job, its answer comes after our timeout

    request = file_again(request, dpo)

    assert request.state == State.ERROR and len(adobe.privacy.jobs()) == 1
    assert "may have opened a job" in request.note and f"profileops-{request.pk}" in request.note
    adobe.configure(latency=0.0)
    request = file_again(request, dpo)  # the person looked at Adobe's UI and files again
    assert request.state == State.FILED
    event = AuditEvent.objects.get(action="privacy_filed")
    assert event.changes["unanswered_filing_at"] == request.adobe_answers[0]["at"]


def lift_while_adobe_answers(monkeypatch, request, admin_user):
    """Lift the suppression while the call to Adobe is on its way (after it left, before its
    answer is recorded): the real call, with the lift slipped in behind it."""
    real = privacy._call

    def call_then_lift(*args, **kwargs):
        answer = real(*args, **kwargs)
        forgetting.suppression_lift(request=request, by=admin_user, comment="signed up again")
        return answer

    monkeypatch.setattr(privacy, "_call", call_then_lift)


def test_a_suppression_lifted_during_a_filing_stays_lifted(acme, adobe, dpo, admin_user,
                                                           monkeypatch):
    request = unfiled(acme, dpo)
    lift_while_adobe_answers(monkeypatch, request, admin_user)

    filed = file_again(request, dpo)

    request.refresh_from_db()
    assert filed.state == request.state == State.FILED
    assert request.suppression_lifted_at is not None and request.suppression_lifted_by == admin_user


def test_a_suppression_lifted_during_a_poll_stays_lifted(acme, adobe, dpo, admin_user,
                                                         monkeypatch):
    request = forget(acme, dpo)
    lift_while_adobe_answers(monkeypatch, request, admin_user)

    assert privacy.privacy_requests_poll(now=timezone.now() + HOUR) == 1

    request.refresh_from_db()
    assert request.state == State.NOT_FOUND and request.polls == 1
    assert request.suppression_lifted_at is not None


def test_a_privacy_service_that_drips_ends_at_the_calls_deadline(acme, adobe, dpo, settings):
    request = forget(acme, dpo)  # the IMS token is fetched (and kept) before the drip begins
    settings.PROFILEOPS = {**settings.PROFILEOPS, "CONNECT_TIMEOUT": 1.0, "READ_TIMEOUT": 1.0}
    adobe.configure(drip_seconds=0.3)  # no single socket read waits 1 s: only the deadline ends it

    began = time.monotonic()
    assert privacy.privacy_requests_poll(now=timezone.now() + HOUR) == 1
    took = time.monotonic() - began

    assert took < 2.0 + 3.0  # the deadline (connect + read) and slack for a busy machine
    request.refresh_from_db()
    assert request.state == State.FILED and request.next_poll_at > timezone.now() + HOUR
    assert request.adobe_answers[-1]["message"] == (
        "Adobe could not be reached (DeadlineExceeded).")


def test_a_privacy_answer_that_echoes_the_token_is_stored_redacted(acme, adobe, dpo):
    request = forget(acme, dpo)
    token = CredentialState.objects.get(connection=acme).ims_token
    adobe.configure(echo_headers=True)  # Target's message quotes our headers back

    assert privacy.privacy_requests_poll(now=timezone.now() + HOUR) == 1

    request.refresh_from_db()
    kept = json.dumps(request.adobe_answers) + request.note + json.dumps(
        list(AuditEvent.objects.values_list("comment", "changes")))
    assert "Authorization: Bearer [redacted]" in kept and token not in kept
