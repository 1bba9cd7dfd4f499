"""Issue 24 item 10, the small things a newcomer trips on: the update pages' breadcrumbs do not
say "Profile updates › Profile updates"; the unsaved-changes note names only the buttons the page
has; a revert draft links to the update it reverts; an empty list says what to do; an import's
page says "1 row" (the command's output is in tests/commands/test_import_export_commands.py)."""

from __future__ import annotations

import html as html_lib
import re

from django.urls import reverse

from tests.helpers import logged_in
from updates import workflow
from updates.admin.updates import unsaved_note
from updates.models import AlertRule, AuditEvent, ProfileUpdate


def change_url(update) -> str:
    return reverse("admin:updates_profileupdate_change", args=[update.pk])


def breadcrumbs(html: str) -> str:
    crumbs = re.search(r'<div class="breadcrumbs">(.*?)</div>', html, re.S).group(1)
    return re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", "", crumbs))).strip()


def test_update_pages_breadcrumbs_name_profile_updates_once(client, operator, stage):
    update = stage()
    client = logged_in(client, operator)
    listed = breadcrumbs(client.get(reverse("admin:updates_profileupdate_changelist"))
                         .content.decode())
    assert listed == "Home › Profile updates"
    page = breadcrumbs(client.get(change_url(update)).content.decode())
    assert page.startswith("Home › Profile updates › ") and page.count("Profile updates") == 1


def test_an_updates_history_page_names_profile_updates_once(client, admin_user, stage):
    # (There is no delete page: an update is cancelled, never deleted.)
    update = stage()
    client = logged_in(client, admin_user)
    page = client.get(reverse("admin:updates_profileupdate_history", args=[update.pk]))
    crumbs = breadcrumbs(page.content.decode())
    assert crumbs.startswith("Home › Profile updates › ") and crumbs.endswith("› History")
    assert crumbs.count("Profile updates") == 1, crumbs


def test_the_unsaved_note_names_only_the_pages_buttons(client, operator, stage):
    update = stage()
    workflow.update_submit(update=update, by=operator)
    html = logged_in(client, operator).get(change_url(update)).content.decode()
    note = re.search(r'id="po-unsaved-note"[^>]*>(.*?)</p>', html, re.S).group(1)
    # The author's pending page offers Cancel (and saving), never Submit, Re-queue or Approve.
    assert "Submit" not in note and "Re-queue" not in note and "Approve" not in note
    assert "Cancel" in note
    assert unsaved_note([("submit", "Submit for approval")]) == (
        "You have unsaved changes: “Submit for approval” saves them first.")
    assert unsaved_note([]) == "You have unsaved changes: save them with the buttons below."


def test_a_revert_draft_links_to_the_update_it_reverts(client, operator, stage):
    original, draft = stage(), stage()
    AuditEvent.objects.create(at=original.created_at, actor=operator, action="revert_staged",
                              update=original, connection_id=original.connection_id,
                              changes={"revert_update": draft.pk, "not_revertible": {}})
    client = logged_in(client, operator)
    html = client.get(change_url(draft)).content.decode()
    assert f'href="{change_url(original)}">update #{original.pk}</a>' in html
    assert "This update reverts" not in client.get(change_url(original)).content.decode()


def test_an_empty_list_says_what_to_do(client, admin_user, connection):
    client = logged_in(client, admin_user)
    html = client.get(reverse("admin:updates_alertrule_changelist")).content.decode()
    assert "No alert rules yet. Add one to be told" in html
    AlertRule.objects.create(connection=connection, kind=AlertRule.Kind.FAILURE_RATE,
                             threshold=10)
    html = client.get(reverse("admin:updates_alertrule_changelist")).content.decode()
    assert 'id="po-empty-list"' not in html
    html = client.get(reverse("admin:updates_alertevent_changelist") + "?q=nothing").content.decode()
    assert "Nothing matches this search" in html
    for name in ("attributemapping", "importjob", "profileupdate"):
        ProfileUpdate.objects.all().delete()
        html = client.get(reverse(f"admin:updates_{name}_changelist") + "?q=zzz").content.decode()
        assert 'id="po-empty-list"' in html, name
