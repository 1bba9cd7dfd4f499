"""alerts.py: each rule kind fires once when its condition starts and once when it clears, by
email (Django's mail outbox) and by webhook (a real HTTP receiver on 127.0.0.1), recorded as
AlertEvents; texts carry no customer values and the webhook URL is never shown."""

from __future__ import annotations

import datetime as dt
import json
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone

from tests.conftest import use_adobe_credentials
from updates import alerts, credentials, webhooks, workflow
from updates.errors import PERMISSION_DENIED, Refused
from updates.models import (AlertEvent, AlertRule, CredentialState, ProfileUpdate, QuotaMinute,
                            SendAttempt)

Kind = AlertRule.Kind


class Receiver:
    """A webhook endpoint: records every JSON body it is sent, answers `status`."""

    def __init__(self, status: int = 200, location: str = "") -> None:
        self.bodies: list[dict] = []
        self.hosts: list[str] = []
        self.requests: list[str] = []
        self.status = status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                outer.requests.append(f"POST {self.path}")
                length = int(self.headers["Content-Length"])
                outer.bodies.append(json.loads(self.rfile.read(length)))
                outer.content_type = self.headers["Content-Type"]
                outer.hosts.append(self.headers["Host"])
                self.send_response(outer.status)
                if location:
                    self.send_header("Location", location)
                self.end_headers()
                self.wfile.write(b"ok")

            def do_GET(self):  # noqa: N802 - what a followed redirect would turn the POST into
                outer.requests.append(f"GET {self.path}")
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/T000/SECRET-PART"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    hook = Receiver()
    yield hook
    hook.close()


def rule(connection, kind, **kwargs) -> AlertRule:
    kwargs.setdefault("email_to", "ops@example.com, lead@example.com")
    return AlertRule.objects.create(connection=connection, kind=kind, **kwargs)


def attempts(update, connection, outcomes, *, at=None, status=None):
    at = at or timezone.now()
    for number, outcome in enumerate(outcomes, start=1):
        SendAttempt.objects.create(
            update=update, connection=connection, number=number, started_at=at, method="GET",
            request_bytes=100, outcome=outcome,
            http_status=status or (200 if outcome == "acknowledged" else 503))


def test_a_failure_rate_alert_fires_once_and_says_when_it_clears(connection, stage, receiver):
    r = rule(connection, Kind.FAILURE_RATE, threshold=20, window_minutes=60, min_requests=5,
             webhook_url=receiver.url)
    update = stage(identity="customer-secret-77", attributes={"loanStatus": "funded"})
    now = timezone.now()
    attempts(update, connection, ["transient"] * 3 + ["acknowledged"] * 7, at=now)

    [fired] = alerts.alerts_check(now=now)
    assert fired.state == AlertEvent.State.FIRING
    assert ("30.0 % of 10 requests in the last 60 minutes were not acknowledged (3 failed "
            "requests; alerts at 20 % of at least 5 requests in 60 minutes)") in fired.text
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ops@example.com", "lead@example.com"]
    assert mail.outbox[0].subject.startswith("[ProfileOps] ALERT")
    assert receiver.bodies == [{"text": fired.text}]  # Slack-compatible
    assert receiver.content_type == "application/json"
    fired.refresh_from_db()
    assert (fired.emailed, fired.webhook_status, fired.delivery_error) == (2, 200, "")

    # Still failing: nothing new is said.
    assert alerts.alerts_check(now=now + dt.timedelta(minutes=5)) == []
    assert len(mail.outbox) == 1 and len(receiver.bodies) == 1

    # An hour later the window holds only good requests: it clears, once.
    later = now + dt.timedelta(minutes=61)
    good = stage(identity="customer-2")
    attempts(good, connection, ["acknowledged"] * 6, at=later)
    [cleared] = alerts.alerts_check(now=later)
    assert cleared.state == AlertEvent.State.CLEARED and cleared.text.startswith("Cleared")
    assert len(mail.outbox) == 2 and len(receiver.bodies) == 2
    r.refresh_from_db()
    assert r.firing is False and r.changed_at == later
    # Customer values never reach an alert.
    for text in [m.body for m in mail.outbox] + [b["text"] for b in receiver.bodies]:
        assert "customer-secret-77" not in text and "funded" not in text


def test_too_few_requests_never_fire_a_failure_rate_alert(connection, stage):
    rule(connection, Kind.FAILURE_RATE, threshold=20, min_requests=20)
    attempts(stage(), connection, ["transient"] * 3)
    assert alerts.alerts_check() == []


