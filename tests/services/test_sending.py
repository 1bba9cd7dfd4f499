"""Sending (updates/sending.py) over real HTTP to the local Target emulator.

Time moves through send_due's `now=` instead of sleeping. Tests that run two workers in threads
use committed data (transaction=True); serialized_rollback brings back the roles that the data
migrations create, which a transactional test's flush would otherwise remove.
"""

from __future__ import annotations

import datetime as dt
import threading
from importlib import import_module

import pytest
from django.apps import apps as django_apps
from django.db import connection as db, connections
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import Schedule

from tests.conftest import REFUSING_PROXY, make_mapping
from updates import quota, sending, target, tasks, workflow
from updates.models import (
    AuditEvent, DailyUsage, ProfileUpdate, QuotaMinute, SendAttempt, SendRun, TargetConnection,
    UpdateStatus,
)

S = UpdateStatus
threaded = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture(autouse=True)
def quick_sending(settings):
    settings.PROFILEOPS = {
        **settings.PROFILEOPS,
        "SEND_BATCH_SIZE": 50, "SEND_CONCURRENCY": 8, "CONNECT_TIMEOUT": 2.0,
        "READ_TIMEOUT": 0.5, "LEASE_SECONDS": 120, "MAX_ATTEMPTS": 4,
        "MAX_UNEXPECTED_ANSWERS": 2, "BACKOFF_BASE_SECONDS": 10.0, "BACKOFF_MAX_SECONDS": 600.0,
    }


@pytest.fixture
def acme(connection, emulator):
    """The conftest connection, pointed at the emulator."""
    connection.base_url = emulator.base_url
    connection.save(update_fields=["base_url"])
    return connection


def fresh(update: ProfileUpdate) -> ProfileUpdate:
    return ProfileUpdate.objects.get(pk=update.pk)


def later(**delta) -> dt.datetime:
    return timezone.now() + dt.timedelta(**delta)


# --- round trips -------------------------------------------------------------------------------

TRICKY_VALUES = {
    "amp&eq=plus+pct%hash#slash/q?": "a&b=c+d%25e#f/g?h",
    "with space": "  leading and trailing spaces  ",
    "Gr\u00fc\u00dfe": "na\u00efve caf\u00e9 \u2014 \u4e2d\u6587",
    "emoji\U0001F600": "\U0001F680\U0001F469\u200d\U0001F4BB",
    "MiXeDCase": "line one\nline two\r\nThree",
}


@pytest.mark.django_db
def test_tricky_names_and_values_arrive_exactly_as_staged(acme, approve, emulator):
    for name in TRICKY_VALUES:
        make_mapping(acme, f"src {name}", name, trim=False, max_length=500)
    update = approve(identity="id &=%#?\u00e9 \U0001F600 X", attributes=TRICKY_VALUES)

    run = sending.send_due()

    assert run.acknowledged == 1
    [received] = emulator.received
    assert received["method"] == "GET"
    assert received["client_code"] == "acme"
    assert (received["identity_type"], received["identity"]) == (
        "mbox3rdPartyId", "id &=%#?\u00e9 \U0001F600 X")
    assert received["attributes"] == TRICKY_VALUES
    update = fresh(update)
    assert update.status == S.SENT and update.acknowledged_at is not None


