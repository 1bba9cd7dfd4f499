"""Decide a whole batch of pending updates in one step: everything from one import, or
everything the queue's filter shows. The page shows the batch's size, its total quota cost
against the connections' headroom, how many the viewer may not decide (four eyes), and a random
sample to look at first; the decision then covers exactly the updates the page described — the
page posts their ids and content fingerprints (decisions.shown_token), never a count — and
nothing is decided if any of them left, changed content, or an update the page did not show
joined the scope since (decisions.updates_decide_shown); ones that arrive later stay pending.
An import's batch is its updates (`import_job`), never updates that merely carry its reason.

The decision is made set-wise (setwise.py: the checks and rows of update_approve /
update_reject, one UPDATE and one audit INSERT per chunk of setwise.CHUNK updates). A batch of
one chunk is decided in the request, all or nothing; a larger one becomes a DecisionJob
(batch_decisions.py) decided by django-q2 chunk by chunk, each chunk all or nothing, with its
progress and report on this page. A page of more than INLINE_LIMIT updates does not post their
fingerprints: it keeps them server side when it is rendered (one values_list query) and posts
the job's id and digest.

What Target will do (batch_reads.py): each sampled row's verdict and an estimate for the whole
batch (JSON, asked by the page's script once the live diff has read the sample); and a read of the
whole batch in the background, after which the same decision can be narrowed to the updates that
change something — still bound to the content the page showed.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.core.exceptions import PermissionDenied
from django.http import (HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect,
                         JsonResponse)
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone

from updates import batch_decisions, batch_reads, decisions, permissions, quota, routing, \
    selectors, sending, setwise, target, workflow
from updates.conf import setting
from updates.models import (BatchRead, DecisionJob, ImportJob, ProfileUpdate, TargetConnection,
                            content_hash)

from .base import parse_id
from .pages import forbidden as _forbidden, page as _page
from .updates import RejectForm, report_outcome, report_refusal

# One batch decision covers at most this many updates (decided set-wise, setwise.CHUNK at a
# time; more than one chunk in the background); a bigger backlog is decided in several batches.
BATCH_LIMIT = 1_000_000
# Up to this many, the page posts the (id, fingerprint) pairs it shows (decisions.shown_token,
# ~55 bytes an update) and describes every update (cost, unsendable); above it, the page keeps
# the pairs server side (batch_decisions.decision_job_show) and works from one values_list.
INLINE_LIMIT = 10_000
# The whole-batch read (batch_reads.py) reads each visitor at the read rate: offered up to this.
READ_LIMIT = 10_000
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


def batch_view(request: HttpRequest) -> HttpResponse:
    title = "Decide a batch"
    if not request.user.has_perm(permissions.PERM_APPROVE):
        return _forbidden(request, title, "Deciding on updates needs the permission \"Can "
                                          "approve or reject profile updates\".")
    scope = Scope.from_query(request.POST if request.method == "POST" else request.GET)
    if request.method == "POST":
        return _decide_batch(request, scope)
    if "decision" in request.GET:
        return _decision_page(request, scope)
    ids = list(scope.updates().values_list("id", flat=True)[: INLINE_LIMIT + 1])
    if len(ids) > INLINE_LIMIT:
        return _large_batch_view(request, scope, title)
    too_many = False
    sample_size = _sample_size(request)
    updates = list(ProfileUpdate.objects.filter(pk__in=ids)
                   .select_related("connection", "created_by", "last_edited_by").order_by("id"))
    summaries = [(u, sending.planned(u)) for u in updates]
    user = request.user
    authored = workflow.authored_by(user, updates)  # one query, not one per update
    blocked = sum(1 for u in updates if workflow.decision_blocker(u, user, authored=authored))
    cost = sum(s.quota_cost for _, s in summaries)
    unsendable = sum(1 for _, s in summaries if s.problem)
    now = timezone.now()
    connections = {u.connection_id: u.connection for u in updates}
    headroom = [(c, quota.window_picture(connection=c, now=now)) for c in connections.values()]
    chosen = random.sample(summaries, min(sample_size, len(summaries)))
    chosen.sort(key=lambda pair: pair[0].pk)
    verdicts, sample = _sample_rows(chosen, user=user, authored=authored, now=now)
    return _page(request, title, "admin/updates/batch.html", {
        "scope": scope, "count": len(ids), "too_many": too_many, "batch_limit": BATCH_LIMIT,
        "decision_jobs": _recent_decisions(scope),
        "shown": decisions.shown_token(updates, scope=scope.query()), "cost": cost, "unsendable": unsendable,
        "blocked": blocked, "headroom": headroom, "sample": sample,
        "sample_size": sample_size, "sample_sizes": SAMPLE_SIZES,
        "reject_form": RejectForm(), "query": scope.query(),
        "queue_url": reverse("updates_queue") + (f"?{scope.query()}" if scope.query() else ""),
        "estimate": batch_reads.batch_estimate(verdicts, batch_size=len(ids)),
        "estimate_url": _estimate_url(scope, [u.pk for u, _ in chosen]),
        "whole_read": _whole_read(scope, updates, now),
        **_routes(connections.values(), Counter(u.connection_id for u in updates), now),
    })


def _sample_rows(chosen: list[tuple[ProfileUpdate, Any]], *, user, authored: set[int],
                 now: dt.datetime) -> tuple[dict[int, str], list[dict[str, Any]]]:
    """The sampled updates (with their request previews) as the page's rows, and what each would
    do at Target, from reads already fresh enough; the rest are read by the page's script
    through the live diff, then the estimate is asked again."""
    verdicts = batch_reads.sample_verdicts([u for u, _ in chosen], now=now)
    return verdicts, [
        {"update": u, "attributes": selectors.attribute_rows(u), "request": s,
         "blocker": workflow.decision_blocker(u, user, authored=authored),
         "verdict": verdicts[u.pk], "verdict_label": batch_reads.label(verdicts[u.pk])}
        for u, s in chosen]


def _large_batch_view(request: HttpRequest, scope: Scope, title: str) -> HttpResponse:
    """A batch of more than INLINE_LIMIT updates: its pairs from one values_list query, kept
    server side; the four-eyes count in one query; the sample's rows loaded alone."""
    user = request.user
    rows = list(scope.updates().order_by("id").values_list(
        "id", "identity_type", "identity", "attributes", "created_by_id",
        "connection_id")[: BATCH_LIMIT + 1])
    too_many = len(rows) > BATCH_LIMIT
    rows = rows[:BATCH_LIMIT]
    pairs = [(pk, content_hash(t, i, a)) for pk, t, i, a, _, _ in rows]
    last = rows[-1][0]
    # Four eyes, for the whole batch in one query: created by the viewer, or a content author.
    authored_ids = set(ProfileUpdate.content_authors.through.objects.filter(
        user_id=user.pk, profileupdate__in=scope.updates().filter(id__lte=last))
        .values_list("profileupdate_id", flat=True))
    blocked = sum(1 for pk, *_, creator, _ in rows if creator == user.pk or pk in authored_ids)
    job, token = batch_decisions.decision_job_show(
        pairs=pairs, by=user, connection=scope.connection, import_job=scope.job,
        scope=scope.query())
    sample_size = _sample_size(request)
    chosen_ids = sorted(random.sample([pk for pk, _ in pairs], min(sample_size, len(pairs))))
    chosen = list(ProfileUpdate.objects.filter(pk__in=chosen_ids)
                  .select_related("connection", "created_by", "last_edited_by").order_by("id"))
    authored = workflow.authored_by(user, chosen)
    summaries = [(u, sending.planned(u)) for u in chosen]
    now = timezone.now()
    connections = TargetConnection.objects.filter(pk__in={row[5] for row in rows})
    headroom = [(c, quota.window_picture(connection=c, now=now)) for c in connections]
    verdicts, sample = _sample_rows(summaries, user=user, authored=authored, now=now)
    return _page(request, title, "admin/updates/batch.html", {
        "scope": scope, "count": len(pairs), "too_many": too_many, "batch_limit": BATCH_LIMIT,
        "shown_job": token, "shown": "", "large": True, "chunk": setwise.CHUNK,
        "chunks": job.chunks, "inline_limit": INLINE_LIMIT,
        # Every update costs one request; the sample says whether some cannot be sent.
        "cost": len(pairs) * target.REQUEST_QUOTA_COST,
        "unsendable": sum(1 for _, s in summaries if s.problem), "unsendable_in_sample": True,
        "blocked": blocked, "headroom": headroom, "sample": sample,
        "sample_size": sample_size, "sample_sizes": SAMPLE_SIZES,
        "reject_form": RejectForm(), "query": scope.query(),
        "queue_url": reverse("updates_queue") + (f"?{scope.query()}" if scope.query() else ""),
        "estimate": batch_reads.batch_estimate(verdicts, batch_size=len(pairs)),
        "estimate_url": _estimate_url(scope, chosen_ids),
        "whole_read": {"too_large": True, "read_limit": READ_LIMIT},
        "decision_jobs": _recent_decisions(scope),
        **_routes(connections, Counter(row[5] for row in rows), now),
    })