@pytest.mark.parametrize("threshold,fires", [(80, True), (95, False)])
def test_quota_use_alerts_fire_per_threshold(connection, threshold, fires):
    rule(connection, Kind.QUOTA_USE, threshold=threshold)
    minute = timezone.now().replace(second=0, microsecond=0)
    QuotaMinute.objects.create(connection=connection, minute=minute, requests=850_000)
    events = alerts.alerts_check()
    assert bool(events) is fires
    if fires:
        assert "85.0 % of the 1,000,000-request rolling-24-hour quota" in events[0].text


def test_updates_waiting_too_long_fire_and_clear_once_decided(connection, stage, operator,
                                                             supervisor):
    rule(connection, Kind.WAITING, threshold=4)
    update = workflow.update_submit(update=stage(), by=operator)
    assert alerts.alerts_check() == []  # submitted just now
    ProfileUpdate.objects.filter(pk=update.pk).update(
        submitted_at=timezone.now() - dt.timedelta(hours=5))
    [fired] = alerts.alerts_check()
    assert "1 update waiting for approval longer than 4 hours" in fired.text
    workflow.update_approve(update=update, by=supervisor)
    [cleared] = alerts.alerts_check()
    assert cleared.state == AlertEvent.State.CLEARED


def test_a_refused_bearer_token_fires_until_target_accepts_it_again(connection, stage):
    rule(connection, Kind.TOKEN_REFUSED, email_to="ops@example.com")
    update = stage()
    now = timezone.now()
    SendAttempt.objects.create(update=update, connection=connection, number=1, started_at=now,
                               method="GET", request_bytes=1, http_status=401,
                               outcome="permanent")
    [fired] = alerts.alerts_check(now=now)
    assert "refused the bearer token (HTTP 401)" in fired.text
    SendAttempt.objects.create(update=update, connection=connection, number=2,
                               started_at=now + dt.timedelta(minutes=1), method="GET",
                               request_bytes=1, http_status=200, outcome="acknowledged")
    [cleared] = alerts.alerts_check(now=now + dt.timedelta(minutes=2))
    assert "accepts the bearer token again" in cleared.text
    assert [m.subject.split(" — ")[0] for m in mail.outbox] == ["[ProfileOps] ALERT",
                                                               "[ProfileOps] Cleared"]


def test_a_failing_token_renewal_fires_before_the_token_expires_and_clears_when_renewed(
        connection, adobe_emulator):
    use_adobe_credentials(connection, adobe_emulator)
    adobe_emulator.adobe.profile_token_lifetime = 3600
    credentials.profile_token(connection)  # a token valid for an hour
    rule(connection, Kind.TOKEN_RENEWAL, email_to="ops@example.com")
    adobe_emulator.adobe.client_secret = "rotated-in-the-console"  # ours is refused now
    due = timezone.now()  # both tokens due for renewal: ahead of the profile token's expiry
    CredentialState.objects.filter(connection=connection).update(profile_refresh_at=due,
                                                                 ims_renew_at=due)
    with pytest.raises(ValidationError):
        credentials.profile_token(connection)
    [fired] = alerts.alerts_check()
    assert "renewing Target's profile token has failed since" in fired.text
    assert "refused the client ID and secret" in fired.text and "expires at" in fired.text
    assert "rotated-in-the-console" not in fired.text
    adobe_emulator.adobe.client_secret = connection.adobe_client_secret
    credentials.profile_token(connection)
    [cleared] = alerts.alerts_check()
    assert cleared.state == AlertEvent.State.CLEARED


def test_a_failed_webhook_is_recorded_without_its_secret_url(connection, stage, caplog):
    hook = Receiver(status=500)
    try:
        rule(connection, Kind.TOKEN_REFUSED, email_to="", webhook_url=hook.url)
        SendAttempt.objects.create(update=stage(), connection=connection, number=1,
                                   started_at=timezone.now(), method="GET", request_bytes=1,
                                   http_status=403, outcome="permanent")
        [event] = alerts.alerts_check()
    finally:
        hook.close()
    event.refresh_from_db()
    assert event.webhook_status == 500 and event.delivery_error == "webhook: HTTP 500"
    assert "SECRET-PART" not in caplog.text and "SECRET-PART" not in event.delivery_error


