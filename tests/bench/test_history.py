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
