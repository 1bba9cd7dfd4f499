"""Target connections: create and change them with an audit row — never with the token's value.

A connection decides where customer data goes and how much of the quota may be used, so its
changes are audited like an update's. The bearer token appears in the audit only as
"set", "replaced" or "cleared".
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from . import audit
from .errors import require_perm
from .models import AuditEvent, TargetConnection, validate_bearer_token
from .permissions import PERM_ADD_CONNECTION, PERM_CHANGE_CONNECTION

A = AuditEvent.Action
# Secrets are audited as set / replaced / cleared, never by value.
_SECRET_FIELDS = frozenset({"bearer_token"})
# Every field an administrator can change is audited, derived from the model so that no field
# added later (verify_after_send, skip_unchanged and drop_unchanged_attributes once were) can
# change what a connection does with customer data without an audit row.
_AUDITED_FIELDS = audit.audited_fields(TargetConnection, leaving_out=_SECRET_FIELDS)


def connection_save(*, connection: TargetConnection, by, new_token: str = "",
                    clear_token: bool = False) -> TargetConnection:
    """Save `connection` (new or changed); `new_token` replaces the token, `clear_token`
    removes it. Only holders of the connection permissions (administrators) may."""
    perm = PERM_CHANGE_CONNECTION if connection.pk else PERM_ADD_CONNECTION
    require_perm(by, perm, "Only administrators manage Target connections.")
    if new_token and clear_token:
        raise ValueError("either a new token or clearing it, not both")
    if new_token:
        try:
            validate_bearer_token(new_token)
        except ValidationError as error:  # the message never repeats the token
            raise ValidationError({"bearer_token": error.error_list}) from None
    # The model's full validation, whoever calls: client code syntax, an http(s) base URL, a
    # quota of at least 1, unique label and client code. The stored token is left out: a
    # connection whose old token is unusable must still be deactivatable or get a new one.
    connection.full_clean(exclude=["bearer_token"])
    if clear_token:
        connection.bearer_token = ""
    elif new_token:
        connection.bearer_token = new_token
    with transaction.atomic():
        old = (TargetConnection.objects.select_for_update().get(pk=connection.pk)
               if connection.pk else None)
        had_token = old is not None and old.has_token
        changes = audit.field_changes(old, connection, _AUDITED_FIELDS)
        if clear_token:
            if had_token:
                changes["bearer_token"] = {"before": "set", "after": "cleared"}
        elif new_token:
            changes["bearer_token"] = {"before": "set" if had_token else "not set",
                                       "after": "replaced" if had_token else "set"}
        created = connection.pk is None
        connection.save()
        if changes:
            audit.record(A.CONNECTION_CREATED if created else A.CONNECTION_CHANGED, by=by,
                         connection=connection, changes=changes)
    return connection
