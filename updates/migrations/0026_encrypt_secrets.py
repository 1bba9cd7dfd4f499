"""Encrypt the secrets stored in plain text before 0024 (bearer tokens, webhook URLs).

Raw SQL on purpose: the value in the column is what matters, whatever the field class of the
moment reads. A value already encrypted is left alone, so the migration can run again. Going
back decrypts them (with the keys configured then).
"""

from django.db import migrations

from updates import encryption

_COLUMNS = [("updates_targetconnection", "bearer_token"), ("updates_alertrule", "webhook_url")]


def _rewrite(schema_editor, change) -> None:
    connection = schema_editor.connection
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        for table, column in _COLUMNS:
            cursor.execute(f"SELECT id, {quote(column)} FROM {quote(table)} "
                           f"WHERE {quote(column)} <> ''")
            for pk, stored in cursor.fetchall():
                new = change(stored)
                if new != stored:
                    cursor.execute(f"UPDATE {quote(table)} SET {quote(column)} = %s WHERE id = %s",
                                   [new, pk])


def encrypt_plain(apps, schema_editor) -> None:
    _rewrite(schema_editor, lambda stored: stored if encryption.is_encrypted(stored)
             else encryption.encrypt(stored))


def decrypt(apps, schema_editor) -> None:
    _rewrite(schema_editor, encryption.decrypt)


class Migration(migrations.Migration):

    dependencies = [("updates", "0025_adobe_credentials")]

    operations = [migrations.RunPython(encrypt_plain, decrypt)]
