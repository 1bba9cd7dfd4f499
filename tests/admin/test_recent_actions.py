"""The admin index's *Recent actions*: workflow events from the audit trail (what the viewer did
to updates, and what happened to the viewer's own updates), newest first, each linking to its
update, escaped — and Django's log of admin form saves below them."""

from __future__ import annotations

import re

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse

from tests.conftest import make_user
from updates import selectors, workflow
from updates.models import AuditEvent, ImportJob, ProfileUpdate, TargetConnection


def sidebar(client, user) -> str:
    client.force_login(user)
    page = client.get(reverse("admin:index")).content.decode()
    return page[page.index('id="recent-actions-module"'):]


def workflow_items(html: str) -> list[str]:
    """The texts of the workflow list's items, whitespace collapsed."""
    block = html.split('id="recent-workflow-events"', 1)[1].split("</ul>", 1)[0]
    items = re.findall(r"<li[^>]*>(.*?)</li>", block, flags=re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", item).split()).replace(" :", ":") for item in items]


@pytest.mark.django_db
def test_an_operator_sees_what_they_did_and_what_happened_to_their_updates(
        client, stage, operator, supervisor):
    update = stage()
    workflow.update_submit(update=update, by=operator)
    workflow.update_approve(update=update, by=supervisor)

    html = sidebar(client, operator)
    items = workflow_items(html)
    assert [item.split(" · ")[0].rsplit(" ", 3)[0] for item in items] == [
        f"Update #{update.pk}: approved",
        f"Update #{update.pk}: submitted for approval",
        f"Update #{update.pk}: staged",
    ]
    assert items[0].endswith("UTC · supervisor") and items[1].endswith("UTC · operator")
    url = reverse("admin:updates_profileupdate_change", args=[update.pk])
    assert html.count(f'href="{url}"') == 3


@pytest.mark.django_db
def test_a_supervisor_sees_their_decisions_but_not_others_unrelated_work(
        client, stage, operator, other_operator, supervisor):
    mine = stage()
    workflow.update_submit(update=mine, by=operator)
    workflow.update_reject(update=mine, by=supervisor, comment="wrong tier")
    unrelated = stage(by=other_operator)

    items = workflow_items(sidebar(client, supervisor))
    assert len(items) == 1 and items[0].startswith(f"Update #{mine.pk}: rejected")
    assert all(f"#{unrelated.pk}:" not in item for item in items)


@pytest.mark.django_db
def test_system_events_on_the_viewers_updates_are_shown_as_by_the_system(
        client, stage, operator):
    update = stage()
    AuditEvent.objects.create(at=update.created_at, action="acknowledged", update=update,
                              connection_id=update.connection_id, from_status="sending",
                              to_status="sent", changes={"attempt": 2})
    items = workflow_items(sidebar(client, operator))
    assert any(i.startswith(f"Update #{update.pk}: acknowledged by Target (attempt 2)")
               and i.endswith("· the system") for i in items)


@pytest.mark.django_db
def test_recent_actions_are_escaped(client, stage, connection):
    hostile = make_user("op<b>x</b>", "Operators")
    update = stage(by=hostile)
    html = sidebar(client, hostile)
    assert "op&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
    assert f"Update #{update.pk}: staged" in workflow_items(html)[0]


@pytest.mark.django_db
def test_events_of_an_unfinished_import_are_not_listed(client, stage, connection, operator):
    job = ImportJob.objects.create(connection=connection, created_by=operator, file_name="f.csv",
                                   file_format="csv", status=ImportJob.Status.RUNNING)
    pending = stage()  # as the import writes it: invisible until the import ends
    ProfileUpdate.with_pending_imports.filter(pk=pending.pk).update(import_pending=job)
    assert selectors.recent_workflow_events(user=operator) == []
    assert "None available" in sidebar(client, operator).split("My admin changes")[0]


@pytest.mark.django_db
def test_the_list_is_bounded_and_newest_first(stage, operator):
    updates = [stage() for _ in range(12)]
    events = selectors.recent_workflow_events(user=operator)
    assert len(events) == selectors.RECENT_EVENTS_LIMIT
    assert [e.update_id for e in events] == [u.pk for u in reversed(updates)][:10]


@pytest.mark.django_db
def test_admin_form_saves_are_still_listed_below(client, admin_user, connection):
    LogEntry.objects.log_actions(
        user_id=admin_user.pk, queryset=TargetConnection.objects.filter(pk=connection.pk),
        action_flag=ADDITION, change_message="", single_object=True)
    html = sidebar(client, admin_user)
    admin_changes = html.split("My admin changes", 1)[1]
    assert ContentType.objects.get_for_model(TargetConnection).name.capitalize() in admin_changes
    assert "Connection acme (acme)" in admin_changes


@pytest.mark.django_db
def test_a_user_without_update_rights_sees_no_workflow_list(client, stage):
    stage()
    plain = make_user("viewer")
    html = sidebar(client, plain)
    assert 'id="recent-workflow-events"' not in html and "My admin changes" in html