def _routes(connections, counts: Counter, now) -> dict:
    """The route each connection's part of the batch takes when approved, why, and the time
    either way (routing.py); and whether the page offers the route choice."""
    routes = [(c, routing.plan_route(connection=c, rows=counts[c.pk], now=now))
              for c in connections if counts[c.pk]]
    return {"routes": routes, "route_choices": routing.CHOICES,
            "bulk_possible": any(plan.bulk_minutes is not None for _, plan in routes),
            "bulk_min_rows": setting("BULK_MIN_BATCH_ROWS")}


def _route_choice(request: HttpRequest) -> str:
    choice = request.POST.get("route", routing.AUTOMATIC)
    return choice if choice in dict(routing.CHOICES) else routing.AUTOMATIC


def _recent_decisions(scope: Scope, limit: int = 3) -> list[dict]:
    """This scope's latest batch decisions in the background, with their progress and report."""
    jobs = (DecisionJob.objects
            .filter(connection=scope.connection, import_job=scope.job)
            .exclude(status=DecisionJob.Status.SHOWN).select_related("created_by")
            .order_by("-id")[:limit])
    return [_decision_context(job) for job in jobs]


def _decision_context(job: DecisionJob) -> dict:
    return {"job": job, "progress": batch_decisions.decision_job_progress(job),
            "running": job.status in (DecisionJob.Status.QUEUED, DecisionJob.Status.RUNNING),
            "status_url": (reverse("updates_queue_batch_decision_status")
                           + f"?{urlencode({'decision': job.pk})}")}


