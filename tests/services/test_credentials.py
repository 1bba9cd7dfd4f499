"""updates/credentials.py against the emulator's IMS and Admin API twins (target_emulator/
adobe_admin.py): the profile token obtained, shared, renewed when it expires, fetched once more
on a 401, minted only when none is valid, rotated only on purpose; every step audited."""

from __future__ import annotations

import datetime as dt
import logging
import time

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from target_emulator.adobe_admin import AdobeAdmin
from tests.conftest import use_adobe_credentials
from updates import credentials, reading, sending, verification
from updates.models import (AuditEvent, CredentialState, ProfileRead, ProfileUpdate,
                            UpdateStatus)

pytestmark = pytest.mark.django_db
S = UpdateStatus


@pytest.fixture
def acme(connection, adobe_emulator):
    return use_adobe_credentials(connection, adobe_emulator)


def actions(connection) -> list[str]:
    return list(AuditEvent.objects.filter(connection=connection, action__in=list(
        credentials.AUDIT_ACTIONS)).values_list("action", flat=True))


def test_a_pasted_token_is_the_profile_token(connection):
    connection.bearer_token = "pasted-123"
    connection.save()
    assert not credentials.has_adobe_credentials(connection)
    assert credentials.profile_token(connection) == "pasted-123"
    with pytest.raises(ValidationError) as refused:
        credentials.ims_access_token(connection)
    assert refused.value.code == credentials.NO_CREDENTIALS


def test_the_first_token_is_minted_then_every_caller_shares_it(acme, adobe_emulator):
    adobe = adobe_emulator.adobe
    token = credentials.profile_token(acme)
    assert token == adobe.current_profile_token()
    assert credentials.profile_token(acme) == token
    assert (adobe.counts.token_gets, adobe.counts.token_posts, adobe.counts.ims_tokens) == (1, 1, 1)
    assert actions(acme) == [credentials.IMS_TOKEN_OBTAINED, credentials.PROFILE_TOKEN_MINTED]
    state = CredentialState.objects.get(connection=acme)
    assert state.profile_source == CredentialState.Source.MINTED
    assert state.profile_expires_at > state.renewed_at


def test_an_existing_token_at_target_is_fetched_never_replaced(acme, adobe_emulator):
    adobe = adobe_emulator.adobe
    adobe.answer("POST", "/acme/target/authentication/token", "authorizationScope=profile_api",
                 *_another_tools_call(adobe))  # another tool made the token
    theirs = adobe.current_profile_token()
    assert credentials.profile_token(acme) == theirs
    assert adobe.counts.posts_while_valid == 0
    assert actions(acme)[-1] == credentials.PROFILE_TOKEN_FETCHED


def _another_tools_call(adobe):
    status, answer = adobe.answer("POST", "/ims/token/v3", "", {}, (
        f"grant_type=client_credentials&client_id={adobe.client_id}"
        f"&client_secret={adobe.client_secret}").encode())
    return {"Authorization": f"Bearer {answer['access_token']}", "x-api-key": adobe.client_id}, b""


def test_an_expired_token_is_replaced_and_a_refused_request_retried_once(
        acme, adobe_emulator, approve):
    adobe = adobe_emulator.adobe
    first = approve()
    assert sending.send_due().acknowledged == 1
    adobe.expire_profile_token()  # Target's clock, not ours: the stored token still looks valid
    second = approve()
    run = sending.send_due()
    assert run.acknowledged == 1 and run.failed == 0
    assert ProfileUpdate.objects.get(pk=second.pk).status == S.SENT
    assert first.pk != second.pk
    assert adobe.counts.posts_while_valid == 0
    assert adobe.counts.token_posts == 2  # the first token, and the one after expiry
    sent = [r["authorization"] for r in adobe_emulator.received]
    assert sent[1] == sent[0] and sent[2] != sent[0]  # refused once, then sent with the new one


def test_a_wrong_secret_sends_nothing_and_says_why(connection, adobe_emulator, approve):
    use_adobe_credentials(connection, adobe_emulator, secret="not-the-secret")
    update = approve()
    run = sending.send_due()
    assert (run.claimed, run.requests_sent) == (0, 0)
    assert adobe_emulator.received == []
    assert ProfileUpdate.objects.get(pk=update.pk).status == S.APPROVED  # waits, never failed
    state = CredentialState.objects.get(connection=connection)
    assert "refused the client ID and secret" in state.failure
    assert "not-the-secret" not in state.failure
    assert actions(connection) == [credentials.TOKEN_RENEWAL_FAILED]
    with pytest.raises(ValidationError) as refused:
        credentials.profile_token(connection)
    assert refused.value.code == credentials.CREDENTIALS_REFUSED


def test_a_forced_rotation_mints_at_once_and_is_audited_with_who(acme, adobe_emulator,
                                                                  admin_user, supervisor):
    old = credentials.profile_token(acme)
    with pytest.raises(ValidationError):
        credentials.profile_token_rotate(connection=acme, by=supervisor)
    credentials.profile_token_rotate(connection=acme, by=admin_user)
    new = credentials.profile_token(acme)
    assert new != old and new == adobe_emulator.adobe.current_profile_token()
    event = AuditEvent.objects.filter(action=credentials.PROFILE_TOKEN_ROTATED).get()
    assert event.actor == admin_user
    assert old not in str(event.changes) and new not in str(event.changes)


