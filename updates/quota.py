"""Rolling 24-hour quota and per-day usage, per Target connection.

Adobe allows 1,000,000 Single Profile Update requests per client in any rolling 24 hours. Every
request that may have reached Target counts — retries too — so the sender *reserves* before it
sends, and the reservation is what counts:

- `QuotaMinute` holds the requests reserved per connection and UTC minute. The window check sums
  the rows of the last 24 h + 1 minute (at most ~1,441 rows per connection, found through the
  unique (connection, minute) index), however long the history grows — never a count over
  attempts. A request reserved at 10:00:59 is counted until 10:01 the next day: up to one minute
  stricter than an exact count, never looser.
- `reserve` locks the connection row (SELECT … FOR NO KEY UPDATE) before reading the window, so
  concurrent workers on PostgreSQL serialize on it; on SQLite the IMMEDIATE transaction mode
  already serializes writers. Two workers can therefore never both take the last requests.
- `DailyUsage` keeps requests, acknowledgments and failures per connection and UTC day as history.
  Its requests are added by `reserve` (and taken back by `release`) in the same transaction as
  the window's minute row, so the day's figure counts exactly what counted against the window —
  also when a worker dies between sending and recording the answers.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

from django.db import IntegrityError, transaction
from django.db.models import F, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from .models import DailyUsage, QuotaMinute, TargetConnection

WINDOW = dt.timedelta(hours=24)
MINUTE = dt.timedelta(minutes=1)
# Minute rows older than this are of no further use to the window (history is in DailyUsage).
KEEP_MINUTES_FOR = dt.timedelta(hours=25)


def _minute(moment: dt.datetime) -> dt.datetime:
    return moment.replace(second=0, microsecond=0)


def _window_start(now: dt.datetime) -> dt.datetime:
    """Rows with a minute strictly after this still count (conservative by up to one minute)."""
    return now - WINDOW - MINUTE


def _connection_id(connection: TargetConnection | int) -> int:
    return connection if isinstance(connection, int) else connection.pk


def _counted(connection_id: int | OuterRef, now: dt.datetime) -> QuerySet[QuotaMinute]:
    """The window query, written once: the connection's minute rows that still count at `now`."""
    return QuotaMinute.objects.filter(connection_id=connection_id, minute__gt=_window_start(now))


def window_usage(*, connection: TargetConnection | int, now: dt.datetime | None = None) -> int:
    """Requests reserved for `connection` in the rolling 24 hours up to `now` (one SUM: the
    sender's check; to show the window, read `window_picture`)."""
    now = now or timezone.now()
    total = _counted(_connection_id(connection), now).aggregate(total=Sum("requests"))["total"]
    return total or 0


def headroom(*, connection: TargetConnection, now: dt.datetime | None = None) -> int:
    """Requests that may still be sent now (no lock: an estimate for planning and display)."""
    return max(0, connection.quota_limit - window_usage(connection=connection, now=now))


def oldest_counted_at(
    *, connection: TargetConnection | int, now: dt.datetime | None = None
) -> dt.datetime | None:
    """When the oldest request still counted leaves the window (None if nothing is counted)."""
    now = now or timezone.now()
    oldest = (_counted(_connection_id(connection), now).filter(requests__gt=0)
              .order_by("minute").values_list("minute", flat=True).first())
    return None if oldest is None else oldest + WINDOW + MINUTE


def full_connections(*, now: dt.datetime | None = None) -> QuerySet[TargetConnection]:
    """Active connections whose rolling window holds their limit or more: the sender claims
    nothing for them (no headroom) until requests leave the window. One query, summing each
    connection's ~1,441 minute rows at most; usable as a subquery (`connection__in=`)."""
    now = now or timezone.now()
    used = (_counted(OuterRef("pk"), now).order_by().values("connection_id")
            .annotate(total=Sum("requests")).values("total"))
    return (TargetConnection.objects.filter(active=True)
            .annotate(window_used=Coalesce(Subquery(used), 0))
            .filter(window_used__gte=F("quota_limit")).values("pk"))


@dataclass(frozen=True)
class Release:
    """Requests of the window that leave it in one clock hour: the first of them at `first`,
    the last at `last` (each minute's requests leave 24 hours and one minute after it)."""

    first: dt.datetime
    last: dt.datetime
    requests: int


@dataclass(frozen=True)
class QuotaCost:
    """What some work (a plan, an import, a page of decisions) would use of a connection's
    window now: its cost in requests against what the window holds (WindowPicture.cost)."""

    cost: int
    used: int
    limit: int
    remaining: int
    frees_at: dt.datetime | None  # when the oldest counted request leaves the window

    @property
    def fits(self) -> bool:
        return self.cost <= self.remaining

    @property
    def waiting(self) -> int:
        """Requests that would wait for the window to free up."""
        return max(0, self.cost - self.remaining)


