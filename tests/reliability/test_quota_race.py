"""Four sending processes race for a window of 5,000 requests with 8,000 updates waiting.

Reservations serialize on the connection row (quota.reserve), so the workers together fill the
window exactly and never past it; the rest stay approved, untouched, until the window frees.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

from django.db.models import F, Sum

from tests.reliability.conftest import (
    acknowledged_per_update, connect, make_approved, on_sqlite, reliability, requests_per_update,
    status_counts,
)
from updates import quota
from updates.models import AuditEvent, ProfileUpdate, QuotaMinute, SendAttempt, SendRun

pytestmark = reliability

WORKERS = 4
LIMIT = 5_000
UPDATES = 8_000
# 300 does not divide 5,000: the last claims of the window are partial reservations.
KNOBS = dict(send_batch_size=300, send_concurrency=16)


def test_four_workers_fill_the_window_exactly_and_the_rest_go_once_it_frees(
        emulator, author, approver, processes):
    conn = connect(emulator, quota_limit=LIMIT)
    updates = make_approved(connection=conn, count=UPDATES, author=author, approver=approver)
    timeout = 180 if on_sqlite() else 120

    workers = [processes.sender(f"window-full-{n}", **KNOBS) for n in range(WORKERS)]
    processes.wait_all_ok(workers, timeout=timeout)

    # Exactly the limit reached Target, each of those updates once; the rest never left.
    assert emulator.stats()["requests"] == LIMIT
    reached = requests_per_update(emulator, updates)
    assert Counter(reached.values()) == {1: LIMIT, 0: UPDATES - LIMIT}
    assert status_counts(connection=conn) == {"sent": LIMIT, "approved": UPDATES - LIMIT}
    waiting = ProfileUpdate.objects.filter(connection=conn, status="approved")
    assert set(waiting.values_list("id", flat=True)) == {u for u, n in reached.items() if n == 0}
    assert not waiting.filter(attempts_total__gt=0).exists()
    assert not SendAttempt.objects.filter(update__in=waiting).exists()
    assert not waiting.exclude(lease_owner="").exists()
    assert quota.window_usage(connection=conn) == LIMIT
    assert SendRun.objects.aggregate(n=Sum("deferred_by_quota"))["n"] > 0
    # Claims that lost the race for the window went back with an audit row saying why.
    released = AuditEvent.objects.filter(update__in=waiting, action="released")
    assert set(released.values_list("comment", flat=True)) <= {"Not sent: quota window full."}

    # Move the clock past the window. The workers are separate processes on the real clock, so
    # send_due(now=...) cannot reach them; the window is nothing but the QuotaMinute rows, so
    # shifting those 25 h into the past is exactly what a day passing looks like to the sender.
    QuotaMinute.objects.filter(connection=conn).update(minute=F("minute") - dt.timedelta(hours=25))
    assert quota.window_usage(connection=conn) == 0

    workers = [processes.sender(f"window-free-{n}", **KNOBS) for n in range(WORKERS)]
    processes.wait_all_ok(workers, timeout=timeout)

    assert emulator.stats()["requests"] == UPDATES
    assert Counter(acknowledged_per_update(emulator, updates).values()) == {1: UPDATES}
    assert status_counts(connection=conn) == {"sent": UPDATES}
    assert quota.window_usage(connection=conn) == UPDATES - LIMIT
    assert SendAttempt.objects.filter(connection=conn).count() == UPDATES
