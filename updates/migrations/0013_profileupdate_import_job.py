import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("updates", "0010_mapping_label_alerts"),
    ]

    operations = [
        migrations.AddField(
            model_name="profileupdate",
            name="import_job",
            field=models.ForeignKey(blank=True, db_index=False, editable=False, null=True,
                                    on_delete=django.db.models.deletion.RESTRICT,
                                    related_name="+", to="updates.importjob"),
        ),
        migrations.AddField(
            model_name="importjob",
            name="file_sha256",
            field=models.CharField(blank=True, default="", editable=False, max_length=64),
        ),
    ]
