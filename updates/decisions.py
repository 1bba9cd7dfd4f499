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
  stay pending, as the page said they would. The decision is made set-wise (setwise.py), at
  most one chunk (setwise.CHUNK updates) in one transaction; a larger batch is decided in the
  background, chunk by chunk, each chunk all or nothing (batch_decisions.py);
- each on its own merits (`updates_decide_each`: the notebook's approve and reject): set-wise,
  a chunk a transaction, every refusal per update — a changed update is refused (`stale`), the
  rest are decided.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from django.core import signing
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet

from . import routing, setwise, workflow
from .errors import COMMENT_REQUIRED, Refused
from .models import ProfileUpdate, TargetConnection

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


def _check_decision(decision: str, by, comment: str | None) -> tuple[workflow.Transition, str]:
    """The checks made before anything is looked at, in the order a single decision makes
    them: the decision, the permission, a storable comment, a rejection's comment. Returns the
    transition and the comment as it is stored (a rejection's stripped, as update_reject)."""
    if decision not in ("approve", "reject"):
        raise ValueError(f"unknown decision {decision!r}")
    transition = workflow.T[decision]
    workflow._require_for(by, transition)
    comment = "" if comment is None else comment
    workflow._check_comment(comment)
    if decision == "reject":
        if not comment.strip():
            raise Refused("A rejection needs a comment saying why.", code=COMMENT_REQUIRED)
        comment = comment.strip()
    return transition, comment


def updates_decide_shown(*, shown: Mapping[int, str], decision: str, by, comment: str = "",
                         scope: QuerySet[ProfileUpdate] | None = None,
                         route: str = routing.AUTOMATIC) -> workflow.BulkOutcome:
    """Approve or reject exactly the updates `shown` ({id: fingerprint}), all or nothing.

    With `scope` (the pending updates the page described, e.g. one import), an update now in
    it with an id up to the newest shown, but not shown, has joined: refused too. Updates that
    arrive later (higher ids) are not part of the batch and stay pending. The decision is made
    set-wise (setwise.decide_set: the checks of update_approve / update_reject — permission,
    four eyes, the content shown, the state — and the same fields and audit rows), in one
    transaction; raises StaleBatch (code `stale`) and changes nothing when anything differs
    from what was shown. At most setwise.CHUNK updates: a larger batch is a DecisionJob
    (batch_decisions.py), decided chunk by chunk in the background. An approval records the
    route the batch takes (`route`: routing.AUTOMATIC, SINGLE or BULK; routing.py).
    """
    transition, comment = _check_decision(decision, by, comment)
    outcome = workflow.BulkOutcome()
    if not shown:
        return outcome
    if len(shown) > setwise.CHUNK:
        raise ValueError(f"{len(shown)} updates: more than one chunk ({setwise.CHUNK}); "
                         "decide them with batch_decisions.decision_job_start")
    with transaction.atomic():
        result = setwise.decide_set(shown=shown, transition=transition, by=by, comment=comment,
                                    scope=scope, strict=True)
        if decision == "approve" and result.done:
            routing.route_approved(update_ids=list(result.done), by=by,
                                   plans=plans_for(result.done, choice=route))
    done = {u.pk: u for u in ProfileUpdate.objects.by_ids(result.done)
            .select_related("connection")}
    outcome.done = [done[pk] for pk in result.done if pk in done]
    refused = {u.pk: u for u in ProfileUpdate.objects.filter(
        pk__in=[pk for pk, _ in result.refused]).select_related("connection")}
    outcome.refused = [(refused[pk], message) for pk, message in result.refused if pk in refused]
    return outcome


def updates_decide_each(*, updates: list[ProfileUpdate], decision: str, by, comment: str = "",
                        shown: Mapping[int, str] | None = None,
                        route: str = routing.AUTOMATIC) -> workflow.BulkOutcome:
    """Approve or reject `updates` set-wise, each on its own merits (the notebook's decisions):
    setwise.CHUNK updates a transaction, the single services' checks, messages and rows, refusals
    per update (never raised). With `shown` ({id: fingerprint}, what the person looked at) an
    update that changed since, or left, is refused (``stale``) and the rest are decided;
    without, whatever is there now. A refusal before any update is looked at (the permission,
    the comment) refuses every one. The updates decided carry their new status. An approval
    records the route the decided set takes (`route`, as updates_decide_shown)."""
    outcome = workflow.BulkOutcome()
    try:
        transition, comment = _check_decision(decision, by, comment)
    except ValidationError as error:
        outcome.refused = [(u, " ".join(error.messages)) for u in updates]
        return outcome
    by_id = {u.pk: u for u in updates}
    ids = sorted(by_id)
    for start in range(0, len(ids), setwise.CHUNK):
        chunk = ids[start:start + setwise.CHUNK]
        with transaction.atomic():
            result = setwise.decide_set(
                shown=None if shown is None else {pk: shown.get(pk, "") for pk in chunk},
                ids=chunk, transition=transition, by=by, comment=comment, strict=False)
        for pk in result.done:
            by_id[pk].status = transition.target
            outcome.done.append(by_id[pk])
        outcome.refused += [(by_id[pk], message) for pk, message in result.refused]
    if decision == "approve" and outcome.done:  # the route of the whole decision (routing.py)
        done = [u.pk for u in outcome.done]
        with transaction.atomic():
            routing.route_approved(update_ids=done, by=by, plans=plans_for(done, choice=route))
    return outcome


def plans_for(update_ids, *, choice: str = routing.AUTOMATIC) -> dict[int, routing.RoutePlan]:
    """The route plan of each connection among `update_ids`, for the batch's count there."""
    ids = list(update_ids)
    counts = Counter(pk for start in range(0, len(ids), setwise.CHUNK)
                     for pk in ProfileUpdate.objects.by_ids(ids[start:start + setwise.CHUNK])
                     .values_list("connection_id", flat=True))
    connections = TargetConnection.objects.in_bulk(list(counts))
    return {pk: routing.plan_route(connection=connections[pk], rows=n, choice=choice)
            for pk, n in counts.items()}
