"""Logins cannot be guessed, sessions do not linger (issue 22, item 10).

Failed logins at the admin's login form are counted by django-axes per account and per client
address; at PROFILEOPS_LOGIN_FAILURE_LIMIT (10) both are locked out — the right password is then
refused too — until the lock-out ends or an administrator unlocks them with axes' commands.
Sessions end after PROFILEOPS_SESSION_IDLE_MINUTES (a working day) without a request.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.test import RequestFactory
from django.utils import timezone

from profileops.auth import client_address

LOGIN = "/admin/login/"
ATTACKER, ELSEWHERE = "203.0.113.7", "198.51.100.20"


def attempt(client, username: str, password: str, address: str):
    client.logout()
    return client.post(LOGIN, {"username": username, "password": password, "next": "/admin/"},
                       REMOTE_ADDR=address)


def logged_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


def test_twenty_wrong_passwords_lock_the_account_and_the_address_out(client, operator,
                                                                       supervisor, caplog):
    answers = [attempt(client, "operator", f"guess-{n}", ATTACKER).status_code
               for n in range(20)]
    limit = settings.AXES_FAILURE_LIMIT
    assert answers[:limit - 1] == [200] * (limit - 1)  # the form again, "wrong password"
    assert set(answers[limit:]) == {429}
    # The right password is refused now: for this account from anywhere …
    response = attempt(client, "operator", "pw-operator", ELSEWHERE)
    assert response.status_code == 429 and not logged_in(response)
    # … and for any account from this address.
    response = attempt(client, "supervisor", "pw-supervisor", ATTACKER)
    assert response.status_code == 429 and not logged_in(response)
    # Others go on working.
    assert logged_in(attempt(client, "supervisor", "pw-supervisor", ELSEWHERE))
    assert "pw-operator" not in caplog.text and "guess-1" not in caplog.text


def test_lockouts_are_visible_to_administrators_and_the_documented_commands_unlock(
        client, operator, admin_user, capsys):
    for n in range(settings.AXES_FAILURE_LIMIT):
        attempt(client, "operator", f"guess-{n}", ATTACKER)
    assert attempt(client, "operator", "pw-operator", ELSEWHERE).status_code == 429

    client.force_login(admin_user)
    listing = client.get("/admin/axes/accessattempt/").content.decode()
    assert "operator" in listing and ATTACKER in listing
    failures = client.get("/admin/axes/accessfailurelog/").content.decode()
    assert "operator" in failures

    call_command("axes_reset_username", "operator")
    assert "attempts removed" in capsys.readouterr().out
    assert logged_in(attempt(client, "operator", "pw-operator", ELSEWHERE))

    for n in range(settings.AXES_FAILURE_LIMIT):
        attempt(client, f"nobody-{n}", "guess", ATTACKER)  # many accounts, one address
    assert attempt(client, "operator", "pw-operator", ATTACKER).status_code == 429
    call_command("axes_reset_ip", ATTACKER)
    assert logged_in(attempt(client, "operator", "pw-operator", ATTACKER))


def test_a_login_between_guesses_does_not_reset_the_count(client, operator, supervisor):
    # A valid account must not let its address guess another's password for ever.
    limit = settings.AXES_FAILURE_LIMIT
    for n in range(limit - 1):
        attempt(client, "operator", f"guess-{n}", ATTACKER)
        if n % 3 == 2:
            assert logged_in(attempt(client, "supervisor", "pw-supervisor", ATTACKER))
    attempt(client, "operator", "guess-last", ATTACKER)
    assert attempt(client, "operator", "pw-operator", ELSEWHERE).status_code == 429


def test_the_test_clients_login_and_force_login_still_work(client, operator):
    # client.login() authenticates without a request: not a login from the network, so axes
    # neither counts nor refuses it (profileops/auth.py); force_login does not authenticate.
    assert not client.login(username="operator", password="wrong")
    assert client.login(username="operator", password="pw-operator")
    client.force_login(operator)
    assert client.get("/admin/").status_code == 200


def test_an_idle_session_ends_after_a_working_day_and_every_request_renews_it(client, operator):
    # Before: Django's default, two weeks, whatever the session did.
    assert settings.SESSION_COOKIE_AGE == 8 * 3600 and settings.SESSION_SAVE_EVERY_REQUEST
    assert logged_in(attempt(client, "operator", "pw-operator", ELSEWHERE))
    session = Session.objects.get()
    left = session.expire_date - timezone.now()
    assert dt.timedelta(hours=7, minutes=59) < left <= dt.timedelta(hours=8)

    Session.objects.update(expire_date=timezone.now() + dt.timedelta(minutes=5))
    assert client.get("/admin/").status_code == 200
    assert Session.objects.get().expire_date - timezone.now() > dt.timedelta(hours=7, minutes=59)

    Session.objects.update(expire_date=timezone.now() - dt.timedelta(seconds=1))  # idle 8 h
    response = client.get("/admin/")
    assert response.status_code == 302 and response["Location"].startswith(LOGIN)


@pytest.mark.parametrize("proxies, forwarded, expected", [
    (0, "1.2.3.4", "10.0.0.5"),                     # no proxy: X-Forwarded-For is a client's word
    (1, "6.6.6.6, 1.2.3.4", "1.2.3.4"),             # one proxy: what it appended
    (2, "6.6.6.6, 1.2.3.4, 10.0.0.9", "1.2.3.4"),   # two: what the outer one appended
    (1, "", "10.0.0.5"),                            # not through the proxy
])
def test_the_client_address_behind_trusted_proxies(settings, proxies, forwarded, expected):
    settings.TRUSTED_PROXY_COUNT = proxies
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR=forwarded)
    assert client_address(request) == expected
