"""Prometheus metrics at /metrics, read from the database at scrape time.

Every figure comes from the database, not from in-process counters, so any gunicorn worker
answers a scrape with the same numbers whichever process did the sending (qcluster workers on
other machines included). The only label besides the metric's own classes is ``connection``:
the connection's client code. No identity, attribute name or value is ever a label.

What each scrape costs, at a million updates and more:

- requests, acknowledgments and failed updates: sums over `DailyUsage` (one row per connection
  and day);
- quota: the window as the dashboard reads it (quota.window_picture: at most ~1,441 minute
  rows per connection);
- approval queue: one grouped query over the pending updates (through the status index);
- send attempts by outcome and the latency histogram: the totals of the attempts older than
  `SETTLED_AFTER` — attempts are recorded within a batch's lease, so older ones no longer
  change — are kept in the database (MetricsCheckpoint, shared by every process), and each
  scrape adds only the newer ones (one att_conn_started range per connection). Only the very
  first scrape of a deployment adds up every attempt ever made (~19 s at 20,000,000 attempts);
  a new gunicorn worker starts from the checkpoint, and deleting old attempts does not make
  the counters go down;
- updates by status (and by verification state, once updates have one): a GROUP BY over the
  table (~6 s at 10,000,000 updates), recounted at most every PROFILEOPS_METRICS_STATUS_SECONDS
  by any process (the count is shared through MetricsCheckpoint), in a thread of its own: a
  scrape answers with the last count and never waits for a recount, except the very first (and
  every one with the setting at 0).

The endpoint answers 404 unless PROFILEOPS_METRICS_TOKEN is set, and 401 unless the request
carries ``Authorization: Bearer <that token>``.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import threading
from collections import defaultdict
from typing import Iterator

from django.core.exceptions import FieldDoesNotExist
from django.db import IntegrityError, transaction
from django.db import connection as db_connection
from django.db.models import Count, Min, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from . import bulk_reconcile, quota
from .conf import setting
from .models import (
    CredentialState, DailyUsage, MetricsCheckpoint, ProfileUpdate, SchedulerHeartbeat,
    SendAttempt, TargetConnection, UpdateStatus,
)

logger = logging.getLogger(__name__)

Outcome = SendAttempt.Outcome
# Upper bounds in milliseconds (the histogram reports seconds): Target answers in tens to
# hundreds of milliseconds; the read timeout defaults to 20 s.
LATENCY_BUCKETS_MS = (25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 20000)
SETTLED_AFTER = dt.timedelta(minutes=10)
# How far the settled totals move on before a process saves them for the others.
CHECKPOINT_EVERY = dt.timedelta(minutes=5)


def _checkpoint_load(name: str) -> tuple[dt.datetime, dict] | None:
    row = MetricsCheckpoint.objects.filter(name=name).values_list("at", "values").first()
    return (row[0], row[1]) if row else None


def _checkpoint_save(name: str, at: dt.datetime, values: dict) -> None:
    """Keep `values` as of `at` unless another process kept a later one already."""
    try:
        with transaction.atomic():
            if not MetricsCheckpoint.objects.filter(name=name, at__lt=at).update(
                    at=at, values=values):
                MetricsCheckpoint.objects.get_or_create(name=name,
                                                        defaults={"at": at, "values": values})
    except IntegrityError:  # another process created it at the same moment: theirs stands
        pass


def failure_class(outcome: str, http_status: int | None) -> str | None:
    """What kind of failure an attempt was (None for an acknowledgment); a small, fixed set."""
    if outcome == Outcome.ACKNOWLEDGED:
        return None
    if outcome == Outcome.UNEXPECTED:
        return "unexpected_answer"
    if http_status is None:
        # Transient: connection refused or dropped, timeout. Permanent: refused before sending
        # (a request no method can carry, a token no header can carry).
        return "network" if outcome == Outcome.TRANSIENT else "not_sendable"
    if http_status == 429:
        return "rate_limited"
    if 500 <= http_status <= 599:
        return "server_error"
    if 300 <= http_status <= 399:
        return "redirect"
    if 400 <= http_status <= 499:
        return "client_error"
    return "other"


class _AttemptTotals:
    """Attempt counts and latency buckets per connection, over all attempts ever recorded.

    Attempts started before `boundary` are added up once and kept (per process); each refresh
    moves the boundary forward and re-reads only what started after it.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.boundary: dt.datetime | None = None
        self.saved: dt.datetime | None = None  # the boundary of the last checkpoint kept
        self.settled = self._empty()

    @staticmethod
    def _empty() -> dict:
        return {"outcomes": defaultdict(int), "latency": defaultdict(lambda: defaultdict(int))}

    @staticmethod
    def _add(into: dict, attempts) -> None:
        for row in (attempts.order_by().values("connection_id", "outcome", "http_status")
                    .annotate(n=Count("id"))):
            into["outcomes"][(row["connection_id"], row["outcome"], row["http_status"])] += row["n"]
        buckets = {f"le_{ms}": Count("id", filter=Q(latency_ms__lte=ms))
                   for ms in LATENCY_BUCKETS_MS}
        for row in (attempts.filter(latency_ms__isnull=False).order_by().values("connection_id")
                    .annotate(count=Count("id"), total_ms=Sum("latency_ms"), **buckets)):
            latency = into["latency"][row["connection_id"]]
            for key in ("count", "total_ms", *buckets):
                latency[key] += row[key] or 0

    def read(self, *, now: dt.datetime) -> dict:
        with self.lock:
            new_boundary = now - SETTLED_AFTER
            if self.boundary is None:
                self._load()
            if self.boundary is None:
                self._add(self.settled, SendAttempt.objects.started_between(until=new_boundary))
                self.boundary = new_boundary
                self._save()
            elif new_boundary > self.boundary:
                self._add(self.settled,
                          SendAttempt.objects.started_between(self.boundary, new_boundary))
                self.boundary = new_boundary
                if self.saved is None or new_boundary - self.saved >= CHECKPOINT_EVERY:
                    self._save()
            totals = self._empty()
            for key, n in self.settled["outcomes"].items():
                totals["outcomes"][key] += n
            for cid, values in self.settled["latency"].items():
                for key, n in values.items():
                    totals["latency"][cid][key] += n
            self._add(totals, SendAttempt.objects.started_between(since=self.boundary))
            return totals

    def _load(self) -> None:
        """Start from the settled totals another process kept (MetricsCheckpoint)."""
        if (found := _checkpoint_load(MetricsCheckpoint.ATTEMPTS)) is None:
            return
        self.boundary, values = found
        self.saved = self.boundary
        self.settled = self._empty()
        for cid, outcome, http_status, n in values["outcomes"]:
            self.settled["outcomes"][(cid, outcome, http_status)] += n
        for cid, latency in values["latency"].items():
            for key, n in latency.items():
                self.settled["latency"][int(cid)][key] += n

    def _save(self) -> None:
        _checkpoint_save(MetricsCheckpoint.ATTEMPTS, self.boundary, {
            "outcomes": [[*key, n] for key, n in self.settled["outcomes"].items()],
            "latency": {str(cid): dict(values) for cid, values in self.settled["latency"].items()},
        })
        self.saved = self.boundary


