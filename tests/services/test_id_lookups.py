"""Updates named by a list of ids are found by primary key alone (ProfileUpdate.objects.by_ids)
on the paths a quota day takes a million updates through: a batch decision's chunks, the
sender's claims and acknowledgments, verification's schedule, claims and results — and
retention, which takes the same million through again when their time is up.

Why (docs/benchmarks.md, the million-update day): with the live-updates filter
(`import_pending IS NULL`) beside `id IN (…)`, PostgreSQL without fresh statistics (autovacuum
behind a day of a million state changes) read the whole partial index of the live updates for
each list of a few hundred ids — 0.2 s per send batch of 500 and 1.2 s per decision chunk of
5,000 among a million, growing with the table: the decision and sending steps cost 41 % and
~30 % more per update at a million than at 300,000. A test's handful of rows cannot show the
plan, so the statements' shape is the specification. Real database: SQLite, and PostgreSQL
with DATABASE_URL; real HTTP to the emulator."""

from __future__ import annotations

import datetime as dt
import re

from django.db import connection as db, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.helpers import seed_history
from updates import decisions, retention, sending, setwise, verification, workflow
from updates.models import ImportJob, ProfileUpdate

ID_LIST = re.compile(r'"updates_profileupdate"\."id" IN \(')
LIVE_FILTER = '"updates_profileupdate"."import_pending_id" IS NULL'


def statements_by_id_list(run) -> list[str]:
    """Every statement `run()` sends that names updates by a list of ids."""
    with CaptureQueriesContext(db) as captured:
        run()
    return [q["sql"] for q in captured.captured_queries if ID_LIST.search(q["sql"])]


def test_by_ids_names_the_ids_and_nothing_else(connection, stage):
    update = stage()
    sql = str(ProfileUpdate.objects.by_ids([update.pk, update.pk + 1]).query)
    assert ID_LIST.search(sql) and LIVE_FILTER not in sql
    assert list(ProfileUpdate.objects.by_ids([update.pk, update.pk + 1])) == [update]


def test_a_batch_decision_finds_its_chunk_by_id_alone(stage, operator, supervisor):
    updates = [workflow.update_submit(update=stage(), by=operator) for _ in range(3)]
    shown = {u.pk: ProfileUpdate.objects.get(pk=u.pk).content_hash for u in updates}

    statements = statements_by_id_list(lambda: decisions.updates_decide_shown(
        shown=shown, decision="approve", by=supervisor, comment=""))

    assert statements and not [s for s in statements if LIVE_FILTER in s]
    assert {ProfileUpdate.objects.get(pk=u.pk).status for u in updates} == {"approved"}


def test_a_chunk_does_not_decide_a_row_an_import_is_still_writing(
        connection, stage, operator, supervisor):
    # by_ids leaves the live filter out; the decision leaves such a row out itself.
    written, live = (workflow.update_submit(update=stage(), by=operator) for _ in range(2))
    shown = {u.pk: ProfileUpdate.objects.get(pk=u.pk).content_hash for u in (written, live)}
    job = ImportJob.objects.create(connection=connection, created_by=operator,
                                   file_name="x.csv", file_format="csv", status="running")
    ProfileUpdate.objects.filter(pk=written.pk).update(import_pending=job)
    transition, comment = decisions._check_decision("approve", supervisor, "")

    with transaction.atomic():
        result = setwise.decide_set(shown=shown, transition=transition, by=supervisor,
                                    comment=comment, strict=False)

    assert result.done == [live.pk] and [pk for pk, _ in result.refused] == [written.pk]
    assert ProfileUpdate.with_pending_imports.get(pk=written.pk).status == "pending"


def test_sending_and_verifying_find_their_updates_by_id_alone(approve, acme, faithful_emulator):
    acme.verify_after_send = True
    acme.save(update_fields=["verify_after_send"])
    updates = [approve() for _ in range(3)]

    sent = statements_by_id_list(sending.send_due)
    acked = ProfileUpdate.objects.get(pk=updates[0].pk).acknowledged_at
    verified = statements_by_id_list(lambda: (
        verification.updates_verify_due(now=timezone.now()),
        verification.updates_verify_due(now=acked + verification.check_delays()[0]
                                        + timezone.timedelta(seconds=5))))

    assert sent and verified
    assert not [s for s in sent + verified if LIVE_FILTER in s]
    assert {ProfileUpdate.objects.get(pk=u.pk).verification_checks for u in updates} == {1}


def test_retention_purges_and_deletes_its_chunks_by_id_alone(connection, operator):
    connection.retain_values_days, connection.retain_records_days = 90, 30
    connection.save()
    seed_history(connection, operator, count=3, age_days=100)

    purged = statements_by_id_list(lambda: retention.retention_purge(chunk_size=2))
    deleted = statements_by_id_list(lambda: retention.retention_purge(
        now=timezone.now() + dt.timedelta(days=31)))

    assert purged and deleted
    assert not [s for s in purged + deleted if LIVE_FILTER in s]
    assert ProfileUpdate.objects.count() == 0
