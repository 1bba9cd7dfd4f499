"""The rolling 24-hour quota and per-day usage (updates/quota.py), on the real database."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection as db, connections
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext

from tests.conftest import make_connection
from updates import quota
from updates.models import DailyUsage, QuotaMinute

T0 = dt.datetime(2026, 3, 1, 12, 0, 30, tzinfo=dt.timezone.utc)


def at(**delta) -> dt.datetime:
    return T0 + dt.timedelta(**delta)


@pytest.fixture
def small(db):
    return make_connection("small", quota_limit=10)


@pytest.mark.django_db
def test_reserve_grants_what_fits_under_the_limit_and_nothing_more(small):
    assert quota.reserve(connection=small, wanted=6, now=T0) == 6
    assert quota.reserve(connection=small, wanted=6, now=at(minutes=5)) == 4
    assert quota.reserve(connection=small, wanted=1, now=at(hours=3)) == 0
    assert quota.window_usage(connection=small, now=at(hours=3)) == 10


@pytest.mark.django_db
def test_reservations_in_one_minute_share_one_row(small):
    quota.reserve(connection=small, wanted=2, now=T0)
    quota.reserve(connection=small, wanted=3, now=at(seconds=20))
    [row] = QuotaMinute.objects.filter(connection=small)
    assert (row.minute, row.requests) == (T0.replace(second=0), 5)


@pytest.mark.django_db
def test_the_window_rolls_a_minute_late_never_early(small):
    quota.reserve(connection=small, wanted=10, now=T0)  # counted in the 12:00 minute
    assert quota.window_usage(connection=small, now=at(hours=24)) == 10
    assert quota.reserve(connection=small, wanted=1, now=at(hours=24, seconds=29)) == 0
    # 12:01:00 the next day: the whole 12:00 minute is more than 24 h ago.
    assert quota.window_usage(connection=small, now=at(hours=24, seconds=30)) == 0
    assert quota.reserve(connection=small, wanted=3, now=at(hours=24, seconds=30)) == 3


@pytest.mark.django_db
def test_oldest_counted_at_says_when_room_frees(small):
    assert quota.oldest_counted_at(connection=small, now=T0) is None
    quota.reserve(connection=small, wanted=4, now=T0)
    quota.reserve(connection=small, wanted=4, now=at(hours=2))
    assert quota.oldest_counted_at(connection=small, now=at(hours=3)) == \
        T0.replace(second=0) + dt.timedelta(hours=24, minutes=1)
    assert quota.oldest_counted_at(connection=small, now=at(hours=25)) == \
        at(hours=2).replace(second=0) + dt.timedelta(hours=24, minutes=1)


@pytest.mark.django_db
def test_connections_have_separate_windows(small):
    other = make_connection("other", quota_limit=10)
    quota.reserve(connection=small, wanted=10, now=T0)
    assert quota.reserve(connection=other, wanted=10, now=T0) == 10
    assert quota.headroom(connection=small, now=T0) == 0


@pytest.mark.django_db
def test_release_gives_back_an_unused_reservation(small):
    quota.reserve(connection=small, wanted=10, now=T0)
    quota.release(connection=small, count=3, now=T0)
    assert quota.window_usage(connection=small, now=T0) == 7
    assert quota.reserve(connection=small, wanted=5, now=T0) == 3


@pytest.mark.django_db
def test_the_window_check_reads_a_bounded_number_of_rows_however_long_the_history(small):
    QuotaMinute.objects.bulk_create(
        QuotaMinute(connection=small, minute=T0.replace(second=0) - dt.timedelta(minutes=m),
                    requests=1) for m in range(1, 4000))
    with CaptureQueriesContext(db) as queries:
        used = quota.window_usage(connection=small, now=T0)
    assert used == 24 * 60  # the minutes of the last 24 h + 1 min, not the 3,999 stored
    [sql] = [q["sql"] for q in queries]
    assert "SUM" in sql.upper() and "COUNT" not in sql.upper()


@pytest.mark.django_db
def test_prune_deletes_minutes_that_can_no_longer_count(small):
    for hours in (0, 24, 26):
        quota.reserve(connection=small, wanted=1, now=at(hours=-hours))
    assert quota.prune(now=T0) == 1
    assert QuotaMinute.objects.filter(connection=small).count() == 2


@pytest.mark.django_db
def test_record_daily_adds_up_per_connection_and_day(small):
    other = make_connection("other")
    day, next_day = T0.date(), T0.date() + dt.timedelta(days=1)
    quota.record_daily(rows=[
        quota.DailyRow(small.pk, day, requests=3, acknowledged=2, failed=1),
        quota.DailyRow(small.pk, day, requests=1, acknowledged=1),
        quota.DailyRow(other.pk, day, requests=5),
    ])
    quota.record_daily(rows=[quota.DailyRow(small.pk, day, requests=2, acknowledged=2),
                             quota.DailyRow(small.pk, next_day, requests=1, failed=1)])
    rows = {(u.connection_id, u.day): (u.requests, u.acknowledged, u.failed)
            for u in DailyUsage.objects.all()}
    assert rows == {(small.pk, day): (6, 5, 1), (other.pk, day): (5, 0, 0),
                    (small.pk, next_day): (1, 0, 1)}


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_reservations_never_grant_more_than_the_limit():
    conn = make_connection("busy", quota_limit=100)
    granted: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def reserve_many() -> None:
        try:
            barrier.wait(timeout=10)
            for _ in range(20):
                got = quota.reserve(connection=conn, wanted=3, now=T0)
                with lock:
                    granted.append(got)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=reserve_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert len(granted) == 80
    assert sum(granted) == 100
    assert QuotaMinute.objects.filter(connection=conn).aggregate(n=Sum("requests"))["n"] == 100


@pytest.mark.django_db
def test_a_reservation_counts_in_the_days_usage_at_once_and_a_release_gives_it_back(small):
    quota.reserve(connection=small, wanted=7, now=T0)
    # No answer was ever recorded (the worker "died"): the day still counts what the window does.
    assert DailyUsage.objects.get(connection=small, day=T0.date()).requests == 7
    assert quota.window_usage(connection=small, now=T0) == 7

    quota.release(connection=small, count=3, now=T0)

    assert DailyUsage.objects.get(connection=small, day=T0.date()).requests == 4
    assert quota.window_usage(connection=small, now=T0) == 4


def test_the_window_picture_agrees_with_the_window_check_and_the_oldest_request(small):
    # The dashboard's one read (window_picture) counts what reserve's check counts, at the edges
    # of the window too, and its oldest request leaves when oldest_counted_at says.
    now = at()
    for minutes_ago, n in ((24 * 60 + 1, 7), (24 * 60, 3), (24 * 60 - 5, 2), (90, 4), (0, 1)):
        QuotaMinute.objects.create(connection=small, minute=now - dt.timedelta(minutes=minutes_ago),
                                   requests=n)
    QuotaMinute.objects.create(connection=small, minute=now - dt.timedelta(minutes=30), requests=0)
    for later in (dt.timedelta(0), dt.timedelta(seconds=59), dt.timedelta(minutes=1),
                  dt.timedelta(minutes=6)):
        picture = quota.window_picture(connection=small, now=now + later)
        assert picture.used == quota.window_usage(connection=small, now=now + later)
        assert picture.oldest_leaves_at == quota.oldest_counted_at(connection=small,
                                                                   now=now + later)
        assert picture.remaining == quota.headroom(connection=small, now=now + later)
        assert sum(r.requests for r in picture.releases()) == picture.used
        assert picture.releases()[0].first == picture.oldest_leaves_at


def test_a_full_window_makes_its_connection_full(small):
    now = at()
    assert list(quota.full_connections(now=now)) == []
    QuotaMinute.objects.create(connection=small, minute=now, requests=small.quota_limit - 1)
    assert list(quota.full_connections(now=now)) == []
    QuotaMinute.objects.filter(connection=small).update(requests=small.quota_limit)
    assert [row["pk"] for row in quota.full_connections(now=now)] == [small.pk]
    assert list(quota.full_connections(now=now + dt.timedelta(hours=24, minutes=1))) == []