def _decision_page(request: HttpRequest, scope: Scope) -> HttpResponse:
    """GET ?decision=<id>: one batch decision's progress and report (polled while it runs)."""
    job = get_object_or_404(DecisionJob.objects.select_related("created_by", "connection"),
                            pk=parse_id(request.GET.get("decision")) or -1)
    # The decision's batch, whatever the query says.
    scope = Scope(job.connection, ImportJob.objects.defer("file_data")
                  .filter(pk=job.import_job_id).first() if job.import_job_id else None)
    return _page(request, f"Batch decision #{job.pk}", "admin/updates/batch_decision.html", {
        "scope": scope, "d": _decision_context(job), "chunk": setwise.CHUNK,
        "batch_url": reverse("updates_queue_batch") + (
            f"?{scope.query()}" if scope.query() else ""),
        "queue_url": reverse("updates_queue") + (f"?{scope.query()}" if scope.query() else "")})


def decision_status_view(request: HttpRequest) -> HttpResponse:
    """GET ?decision=<id>, JSON: a batch decision's progress and per-chunk report (ids and
    counts, no profile value), polled by the page."""
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    if not request.user.has_perm(permissions.PERM_APPROVE):
        raise PermissionDenied
    job = get_object_or_404(DecisionJob.objects,
                            pk=parse_id(request.GET.get("decision")) or -1)
    return JsonResponse(batch_decisions.decision_job_progress(job).as_json())


def _whole_read(scope: Scope, updates: list[ProfileUpdate], now) -> dict:
    """The batch's whole-batch read for the page: none yet (with what one would take), its
    progress, or — finished — the updates that change something and those left out."""
    job = batch_reads.batch_read_current(
        connection_id=scope.connection.pk if scope.connection else None,
        import_job_id=scope.job.pk if scope.job else None)
    context: dict = {"job": job, "duration": batch_reads.duration_text(
        batch_reads.read_duration(len(updates)))}
    if job is not None:
        context["progress"] = batch_reads.batch_read_progress(job, now=now)
        context["status_url"] = (reverse("updates_queue_batch_read_status")
                                 + f"?{urlencode({'read': job.pk})}")
        context["counts"] = [
            (name, job.counts.get(key, 0)) for key, name in [
                *((key, batch_reads.label(key)) for key in batch_reads.VERDICTS),
                (batch_reads.NOT_READ, "could not be read"),
                (batch_reads.GONE, "no longer pending")]
            if job.counts.get(key, 0) or key in batch_reads.VERDICTS]
        if job.status == job.Status.DONE:
            narrowed = batch_reads.batch_read_narrow(job, updates)
            context["narrowed"] = narrowed
            context["only"] = ",".join(str(pk) for pk in narrowed.changing_ids)
    return context


