"""Read queries behind the admin and the notebook: identity search, the queue, timelines, dashboard
figures, and updates, attempts and audit events selected by id and filter."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from updates import selectors, workflow
from updates.models import AuditEvent, DailyUsage, ProfileUpdate, SendAttempt, SendRun


def identities(qs) -> set[str]:
    return set(qs.values_list("identity", flat=True))


def attempt(update, number, *, at, outcome=SendAttempt.Outcome.ACKNOWLEDGED, latency_ms=10,
            **kwargs):
    return SendAttempt.objects.create(
        update=update, connection=update.connection, number=number, started_at=at,
        method="GET", request_bytes=100, outcome=outcome, latency_ms=latency_ms,
        http_status=kwargs.pop("http_status", 200), **kwargs)


# --- search ------------------------------------------------------------------------------------

def test_identity_search_is_exact_by_default_and_case_sensitive(stage):
    stage(identity="Cust-1")
    stage(identity="Cust-10")
    qs = ProfileUpdate.objects.all()
    assert identities(selectors.search_identity(qs, "Cust-1")) == {"Cust-1"}
    assert identities(selectors.search_identity(qs, "cust-1")) == set()
    assert identities(selectors.search_identity(qs, "  Cust-1  ")) == {"Cust-1"}


def test_identity_search_with_a_star_matches_the_beginning(stage):
    for identity in ("ab-1", "ab-2", "abc", "b-ab"):
        stage(identity=identity)
    qs = ProfileUpdate.objects.all()
    assert identities(selectors.search_identity(qs, "ab-*")) == {"ab-1", "ab-2"}
    assert identities(selectors.search_identity(qs, "ab*")) == {"ab-1", "ab-2", "abc"}


def test_identity_prefix_search_takes_like_wildcards_literally(stage):
    stage(identity="100%_done")
    stage(identity="100x-done")
    qs = ProfileUpdate.objects.all()
    assert identities(selectors.search_identity(qs, "100%*")) == {"100%_done"}
    assert identities(selectors.search_identity(qs, "100_*")) == set()


def test_identity_prefix_search_is_case_sensitive_and_reaches_the_last_character(stage):
    for identity in ("Ab-1", "ab-1", "ab-\uffff", "ab.", "ab,"):
        stage(identity=identity)
    qs = ProfileUpdate.objects.all()
    assert identities(selectors.search_identity(qs, "ab-*")) == {"ab-1", "ab-\uffff"}
    assert identities(selectors.search_identity(qs, "Ab*")) == {"Ab-1"}


@pytest.mark.parametrize("prefix, after", [
    ("cust-12", "cust-13"), ("a\ud7ff", "a\ue000"), ("z", "{"), ("\U0010ffff", "")])
def test_the_end_of_a_prefix_range_is_the_prefix_moved_one_code_point_on(prefix, after):
    assert selectors._next_prefix(prefix) == after


def test_identity_search_finds_an_update_by_number(stage):
    update = stage()
    stage()
    assert list(selectors.search_identity(ProfileUpdate.objects.all(), f"#{update.pk}")) == [update]


def test_an_empty_search_returns_everything(stage):
    stage(), stage()
    assert selectors.search_identity(ProfileUpdate.objects.all(), "  ").count() == 2


# --- what will be sent ----------------------------------------------------------------------------

def test_attribute_rows_are_in_request_order(stage):
    update = stage(attributes={"loyaltyTier": "gold", "callNote": "x", "loanStatus": "funded"})
    assert selectors.attribute_rows(update) == [
        ("callNote", "x"), ("loanStatus", "funded"), ("loyaltyTier", "gold")]


# --- queue -------------------------------------------------------------------------------------

def test_pending_updates_are_oldest_first_and_only_pending(stage, operator):
    a = workflow.update_submit(update=stage(), by=operator)
    stage()
    b = workflow.update_submit(update=stage(), by=operator)
    assert list(selectors.pending_updates()) == [a, b]


def test_capped_count_stops_at_the_cap(stage):
    for _ in range(3):
        stage()
    assert selectors.capped_count(ProfileUpdate.objects.all(), cap=2) == (2, True)
    assert selectors.capped_count(ProfileUpdate.objects.all(), cap=3) == (3, False)


# --- timeline ----------------------------------------------------------------------------------

def test_the_timeline_merges_audit_events_and_attempts_in_time_order(stage, operator, supervisor):
    update = workflow.update_submit(update=stage(), by=operator)
    workflow.update_approve(update=update, by=supervisor)
    t = timezone.now() + dt.timedelta(minutes=1)
    AuditEvent.objects.create(at=t, action="claimed", update=update, from_status="approved",
                              to_status="sending")
    attempt(update, 1, at=t, outcome=SendAttempt.Outcome.TRANSIENT, http_status=503)
    attempt(update, 2, at=t + dt.timedelta(seconds=30))
    AuditEvent.objects.create(at=t + dt.timedelta(seconds=31), action="sent", update=update,
                              from_status="sending", to_status="sent")
    labels = [e.event.action if e.kind == "event" else f"attempt {e.attempt.number}"
              for e in selectors.update_timeline(update=update)]
    assert labels == ["staged", "submitted", "approved", "claimed", "attempt 1", "attempt 2",
                      "sent"]


def test_the_timeline_keeps_only_the_latest_entries_of_a_long_history(stage):
    update = stage()
    t = timezone.now()
    for n in range(1, 6):
        attempt(update, n, at=t + dt.timedelta(seconds=n))
    entries = selectors.update_timeline(update=update, limit=3)
    assert [e.attempt.number for e in entries if e.kind == "attempt"] == [3, 4, 5]


# --- dashboard figures ---------------------------------------------------------------------------

def test_daily_usage_fills_missing_days_with_zeros_and_ignores_older_days(connection):
    today = dt.date(2025, 3, 31)
    DailyUsage.objects.create(connection=connection, day=today, requests=5, acknowledged=4,
                              failed=1)
    DailyUsage.objects.create(connection=connection, day=dt.date(2025, 3, 2), requests=7)
    DailyUsage.objects.create(connection=connection, day=dt.date(2025, 3, 1), requests=99)
    days = selectors.daily_usage(connection_ids=[connection.pk], today=today)[connection.pk]
    assert len(days) == 30
    assert days[0] == selectors.DayUsage(dt.date(2025, 3, 2), 7, 0, 0)
    assert days[-1] == selectors.DayUsage(today, 5, 4, 1)
    assert sum(d.requests for d in days) == 12


def test_status_counts_are_per_status_and_capped(stage, operator):
    for _ in range(3):
        stage()
    workflow.update_submit(update=stage(), by=operator)
    counts = {c.status: (c.count, c.capped) for c in selectors.status_counts(cap=2)}
    assert counts["draft"] == (2, True)
    assert counts["pending"] == (1, False)
    assert counts["sent"] == (0, False)


def test_nearest_rank_percentile():
    values = list(range(1, 21))  # 1..20
    assert selectors.percentile(values, 0.95) == 19
    assert selectors.percentile(values, 0.5) == 10
    assert selectors.percentile([7], 0.95) == 7
    assert selectors.percentile([], 0.95) is None


def test_latency_uses_only_the_latest_acknowledged_attempts(stage):
    update = stage()
    t = timezone.now()
    attempt(update, 1, at=t - dt.timedelta(hours=2), latency_ms=5000)  # older than the sample
    for n, ms in enumerate([100, 300, 200], start=2):
        attempt(update, n, at=t - dt.timedelta(minutes=10 - n), latency_ms=ms)
    attempt(update, 9, at=t, outcome=SendAttempt.Outcome.PERMANENT, latency_ms=1, http_status=400)
    latency = selectors.ack_latency(sample=3)
    assert (latency.sample_size, latency.median_ms, latency.p95_ms) == (3, 200, 300)


def test_latency_without_acknowledgments_is_empty(db):
    assert selectors.ack_latency() == selectors.Latency(0, None, None, None)


def test_oldest_pending_and_last_run(stage, operator):
    assert selectors.oldest_pending() is None and selectors.last_send_run() is None
    first = workflow.update_submit(update=stage(), by=operator)
    workflow.update_submit(update=stage(), by=operator)
    t = timezone.now()
    SendRun.objects.create(started_at=t - dt.timedelta(minutes=2))
    latest = SendRun.objects.create(started_at=t)
    assert selectors.oldest_pending() == first
    assert selectors.last_send_run() == latest


def test_the_dashboard_reads_the_quota_window_per_connection(connection):
    from updates import quota
    now = timezone.now()
    quota.reserve(connection=connection, wanted=12, now=now)
    picture = selectors.dashboard(now=now).connections[0]
    assert (picture.window_requests, picture.limit, picture.remaining) == (12, 1_000_000, 999_988)
    assert picture.oldest_leaves_at == now.replace(second=0, microsecond=0) + dt.timedelta(
        hours=24, minutes=1)


# --- selected by id and filter (the notebook's listings) ------------------------------------------

def test_a_connection_is_named_by_itself_its_id_label_or_client_code(connection):
    assert selectors.connection_named(connection.pk) == connection
    assert selectors.connection_named("acme") == connection
    assert selectors.connection_named(connection.label) == connection
    assert selectors.connection_named(None) == connection  # the one active connection
    with pytest.raises(LookupError, match=r"No connection 'nope' \(connections: Connection acme\)"):
        selectors.connection_named("nope")
    connection.active = False
    connection.save(update_fields=["active"])
    with pytest.raises(ValueError, match="0 active connections could be meant"):
        selectors.connection_named(None)


def test_updates_are_selected_by_every_filter_given(stage, operator, other_operator):
    mine = stage(reason="list A")
    submitted = workflow.update_submit(update=stage(reason="list A"), by=operator)
    theirs = stage(by=other_operator, reason="list B")
    assert list(selectors.updates_selected()) == [mine, submitted, theirs]
    assert list(selectors.updates_selected(reason="list A", statuses=["draft"])) == [mine]
    assert list(selectors.updates_selected(created_by="operator2")) == [theirs]
    assert list(selectors.updates_selected(ids=[theirs.pk, mine.pk])) == [mine, theirs]


def test_the_audit_of_an_imported_update_includes_its_imports_event(connection, operator):
    from updates import importing, mappings

    fingerprint = mappings.mappings_fingerprint(mappings.active_mappings(connection))
    job = importing.rows_import(
        connection=connection, by=operator, fingerprint=fingerprint, name="list.csv",
        rows=[{"identity_type": "mbox3rdPartyId", "identity": "CUST-1",
               "attributes": {"loanStatus": "funded"}}])
    [(visitor, update_id)] = selectors.import_job_update_ids(job).items()
    assert visitor == ("mbox3rdPartyId", "CUST-1")
    [event] = selectors.audit_selected(update_ids=[update_id])
    assert (event.update_id, event.action, event.changes["import_job"]) == (None, "imported", job.pk)
    assert not selectors.audit_selected(update_ids=[update_id], actor="someone else").exists()
