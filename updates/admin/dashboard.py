"""The operations dashboard and the approval queue: two admin pages beside the model admins.

Their URLs (`urlpatterns`, included under admin/ by profileops/urls.py) are wrapped in
`admin.site.admin_view`, so they share the admin's login, staff check, CSRF protection and
never-cache headers; the pages themselves check the model permissions they need.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from updates import quota, selectors, verification, workflow
from updates.models import ProfileUpdate, TargetConnection

from .base import parse_id
from . import live_diff
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


# --- the dashboard -------------------------------------------------------------------------

def dashboard_view(request: HttpRequest) -> HttpResponse:
    title = "Operations dashboard"
    if not request.user.has_perm(PERM_VIEW):
        return _forbidden(request, title, "The dashboard needs permission to view profile updates.")
    data = selectors.dashboard()
    cards = [{"picture": p, "chart": usage_chart(p.days)} for p in data.connections]
    return _page(request, title, "admin/updates/dashboard.html", {
        "data": data,
        "cards": cards,
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
                     u.pk in authored, workflow.may_decide(u, request.user, authored=authored))
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
    })


def _query(connection: TargetConnection | None) -> str:
    return f"connection={connection.pk}&" if connection else ""


def _decide(request: HttpRequest) -> HttpResponse:
    back = HttpResponseRedirect(request.get_full_path())
    if "approve_one" in request.POST or "reject_one" in request.POST:
        decision = "approve" if "approve_one" in request.POST else "reject"
        ids = [request.POST.get(f"{decision}_one", "")]
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
]
