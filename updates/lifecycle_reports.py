"""Evidence that data went, holding no personal data itself: a report per privacy request and a
monthly one per connection (the admin's "Report" links, `manage.py privacy_report`).

They name requests by number, connections by code, people who asked by user name, and count
rows per table — never an identity, its hash or a value.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

from django.db.models import Q

from .models import PrivacyRequest, RetentionRun, TargetConnection


def _when(moment: dt.datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "—"


def _counts(counts: dict) -> list[str]:
    return [f"  {table}: {n:,}" for table, n in sorted(counts.items())] or ["  (nothing)"]


def request_report(request: PrivacyRequest) -> str:
    """What one request erased, when, and what Adobe answered."""
    lines = [
        f"ProfileOps privacy request #{request.pk}",
        f"Connection: {request.connection.label} ({request.connection.client_code})",
        f"Identity type: {request.identity_type} (the identity itself is not kept)",
        f"Regulation: {request.get_regulation_display()}",
        f"Asked by: {request.requested_by.get_username()} at {_when(request.requested_at)}",
        f"State: {request.get_state_display()}",
        f"Open updates cancelled: {request.cancelled_updates}",
        "Purged here (rows per table):", *_counts(request.purge_counts),
        f"Filed with Adobe: {_when(request.filed_at)}"
        + (f" by {request.filed_by.get_username()}" if request.filed_by else ""),
        f"Adobe job id: {request.adobe_job_id or '—'}",
        "Adobe's answers:",
    ]
    for answer in request.adobe_answers or []:
        words = " ".join(str(answer.get(k) or "") for k in ("status", "message", "code")).strip()
        lines.append(f"  {answer.get('at', '')[:16]} {answer.get('kind', '')}: HTTP "
                     f"{answer.get('http_status') or '—'} {words}".rstrip())
    if not request.adobe_answers:
        lines.append("  (none)")
    lines += [f"Finished: {_when(request.finished_at)}",
              "Suppression: " + ("active (the identity cannot be staged again)"
                                 if request.suppressing else
                                 f"lifted at {_when(request.suppression_lifted_at)}")]
    if request.note:
        lines.append(f"Note: {request.note}")
    return "\n".join(lines) + "\n"


def _month(year: int, month: int) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime(year, month, 1, tzinfo=dt.timezone.utc)
    end = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=dt.timezone.utc)
    return start, end


def monthly_report(connection: TargetConnection, *, year: int, month: int) -> str:
    """The connection's erasures of one month: privacy requests by state, and the retention's
    purges, with counts per table."""
    start, end = _month(year, month)
    requests = list(PrivacyRequest.objects.filter(connection=connection, requested_at__gte=start,
                                                  requested_at__lt=end).order_by("pk"))
    runs = RetentionRun.objects.filter(connection=connection, started_at__gte=start,
                                       started_at__lt=end)
    retained: Counter = Counter()
    for run in runs.only("counts"):
        retained.update(run.counts or {})
    forgotten: Counter = Counter()
    for request in requests:
        forgotten.update(request.purge_counts or {})
    states = Counter(r.get_state_display() for r in requests)
    lines = [
        f"ProfileOps erasure report {year}-{month:02d}: {connection.label} "
        f"({connection.client_code})",
        "Retention: " + ", ".join(
            f"{what} {days} days" if days else f"{what} kept for ever"
            for what, days in (("values", connection.retain_values_days),
                               ("reads and answers", connection.retain_reads_days),
                               ("records", connection.retain_records_days))),
        f"Privacy requests: {len(requests)}",
        *[f"  {state}: {n}" for state, n in sorted(states.items())],
        *[f"  #{r.pk} {r.regulation} asked {_when(r.requested_at)}: {r.get_state_display()}"
          for r in requests],
        "Purged for forgotten visitors (rows per table):", *_counts(dict(forgotten)),
        f"Retention runs: {runs.count()}; purged (rows per table):", *_counts(dict(retained)),
        "Still waiting for Adobe at the end of the month: " + str(sum(
            1 for r in requests if r.state in PrivacyRequest.OPEN_STATES
            or (r.finished_at and r.finished_at >= end))),
    ]
    return "\n".join(lines) + "\n"


def connections_with_activity(*, year: int, month: int) -> list[TargetConnection]:
    start, end = _month(year, month)
    ids = set(PrivacyRequest.objects.filter(requested_at__gte=start, requested_at__lt=end)
              .values_list("connection_id", flat=True))
    ids |= set(RetentionRun.objects.filter(Q(started_at__gte=start) & Q(started_at__lt=end))
               .values_list("connection_id", flat=True))
    return list(TargetConnection.objects.filter(pk__in=ids).order_by("client_code"))
