"""Decide a whole batch of pending updates in one step: everything from one import, or
everything the queue's filter shows. The page shows the batch's size, its total quota cost
against the connections' headroom, how many the viewer may not decide (four eyes), and a random
sample to look at first; the decision then covers exactly the updates the page described — the
page posts their ids and content fingerprints (decisions.shown_token), never a count — and
nothing is decided if any of them left, changed content, or an update the page did not show
joined the scope since (decisions.updates_decide_shown); ones that arrive later stay pending.
An import's batch is its updates (`import_job`), never updates that merely carry its reason.

Each update still goes through workflow.update_approve / update_reject, with its own audit row
and every refusal named.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone

from updates import decisions, quota, selectors, workflow
from updates.models import ImportJob, ProfileUpdate, TargetConnection

from .base import parse_id
from .pages import forbidden as _forbidden, page as _page
from .updates import RejectForm, report_outcome, report_refusal

# One batch decision handles at most this many updates (each its own transaction); a bigger
# backlog is decided in several batches, narrowed by connection or import.
BATCH_LIMIT = 10_000
SAMPLE_SIZES = (5, 10, 25, 50)
DEFAULT_SAMPLE = 10


@dataclass(frozen=True)
class Scope:
    connection: TargetConnection | None
    job: ImportJob | None

    @classmethod
    def from_query(cls, query) -> "Scope":
        connection_id, job_id = parse_id(query.get("connection")), parse_id(query.get("import"))
        return cls(
            TargetConnection.objects.filter(pk=connection_id).first()
            if connection_id is not None else None,
            ImportJob.objects.defer("file_data").filter(pk=job_id).first()
            if job_id is not None else None)

    def updates(self) -> QuerySet[ProfileUpdate]:
        qs = selectors.pending_updates(connection_id=self.connection.pk if self.connection else None)
        if self.job is not None:
            qs = qs.filter(import_job_id=self.job.pk)
        return qs

    def query(self) -> str:
        params = {}
        if self.connection:
            params["connection"] = self.connection.pk
        if self.job:
            params["import"] = self.job.pk
        return urlencode(params)

    def describe(self) -> str:
        parts = []
        if self.job:
            parts.append(f"import #{self.job.pk} ({self.job.file_name})")
        if self.connection:
            parts.append(f"connection {self.connection.label}")
        return "every pending update of " + " and ".join(parts) if parts else \
            "every pending update"


def recent_imports(limit: int = 20) -> list[ImportJob]:
    """Finished imports, newest first: the queue offers them as batches."""
    return list(ImportJob.objects.defer("file_data").filter(status=ImportJob.Status.DONE,
                                                             created_updates__gt=0)
                .select_related("connection").order_by("-id")[:limit])


def batch_view(request: HttpRequest) -> HttpResponse:
    title = "Decide a batch"
    if not request.user.has_perm(workflow.PERM_APPROVE):
        return _forbidden(request, title, "Deciding on updates needs the permission \"Can "
                                          "approve or reject profile updates\".")
    scope = Scope.from_query(request.POST if request.method == "POST" else request.GET)
    if request.method == "POST":
        return _decide_batch(request, scope)
    ids = list(scope.updates().values_list("id", flat=True)[: BATCH_LIMIT + 1])
    too_many = len(ids) > BATCH_LIMIT
    ids = ids[:BATCH_LIMIT]
    sample_size = _sample_size(request)
    updates = list(ProfileUpdate.objects.filter(pk__in=ids)
                   .select_related("connection", "created_by", "last_edited_by").order_by("id"))
    summaries = [(u, selectors.request_preview(u)) for u in updates]
    user = request.user
    authored = workflow.authored_by(user, updates)  # one query, not one per update
    blocked = sum(1 for u in updates if workflow.decision_blocker(u, user, authored=authored))
    cost = sum(s.quota_cost for _, s in summaries)
    unsendable = sum(1 for _, s in summaries if s.problem)
    now = timezone.now()
    connections = {u.connection_id: u.connection for u in updates}
    headroom = [(c, quota.window_usage(connection=c, now=now), c.quota_limit)
                for c in connections.values()]
    chosen = random.sample(summaries, min(sample_size, len(summaries)))
    chosen.sort(key=lambda pair: pair[0].pk)
    sample = [{"update": u, "attributes": selectors.attribute_rows(u), "request": s,
               "blocker": workflow.decision_blocker(u, user, authored=authored)}
              for u, s in chosen]
    return _page(request, title, "admin/updates/batch.html", {
        "scope": scope, "count": len(ids), "too_many": too_many, "batch_limit": BATCH_LIMIT,
        "shown": decisions.shown_token(updates, scope=scope.query()), "cost": cost, "unsendable": unsendable,
        "blocked": blocked, "headroom": headroom, "sample": sample,
        "sample_size": sample_size, "sample_sizes": SAMPLE_SIZES,
        "reject_form": RejectForm(), "query": scope.query(),
        "queue_url": reverse("updates_queue") + (f"?{scope.query()}" if scope.query() else ""),
    })


def _sample_size(request: HttpRequest) -> int:
    value = parse_id(request.GET.get("sample"))
    return value if value is not None and 0 < value <= max(SAMPLE_SIZES) else DEFAULT_SAMPLE


def _decide_batch(request: HttpRequest, scope: Scope) -> HttpResponse:
    back = HttpResponseRedirect(reverse("updates_queue_batch") + (
        f"?{scope.query()}" if scope.query() else ""))
    decision = request.POST.get("decision", "")
    shown = decisions.read_token(request.POST.get("shown"), scope=scope.query())
    if decision not in ("approve", "reject"):
        messages.error(request, "Choose Approve all or Reject all; nothing was changed.")
        return back
    if not shown:
        messages.error(request, "The page did not say which updates it showed (reload it and "
                                "look again); nothing was decided.")
        return back
    comment = request.POST.get("comment", "").strip()
    if decision == "reject":
        form = RejectForm({"comment": comment})
        if not form.is_valid():
            messages.error(request, "A rejection needs a comment saying why; nothing was "
                                    "rejected.")
            return back
        comment = form.cleaned_data["comment"]
    # Exactly what the page showed: these ids with this content, and no other of the scope's
    # updates up to the newest of them; all or nothing.
    try:
        outcome = decisions.updates_decide_shown(shown=shown, decision=decision, by=request.user,
                                                 comment=comment, scope=scope.updates())
    except ValidationError as error:
        report_refusal(request, error)
        return back
    report_outcome(request, outcome, verb="approved" if decision == "approve" else "rejected")
    return HttpResponseRedirect(reverse("updates_queue") + (
        f"?{scope.query()}" if scope.query() else ""))


# Registered in dashboard.urlpatterns, beside the queue.
batch_urlpattern_view = admin.site.admin_view(batch_view)
