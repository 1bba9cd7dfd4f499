"""A decision covers exactly the content shown.

A page (or a notebook table) that offers Approve or Reject names what it shows: per update its
id and its content fingerprint (ProfileUpdate.content_hash, the SHA-256 the approval keeps as
`approved_hash`). The pages carry those pairs in one signed field (`shown_token`; signed so a
batch page's set cannot be swapped for another scope's, compressed so a 10,000-update batch
stays a few hundred kilobytes), and the decision is made on them:

- one update (workflow.update_approve / update_reject with `shown=`): refused with code
  `stale` unless it is still pending with exactly that content;
- several (`updates_decide_shown`: the queue's selection, the list's action, a batch): all or
  nothing, in one transaction — if any of them left (decided, cancelled, edited back to draft),
  changed content, or (for a batch) an update joined the batch's scope that the page did not
  show, nothing is decided and the refusal (`StaleBatch`, code `stale`) says how many of each.
  Four-eyes refusals do not stop the rest: the viewer's own updates are refused one by one and
  stay pending, as the page said they would.
"""

from __future__ import annotations

from collections.abc import Mapping
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet

from . import workflow
from .errors import COMMENT_REQUIRED, STALE, Refused
from .models import ProfileUpdate

_SALT = "updates.decisions.shown"


def shown_token(updates, *, scope: str = "") -> str:
    """The signed (id, content fingerprint) pairs of `updates`, for a page's hidden field.
    `scope` (e.g. a batch page's query) binds the token to the page that issued it."""
    pairs = sorted((u.pk, u.content_hash) for u in updates)
    return signing.dumps(pairs, salt=f"{_SALT}:{scope}", compress=True)


def read_token(token: str | None, *, scope: str = "") -> dict[int, str]:
    """The pairs a page posted back, {id: fingerprint}; {} for a missing, tampered or other
    scope's token (every update it should have named then counts as changed)."""
    if not token:
        return {}
    try:
        pairs = signing.loads(token, salt=f"{_SALT}:{scope}")
    except signing.BadSignature:
        return {}
    try:
        return {int(pk): str(fp) for pk, fp in pairs}
    except (TypeError, ValueError):
        return {}


def _listed(ids: list[int], limit: int = 20) -> str:
    shown = ", ".join(f"#{pk}" for pk in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


class StaleBatch(Refused):
    """A decision on several updates refused as a whole: what differs from what was shown —
    `left` (no longer pending), `joined` (in the batch's scope now, not shown), `changed`
    (pending still, with other content); lists of update ids."""

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


_SERVICES = {"approve": workflow.update_approve, "reject": workflow.update_reject}


def updates_decide_shown(*, shown: Mapping[int, str], decision: str, by, comment: str = "",
                         scope: QuerySet[ProfileUpdate] | None = None) -> workflow.BulkOutcome:
    """Approve or reject exactly the updates `shown` ({id: fingerprint}), all or nothing.

    With `scope` (the pending updates the page described, e.g. one import), an update now in
    it with an id up to the newest shown, but not shown, has joined: refused too. Updates that
    arrive later (higher ids) are not part of the batch and stay pending. Each update still goes
    through update_approve / update_reject (permission, four eyes, its audit row), in one
    transaction for the whole decision; raises StaleBatch (code `stale`) and changes nothing
    when anything differs from what was shown.
    """
    if decision not in _SERVICES:
        raise ValueError(f"unknown decision {decision!r}")
    transition = workflow.T[decision]
    workflow._require_for(by, transition)
    comment = "" if comment is None else comment
    workflow._check_comment(comment)
    if decision == "reject" and not comment.strip():
        raise Refused("A rejection needs a comment saying why.", code=COMMENT_REQUIRED)
    service = _SERVICES[decision]
    outcome = workflow.BulkOutcome()
    if not shown:
        return outcome
    with transaction.atomic():
        joined: list[int] = []
        if scope is not None:
            in_scope = set(scope.filter(id__lte=max(shown)).values_list("id", flat=True))
            joined = sorted(in_scope - set(shown))
            out_of_scope = sorted(set(shown) - in_scope)
        else:
            out_of_scope = []
        found = {u.pk: u for u in ProfileUpdate.objects.filter(pk__in=list(shown))
                 .select_related("connection").order_by("id")}
        left = [pk for pk in sorted(shown) if pk not in found]
        changed: list[int] = []
        details: list[str] = []
        for pk in sorted(found):
            update = found[pk]
            try:
                with transaction.atomic():
                    outcome.done.append(service(update=update, by=by, comment=comment,
                                                shown=shown[pk]))
            except Refused as error:
                if error.code != STALE:
                    outcome.refused.append((update, " ".join(error.messages)))
                    continue
                update.refresh_from_db(fields=["status", "identity_type", "identity",
                                               "attributes"])
                (left if not transition.allows(update.status) else changed).append(pk)
                details.append(" ".join(error.messages))
            except ValidationError as error:
                outcome.refused.append((update, " ".join(error.messages)))
        left = sorted(set(left) | {pk for pk in out_of_scope if pk not in changed})
        if left or joined or changed:
            raise StaleBatch(left=left, joined=joined, changed=changed, details=details)
    return outcome

