"""The django-q2 entry points live in updates/tasks.py; the dotted paths stored before they were
merged still resolve (schedule rows are renamed by migration 0014, queued tasks keep theirs)."""

import importlib

import pytest
from django_q.models import Schedule

from updates import importing, tasks

pytestmark = pytest.mark.django_db

migration = importlib.import_module("updates.migrations.0014_tasks_in_one_module")


def _resolve(dotted: str):
    module, name = dotted.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def test_every_stored_schedule_names_the_tasks_module():
    funcs = set(Schedule.objects.values_list("func", flat=True))
    assert funcs >= {"updates.tasks.send_due_updates", "updates.tasks.verify_sent_updates",
                     "updates.tasks.check_alerts"}
    assert all(f.startswith("updates.tasks.") for f in funcs if f.startswith("updates."))


def test_queued_import_tasks_name_the_tasks_module():
    assert _resolve(importing.TASK_FUNCTION) is tasks.run_import_job
    assert _resolve(importing.CHECK_TASK_FUNCTION) is tasks.check_import_job


@pytest.mark.parametrize("old", sorted(migration.RENAMED))
def test_an_old_dotted_path_still_runs_the_same_task(old):
    assert _resolve(old) is _resolve(migration.RENAMED[old])


def test_the_migration_renames_old_schedule_rows_and_back():
    from django.apps import apps

    row = Schedule.objects.create(name="An old alert check",
                                  func="updates.tasks_alerts.check_alerts")
    migration.forwards(apps, None)
    row.refresh_from_db()
    assert row.func == "updates.tasks.check_alerts"
    migration.backwards(apps, None)
    row.refresh_from_db()
    assert row.func == "updates.tasks_alerts.check_alerts"
