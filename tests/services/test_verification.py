"""Verification after sending, skip-unchanged and revert (updates/verification.py), over real HTTP
against the faithful emulator. The clock moves through `now=` (ours) and `advance()` (the
emulator's); nothing sleeps."""

from __future__ import annotations

import datetime as dt
from importlib import import_module
from io import StringIO

import pytest
from django.apps import apps as django_apps
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from tests.conftest import make_user
from updates import quota, reading, sending, tasks, verification, workflow
from updates.models import (
    AuditEvent, DailyUsage, ProfileRead, ProfileUpdate, UpdateStatus, VerificationState,
)

S = UpdateStatus
V = VerificationState
MINUTE = dt.timedelta(minutes=1)


@pytest.fixture(autouse=True)
def quick(settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "SEND_CONCURRENCY": 4,
                           "VERIFY_SCHEDULE_MINUTES": [5, 15, 60],
                           "VERIFY_FIRST_CHECK_SECONDS": 0}
    reading.read_limiter.reset()


def fresh(update: ProfileUpdate) -> ProfileUpdate:
    return ProfileUpdate.objects.get(pk=update.pk)


def actions(update: ProfileUpdate) -> list[str]:
    return list(AuditEvent.objects.filter(update=update).values_list("action", flat=True))


# --- verification ---------------------------------------------------------------------------------

def test_a_known_visitor_is_verified_once_target_applied_the_update(acme, approve, target):
    target.seed_profile(identity="c-1", attributes={"loyaltyTier": "silver"})
    update = approve(identity="c-1", attributes={"loyaltyTier": "gold", "loanStatus": "funded"})
    sending.send_due()
    acked = fresh(update).acknowledged_at

    early = verification.updates_verify_due(now=acked + 6 * MINUTE)  # Target has not applied yet
    assert (early.started, early.checked, early.verified) == (1, 1, 0)
    assert fresh(update).verification_state == V.PENDING
    assert fresh(update).verification_next_at == acked + 15 * MINUTE

    target.advance(61)  # the emulator's apply delay is 60 s
    assert verification.updates_verify_due(now=acked + 10 * MINUTE).checked == 0  # not due yet
    done = verification.updates_verify_due(now=acked + 16 * MINUTE)

    update = fresh(update)
    assert done.verified == 1 and update.verification_state == V.VERIFIED
    assert update.verified_at == acked + 16 * MINUTE and update.status == S.SENT
    assert actions(update)[-3:] == ["verification_scheduled", "verification_read", "verified"]
    verified = AuditEvent.objects.get(update=update, action="verified")
    assert verified.changes["at_target"].startswith("loanStatus: 'funded' (modified 20")
    assert update.reads.filter(purpose=ProfileRead.Purpose.VERIFICATION).count() == 2


def test_an_unknown_visitor_is_not_applied_with_the_read_as_evidence(acme, approve, target):
    update = approve(identity="never-seen", attributes={"loyaltyTier": "gold"})
    sending.send_due()
    target.advance(3600)

    run = verification.updates_verify_due(now=fresh(update).acknowledged_at + 5 * MINUTE)

    update = fresh(update)
    assert run.not_applied == 1 and update.verification_state == V.NOT_APPLIED
    event = AuditEvent.objects.get(update=update, action="not_applied")
    assert "no profile for this visitor" in event.comment
    assert ProfileRead.objects.get(pk=event.changes["read_id"]).outcome == "not_found"


def test_values_still_different_after_the_last_check_are_not_applied(acme, approve, target):
    target.seed_profile(identity="c-2", attributes={"loyaltyTier": "silver"})
    update = approve(identity="c-2", attributes={"loyaltyTier": "gold"})
    sending.send_due()
    target.configure()  # nothing else changes; the update just never lands:
    target.reset()
    target.seed_profile(identity="c-2", attributes={"loyaltyTier": "silver"})
    acked = fresh(update).acknowledged_at

    for minutes in (5, 15, 60):
        verification.updates_verify_due(now=acked + minutes * MINUTE + dt.timedelta(seconds=1))

    update = fresh(update)
    assert update.verification_state == V.NOT_APPLIED and update.verification_checks == 3
    assert "No more checks" in AuditEvent.objects.get(update=update, action="not_applied").comment