@pytest.mark.django_db
def test_an_acknowledged_update_is_sent_with_its_attempt_audit_and_usage_on_record(
        acme, approve, emulator):
    update = approve(attributes={"loanStatus": "funded", "loyaltyTier": "Gold"})
    now = later(minutes=1)

    run = sending.send_due(now=now, trigger="command", worker="test-worker")

    update = fresh(update)
    assert (update.status, update.acknowledged_at, update.attempt_count, update.attempts_total) \
        == (S.SENT, now, 1, 1)
    assert update.lease_owner == "" and update.lease_expires_at is None
    [attempt] = update.attempts.all()
    assert (attempt.number, attempt.method, attempt.http_status, attempt.outcome) == (
        1, "GET", 200, "acknowledged")
    assert attempt.response_body == target.ACKNOWLEDGMENT
    assert attempt.request_bytes == sending.request_for(update).size
    assert attempt.latency_ms is not None and attempt.worker.startswith("test-worker/")
    assert [(e.action, e.from_status, e.to_status, e.actor_id) for e in update.audit_events.all()][-2:] \
        == [("claimed", "approved", "sending", None), ("acknowledged", "sending", "sent", None)]
    usage = DailyUsage.objects.get(connection=acme, day=now.date())
    assert (usage.requests, usage.acknowledged, usage.failed) == (1, 1, 0)
    run = SendRun.objects.get(pk=run.pk)
    assert (run.trigger, run.claimed, run.acknowledged, run.failed, run.retried) == (
        "command", 1, 1, 0, 0)
    assert run.finished_at == now
    assert {n: v["value"] for n, v in
            emulator.profiles[("mbox3rdPartyId", update.identity)]["attributes"].items()} == {
        "loanStatus": "funded", "loyaltyTier": "Gold"}


@pytest.mark.django_db
def test_the_bearer_token_of_the_connection_reaches_target(acme, approve, emulator):
    acme.bearer_token = "tok-123"
    acme.save(update_fields=["bearer_token"])
    approve()
    sending.send_due()
    assert emulator.received[0]["authorization"] == "Bearer tok-123"


@pytest.mark.django_db
def test_a_proxy_named_by_the_environment_never_sees_the_requests(acme, approve, emulator,
                                                                   proxy_in_the_environment):
    update = approve()
    assert sending.send_due().acknowledged == 1
    assert fresh(update).status == S.SENT
    assert len(emulator.received) == 1


@pytest.mark.django_db
def test_requests_go_through_the_configured_proxy(acme, approve, emulator, settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "TARGET_PROXY": REFUSING_PROXY}
    update = approve()
    run = sending.send_due()
    assert (run.requests_sent, run.acknowledged, run.retried) == (1, 0, 1)
    assert emulator.received == []  # it went to the "proxy", which refused the connection
    assert fresh(update).attempts.get().outcome == SendAttempt.Outcome.TRANSIENT


