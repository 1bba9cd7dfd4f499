"""Alerts: operators learn about trouble without watching the dashboard.

Rules (models.AlertRule) belong to one connection:

    failure_rate   ≥ threshold % of the requests in the last `window_minutes` were not
                   acknowledged (only with at least `min_requests` requests in the window)
    quota_use      ≥ threshold % of the rolling-24-hour limit is in use (one rule per
                   threshold, e.g. 80 and 95)
    waiting        an update has waited for approval longer than `threshold` hours
    token_refused  Target answered the connection's latest request with HTTP 401 or 403
                   (after the token was fetched once more and the request retried once)
    token_renewal  obtaining the profile token with the connection's Adobe credentials fails
                   (told at once, so before the current token expires; credentials.py)
    not_applied    ≥ threshold updates whose verification ended "not applied" (Target
                   acknowledged them but does not show the sent values) in the last
                   `window_minutes`
    bulk_job       ≥ threshold bulk files ended stuck at Target, or not complete
                   BULK_TIMEOUT_HOURS after Target accepted them, in the last `window_minutes`

`alerts_check` (django-q2 runs it every five minutes; tasks.py) evaluates every active
rule. A rule whose state changed gets an AlertEvent — fired, or cleared — written together with
the rule's new state in one transaction, and only then is it delivered: by email (Django's mail
settings, to the rule's addresses) and/or as a JSON POST of {"text": ...} to its webhook
(Slack-compatible; updates/webhooks.py: one 5 s deadline for the whole call, no redirects, only
to addresses allowed). So each state change is told once, however often the check runs, and a
rule that stays firing stays quiet. Delivery results are recorded on the event; a failed delivery
is not retried (the next state change is told again). A 3xx answer is a failed delivery.

A rule saved without a threshold takes its kind's default (DEFAULT_THRESHOLDS: failure rate
10 % of at least 20 requests, quota use 80 %, waiting 4 hours, not applied 1 update; token
refused has none), never 0 — a failure-rate rule at 0 would fire on any failure. Lists and texts
give thresholds with their unit (`threshold_words`: "alerts at 10 % of at least 20 requests in
60 minutes"). Every text ends with a link to the admin page to act on (`action_url`), absolute
from PROFILEOPS_SITE_URL; without that setting there is no link (a relative one is no use in an
email).

`alert_rule_save` is the one way rules are saved (the model's full validation, including where
its webhook may go; administrators only — supervisors see rules and events read-only), and `alert_rule_send_test` posts a test alert through the rule's ways and
says what the receiver answered.

Texts name the connection, counts, rates and times — never an identity or a profile value —
and the webhook URL (often a secret) never appears in a log or an error text.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from . import attention, audit, target, webhooks
from .conf import setting
from .errors import Refused, require_perm
from .permissions import PERM_ADD_ALERT_RULE, PERM_CHANGE_ALERT_RULE
from .selectors import capped_count
from .models import (AlertEvent, AlertRule, AuditEvent, BulkFile, CredentialState,
                     PrivacyRequest, ProfileUpdate, SendAttempt, UpdateStatus, VerificationState)

logger = logging.getLogger(__name__)

Kind = AlertRule.Kind
WEBHOOK_TIMEOUT_SECONDS = webhooks.DEADLINE_SECONDS  # for the whole call, not per socket read
NOTHING_TO_SEND = "nothing_to_send"
SUBJECT_PREFIX = "[ProfileOps] "


@dataclass(frozen=True)
class Reading:
    """A rule's condition now: whether it holds, and the sentence that says what was measured."""

    firing: bool
    text: str


# What an empty threshold becomes, per kind (models.AlertRule holds the table).
DEFAULT_THRESHOLDS = AlertRule.DEFAULT_THRESHOLDS


def default_threshold(kind: str) -> Decimal:
    return DEFAULT_THRESHOLDS.get(kind, Decimal(0))


def _percent(value: Decimal | float) -> str:
    return f"{float(value):g} %"


def _plural(n: float, one: str, many: str | None = None) -> str:
    number = f"{int(n):,}" if float(n).is_integer() else f"{float(n):,}"
    return f"{number} {one if n == 1 else (many or one + 's')}"


