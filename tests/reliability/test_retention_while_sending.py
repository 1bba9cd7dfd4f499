"""The retention purge and the sender run at once, in separate processes on one database: the
purge works through a seeded history in short chunks while 2,000 approved updates are sent —
every update reaches Target exactly once, the whole history is purged, and nothing sent is.

(The interleaving itself, chunk by chunk with a send run between two chunks, is
tests/services/test_retention.py::test_a_seeded_history_is_purged_in_chunks_while_sending_goes_on.)
"""

from __future__ import annotations

import datetime as dt
import sys
from collections import Counter

from django.utils import timezone

from tests.reliability.conftest import (
    MANAGE, acknowledged_per_update, connect, make_approved, on_sqlite, reliability,
    subprocess_env,
)
from updates.models import ProfileUpdate, RetentionRun, UpdateStatus

pytestmark = reliability

HISTORY = 3000
SENDING = 2000


def seed_purgeable_history(connection, author, count: int) -> None:
    """`count` cancelled updates from 200 days ago: due for the 90-day values retention."""
    past = timezone.now() - dt.timedelta(days=200)
    ProfileUpdate.objects.bulk_create([ProfileUpdate(
        connection=connection, identity_type="mbox3rdPartyId", identity=f"history-{n}",
        attributes={"loyaltyTier": f"old-{n}"}, status=UpdateStatus.CANCELLED,
        created_by=author, created_at=past, last_edited_by=author, last_edited_at=past)
        for n in range(count)], batch_size=2000)


def test_retention_purges_in_chunks_while_a_sender_sends(emulator, author, approver, processes):
    conn = connect(emulator)
    seed_purgeable_history(conn, author, HISTORY)
    updates = make_approved(connection=conn, count=SENDING, author=author, approver=approver)

    sender = processes.sender("sender", send_batch_size=100, send_concurrency=8)
    purge = processes.start("purge", [sys.executable, MANAGE, "purge_retention",
                                      "--chunk-size", "50"], subprocess_env())
    processes.wait_all_ok([sender, purge], timeout=240 if on_sqlite() else 180)

    assert Counter(acknowledged_per_update(emulator, updates).values()) == {1: SENDING}
    purged = ProfileUpdate.objects.filter(connection=conn, purged_at__isnull=False)
    assert purged.count() == HISTORY
    assert not purged.filter(pk__in=list(updates)).exists()
    [run] = RetentionRun.objects.filter(connection=conn)
    assert run.complete and run.chunks == HISTORY // 50
    assert run.counts["profile updates"] == HISTORY
