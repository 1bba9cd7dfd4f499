"""One open change per visitor and attribute: the visitor lock rows (open_changes.py) and the
import's "supersede" choice."""

from django.db import migrations, models

STRIPES = 1024  # open_changes.LOCK_STRIPES at the time of writing


def create_stripes(apps, schema_editor):
    VisitorLock = apps.get_model("updates", "VisitorLock")
    VisitorLock.objects.bulk_create([VisitorLock(stripe=i) for i in range(STRIPES)],
                                    ignore_conflicts=True)


class Migration(migrations.Migration):

    dependencies = [
        ('updates', '0019_profileread_escaped'),
    ]

    operations = [
        migrations.CreateModel(
            name='VisitorLock',
            fields=[
                ('stripe', models.PositiveIntegerField(primary_key=True, serialize=False)),
            ],
        ),
        migrations.AddField(
            model_name='importjob',
            name='supersede_open',
            field=models.BooleanField(default=False, editable=False),
        ),
        migrations.RunPython(create_stripes, migrations.RunPython.noop),
    ]
