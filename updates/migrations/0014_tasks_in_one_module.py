"""The django-q2 task functions moved into updates/tasks.py: the alert schedule (created by 0010
with updates.tasks_alerts.check_alerts) names its new dotted path. Any schedule row still
naming an old module is renamed, whatever its name."""

from django.db import migrations

RENAMED = {
    "updates.tasks_alerts.check_alerts": "updates.tasks.check_alerts",
    "updates.tasks_import.run_import_job": "updates.tasks.run_import_job",
    "updates.tasks_import.check_import_job": "updates.tasks.check_import_job",
}


def _rename(apps, mapping):
    Schedule = apps.get_model("django_q", "Schedule")
    for old, new in mapping.items():
        Schedule.objects.filter(func=old).update(func=new)


def forwards(apps, schema_editor):
    _rename(apps, RENAMED)


def backwards(apps, schema_editor):
    _rename(apps, {new: old for old, new in RENAMED.items()})


class Migration(migrations.Migration):

    dependencies = [
        ("updates", "0013_profileupdate_import_job"),
    ]

    operations = [
        migrations.RunPython(forwards, backwards),
    ]
