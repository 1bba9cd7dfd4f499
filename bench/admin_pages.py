"""Benchmark 3 — server time of the admin's update list and dashboard over a year of history.

Run on a database set up by bench.history (run.py uses 1,000,000 updates, and a 1,000-update
history as the baseline). Each page is requested through django.test.Client as a logged-in
superuser, in this process: the figure is server time (URL routing, queries, template
rendering), the median of several requests after one warm-up request, as wall time and as CPU
time of this process (on a busy machine the wall time includes waiting for a core). An extra
request per page captures its queries (count and SQL, kept in the JSON results for EXPLAIN).

Also `/metrics` (with a bearer token the benchmark sets), the import list and one update's page
(its attempts and timeline). Each page's first request in this fresh process is reported too
(`first_ms`: caches empty — for /metrics that is a gunicorn worker's first scrape, which sums
every attempt ever made), and so is /metrics' periodic recount of updates by status
(`metrics recount`: once per PROFILEOPS_METRICS_STATUS_SECONDS per process).

Target: ≤ 300 ms — the median of each page, and the 95th percentile of every timed request over
the page set (issue 25 item 4).

    python -m bench.admin_pages --runs 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from bench.common import emit, log, make_user, setup_django, timings_ms

METRICS_TOKEN = "bench-metrics-token"


def pages() -> list[tuple[str, str]]:
    from django.urls import reverse

    from updates.models import ProfileUpdate, TargetConnection

    changelist = reverse("admin:updates_profileupdate_changelist")
    newest_sent = (ProfileUpdate.objects.filter(status="sent").order_by("-id")
                   .values_list("id", flat=True).first())
    globex = TargetConnection.objects.get(client_code="globex").pk
    # An identity from the middle of the history, found through the exact-match search.
    middle = ProfileUpdate.objects.filter(
        id__gte=ProfileUpdate.objects.order_by("-id").values_list("id", flat=True).first() // 2
    ).order_by("id").values_list("identity", flat=True).first()
    return [
        ("list: first page", changelist),
        ("list: status = failed", f"{changelist}?status__exact=failed"),
        ("list: connection + status = sent", f"{changelist}?connection__id__exact={globex}"
                                             "&status__exact=sent"),
        ("list: created in the last 7 days", f"{changelist}?created_at__gte=__WEEK__"),
        ("list: search exact identity", f"{changelist}?q={middle}"),
        ("list: search identity prefix", f"{changelist}?q=cust-12*"),
        ("list: waiting = retrying", f"{changelist}?waiting=retrying"),
        ("list: waiting = deferred by quota", f"{changelist}?waiting=deferred"),
        ("dashboard", reverse("updates_dashboard")),
        ("imports list", reverse("admin:updates_importjob_changelist")),
        ("update page (attempts, timeline)",
         reverse("admin:updates_profileupdate_change", args=[newest_sent])),
        ("/metrics", reverse("metrics")),
    ]


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    os.environ.setdefault("PROFILEOPS_METRICS_TOKEN", METRICS_TOKEN)
    setup_django()
    import datetime as dt

    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from updates.models import ProfileUpdate

    size = ProfileUpdate.objects.count()
    client = Client()
    client.force_login(make_user("bench-admin", superuser=True))
    # The date filter's own links carry midnight-aligned, timezone-aware bounds; do the same.
    week = (timezone.now() - dt.timedelta(days=7)).date().isoformat()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {os.environ['PROFILEOPS_METRICS_TOKEN']}"}
    deployment_first_ms = metrics_deployment_first_ms(client, headers)
    results, every_request = [], []
    for name, url in pages():
        url = url.replace("__WEEK__", f"{week}+00%3A00%3A00%2B00%3A00")
        began = time.perf_counter()
        response = client.get(url, **headers)
        first_ms = (time.perf_counter() - began) * 1000
        if response.status_code != 200:
            raise SystemExit(f"{name}: HTTP {response.status_code} for {url}")
        walls, cpus = timings_ms(lambda: client.get(url, **headers), runs=args.runs)
        every_request.extend(walls)
        with CaptureQueriesContext(connection) as captured:
            began = time.perf_counter()
            client.get(url, **headers)
            traced_ms = (time.perf_counter() - began) * 1000
        ms, cpu_ms = statistics.median(walls), statistics.median(cpus)
        results.append({
            "page": name, "url": url, "median_ms": ms, "cpu_ms": cpu_ms, "p95_ms": p95(walls),
            "first_ms": first_ms, "queries": len(captured.captured_queries),
            "db_ms": 1000 * sum(float(q["time"]) for q in captured.captured_queries),
            "sql": [q["sql"][:1000] for q in captured.captured_queries],
            "traced_ms": traced_ms,
        })
        log(f"  {name:36s} {ms:8.1f} ms (p95 {p95(walls):7.1f}, CPU {cpu_ms:6.1f} ms; first "
            f"{first_ms:8.1f} ms; {len(captured.captured_queries)} queries, "
            f"{results[-1]['db_ms']:.0f} ms of them)")
    recount_ms = metrics_recount_ms()
    log(f"  /metrics' recount of updates by status: {recount_ms:.0f} ms (aside, at most once "
        f"per PROFILEOPS_METRICS_STATUS_SECONDS)")
    overall = p95(every_request)
    log(f"  p95 over the page set ({len(every_request)} requests): {overall:.1f} ms "
        f"[≤ 300 ms: {'met' if overall <= 300 else 'MISSED'}]")
    emit({"benchmark": "admin", "updates": size, "runs": args.runs, "pages": results,
          "p95_ms": overall, "metrics_recount_ms": recount_ms,
          "metrics_deployment_first_ms": deployment_first_ms,
          "load_average": os.getloadavg(),
          "targets": {p["page"]: p["median_ms"] <= 300 for p in results}})


def metrics_deployment_first_ms(client, headers) -> float | None:
    """A deployment's very first scrape (no MetricsCheckpoint yet: every attempt ever made is
    added up, and the updates counted); afterwards the page set's /metrics is a new worker's."""
    from django.urls import reverse

    from updates import metrics
    from updates.models import MetricsCheckpoint

    if MetricsCheckpoint.objects.exists():
        return None
    began = time.perf_counter()
    client.get(reverse("metrics"), **headers)
    first_ms = (time.perf_counter() - began) * 1000
    metrics._registry = None  # the next scrape is a new worker's
    log(f"  /metrics, a deployment's very first scrape: {first_ms:.0f} ms (once)")
    return first_ms


def metrics_recount_ms() -> float:
    from updates import metrics

    began = time.perf_counter()
    metrics._update_counts()
    return (time.perf_counter() - began) * 1000


if __name__ == "__main__":
    main()
