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

from updates import attention, bulk_reconcile, permissions, quota, selectors, verification
from updates.models import BulkJob

from .pages import forbidden as _forbidden, page as _page

admin.site.site_header = "ProfileOps"
admin.site.site_title = "ProfileOps"
admin.site.index_title = "Administration"



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
    anchor: str = "middle"  # SVG text-anchor: "end" keeps a label at the right edge in view


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


# The charts' viewBox is about as wide as a phone's content column, so on a 390 px screen their
# 13-unit labels show at 11-13 CSS px; on wider screens dashboard.css caps how far they grow.
CHART_WIDTH = 360


def usage_chart(days: list[selectors.DayUsage], *, width: int = CHART_WIDTH,
                height: int = 200) -> Chart:
    """Three bars a day (requests, acknowledged, failed) on a shared linear scale."""
    left, right, top, bottom_pad = 52, 8, 10, 24
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
    y_ticks = [Tick(round(axis_y - plot_h * f, 2), _short_label(peak * f)) for f in fractions]
    x_ticks = [Tick(round(left + (i + 0.5) * slot, 2), f"{d.day:%m-%d}")
               for i, d in enumerate(days) if (len(days) - 1 - i) % 7 == 0]
    if x_ticks:  # today's label ends at the plot's right edge instead of running past it
        x_ticks[-1] = Tick(width - right, x_ticks[-1].label, "end")
    total = sum(d.requests for d in days)
    description = (f"Requests, acknowledgments and failures per day from {days[0].day:%Y-%m-%d} "
                   f"to {days[-1].day:%Y-%m-%d}; {total:,} requests in all.") if days else ""
    return Chart(width, height, top, axis_y, left, width - right, bars, y_ticks, x_ticks,
                 description)


def _short_label(value: float) -> str:
    """An axis label that fits a phone's column: 2,500 / 50k / 1M."""
    if value >= 1_000_000:
        scaled, suffix = value / 1_000_000, "M"
    elif value >= 10_000:
        scaled, suffix = value / 1000, "k"
    else:
        return _tick_label(value)
    return _tick_label(scaled) + suffix


# The window chart is drawn to the limit once the window holds this share of it; below, it is
# drawn to what is used (a 3,000-request day is invisible on a 1,000,000 scale) and the limit is
# stated in words.
LIMIT_IN_SCALE_FROM = 0.2


@dataclass(frozen=True)
class WindowChart:
    """The rolling 24 hours by clock hour: bars of the requests counted so far (cumulative),
    scaled to what is used; the limit line when it is on the scale, otherwise the limit in words."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: float
    bars: list[Bar]
    peak: int
    limit_y: float | None  # None: the limit is off the scale
    limit_label: str
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    description: str

    @property
    def limit_in_scale(self) -> bool:
        return self.limit_y is not None


def window_scale(*, used: int, limit: int) -> int:
    """The axis maximum for `used` requests of `limit`: a 1/2/5 ceiling above what is used, or
    above the limit once the window holds LIMIT_IN_SCALE_FROM of it."""
    if limit and used >= limit * LIMIT_IN_SCALE_FROM:
        return _nice_ceiling(max(used, limit))
    return _nice_ceiling(max(used, 10))


def window_chart(hours: list[attention.Hour], *, limit: int, width: int = CHART_WIDTH,
                 height: int = 200) -> WindowChart:
    left, right, top, bottom_pad = 52, 8, 22, 24
    plot_w, plot_h = width - left - right, height - top - bottom_pad
    axis_y = top + plot_h
    most = max([0] + [h.cumulative for h in hours])
    peak = window_scale(used=most, limit=limit)
    slot = plot_w / max(1, len(hours))
    bars = [Bar(x=round(left + i * slot + slot * 0.1, 2),
                y=round(axis_y - plot_h * h.cumulative / peak, 2), width=round(slot * 0.8, 2),
                height=round(plot_h * h.cumulative / peak, 2),
                series="over" if h.cumulative > limit else "window",
                title=(f"{h.start:%Y-%m-%d %H:%M} UTC hour: {h.requests:,} requests "
                       f"({h.cumulative:,} counted by its end); they have all left the window "
                       f"by {h.frees_at:%Y-%m-%d %H:%M} UTC"))
            for i, h in enumerate(hours)]
    y_ticks = [Tick(round(axis_y - plot_h * f, 2), _short_label(peak * f)) for f in (0, 0.5, 1)]
    x_ticks = [Tick(round(left + (i + 0.5) * slot, 2), f"{h.start:%H}h")
               for i, h in enumerate(hours) if i % 6 == 0]
    in_scale = bool(limit) and limit <= peak
    limit_y = round(axis_y - plot_h * limit / peak, 2) if in_scale else None
    limit_label = f"limit {limit:,}" if in_scale else f"limit {limit:,} — off the scale"
    total = hours[-1].cumulative if hours else 0
    description = (f"Requests counted in the rolling 24 hours by clock hour, cumulative: "
                   f"{total:,} of the {limit:,} limit; the scale goes to {peak:,}"
                   f"{'' if in_scale else ', the limit is off the scale'}.")
    return WindowChart(width, height, left, width - right, top, axis_y, bars, peak, limit_y,
                       limit_label, y_ticks, x_ticks, description)


@dataclass(frozen=True)
class UsageBar:
    """The window's use as one bar on the window chart's scale (0..peak, in percent of it)."""

    used_percent: float
    limit_percent: float | None  # None: the limit is off the scale
    peak: int

    @property
    def limit_mark_x(self) -> float | None:
        """Where the limit's mark (0.8 wide) starts, kept inside the bar."""
        if self.limit_percent is None:
            return None
        return round(min(99.2, max(0.0, self.limit_percent - 0.4)), 2)


