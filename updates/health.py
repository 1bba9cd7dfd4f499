"""Probes for load balancers and monitoring: /healthz, /readyz, and the scheduler's heartbeat.

- ``/healthz`` answers 200 ``{"status": "ok"}`` as long as the process serves requests. It
  touches nothing else, so a load balancer may call it as often as it likes.
- ``/readyz`` checks what serving and sending need: the database (``SELECT 1``), the django-q2
  broker (ORM broker: a query on its queue table; Redis: PING through django-q2's own broker)
  and the send schedule's heartbeat (``SchedulerHeartbeat.beat``), which
  ``updates.tasks.send_due_updates`` writes after every completed run. 200 when all are fine; otherwise 503 naming the checks that failed. The answer
  carries the check names and one word each (``ok``, ``down``, ``stale``, ``never``,
  ``unknown``) — no host names, exception texts or counts; the reason goes to the log.

While the app is not ready, probes stay quiet: a process logs one ERROR line when its
readiness changes to "not ready" (or to another set of failing checks), naming the checks and
why, and one INFO line when it is ready again — not a line per probe, however often an outsider
calls /readyz (Django's own "Service Unavailable" line for each 503 is left out too).

Both are answered by `ProbeMiddleware` before Django's host check and CSRF, because a load
balancer probes the server's address, not the public host name (see README, "Running for
real"); SECURE_SSL_REDIRECT exempts them (settings.SECURE_REDIRECT_EXEMPT), because it probes
over plain HTTP.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Callable

from django.db import connection as db
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

from .conf import setting
from .metrics import metrics_view
from .models import SchedulerHeartbeat

logger = logging.getLogger(__name__)

OK, DOWN, STALE, NEVER, UNKNOWN = "ok", "down", "stale", "never", "unknown"


# --- the checks ----------------------------------------------------------------------------------

def _reason(reasons: list[str] | None, message: str, *args: object) -> None:
    """Keep why a check failed: in `reasons` when the caller logs them (readyz, once per change
    of state), else as a warning."""
    if reasons is None:
        logger.warning("readiness: " + message, *args)
    else:
        reasons.append(message % args)


def check_database(*, reasons: list[str] | None = None) -> str:
    try:
        with db.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as error:  # any failure means "not ready"; the type is enough to start with
        _reason(reasons, "the database check failed (%s)", type(error).__name__)
        return DOWN
    return OK


_broker = None


def _redis_broker():
    global _broker
    if _broker is None:
        from django_q.brokers import get_broker

        _broker = get_broker()
    return _broker


def check_broker(*, reasons: list[str] | None = None) -> str:
    """The broker the cluster uses, as django-q2 itself reads Q_CLUSTER (django_q.conf.Conf)."""
    from django_q.conf import Conf

    try:
        if Conf.ORM:
            from django_q.models import OrmQ

            OrmQ.objects.using(Conf.ORM).exists()
        elif not _redis_broker().ping():
            raise ConnectionError("PING was not answered")
    except Exception as error:
        _reason(reasons, "the broker check failed (%s)", type(error).__name__)
        return DOWN
    return OK


def check_scheduler(*, now: dt.datetime | None = None, reasons: list[str] | None = None) -> str:
    now = now or timezone.now()
    try:
        beat_at = SchedulerHeartbeat.last_beat_at()
    except Exception as error:
        _reason(reasons, "the heartbeat could not be read (%s)", type(error).__name__)
        return UNKNOWN
    if beat_at is None:
        return NEVER
    stale_after = dt.timedelta(seconds=setting("HEARTBEAT_STALE_SECONDS"))
    if now - beat_at > stale_after:
        _reason(reasons, "the send schedule last completed a run %d s ago",
                (now - beat_at).total_seconds())
        return STALE
    return OK


def readiness(*, now: dt.datetime | None = None,
              reasons: list[str] | None = None) -> dict[str, str]:
    """{check name: result} — ready when every result is "ok". With `reasons`, why a check
    failed is appended there instead of logged."""
    database = check_database(reasons=reasons)
    return {
        "database": database,
        "broker": check_broker(reasons=reasons),
        # Without the database the heartbeat cannot be read: say so instead of guessing.
        "scheduler": check_scheduler(now=now, reasons=reasons) if database == OK else UNKNOWN,
    }


# The readiness this process last reported: None (ready, as far as anyone was told) or the
# failing checks with their results. Per process: each gunicorn worker tells its own change once.
_last_failed: tuple[tuple[str, str], ...] | None = None
_last_lock = threading.Lock()


def _log_change(checks: dict[str, str], reasons: list[str]) -> None:
    """One log line when readiness changes, none while it stays as it was."""
    global _last_failed
    failed = tuple((name, result) for name, result in checks.items() if result != OK) or None
    with _last_lock:
        if failed == _last_failed:
            return
        _last_failed = failed
    if failed:
        logger.error("readiness: not ready — %s%s (logged once until this changes)",
                     ", ".join(f"{name} {result}" for name, result in failed),
                     f": {'; '.join(reasons)}" if reasons else "")
    else:
        logger.info("readiness: ready again")


# --- the views -----------------------------------------------------------------------------------

def _json(payload: dict, status: int = 200) -> JsonResponse:
    response = JsonResponse(payload, status=status)
    response["Cache-Control"] = "no-store"
    return response


def healthz(request: HttpRequest) -> HttpResponse:
    return _json({"status": "ok"})


def readyz(request: HttpRequest) -> HttpResponse:
    reasons: list[str] = []
    checks = readiness(reasons=reasons)
    _log_change(checks, reasons)
    failed = [name for name, result in checks.items() if result != OK]
    if failed:
        response = _json({"status": "unavailable", "failed": failed, "checks": checks},
                         status=503)
        # Django's handler logs every 5xx as an ERROR ("Service Unavailable: /readyz"): the
        # change was logged above, once; a probe that finds it unchanged adds nothing.
        response._has_been_logged = True
        return response
    return _json({"status": "ok", "checks": checks})


PROBES: dict[str, Callable[[HttpRequest], HttpResponse]] = {
    "/healthz": healthz,
    "/readyz": readyz,
    "/metrics": metrics_view,
}


class ProbeMiddleware:
    """Answers the probe paths before the host check, sessions, CSRF and authentication.

    A load balancer's or Prometheus's Host header is the server's address, which ALLOWED_HOSTS
    rightly does not list; these answers build no URLs from it, so it is safe to skip the check.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = PROBES.get(request.path_info)
        if probe is None:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            response = HttpResponse(status=405)
            response["Allow"] = "GET, HEAD"
            return response
        return probe(request)