def test_a_value_written_before_the_send_does_not_verify_it(acme, approve, target):
    """The sent value already there, modified before the send: not evidence that it applied."""
    target.seed_profile(identity="c-3", attributes={"loyaltyTier": "gold"},
                        modified_at="2020-01-01T00:00:00.000Z")
    update = approve(identity="c-3", attributes={"loyaltyTier": "gold"})
    sending.send_due()
    target.reset()
    target.seed_profile(identity="c-3", attributes={"loyaltyTier": "gold"},
                        modified_at="2020-01-01T00:00:00.000Z")

    verification.updates_verify_due(now=fresh(update).acknowledged_at + 6 * MINUTE)

    assert fresh(update).verification_state == V.PENDING
    event = AuditEvent.objects.filter(update=update, action="verification_read").get()
    assert event.changes["differing"] == ["loyaltyTier"]


def test_verification_can_be_switched_off_per_connection(acme, approve):
    acme.verify_after_send = False
    acme.save(update_fields=["verify_after_send"])
    update = approve()
    sending.send_due()

    run = verification.updates_verify_due(now=timezone.now() + dt.timedelta(days=2))

    assert (run.switched_off, run.checked) == (1, 0)
    assert fresh(update).verification_state == V.OFF
    assert not ProfileRead.objects.exists()


def test_failing_reads_leave_the_update_unverified_after_the_last_check(acme, approve, target):
    update = approve()
    sending.send_due()
    acked = fresh(update).acknowledged_at
    target.stop()

    for minutes in (5, 15, 60):
        verification.updates_verify_due(now=acked + minutes * MINUTE + dt.timedelta(seconds=1))

    assert fresh(update).verification_state == V.UNVERIFIED
    assert ProfileRead.objects.filter(update=update, outcome="error").count() == 3


def test_a_run_schedules_a_bounded_number_of_new_acknowledgments_the_oldest_first(
        acme, approve, monkeypatch):
    # A million acknowledged at once (a day sent before verification, a bulk file accepted)
    # were held in memory by one run, with their audit rows: 1 GB.
    monkeypatch.setattr(verification, "SCHEDULE_AT_MOST", 2)
    updates = [approve() for _ in range(3)]
    sending.send_due()
    now = timezone.now()

    first = verification.updates_verify_due(now=now, limit=0)
    waiting = [u for u in updates if fresh(u).verification_state == ""]
    second = verification.updates_verify_due(now=now, limit=0)

    assert (first.started, second.started) == (2, 1)
    assert waiting == [updates[2]]  # the oldest acknowledged first (in id order)
    assert {fresh(u).verification_state for u in updates} == {V.PENDING}
    assert AuditEvent.objects.filter(action="verification_scheduled").count() == 3


def test_the_task_the_command_and_the_schedule_run_the_same_job(acme, approve, target):
    first, second = approve(identity="u-1"), approve(identity="u-2")
    sending.send_due()

    assert tasks.verify_sent_updates() == 0  # schedules both: first check at ack + 5 min
    assert fresh(first).verification_state == V.PENDING
    ProfileUpdate.objects.filter(pk=first.pk).update(verification_next_at=timezone.now() - MINUTE)
    assert tasks.verify_sent_updates() == 1
    assert fresh(first).verification_state == V.NOT_APPLIED
    ProfileUpdate.objects.filter(pk=second.pk).update(verification_next_at=timezone.now() - MINUTE)
    out = StringIO()
    call_command("verify_updates", "--connection", "acme", stdout=out)
    assert "Checked 1: verified 0, not applied 1" in out.getvalue()
    schedule = Schedule.objects.get(name="Verify sent updates")
    assert schedule.func == "updates.tasks.verify_sent_updates" and schedule.repeats == -1


def test_the_schedule_migration_is_idempotent(db):
    migration = import_module("updates.migrations.0007_verification")
    migration.create_schedule(django_apps, None)
    migration.create_schedule(django_apps, None)
    assert Schedule.objects.filter(name=migration.SCHEDULE_NAME).count() == 1


# --- skip unchanged ---------------------------------------------------------------------------------

@pytest.fixture
def skipping(acme):
    acme.skip_unchanged = True
    acme.save(update_fields=["skip_unchanged"])
    return acme