@dataclass(frozen=True)
class WindowPicture:
    """One read of a connection's rolling window: what it holds, by minute, and when it frees."""

    now: dt.datetime
    limit: int
    minutes: list[tuple[dt.datetime, int]]  # (minute, requests), oldest first, requests > 0

    @property
    def used(self) -> int:
        return sum(n for _, n in self.minutes)

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    @property
    def percent_used(self) -> float:
        return 100.0 * self.used / self.limit if self.limit else 0.0

    @property
    def oldest_leaves_at(self) -> dt.datetime | None:
        """When the oldest counted request leaves (as `oldest_counted_at`); None if none."""
        return self.minutes[0][0] + WINDOW + MINUTE if self.minutes else None

    def cost(self, requests: int) -> QuotaCost:
        """`requests` set against what remains of this window."""
        return QuotaCost(cost=requests, used=self.used, limit=self.limit,
                         remaining=self.remaining, frees_at=self.oldest_leaves_at)

    def releases(self) -> list[Release]:
        """When the counted requests come back, grouped by the clock hour they were reserved in
        (the window chart's bars), in order: the first release starts at `oldest_leaves_at`."""
        grouped: dict[dt.datetime, list] = {}
        for minute, requests in self.minutes:
            leaves = minute + WINDOW + MINUTE
            hour = minute.replace(minute=0, second=0, microsecond=0)
            if hour in grouped:
                grouped[hour][1] = leaves
                grouped[hour][2] += requests
            else:
                grouped[hour] = [leaves, leaves, requests]
        return [Release(first, last, n) for first, last, n in grouped.values()]


def window_picture(*, connection: TargetConnection, now: dt.datetime | None = None
                   ) -> WindowPicture:
    """The quota picture: the connection's window as one read of its minute rows (at most
    ~1,441) — used, limit, remaining, percent, when it frees up, and what a cost would leave.
    Every face shows it from here (dashboard, queue, batch and import pages, the notebook,
    `send_updates --dry-run`, attention's alerts, /metrics), so their figures agree."""
    now = now or timezone.now()
    rows = (_counted(connection.pk, now).filter(requests__gt=0)
            .order_by("minute").values_list("minute", "requests"))
    return WindowPicture(now=now, limit=connection.quota_limit, minutes=list(rows))


def reserve(*, connection: TargetConnection, wanted: int, now: dt.datetime | None = None) -> int:
    """Reserve up to `wanted` requests in the current minute; returns how many were granted.

    The caller must send at most the granted number (and may `release` what it did not send).
    """
    if wanted <= 0:
        return 0
    now = now or timezone.now()
    with transaction.atomic():
        # The lock that serializes reservations for this connection across workers and machines.
        # NO KEY: a sender recording its batch inserts rows that reference the connection (a
        # KEY SHARE lock), and the day's row is updated below; FOR UPDATE would deadlock them.
        locked = TargetConnection.objects.select_for_update(no_key=True).only("quota_limit").get(
            pk=connection.pk
        )
        used = window_usage(connection=connection.pk, now=now)
        granted = max(0, min(wanted, locked.quota_limit - used))
        if granted:
            _add_to_minute(connection.pk, _minute(now), granted)
            # The day's requests move with the window, in the same transaction: a worker that
            # dies after reserving leaves both counting the same requests.
            _add_to_daily(connection.pk, now.date(), requests=granted)
    return granted


def release(*, connection: TargetConnection, count: int, now: dt.datetime) -> None:
    """Give back `count` requests reserved at `now` (same `now` as the reservation) and not sent."""
    if count <= 0:
        return
    with transaction.atomic():
        TargetConnection.objects.select_for_update(no_key=True).only("pk").get(pk=connection.pk)
        returned = QuotaMinute.objects.filter(
            connection_id=connection.pk, minute=_minute(now), requests__gte=count
        ).update(requests=F("requests") - count)
        if returned:
            DailyUsage.objects.filter(
                connection_id=connection.pk, day=now.date(), requests__gte=count
            ).update(requests=F("requests") - count)


def _add_to_minute(connection_id: int, minute: dt.datetime, count: int) -> None:
    # Runs under the connection lock, so no other reservation can create the row meanwhile.
    updated = QuotaMinute.objects.filter(connection_id=connection_id, minute=minute).update(
        requests=F("requests") + count
    )
    if not updated:
        QuotaMinute.objects.create(connection_id=connection_id, minute=minute, requests=count)


def prune(*, now: dt.datetime | None = None) -> int:
    """Delete minute rows that can no longer count; returns how many went."""
    now = now or timezone.now()
    deleted, _ = QuotaMinute.objects.filter(minute__lt=now - KEEP_MINUTES_FOR).delete()
    return deleted


@dataclass(frozen=True)
class DailyRow:
    """Counts to add to one connection's usage on one UTC day."""

    connection_id: int
    day: dt.date
    requests: int = 0
    acknowledged: int = 0
    failed: int = 0


def record_daily(*, rows: Iterable[DailyRow]) -> None:
    """Add the counts to DailyUsage with F() increments (rows for the same day are summed)."""
    totals: dict[tuple[int, dt.date], list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in rows:
        counts = totals[(row.connection_id, row.day)]
        counts[0] += row.requests
        counts[1] += row.acknowledged
        counts[2] += row.failed
    for (connection_id, day), (requests, acknowledged, failed) in totals.items():
        _add_to_daily(connection_id, day, requests=requests, acknowledged=acknowledged,
                      failed=failed)


def _add_to_daily(connection_id: int, day: dt.date, **counts: int) -> None:
    if not any(counts.values()):
        return
    increments = {name: F(name) + count for name, count in counts.items()}
    with transaction.atomic():
        if DailyUsage.objects.filter(connection_id=connection_id, day=day).update(**increments):
            return
        try:
            with transaction.atomic():  # savepoint: another worker may create it first
                DailyUsage.objects.create(connection_id=connection_id, day=day, **counts)
        except IntegrityError:
            DailyUsage.objects.filter(connection_id=connection_id, day=day).update(**increments)
