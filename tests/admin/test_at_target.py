"""What happened at Target, in the update list and on the dashboard: a column next to the status
(verification.at_target), the list's filters by verification state and day sent, and one tile
per state on the dashboard linking to the filtered list."""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.helpers import logged_in
from updates import verification
from updates.models import ProfileUpdate, UpdateStatus, VerificationState

pytestmark = pytest.mark.django_db
S, V = UpdateStatus, VerificationState
LIST = "admin:updates_profileupdate_changelist"


def ended(update, status, state="", *, acknowledged=True, days_ago=0):
    ProfileUpdate.objects.filter(pk=update.pk).update(
        status=status, verification_state=state,
        acknowledged_at=timezone.now() - dt.timedelta(days=days_ago) if acknowledged else None)
    return update


@pytest.fixture
def picture(stage):
    """One update per 'at Target' state, sent today, plus a draft and an old verified one."""
    return {
        "verified": ended(stage(identity="v-1"), S.SENT, V.VERIFIED),
        "not_applied": ended(stage(identity="na-1"), S.SENT, V.NOT_APPLIED),
        "not_applied_2": ended(stage(identity="na-2"), S.SENT, V.NOT_APPLIED),
        "checking": ended(stage(identity="c-1"), S.SENT, V.PENDING),
        "unverified": ended(stage(identity="u-1"), S.SENT, V.UNVERIFIED),
        "off": ended(stage(identity="o-1"), S.SENT, V.OFF),
        "unchanged": ended(stage(identity="s-1"), S.UNCHANGED, acknowledged=False),
        "draft": stage(identity="d-1"),
        "old": ended(stage(identity="old-1"), S.SENT, V.VERIFIED, days_ago=30),
    }


def row_of(content: str, update) -> str:
    match = re.search(rf'<tr[^>]*>(?:(?!</tr>).)*?/{update.pk}/change/(?:(?!</tr>).)*</tr>',
                      content, re.S)
    assert match, update.pk
    return match.group(0)


def test_at_target_names_each_state_and_nothing_for_what_was_not_sent():
    assert verification.at_target(S.SENT, V.VERIFIED) == "verified"
    assert verification.at_target(S.SENT, V.NOT_APPLIED) == "not_applied"
    assert verification.at_target(S.SENT, V.PENDING) == "checking"
    assert verification.at_target(S.SENT, "") == "checking"  # not yet scheduled
    assert verification.at_target(S.SENT, V.UNVERIFIED) == "unverified"
    assert verification.at_target(S.SENT, V.OFF) == "off"
    assert verification.at_target(S.UNCHANGED, "") == "unchanged"
    for status in (S.DRAFT, S.PENDING, S.APPROVED, S.SENDING, S.FAILED, S.CANCELLED):
        assert verification.at_target(status, "") == ""


def test_the_update_list_shows_what_happened_at_target_next_to_the_status(
        client, supervisor, picture):
    content = logged_in(client, supervisor).get(reverse(LIST)).content.decode()
    assert '<th scope="col" class="column-at_target_cell">' in content
    expected = {"verified": "verified", "not_applied": "not applied", "checking": "checking",
                "unverified": "could not verify", "off": "not verified (off)",
                "unchanged": "unchanged"}
    for key, label in expected.items():
        row = row_of(content, picture[key])
        state = key.removesuffix("_2")
        assert f'<span class="po-at-target po-at-target-{state}">{label}</span>' in row
        # Next to the status: the status cell, then this one.
        assert re.search(r'po-status-\w+">[^<]*</span></td><td class="field-at_target_cell">',
                         row), row
    assert '<td class="field-at_target_cell">—</td>' in row_of(content, picture["draft"])


def test_the_list_filters_by_verification_state_and_day_sent(client, supervisor, picture):
    client = logged_in(client, supervisor)
    today = dt.datetime.combine(timezone.now().date(), dt.time.min, tzinfo=dt.timezone.utc)
    response = client.get(reverse(LIST), {
        "verification_state__exact": "verified",
        "acknowledged_at__gte": today.isoformat(sep=" "),
        "acknowledged_at__lt": (today + dt.timedelta(days=1)).isoformat(sep=" ")})
    assert response.status_code == 200
    shown = {u.pk for u in response.context["cl"].result_list}
    assert shown == {picture["verified"].pk}  # not the one verified 30 days ago
    response = client.get(reverse(LIST), {"verification_state__exact": "not_applied"})
    assert {u.pk for u in response.context["cl"].result_list} == {
        picture["not_applied"].pk, picture["not_applied_2"].pk}


def test_the_dashboard_counts_each_state_and_links_to_the_filtered_list(
        client, supervisor, picture):
    client = logged_in(client, supervisor)
    content = client.get(reverse("updates_dashboard")).content.decode()
    expected = {"verified": 1, "not_applied": 2, "checking": 1, "unverified": 1, "off": 1,
                "unchanged": 0}  # unchanged: skipped per its audit row; none was here
    for key, count in expected.items():
        tile = re.search(rf'<div class="po-tile[^"]*" id="tile-at-target-{key}">(.*?)</div>',
                         content, re.S)
        assert tile, key
        assert f'<span class="po-tile-count">{count}</span>' in tile.group(1), (key, tile.group(1))
        url = html.unescape(re.search(r'href="([^"]+)"', tile.group(1)).group(1))
        listed = {u.pk for u in client.get(url).context["cl"].result_list}
        if key == "unchanged":
            assert listed == {picture["unchanged"].pk}
        else:
            assert listed == {u.pk for name, u in picture.items()
                              if name.removesuffix("_2") == key}, key
    # Only what needs a look is highlighted.
    assert 'class="po-tile po-tile-alert po-tile-at-target-not_applied"' in content
    assert 'class="po-tile" id="tile-at-target-verified"' in content
