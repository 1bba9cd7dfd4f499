"""Leaving attributes Target already holds out of the request (the connection's
drop_unchanged_attributes, in updates/verification.before_send), over real HTTP against the
faithful emulator: the request carries only what changes, the approval and verification still
cover every attribute."""

from __future__ import annotations

import datetime as dt

import pytest

from updates import quota, reading, sending, verification
from updates.models import AuditEvent, ProfileUpdate, SendAttempt, UpdateStatus, VerificationState

S = UpdateStatus
V = VerificationState
MINUTE = dt.timedelta(minutes=1)


@pytest.fixture(autouse=True)
def quick(settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "SEND_CONCURRENCY": 2,
                           "VERIFY_SCHEDULE_MINUTES": [5, 15, 60],
                           "VERIFY_FIRST_CHECK_SECONDS": 0}
    reading.read_limiter.reset()


@pytest.fixture
def acme(connection, target):
    connection.base_url = target.base_url
    connection.drop_unchanged_attributes = True
    connection.save(update_fields=["base_url", "drop_unchanged_attributes"])
    return connection


def fresh(update: ProfileUpdate) -> ProfileUpdate:
    return ProfileUpdate.objects.get(pk=update.pk)


def test_only_the_changed_attributes_are_sent_and_one_request_is_counted(acme, approve, target):
    target.seed_profile(identity="c-1", attributes={"loyaltyTier": "gold", "loanStatus": "open"})
    update = approve(identity="c-1", attributes={"loyaltyTier": "gold", "loanStatus": "funded"})
    approved_hash = fresh(update).approved_hash

    run = sending.send_due()

    update = fresh(update)
    assert update.status == S.SENT and run.requests_sent == 1
    [received] = target.received
    assert received["attributes"] == {"loanStatus": "funded"}  # loyaltyTier left out
    assert quota.window_usage(connection=acme.pk) == 1
    assert SendAttempt.objects.filter(update=update).count() == 1
    # What was approved is unchanged: the fingerprint still covers both attributes.
    assert update.attributes == {"loyaltyTier": "gold", "loanStatus": "funded"}
    assert update.approved_hash == approved_hash == update.content_hash
    assert update.unsent_unchanged == ["loyaltyTier"]
    event = AuditEvent.objects.get(update=update, action="unchanged_attributes_left_out")
    assert event.comment.startswith("Sent without unchanged attributes: loyaltyTier (Target")
    assert event.changes["left_out"] == ["loyaltyTier"]


def test_verification_checks_the_attributes_left_out_too(acme, approve, target):
    # Stamped long ago: the left-out attribute keeps that stamp, from well before the send.
    target.seed_profile(identity="c-2", attributes={"loyaltyTier": "gold", "loanStatus": "open"},
                        modified_at="2026-01-01T00:00:00.000Z")
    update = approve(identity="c-2", attributes={"loyaltyTier": "gold", "loanStatus": "funded"})
    sending.send_due()
    acked = fresh(update).acknowledged_at
    target.advance(61)  # the emulator's apply delay

    run = verification.updates_verify_due(now=acked + 6 * MINUTE)

    update = fresh(update)
    assert run.verified == 1 and update.verification_state == V.VERIFIED
    verified = AuditEvent.objects.get(update=update, action="verified")
    assert verified.changes["matching"] == ["loanStatus", "loyaltyTier"]


def test_an_attribute_left_out_that_no_longer_holds_the_value_is_not_verified(
        acme, approve, target):
    target.seed_profile(identity="c-3", attributes={"loyaltyTier": "gold", "loanStatus": "open"})
    update = approve(identity="c-3", attributes={"loyaltyTier": "gold", "loanStatus": "funded"})
    sending.send_due()
    acked = fresh(update).acknowledged_at
    # Someone else changed the left-out attribute at Target after our read.
    target.seed_profile(identity="c-3", attributes={"loyaltyTier": "bronze", "loanStatus": "open"})
    target.advance(61)

    verification.updates_verify_due(now=acked + 6 * MINUTE)

    update = fresh(update)
    assert update.verification_state == V.PENDING
    event = AuditEvent.objects.filter(update=update, action="verification_read").get()
    assert event.changes["differing"] == ["loyaltyTier"]


