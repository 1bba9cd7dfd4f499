"""SendRun.requests_sent: requests made by the run, stored with its other totals."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("updates", "0005_content_authors")]

    operations = [
        migrations.AddField(
            model_name="sendrun",
            name="requests_sent",
            field=models.PositiveIntegerField(default=0),
        ),
    ]
