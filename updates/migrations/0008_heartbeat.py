from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("updates", "0007_verification"),
    ]

    operations = [
        migrations.CreateModel(
            name="SchedulerHeartbeat",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                           verbose_name="ID")),
                ("name", models.CharField(max_length=64, unique=True)),
                ("beat_at", models.DateTimeField()),
                ("worker", models.CharField(blank=True, max_length=64)),
            ],
        ),
    ]
