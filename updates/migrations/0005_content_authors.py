"""Four eyes on content: record who wrote each update's identity and attributes.

Backfill: every update's creator, and the actor of every "edited" audit event that changed the
identity type, the identity or the attributes. Edits of the reason or the send time only do not
make someone an author.
"""

from django.conf import settings
from django.db import migrations, models

CONTENT_FIELDS = ["identity_type", "identity", "attributes"]
CHUNK = 5000


def backfill_content_authors(apps, schema_editor):
    ProfileUpdate = apps.get_model("updates", "ProfileUpdate")
    AuditEvent = apps.get_model("updates", "AuditEvent")
    Author = ProfileUpdate.content_authors.through
    db = schema_editor.connection.alias

    def write(pairs):
        Author.objects.using(db).bulk_create(
            [Author(profileupdate_id=u, user_id=a) for u, a in pairs], ignore_conflicts=True)

    pairs = []
    creators = ProfileUpdate.objects.using(db).values_list("pk", "created_by_id")
    editors = (AuditEvent.objects.using(db)
               .filter(action="edited", update__isnull=False, actor__isnull=False,
                       changes__has_any_keys=CONTENT_FIELDS)
               .values_list("update_id", "actor_id").distinct())
    for source in (creators, editors):
        for pair in source.order_by().iterator(chunk_size=CHUNK):
            pairs.append(pair)
            if len(pairs) >= CHUNK:
                write(pairs)
                pairs = []
    write(pairs)


class Migration(migrations.Migration):

    dependencies = [
        ("updates", "0004_mapping_transform_default"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="profileupdate",
            name="content_authors",
            field=models.ManyToManyField(
                blank=True, related_name="+", to=settings.AUTH_USER_MODEL,
                help_text="Who created or changed the identity or attributes; none of them may "
                          "decide."),
        ),
        migrations.RunPython(backfill_content_authors, migrations.RunPython.noop, elidable=True),
    ]
