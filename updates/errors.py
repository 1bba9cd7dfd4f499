"""The one kind of refusal every service raises.

A service that says no — the user lacks a permission, the update is in the wrong state, it is the
user's own content, a rejection has no comment — raises `Refused`, a `ValidationError` whose
`code` names the rule. Callers (admin, commands, the import's worker) catch `ValidationError`
alone, show its messages, and tests assert the code. Errors about the submitted *values* stay
plain per-field `ValidationError`s, so forms can place them on their fields.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError

# The codes services use; a test or a caller may branch on them.
PERMISSION_DENIED = "permission_denied"  # the user lacks the right (or is inactive)
OWN_UPDATE = "own_update"  # four eyes: the user is an author of the content
WRONG_STATE = "wrong_state"  # not allowed from the update's (or job's) present state
IMMUTABLE = "immutable"  # sending, sent and cancelled updates never change
COMMENT_REQUIRED = "comment_required"  # a rejection needs a reason
NOT_UPLOADER = "not_uploader"  # only the uploader confirms an import
STALE = "stale"  # a decision named content or a state that is no longer the update's
OPEN_CONFLICT = "open_conflict"  # the visitor has an open update setting the same attribute
IN_FLIGHT = "in_flight"  # a sending update cannot be superseded: it is on its way to Target
PURGED = "purged"  # the update's values were purged (retention or a forgotten visitor)
FORGOTTEN = "forgotten"  # the visitor was forgotten; its identity is suppressed
NO_CREDENTIALS = "no_credentials"  # the connection has no Adobe credentials


class Refused(ValidationError):
    """A service refused the request and changed nothing; `code` tells which rule refused."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message, code=code)


def require_perm(user, perm: str, message: str) -> None:
    """Refuse (`permission_denied`) unless `user` is an active user holding `perm`."""
    if user is None or not getattr(user, "is_active", False) or not user.has_perm(perm):
        raise Refused(message, code=PERMISSION_DENIED)


def _listed(ids: list[int], limit: int = 20) -> str:
    shown = ", ".join(f"#{pk}" for pk in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


class StaleBatch(Refused):
    """A decision on several updates (decisions.py, setwise.py) refused as a whole: what differs
    from what was shown — `left` (no longer pending), `joined` (in the batch's scope now, not
    shown), `changed` (pending still, with other content); lists of update ids."""

    def __init__(self, *, left: list[int], joined: list[int], changed: list[int],
                 details: list[str] | None = None) -> None:
        self.left, self.joined, self.changed = left, joined, changed
        self.details = details or []  # the per-update refusals behind `left` and `changed`
        parts = [f"{len(ids)} {what} ({_listed(ids)})" for ids, what in (
            (left, "left (decided, cancelled or sent back to draft since)"),
            (joined, "joined (submitted since, older than the newest shown)"),
            (changed, "changed content")) if ids]
        super().__init__("What you were shown changed before you decided: " + ", ".join(parts)
                         + ". Nothing was decided; look again.", code=STALE)