def test_with_the_option_off_every_attribute_is_sent(acme, approve, target):
    acme.drop_unchanged_attributes = False
    acme.save(update_fields=["drop_unchanged_attributes"])
    target.seed_profile(identity="c-4", attributes={"loyaltyTier": "gold", "loanStatus": "open"})
    update = approve(identity="c-4", attributes={"loyaltyTier": "gold", "loanStatus": "funded"})

    sending.send_due()

    [received] = target.received
    assert received["attributes"] == {"loyaltyTier": "gold", "loanStatus": "funded"}
    assert fresh(update).unsent_unchanged == []
    assert not AuditEvent.objects.filter(action="unchanged_attributes_left_out").exists()


def test_an_update_whose_every_attribute_is_unchanged_is_sent_whole_without_skip_unchanged(
        acme, approve, target):
    # Leaving everything out would be an empty request: without skip-unchanged it is sent as is.
    target.seed_profile(identity="c-5", attributes={"loyaltyTier": "gold"})
    update = approve(identity="c-5", attributes={"loyaltyTier": "gold"})

    sending.send_due()

    [received] = target.received
    assert received["attributes"] == {"loyaltyTier": "gold"}
    assert fresh(update).status == S.SENT and fresh(update).unsent_unchanged == []


def test_a_visitor_target_does_not_know_is_sent_whole(acme, approve, target):
    update = approve(identity="unknown", attributes={"loyaltyTier": "gold", "loanStatus": "funded"})

    sending.send_due()

    [received] = target.received
    assert received["attributes"] == {"loyaltyTier": "gold", "loanStatus": "funded"}
    assert fresh(update).unsent_unchanged == []



def test_a_retry_recomputes_what_is_left_out(acme, approve, target):
    target.seed_profile(identity="c-7", attributes={"loyaltyTier": "gold", "loanStatus": "open"})
    update = approve(identity="c-7", attributes={"loyaltyTier": "gold", "loanStatus": "funded"})
    target.configure(error_rate=1.0)  # the first attempt fails and is retried
    sending.send_due()
    assert fresh(update).status == S.APPROVED and fresh(update).unsent_unchanged == ["loyaltyTier"]
    acme.drop_unchanged_attributes = False
    acme.save(update_fields=["drop_unchanged_attributes"])
    target.configure(error_rate=0.0)

    sending.send_due(now=fresh(update).next_attempt_at + MINUTE)

    update = fresh(update)
    assert update.status == S.SENT and update.unsent_unchanged == []
    assert target.received[-1]["attributes"] == {"loyaltyTier": "gold", "loanStatus": "funded"}


# --- the admin: the option and the update page --------------------------------------------------

def test_the_update_page_says_what_the_connection_leaves_out(acme, approve, target, client,
                                                               supervisor):
    from django.urls import reverse

    target.seed_profile(identity="c-6", attributes={"loyaltyTier": "gold", "loanStatus": "open"})
    update = approve(identity="c-6", attributes={"loyaltyTier": "gold", "loanStatus": "funded"})
    client.force_login(supervisor)
    page = reverse("admin:updates_profileupdate_change", args=[update.pk])

    before = client.get(page).content.decode()
    sending.send_due()
    after = client.get(page).content.decode()

    assert "leaves out of the request the attributes that Target already holds" in before
    assert ("Sent without the unchanged attributes <code>profile.loyaltyTier</code>: Target "
            "already held their value.") in after


def test_the_connection_form_offers_the_option_with_its_help(admin_client, acme):
    from django.urls import reverse

    page = admin_client.get(reverse("admin:updates_targetconnection_change", args=[acme.pk]))

    html = page.content.decode()
    assert "Leave out unchanged attributes" in html and "Closing the loop with Target" in html
    assert "Approval and verification still cover every attribute." in html