class _SharedCounts:
    """The updates by status and verification state (_update_counts): recounted at most every
    `seconds` by any process, shared through MetricsCheckpoint.UPDATES. A count older than
    that is answered while one thread recounts (_start_recount), so a scrape never waits for
    the GROUP BY over every update — except the first ever, and every one with `seconds` 0."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.at: dt.datetime | None = None
        self.value: dict | None = None
        self.recounting = False

    def get(self, *, seconds: float, now: dt.datetime) -> dict:
        with self.lock:
            if self.value is None and seconds > 0:
                self._take(_checkpoint_load(MetricsCheckpoint.UPDATES))
            if self.value is None or seconds <= 0:
                self._recount()
            elif (now - self.at).total_seconds() >= seconds and not self.recounting:
                self.recounting = True
                _start_recount(lambda: self._recount_aside(seconds))
            return self.value

    def _take(self, found: tuple[dt.datetime, dict] | None) -> None:
        if found is not None:
            self.at, values = found
            self.value = {kind: {(int(cid), key): n for cid, key, n in rows}
                          for kind, rows in values.items()}

    def _recount(self) -> None:
        self.at, self.value = _count_and_keep()

    def _recount_aside(self, seconds: float) -> None:
        """In a thread of its own: take a fresh enough count another process made, or count
        (without the lock: scrapes meanwhile answer with the last count)."""
        try:
            found = _checkpoint_load(MetricsCheckpoint.UPDATES)
            if found and (timezone.now() - found[0]).total_seconds() < seconds:
                with self.lock:
                    self._take(found)
            else:
                at, value = _count_and_keep()
                with self.lock:
                    self.at, self.value = at, value
        except Exception as error:  # the last count stands; the next scrape tries again
            logger.error("recounting updates for /metrics failed: %s", type(error).__name__)
        finally:
            self.recounting = False
            db_connection.close()  # this thread's own connection


def _count_and_keep() -> tuple[dt.datetime, dict]:
    at = timezone.now()
    counts = _update_counts()
    _checkpoint_save(MetricsCheckpoint.UPDATES, at, {
        kind: [[cid, key, n] for (cid, key), n in found.items()] for kind, found in counts.items()})
    return at, counts


def _start_recount(recount) -> None:
    threading.Thread(target=recount, name="metrics-recount", daemon=True).start()


def _has_verification_state() -> bool:
    try:
        ProfileUpdate._meta.get_field("verification_state")
    except FieldDoesNotExist:
        return False
    return True


def _update_counts() -> dict:
    counts = {"status": {}, "verification": {}}
    rows = ProfileUpdate.objects.order_by().values("connection_id", "status").annotate(n=Count("id"))
    for row in rows:
        counts["status"][(row["connection_id"], row["status"])] = row["n"]
    if _has_verification_state():
        rows = (ProfileUpdate.objects.order_by().values("connection_id", "verification_state")
                .annotate(n=Count("id")))
        for row in rows:
            counts["verification"][(row["connection_id"], str(row["verification_state"]))] = row["n"]
    return counts


class ProfileOpsCollector:
    """A prometheus_client collector: everything is read when Prometheus scrapes."""

    def __init__(self) -> None:
        self.attempts = _AttemptTotals()
        self.update_counts = _SharedCounts()

    def describe(self) -> list[Metric]:
        return []  # nothing is read when the collector is registered, only when scraped

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        rows = list(TargetConnection.objects.order_by("id").only("id", "client_code",
                                                                 "quota_limit"))
        connections = [(c.pk, c.client_code, c.quota_limit) for c in rows]
        code = {cid: client_code for cid, client_code, _ in connections}
        labels = ["connection"]

        usage = {row["connection_id"]: row for row in DailyUsage.objects.order_by()
                 .values("connection_id").annotate(requests=Sum("requests"),
                                                   acknowledged=Sum("acknowledged"),
                                                   failed=Sum("failed"))}
        sent = CounterMetricFamily("profileops_requests", "Requests sent to Target (retries "
                                   "included).", labels=labels)
        acked = CounterMetricFamily("profileops_acknowledgments", "Requests Target "
                                    "acknowledged.", labels=labels)
        failed = CounterMetricFamily("profileops_failed_updates", "Updates that ended failed.",
                                     labels=labels)
        limit = GaugeMetricFamily("profileops_quota_limit", "Most requests allowed in any "
                                  "rolling 24 hours.", labels=labels)
        used = GaugeMetricFamily("profileops_quota_window_requests", "Requests reserved in the "
                                 "rolling 24 hours up to now.", labels=labels)
        for conn in rows:
            row, client_code = usage.get(conn.pk, {}), conn.client_code
            sent.add_metric([client_code], row.get("requests") or 0)
            acked.add_metric([client_code], row.get("acknowledged") or 0)
            failed.add_metric([client_code], row.get("failed") or 0)
            window = quota.window_picture(connection=conn, now=now)  # as the dashboard shows it
            limit.add_metric([client_code], window.limit)
            used.add_metric([client_code], window.used)
        yield from (sent, acked, failed, limit, used)

        yield from self._bulk_metrics(now, connections)
        yield from self._attempt_metrics(now, code)
        yield from self._queue_metrics(now, connections)
        yield from self._update_metrics(connections)
        yield _token_expiry(now, code)

        beat_at = SchedulerHeartbeat.last_beat_at(name=SchedulerHeartbeat.SEND_SCHEDULE)
        heartbeat = GaugeMetricFamily(
            "profileops_send_schedule_last_run_timestamp_seconds",
            "When the send schedule last completed a run (Unix time; absent before the first).")
        if beat_at is not None:
            heartbeat.add_metric([], beat_at.timestamp())
        yield heartbeat

    def _bulk_metrics(self, now: dt.datetime, connections: list) -> Iterator[Metric]:
        """The bulk route beside the single quota: rows in flight and verified, and the bulk
        API calls (of Target's 50 a minute) used in the last minute."""
        labels = ["connection"]
        in_flight = GaugeMetricFamily("profileops_bulk_rows_in_flight", "Updates in bulk files "
                                      "not yet uploaded or not finished by Target.", labels=labels)
        verified = GaugeMetricFamily("profileops_bulk_rows_verified", "Bulk-sent updates read "
                                     "back as applied.", labels=labels)
        not_applied = GaugeMetricFamily("profileops_bulk_rows_not_applied", "Bulk-sent updates "
                                        "read back as not applied.", labels=labels)
        calls = GaugeMetricFamily("profileops_bulk_calls_last_minute", "Bulk API calls "
                                  "(uploads and status polls) in the last 60 seconds; Target "
                                  "allows 50.", labels=labels)
        for cid, client_code, _ in connections:
            usage = bulk_reconcile.bulk_usage(connection_id=cid, now=now)
            in_flight.add_metric([client_code], usage.rows_in_flight)
            verified.add_metric([client_code], usage.rows_verified)
            not_applied.add_metric([client_code], usage.rows_not_applied)
            calls.add_metric([client_code], usage.calls_last_minute)
        yield from (in_flight, verified, not_applied, calls)

    def _attempt_metrics(self, now: dt.datetime, code: dict[int, str]) -> Iterator[Metric]:
        totals = self.attempts.read(now=now)
        by_outcome: dict[tuple[str, str], int] = defaultdict(int)
        by_class: dict[tuple[str, str], int] = defaultdict(int)
        for (cid, outcome, http_status), n in totals["outcomes"].items():
            if cid not in code:
                continue
            by_outcome[(code[cid], outcome)] += n
            kind = failure_class(outcome, http_status)
            if kind:
                by_class[(code[cid], kind)] += n
        attempts = CounterMetricFamily("profileops_send_attempts", "Send attempts by outcome.",
                                       labels=["connection", "outcome"])
        for client_code in sorted(set(code.values())):
            for outcome in (o.value for o in Outcome):
                attempts.add_metric([client_code, outcome], by_outcome.get((client_code, outcome), 0))
        failures = CounterMetricFamily("profileops_send_failures", "Failed send attempts by "
                                       "class.", labels=["connection", "class"])
        for (client_code, kind), n in sorted(by_class.items()):
            failures.add_metric([client_code, kind], n)
        latency = HistogramMetricFamily("profileops_send_latency_seconds", "Time from sending a "
                                        "request to reading Target's answer.",
                                        labels=["connection"])
        for cid, client_code in sorted(code.items()):
            values = totals["latency"].get(cid, {})
            buckets = [(str(ms / 1000), values.get(f"le_{ms}", 0)) for ms in LATENCY_BUCKETS_MS]
            buckets.append(("+Inf", values.get("count", 0)))
            latency.add_metric([client_code], buckets, values.get("total_ms", 0) / 1000)
        yield from (attempts, failures, latency)

    def _queue_metrics(self, now: dt.datetime, connections: list) -> Iterator[Metric]:
        pending = {row["connection_id"]: row for row in
                   ProfileUpdate.objects.filter(status=UpdateStatus.PENDING).order_by()
                   .values("connection_id").annotate(n=Count("id"), oldest=Min("submitted_at"))}
        depth = GaugeMetricFamily("profileops_approval_queue_depth", "Updates waiting for "
                                  "approval.", labels=["connection"])
        age = GaugeMetricFamily("profileops_approval_queue_oldest_age_seconds", "How long the "
                                "longest-waiting update has waited for approval (0 when none "
                                "waits).", labels=["connection"])
        for cid, client_code, _ in connections:
            row = pending.get(cid)
            depth.add_metric([client_code], row["n"] if row else 0)
            oldest = row["oldest"] if row else None
            age.add_metric([client_code], max(0.0, (now - oldest).total_seconds()) if oldest else 0)
        yield from (depth, age)

    def _update_metrics(self, connections: list) -> Iterator[Metric]:
        counts = self.update_counts.get(seconds=setting("METRICS_STATUS_SECONDS"),
                                        now=timezone.now())
        updates = GaugeMetricFamily("profileops_updates", "Updates by status (recounted at most "
                                    "every PROFILEOPS_METRICS_STATUS_SECONDS).",
                                    labels=["connection", "status"])
        for cid, client_code, _ in connections:
            for status in UpdateStatus.values:
                updates.add_metric([client_code, status], counts["status"].get((cid, status), 0))
        yield updates
        if counts["verification"]:
            verification = GaugeMetricFamily("profileops_updates_by_verification",
                                             "Updates by verification state.",
                                             labels=["connection", "state"])
            code = {cid: client_code for cid, client_code, _ in connections}
            for (cid, state), n in sorted(counts["verification"].items()):
                if cid in code:
                    verification.add_metric([code[cid], state], n)
            yield verification


def _token_expiry(now: dt.datetime, code: dict[int, str]) -> Metric:
    """Seconds until each obtained profile token expires (connections with Adobe credentials
    that hold one; negative once expired). Read from the database only: a scrape never asks
    Adobe, as /readyz never does."""
    expiry = GaugeMetricFamily("profileops_profile_token_expires_in_seconds", "Seconds until "
                               "the profile token ProfileOps obtained expires (negative: "
                               "expired).", labels=["connection"])
    rows = CredentialState.objects.filter(profile_expires_at__isnull=False).order_by(
        "connection_id").values_list("connection_id", "profile_expires_at")
    for cid, expires_at in rows:
        if cid in code:
            expiry.add_metric([code[cid]], (expires_at - now).total_seconds())
    return expiry


_registry: CollectorRegistry | None = None
_registry_lock = threading.Lock()


def registry() -> CollectorRegistry:
    """One registry per process holding only the ProfileOps collector (no process metrics: each
    gunicorn worker would report its own, which a scrape of one of them cannot sum)."""
    global _registry
    with _registry_lock:
        if _registry is None:
            _registry = CollectorRegistry(auto_describe=False)
            _registry.register(ProfileOpsCollector())
        return _registry


def _authorized(request: HttpRequest, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def metrics_view(request: HttpRequest) -> HttpResponse:
    token = setting("METRICS_TOKEN")
    if not token:
        return HttpResponse("Not found", status=404, content_type="text/plain")
    if not _authorized(request, token):
        response = HttpResponse("Unauthorized", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    response = HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
