"""Verification's searches on PostgreSQL whose statistics predate the send: an import's ANALYZE
saw every update pending, and autovacuum has not looked again (docs/benchmarks.md, the
million-update day). Then "sent" looks rare to the planner, and a search that any index on
status could serve read every sent update through it — 4.2 s a run at a million. The searches
leave the live filter out so that only their partial indexes serve them. A test's handful of
rows is read whole by any planner, so sequential scans are switched off here: what is left is
the planner's choice among the indexes, which is what went wrong. PostgreSQL only.

The day's send attempts are newer than any statistics too (the import analyzed the updates
before the first attempt existed): verification's lookup of when each checked update was sent
names the attempts by update alone, so the partial index of every acknowledged attempt is never
ANDed into it — 32 ms per group of checks at a million, a third of the verification step."""

from __future__ import annotations

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from updates import verification
from updates.models import ProfileUpdate, SendAttempt, UpdateStatus, VerificationState

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _postgresql_only():
    if db.vendor != "postgresql":
        pytest.skip("PostgreSQL's statistics; SQLite has none (test_query_plans.py)")


def plan(sql: str) -> str:
    with db.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}")
        return "\n".join(row[0] for row in cursor.fetchall())


def test_the_searches_for_new_and_due_checks_use_their_partial_indexes(connection, stage):
    updates = [stage() for _ in range(30)]
    with db.cursor() as cursor:  # statistics of a day just imported: nothing sent yet
        cursor.execute("ANALYZE updates_profileupdate")
    now = timezone.now()
    ids = [u.pk for u in updates]
    ProfileUpdate.objects.filter(pk__in=ids[:20]).update(
        status=UpdateStatus.SENT, acknowledged_at=now, verification_state=VerificationState.PENDING,
        verification_next_at=now)
    ProfileUpdate.objects.filter(pk__in=ids[20:]).update(status=UpdateStatus.SENT,
                                                         acknowledged_at=now)
    connection.verify_after_send = True
    connection.save(update_fields=["verify_after_send"])

    with CaptureQueriesContext(db) as captured:
        verification.updates_verify_due(connection=connection, now=now, limit=5)
    searches = {q["sql"]: plan(q["sql"]) for q in captured.captured_queries
                if q["sql"].startswith("SELECT") and ("\"verification_state\" = ''" in q["sql"]
                                                     or "\"verification_next_at\" <=" in q["sql"])}

    assert len(searches) == 2, searches
    for sql, steps in searches.items():
        wanted = "upd_sent_unscheduled" if "verification_state\" = ''" in sql else \
            "upd_verification_due"
        assert wanted in steps and "upd_status_id" not in steps, steps
        if wanted == "upd_verification_due":  # in the index's order: no sort of every due check
            assert "Sort" not in steps, steps  # (3.4 s a run at a million, 797,000 rows sorted)


def test_when_the_checked_updates_were_sent_is_read_by_update_alone(connection, stage):
    updates = [stage() for _ in range(30)]
    now = timezone.now()
    SendAttempt.objects.bulk_create([SendAttempt(  # never analyzed: a day's new attempts
        update=u, connection=connection, number=1, started_at=now, method="GET",
        request_bytes=10, http_status=200, outcome=SendAttempt.Outcome.ACKNOWLEDGED)
        for u in updates])

    with CaptureQueriesContext(db) as captured:
        sent = verification.sent_at(updates[0])
    [sql] = [q["sql"] for q in captured.captured_queries if "updates_sendattempt" in q["sql"]]

    assert sent == now
    # A handful of rows cannot show the plan a million gave (BitmapAnd with att_acked_recent):
    # the statement's shape is the specification — no condition the partial index could serve.
    assert '"updates_sendattempt"."outcome" =' not in sql, sql
    steps = plan(sql)
    assert "att_acked_recent" not in steps and "BitmapAnd" not in steps, steps
