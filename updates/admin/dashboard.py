"""The operations dashboard and the approval queue: two admin pages beside the model admins.

Their URLs (`urlpatterns`, included under admin/ by profileops/urls.py) are wrapped in
`admin.site.admin_view`, so they share the admin's login, staff check, CSRF protection and
never-cache headers; the pages themselves check the model permissions they need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.timesince import timesince

from updates import attention, quota, selectors, verification, workflow
from updates.models import ProfileUpdate, TargetConnection

from . import batch, live_diff
from .base import parse_id
from .updates import BULK_LIMIT, CappedPaginator, RejectForm, bounded, report_outcome

admin.site.site_header = "ProfileOps"
admin.site.site_title = "ProfileOps"
admin.site.index_title = "Administration"

QUEUE_PAGE_SIZE = 25
PERM_VIEW = "updates.view_profileupdate"


def _page(request: HttpRequest, title: str, template: str, context: dict,
          status: int = 200) -> TemplateResponse:
    return TemplateResponse(
        request, template, {**admin.site.each_context(request), "title": title, **context},
        status=status)


def _forbidden(request: HttpRequest, title: str, why: str) -> TemplateResponse:
    return _page(request, title, "admin/updates/forbidden.html", {"why": why}, status=403)


# --- the chart: server-rendered SVG geometry ------------------------------------------------

@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: str
    title: str


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    top: int
    bottom: float  # y of the axis
    left: int
    right: int
    bars: list[Bar]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    description: str


SERIES = (("requests", "requests"), ("acknowledged", "acknowledged"), ("failed", "failed"))


def _nice_ceiling(value: int) -> int:
    """The smallest 1/2/5 × 10^n at or above value (at least 1)."""
    if value <= 1:
        return 1
    magnitude = 10 ** (len(str(value)) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _tick_label(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def usage_chart(days: list[selectors.DayUsage], *, width: int = 720, height: int = 220) -> Chart:
    """Three bars a day (requests, acknowledged, failed) on a shared linear scale."""
    left, right, top, bottom_pad = 56, 8, 10, 28
    plot_w = width - left - right
    plot_h = height - top - bottom_pad
    axis_y = top + plot_h
    peak = _nice_ceiling(max([0] + [max(d.requests, d.acknowledged, d.failed) for d in days]))
    slot = plot_w / max(1, len(days))
    bar_w = slot / 4
    bars = []
    for i, day in enumerate(days):
        for j, (attr, label) in enumerate(SERIES):
            value = getattr(day, attr)
            h = plot_h * value / peak
            bars.append(Bar(
                x=round(left + i * slot + bar_w * (j + 0.5), 2), y=round(axis_y - h, 2),
                width=round(bar_w, 2), height=round(h, 2), series=attr,
                title=f"{day.day:%Y-%m-%d}: {value:,} {label}"))
    fractions = (0, 0.5, 1) if peak >= 2 else (0, 1)
    y_ticks = [Tick(round(axis_y - plot_h * f, 2), _tick_label(peak * f)) for f in fractions]
    x_ticks = [Tick(round(left + (i + 0.5) * slot, 2), f"{d.day:%m-%d}")
               for i, d in enumerate(days) if i % 5 == 0 or i == len(days) - 1]
    total = sum(d.requests for d in days)
    description = (f"Requests, acknowledgments and failures per day from {days[0].day:%Y-%m-%d} "
                   f"to {days[-1].day:%Y-%m-%d}; {total:,} requests in all.") if days else ""
    return Chart(width, height, top, axis_y, left, width - right, bars, y_ticks, x_ticks,
                 description)


@dataclass(frozen=True)
class WindowChart:
    """The rolling 24 hours by clock hour: bars of the requests counted so far (cumulative)
    against the limit line, so the page shows how the window filled and how close it is."""

    width: int
    height: int
    left: int
    right: int
    bottom: float
    bars: list[Bar]
    limit_y: float
    limit_label: str
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    description: str


def window_chart(hours: list[attention.Hour], *, limit: int, width: int = 720,
                 height: int = 180) -> WindowChart:
    left, right, top, bottom_pad = 64, 8, 10, 28
    plot_w, plot_h = width - left - right, height - top - bottom_pad
    axis_y = top + plot_h
    peak = _nice_ceiling(max([limit] + [h.cumulative for h in hours]))
    slot = plot_w / max(1, len(hours))
    bars = [Bar(x=round(left + i * slot + slot * 0.1, 2),
                y=round(axis_y - plot_h * h.cumulative / peak, 2), width=round(slot * 0.8, 2),
                height=round(plot_h * h.cumulative / peak, 2),
                series="over" if h.cumulative > limit else "window",
                title=(f"{h.start:%H:%M} UTC hour: {h.requests:,} requests "
                       f"({h.cumulative:,} counted by its end); they free up at "
                       f"{h.frees_at:%H:%M} UTC tomorrow"))
            for i, h in enumerate(hours)]
    y_ticks = [Tick(round(axis_y - plot_h * f, 2), _tick_label(peak * f)) for f in (0, 0.5, 1)]
    x_ticks = [Tick(round(left + (i + 0.5) * slot, 2), f"{h.start:%H}h")
               for i, h in enumerate(hours) if i % 4 == 0]
    total = hours[-1].cumulative if hours else 0
    description = (f"Requests counted in the rolling 24 hours by clock hour, cumulative: "
                   f"{total:,} of the {limit:,} limit.")
    return WindowChart(width, height, left, width - right, axis_y, bars,
                       round(axis_y - plot_h * limit / peak, 2), f"limit {limit:,}", y_ticks,
                       x_ticks, description)


def frees_up(hours: list[attention.Hour], now, *, shown: int = 3) -> list[tuple[Any, int]]:
    """(when, requests) of the next moments quota comes back: each hour's requests leave the
    window 24 hours after that hour."""
    return [(h.frees_at, h.requests) for h in hours
            if h.requests and h.frees_at > now][:shown]


# --- the dashboard -------------------------------------------------------------------------

REFRESH_SECONDS = 60


@dataclass(frozen=True)
class Tile:
    key: str
    label: str
    tally: Any  # attention.Tally or an int
    url: str
    hint: str
    action: tuple[str, str] | None = None  # (label, url)

    @property
    def count(self) -> int:
        return getattr(self.tally, "count", self.tally)

    @property
    def capped(self) -> bool:
        return getattr(self.tally, "capped", False)


def _tiles(request: HttpRequest, now) -> list[Tile]:
    seen = attention.needs_attention()
    listing = reverse("admin:updates_profileupdate_changelist")
    can_approve = request.user.has_perm(workflow.PERM_APPROVE)
    waited = (f"the oldest for {timesince(seen.oldest_pending_since, now)}"
              if seen.oldest_pending_since else "nothing waiting")
    return [
        Tile("failed", "Failed", seen.failed, f"{listing}?status__exact=failed",
             "Target refused them or the sender gave up: fix and re-queue, or cancel.",
             ("Re-queue from the list", f"{listing}?status__exact=failed")
             if request.user.has_perm(workflow.PERM_REQUEUE) else None),
        Tile("retrying", "Retrying", seen.retrying, f"{listing}?status__exact=approved",
             "Approved, with a retry scheduled after a temporary error."),
        Tile("deferred", "Deferred by quota", seen.deferred_by_quota,
             f"{listing}?status__exact=approved",
             "Left waiting by the latest send run: the rolling-24-hour limit was reached."),
        Tile("pending", "Waiting for approval", seen.pending,
             reverse("updates_queue") if can_approve else f"{listing}?status__exact=pending",
             f"Submitted, not yet decided — {waited}."),
    ]


def dashboard_view(request: HttpRequest) -> HttpResponse:
    title = "Operations dashboard"
    if not request.user.has_perm(PERM_VIEW):
        return _forbidden(request, title, "The dashboard needs permission to view profile updates.")
    data = selectors.dashboard()
    now = data.now
    cards = []
    for p in data.connections:
        hours = attention.window_by_hour(connection_id=p.connection.pk, now=now)
        cards.append({
            "picture": p, "chart": usage_chart(p.days),
            "window_chart": window_chart(hours, limit=p.limit),
            "frees_up": frees_up(hours, now),
            "requests": attention.requests_between(since=now - quota.WINDOW, until=now,
                                                   connection_id=p.connection.pk),
        })
    return _page(request, title, "admin/updates/dashboard.html", {
        "data": data,
        "cards": cards,
        "tiles": _tiles(request, now),
        "requests": attention.requests_between(since=now - quota.WINDOW, until=now),
        "refresh_seconds": REFRESH_SECONDS,
        "chart_days": selectors.CHART_DAYS,
        "changelist_url": reverse("admin:updates_profileupdate_changelist"),
        "can_approve": request.user.has_perm(workflow.PERM_APPROVE),
        "verification_days": verification.daily_summary(now=data.now),
    })


# --- the approval queue --------------------------------------------------------------------

@dataclass(frozen=True)
class QueueRow:
    update: ProfileUpdate
    attributes: list[tuple[str, str]]
    request: selectors.RequestPreview
    own: bool  # the viewer wrote its content
    may_decide: bool  # workflow.may_decide: False for the viewer's own content
    blocker: str = ""  # why this viewer may not decide it ("" when they may)


def _queue_connection(request: HttpRequest) -> TargetConnection | None:
    pk = parse_id(request.GET.get("connection"))
    return TargetConnection.objects.filter(pk=pk).first() if pk is not None else None


def queue_view(request: HttpRequest) -> HttpResponse:
    title = "Approval queue"
    if not request.user.has_perm(workflow.PERM_APPROVE):
        return _forbidden(request, title, "The approval queue is for supervisors: approving and "
                                          "rejecting needs the permission \"Can approve or reject "
                                          "profile updates\".")
    if request.method == "POST":
        return _decide(request)
    connection = _queue_connection(request)
    paginator = CappedPaginator(
        selectors.pending_updates(connection_id=connection.pk if connection else None),
        QUEUE_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("p"))
    # Four eyes, as the service applies it: the viewer's own content gets no decision buttons.
    authored = workflow.authored_by(request.user, page)
    rows = [QueueRow(u, selectors.attribute_rows(u), selectors.request_preview(u),
                     u.pk in authored, workflow.may_decide(u, request.user, authored=authored),
                     workflow.decision_blocker(u, request.user, authored=authored))
            for u in page]
    now = timezone.now()
    on_page = {r.update.connection_id: r.update.connection for r in rows}
    headroom = [(c, quota.window_usage(connection=c, now=now), c.quota_limit)
                for c in on_page.values()]
    return _page(request, title, "admin/updates/queue.html", {
        "rows": rows,
        "page": page,
        "paginator": paginator,
        "connections": TargetConnection.objects.order_by("label"),
        "connection": connection,
        "headroom": headroom,
        "page_cost": sum(r.request.quota_cost for r in rows),
        "reject_form": RejectForm(),
        "page_query": _query(connection),
        "now": now,
        "imports": batch.recent_imports(),
        "batch_url": reverse("updates_queue_batch") + (
            f"?connection={connection.pk}" if connection else ""),
    })


def _query(connection: TargetConnection | None) -> str:
    return f"connection={connection.pk}&" if connection else ""


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
    service = workflow.update_approve if decision == "approve" else workflow.update_reject
    outcome = workflow.apply_to_each(service, chosen, by=request.user, comment=comment)
    report_outcome(request, outcome, verb="approved" if decision == "approve" else "rejected")
    return back


urlpatterns = [
    path("dashboard/", admin.site.admin_view(dashboard_view), name="updates_dashboard"),
    path("queue/", admin.site.admin_view(queue_view), name="updates_queue"),
    # Under the update's own admin URL (matched before the admin's <path:object_id>/ routes).
    path("updates/profileupdate/<int:pk>/live-diff/",
         admin.site.admin_view(live_diff.live_diff_view), name="updates_live_diff"),
    path("updates/profileupdate/<int:pk>/revert/", admin.site.admin_view(live_diff.revert_view),
         name="updates_revert"),
    path("queue/batch/", batch.batch_urlpattern_view, name="updates_queue_batch"),
]
