"""Quota and usage: the rolling window, requests per day, and the two-panel chart."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from updates import permissions

from . import INSTALL_HINT
from .base import SessionBase
from .results import Frame, int_columns, utc_columns
from .thread import orm

if TYPE_CHECKING:  # imported for annotations only: Django may not be set up yet
    from matplotlib.figure import Figure


class Usage(SessionBase):
    """Session.quota / daily_usage / plot_usage."""

    def quota(self, *, connection: Any = None) -> pd.DataFrame:
        """Per active connection: requests in the rolling 24 hours, the limit, what remains,
        percent used and when the oldest counted request leaves the window (quota.py).

        Example::

            nb.quota()
        """
        return orm.run(self._quota, connection=connection)

    def _quota(self, *, connection) -> pd.DataFrame:
        from django.utils import timezone

        from updates import quota, selectors

        user = self._user()
        self._need(user, permissions.PERM_VIEW, "view the quota")
        now = timezone.now()
        connections = ([self._connection(connection)] if connection is not None
                       else list(selectors.active_connections()))
        rows = []
        for conn in connections:
            window = quota.window_picture(connection=conn, now=now)
            rows.append({"connection": conn.label, "client_code": conn.client_code,
                         "window_requests": window.used, "limit": window.limit,
                         "remaining": window.remaining, "percent_used": window.percent_used,
                         "oldest_leaves_at": window.oldest_leaves_at, "as_of": now})
        frame = pd.DataFrame(rows, columns=["connection", "client_code", "window_requests",
                                            "limit", "remaining", "percent_used",
                                            "oldest_leaves_at", "as_of"])
        int_columns(frame, "window_requests", "limit", "remaining")
        utc_columns(frame, "oldest_leaves_at", "as_of")
        return Frame(frame)

    def daily_usage(self, *, connection: Any = None, days: int = 30) -> pd.DataFrame:
        """Requests, acknowledged and failed per connection and UTC day for the last `days` days
        (zeros filled), as the dashboard's chart (selectors.daily_usage).

        Example::

            nb.daily_usage(connection="demo", days=7)
        """
        return orm.run(self._daily_usage, connection=connection, days=days)

    def _daily_usage(self, *, connection, days) -> pd.DataFrame:
        from django.utils import timezone

        from updates import selectors

        user = self._user()
        self._need(user, permissions.PERM_VIEW, "view the quota")
        connections = ([self._connection(connection)] if connection is not None
                       else list(selectors.active_connections()))
        labels = {c.pk: c.label for c in connections}
        found = selectors.daily_usage(connection_ids=list(labels), today=timezone.now().date(),
                                      days=days)
        rows = [{"connection": labels[cid], "day": d.day, "requests": d.requests,
                 "acknowledged": d.acknowledged, "failed": d.failed}
                for cid, day_rows in found.items() for d in day_rows]
        frame = pd.DataFrame(rows, columns=["connection", "day", "requests", "acknowledged",
                                            "failed"])
        frame["day"] = pd.to_datetime(frame["day"]).dt.date
        int_columns(frame, "requests", "acknowledged", "failed")
        frame["connection"] = frame["connection"].astype("category")
        return Frame(frame)

    def plot_usage(self, *, connection: Any = None, days: int = 14) -> Figure:
        """Two panels, as the dashboard: requests per UTC day (acknowledged, failed) and the
        rolling-24 h window filling up minute by minute, with the connection's limit as a line.
        Returns a matplotlib Figure (no pyplot state: works under Agg and in Jupyter).

        Example::

            nb.plot_usage(connection="demo")
        """
        try:
            from matplotlib.figure import Figure
        except ImportError as error:
            raise ImportError(f"plot_usage needs matplotlib; install the notebook extra: "
                              f"{INSTALL_HINT}") from error

        def gather():
            from updates import quota

            user = self._user()
            self._need(user, permissions.PERM_VIEW, "view the quota")
            conn = self._connection(connection)
            return conn.label, quota.window_picture(connection=conn)

        label, picture = orm.run(gather)
        daily = self.daily_usage(connection=label, days=days)
        figure = Figure(figsize=(11, 4), layout="constrained")
        by_day, window = figure.subplots(1, 2)
        positions = np.arange(len(daily))
        ok = daily["acknowledged"].astype(int).to_numpy()
        failed = daily["failed"].astype(int).to_numpy()
        other = np.maximum(daily["requests"].astype(int).to_numpy() - ok - failed, 0)
        by_day.bar(positions, ok, label="acknowledged", color="#2e7d32")
        by_day.bar(positions, failed, bottom=ok, label="failed", color="#c62828")
        by_day.bar(positions, other, bottom=ok + failed, label="retried / other", color="#9e9e9e")
        by_day.set_xticks(positions, [d.strftime("%m-%d") for d in daily["day"]], rotation=60,
                          fontsize=8)
        by_day.set_title(f"Requests per UTC day — {label}")
        by_day.set_ylabel("requests")
        by_day.legend(loc="upper left", fontsize=8)
        _plot_window(window, picture)
        return figure


def _plot_window(axes, picture) -> None:
    """The rolling window (quota.WindowPicture) filling up minute by minute, its limit a line."""
    minutes = pd.DataFrame(picture.minutes, columns=["minute", "requests"])
    utc_columns(minutes, "minute")
    now, limit, used = pd.Timestamp(picture.now), picture.limit, picture.used
    start = now - pd.Timedelta(hours=24)
    times = [start] + list(minutes["minute"]) + [now]
    counts = np.concatenate([[0], minutes["requests"].astype(int).cumsum().to_numpy()])
    counts = np.append(counts, counts[-1])
    axes.step(times, counts, where="post", label="requests counted in the window")
    axes.axhline(limit, color="#c62828", linestyle="--", label=f"limit {limit:,}")
    axes.set_xlim(start, now)
    axes.set_title(f"Rolling 24 h: {used:,} of {limit:,} used ({picture.percent_used:.1f} %)")
    if limit > 20 * max(used, 1):
        # A linear axis would flatten the day's use to the floor under a far-away limit.
        axes.set_yscale("symlog", linthresh=10)
        axes.set_ylim(0, limit * 2)
        axes.set_ylabel("requests (cumulative, log scale)")
    else:
        axes.set_ylim(0, max(limit, used) * 1.05)
        axes.set_ylabel("requests (cumulative)")
    axes.tick_params(axis="x", labelrotation=30, labelsize=8)
    axes.legend(loc="center left", fontsize=8)