def read_start_view(request: HttpRequest) -> HttpResponse:
    """POST: read the whole batch (the page's scope) from Target in the background."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not request.user.has_perm(permissions.PERM_APPROVE):
        raise PermissionDenied
    scope = Scope.from_query(request.POST)
    ids = list(scope.updates().values_list("id", flat=True)[:READ_LIMIT])
    back = HttpResponseRedirect(reverse("updates_queue_batch") + (
        f"?{scope.query()}" if scope.query() else ""))
    if not ids:
        messages.warning(request, "Nothing is waiting for approval in this batch; nothing to read.")
        return back
    job = batch_reads.batch_read_start(update_ids=ids, connection=scope.connection,
                                       import_job=scope.job, by=request.user)
    messages.info(request, f"Reading {job.total:,} update{'s' if job.total != 1 else ''} from "
                           "Target in the background; this page shows the progress.")
    return back


def read_status_view(request: HttpRequest) -> HttpResponse:
    """GET ?read=<id>, JSON: a whole-batch read's progress (no profile value), polled by the
    page."""
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    if not request.user.has_perm(permissions.PERM_APPROVE):
        raise PermissionDenied
    job = get_object_or_404(BatchRead.objects.defer("update_ids", "verdicts"),
                            pk=parse_id(request.GET.get("read")) or -1)
    return JsonResponse(batch_reads.batch_read_progress(job).as_json())


def _estimate_url(scope: Scope, sample_ids: list[int]) -> str:
    sample = urlencode({"sample": ",".join(str(pk) for pk in sample_ids)})
    return (f"{reverse('updates_queue_batch_estimate')}?"
            f"{scope.query() + '&' if scope.query() else ''}{sample}")


def estimate_view(request: HttpRequest) -> HttpResponse:
    """GET, JSON: the sample's verdicts and the batch's estimate, from the reads on record (the
    page's script asks after the live diff has read the sample). Never reads Target."""
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    if not request.user.has_perm(permissions.PERM_APPROVE):
        raise PermissionDenied
    scope = Scope.from_query(request.GET)
    wanted = [pk for pk in (parse_id(part) for part in
                            request.GET.get("sample", "").split(",")[:max(SAMPLE_SIZES)])
              if pk is not None]
    # Only updates of the batch (still pending in it): nothing about any other update.
    batch = scope.updates()
    sample = list(batch.filter(pk__in=wanted))
    batch_size, _ = selectors.capped_count(batch, cap=BATCH_LIMIT)
    verdicts = batch_reads.sample_verdicts(sample)
    estimate = batch_reads.batch_estimate(verdicts, batch_size=batch_size)
    # admin_view adds never-cache headers; no profile value is in the answer.
    return JsonResponse({
        "rows": {str(pk): {"verdict": v, "label": batch_reads.label(v)}
                 for pk, v in verdicts.items()},
        "estimate": estimate.as_json()})


def _sample_size(request: HttpRequest) -> int:
    value = parse_id(request.GET.get("sample"))
    return value if value is not None and 0 < value <= max(SAMPLE_SIZES) else DEFAULT_SAMPLE


def _decide_batch(request: HttpRequest, scope: Scope) -> HttpResponse:
    back = HttpResponseRedirect(reverse("updates_queue_batch") + (
        f"?{scope.query()}" if scope.query() else ""))
    decision = request.POST.get("decision", "")
    shown = decisions.read_token(request.POST.get("shown"), scope=scope.query())
    kept = batch_decisions.read_job_token(request.POST.get("shown_job"), scope=scope.query())
    if decision not in ("approve", "reject"):
        messages.error(request, "Choose Approve all or Reject all; nothing was changed.")
        return back
    if not shown and kept is None:
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
    if kept is not None:  # a large batch: the page's pairs were kept when it was shown
        return _decide_in_background(request, scope, decision=decision, comment=comment,
                                     job_id=kept[0], digest=kept[1])
    # Exactly what the page showed: these ids with this content, and no other of the scope's
    # updates up to the newest of them; all or nothing.
    decided_scope = scope.updates()
    if "batch_read" in request.POST:  # "only the rows that change something"
        only = _only_changing(request, scope)
        if only is None:
            return back
        # The narrowed ids, with the content the page showed for them; the rest keep their state.
        shown = {pk: fingerprint for pk, fingerprint in shown.items() if pk in only}
        if set(shown) != only:
            messages.warning(request, "The page did not show some of the updates that change "
                                      "something; reload it and look again. Nothing was changed.")
            return back
        decided_scope = None
    if len(shown) > setwise.CHUNK:  # more than one chunk: in the background, chunk by chunk
        job, _ = batch_decisions.decision_job_show(
            pairs=sorted(shown.items()), by=request.user, connection=scope.connection,
            import_job=scope.job, check_joined=decided_scope is not None)
        return _decide_in_background(request, scope, decision=decision, comment=comment,
                                     job_id=job.pk, digest=job.digest)
    try:
        outcome = decisions.updates_decide_shown(shown=shown, decision=decision, by=request.user,
                                                 comment=comment, scope=decided_scope,
                                                 route=_route_choice(request))
    except ValidationError as error:
        report_refusal(request, error)
        return back
    report_outcome(request, outcome, verb="approved" if decision == "approve" else "rejected")
    return HttpResponseRedirect(reverse("updates_queue") + (
        f"?{scope.query()}" if scope.query() else ""))


def _decide_in_background(request: HttpRequest, scope: Scope, *, decision: str, comment: str,
                          job_id: int, digest: str) -> HttpResponse:
    back = HttpResponseRedirect(reverse("updates_queue_batch") + (
        f"?{scope.query()}" if scope.query() else ""))
    try:
        job = batch_decisions.decision_job_start(job_id=job_id, digest=digest,
                                                 decision=decision, by=request.user,
                                                 comment=comment, route=_route_choice(request))
    except ValidationError as error:
        report_refusal(request, error)
        return back
    messages.info(request, f"Deciding {job.total:,} updates in the background, {job.chunks:,} "
                           f"chunk{'s' if job.chunks != 1 else ''} of at most "
                           f"{setwise.CHUNK:,}; this page shows the progress.")
    query = f"{scope.query()}&" if scope.query() else ""
    return HttpResponseRedirect(reverse("updates_queue_batch") + f"?{query}decision={job.pk}")


def _only_changing(request: HttpRequest, scope: Scope) -> set[int] | None:
    """The ids of the batch narrowed to the updates its finished whole-batch read found
    changing — exactly the ids the page listed (`only`), or None (with a message) when they
    differ now."""
    job = BatchRead.objects.filter(
        pk=parse_id(request.POST.get("batch_read")) or -1, status=BatchRead.Status.DONE,
        connection=scope.connection, import_job=scope.job).first()
    if job is None:
        messages.error(request, "That read of the batch is not finished or not this batch's; "
                                "nothing was changed.")
        return None
    chosen = list(ProfileUpdate.objects.filter(
        pk__in=list(scope.updates().values_list("id", flat=True)[:READ_LIMIT])))
    narrowed = batch_reads.batch_read_narrow(job, chosen)
    shown = {parse_id(part) for part in request.POST.get("only", "").split(",") if part}
    if shown != set(narrowed.changing_ids):
        messages.warning(request, f"The updates that change something are not the ones the page "
                                  f"showed ({len(shown)} then, {len(narrowed.changing)} now). "
                                  "Check the new figures; nothing was changed.")
        return None
    return shown


# Registered in dashboard.urlpatterns, beside the queue.
batch_urlpattern_view = admin.site.admin_view(batch_view)
estimate_urlpattern_view = admin.site.admin_view(estimate_view)
read_start_urlpattern_view = admin.site.admin_view(read_start_view)
read_status_urlpattern_view = admin.site.admin_view(read_status_view)
decision_status_urlpattern_view = admin.site.admin_view(decision_status_view)
