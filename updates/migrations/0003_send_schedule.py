"""The django-q2 schedule that sends approved updates every minute (idempotent by name).

catch_up is a cluster-wide setting (Q_CLUSTER["catch_up"] = False), so missed minutes are not
replayed after downtime; the task timeout (90 s) stays below the broker's retry (120 s) so one
run never overlaps a redelivery of itself.
"""

from django.db import migrations

SCHEDULE_NAME = "Send approved updates"
SCHEDULE = {
    "func": "updates.tasks.send_due_updates",
    "schedule_type": "I",  # django_q.models.Schedule.MINUTES
    "minutes": 1,
    "repeats": -1,
}


def create_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    existing = Schedule.objects.filter(name=SCHEDULE_NAME).order_by("id")
    if existing.exists():
        existing.update(**SCHEDULE)
        # One schedule, however many earlier runs or hands created one.
        Schedule.objects.filter(name=SCHEDULE_NAME).exclude(pk=existing.first().pk).delete()
    else:
        Schedule.objects.create(name=SCHEDULE_NAME, **SCHEDULE)


def remove_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=SCHEDULE_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("updates", "0002_roles"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]
    operations = [migrations.RunPython(create_schedule, remove_schedule)]
