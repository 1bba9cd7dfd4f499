"""Target's attribute catalogue: the profile attributes Target knows, for mapping warnings.

With Adobe credentials, `GET /{tenant}/target/profileattributes/mbox` (Target's Admin API)
lists the attribute names Target holds. The list is kept on the connection's CredentialState
with the time it was read, and read again after ATTRIBUTE_CATALOGUE_MAX_AGE_SECONDS.

A mapping whose target name Target does not know gets a warning, not a refusal: a new attribute
is legitimate (the first update creates it). A name that differs from a known one only in case
(`loyaltytier` for `loyaltyTier`) is warned about louder: names are case-sensitive, so every
update would silently fill a second attribute.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.utils import timezone

from . import credentials
from .conf import setting
from .models import AttributeMapping, CredentialState, TargetConnection


@dataclass(frozen=True)
class Catalogue:
    names: tuple[str, ...]
    read_at: dt.datetime


def attribute_catalogue(connection: TargetConnection, *, refresh: bool = False
                        ) -> Catalogue | None:
    """The attributes Target knows (cached, with the time read); None without Adobe
    credentials, or when the list was never read and cannot be now."""
    if not connection.has_adobe_credentials:
        return None
    state, _ = CredentialState.objects.get_or_create(connection_id=connection.pk)
    max_age = dt.timedelta(seconds=setting("ATTRIBUTE_CATALOGUE_MAX_AGE_SECONDS"))
    fresh = state.attributes_read_at and timezone.now() - state.attributes_read_at < max_age
    if fresh and not refresh:
        return Catalogue(tuple(state.attributes), state.attributes_read_at)
    names = _read(connection)
    if names is None:  # Adobe did not answer: the last list, if any, with its (older) time
        return Catalogue(tuple(state.attributes), state.attributes_read_at) \
            if state.attributes_read_at else None
    now = timezone.now()
    CredentialState.objects.filter(pk=state.pk).update(attributes=names, attributes_read_at=now)
    return Catalogue(tuple(names), now)


def _read(connection: TargetConnection) -> list[str] | None:
    try:
        status, payload = credentials.admin_api_get(connection, credentials.ATTRIBUTES_PATH)
    except ValidationError:
        return None
    names = payload.get("mboxProfileAttributes") if isinstance(payload, dict) else None
    if status != 200 or not isinstance(names, list):
        return None
    return sorted({name for name in names if isinstance(name, str)})


def mapping_warnings(mapping: AttributeMapping) -> list[str]:
    """What an administrator should know about the mapping's Target name (empty: Target knows
    it, or there is no catalogue to ask)."""
    catalogue = attribute_catalogue(mapping.connection)
    name = mapping.target_name
    if catalogue is None or name in catalogue.names:
        return []
    when = f"Target's attribute list as read at {catalogue.read_at:%Y-%m-%d %H:%M:%S} UTC"
    same_but_case = [known for known in catalogue.names if known.lower() == name.lower()]
    if same_but_case:
        return [f"Target knows the attribute {same_but_case[0]!r}, which differs from {name!r} "
                f"only in case ({when}). Names are case-sensitive: updates would create and fill "
                f"a second attribute {name!r}. Correct the name unless that is meant."]
    return [f"Target does not know the attribute {name!r} yet ({when}). The first update "
            "creates it; check the spelling if it should exist already."]
