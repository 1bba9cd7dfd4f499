"""Retrying, deferred and failed updates say so in the update list: a "waiting" filter whose
counts are the dashboard tiles' (attention.retrying / attention.deferred_by_quota, one definition
for both), a mark in the status cell, and the failure reason on each failed row."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection as db
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.conftest import make_connection, make_mapping
from tests.helpers import logged_in
from updates import attention
from updates.models import ProfileUpdate, QuotaMinute, UpdateStatus

pytestmark = pytest.mark.django_db
S = UpdateStatus
LIST = "admin:updates_profileupdate_changelist"
DASHBOARD = "updates_dashboard"


def squash(html: str) -> str:
    return re.sub(r"\s+", " ", html)


def set_state(update, **fields):
    ProfileUpdate.objects.filter(pk=update.pk).update(**fields)
    return update


def listed(client, query: str) -> tuple[list[int], str]:
    response = client.get(f"{reverse(LIST)}?{query}")
    assert response.status_code == 200
    return [u.pk for u in response.context["cl"].result_list], squash(response.content.decode())


def tile_count(client, key: str) -> int:
    [tile] = [t for t in client.get(reverse(DASHBOARD)).context["tiles"] if t.key == key]
    return tile.count


def fill_window(connection, requests: int | None = None):
    """The connection's rolling window holds its whole limit."""
    QuotaMinute.objects.create(connection=connection,
                               minute=timezone.now().replace(second=0, microsecond=0)
                               - dt.timedelta(hours=1),
                               requests=requests or connection.quota_limit)


@pytest.fixture
def waiting(stage, connection):
    """Two retrying updates, two due approved ones on a full connection, one approved for later,
    one due on a connection with room, a failed one and a plain draft."""
    now = timezone.now()
    full = connection
    full.quota_limit = 10
    full.save(update_fields=["quota_limit"])
    fill_window(full)
    roomy = make_connection("roomy")
    make_mapping(roomy, "loan_status", "loanStatus")
    retry_later = set_state(stage(identity="r-1"), status=S.APPROVED, attempt_count=2,
                            next_attempt_at=now + dt.timedelta(minutes=14),
                            last_error="HTTP 503 Service Unavailable")
    # A retry whose time has come on a full window: retrying and deferred both.
    retry_due = set_state(stage(identity="r-2"), status=S.APPROVED, attempt_count=1,
                          next_attempt_at=now - dt.timedelta(minutes=1),
                          last_error="connection reset")
    due = set_state(stage(identity="d-1"), status=S.APPROVED)
    not_yet = set_state(stage(identity="later-1"), status=S.APPROVED,
                        not_before=now + dt.timedelta(days=1))
    elsewhere = set_state(stage(connection=roomy, identity="room-1"), status=S.APPROVED)
    failed = set_state(stage(identity="f-1"), status=S.FAILED,
                       last_error="Target refused the request (HTTP 400): <b>bad</b> profile.x")
    stage(identity="draft-1")
    return {"retry_later": retry_later, "retry_due": retry_due, "due": due, "not_yet": not_yet,
            "elsewhere": elsewhere, "failed": failed}


def test_retrying_and_deferred_lists_match_their_tiles(client, supervisor, waiting):
    logged_in(client, supervisor)
    retrying, _ = listed(client, "waiting=retrying")
    deferred, _ = listed(client, "waiting=deferred")
    assert sorted(retrying) == sorted([waiting["retry_later"].pk, waiting["retry_due"].pk])
    assert sorted(deferred) == sorted([waiting["retry_due"].pk, waiting["due"].pk])
    assert tile_count(client, "retrying") == len(retrying) == 2
    assert tile_count(client, "deferred") == len(deferred) == 2


def test_the_tiles_open_their_own_lists(client, supervisor, waiting):
    content = squash(logged_in(client, supervisor).get(reverse(DASHBOARD)).content.decode())
    listing = reverse(LIST)
    assert f'href="{listing}?waiting=retrying"' in content
    assert f'href="{listing}?waiting=deferred"' in content


def test_nothing_is_deferred_while_the_window_has_room(client, supervisor, stage, connection):
    set_state(stage(), status=S.APPROVED)
    fill_window(connection, requests=connection.quota_limit - 1)
    logged_in(client, supervisor)
    assert listed(client, "waiting=deferred")[0] == [] and tile_count(client, "deferred") == 0
    QuotaMinute.objects.update(requests=connection.quota_limit)
    assert len(listed(client, "waiting=deferred")[0]) == 1 and tile_count(client, "deferred") == 1


def test_an_inactive_connection_defers_nothing(client, supervisor, stage, connection):
    set_state(stage(), status=S.APPROVED)
    fill_window(connection)
    connection.active = False
    connection.save(update_fields=["active"])
    logged_in(client, supervisor)
    assert listed(client, "waiting=deferred")[0] == [] and tile_count(client, "deferred") == 0


def test_a_retrying_update_says_so_in_the_status_cell(client, supervisor, waiting):
    _, content = listed(logged_in(client, supervisor), "")
    update = waiting["retry_later"]
    update.refresh_from_db()
    when = update.next_attempt_at
    assert (f'<span class="po-waiting po-waiting-retrying">· retrying (attempt 3, next '
            f'<span class="po-nowrap">{when:%Y-%m-%d %H:%M} UTC</span>)</span>') in content
    assert "HTTP 503 Service Unavailable" in content
    # Phones show the status beside the identity (the status column is hidden there).
    assert "po-phone-status\">Approved · retrying</span>" in content


def test_the_deferred_list_marks_its_rows(client, supervisor, waiting):
    _, content = listed(logged_in(client, supervisor), "waiting=deferred")
    assert content.count("· deferred by quota (the window is full)") == 2


def test_the_failed_list_gives_each_rows_reason_escaped(client, supervisor, waiting):
    _, content = listed(logged_in(client, supervisor), "status__exact=failed")
    assert ("Target refused the request (HTTP 400): &lt;b&gt;bad&lt;/b&gt; profile.x"
            in content)
    assert "<b>bad</b>" not in content


def test_a_long_reason_is_cut_and_kept_whole_in_its_title(client, supervisor, stage):
    reason = "Gave up after 5 attempts; last: " + "x" * 400
    set_state(stage(), status=S.FAILED, last_error=reason)
    _, content = listed(logged_in(client, supervisor), "status__exact=failed")
    assert f'title="{reason}"' in content
    assert "x" * 400 + "</span>" not in content and "…</span>" in content


def test_reasons_cost_no_query_per_row(client, supervisor, stage):
    logged_in(client, supervisor)

    def queries() -> int:
        with CaptureQueriesContext(db) as captured:
            listed(client, "status__exact=failed")
        return len(captured)

    set_state(stage(), status=S.FAILED, last_error="one")
    few = queries()
    for n in range(5):
        set_state(stage(), status=S.FAILED, last_error=f"reason {n}")
    assert queries() == few


def test_an_unknown_waiting_value_lists_nothing(client, supervisor, waiting):
    assert listed(logged_in(client, supervisor), "waiting=bogus")[0] == []


def test_the_waiting_querysets_are_the_ones_the_tiles_count(waiting):
    updates = ProfileUpdate.objects.all()
    seen = attention.needs_attention()
    assert seen.retrying.count == attention.retrying(updates).count() == 2
    assert seen.deferred_by_quota.count == attention.deferred_by_quota(updates).count() == 2
