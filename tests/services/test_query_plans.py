"""Which index SQLite reads for the admin's and the dashboard's queries, as a deployment has it:
no ANALYZE statistics (nothing in ProfileOps runs ANALYZE), so the planner goes by the shape of
each query and its indexes alone. The plans are the specification here, not timings — at a
million updates each wrong one cost 0.1–0.7 s per page (docs/benchmarks.md, section 0b).

SQLite only: PostgreSQL plans by its statistics (autovacuum keeps them), and a test's handful of
rows makes it read whole tables either way."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection as db
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.helpers import logged_in
from updates import attention, metrics, selectors, verification
from updates.models import ImportJob, ProfileUpdate, UpdateStatus

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _sqlite_only():
    if db.vendor != "sqlite":
        pytest.skip("SQLite's planner without statistics; PostgreSQL plans by its statistics")


def plan(sql: str) -> str:
    with db.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
        return "\n".join(row[-1] for row in cursor.fetchall())


def captured_plans(run) -> dict[str, str]:
    """SQL -> plan of every SELECT that `run()` sends."""
    with CaptureQueriesContext(db) as captured:
        run()
    return {q["sql"]: plan(q["sql"]) for q in captured.captured_queries
            if q["sql"].startswith("SELECT")}


def test_no_query_over_live_updates_reads_the_index_of_pending_import_rows(admin_user, stage):
    # `import_pending IS NULL`, which every listing asks, is an equality to SQLite: a full index
    # on the column looked like the most selective one and was read over every update.
    for n in range(3):
        stage(identity=f"cust-12{n}")
    client = logged_in(Client(), admin_user)
    changelist = reverse("admin:updates_profileupdate_changelist")
    since = f"{timezone.now().date().isoformat()}+00%3A00%3A00%2B00%3A00"
    urls = [changelist, f"{changelist}?status__exact=failed", f"{changelist}?created_at__gte={since}",
            f"{changelist}?q=cust-12*", reverse("updates_dashboard")]

    plans = captured_plans(lambda: [client.get(url) for url in urls])

    live = {sql: p for sql, p in plans.items() if '"import_pending_id" IS NULL' in sql}
    assert len(live) > 20
    assert [sql for sql, p in live.items() if "upd_import_pending" in p] == []
    by_filter = {'"created_at" >=': "upd_created_at", '"identity" >=': "upd_identity"}
    for condition, index in by_filter.items():
        counts = [p for sql, p in live.items() if condition in sql and "COUNT(*)" in sql]
        assert counts and all(f"INDEX {index} " in p for p in counts), (condition, counts)


def reads_table_columns(sql: str, table: str) -> bool:
    """Whether the statement's program reads a column from a row of `table` (not only from
    its indexes): an OpenRead of the table's root page, then a Column on that cursor."""
    with db.cursor() as cursor:
        cursor.execute("SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = %s",
                       [table])
        [(root,)] = cursor.fetchall()
        cursor.execute(f"EXPLAIN {sql}")
        program = [(opcode, p1, p2) for _, opcode, p1, p2, *_ in cursor.fetchall()]
    cursors = {p1 for opcode, p1, p2 in program if opcode == "OpenRead" and p2 == root}
    return any(opcode == "Column" and p1 in cursors for opcode, p1, _ in program)


def test_counts_by_status_read_the_status_index_of_live_rows_and_no_row(stage):
    # The index holds live rows only, so SQLite drops `import_pending IS NULL` and counts
    # without reading a table row (its plan does not say COVERING: it still names the column).
    stage()

    plans = captured_plans(lambda: selectors.capped_count(
        ProfileUpdate.objects.filter(status=UpdateStatus.SENT), cap=10))

    [(sql, status_count)] = plans.items()
    assert "INDEX upd_status_id (status=?)" in status_count
    assert not reads_table_columns(sql, ProfileUpdate._meta.db_table)


def test_the_verification_picture_reads_the_acknowledgment_index_alone(stage):
    ProfileUpdate.objects.filter(pk=stage().pk).update(
        status=UpdateStatus.SENT, acknowledged_at=timezone.now())

    plans = captured_plans(lambda: verification.daily_summary())

    [by_day] = [p for sql, p in plans.items() if '"acknowledged_at"' in sql]
    assert "COVERING INDEX upd_acknowledged (acknowledged_at>?)" in by_day


