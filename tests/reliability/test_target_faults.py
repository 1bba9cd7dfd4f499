"""A faulty Target: 503s, hangs past the read timeout, dropped connections and wrong 200 bodies.

Two sending processes keep at it until every update is either sent (acknowledged within its
attempt budget) or failed with the reason once the budget is spent — never left in "sending" — and
every request Target saw is one SendAttempt row with the matching outcome, in the same order.
"""

from __future__ import annotations

import signal
from collections import defaultdict

from django.db.models import Sum

from tests.reliability.conftest import (
    connect, make_approved, reliability, status_counts, wait_until,
)
from target_emulator import TargetEmulator
from updates.models import AuditEvent, DailyUsage, ProfileUpdate, QuotaMinute, SendAttempt

pytestmark = reliability

UPDATES = 400
MAX_ATTEMPTS = 3  # small, so budgets are spent often enough to be seen (~0.35³ of the updates)
MAX_UNEXPECTED = 2
READ_TIMEOUT = 1.0  # short, with room for a busy machine: an on-time answer never looks like a hang
FAULTS = dict(error_rate=0.20, timeout_rate=0.05, hang_seconds=3 * READ_TIMEOUT, drop_rate=0.05,
              wrong_body_rate=0.05, seed=20240611)
KNOBS = dict(send_batch_size=50, send_concurrency=8, connect_timeout=1, read_timeout=READ_TIMEOUT,
             lease_seconds=60, max_attempts=MAX_ATTEMPTS, max_unexpected_answers=MAX_UNEXPECTED,
             backoff_base_seconds=0.1, backoff_max_seconds=0.5)

# What the emulator did -> what the sender must have recorded for that request.
EXPECTED_ATTEMPT = {
    "acknowledged": ("acknowledged", 200),
    "error": ("transient", 503),  # with Retry-After: 1, which the backoff honours
    "timeout": ("transient", None),  # applied, then hung past the read timeout
    "dropped": ("transient", None),  # closed without an answer
    "wrong_body": ("unexpected", 200),
}


def test_every_update_ends_sent_within_its_budget_or_failed_with_the_reason(
        emulator_factory, author, approver, processes):
    emulator: TargetEmulator = emulator_factory(**FAULTS)
    conn = connect(emulator)
    updates = make_approved(connection=conn, count=UPDATES, author=author, approver=approver)

    workers = [processes.sender(f"faulty-{n}", "--loop", "--idle-sleep", "0.2", **KNOBS)
               for n in range(2)]
    finished = lambda: set(status_counts(connection=conn)) <= {"sent", "failed"}  # noqa: E731
    wait_until(finished, timeout=120, what="every update to be sent or failed",
               explain=lambda: f"{status_counts(connection=conn)}\n"
                               + "\n".join(processes.output(p) for p in workers))
    for process in workers:
        assert processes.stop(process, signal.SIGINT) == 0, processes.output(process)

    # The faults really happened, and both endings occur.
    by_outcome = emulator.stats()["by_outcome"]
    assert set(by_outcome) == set(EXPECTED_ATTEMPT), by_outcome
    states = status_counts(connection=conn)
    assert states["sent"] + states["failed"] == UPDATES and states["sent"] and states["failed"]

    attempts_of = defaultdict(list)
    for a in SendAttempt.objects.filter(connection=conn).order_by("update_id", "number"):
        attempts_of[a.update_id].append(a)
    seen_by_target = defaultdict(list)
    identity_to_update = {identity: u for u, identity in updates.items()}
    for record in emulator.received:  # in arrival order
        seen_by_target[identity_to_update[record["identity"]]].append(record["outcome"])

    for update in ProfileUpdate.objects.filter(connection=conn):
        attempts = attempts_of[update.pk]
        # Every request Target saw is an attempt on record, with the matching outcome, in order.
        assert [(a.outcome, a.http_status) for a in attempts] == [
            EXPECTED_ATTEMPT[o] for o in seen_by_target[update.pk]], update.pk
        assert [a.number for a in attempts] == list(range(1, len(attempts) + 1))
        assert update.attempt_count == update.attempts_total == len(attempts) <= MAX_ATTEMPTS
        assert update.lease_owner == "" and update.lease_expires_at is None
        outcomes = [a.outcome for a in attempts]
        last_event = AuditEvent.objects.filter(update=update).order_by("at", "id").last()

        if update.status == "sent":
            # Acknowledged exactly once, by its last attempt, within the budget.
            assert outcomes.count("acknowledged") == 1 and outcomes[-1] == "acknowledged"
            assert update.acknowledged_at is not None and update.last_error == ""
            assert (last_event.action, last_event.to_status) == ("acknowledged", "sent")
        else:
            # Never acknowledged; failed when the budget ran out, saying why.
            assert "acknowledged" not in outcomes
            unexpected = outcomes.count("unexpected")
            if unexpected >= MAX_UNEXPECTED:
                assert update.last_error.startswith(f"{MAX_UNEXPECTED} unexpected answers")
            else:
                assert len(attempts) == MAX_ATTEMPTS
                assert update.last_error.startswith(
                    f"Gave up after {MAX_ATTEMPTS} attempts; last: ")
                assert attempts[-1].error in update.last_error
            assert (last_event.action, last_event.to_status) == ("failed", "failed")
            assert last_event.comment == update.last_error

    # Quota and usage count every request that reached Target, retries included.
    requests = emulator.stats()["requests"]
    assert sum(len(a) for a in attempts_of.values()) == requests
    assert QuotaMinute.objects.filter(connection=conn).aggregate(n=Sum("requests"))["n"] == requests
    usage = DailyUsage.objects.filter(connection=conn).aggregate(
        requests=Sum("requests"), acknowledged=Sum("acknowledged"), failed=Sum("failed"))
    assert usage == {"requests": requests, "acknowledged": states["sent"],
                     "failed": states["failed"]}
