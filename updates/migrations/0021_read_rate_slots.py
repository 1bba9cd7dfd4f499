"""The read rate limit shared by every process of a connection (ReadRateSlot), and the "Verify
sent updates" schedule every minute instead of every five: a run reads concurrently within its
time budget, so it keeps pace with the quota only if it runs as often as the sender."""

import django.db.models.deletion
from django.db import migrations, models

SCHEDULE_NAME = "Verify sent updates"


def every_minute(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=SCHEDULE_NAME).update(minutes=1)


def every_five_minutes(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=SCHEDULE_NAME).update(minutes=5)


class Migration(migrations.Migration):

    dependencies = [
        ("updates", "0020_visitor_locks"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [
        migrations.CreateModel(
            name="ReadRateSlot",
            fields=[
                ("connection", models.OneToOneField(
                    on_delete=django.db.models.deletion.CASCADE, primary_key=True,
                    related_name="+", serialize=False, to="updates.targetconnection")),
                ("next_free_at", models.FloatField(default=0.0)),
            ],
        ),
        migrations.RunPython(every_minute, every_five_minutes),
    ]
