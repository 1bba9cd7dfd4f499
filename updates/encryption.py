"""Secrets at rest: the model field that keeps a value encrypted in the database.

Every secret ProfileOps stores — a connection's pasted bearer token, its Adobe client secret, the
profile and IMS tokens it obtained itself, an alert rule's webhook URL — lives in an
`EncryptedTextField`. The database holds ``enc1:<Fernet token>``; the model holds the plain
value. Fernet (AES-128-CBC and HMAC-SHA256, cryptography's recipe) with MultiFernet for rotation:

- Keys come from ``PROFILEOPS_ENCRYPTION_KEYS``: Fernet keys, comma-separated. The first encrypts,
  every one decrypts, so a new key is put first, ``manage.py rotate_encryption_key`` re-encrypts
  every stored secret with it, and the old key is removed afterwards (docs/operations/secrets.md).
- Without the setting, the embedded mode (``PROFILEOPS_DEMO``, which follows DEBUG: ``./dev
  start`` and the tests) derives a key from SECRET_KEY, so it needs nothing; production refuses
  to start (checks.py, E018).
- A value not yet encrypted (written before migration 0026) is read as it is; the migration and
  the rotation command encrypt it.

Fernet is randomised: the same secret encrypts differently each time, so an encrypted column can
neither be searched nor compared in SQL — secrets never are.
"""

from __future__ import annotations

import base64
import functools
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.apps import apps
from django.db import connection as db
from django.db import models, transaction

from .conf import setting

PREFIX = "enc1:"


class KeyMissing(ImproperlyConfigured):
    """No PROFILEOPS_ENCRYPTION_KEYS outside development, or a key that is not a Fernet key."""


class Undecryptable(ImproperlyConfigured):
    """A stored secret that no configured key decrypts (a key was removed too early)."""


def configured_keys() -> list[str]:
    """The keys from PROFILEOPS_ENCRYPTION_KEYS, in order (empty when unset)."""
    return [key.strip() for key in (setting("ENCRYPTION_KEYS") or "").split(",") if key.strip()]


def embedded() -> bool:
    """The embedded mode (development, the demo, the tests) rather than production."""
    return bool(getattr(settings, "PROFILEOPS_DEMO", False))


def development_key() -> str:
    """The key the embedded mode uses without PROFILEOPS_ENCRYPTION_KEYS: derived from
    SECRET_KEY, so it is stable across restarts and the same in every local process."""
    digest = hashlib.sha256(b"profileops-encryption-key:" + settings.SECRET_KEY.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")


def key_problem() -> str:
    """Why no key can be used ("" when one can): for the system check and for the error."""
    keys = configured_keys()
    if not keys and not embedded():
        return ("PROFILEOPS_ENCRYPTION_KEYS is not set; production (PROFILEOPS_DEMO off) stores "
                "no secret without it.")
    for number, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            return (f"Key {number} of PROFILEOPS_ENCRYPTION_KEYS is not a Fernet key (32 bytes, "
                    "URL-safe base64, 44 characters).")
    return ""


def _fernet() -> MultiFernet:
    problem = key_problem()
    if problem:
        raise KeyMissing(problem)
    return _multi(tuple(configured_keys() or [development_key()]))


@functools.lru_cache(maxsize=8)
def _multi(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def is_encrypted(stored: str | None) -> bool:
    return bool(stored) and stored.startswith(PREFIX)


def encrypt(plain: str) -> str:
    """The stored form of `plain` ("" stays "": an empty secret is no secret)."""
    if not plain:
        return ""
    return PREFIX + _fernet().encrypt(plain.encode("utf-8")).decode("ascii")


def decrypt(stored: str) -> str:
    """The plain value of a stored secret; a value stored before encryption is returned as is."""
    if not is_encrypted(stored):
        return stored or ""
    try:
        return _fernet().decrypt(stored[len(PREFIX):].encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise Undecryptable(
            "A stored secret cannot be decrypted with any key in PROFILEOPS_ENCRYPTION_KEYS; "
            "put back the key it was encrypted with (keys are removed only after "
            "`manage.py rotate_encryption_key`).") from None


def reencrypt(stored: str) -> str:
    """`stored` encrypted with the first key (a plain value is encrypted; "" stays "")."""
    if not stored:
        return ""
    if not is_encrypted(stored):
        return encrypt(stored)
    try:
        return PREFIX + _fernet().rotate(stored[len(PREFIX):].encode("ascii")).decode("ascii")
    except InvalidToken:
        raise Undecryptable("A stored secret cannot be decrypted with any configured key; "
                            "nothing was re-encrypted after it.") from None


class EncryptedTextField(models.TextField):
    """A text field whose database column holds only the encrypted value.

    Lookups other than isnull/exact-empty make no sense on it (the same value encrypts
    differently each time); the admin and the notebook never show it (write-only forms)."""

    def from_db_value(self, value, expression, connection):
        return None if value is None else decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or is_encrypted(value):
            return value
        return encrypt(value)

    def value_to_string(self, obj) -> str:
        # dumpdata writes what the database holds, never the plain secret.
        return self.get_prep_value(self.value_from_object(obj)) or ""


def encrypted_fields() -> list[tuple[type[models.Model], models.Field]]:
    """(model, field) of every encrypted field in the project, for the rotation command."""
    return [(model, field) for model in apps.get_models()
            for field in model._meta.concrete_fields if isinstance(field, EncryptedTextField)]


def reencrypt_all() -> dict[tuple[str, str], int]:
    """Every stored secret encrypted with the first key, in one transaction (all or nothing:
    a value no key decrypts stops it). Works on the columns' raw values, never through the
    models. Returns {(model label, field name): values rewritten}."""
    counts: dict[tuple[str, str], int] = {}
    with transaction.atomic(), db.cursor() as cursor:
        quote = db.ops.quote_name
        for model, field in encrypted_fields():
            table, column = quote(model._meta.db_table), quote(field.column)
            key = quote(model._meta.pk.column)
            cursor.execute(f"SELECT {key}, {column} FROM {table} WHERE {column} <> ''")
            rows = cursor.fetchall()
            for pk, stored in rows:
                cursor.execute(f"UPDATE {table} SET {column} = %s WHERE {key} = %s",
                               [reencrypt(stored), pk])
            counts[(model._meta.label, field.name)] = len(rows)
    return counts
