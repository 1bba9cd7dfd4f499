"""The approval queue: supervisors approve or reject pending updates, one page or a selection at
a time (a whole import or filter at once is batch.py's page). Four eyes as the service applies
it: the viewer's own content gets no decision buttons, and the service refuses it anyway. A decision covers exactly the content on the page: the
form carries the rows' ids and content fingerprints (decisions.shown_token), and a selection
whose content or state changed since is refused as a whole (code `stale`)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone

from updates import decisions, permissions, quota, selectors, sending, workflow
from updates.models import ProfileUpdate, TargetConnection

from .base import parse_id
from .pages import forbidden as _forbidden, page as _page
from .updates import (BULK_LIMIT, CappedPaginator, RejectForm, bounded, report_outcome,
                      report_refusal)

QUEUE_PAGE_SIZE = 25
MAX_SEARCH_CHARS = 200


@dataclass(frozen=True)
class QueueRow:
    update: ProfileUpdate
    attributes: list[tuple[str, str]]
    request: sending.PlannedRequest
    own: bool  # the viewer wrote its content
    may_decide: bool  # workflow.may_decide: False for the viewer's own content
    blocker: str = ""  # why this viewer may not decide it ("" when they may)


def _queue_connection(request: HttpRequest) -> TargetConnection | None:
    pk = parse_id(request.GET.get("connection"))
    return TargetConnection.objects.filter(pk=pk).first() if pk is not None else None


def queue_view(request: HttpRequest) -> HttpResponse:
    title = "Approval queue"
    if not request.user.has_perm(permissions.PERM_APPROVE):
        return _forbidden(request, title, "The approval queue is for supervisors: approving and "
                                          "rejecting needs the permission \"Can approve or reject "
                                          "profile updates\".")
    if request.method == "POST":
        return _decide(request)
    connection = _queue_connection(request)
    identity = request.GET.get("q", "").strip()[:MAX_SEARCH_CHARS]
    reason = request.GET.get("reason", "").strip()[:MAX_SEARCH_CHARS]
    paginator = CappedPaginator(
        selectors.queue_updates(connection_id=connection.pk if connection else None,
                                identity=identity, reason=reason),
        QUEUE_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("p"))
    # Four eyes, as the service applies it: the viewer's own content gets no decision buttons.
    authored = workflow.authored_by(request.user, page)
    rows = [QueueRow(u, selectors.attribute_rows(u), sending.planned(u),
                     u.pk in authored, workflow.may_decide(u, request.user, authored=authored),
                     workflow.decision_blocker(u, request.user, authored=authored))
            for u in page]
    now = timezone.now()
    on_page = {r.update.connection_id: r.update.connection for r in rows}
    headroom = [(c, quota.window_picture(connection=c, now=now)) for c in on_page.values()]
    return _page(request, title, "admin/updates/queue.html", {
        "rows": rows,
        "shown": decisions.shown_token(r.update for r in rows),
        "page": page,
        "paginator": paginator,
        "connections": TargetConnection.objects.order_by("label"),
        "connection": connection,
        "headroom": headroom,
        "page_cost": sum(r.request.quota_cost for r in rows),
        "reject_form": RejectForm(),
        "page_query": _query(connection, identity=identity, reason=reason),
        "now": now,
        "identity": identity,
        "reason": reason,
        "searching": bool(identity or reason),
        # What still waits per import, not its file's row count; fully decided imports drop out.
        "imports": selectors.imports_waiting(connection_id=connection.pk if connection else None),
        "batch_url": reverse("updates_queue_batch") + (
            f"?connection={connection.pk}" if connection else ""),
    })


def _query(connection: TargetConnection | None, *, identity: str = "", reason: str = "") -> str:
    """The filters as a query string prefix for the page links ("" or "…&")."""
    params = {key: value for key, value in (
        ("connection", connection.pk if connection else ""), ("q", identity),
        ("reason", reason)) if value}
    return f"{urlencode(params)}&" if params else ""


def _decide(request: HttpRequest) -> HttpResponse:
    back = HttpResponseRedirect(request.get_full_path())
    if "approve_one" in request.POST or "reject_one" in request.POST:
        decision = "approve" if "approve_one" in request.POST else "reject"
        ids = [request.POST.get(f"{decision}_one", "")]
        # A row's own reason, when given, is that row's rejection comment.
        row_reason = request.POST.get(f"reason_{ids[0]}", "").strip()
        if decision == "reject" and row_reason:
            request.POST = request.POST.copy()
            request.POST["comment"] = row_reason
    else:
        decision = request.POST.get("decision", "")
        ids = request.POST.getlist("update")
    if decision not in ("approve", "reject"):
        messages.error(request, "Choose Approve or Reject; nothing was changed.")
        return back
    pks = sorted({pk for pk in map(parse_id, ids) if pk is not None})
    if not pks:
        messages.warning(request, "Select at least one update; nothing was changed.")
        return back
    comment = request.POST.get("comment", "").strip()
    if decision == "reject":
        form = RejectForm({"comment": comment})
        if not form.is_valid():
            messages.error(request, "A rejection needs a comment saying why; nothing was rejected.")
            return back
        comment = form.cleaned_data["comment"]
    chosen = bounded(request, ProfileUpdate.objects.filter(pk__in=pks[: BULK_LIMIT + 1]))
    if chosen is None:
        return back
    # What the page showed of each chosen row; a row it did not show counts as changed.
    shown = decisions.read_token(request.POST.get("shown"))
    try:
        outcome = decisions.updates_decide_shown(
            shown={u.pk: shown.get(u.pk, "") for u in chosen}, decision=decision,
            by=request.user, comment=comment)
    except ValidationError as error:
        report_refusal(request, error)
        return back
    report_outcome(request, outcome, verb="approved" if decision == "approve" else "rejected")
    return back