def test_an_update_that_changes_nothing_ends_unchanged_without_a_request(skipping, approve, target):
    target.seed_profile(identity="same", attributes={"loyaltyTier": "gold", "loanStatus": "funded"})
    update = approve(identity="same", attributes={"loyaltyTier": "gold", "loanStatus": "funded"})

    run = sending.send_due()

    update = fresh(update)
    assert update.status == S.UNCHANGED and run.requests_sent == 0
    assert target.stats()["requests"] == 0
    assert quota.window_usage(connection=skipping.pk) == 0
    assert not DailyUsage.objects.filter(requests__gt=0).exists()
    event = AuditEvent.objects.get(update=update, action="unchanged")
    assert event.from_status == S.SENDING and "no quota used" in event.comment
    read = ProfileRead.objects.get(pk=event.changes["read_id"])
    assert read.purpose == ProfileRead.Purpose.BEFORE_SEND and read.outcome == "found"
    with pytest.raises(ValidationError, match="wrong_state|cannot be cancelled"):
        workflow.update_cancel(update=update, by=update.created_by)  # terminal
    with pytest.raises(ValidationError, match="can no longer be changed"):
        workflow.update_edit(update=update, by=update.created_by, reason="again")


def test_an_update_that_changes_something_is_sent_with_the_prior_values_kept(
        skipping, approve, target):
    target.seed_profile(identity="diff", attributes={"loyaltyTier": "gold"})
    update = approve(identity="diff", attributes={"loyaltyTier": "silver", "loanStatus": "funded"})

    sending.send_due()

    update = fresh(update)
    assert update.status == S.SENT and target.stats()["requests"] == 1
    assert update.prior_values["loanStatus"] is None
    assert update.prior_values["loyaltyTier"]["value"] == "gold"


def test_a_fresh_enough_read_on_record_is_used_instead_of_reading_again(skipping, approve, target):
    target.seed_profile(identity="r", attributes={"loyaltyTier": "gold"})
    update = approve(identity="r", attributes={"loyaltyTier": "gold"})
    reading.profile_read(update=update, purpose=ProfileRead.Purpose.DIFF)
    target.stop()  # had the sender read again, the read would fail and the update be sent

    sending.send_due(now=timezone.now() + MINUTE)

    assert fresh(update).status == S.UNCHANGED
    assert ProfileRead.objects.filter(update=update).count() == 1


def test_a_failing_read_api_never_blocks_sending(skipping, approve, target):
    target.configure(read_error_rate=1.0)  # every read answers 503; updates still work
    update = approve(identity="x", attributes={"loyaltyTier": "gold"})

    sending.send_due()

    assert fresh(update).status == S.SENT and target.stats()["acknowledged"] == 1
    read = ProfileRead.objects.get(update=update)
    assert (read.outcome, read.http_status) == ("error", 503)


def test_the_read_rate_limit_never_holds_sending_back(skipping, approve, target, settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "READS_PER_SECOND": 1}
    updates = [approve(identity=f"v-{n}") for n in range(3)]
    sending.send_due()
    assert {fresh(u).status for u in updates} == {S.SENT}
    assert ProfileRead.objects.count() == 1  # the other two went out unread


def test_reading_before_sending_stops_at_its_time_budget(skipping, approve, target, settings):
    """A slow read API must not eat the claim's lease: past the budget, updates go out unread."""
    settings.PROFILEOPS = {**settings.PROFILEOPS, "SKIP_UNCHANGED_READ_BUDGET_SECONDS": 0.3}
    target.configure(latency=0.2)  # every answer, reads included, takes 0.2 s
    updates = [approve(identity=f"slow-{n}") for n in range(5)]
    sending.send_due()
    assert {fresh(u).status for u in updates} == {S.SENT}
    assert ProfileRead.objects.count() == 2  # 0.2 s each: the third would start past 0.3 s


def test_checks_of_an_inactive_connection_wait_until_it_is_active_again(
        acme, approve, target):
    update = approve()
    sending.send_due()
    verification.updates_verify_due()  # scheduled
    type(acme).objects.filter(pk=acme.pk).update(active=False)
    later = timezone.now() + dt.timedelta(hours=2)

    run = verification.updates_verify_due(now=later)

    assert run.checked == 0 and not ProfileRead.objects.filter(update=update).exists()
    type(acme).objects.filter(pk=acme.pk).update(active=True)
    assert verification.updates_verify_due(now=later).checked == 1


# --- revert ---------------------------------------------------------------------------------------

