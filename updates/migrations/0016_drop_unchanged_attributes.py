"""Per connection: leave attributes Target already holds out of the request; per update: which
ones the last send left out (verification still checks them)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("updates", "0015_alert_not_applied"),
    ]

    operations = [
        migrations.AddField(
            model_name="targetconnection",
            name="drop_unchanged_attributes",
            field=models.BooleanField(
                default=False,
                help_text="Before sending, leave out of the request the attributes that already "
                "hold the staged value at Target (per a recent read), when others still change. "
                "Approval and verification still cover every attribute.",
            ),
        ),
        migrations.AddField(
            model_name="profileupdate",
            name="unsent_unchanged",
            field=models.JSONField(blank=True, default=list),
        ),
    ]