def test_request_counts_over_a_window_read_each_connections_range_of_attempts(connection):
    now = timezone.now()

    plans = captured_plans(lambda: attention.requests_between(
        since=now - dt.timedelta(days=1), until=now))

    [attempts] = [p for sql, p in plans.items() if "updates_sendattempt" in sql]
    assert "INDEX att_conn_started (connection_id=? AND started_at>? AND started_at<?)" in attempts


def test_the_metrics_scrape_reads_only_the_newer_attempts_each_connections_range(connection):
    totals = metrics._AttemptTotals()
    totals.read(now=timezone.now())  # the first scrape adds up the settled attempts, once

    plans = captured_plans(lambda: totals.read(now=timezone.now()))

    newer = [p for sql, p in plans.items() if "updates_sendattempt" in sql]
    assert newer and all("INDEX att_conn_started (connection_id=? AND started_at>?" in p
                         for p in newer), newer


def test_an_imports_own_rows_are_found_through_the_index_of_pending_rows(connection, operator):
    job = ImportJob.objects.create(connection=connection, created_by=operator, file_name="a.csv",
                                file_format="csv")

    plans = captured_plans(lambda: list(
        ProfileUpdate.with_pending_imports.filter(import_pending=job).values_list("pk")))

    assert "COVERING INDEX upd_import_pending (import_pending_id=?)" in "".join(plans.values())


def test_the_dashboards_at_target_links_list_through_the_acknowledgment_index(
        admin_user, stage):
    # The dashboard's "at Target" tiles add no query (they sum the verification picture); the
    # list they link to (a verification state and the days sent) reads the range of
    # upd_acknowledged, which holds the state, for its rows and for its capped count.
    ProfileUpdate.objects.filter(pk=stage().pk).update(
        status=UpdateStatus.SENT, acknowledged_at=timezone.now(), verification_state="verified")
    client = logged_in(Client(), admin_user)
    dashboard = captured_plans(lambda: client.get(reverse("updates_dashboard")))
    assert not [sql for sql in dashboard if '"verification_state" =' in sql]
    tile = client.get(reverse("updates_dashboard")).context["at_target_tiles"][0]

    plans = captured_plans(lambda: client.get(tile.url))

    listing = [p for sql, p in plans.items() if '"verification_state" =' in sql]
    assert len(listing) >= 2 and all("INDEX upd_acknowledged (acknowledged_at>? AND "
                                     "acknowledged_at<?)" in p for p in listing), listing


def test_the_claim_looks_up_its_visitors_other_updates_by_identity(connection, stage, operator,
                                                                   supervisor):
    # One update per visitor in flight (claims._one_per_visitor, and `due`'s subquery): looking
    # for the visitor's other updates read the connection's whole history per due update (its
    # foreign key index), or every update of the identity type.
    from updates import claims, workflow

    update = stage()
    workflow.update_submit(update=update, by=operator)
    workflow.update_approve(update=update, by=supervisor)
    now = timezone.now()
    plans = captured_plans(lambda: claims.claim(conn=connection, owner="w", size=10, now=now,
                                                lease_until=now + dt.timedelta(minutes=1)))
    # Two lookups: the visitor's approved and sending updates, and its bulk-sent ones whose file
    # Target has not finished (claims.OPEN_BULK_FILE_STATES).
    lookups = [p for sql, p in plans.items() if '"identity" IN' in sql]
    assert len(lookups) == 2
    for lookup in lookups:
        assert lookup.startswith("SEARCH updates_profileupdate USING INDEX upd_identity"), lookup

    sql, params = (claims.due(now=now, connection_id=connection.pk).values_list("id")
                   .query.sql_with_params())
    with db.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        steps = [row[-1] for row in cursor.fetchall()]
    assert "SEARCH U0 USING INDEX upd_identity (identity=?)" in steps, steps


