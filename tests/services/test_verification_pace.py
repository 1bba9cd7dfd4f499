"""Verification that keeps pace with the quota (updates/verification.py, updates/reading.py):
concurrent reads give the sequential results, the first check waits for Target's typical apply
delay, a backlog run stops at its budget, and the read rate limit is one per connection for every
limiter sharing the database. Real HTTP against the faithful emulator."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.db import transaction

from updates import reading, sending, verification
from updates.models import AuditEvent, ProfileRead, ProfileUpdate, VerificationState

V = VerificationState
MINUTE = dt.timedelta(minutes=1)


@pytest.fixture(autouse=True)
def quick(settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "SEND_CONCURRENCY": 4,
                           "VERIFY_SCHEDULE_MINUTES": [5, 15, 60],
                           "VERIFY_FIRST_CHECK_SECONDS": 0, "READS_PER_SECOND": 200}
    reading.read_limiter.reset()
    yield
    reading.read_limiter.reset()


def _outcomes(updates: list[ProfileUpdate]) -> dict[str, tuple]:
    """What verification left on each update, its reads and its timeline (by identity)."""
    result = {}
    for update in ProfileUpdate.objects.filter(pk__in=[u.pk for u in updates]):
        reads = list(ProfileRead.objects.filter(update=update).order_by("id")
                     .values_list("outcome", "attributes", "error"))
        events = list(AuditEvent.objects.filter(update=update).order_by("id")
                      .values_list("action", "comment"))
        result[update.identity] = (update.verification_state, update.verification_checks,
                                   update.verification_next_at, reads, events)
    return result


def test_concurrent_verification_reads_give_the_sequential_results(
        acme, approve, faithful_emulator, settings):
    updates = []
    for n in range(12):
        kind = n % 4
        if kind != 3:  # 3: a visitor Target does not know (dropped)
            faithful_emulator.seed_profile(identity=f"p-{n}", attributes={"loyaltyTier": "silver"})
        updates.append(approve(identity=f"p-{n}", attributes={"loyaltyTier": "gold"}))
    sending.send_due()
    faithful_emulator.advance(61)  # applied at Target
    # Another channel wrote over one of them after ours.
    faithful_emulator.seed_profile(identity="p-2", attributes={"loyaltyTier": "bronze"})
    acked = ProfileUpdate.objects.get(pk=updates[0].pk).acknowledged_at
    now = acked + 6 * MINUTE

    results = {}
    for concurrency in (1, 6):
        settings.PROFILEOPS = {**settings.PROFILEOPS, "VERIFY_CONCURRENCY": concurrency}
        with transaction.atomic():
            run = verification.updates_verify_due(now=now)
            results[concurrency] = (run.checked, run.verified, run.not_applied, _outcomes(updates))
            transaction.set_rollback(True)  # the same updates again, from the same state

    assert results[1][:3] == (12, 8, 3)
    assert results[6] == results[1]


def test_the_first_check_is_not_before_the_configured_delay(acme, approve, faithful_emulator,
                                                            settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "VERIFY_FIRST_CHECK_SECONDS": 1800,
                           "VERIFY_SCHEDULE_MINUTES": [5, 15, 60, 240]}
    assert verification.check_delays() == [30 * MINUTE, 60 * MINUTE, 240 * MINUTE]
    faithful_emulator.seed_profile(identity="f-1", attributes={"loyaltyTier": "silver"})
    update = approve(identity="f-1", attributes={"loyaltyTier": "gold"})
    sending.send_due()
    acked = ProfileUpdate.objects.get(pk=update.pk).acknowledged_at

    early = verification.updates_verify_due(now=acked + 29 * MINUTE)
    assert (early.started, early.checked) == (1, 0)
    assert ProfileUpdate.objects.get(pk=update.pk).verification_next_at == acked + 30 * MINUTE

    faithful_emulator.advance(61)
    done = verification.updates_verify_due(now=acked + 30 * MINUTE)
    assert (done.checked, done.verified) == (1, 1)  # verified on its first read


def test_the_default_first_check_follows_targets_typical_apply_delay(settings):
    settings.PROFILEOPS = {k: v for k, v in settings.PROFILEOPS.items()
                           if k not in ("VERIFY_FIRST_CHECK_SECONDS", "VERIFY_SCHEDULE_MINUTES")}
    # Target applies "usually within an hour" (docs/reference): the first read after it.
    assert verification.check_delays() == [60 * MINUTE, 240 * MINUTE, 1440 * MINUTE]


def test_a_backlog_run_stops_at_its_budget_and_the_next_run_goes_on(
        acme, approve, faithful_emulator, settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "VERIFY_CONCURRENCY": 2}
    updates = [approve(identity=f"b-{n}") for n in range(30)]
    sending.send_due()
    acked = ProfileUpdate.objects.get(pk=updates[0].pk).acknowledged_at
    faithful_emulator.configure(latency=0.1)  # two readers: ~20 reads a second
    budget = 0.5

    began = time.monotonic()
    run = verification.updates_verify_due(now=acked + 6 * MINUTE, time_budget=budget)
    took = time.monotonic() - began

    assert 2 <= run.checked < 30
    assert took < budget + reading.read_deadline_seconds()
    waiting = ProfileUpdate.objects.filter(pk__in=[u.pk for u in updates], verification_checks=0)
    assert waiting.count() == 30 - run.checked
    assert all(u.verification_next_at <= acked + 6 * MINUTE for u in waiting)  # still due
    faithful_emulator.configure(latency=0.0)
    rest = verification.updates_verify_due(now=acked + 6 * MINUTE)
    assert rest.checked == 30 - run.checked


def test_limiters_sharing_the_database_share_the_rate(acme, settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "READS_PER_SECOND": 20}
    # Two limiters as two processes hold them: only the database row is common.
    one, two = reading.SharedReadLimiter(), reading.SharedReadLimiter()
    taken = []
    began = time.time()
    while time.time() - began < 1.5:
        for limiter in (one, two):
            if limiter.acquire(acme.pk, wait=0.0):
                taken.append(time.time())
    # A burst of 20, then 20 a second: at most ~50 in 1.5 s (two per-process buckets: ~100).
    assert 25 <= len(taken) <= 20 * 1.5 * 1.2 + 20


def test_a_read_that_cannot_wait_for_its_slot_is_throttled_and_takes_none(acme, settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "READS_PER_SECOND": 1}
    assert reading.read_limiter.acquire(acme.pk, wait=0.0)
    other = reading.SharedReadLimiter()
    assert not other.acquire(acme.pk, wait=0.0)
    assert not other.acquire(acme.pk, wait=0.2)
    began = time.monotonic()
    assert other.acquire(acme.pk, wait=1.5)  # the next slot, a second after the first
    assert 0.5 < time.monotonic() - began < 1.5


def test_the_verify_schedule_runs_every_minute_within_its_budget(db):
    from django_q.models import Schedule

    from updates import tasks

    schedule = Schedule.objects.get(name="Verify sent updates")  # migration 0020
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == (
        "updates.tasks.verify_sent_updates", Schedule.MINUTES, 1)
    assert tasks.verify_sent_updates() == 0  # nothing due: a run that reads nothing


def test_a_read_whose_slot_passed_while_every_reader_was_busy_is_left_for_later(
        acme, approve, faithful_emulator, settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "VERIFY_CONCURRENCY": 1, "READS_PER_SECOND": 2}
    updates = [approve(identity=f"l-{n}") for n in range(3)]
    sending.send_due()
    acked = ProfileUpdate.objects.get(pk=updates[0].pk).acknowledged_at
    faithful_emulator.configure(latency=1.0)  # one reader, busy a second per read
    before = len(faithful_emulator.read_times())

    run = verification.updates_verify_due(now=acked + 6 * MINUTE)

    # The reads Target saw are the checks made; the others were not read late in a crowd.
    assert len(faithful_emulator.read_times()) - before == run.checked
    assert run.throttled >= 1 and run.checked + run.throttled == 3
    unread = ProfileUpdate.objects.filter(pk__in=[u.pk for u in updates], verification_checks=0)
    assert unread.count() == run.throttled
    assert all(u.verification_next_at <= acked + 6 * MINUTE for u in unread)  # due again
