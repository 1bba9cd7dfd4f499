"""Prometheus metrics (updates/metrics.py): what a scrape reports, and who may scrape.

Figures are read back through prometheus_client's own text parser, as Prometheus would.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import approve_via_workflow, make_connection, use_adobe_credentials
from updates import credentials, metrics, sending, workflow
from updates.models import MetricsCheckpoint, SchedulerHeartbeat, SendAttempt

TOKEN = "metrics-token-for-tests"
Outcome = SendAttempt.Outcome


@pytest.fixture(autouse=True)
def fresh_registry(settings):
    """Each test scrapes a collector of its own (the per-process one keeps settled totals)."""
    settings.PROFILEOPS = {**settings.PROFILEOPS, "METRICS_TOKEN": TOKEN,
                           "METRICS_STATUS_SECONDS": 0}
    metrics._registry = None
    yield
    metrics._registry = None


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, (label, value), …): value} of an exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, *sorted(sample.labels.items()))] = sample.value
    return found


def scrape(client) -> tuple[str, dict[tuple, float]]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    text = response.content.decode()
    return text, samples(text)


def c(name: str, connection: str = "acme", **labels: str) -> tuple:
    return (name, *sorted({"connection": connection, **labels}.items()))


# --- who may scrape ----------------------------------------------------------------------------

def test_without_a_configured_token_the_endpoint_does_not_exist(client, settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "METRICS_TOKEN": ""}
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {TOKEN}", TOKEN,
                                    f"Bearer {TOKEN}x"])
def test_a_scrape_without_the_right_bearer_token_is_refused(client, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get("/metrics", **extra)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"profileops_" not in response.content


# --- what it reports -----------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_real_send_shows_in_requests_acknowledgments_quota_attempts_latency_and_statuses(
        client, emulator, connection, stage, operator, supervisor):
    connection.base_url = emulator.base_url
    connection.quota_limit = 5000
    connection.save(update_fields=["base_url", "quota_limit"])
    sent = [approve_via_workflow(stage, operator, supervisor) for _ in range(3)]
    waiting = stage()
    workflow.update_submit(update=waiting, by=operator)
    sending.send_due()
    SchedulerHeartbeat.beat()

    text, found = scrape(client)
    assert found[c("profileops_requests_total")] == 3
    assert found[c("profileops_acknowledgments_total")] == 3
    assert found[c("profileops_failed_updates_total")] == 0
    assert found[c("profileops_quota_window_requests")] == 3
    assert found[c("profileops_quota_limit")] == 5000
    assert found[c("profileops_send_attempts_total", outcome="acknowledged")] == 3
    assert found[c("profileops_send_attempts_total", outcome="transient")] == 0
    assert found[c("profileops_send_latency_seconds_count")] == 3
    assert found[c("profileops_send_latency_seconds_bucket", le="+Inf")] == 3
    assert found[c("profileops_send_latency_seconds_sum")] >= 0
    assert found[c("profileops_updates", status="sent")] == 3
    assert found[c("profileops_updates", status="pending")] == 1
    assert found[c("profileops_updates", status="draft")] == 0
    assert found[c("profileops_approval_queue_depth")] == 1
    assert 0 <= found[c("profileops_approval_queue_oldest_age_seconds")] < 60
    assert found[("profileops_send_schedule_last_run_timestamp_seconds",)] == pytest.approx(
        timezone.now().timestamp(), abs=60)
    # Labels carry the client code only: no identity, attribute name or value.
    for update in [*sent, waiting]:
        assert update.identity not in text
    for word in ("loanStatus", "funded", "customer-"):
        assert word not in text


def _attempt(update, *, outcome, http_status=None, latency_ms=None, started_at=None, number=1):
    return SendAttempt.objects.create(
        update=update, connection=update.connection, number=number,
        started_at=started_at or timezone.now(), method="GET", request_bytes=100,
        http_status=http_status, latency_ms=latency_ms, outcome=outcome)


@pytest.mark.django_db
def test_failures_are_counted_by_class(client, stage):
    update = stage()
    # The attempts as the sender records them (how it classifies answers is
    # tests/services/test_sending.py's and tests/services/test_target.py's subject).
    for outcome, status in [(Outcome.TRANSIENT, None), (Outcome.TRANSIENT, None),
                            (Outcome.TRANSIENT, 429), (Outcome.TRANSIENT, 503),
                            (Outcome.PERMANENT, 400), (Outcome.PERMANENT, 302),
                            (Outcome.PERMANENT, None), (Outcome.UNEXPECTED, 200),
                            (Outcome.ACKNOWLEDGED, 200)]:
        _attempt(update, outcome=outcome, http_status=status)
    _, found = scrape(client)
    failures = {dict(key[1:])["class"]: value for key, value in found.items()
                if key[0] == "profileops_send_failures_total"}
    assert failures == {"network": 2, "rate_limited": 1, "server_error": 1, "client_error": 1,
                        "redirect": 1, "not_sendable": 1, "unexpected_answer": 1}
    assert found[c("profileops_send_attempts_total", outcome="transient")] == 4
    assert found[c("profileops_send_attempts_total", outcome="permanent")] == 3


@pytest.mark.django_db
def test_latency_buckets_are_cumulative_and_in_seconds(client, stage):
    update = stage()
    for ms in (20, 80, 80, 400, 3000, None):
        _attempt(update, outcome=Outcome.ACKNOWLEDGED, latency_ms=ms)
    _, found = scrape(client)
    bucket = lambda le: found[c("profileops_send_latency_seconds_bucket", le=le)]  # noqa: E731
    assert [bucket("0.025"), bucket("0.1"), bucket("0.5"), bucket("2.5"), bucket("5.0"),
            bucket("+Inf")] == [1, 3, 4, 4, 5, 5]
    assert found[c("profileops_send_latency_seconds_count")] == 5  # None: no latency measured
    assert found[c("profileops_send_latency_seconds_sum")] == pytest.approx(3.58)


@pytest.mark.django_db
def test_settled_attempts_are_added_up_once_and_never_twice(stage):
    """The collector adds attempts older than SETTLED_AFTER once, then reads only newer ones."""
    update = stage()
    now = timezone.now()
    _attempt(update, outcome=Outcome.ACKNOWLEDGED, latency_ms=10,
             started_at=now - dt.timedelta(hours=5))
    _attempt(update, outcome=Outcome.TRANSIENT, latency_ms=10, started_at=now)
    totals = metrics._AttemptTotals()

    def read(at):
        result = totals.read(now=at)
        return (sum(result["outcomes"].values()),
                sum(v["count"] for v in result["latency"].values()))

    assert read(now) == (2, 2)
    assert read(now) == (2, 2)
    _attempt(update, outcome=Outcome.TRANSIENT, latency_ms=10, started_at=now)
    assert read(now + dt.timedelta(seconds=5)) == (3, 3)
    # Time passes: the recent ones settle into the kept totals, and are not counted again.
    assert read(now + dt.timedelta(hours=1)) == (3, 3)
    assert read(now + dt.timedelta(hours=2)) == (3, 3)


@pytest.mark.django_db
def test_updates_by_status_are_recounted_at_most_every_configured_seconds_by_any_process(
        client, settings, stage, monkeypatch):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "METRICS_STATUS_SECONDS": 3600}
    recounts = []
    monkeypatch.setattr(metrics, "_start_recount", recounts.append)  # run below, by hand
    stage()
    _, found = scrape(client)
    assert found[c("profileops_updates", status="draft")] == 1
    stage()
    _, found = scrape(client)
    assert found[c("profileops_updates", status="draft")] == 1  # counted within the hour
    metrics._registry = None  # a new worker takes the count another one made
    _, found = scrape(client)
    assert found[c("profileops_updates", status="draft")] == 1
    assert recounts == []
    # An hour on, a scrape answers with the last count at once and has it recounted aside.
    MetricsCheckpoint.objects.filter(name=MetricsCheckpoint.UPDATES).update(
        at=timezone.now() - dt.timedelta(hours=2))
    metrics._registry = None
    _, found = scrape(client)
    assert found[c("profileops_updates", status="draft")] == 1
    [recount] = recounts
    monkeypatch.setattr(metrics.db_connection, "close", lambda: None)  # the test's connection
    recount()
    _, found = scrape(client)
    assert found[c("profileops_updates", status="draft")] == 2
    assert len(recounts) == 1  # fresh again: nothing more to recount


@pytest.mark.django_db
def test_a_new_worker_starts_from_the_kept_attempt_totals_which_outlive_the_attempts(stage):
    """The first read adds up the settled attempts once for every process (MetricsCheckpoint);
    deleting old attempts (retention) then leaves the counters where they were."""
    update = stage()
    now = timezone.now()
    old = _attempt(update, outcome=Outcome.ACKNOWLEDGED, latency_ms=10,
                   started_at=now - dt.timedelta(hours=5))
    _attempt(update, outcome=Outcome.TRANSIENT, latency_ms=10, started_at=now, number=2)

    def read(totals, at):
        result = totals.read(now=at)
        return (sum(result["outcomes"].values()),
                sum(v["count"] for v in result["latency"].values()))

    assert read(metrics._AttemptTotals(), now) == (2, 2)
    old.delete()
    assert read(metrics._AttemptTotals(), now) == (2, 2)  # a new process: from the checkpoint
    # Time passes: the recent attempt settles into the kept totals, once.
    later = now + dt.timedelta(hours=1)
    assert read(metrics._AttemptTotals(), later) == (2, 2)
    assert read(metrics._AttemptTotals(), later + dt.timedelta(hours=1)) == (2, 2)


@pytest.mark.django_db
def test_every_connection_is_reported_under_its_client_code(client):
    make_connection("acme")
    make_connection("beta-2", quota_limit=10)
    _, found = scrape(client)
    assert found[c("profileops_quota_limit", "beta-2")] == 10
    assert found[c("profileops_requests_total", "beta-2")] == 0
    assert found[c("profileops_approval_queue_depth", "beta-2")] == 0


@pytest.mark.django_db
def test_the_collector_reads_the_database_at_scrape_time_not_at_registration():
    registry = CollectorRegistry(auto_describe=True)
    registry.register(metrics.ProfileOpsCollector())  # describe() reads nothing
    make_connection("late")
    assert b'profileops_quota_limit{connection="late"}' in generate_latest(registry)


def test_the_profile_token_s_seconds_until_expiry_are_exposed_per_connection(
        client, adobe_emulator, connection):
    """Adobe credentials: the token ProfileOps obtained (credentials.py) and when it expires;
    a connection with a pasted token has no such figure, and a scrape never asks Adobe."""
    use_adobe_credentials(connection, adobe_emulator)
    make_connection("pasted", bearer_token="pasted-token")
    adobe_emulator.adobe.profile_token_lifetime = 3600
    credentials.profile_token(connection)
    asked = adobe_emulator.adobe.counts.token_gets
    _, found = scrape(client)
    left = found[("profileops_profile_token_expires_in_seconds", ("connection", "acme"))]
    assert 3500 < left <= 3600
    assert ("profileops_profile_token_expires_in_seconds", ("connection", "pasted")) not in found
    assert adobe_emulator.adobe.counts.token_gets == asked


def test_the_bulk_route_is_shown_beside_the_quota(client, connection, admin_user):
    from updates.models import BulkCall, BulkFile, BulkJob

    now = timezone.now()
    job = BulkJob.objects.create(connection=connection, created_at=now, rows=0)
    file = BulkFile.objects.create(job=job, number=1, version="v2", id_column="thirdPartyId",
                                   rows=0, size_bytes=0, sha256="", body=b"", state="accepted")
    BulkCall.objects.create(connection=connection, file=file, kind="upload", at=now,
                            http_status=200)
    _, found = scrape(client)
    assert found[c("profileops_bulk_calls_last_minute")] == 1
    assert found[c("profileops_bulk_rows_in_flight")] == 0
