"""What every management command looks up the same way: a connection by its client code."""

from __future__ import annotations

from django.core.management.base import CommandError

from updates.models import TargetConnection


def connection_by_code(code: str | None) -> TargetConnection | None:
    """The connection whose client code is `code`; None when no code was given. A code nobody
    has is refused with the client codes there are, so a typing error is seen at once."""
    if not code:
        return None
    found = TargetConnection.objects.filter(client_code=code).first()
    if found is None:
        known = ", ".join(TargetConnection.objects.order_by("client_code")
                          .values_list("client_code", flat=True)) or "none"
        raise CommandError(f"No connection with client code {code!r} (client codes: {known}).")
    return found
