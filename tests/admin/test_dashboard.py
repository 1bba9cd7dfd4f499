"""The operations dashboard and the approval queue, through Django's test client and a real DB."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.conftest import make_connection, make_mapping
from tests.helpers import logged_in, shown, status_of, texts
from updates import workflow
from updates.models import (
    DailyUsage, ProfileUpdate, QuotaMinute, SendAttempt, SendRun, UpdateStatus)

S = UpdateStatus
DASHBOARD = "updates_dashboard"
QUEUE = "updates_queue"


def pending(stage, by, **kwargs):
    return workflow.update_submit(update=stage(by=by, **kwargs), by=by)


def squash(html: str) -> str:
    return re.sub(r"\s+", " ", html)


# --- access ----------------------------------------------------------------------------------

def test_anonymous_users_are_sent_to_the_login_page(client):
    for name in (DASHBOARD, QUEUE):
        response = client.get(reverse(name))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_an_operator_gets_403_on_the_queue_page_and_its_post(client, operator, stage):
    update = pending(stage, operator)
    client = logged_in(client, operator)
    page = client.get(reverse(QUEUE))
    assert page.status_code == 403
    assert "for supervisors" in page.content.decode()
    post = client.post(reverse(QUEUE), {"decision": "approve", "update": [update.pk]})
    assert post.status_code == 403
    assert status_of(update) == S.PENDING


def test_staff_without_the_view_permission_gets_403_on_the_dashboard(client, db):
    nobody = User.objects.create_user("staff-only", password="x", is_staff=True)
    response = logged_in(client, nobody).get(reverse(DASHBOARD))
    assert response.status_code == 403


def test_the_admin_index_links_to_the_dashboard_and_the_queue(client, supervisor, operator):
    content = logged_in(client, supervisor).get(reverse("admin:index")).content.decode()
    assert reverse(DASHBOARD) in content and reverse(QUEUE) in content
    client.force_login(operator)
    content = client.get(reverse("admin:index")).content.decode()
    assert reverse(DASHBOARD) in content
    assert f'href="{reverse(QUEUE)}"' not in content


# --- the approval queue ----------------------------------------------------------------------

def test_the_queue_shows_exactly_what_will_be_sent(client, supervisor, operator, stage):
    update = pending(stage, operator, identity="cust-42",
                     attributes={"loanStatus": "funded", "callNote": "ring after 5 & ask"},
                     reason="loan funded")
    content = squash(logged_in(client, supervisor).get(reverse(QUEUE)).content.decode())
    row = content[content.index(f'id="queue-row-{update.pk}"'):]
    row = row[:row.index("</form>")]
    assert "mbox3rdPartyId" in row and "cust-42" in row
    assert "profile.callNote" in row and "ring after 5 &amp; ask" in row
    assert "profile.loanStatus" in row and "funded" in row
    assert "<strong>GET</strong>" in row
    assert "quota cost 1" in row
    assert "loan funded" in row


def test_the_queue_lists_only_pending_updates_longest_waiting_first(client, supervisor, operator,
                                                                    stage):
    older = pending(stage, operator)
    newer = pending(stage, operator)
    draft = stage()
    content = logged_in(client, supervisor).get(reverse(QUEUE)).content.decode()
    assert content.index(f"queue-row-{older.pk}") < content.index(f"queue-row-{newer.pk}")
    assert f"queue-row-{draft.pk}" not in content
    assert "2 updates waiting for approval" in content


def test_the_queue_filters_by_connection(client, supervisor, operator, stage):
    mine = pending(stage, operator)
    other_conn = make_connection("other")
    make_mapping(other_conn, "tier", "loyaltyTier")
    theirs = pending(stage, operator, connection=other_conn, attributes={"loyaltyTier": "gold"})
    content = logged_in(client, supervisor).get(
        reverse(QUEUE) + f"?connection={other_conn.pk}").content.decode()
    assert f"queue-row-{theirs.pk}" in content and f"queue-row-{mine.pk}" not in content


def test_the_queue_paginates(client, supervisor, operator, stage, monkeypatch):
    from updates.admin import queue
    monkeypatch.setattr(queue, "QUEUE_PAGE_SIZE", 2)
    updates = [pending(stage, operator) for _ in range(3)]
    client = logged_in(client, supervisor)
    first = client.get(reverse(QUEUE)).content.decode()
    second = client.get(reverse(QUEUE) + "?p=2").content.decode()
    assert f"queue-row-{updates[2].pk}" not in first
    assert f"queue-row-{updates[2].pk}" in second and "page 2 of 2" in second


def test_the_queue_approves_many_and_names_the_own_update_refusal(
        client, admin_user, operator, stage):
    theirs = [pending(stage, operator) for _ in range(2)]
    own = pending(stage, admin_user)
    response = logged_in(client, admin_user).post(
        reverse(QUEUE), {"decision": "approve", "update": [u.pk for u in theirs + [own]],
                         "shown": shown(*theirs, own)}, follow=True)
    assert [status_of(u) for u in theirs] == [S.APPROVED, S.APPROVED]
    assert status_of(own) == S.PENDING  # superuser or not: four eyes
    messages = texts(response)
    assert any("Approved 2 updates" in m for m in messages), messages
    assert any(f"Update #{own.pk}" in m and "four-eyes" in m for m in messages), messages
    assert response.status_code == 200


def test_the_queue_marks_the_users_own_updates(client, admin_user, operator, stage):
    own, theirs = pending(stage, admin_user), pending(stage, operator)
    content = logged_in(client, admin_user).get(reverse(QUEUE)).content.decode()
    assert f'<tr id="queue-row-{own.pk}" class="po-own">' in content
    assert f'<tr id="queue-row-{theirs.pk}">' in content
    assert "Yours: under the four-eyes rule someone else must decide." in content


def test_a_supervisor_approves_one_update_with_its_row_button(client, supervisor, operator, stage):
    one, other = pending(stage, operator), pending(stage, operator)
    logged_in(client, supervisor).post(reverse(QUEUE), {"approve_one": one.pk,
                                                        "shown": shown(one, other)})
    assert status_of(one) == S.APPROVED
    assert status_of(other) == S.PENDING


def test_rejecting_in_the_queue_requires_a_comment(client, supervisor, operator, stage):
    update = pending(stage, operator)
    client = logged_in(client, supervisor)
    refused = client.post(reverse(QUEUE), {"decision": "reject", "update": [update.pk],
                                           "comment": "  "}, follow=True)
    assert status_of(update) == S.PENDING
    assert any("A rejection needs a comment" in m for m in texts(refused))

    done = client.post(reverse(QUEUE), {"reject_one": update.pk, "comment": "wrong visitor",
                                        "shown": shown(update)}, follow=True)
    update.refresh_from_db()
    assert update.status == S.REJECTED and update.decision_comment == "wrong visitor"
    assert any("Rejected 1 update" in m for m in texts(done))


def test_a_queue_decision_on_an_update_no_longer_pending_names_why(client, supervisor,
                                                                   other_supervisor, operator,
                                                                   stage):
    update = pending(stage, operator)
    page_shown = shown(update)
    workflow.update_approve(update=update, by=other_supervisor)  # someone was quicker
    response = logged_in(client, supervisor).post(
        reverse(QUEUE), {"decision": "reject", "update": [update.pk], "comment": "no",
                         "shown": page_shown}, follow=True)
    assert status_of(update) == S.APPROVED
    assert any(f"Update #{update.pk} is approved now" in m for m in texts(response))


def test_a_queue_post_without_a_selection_changes_nothing(client, supervisor, operator, stage):
    update = pending(stage, operator)
    response = logged_in(client, supervisor).post(reverse(QUEUE), {"decision": "approve"},
                                                   follow=True)
    assert status_of(update) == S.PENDING
    assert any("Select at least one update" in m for m in texts(response))


def test_the_queue_post_is_protected_against_csrf(supervisor, operator, stage):
    update = pending(stage, operator)
    client = Client(enforce_csrf_checks=True)
    client.force_login(supervisor)
    forged = client.post(reverse(QUEUE), {"decision": "approve", "update": [update.pk]})
    assert forged.status_code == 403
    assert status_of(update) == S.PENDING

    page = client.get(reverse(QUEUE))
    token = page.context["csrf_token"]
    genuine = client.post(reverse(QUEUE), {"decision": "approve", "update": [update.pk],
                                           "shown": page.context["shown"],
                                           "csrfmiddlewaretoken": str(token)})
    assert genuine.status_code == 302
    assert status_of(update) == S.APPROVED


# --- the dashboard ---------------------------------------------------------------------------

@pytest.fixture
def history(connection, operator, supervisor, stage):
    """Usage, quota, a run and acknowledged attempts with known numbers."""
    now = timezone.now()
    today = now.date()
    DailyUsage.objects.create(connection=connection, day=today, requests=1234, acknowledged=1200,
                              failed=34)
    DailyUsage.objects.create(connection=connection, day=today - dt.timedelta(days=3),
                              requests=50, acknowledged=48, failed=2)
    DailyUsage.objects.create(connection=connection, day=today - dt.timedelta(days=40),
                              requests=777777, acknowledged=0, failed=0)  # outside the chart
    minute = now.replace(second=0, microsecond=0)
    QuotaMinute.objects.create(connection=connection, minute=minute - dt.timedelta(hours=23),
                               requests=900)
    QuotaMinute.objects.create(connection=connection, minute=minute, requests=334)
    QuotaMinute.objects.create(connection=connection, minute=minute - dt.timedelta(hours=30),
                               requests=5000)  # no longer in the window
    update = stage()
    for number, ms in enumerate([10, 20, 30, 40, 1000], start=1):
        SendAttempt.objects.create(
            update=update, connection=connection, number=number,
            started_at=now - dt.timedelta(minutes=10 - number), method="GET", request_bytes=100,
            http_status=200, response_body="trueRequest successfully submitted", latency_ms=ms,
            outcome=SendAttempt.Outcome.ACKNOWLEDGED)
    SendAttempt.objects.create(
        update=update, connection=connection, number=6, started_at=now, method="GET",
        request_bytes=100, http_status=500, latency_ms=99999, outcome=SendAttempt.Outcome.TRANSIENT)
    SendRun.objects.create(trigger="schedule", worker="w1",
                           started_at=now - dt.timedelta(minutes=1), finished_at=now, claimed=7, acknowledged=5, retried=1, failed=1,
                           deferred_by_quota=0)
    waiting = pending(stage, operator)
    pending(stage, operator)
    return {"now": now, "waiting": waiting}


def test_the_dashboard_shows_the_rolling_window_against_the_limit(client, supervisor, history,
                                                                  connection):
    content = squash(logged_in(client, supervisor).get(reverse(DASHBOARD)).content.decode())
    card = content[content.index(f'id="connection-{connection.pk}"'):]
    assert '<strong class="po-window-requests">1,234</strong>' in card
    assert '<span class="po-limit">1,000,000</span>' in card
    assert "998,766 left" in card
    leaves = (history["now"].replace(second=0, microsecond=0) - dt.timedelta(hours=23)
              + dt.timedelta(hours=24, minutes=1))
    assert f"leaves the window at <time datetime=\"{leaves.isoformat()}\">" in card


def test_the_dashboard_charts_the_last_30_days(client, supervisor, history, connection):
    content = squash(logged_in(client, supervisor).get(reverse(DASHBOARD)).content.decode())
    card = content[content.index(f'id="connection-{connection.pk}"'):]
    assert card.count('class="po-bar po-bar-requests"') == 30
    today = history["now"].date()
    assert f"<title>{today:%Y-%m-%d}: 1,234 requests</title>" in card
    assert f"<title>{today:%Y-%m-%d}: 34 failed</title>" in card
    assert "totals: 1,284 requests, 1,248 acknowledged, 36 failed" in card
    assert "777,777" not in card  # 40 days ago is outside the chart
    assert "<script" not in card


def test_the_dashboard_counts_updates_by_status(client, supervisor, history):
    content = squash(logged_in(client, supervisor).get(reverse(DASHBOARD)).content.decode())
    assert 'data-status="pending">2</td>' in content
    assert 'data-status="draft">1</td>' in content
    assert 'data-status="sent">0</td>' in content


def test_the_dashboard_names_the_oldest_update_waiting_for_approval(client, supervisor, history):
    content = squash(logged_in(client, supervisor).get(reverse(DASHBOARD)).content.decode())
    section = content[content.index('id="oldest-pending"'):]
    assert f"Update #{history['waiting'].pk}</a>" in section


def test_the_dashboard_shows_the_last_send_run(client, supervisor, history):
    content = squash(logged_in(client, supervisor).get(reverse(DASHBOARD)).content.decode())
    section = content[content.index('id="last-run"'):]
    assert "<strong>finished</strong>" in section
    assert "Claimed 7, acknowledged 5, retried 1, failed 1, deferred by quota 0." in section


def test_the_dashboard_shows_median_and_p95_latency_of_acknowledgments(client, supervisor,
                                                                       history):
    content = squash(logged_in(client, supervisor).get(reverse(DASHBOARD)).content.decode())
    section = content[content.index('id="latency"'):]
    # Acknowledged latencies 10, 20, 30, 40, 1000 ms; the 500 with 99,999 ms does not count.
    assert '<strong class="po-median">30 ms</strong>' in section
    assert '<strong class="po-p95">1000 ms</strong>' in section
    assert "latest 5 acknowledged requests" in section


def test_the_dashboard_renders_with_no_data_at_all(client, supervisor):
    response = logged_in(client, supervisor).get(reverse(DASHBOARD))
    assert response.status_code == 200
    content = response.content.decode()
    assert "No Target connection is set up yet." in content
    assert "No send run yet." in content and "No acknowledged request yet." in content


# --- what needs attention ----------------------------------------------------------------------

def tile(content: str, key: str) -> str:
    start = content.index(f'id="tile-{key}"')
    return content[content.rindex("<div", 0, start):content.index("</div>", start)]


def test_the_tiles_stand_out_when_non_zero_and_link_to_the_filtered_list(
        client, supervisor, operator, stage, connection):
    failed = stage()
    ProfileUpdate.objects.filter(pk=failed.pk).update(status=S.FAILED)
    retrying = stage()
    ProfileUpdate.objects.filter(pk=retrying.pk).update(
        status=S.APPROVED, attempt_count=1, next_attempt_at=timezone.now())
    pending(stage, operator)
    pending(stage, operator)
    SendRun.objects.create(started_at=timezone.now(), deferred_by_quota=0)

    content = squash(logged_in(client, supervisor).get(reverse(DASHBOARD)).content.decode())
    listing = reverse("admin:updates_profileupdate_changelist")
    failed_tile = tile(content, "failed")
    assert "po-tile-alert" in failed_tile and '<span class="po-tile-count">1</span>' in failed_tile
    assert f'href="{listing}?status__exact=failed"' in failed_tile
    assert "Re-queue from the list" in failed_tile  # supervisors may re-queue
    assert "po-tile-alert" in tile(content, "retrying")
    assert '<span class="po-tile-count">1</span>' in tile(content, "retrying")
    waiting = tile(content, "pending")
    assert "po-tile-alert" in waiting and '<span class="po-tile-count">2</span>' in waiting
    assert f'href="{reverse(QUEUE)}"' in waiting  # a supervisor goes straight to the queue
    deferred = tile(content, "deferred")
    assert "po-tile-alert" not in deferred and '<span class="po-tile-count">0</span>' in deferred


def test_operators_tiles_link_to_the_list_not_the_queue(client, operator, stage):
    pending(stage, operator)
    content = squash(logged_in(client, operator).get(reverse(DASHBOARD)).content.decode())
    listing = reverse("admin:updates_profileupdate_changelist")
    assert f'href="{listing}?status__exact=pending"' in tile(content, "pending")


def test_requests_are_split_into_first_attempts_and_retries_and_failures_kept_apart(
        client, supervisor, history):
    content = squash(logged_in(client, supervisor).get(reverse(DASHBOARD)).content.decode())
    # history: attempts 1..5 acknowledged and 6 transient, for one update, all in the last 24 h.
    assert 'id="requests-first">1</td>' in content
    assert 'id="requests-retries">5</td>' in content
    assert 'id="requests-failed">1</td>' in content
    assert 'id="updates-failed">0</td>' in content


def test_the_dashboard_charts_the_rolling_window_by_hour_with_the_limit_and_when_quota_frees(
        client, supervisor, history, connection):
    content = squash(logged_in(client, supervisor).get(reverse(DASHBOARD)).content.decode())
    card = content[content.index(f'id="connection-{connection.pk}"'):]
    assert 'class="po-chart po-window-chart"' in card
    assert "1,234 of the 1,000,000 limit" in card
    # The 900 requests of 23 hours ago leave the window 24 hours and a minute after their minute.
    frees = (history["now"].replace(second=0, microsecond=0) - dt.timedelta(hours=23)
             + dt.timedelta(hours=24, minutes=1))
    assert (f"900 on <time datetime=\"{frees.isoformat()}\">{frees:%Y-%m-%d}</time> "
            f"at {frees:%H:%M} UTC") in card


def test_the_window_chart_is_scaled_to_what_is_used_and_states_a_limit_off_the_scale(
        client, supervisor, history, connection):
    # 1,234 of 1,000,000: on a 0-1,000,000 scale the bars were under a pixel high.
    response = logged_in(client, supervisor).get(reverse(DASHBOARD))
    [card] = response.context["cards"]
    chart, bar = card["window_chart"], card["usage_bar"]
    assert chart.peak == 2000 and not chart.limit_in_scale
    assert max(b.height for b in chart.bars) > (chart.bottom - chart.top) * 0.6
    assert bar.used_percent == 61.7 and bar.limit_percent is None
    content = squash(response.content.decode())
    card_html = content[content.index(f'id="connection-{connection.pk}"'):]
    assert 'class="po-limit-line"' not in card_html
    assert "limit 1,000,000 — off the scale" in card_html
    assert "Scale 0–2,000;" in card_html
    assert [t.label for t in chart.y_ticks] == ["0", "1,000", "2,000"]


def test_the_window_scale_is_a_nice_maximum_above_what_is_used():
    from updates.admin.dashboard import _short_label, window_scale
    assert window_scale(used=3088, limit=1_000_000) == 5000  # the 3,088: visible
    assert window_scale(used=199_999, limit=1_000_000) == 200_000
    assert window_scale(used=200_000, limit=1_000_000) == 1_000_000  # a fifth: limit in scale
    assert window_scale(used=1_200_000, limit=1_000_000) == 2_000_000  # after a limit cut
    assert window_scale(used=0, limit=1_000_000) == 10
    assert [_short_label(v) for v in (0, 2500, 5000, 50_000, 250_000, 1_000_000, 1_500_000)] == [
        "0", "2,500", "5,000", "50k", "250k", "1M", "1.5M"]


def test_the_limit_line_shows_once_the_window_nears_it(client, supervisor, db):
    conn = make_connection("near", quota_limit=1000)
    now = timezone.now()
    QuotaMinute.objects.create(connection=conn, minute=now.replace(second=0, microsecond=0)
                               - dt.timedelta(hours=2), requests=700)
    response = logged_in(client, supervisor).get(reverse(DASHBOARD))
    [card] = response.context["cards"]
    chart, bar = card["window_chart"], card["usage_bar"]
    assert chart.peak == 1000 and chart.limit_in_scale
    assert chart.limit_y == chart.top  # the limit is the top of the scale
    assert bar.used_percent == 70.0 and bar.limit_percent == 100.0
    content = squash(response.content.decode())
    assert 'class="po-limit-line"' in content and "off the scale" not in content
    assert '<strong class="po-window-requests">700</strong>' in content and "300 left" in content


def test_quota_frees_up_with_dates_and_agrees_with_the_oldest_request_line(
        client, supervisor, connection):
    now = timezone.now().replace(minute=30)
    minute = now.replace(second=0, microsecond=0)
    for ago, requests in ((dt.timedelta(hours=23, minutes=20), 2000),
                          (dt.timedelta(hours=23, minutes=5), 31),
                          (dt.timedelta(hours=3), 57)):
        QuotaMinute.objects.create(connection=connection, minute=minute - ago, requests=requests)
    from updates import quota
    window = quota.window_picture(connection=connection, now=now)
    [first, second] = window.releases()
    oldest = minute - dt.timedelta(hours=23, minutes=20) + dt.timedelta(hours=24, minutes=1)
    assert window.oldest_leaves_at == first.first == oldest
    assert (first.requests, first.last) == (2031, oldest + dt.timedelta(minutes=15))
    assert second.requests == 57 and window.used == 2088

    content = squash(logged_in(client, supervisor).get(reverse(DASHBOARD)).content.decode())
    card = content[content.index(f'id="connection-{connection.pk}"'):]
    shown = [m.group(1) for m in re.finditer(r'<time datetime="([^"]+)"', card)]
    # The line above the chart and the first release name the same moment, with its date.
    assert shown[0] == shown[1] == oldest.isoformat()
    assert (f"2,031 on <time datetime=\"{oldest.isoformat()}\">{oldest:%Y-%m-%d}</time> from "
            f"{oldest:%H:%M} to {oldest + dt.timedelta(minutes=15):%H:%M} UTC") in card
    assert '<strong class="po-window-requests">2,088</strong>' in card


def test_the_verification_table_scrolls_inside_its_card(client, supervisor, db):
    content = squash(logged_in(client, supervisor).get(reverse(DASHBOARD)).content.decode())
    section = content[content.index('id="verification"'):]
    assert re.search(r'<div class="po-scroll"[^>]*> <table class="po-verification-table">',
                     section)
    assert 'updates/dashboard.css' in content


def test_the_dashboard_says_as_of_when_and_refreshes_itself(client, supervisor):
    content = logged_in(client, supervisor).get(reverse(DASHBOARD)).content.decode()
    assert '<meta http-equiv="refresh" content="60">' in content
    assert re.search(r'id="po-asof">As of <time datetime="[^"]+">\d{4}-\d\d-\d\d '
                     r'\d\d:\d\d:\d\d UTC</time>', content)
    assert "Refresh now" in content


# --- the queue at scale ------------------------------------------------------------------------

BATCH = "updates_queue_batch"


def imported(connection, operator, n: int, prefix: str = "imp"):
    from updates import importing

    rows = "".join(f"mbox3rdPartyId,{prefix}-{i},funded\n" for i in range(n))
    job = importing.import_job_create(connection=connection, file_name=f"{prefix}.csv",
                                      file_data=f"identity_type,identity,loan_status\n{rows}"
                                      .encode(), by=operator, submit=True)
    importing.import_job_start(job=job, by=operator)
    job.refresh_from_db()
    return job


def test_a_batch_page_shows_size_cost_and_a_random_sample_of_one_import(
        client, supervisor, operator, stage, connection):
    job = imported(connection, operator, 30)
    pending(stage, operator, identity="not-in-the-import")
    response = logged_in(client, supervisor).get(reverse(BATCH), {"import": job.pk,
                                                                  "sample": 5})
    content = squash(response.content.decode())
    assert '<strong id="batch-count">30</strong>' in content
    assert '<strong id="batch-cost">30</strong>' in content
    assert len(response.context["sample"]) == 5
    assert {r["update"].reason for r in response.context["sample"]} == {
        f"import #{job.pk}: imp.csv"}
    assert "not-in-the-import" not in content
    assert f"import #{job.pk} (imp.csv)" in content


def test_approving_a_batch_decides_exactly_what_the_page_showed(client, supervisor, operator,
                                                                connection):
    job = imported(connection, operator, 12)
    client = logged_in(client, supervisor)
    page = client.get(reverse(BATCH), {"import": job.pk})
    response = client.post(reverse(BATCH), {"import": job.pk, "decision": "approve",
                                            "shown": page.context["shown"]}, follow=True)
    assert ProfileUpdate.objects.filter(status=S.APPROVED).count() == 12
    assert any(m.startswith("Approved 12 updates") for m in texts(response))


def test_a_batch_that_changed_since_it_was_shown_is_not_decided(client, supervisor, operator,
                                                                stage, connection):
    waiting = [pending(stage, operator) for _ in range(3)]
    client = logged_in(client, supervisor)
    page = client.get(reverse(BATCH))
    workflow.update_approve(update=waiting[0], by=make_other_supervisor())
    response = client.post(reverse(BATCH), {"decision": "reject", "comment": "not today",
                                            "shown": page.context["shown"]}, follow=True)
    assert any("What you were shown changed" in m and "1 left" in m for m in texts(response))
    assert ProfileUpdate.objects.filter(status=S.PENDING).count() == 2
    # Newer updates than those shown are never part of the decision.
    page = client.get(reverse(BATCH))
    later = pending(stage, operator)
    client.post(reverse(BATCH), {"decision": "approve", "shown": page.context["shown"]})
    assert status_of(later) == S.PENDING
    assert ProfileUpdate.objects.filter(status=S.APPROVED).count() == 3


def make_other_supervisor():
    from tests.conftest import make_user

    return make_user("supervisor2", "Supervisors")


def test_rejecting_a_batch_needs_a_comment(client, supervisor, operator, stage):
    pending(stage, operator)
    client = logged_in(client, supervisor)
    page = client.get(reverse(BATCH))
    response = client.post(reverse(BATCH), {"decision": "reject", "comment": " ",
                                            "shown": page.context["shown"]}, follow=True)
    assert any("A rejection needs a comment" in m for m in texts(response))
    assert ProfileUpdate.objects.filter(status=S.PENDING).count() == 1


def test_a_batch_counts_the_viewers_own_updates_that_four_eyes_will_refuse(client, admin_user,
                                                                           operator, stage):
    pending(stage, operator)
    pending(stage, admin_user)
    content = squash(logged_in(client, admin_user).get(reverse(BATCH)).content.decode())
    assert '<p class="po-own-note" id="batch-blocked">1 of them you created' in content


def test_queue_rows_show_their_age_and_disable_what_the_viewer_may_not_decide(
        client, admin_user, operator, stage):
    theirs = pending(stage, operator)
    ProfileUpdate.objects.filter(pk=theirs.pk).update(
        submitted_at=timezone.now() - dt.timedelta(hours=3, minutes=5))
    mine = pending(stage, admin_user)
    content = squash(logged_in(client, admin_user).get(reverse(QUEUE)).content.decode())
    assert re.search(rf'id="queue-age-{theirs.pk}">waiting 3 hours, 5 minutes</div>',
                     content)
    row = content[content.index(f'id="queue-row-{mine.pk}"'):]
    row = row[row.index('class="po-row-buttons"'):]
    row = row[:row.index("</td>")]
    assert 'disabled aria-describedby="queue-blocker-' in row
    assert "four-eyes rule" in row[row.index("po-blocker"):]
    assert f'name="approve_one" value="{mine.pk}"' not in row


def test_a_rows_own_reject_reason_is_its_comment(client, supervisor, operator, stage):
    update = pending(stage, operator)
    logged_in(client, supervisor).post(reverse(QUEUE), {
        "reject_one": update.pk, f"reason_{update.pk}": "wrong tier", "comment": "",
        "shown": shown(update)})
    update.refresh_from_db()
    assert (update.status, update.decision_comment) == (S.REJECTED, "wrong tier")