@pytest.mark.django_db
def test_a_netrc_entry_for_the_host_does_not_replace_the_bearer_token(acme, approve, emulator,
                                                                      monkeypatch, tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password not-the-token\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    acme.bearer_token = "tok-123"
    acme.save(update_fields=["bearer_token"])
    approve()
    sending.send_due()
    assert emulator.received[0]["authorization"] == "Bearer tok-123"


def test_a_ca_bundle_named_by_the_environment_is_used_for_tls(monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/inspecting-proxy.pem")
    assert sending.make_session(concurrency=2).verify == "/etc/ssl/certs/inspecting-proxy.pem"
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    assert sending.make_session(concurrency=2).verify is True


@pytest.mark.django_db
def test_get_at_exactly_8192_bytes_and_post_one_byte_later_both_acknowledged(
        acme, approve, emulator):
    make_mapping(acme, "long", "longNote", max_length=60_000)
    probe = sending.request_for(approve(attributes={"longNote": "x"}))
    bare = probe.size - 1
    at_limit = approve(attributes={"longNote": "x" * (8192 - bare)})
    over_limit = approve(attributes={"longNote": "x" * (8193 - bare)})
    assert sending.request_for(at_limit).size == 8192

    run = sending.send_due()

    assert run.acknowledged == 3
    methods = {r["identity"]: (r["method"], r["status"]) for r in emulator.received}
    assert methods[at_limit.identity] == ("GET", 200)
    assert methods[over_limit.identity] == ("POST", 200)
    attempts = {a.update_id: (a.method, a.request_bytes) for a in SendAttempt.objects.all()}
    assert attempts[at_limit.pk] == ("GET", 8192)
    assert attempts[over_limit.pk][0] == "POST"


@pytest.mark.django_db
def test_a_post_body_of_exactly_61440_bytes_is_acknowledged(acme, approve, emulator):
    make_mapping(acme, "long", "longNote", max_length=60_000)
    bare = target.encoded_size("mbox3rdPartyId", "big-1", {"longNote": ""})
    # A value holds at most 60,000 characters; "é" takes 6 bytes once encoded (%C3%A9).
    sixes, rest = divmod(61_440 - bare, 6)
    update = approve(identity="big-1", attributes={"longNote": "\u00e9" * sixes + "y" * rest})
    assert sending.request_for(update).size == 61_440

    sending.send_due()

    assert [(r["method"], r["status"], r["bytes"]) for r in emulator.received] == [
        ("POST", 200, 61_440)]
    assert fresh(update).status == S.SENT


@pytest.mark.django_db
def test_nothing_is_sent_before_its_earliest_send_time(acme, approve, emulator):
    update = approve(not_before=later(hours=1))
    assert sending.send_due().claimed == 0
    assert emulator.received == []
    sending.send_due(now=later(hours=1, minutes=1))
    assert fresh(update).status == S.SENT


@pytest.mark.django_db
def test_inactive_connections_and_unapproved_updates_are_left_alone(acme, approve, stage, emulator):
    stage()  # a draft
    approved = approve()
    acme.active = False
    acme.save(update_fields=["active"])
    assert sending.send_due().claimed == 0
    assert fresh(approved).status == S.APPROVED
    assert emulator.received == []


# --- failure classes ---------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_5xx_is_retried_with_backoff_and_then_acknowledged(acme, approve, emulator):
    emulator.configure(error_rate=1.0)
    update = approve()
    t0 = later(minutes=1)

    run = sending.send_due(now=t0)

    update = fresh(update)
    assert (run.retried, update.status, update.attempt_count) == (1, S.APPROVED, 1)
    # First step 10 s, "equal jitter": between 5 and 10 s.
    assert t0 + dt.timedelta(seconds=5) <= update.next_attempt_at <= t0 + dt.timedelta(seconds=10)
    assert update.last_error == "HTTP 503"
    assert update.attempts.get().outcome == "transient"
    assert [e.action for e in update.audit_events.all()][-1] == "retry_scheduled"

    assert sending.send_due(now=t0 + dt.timedelta(seconds=4)).claimed == 0  # not due yet
    emulator.configure(error_rate=0.0)
    sending.send_due(now=update.next_attempt_at)

    update = fresh(update)
    assert (update.status, update.attempt_count, update.attempts_total) == (S.SENT, 2, 2)
    assert update.last_error == ""
    assert [a.outcome for a in update.attempts.all()] == ["transient", "acknowledged"]


@pytest.mark.django_db
def test_backoff_doubles_per_attempt_up_to_the_maximum(settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "BACKOFF_BASE_SECONDS": 10.0,
                           "BACKOFF_MAX_SECONDS": 60.0}
    for attempt, step in [(1, 10), (2, 20), (3, 40), (4, 60), (9, 60)]:
        delays = [sending.backoff(attempt=attempt).total_seconds() for _ in range(50)]
        assert all(step / 2 <= d <= step for d in delays)
        assert len(set(delays)) > 1  # jittered


@pytest.mark.django_db
def test_retry_after_is_honoured_when_larger_than_the_backoff(acme, approve, emulator):
    emulator.configure(quota=1, quota_window_seconds=600)
    updates = [approve(), approve()]
    t0 = later(minutes=1)

    sending.send_due(now=t0)

    # Sent concurrently: either may be the one the emulator's quota refuses.
    [refused] = SendAttempt.objects.filter(http_status=429)
    assert refused.outcome == "transient"
    statuses = {u.pk: fresh(u).status for u in updates}
    assert sorted(statuses.values()) == [S.APPROVED, S.SENT]
    assert statuses[refused.update_id] == S.APPROVED
    # The emulator says how long until its window frees (about 600 s); backoff alone is <= 10 s.
    assert fresh(refused.update).next_attempt_at >= t0 + dt.timedelta(seconds=590)


@pytest.mark.django_db
def test_a_timeout_is_transient(acme, approve, emulator):
    emulator.configure(timeout_rate=1.0, hang_seconds=3.0)
    update = approve()
    sending.send_due()
    update = fresh(update)
    assert update.status == S.APPROVED
    attempt = update.attempts.get()
    assert (attempt.outcome, attempt.http_status) == ("transient", None)
    assert "Timeout" in attempt.error


@pytest.mark.django_db
def test_a_dropped_connection_is_transient_and_its_error_holds_no_query_values(
        acme, approve, emulator):
    emulator.configure(drop_rate=1.0)
    update = approve(identity="very-private-id", attributes={"callNote": "secret note"})
    sending.send_due()
    update = fresh(update)
    attempt = update.attempts.get()
    assert (update.status, attempt.outcome, attempt.http_status) == (S.APPROVED, "transient", None)
    for text in (attempt.error, update.last_error):
        assert text and "very-private-id" not in text and "secret" not in text


@pytest.mark.django_db
def test_an_unreachable_target_is_transient(acme, approve, emulator):
    port = emulator.port
    emulator.stop()
    acme.base_url = f"http://127.0.0.1:{port}"
    acme.save(update_fields=["base_url"])
    update = approve()
    sending.send_due()
    assert fresh(update).status == S.APPROVED
    assert fresh(update).attempts.get().outcome == "transient"


@pytest.mark.django_db
def test_a_permanent_4xx_fails_at_once_with_the_reason(acme, approve, emulator):
    acme.base_url = emulator.base_url + "/wrong-prefix"  # the emulator answers 404
    acme.save(update_fields=["base_url"])
    update = approve()

    run = sending.send_due()

    update = fresh(update)
    assert (run.failed, update.status, update.attempt_count) == (1, S.FAILED, 1)
    assert update.last_error.startswith("Target refused the request (HTTP 404)")
    assert update.next_attempt_at is None
    assert [e.action for e in update.audit_events.all()][-1] == "failed"
    usage = DailyUsage.objects.get(connection=acme)
    assert (usage.requests, usage.acknowledged, usage.failed) == (1, 0, 1)


@pytest.mark.django_db
def test_a_token_no_header_can_carry_fails_at_once_without_reaching_target(acme, approve,
                                                                         emulator):
    # The admin and connection_save refuse such tokens; one stored another way must not be
    # retried eight times for nothing.
    acme.bearer_token = "SECRET\nVALUE"
    acme.save(update_fields=["bearer_token"])
    update = approve()

    sending.send_due()

    update = fresh(update)
    assert (update.status, update.attempt_count) == (S.FAILED, 1)
    assert "InvalidHeader" in update.last_error and "SECRET" not in update.last_error
    assert emulator.received == []


@pytest.mark.django_db
def test_unexpected_answers_are_retried_a_bounded_number_of_times_then_fail(
        acme, approve, emulator):
    emulator.configure(wrong_body_rate=1.0)  # MAX_UNEXPECTED_ANSWERS is 2 here
    update = approve()
    t0 = later(minutes=1)

    sending.send_due(now=t0)
    assert fresh(update).status == S.APPROVED
    sending.send_due(now=t0 + dt.timedelta(hours=1))

    update = fresh(update)
    assert update.status == S.FAILED
    assert update.last_error.startswith("2 unexpected answers (HTTP 200")
    assert "maintenance" in update.last_error
    bodies = [a.response_body for a in update.attempts.all()]
    assert bodies == ["<html><body>maintenance</body></html>"] * 2


@pytest.mark.django_db
def test_the_attempt_budget_ends_in_failure_and_a_requeue_gives_a_fresh_budget(
        acme, approve, emulator, supervisor):
    emulator.configure(error_rate=1.0)  # MAX_ATTEMPTS is 4 here
    update = approve()
    t = later(minutes=1)
    for _ in range(4):
        sending.send_due(now=t)
        t += dt.timedelta(hours=1)

    update = fresh(update)
    assert (update.status, update.attempt_count) == (S.FAILED, 4)
    assert update.last_error == "Gave up after 4 attempts; last: HTTP 503"

    workflow.update_requeue(update=update, by=supervisor)
    emulator.configure(error_rate=0.0)
    sending.send_due(now=t)
    update = fresh(update)
    assert (update.status, update.attempt_count, update.attempts_total) == (S.SENT, 1, 5)
    assert [a.number for a in update.attempts.all()] == [1, 2, 3, 4, 5]


@pytest.mark.django_db
def test_content_that_differs_from_the_approval_is_never_sent(acme, approve, emulator):
    update = approve()
    # Only a direct database write can do this; the workflow sends edits back to draft.
    ProfileUpdate.objects.filter(pk=update.pk).update(attributes={"loanStatus": "declined"})
    sending.send_due()
    update = fresh(update)
    assert update.status == S.FAILED
    assert "differs from what was approved" in update.last_error
    assert emulator.received == [] and not update.attempts.exists()
    assert quota.window_usage(connection=acme) == 0  # its reservation was given back


# --- quota -------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_full_window_defers_sending_until_it_frees(acme, approve, emulator):
    acme.quota_limit = 3
    acme.save(update_fields=["quota_limit"])
    updates = [approve() for _ in range(5)]
    t0 = timezone.now().replace(second=30, microsecond=0) + dt.timedelta(minutes=1)

    run = sending.send_due(now=t0)

    assert (run.acknowledged, run.deferred_by_quota) == (3, 2)
    assert len(emulator.received) == 3
    statuses = [fresh(u).status for u in updates]
    assert statuses == [S.SENT] * 3 + [S.APPROVED] * 2
    assert not AuditEvent.objects.filter(update=updates[4], action="claimed").exists()
    assert quota.oldest_counted_at(connection=acme, now=t0) == t0.replace(second=0) + \
        dt.timedelta(hours=24, minutes=1)

    # Still full a day later (the minute it was used is counted conservatively)...
    assert sending.send_due(now=t0 + dt.timedelta(hours=24)).deferred_by_quota == 2
    # ...and free once that minute has left the window: sending resumes by itself.
    run = sending.send_due(now=t0 + dt.timedelta(hours=24, minutes=1))
    assert (run.acknowledged, run.deferred_by_quota) == (2, 0)
    assert len(emulator.received) == 5


@pytest.mark.django_db
def test_retries_count_against_the_quota(acme, approve, emulator):
    acme.quota_limit = 2
    acme.save(update_fields=["quota_limit"])
    emulator.configure(error_rate=1.0)
    approve(), approve()
    t0 = later(minutes=1)
    sending.send_due(now=t0)
    emulator.configure(error_rate=0.0)

    run = sending.send_due(now=t0 + dt.timedelta(hours=1))

    assert run.deferred_by_quota == 2 and run.claimed == 0
    assert len(emulator.received) == 2
    assert quota.window_usage(connection=acme, now=t0 + dt.timedelta(hours=1)) == 2


@threaded
def test_two_workers_together_never_exceed_the_quota_and_never_send_an_update_twice(
        acme, approve, emulator, settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "SEND_BATCH_SIZE": 4, "SEND_CONCURRENCY": 4}
    # Each batch waits at Target long enough for the other worker to claim: at 10 ms a worker
    # on a busy machine could send all 25 before the other was scheduled at all.
    emulator.configure(latency=0.2)
    acme.quota_limit = 25
    acme.save(update_fields=["quota_limit"])
    updates = [approve() for _ in range(40)]
    runs = run_workers_concurrently(2)

    assert sum(r.acknowledged for r in runs) == 25
    assert all(r.claimed > 0 for r in runs), "both workers took part"
    assert len(emulator.received) == 25
    assert max(emulator.acknowledged_count_by_identity().values()) == 1
    assert QuotaMinute.objects.filter(connection=acme).aggregate(n=Sum("requests"))["n"] == 25
    statuses = [fresh(u).status for u in updates]
    assert statuses.count(S.SENT) == 25 and statuses.count(S.APPROVED) == 15
    assert SendAttempt.objects.count() == 25


@threaded
def test_two_workers_share_the_due_updates_without_sending_any_twice(acme, approve, emulator,
                                                                        settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "SEND_BATCH_SIZE": 3, "SEND_CONCURRENCY": 3}
    emulator.configure(latency=0.2)  # long enough for both workers to claim (see above)
    updates = [approve() for _ in range(30)]

    runs = run_workers_concurrently(2)

    assert sum(r.claimed for r in runs) == 30 and all(r.claimed for r in runs)
    assert len(emulator.received) == 30
    assert set(emulator.acknowledged_count_by_identity().values()) == {1}
    assert {fresh(u).status for u in updates} == {S.SENT}


def run_workers_concurrently(count: int) -> list[SendRun]:
    """Start `count` send_due runs at the same moment, each in its own thread and DB connection."""
    barrier = threading.Barrier(count)
    runs: list[SendRun] = []
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            barrier.wait(timeout=10)
            runs.append(sending.send_due(worker=f"worker-{n}"))
        except BaseException as error:  # reported by the test thread
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(runs) == count
    return runs


# --- leases ------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_an_expired_lease_is_claimed_again_and_a_live_one_is_not(acme, approve, emulator):
    crashed, busy = approve(), approve()
    now = later(minutes=1)
    ProfileUpdate.objects.filter(pk=crashed.pk).update(
        status=S.SENDING, lease_owner="dead-host:1/abc", lease_expires_at=now - dt.timedelta(seconds=1))
    ProfileUpdate.objects.filter(pk=busy.pk).update(
        status=S.SENDING, lease_owner="live-host:2/def", lease_expires_at=now + dt.timedelta(seconds=60))

    run = sending.send_due(now=now)

    assert run.claimed == 1
    assert fresh(crashed).status == S.SENT
    busy = fresh(busy)
    assert (busy.status, busy.lease_owner) == (S.SENDING, "live-host:2/def")
    assert [r["identity"] for r in emulator.received] == [crashed.identity]
    reclaim = crashed.audit_events.get(action="reclaimed")
    assert (reclaim.from_status, reclaim.to_status) == (S.SENDING, S.SENDING)
    assert "dead-host:1/abc" in reclaim.comment


@threaded
def test_a_worker_whose_lease_was_taken_over_does_not_overwrite_the_new_owner(
        acme, approve, emulator, settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "READ_TIMEOUT": 5.0}
    emulator.configure(latency=0.3)
    update = approve()
    worker = threading.Thread(target=lambda: (sending.send_due(worker="slow"),
                                              connections.close_all()))
    worker.start()
    assert emulator.wait_for_requests(1, timeout=10)
    # While the request is in flight, its lease "ran out" and another worker took the update.
    ProfileUpdate.objects.filter(pk=update.pk).update(lease_owner="other/123")
    worker.join(timeout=30)

    update = fresh(update)
    assert (update.status, update.lease_owner, update.attempt_count) == (S.SENDING, "other/123", 0)
    attempt = update.attempts.get()  # the request did happen, so it is on record...
    assert attempt.outcome == "acknowledged"
    assert not update.audit_events.filter(action="acknowledged").exists()  # ...but not its outcome
    assert DailyUsage.objects.get(connection=acme).requests == 1


# --- batching, limits, budget ------------------------------------------------------------------

@pytest.mark.django_db
def test_updates_are_claimed_in_batches_up_to_the_limit_in_id_order(acme, approve, emulator,
                                                                  settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "SEND_BATCH_SIZE": 3}
    updates = [approve() for _ in range(8)]
    seen = []

    run = sending.send_due(limit=7, progress=lambda r: seen.append(r.claimed))

    assert seen == [3, 6, 7]
    assert [fresh(u).status for u in updates] == [S.SENT] * 7 + [S.APPROVED]
    assert run.requests_sent == 7


@pytest.mark.django_db
def test_a_spent_time_budget_starts_no_request_and_releases_the_claims(acme, approve, emulator):
    updates = [approve() for _ in range(3)]
    run = sending.send_due(time_budget=0)
    assert run.claimed == 0 and emulator.received == []
    assert {fresh(u).status for u in updates} == {S.APPROVED}


@pytest.mark.django_db
def test_requests_not_started_before_the_deadline_go_back_without_an_attempt(
        acme, approve, emulator, settings):
    # One request at a time, the emulator slow: the budget runs out after the first request.
    settings.PROFILEOPS = {**settings.PROFILEOPS, "SEND_CONCURRENCY": 1, "READ_TIMEOUT": 5.0}
    emulator.configure(latency=0.8)
    updates = [approve() for _ in range(3)]

    run = sending.send_due(time_budget=0.5)

    statuses = [fresh(u).status for u in updates]
    assert statuses == [S.SENT, S.APPROVED, S.APPROVED]
    assert (run.claimed, run.requests_sent, run.acknowledged) == (3, 1, 1)
    assert fresh(updates[1]).audit_events.filter(action="released").exists()
    assert quota.window_usage(connection=acme) == 1  # the unsent reservations were given back
    assert DailyUsage.objects.get(connection=acme).requests == 1  # and the day's figure with them


@pytest.mark.django_db
@pytest.mark.parametrize("fault", [{}, {"error_rate": 1.0}], ids=["acknowledged", "retried"])
def test_bookkeeping_queries_do_not_grow_with_the_batch(acme, approve, emulator, fault):
    emulator.configure(**fault)
    counts = []
    now = later(minutes=1)  # one moment for both runs: the first run's retries are not due yet
    for size in (5, 50):
        for _ in range(size):
            approve()
        with CaptureQueriesContext(db) as queries:
            run = sending.send_due(now=now)
        assert run.claimed == size
        counts.append(len(queries))
    # The first run also creates the minute's quota row and the day's usage row.
    assert counts[1] <= counts[0], counts


# --- a run follows the present ------------------------------------------------------------------

@pytest.mark.django_db
def test_deactivating_a_connection_stops_a_run_in_progress_after_the_batch_in_flight(
        acme, approve, emulator, settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "SEND_BATCH_SIZE": 3}
    updates = [approve() for _ in range(12)]

    def deactivate_after_first_batch(run: SendRun) -> None:
        TargetConnection.objects.filter(pk=acme.pk).update(active=False)

    run = sending.send_due(progress=deactivate_after_first_batch)

    # The first batch was recorded, the second was already on the wire; nothing after that.
    assert (run.claimed, run.acknowledged) == (6, 6)
    assert [fresh(u).status for u in updates] == [S.SENT] * 6 + [S.APPROVED] * 6
    assert len(emulator.received) == 6


@pytest.mark.django_db
def test_lowering_the_quota_takes_effect_for_a_run_in_progress(acme, approve, emulator, settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "SEND_BATCH_SIZE": 3}
    [approve() for _ in range(12)]

    def lower_quota_after_first_batch(run: SendRun) -> None:
        TargetConnection.objects.filter(pk=acme.pk).update(quota_limit=6)

    run = sending.send_due(progress=lower_quota_after_first_batch)

    assert run.acknowledged == 6 and run.deferred_by_quota > 0
    assert len(emulator.received) == 6
    assert quota.window_usage(connection=acme) == 6


@pytest.mark.django_db
def test_a_worker_that_dies_before_recording_leaves_the_days_requests_equal_to_the_window(
        acme, approve, emulator, monkeypatch):
    for _ in range(5):
        approve()

    def die(**kwargs) -> None:
        raise SystemExit("worker killed between sending and recording")

    # The one stand-in here: the process "dies" at the step after the requests went out.
    monkeypatch.setattr(sending.bookkeeping, "record_batch", die)
    with pytest.raises(SystemExit):
        sending.send_due()

    assert len(emulator.received) == 5 and not SendAttempt.objects.exists()
    assert quota.window_usage(connection=acme) == 5
    assert DailyUsage.objects.get(connection=acme).requests == 5


# --- planning (dry run) and helpers -------------------------------------------------------------

@pytest.mark.django_db
def test_plan_due_lists_the_requests_and_changes_nothing(acme, approve, emulator):
    updates = [approve() for _ in range(3)]
    audit_before = AuditEvent.objects.count()

    plan = sending.plan_due(limit=2)

    assert [p.update.pk for p in plan] == [u.pk for u in updates[:2]]
    assert all(p.quota_cost == 1 and p.request.method == "GET" for p in plan)
    assert plan[0].request.url.startswith(emulator.base_url + "/m2/acme/profile/update?")
    assert emulator.received == []
    assert {fresh(u).status for u in updates} == {S.APPROVED}
    assert AuditEvent.objects.count() == audit_before
    assert not SendRun.objects.exists() and not QuotaMinute.objects.exists()


@pytest.mark.django_db
def test_the_approval_queue_previews_the_senders_exact_request(acme, stage):
    update = stage()
    preview = sending.planned(update)
    assert (preview.method, preview.quota_cost, preview.problem) == ("GET", 1, "")
    assert preview.size_bytes == len(sending.request_for(update).url)


@pytest.mark.django_db
def test_the_preview_is_get_while_the_url_fits_and_post_beyond(stage, connection):
    connection.mappings.filter(target_name="callNote").update(max_length=20000)
    small = sending.planned(stage())
    assert (small.method, small.quota_cost) == ("GET", 1)
    assert 0 < small.size_bytes <= 8192
    big = sending.planned(stage(attributes={"loanStatus": "funded", "callNote": "é" * 5000}))
    assert big.method == "POST"
    assert big.size_bytes > 8192 and big.limit_bytes == 61440


@pytest.mark.django_db
def test_a_plan_costs_its_requests_against_each_connections_window(acme, stage):
    acme.quota_limit = 3
    acme.save(update_fields=["quota_limit"])
    quota.reserve(connection=acme, wanted=2)
    plan = [sending.planned(stage()) for _ in range(2)]
    [(connection, cost)] = sending.plan_cost(plan)
    assert connection == acme
    assert (cost.cost, cost.used, cost.limit, cost.remaining) == (2, 2, 3, 1)
    assert not cost.fits and cost.waiting == 1


# --- the schedule --------------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_migration_schedules_the_sender_every_minute():
    schedule = Schedule.objects.get(name="Send approved updates")
    assert (schedule.func, schedule.schedule_type, schedule.minutes, schedule.repeats) == (
        "updates.tasks.send_due_updates", Schedule.MINUTES, 1, -1)


@pytest.mark.django_db
def test_creating_the_schedule_again_keeps_exactly_one():
    migration = import_module("updates.migrations.0003_send_schedule")
    Schedule.objects.filter(name="Send approved updates").update(minutes=5)
    migration.create_schedule(django_apps, None)
    migration.create_schedule(django_apps, None)
    [schedule] = Schedule.objects.filter(name="Send approved updates")
    assert schedule.minutes == 1


@pytest.mark.django_db
def test_the_scheduled_task_runs_the_sender(acme, approve, emulator):
    update = approve()
    run = SendRun.objects.get(pk=tasks.send_due_updates())
    assert run.trigger == "schedule" and run.acknowledged == 1
    assert fresh(update).status == S.SENT