def test_revert_stages_the_prior_values_and_says_what_it_cannot_undo(
        skipping, approve, target, operator, supervisor):
    target.seed_profile(identity="c-9", attributes={"loyaltyTier": "silver"})
    update = approve(identity="c-9", attributes={"loyaltyTier": "gold", "loanStatus": "funded"})
    sending.send_due()
    target.advance(61)

    lead = make_user("lead", "Operators", "Supervisors")  # may stage and approve
    revert, plan = verification.update_revert(update=fresh(update), by=lead)

    assert revert.status == S.DRAFT and revert.attributes == {"loyaltyTier": "silver"}
    assert (revert.identity, revert.created_by) == ("c-9", lead)
    assert "cannot remove" in plan.not_revertible["loanStatus"]
    assert "revert_staged" in actions(update)
    workflow.update_submit(update=revert, by=lead)
    with pytest.raises(ValidationError, match="four-eyes"):
        workflow.update_approve(update=revert, by=lead)
    workflow.update_approve(update=revert, by=supervisor)
    sending.send_due()
    target.advance(61)
    assert target.profiles[("mbox3rdPartyId", "c-9")]["attributes"]["loyaltyTier"]["value"] == \
        "silver"


def test_a_revert_comment_longer_than_a_reason_is_refused_not_cut_to_fit(
        skipping, approve, target, operator):
    target.seed_profile(identity="c-8", attributes={"loyaltyTier": "silver"})
    update = approve(identity="c-8", attributes={"loyaltyTier": "gold"})
    sending.send_due()
    with pytest.raises(ValidationError, match="at most 200"):
        verification.update_revert(update=fresh(update), by=operator, comment="why " * 60)
    assert ProfileUpdate.objects.exclude(pk=update.pk).count() == 0
    assert "revert_staged" not in actions(update)


def test_a_revert_whose_prior_values_break_todays_mappings_is_refused_staging_nothing(
        skipping, approve, target, operator):
    """The values Target held are outside data: staged only if today's mappings accept them."""
    target.seed_profile(identity="c-7", attributes={"loanStatus": "archived"})  # not a choice
    update = approve(identity="c-7", attributes={"loanStatus": "funded"})
    sending.send_due()
    with pytest.raises(ValidationError, match="not one of the permitted choices"):
        verification.update_revert(update=fresh(update), by=operator)
    assert ProfileUpdate.objects.exclude(pk=update.pk).count() == 0


def test_revert_is_refused_without_a_read_from_before_the_send(acme, approve, operator):
    update = approve()
    sending.send_due()
    with pytest.raises(ValidationError, match="no read"):
        verification.update_revert(update=fresh(update), by=operator)
    with pytest.raises(ValidationError, match="not sent"):
        verification.update_revert(update=approve(), by=operator)


# --- the dashboard's verification picture -----------------------------------------------------

@pytest.mark.django_db
def test_the_daily_summary_counts_each_acknowledgment_on_its_utc_day_by_verification_state(stage):
    now = dt.datetime(2026, 12, 1, 15, 0, tzinfo=dt.timezone.utc)
    midnight = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)

    def sent(acknowledged_at, state):
        update = stage()
        ProfileUpdate.objects.filter(pk=update.pk).update(
            status=S.SENT, acknowledged_at=acknowledged_at, verification_state=state)

    sent(midnight, V.VERIFIED)                                     # today, its first instant
    sent(midnight - dt.timedelta(microseconds=1), V.NOT_APPLIED)   # yesterday, its last
    sent(midnight - dt.timedelta(hours=5), V.PENDING)
    sent(midnight - dt.timedelta(days=3), V.UNVERIFIED)
    sent(midnight - dt.timedelta(days=3), V.OFF)                   # sent, in no column
    sent(midnight - dt.timedelta(days=6, hours=-1), V.VERIFIED)    # the window's first day
    sent(midnight - dt.timedelta(days=7), V.VERIFIED)              # a day too old
    sent(midnight + dt.timedelta(days=1), V.VERIFIED)              # after today: not shown
    requeued = stage()  # acknowledged once, then back in the workflow: no longer sent
    ProfileUpdate.objects.filter(pk=requeued.pk).update(
        status=S.APPROVED, acknowledged_at=midnight, verification_state=V.NOT_APPLIED)

    days = verification.daily_summary(now=now, days=7)

    assert [d.day for d in days] == [dt.date(2026, 12, 1) - dt.timedelta(days=n) for n in range(7)]
    picture = {d.day.day: (d.sent, d.verified, d.not_applied, d.verifying, d.unverified)
               for d in days if d.sent}
    assert picture == {1: (1, 1, 0, 0, 0), 30: (2, 0, 1, 1, 0), 28: (2, 0, 0, 0, 1),
                       25: (1, 1, 0, 0, 0)}