def test_tokens_renew_across_several_short_lifetimes_without_a_refused_request(
        acme, adobe_emulator, approve):
    """Compressed lifetimes: a profile token lives 1.2 s, an IMS token 2 s; updates are sent in
    rounds for about five seconds (four to five profile tokens)."""
    adobe = adobe_emulator.adobe
    adobe.profile_token_lifetime, adobe.ims_lifetime = 1.2, 2.0
    began, rounds = time.monotonic(), 0
    while time.monotonic() - began < 5:
        for _ in range(3):
            approve()
        run = sending.send_due()
        assert (run.acknowledged, run.failed, run.retried) == (3, 0, 0)
        rounds += 1
        time.sleep(0.2)
    assert adobe.counts.posts_while_valid == 0
    assert adobe.counts.profile_refused == 0  # no request met an expired token
    assert adobe.counts.token_posts >= 4  # the lifetimes really ran out
    assert ProfileUpdate.objects.filter(status=S.SENT).count() == 3 * rounds
    minted = actions(acme).count(credentials.PROFILE_TOKEN_MINTED)
    assert minted == adobe.counts.token_posts  # an audit row per renewal


def test_a_live_diff_read_and_verification_fetch_the_token_again_after_it_expired(
        acme, adobe_emulator, approve, stage):
    """The reader's side of the rule: a 401 from the read API, the token fetched once more (a
    new one minted: none was valid), the read made once more — nothing stored as refused."""
    adobe = adobe_emulator.adobe
    update = approve()
    sending.send_due()
    adobe.expire_profile_token()
    read = reading.profile_read(update=update, purpose=ProfileRead.Purpose.DIFF)
    assert read.outcome == ProfileRead.Outcome.FOUND
    adobe.expire_profile_token()
    acked = ProfileUpdate.objects.get(pk=update.pk).acknowledged_at
    verification.updates_verify_due(now=acked)  # scheduled
    run = verification.updates_verify_due(now=acked + dt.timedelta(days=2))
    assert (run.checked, run.verified, run.failed) == (1, 1, 0)
    assert not ProfileRead.objects.filter(http_status__in=[401, 403]).exists()
    assert adobe.counts.posts_while_valid == 0
    assert adobe.counts.profile_refused == 2  # one per expiry, each retried once


def test_no_token_or_secret_reaches_the_logs(connection, adobe_emulator, approve, caplog):
    use_adobe_credentials(connection, adobe_emulator, secret="wrong-secret-in-no-log")
    with caplog.at_level(logging.DEBUG):
        sending.send_due()  # refused by IMS
        use_adobe_credentials(connection, adobe_emulator)
        approve()
        sending.send_due()
        adobe_emulator.adobe.expire_profile_token()
        approve()
        sending.send_due()
    state = CredentialState.objects.get(connection=connection)
    for secret in ("wrong-secret-in-no-log", connection.adobe_client_secret, state.ims_token,
                   state.profile_token):
        assert secret not in caplog.text
    assert "token renewal failed (credentials_refused)" in caplog.text


def test_a_token_target_gives_as_0_seconds_left_is_waited_out_not_replaced(emulator_factory,
                                                                           connection):
    # Adobe's expiresIn is whole seconds, rounded down: "0" is a token still valid for up to a
    # second, and a POST then would break every other user of it.
    emulator = emulator_factory(adobe=AdobeAdmin(profile_token_lifetime=1.6, whole_seconds=True))
    acme = use_adobe_credentials(connection, emulator)
    adobe = emulator.adobe
    until = time.monotonic() + 5
    while time.monotonic() < until:
        assert credentials.profile_token(acme) == adobe.current_profile_token()
        time.sleep(0.05)
    assert adobe.counts.token_posts >= 3  # several lifetimes ran out
    assert adobe.counts.posts_while_valid == 0


def test_a_token_answer_that_cannot_be_read_mints_nothing(acme, adobe_emulator, monkeypatch):
    # A 200 whose body is no token answer (a proxy's page, a cut answer) says nothing about
    # Target's token: minting then could replace a valid one. Adobe's servers cannot be made to
    # answer so; the boundary here is the module's one HTTP function.
    adobe = adobe_emulator.adobe
    credentials.profile_token(acme)
    adobe.expire_profile_token()
    CredentialState.objects.filter(connection=acme).update(profile_refresh_at=timezone.now())
    real_http = credentials._http

    def garbled_get(method, url, connection, **kwargs):
        status, payload = real_http(method, url, connection, **kwargs)
        return (200, None) if method == "GET" and "authentication" in url else (status, payload)

    monkeypatch.setattr(credentials, "_http", garbled_get)
    posts = adobe.counts.token_posts
    with pytest.raises(ValidationError) as refused:
        credentials.profile_token(acme)
    assert refused.value.code == credentials.ADOBE_UNAVAILABLE
    assert adobe.counts.token_posts == posts