def test_an_import_looks_up_its_rows_visitors_open_updates_by_identity(connection, operator):
    # importing._resolve_open runs while the import's last transaction holds the lock: one
    # statement over its rows, each probing its visitor's updates through upd_identity.
    from updates import open_changes

    job = ImportJob.objects.create(connection=connection, created_by=operator, file_name="f",
                                   file_format="csv", file_data=b"")
    pending = ProfileUpdate.with_pending_imports.filter(import_pending_id=job.pk)
    query = pending.filter(open_changes.has_open_update(connection.pk)).values_list("pk")
    sql, params = query.query.sql_with_params()
    with db.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        steps = [row[-1] for row in cursor.fetchall()]
    assert steps[0].startswith("SEARCH updates_profileupdate USING INDEX upd_import_pending"), steps
    assert "SEARCH U0 USING INDEX upd_identity (identity=?)" in steps, steps


def test_the_waiting_lists_and_tiles_read_the_status_indexes_and_each_windows_minutes(
        admin_user, stage, connection):
    # ?waiting=retrying / ?waiting=deferred and the dashboard's tiles share attention.retrying
    # and attention.deferred_by_quota: approved rows through a status index, never a scan of the
    # updates; a full window is found by summing each connection's minute rows in range.
    stage()
    client = logged_in(Client(), admin_user)
    changelist = reverse("admin:updates_profileupdate_changelist")

    plans = captured_plans(lambda: [client.get(f"{changelist}?waiting={key}")
                                    for key in attention.WAITING]
                           + [attention.needs_attention()])

    approved = {sql: p for sql, p in plans.items()
                if "\"status\" = 'approved'" in sql and "updates_profileupdate" in sql}
    assert len(approved) >= 4
    for sql, p in approved.items():
        assert "SCAN updates_profileupdate" not in p, (sql, p)
        assert re.search(r"SEARCH updates_profileupdate USING INDEX upd_(conn_)?status_id", p), p
    deferred = [p for sql, p in approved.items() if "updates_quotaminute" in sql]
    assert deferred and all(
        "INDEX sqlite_autoindex_updates_quotaminute_1 (connection_id=? AND minute>?)" in p
        for p in deferred)


def test_the_queues_identity_prefix_search_and_pending_counts_per_import_read_indexes(
        connection, operator, stage):
    # The queue at 2,000+ rows (issue 24, item 6): a prefix search over pending updates and the
    # import picker's grouped count never scan the updates table.
    plans = captured_plans(lambda: (
        list(selectors.queue_updates(identity="cust-12*", reason="spring")[:25]),
        selectors.imports_waiting()))
    pending_reads = [p for sql, p in plans.items() if "updates_profileupdate" in sql
                     and "'pending'" in sql]
    assert len(pending_reads) == 2, plans
    for p in pending_reads:
        assert not re.search(r"SCAN updates_profileupdate\b(?! USING)", p), p
        assert re.search(r"updates_profileupdate USING (COVERING )?INDEX upd_", p), p


def test_verification_finds_new_acknowledgments_by_their_index_and_its_groups_by_id(
        connection, stage):
    # A quota day's verification on PostgreSQL without fresh statistics (docs/benchmarks.md
    # §11): each group's claim and each result's save named the rows by id *and* by state, and
    # the planner read every sent update for them; each run's look for new acknowledgments read
    # every sent update too. By id alone, and through a partial index of the unscheduled ones.
    update = stage()
    ProfileUpdate.objects.filter(pk=update.pk).update(status=UpdateStatus.SENT,
                                                      acknowledged_at=timezone.now())
    connection.verify_after_send = True
    connection.save(update_fields=["verify_after_send"])

    plans = captured_plans(lambda: (verification.updates_verify_due(connection=connection),
                                    verification.updates_verify_due()))

    new = [p for sql, p in plans.items() if "\"verification_state\" = ''" in sql]
    assert len(new) == 2 and all(re.search(r"USING (COVERING )?INDEX upd_sent_unscheduled", p)
                                 for p in new), plans
    by_id = ProfileUpdate.objects.by_ids([update.pk, update.pk + 1]).values_list(
        "id", "status", "verification_state")
    sql, params = by_id.query.sql_with_params()
    with db.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        steps = [row[-1] for row in cursor.fetchall()]
    assert steps == ["SEARCH updates_profileupdate USING INTEGER PRIMARY KEY (rowid=?)"], steps