def test_an_unreachable_webhook_is_recorded_and_email_still_goes(connection, stage):
    hook = Receiver()
    url = hook.url
    hook.close()  # nothing listens there now
    rule(connection, Kind.TOKEN_REFUSED, webhook_url=url)
    SendAttempt.objects.create(update=stage(), connection=connection, number=1,
                               started_at=timezone.now(), method="GET", request_bytes=1,
                               http_status=401, outcome="permanent")
    [event] = alerts.alerts_check()
    event.refresh_from_db()
    assert event.delivery_error.startswith("webhook: ConnectionRefusedError")
    assert "SECRET-PART" not in event.delivery_error and len(mail.outbox) == 1


def test_inactive_rules_and_connections_are_not_checked(connection, stage):
    rule(connection, Kind.TOKEN_REFUSED, active=False)
    SendAttempt.objects.create(update=stage(), connection=connection, number=1,
                               started_at=timezone.now(), method="GET", request_bytes=1,
                               http_status=401, outcome="permanent")
    assert alerts.alerts_check() == []


def test_the_migration_schedules_the_check_every_five_minutes(db):
    from django_q.models import Schedule

    schedule = Schedule.objects.get(name="Check alert rules")
    assert (schedule.func, schedule.minutes) == ("updates.tasks.check_alerts", 5)
    from updates.tasks import check_alerts

    assert check_alerts() == "0 alert state changes"


def _verdict(update, state, *, at):
    """What verification.py writes when its last check ends: the state and its audit row."""
    from updates.models import AuditEvent

    ProfileUpdate.objects.filter(pk=update.pk).update(verification_state=state)
    AuditEvent.objects.create(at=at, action=state, update=update,
                              connection_id=update.connection_id, from_status="sent",
                              to_status="sent", comment="Check 3 of 3: not applied.")


def test_updates_not_applied_after_verification_fire_at_the_threshold_and_clear(
        connection, stage, receiver):
    rule(connection, Kind.NOT_APPLIED, threshold=2, window_minutes=60,
         webhook_url=receiver.url)
    now = timezone.now()
    first = stage(identity="customer-secret-1", attributes={"loanStatus": "funded"})
    _verdict(first, "not_applied", at=now - dt.timedelta(minutes=10))
    _verdict(stage(identity="customer-3"), "verified", at=now)  # applied: does not count
    assert alerts.alerts_check(now=now) == []  # one is below the threshold of two

    _verdict(stage(identity="customer-2"), "not_applied", at=now)
    [fired] = alerts.alerts_check(now=now)
    assert fired.state == AlertEvent.State.FIRING
    assert "2 updates acknowledged by Target but not applied after verification in the " \
           "last 60 minutes (alerts at 2 updates)" in fired.text
    assert len(mail.outbox) == 1 and mail.outbox[0].subject.startswith("[ProfileOps] ALERT")
    assert receiver.bodies == [{"text": fired.text}]
    assert alerts.alerts_check(now=now + dt.timedelta(minutes=5)) == []  # stays quiet

    # Once the window has moved past both verdicts, it clears — once.
    later = now + dt.timedelta(minutes=61)
    [cleared] = alerts.alerts_check(now=later)
    assert cleared.state == AlertEvent.State.CLEARED
    assert "0 updates acknowledged by Target but not applied" in cleared.text
    assert alerts.alerts_check(now=later) == []
    assert len(mail.outbox) == 2 and len(receiver.bodies) == 2
    for text in [m.body for m in mail.outbox] + [b["text"] for b in receiver.bodies]:
        assert "customer-secret-1" not in text and "funded" not in text


def test_a_re_sent_update_that_verifies_no_longer_counts_as_not_applied(connection, stage):
    rule(connection, Kind.NOT_APPLIED, threshold=1, window_minutes=60)
    update = stage()
    _verdict(update, "not_applied", at=timezone.now())
    ProfileUpdate.objects.filter(pk=update.pk).update(verification_state="verified")
    assert alerts.alerts_check() == []


# --- where webhooks may go, and how long they may take (issue 22, items 2 and 7) -----------------

class DrippingReceiver:
    """Reads the request, then answers its status line and headers one byte every 0.5 s."""

    ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"

    def __init__(self) -> None:
        outer = self
        self.stopped = threading.Event()

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                self.request.recv(65536)
                for byte in outer.ANSWER:
                    if outer.stopped.is_set():
                        return
                    try:
                        self.request.sendall(bytes([byte]))
                    except OSError:
                        return  # the client gave up: good
                    time.sleep(0.5)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/SECRET-PART"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()


def _token_refused(connection, stage) -> None:
    SendAttempt.objects.create(update=stage(), connection=connection, number=1,
                               started_at=timezone.now(), method="GET", request_bytes=1,
                               http_status=401, outcome="permanent")


