"""A sending process killed with SIGKILL in the middle of a batch loses nothing.

The killed worker's claims stay `sending` under its lease; when the lease runs out another worker
claims them again ("reclaimed", with the old lease owner named in the audit comment) and sends them.
Updates whose request had already reached Target before the kill therefore arrive twice: delivery
across a crash is at least once. The duplicates are visible: Target saw one request more than the
update's SendAttempt rows show, because the killed worker died before recording its batch.
"""

from __future__ import annotations

import signal
import time
from collections import Counter

from django.db.models import Count

from tests.reliability.conftest import (
    acknowledged_per_update, connect, make_approved, reliability, requests_per_update,
    status_counts, wait_until,
)
from updates import quota
from target_emulator import TargetEmulator
from updates.models import AuditEvent, ProfileUpdate, SendAttempt

pytestmark = reliability

UPDATES = 300
BATCH = 100
# Latency keeps a batch in flight for a few seconds (100 requests, 10 at a time, 0.3 s each);
# the lease is short so the restarted workers take the dead worker's claims over quickly, yet
# long enough that the whole batch is dispatched inside it (see sending._dispatch_deadline).
LATENCY = 0.3
KNOBS = dict(send_batch_size=BATCH, send_concurrency=10, lease_seconds=8, connect_timeout=1,
             read_timeout=2)


def settle(emulator: TargetEmulator, quiet: float = 0.5, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    seen = emulator.stats()["requests"]
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = emulator.stats()["requests"]
        if now == seen:
            return
        seen = now


def test_a_worker_killed_mid_batch_loses_nothing_and_its_duplicates_show_in_the_attempts(
        emulator_factory, author, approver, processes):
    emulator: TargetEmulator = emulator_factory(latency=LATENCY)
    conn = connect(emulator)
    updates = make_approved(connection=conn, count=UPDATES, author=author, approver=approver)

    doomed = processes.sender("doomed", **KNOBS)
    assert emulator.wait_for_requests(30, timeout=60), processes.output(doomed)
    processes.kill(doomed)  # SIGKILL to its process group: no cleanup, no recording
    assert doomed.returncode == -signal.SIGKILL
    # Requests the dead worker wrote just before dying may still sit in the emulator's socket
    # buffers; let the emulator read them before taking stock.
    settle(emulator)

    # What it held at the kill: its last claims (batches overlap, so the batch on the wire and
    # possibly the next one claimed behind it), all under its lease, none of it recorded.
    in_flight = ProfileUpdate.objects.filter(connection=conn, status="sending")
    owners = set(in_flight.values_list("lease_owner", flat=True))
    assert len(owners) == 1 and f":{doomed.pid}/" in next(iter(owners)), owners
    dead_owner = owners.pop()
    last_batch = set(in_flight.values_list("id", flat=True))
    assert not SendAttempt.objects.exists()
    reached_before_restart = {u for u, n in requests_per_update(emulator, updates).items() if n}
    assert reached_before_restart <= last_batch
    assert 0 < len(reached_before_restart) < min(len(last_batch), BATCH), (
        "the kill must land in the middle of a batch")

    restarted = [processes.sender(f"restarted-{n}", "--loop", "--idle-sleep", "0.5", **KNOBS)
                 for n in range(2)]
    wait_until(lambda: status_counts(connection=conn) == {"sent": UPDATES}, timeout=60,
               what="every update to be sent after the restart",
               explain=lambda: f"{status_counts(connection=conn)}\n"
                               + "\n".join(processes.output(p) for p in restarted))
    for process in restarted:
        assert processes.stop(process, signal.SIGINT) == 0, processes.output(process)

    # Every update acknowledged; duplicates only among the dead worker's last batch.
    acknowledged = acknowledged_per_update(emulator, updates)
    assert min(acknowledged.values()) == 1
    duplicates = {u for u, n in acknowledged.items() if n > 1}
    assert duplicates <= last_batch
    assert max(acknowledged.values()) <= 2

    # How the attempts show it: Target saw exactly one request more than the SendAttempt rows
    # record — the one the dead worker sent and never recorded — for precisely the duplicates.
    attempts = Counter(dict(SendAttempt.objects.filter(connection=conn).values_list("update")
                            .annotate(n=Count("id"))))
    unrecorded = {u: n - attempts[u] for u, n in requests_per_update(emulator, updates).items()}
    assert set(unrecorded.values()) <= {0, 1}
    assert {u for u, n in unrecorded.items() if n == 1} == duplicates == reached_before_restart
    assert not SendAttempt.objects.filter(worker=dead_owner).exists()

    # And the audit shows the lease takeover for the whole batch, naming the dead worker's lease.
    for update_id in last_batch:
        events = list(AuditEvent.objects.filter(update_id=update_id).order_by("at", "id")
                      .values_list("action", "comment"))
        actions = [action for action, _ in events]
        assert actions[:2] == ["claimed", "reclaimed"] and dead_owner in events[1][1], events
        assert actions[-1] == "acknowledged", events
        # (A claim the new owner could not start in time goes back and is claimed afresh.)
        assert set(actions[2:-1]) <= {"released", "claimed"}, events
    others = ProfileUpdate.objects.filter(connection=conn).exclude(id__in=last_batch)
    assert not AuditEvent.objects.filter(update__in=others, action="reclaimed").exists()

    # The dead worker's reservation is never given back: the quota counts every request that may
    # have reached Target, so it can only over-count across a crash, never under-count.
    assert quota.window_usage(connection=conn) >= emulator.stats()["requests"]