def threshold_words(rule: AlertRule) -> str:
    """The rule's threshold with its unit, as the list and the texts say it: "10 % of at least
    20 requests in 60 minutes", "80 % of the quota", "4 hours", "1 update in 60 minutes"."""
    threshold = rule.threshold if rule.threshold is not None else default_threshold(rule.kind)
    window = _plural(rule.window_minutes, "minute")
    if rule.kind == Kind.FAILURE_RATE:
        return (f"{_percent(threshold)} of at least {_plural(rule.min_requests, 'request')} "
                f"in {window}")
    if rule.kind == Kind.QUOTA_USE:
        return f"{_percent(threshold)} of the quota"
    if rule.kind == Kind.WAITING:
        return f"waiting {_plural(float(threshold), 'hour')}"
    if rule.kind == Kind.NOT_APPLIED:
        return f"{_plural(max(1, int(threshold)), 'update')} in {window}"
    if rule.kind == Kind.PRIVACY_ERROR:
        return "any privacy request in error"
    if rule.kind == Kind.BULK_JOB:
        return f"{_plural(max(1, int(threshold)), 'bulk file')} in {window}"
    if rule.kind == Kind.TOKEN_RENEWAL:
        return "any failed renewal"
    return "any refusal (HTTP 401 or 403)"


def action_url(rule: AlertRule) -> str:
    """The absolute address of the admin page to act on for `rule`'s alerts, or "" when
    PROFILEOPS_SITE_URL is not set."""
    site = setting("SITE_URL").rstrip("/")
    if not site:
        return ""
    on = f"?connection__id__exact={rule.connection_id}"
    if rule.kind == Kind.FAILURE_RATE:
        path = reverse("admin:updates_profileupdate_changelist") + on + "&waiting=retrying"
    elif rule.kind == Kind.QUOTA_USE:
        path = reverse("updates_dashboard")
    elif rule.kind == Kind.WAITING:
        path = reverse("admin:updates_profileupdate_changelist") + on + "&status__exact=pending"
    elif rule.kind in (Kind.TOKEN_REFUSED, Kind.TOKEN_RENEWAL):
        path = reverse("admin:updates_targetconnection_change", args=[rule.connection_id])
    elif rule.kind == Kind.PRIVACY_ERROR:
        path = reverse("admin:updates_privacyrequest_changelist") + on + "&state__exact=error"
    elif rule.kind == Kind.BULK_JOB:
        path = reverse("admin:updates_bulkjob_changelist") + f"?connection__id__exact={rule.connection_id}"
    else:
        path = (reverse("admin:updates_profileupdate_changelist") + on
                + "&verification_state__exact=not_applied")
    return site + path


def _with_link(rule: AlertRule, text: str) -> str:
    url = action_url(rule)
    return f"{text} Open: {url}" if url else text


def evaluate(rule: AlertRule, *, now: dt.datetime) -> Reading:
    connection = rule.connection
    name = f"{connection.label} ({connection.client_code})"
    if rule.kind == Kind.PRIVACY_ERROR:
        return _privacy_reading(connection, name)
    if rule.kind == Kind.BULK_JOB:
        return _bulk_reading(rule, name, now)
    if rule.kind == Kind.FAILURE_RATE:
        since = now - dt.timedelta(minutes=rule.window_minutes)
        seen = attention.requests_between(since=since, until=now, connection_id=connection.pk)
        rate = 100 * seen.failure_rate
        firing = seen.total >= rule.min_requests and rate >= float(rule.threshold)
        return Reading(firing, (
            f"{name}: {rate:.1f} % of {seen.total:,} requests in the last "
            f"{rule.window_minutes} minutes were not acknowledged "
            f"({_plural(seen.failed_requests, 'failed request')}; alerts at "
            f"{threshold_words(rule)})."))
    if rule.kind == Kind.QUOTA_USE:
        use = 100 * attention.quota_use(connection=connection, now=now)
        return Reading(use >= float(rule.threshold), (
            f"{name}: {use:.1f} % of the {connection.quota_limit:,}-request rolling-24-hour "
            f"quota is in use (alerts at {threshold_words(rule)})."))
    if rule.kind == Kind.WAITING:
        hours = float(rule.threshold)
        limit = now - dt.timedelta(hours=hours)
        waiting = ProfileUpdate.objects.filter(connection=connection,
                                               status=UpdateStatus.PENDING,
                                               submitted_at__lt=limit)
        n, capped = capped_count(waiting, cap=attention.TILE_CAP)
        oldest = waiting.order_by("submitted_at").values_list("submitted_at", flat=True).first()
        count = f"more than {n:,}" if capped else f"{n:,}"
        since = f"; the oldest since {oldest:%Y-%m-%d %H:%M} UTC" if oldest else ""
        return Reading(n > 0, (
            f"{name}: {count} update{'s' if n != 1 else ''} waiting for approval longer than "
            f"{hours:g} hours{since}."))
    if rule.kind in (Kind.TOKEN_REFUSED, Kind.TOKEN_RENEWAL):
        return _token_reading(rule, name, now)
    if rule.kind == Kind.NOT_APPLIED:
        # The verification writes a "not_applied" audit row when it gives its verdict; an
        # update still in that state whose verdict fell in the window counts once.
        since = now - dt.timedelta(minutes=rule.window_minutes)
        ended = AuditEvent.objects.filter(
            connection_id=connection.pk, action=AuditEvent.Action.NOT_APPLIED, at__gte=since,
            at__lte=now,
            update__verification_state=VerificationState.NOT_APPLIED)
        n = ended.values("update_id").distinct().count()
        needed = max(1, int(rule.threshold))
        return Reading(n >= needed, (
            f"{name}: {n:,} update{'s' if n != 1 else ''} acknowledged by Target but not "
            f"applied after verification in the last {rule.window_minutes} minutes (alerts at "
            f"{_plural(needed, 'update')})."))
    raise ValueError(f"unknown alert kind {rule.kind!r}")