def test_a_receiver_dripping_its_headers_cannot_hold_a_delivery_past_its_deadline(
        connection, stage, monkeypatch):
    # Before: the 5 s timeout bounded each socket read, and a drip of one byte per 0.5 s held
    # the delivery for as long as the receiver liked (12-20 s here, ~40 s with these headers).
    monkeypatch.setattr(alerts, "WEBHOOK_TIMEOUT_SECONDS", 2.0)
    hook = DrippingReceiver()
    try:
        rule(connection, Kind.TOKEN_REFUSED, email_to="", webhook_url=hook.url)
        _token_refused(connection, stage)
        started = time.monotonic()
        [event] = alerts.alerts_check()
        took = time.monotonic() - started
    finally:
        hook.close()
    assert took < 4.0, f"the delivery took {took:.1f} s with a 2 s deadline"
    event.refresh_from_db()
    assert event.webhook_status is None
    assert event.delivery_error.startswith("webhook: deadline exceeded (no answer within 2 s)")
    assert "SECRET-PART" not in event.delivery_error


def test_a_redirect_is_not_followed_and_is_a_failed_delivery_with_its_status(
        connection, stage, receiver):
    # Before: urllib followed the 302, the POST became a GET to wherever the receiver pointed,
    # and the admin was shown the final 200.
    hook = Receiver(status=302, location=receiver.url + "/elsewhere")
    try:
        rule(connection, Kind.TOKEN_REFUSED, email_to="", webhook_url=hook.url)
        _token_refused(connection, stage)
        [event] = alerts.alerts_check()
    finally:
        hook.close()
    event.refresh_from_db()
    assert event.webhook_status == 302
    assert event.delivery_error == "webhook: HTTP 302 (a redirect, not followed)"
    assert receiver.requests == [] and len(hook.requests) == 1


REFUSED_AT_SAVE = [
    ("ftp://hooks.example.com/x", webhooks.SCHEME),
    ("ftps://hooks.example.com/x", webhooks.SCHEME),
    ("https://user:S3CRET-PW@hooks.example.com/x", webhooks.CREDENTIALS),
    ("http://169.254.169.254/latest/meta-data/", webhooks.FORBIDDEN_ADDRESS),
    ("http://[fe80::1]/x", webhooks.FORBIDDEN_ADDRESS),
    ("http://0.0.0.0:8080/x", webhooks.FORBIDDEN_ADDRESS),
    ("http://[::]/x", webhooks.FORBIDDEN_ADDRESS),
    ("http://[::ffff:169.254.169.254]/x", webhooks.FORBIDDEN_ADDRESS),
]


@pytest.mark.parametrize("url, code", REFUSED_AT_SAVE, ids=[u for u, _ in REFUSED_AT_SAVE])
def test_a_webhook_that_could_never_go_where_allowed_is_refused_when_the_rule_is_saved(
        connection, admin_user, url, code):
    # Before: ftp(s) URLs were saved (and the alerts silently went nowhere), link-local
    # addresses and user:password URLs were accepted.
    candidate = AlertRule(connection=connection, kind=Kind.TOKEN_REFUSED, webhook_url=url)
    with pytest.raises(ValidationError) as refused:
        alerts.alert_rule_save(rule=candidate, by=admin_user)
    [error] = refused.value.error_dict["webhook_url"]
    assert error.code == code
    assert "S3CRET-PW" not in " ".join(refused.value.messages)
    assert not AlertRule.objects.exists()


def test_private_addresses_are_allowed_only_with_the_setting(connection, admin_user, settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "WEBHOOK_ALLOW_PRIVATE": "0"}
    for url in ("http://10.1.2.3/hook", "http://127.0.0.1:8080/hook", "http://[::1]/hook",
                "http://192.168.0.10/hook"):
        with pytest.raises(ValidationError) as refused:
            alerts.alert_rule_save(rule=AlertRule(connection=connection, kind=Kind.WAITING,
                                                  webhook_url=url), by=admin_user)
        assert refused.value.error_dict["webhook_url"][0].code == webhooks.PRIVATE_ADDRESS
    settings.PROFILEOPS = {**settings.PROFILEOPS, "WEBHOOK_ALLOW_PRIVATE": "1"}
    saved = alerts.alert_rule_save(rule=AlertRule(connection=connection, kind=Kind.WAITING,
                                                  webhook_url="http://10.1.2.3/hook"),
                                   by=admin_user)
    assert saved.pk and saved.webhook_url == "http://10.1.2.3/hook"


