"""The operations dashboard: an admin page beside the model admins (its URL is in urls.py).

It checks the model permission it needs itself; the quota charts are server-rendered SVG.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.timesince import timesince

from updates import attention, quota, selectors, verification, workflow

from .pages import forbidden as _forbidden, page as _page

admin.site.site_header = "ProfileOps"
admin.site.site_title = "ProfileOps"
admin.site.index_title = "Administration"

PERM_VIEW = "updates.view_profileupdate"


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
    alert: bool = True  # highlighted when its count is not zero

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


AT_TARGET_HINTS = {
    "verified": "A later read showed every sent value.",
    "not_applied": "Acknowledged, but Target has no profile for the visitor or does not show "
                   "the values.",
    "checking": "Acknowledged; read back on schedule until verified or the checks run out.",
    "unverified": "Every read back failed: whether Target applied them is unknown.",
    "off": "Sent on a connection that does not verify.",
    "unchanged": "Not sent: Target already held every staged value (skipped in these days; "
                 "the list shows every unchanged update).",
}
# daily_summary's column for each "at Target" state, and the verification state the list filters.
_AT_TARGET_COLUMNS = {"verified": ("verified", "verified"),
                      "not_applied": ("not_applied", "not_applied"),
                      "checking": ("verifying", "pending"),
                      "unverified": ("unverified", "unverified"), "off": ("off", "off")}


def _at_target_tiles(days: list[verification.VerificationDay]) -> list[Tile]:
    """One tile per "at Target" state over the verification picture's days (updates by day of
    acknowledgment; no query of its own), each linking to the update list filtered by that
    state and the same days sent."""
    listing = reverse("admin:updates_profileupdate_changelist")
    tiles = []
    if not days:
        return tiles
    since = dt.datetime.combine(days[-1].day, dt.time.min, tzinfo=dt.timezone.utc)
    until = dt.datetime.combine(days[0].day + dt.timedelta(days=1), dt.time.min,
                                tzinfo=dt.timezone.utc)
    sent_in = urlencode({"acknowledged_at__gte": since.isoformat(sep=" "),
                         "acknowledged_at__lt": until.isoformat(sep=" ")})
    for key, label in verification.AT_TARGET.items():
        if key == "unchanged":
            count, url = sum(d.unchanged for d in days), f"{listing}?status__exact=unchanged"
        else:
            column, state = _AT_TARGET_COLUMNS[key]
            count = sum(getattr(d, column) for d in days)
            url = f"{listing}?verification_state__exact={state}&{sent_in}"
        tiles.append(Tile(f"at-target-{key}", label.capitalize(), count, url,
                          AT_TARGET_HINTS[key], alert=key in ("not_applied", "unverified")))
    return tiles


def dashboard_view(request: HttpRequest) -> HttpResponse:
    title = "Operations dashboard"
    if not request.user.has_perm(PERM_VIEW):
        return _forbidden(request, title, "The dashboard needs permission to view profile updates.")
    data = selectors.dashboard()
    now = data.now
    verification_days = verification.daily_summary(now=now)
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
        "verification_days": verification_days,
        "at_target_tiles": _at_target_tiles(verification_days),
    })
