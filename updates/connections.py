"""Target connections: create and change them with an audit row — never with the token's value.

A connection decides where customer data goes and how much of the quota may be used, so its
changes are audited like an update's. The bearer token and the Adobe client secret appear in the
audit only as "set", "replaced" or "cleared".
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from . import audit
from .errors import require_perm
from .models import AuditEvent, CredentialState, TargetConnection, validate_bearer_token
from .permissions import PERM_ADD_CONNECTION, PERM_CHANGE_CONNECTION

A = AuditEvent.Action
# Secrets are audited as set / replaced / cleared, never by value.
_SECRET_FIELDS = frozenset({"bearer_token", "adobe_client_secret"})
# Every field an administrator can change is audited, derived from the model so that no field
# added later (verify_after_send, skip_unchanged and drop_unchanged_attributes once were) can
# change what a connection does with customer data without an audit row.
_AUDITED_FIELDS = audit.audited_fields(TargetConnection, leaving_out=_SECRET_FIELDS)
# A change to one of these makes the tokens obtained with the old credentials worthless.
_CREDENTIAL_FIELDS = ("adobe_client_id", "adobe_org_id", "target_tenant", "ims_token_url",
                      "ims_scopes", "admin_api_url")


def connection_save(*, connection: TargetConnection, by, new_token: str = "",
                    clear_token: bool = False, new_client_secret: str = "",
                    clear_credentials: bool = False) -> TargetConnection:
    """Save `connection` (new or changed); `new_token` replaces the pasted token, `clear_token`
    removes it; `new_client_secret` replaces the Adobe client secret, `clear_credentials`
    removes the Adobe credentials (client ID, secret, org, tenant). Only holders of the
    connection permissions (administrators) may."""
    perm = PERM_CHANGE_CONNECTION if connection.pk else PERM_ADD_CONNECTION
    require_perm(by, perm, "Only administrators manage Target connections.")
    new = {"bearer_token": _new_secret("bearer_token", new_token, clear_token),
           "adobe_client_secret": _new_secret("adobe_client_secret", new_client_secret,
                                              clear_credentials)}
    if clear_credentials:
        connection.adobe_client_id = connection.adobe_org_id = connection.target_tenant = ""
    for field, value in new.items():
        if value is not None:
            setattr(connection, field, value)
    # The model's full validation, whoever calls: client code syntax, an http(s) base URL, a
    # quota of at least 1, unique label and client code, Adobe credentials complete or absent.
    # Stored secrets are left out: a connection whose old token is unusable must still be
    # deactivatable or get a new one.
    connection.full_clean(exclude=sorted(_SECRET_FIELDS))
    with transaction.atomic():
        # No key update: an import on PostgreSQL (one transaction, its foreign keys checked as
        # it writes) holds a key-share lock on the connection until it ends.
        old = (TargetConnection.objects.select_for_update(no_key=True).get(pk=connection.pk)
               if connection.pk else None)
        held = {f: old is not None and bool(getattr(old, f)) for f in _SECRET_FIELDS}
        changes = audit.field_changes(old, connection, _AUDITED_FIELDS)
        for field, value in new.items():
            if value == "" and held[field]:
                changes[field] = {"before": "set", "after": "cleared"}
            elif value:
                changes[field] = {"before": "set" if held[field] else "not set",
                                  "after": "replaced" if held[field] else "set"}
        created = connection.pk is None
        connection.save()
        if changes.keys() & {*_CREDENTIAL_FIELDS, "adobe_client_secret"}:
            # Obtained again, by GET, with the new credentials (never minted while valid).
            CredentialState.objects.filter(connection=connection).update(
                ims_token="", ims_renew_at=None, profile_token="", profile_expires_at=None,
                profile_refresh_at=None)
        if changes:
            audit.record(A.CONNECTION_CREATED if created else A.CONNECTION_CHANGED, by=by,
                         connection=connection, changes=changes)
    return connection


def _new_secret(field: str, given: str, clear: bool) -> str | None:
    """The secret's new value: `given`, "" to clear it, None to keep it."""
    if given and clear:
        raise ValueError(f"either a new {field} or clearing it, not both")
    if given:
        try:
            validate_bearer_token(given)
        except ValidationError as error:  # the message never repeats the secret
            raise ValidationError({field: error.error_list}) from None
        return given
    return "" if clear else None
