"""Secrets at rest (updates/encryption.py): no secret is readable in a database dump, keys
rotate with `manage.py rotate_encryption_key`, values stored before encryption are migrated.

The secrets: a pasted bearer token, an Adobe client secret, the IMS and profile tokens
ProfileOps obtained (from the emulator's IMS and Admin API), an alert rule's webhook URL.
"""

from __future__ import annotations

import importlib
import io
import types

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection as db

from tests.conftest import make_connection, use_adobe_credentials
from updates import credentials, encryption
from updates.models import AlertRule, CredentialState, TargetConnection

pytestmark = pytest.mark.django_db

PASTED = "tok-pasted-7f3e9a-secret"
WEBHOOK = "https://hooks.example.com/services/T000/B000/webhook-secret-5c1d"


@pytest.fixture
def secrets_stored(connection, adobe_emulator) -> list[str]:
    """Every kind of secret stored once; returns their plain values."""
    use_adobe_credentials(connection, adobe_emulator)
    profile_token = credentials.profile_token(connection)
    make_connection("pasted", bearer_token=PASTED)
    AlertRule.objects.create(connection=connection, kind=AlertRule.Kind.TOKEN_REFUSED,
                             webhook_url=WEBHOOK)
    state = CredentialState.objects.get(connection=connection)
    assert state.profile_token == profile_token and state.ims_token
    return [PASTED, connection.adobe_client_secret, state.ims_token, profile_token, WEBHOOK,
            "webhook-secret-5c1d"]


def raw_database_text() -> str:
    """Every value of every row of every table, as the database holds it."""
    found = []
    with db.cursor() as cursor:
        for table in db.introspection.table_names():
            cursor.execute(f"SELECT * FROM {db.ops.quote_name(table)}")
            found.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(found)


def test_no_secret_is_in_a_dumpdata_or_anywhere_in_the_raw_database(secrets_stored):
    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    raw = raw_database_text()
    assert "enc1:" in dump.getvalue() and "enc1:" in raw  # encrypted, and there
    for secret in secrets_stored:
        assert secret not in dump.getvalue()
        assert secret not in raw
    # … while the application reads them as they are.
    assert TargetConnection.objects.get(client_code="pasted").bearer_token == PASTED
    assert AlertRule.objects.get().webhook_url == WEBHOOK


def test_a_dump_loads_back_encrypted_and_readable(secrets_stored, tmp_path):
    dump = tmp_path / "dump.json"
    call_command("dumpdata", "updates.targetconnection", "updates.alertrule", output=str(dump))
    AlertRule.objects.all().delete()
    call_command("loaddata", str(dump))
    assert AlertRule.objects.get().webhook_url == WEBHOOK
    assert WEBHOOK not in raw_database_text()


def test_keys_rotate_old_first_new_after_and_the_old_key_can_then_go(secrets_stored, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    # The new key first, the one in use (the embedded mode's) after it.
    settings.PROFILEOPS = {**settings.PROFILEOPS,
                           "ENCRYPTION_KEYS": f"{new},{encryption.development_key()}"}
    assert TargetConnection.objects.get(client_code="pasted").bearer_token == PASTED
    out = io.StringIO()
    call_command("rotate_encryption_key", stdout=out)
    assert "updates.TargetConnection.bearer_token: 1 value re-encrypted" in out.getvalue()
    assert "Done: 5 secrets now use the first key" in out.getvalue()
    assert not any(secret in out.getvalue() for secret in secrets_stored)
    settings.PROFILEOPS = {**settings.PROFILEOPS, "ENCRYPTION_KEYS": new}  # the old key removed
    assert TargetConnection.objects.get(client_code="pasted").bearer_token == PASTED
    assert AlertRule.objects.get().webhook_url == WEBHOOK
    settings.PROFILEOPS = {**settings.PROFILEOPS, "ENCRYPTION_KEYS": old}  # a key never used
    with pytest.raises(encryption.Undecryptable):
        TargetConnection.objects.get(client_code="pasted")
    with pytest.raises(CommandError, match="Nothing was changed"):
        call_command("rotate_encryption_key", stdout=io.StringIO())


def test_the_migration_encrypts_values_stored_in_plain_text():
    conn = make_connection("legacy")
    with db.cursor() as cursor:  # as a version before encryption wrote it
        cursor.execute("UPDATE updates_targetconnection SET bearer_token = %s WHERE id = %s",
                       [PASTED, conn.pk])
    assert TargetConnection.objects.get(pk=conn.pk).bearer_token == PASTED  # read as it is
    migration = importlib.import_module("updates.migrations.0026_encrypt_secrets")
    migration.encrypt_plain(None, types.SimpleNamespace(connection=db))
    migration.encrypt_plain(None, types.SimpleNamespace(connection=db))  # twice: no harm
    assert PASTED not in raw_database_text()
    assert TargetConnection.objects.get(pk=conn.pk).bearer_token == PASTED
