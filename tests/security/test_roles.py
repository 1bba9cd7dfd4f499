"""The roles (updates/migrations/0002_roles.py, and 0021 for the alert pages): two groups with exactly the documented
permissions (docs/user-guide/approving.md, "Roles"); connections are for administrators."""

from __future__ import annotations

import importlib

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection as db_connection
from django.db.migrations.loader import MigrationLoader

pytestmark = pytest.mark.django_db

OPERATORS = {
    # profile updates: stage, edit, view, submit, cancel, re-queue, import, export
    "add_profileupdate", "change_profileupdate", "view_profileupdate", "submit_profileupdate",
    "cancel_profileupdate", "requeue_profileupdate", "import_profileupdate",
    "export_profileupdate",
    # attribute mappings: define, change, view; import jobs: view
    "add_attributemapping", "change_attributemapping", "view_attributemapping",
    "view_importjob",
}
SUPERVISORS = {
    # profile updates: view, approve/reject, re-queue, export
    "view_profileupdate", "approve_profileupdate", "requeue_profileupdate",
    "export_profileupdate",
    # attribute mappings and send attempts: view
    "view_attributemapping", "view_sendattempt",
    # alert rules and the alerts they sent: view (migration 0021)
    "view_alertrule", "view_alertevent",
    # bulk jobs: view, and re-queue their not-applied rows single (migration 0029)
    "view_bulkjob",
}


def permissions_of(name: str) -> set[str]:
    return {f"{p.content_type.app_label}.{p.codename}"
            for p in Group.objects.get(name=name).permissions.select_related("content_type")}


@pytest.mark.parametrize(("group", "expected"), [("Operators", OPERATORS),
                                                 ("Supervisors", SUPERVISORS)])
def test_the_migration_gives_each_role_exactly_its_documented_permissions(group, expected):
    assert permissions_of(group) == {f"updates.{codename}" for codename in expected}


def test_operators_stage_edit_submit_and_cancel_but_do_not_decide():
    perms = permissions_of("Operators")
    assert {"updates.add_profileupdate", "updates.change_profileupdate",
            "updates.submit_profileupdate", "updates.cancel_profileupdate"} <= perms
    assert "updates.approve_profileupdate" not in perms


def test_supervisors_view_approve_and_reject_but_do_not_stage_edit_or_cancel():
    perms = permissions_of("Supervisors")
    assert {"updates.view_profileupdate", "updates.approve_profileupdate"} <= perms
    assert not perms & {"updates.add_profileupdate", "updates.change_profileupdate",
                        "updates.submit_profileupdate", "updates.cancel_profileupdate"}


@pytest.mark.parametrize("group", ["Operators", "Supervisors"])
def test_connections_are_for_administrators_and_nothing_is_deleted_by_a_role(group):
    perms = permissions_of(group)
    assert not {p for p in perms if p.endswith("_targetconnection")}
    assert not {p for p in perms if ".delete_" in p}  # deleting an update would erase its trail


def test_re_running_the_migration_resets_both_groups_to_their_definition():
    Group.objects.get(name="Operators").permissions.add(
        Permission.objects.get(codename="approve_profileupdate"))
    Group.objects.get(name="Supervisors").permissions.clear()
    migration = importlib.import_module("updates.migrations.0002_roles")
    state_apps = MigrationLoader(db_connection).project_state(("updates", "0002_roles")).apps
    migration.create_roles(state_apps, None)
    alert_views = importlib.import_module("updates.migrations.0023_alert_defaults")
    alert_views.grant(MigrationLoader(db_connection).project_state(
        ("updates", "0023_alert_defaults")).apps, None)
    bulk_views = importlib.import_module("updates.migrations.0030_bulk_route")
    bulk_views.grant(MigrationLoader(db_connection).project_state(
        ("updates", "0030_bulk_route")).apps, None)
    assert permissions_of("Operators") == {f"updates.{c}" for c in OPERATORS}
    assert permissions_of("Supervisors") == {f"updates.{c}" for c in SUPERVISORS}