def test_only_administrators_save_rules(connection, operator):
    with pytest.raises(Refused) as refused:
        alerts.alert_rule_save(rule=AlertRule(connection=connection, kind=Kind.WAITING),
                               by=operator)
    assert refused.value.code == PERMISSION_DENIED


def _resolving(monkeypatch, host: str, address: str) -> None:
    real = socket.getaddrinfo

    def fake(name, port, *args, **kwargs):
        if name == host:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(name, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


def test_a_host_name_is_resolved_and_checked_at_delivery_so_dns_cannot_point_it_elsewhere(
        connection, stage, receiver, monkeypatch):
    # Saved as a harmless-looking name; at delivery DNS answers the metadata address.
    rule(connection, Kind.TOKEN_REFUSED, email_to="",
         webhook_url="http://hooks.example.test/services/SECRET-PART")
    _resolving(monkeypatch, "hooks.example.test", "169.254.169.254")
    _token_refused(connection, stage)
    [event] = alerts.alerts_check()
    event.refresh_from_db()
    assert event.webhook_status is None
    assert event.delivery_error == ("webhook: refused: the webhook's host resolves to a "
                                    "link-local, unspecified, multicast or reserved address "
                                    "(never allowed)")


def test_delivery_connects_to_the_address_it_checked_and_keeps_the_host_name(
        connection, stage, receiver, monkeypatch):
    port = receiver.server.server_port
    rule(connection, Kind.TOKEN_REFUSED, email_to="",
         webhook_url=f"http://relay.internal.test:{port}/hooks/SECRET-PART")
    _resolving(monkeypatch, "relay.internal.test", "127.0.0.1")
    _token_refused(connection, stage)
    [event] = alerts.alerts_check()
    event.refresh_from_db()
    assert (event.webhook_status, event.delivery_error) == (200, "")
    assert receiver.hosts == [f"relay.internal.test:{port}"]
    assert receiver.requests == ["POST /hooks/SECRET-PART"]


def test_a_private_address_saved_while_allowed_is_refused_at_delivery_once_it_is_not(
        connection, stage, receiver, settings):
    rule(connection, Kind.TOKEN_REFUSED, email_to="", webhook_url=receiver.url)
    settings.PROFILEOPS = {**settings.PROFILEOPS, "WEBHOOK_ALLOW_PRIVATE": "0"}
    _token_refused(connection, stage)
    [event] = alerts.alerts_check()
    event.refresh_from_db()
    assert event.webhook_status is None and "PROFILEOPS_WEBHOOK_ALLOW_PRIVATE" in \
        event.delivery_error
    assert receiver.bodies == []


def test_a_test_alert_reports_the_receivers_status_and_is_audited(connection, admin_user,
                                                                   receiver):
    from updates.models import AuditEvent

    rule_ = rule(connection, Kind.QUOTA_USE, threshold=80, webhook_url=receiver.url)
    outcome = alerts.alert_rule_send_test(rule=rule_, by=admin_user)
    assert (outcome.webhook_status, outcome.emailed, outcome.error) == (200, 2, "")
    assert receiver.bodies[0]["text"].startswith("Test alert — Quota use")
    assert mail.outbox[0].subject == "[ProfileOps] Test alert"
    audit = AuditEvent.objects.get(action="alert_tested")
    assert audit.actor == admin_user and audit.changes["webhook_status"] == 200
    assert "SECRET-PART" not in audit.comment
    rule_.refresh_from_db()
    assert not rule_.firing and not rule_.events.exists()


def test_only_administrators_send_test_alerts(connection, operator, receiver):
    rule_ = rule(connection, Kind.QUOTA_USE, webhook_url=receiver.url)
    with pytest.raises(Refused) as refused:
        alerts.alert_rule_send_test(rule=rule_, by=operator)
    assert refused.value.code == PERMISSION_DENIED and receiver.bodies == []


# --- defaults, units, links, who may change (issue 24, item 7) -----------------------------------

@pytest.mark.parametrize("kind, expected", [
    (Kind.FAILURE_RATE, 10), (Kind.QUOTA_USE, 80), (Kind.WAITING, 4), (Kind.NOT_APPLIED, 1),
    (Kind.TOKEN_REFUSED, 0)])
def test_an_empty_threshold_takes_the_kinds_default(connection, admin_user, kind, expected):
    # Before: 0 for every kind — a failure-rate rule saved as is fired on any failure.
    saved = alerts.alert_rule_save(rule=AlertRule(connection=connection, kind=kind),
                                   by=admin_user)
    saved.refresh_from_db()
    assert saved.threshold == expected
    # A threshold that was given is kept, 0 included.
    kept = alerts.alert_rule_save(rule=AlertRule(connection=connection, kind=kind, threshold=0),
                                  by=admin_user)
    kept.refresh_from_db()
    assert kept.threshold == 0


def test_a_failure_rate_rule_at_its_default_does_not_fire_on_one_failure(
        connection, admin_user, stage):
    alerts.alert_rule_save(rule=AlertRule(connection=connection, kind=Kind.FAILURE_RATE,
                                          min_requests=5), by=admin_user)
    attempts(stage(), connection, ["transient"] + ["acknowledged"] * 19)
    assert alerts.alerts_check() == []  # 5 % < 10 %


@pytest.mark.parametrize("kind, kwargs, words", [
    (Kind.FAILURE_RATE, {"threshold": 10, "min_requests": 5000, "window_minutes": 30},
     "10 % of at least 5,000 requests in 30 minutes"),
    (Kind.QUOTA_USE, {"threshold": "95.5"}, "95.5 % of the quota"),
    (Kind.WAITING, {"threshold": 1}, "waiting 1 hour"),
    (Kind.NOT_APPLIED, {"threshold": 1, "window_minutes": 60}, "1 update in 60 minutes"),
    (Kind.NOT_APPLIED, {"threshold": 3, "window_minutes": 1}, "3 updates in 1 minute"),
    (Kind.TOKEN_REFUSED, {}, "any refusal (HTTP 401 or 403)"),
])
def test_thresholds_are_said_with_their_unit(connection, kind, kwargs, words):
    assert alerts.threshold_words(rule(connection, kind, **kwargs)) == words


def test_texts_give_the_threshold_in_words_and_link_to_the_page_to_act_on(
        connection, stage, settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "SITE_URL": "https://ops.example.com/"}
    rule(connection, Kind.NOT_APPLIED, threshold=1, window_minutes=60)
    now = timezone.now()
    _verdict(stage(identity="customer-1"), "not_applied", at=now)
    [fired] = alerts.alerts_check(now=now)
    assert "(alerts at 1 update)" in fired.text and "alert at 1)" not in fired.text
    assert fired.text.endswith(
        f" Open: https://ops.example.com/admin/updates/profileupdate/?connection__id__exact="
        f"{connection.pk}&verification_state__exact=not_applied")
    assert mail.outbox[0].body == fired.text


@pytest.mark.parametrize("kind, path", [
    (Kind.FAILURE_RATE, "/admin/updates/profileupdate/?connection__id__exact={pk}"
                        "&waiting=retrying"),
    (Kind.QUOTA_USE, "/admin/dashboard/"),
    (Kind.WAITING, "/admin/updates/profileupdate/?connection__id__exact={pk}"
                   "&status__exact=pending"),
    (Kind.TOKEN_REFUSED, "/admin/updates/targetconnection/{pk}/change/"),
])
def test_each_kind_links_to_its_page_and_no_link_without_a_site_url(
        connection, settings, client, admin_user, kind, path):
    made = rule(connection, kind)
    assert alerts.action_url(made) == ""  # unset: no link (a relative one is no use in mail)
    settings.PROFILEOPS = {**settings.PROFILEOPS, "SITE_URL": "https://ops.example.com"}
    url = alerts.action_url(made)
    assert url == "https://ops.example.com" + path.format(pk=connection.pk)
    client.force_login(admin_user)
    assert client.get(url.removeprefix("https://ops.example.com")).status_code == 200


def test_a_supervisor_cannot_save_a_rule(connection, supervisor, admin_user):
    existing = alerts.alert_rule_save(rule=AlertRule(connection=connection, kind=Kind.WAITING),
                                      by=admin_user)
    assert supervisor.has_perm("updates.view_alertrule")  # they may read rules (0021)
    for candidate in (AlertRule(connection=connection, kind=Kind.QUOTA_USE), existing):
        candidate.threshold = 1
        with pytest.raises(Refused) as refused:
            alerts.alert_rule_save(rule=candidate, by=supervisor)
        assert refused.value.code == PERMISSION_DENIED
    with pytest.raises(Refused):
        alerts.alert_rule_send_test(rule=existing, by=supervisor)
    existing.refresh_from_db()
    assert existing.threshold == 4 and AlertRule.objects.count() == 1
