"""Alert rules: an empty threshold takes the kind's default (alerts.DEFAULT_THRESHOLDS) instead
of 0, and supervisors — who watch the queue and the failures — may see alert rules and the
alerts they sent (read only)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations, models

SUPERVISOR_VIEWS = ["view_alertrule", "view_alertevent"]


def grant(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    perms = Permission.objects.filter(content_type__app_label="updates",
                                      codename__in=SUPERVISOR_VIEWS)
    for group in Group.objects.filter(name="Supervisors"):
        group.permissions.add(*perms)


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    perms = Permission.objects.filter(content_type__app_label="updates",
                                      codename__in=SUPERVISOR_VIEWS)
    for group in Group.objects.filter(name="Supervisors"):
        group.permissions.remove(*perms)


class Migration(migrations.Migration):

    dependencies = [
        ("updates", "0022_decision_jobs"),
    ]

    operations = [
        migrations.AlterField(
            model_name="alertrule",
            name="threshold",
            field=models.DecimalField(
                blank=True, decimal_places=2, max_digits=7,
                help_text="Failure rate and quota use: a percentage (e.g. 20, 80, 95). Waiting: "
                "hours. Not applied: a number of updates in the window. Token refused: not "
                "used. Left empty: the kind's default (failure rate 10 %, quota use 80 %, "
                "waiting 4 hours, not applied 1 update)."),
        ),
        migrations.RunPython(grant, revoke),
    ]
