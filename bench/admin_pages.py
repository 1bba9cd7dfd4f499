"""Benchmark 3 — server time of the admin's update list and dashboard over a year of history.

Run on a database set up by bench.history (run.py uses 1,000,000 updates, and a 1,000-update
history as the baseline). Each page is requested through django.test.Client as a logged-in
superuser, in this process: the figure is server time (URL routing, queries, template
rendering), the median of several requests after one warm-up request, as wall time and as CPU
time of this process (on a busy machine the wall time includes waiting for a core). An extra
request per page captures its queries (count and SQL, kept in the JSON results for EXPLAIN).

Target: ≤ 300 ms per page.

    python -m bench.admin_pages --runs 7
"""

from __future__ import annotations

import argparse
import os
import time

from bench.common import emit, log, make_user, median_ms, setup_django


def pages() -> list[tuple[str, str]]:
    from django.urls import reverse

    from updates.models import ProfileUpdate, TargetConnection

    changelist = reverse("admin:updates_profileupdate_changelist")
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
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
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
    results = []
    for name, url in pages():
        url = url.replace("__WEEK__", f"{week}+00%3A00%3A00%2B00%3A00")
        response = client.get(url)
        if response.status_code != 200:
            raise SystemExit(f"{name}: HTTP {response.status_code} for {url}")
        ms, cpu_ms = median_ms(lambda: client.get(url), runs=args.runs, warmup=0)
        with CaptureQueriesContext(connection) as captured:
            began = time.perf_counter()
            client.get(url)
            traced_ms = (time.perf_counter() - began) * 1000
        results.append({
            "page": name, "url": url, "median_ms": ms, "cpu_ms": cpu_ms,
            "queries": len(captured.captured_queries),
            "sql": [q["sql"][:1000] for q in captured.captured_queries],
            "traced_ms": traced_ms,
        })
        log(f"  {name:36s} {ms:8.1f} ms (CPU {cpu_ms:6.1f} ms; {len(captured.captured_queries)} "
            f"queries)")
    emit({"benchmark": "admin", "updates": size, "runs": args.runs, "pages": results,
          "load_average": os.getloadavg(),
          "targets": {p["page"]: p["median_ms"] <= 300 for p in results}})


if __name__ == "__main__":
    main()
