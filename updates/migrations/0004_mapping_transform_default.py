"""New mappings no longer trim unless the operator chooses it (the README promises nothing is
trimmed silently); existing mappings keep the trim setting they have. Connections: the base URL
must be http(s) and a stored token must be one an HTTP header can carry (validators only, no
schema change)."""

import django.core.validators
import updates.models
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("updates", "0003_send_schedule"),
    ]

    operations = [
        migrations.AlterField(
            model_name='attributemapping',
            name='trim',
            field=models.BooleanField(default=False, help_text='Strip surrounding whitespace from values.'),
        ),
        migrations.AlterField(
            model_name='targetconnection',
            name='base_url',
            field=models.URLField(blank=True, help_text='Leave empty for https://<clientCode>.tt.omtrdc.net. Set it for the local emulator or a proxy, e.g. http://127.0.0.1:8765.', validators=[django.core.validators.URLValidator(code='invalid_base_url', message='Enter an http:// or https:// URL.', schemes=['http', 'https'])]),
        ),
        migrations.AlterField(
            model_name='targetconnection',
            name='bearer_token',
            field=models.TextField(blank=True, help_text="Sent as 'Authorization: Bearer <token>' when Target requires authentication.", validators=[updates.models.validate_bearer_token]),
        ),
    ]