def usage_bar(window: quota.WindowPicture, chart: WindowChart) -> UsageBar:
    peak = chart.peak
    return UsageBar(used_percent=round(min(100.0, 100.0 * window.used / peak), 2),
                    limit_percent=(round(100.0 * window.limit / peak, 2)
                                   if chart.limit_in_scale else None), peak=peak)


# --- the dashboard -------------------------------------------------------------------------

REFRESH_SECONDS = 60
FREES_UP_SHOWN = 3  # the next releases of quota named under the window chart


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
    seen = attention.needs_attention(now=now)
    listing = reverse("admin:updates_profileupdate_changelist")
    can_approve = request.user.has_perm(permissions.PERM_APPROVE)
    waited = (f"the oldest for {timesince(seen.oldest_pending_since, now)}"
              if seen.oldest_pending_since else "nothing waiting")
    return [
        Tile("failed", "Failed", seen.failed, f"{listing}?status__exact=failed",
             "Target refused them or the sender gave up: fix and re-queue, or cancel.",
             ("Re-queue from the list", f"{listing}?status__exact=failed")
             if request.user.has_perm(permissions.PERM_REQUEUE) else None),
        Tile("retrying", "Retrying", seen.retrying, f"{listing}?waiting=retrying",
             "Approved, with a retry scheduled after a temporary error."),
        Tile("deferred", "Deferred by quota", seen.deferred_by_quota,
             f"{listing}?waiting=deferred",
             "Approved and due, but the connection's rolling-24-hour limit is reached: they go "
             "as requests leave the window."),
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
    if not request.user.has_perm(permissions.PERM_VIEW):
        return _forbidden(request, title, "The dashboard needs permission to view profile updates.")
    data = selectors.dashboard()
    now = data.now
    verification_days = verification.daily_summary(now=now)
    cards = []
    for p in data.connections:
        # The picture's one read of the window's minute rows: the figures, the chart, the bar
        # and the "frees up" line all come from it, so they agree.
        window = p.window
        chart = window_chart(attention.hours_of(window.minutes, now=now), limit=window.limit)
        cards.append({
            "picture": p, "chart": usage_chart(p.days), "window": window,
            "window_chart": chart, "usage_bar": usage_bar(window, chart),
            "releases": window.releases()[:FREES_UP_SHOWN],
            "requests": attention.requests_between(since=now - quota.WINDOW, until=now,
                                                   connection_id=p.connection.pk),
            "bulk": (bulk_reconcile.bulk_usage(connection_id=p.connection.pk, now=now)
                     if p.connection.send_route != "single"
                     or BulkJob.objects.filter(connection_id=p.connection.pk).exists()
                     else None),
        })
    return _page(request, title, "admin/updates/dashboard.html", {
        "data": data,
        "cards": cards,
        "tiles": _tiles(request, now),
        "requests": attention.requests_between(since=now - quota.WINDOW, until=now),
        "refresh_seconds": REFRESH_SECONDS,
        "chart_days": selectors.CHART_DAYS,
        "changelist_url": reverse("admin:updates_profileupdate_changelist"),
        "can_approve": request.user.has_perm(permissions.PERM_APPROVE),
        "verification_days": verification_days,
        "at_target_tiles": _at_target_tiles(verification_days),
    })
