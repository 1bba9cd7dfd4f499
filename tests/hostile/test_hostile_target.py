"""A hostile Target over real HTTP (the emulator's hostile modes): values no database stores,
answers that drip one byte at a time, answers that echo the bearer token. None of them may stop a
run, hold one past its budget by more than one request's deadline, answer 500 or get a secret
stored or shown (issue 22, items 1–3). Run on SQLite and PostgreSQL; item 1 matters on
PostgreSQL, whose jsonb and text refuse NUL and lone surrogates."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
import requests
from django.core.exceptions import ValidationError
from django.urls import reverse

from target_emulator import AdobeAdmin
from tests.conftest import use_adobe_credentials
from tests.helpers import RawAnswers
from updates import reading, sending, target, verification
from updates.models import (
    AuditEvent, ProfileRead, ProfileUpdate, SendAttempt, SendRun, UpdateStatus, VerificationState,
)

S = UpdateStatus
V = VerificationState
MINUTE = dt.timedelta(minutes=1)
TOKEN = "tok-3f9a.Secret_value-42"
# What a test allows above the bound it shows: the machine is shared and busy.
SLACK_SECONDS = 3.0


@pytest.fixture(autouse=True)
def quick(settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "SEND_CONCURRENCY": 4,
                           "VERIFY_SCHEDULE_MINUTES": [5, 15, 60],
                           "VERIFY_FIRST_CHECK_SECONDS": 0}
    reading.read_limiter.reset()


@pytest.fixture
def hostile(emulator_factory):
    return emulator_factory(faithful=True, apply_delay=0.0, token=TOKEN)


@pytest.fixture
def acme(connection, hostile):
    connection.base_url = hostile.base_url
    connection.bearer_token = TOKEN
    connection.save(update_fields=["base_url", "bearer_token"])
    return connection


def fresh(update: ProfileUpdate) -> ProfileUpdate:
    return ProfileUpdate.objects.get(pk=update.pk)


def seed_as_json(emulator, text: str) -> None:
    """Seed through the emulator's HTTP API with JSON text, as a file or a client would: NUL as
    \\u0000, a lone surrogate as \\ud800."""
    answer = requests.post(f"{emulator.base_url}/_emulator/profiles", data=text.encode("ascii"),
                           timeout=5)
    assert answer.status_code == 200, answer.text


NUL_AND_SURROGATE = (
    '{"identity": "%s", "attributes": {"loyaltyTier": "gold\\u0000x", "callNote": "\\ud800",'
    ' "loanStatus": "funded", "plain": "a\\\\u0000b"}}')


# --- 1. a value at Target cannot stop the system -----------------------------------------------

def test_nul_and_lone_surrogates_are_stored_escaped_and_compared_as_target_returned_them(
        acme, stage, hostile):
    seed_as_json(hostile, NUL_AND_SURROGATE % "c-1")
    update = stage(identity="c-1", attributes={"loyaltyTier": "gold", "loanStatus": "funded"})

    read = reading.profile_read(update=update, purpose=ProfileRead.Purpose.DIFF)

    read = ProfileRead.objects.get(pk=read.pk)  # as stored
    assert read.outcome == "found" and read.escaped
    held = {name: entry["value"] for name, entry in read.held.items()}
    assert held == {"loyaltyTier": "gold\x00x", "callNote": "\ud800", "loanStatus": "funded",
                    "plain": "a\\u0000b"}  # the real text "\u0000" stays distinct from a NUL
    assert read.attributes["loyaltyTier"]["value"] == "gold\\u0000x"
    assert read.attributes["plain"]["value"] == "a\\\\u0000b"
    rows = {row.name: row for row in reading.attribute_diff(update, read)}
    assert rows["loyaltyTier"].changes and rows["loyaltyTier"].current_value == "gold\x00x"
    assert not rows["loanStatus"].changes


def test_the_live_diff_answers_200_showing_such_values_escaped(acme, stage, hostile, client,
                                                               supervisor):
    seed_as_json(hostile, NUL_AND_SURROGATE % "c-2")
    update = stage(identity="c-2", attributes={"loyaltyTier": "gold", "callNote": "hello"})
    client.force_login(supervisor)

    response = client.get(reverse("updates_live_diff", args=[update.pk]))

    assert response.status_code == 200
    rows = {row["name"]: row for row in response.json()["rows"]}
    assert rows["loyaltyTier"]["current"] == "gold\\u0000x" and rows["loyaltyTier"]["changes"]
    assert rows["callNote"]["current"] == "\\ud800" and rows["callNote"]["current_escaped"]
    page = client.get(reverse("admin:updates_profileupdate_change", args=[update.pk]))
    assert page.status_code == 200


def test_skip_unchanged_sends_past_such_values_and_leaves_no_batch_in_sending(
        acme, approve, hostile, client, supervisor):
    acme.skip_unchanged = True
    acme.drop_unchanged_attributes = True
    acme.save(update_fields=["skip_unchanged", "drop_unchanged_attributes"])
    seed_as_json(hostile, NUL_AND_SURROGATE % "bad")
    hostile.seed_profile(identity="same", attributes={"loyaltyTier": "gold"})
    bad = approve(identity="bad", attributes={"loyaltyTier": "silver", "callNote": "hi"})
    same = approve(identity="same", attributes={"loyaltyTier": "gold"})

    run = sending.send_due()

    assert not run.error
    assert fresh(bad).status == S.SENT and fresh(same).status == S.UNCHANGED
    assert not ProfileUpdate.objects.filter(status=S.SENDING).exists()
    prior = fresh(bad).prior_values
    assert prior["loyaltyTier"] == {"value": "gold\\u0000x", "modifiedAt": prior["loyaltyTier"][
        "modifiedAt"], "escaped": True}
    plan = verification.revert_plan(fresh(bad))
    assert set(plan.not_revertible) == {"loyaltyTier", "callNote"}
    assert "cannot be staged" in plan.not_revertible["loyaltyTier"]
    client.force_login(supervisor)
    page = client.get(reverse("admin:updates_profileupdate_change", args=[bad.pk]))
    assert page.status_code == 200 and "gold\\u0000x" in page.content.decode()


def test_a_verification_run_checks_the_updates_after_one_with_such_values(acme, approve, hostile):
    for n in range(3):
        hostile.seed_profile(identity=f"v-{n}", attributes={"loyaltyTier": "silver"})
    updates = [approve(identity=f"v-{n}", attributes={"loyaltyTier": "gold"}) for n in range(3)]
    sending.send_due()
    seed_as_json(hostile, NUL_AND_SURROGATE.replace('"gold\\u0000x"', '"\\u0000"') % "v-0")
    acked = fresh(updates[0]).acknowledged_at

    run = verification.updates_verify_due(now=acked + 6 * MINUTE)

    assert run.checked == 3 and run.verified == 2 and run.failed == 0
    bad = fresh(updates[0])
    assert bad.verification_state == V.PENDING and bad.verification_checks == 1
    event = AuditEvent.objects.get(update=bad, action="verification_read")
    assert event.changes["differing"] == ["loyaltyTier"]
    assert "'\\x00'" in event.changes["at_target"]


def test_a_check_that_fails_is_recorded_on_its_update_and_the_run_goes_on(
        acme, approve, hostile, monkeypatch):
    for n in range(3):
        hostile.seed_profile(identity=f"w-{n}", attributes={"loyaltyTier": "silver"})
    updates = [approve(identity=f"w-{n}", attributes={"loyaltyTier": "gold"}) for n in range(3)]
    sending.send_due()
    acked = fresh(updates[0]).acknowledged_at
    real = verification._check_change

    def failing_for_the_first(current, update, read, **kwargs):
        if update.pk == updates[0].pk and read.outcome != ProfileRead.Outcome.ERROR:
            raise ValueError("A string literal cannot contain NUL (0x00) characters.")
        return real(current, update, read, **kwargs)

    monkeypatch.setattr(verification, "_check_change", failing_for_the_first)
    run = verification.updates_verify_due(now=acked + 6 * MINUTE)

    assert run.failed == 1 and run.verified == 2
    bad = fresh(updates[0])
    assert bad.verification_state == V.PENDING and bad.verification_checks == 1
    event = AuditEvent.objects.get(update=bad, action="verification_read")
    assert "the check failed (ValueError)" in event.comment and "NUL" not in event.comment
    assert ProfileRead.objects.filter(update=bad, outcome="error").exists()


def test_a_failure_before_sending_sends_the_batch_whole_and_says_so(
        acme, approve, hostile, monkeypatch):
    acme.skip_unchanged = True
    acme.save(update_fields=["skip_unchanged"])
    updates = [approve(identity=f"s-{n}") for n in range(2)]

    def broken(**kwargs):
        raise RuntimeError("jsonb: unsupported Unicode escape sequence")

    monkeypatch.setattr(verification, "before_send", broken)
    run = sending.send_due()

    assert not run.error and run.acknowledged == 2
    assert {fresh(u).status for u in updates} == {S.SENT}
    assert AuditEvent.objects.filter(action="read_before_send_failed").count() == 2
    assert not ProfileUpdate.objects.filter(status=S.SENDING).exists()


def test_an_answer_body_holding_nul_is_stored(acme, approve, hostile, monkeypatch):
    update = approve(identity="n-1")
    real = target.read_answer
    monkeypatch.setattr(target, "read_answer",
                        lambda status, body, retry_after=None: real(status, body + "\x00\ud800"))

    sending.send_due()

    attempt = SendAttempt.objects.get(update=update)
    assert attempt.response_body.endswith("\\u0000\\ud800")


# --- 2. every call has a wall-clock deadline ---------------------------------------------------

@pytest.fixture
def short_deadlines(settings):
    # Reads: 1 + 1 s; sends: 1 + 1 s. A drip of one byte every 0.3 s never lets one socket read
    # wait 1 s, so only the wall-clock deadline can end the call.
    settings.PROFILEOPS = {**settings.PROFILEOPS, "PROFILE_READ_CONNECT_TIMEOUT": 1.0,
                           "PROFILE_READ_TIMEOUT": 1.0, "CONNECT_TIMEOUT": 1.0,
                           "READ_TIMEOUT": 1.0}
    return 2.0


def test_a_read_that_drips_ends_at_its_deadline_as_not_read(acme, stage, hostile,
                                                            short_deadlines):
    hostile.seed_profile(identity="d-1", attributes={"loyaltyTier": "gold"})
    hostile.configure(drip_seconds=0.3)
    update = stage(identity="d-1")

    began = time.monotonic()
    read = reading.profile_read(update=update, purpose=ProfileRead.Purpose.DIFF)
    took = time.monotonic() - began

    assert took < short_deadlines + SLACK_SECONDS
    assert read.outcome == "error" and "DeadlineExceeded" in read.error


def test_the_live_diff_of_a_dripping_target_answers_within_one_deadline(
        acme, stage, hostile, client, supervisor, short_deadlines):
    hostile.seed_profile(identity="d-2", attributes={"loyaltyTier": "gold"})
    hostile.configure(drip_seconds=0.3)
    update = stage(identity="d-2")
    client.force_login(supervisor)

    began = time.monotonic()
    response = client.get(reverse("updates_live_diff", args=[update.pk]))

    assert time.monotonic() - began < short_deadlines + SLACK_SECONDS
    assert response.status_code == 200 and response.json()["state"] == "error"


def test_a_skip_unchanged_send_run_against_a_drip_ends_within_budget_and_one_deadline(
        acme, approve, hostile, settings, short_deadlines):
    acme.skip_unchanged = True
    acme.save(update_fields=["skip_unchanged"])
    settings.PROFILEOPS = {**settings.PROFILEOPS, "SKIP_UNCHANGED_READ_BUDGET_SECONDS": 1.0}
    updates = [approve(identity=f"p-{n}") for n in range(6)]
    hostile.configure(drip_seconds=0.3)
    budget = 2.0

    began = time.monotonic()
    run = sending.send_due(time_budget=budget)
    took = time.monotonic() - began

    assert took < budget + short_deadlines + SLACK_SECONDS
    assert not ProfileUpdate.objects.filter(status=S.SENDING).exists()
    attempts = list(SendAttempt.objects.filter(update__in=updates))
    assert attempts and all(a.outcome == "transient" and "DeadlineExceeded" in a.error
                            for a in attempts)
    assert {fresh(u).status for u in updates} <= {S.APPROVED, S.FAILED}
    assert SendRun.objects.get(pk=run.pk).finished_at is not None


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_verification_run_against_a_drip_ends_within_budget_and_one_deadline(
        acme, approve, hostile, short_deadlines, settings, concurrency):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "VERIFY_CONCURRENCY": concurrency}
    for n in range(5):
        hostile.seed_profile(identity=f"q-{n}", attributes={"loyaltyTier": "silver"})
    updates = [approve(identity=f"q-{n}", attributes={"loyaltyTier": "gold"}) for n in range(5)]
    sending.send_due()
    acked = fresh(updates[0]).acknowledged_at
    hostile.configure(drip_seconds=0.3)
    budget = 1.0

    began = time.monotonic()
    run = verification.updates_verify_due(now=acked + 6 * MINUTE, time_budget=budget)
    took = time.monotonic() - began

    assert took < budget + short_deadlines + SLACK_SECONDS
    # One reader at a time stops at the budget; four read four at once, each within its
    # deadline (the fifth's slot has passed by the time a reader is free: left for later).
    assert 1 <= run.checked < 5 if concurrency == 1 else run.checked >= 4
    assert run.verified == 0
    checked = [fresh(u) for u in updates if fresh(u).verification_checks]
    assert all(u.verification_state == V.PENDING for u in checked)  # tried again later


def bulk_call(connection, identity: str, timeout=(1.0, 1.0)):
    """bulk_sending.call_target — every bulk upload and status poll goes through it — as a GET of
    a profile, an answer the hostile emulator drips or echoes."""
    from updates import bulk_sending, delivery

    request = target.build_read_request(base_url=connection.base_url,
                                        client_code=connection.client_code,
                                        identity_type="mbox3rdPartyId", identity=identity)
    with delivery.make_session(pool_size=1) as session:
        return bulk_sending.call_target(session, "GET", request.url, connection, headers={},
                                        timeout=timeout)


def test_a_bulk_call_that_drips_ends_at_its_deadline(acme, hostile, short_deadlines):
    hostile.seed_profile(identity="d-9", attributes={"loyaltyTier": "gold"})
    hostile.configure(drip_seconds=0.3)

    began = time.monotonic()
    status, text, error, _ = bulk_call(acme, "d-9")

    assert time.monotonic() - began < short_deadlines + SLACK_SECONDS
    assert (status, text) == (None, "") and error.startswith("DeadlineExceeded")


# --- 3. secrets never come back in what Target answers ----------------------------------------

def test_a_bulk_call_returns_an_echoed_token_redacted(acme, hostile):
    hostile.configure(echo_headers=True)
    hostile.seed_profile(identity="e-9", attributes={"loyaltyTier": "silver"})

    status, text, error, _ = bulk_call(acme, "e-9", timeout=(5.0, 5.0))

    assert status == 200 and "echoedHeaders" in text and "Bearer [redacted]" in text
    assert TOKEN not in text + error


def test_an_echoed_token_is_stored_and_shown_nowhere(acme, approve, hostile, client, supervisor):
    hostile.configure(echo_headers=True)
    hostile.seed_profile(identity="e-1", attributes={"loyaltyTier": "silver"})
    update = approve(identity="e-1", attributes={"loyaltyTier": "gold"})

    sending.send_due()  # the answer echoes the headers: an unexpected answer, kept
    reading.profile_read(update=update, purpose=ProfileRead.Purpose.DIFF)

    attempt = SendAttempt.objects.get(update=update)
    assert "Authorization: Bearer [redacted]" in attempt.response_body
    assert TOKEN not in attempt.response_body + attempt.error + fresh(update).last_error
    read = ProfileRead.objects.filter(update=update).latest("at")
    assert "echoedHeaders" in read.attributes
    assert TOKEN not in json.dumps(read.attributes) + read.error
    assert TOKEN not in json.dumps(list(AuditEvent.objects.values_list("comment", "changes")))
    client.force_login(supervisor)
    for url in (reverse("admin:updates_profileupdate_change", args=[update.pk]),
                reverse("updates_live_diff", args=[update.pk])):
        page = client.get(url)
        assert page.status_code == 200 and TOKEN not in page.content.decode()
    assert "[redacted]" in client.get(
        reverse("admin:updates_profileupdate_change", args=[update.pk])).content.decode()


def test_an_echoed_token_obtained_with_adobe_credentials_is_stored_nowhere(
        connection, approve, emulator_factory):
    twins = emulator_factory(adobe=AdobeAdmin(), echo_headers=True)
    use_adobe_credentials(connection, twins)
    update = approve(identity="e-2", attributes={"loyaltyTier": "gold"})
    sending.send_due()
    reading.profile_read(update=update, purpose=ProfileRead.Purpose.DIFF)
    token = twins.adobe.current_profile_token()
    attempt = SendAttempt.objects.get(update=update)
    assert "Authorization: Bearer [redacted]" in attempt.response_body
    read = ProfileRead.objects.filter(update=update).latest("at")
    assert token not in attempt.response_body + json.dumps(read.attributes)
    assert connection.adobe_client_secret not in attempt.response_body


def test_redaction_is_one_function_over_every_secret_of_the_connection(acme):
    assert acme.secrets() == (TOKEN,)
    text = f'{{"echo": "Authorization: Bearer {TOKEN}", "again": "{TOKEN}"}}\x00'
    shown = target.from_outside(text, acme.secrets())
    assert TOKEN not in shown and shown.endswith("\\u0000")
    # Any bearer token, even one no longer configured, in a body or error text:
    assert target.from_outside("authorization: bearer old-token") == "authorization: bearer [redacted]"


def test_an_alert_delivery_error_keeps_no_secret(acme, monkeypatch):
    from django.utils import timezone

    from updates import alerts
    from updates.models import AlertEvent, AlertRule

    def echoing_mail_server(*args, **kwargs):
        raise OSError(f"550 rejected: Authorization: Bearer {TOKEN}")

    monkeypatch.setattr(alerts, "send_mail", echoing_mail_server)
    rule = AlertRule.objects.create(connection=acme, kind=AlertRule.Kind.TOKEN_REFUSED,
                                    email_to="ops@example.com")
    event = AlertEvent.objects.create(rule=rule, at=timezone.now(), state="firing", text="x: y")

    alerts.deliver(event)

    event.refresh_from_db()
    assert "550 rejected" in event.delivery_error and TOKEN not in event.delivery_error


def test_the_emulator_answers_unstorable_values_as_json_escapes_and_takes_hostile_options(
        emulator_factory):
    from target_emulator.__main__ import build_parser, emulator_from_options

    emulator = emulator_factory(faithful=True)
    seed_as_json(emulator, NUL_AND_SURROGATE % "raw")
    answer = requests.get(f"{emulator.base_url}/rest/v1/profiles/thirdPartyId/raw?client=acme",
                          timeout=5)
    assert answer.status_code == 200 and b'"\\ud800"' in answer.content
    assert json.loads(answer.content)["profileAttributes"]["loyaltyTier"]["value"] == "gold\x00x"

    options = vars(build_parser().parse_args(["--port", "0", "--drip-seconds", "0.5",
                                              "--echo-headers"]))
    config = emulator_from_options(options).config
    assert config["drip_seconds"] == 0.5 and config["echo_headers"] is True


def test_an_ims_error_that_echoes_the_client_secret_is_stored_nowhere(connection, emulator_factory):
    from updates import credentials
    from updates.models import CredentialState

    twins = emulator_factory(adobe=AdobeAdmin(client_secret="echoedsecret"))
    adobe = twins.adobe
    adobe._ims_token = lambda method, body: (401, {"error": adobe.client_secret})  # a hostile IMS
    use_adobe_credentials(connection, twins)
    with pytest.raises(ValidationError) as refused:
        credentials.profile_token(connection)
    assert refused.value.code == credentials.CREDENTIALS_REFUSED
    stored = CredentialState.objects.get(connection=connection).failure + json.dumps(
        list(AuditEvent.objects.values_list("comment", "changes")))
    assert "HTTP 401" in stored
    assert "echoedsecret" not in stored + " ".join(refused.value.messages)


# --- 4. an answer nested past Python's JSON parser is no answer, not a crash --------------------

NESTED_PAST_THE_PARSER = b"[" * 100_000  # RecursionError in json.loads, not ValueError


def test_an_ims_answer_nested_past_the_parser_is_no_token(connection, adobe_emulator):
    # Adobe's IMS cannot be made to answer so; a local server stands in for it.
    from updates import credentials

    use_adobe_credentials(connection, adobe_emulator)
    with RawAnswers(200, b'{"access_token": ' + NESTED_PAST_THE_PARSER) as ims:
        connection.ims_token_url = ims.url + "/ims/token/v3"
        connection.save(update_fields=["ims_token_url"])
        with pytest.raises(ValidationError) as refused:
            credentials.profile_token(connection)
    assert ims.requests == ["POST /ims/token/v3"]
    assert refused.value.code == credentials.ADOBE_UNAVAILABLE