def _privacy_reading(connection, name: str) -> Reading:
    """Fires while a privacy request of the connection is in error (privacy.py): Adobe answered
    error, or the filing failed. Names the requests by number, never the visitor."""
    failed = list(PrivacyRequest.objects.filter(connection=connection,
                                                state=PrivacyRequest.State.ERROR)
                  .values_list("pk", flat=True)[:20])
    if not failed:
        return Reading(False, f"{name}: no privacy request is in error any more.")
    listed = ", ".join(f"#{pk}" for pk in failed)
    return Reading(True, f"{name}: privacy request{'s' if len(failed) > 1 else ''} {listed} "
                         "ended in error; Target's part must be looked at and filed by hand.")
def _bulk_reading(rule: AlertRule, name: str, now: dt.datetime) -> Reading:
    """Bulk files of the connection that ended stuck at Target, or not complete 24 hours after
    Target accepted them (bulk_polling.py), in the rule's window."""
    since = now - dt.timedelta(minutes=rule.window_minutes)
    ended = BulkFile.objects.filter(job__connection=rule.connection,
                                    state__in=(BulkFile.State.STUCK, BulkFile.State.TIMED_OUT),
                                    finished_at__gte=since, finished_at__lte=now)
    stuck = ended.filter(state=BulkFile.State.STUCK).count()
    timed_out = ended.filter(state=BulkFile.State.TIMED_OUT).count()
    needed = max(1, int(rule.threshold))
    return Reading(stuck + timed_out >= needed, (
        f"{name}: {_plural(stuck, 'bulk file')} stuck at Target and "
        f"{_plural(timed_out, 'bulk file')} not complete after "
        f"{setting('BULK_TIMEOUT_HOURS'):g} hours in the last {rule.window_minutes} minutes; "
        "their rows are read back and can be re-queued on the single route."))


def _token_reading(rule: AlertRule, name: str, now: dt.datetime) -> Reading:
    """token_refused: Target's answer to the latest request; token_renewal: whether obtaining
    the profile token (Adobe credentials) fails — told before the current one expires."""
    connection = rule.connection
    if rule.kind == Kind.TOKEN_RENEWAL:
        state = CredentialState.objects.filter(connection=connection).first()
        if state is None or state.failing_since is None:
            return Reading(False, f"{name}: the profile token is renewed again.")
        left = ("has expired" if state.profile_expires_at is None or state.profile_expires_at <= now
                else f"expires at {state.profile_expires_at:%Y-%m-%d %H:%M:%S} UTC")
        return Reading(True, (
            f"{name}: renewing Target's profile token has failed since "
            f"{state.failing_since:%Y-%m-%d %H:%M:%S} UTC ({state.failure}) The current token "
            f"{left}; check the connection's Adobe credentials."))
    latest = (SendAttempt.objects.filter(connection=connection)
              .order_by("-started_at", "-id").values_list("http_status", "started_at").first())
    if latest is not None and latest[0] in (401, 403):
        fix = ("ProfileOps fetched the token once more and Target refused it too: check the "
               "credential's rights in Target" if connection.has_adobe_credentials
               else "Nothing can be sent until an administrator sets a valid token on the "
                    "connection")
        return Reading(True, (
            f"{name}: Target refused the bearer token (HTTP {latest[0]}) at "
            f"{latest[1]:%Y-%m-%d %H:%M:%S} UTC. {fix}."))
    return Reading(False, f"{name}: Target accepts the bearer token again.")


def alerts_check(*, now: dt.datetime | None = None) -> list[AlertEvent]:
    """Evaluate every active rule; record and deliver each state change. Returns the events."""
    now = now or timezone.now()
    events = []
    for rule in AlertRule.objects.filter(active=True, connection__active=True) \
            .select_related("connection").order_by("id"):
        reading = evaluate(rule, now=now)
        event = _record_change(rule, reading, now=now)
        if event is not None:
            deliver(event)
            events.append(event)
    return events


