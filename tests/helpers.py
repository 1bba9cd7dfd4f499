"""Small helpers the admin test modules share (fixtures live in tests/conftest.py)."""

from __future__ import annotations

from django.contrib.messages import get_messages

from updates.models import ProfileUpdate


def logged_in(client, user):
    """The test client, signed in as `user` (no password check: force_login)."""
    client.force_login(user)
    return client


def texts(response) -> list[str]:
    """The admin messages (success, warning, error) the request left for the user."""
    return [str(m) for m in get_messages(response.wsgi_request)]


def status_of(update) -> str:
    """The update's state as the database has it now."""
    return ProfileUpdate.objects.get(pk=update.pk).status


def shown(*updates, scope: str = "") -> str:
    """The `shown` field a page posts with a decision: these updates' ids and content as the
    database has them now (decisions.shown_token), as if the page had just been loaded."""
    from updates import decisions

    return decisions.shown_token(ProfileUpdate.objects.filter(pk__in=[u.pk for u in updates]),
                                 scope=scope)
