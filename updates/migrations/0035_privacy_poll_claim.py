from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('updates', '0034_privacy_filing_claim'),
    ]

    operations = [
        migrations.AddField(
            model_name='privacyrequest',
            name='poll_started_at',
            field=models.DateTimeField(blank=True, editable=False, null=True,
                                       verbose_name='status read under way since'),
        ),
    ]
