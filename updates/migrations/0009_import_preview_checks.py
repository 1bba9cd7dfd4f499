import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("updates", "0008_heartbeat"),
    ]

    operations = [
        migrations.AddField(
            model_name="importjob",
            name="mappings_fingerprint",
            field=models.CharField(blank=True, default="", editable=False, max_length=64),
        ),
        migrations.AlterField(
            model_name="importjob",
            name="status",
            field=models.CharField(
                choices=[("checking", "Checking the file"), ("queued", "Queued"),
                         ("running", "Running"), ("done", "Done"),
                         ("invalid", "Invalid rows — nothing saved"),
                         ("error", "Error — nothing saved")],
                default="queued", max_length=8),
        ),
        migrations.AddField(
            model_name="importjob",
            name="started_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="profileupdate",
            name="import_pending",
            field=models.ForeignKey(
                blank=True, editable=False, null=True,
                on_delete=django.db.models.deletion.CASCADE, related_name="+",
                to="updates.importjob"),
        ),
    ]
