"""Four sending processes share 20,000 approved updates: each reaches Target exactly once.

This is "at most once in normal operation" and "nothing lost": the workers claim disjoint leased
batches (FOR NO KEY UPDATE SKIP LOCKED on PostgreSQL, IMMEDIATE transactions on SQLite), and every
update ends sent with exactly one attempt on record.
"""

from __future__ import annotations

from collections import Counter

from django.db.models import Sum

from tests.reliability.conftest import (
    acknowledged_per_update, connect, make_approved, on_sqlite, reliability, status_counts,
)
from updates.models import DailyUsage, QuotaMinute, SendAttempt, SendRun

pytestmark = reliability

WORKERS = 4
UPDATES = 20_000
KNOBS = dict(send_batch_size=500, send_concurrency=16, connect_timeout=5, read_timeout=20)


def test_four_workers_send_twenty_thousand_updates_each_acknowledged_exactly_once(
        emulator, author, approver, processes):
    conn = connect(emulator)
    updates = make_approved(connection=conn, count=UPDATES, author=author, approver=approver)

    workers = [processes.sender(f"sender-{n}", **KNOBS) for n in range(WORKERS)]
    processes.wait_all_ok(workers, timeout=240 if on_sqlite() else 180)

    # {times acknowledged: number of updates}
    histogram = Counter(acknowledged_per_update(emulator, updates).values())
    assert histogram == {1: UPDATES}, histogram
    stats = emulator.stats()
    assert stats["requests"] == stats["acknowledged"] == UPDATES  # nothing else reached Target

    assert status_counts(connection=conn) == {"sent": UPDATES}  # none approved or sending
    attempts = SendAttempt.objects.filter(connection=conn)
    assert attempts.count() == UPDATES
    assert set(attempts.values_list("outcome", "number").distinct()) == {("acknowledged", 1)}
    assert set(attempts.values_list("update_id", flat=True)) == set(updates)

    # The bookkeeping agrees with Target: quota reserved, daily usage, run totals.
    assert QuotaMinute.objects.filter(connection=conn).aggregate(n=Sum("requests"))["n"] == UPDATES
    usage = DailyUsage.objects.filter(connection=conn).aggregate(
        requests=Sum("requests"), acknowledged=Sum("acknowledged"))
    assert usage == {"requests": UPDATES, "acknowledged": UPDATES}
    runs = SendRun.objects.filter(trigger="command")
    assert runs.count() == WORKERS
    assert runs.aggregate(n=Sum("acknowledged"))["n"] == UPDATES
    # The load really was shared (otherwise this would prove nothing about concurrency).
    taking_part = {worker.split("/")[0] for worker in attempts.values_list("worker", flat=True)
                   .distinct()}
    assert len(taking_part) >= 2, taking_part
