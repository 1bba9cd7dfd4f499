"""The benchmarks' bulk-loaded history (bench/history.py) stays loadable as the models change.

The benchmarks are not tests (they time things, outside CI); this only checks that the year of
history they seed — raw rows written past the ORM, so no model default applies — is rows the
database and the models accept. A new NOT NULL column once broke `bench/run.py --only
admin,quota` silently; now it fails here.
"""

from __future__ import annotations

import pytest
from django.utils import timezone

from updates.models import DailyUsage, ProfileUpdate, QuotaMinute, SendAttempt, SendRun


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_history_seeds_rows_the_models_read_back():
    from bench.history import seed

    summary = seed(300, now=timezone.now(), quota_limit=1_000_000)

    assert summary["updates"] == ProfileUpdate.objects.count() == 300
    assert summary["attempts"] == SendAttempt.objects.count() > 0
    assert SendRun.objects.count() == summary["send_runs"]
    assert DailyUsage.objects.exists() and QuotaMinute.objects.exists()
    for update in ProfileUpdate.objects.all():  # every column converts back to its field
        assert isinstance(update.attributes, dict) and isinstance(update.prior_values, dict)
        assert update.unsent_unchanged == []
    # The ids were explicit: a new row still gets a fresh one (the sequences moved past them).
    first, now = ProfileUpdate.objects.order_by("id").first(), timezone.now()
    later = ProfileUpdate.objects.create(
        connection_id=first.connection_id, identity_type="mboxPC", identity="after-history",
        attributes={}, created_by_id=first.created_by_id, created_at=now,
        last_edited_by_id=first.created_by_id, last_edited_at=now)
    assert later.pk > 300


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_more_attempts_than_updates_are_spread_as_retries_over_the_sent_and_failed_ones():
    from django.db.models import Count

    from bench.history import seed

    summary = seed(300, now=timezone.now(), quota_limit=1_000_000, attempts=700)

    assert summary["attempts"] == SendAttempt.objects.count() == 700
    per_update = dict(SendAttempt.objects.values_list("update").annotate(n=Count("id")))
    done = ProfileUpdate.objects.filter(status__in=("sent", "failed"))
    assert set(per_update) == set(done.values_list("id", flat=True))
    assert set(per_update.values()) <= {2, 3}  # 700 over ~290 updates: two or three each
    for update in done:  # the update's own counters agree with its attempts; the last decided
        assert update.attempts_total == per_update[update.pk]
        last = update.attempts.order_by("-number").first()
        assert last.number == update.attempts_total
        assert last.outcome == ("acknowledged" if update.status == "sent" else "permanent")
        assert set(update.attempts.exclude(pk=last.pk).values_list("outcome", flat=True)) <= {
            "transient"}