def _record_change(rule: AlertRule, reading: Reading, *, now: dt.datetime) -> AlertEvent | None:
    with transaction.atomic():
        current = AlertRule.objects.select_for_update().get(pk=rule.pk)
        if current.firing == reading.firing:
            return None  # no change: nothing to tell (a firing rule stays quiet)
        current.firing = reading.firing
        current.changed_at = now
        current.save(update_fields=["firing", "changed_at"])
        state = AlertEvent.State.FIRING if reading.firing else AlertEvent.State.CLEARED
        head = "ALERT" if reading.firing else "Cleared"
        event = AlertEvent.objects.create(
            rule=current, at=now, state=state,
            text=_with_link(current, f"{head} — {current.get_kind_display()}: {reading.text}"))
    event.rule = current
    return event


def deliver(event: AlertEvent) -> None:
    """Email and/or webhook for one event; the outcome is stored on the event."""
    outcome = _send(event.rule, subject=SUBJECT_PREFIX + event.text.split(":", 1)[0],
                    text=event.text)
    event.emailed = outcome.emailed
    event.webhook_status = outcome.webhook_status
    event.delivery_error = outcome.error
    event.save(update_fields=["emailed", "webhook_status", "delivery_error"])
    if outcome.error:
        logger.warning("alert event %s: delivery failed: %s", event.pk, event.delivery_error)


@dataclass(frozen=True)
class Delivery:
    """What one alert's delivery did: recipients emailed, the receiver's status, what failed."""

    emailed: int
    webhook_status: int | None
    error: str


def _send(rule: AlertRule, *, subject: str, text: str) -> Delivery:
    problems = []
    emailed = 0
    status = None
    recipients = rule.recipients
    if recipients:
        try:
            emailed = send_mail(subject, text, settings.DEFAULT_FROM_EMAIL,
                                recipients) and len(recipients)
        except Exception as error:  # noqa: BLE001 - any mail failure is recorded, not raised
            problems.append(f"email: {type(error).__name__}: {error}")
    if rule.webhook_url:
        status, problem = _post_webhook(rule.webhook_url, text)
        if problem:
            problems.append(problem)
    # Texts from outside (a mail server's error): stored as target.from_outside gives them.
    return Delivery(emailed=emailed or 0, webhook_status=status,
                    error=target.from_outside("; ".join(problems), rule.connection.secrets()))


def _post_webhook(url: str, text: str) -> tuple[int | None, str]:
    """(HTTP status or None, problem or ""). The URL is a secret: problems name the failure,
    never the address."""
    try:
        status = webhooks.post_json(url, {"text": text}, deadline_seconds=WEBHOOK_TIMEOUT_SECONDS)
    except webhooks.DeadlineExceeded as error:
        return None, f"webhook: deadline exceeded ({error}); the connection was closed"
    except webhooks.WebhookRefused as error:
        return None, f"webhook: refused: {error}"
    except ValidationError as error:
        return None, f"webhook: refused: {' '.join(error.messages)}"
    except OSError as error:
        return None, f"webhook: {type(error).__name__}"
    if 300 <= status < 400:
        return status, f"webhook: HTTP {status} (a redirect, not followed)"
    if not 200 <= status < 300:
        return status, f"webhook: HTTP {status}"
    return status, ""


# --- rules ---------------------------------------------------------------------------------------

def alert_rule_save(*, rule: AlertRule, by) -> AlertRule:
    """Save `rule` (new or changed) after the model's full validation — which refuses a webhook
    that may never be delivered to (updates/webhooks.py). Administrators only."""
    perm = PERM_CHANGE_ALERT_RULE if rule.pk else PERM_ADD_ALERT_RULE
    require_perm(by, perm, "Only administrators manage alert rules.")
    if rule.threshold is None:
        rule.threshold = default_threshold(rule.kind)
    rule.full_clean()
    rule.save()
    return rule


def alert_rule_send_test(*, rule: AlertRule, by) -> Delivery:
    """Send a test alert through the rule's email and webhook now, record who did it in the
    audit, and return what happened (the receiver's HTTP status among it). The rule's state and
    its events are untouched."""
    require_perm(by, PERM_CHANGE_ALERT_RULE, "Only administrators test alert rules.")
    if not rule.recipients and not rule.webhook_url:
        raise Refused("This rule has neither email addresses nor a webhook to test.",
                      code=NOTHING_TO_SEND)
    connection = rule.connection
    text = (f"Test alert — {rule.get_kind_display()}: {connection.label} "
            f"({connection.client_code}). Sent from the admin by {by.get_username()} to check "
            "that alerts arrive; nothing is wrong.")
    text = _with_link(rule, text)
    outcome = _send(rule, subject=f"{SUBJECT_PREFIX}Test alert", text=text)
    audit.record(
        AuditEvent.Action.ALERT_TESTED, by=by, connection=connection,
        comment=f"Test alert for rule {rule.pk}: " + (outcome.error or "delivered"),
        changes={"webhook_status": outcome.webhook_status, "emailed": outcome.emailed})
    return outcome
